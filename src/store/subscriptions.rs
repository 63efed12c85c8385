//! Subscriptions with their items, and the recorded item changes billing prorates.

use super::rows::{Rec, from_db_uint, known, to_db_int, to_json};
use super::{Page, StoreError, Tx, on_tx, push_id_list};
use crate::domain::currency::Currency;
use crate::domain::ids::{
    CouponId, CustomerId, PriceId, SubscriptionChangeId, SubscriptionId, SubscriptionItemId,
    TaxRateId, TenantId,
};
use crate::domain::period::{Interval, IntervalUnit};
use crate::domain::subscription::{
    CollectionMethod, ProrationBehavior, Subscription, SubscriptionItem, SubscriptionStatus,
};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

macro_rules! select_subscription {
    ($filter:literal) => {
        concat!(
            "SELECT id, customer_id, status, currency, interval_unit, interval_count, collection_method, days_until_due, coupon_id,
                    default_tax_rates, proration_behavior, start_date, trial_end, billing_cycle_anchor, current_period_start,
                    current_period_end, cancel_at_period_end, canceled_at, ended_at, paused_at, created_at, next_billing_at, discount_invoices,
                    billing_error
             FROM subscriptions ",
            $filter
        )
    };
}

fn subscription_from(r: &impl Rec) -> Result<Subscription, StoreError> {
    let count = u32::try_from(r.int("interval_count")?)
        .map_err(|e| super::rows::corrupt("interval_count", e))?;
    let interval = Interval::new(
        r.parsed("interval_unit", known(IntervalUnit::parse))?,
        count,
    )
    .map_err(|e| super::rows::corrupt("interval_count", e))?;
    let days = r
        .opt_int("days_until_due")?
        .map(u32::try_from)
        .transpose()
        .map_err(|e| super::rows::corrupt("days_until_due", e))?;
    Ok(Subscription {
        id: r.parsed("id", SubscriptionId::parse)?,
        object: "subscription",
        customer: r.parsed("customer_id", CustomerId::parse)?,
        status: r.parsed("status", known(SubscriptionStatus::parse))?,
        currency: r.parsed("currency", Currency::parse)?,
        interval,
        items: Vec::new(),
        collection_method: r.parsed("collection_method", known(CollectionMethod::parse))?,
        days_until_due: days,
        coupon: r.opt_parsed("coupon_id", CouponId::parse)?,
        default_tax_rates: r.json::<Vec<TaxRateId>>("default_tax_rates")?,
        proration_behavior: r.parsed("proration_behavior", known(ProrationBehavior::parse))?,
        start_date: r.time("start_date")?,
        trial_end: r.opt_time("trial_end")?,
        billing_cycle_anchor: r.time("billing_cycle_anchor")?,
        current_period_start: r.time("current_period_start")?,
        current_period_end: r.time("current_period_end")?,
        cancel_at_period_end: r.flag("cancel_at_period_end")?,
        canceled_at: r.opt_time("canceled_at")?,
        ended_at: r.opt_time("ended_at")?,
        paused_at: r.opt_time("paused_at")?,
        created: r.time("created_at")?,
        next_billing_at: r.opt_time("next_billing_at")?,
        discount_invoices: u32::try_from(r.int("discount_invoices")?)
            .map_err(|e| super::rows::corrupt("discount_invoices", e))?,
        billing_error: r.opt_text("billing_error")?,
    })
}

fn item_from(r: &impl Rec) -> Result<(SubscriptionId, SubscriptionItem), StoreError> {
    Ok((
        r.parsed("subscription_id", SubscriptionId::parse)?,
        SubscriptionItem {
            id: r.parsed("id", SubscriptionItemId::parse)?,
            price: r.parsed("price_id", PriceId::parse)?,
            quantity: from_db_uint(r.int("quantity")?, "quantity")?,
        },
    ))
}

