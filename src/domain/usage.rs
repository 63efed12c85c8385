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
}

/// The most usage one record may carry; sums of many stay far from `u64::MAX`.
pub const MAX_USAGE_QUANTITY: u64 = 1_000_000_000_000;
