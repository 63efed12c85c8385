//! Invoice settings (the seller on documents) and the PDF rendering queue: finalized
//! invoices and credit notes whose `pdf_sha256` is still NULL.

use super::rows::{Rec, to_json};
use super::{StoreError, Tx, on_tx};
use crate::domain::ids::{CreditNoteId, InvoiceId, TenantId};
use crate::domain::seller::InvoiceSettings;
use chrono::{DateTime, Utc};

pub async fn find_settings(
    tx: &mut Tx,
    tenant: &TenantId,
) -> Result<Option<InvoiceSettings>, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query("SELECT settings FROM invoice_settings WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(|r| r.json("settings")).transpose()
    })
}

pub async fn save_settings(
    tx: &mut Tx,
    tenant: &TenantId,
    settings: &InvoiceSettings,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let json = to_json(settings)?;
    on_tx!(tx, |c| sqlx::query(
        "INSERT INTO invoice_settings (tenant_id, settings, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id) DO UPDATE SET settings = $2, updated_at = $3"
    )
    .bind(tenant.as_str())
    .bind(&json)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(())
}

/// Finalized invoices of the tenant without a rendered PDF, after `after`, oldest id first.
pub async fn invoices_to_render(
    tx: &mut Tx,
    tenant: &TenantId,
    after: Option<&InvoiceId>,
    limit: i64,
) -> Result<Vec<InvoiceId>, StoreError> {
    on_tx!(tx, |c| {
        let rows = sqlx::query(
            "SELECT id FROM invoices
             WHERE tenant_id = $1 AND number IS NOT NULL AND pdf_sha256 IS NULL AND id > $2
             ORDER BY id LIMIT $3",
        )
        .bind(tenant.as_str())
        .bind(after.map_or("", InvoiceId::as_str))
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| r.parsed("id", InvoiceId::parse))
            .collect()
    })
}

pub async fn credit_notes_to_render(
    tx: &mut Tx,
    tenant: &TenantId,
    after: Option<&CreditNoteId>,
    limit: i64,
) -> Result<Vec<CreditNoteId>, StoreError> {
    on_tx!(tx, |c| {
        let rows = sqlx::query(
            "SELECT id FROM credit_notes
             WHERE tenant_id = $1 AND pdf_sha256 IS NULL AND id > $2
             ORDER BY id LIMIT $3",
        )
        .bind(tenant.as_str())
        .bind(after.map_or("", CreditNoteId::as_str))
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| r.parsed("id", CreditNoteId::parse))
            .collect()
    })
}

/// How recording a rendered PDF's hash went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// This call recorded it; `announce` says whether the document is news to e-mail about
    /// (false for the backlog a migration found unrendered).
    First { announce: bool },
    /// Another worker recorded a render first: its hash.
    Already(String),
}

/// Records the stored PDF's hash (and the hosted page token) unless another worker already
/// did (compare and set).
pub async fn record_invoice_pdf(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &InvoiceId,
    sha256: &str,
    hosted_token: &str,
) -> Result<Recorded, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(
            "UPDATE invoices SET pdf_sha256 = $3, hosted_token = COALESCE(hosted_token, $4)
             WHERE tenant_id = $1 AND id = $2 AND pdf_sha256 IS NULL
             RETURNING announce_pdf",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(sha256)
        .bind(hosted_token)
        .fetch_optional(&mut *c)
        .await?;
        if let Some(row) = row {
            return Ok(Recorded::First {
                announce: row.flag("announce_pdf")?,
            });
        }
        let row = sqlx::query("SELECT pdf_sha256 FROM invoices WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_one(&mut *c)
            .await?;
        Ok(Recorded::Already(row.text("pdf_sha256")?))
    })
}

pub async fn record_credit_note_pdf(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &CreditNoteId,
    sha256: &str,
) -> Result<Recorded, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(
            "UPDATE credit_notes SET pdf_sha256 = $3
             WHERE tenant_id = $1 AND id = $2 AND pdf_sha256 IS NULL
             RETURNING announce_pdf",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(sha256)
        .fetch_optional(&mut *c)
        .await?;
        if let Some(row) = row {
            return Ok(Recorded::First {
                announce: row.flag("announce_pdf")?,
            });
        }
        let row =
            sqlx::query("SELECT pdf_sha256 FROM credit_notes WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_one(&mut *c)
                .await?;
        Ok(Recorded::Already(row.text("pdf_sha256")?))
    })
}

/// The tenant and invoice a hosted page token belongs to.
pub async fn find_by_hosted_token(
    tx: &mut Tx,
    token: &str,
) -> Result<Option<(TenantId, InvoiceId)>, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query("SELECT tenant_id, id FROM invoices WHERE hosted_token = $1")
            .bind(token)
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref()
            .map(|r| {
                Ok((
                    r.parsed("tenant_id", TenantId::parse)?,
                    r.parsed("id", InvoiceId::parse)?,
                ))
            })
            .transpose()
    })
}