pub async fn insert_subscription(
    tx: &mut Tx,
    tenant: &TenantId,
    s: &Subscription,
) -> Result<(), StoreError> {
    let tax_rates = to_json(&s.default_tax_rates)?;
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO subscriptions (tenant_id, id, customer_id, status, currency, interval_unit, interval_count, collection_method,
             days_until_due, coupon_id, default_tax_rates, proration_behavior, start_date, trial_end, billing_cycle_anchor,
             current_period_start, current_period_end, cancel_at_period_end, canceled_at, ended_at, paused_at, created_at, updated_at,
             next_billing_at, discount_invoices)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $22, $23, $24)"
    )
    .bind(tenant.as_str())
    .bind(s.id.as_str())
    .bind(s.customer.as_str())
    .bind(s.status.as_str())
    .bind(s.currency.code())
    .bind(s.interval.unit().as_str())
    .bind(i64::from(s.interval.count()))
    .bind(s.collection_method.as_str())
    .bind(s.days_until_due.map(i64::from))
    .bind(s.coupon.as_ref().map(CouponId::as_str))
    .bind(&tax_rates)
    .bind(s.proration_behavior.as_str())
    .bind(s.start_date)
    .bind(s.trial_end)
    .bind(s.billing_cycle_anchor)
    .bind(s.current_period_start)
    .bind(s.current_period_end)
    .bind(s.cancel_at_period_end)
    .bind(s.canceled_at)
    .bind(s.ended_at)
    .bind(s.paused_at)
    .bind(s.created)
    .bind(s.next_billing_at)
    .bind(i64::from(s.discount_invoices))
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    .map_err(StoreError::from_write)
    })?;
    upsert_items(tx, tenant, &s.id, &s.items, s.created).await
}

/// Writes the item list as given: new items are inserted, existing ones take the new price and
/// quantity, and their order is kept in `position`.
pub async fn upsert_items(
    tx: &mut Tx,
    tenant: &TenantId,
    sub: &SubscriptionId,
    items: &[SubscriptionItem],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for (position, item) in items.iter().enumerate() {
        let quantity = to_db_int(item.quantity, "quantity")?;
        let position = to_db_int(position as u64, "position")?;
        on_tx!(tx, |c| {
            sqlx::query(
            "INSERT INTO subscription_items (tenant_id, id, subscription_id, price_id, quantity, position, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant_id, id) DO UPDATE SET price_id = excluded.price_id, quantity = excluded.quantity, position = excluded.position"
        )
        .bind(tenant.as_str())
        .bind(item.id.as_str())
        .bind(sub.as_str())
        .bind(item.price.as_str())
        .bind(quantity)
        .bind(position)
        .bind(now)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected())
        .map_err(StoreError::from_write)
        })?;
    }
    Ok(())
}

