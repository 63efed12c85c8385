//! Alerts: raised once per kind and subject while their condition holds, resolved when it
//! clears; each raise writes its `alert.*` event in the same transaction (so it reaches
//! webhook endpoints) and is logged at error level.

use super::rows::Rec;
use super::{Page, StoreError, Tx, on_tx};
use crate::domain::event::EventType;
use crate::domain::ids::TenantId;
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub id: String,
    pub object: &'static str,
    /// `payment_failure_rate`, `unsettled_attempts`, `webhook_endpoint_disabled`,
    /// `billing_overrun`, `reconciliation_discrepancy`.
    pub kind: String,
    /// What it is about (an endpoint, an invoice) or empty for the tenant as a whole.
    pub subject: String,
    /// `firing` (the condition holds), `resolved` (it cleared) or `fired` (a one-off).
    pub status: String,
    pub message: String,
    pub fired_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// How an alert is raised: a condition (firing until resolved) or a one-off happening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raise {
    Condition,
    Once,
}

/// Raises the alert unless the same one is already firing; whether this call raised it.
pub async fn raise(
    tx: &mut Tx,
    tenant: &TenantId,
    kind: EventType,
    subject: &str,
    message: &str,
    how: Raise,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let name = kind.as_str().trim_start_matches("alert.");
    let id = format!("alrt_{}", uuid::Uuid::now_v7().simple());
    let status = match how {
        Raise::Condition => "firing",
        Raise::Once => "fired",
    };
    let n = on_tx!(tx, |c| sqlx::query(
        "INSERT INTO alerts (tenant_id, id, kind, subject, status, message, fired_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, kind, subject) WHERE status = 'firing' DO NOTHING"
    )
    .bind(tenant.as_str())
    .bind(&id)
    .bind(name)
    .bind(subject)
    .bind(status)
    .bind(message)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    if n == 0 {
        return Ok(false);
    }
    tracing::error!(tenant.id = %tenant, alert = name, subject, message, "alert");
    let object = serde_json::json!({"id": id, "object": "alert", "kind": name, "subject": subject, "status": status, "message": message, "fired_at": now});
    super::events::insert_alert_event(tx, tenant, kind, &id, &object.to_string(), now).await?;
    Ok(true)
}

/// Resolves the firing alert of this kind and subject, if any.
pub async fn resolve(
    tx: &mut Tx,
    tenant: &TenantId,
    kind: EventType,
    subject: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let name = kind.as_str().trim_start_matches("alert.");
    on_tx!(tx, |c| sqlx::query(
        "UPDATE alerts SET status = 'resolved', resolved_at = $4
         WHERE tenant_id = $1 AND kind = $2 AND subject = $3 AND status = 'firing'"
    )
    .bind(tenant.as_str())
    .bind(name)
    .bind(subject)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(())
}

pub async fn list_alerts(
    tx: &mut Tx,
    tenant: &TenantId,
    page: &Page,
) -> Result<(Vec<Alert>, bool), StoreError> {
    let rows = on_tx!(tx, |c| {
        let rows = sqlx::query(
            "SELECT id, kind, subject, status, message, fired_at, resolved_at FROM alerts
             WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(tenant.as_str())
        .bind(page.starting_after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Alert {
                    id: r.text("id")?,
                    object: "alert",
                    kind: r.text("kind")?,
                    subject: r.text("subject")?,
                    status: r.text("status")?,
                    message: r.text("message")?,
                    fired_at: r.time("fired_at")?,
                    resolved_at: r.opt_time("resolved_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?
    });
    Ok(page.split(rows))
}

/// Payment attempts of the tenant finished in `[from, to)`: (failed, finished).
pub async fn attempt_outcomes(
    tx: &mut Tx,
    tenant: &TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(i64, i64), StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS failed, COUNT(*) AS finished
             FROM payment_attempts
             WHERE tenant_id = $1 AND status IN ('succeeded', 'refunded', 'failed')
               AND completed_at >= $2 AND completed_at < $3",
        )
        .bind(tenant.as_str())
        .bind(from)
        .bind(to)
        .fetch_one(&mut *c)
        .await?;
        Ok((row.int("failed")?, row.int("finished")?))
    })
}

/// Attempts of the tenant still pending or unknown that were sent (system time) before
/// `before`.
pub async fn unsettled_before(
    tx: &mut Tx,
    tenant: &TenantId,
    before: DateTime<Utc>,
) -> Result<i64, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM payment_attempts
             WHERE tenant_id = $1 AND status IN ('pending', 'unknown') AND sent_at < $2",
        )
        .bind(tenant.as_str())
        .bind(before)
        .fetch_one(&mut *c)
        .await?;
        row.int("n")
    })
}
