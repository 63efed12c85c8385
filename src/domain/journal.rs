//! The double-entry journal for the accounting system. Pure: how each billing record becomes an
//! entry whose debits equal its credits, and how an invoice's revenue is recognised day by day
//! over its lines' service periods.
//!
//! - An invoice finalized: debit receivables (the total), credit deferred revenue (total less
//!   tax) and VAT payable per rate; credit the customer's balance used moves from customer
//!   credit to receivables.
//! - Revenue recognition, per calendar month: deferred revenue to revenue, for the part of
//!   each line's service period in the month (what had elapsed when the invoice was finalized
//!   is recognised then).
//! - A payment: debit cash at the provider, credit receivables.
//! - A credit note: debit sales returns (its amount less tax) and VAT payable per rate; credit
//!   receivables (what it took off an open invoice), cash at the provider (refunded), refunds
//!   payable (a refund not yet confirmed or failed), customer credit (put on the balance) and
//!   cash outside recur (settled out of band).
//! - A write-off (uncollectible): debit bad debts, credit receivables (the amount due).
//! - A void: the finalization reversed.

use super::credit_note::{CreditNote, RefundStatus};
use super::invoice::{Invoice, InvoiceLine, TaxAmount};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The account codes entries post to; every tenant may set its own chart of accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Accounts {
    pub receivables: String,
    /// Cash at a provider posts to `{cash}-{provider}` (`1000-stripe`, `1000-sandbox`,
    /// `1000-out_of_band`).
    pub cash: String,
    pub deferred_revenue: String,
    pub revenue: String,
    pub vat_payable: String,
    pub customer_credit: String,
    pub refunds_payable: String,
    pub sales_returns: String,
    pub bad_debts: String,
}

impl Default for Accounts {
    fn default() -> Self {
        let s = |c: &str| c.to_owned();
        Accounts {
            receivables: s("1200"),
            cash: s("1000"),
            deferred_revenue: s("2400"),
            revenue: s("4000"),
            vat_payable: s("2200"),
            customer_credit: s("2300"),
            refunds_payable: s("2500"),
            sales_returns: s("4900"),
            bad_debts: s("6900"),
        }
    }
}

impl Accounts {
    /// Codes are 1 to 20 letters, digits, `.`, `-`, `_` or `:`.
    pub fn check(&self) -> Result<(), String> {
        for (name, code) in [
            ("receivables", &self.receivables),
            ("cash", &self.cash),
            ("deferred_revenue", &self.deferred_revenue),
            ("revenue", &self.revenue),
            ("vat_payable", &self.vat_payable),
            ("customer_credit", &self.customer_credit),
            ("refunds_payable", &self.refunds_payable),
            ("sales_returns", &self.sales_returns),
            ("bad_debts", &self.bad_debts),
        ] {
            let ok = (1..=20).contains(&code.len())
                && code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
            if !ok {
                return Err(format!(
                    "accounts.{name}: an account code is 1 to 20 letters, digits, . - _ or :"
                ));
            }
        }
        Ok(())
    }

    pub fn cash_at(&self, provider: &str) -> String {
        format!("{}-{provider}", self.cash)
    }
}

/// One side of an entry: `amount` minor units on `account`, positive a debit, negative a
/// credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account: String,
    pub amount: i64,
    /// What the posting is about within the entry (a tax rate, a provider).
    pub detail: String,
}

impl Posting {
    pub fn debit(&self) -> i64 {
        self.amount.max(0)
    }

    pub fn credit(&self) -> i64 {
        (-self.amount).max(0)
    }
}

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Invoice,
    Payment,
    CreditNote,
    WriteOff,
    Void,
    Recognition,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Invoice => "invoice",
            Source::Payment => "payment",
            Source::CreditNote => "credit_note",
            Source::WriteOff => "write_off",
            Source::Void => "void",
            Source::Recognition => "revenue_recognition",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub date: DateTime<Utc>,
    pub currency: String,
    pub source: Source,
    pub source_id: String,
    pub postings: Vec<Posting>,
}

impl Entry {
    fn new(source: Source, source_id: &str, date: DateTime<Utc>, currency: &str) -> Self {
        Entry {
            id: format!("je_{}_{source_id}", source.as_str()),
            date,
            currency: currency.to_owned(),
            source,
            source_id: source_id.to_owned(),
            postings: Vec::new(),
        }
    }

    /// Adds a posting unless it is zero.
    fn post(&mut self, account: &str, amount: i64, detail: &str) {
        if amount != 0 {
            self.postings.push(Posting {
                account: account.to_owned(),
                amount,
                detail: detail.to_owned(),
            });
        }
    }

