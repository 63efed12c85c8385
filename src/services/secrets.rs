//! `recur secrets rotate`: every stored secret re-sealed under the current master key.

use super::ServiceError;
use crate::config::Config;
use crate::store::provider_accounts::{self as accounts, sealed_context};
use crate::store::{Db, webhooks};
use serde::Serialize;

const BATCH: i64 = 500;

#[derive(Debug, Default, Serialize)]
pub struct Rotated {
    /// The id of the master key everything is sealed under now.
    pub key_id: String,
    pub webhook_secrets_resealed: usize,
    pub webhook_secrets_checked: usize,
    pub provider_accounts_resealed: usize,
    pub provider_accounts_checked: usize,
}

/// Re-seals every stored secret not sealed under the current key (plain text from before
/// sealing, or an earlier key listed in `secrets.previous_keys`), a batch per transaction.
/// A value that opens under no configured key stops the rotation with an error naming it.
pub async fn rotate(db: &Db, config: &Config) -> Result<Rotated, ServiceError> {
    let vault = config.vault()?;
    let mut out = Rotated {
        key_id: vault.key_id().to_owned(),
        ..Rotated::default()
    };
    reseal_accounts(db, &vault, &mut out).await?;
    let mut after = None;
    loop {
        let mut tx = db.begin().await?;
        let rows =
            webhooks::endpoint_secrets(&mut tx, after.as_ref().map(|(t, e)| (t, e)), BATCH).await?;
        let Some((t, e, _)) = rows.last() else {
            tx.commit().await?;
            return Ok(out);
        };
        after = Some((t.clone(), e.clone()));
        for (tenant, id, stored) in &rows {
            out.webhook_secrets_checked += 1;
            if !vault.needs_resealing(stored) {
                continue;
            }
            let context = super::webhooks::secret_context(tenant, id);
            let plain = vault.open(&context, stored)?;
            let sealed = vault.seal(&context, plain.expose())?;
            if webhooks::reseal_endpoint_secret(&mut tx, tenant, id, stored, &sealed).await? {
                out.webhook_secrets_resealed += 1;
            }
        }
        tx.commit().await?;
    }
}

/// Tenants' provider accounts: the secret key and the webhook secret of each.
async fn reseal_accounts(
    db: &Db,
    vault: &crate::vault::Vault,
    out: &mut Rotated,
) -> Result<(), ServiceError> {
    let mut after = None;
    loop {
        let mut tx = db.begin().await?;
        let rows =
            accounts::accounts_after(&mut tx, after.as_ref().map(|(t, p)| (t, *p)), BATCH).await?;
        let Some(last) = rows.last() else {
            tx.commit().await?;
            return Ok(());
        };
        after = Some((last.tenant.clone(), last.provider));
        for a in &rows {
            out.provider_accounts_checked += 1;
            let stale = vault.needs_resealing(&a.secret_key)
                || a.webhook_secret
                    .as_deref()
                    .is_some_and(|w| vault.needs_resealing(w));
            if !stale {
                continue;
            }
            let reseal = |field: &str, stored: &str| {
                let context = sealed_context(&a.tenant, a.provider, field);
                vault
                    .open(&context, stored)
                    .and_then(|plain| vault.seal(&context, plain.expose()))
            };
            let key = reseal("secret_key", &a.secret_key)?;
            let webhook = a
                .webhook_secret
                .as_deref()
                .map(|w| reseal("webhook_secret", w))
                .transpose()?;
            if accounts::reseal_account(&mut tx, a, &key, webhook.as_deref()).await? {
                out.provider_accounts_resealed += 1;
            }
        }
        tx.commit().await?;
    }
}
