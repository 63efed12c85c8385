//! Subscriptions: the status state machine and the item changes a PATCH makes.

use super::currency::Currency;
use super::ids::{CouponId, CustomerId, PriceId, SubscriptionId, SubscriptionItemId, TaxRateId};
use super::period::Interval;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Trialing,
    Active,
    PastDue,
    Unpaid,
    Paused,
    Canceled,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a {} subscription cannot be {action}", .from.as_str())]
pub struct TransitionError {
    pub from: SubscriptionStatus,
    pub action: &'static str,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Trialing => "trialing",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Unpaid => "unpaid",
            SubscriptionStatus::Paused => "paused",
            SubscriptionStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "trialing" => Some(SubscriptionStatus::Trialing),
            "active" => Some(SubscriptionStatus::Active),
            "past_due" => Some(SubscriptionStatus::PastDue),
            "unpaid" => Some(SubscriptionStatus::Unpaid),
            "paused" => Some(SubscriptionStatus::Paused),
            "canceled" => Some(SubscriptionStatus::Canceled),
            _ => None,
        }
    }

    fn deny(self, action: &'static str) -> TransitionError {
        TransitionError { from: self, action }
    }

    /// Pausing stops invoicing until resumed; an unpaid or canceled subscription has nothing to
    /// pause.
    pub fn pause(self) -> Result<Self, TransitionError> {
        match self {
            Self::Trialing | Self::Active | Self::PastDue => Ok(Self::Paused),
            Self::Unpaid | Self::Paused | Self::Canceled => Err(self.deny("paused")),
        }
    }

    pub fn resume(self) -> Result<Self, TransitionError> {
        match self {
            Self::Paused => Ok(Self::Active),
            Self::Trialing | Self::Active | Self::PastDue | Self::Unpaid | Self::Canceled => {
                Err(self.deny("resumed"))
            }
        }
    }

    pub fn cancel(self) -> Result<Self, TransitionError> {
        match self {
            Self::Trialing | Self::Active | Self::PastDue | Self::Unpaid | Self::Paused => {
                Ok(Self::Canceled)
            }
            Self::Canceled => Err(self.deny("canceled")),
        }
    }

    /// Items, quantities and cancel-at-period-end can change while the subscription lives.
    pub fn check_modifiable(self) -> Result<(), TransitionError> {
        match self {
            Self::Trialing | Self::Active | Self::PastDue | Self::Unpaid | Self::Paused => Ok(()),
            Self::Canceled => Err(self.deny("modified")),
        }
    }

    /// A failed charge makes a live subscription past due; other states keep theirs.
    pub fn after_failed_payment(self) -> Self {
        match self {
            Self::Active | Self::Trialing | Self::PastDue => Self::PastDue,
            Self::Unpaid | Self::Paused | Self::Canceled => self,
        }
    }

    /// Dunning gave up with `final_action: mark_unpaid`: invoices are still made but not
    /// charged until the customer pays or gives a new payment method.
    pub fn mark_unpaid(self) -> Self {
        match self {
            Self::Active | Self::Trialing | Self::PastDue => Self::Unpaid,
            Self::Unpaid | Self::Paused | Self::Canceled => self,
        }
    }

    /// A successful charge brings a past-due or unpaid subscription back to active.
    pub fn after_successful_payment(self) -> Self {
        match self {
            Self::PastDue | Self::Unpaid => Self::Active,
            Self::Active | Self::Trialing | Self::Paused | Self::Canceled => self,
        }
    }

    pub fn trial_ended(self) -> Result<Self, TransitionError> {
        match self {
            Self::Trialing => Ok(Self::Active),
            Self::Active | Self::PastDue | Self::Unpaid | Self::Paused | Self::Canceled => {
                Err(self.deny("moved out of trial"))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectionMethod {
    ChargeAutomatically,
    SendInvoice,
}

impl CollectionMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectionMethod::ChargeAutomatically => "charge_automatically",
            CollectionMethod::SendInvoice => "send_invoice",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "charge_automatically" => Some(CollectionMethod::ChargeAutomatically),
            "send_invoice" => Some(CollectionMethod::SendInvoice),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProrationBehavior {
    /// Proration lines go on the next renewal invoice (Stripe's default).
    #[default]
    CreateProrations,
    /// Proration lines are invoiced at once.
    AlwaysInvoice,
    None,
}

impl ProrationBehavior {
    pub fn as_str(self) -> &'static str {
        match self {
            ProrationBehavior::CreateProrations => "create_prorations",
            ProrationBehavior::AlwaysInvoice => "always_invoice",
            ProrationBehavior::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "create_prorations" => Some(ProrationBehavior::CreateProrations),
            "always_invoice" => Some(ProrationBehavior::AlwaysInvoice),
            "none" => Some(ProrationBehavior::None),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionItem {
    pub id: SubscriptionItemId,
    pub price: PriceId,
    pub quantity: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub object: &'static str,
    pub customer: CustomerId,
    pub status: SubscriptionStatus,
    pub currency: Currency,
    #[serde(skip)]
    pub interval: Interval,
    pub items: Vec<SubscriptionItem>,
    pub collection_method: CollectionMethod,
    pub days_until_due: Option<u32>,
    pub coupon: Option<CouponId>,
    pub default_tax_rates: Vec<TaxRateId>,
    pub proration_behavior: ProrationBehavior,
    pub start_date: DateTime<Utc>,
    pub trial_end: Option<DateTime<Utc>>,
    pub billing_cycle_anchor: DateTime<Utc>,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: DateTime<Utc>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub paused_at: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
    /// The next boundary the billing run acts on; `None` once the subscription has ended.
    #[serde(skip)]
    pub next_billing_at: Option<DateTime<Utc>>,
    /// How many invoices the coupon has discounted (a `once` coupon applies while this is 0).
    #[serde(skip)]
    pub discount_invoices: u32,
    /// Why billing this subscription failed; while set, the billing run leaves it aside until
    /// `POST /v1/subscriptions/{id}/retry_billing` (a visible flag, never a silent stop).
    pub billing_error: Option<String>,
}

/// Items one subscription may hold (as Stripe's 20): an invoice of a batch stays small.
pub const MAX_ITEMS: usize = 20;

/// One requested change to a subscription's items (the PATCH body's `items[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemChange {
    /// New quantity and/or price for an existing item.
    Update {
        id: SubscriptionItemId,
        price: Option<PriceId>,
        quantity: Option<u64>,
    },
    Add {
        price: PriceId,
        quantity: u64,
    },
    Delete {
        id: SubscriptionItemId,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ItemChangeError {
    #[error("subscription item {0} is not on this subscription")]
    UnknownItem(SubscriptionItemId),
    #[error("a subscription must keep at least one item")]
    NoItemsLeft,
    #[error("price {0} appears on more than one item")]
    DuplicatePrice(PriceId),
    #[error("subscription item {0} is changed more than once")]
    ItemTwice(SubscriptionItemId),
}

/// Applies item changes to a copy of the items: the caller records old and new side by side,
/// which is what proration needs.
pub fn apply_item_changes(
    items: &[SubscriptionItem],
    changes: &[ItemChange],
) -> Result<Vec<SubscriptionItem>, ItemChangeError> {
    let mut out = items.to_vec();
    let mut touched: Vec<&SubscriptionItemId> = Vec::new();
    for change in changes {
        if let ItemChange::Update { id, .. } | ItemChange::Delete { id } = change {
            if touched.contains(&id) {
                return Err(ItemChangeError::ItemTwice(id.clone()));
            }
            touched.push(id);
        }
        match change {
            ItemChange::Update {
                id,
                price,
                quantity,
            } => {
                let item = out
                    .iter_mut()
                    .find(|i| &i.id == id)
                    .ok_or_else(|| ItemChangeError::UnknownItem(id.clone()))?;
                if let Some(p) = price {
                    item.price = p.clone();
                }
                if let Some(q) = quantity {
                    item.quantity = *q;
                }
            }
            ItemChange::Delete { id } => {
                let before = out.len();
                out.retain(|i| &i.id != id);
                if out.len() == before {
                    return Err(ItemChangeError::UnknownItem(id.clone()));
                }
            }
            ItemChange::Add { price, quantity } => out.push(SubscriptionItem {
                id: SubscriptionItemId::generate(),
                price: price.clone(),
                quantity: *quantity,
            }),
        }
    }
    if out.is_empty() {
        return Err(ItemChangeError::NoItemsLeft);
    }
    let mut prices: Vec<&PriceId> = out.iter().map(|i| &i.price).collect();
    prices.sort();
    if let Some(w) = prices.windows(2).find(|w| w[0] == w[1]) {
        return Err(ItemChangeError::DuplicatePrice(w[0].clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubscriptionStatus::*;

    const ALL: [SubscriptionStatus; 6] = [Trialing, Active, PastDue, Unpaid, Paused, Canceled];

    #[test]
    fn canceled_is_terminal() {
        assert!(Canceled.pause().is_err());
        assert!(Canceled.resume().is_err());
        assert!(Canceled.cancel().is_err());
        assert!(Canceled.check_modifiable().is_err());
    }

    #[test]
    fn pause_and_resume_round_trip_to_active() {
        for s in [Trialing, Active, PastDue] {
            assert_eq!(s.pause().unwrap().resume().unwrap(), Active);
        }
        assert!(Active.resume().is_err());
    }

    #[test]
    fn every_status_round_trips_through_its_name() {
        for s in ALL {
            assert_eq!(SubscriptionStatus::parse(s.as_str()), Some(s));
        }
    }

    fn item(price: &PriceId, q: u64) -> SubscriptionItem {
        SubscriptionItem {
            id: SubscriptionItemId::generate(),
            price: price.clone(),
            quantity: q,
        }
    }

    #[test]
    fn item_changes_update_add_and_delete() {
        let (a, b) = (PriceId::generate(), PriceId::generate());
        let items = vec![item(&a, 1)];
        let id = items[0].id.clone();
        let out = apply_item_changes(
            &items,
            &[
                ItemChange::Update {
                    id: id.clone(),
                    price: None,
                    quantity: Some(5),
                },
                ItemChange::Add {
                    price: b.clone(),
                    quantity: 2,
                },
            ],
        )
        .unwrap();
        assert_eq!((out[0].quantity, out.len()), (5, 2));
        assert_eq!(
            apply_item_changes(&items, &[ItemChange::Delete { id: id.clone() }]),
            Err(ItemChangeError::NoItemsLeft)
        );
        assert!(matches!(
            apply_item_changes(
                &items,
                &[ItemChange::Add {
                    price: a,
                    quantity: 1
                }]
            ),
            Err(ItemChangeError::DuplicatePrice(_))
        ));
        let unknown = SubscriptionItemId::generate();
        assert_eq!(
            apply_item_changes(
                &items,
                &[ItemChange::Delete {
                    id: unknown.clone()
                }]
            ),
            Err(ItemChangeError::UnknownItem(unknown))
        );
    }
}
