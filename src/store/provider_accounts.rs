//! Tenants' own provider accounts; the secrets are stored sealed (see `vault`).

use super::rows::{Rec, known};
use super::{StoreError, Tx, on_tx};
use crate::domain::customer::Provider;
use crate::domain::ids::TenantId;
use crate::domain::tenant::Mode;
use chrono::{DateTime, Utc};

/// A provider account as stored: `secret_key` and `webhook_secret` sealed.
#[derive(Debug, Clone)]
pub struct StoredAccount {
    pub tenant: TenantId,
    pub provider: Provider,
    pub mode: Mode,
    pub account_id: Option<String>,
    pub secret_key: String,
    pub secret_key_last4: String,
    pub webhook_secret: Option<String>,
    pub webhook_id: String,
    pub updated: DateTime<Utc>,
}

/// Where a sealed account secret is stored (`field`: `secret_key` or `webhook_secret`), which
/// its sealed value is bound to.
pub fn sealed_context(tenant: &TenantId, provider: Provider, field: &str) -> String {
    format!("provider_accounts.{field}:{tenant}:{}", provider.as_str())
}

const ACCOUNT: &str = "SELECT tenant_id, provider, mode, account_id, secret_key, secret_key_last4, webhook_secret, webhook_id, updated_at FROM provider_accounts";

fn account_from(r: &impl Rec) -> Result<StoredAccount, StoreError> {
    Ok(StoredAccount {
        tenant: r.parsed("tenant_id", TenantId::parse)?,
        provider: r.parsed("provider", known(Provider::parse))?,
        mode: r.parsed("mode", known(Mode::parse))?,
        account_id: r.opt_text("account_id")?,
        secret_key: r.text("secret_key")?,
        secret_key_last4: r.text("secret_key_last4")?,
        webhook_secret: r.opt_text("webhook_secret")?,
        webhook_id: r.text("webhook_id")?,
        updated: r.time("updated_at")?,
    })
}

/// Inserts or replaces the tenant's account with this provider.
pub async fn upsert_account(tx: &mut Tx, a: &StoredAccount) -> Result<(), StoreError> {
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO provider_accounts (tenant_id, provider, mode, account_id, secret_key, secret_key_last4, webhook_secret, webhook_id, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (tenant_id, provider) DO UPDATE SET mode = $3, account_id = $4, secret_key = $5,
             secret_key_last4 = $6, webhook_secret = $7, webhook_id = $8, updated_at = $9"
    )
    .bind(a.tenant.as_str())
    .bind(a.provider.as_str())
    .bind(a.mode.as_str())
    .bind(&a.account_id)
    .bind(&a.secret_key)
    .bind(&a.secret_key_last4)
    .bind(&a.webhook_secret)
    .bind(&a.webhook_id)
    .bind(a.updated)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    .map_err(StoreError::from_write)
    })?;
    Ok(())
}

pub async fn find_account(
    tx: &mut Tx,
    tenant: &TenantId,
    provider: Provider,
) -> Result<Option<StoredAccount>, StoreError> {
    on_tx!(tx, |c| {
        let sql = sqlx::AssertSqlSafe(format!("{ACCOUNT} WHERE tenant_id = $1 AND provider = $2"));
        let row = sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(provider.as_str())
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(account_from).transpose()
    })
}

/// The account whose inbound webhook endpoint is `/webhooks/{provider}/{webhook_id}`.
pub async fn find_by_webhook_id(
    tx: &mut Tx,
    webhook_id: &str,
) -> Result<Option<StoredAccount>, StoreError> {
    on_tx!(tx, |c| {
        let sql = sqlx::AssertSqlSafe(format!("{ACCOUNT} WHERE webhook_id = $1"));
        let row = sqlx::query(sql)
            .bind(webhook_id)
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(account_from).transpose()
    })
}

pub async fn delete_account(
    tx: &mut Tx,
    tenant: &TenantId,
    provider: Provider,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| sqlx::query(
        "DELETE FROM provider_accounts WHERE tenant_id = $1 AND provider = $2"
    )
    .bind(tenant.as_str())
    .bind(provider.as_str())
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// Every account, a page at a time in (tenant, provider) order after `after`: for
/// `recur secrets rotate`.
pub async fn accounts_after(
    tx: &mut Tx,
    after: Option<(&TenantId, Provider)>,
    limit: i64,
) -> Result<Vec<StoredAccount>, StoreError> {
    on_tx!(tx, |c| {
        let sql = sqlx::AssertSqlSafe(format!(
            "{ACCOUNT} WHERE $1 IS NULL OR tenant_id > $1 OR (tenant_id = $1 AND provider > $2)
             ORDER BY tenant_id, provider LIMIT $3"
        ));
        let rows = sqlx::query(sql)
            .bind(after.map(|(t, _)| t.as_str()))
            .bind(after.map(|(_, p)| p.as_str()))
            .bind(limit)
            .fetch_all(&mut *c)
            .await?;
        rows.iter().map(account_from).collect()
    })
}

/// Replaces the sealed secrets of an account if they are still `before` (key, webhook secret).
pub async fn reseal_account(
    tx: &mut Tx,
    a: &StoredAccount,
    secret_key: &str,
    webhook_secret: Option<&str>,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| sqlx::query(
        "UPDATE provider_accounts SET secret_key = $5, webhook_secret = $6
         WHERE tenant_id = $1 AND provider = $2 AND secret_key = $3
           AND COALESCE(webhook_secret, '') = COALESCE($4, '')"
    )
    .bind(a.tenant.as_str())
    .bind(a.provider.as_str())
    .bind(&a.secret_key)
    .bind(&a.webhook_secret)
    .bind(secret_key)
    .bind(webhook_secret)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// Whether the tenant has made any payment attempt through Stripe (their refunds and
/// lookups go to the account they were made with).
pub async fn stripe_attempts_exist(tx: &mut Tx, tenant: &TenantId) -> Result<bool, StoreError> {
    let found: i64 = on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT id FROM payment_attempts
             WHERE tenant_id = $1 AND provider = 'stripe' LIMIT 1) AS any_attempt"
    )
    .bind(tenant.as_str())
    .fetch_one(&mut *c)
    .await?);
    Ok(found > 0)
}
