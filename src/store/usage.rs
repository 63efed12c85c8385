//! Usage records: written in multi-row INSERTs, found again by the caller's identifiers.

use super::rows::{Rec, from_db_uint, to_db_int};
use super::{StoreError, Tx, on_tx, push_id_list};
use crate::domain::ids::{SubscriptionId, SubscriptionItemId, TenantId, UsageRecordId};
use crate::domain::usage::{UsageAction, UsageRecord};
use std::collections::{HashMap, HashSet};

/// Rows per INSERT statement: nine binds each stays far below both backends' limits.
const CHUNK: usize = 500;

/// Inserts usage records, each with the subscription its item belongs to, and answers the
/// identifiers that were stored already: their records are skipped (a concurrent request that
/// stored one first is waited for, then skipped), never a unique-constraint error.
pub async fn insert_usage_records(
    tx: &mut Tx,
    tenant: &TenantId,
    records: &[(SubscriptionId, UsageRecord)],
) -> Result<HashSet<String>, StoreError> {
    // In identifier order: two requests storing overlapping identifiers wait for each other
    // in one order, never in a cycle (the ids, not this order, keep the records' order).
    let mut sorted: Vec<&(SubscriptionId, UsageRecord)> = records.iter().collect();
    sorted.sort_by(|a, b| a.1.identifier.cmp(&b.1.identifier));
    let mut taken = HashSet::new();
    for chunk in sorted.chunks(CHUNK) {
        let quantities = chunk
            .iter()
            .map(|(_, u)| to_db_int(u.quantity, "quantity"))
            .collect::<Result<Vec<_>, _>>()?;
        let inserted: Vec<Option<String>> = on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO usage_records (tenant_id, id, subscription_id, subscription_item_id, quantity, action, recorded_at, created_at, identifier) ",
            );
            q.push_values(
                chunk.iter().zip(&quantities),
                |mut b, ((sub, u), quantity)| {
                    b.push_bind(tenant.as_str())
                        .push_bind(u.id.as_str())
                        .push_bind(sub.as_str())
                        .push_bind(u.subscription_item.as_str())
                        .push_bind(*quantity)
                        .push_bind(u.action.as_str())
                        .push_bind(u.timestamp)
                        .push_bind(u.created)
                        .push_bind(u.identifier.as_deref());
                },
            );
            q.push(" ON CONFLICT (tenant_id, identifier) DO NOTHING RETURNING identifier");
            let rows = q.build().fetch_all(&mut *c).await?;
            rows.iter()
                .map(|r| r.opt_text("identifier"))
                .collect::<Result<Vec<_>, _>>()?
        });
        let inserted: HashSet<String> = inserted.into_iter().flatten().collect();
        taken.extend(
            chunk
                .iter()
                .filter_map(|(_, u)| u.identifier.as_ref())
                .filter(|id| !inserted.contains(*id))
                .cloned(),
        );
    }
    Ok(taken)
}

/// The stored records carrying any of these identifiers, by identifier.
pub async fn find_by_identifiers(
    tx: &mut Tx,
    tenant: &TenantId,
    identifiers: &[&str],
) -> Result<HashMap<String, UsageRecord>, StoreError> {
    let mut out = HashMap::new();
    for chunk in identifiers.chunks(CHUNK) {
        let rows = on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "SELECT id, subscription_item_id, quantity, action, recorded_at, created_at, identifier
                 FROM usage_records WHERE tenant_id = ",
            );
            q.push_bind(tenant.as_str()).push(" AND identifier IN ");
            push_id_list(&mut q, chunk.iter().copied());
            let rows = q.build().fetch_all(&mut *c).await?;
            rows.iter()
                .map(record_from)
                .collect::<Result<Vec<_>, _>>()?
        });
        for r in rows {
            if let Some(identifier) = r.identifier.clone() {
                out.insert(identifier, r);
            }
        }
    }
    Ok(out)
}

/// How many usage records the tenant has.
pub async fn count_records(tx: &mut Tx, tenant: &TenantId) -> Result<i64, StoreError> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM usage_records WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_one(&mut *c)
            .await?
    }))
}

fn record_from(r: &impl Rec) -> Result<UsageRecord, StoreError> {
    Ok(UsageRecord {
        id: r.parsed("id", UsageRecordId::parse)?,
        object: "usage_record",
        subscription_item: r.parsed("subscription_item_id", SubscriptionItemId::parse)?,
        quantity: from_db_uint(r.int("quantity")?, "quantity")?,
        action: r.parsed("action", |s| {
            UsageAction::parse(s).ok_or_else(|| format!("unknown usage action {s}"))
        })?,
        timestamp: r.time("recorded_at")?,
        created: r.time("created_at")?,
        identifier: r.opt_text("identifier")?,
    })
}
