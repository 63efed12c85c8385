//! The summary report's arithmetic: recurring revenue normalised to a month, receivables
//! aged by days past due, and the figures per currency. Pure; the store gathers the inputs.

use super::currency::Currency;
use super::period::{Interval, IntervalUnit};
use super::pricing::{MathError, round_minor};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// What one billing period of `interval` charging `amount` (minor units) brings in a month:
/// yearly ÷ 12, weekly × 52 ÷ 12, daily × 365 ÷ 12, each ÷ the interval count.
pub fn monthly(amount: i64, interval: Interval) -> Decimal {
    let count = Decimal::from(interval.count());
    let per_month = match interval.unit() {
        IntervalUnit::Month => Decimal::ONE,
        IntervalUnit::Year => Decimal::from(12),
        IntervalUnit::Week => Decimal::from(12) / Decimal::from(52),
        IntervalUnit::Day => Decimal::from(12) / Decimal::from(365),
    };
    Decimal::from(amount) / (per_month * count)
}

/// Receivables by how long they are past due, as of a moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Aging {
    /// Not due yet.
    pub current: i64,
    #[serde(rename = "1_30")]
    pub days_1_30: i64,
    #[serde(rename = "31_60")]
    pub days_31_60: i64,
    #[serde(rename = "61_90")]
    pub days_61_90: i64,
    #[serde(rename = "90_plus")]
    pub days_90_plus: i64,
}

impl Aging {
    /// The bucket edges as instants, newest first: an amount due at `due` falls in the first
    /// bucket whose edge is at or before `due` (`current` when due at or after `now`).
    pub fn edges(now: DateTime<Utc>) -> [DateTime<Utc>; 4] {
        [
            now,
            now - Duration::days(30),
            now - Duration::days(60),
            now - Duration::days(90),
        ]
    }

    pub fn total(&self) -> i64 {
        self.current + self.days_1_30 + self.days_31_60 + self.days_61_90 + self.days_90_plus
    }
}

/// The report's figures for one currency, amounts in minor units.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CurrencySummary {
    pub currency: String,
    /// Monthly recurring revenue of active and past-due subscriptions' licensed items at list
    /// price (before discounts and tax; metered items excluded), as of the report's `as_of`.
    pub mrr: i64,
    pub arr: i64,
    pub active_subscriptions: i64,
    pub trialing_subscriptions: i64,
    pub past_due_subscriptions: i64,
    /// Subscriptions started in the window.
    pub new_subscriptions: i64,
    /// Subscriptions that ended in the window.
    pub churned_subscriptions: i64,
    /// Totals of invoices finalized in the window (void ones left out).
    pub billed: i64,
    /// Payments that succeeded in the window (later refunds included: see `refunded`).
    pub collected: i64,
    /// Refunds that succeeded for credit notes issued in the window.
    pub refunded: i64,
    /// Amount due on open invoices as of `as_of`.
    pub outstanding: i64,
    pub aging: Aging,
    pub dunning: Dunning,
    /// Succeeded ÷ finished payment attempts in the window, 4 decimals; `None` without any.
    pub payment_success_rate: Option<Decimal>,
    #[serde(skip)]
    pub attempts_succeeded: i64,
    #[serde(skip)]
    pub attempts_finished: i64,
}

/// How dunning ended in the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Dunning {
    /// Invoices paid in the window after at least one failed attempt.
    pub recovered: i64,
    /// Invoices marked uncollectible in the window.
    pub failed: i64,
}

/// The report being gathered: one [`CurrencySummary`] per currency, in code order.
#[derive(Debug, Default)]
pub struct Summary {
    by_currency: BTreeMap<String, CurrencySummary>,
    mrr: BTreeMap<String, Decimal>,
}

impl Summary {
    pub fn currency(&mut self, c: &str) -> &mut CurrencySummary {
        self.by_currency
            .entry(c.to_owned())
            .or_insert_with(|| CurrencySummary {
                currency: c.to_owned(),
                ..CurrencySummary::default()
            })
    }

    /// Adds one recurring item: `amount` per period of `interval`.
    pub fn add_recurring(&mut self, currency: &Currency, amount: i64, interval: Interval) {
        self.currency(currency.code());
        *self.mrr.entry(currency.code().to_owned()).or_default() += monthly(amount, interval);
    }

    /// The figures per currency, MRR rounded once at the end (half away from zero).
    pub fn finish(mut self) -> Result<Vec<CurrencySummary>, MathError> {
        for (code, mrr) in std::mem::take(&mut self.mrr) {
            let c = self.currency(&code);
            c.mrr = round_minor(mrr)?;
            c.arr = c.mrr.checked_mul(12).ok_or(MathError::Overflow {
                context: "annual recurring revenue",
            })?;
        }
        Ok(self
            .by_currency
            .into_values()
            .map(|mut c| {
                c.payment_success_rate = (c.attempts_finished > 0).then(|| {
                    (Decimal::from(c.attempts_succeeded) / Decimal::from(c.attempts_finished))
                        .round_dp(4)
                });
                c
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn every(unit: IntervalUnit, count: u32) -> Interval {
        Interval::new(unit, count).unwrap()
    }

    #[test]
    fn periods_become_months() {
        assert_eq!(
            monthly(12_000, every(IntervalUnit::Year, 1)),
            Decimal::from(1_000)
        );
        assert_eq!(
            monthly(3_000, every(IntervalUnit::Month, 3)),
            Decimal::from(1_000)
        );
        assert_eq!(
            monthly(1_200, every(IntervalUnit::Week, 1)).round_dp(2),
            Decimal::new(520_000, 2)
        );
        assert_eq!(
            monthly(120, every(IntervalUnit::Day, 1)).round_dp(2),
            Decimal::new(365_000, 2)
        );
    }

    #[test]
    fn mrr_is_rounded_once_per_currency() {
        let eur = Currency::parse("EUR").unwrap();
        let mut s = Summary::default();
        // Three weekly items of 1 cent: 3 × 52/12 = 13 cents, not 3 × round(4.33) = 12.
        for _ in 0..3 {
            s.add_recurring(&eur, 1, every(IntervalUnit::Week, 1));
        }
        s.currency("EUR").attempts_finished = 3;
        s.currency("EUR").attempts_succeeded = 2;
        let out = s.finish().unwrap();
        assert_eq!((out[0].mrr, out[0].arr), (13, 156));
        assert_eq!(out[0].payment_success_rate, Some(Decimal::new(6667, 4)));
    }

    proptest! {
        /// A year of any interval's periods, normalised, is twelve months of MRR: monthly × 12
        /// equals what the periods of one year bill (weeks and days at 52 and 365 a year).
        #[test]
        fn a_year_of_periods_is_twelve_months(amount in 0i64..1_000_000_000, count in 1u32..=3, unit in 0..4) {
            let (unit, per_year) = match unit {
                0 => (IntervalUnit::Day, Decimal::from(365)),
                1 => (IntervalUnit::Week, Decimal::from(52)),
                2 => (IntervalUnit::Month, Decimal::from(12)),
                _ => (IntervalUnit::Year, Decimal::ONE),
            };
            let yearly = Decimal::from(amount) * per_year / Decimal::from(count);
            let m = monthly(amount, every(unit, count));
            prop_assert!((m * Decimal::from(12) - yearly).abs() < Decimal::new(1, 6));
        }

        #[test]
        fn aging_edges_are_ordered(secs in 0i64..4_000_000_000) {
            let now = DateTime::from_timestamp(secs, 0).unwrap();
            let e = Aging::edges(now);
            prop_assert!(e.windows(2).all(|w| w[0] > w[1]));
        }
    }
}
