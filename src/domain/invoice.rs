//! Invoices: what a customer owes for a period, and the status machine that keeps a finalized
//! invoice immutable (corrections are credit notes; a void keeps its number).

use super::currency::Currency;
use super::customer::TaxExempt;
use super::ids::{
    CustomerId, InvoiceId, InvoiceLineId, PriceId, SubscriptionId, SubscriptionItemId, TaxRateId,
};
use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Draft,
    Open,
    Paid,
    Void,
    Uncollectible,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a {} invoice cannot be {action}", .from.as_str())]
pub struct InvoiceTransitionError {
    pub from: InvoiceStatus,
    pub action: &'static str,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Open => "open",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Void => "void",
            InvoiceStatus::Uncollectible => "uncollectible",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "draft" => Some(InvoiceStatus::Draft),
            "open" => Some(InvoiceStatus::Open),
            "paid" => Some(InvoiceStatus::Paid),
            "void" => Some(InvoiceStatus::Void),
            "uncollectible" => Some(InvoiceStatus::Uncollectible),
            _ => None,
        }
    }

    fn deny(self, action: &'static str) -> InvoiceTransitionError {
        InvoiceTransitionError { from: self, action }
    }

    pub fn finalize(self) -> Result<Self, InvoiceTransitionError> {
        match self {
            Self::Draft => Ok(Self::Open),
            Self::Open | Self::Paid | Self::Void | Self::Uncollectible => {
                Err(self.deny("finalized"))
            }
        }
    }

    /// Paid in full: by a charge, or because nothing was due.
    pub fn pay(self) -> Result<Self, InvoiceTransitionError> {
        match self {
            Self::Open | Self::Uncollectible => Ok(Self::Paid),
            Self::Draft | Self::Paid | Self::Void => Err(self.deny("paid")),
        }
    }

    /// Voiding keeps the number; the invoice simply stops being owed.
    pub fn void(self) -> Result<Self, InvoiceTransitionError> {
        match self {
            Self::Open | Self::Uncollectible => Ok(Self::Void),
            Self::Draft | Self::Paid | Self::Void => Err(self.deny("voided")),
        }
    }

    pub fn mark_uncollectible(self) -> Result<Self, InvoiceTransitionError> {
        match self {
            Self::Open => Ok(Self::Uncollectible),
            Self::Draft | Self::Paid | Self::Void | Self::Uncollectible => {
                Err(self.deny("marked uncollectible"))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingReason {
    /// The first period of a subscription.
    SubscriptionCreate,
    /// A renewal.
    SubscriptionCycle,
    /// Prorations invoiced at once (`proration_behavior: always_invoice`).
    SubscriptionUpdate,
    /// The last invoice of a subscription that ended at its period end (usage in arrears).
    SubscriptionFinal,
}

impl BillingReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingReason::SubscriptionCreate => "subscription_create",
            BillingReason::SubscriptionCycle => "subscription_cycle",
            BillingReason::SubscriptionUpdate => "subscription_update",
            BillingReason::SubscriptionFinal => "subscription_final",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "subscription_create" => Some(BillingReason::SubscriptionCreate),
            "subscription_cycle" => Some(BillingReason::SubscriptionCycle),
            "subscription_update" => Some(BillingReason::SubscriptionUpdate),
            "subscription_final" => Some(BillingReason::SubscriptionFinal),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// A licensed item billed in advance for the period.
    Subscription,
    /// Metered usage billed in arrears.
    Usage,
    /// A credit or charge for a mid-period change.
    Proration,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Subscription => "subscription",
            LineKind::Usage => "usage",
            LineKind::Proration => "proration",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "subscription" => Some(LineKind::Subscription),
            "usage" => Some(LineKind::Usage),
            "proration" => Some(LineKind::Proration),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvoiceLine {
    pub id: InvoiceLineId,
    #[serde(rename = "type")]
    pub kind: LineKind,
    pub description: String,
    pub price: Option<PriceId>,
    pub subscription_item: Option<SubscriptionItemId>,
    pub quantity: u64,
    /// The price's unit amount in minor units (empty for tiered prices).
    #[serde(with = "rust_decimal::serde::str_option")]
    pub unit_amount_decimal: Option<Decimal>,
    /// Quantity × price, rounded once; gross for tax-inclusive prices; negative for credits.
    pub amount: i64,
    /// The amount without tax, before discount.
    pub net_amount: i64,
    pub discount_amount: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub proration: bool,
    pub tax_rates: Vec<TaxRateId>,
}

/// Tax raised by one rate on the whole invoice (EN 16931: per rate, rounded once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TaxAmount {
    pub tax_rate: TaxRateId,
    pub display_name: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub percentage: Decimal,
    pub inclusive: bool,
    pub taxable_amount: i64,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invoice {
    pub id: InvoiceId,
    pub object: &'static str,
    pub number: Option<String>,
    pub customer: CustomerId,
    pub subscription: Option<SubscriptionId>,
    pub status: InvoiceStatus,
    pub billing_reason: BillingReason,
    pub collection_method: super::subscription::CollectionMethod,
    pub currency: Currency,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub lines: Vec<InvoiceLine>,
    pub subtotal: i64,
    pub discount: i64,
    pub tax: i64,
    pub total: i64,
    pub total_tax_amounts: Vec<TaxAmount>,
    pub tax_exempt: TaxExempt,
    pub amount_paid: i64,
    /// Credit notes against this invoice: before payment they lower `amount_due`, after it
    /// they are refunded or settled outside recur.
    pub amount_credited: i64,
    /// Of `amount_paid`, what was given back through the payment provider.
    pub amount_refunded: i64,
    pub amount_due: i64,
    /// The customer's balance in this currency before and after this invoice used it
    /// (negative: credit).
    pub starting_balance: i64,
    pub ending_balance: i64,
    pub attempt_count: u32,
    pub next_payment_attempt: Option<DateTime<Utc>>,
    pub due_date: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
    pub finalized_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub voided_at: Option<DateTime<Utc>>,
    pub marked_uncollectible_at: Option<DateTime<Utc>>,
    /// When dunning started (the first failed attempt).
    #[serde(skip)]
    pub first_failed_at: Option<DateTime<Utc>>,
    /// A hard decline: no retry until the customer's payment method changes.
    #[serde(skip)]
    pub awaiting_payment_method: bool,
    #[serde(flatten)]
    pub document: DocumentLinks,
    /// The hosted invoice page (`/i/{token}`, no API key; relative to the server's address),
    /// once the invoice's PDF has been produced.
    pub hosted_invoice_url: Option<String>,
}

/// Where a finalized document's PDF is served, and the SHA-256 (hex) of the stored file once
/// it has been rendered: the same bytes are served for ever, and the hash proves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct DocumentLinks {
    pub pdf_url: Option<String>,
    pub pdf_sha256: Option<String>,
}

/// `{prefix}-{year}-{seq:06}`: the sequence restarts each year of the finalization date.
pub fn invoice_number(prefix: &str, finalized_at: DateTime<Utc>, seq: i64) -> String {
    format!("{prefix}-{}-{seq:06}", finalized_at.year())
}

#[cfg(test)]
mod tests {
    use super::*;
    use InvoiceStatus::*;

    #[test]
    fn finalized_invoices_only_move_forward() {
        assert_eq!(Draft.finalize(), Ok(Open));
        assert_eq!(Open.pay(), Ok(Paid));
        assert_eq!(Open.void(), Ok(Void));
        assert_eq!(Open.mark_uncollectible(), Ok(Uncollectible));
        assert_eq!(Uncollectible.pay(), Ok(Paid));
        for s in [Paid, Void] {
            assert!(
                s.void().is_err()
                    && s.pay().is_err()
                    && s.mark_uncollectible().is_err()
                    && s.finalize().is_err()
            );
        }
    }

    #[test]
    fn numbers_carry_the_year_and_six_digits() {
        let t = DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(invoice_number("INV", t, 42), "INV-2027-000042");
    }
}
