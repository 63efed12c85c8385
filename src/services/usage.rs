//! Usage records for metered subscription items, one at a time or in batches of up to
//! [`MAX_BATCH_RECORDS`]: one transaction per batch, a handful of queries whatever its size
//! (items, subscriptions, prices and stored identifiers are each read once), multi-row INSERTs.

use super::ServiceError;
use crate::domain::event::EventType;
use crate::domain::ids::{SubscriptionId, SubscriptionItemId, UsageRecordId};
use crate::domain::price::{Price, UsageType};
use crate::domain::subscription::{Subscription, SubscriptionStatus};
use crate::domain::tenant::Tenant;
use crate::domain::usage::{MAX_BATCH_RECORDS, UsageAction, UsageRecord, same_record};
use crate::store::events::{NewEvent, insert_events};
use crate::store::rows::to_json;
use crate::store::subscriptions::{find_items, share_subscriptions};
use crate::store::{Db, StoreError, catalogue, usage};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, PartialEq)]
pub struct NewUsage {
    pub subscription_item: SubscriptionItemId,
    pub quantity: u64,
    pub timestamp: Option<DateTime<Utc>>,
    pub action: UsageAction,
    pub identifier: Option<String>,
}

/// What a batch did: every record in the order sent, each either stored now or found stored
/// under its identifier (`duplicate`).
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub record: UsageRecord,
    pub duplicate: bool,
}

/// Records one usage record; its errors are the batch's, unwrapped.
pub async fn record_usage(
    db: &Db,
    tenant: &Tenant,
    new: NewUsage,
    now: DateTime<Utc>,
) -> Result<Recorded, ServiceError> {
    match record(db, tenant, vec![new], now, Announce::EachRecord).await {
        Ok(mut done) => Ok(done.remove(0)),
        Err(ServiceError::Batch(mut errors)) if errors.len() == 1 => Err(errors.remove(0).1),
        Err(e) => Err(e),
    }
}

/// Records a batch all or nothing: when any record is refused, the error lists each refused
/// record by its index and nothing is written. A timestamp must fall between the
/// subscription's start and now and inside its current period: usage in the future is a clock
/// bug on the caller's side, usage before the start has no period, and usage in a period
/// already invoiced would never be billed (Stripe refuses it too).
pub async fn record_batch(
    db: &Db,
    tenant: &Tenant,
    records: Vec<NewUsage>,
    now: DateTime<Utc>,
) -> Result<Vec<Recorded>, ServiceError> {
    record(db, tenant, records, now, Announce::Batch).await
}

/// How stored records are announced in events.
enum Announce {
    /// `usage_record.created` with the record (the single-record route).
    EachRecord,
    /// One `usage_record.batch_created` naming the stored records' ids: a batch of 1,000 writes
    /// one event row, not 1,000 (usage is data flowing in, not a change of billing state).
    Batch,
}

async fn record(
    db: &Db,
    tenant: &Tenant,
    records: Vec<NewUsage>,
    now: DateTime<Utc>,
    announce: Announce,
) -> Result<Vec<Recorded>, ServiceError> {
    if records.is_empty() || records.len() > MAX_BATCH_RECORDS {
        return Err(ServiceError::invalid(
            "records",
            format!("a batch holds 1 to {MAX_BATCH_RECORDS} records"),
        ));
    }
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in records.iter().enumerate() {
        if let Some(id) = &r.identifier
            && !seen.insert(id.as_str())
        {
            errors.push((
                i,
                ServiceError::invalid(
                    "identifier",
                    format!("identifier '{id}' appears more than once in this batch"),
                ),
            ));
        }
    }
    let mut tx = db.begin().await?;
    // usage_records grows by thousands of rows a second under batches: a plan cached while it
    // was small (a sequential scan) would read it all again for every batch.
    tx.plan_each_statement().await?;
    let item_ids: Vec<SubscriptionItemId> = unique(records.iter().map(|r| &r.subscription_item));
    let items = find_items(&mut tx, &tenant.id, &item_ids).await?;
    let sub_ids: Vec<SubscriptionId> = unique(items.values().map(|(sub, _)| sub));
    let subs: HashMap<SubscriptionId, Subscription> =
        share_subscriptions(&mut tx, &tenant.id, &sub_ids)
            .await?
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
    // Records sent before (a client retrying) are answered without a write; one a concurrent
    // request is storing right now is found by the INSERT below.
    let identifiers: Vec<&str> = records
        .iter()
        .filter_map(|r| r.identifier.as_deref())
        .collect();
    let stored = usage::find_by_identifiers(&mut tx, &tenant.id, &identifiers).await?;
    let price_ids = unique(items.values().map(|(_, item)| &item.price));
    let prices: HashMap<_, Price> = catalogue::prices_by_ids(&mut tx, &tenant.id, &price_ids)
        .await?
        .into_iter()
        .map(|p| (p.id.clone(), p))
        .collect();

    let requested: Vec<Option<DateTime<Utc>>> = records.iter().map(|r| r.timestamp).collect();
    let mut done = Vec::with_capacity(records.len());
    let mut rows = Vec::new();
    for (i, new) in records.into_iter().enumerate() {
        if errors.iter().any(|(at, _)| *at == i) {
            continue;
        }
        if let Some(found) = new.identifier.as_ref().and_then(|id| stored.get(id)) {
            if same_record(
                found,
                &new.subscription_item,
                new.quantity,
                new.action,
                new.timestamp,
            ) {
                done.push(Recorded {
                    record: found.clone(),
                    duplicate: true,
                });
            } else {
                errors.push((i, identifier_reused(found)));
            }
            continue;
        }
        let timestamp = new.timestamp.unwrap_or(now);
        let checked = items
            .get(&new.subscription_item)
            .ok_or_else(|| {
                ServiceError::missing_in_body(
                    "subscription_item",
                    &new.subscription_item,
                    "subscription_item",
                )
            })
            .and_then(|(sub, item)| {
                let sub = subs
                    .get(sub)
                    .ok_or_else(|| ServiceError::not_found("subscription", sub))?;
                let price = prices
                    .get(&item.price)
                    .ok_or_else(|| ServiceError::not_found("price", &item.price))?;
                check_usage(sub, price, timestamp, now).map(|()| sub.id.clone())
            });
        match checked {
            Ok(sub) => {
                let record = UsageRecord {
                    id: UsageRecordId::generate(),
                    object: "usage_record",
                    subscription_item: new.subscription_item,
                    quantity: new.quantity,
                    action: new.action,
                    timestamp,
                    created: now,
                    identifier: new.identifier,
                };
                done.push(Recorded {
                    record: record.clone(),
                    duplicate: false,
                });
                rows.push((sub, record));
            }
            Err(e) => errors.push((i, e)),
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|(i, _)| *i);
        return Err(ServiceError::Batch(errors));
    }
    if !rows.is_empty() {
        let taken = usage::insert_usage_records(&mut tx, &tenant.id, &rows).await?;
        if !taken.is_empty() {
            answer_taken(&mut tx, tenant, &taken, &requested, &mut done).await?;
            rows.retain(|(_, r)| !r.identifier.as_ref().is_some_and(|id| taken.contains(id)));
        }
        let events = announcement(&rows, announce, now)?;
        insert_events(&mut tx, &tenant.id, &events).await?;
    }
    tx.commit().await?;
    Ok(done)
}

