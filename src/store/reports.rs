//! The summary report's inputs, aggregated per currency in SQL (one row per currency and
//! figure, whatever the number of invoices), and the recurring items behind MRR in batches.

use super::catalogue::price_from;
use super::rows::Rec;
use super::{StoreError, Tx, on_tx};
use crate::domain::ids::{SubscriptionItemId, TenantId};
use crate::domain::price::Price;
use crate::domain::report::{Aging, Summary};
use chrono::{DateTime, Utc};

/// What happened in `[from, to)` and what stands at `now`, per currency, into `out`.
pub async fn gather(
    tx: &mut Tx,
    tenant: &TenantId,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    now: DateTime<Utc>,
    out: &mut Summary,
) -> Result<(), StoreError> {
    let t = tenant.as_str();
    let [due_now, due_30, due_60, due_90] = Aging::edges(now);
    on_tx!(tx, |c| {
        let rows = sqlx::query(
            "SELECT currency, status, COUNT(*) AS n FROM subscriptions
             WHERE tenant_id = $1 AND status IN ('active', 'trialing', 'past_due')
             GROUP BY currency, status",
        )
        .bind(t)
        .fetch_all(&mut *c)
        .await?;
        for r in &rows {
            let s = out.currency(&r.text("currency")?);
            let n = r.int("n")?;
            match r.text("status")?.as_str() {
                "active" => s.active_subscriptions = n,
                "trialing" => s.trialing_subscriptions = n,
                _ => s.past_due_subscriptions = n,
            }
        }
        let rows = sqlx::query(
            "SELECT currency,
                    SUM(CASE WHEN start_date >= $2 AND start_date < $3 THEN 1 ELSE 0 END) AS started,
                    SUM(CASE WHEN ended_at >= $2 AND ended_at < $3 THEN 1 ELSE 0 END) AS ended
             FROM subscriptions
             WHERE tenant_id = $1 AND ((start_date >= $2 AND start_date < $3) OR (ended_at >= $2 AND ended_at < $3))
             GROUP BY currency",
        )
        .bind(t)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *c)
        .await?;
        for r in &rows {
            let s = out.currency(&r.text("currency")?);
            s.new_subscriptions = r.int("started")?;
            s.churned_subscriptions = r.int("ended")?;
        }
        let rows = sqlx::query(
            "SELECT currency, CAST(SUM(total) AS BIGINT) AS billed FROM invoices
             WHERE tenant_id = $1 AND finalized_at >= $2 AND finalized_at < $3 AND status <> 'void'
             GROUP BY currency",
        )
        .bind(t)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *c)
        .await?;
        for r in &rows {
            out.currency(&r.text("currency")?).billed = r.int("billed")?;
        }
        let rows = sqlx::query(
            "SELECT currency,
                    CAST(SUM(CASE WHEN status <> 'failed' THEN amount ELSE 0 END) AS BIGINT) AS collected,
                    SUM(CASE WHEN status <> 'failed' THEN 1 ELSE 0 END) AS succeeded,
                    COUNT(*) AS finished
             FROM payment_attempts
             WHERE tenant_id = $1 AND status IN ('succeeded', 'refunded', 'failed')
               AND completed_at >= $2 AND completed_at < $3
             GROUP BY currency",
        )
        .bind(t)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *c)
        .await?;
        for r in &rows {
            let s = out.currency(&r.text("currency")?);
            s.collected = r.int("collected")?;
            s.attempts_succeeded = r.int("succeeded")?;
            s.attempts_finished = r.int("finished")?;
        }
        let rows = sqlx::query(
            "SELECT currency, CAST(SUM(refund_amount) AS BIGINT) AS refunded FROM credit_notes
             WHERE tenant_id = $1 AND refund_status = 'succeeded' AND created_at >= $2 AND created_at < $3
             GROUP BY currency",
        )
        .bind(t)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *c)
        .await?;
        for r in &rows {
            out.currency(&r.text("currency")?).refunded = r.int("refunded")?;
        }
        // An invoice charged automatically is due when finalized.
        let rows = sqlx::query(
            "SELECT currency,
                CAST(SUM(CASE WHEN COALESCE(due_date, finalized_at) >= $2 THEN amount_due ELSE 0 END) AS BIGINT) AS current,
                CAST(SUM(CASE WHEN COALESCE(due_date, finalized_at) < $2 AND COALESCE(due_date, finalized_at) >= $3 THEN amount_due ELSE 0 END) AS BIGINT) AS d30,
                CAST(SUM(CASE WHEN COALESCE(due_date, finalized_at) < $3 AND COALESCE(due_date, finalized_at) >= $4 THEN amount_due ELSE 0 END) AS BIGINT) AS d60,
                CAST(SUM(CASE WHEN COALESCE(due_date, finalized_at) < $4 AND COALESCE(due_date, finalized_at) >= $5 THEN amount_due ELSE 0 END) AS BIGINT) AS d90,
                CAST(SUM(CASE WHEN COALESCE(due_date, finalized_at) < $5 THEN amount_due ELSE 0 END) AS BIGINT) AS older
             FROM invoices WHERE tenant_id = $1 AND status = 'open'
             GROUP BY currency",
        )
        .bind(t)
        .bind(due_now)
        .bind(due_30)
        .bind(due_60)
        .bind(due_90)
        .fetch_all(&mut *c)
        .await?;
        for r in &rows {
            let s = out.currency(&r.text("currency")?);
            s.aging = Aging {
                current: r.int("current")?,
                days_1_30: r.int("d30")?,
                days_31_60: r.int("d60")?,
                days_61_90: r.int("d90")?,
                days_90_plus: r.int("older")?,
            };
            s.outstanding = s.aging.total();
        }
        let rows = sqlx::query(
            "SELECT currency,
                    SUM(CASE WHEN paid_at >= $2 AND paid_at < $3 AND first_failed_at IS NOT NULL THEN 1 ELSE 0 END) AS recovered,
                    SUM(CASE WHEN marked_uncollectible_at >= $2 AND marked_uncollectible_at < $3 THEN 1 ELSE 0 END) AS lost
             FROM invoices
             WHERE tenant_id = $1 AND ((paid_at >= $2 AND paid_at < $3 AND first_failed_at IS NOT NULL)
                OR (marked_uncollectible_at >= $2 AND marked_uncollectible_at < $3))
             GROUP BY currency",
        )
        .bind(t)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *c)
        .await?;
        for r in &rows {
            let s = out.currency(&r.text("currency")?);
            s.dunning.recovered = r.int("recovered")?;
            s.dunning.failed = r.int("lost")?;
        }
        Ok(())
    })
}

