//! Tenants and their API keys.

use super::ServiceError;
use crate::domain::contact::check_text;
use crate::domain::event::EventType;
use crate::domain::ids::TenantId;
use crate::domain::tenant::{Mode, Tenant, truncate_to_seconds};
use crate::store::{Db, tenants};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// An API key as handed to the tenant once; only its SHA-256 is stored. The keys carry 192
/// random bits, so a fast hash is enough (no password stretching needed).
pub struct IssuedKey(pub String);

pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn new_api_key(mode: Mode) -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("sk_{}_{}", mode.as_str(), hex::encode(bytes))
}

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
    let key = new_api_key(mode);
    let mut tx = db.begin().await?;
    tenants::insert_tenant(&mut tx, &tenant, &hash_api_key(&key), &key[key.len() - 4..]).await?;
    tx.commit().await?;
    tracing::info!(tenant.id = %tenant.id, tenant.mode = mode.as_str(), "tenant created");
    Ok((tenant, IssuedKey(key)))
}

pub async fn authenticate(db: &Db, api_key: &str) -> Result<Option<Tenant>, ServiceError> {
    let mut tx = db.read().await?;
    let tenant = tenants::find_tenant_by_key_hash(&mut tx, &hash_api_key(api_key)).await?;
    tx.commit().await?;
    Ok(tenant)
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