/// Records whose identifier a concurrent request stored first (the INSERT waited for it to
/// commit and skipped them) are answered like any stored record, or refuse the batch when they
/// differ from it.
async fn answer_taken(
    tx: &mut crate::store::Tx,
    tenant: &Tenant,
    taken: &HashSet<String>,
    requested: &[Option<DateTime<Utc>>],
    done: &mut [Recorded],
) -> Result<(), ServiceError> {
    let refs: Vec<&str> = taken.iter().map(String::as_str).collect();
    let stored = usage::find_by_identifiers(tx, &tenant.id, &refs).await?;
    let mut errors = Vec::new();
    for (i, r) in done.iter_mut().enumerate() {
        let Some(found) = r.record.identifier.as_ref().and_then(|id| stored.get(id)) else {
            continue;
        };
        if r.duplicate {
            continue;
        }
        let sent = &r.record;
        if same_record(
            found,
            &sent.subscription_item,
            sent.quantity,
            sent.action,
            requested[i],
        ) {
            *r = Recorded {
                record: found.clone(),
                duplicate: true,
            };
        } else {
            errors.push((i, identifier_reused(found)));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Batch(errors))
    }
}

/// The events announcing stored records (none when every record was a duplicate).
fn announcement(
    rows: &[(SubscriptionId, UsageRecord)],
    announce: Announce,
    now: DateTime<Utc>,
) -> Result<Vec<NewEvent>, StoreError> {
    let Some((_, first)) = rows.first() else {
        return Ok(Vec::new());
    };
    Ok(match announce {
        Announce::EachRecord => rows
            .iter()
            .map(|(_, r)| {
                Ok(NewEvent {
                    kind: EventType::UsageRecordCreated,
                    object_id: r.id.to_string(),
                    data: to_json(r)?,
                    at: now,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?,
        Announce::Batch => {
            let ids: Vec<&str> = rows.iter().map(|(_, r)| r.id.as_str()).collect();
            vec![NewEvent {
                kind: EventType::UsageRecordBatchCreated,
                object_id: first.id.to_string(),
                data: to_json(&serde_json::json!({
                    "object": "usage_record_batch",
                    "created": ids.len(),
                    "records": ids,
                }))?,
                at: now,
            }]
        }
    })
}

/// Whether usage at `timestamp` may be recorded on this subscription's metered price.
fn check_usage(
    sub: &Subscription,
    price: &Price,
    timestamp: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    if price.recurring.map(|r| r.usage_type) != Some(UsageType::Metered) {
        return Err(ServiceError::unprocessable(
            "price_not_metered",
            Some("subscription_item"),
            format!(
                "usage can only be recorded for metered prices; {} is licensed",
                price.id
            ),
        ));
    }
    if sub.status == SubscriptionStatus::Canceled {
        return Err(ServiceError::unprocessable(
            "subscription_invalid_state",
            Some("subscription_item"),
            format!("subscription {} is canceled", sub.id),
        ));
    }
    if timestamp > now {
        return Err(ServiceError::invalid(
            "timestamp",
            "timestamp must not be in the future",
        ));
    }
    if timestamp < sub.start_date {
        return Err(ServiceError::invalid(
            "timestamp",
            "timestamp is before the subscription started",
        ));
    }
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
    Ok(())
}

fn identifier_reused(found: &UsageRecord) -> ServiceError {
    ServiceError::Conflict {
        code: "usage_identifier_reused",
        message: format!(
            "identifier '{}' belongs to usage record {} with a different item, quantity, action or timestamp",
            found.identifier.as_deref().unwrap_or_default(),
            found.id
        ),
        param: Some("identifier".into()),
    }
}

fn unique<'a, T: Clone + Eq + std::hash::Hash + 'a>(ids: impl Iterator<Item = &'a T>) -> Vec<T> {
    let mut seen = HashSet::new();
    ids.filter(|id| seen.insert(*id)).cloned().collect()
}
