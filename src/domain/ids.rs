//! Prefixed identifiers (`cus_…`, `in_…`).
//!
//! Ids are generated in the application (the SQL for auto-increment differs between SQLite and
//! PostgreSQL) as UUIDv7 in simple hex: time-ordered, so `ORDER BY id` is creation order and
//! `starting_after` pagination needs no extra column.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{value}` is not a valid {kind} id (expected `{prefix}_` followed by 32 hex characters)")]
pub struct InvalidId {
    pub kind: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            pub fn parse(value: &str) -> Result<Self, InvalidId> {
                let ok = value
                    .strip_prefix(concat!($prefix, "_"))
                    .is_some_and(|rest| {
                        rest.len() == 32 && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    });
                if ok {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(InvalidId { kind: $kind, prefix: $prefix, value: value.to_owned() })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, InvalidId> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

prefixed_id!(TenantId, "ten", "tenant");
prefixed_id!(CustomerId, "cus", "customer");
prefixed_id!(PriceId, "price", "price");
prefixed_id!(TaxRateId, "txr", "tax rate");
prefixed_id!(CouponId, "coupon", "coupon");
prefixed_id!(SubscriptionId, "sub", "subscription");
prefixed_id!(SubscriptionItemId, "si", "subscription item");
prefixed_id!(SubscriptionChangeId, "sch", "subscription change");
prefixed_id!(UsageRecordId, "ur", "usage record");
prefixed_id!(EventId, "evt", "event");
prefixed_id!(InvoiceId, "in", "invoice");
prefixed_id!(InvoiceLineId, "il", "invoice line");
prefixed_id!(PaymentId, "pay", "payment");
prefixed_id!(CreditNoteId, "cn", "credit note");
prefixed_id!(WebhookEndpointId, "we", "webhook endpoint");
prefixed_id!(WebhookDeliveryId, "whd", "webhook delivery");
prefixed_id!(
    BalanceTransactionId,
    "cbtxn",
    "customer balance transaction"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_sort_by_creation() {
        let a = CustomerId::generate();
        let b = CustomerId::generate();
        assert_eq!(CustomerId::parse(a.as_str()).unwrap(), a);
        assert!(a < b);
    }

    #[test]
    fn wrong_prefix_or_shape_is_rejected() {
        let price = PriceId::generate();
        assert!(CustomerId::parse(price.as_str()).is_err());
        assert!(CustomerId::parse("cus_").is_err());
        assert!(CustomerId::parse("cus_0123456789abcdef0123456789ABCDEF").is_err());
        assert!(CustomerId::parse("cus_x'; DROP TABLE customers;--").is_err());
    }
}
