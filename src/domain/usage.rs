//! Usage records for metered prices and how a period's usage is totalled.

use super::ids::{SubscriptionItemId, UsageRecordId};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageAction {
    /// Adds to the period's usage.
    Increment,
    /// Replaces the usage counted so far in the period (a meter reading).
    Set,
}

impl UsageAction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "increment" => Some(UsageAction::Increment),
            "set" => Some(UsageAction::Set),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UsageAction::Increment => "increment",
            UsageAction::Set => "set",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    pub id: UsageRecordId,
    pub object: &'static str,
    pub subscription_item: SubscriptionItemId,
    pub quantity: u64,
    pub action: UsageAction,
    pub timestamp: DateTime<Utc>,
    pub created: DateTime<Utc>,
    /// The caller's own key for this record: a record sent again with a stored identifier is
    /// answered with the stored one and counted once.
    pub identifier: Option<String>,
}

/// The most usage one record may carry; sums of many stay far from `u64::MAX`.
pub const MAX_USAGE_QUANTITY: u64 = 1_000_000_000_000;

/// The most records one `POST /v1/usage_records/batch` may carry.
pub const MAX_BATCH_RECORDS: usize = 1000;

/// The longest identifier a usage record may carry.
pub const MAX_IDENTIFIER_LEN: usize = 255;

/// An identifier is 1 to 255 characters without control characters, so it can be logged,
/// exported and compared byte for byte.
pub fn check_identifier(s: &str) -> Result<(), String> {
    if s.is_empty() || s.chars().count() > MAX_IDENTIFIER_LEN {
        return Err(format!(
            "identifier must be 1 to {MAX_IDENTIFIER_LEN} characters"
        ));
    }
    if s.chars().any(char::is_control) {
        return Err("identifier must not contain control characters".into());
    }
    Ok(())
}

/// Whether a record sent again matches the stored one with its identifier: same item,
/// quantity and action, and the same instant unless the resent record left it to the server.
pub fn same_record(
    stored: &UsageRecord,
    item: &SubscriptionItemId,
    quantity: u64,
    action: UsageAction,
    timestamp: Option<DateTime<Utc>>,
) -> bool {
    stored.subscription_item == *item
        && stored.quantity == quantity
        && stored.action == action
        && timestamp.is_none_or(|t| t == stored.timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_one_to_255_printable_characters() {
        assert!(check_identifier("evt-2027-01-02#17").is_ok());
        assert!(check_identifier(&"é".repeat(255)).is_ok());
        assert!(check_identifier("").is_err());
        assert!(check_identifier(&"x".repeat(256)).is_err());
        assert!(check_identifier("a\u{0}b").is_err());
        assert!(check_identifier("a\tb").is_err());
    }

    #[test]
    fn a_resent_record_matches_when_only_the_server_chosen_time_differs() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let stored = UsageRecord {
            id: UsageRecordId::generate(),
            object: "usage_record",
            subscription_item: SubscriptionItemId::generate(),
            quantity: 5,
            action: UsageAction::Increment,
            timestamp: at,
            created: at,
            identifier: Some("a".into()),
        };
        let item = stored.subscription_item.clone();
        assert!(same_record(&stored, &item, 5, UsageAction::Increment, None));
        assert!(same_record(
            &stored,
            &item,
            5,
            UsageAction::Increment,
            Some(at)
        ));
        let later = at + chrono::Duration::seconds(1);
        assert!(!same_record(
            &stored,
            &item,
            5,
            UsageAction::Increment,
            Some(later)
        ));
        assert!(!same_record(
            &stored,
            &item,
            6,
            UsageAction::Increment,
            None
        ));
        assert!(!same_record(&stored, &item, 5, UsageAction::Set, None));
        let other = SubscriptionItemId::generate();
        assert!(!same_record(
            &stored,
            &other,
            5,
            UsageAction::Increment,
            None
        ));
    }
}
