//! A tenant's own provider account (`PUT /v1/settings/providers/stripe`): checked with the
//! provider when saved, its secrets sealed at rest and never shown again.

use super::ServiceError;
use crate::config::{Config, Secret};
use crate::domain::customer::Provider;
use crate::domain::event::EventType;
use crate::domain::tenant::{Tenant, truncate_to_seconds};
use crate::payments::stripe::{Stripe, key_mode};
use crate::store::provider_accounts::{self as store, StoredAccount, sealed_context};
use crate::store::{Db, events};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// An account as the API shows it: never a secret.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderAccount {
    pub object: &'static str,
    pub provider: &'static str,
    pub mode: &'static str,
    /// The provider's id of the account (`acct_…`), when the key may read it.
    pub account: Option<String>,
    pub secret_key_last4: String,
    pub webhook_secret_set: bool,
    /// Where the provider sends this account's events (the path on recur's public address).
    pub webhook_url: String,
    pub updated: DateTime<Utc>,
}

fn shown(a: &StoredAccount) -> ProviderAccount {
    ProviderAccount {
        object: "provider_account",
        provider: a.provider.as_str(),
        mode: a.mode.as_str(),
        account: a.account_id.clone(),
        secret_key_last4: a.secret_key_last4.clone(),
        webhook_secret_set: a.webhook_secret.is_some(),
        webhook_url: format!("/webhooks/{}/{}", a.provider.as_str(), a.webhook_id),
        updated: a.updated,
    }
}

/// The refusal for changing the account a tenant's payments were made through.
fn in_use(what: &str) -> ServiceError {
    ServiceError::Conflict {
        code: "provider_account_in_use",
        message: format!(
            "payments were made through this Stripe account; {what} would send their lookups and refunds elsewhere"
        ),
        param: None,
    }
}

/// Connects (or replaces) the tenant's Stripe account: the key must be of the tenant's mode
/// and accepted by Stripe, the webhook secret a `whsec_…`. Both are sealed before they are
/// stored; the inbound webhook URL stays the same across replacements, and so does the
/// webhook secret when none is given. Once the tenant has charged through its account, a key
/// of another account is refused (the payments' lookups and refunds belong to the first).
pub async fn connect_stripe(
    db: &Db,
    config: &Config,
    tenant: &Tenant,
    secret_key: &str,
    webhook_secret: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ProviderAccount, ServiceError> {
    let Some(mode) = key_mode(secret_key).filter(|_| secret_key.len() <= 255) else {
        return Err(ServiceError::invalid(
            "secret_key",
            "secret_key must be a Stripe secret or restricted key (sk_test_…, sk_live_…, rk_test_…, rk_live_…)",
        ));
    };
    if mode != tenant.mode {
        return Err(ServiceError::unprocessable(
            "livemode_mismatch",
            Some("secret_key"),
            format!(
                "a {}-mode tenant connects a {} key; this is a {} key",
                tenant.mode.as_str(),
                tenant.mode.as_str(),
                mode.as_str()
            ),
        ));
    }
    if let Some(w) = webhook_secret
        && (!w.starts_with("whsec_") || w.len() > 255)
    {
        return Err(ServiceError::invalid(
            "webhook_secret",
            "webhook_secret must be the endpoint's signing secret (whsec_…)",
        ));
    }
    let client = Stripe::with_key(&config.stripe, Secret::new(secret_key))
        .map_err(|e| ServiceError::unprocessable("provider_unreachable", Some("secret_key"), e))?;
    let account_id = client
        .account_id()
        .await
        .map_err(|(unreachable, message)| {
            if unreachable {
                ServiceError::unprocessable(
                    "provider_unreachable",
                    Some("secret_key"),
                    format!(
                        "Stripe could not be reached to check the key; nothing was saved: {message}"
                    ),
                )
            } else {
                ServiceError::unprocessable(
                    "provider_key_rejected",
                    Some("secret_key"),
                    format!("Stripe refused the key; nothing was saved: {message}"),
                )
            }
        })?;
    let vault = config.vault()?;
    let provider = Provider::Stripe;
    let mut tx = db.begin().await?;
    let existing = store::find_account(&mut tx, &tenant.id, provider).await?;
    if let Some(e) = &existing
        && e.account_id.is_some()
        && e.account_id != account_id
        && store::stripe_attempts_exist(&mut tx, &tenant.id).await?
    {
        return Err(in_use("a key of another account"));
    }
    let kept_webhook_secret = existing.as_ref().and_then(|e| e.webhook_secret.clone());
    let account = StoredAccount {
        tenant: tenant.id.clone(),
        provider,
        mode,
        account_id,
        secret_key: vault.seal(
            &sealed_context(&tenant.id, provider, "secret_key"),
            secret_key,
        )?,
        secret_key_last4: secret_key[secret_key.len() - 4..].to_owned(),
        webhook_secret: match webhook_secret {
            Some(w) => {
                Some(vault.seal(&sealed_context(&tenant.id, provider, "webhook_secret"), w)?)
            }
            None => kept_webhook_secret,
        },
        webhook_id: existing.map_or_else(
            || format!("whk_{}", hex::encode(rand::random::<[u8; 16]>())),
            |e| e.webhook_id,
        ),
        updated: truncate_to_seconds(now),
    };
    store::upsert_account(&mut tx, &account).await?;
    let out = shown(&account);
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::ProviderAccountConnected,
        tenant.id.as_str(),
        &out,
        now,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(tenant.id = %tenant.id, provider = provider.as_str(), "provider account connected");
    Ok(out)
}

pub async fn get_account(
    db: &Db,
    tenant: &Tenant,
    provider: Provider,
) -> Result<ProviderAccount, ServiceError> {
    let mut tx = db.read().await?;
    let found = store::find_account(&mut tx, &tenant.id, provider).await?;
    tx.commit().await?;
    found
        .as_ref()
        .map(shown)
        .ok_or_else(|| ServiceError::not_found("provider account", provider.as_str()))
}

/// Disconnects the account: the tenant charges through the installation's key again (if any).
pub async fn disconnect(
    db: &Db,
    tenant: &Tenant,
    provider: Provider,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let mut tx = db.begin().await?;
    if store::find_account(&mut tx, &tenant.id, provider)
        .await?
        .is_some()
        && store::stripe_attempts_exist(&mut tx, &tenant.id).await?
    {
        return Err(in_use("disconnecting it"));
    }
    if !store::delete_account(&mut tx, &tenant.id, provider).await? {
        return Err(ServiceError::not_found(
            "provider account",
            provider.as_str(),
        ));
    }
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::ProviderAccountDisconnected,
        tenant.id.as_str(),
        &serde_json::json!({ "object": "provider_account", "provider": provider.as_str() }),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The tenant an inbound webhook to `/webhooks/{provider}/{webhook_id}` belongs to and that
/// account's signing secret (opened), or `None` when no account has this endpoint.
pub async fn webhook_endpoint(
    db: &Db,
    config: &Config,
    provider: Provider,
    webhook_id: &str,
) -> Result<Option<(crate::domain::ids::TenantId, Option<Secret>)>, ServiceError> {
    let mut tx = db.read().await?;
    let found = store::find_by_webhook_id(&mut tx, webhook_id).await?;
    tx.commit().await?;
    let Some(a) = found.filter(|a| a.provider == provider) else {
        return Ok(None);
    };
    let secret = match &a.webhook_secret {
        Some(sealed) => Some(config.vault()?.open(
            &sealed_context(&a.tenant, provider, "webhook_secret"),
            sealed,
        )?),
        None => None,
    };
    Ok(Some((a.tenant, secret)))
}
