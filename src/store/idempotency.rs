//! Stored responses for `Idempotency-Key`.

use super::rows::Rec;
use super::{Db, StoreError, Tx, on_tx};
use crate::domain::ids::TenantId;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new and now ours: run the request.
    Claimed,
    /// The key was used before; what we know about that use.
    Existing {
        fingerprint: String,
        response: Option<(u16, String)>,
        /// The process running it (`host:pid:instance`), while no response is stored.
        holder: Option<String>,
        claimed_at: DateTime<Utc>,
    },
}

/// Claims `key` for a request with `fingerprint`, run by `holder`. The primary key makes two
/// concurrent claims of one key resolve to one winner. Claims are stamped with the system
/// time (keys expire in real time whatever a test clock says).
pub async fn claim_key(
    tx: &mut Tx,
    tenant: &TenantId,
    key: &str,
    fingerprint: &str,
    holder: &str,
) -> Result<Claim, StoreError> {
    let now = crate::domain::tenant::truncate_to_seconds(Utc::now());
    let inserted = on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at, holder) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, key) DO NOTHING"
    )
    .bind(tenant.as_str())
    .bind(key)
    .bind(fingerprint)
    .bind(now)
    .bind(holder)
    .execute(&mut *c)
    .await?
    .rows_affected()
    });
    if inserted == 1 {
        return Ok(Claim::Claimed);
    }
    on_tx!(tx, |c| {
        let row = sqlx::query("SELECT fingerprint, status_code, response_body, holder, created_at FROM idempotency_keys WHERE tenant_id = $1 AND key = $2")
            .bind(tenant.as_str())
            .bind(key)
            .fetch_one(&mut *c)
            .await?;
        let response = match (row.opt_int("status_code")?, row.opt_text("response_body")?) {
            (Some(code), Some(body)) => Some((
                u16::try_from(code).map_err(|e| super::rows::corrupt("status_code", e))?,
                body,
            )),
            (None, None) | (Some(_), None) | (None, Some(_)) => None,
        };
        Ok(Claim::Existing {
            fingerprint: row.text("fingerprint")?,
            response,
            holder: row.opt_text("holder")?,
            claimed_at: row.time("created_at")?,
        })
    })
}

/// Takes over a key left in flight by `from` (a process that is gone): compare-and-set, so
/// of two retries only one runs the request.
pub async fn take_over_key(
    tx: &mut Tx,
    tenant: &TenantId,
    key: &str,
    from: Option<&str>,
    holder: &str,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| {
        sqlx::query(
            "UPDATE idempotency_keys SET holder = $3 WHERE tenant_id = $1 AND key = $2
               AND status_code IS NULL AND (holder = $4 OR (holder IS NULL AND $4 IS NULL))",
        )
        .bind(tenant.as_str())
        .bind(key)
        .bind(holder)
        .bind(from)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

pub async fn save_response(
    tx: &mut Tx,
    tenant: &TenantId,
    key: &str,
    status: u16,
    body: &str,
) -> Result<(), StoreError> {
    on_tx!(tx, |c| {
        sqlx::query("UPDATE idempotency_keys SET status_code = $3, response_body = $4 WHERE tenant_id = $1 AND key = $2")
        .bind(tenant.as_str())
        .bind(key)
        .bind(i64::from(status))
        .bind(body)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Frees a key whose request changed nothing (a failure on our side, a passing conflict), so
/// the client's retry can run.
pub async fn release_key(tx: &mut Tx, tenant: &TenantId, key: &str) -> Result<(), StoreError> {
    on_tx!(tx, |c| sqlx::query(
        "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND status_code IS NULL"
    )
    .bind(tenant.as_str())
    .bind(key)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Forgets keys claimed before `before` (every tenant's): a key is honoured for 24 hours, as
/// Stripe's are. Returns how many went.
pub async fn prune_keys(db: &Db, before: DateTime<Utc>) -> Result<u64, StoreError> {
    let mut tx = db.begin().await?;
    let n = on_tx!(&mut tx, |c| sqlx::query(
        "DELETE FROM idempotency_keys WHERE created_at < $1"
    )
    .bind(before)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    tx.commit().await?;
    Ok(n)
}
