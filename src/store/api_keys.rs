//! API keys: only their SHA-256 is stored (see `domain::api_key`).

use super::rows::{Rec, known};
use super::{StoreError, Tx, on_tx};
use crate::domain::api_key::{ApiKey, Scope};
use crate::domain::ids::TenantId;
use chrono::{DateTime, Utc};

const KEY: &str = "SELECT tenant_id, id, name, scope, prefix, last4, created_at, expires_at, revoked_at, last_used_at FROM api_keys";

fn key_from(r: &impl Rec) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: r.text("id")?,
        object: "api_key",
        name: r.text("name")?,
        scope: r.parsed("scope", known(Scope::parse))?,
        prefix: r.text("prefix")?,
        last4: r.text("last4")?,
        created: r.time("created_at")?,
        expires_at: r.opt_time("expires_at")?,
        revoked_at: r.opt_time("revoked_at")?,
        last_used: r.opt_time("last_used_at")?,
        secret: None,
    })
}

pub async fn insert_key(
    tx: &mut Tx,
    tenant: &TenantId,
    key: &ApiKey,
    hash: &str,
) -> Result<(), StoreError> {
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO api_keys (tenant_id, id, name, scope, key_hash, prefix, last4, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )
    .bind(tenant.as_str())
    .bind(&key.id)
    .bind(&key.name)
    .bind(key.scope.as_str())
    .bind(hash)
    .bind(&key.prefix)
    .bind(&key.last4)
    .bind(key.created)
    .bind(key.expires_at)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    .map_err(StoreError::from_write)
    })?;
    Ok(())
}

/// The key with this hash and its tenant's id, whether usable or not.
pub async fn find_key_by_hash(
    tx: &mut Tx,
    hash: &str,
) -> Result<Option<(TenantId, ApiKey)>, StoreError> {
    on_tx!(tx, |c| {
        let sql = sqlx::AssertSqlSafe(format!("{KEY} WHERE key_hash = $1"));
        let row = sqlx::query(sql).bind(hash).fetch_optional(&mut *c).await?;
        row.as_ref()
            .map(|r| Ok((r.parsed("tenant_id", TenantId::parse)?, key_from(r)?)))
            .transpose()
    })
}

pub async fn find_key(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<ApiKey>, StoreError> {
    on_tx!(tx, |c| {
        let sql = sqlx::AssertSqlSafe(format!("{KEY} WHERE tenant_id = $1 AND id = $2"));
        let row = sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(key_from).transpose()
    })
}

/// Every key of the tenant, revoked and expired ones included, oldest first (a tenant has
/// few: `services::api_keys` caps the usable ones).
pub async fn list_keys(tx: &mut Tx, tenant: &TenantId) -> Result<Vec<ApiKey>, StoreError> {
    on_tx!(tx, |c| {
        let sql = sqlx::AssertSqlSafe(format!(
            "{KEY} WHERE tenant_id = $1 ORDER BY created_at, id"
        ));
        let rows = sqlx::query(sql)
            .bind(tenant.as_str())
            .fetch_all(&mut *c)
            .await?;
        rows.iter().map(key_from).collect()
    })
}

/// Revokes a key now; `false` when it was already revoked (or does not exist).
pub async fn revoke_key(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| {
        sqlx::query(
        "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL"
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected()
    });
    Ok(n == 1)
}

/// Makes a key expire at `at`, unless it already expires sooner.
pub async fn expire_key(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_tx!(tx, |c| sqlx::query(
        "UPDATE api_keys SET expires_at = $3
         WHERE tenant_id = $1 AND id = $2 AND (expires_at IS NULL OR expires_at > $3)"
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(at)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(())
}

/// Records a use of the key, at most once a minute (so a busy key does not turn every read
/// into a write).
pub async fn touch_key(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_tx!(tx, |c| sqlx::query(
        "UPDATE api_keys SET last_used_at = $3
         WHERE tenant_id = $1 AND id = $2 AND (last_used_at IS NULL OR last_used_at < $4)"
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(now)
    .bind(now - chrono::Duration::minutes(1))
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(())
}

/// Locks the tenant's row (PostgreSQL; SQLite's write transaction already excludes other
/// writers) so two changes to its set of keys run one after the other.
pub async fn lock_tenant_for_key_change(tx: &mut Tx, tenant: &TenantId) -> Result<(), StoreError> {
    if let Tx::Postgres(t) = tx {
        sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(tenant.as_str())
            .fetch_optional(&mut **t)
            .await?;
    }
    Ok(())
}
