//! What the demo does to its tenant, all through the HTTP API: a German software company's
//! seller details and catalogue, 25 customers in four currencies and five languages, and the
//! month-by-month life of their subscriptions (trials, an upgrade, more seats, a new card, a
//! refund, a cancellation, a pause).

use crate::client::{Api, id};
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;

/// The seller printed on every document.
fn seller() -> Value {
    json!({
        "legal_name": "Nordlicht Software GmbH",
        "address": {"line1": "Torstraße 140", "city": "Berlin", "postal_code": "10119", "country": "DE"},
        "tax_ids": [{"type": "eu_vat", "value": "DE815620179"}],
        "email": "billing@nordlicht.example",
        "phone": "+49 30 1234 5678",
        "bank": {"iban": "DE89 3704 0044 0532 0130 00", "bic": "COBADEFFXXX"},
        "payment_terms": "Zahlbar innerhalb von 14 Tagen · Payable within 14 days.",
        "footer": "Nordlicht Software GmbH · Amtsgericht Berlin-Charlottenburg HRB 123456 · Geschäftsführerin: Jana Nordlicht",
        "locale": "en",
        "accent_color": "#1F4E79",
        "payment_method_url": "https://billing.nordlicht.example/payment-method",
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Plan {
    Starter,
    Pro,
    ProYearly,
    /// Graduated per-seat tiers, this many seats.
    Seats(u64),
    /// Starter plus metered API calls.
    StarterWithApi,
}

/// What happens to a customer besides renewals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Story {
    Renews,
    /// 20 % off for three months.
    Coupon,
    /// A 14-day trial.
    Trial,
    /// Starter → Pro in the middle of the first month, prorated.
    Upgrade,
    /// Three seats → eight in the middle of the first month.
    MoreSeats,
    /// The card on file expired: the first charge is declined for good until a new card
    /// arrives mid-month, which pays at once.
    NewCard,
    /// Signs up in the middle of the first month (a different billing anchor).
    LateSignup,
    /// Half of the first invoice credited back and refunded in the second month.
    Refund,
    /// Asks in the second month to stop at the end of the period.
    CancelAtPeriodEnd,
    /// Paused in the second month, resumed in the third.
    PauseResume,
    /// A business that pays by bank transfer (`send_invoice`, 14 days).
    BankTransfer,
    /// An EU business in another country: reverse charge.
    ReverseCharge,
}

struct Person {
    name: &'static str,
    locale: &'static str,
    currency: &'static str,
    country: &'static str,
    city: &'static str,
    postal_code: &'static str,
    line1: &'static str,
    /// The sandbox card (`tok_visa` pays, `tok_insufficient_funds` never does, …).
    token: &'static str,
    plan: Plan,
    story: Story,
}

#[rustfmt::skip]
const PEOPLE: &[Person] = &[
    Person { name: "Anna Schmidt", locale: "de", currency: "EUR", country: "DE", city: "Berlin", postal_code: "10115", line1: "Invalidenstraße 44", token: "tok_visa", plan: Plan::Starter, story: Story::Coupon },
    Person { name: "Lukas Becker", locale: "de", currency: "EUR", country: "DE", city: "Hamburg", postal_code: "20095", line1: "Mönckebergstraße 7", token: "tok_visa", plan: Plan::Starter, story: Story::Upgrade },
    Person { name: "Mia Wagner", locale: "de", currency: "EUR", country: "DE", city: "München", postal_code: "80331", line1: "Sendlinger Straße 12", token: "tok_visa", plan: Plan::Seats(3), story: Story::MoreSeats },
    Person { name: "Kraftwerk Analytics GmbH", locale: "de", currency: "EUR", country: "DE", city: "Köln", postal_code: "50667", line1: "Hohe Straße 80", token: "tok_visa", plan: Plan::ProYearly, story: Story::Renews },
    Person { name: "Jonas Hoffmann", locale: "de", currency: "EUR", country: "DE", city: "Leipzig", postal_code: "04109", line1: "Grimmaische Straße 2", token: "tok_insufficient_funds", plan: Plan::Starter, story: Story::Renews },
    Person { name: "Lea Fischer", locale: "de", currency: "EUR", country: "DE", city: "Dresden", postal_code: "01067", line1: "Prager Straße 5", token: "tok_retry_succeeds", plan: Plan::Starter, story: Story::Trial },
    Person { name: "Felix Weber", locale: "en", currency: "EUR", country: "DE", city: "Berlin", postal_code: "10245", line1: "Warschauer Straße 33", token: "tok_expired_card", plan: Plan::Pro, story: Story::NewCard },
    Person { name: "Sofía García", locale: "es", currency: "EUR", country: "DE", city: "Berlin", postal_code: "10997", line1: "Wrangelstraße 21", token: "tok_visa", plan: Plan::StarterWithApi, story: Story::Renews },
    Person { name: "Brandt & Söhne KG", locale: "de", currency: "EUR", country: "DE", city: "Stuttgart", postal_code: "70173", line1: "Königstraße 26", token: "", plan: Plan::Pro, story: Story::BankTransfer },
    Person { name: "Atelier Lumière SARL", locale: "fr", currency: "EUR", country: "FR", city: "Lyon", postal_code: "69002", line1: "12 rue de la République", token: "tok_visa", plan: Plan::Seats(6), story: Story::ReverseCharge },
    Person { name: "Camille Martin", locale: "fr", currency: "EUR", country: "DE", city: "Berlin", postal_code: "10437", line1: "Kastanienallee 9", token: "tok_visa", plan: Plan::Starter, story: Story::CancelAtPeriodEnd },
    Person { name: "Emma Schulz", locale: "de", currency: "EUR", country: "DE", city: "Bremen", postal_code: "28195", line1: "Obernstraße 40", token: "tok_timeout", plan: Plan::Starter, story: Story::Renews },
    Person { name: "Paul Richter", locale: "de", currency: "EUR", country: "DE", city: "Hannover", postal_code: "30159", line1: "Georgstraße 10", token: "tok_visa", plan: Plan::StarterWithApi, story: Story::LateSignup },
    Person { name: "Zofia Nowak", locale: "pl", currency: "PLN", country: "PL", city: "Warszawa", postal_code: "00-001", line1: "ul. Marszałkowska 10", token: "tok_visa", plan: Plan::Starter, story: Story::Renews },
    Person { name: "Jakub Kowalski", locale: "pl", currency: "PLN", country: "PL", city: "Kraków", postal_code: "31-001", line1: "ul. Floriańska 3", token: "tok_visa", plan: Plan::Seats(4), story: Story::Coupon },
    Person { name: "Kawiarnia Pod Lipą sp. z o.o.", locale: "pl", currency: "PLN", country: "PL", city: "Gdańsk", postal_code: "80-001", line1: "ul. Długa 15", token: "tok_insufficient_funds", plan: Plan::Pro, story: Story::Renews },
    Person { name: "Maja Wiśniewska", locale: "pl", currency: "PLN", country: "PL", city: "Wrocław", postal_code: "50-001", line1: "ul. Świdnicka 8", token: "tok_visa", plan: Plan::Starter, story: Story::PauseResume },
    Person { name: "Piotr Wójcik", locale: "pl", currency: "PLN", country: "PL", city: "Poznań", postal_code: "61-001", line1: "ul. Półwiejska 2", token: "tok_retry_succeeds", plan: Plan::Pro, story: Story::Renews },
    Person { name: "Olivia Johnson", locale: "en", currency: "USD", country: "US", city: "Austin", postal_code: "78701", line1: "501 Congress Ave", token: "tok_visa", plan: Plan::StarterWithApi, story: Story::Renews },
    Person { name: "Northwind Labs Inc.", locale: "en", currency: "USD", country: "US", city: "Seattle", postal_code: "98101", line1: "1201 3rd Ave", token: "tok_visa", plan: Plan::ProYearly, story: Story::Renews },
    Person { name: "Ethan Miller", locale: "en", currency: "USD", country: "US", city: "Denver", postal_code: "80202", line1: "1600 Glenarm Pl", token: "tok_visa", plan: Plan::Pro, story: Story::Refund },
    Person { name: "Lucía Hernández", locale: "es", currency: "USD", country: "MX", city: "Ciudad de México", postal_code: "06600", line1: "Paseo de la Reforma 222", token: "tok_visa", plan: Plan::Starter, story: Story::Trial },
    Person { name: "Ava Brown", locale: "en", currency: "USD", country: "US", city: "Boston", postal_code: "02108", line1: "1 Beacon St", token: "tok_visa", plan: Plan::StarterWithApi, story: Story::LateSignup },
    Person { name: "Sakura Design K.K.", locale: "en", currency: "JPY", country: "JP", city: "Tokyo", postal_code: "150-0001", line1: "1-2-3 Jingumae, Shibuya-ku", token: "tok_visa", plan: Plan::Seats(8), story: Story::Renews },
    Person { name: "Haruto Sato", locale: "en", currency: "JPY", country: "JP", city: "Osaka", postal_code: "530-0001", line1: "2-4-9 Umeda, Kita-ku", token: "tok_visa", plan: Plan::Starter, story: Story::Trial },
];

/// The catalogue: one price per (plan, currency) the customers need.
fn price_body(plan: Plan, currency: &str) -> Value {
    let month = json!({"interval": "month"});
    let (starter, pro, seat_low, seat_high, api_call) = match currency {
        "PLN" => (7_900, 19_900, 3_500, 2_900, "0.8"),
        "USD" => (2_000, 5_000, 900, 700, "0.25"),
        "JPY" => (2_000, 5_000, 1_000, 800, "0.3"),
        _ => (1_900, 4_900, 800, 600, "0.2"),
    };
    match plan {
        Plan::Starter => {
            json!({"product": "Starter", "currency": currency, "unit_amount": starter, "recurring": month})
        }
        Plan::Pro => {
            json!({"product": "Pro", "currency": currency, "unit_amount": pro, "recurring": month})
        }
        Plan::ProYearly => {
            json!({"product": "Pro (yearly)", "currency": currency, "unit_amount": pro * 10, "recurring": {"interval": "year"}})
        }
        Plan::Seats(_) => {
            json!({"product": "Team seats", "currency": currency, "billing_scheme": "tiered",
            "tiers_mode": "graduated", "recurring": month,
            "tiers": [{"up_to": 5, "unit_amount": seat_low}, {"up_to": "inf", "unit_amount": seat_high}]})
        }
        Plan::StarterWithApi => json!({"product": "API calls", "currency": currency,
            "unit_amount_decimal": api_call, "recurring": {"interval": "month", "usage_type": "metered"}}),
    }
}

/// A customer the demo created, with its subscription once it has one.
pub struct Customer {
    person: &'static Person,
    pub id: String,
    subscription: Option<Value>,
}

impl Customer {
    pub fn name(&self) -> &'static str {
        self.person.name
    }

    pub fn locale(&self) -> &'static str {
        self.person.locale
    }
}

