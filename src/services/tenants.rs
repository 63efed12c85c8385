//! Tenants and their API keys.

use super::ServiceError;
use crate::domain::api_key::{Scope, hash_key};
use crate::domain::contact::check_text;
use crate::domain::event::EventType;
use crate::domain::ids::TenantId;
use crate::domain::tenant::{Mode, Tenant, truncate_to_seconds};
use crate::store::{Db, tenants};
use chrono::{DateTime, Utc};

/// The tenant's first API key (full access), as handed over once.
pub struct IssuedKey(pub String);

pub async fn create_tenant(
    db: &Db,
    name: &str,
    mode: Mode,
    invoice_prefix: &str,
    now: DateTime<Utc>,
) -> Result<(Tenant, IssuedKey), ServiceError> {
    if name.trim().is_empty() {
        return Err(ServiceError::MissingParam {
            param: "name".into(),
        });
    }
    check_text("name", name, 200).map_err(|e| ServiceError::invalid("name", e))?;
    let now = truncate_to_seconds(now);
    let tenant = Tenant {
        id: TenantId::generate(),
        name: name.to_owned(),
        mode,
        clock_time: match mode {
            Mode::Test => Some(now),
            Mode::Live => None,
        },
        invoice_prefix: invoice_prefix.to_owned(),
        dunning: None,
        created: now,
    };
    let mut tx = db.begin().await?;
    // The tenants row records the first key too (see migration 0012); its id is fixed by the
    // secret, so the row is written first with it and the key row after.
    let secret = super::api_keys::new_secret(Scope::Full, mode);
    tenants::insert_tenant(
        &mut tx,
        &tenant,
        &hash_key(&secret),
        &secret[secret.len() - 4..],
    )
    .await?;
    super::api_keys::insert_key_with_secret(&mut tx, &tenant, "default", Scope::Full, &secret, now)
        .await?;
    tx.commit().await?;
    tracing::info!(tenant.id = %tenant.id, tenant.mode = mode.as_str(), "tenant created");
    Ok((tenant, IssuedKey(secret)))
}

/// Sets the tenant's own dunning plan (`None`: follow the installation's config), with an
/// event in the same transaction.
pub async fn set_dunning(
    db: &Db,
    tenant: &Tenant,
    plan: Option<&crate::domain::payment::DunningPlan>,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let mut tx = db.begin().await?;
    crate::store::tenants::update_tenant_dunning(&mut tx, &tenant.id, plan).await?;
    crate::store::events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::TenantDunningUpdated,
        tenant.id.as_str(),
        &serde_json::json!({ "retry_days": plan.map(|p| &p.retry_days), "final_action": plan.map(|p| p.final_action) }),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
