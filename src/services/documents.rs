//! Invoice settings and the documents made from them. PDFs are rendered off the billing path
//! (the worker drains finalized invoices and credit notes without a `pdf_sha256`), stored as
//! `{documents.dir}/{tenant}/{id}.pdf` and served from there; the recorded SHA-256 proves a
//! served file is the one first issued. Rendering is deterministic, so two workers rendering
//! the same invoice write the same bytes, and a lost file is rebuilt identical as long as the
//! seller's and customer's details have not changed since.

use super::ServiceError;
use crate::documents::{self, Seller};
use crate::domain::credit_note::CreditNote;
use crate::domain::customer::Customer;
use crate::domain::email::EmailKind;
use crate::domain::ids::{CreditNoteId, InvoiceId, TenantId};
use crate::domain::invoice::Invoice;
use crate::domain::seller::InvoiceSettings;
use crate::domain::tenant::Tenant;
use crate::store::{Db, credit_notes, customers, documents as store, emails, invoices, tenants};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub async fn get_settings(db: &Db, tenant: &TenantId) -> Result<InvoiceSettings, ServiceError> {
    let mut tx = db.read().await?;
    let found = store::find_settings(&mut tx, tenant).await?;
    tx.commit().await?;
    Ok(found.unwrap_or_default())
}

/// Replaces the tenant's seller details (a PUT: absent fields are cleared). The logo is
/// decoded as the renderer will decode it, so a broken image is refused here and not on
/// the next invoice.
pub async fn put_settings(
    db: &Db,
    tenant: &TenantId,
    settings: InvoiceSettings,
    now: DateTime<Utc>,
) -> Result<InvoiceSettings, ServiceError> {
    if let Some(logo) = &settings.logo {
        let bytes = logo.bytes.clone();
        tokio::task::spawn_blocking(move || documents::check_logo(&bytes))
            .await
            .map_err(|e| ServiceError::Document(e.to_string()))?
            .map_err(|e| ServiceError::invalid("logo", e))?;
    }
    let mut tx = db.begin().await?;
    store::save_settings(&mut tx, tenant, &settings, now).await?;
    tx.commit().await?;
    Ok(settings)
}

