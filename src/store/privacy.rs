//! Erasure of a customer's personal data: the rows that hold it or point at it.

use super::{StoreError, Tx, on_tx};
use crate::domain::ids::{CustomerId, TenantId};
use chrono::{DateTime, Utc};

/// Removes the customer's personal data from its row and marks it erased; `false` when there
/// is no such customer or it was erased before.
pub async fn erase_customer_row(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &CustomerId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| sqlx::query(
        "UPDATE customers SET name = '[erased]', email = NULL, address = NULL, tax_ids = '[]',
             external_id = NULL, locale = NULL, pm_provider = NULL, pm_token = NULL,
             pm_customer = NULL, updated_at = $3, erased_at = $3
         WHERE tenant_id = $1 AND id = $2 AND erased_at IS NULL"
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// When the customer was erased (`None`: not erased, or no such customer).
pub async fn erased_at(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &CustomerId,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let at: Option<Option<DateTime<Utc>>> = on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT erased_at FROM customers WHERE tenant_id = $1 AND id = $2"
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut *c)
    .await?);
    Ok(at.flatten())
}

/// Events whose payload contains `needle`, a page at a time in id order: `(id, data)`.
pub async fn events_naming(
    tx: &mut Tx,
    tenant: &TenantId,
    needle: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT id, data FROM events
         WHERE tenant_id = $1 AND data LIKE '%' || $2 || '%' AND ($3 IS NULL OR id > $3)
         ORDER BY id LIMIT $4"
    )
    .bind(tenant.as_str())
    .bind(needle)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *c)
    .await?))
}

pub async fn set_event_data(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &str,
    data: &str,
) -> Result<(), StoreError> {
    on_tx!(tx, |c| sqlx::query(
        "UPDATE events SET data = $3 WHERE tenant_id = $1 AND id = $2"
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(data)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(())
}

/// Stored answers of idempotent requests that contain `needle`: `(key, response_body)`.
pub async fn responses_naming(
    tx: &mut Tx,
    tenant: &TenantId,
    needle: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(on_tx!(tx, |c| sqlx::query_as(
        "SELECT key, response_body FROM idempotency_keys
         WHERE tenant_id = $1 AND response_body LIKE '%' || $2 || '%'"
    )
    .bind(tenant.as_str())
    .bind(needle)
    .fetch_all(&mut *c)
    .await?))
}

/// Replaces a stored answer by its scrubbed copy; the key, its fingerprint and status stay, so
/// a retry is still answered without running again.
pub async fn set_response(
    tx: &mut Tx,
    tenant: &TenantId,
    key: &str,
    body: &str,
) -> Result<(), StoreError> {
    on_tx!(tx, |c| sqlx::query(
        "UPDATE idempotency_keys SET response_body = $3 WHERE tenant_id = $1 AND key = $2"
    )
    .bind(tenant.as_str())
    .bind(key)
    .bind(body)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(())
}

/// What else holds the customer's data outside its row: the payment method and provider
/// customer on settled attempts (pending ones still need theirs to be resolved), free text on
/// credit notes and balance transactions, and the hosted pages of its invoices (the stored
/// PDFs stay, as issued, but are no longer published).
pub async fn erase_customer_traces(
    tx: &mut Tx,
    tenant: &TenantId,
    customer: &CustomerId,
) -> Result<(), StoreError> {
    let statements = [
        "UPDATE payment_attempts SET payment_method = NULL, provider_customer = NULL
         WHERE tenant_id = $1 AND status NOT IN ('pending', 'unknown')
           AND invoice_id IN (SELECT id FROM invoices WHERE tenant_id = $1 AND customer_id = $2)",
        "UPDATE credit_notes SET memo = '[erased]'
         WHERE tenant_id = $1 AND customer_id = $2 AND memo IS NOT NULL",
        "UPDATE customer_balance_transactions SET description = '[erased]'
         WHERE tenant_id = $1 AND customer_id = $2 AND description IS NOT NULL",
        "UPDATE invoices SET hosted_token = NULL WHERE tenant_id = $1 AND customer_id = $2",
    ];
    for sql in statements {
        on_tx!(tx, |c| sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(customer.as_str())
            .execute(&mut *c)
            .await?
            .rows_affected());
    }
    Ok(())
}

/// The ids of every e-mail about the customer's invoices, credit notes and subscriptions.
pub async fn emails_of(
    tx: &mut Tx,
    tenant: &TenantId,
    customer: &CustomerId,
) -> Result<Vec<String>, StoreError> {
    Ok(on_tx!(tx, |c| {
        sqlx::query_scalar(
        "SELECT id FROM emails WHERE tenant_id = $1 AND (
             object_id IN (SELECT id FROM invoices WHERE tenant_id = $1 AND customer_id = $2)
             OR object_id IN (SELECT id FROM credit_notes WHERE tenant_id = $1 AND customer_id = $2)
             OR object_id IN (SELECT id FROM subscriptions WHERE tenant_id = $1 AND customer_id = $2))
         ORDER BY id"
    )
    .bind(tenant.as_str())
    .bind(customer.as_str())
    .fetch_all(&mut *c)
    .await?
    }))
}

/// Pending e-mails about the customer are not sent: they become `skipped`.
pub async fn skip_pending_emails(
    tx: &mut Tx,
    tenant: &TenantId,
    customer: &CustomerId,
) -> Result<u64, StoreError> {
    Ok(on_tx!(tx, |c| {
        sqlx::query(
        "UPDATE emails SET status = 'skipped', last_error = 'the customer was erased'
         WHERE tenant_id = $1 AND status = 'pending' AND (
             object_id IN (SELECT id FROM invoices WHERE tenant_id = $1 AND customer_id = $2)
             OR object_id IN (SELECT id FROM credit_notes WHERE tenant_id = $1 AND customer_id = $2)
             OR object_id IN (SELECT id FROM subscriptions WHERE tenant_id = $1 AND customer_id = $2))"
    )
    .bind(tenant.as_str())
    .bind(customer.as_str())
    .execute(&mut *c)
    .await?
    .rows_affected()
    }))
}

/// The tenant's retention period in years (`None`: the default).
pub async fn retention_years(tx: &mut Tx, tenant: &TenantId) -> Result<Option<i64>, StoreError> {
    let years: Option<Option<i64>> = on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT retention_years FROM tenants WHERE id = $1"
    )
    .bind(tenant.as_str())
    .fetch_optional(&mut *c)
    .await?);
    Ok(years.flatten())
}