/// Items are never deleted: usage records and past invoices still point at them.
pub async fn retire_item(
    tx: &mut Tx,
    tenant: &TenantId,
    item: &SubscriptionItemId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_tx!(tx, |c| sqlx::query(
        "UPDATE subscription_items SET deleted_at = $3 WHERE tenant_id = $1 AND id = $2"
    )
    .bind(tenant.as_str())
    .bind(item.as_str())
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Writes the columns that change over a subscription's life.
pub async fn update_subscription(
    tx: &mut Tx,
    tenant: &TenantId,
    s: &Subscription,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_tx!(tx, |c| {
        sqlx::query(
        "UPDATE subscriptions SET status = $3, current_period_start = $4, current_period_end = $5, cancel_at_period_end = $6,
             canceled_at = $7, ended_at = $8, paused_at = $9, proration_behavior = $10, updated_at = $11,
             next_billing_at = $12, discount_invoices = $13, billing_cycle_anchor = $14, billing_error = $15,
             interval_unit = $16, interval_count = $17
         WHERE tenant_id = $1 AND id = $2"
    )
    .bind(tenant.as_str())
    .bind(s.id.as_str())
    .bind(s.status.as_str())
    .bind(s.current_period_start)
    .bind(s.current_period_end)
    .bind(s.cancel_at_period_end)
    .bind(s.canceled_at)
    .bind(s.ended_at)
    .bind(s.paused_at)
    .bind(s.proration_behavior.as_str())
    .bind(now)
    .bind(s.next_billing_at)
    .bind(i64::from(s.discount_invoices))
    .bind(s.billing_cycle_anchor)
    .bind(s.billing_error.as_deref())
    .bind(s.interval.unit().as_str())
    .bind(i64::from(s.interval.count()))
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(())
}

pub async fn find_subscription(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &SubscriptionId,
) -> Result<Option<Subscription>, StoreError> {
    let sub = on_tx!(tx, |c| {
        let row = sqlx::query(select_subscription!("WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(subscription_from).transpose()?
    });
    let Some(mut sub) = sub else { return Ok(None) };
    let mut items = items_of(tx, tenant, std::slice::from_ref(&sub.id)).await?;
    sub.items = items.remove(&sub.id).unwrap_or_default();
    Ok(Some(sub))
}

#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    pub customer: Option<CustomerId>,
    pub status: Option<SubscriptionStatus>,
}

pub async fn list_subscriptions(
    tx: &mut Tx,
    tenant: &TenantId,
    filter: &SubscriptionFilter,
    page: &Page,
) -> Result<(Vec<Subscription>, bool), StoreError> {
    let rows = on_tx!(tx, |c| {
        let rows = sqlx::query(select_subscription!(
            "WHERE tenant_id = $1 AND ($2 IS NULL OR customer_id = $2) AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5"
        ))
        .bind(tenant.as_str())
        .bind(filter.customer.as_ref().map(CustomerId::as_str))
        .bind(filter.status.map(SubscriptionStatus::as_str))
        .bind(page.starting_after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(subscription_from)
            .collect::<Result<Vec<_>, _>>()?
    });
    let (mut subs, has_more) = page.split(rows);
    let ids: Vec<SubscriptionId> = subs.iter().map(|s| s.id.clone()).collect();
    let mut items = items_of(tx, tenant, &ids).await?;
    for s in &mut subs {
        s.items = items.remove(&s.id).unwrap_or_default();
    }
    Ok((subs, has_more))
}

/// The live items of many subscriptions in one query.
pub async fn items_of(
    tx: &mut Tx,
    tenant: &TenantId,
    subs: &[SubscriptionId],
) -> Result<HashMap<SubscriptionId, Vec<SubscriptionItem>>, StoreError> {
    let mut out: HashMap<SubscriptionId, Vec<SubscriptionItem>> = HashMap::new();
    if subs.is_empty() {
        return Ok(out);
    }
    let rows = on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT id, subscription_id, price_id, quantity FROM subscription_items WHERE deleted_at IS NULL AND tenant_id = ",
        );
        q.push_bind(tenant.as_str())
            .push(" AND subscription_id IN ");
        push_id_list(&mut q, subs.iter().map(|s| s.as_str()));
        q.push(" ORDER BY subscription_id, position");
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter().map(item_from).collect::<Result<Vec<_>, _>>()?
    });
    for (sub, item) in rows {
        out.entry(sub).or_default().push(item);
    }
    Ok(out)
}

/// Items on live subscriptions by id, each with the subscription it belongs to; unknown and
/// retired ids are absent from the answer.
pub async fn find_items(
    tx: &mut Tx,
    tenant: &TenantId,
    ids: &[SubscriptionItemId],
) -> Result<HashMap<SubscriptionItemId, (SubscriptionId, SubscriptionItem)>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT id, subscription_id, price_id, quantity FROM subscription_items WHERE deleted_at IS NULL AND tenant_id = ",
        );
        q.push_bind(tenant.as_str()).push(" AND id IN ");
        push_id_list(&mut q, ids.iter().map(|id| id.as_str()));
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter().map(item_from).collect::<Result<Vec<_>, _>>()?
    });
    Ok(rows
        .into_iter()
        .map(|(sub, item)| (item.id.clone(), (sub, item)))
        .collect())
}

