//! Credit notes: a correction to a finalized invoice. On an open invoice it lowers what is due;
//! on a paid one it gives money back through the provider (`refund: true`) or records that it
//! was settled outside recur. Amounts are tax-inclusive, like the invoice's `total`.

use super::currency::Currency;
use super::ids::{CreditNoteId, CustomerId, InvoiceId, InvoiceLineId, PaymentId};
use super::invoice::{Invoice, InvoiceLine, InvoiceStatus, TaxAmount};
use super::pricing::prorate;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Stripe's credit note reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Duplicate,
    Fraudulent,
    OrderChange,
    ProductUnsatisfactory,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Duplicate => "duplicate",
            Reason::Fraudulent => "fraudulent",
            Reason::OrderChange => "order_change",
            Reason::ProductUnsatisfactory => "product_unsatisfactory",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "duplicate" => Some(Reason::Duplicate),
            "fraudulent" => Some(Reason::Fraudulent),
            "order_change" => Some(Reason::OrderChange),
            "product_unsatisfactory" => Some(Reason::ProductUnsatisfactory),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RefundStatus {
    /// No refund asked for.
    None,
    /// Committed, the provider not answered yet (or no definite answer: sent again with the
    /// same key).
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::None => "none",
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(RefundStatus::None),
            "pending" => Some(RefundStatus::Pending),
            "succeeded" => Some(RefundStatus::Succeeded),
            "failed" => Some(RefundStatus::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditNoteLine {
    pub invoice_line: InvoiceLineId,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreditNote {
    pub id: CreditNoteId,
    pub object: &'static str,
    /// `{invoice number}-CN-{nn}`.
    pub number: String,
    pub invoice: InvoiceId,
    pub customer: CustomerId,
    pub currency: Currency,
    pub amount: i64,
    /// Lowered the invoice's `amount_due` (open invoices).
    pub pre_payment_amount: i64,
    /// Given back through the payment provider.
    pub refund_amount: i64,
    /// Settled outside recur (paid invoices, no refund, not to the balance).
    pub out_of_band_amount: i64,
    /// Put on the customer's credit balance (paid invoices, `credit_to_balance: true`).
    pub credit_amount: i64,
    pub reason: Reason,
    pub memo: Option<String>,
    pub lines: Vec<CreditNoteLine>,
    /// The tax the note gives back, per rate (EN 16931's breakdown): each credited line's
    /// share of its rates' tax, or the invoice's composition for a note by amount.
    pub tax_amounts: Vec<TaxAmount>,
    pub payment: Option<PaymentId>,
    pub refund_status: RefundStatus,
    pub refund_ref: Option<String>,
    pub refund_failure: Option<String>,
    pub created: DateTime<Utc>,
    #[serde(flatten)]
    pub document: super::invoice::DocumentLinks,
}

/// What was asked: a whole amount or amounts per invoice line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credit {
    Amount(i64),
    Lines(Vec<CreditNoteLine>),
}

/// Where the money of a note on a paid invoice goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Settled outside recur (a bank transfer, cash).
    OutOfBand,
    /// Back through the payment provider.
    Refund,
    /// Onto the customer's credit balance, for the next invoices.
    Balance,
}

/// How a credit note splits, before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub amount: i64,
    pub lines: Vec<CreditNoteLine>,
    pub tax_amounts: Vec<TaxAmount>,
    pub pre_payment: i64,
    pub refund: i64,
    pub out_of_band: i64,
    pub to_balance: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditError {
    #[error("a {0} invoice cannot be credited (only open or paid ones)")]
    InvoiceState(&'static str),
    #[error("the amount must be a positive number of minor units")]
    NotPositive,
    #[error("invoice line {0} is not on this invoice")]
    UnknownLine(String),
    #[error("invoice line {0} is credited more than once in this note")]
    RepeatedLine(String),
    #[error("credit of {asked} on line {line} exceeds what is left of it ({left})")]
    LineExceeded { line: String, asked: i64, left: i64 },
    #[error("credit of {asked} exceeds what is left to credit on the invoice ({left})")]
    Exceeded { asked: i64, left: i64 },
    #[error(
        "nothing was paid on this open invoice: credit it without a refund (it lowers what is due)"
    )]
    NothingPaid,
    #[error("refund of {asked} exceeds what was paid and not yet refunded ({left})")]
    RefundExceeded { asked: i64, left: i64 },
}