/// A PDF ready to serve.
pub struct Pdf {
    pub bytes: Vec<u8>,
    pub filename: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn file_path(dir: &Path, tenant: &TenantId, id: &str) -> PathBuf {
    dir.join(tenant.as_str()).join(format!("{id}.pdf"))
}

/// Writes to a temporary file beside the target and renames it over: readers see the old
/// file or the new one, never half of one.
async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ServiceError> {
    let io = |e: std::io::Error| ServiceError::Document(format!("{}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    let tmp = path.with_extension(format!("{}.tmp", uuid::Uuid::now_v7().simple()));
    tokio::fs::write(&tmp, bytes).await.map_err(io)?;
    tokio::fs::rename(&tmp, path).await.map_err(io)
}

/// The stored file when it is there and matches its recorded hash.
async fn read_verified(path: &Path, sha256: &str) -> Option<Vec<u8>> {
    let bytes = tokio::fs::read(path).await.ok()?;
    (sha256_hex(&bytes) == sha256).then_some(bytes)
}

struct Parties {
    tenant_name: String,
    settings: InvoiceSettings,
    customer: Customer,
}

async fn parties(
    db: &Db,
    tenant: &TenantId,
    customer: &crate::domain::ids::CustomerId,
) -> Result<Parties, ServiceError> {
    let mut tx = db.read().await?;
    let t = tenants::find_tenant(&mut tx, tenant.as_str()).await?;
    let settings = store::find_settings(&mut tx, tenant).await?;
    let c = customers::find_customer(&mut tx, tenant, customer).await?;
    tx.commit().await?;
    Ok(Parties {
        tenant_name: t.map(|t| t.name).unwrap_or_default(),
        settings: settings.unwrap_or_default(),
        customer: c.ok_or_else(|| ServiceError::not_found("customer", customer))?,
    })
}

/// Renders on a blocking thread (a page takes milliseconds of CPU) with the parties' seller.
async fn render(
    p: Parties,
    draw: impl FnOnce(&Customer, &Seller<'_>) -> Result<Vec<u8>, documents::DocumentError>
    + Send
    + 'static,
) -> Result<Vec<u8>, ServiceError> {
    tokio::task::spawn_blocking(move || {
        let seller = Seller {
            settings: &p.settings,
            fallback_name: &p.tenant_name,
        };
        draw(&p.customer, &seller)
    })
    .await
    .map_err(|e| ServiceError::Document(e.to_string()))?
    .map_err(|e| ServiceError::Document(e.to_string()))
}

async fn render_invoice_bytes(
    inv: Invoice,
    p: Parties,
    draft: bool,
) -> Result<Vec<u8>, ServiceError> {
    render(p, move |customer, seller| {
        documents::invoice_pdf(&inv, customer, seller, draft)
    })
    .await
}

/// Stores a fresh render under `path` and returns its hash, unless a hash was recorded
/// before and the render differs: then the document as issued is gone (seller or customer
/// details changed since) and serving another one under its number would be wrong.
async fn store_render(
    path: &Path,
    recorded: Option<&str>,
    bytes: &[u8],
    what: &str,
) -> Result<String, ServiceError> {
    let sha = sha256_hex(bytes);
    if let Some(recorded) = recorded
        && recorded != sha
    {
        return Err(ServiceError::Document(format!(
            "the stored PDF of {what} is missing or altered, and rendering it again gives different bytes (seller or customer details changed since it was issued); restore {} from a backup",
            path.display()
        )));
    }
    write_atomically(path, bytes).await?;
    crate::crash::point("documents.stored");
    Ok(sha)
}

/// Whether a hosted-page token has the shape recur gives them (48 hex characters): anything
/// else is unknown without a query.
fn plausible_token(token: &str) -> bool {
    token.len() == 48 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

fn pdf_name(number: &str) -> String {
    let safe: String = number
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.pdf")
}

/// The invoice's PDF: the stored file, or rendered, stored and recorded now when the
/// worker has not got to it yet. Drafts have none (see the upcoming invoice).
pub async fn invoice_pdf(
    db: &Db,
    dir: &Path,
    tenant: &TenantId,
    id: &InvoiceId,
) -> Result<Pdf, ServiceError> {
    let mut tx = db.read().await?;
    let inv = invoices::find_invoice(&mut tx, tenant, id).await?;
    tx.commit().await?;
    let inv = inv.ok_or_else(|| ServiceError::not_found("invoice", id))?;
    let Some(number) = inv.number.clone() else {
        return Err(ServiceError::unprocessable(
            "invoice_not_finalized",
            None,
            "a draft invoice has no PDF yet; it is rendered when the invoice is finalized",
        ));
    };
    let path = file_path(dir, tenant, id.as_str());
    if let Some(recorded) = &inv.document.pdf_sha256
        && let Some(bytes) = read_verified(&path, recorded).await
    {
        return Ok(Pdf {
            bytes,
            filename: pdf_name(&number),
        });
    }
    let recorded = inv.document.pdf_sha256.clone();
    let total = inv.total;
    let p = parties(db, tenant, &inv.customer).await?;
    let bytes = render_invoice_bytes(inv, p, false).await?;
    let what = format!("invoice {number}");
    let sha = store_render(&path, recorded.as_deref(), &bytes, &what).await?;
    let token = hex::encode(rand::random::<[u8; 24]>());
    let mut tx = db.begin().await?;
    // The first to record the PDF queues the invoice e-mail, in the same transaction.
    if store::record_invoice_pdf(&mut tx, tenant, id, &sha, &token).await? && total != 0 {
        let now = crate::domain::tenant::truncate_to_seconds(Utc::now());
        emails::enqueue(
            &mut tx,
            tenant,
            EmailKind::InvoiceFinalized,
            id.as_str(),
            id.as_str(),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Pdf {
        bytes,
        filename: pdf_name(&number),
    })
}

/// The upcoming invoice of a subscription as a PDF marked DRAFT (rendered, never stored).
pub async fn upcoming_pdf(
    db: &Db,
    tenant: &Tenant,
    sub: &crate::domain::ids::SubscriptionId,
) -> Result<Pdf, ServiceError> {
    let inv = super::invoices::upcoming(db, tenant, sub).await?;
    let p = parties(db, &tenant.id, &inv.customer).await?;
    let filename = format!("upcoming-{sub}.pdf");
    let bytes = render_invoice_bytes(inv, p, true).await?;
    Ok(Pdf { bytes, filename })
}

async fn load_note(
    db: &Db,
    tenant: &TenantId,
    id: &CreditNoteId,
) -> Result<(CreditNote, Invoice), ServiceError> {
    let mut tx = db.read().await?;
    let note = credit_notes::find_credit_note(&mut tx, tenant, id).await?;
    let note = note.ok_or_else(|| ServiceError::not_found("credit note", id))?;
    let inv = invoices::find_invoice(&mut tx, tenant, &note.invoice).await?;
    tx.commit().await?;
    let inv = inv.ok_or_else(|| ServiceError::not_found("invoice", &note.invoice))?;
    Ok((note, inv))
}

pub async fn credit_note_pdf(
    db: &Db,
    dir: &Path,
    tenant: &TenantId,
    id: &CreditNoteId,
) -> Result<Pdf, ServiceError> {
    let (note, inv) = load_note(db, tenant, id).await?;
    let path = file_path(dir, tenant, id.as_str());
    let filename = pdf_name(&note.number);
    if let Some(recorded) = &note.document.pdf_sha256
        && let Some(bytes) = read_verified(&path, recorded).await
    {
        return Ok(Pdf { bytes, filename });
    }
    let recorded = note.document.pdf_sha256.clone();
    let p = parties(db, tenant, &note.customer).await?;
    let what = format!("credit note {}", note.number);
    let bytes = render(p, move |customer, seller| {
        documents::credit_note_pdf(&note, &inv, customer, seller)
    })
    .await?;
    let sha = store_render(&path, recorded.as_deref(), &bytes, &what).await?;
    let mut tx = db.begin().await?;
    if store::record_credit_note_pdf(&mut tx, tenant, id, &sha).await? {
        let now = crate::domain::tenant::truncate_to_seconds(Utc::now());
        emails::enqueue(
            &mut tx,
            tenant,
            EmailKind::CreditNoteIssued,
            id.as_str(),
            id.as_str(),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Pdf { bytes, filename })
}

/// What one drain of the rendering queue did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rendered {
    pub invoices: usize,
    pub credit_notes: usize,
    pub failed: usize,
}

/// Renders every finalized invoice and credit note of the tenant that has no PDF yet, in
/// batches. A document that fails is logged and skipped (tried again next pass); it never
/// stops the others, nor billing.
pub async fn render_pending(
    db: &Db,
    dir: &Path,
    tenant: &Tenant,
) -> Result<Rendered, ServiceError> {
    const BATCH: i64 = 100;
    let mut out = Rendered::default();
    let mut after: Option<InvoiceId> = None;
    loop {
        let mut tx = db.read().await?;
        let ids = store::invoices_to_render(&mut tx, &tenant.id, after.as_ref(), BATCH).await?;
        tx.commit().await?;
        for id in &ids {
            match invoice_pdf(db, dir, &tenant.id, id).await {
                Ok(_) => out.invoices += 1,
                Err(e) => {
                    out.failed += 1;
                    tracing::error!(tenant.id = %tenant.id, invoice = %id, error = %e, "rendering the invoice PDF failed; retried next pass");
                }
            }
        }
        match ids.last() {
            Some(last) if ids.len() as i64 == BATCH => after = Some(last.clone()),
            _ => break,
        }
    }
    let mut after: Option<CreditNoteId> = None;
    loop {
        let mut tx = db.read().await?;
        let ids = store::credit_notes_to_render(&mut tx, &tenant.id, after.as_ref(), BATCH).await?;
        tx.commit().await?;
        for id in &ids {
            match credit_note_pdf(db, dir, &tenant.id, id).await {
                Ok(_) => out.credit_notes += 1,
                Err(e) => {
                    out.failed += 1;
                    tracing::error!(tenant.id = %tenant.id, credit_note = %id, error = %e, "rendering the credit note PDF failed; retried next pass");
                }
            }
        }
        match ids.last() {
            Some(last) if ids.len() as i64 == BATCH => after = Some(last.clone()),
            _ => break,
        }
    }
    Ok(out)
}

/// The invoice behind a hosted-page token, with what the page shows.
pub struct Hosted {
    pub invoice: Invoice,
    pub customer: Customer,
    pub settings: InvoiceSettings,
    pub tenant_name: String,
}

/// Looks a hosted-page token up.
pub async fn hosted_invoice(db: &Db, token: &str) -> Result<Option<Hosted>, ServiceError> {
    if !plausible_token(token) {
        return Ok(None);
    }
    let mut tx = db.read().await?;
    let Some((tenant, id)) = store::find_by_hosted_token(&mut tx, token).await? else {
        return Ok(None);
    };
    let inv = invoices::find_invoice(&mut tx, &tenant, &id).await?;
    tx.commit().await?;
    let Some(invoice) = inv else { return Ok(None) };
    let p = parties(db, &tenant, &invoice.customer).await?;
    Ok(Some(Hosted {
        invoice,
        customer: p.customer,
        settings: p.settings,
        tenant_name: p.tenant_name,
    }))
}

/// The PDF behind a hosted-page token.
pub async fn hosted_pdf(db: &Db, dir: &Path, token: &str) -> Result<Option<Pdf>, ServiceError> {
    if !plausible_token(token) {
        return Ok(None);
    }
    let mut tx = db.read().await?;
    let found = store::find_by_hosted_token(&mut tx, token).await?;
    tx.commit().await?;
    match found {
        Some((tenant, id)) => invoice_pdf(db, dir, &tenant, &id).await.map(Some),
        None => Ok(None),
    }
}