pub async fn set_retention_years(
    tx: &mut Tx,
    tenant: &TenantId,
    years: Option<i64>,
) -> Result<(), StoreError> {
    on_tx!(tx, |c| sqlx::query(
        "UPDATE tenants SET retention_years = $2 WHERE id = $1"
    )
    .bind(tenant.as_str())
    .bind(years)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(())
}

/// An issued document whose stored PDF the retention purge removes.
#[derive(Debug, Clone)]
pub struct Expired {
    /// `invoices` or `credit_notes`.
    pub table: &'static str,
    pub id: String,
    pub sha256: String,
}

/// Issued documents of erased customers, issued before `before`, whose PDFs are still kept
/// (a batch of at most `limit` of each kind).
pub async fn expired_documents(
    tx: &mut Tx,
    tenant: &TenantId,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Expired>, StoreError> {
    let mut out = Vec::new();
    for (table, issued) in [
        ("invoices", "COALESCE(d.finalized_at, d.created_at)"),
        ("credit_notes", "d.created_at"),
    ] {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT d.id, d.pdf_sha256 FROM {table} d
             JOIN customers c ON c.tenant_id = d.tenant_id AND c.id = d.customer_id
             WHERE d.tenant_id = $1 AND c.erased_at IS NOT NULL AND d.pdf_sha256 IS NOT NULL
               AND d.document_purged_at IS NULL AND {issued} < $2
             ORDER BY d.id LIMIT $3"
        ));
        let rows: Vec<(String, String)> = on_tx!(tx, |c| sqlx::query_as(sql)
            .bind(tenant.as_str())
            .bind(before)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?);
        out.extend(
            rows.into_iter()
                .map(|(id, sha256)| Expired { table, id, sha256 }),
        );
    }
    Ok(out)
}

/// Marks a document purged; `false` when another run marked it first.
pub async fn mark_purged(
    tx: &mut Tx,
    tenant: &TenantId,
    doc: &Expired,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!(
        "UPDATE {} SET document_purged_at = $3
         WHERE tenant_id = $1 AND id = $2 AND document_purged_at IS NULL",
        doc.table
    ));
    let n = on_tx!(tx, |c| sqlx::query(sql)
        .bind(tenant.as_str())
        .bind(&doc.id)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected());
    Ok(n == 1)
}

/// When the document's PDF was purged, if it was (`table`: `invoices` or `credit_notes`).
pub async fn document_purged_at(
    tx: &mut Tx,
    tenant: &TenantId,
    table: &'static str,
    id: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT document_purged_at FROM {table} WHERE tenant_id = $1 AND id = $2"
    ));
    let at: Option<Option<DateTime<Utc>>> = on_tx!(tx, |c| sqlx::query_scalar(sql)
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&mut *c)
        .await?);
    Ok(at.flatten())
}