/// The tax each of the invoice's rates put on `line`: the rate's tax spread over its lines by
/// their taxable amounts (after discount). Indexes into `inv.total_tax_amounts`.
fn line_taxes(inv: &Invoice, line: &InvoiceLine) -> Vec<(usize, i64)> {
    let base = (line.net_amount - line.discount_amount).max(0);
    inv.total_tax_amounts
        .iter()
        .enumerate()
        .filter(|(_, t)| line.tax_rates.contains(&t.tax_rate) && t.taxable_amount > 0)
        .map(|(i, t)| {
            let share =
                prorate(t.amount, base.min(t.taxable_amount), t.taxable_amount).unwrap_or(0);
            (i, share)
        })
        .collect()
}

/// What a line cost the customer: its amount after discount, with its share of tax.
pub fn line_gross(inv: &Invoice, line: &InvoiceLine) -> i64 {
    let base = (line.net_amount - line.discount_amount).max(0);
    base + line_taxes(inv, line).iter().map(|(_, t)| t).sum::<i64>()
}

/// The per-rate tax of a note of `amount` (tax included): by the credited lines' shares, or
/// by the invoice's composition for a note by amount.
fn note_taxes(inv: &Invoice, amount: i64, lines: &[CreditNoteLine]) -> Vec<TaxAmount> {
    let mut out: Vec<TaxAmount> = inv
        .total_tax_amounts
        .iter()
        .map(|t| TaxAmount {
            taxable_amount: 0,
            amount: 0,
            ..t.clone()
        })
        .collect();
    if lines.is_empty() {
        if inv.total > 0 {
            for (o, t) in out.iter_mut().zip(&inv.total_tax_amounts) {
                let part = |x: i64| prorate(x, amount.min(inv.total), inv.total).unwrap_or(0);
                o.amount = part(t.amount);
                o.taxable_amount = part(t.taxable_amount);
            }
        }
    } else {
        for l in lines {
            let Some(line) = inv.lines.iter().find(|x| x.id == l.invoice_line) else {
                continue;
            };
            let gross = line_gross(inv, line);
            if gross <= 0 {
                continue;
            }
            let base = (line.net_amount - line.discount_amount).max(0);
            for (i, share) in line_taxes(inv, line) {
                let part = |x: i64| prorate(x, l.amount.min(gross), gross).unwrap_or(0);
                out[i].amount += part(share);
                out[i].taxable_amount += part(base);
            }
        }
    }
    // The shares above put the right gross on each rate, but a line's tax share follows the
    // rate's whole tax, which other lines' credits (prorations) lowered, so net and tax can
    // stray from the rate. Each rate's credited gross is split again at the rate itself.
    for (o, t) in out.iter_mut().zip(&inv.total_tax_amounts) {
        if t.amount != 0 {
            let gross = o.taxable_amount + o.amount;
            o.amount = tax_in_gross(gross, t.percentage);
            o.taxable_amount = gross - o.amount;
        }
    }
    out.retain(|t| t.amount != 0 || t.taxable_amount != 0);
    out
}

/// The tax contained in a gross amount at `percentage`: `round(gross × p / (100 + p))`, half
/// away from zero.
fn tax_in_gross(gross: i64, percentage: rust_decimal::Decimal) -> i64 {
    use rust_decimal::prelude::ToPrimitive;
    let p = percentage;
    (rust_decimal::Decimal::from(gross) * p / (rust_decimal::Decimal::ONE_HUNDRED + p))
        .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .to_i64()
        .unwrap_or(0)
}

