//! The customer credit balance (Stripe's sign: negative is credit the customer holds,
//! positive is money the customer owes). Negative invoice totals and credit notes credited to
//! the balance add to it; the next invoices in its currency use it up; people adjust it with a
//! reason. Every change is a transaction row with the balance it left: the balance is never
//! moved without a record.

use super::currency::Currency;
use super::ids::{BalanceTransactionId, CreditNoteId, CustomerId, InvoiceId};
use super::invoice::{Invoice, InvoiceStatus};
use super::subscription::CollectionMethod;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The largest balance, either way, that one customer may hold in one currency.
pub const MAX_BALANCE: i64 = 1_000_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceTransactionType {
    /// An invoice's negative total, credited to the customer.
    InvoiceCredit,
    /// Balance used on an invoice at its finalization (credit taken off, or debt added).
    AppliedToInvoice,
    /// A credit note whose amount went to the balance instead of back to the card.
    CreditNote,
    /// A person's change, with a reason.
    Adjustment,
    /// What a voided invoice took from (or added to) the balance, given back.
    InvoiceVoided,
}

impl BalanceTransactionType {
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceTransactionType::InvoiceCredit => "invoice_credit",
            BalanceTransactionType::AppliedToInvoice => "applied_to_invoice",
            BalanceTransactionType::CreditNote => "credit_note",
            BalanceTransactionType::Adjustment => "adjustment",
            BalanceTransactionType::InvoiceVoided => "invoice_voided",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "invoice_credit" => BalanceTransactionType::InvoiceCredit,
            "applied_to_invoice" => BalanceTransactionType::AppliedToInvoice,
            "credit_note" => BalanceTransactionType::CreditNote,
            "adjustment" => BalanceTransactionType::Adjustment,
            "invoice_voided" => BalanceTransactionType::InvoiceVoided,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BalanceTransaction {
    pub id: BalanceTransactionId,
    pub object: &'static str,
    pub customer: CustomerId,
    pub currency: Currency,
    /// The change: negative adds credit, positive uses it up (or adds debt).
    pub amount: i64,
    /// The balance after this transaction.
    pub ending_balance: i64,
    #[serde(rename = "type")]
    pub kind: BalanceTransactionType,
    pub invoice: Option<InvoiceId>,
    pub credit_note: Option<CreditNoteId>,
    pub description: Option<String>,
    pub created: DateTime<Utc>,
}

impl BalanceTransaction {
    /// A transaction moving `balance` by `amount`, or why it cannot.
    pub fn new(
        customer: &CustomerId,
        currency: Currency,
        balance: i64,
        amount: i64,
        kind: BalanceTransactionType,
        created: DateTime<Utc>,
    ) -> Result<Self, BalanceError> {
        let ending_balance = balance
            .checked_add(amount)
            .filter(|b| b.abs() <= MAX_BALANCE)
            .ok_or(BalanceError::OutOfRange)?;
        Ok(BalanceTransaction {
            id: BalanceTransactionId::generate(),
            object: "customer_balance_transaction",
            customer: customer.clone(),
            currency,
            amount,
            ending_balance,
            kind,
            invoice: None,
            credit_note: None,
            description: None,
            created,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalanceError {
    #[error("the balance would leave the range of ±{MAX_BALANCE}")]
    OutOfRange,
}

/// Settles a freshly finalized invoice against the customer's balance in its currency (pure).
/// A negative total is credited to the balance and nothing is due; a positive total first
/// uses up credit (or takes on debt the customer owes). Sets `starting_balance`,
/// `ending_balance`, `amount_due` and what follows (paid at once when nothing is due, charged
/// at once when something newly is). Returns the transaction, if the balance moved.
pub fn settle_invoice(
    inv: &mut Invoice,
    balance: i64,
) -> Result<Option<BalanceTransaction>, BalanceError> {
    let (kind, ending) = if inv.total < 0 {
        (
            BalanceTransactionType::InvoiceCredit,
            balance
                .checked_add(inv.total)
                .ok_or(BalanceError::OutOfRange)?,
        )
    } else {
        let left = inv
            .total
            .checked_add(balance)
            .ok_or(BalanceError::OutOfRange)?;
        (BalanceTransactionType::AppliedToInvoice, left.min(0))
    };
    inv.starting_balance = balance;
    inv.ending_balance = ending;
    if ending == balance {
        return Ok(None);
    }
    let txn = BalanceTransaction::new(
        &inv.customer,
        inv.currency,
        balance,
        ending - balance,
        kind,
        inv.created,
    )?;
    let due = if inv.total < 0 {
        0
    } else {
        inv.total + balance - ending
    };
    inv.amount_due = due;
    let at = inv.created;
    if due == 0 {
        inv.status = InvoiceStatus::Paid;
        inv.paid_at = Some(at);
        inv.next_payment_attempt = None;
    } else {
        inv.status = InvoiceStatus::Open;
        inv.paid_at = None;
        inv.next_payment_attempt = match inv.collection_method {
            CollectionMethod::ChargeAutomatically if !inv.awaiting_payment_method => Some(at),
            CollectionMethod::ChargeAutomatically | CollectionMethod::SendInvoice => None,
        };
    }
    Ok(Some(BalanceTransaction {
        invoice: Some(inv.id.clone()),
        ..txn
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::customer::TaxExempt;
    use crate::domain::invoice::BillingReason;
    use crate::domain::subscription::CollectionMethod;
    use proptest::prelude::*;

    fn invoice(total: i64) -> Invoice {
        let t: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
        Invoice {
            id: InvoiceId::generate(),
            object: "invoice",
            number: None,
            customer: CustomerId::generate(),
            subscription: None,
            status: if total > 0 {
                InvoiceStatus::Open
            } else {
                InvoiceStatus::Paid
            },
            billing_reason: BillingReason::SubscriptionCycle,
            collection_method: CollectionMethod::ChargeAutomatically,
            currency: Currency::parse("EUR").unwrap(),
            period_start: t,
            period_end: t,
            lines: Vec::new(),
            subtotal: total,
            discount: 0,
            tax: 0,
            total,
            total_tax_amounts: Vec::new(),
            tax_exempt: TaxExempt::None,
            amount_paid: 0,
            amount_credited: 0,
            amount_refunded: 0,
            amount_due: total.max(0),
            starting_balance: 0,
            ending_balance: 0,
            attempt_count: 0,
            next_payment_attempt: (total > 0).then_some(t),
            due_date: None,
            created: t,
            finalized_at: Some(t),
            paid_at: (total <= 0).then_some(t),
            voided_at: None,
            marked_uncollectible_at: None,
            first_failed_at: None,
            awaiting_payment_method: false,
            document: Default::default(),
            hosted_invoice_url: None,
        }
    }

    #[test]
    fn credit_is_kept_used_and_debt_added() {
        let mut neg = invoice(-2033);
        let t = settle_invoice(&mut neg, 0).unwrap().unwrap();
        assert_eq!(
            (t.kind, t.amount, t.ending_balance),
            (BalanceTransactionType::InvoiceCredit, -2033, -2033)
        );
        assert_eq!((neg.amount_due, neg.status), (0, InvoiceStatus::Paid));
        let mut part = invoice(3000);
        settle_invoice(&mut part, -2033).unwrap();
        assert_eq!(
            (part.amount_due, part.ending_balance, part.status),
            (967, 0, InvoiceStatus::Open)
        );
        let mut covered = invoice(1000);
        settle_invoice(&mut covered, -2033).unwrap();
        assert_eq!(
            (covered.amount_due, covered.ending_balance, covered.status),
            (0, -1033, InvoiceStatus::Paid)
        );
        assert_eq!(covered.next_payment_attempt, None);
        let mut owed = invoice(0);
        settle_invoice(&mut owed, 300).unwrap();
        assert_eq!(
            (owed.amount_due, owed.ending_balance, owed.status),
            (300, 0, InvoiceStatus::Open)
        );
        assert!(
            owed.next_payment_attempt.is_some(),
            "newly owed money is charged"
        );
        let mut none = invoice(500);
        assert_eq!(settle_invoice(&mut none, 0).unwrap(), None);
        assert_eq!(none.amount_due, 500);
    }

    proptest! {
        /// No money appears or disappears: what the invoice asks plus what the balance held is
        /// what is due plus what the balance holds after, and nothing due is negative.
        #[test]
        fn settling_conserves_money(total in -1_000_000i64..1_000_000, balance in -1_000_000i64..1_000_000) {
            let mut inv = invoice(total);
            let txn = settle_invoice(&mut inv, balance).unwrap();
            prop_assert!(inv.amount_due >= 0);
            prop_assert_eq!(total + balance, inv.amount_due + inv.ending_balance);
            prop_assert_eq!(inv.starting_balance, balance);
            let moved = txn.as_ref().map_or(0, |t| t.amount);
            prop_assert_eq!(balance + moved, inv.ending_balance);
            if total >= 0 && balance <= 0 {
                prop_assert!(inv.amount_due <= total, "credit only lowers what is due");
            }
            prop_assert_eq!(inv.amount_due == 0, inv.status == InvoiceStatus::Paid);
        }
    }
}
