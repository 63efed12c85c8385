//! Leases: which process may run a job. On SQLite one scheduler runs at a time; a test clock
//! advances one call at a time. Leases expire, so a crashed holder does not block forever.

use super::{Db, StoreError, on_tx};
use crate::domain::ids::TenantId;
use chrono::{Duration, Utc};

/// Identifies this process in the leases table (host and pid are enough to find it).
pub fn holder_name() -> String {
    format!(
        "{}:{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
        std::process::id()
    )
}

/// Takes or renews the lease; false when another holder has it and it has not expired.
pub async fn acquire(
    db: &Db,
    tenant: &TenantId,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let now = crate::domain::tenant::truncate_to_seconds(Utc::now());
    let mut tx = db.begin().await?;
    let n = on_tx!(&mut tx, |c| {
        sqlx::query(
        "INSERT INTO leases (tenant_id, name, holder, expires_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE leases.holder = excluded.holder OR leases.expires_at < $5"
    )
    .bind(tenant.as_str())
    .bind(name)
    .bind(holder)
    .bind(now + ttl)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    })?;
    tx.commit().await?;
    Ok(n == 1)
}

pub async fn release(
    db: &Db,
    tenant: &TenantId,
    name: &str,
    holder: &str,
) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    on_tx!(&mut tx, |c| sqlx::query(
        "DELETE FROM leases WHERE tenant_id = $1 AND name = $2 AND holder = $3"
    )
    .bind(tenant.as_str())
    .bind(name)
    .bind(holder)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    tx.commit().await?;
    Ok(())
}

/// Who holds a lease and until when, for the message of a worker that has to wait.
pub async fn current(
    db: &Db,
    tenant: &TenantId,
    name: &str,
) -> Result<Option<(String, chrono::DateTime<Utc>)>, StoreError> {
    use super::rows::Rec;
    let mut tx = db.read().await?;
    let found = on_tx!(&mut tx, |c| {
        let row =
            sqlx::query("SELECT holder, expires_at FROM leases WHERE tenant_id = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(name)
                .fetch_optional(&mut *c)
                .await?;
        row.map(|r| Ok::<_, StoreError>((r.text("holder")?, r.time("expires_at")?)))
            .transpose()?
    });
    tx.commit().await?;
    Ok(found)
}