/// Splits a credit on `inv` given what earlier notes credited per line and what was refunded
/// already (by recur or at the provider). Pure: the caller writes it with guards.
pub fn split(
    inv: &Invoice,
    credit: Credit,
    settle: Settle,
    credited_lines: &HashMap<InvoiceLineId, i64>,
    refunded: i64,
) -> Result<Split, CreditError> {
    if !matches!(inv.status, InvoiceStatus::Open | InvoiceStatus::Paid) {
        return Err(CreditError::InvoiceState(inv.status.as_str()));
    }
    let (amount, lines) = match credit {
        Credit::Amount(a) => (a, Vec::new()),
        Credit::Lines(lines) => {
            let mut seen = std::collections::HashSet::new();
            for l in &lines {
                if l.amount <= 0 {
                    return Err(CreditError::NotPositive);
                }
                let line = inv
                    .lines
                    .iter()
                    .find(|x| x.id == l.invoice_line)
                    .ok_or_else(|| CreditError::UnknownLine(l.invoice_line.to_string()))?;
                if !seen.insert(&l.invoice_line) {
                    return Err(CreditError::RepeatedLine(l.invoice_line.to_string()));
                }
                let left = line_gross(inv, line)
                    - credited_lines.get(&l.invoice_line).copied().unwrap_or(0);
                if l.amount > left {
                    return Err(CreditError::LineExceeded {
                        line: l.invoice_line.to_string(),
                        asked: l.amount,
                        left,
                    });
                }
            }
            (lines.iter().map(|l| l.amount).sum(), lines)
        }
    };
    if amount <= 0 {
        return Err(CreditError::NotPositive);
    }
    let left = inv.total - inv.amount_credited;
    if amount > left {
        return Err(CreditError::Exceeded {
            asked: amount,
            left,
        });
    }
    let tax_amounts = note_taxes(inv, amount, &lines);
    let mut s = Split {
        amount,
        lines,
        tax_amounts,
        pre_payment: 0,
        refund: 0,
        out_of_band: 0,
        to_balance: 0,
    };
    if inv.status == InvoiceStatus::Open {
        if settle != Settle::OutOfBand {
            return Err(CreditError::NothingPaid);
        }
        if amount > inv.amount_due {
            return Err(CreditError::Exceeded {
                asked: amount,
                left: inv.amount_due,
            });
        }
        s.pre_payment = amount;
        return Ok(s);
    }
    match settle {
        Settle::Refund => {
            let left = inv.amount_paid - refunded;
            if amount > left {
                return Err(CreditError::RefundExceeded {
                    asked: amount,
                    left,
                });
            }
            s.refund = amount;
        }
        Settle::Balance => s.to_balance = amount,
        Settle::OutOfBand => s.out_of_band = amount,
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::customer::TaxExempt;
    use crate::domain::invoice::{BillingReason, InvoiceLine, LineKind};
    use crate::domain::subscription::CollectionMethod;

    fn paid_invoice(total: i64) -> Invoice {
        let t: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
        Invoice {
            id: InvoiceId::generate(),
            object: "invoice",
            number: Some("INV-2027-000001".into()),
            customer: CustomerId::generate(),
            subscription: None,
            status: InvoiceStatus::Paid,
            billing_reason: BillingReason::SubscriptionCycle,
            collection_method: CollectionMethod::ChargeAutomatically,
            currency: Currency::parse("EUR").unwrap(),
            period_start: t,
            period_end: t,
            lines: vec![InvoiceLine {
                id: InvoiceLineId::generate(),
                kind: LineKind::Subscription,
                description: "Plan".into(),
                price: None,
                subscription_item: None,
                quantity: 1,
                unit_amount_decimal: None,
                amount: total,
                net_amount: total,
                discount_amount: 0,
                period_start: t,
                period_end: t,
                proration: false,
                tax_rates: Vec::new(),
            }],
            subtotal: total,
            discount: 0,
            tax: 0,
            total,
            total_tax_amounts: Vec::new(),
            tax_exempt: TaxExempt::None,
            amount_paid: total,
            amount_credited: 0,
            amount_refunded: 0,
            amount_due: 0,
            starting_balance: 0,
            ending_balance: 0,
            attempt_count: 1,
            next_payment_attempt: None,
            due_date: None,
            created: t,
            finalized_at: Some(t),
            paid_at: Some(t),
            voided_at: None,
            marked_uncollectible_at: None,
            first_failed_at: None,
            awaiting_payment_method: false,
            document: Default::default(),
            hosted_invoice_url: None,
        }
    }

    /// A plan line and two proration credits under one 19 % rate: the credits lower the
    /// rate's tax, and a note on the plan line used to take the rate's whole tax as the
    /// line's share, so the note said 213.06 VAT on 1,243.18 net (17.1 %). Found by the
    /// EN 16931 validator (BR-CO-17).
    #[test]
    fn a_note_on_a_line_splits_its_gross_at_the_rate() {
        let rate = crate::domain::ids::TaxRateId::generate();
        let mut inv = paid_invoice(167_598);
        let template = inv.lines[0].clone();
        inv.lines = [-14_974, 156_137, -324]
            .into_iter()
            .map(|amount| InvoiceLine {
                id: InvoiceLineId::generate(),
                amount,
                net_amount: amount,
                tax_rates: vec![rate.clone()],
                ..template.clone()
            })
            .collect();
        inv.subtotal = 140_839;
        inv.tax = 26_759;
        inv.total_tax_amounts = vec![TaxAmount {
            tax_rate: rate,
            display_name: "VAT".into(),
            percentage: rust_decimal::Decimal::from(19),
            inclusive: false,
            taxable_amount: 140_839,
            amount: 26_759,
        }];
        let credit = Credit::Lines(vec![CreditNoteLine {
            invoice_line: inv.lines[1].id.clone(),
            amount: 145_624,
        }]);
        let s = split(&inv, credit, Settle::OutOfBand, &HashMap::new(), 0).unwrap();
        let t = &s.tax_amounts[0];
        assert_eq!(t.taxable_amount + t.amount, 145_624);
        assert_eq!((t.taxable_amount, t.amount), (122_373, 23_251));
    }

    #[test]
    fn credits_never_exceed_the_invoice_nor_refunds_what_was_paid() {
        let paid = paid_invoice(10_000);
        let none = HashMap::new();
        let s = split(&paid, Credit::Amount(4_000), Settle::Refund, &none, 0).unwrap();
        assert_eq!((s.refund, s.out_of_band, s.pre_payment), (4_000, 0, 0));
        assert_eq!(
            split(&paid, Credit::Amount(4_000), Settle::Refund, &none, 7_000),
            Err(CreditError::RefundExceeded {
                asked: 4_000,
                left: 3_000
            })
        );
        let s = split(&paid, Credit::Amount(10_000), Settle::OutOfBand, &none, 0).unwrap();
        assert_eq!(s.out_of_band, 10_000);
        assert!(matches!(
            split(&paid, Credit::Amount(10_001), Settle::OutOfBand, &none, 0),
            Err(CreditError::Exceeded { .. })
        ));
        assert_eq!(
            split(&paid, Credit::Amount(0), Settle::OutOfBand, &none, 0),
            Err(CreditError::NotPositive)
        );

        let mut open = paid.clone();
        open.status = InvoiceStatus::Open;
        open.amount_paid = 0;
        open.amount_due = 10_000;
        assert_eq!(
            split(&open, Credit::Amount(1), Settle::Refund, &none, 0),
            Err(CreditError::NothingPaid)
        );
        assert_eq!(
            split(&open, Credit::Amount(2_500), Settle::OutOfBand, &none, 0)
                .unwrap()
                .pre_payment,
            2_500
        );

        let line = paid.lines[0].id.clone();
        let credited = HashMap::from([(line.clone(), 9_000)]);
        let over = vec![CreditNoteLine {
            invoice_line: line.clone(),
            amount: 1_001,
        }];
        assert!(matches!(
            split(&paid, Credit::Lines(over), Settle::OutOfBand, &credited, 0),
            Err(CreditError::LineExceeded { left: 1_000, .. })
        ));
        let twice = vec![
            CreditNoteLine {
                invoice_line: line.clone(),
                amount: 1,
            },
            CreditNoteLine {
                invoice_line: line,
                amount: 1,
            },
        ];
        assert!(matches!(
            split(&paid, Credit::Lines(twice), Settle::OutOfBand, &none, 0),
            Err(CreditError::RepeatedLine(_))
        ));

        let mut void = paid;
        void.status = InvoiceStatus::Void;
        assert_eq!(
            split(&void, Credit::Amount(1), Settle::OutOfBand, &none, 0),
            Err(CreditError::InvoiceState("void"))
        );
    }
}
