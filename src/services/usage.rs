//! Usage records for metered subscription items.

use super::ServiceError;
use super::subscriptions::metered_item;
use crate::domain::event::EventType;
use crate::domain::ids::{SubscriptionItemId, UsageRecordId};
use crate::domain::subscription::SubscriptionStatus;
use crate::domain::tenant::Tenant;
use crate::domain::usage::{UsageAction, UsageRecord};
use crate::store::{Db, events, usage};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct NewUsage {
    pub subscription_item: SubscriptionItemId,
    pub quantity: u64,
    pub timestamp: Option<DateTime<Utc>>,
    pub action: UsageAction,
}

/// Records usage. The timestamp must fall between the subscription's start and now: usage in
/// the future is a clock bug on the caller's side, and usage before the start has no period.
pub async fn record_usage(
    db: &Db,
    tenant: &Tenant,
    new: NewUsage,
    now: DateTime<Utc>,
) -> Result<UsageRecord, ServiceError> {
    let timestamp = new.timestamp.unwrap_or(now);
    if timestamp > now {
        return Err(ServiceError::invalid(
            "timestamp",
            "timestamp must not be in the future",
        ));
    }
    let mut tx = db.begin().await?;
    let (sub, item) = metered_item(&mut tx, tenant, &new.subscription_item).await?;
    if sub.status == SubscriptionStatus::Canceled {
        return Err(ServiceError::unprocessable(
            "subscription_invalid_state",
            Some("subscription_item"),
            format!("subscription {} is canceled", sub.id),
        ));
    }
    if timestamp < sub.start_date {
        return Err(ServiceError::invalid(
            "timestamp",
            "timestamp is before the subscription started",
        ));
    }
    // Usage is billed in arrears at the end of its period; a period before the current one
    // has been invoiced, so usage stamped into it would never be billed (Stripe refuses it too).
    if timestamp < sub.current_period_start {
        return Err(ServiceError::unprocessable(
            "usage_period_closed",
            Some("timestamp"),
            format!(
                "usage at {} falls in a period already invoiced; usage can be recorded from {} on",
                timestamp.to_rfc3339(),
                sub.current_period_start.to_rfc3339()
            ),
        ));
    }
    let record = UsageRecord {
        id: UsageRecordId::generate(),
        object: "usage_record",
        subscription_item: item.id,
        quantity: new.quantity,
        action: new.action,
        timestamp,
        created: now,
    };
    usage::insert_usage_record(&mut tx, &tenant.id, &sub.id, &record).await?;
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::UsageRecordCreated,
        record.id.as_str(),
        &record,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(record)
}
