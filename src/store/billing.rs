//! What the billing run reads and writes in bulk: due subscriptions (claimed with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several workers split the work), the catalogue
//! rows they reference, usage, pending prorations, and the subscriptions' new state.

use super::rows::{Rec, from_db_uint, known};
use super::{StoreError, Tx, on_tx, push_id_list};
use crate::billing::cycle::PendingChange;
use crate::domain::customer::TaxExempt;
use crate::domain::ids::{
    CustomerId, InvoiceId, SubscriptionChangeId, SubscriptionId, SubscriptionItemId, TenantId,
};
use crate::domain::period::Period;
use crate::domain::subscription::{Subscription, SubscriptionItem};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

pub async fn tax_exempt_of(
    tx: &mut Tx,
    tenant: &TenantId,
    customers: &[CustomerId],
) -> Result<HashMap<CustomerId, TaxExempt>, StoreError> {
    if customers.is_empty() {
        return Ok(HashMap::new());
    }
    on_tx!(tx, |c| {
        let mut q =
            sqlx::QueryBuilder::new("SELECT id, tax_exempt FROM customers WHERE tenant_id = ");
        q.push_bind(tenant.as_str()).push(" AND id IN ");
        push_id_list(&mut q, customers.iter().map(|id| id.as_str()));
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.parsed("id", CustomerId::parse)?,
                    r.parsed("tax_exempt", known(TaxExempt::parse))?,
                ))
            })
            .collect()
    })
}

/// The usage total of each item over its own window `[from, to)`, summed in the database:
/// the quantity of the last `set` (by time, then id) plus the increments after it, or all
/// increments when there is none. One row per item comes back, however many records there
/// are, so a batch's memory does not grow with usage volume.
pub async fn usage_totals(
    tx: &mut Tx,
    tenant: &TenantId,
    windows: &[(SubscriptionItemId, DateTime<Utc>, DateTime<Utc>)],
) -> Result<HashMap<SubscriptionItemId, u64>, StoreError> {
    let mut out = HashMap::new();
    for chunk in windows.chunks(300) {
        let rows = on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new("WITH w (item, wfrom, wto) AS (");
            q.push_values(chunk, |mut b, (item, from, to)| {
                b.push_bind(item.as_str()).push_bind(*from).push_bind(*to);
            });
            q.push(
                "), r AS (
                   SELECT u.subscription_item_id AS item, u.id, u.quantity, u.action, u.recorded_at
                   FROM usage_records u JOIN w ON u.subscription_item_id = w.item
                   WHERE u.recorded_at >= w.wfrom AND u.recorded_at < w.wto AND u.tenant_id = ",
            );
            q.push_bind(tenant.as_str());
            q.push(
                "), ranked AS (
                   SELECT item, id, quantity, recorded_at,
                          ROW_NUMBER() OVER (PARTITION BY item ORDER BY recorded_at DESC, id DESC) AS rn
                   FROM r WHERE action = 'set'
                 ), last_set AS (SELECT item, id, quantity, recorded_at FROM ranked WHERE rn = 1)
                 SELECT r.item AS item,
                        CAST(COALESCE(MAX(ls.quantity), 0) + COALESCE(SUM(CASE WHEN r.action = 'increment'
                            AND (ls.item IS NULL OR r.recorded_at > ls.recorded_at
                                 OR (r.recorded_at = ls.recorded_at AND r.id > ls.id))
                            THEN r.quantity ELSE 0 END), 0) AS BIGINT) AS total
                 FROM r LEFT JOIN last_set ls ON ls.item = r.item
                 GROUP BY r.item",
            );
            let rows = q.build().fetch_all(&mut *c).await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.parsed("item", SubscriptionItemId::parse)?,
                        from_db_uint(r.int("total")?, "usage total")?,
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        });
        out.extend(rows);
    }
    Ok(out)
}

/// Recorded item changes still waiting for their proration lines.
pub async fn pending_changes(
    tx: &mut Tx,
    tenant: &TenantId,
    subs: &[SubscriptionId],
) -> Result<HashMap<SubscriptionId, Vec<PendingChange>>, StoreError> {
    let mut out: HashMap<SubscriptionId, Vec<PendingChange>> = HashMap::new();
    if subs.is_empty() {
        return Ok(out);
    }
    let rows = on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT id, subscription_id, effective_at, period_start, period_end, items_before, items_after FROM subscription_changes
             WHERE invoice_id IS NULL AND proration_behavior = 'create_prorations' AND tenant_id = ",
        );
        q.push_bind(tenant.as_str())
            .push(" AND subscription_id IN ");
        push_id_list(&mut q, subs.iter().map(|id| id.as_str()));
        q.push(" ORDER BY effective_at, id");
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.parsed("subscription_id", SubscriptionId::parse)?,
                    PendingChange {
                        id: r.parsed("id", SubscriptionChangeId::parse)?,
                        effective_at: r.time("effective_at")?,
                        period: Period {
                            start: r.time("period_start")?,
                            end: r.time("period_end")?,
                        },
                        before: r.json::<Vec<SubscriptionItem>>("items_before")?,
                        after: r.json::<Vec<SubscriptionItem>>("items_after")?,
                    },
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?
    });
    for (sub, change) in rows {
        out.entry(sub).or_default().push(change);
    }
    Ok(out)
}

pub async fn mark_changes_invoiced(
    tx: &mut Tx,
    tenant: &TenantId,
    done: &[(SubscriptionChangeId, InvoiceId)],
) -> Result<(), StoreError> {
    for (change, invoice) in done {
        on_tx!(tx, |c| sqlx::query(
            "UPDATE subscription_changes SET invoice_id = $3 WHERE tenant_id = $1 AND id = $2"
        )
        .bind(tenant.as_str())
        .bind(change.as_str())
        .bind(invoice.as_str())
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// Writes the billing state of many subscriptions with one statement per chunk.
pub async fn update_billing_state(
    tx: &mut Tx,
    tenant: &TenantId,
    subs: &[Subscription],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for chunk in subs.chunks(500) {
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "WITH v (id, status, cps, cpe, nba, di, canceled_at, ended_at, berr) AS (",
            );
            q.push_values(chunk, |mut b, s| {
                b.push_bind(s.id.as_str())
                    .push_bind(s.status.as_str())
                    .push_bind(s.current_period_start)
                    .push_bind(s.current_period_end)
                    .push_bind(s.next_billing_at)
                    .push_bind(i64::from(s.discount_invoices))
                    .push_bind(s.canceled_at)
                    .push_bind(s.ended_at)
                    .push_bind(s.billing_error.as_deref());
            });
            q.push(
                ") UPDATE subscriptions SET status = v.status, current_period_start = v.cps, current_period_end = v.cpe,
                     next_billing_at = v.nba, discount_invoices = v.di, canceled_at = v.canceled_at, ended_at = v.ended_at,
                     billing_error = v.berr, updated_at = ",
            );
            q.push_bind(now)
                .push(" FROM v WHERE subscriptions.tenant_id = ")
                .push_bind(tenant.as_str());
            q.push(" AND subscriptions.id = v.id");
            q.build().execute(&mut *c).await?;
        });
    }
    Ok(())
}
