//! Every kind of bad input gets a 4xx in the contract's error shape and writes nothing.

use crate::both;
use chrono::{Duration, Utc};
use reqwest::Method;
use serde_json::json;

struct Case {
    method: Method,
    path: &'static str,
    body: &'static str,
    status: u16,
    code: &'static str,
    param: Option<&'static str>,
}

const fn case(
    method: Method,
    path: &'static str,
    body: &'static str,
    status: u16,
    code: &'static str,
    param: Option<&'static str>,
) -> Case {
    Case {
        method,
        path,
        body,
        status,
        code,
        param,
    }
}

const POST: Method = Method::POST;
const PATCH: Method = Method::PATCH;
const GET: Method = Method::GET;
const INVALID: &str = "parameter_invalid";
const MISSING: &str = "parameter_missing";

fn cases() -> Vec<Case> {
    vec![
        // customers
        case(POST, "/v1/customers", "not json", 400, "invalid_json", None),
        case(POST, "/v1/customers", "[1, 2]", 400, "invalid_json", None),
        case(
            POST,
            "/v1/customers",
            r#"{"name": "x""#,
            400,
            "invalid_json",
            None,
        ),
        case(POST, "/v1/customers", "{}", 400, MISSING, Some("name")),
        case(
            POST,
            "/v1/customers",
            r#"{"name": ""}"#,
            400,
            INVALID,
            Some("name"),
        ),
        case(
            POST,
            "/v1/customers",
            r#"{"name": 5}"#,
            400,
            INVALID,
            Some("name"),
        ),
        case(
            POST,
            "/v1/customers",
            r#"{"name": "x\u0000y"}"#,
            400,
            INVALID,
            Some("name"),
        ),
        case(
            POST,
            "/v1/customers",
            r#"{"name": "x", "email": "not-an-email"}"#,
            400,
            INVALID,
            Some("email"),
        ),
        case(
            POST,
            "/v1/customers",
            r#"{"name": "x", "currency": "EURO"}"#,
            400,
            INVALID,
            Some("currency"),
        ),
        case(
            POST,
            "/v1/customers",
            r#"{"name": "x", "currency": "eur"}"#,
            400,
            INVALID,
            Some("currency"),
        ),
        case(
            POST,
            "/v1/customers",
            r#"{"name": "x", "address": {"country": "XX"}}"#,
            400,
            INVALID,
            Some("address.country"),
        ),
        case(
            POST,
            "/v1/customers",
            r#"{"name": "x", "address": {"planet": "Mars"}}"#,
            400,
            "parameter_unknown",
            Some("address.planet"),
        ),
        case(
            POST,
            "/v1/customers",
            r#"{"name": "x", "locale": "english"}"#,
            400,
            INVALID,
            Some("locale"),
        ),
        case(
            POST,
            "/v1/customers",
            r#"{"name": "x", "tax_exempt": "sometimes"}"#,
            400,
            INVALID,
            Some("tax_exempt"),
        ),
        case(
            POST,
            "/v1/customers",
            r#"{"name": "x", "colour": "red"}"#,
            400,
            "parameter_unknown",
            Some("colour"),
        ),
        case(
            POST,
            "/v1/customers",
            r#"{"name": "x", "payment_method": {"provider": "sandbox", "token": "4242424242424242"}}"#,
            400,
            INVALID,
            Some("payment_method"),
        ),
        case(
            POST,
            "/v1/customers",
            r#"{"name": "x", "payment_method": {"provider": "paypal", "token": "tok_visa"}}"#,
            400,
            INVALID,
            Some("payment_method"),
        ),
        case(
            POST,
            "/v1/customers",
            r#"{"name": "x", "tax_ids": [{"type": "EU VAT", "value": "1"}]}"#,
            400,
            INVALID,
            Some("tax_ids[0]"),
        ),
        case(
            PATCH,
            "/v1/customers/{cus}",
            r#"{"email": "bad"}"#,
            400,
            INVALID,
            Some("email"),
        ),
        case(
            PATCH,
            "/v1/customers/{cus}",
            r#"{"name": null}"#,
            400,
            INVALID,
            Some("name"),
        ),
        case(
            PATCH,
            "/v1/customers/{missing_cus}",
            r#"{"name": "x"}"#,
            404,
            "resource_missing",
            None,
        ),
        case(
            GET,
            "/v1/customers/nonsense",
            "",
            404,
            "resource_missing",
            None,
        ),
        case(
            GET,
            "/v1/customers?limit=0",
            "",
            400,
            INVALID,
            Some("limit"),
        ),
        case(
            GET,
            "/v1/customers?limit=abc",
            "",
            400,
            INVALID,
            Some("limit"),
        ),
        case(
            GET,
            "/v1/customers?foo=1",
            "",
            400,
            "parameter_unknown",
            Some("foo"),
        ),
        // prices
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR"}"#,
            400,
            MISSING,
            Some("unit_amount"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"currency": "EUR", "unit_amount": 1}"#,
            400,
            MISSING,
            Some("product"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "XYZ", "unit_amount": 1}"#,
            400,
            INVALID,
            Some("currency"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "unit_amount": -5}"#,
            400,
            INVALID,
            Some("unit_amount"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "unit_amount": 1e30}"#,
            400,
            INVALID,
            Some("unit_amount"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "unit_amount": 99999999999999999999}"#,
            400,
            INVALID,
            Some("unit_amount"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "unit_amount_decimal": "abc"}"#,
            400,
            INVALID,
            Some("unit_amount_decimal"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "unit_amount": 1, "unit_amount_decimal": "1"}"#,
            400,
            INVALID,
            Some("unit_amount"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "unit_amount": 1, "recurring": {"interval": "fortnight"}}"#,
            400,
            INVALID,
            Some("recurring.interval"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "unit_amount": 1, "recurring": {"interval": "month", "interval_count": 0}}"#,
            400,
            INVALID,
            Some("recurring.interval_count"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "unit_amount": 1, "recurring": {"interval": "month", "interval_count": 37}}"#,
            400,
            INVALID,
            Some("recurring.interval_count"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "unit_amount": 1, "recurring": {"interval": "month", "usage_type": "sometimes"}}"#,
            400,
            INVALID,
            Some("recurring.usage_type"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "billing_scheme": "tiered", "tiers_mode": "graduated", "tiers": [{"up_to": 10, "unit_amount": 5}, {"up_to": 5, "unit_amount": 4}, {"up_to": "inf", "unit_amount": 3}]}"#,
            400,
            INVALID,
            Some("tiers"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "billing_scheme": "tiered", "tiers_mode": "graduated", "tiers": [{"up_to": 10, "unit_amount": 5}]}"#,
            400,
            INVALID,
            Some("tiers"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "billing_scheme": "tiered", "tiers": [{"up_to": "inf", "unit_amount": 5}]}"#,
            400,
            MISSING,
            Some("tiers_mode"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "billing_scheme": "tiered", "tiers_mode": "volume", "unit_amount": 5, "tiers": [{"up_to": "inf", "unit_amount": 5}]}"#,
            400,
            INVALID,
            Some("unit_amount"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "billing_scheme": "tiered", "tiers_mode": "volume", "tiers": [{"up_to": -1, "unit_amount": 5}]}"#,
            400,
            INVALID,
            Some("tiers[0].up_to"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "billing_scheme": "tiered", "tiers_mode": "volume", "tiers": [{"up_to": "1e3", "unit_amount": 5}, {"up_to": "inf", "unit_amount": 4}]}"#,
            400,
            INVALID,
            Some("tiers[0].up_to"),
        ),
        case(
            POST,
            "/v1/prices",
            r#"{"product": "x", "currency": "EUR", "billing_scheme": "flat", "unit_amount": 5}"#,
            400,
            INVALID,
            Some("billing_scheme"),
        ),
        // tax rates and coupons
        case(
            POST,
            "/v1/tax_rates",
            r#"{"display_name": "VAT", "percentage": "150"}"#,
            400,
            INVALID,
            Some("percentage"),
        ),
        case(
            POST,
            "/v1/tax_rates",
            r#"{"display_name": "VAT", "percentage": "-1"}"#,
            400,
            INVALID,
            Some("percentage"),
        ),
        case(
            POST,
            "/v1/tax_rates",
            r#"{"display_name": "VAT", "percentage": 23}"#,
            400,
            INVALID,
            Some("percentage"),
        ),
        case(
            POST,
            "/v1/tax_rates",
            r#"{"display_name": "VAT", "percentage": "23", "country": "Poland"}"#,
            400,
            INVALID,
            Some("country"),
        ),
        case(
            POST,
            "/v1/tax_rates",
            r#"{"percentage": "23"}"#,
            400,
            MISSING,
            Some("display_name"),
        ),
        case(
            POST,
            "/v1/coupons",
            r#"{"percent_off": 0, "duration": "once"}"#,
            400,
            INVALID,
            Some("percent_off"),
        ),
        case(
            POST,
            "/v1/coupons",
            r#"{"percent_off": 101, "duration": "once"}"#,
            400,
            INVALID,
            Some("percent_off"),
        ),
        case(
            POST,
            "/v1/coupons",
            r#"{"amount_off": 500, "duration": "once"}"#,
            400,
            MISSING,
            Some("currency"),
        ),
        case(
            POST,
            "/v1/coupons",
            r#"{"percent_off": 10, "duration": "repeating"}"#,
            400,
            MISSING,
            Some("duration_in_months"),
        ),
        case(
            POST,
            "/v1/coupons",
            r#"{"percent_off": 10, "amount_off": 5, "currency": "EUR", "duration": "once"}"#,
            400,
            INVALID,
            Some("amount_off"),
        ),
        case(
            POST,
            "/v1/coupons",
            r#"{"percent_off": 10, "duration": "sometimes"}"#,
            400,
            INVALID,
            Some("duration"),
        ),
        // subscriptions
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{missing_cus}", "items": [{"price": "{price}"}]}"#,
            400,
            "resource_missing",
            Some("customer"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "cus_1", "items": [{"price": "{price}"}]}"#,
            400,
            INVALID,
            Some("customer"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{missing_price}"}]}"#,
            400,
            "resource_missing",
            Some("items[0].price"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": []}"#,
            400,
            MISSING,
            Some("items"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}"}"#,
            400,
            MISSING,
            Some("items"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{price}", "quantity": -1}]}"#,
            400,
            INVALID,
            Some("items[0].quantity"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{price}", "quantity": 99999999999}]}"#,
            400,
            INVALID,
            Some("items[0].quantity"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{price_usd}"}]}"#,
            422,
            "currency_mismatch",
            Some("items[0].price"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus_none}", "items": [{"price": "{price}"}, {"price": "{price_usd}"}]}"#,
            422,
            "currency_mismatch",
            Some("items[1].price"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{price}"}, {"price": "{price}"}]}"#,
            400,
            INVALID,
            Some("items[1].price"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{once}"}]}"#,
            422,
            "price_not_recurring",
            Some("items[0].price"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{price}"}, {"price": "{yearly}"}]}"#,
            422,
            "interval_mismatch",
            Some("items[1].price"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{price}"}], "trial_period_days": 10000}"#,
            400,
            INVALID,
            Some("trial_period_days"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{price}"}], "billing_cycle_anchor": "{past}"}"#,
            400,
            INVALID,
            Some("billing_cycle_anchor"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{price}"}], "billing_cycle_anchor": "tomorrow"}"#,
            400,
            INVALID,
            Some("billing_cycle_anchor"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{price}"}], "collection_method": "send_invoice"}"#,
            400,
            MISSING,
            Some("days_until_due"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{price}"}], "coupon": "{missing_coupon}"}"#,
            400,
            "resource_missing",
            Some("coupon"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{price}"}], "coupon": "{coupon_usd}"}"#,
            422,
            "currency_mismatch",
            Some("coupon"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{price}"}], "default_tax_rates": ["{missing_txr}"]}"#,
            400,
            "resource_missing",
            Some("default_tax_rates[0]"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{price}"}], "default_tax_rates": ["{txr_incl}"]}"#,
            422,
            "tax_behavior_mismatch",
            Some("items[0].price"),
        ),
        case(
            POST,
            "/v1/subscriptions",
            r#"{"customer": "{cus}", "items": [{"price": "{price}"}], "proration_behavior": "maybe"}"#,
            400,
            INVALID,
            Some("proration_behavior"),
        ),
        case(
            PATCH,
            "/v1/subscriptions/{sub}",
            r#"{"items": [{"id": "{missing_item}", "quantity": 2}]}"#,
            400,
            "resource_missing",
            Some("items"),
        ),
        case(
            PATCH,
            "/v1/subscriptions/{sub}",
            "{}",
            400,
            MISSING,
            Some("items"),
        ),
        case(
            PATCH,
            "/v1/subscriptions/{sub}",
            r#"{"items": [{"id": "{licensed_item}", "quantity": -3}]}"#,
            400,
            INVALID,
            Some("items[0].quantity"),
        ),
        case(
            PATCH,
            "/v1/subscriptions/{sub}",
            r#"{"items": [{"price": "{price_usd}"}]}"#,
            422,
            "currency_mismatch",
            Some("items[1].price"),
        ),
        case(
            PATCH,
            "/v1/subscriptions/{canceled}",
            r#"{"items": [{"id": "{licensed_item}", "quantity": 2}]}"#,
            422,
            "subscription_invalid_state",
            None,
        ),
        case(
            POST,
            "/v1/subscriptions/{sub}/cancel",
            r#"{"at_period_end": "yes"}"#,
            400,
            INVALID,
            Some("at_period_end"),
        ),
        case(
            POST,
            "/v1/subscriptions/{missing_sub}/cancel",
            "{}",
            404,
            "resource_missing",
            None,
        ),
        case(
            POST,
            "/v1/subscriptions/{sub}/resume",
            "{}",
            422,
            "subscription_invalid_state",
            None,
        ),
        case(
            GET,
            "/v1/subscriptions?status=bogus",
            "",
            400,
            INVALID,
            Some("status"),
        ),
        case(
            GET,
            "/v1/subscriptions?customer=bogus",
            "",
            400,
            INVALID,
            Some("customer"),
        ),
        // usage records and events
        case(
            POST,
            "/v1/usage_records",
            r#"{"subscription_item": "{metered_item}", "quantity": -1}"#,
            400,
            INVALID,
            Some("quantity"),
        ),
        case(
            POST,
            "/v1/usage_records",
            r#"{"subscription_item": "{metered_item}"}"#,
            400,
            MISSING,
            Some("quantity"),
        ),
        case(
            POST,
            "/v1/usage_records",
            r#"{"subscription_item": "{metered_item}", "quantity": 1, "timestamp": "{future}"}"#,
            400,
            INVALID,
            Some("timestamp"),
        ),
        case(
            POST,
            "/v1/usage_records",
            r#"{"subscription_item": "{missing_item}", "quantity": 1}"#,
            400,
            "resource_missing",
            Some("subscription_item"),
        ),
        case(
            POST,
            "/v1/usage_records",
            r#"{"subscription_item": "{metered_item}", "quantity": 1, "action": "double"}"#,
            400,
            INVALID,
            Some("action"),
        ),
        case(
            POST,
            "/v1/usage_records",
            r#"{"subscription_item": "{licensed_item}", "quantity": 1}"#,
            422,
            "price_not_metered",
            Some("subscription_item"),
        ),
        case(
            GET,
            "/v1/events?limit=1000",
            "",
            400,
            INVALID,
            Some("limit"),
        ),
        // invoices and the test clock
        case(
            GET,
            "/v1/invoices?status=bogus",
            "",
            400,
            INVALID,
            Some("status"),
        ),
        case(
            GET,
            "/v1/invoices?subscription=sub_1",
            "",
            400,
            INVALID,
            Some("subscription"),
        ),
        case(
            GET,
            "/v1/invoices/nonsense",
            "",
            404,
            "resource_missing",
            None,
        ),
        case(
            POST,
            "/v1/invoices/{missing_inv}/void",
            "{}",
            404,
            "resource_missing",
            None,
        ),
        case(
            POST,
            "/v1/invoices/{inv}/void",
            r#"{"reason": "oops"}"#,
            400,
            "parameter_unknown",
            Some("reason"),
        ),
        case(
            POST,
            "/v1/invoices/{paid_inv}/mark_uncollectible",
            "{}",
            422,
            "invoice_invalid_state",
            None,
        ),
        case(
            POST,
            "/v1/invoices/{paid_inv}/void",
            "{}",
            422,
            "invoice_invalid_state",
            None,
        ),
        case(
            POST,
            "/v1/test_clock/advance",
            "{}",
            400,
            MISSING,
            Some("to"),
        ),
        case(
            POST,
            "/v1/test_clock/advance",
            r#"{"to": "yesterday"}"#,
            400,
            INVALID,
            Some("to"),
        ),
        case(
            POST,
            "/v1/test_clock/advance",
            r#"{"to": 1767225600}"#,
            400,
            INVALID,
            Some("to"),
        ),
        case(
            POST,
            "/v1/test_clock/advance",
            r#"{"to": "{past}"}"#,
            400,
            INVALID,
            Some("to"),
        ),
        case(
            POST,
            "/v1/test_clock/advance",
            r#"{"to": "2099-01-01T00:00:00Z"}"#,
            400,
            INVALID,
            Some("to"),
        ),
        case(GET, "/v1/nowhere", "", 404, "route_not_found", None),
    ]
}

both!(
    async fn bad_input_is_refused_and_writes_nothing(app: TestApp) {
        let cus = app.customer().await;
        let cus_none = app
            .post("/v1/customers", json!({"name": "No currency"}))
            .await
            .ok()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let price = app.monthly_price(1000).await;
        let price_usd = app.post("/v1/prices", json!({"product": "x", "currency": "USD", "unit_amount": 1, "recurring": {"interval": "month"}})).await.ok();
        let yearly = app.post("/v1/prices", json!({"product": "y", "currency": "EUR", "unit_amount": 1, "recurring": {"interval": "year"}})).await.ok();
        let once = app
            .post(
                "/v1/prices",
                json!({"product": "setup", "currency": "EUR", "unit_amount": 1}),
            )
            .await
            .ok();
        let metered = app.metered_price().await;
        let sub = app.subscription(&cus, &price).await;
        let metered_sub = app.subscription(&cus, &metered).await;
        let canceled = app.subscription(&cus, &price).await;
        app.post(
            &format!(
                "/v1/subscriptions/{}/cancel",
                canceled["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await
        .ok();
        let txr_incl = app
            .post(
                "/v1/tax_rates",
                json!({"display_name": "VAT", "percentage": "23", "inclusive": true}),
            )
            .await
            .ok();
        let coupon_usd = app
            .post(
                "/v1/coupons",
                json!({"amount_off": 100, "currency": "USD", "duration": "once"}),
            )
            .await
            .ok();
        let s = |v: &serde_json::Value| v["id"].as_str().unwrap().to_owned();
        let inv = app.invoices_of(&s(&sub)).await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let free = app.monthly_price(0).await;
        let free_sub = app.subscription(&cus, &free).await;
        let paid_inv = app.invoices_of(&s(&free_sub)).await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let fill = |t: &str| {
            t.replace("{cus}", &cus)
                .replace("{cus_none}", &cus_none)
                .replace(
                    "{missing_cus}",
                    &recur::domain::ids::CustomerId::generate().to_string(),
                )
                .replace(
                    "{missing_price}",
                    &recur::domain::ids::PriceId::generate().to_string(),
                )
                .replace(
                    "{missing_coupon}",
                    &recur::domain::ids::CouponId::generate().to_string(),
                )
                .replace(
                    "{missing_txr}",
                    &recur::domain::ids::TaxRateId::generate().to_string(),
                )
                .replace(
                    "{missing_sub}",
                    &recur::domain::ids::SubscriptionId::generate().to_string(),
                )
                .replace(
                    "{missing_item}",
                    &recur::domain::ids::SubscriptionItemId::generate().to_string(),
                )
                .replace(
                    "{missing_inv}",
                    &recur::domain::ids::InvoiceId::generate().to_string(),
                )
                .replace("{paid_inv}", &paid_inv)
                .replace("{inv}", &inv)
                .replace("{price_usd}", &s(&price_usd))
                .replace("{price}", &price)
                .replace("{yearly}", &s(&yearly))
                .replace("{once}", &s(&once))
                .replace("{sub}", &s(&sub))
                .replace("{canceled}", &s(&canceled))
                .replace("{licensed_item}", sub["items"][0]["id"].as_str().unwrap())
                .replace(
                    "{metered_item}",
                    metered_sub["items"][0]["id"].as_str().unwrap(),
                )
                .replace("{txr_incl}", &s(&txr_incl))
                .replace("{coupon_usd}", &s(&coupon_usd))
                .replace("{past}", &(Utc::now() - Duration::days(3)).to_rfc3339())
                .replace("{future}", &(Utc::now() + Duration::days(3)).to_rfc3339())
        };
        let all = cases();
        assert!(all.len() >= 40);
        let before = app.row_counts().await;
        for c in &all {
            let path = fill(c.path);
            let body = (!c.body.is_empty()).then(|| fill(c.body));
            let r = app
                .send(
                    c.method.clone(),
                    &path,
                    Some(&app.key),
                    None,
                    body.as_deref(),
                )
                .await;
            let what = format!("{} {} {}", c.method, path, body.as_deref().unwrap_or(""));
            assert_eq!(r.status.as_u16(), c.status, "{what}: {}", r.body);
            assert_eq!(r.error_code(), c.code, "{what}: {}", r.body);
            assert!(
                r.body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{what}"
            );
            if let Some(param) = c.param {
                assert_eq!(r.body["error"]["param"], param, "{what}: {}", r.body);
            }
            assert_eq!(app.row_counts().await, before, "{what} wrote something");
        }
    }
);

both!(
    async fn oversized_bodies_and_bad_idempotency_keys_write_nothing(app: TestApp) {
        let before = app.row_counts().await;
        let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(2 * 1024 * 1024));
        // The server answers 413 from the Content-Length alone; the client may still be writing
        // and see the connection close instead. Either way nothing may be written.
        let sent = reqwest::Client::new()
            .post(format!("{}/v1/customers", app.base))
            .bearer_auth(&app.key)
            .header("content-type", "application/json")
            .body(huge)
            .send()
            .await;
        if let Ok(r) = sent {
            assert_eq!(r.status().as_u16(), 413);
        }
        let long_key = "k".repeat(300);
        let r = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some(&long_key),
                Some(r#"{"name": "x"}"#),
            )
            .await;
        assert_eq!(r.status.as_u16(), 400);
        assert_eq!(r.body["error"]["param"], "Idempotency-Key");
        assert_eq!(app.row_counts().await, before);
    }
);