    /// Debits equal credits.
    pub fn balances(&self) -> bool {
        self.postings
            .iter()
            .map(|p| i128::from(p.amount))
            .sum::<i128>()
            == 0
    }
}

fn rate_detail(t: &TaxAmount) -> String {
    format!("{} {}%", t.display_name, t.percentage.normalize())
}

/// The customer credit an invoice used (negative: credit it added, a negative total).
fn balance_used(inv: &Invoice) -> i64 {
    inv.ending_balance - inv.starting_balance
}

/// Tax on the invoice per rate, and what is left of the tax (rounding kept on the first rate)
/// so the postings sum to `inv.tax` exactly.
fn taxes(inv: &Invoice) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = inv
        .total_tax_amounts
        .iter()
        .map(|t| (rate_detail(t), t.amount))
        .collect();
    let rest = inv.tax - out.iter().map(|(_, a)| a).sum::<i64>();
    match out.first_mut() {
        Some(first) => first.1 += rest,
        None => out.push(("tax".to_owned(), rest)),
    }
    out
}

/// The entry of an invoice's finalization (`None` for a draft).
pub fn finalized(inv: &Invoice, a: &Accounts) -> Option<Entry> {
    let date = inv.finalized_at?;
    let number = inv.number.as_deref().unwrap_or(inv.id.as_str());
    let mut e = Entry::new(Source::Invoice, inv.id.as_str(), date, inv.currency.code());
    e.post(&a.receivables, inv.total, number);
    e.post(&a.deferred_revenue, -(inv.total - inv.tax), number);
    for (detail, tax) in taxes(inv) {
        e.post(&a.vat_payable, -tax, &detail);
    }
    let used = balance_used(inv);
    e.post(&a.customer_credit, used, number);
    e.post(&a.receivables, -used, number);
    Some(e)
}

/// The finalization reversed, on the day the invoice was voided.
pub fn voided(inv: &Invoice, a: &Accounts) -> Option<Entry> {
    let date = inv.voided_at?;
    let mut e = finalized(inv, a)?;
    e.id = format!("je_{}_{}", Source::Void.as_str(), inv.id);
    e.source = Source::Void;
    e.date = date;
    for p in &mut e.postings {
        p.amount = -p.amount;
    }
    Some(e)
}

/// The amount due written off on the day the invoice was marked uncollectible.
pub fn written_off(inv: &Invoice, a: &Accounts) -> Option<Entry> {
    let date = inv.marked_uncollectible_at?;
    let number = inv.number.as_deref().unwrap_or(inv.id.as_str());
    let mut e = Entry::new(Source::WriteOff, inv.id.as_str(), date, inv.currency.code());
    e.post(&a.bad_debts, inv.amount_due, number);
    e.post(&a.receivables, -inv.amount_due, number);
    Some(e)
}

/// A payment that took money (`provider`: where the cash is).
pub fn paid(
    id: &str,
    date: DateTime<Utc>,
    currency: &str,
    amount: i64,
    provider: &str,
    invoice_number: &str,
    a: &Accounts,
) -> Entry {
    let mut e = Entry::new(Source::Payment, id, date, currency);
    e.post(&a.cash_at(provider), amount, provider);
    e.post(&a.receivables, -amount, invoice_number);
    e
}

/// A credit note; `provider` is where its refund goes.
pub fn credited(note: &CreditNote, provider: &str, a: &Accounts) -> Entry {
    let mut e = Entry::new(
        Source::CreditNote,
        note.id.as_str(),
        note.created,
        note.currency.code(),
    );
    let tax: i64 = note.tax_amounts.iter().map(|t| t.amount).sum();
    e.post(&a.sales_returns, note.amount - tax, &note.number);
    for t in &note.tax_amounts {
        e.post(&a.vat_payable, t.amount, &rate_detail(t));
    }
    e.post(&a.receivables, -note.pre_payment_amount, &note.number);
    let refund_to = match note.refund_status {
        RefundStatus::Succeeded => a.cash_at(provider),
        RefundStatus::None | RefundStatus::Pending | RefundStatus::Failed => {
            a.refunds_payable.clone()
        }
    };
    e.post(&refund_to, -note.refund_amount, provider);
    e.post(&a.customer_credit, -note.credit_amount, &note.number);
    e.post(
        &a.cash_at("out_of_band"),
        -note.out_of_band_amount,
        "out_of_band",
    );
    // Whatever the parts do not account for (none when they add up, as recur writes them)
    // stays owed to the customer rather than unbalancing the entry.
    let rest = -e.postings.iter().map(|p| p.amount).sum::<i64>();
    e.post(&a.customer_credit, rest, "unallocated");
    e
}