/// A PATCH of items as billing will prorate it.
#[derive(Debug, Clone)]
pub struct SubscriptionChange {
    pub id: SubscriptionChangeId,
    pub subscription: SubscriptionId,
    pub effective_at: DateTime<Utc>,
    pub proration_behavior: ProrationBehavior,
    pub items_before: Vec<SubscriptionItem>,
    pub items_after: Vec<SubscriptionItem>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
}

pub async fn insert_subscription_change(
    tx: &mut Tx,
    tenant: &TenantId,
    ch: &SubscriptionChange,
) -> Result<(), StoreError> {
    let before = to_json(&ch.items_before)?;
    let after = to_json(&ch.items_after)?;
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO subscription_changes (tenant_id, id, subscription_id, effective_at, proration_behavior, items_before, items_after,
             period_start, period_end, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $4)"
    )
    .bind(tenant.as_str())
    .bind(ch.id.as_str())
    .bind(ch.subscription.as_str())
    .bind(ch.effective_at)
    .bind(ch.proration_behavior.as_str())
    .bind(&before)
    .bind(&after)
    .bind(ch.period_start)
    .bind(ch.period_end)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    .map_err(StoreError::from_write)
    })?;
    Ok(())
}

/// Many subscriptions by id with their items, locked on PostgreSQL until the transaction ends
/// (in id order, after any invoices the caller locked: the documented lock order is invoices,
/// then subscriptions). Every read-modify-write of a subscription goes through here, so a
/// PATCH, a payment outcome and a worker's renewal never write back a stale copy.
pub async fn lock_subscriptions(
    tx: &mut Tx,
    tenant: &TenantId,
    ids: &[SubscriptionId],
) -> Result<Vec<Subscription>, StoreError> {
    subscriptions_locked(tx, tenant, ids, " ORDER BY id FOR UPDATE").await
}

/// Like [`lock_subscriptions`], in share mode: holders do not wait for each other, while a
/// PATCH, a payment outcome or a worker's renewal (which lock for update, the worker skipping
/// locked rows) waits until they commit. Usage recording takes this: concurrent batches on the
/// same subscriptions run side by side, and none lands in a period being invoiced.
pub async fn share_subscriptions(
    tx: &mut Tx,
    tenant: &TenantId,
    ids: &[SubscriptionId],
) -> Result<Vec<Subscription>, StoreError> {
    subscriptions_locked(tx, tenant, ids, " ORDER BY id FOR SHARE").await
}

/// Subscriptions by id with their items, with PostgreSQL's row `lock` clause (SQLite has one
/// writer: its write transaction is the lock).
async fn subscriptions_locked(
    tx: &mut Tx,
    tenant: &TenantId,
    ids: &[SubscriptionId],
    lock: &str,
) -> Result<Vec<Subscription>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let lock = match tx {
        Tx::Sqlite(..) => "",
        Tx::Postgres(_) => lock,
    };
    let mut subs = on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(select_subscription!("WHERE tenant_id = "));
        q.push_bind(tenant.as_str()).push(" AND id IN ");
        push_id_list(&mut q, ids.iter().map(|id| id.as_str()));
        q.push(lock);
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter()
            .map(subscription_from)
            .collect::<Result<Vec<_>, _>>()?
    });
    let mut items = items_of(tx, tenant, ids).await?;
    for s in &mut subs {
        s.items = items.remove(&s.id).unwrap_or_default();
    }
    Ok(subs)
}

