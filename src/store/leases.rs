//! Leases: which process may run a job. On SQLite one scheduler runs at a time; a test clock
//! advances one call at a time. A holder is `host:pidns:pid:instance[:task]`: a lease whose
//! holder is a process of this host and PID namespace that no longer runs (killed,
//! restarted) is taken over at once — its name is the fencing token — and one held anywhere
//! else (another host, another container) expires with its time.

use super::{Db, StoreError, on_tx};
use crate::domain::ids::TenantId;
use chrono::{Duration, Utc};
use std::sync::OnceLock;

/// This machine and PID namespace, as `host:pidns`: pids mean something only within both.
/// The kernel's host name (not `$HOSTNAME`, which services often lack); the namespace from
/// `/proc/self/ns/pid`. Where either is unknown, holders are never judged dead early.
pub fn this_host() -> String {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".into());
        let ns = std::fs::read_link("/proc/self/ns/pid")
            .map(|p| {
                p.to_string_lossy()
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect::<String>()
            })
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "unknown".into());
        format!("{}:{ns}", host.replace(':', "_"))
    })
    .clone()
}

/// A random id of this process, so a restarted process that got the same pid is still told
/// apart from the one before it.
fn instance() -> &'static str {
    static INSTANCE: OnceLock<String> = OnceLock::new();
    INSTANCE.get_or_init(|| format!("{:08x}", rand::random::<u32>()))
}

/// Identifies this process in the leases table.
pub fn holder_name() -> String {
    format!("{}:{}:{}", this_host(), std::process::id(), instance())
}

/// Identifies one task of this process (one test-clock advance): two tasks of one process
/// never hold the same lease at once.
pub fn task_holder_name() -> String {
    format!("{}:{:016x}", holder_name(), rand::random::<u64>())
}

/// Whether `holder` names a process of this host and PID namespace that is gone: another pid
/// that no longer exists, or this pid with another instance id (the process was restarted).
pub fn is_dead(holder: &str) -> bool {
    let mut parts = holder.split(':');
    let (Some(h), Some(ns), Some(pid), Some(inst)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if format!("{h}:{ns}") != this_host() || this_host().contains("unknown") {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if pid == std::process::id() {
        return inst != instance();
    }
    cfg!(target_os = "linux") && !std::path::Path::new(&format!("/proc/{pid}")).exists()
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
    if n == 0 {
        // Held: taken over only if its holder is a dead process of this host, and only from
        // that holder (compare-and-set), so two restarted processes cannot both take it.
        let held: Option<String> = on_tx!(&mut tx, |c| {
            sqlx::query_scalar("SELECT holder FROM leases WHERE tenant_id = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(name)
                .fetch_optional(&mut *c)
                .await?
        });
        if let Some(dead) = held.filter(|h| is_dead(h)) {
            let taken = on_tx!(&mut tx, |c| {
                sqlx::query(
                    "UPDATE leases SET holder = $3, expires_at = $4
                     WHERE tenant_id = $1 AND name = $2 AND holder = $5",
                )
                .bind(tenant.as_str())
                .bind(name)
                .bind(holder)
                .bind(now + ttl)
                .bind(&dead)
                .execute(&mut *c)
                .await?
                .rows_affected()
            });
            tx.commit().await?;
            if taken == 1 {
                tracing::warn!(lease = name, dead_holder = %dead, "took over the lease of a process that is gone");
            }
            return Ok(taken == 1);
        }
    }
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
