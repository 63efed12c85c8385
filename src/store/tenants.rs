use super::rows::{Rec, known, to_json};
use super::{StoreError, Tx, on_tx};
use crate::domain::ids::TenantId;
use crate::domain::payment::{DunningPlan, FinalAction};
use crate::domain::tenant::{Mode, Tenant};
use chrono::{DateTime, Utc};

macro_rules! select_tenant {
    ($filter:literal) => {
        concat!(
            "SELECT id, name, mode, clock_time, invoice_prefix, created_at, dunning_retry_days, dunning_final_action FROM tenants ",
            $filter
        )
    };
}

fn tenant_from(r: &impl Rec) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: r.parsed("id", TenantId::parse)?,
        name: r.text("name")?,
        mode: r.parsed("mode", known(Mode::parse))?,
        clock_time: r.opt_time("clock_time")?,
        invoice_prefix: r.text("invoice_prefix")?,
        dunning: match (
            r.opt_json::<Vec<u32>>("dunning_retry_days")?,
            r.opt_parsed("dunning_final_action", known(FinalAction::parse))?,
        ) {
            (Some(retry_days), Some(final_action)) => Some(DunningPlan {
                retry_days,
                final_action,
            }),
            (Some(_), None) | (None, Some(_)) | (None, None) => None,
        },
        created: r.time("created_at")?,
    })
}

/// Sets (or with `None` clears) the tenant's own dunning plan.
pub async fn update_tenant_dunning(
    tx: &mut Tx,
    id: &TenantId,
    plan: Option<&DunningPlan>,
) -> Result<(), StoreError> {
    let days = plan.map(|p| to_json(&p.retry_days)).transpose()?;
    on_tx!(tx, |c| sqlx::query(
        "UPDATE tenants SET dunning_retry_days = $2, dunning_final_action = $3 WHERE id = $1"
    )
    .bind(id.as_str())
    .bind(days.as_deref())
    .bind(plan.map(|p| p.final_action.as_str()))
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(())
}

pub async fn insert_tenant(
    tx: &mut Tx,
    t: &Tenant,
    api_key_hash: &str,
    api_key_last4: &str,
) -> Result<(), StoreError> {
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO tenants (id, name, mode, api_key_hash, api_key_last4, clock_time, invoice_prefix, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )
    .bind(t.id.as_str())
    .bind(&t.name)
    .bind(t.mode.as_str())
    .bind(api_key_hash)
    .bind(api_key_last4)
    .bind(t.clock_time)
    .bind(&t.invoice_prefix)
    .bind(t.created)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    .map_err(StoreError::from_write)
    })?;
    Ok(())
}

/// Moves a test clock forward. The `clock_time < $2` guard makes a concurrent advance to an
/// earlier time a no-op instead of moving the clock back.
pub async fn update_tenant_clock(
    tx: &mut Tx,
    id: &TenantId,
    to: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = on_tx!(tx, |c| sqlx::query(
        "UPDATE tenants SET clock_time = $2 WHERE id = $1 AND clock_time < $2"
    )
    .bind(id.as_str())
    .bind(to)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(done == 1)
}

pub async fn find_tenant(tx: &mut Tx, id: &str) -> Result<Option<Tenant>, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(select_tenant!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(tenant_from).transpose()
    })
}

/// Every tenant, for the scheduler's pass (tenants are few; their subscriptions are not).
pub async fn list_tenants(tx: &mut Tx) -> Result<Vec<Tenant>, StoreError> {
    on_tx!(tx, |c| {
        let rows = sqlx::query(select_tenant!("ORDER BY id"))
            .fetch_all(&mut *c)
            .await?;
        rows.iter().map(tenant_from).collect()
    })
}