/// Each line's share of the invoice's revenue (total less tax): its amount net of tax and
/// discount, any rounding difference on the largest line, so the shares add up exactly.
pub fn shares(inv: &Invoice) -> Vec<i64> {
    let mut out: Vec<i64> = inv
        .lines
        .iter()
        .map(|l| l.net_amount - l.discount_amount)
        .collect();
    let rest = (inv.total - inv.tax) - out.iter().sum::<i64>();
    if let Some(i) = (0..out.len()).max_by_key(|&i| out[i].unsigned_abs()) {
        out[i] += rest;
    }
    out
}

/// How much of `share` is recognised by `t`: nothing before the invoice was finalized; from
/// then on, the part of the service period elapsed by `t` (all of it after the period ends,
/// or at once for a period of no length), rounded half away from zero. Recognising the
/// difference between two moments therefore never loses or invents a minor unit.
pub fn recognised_by(
    share: i64,
    line: &InvoiceLine,
    finalized: DateTime<Utc>,
    t: DateTime<Utc>,
) -> i64 {
    if t < finalized {
        return 0;
    }
    let (start, end) = (line.period_start.timestamp(), line.period_end.timestamp());
    if end <= start || t.timestamp() >= end {
        return share;
    }
    let elapsed = i128::from((t.timestamp() - start).max(0));
    let length = i128::from(end - start);
    let num = i128::from(share) * elapsed;
    let half = length / 2;
    let q = if num >= 0 {
        (num + half) / length
    } else {
        (num - half) / length
    };
    i64::try_from(q).unwrap_or(share)
}

/// The revenue of the invoice recognised in `[from, to)`.
pub fn recognised_between(inv: &Invoice, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    let Some(finalized) = inv.finalized_at else {
        return 0;
    };
    inv.lines
        .iter()
        .zip(shares(inv))
        .map(|(l, s)| recognised_by(s, l, finalized, to) - recognised_by(s, l, finalized, from))
        .sum()
}

