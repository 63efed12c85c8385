//! The e-mail outbox: rows written with what they announce, claimed and delivered by the
//! worker, retried with backoff.

use super::rows::{Rec, known};
use super::{StoreError, Tx, on_tx};
use crate::domain::email::{EmailKind, EmailStatus};
use crate::domain::ids::TenantId;
use chrono::{DateTime, Utc};

/// An outbox row due for delivery.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub tenant: TenantId,
    pub id: String,
    pub kind: EmailKind,
    pub object_id: String,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
}

/// Queues an e-mail about `object_id`, once per (kind, `dedupe_key`): a second call for the
/// same thing (a rerun, a redelivered webhook) adds nothing.
pub async fn enqueue(
    tx: &mut Tx,
    tenant: &TenantId,
    kind: EmailKind,
    dedupe_key: &str,
    object_id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    enqueue_many(tx, tenant, &[(kind, dedupe_key.to_owned(), object_id)], now).await
}

/// [`enqueue`] for many e-mails, in multi-row INSERTs (a collection pass queues one receipt
/// per payment).
pub async fn enqueue_many(
    tx: &mut Tx,
    tenant: &TenantId,
    emails: &[(EmailKind, String, &str)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for chunk in emails.chunks(500) {
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO emails (tenant_id, id, kind, dedupe_key, object_id, status, attempts, next_attempt_at, created_at) ",
            );
            q.push_values(chunk, |mut b, (kind, dedupe_key, object_id)| {
                b.push_bind(tenant.as_str())
                    .push_bind(format!("em_{}", uuid::Uuid::now_v7().simple()))
                    .push_bind(kind.as_str())
                    .push_bind(dedupe_key.as_str())
                    .push_bind(*object_id)
                    .push_bind("pending")
                    .push_bind(0_i64)
                    .push_bind(now)
                    .push_bind(now);
            });
            q.push(" ON CONFLICT (tenant_id, kind, dedupe_key) DO NOTHING");
            q.build().execute(&mut *c).await?.rows_affected()
        });
    }
    Ok(())
}

/// The tenant's pending e-mails whose time has come, oldest first.
pub async fn due(
    tx: &mut Tx,
    tenant: &TenantId,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Outgoing>, StoreError> {
    on_tx!(tx, |c| {
        let rows = sqlx::query(
            "SELECT tenant_id, id, kind, object_id, attempts, next_attempt_at FROM emails
             WHERE status = 'pending' AND next_attempt_at <= $1 AND tenant_id = $3
             ORDER BY next_attempt_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .bind(tenant.as_str())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Outgoing {
                    tenant: r.parsed("tenant_id", TenantId::parse)?,
                    id: r.text("id")?,
                    kind: r.parsed("kind", known(EmailKind::parse))?,
                    object_id: r.text("object_id")?,
                    attempts: u32::try_from(r.int("attempts")?).unwrap_or(u32::MAX),
                    next_attempt_at: r.time("next_attempt_at")?,
                })
            })
            .collect()
    })
}

/// Takes the row for one delivery attempt: counts the attempt and pushes its time past
/// `lease_until`, only if nobody else took it since it was read (compare and set). A worker
/// that dies while sending leaves it to be retried after the lease.
pub async fn claim(
    tx: &mut Tx,
    e: &Outgoing,
    lease_until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| sqlx::query(
        "UPDATE emails SET attempts = attempts + 1, next_attempt_at = $4
         WHERE tenant_id = $1 AND id = $2 AND status = 'pending' AND next_attempt_at = $3"
    )
    .bind(e.tenant.as_str())
    .bind(&e.id)
    .bind(e.next_attempt_at)
    .bind(lease_until)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// Records how an attempt ended: sent, skipped, failed for good, or to retry at `retry_at`;
/// only while this worker's claim (`lease_until`) still holds. Returns whether it did: a
/// worker that overran its lease finds the row taken by another and records nothing.
pub async fn finish(
    tx: &mut Tx,
    e: &Outgoing,
    lease_until: DateTime<Utc>,
    status: EmailStatus,
    error: Option<&str>,
    retry_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| sqlx::query(
        "UPDATE emails SET status = $3, last_error = $4, next_attempt_at = $5,
                sent_at = CASE WHEN $3 = 'sent' THEN $6 ELSE sent_at END
         WHERE tenant_id = $1 AND id = $2 AND status = 'pending' AND next_attempt_at = $7"
    )
    .bind(e.tenant.as_str())
    .bind(&e.id)
    .bind(status.as_str())
    .bind(error)
    .bind(retry_at)
    .bind(now)
    .bind(lease_until)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// Subscriptions with a reminder due: trialing ones whose trial ends in `(now, trial_until]`
/// and yearly ones renewing in `(now, renewal_until]` (not ending at period end).
pub async fn reminders_due(
    tx: &mut Tx,
    tenant: &TenantId,
    now: DateTime<Utc>,
    trial_until: DateTime<Utc>,
    renewal_until: DateTime<Utc>,
) -> Result<Vec<(EmailKind, String, DateTime<Utc>)>, StoreError> {
    on_tx!(tx, |c| {
        let trials = sqlx::query(
            "SELECT id, trial_end AS at FROM subscriptions
             WHERE tenant_id = $1 AND status = 'trialing' AND trial_end > $2 AND trial_end <= $3",
        )
        .bind(tenant.as_str())
        .bind(now)
        .bind(trial_until)
        .fetch_all(&mut *c)
        .await?;
        let renewals = sqlx::query(
            "SELECT id, current_period_end AS at FROM subscriptions
             WHERE tenant_id = $1 AND status IN ('active', 'past_due') AND interval_unit = 'year'
               AND cancel_at_period_end = $4 AND current_period_end > $2 AND current_period_end <= $3",
        )
        .bind(tenant.as_str())
        .bind(now)
        .bind(renewal_until)
        .bind(false)
        .fetch_all(&mut *c)
        .await?;
        let mut out = Vec::with_capacity(trials.len() + renewals.len());
        for (kind, rows) in [
            (EmailKind::TrialEnding, trials),
            (EmailKind::UpcomingRenewal, renewals),
        ] {
            for r in &rows {
                out.push((kind, r.text("id")?, r.time("at")?));
            }
        }
        Ok(out)
    })
}