/// The items of active and past-due subscriptions with their prices and quantities, after
/// `after`, by item id.
pub async fn recurring_items(
    tx: &mut Tx,
    tenant: &TenantId,
    after: Option<&SubscriptionItemId>,
    limit: i64,
) -> Result<Vec<(SubscriptionItemId, Price, u64)>, StoreError> {
    on_tx!(tx, |c| {
        let rows = sqlx::query(
            "SELECT i.id AS item_id, i.quantity, p.id, p.product, p.currency, p.billing_scheme,
                    p.unit_amount_decimal, p.tiers_mode, p.tiers, p.interval_unit, p.interval_count,
                    p.usage_type, p.tax_behavior, p.created_at
             FROM subscription_items i
             JOIN subscriptions s ON s.tenant_id = i.tenant_id AND s.id = i.subscription_id
             JOIN prices p ON p.tenant_id = i.tenant_id AND p.id = i.price_id
             WHERE i.tenant_id = $1 AND i.deleted_at IS NULL AND i.id > $2
               AND s.status IN ('active', 'past_due')
             ORDER BY i.id LIMIT $3",
        )
        .bind(tenant.as_str())
        .bind(after.map_or("", SubscriptionItemId::as_str))
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.parsed("item_id", SubscriptionItemId::parse)?,
                    price_from(r)?,
                    super::rows::from_db_uint(r.int("quantity")?, "quantity")?,
                ))
            })
            .collect()
    })
}