/// The month's recognition entry of one currency: deferred revenue to revenue.
pub fn recognition(
    month: &str,
    date: DateTime<Utc>,
    currency: &str,
    amount: i64,
    a: &Accounts,
) -> Entry {
    let mut e = Entry::new(
        Source::Recognition,
        &format!("{month}_{currency}"),
        date,
        currency,
    );
    e.source_id = month.to_owned();
    e.post(&a.deferred_revenue, amount, month);
    e.post(&a.revenue, -amount, month);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::sample;
    use proptest::prelude::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    /// A finalized sample invoice reshaped by the generated amounts.
    fn invoice(lines: &[(i64, i64, i64, i64)], tax: &[i64], used: i64) -> Invoice {
        let mut inv = sample::invoice(1, "EUR", crate::domain::customer::TaxExempt::None);
        let template = inv.lines[0].clone();
        inv.lines = lines
            .iter()
            .map(|&(net, discount, start, len)| InvoiceLine {
                net_amount: net,
                discount_amount: discount,
                amount: net,
                period_start: at(start),
                period_end: at(start + len),
                ..template.clone()
            })
            .collect();
        let rate = inv.total_tax_amounts.first().cloned();
        inv.total_tax_amounts = tax
            .iter()
            .filter_map(|&t| rate.clone().map(|r| TaxAmount { amount: t, ..r }))
            .collect();
        inv.tax = tax.iter().sum();
        let net: i64 = lines.iter().map(|l| l.0 - l.1).sum();
        inv.total = net + inv.tax;
        inv.starting_balance = -used;
        inv.ending_balance = 0;
        inv.finalized_at = Some(at(1_800_000_000));
        inv.voided_at = Some(at(1_800_100_000));
        inv.marked_uncollectible_at = Some(at(1_800_200_000));
        inv.amount_due = inv.total - used;
        inv
    }

    fn line() -> impl Strategy<Value = (i64, i64, i64, i64)> {
        (
            -1_000_000i64..10_000_000,
            0i64..1_000,
            1_790_000_000i64..1_810_000_000,
            0i64..100_000_000,
        )
    }

    proptest! {
        /// Every entry an invoice, its void and its write-off make balances, whatever the
        /// lines, rates and credit used.
        #[test]
        fn invoice_entries_balance(lines in prop::collection::vec(line(), 1..6), tax in prop::collection::vec(0i64..100_000, 0..3), used in 0i64..1_000) {
            let inv = invoice(&lines, &tax, used);
            let a = Accounts::default();
            for e in [finalized(&inv, &a), voided(&inv, &a), written_off(&inv, &a)].into_iter().flatten() {
                prop_assert!(e.balances(), "{e:?}");
            }
            let shares = shares(&inv);
            prop_assert_eq!(shares.iter().sum::<i64>(), inv.total - inv.tax);
        }

        /// Recognition month by month adds up to the invoice's revenue, and never recognises
        /// anything before finalization.
        #[test]
        fn recognition_adds_up(lines in prop::collection::vec(line(), 1..6), cuts in prop::collection::vec(1_780_000_000i64..1_920_000_000, 0..12)) {
            let inv = invoice(&lines, &[], 0);
            let mut edges = vec![1_700_000_000i64];
            edges.extend(cuts);
            edges.push(2_000_000_000);
            edges.sort_unstable();
            let total: i64 = edges.windows(2).map(|w| recognised_between(&inv, at(w[0]), at(w[1]))).sum();
            prop_assert_eq!(total, inv.total - inv.tax);
            prop_assert_eq!(recognised_between(&inv, at(1_700_000_000), at(1_799_999_999)), 0);
        }

        #[test]
        fn credit_notes_balance(amount in 0i64..1_000_000, tax in 0i64..1_000, split in 0usize..4, status in 0usize..4) {
            let inv = invoice(&[(amount, 0, 1_800_000_000, 86_400)], &[1], 0);
            let mut note = CreditNote {
                id: crate::domain::ids::CreditNoteId::generate(),
                object: "credit_note",
                number: "INV-1-CN-01".into(),
                invoice: inv.id.clone(),
                customer: inv.customer.clone(),
                currency: inv.currency,
                amount,
                pre_payment_amount: 0,
                refund_amount: 0,
                out_of_band_amount: 0,
                credit_amount: 0,
                reason: crate::domain::credit_note::Reason::Duplicate,
                memo: None,
                lines: Vec::new(),
                tax_amounts: inv.total_tax_amounts.clone(),
                payment: None,
                refund_status: RefundStatus::None,
                refund_ref: None,
                refund_failure: None,
                created: at(1_800_000_000),
                document: Default::default(),
            };
            for t in &mut note.tax_amounts { t.amount = 0; }
            if let Some(t) = note.tax_amounts.first_mut() { t.amount = tax.min(amount); }
            note.pre_payment_amount = 0;
            note.refund_amount = 0;
            note.credit_amount = 0;
            note.out_of_band_amount = 0;
            match split {
                0 => note.pre_payment_amount = amount,
                1 => note.refund_amount = amount,
                2 => note.credit_amount = amount,
                _ => note.out_of_band_amount = amount / 2,
            }
            note.refund_status = [RefundStatus::None, RefundStatus::Pending, RefundStatus::Succeeded, RefundStatus::Failed][status];
            prop_assert!(credited(&note, "stripe", &Accounts::default()).balances());
        }
    }

    #[test]
    fn a_paid_month_of_service() {
        let a = Accounts::default();
        // 100.00 + 23 % VAT for March, finalized on March 1st: receivables 123.00, deferred
        // 100.00, VAT 23.00; by March 16th about half is recognised, all of it by April.
        let march = 1_803_859_200; // 2027-03-01T00:00:00Z
        let mut inv = invoice(&[(10_000, 0, march, 31 * 86_400)], &[2_300], 0);
        inv.finalized_at = Some(at(march));
        let e = finalized(&inv, &a).unwrap();
        let by = |acc: &str| {
            e.postings
                .iter()
                .filter(|p| p.account == acc)
                .map(|p| p.amount)
                .sum::<i64>()
        };
        assert_eq!(
            (by("1200"), by("2400"), by("2200")),
            (12_300, -10_000, -2_300)
        );
        assert_eq!(
            recognised_between(&inv, at(march), at(march + 15 * 86_400)),
            4_839
        );
        assert_eq!(
            recognised_between(&inv, at(march), at(march + 31 * 86_400)),
            10_000
        );
        let p = paid("pay_1", at(march), "EUR", 12_300, "stripe", "INV-1", &a);
        assert!(p.balances() && p.postings[0].account == "1000-stripe");
        assert!(Accounts::default().check().is_ok());
        let bad = Accounts {
            revenue: "4000 revenue".into(),
            ..Accounts::default()
        };
        assert!(bad.check().unwrap_err().contains("accounts.revenue"));
    }
}
