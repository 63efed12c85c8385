//! Stored responses for `Idempotency-Key`.

use super::rows::Rec;
use super::{StoreError, Tx, on_tx};
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
    },
}

/// Claims `key` for a request with `fingerprint`. The primary key makes two concurrent claims
/// of one key resolve to one winner.
pub async fn claim_key(
    tx: &mut Tx,
    tenant: &TenantId,
    key: &str,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<Claim, StoreError> {
    let inserted = on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, key) DO NOTHING"
    )
    .bind(tenant.as_str())
    .bind(key)
    .bind(fingerprint)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected()
    });
    if inserted == 1 {
        return Ok(Claim::Claimed);
    }
    on_tx!(tx, |c| {
        let row = sqlx::query("SELECT fingerprint, status_code, response_body FROM idempotency_keys WHERE tenant_id = $1 AND key = $2")
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
        })
    })
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

/// Frees a key whose request failed on our side (5xx), so the client's retry can run.
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
