//! API keys: made (the secret shown once), listed, revoked, rolled with an overlap, and the
//! lookup that authenticates every request.

use super::ServiceError;
use crate::domain::api_key::{ApiKey, Scope, hash_key, key_id};
use crate::domain::contact::check_text;
use crate::domain::event::EventType;
use crate::domain::tenant::{Mode, Tenant, truncate_to_seconds};
use crate::store::{Db, Tx, api_keys as store, events, tenants};
use chrono::{DateTime, Utc};
use rand::RngCore;

/// Usable keys a tenant may hold at once.
pub const MAX_KEYS: usize = 100;

/// The longest overlap a rolled key keeps working for.
pub const MAX_OVERLAP: chrono::Duration = chrono::Duration::days(7);

/// A fresh secret: the scope and mode prefix, then 192 random bits in hex.
pub(super) fn new_secret(scope: Scope, mode: Mode) -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("{}{}", scope.prefix(mode), hex::encode(bytes))
}

/// A new key for `tenant` (its secret set), inserted in `tx`.
async fn insert_new_key(
    tx: &mut Tx,
    tenant: &Tenant,
    name: &str,
    scope: Scope,
    now: DateTime<Utc>,
) -> Result<ApiKey, ServiceError> {
    let secret = new_secret(scope, tenant.mode);
    insert_key_with_secret(tx, tenant, name, scope, &secret, now).await
}

