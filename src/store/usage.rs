use super::rows::to_db_int;
use super::{StoreError, Tx, on_tx};
use crate::domain::ids::{SubscriptionId, TenantId};
use crate::domain::usage::{UsageAction, UsageRecord};

pub async fn insert_usage_record(
    tx: &mut Tx,
    tenant: &TenantId,
    sub: &SubscriptionId,
    u: &UsageRecord,
) -> Result<(), StoreError> {
    let quantity = to_db_int(u.quantity, "quantity")?;
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO usage_records (tenant_id, id, subscription_id, subscription_item_id, quantity, action, recorded_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )
    .bind(tenant.as_str())
    .bind(u.id.as_str())
    .bind(sub.as_str())
    .bind(u.subscription_item.as_str())
    .bind(quantity)
    .bind(match u.action {
        UsageAction::Increment => "increment",
        UsageAction::Set => "set",
    })
    .bind(u.timestamp)
    .bind(u.created)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    .map_err(StoreError::from_write)
    })?;
    Ok(())
}
