//! A sample invoice, customer and seller for `recur bench pdf` and the renderer's tests:
//! Latin Extended names, two tax rates, a proration credit and usage, any number of lines.

use crate::domain::contact::{Address, Country, Email, Locale, TaxId};
use crate::domain::currency::Currency;
use crate::domain::customer::{Customer, TaxExempt};
use crate::domain::ids::{CustomerId, InvoiceId, InvoiceLineId, TaxRateId};
use crate::domain::invoice::{
    BillingReason, Invoice, InvoiceLine, InvoiceStatus, LineKind, TaxAmount,
};
use crate::domain::seller::{BankAccount, Iban, InvoiceSettings};
use crate::domain::subscription::CollectionMethod;
use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn id<T>(
    parse: fn(&str) -> Result<T, crate::domain::ids::InvalidId>,
    prefix: &str,
    n: usize,
) -> Option<T> {
    parse(&format!("{prefix}_{n:032x}")).ok()
}

pub fn seller() -> InvoiceSettings {
    InvoiceSettings {
        legal_name: Some("Żółta Łódź Software sp. z o.o.".into()),
        address: Some(Address {
            line1: Some("ul. Świętokrzyska 12".into()),
            line2: None,
            city: Some("Warszawa".into()),
            postal_code: Some("00-916".into()),
            state: None,
            country: Country::parse("PL").ok(),
        }),
        tax_ids: TaxId::parse("eu_vat", "PL5260001246").into_iter().collect(),
        email: Email::parse("billing@zolta-lodz.example").ok(),
        phone: Some("+48 22 123 45 67".into()),
        bank: Some(BankAccount {
            iban: Iban::parse("PL61109010140000071219812874").ok(),
            bic: Some("WBKPPLPP".into()),
            account_number: None,
        }),
        payment_terms: Some(
            "Payment within 14 days. Late payments bear statutory interest.".into(),
        ),
        footer: None,
        locale: Locale::parse("en").ok(),
        accent_color: Some("#1f4e79".into()),
        logo: None,
        notifications: Default::default(),
        payment_method_url: None,
        accounts: Default::default(),
    }
}

pub fn customer(locale: &str, exempt: TaxExempt) -> Customer {
    let t = at(2026, 1, 1);
    Customer {
        id: id(CustomerId::parse, "cus", 1).unwrap_or_else(CustomerId::generate),
        object: "customer",
        external_id: None,
        name: "Müller & Søn Straße GmbH — Zażółć gęślą jaźń".into(),
        email: Email::parse("ap@mueller.example").ok(),
        currency: None,
        locale: Locale::parse(locale).ok(),
        address: Some(Address {
            line1: Some("Königstraße 5".into()),
            line2: Some("3. OG".into()),
            city: Some("München".into()),
            postal_code: Some("80331".into()),
            state: None,
            country: Country::parse("DE").ok(),
        }),
        tax_ids: TaxId::parse("eu_vat", "DE129273398").into_iter().collect(),
        tax_exempt: exempt,
        payment_method: None,
        balance: 0,
        created: t,
        updated: t,
        erased_at: None,
    }
}

/// An open invoice with `lines` lines (at least 3 kinds: plan, proration credit, usage),
/// totals that add up, taxed at 23 % and 8 % unless `exempt` says otherwise.
pub fn invoice(lines: usize, currency: &str, exempt: TaxExempt) -> Invoice {
    let cur = Currency::parse(currency).unwrap_or_else(|_| {
        Currency::parse("EUR").unwrap_or_else(|e| unreachable!("EUR is a currency: {e}"))
    });
    let start = at(2026, 3, 1);
    let end = at(2026, 4, 1);
    let unit = 10_i64.pow(cur.exponent());
    let rates = [
        (id(TaxRateId::parse, "txr", 1), Decimal::from(23)),
        (id(TaxRateId::parse, "txr", 2), Decimal::from(8)),
    ];
    let mut out = Vec::with_capacity(lines);
    for i in 0..lines.max(1) {
        let (kind, qty, price, description) = match i % 3 {
            0 => (
                LineKind::Subscription,
                3_u64,
                1_999 * unit / 100,
                format!("Pro plan — seat licence ({})", i + 1),
            ),
            1 => (
                LineKind::Proration,
                1,
                -500 * unit / 100,
                format!("Unused time on Starter plan ({})", i + 1),
            ),
            _ => (
                LineKind::Usage,
                12_500,
                unit / 100,
                format!("API calls — żądania ({})", i + 1),
            ),
        };
        let amount = price * qty as i64;
        out.push(InvoiceLine {
            id: id(InvoiceLineId::parse, "il", i + 1).unwrap_or_else(InvoiceLineId::generate),
            kind,
            description,
            price: None,
            subscription_item: None,
            quantity: qty,
            unit_amount_decimal: Some(Decimal::from(price)),
            amount,
            net_amount: amount,
            discount_amount: 0,
            period_start: start,
            period_end: if kind == LineKind::Proration {
                start + Duration::days(15)
            } else {
                end
            },
            proration: kind == LineKind::Proration,
            tax_rates: rates[i % 2].0.iter().cloned().collect(),
        });
    }
    let subtotal: i64 = out.iter().map(|l| l.amount).sum();
    let taxes: Vec<TaxAmount> = if exempt == TaxExempt::None {
        rates
            .iter()
            .enumerate()
            .filter_map(|(r, (rid, pct))| {
                let taxable: i64 = out
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % 2 == r)
                    .map(|(_, l)| l.amount)
                    .sum();
                let tax = (Decimal::from(taxable) * pct / Decimal::from(100))
                    .round_dp_with_strategy(
                        0,
                        rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                    );
                Some(TaxAmount {
                    tax_rate: rid.clone()?,
                    display_name: "VAT".into(),
                    percentage: *pct,
                    inclusive: false,
                    taxable_amount: taxable,
                    amount: i64::try_from(tax.mantissa()).ok()?,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let tax: i64 = taxes.iter().map(|t| t.amount).sum();
    let total = subtotal + tax;
    Invoice {
        id: id(InvoiceId::parse, "in", 1).unwrap_or_else(InvoiceId::generate),
        object: "invoice",
        number: Some("INV-2026-000042".into()),
        customer: id(CustomerId::parse, "cus", 1).unwrap_or_else(CustomerId::generate),
        subscription: None,
        status: InvoiceStatus::Open,
        billing_reason: BillingReason::SubscriptionCycle,
        collection_method: CollectionMethod::SendInvoice,
        currency: cur,
        period_start: start,
        period_end: end,
        lines: out,
        subtotal,
        discount: 0,
        tax,
        total,
        total_tax_amounts: taxes,
        tax_exempt: exempt,
        amount_paid: 0,
        amount_credited: 0,
        amount_refunded: 0,
        amount_due: total,
        starting_balance: 0,
        ending_balance: 0,
        attempt_count: 0,
        next_payment_attempt: None,
        due_date: Some(start + Duration::days(14)),
        created: start,
        finalized_at: Some(start),
        paid_at: None,
        voided_at: None,
        marked_uncollectible_at: None,
        first_failed_at: None,
        awaiting_payment_method: false,
        document: Default::default(),
        hosted_invoice_url: None,
    }
}