/// Inserts the key of `secret` in `tx`.
pub(super) async fn insert_key_with_secret(
    tx: &mut Tx,
    tenant: &Tenant,
    name: &str,
    scope: Scope,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<ApiKey, ServiceError> {
    let prefix = scope.prefix(tenant.mode);
    let hash = hash_key(secret);
    let key = ApiKey {
        id: key_id(&hash),
        object: "api_key",
        name: name.to_owned(),
        scope,
        prefix,
        last4: secret[secret.len() - 4..].to_owned(),
        created: truncate_to_seconds(now),
        expires_at: None,
        revoked_at: None,
        last_used: None,
        secret: Some(secret.to_owned()),
    };
    store::insert_key(tx, &tenant.id, &key, &hash).await?;
    Ok(key)
}

fn check_name(name: &str) -> Result<(), ServiceError> {
    if name.trim().is_empty() {
        return Err(ServiceError::invalid("name", "name must not be blank"));
    }
    check_text("name", name, 100).map_err(|e| ServiceError::invalid("name", e))
}

/// The event for a change to a key: its listing, never its secret.
async fn record(
    tx: &mut Tx,
    tenant: &Tenant,
    kind: EventType,
    key: &ApiKey,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let listed = ApiKey {
        secret: None,
        ..key.clone()
    };
    events::insert_event(tx, &tenant.id, kind, &key.id, &listed, now).await?;
    Ok(())
}

/// Makes a key; the answer carries its secret, which recur never shows again.
pub async fn create_key(
    db: &Db,
    tenant: &Tenant,
    name: &str,
    scope: Scope,
    now: DateTime<Utc>,
) -> Result<ApiKey, ServiceError> {
    check_name(name)?;
    let mut tx = db.begin().await?;
    store::lock_tenant_for_key_change(&mut tx, &tenant.id).await?;
    let usable = store::list_keys(&mut tx, &tenant.id)
        .await?
        .iter()
        .filter(|k| k.usable_at(now))
        .count();
    if usable >= MAX_KEYS {
        return Err(ServiceError::Conflict {
            code: "too_many_api_keys",
            message: format!("a tenant holds at most {MAX_KEYS} usable API keys; revoke one first"),
            param: None,
        });
    }
    let key = insert_new_key(&mut tx, tenant, name, scope, now).await?;
    record(&mut tx, tenant, EventType::ApiKeyCreated, &key, now).await?;
    tx.commit().await?;
    tracing::info!(tenant.id = %tenant.id, api_key.id = %key.id, api_key.scope = scope.as_str(), "API key created");
    Ok(key)
}

pub async fn list_keys(db: &Db, tenant: &Tenant) -> Result<Vec<ApiKey>, ServiceError> {
    let mut tx = db.read().await?;
    let keys = store::list_keys(&mut tx, &tenant.id).await?;
    tx.commit().await?;
    Ok(keys)
}

pub async fn get_key(db: &Db, tenant: &Tenant, id: &str) -> Result<ApiKey, ServiceError> {
    let mut tx = db.read().await?;
    let key = store::find_key(&mut tx, &tenant.id, id).await?;
    tx.commit().await?;
    key.ok_or_else(|| ServiceError::not_found("api key", id))
}

/// Whether another full-access key than `id` remains usable for good (one still in a roll's
/// overlap will stop), so the tenant is never locked out of its own account.
fn another_full_key(keys: &[ApiKey], id: &str, now: DateTime<Utc>) -> bool {
    keys.iter()
        .any(|k| k.id != id && k.scope == Scope::Full && k.usable_at(now) && k.expires_at.is_none())
}

/// Revokes a key at once. The tenant's last usable full-access key cannot be revoked (roll it
/// instead).
pub async fn revoke_key(
    db: &Db,
    tenant: &Tenant,
    id: &str,
    now: DateTime<Utc>,
) -> Result<ApiKey, ServiceError> {
    let mut tx = db.begin().await?;
    store::lock_tenant_for_key_change(&mut tx, &tenant.id).await?;
    let keys = store::list_keys(&mut tx, &tenant.id).await?;
    let key = keys
        .iter()
        .find(|k| k.id == id)
        .ok_or_else(|| ServiceError::not_found("api key", id))?;
    if key.revoked_at.is_some() {
        return Ok(key.clone());
    }
    if key.scope == Scope::Full && key.usable_at(now) && !another_full_key(&keys, id, now) {
        return Err(ServiceError::Conflict {
            code: "last_full_api_key",
            message: "this is the tenant's last usable full-access key: roll it (POST /v1/api_keys/{id}/roll) instead of revoking it".into(),
            param: None,
        });
    }
    store::revoke_key(&mut tx, &tenant.id, id, now).await?;
    let revoked = ApiKey {
        revoked_at: Some(now),
        ..key.clone()
    };
    record(&mut tx, tenant, EventType::ApiKeyRevoked, &revoked, now).await?;
    tx.commit().await?;
    tracing::info!(tenant.id = %tenant.id, api_key.id = %id, "API key revoked");
    Ok(revoked)
}

/// Replaces a key by a new one with the same name and scope; the old one keeps working for
/// `overlap` (at most [`MAX_OVERLAP`]; zero ends it now), so deployments can switch over.
pub async fn roll_key(
    db: &Db,
    tenant: &Tenant,
    id: &str,
    overlap: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<ApiKey, ServiceError> {
    if overlap < chrono::Duration::zero() || overlap > MAX_OVERLAP {
        return Err(ServiceError::invalid(
            "expires_in",
            format!(
                "expires_in must be between 0 and {} seconds",
                MAX_OVERLAP.num_seconds()
            ),
        ));
    }
    let mut tx = db.begin().await?;
    store::lock_tenant_for_key_change(&mut tx, &tenant.id).await?;
    let old = store::find_key(&mut tx, &tenant.id, id)
        .await?
        .filter(|k| k.usable_at(now))
        .ok_or_else(|| ServiceError::not_found("api key", id))?;
    let new = insert_new_key(&mut tx, tenant, &old.name, old.scope, now).await?;
    let until = truncate_to_seconds(now + overlap);
    store::expire_key(&mut tx, &tenant.id, id, until).await?;
    let rolled = ApiKey {
        expires_at: Some(old.expires_at.map_or(until, |t| t.min(until))),
        ..old
    };
    record(&mut tx, tenant, EventType::ApiKeyRolled, &rolled, now).await?;
    record(&mut tx, tenant, EventType::ApiKeyCreated, &new, now).await?;
    tx.commit().await?;
    tracing::info!(tenant.id = %tenant.id, api_key.id = %id, api_key.new = %new.id, "API key rolled");
    Ok(new)
}

/// The tenant and the key a bearer secret belongs to, when the key is usable at `now` (system
/// time).
pub async fn authenticate(
    db: &Db,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Option<(Tenant, ApiKey)>, ServiceError> {
    let mut tx = db.read().await?;
    let Some((tenant_id, key)) = store::find_key_by_hash(&mut tx, &hash_key(secret)).await? else {
        tx.commit().await?;
        return Ok(None);
    };
    let tenant = tenants::find_tenant(&mut tx, tenant_id.as_str()).await?;
    tx.commit().await?;
    Ok(tenant
        .filter(|_| key.usable_at(now))
        .map(|tenant| (tenant, key)))
}

/// When this process last recorded each key's use.
static TOUCHED: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, DateTime<Utc>>>,
> = std::sync::LazyLock::new(Default::default);

/// Records an accepted request's use of `key` as its `last_used`, at most once a minute per key
/// and process (claimed in memory first, so a burst writes once), off the request's path.
pub fn record_use(db: &Db, tenant: &Tenant, key: &ApiKey, now: DateTime<Utc>) {
    let minute_ago = now - chrono::Duration::minutes(1);
    if key.last_used.is_some_and(|t| t >= minute_ago) {
        return;
    }
    {
        let Ok(mut touched) = TOUCHED.lock() else {
            return;
        };
        if touched.get(&key.id).is_some_and(|t| *t >= minute_ago) {
            return;
        }
        touched.insert(key.id.clone(), now);
    }
    let (db, tenant_id, id) = (db.clone(), tenant.id.clone(), key.id.clone());
    tokio::spawn(async move {
        let touched = async {
            let mut tx = db.begin().await?;
            store::touch_key(&mut tx, &tenant_id, &id, truncate_to_seconds(now)).await?;
            tx.commit().await
        };
        if let Err(e) = touched.await {
            tracing::warn!(api_key.id = %id, error = %e, "recording an API key's use failed");
        }
    });
}