/// The tenant's world as the demo built it.
pub struct World {
    pub customers: Vec<Customer>,
    prices: HashMap<(Plan, &'static str), String>,
    tax_rates: HashMap<&'static str, String>,
    coupon: String,
    /// The webhook endpoint and its signing secret (`whsec_…`).
    pub webhook_endpoint: String,
    pub webhook_secret: String,
}

impl World {
    pub fn customer(&self, id: &str) -> Option<&Customer> {
        self.customers.iter().find(|c| c.id == id)
    }
}

/// Seller details, webhook endpoint, catalogue and customers; subscriptions for all but the
/// late sign-ups.
pub async fn setup(api: &Api, webhook_url: &str) -> anyhow::Result<World> {
    api.put("/v1/settings/invoice", seller()).await?;
    let endpoint = api
        .post(
            "/v1/webhook_endpoints",
            json!({"url": webhook_url, "enabled_events": ["*"], "description": "the demo's receiver"}),
        )
        .await?;
    let webhook_secret = endpoint["secret"]
        .as_str()
        .context("the endpoint's secret")?
        .to_owned();
    let mut prices = HashMap::new();
    for p in PEOPLE {
        let plan = match p.plan {
            Plan::Seats(_) => Plan::Seats(0),
            other => other,
        };
        let mut needed = vec![plan];
        if plan == Plan::StarterWithApi || p.story == Story::Upgrade {
            needed.extend([Plan::Starter, Plan::Pro]);
        }
        for plan in needed {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                prices.entry((plan, p.currency))
            {
                slot.insert(id(&api
                    .post("/v1/prices", price_body(plan, p.currency))
                    .await?));
            }
        }
    }
    let mut tax_rates = HashMap::new();
    for (country, name, pct) in [("DE", "USt.", "19"), ("PL", "VAT", "23")] {
        let rate = api
            .post(
                "/v1/tax_rates",
                json!({"display_name": name, "percentage": pct, "country": country}),
            )
            .await?;
        tax_rates.insert(country, id(&rate));
    }
    let coupon = id(&api
        .post(
            "/v1/coupons",
            json!({"name": "Launch 20 %", "percent_off": 20, "duration": "repeating", "duration_in_months": 3}),
        )
        .await?);
    let mut world = World {
        customers: Vec::new(),
        prices,
        tax_rates,
        coupon,
        webhook_endpoint: id(&endpoint),
        webhook_secret,
    };
    for person in PEOPLE {
        let customer = create_customer(api, person).await?;
        world.customers.push(customer);
    }
    for i in 0..world.customers.len() {
        if world.customers[i].person.story != Story::LateSignup {
            subscribe(api, &mut world, i).await?;
        }
    }
    Ok(world)
}

async fn create_customer(api: &Api, p: &'static Person) -> anyhow::Result<Customer> {
    let email = format!(
        "{}@example.com",
        p.name
            .split_whitespace()
            .next()
            .unwrap_or("customer")
            .to_lowercase()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
    );
    let mut body = json!({
        "name": p.name,
        "email": email,
        "currency": p.currency,
        "locale": p.locale,
        "address": {"line1": p.line1, "city": p.city, "postal_code": p.postal_code, "country": p.country},
    });
    if !p.token.is_empty() {
        body["payment_method"] = json!({"provider": "sandbox", "token": p.token});
    }
    if p.story == Story::ReverseCharge {
        body["tax_exempt"] = json!("reverse");
        body["tax_ids"] = json!([{"type": "eu_vat", "value": "FR40303265045"}]);
    }
    let created = api.post("/v1/customers", body).await?;
    Ok(Customer {
        person: p,
        id: id(&created),
        subscription: None,
    })
}

async fn subscribe(api: &Api, world: &mut World, i: usize) -> anyhow::Result<()> {
    let c = &world.customers[i];
    let p = c.person;
    let price = |plan: Plan| {
        world
            .prices
            .get(&(plan, p.currency))
            .cloned()
            .context("a price the catalogue lacks")
    };
    let items = match p.plan {
        Plan::Seats(n) => json!([{"price": price(Plan::Seats(0))?, "quantity": n}]),
        Plan::StarterWithApi => {
            json!([{"price": price(Plan::Starter)?}, {"price": price(Plan::StarterWithApi)?}])
        }
        plan => json!([{"price": price(plan)?}]),
    };
    let mut body = json!({"customer": c.id, "items": items});
    // VAT where the seller charges it: Germany, and Poland (one-stop shop); reverse charge
    // zeroes it for the French business.
    let vat = match p.country {
        "PL" => world.tax_rates.get("PL"),
        "DE" | "FR" => world.tax_rates.get("DE"),
        _ => None,
    };
    if let Some(rate) = vat {
        body["default_tax_rates"] = json!([rate]);
    }
    match p.story {
        Story::Trial => body["trial_period_days"] = json!(14),
        Story::Coupon => body["coupon"] = json!(world.coupon),
        Story::BankTransfer => {
            body["collection_method"] = json!("send_invoice");
            body["days_until_due"] = json!(14);
        }
        _ => {}
    }
    let sub = api.post("/v1/subscriptions", body).await?;
    world.customers[i].subscription = Some(sub);
    Ok(())
}

/// API calls for the metered items, different each half month.
pub async fn post_usage(api: &Api, world: &World, step: u32) -> anyhow::Result<()> {
    for (n, c) in world.customers.iter().enumerate() {
        let Some(sub) = &c.subscription else { continue };
        let Some(metered) = world.prices.get(&(Plan::StarterWithApi, c.person.currency)) else {
            continue;
        };
        let items = sub["items"].as_array().cloned().unwrap_or_default();
        for item in items
            .iter()
            .filter(|it| it["price"].as_str() == Some(metered))
        {
            let seed = u64::from(step) * 7_919 + n as u64 * 104_729;
            let quantity = 4_000 + seed % 16_000;
            api.post(
                "/v1/usage_records",
                json!({"subscription_item": item["id"], "quantity": quantity, "action": "increment"}),
            )
            .await?;
        }
    }
    Ok(())
}

/// What customers do in the middle of month `month` (0 = the first).
pub async fn mid_month(api: &Api, world: &mut World, month: u32) -> anyhow::Result<()> {
    for i in 0..world.customers.len() {
        let story = world.customers[i].person.story;
        let sub_id = world.customers[i].subscription.as_ref().map(id);
        match (month, story, sub_id) {
            (0, Story::LateSignup, None) => subscribe(api, world, i).await?,
            (0, Story::Upgrade, Some(sub)) => {
                let item = first_item(&world.customers[i])?;
                let pro = world
                    .prices
                    .get(&(Plan::Pro, world.customers[i].person.currency))
                    .context("the Pro price")?;
                let updated = api
                    .post(
                        &format!("/v1/subscriptions/{sub}"),
                        json!({"items": [{"id": item, "price": pro}], "proration_behavior": "create_prorations"}),
                    )
                    .await?;
                world.customers[i].subscription = Some(updated);
            }
            (0, Story::MoreSeats, Some(sub)) => {
                let item = first_item(&world.customers[i])?;
                let updated = api
                    .post(
                        &format!("/v1/subscriptions/{sub}"),
                        json!({"items": [{"id": item, "quantity": 8}]}),
                    )
                    .await?;
                world.customers[i].subscription = Some(updated);
            }
            (0, Story::NewCard, Some(_)) => {
                let customer = &world.customers[i].id;
                api.post(
                    &format!("/v1/customers/{customer}"),
                    json!({"payment_method": {"provider": "sandbox", "token": "tok_visa"}}),
                )
                .await?;
            }
            (1, Story::Refund, Some(sub)) => {
                let invoices = api
                    .list_all(&format!("/v1/invoices?subscription={sub}&status=paid"))
                    .await?;
                if let Some(first) = invoices.last() {
                    let half = first["total"].as_i64().unwrap_or(0) / 2;
                    api.post(
                        "/v1/credit_notes",
                        json!({"invoice": first["id"], "amount": half, "reason": "product_unsatisfactory",
                            "memo": "Half of the first month back: the export feature was unavailable for two weeks.",
                            "refund": true}),
                    )
                    .await?;
                }
            }
            (1, Story::CancelAtPeriodEnd, Some(sub)) => {
                api.post(
                    &format!("/v1/subscriptions/{sub}"),
                    json!({"cancel_at_period_end": true}),
                )
                .await?;
            }
            (1, Story::PauseResume, Some(sub)) => {
                api.post(&format!("/v1/subscriptions/{sub}/pause"), json!({}))
                    .await?;
            }
            (2, Story::PauseResume, Some(sub)) => {
                api.post(&format!("/v1/subscriptions/{sub}/resume"), json!({}))
                    .await?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn first_item(c: &Customer) -> anyhow::Result<String> {
    c.subscription
        .as_ref()
        .and_then(|s| s["items"][0]["id"].as_str())
        .map(str::to_owned)
        .context("the subscription's first item")
}

/// The instant `months` calendar months after `start` (the first of a month, so always valid).
pub fn months_after(start: DateTime<Utc>, months: u32) -> DateTime<Utc> {
    start
        .checked_add_months(chrono::Months::new(months))
        .unwrap_or(start)
}