/// Subscriptions whose next boundary is due by `until`, earliest first, with their items,
/// strictly after the `(next_billing_at, id)` cursor when one is given. Paused, canceled and
/// ended subscriptions are never due. On PostgreSQL the rows stay locked until the batch
/// commits and other workers skip them; the cursor keeps each claim from re-walking the index
/// entries that earlier batches left behind (dead until vacuumed).
pub async fn claim_due(
    tx: &mut Tx,
    tenant: &TenantId,
    until: DateTime<Utc>,
    after: Option<&(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<Subscription>, StoreError> {
    // Identical but for the lock: SQLite has one writer and no row locks.
    macro_rules! claim {
        ($t:expr, $sql:expr) => {{
            let rows = sqlx::query($sql)
                .bind(tenant.as_str())
                .bind(until)
                .bind(limit)
                .bind(after.map(|a| a.0))
                .bind(after.map(|a| a.1.as_str()))
                .fetch_all(&mut **$t)
                .await?;
            rows.iter()
                .map(subscription_from)
                .collect::<Result<Vec<_>, _>>()?
        }};
    }
    let mut subs = match tx {
        Tx::Sqlite(t, _) => claim!(
            t,
            select_subscription!(
                "WHERE tenant_id = $1 AND next_billing_at <= $2 AND billing_error IS NULL
                   AND status IN ('trialing', 'active', 'past_due', 'unpaid')
                   AND ($4 IS NULL OR next_billing_at > $4 OR (next_billing_at = $4 AND id > $5))
                 ORDER BY next_billing_at, id LIMIT $3"
            )
        ),
        Tx::Postgres(t) => claim!(
            t,
            select_subscription!(
                "WHERE tenant_id = $1 AND next_billing_at <= $2 AND billing_error IS NULL
                   AND status IN ('trialing', 'active', 'past_due', 'unpaid')
                   AND ($4 IS NULL OR next_billing_at > $4 OR (next_billing_at = $4 AND id > $5))
                 ORDER BY next_billing_at, id LIMIT $3 FOR UPDATE SKIP LOCKED"
            )
        ),
    };
    let ids: Vec<SubscriptionId> = subs.iter().map(|s| s.id.clone()).collect();
    let mut items = items_of(tx, tenant, &ids).await?;
    for s in &mut subs {
        s.items = items.remove(&s.id).unwrap_or_default();
    }
    Ok(subs)
}

/// One subscription if it is still due by `until` and not set aside (locked on PostgreSQL,
/// skipped when another worker holds it), with its items.
pub async fn claim_one_due(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &SubscriptionId,
    until: DateTime<Utc>,
) -> Result<Option<Subscription>, StoreError> {
    macro_rules! claim {
        ($t:expr, $sql:expr) => {{
            let row = sqlx::query($sql)
                .bind(tenant.as_str())
                .bind(until)
                .bind(id.as_str())
                .fetch_optional(&mut **$t)
                .await?;
            row.as_ref().map(subscription_from).transpose()?
        }};
    }
    let found = match tx {
        Tx::Sqlite(t, _) => claim!(
            t,
            select_subscription!(
                "WHERE tenant_id = $1 AND next_billing_at <= $2 AND id = $3 AND billing_error IS NULL
                   AND status IN ('trialing', 'active', 'past_due', 'unpaid')"
            )
        ),
        Tx::Postgres(t) => claim!(
            t,
            select_subscription!(
                "WHERE tenant_id = $1 AND next_billing_at <= $2 AND id = $3 AND billing_error IS NULL
                   AND status IN ('trialing', 'active', 'past_due', 'unpaid') FOR UPDATE SKIP LOCKED"
            )
        ),
    };
    let Some(mut sub) = found else {
        return Ok(None);
    };
    sub.items = items_of(tx, tenant, std::slice::from_ref(&sub.id))
        .await?
        .remove(&sub.id)
        .unwrap_or_default();
    Ok(Some(sub))
}

/// The earliest boundary any live subscription waits for, for the test clock's stepping.
pub async fn next_billing_time(
    tx: &mut Tx,
    tenant: &TenantId,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(
            "SELECT MIN(next_billing_at) AS t FROM subscriptions
             WHERE tenant_id = $1 AND billing_error IS NULL
               AND status IN ('trialing', 'active', 'past_due', 'unpaid')",
        )
        .bind(tenant.as_str())
        .fetch_one(&mut *c)
        .await?;
        row.opt_time("t")
    })
}
