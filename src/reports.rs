//! The summary report as a terminal table: one column per currency, amounts in major units.

use crate::domain::currency::Currency;
use crate::domain::report::CurrencySummary;
use crate::exports::major;
use crate::services::reports::SummaryReport;
use std::fmt::Write;

type Figure = fn(&CurrencySummary, Option<&Currency>) -> String;

/// An amount in major units (minor units if the stored code were unknown).
fn m(minor: i64, currency: Option<&Currency>) -> String {
    currency.map_or_else(|| minor.to_string(), |c| major(minor, c))
}

const ROWS: &[(&str, Figure)] = &[
    ("MRR", |c, cur| m(c.mrr, cur)),
    ("ARR", |c, cur| m(c.arr, cur)),
    ("active subscriptions", |c, _| {
        c.active_subscriptions.to_string()
    }),
    ("trialing", |c, _| c.trialing_subscriptions.to_string()),
    ("past due", |c, _| c.past_due_subscriptions.to_string()),
    ("new", |c, _| c.new_subscriptions.to_string()),
    ("churned", |c, _| c.churned_subscriptions.to_string()),
    ("billed", |c, cur| m(c.billed, cur)),
    ("collected", |c, cur| m(c.collected, cur)),
    ("refunded", |c, cur| m(c.refunded, cur)),
    ("outstanding", |c, cur| m(c.outstanding, cur)),
    ("  current", |c, cur| m(c.aging.current, cur)),
    ("  1-30 days", |c, cur| m(c.aging.days_1_30, cur)),
    ("  31-60 days", |c, cur| m(c.aging.days_31_60, cur)),
    ("  61-90 days", |c, cur| m(c.aging.days_61_90, cur)),
    ("  90+ days", |c, cur| m(c.aging.days_90_plus, cur)),
    ("dunning recovered", |c, _| c.dunning.recovered.to_string()),
    ("dunning failed", |c, _| c.dunning.failed.to_string()),
    ("payment success", |c, _| {
        c.payment_success_rate.map_or("-".to_owned(), |r| {
            format!("{}%", (r * rust_decimal::Decimal::from(100)).round_dp(1))
        })
    }),
];

/// The report of one tenant as text: a heading, then a row per figure.
pub fn table(tenant_name: &str, r: &SummaryReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{tenant_name}: {} to {} ({}), as of {}",
        r.from,
        r.to,
        r.timezone,
        r.as_of.format("%Y-%m-%d %H:%M UTC")
    );
    if r.currencies.is_empty() {
        let _ = writeln!(out, "  nothing billed or subscribed yet\n");
        return out;
    }
    let currencies: Vec<Option<Currency>> = r
        .currencies
        .iter()
        .map(|c| Currency::parse(&c.currency).ok())
        .collect();
    let cells: Vec<Vec<String>> = ROWS
        .iter()
        .map(|(_, f)| {
            r.currencies
                .iter()
                .zip(&currencies)
                .map(|(c, cur)| f(c, cur.as_ref()))
                .collect()
        })
        .collect();
    let label = ROWS.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let width = cells
        .iter()
        .flatten()
        .map(String::len)
        .chain(r.currencies.iter().map(|c| c.currency.len()))
        .max()
        .unwrap_or(0);
    let _ = write!(out, "  {:label$}", "");
    for c in &r.currencies {
        let _ = write!(out, "  {:>width$}", c.currency);
    }
    out.push('\n');
    for ((name, _), row) in ROWS.iter().zip(&cells) {
        let _ = write!(out, "  {name:label$}");
        for cell in row {
            let _ = write!(out, "  {cell:>width$}");
        }
        out.push('\n');
    }
    out.push('\n');
    out
}
