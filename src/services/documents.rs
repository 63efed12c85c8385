//! Invoice settings and the documents made from them. PDFs are rendered off the billing path
//! (the worker drains finalized invoices and credit notes without a `pdf_sha256`), stored as
//! `{documents.dir}/{tenant}/{id}-{hash}.pdf` and served from there; the recorded SHA-256
//! proves a served file is the one first issued. A file is named by its content, so two
//! workers rendering the same invoice at once (one before it was paid, one after) never
//! overwrite each other: whichever records its hash first has issued the document, and the
//! other's file is removed. Rendering is deterministic, so a lost file is rebuilt identical
//! as long as the invoice, the seller's and the customer's details have not changed since.

use super::ServiceError;
use crate::documents::{self, Seller};
use crate::domain::credit_note::CreditNote;
use crate::domain::customer::Customer;
use crate::domain::email::EmailKind;
use crate::domain::ids::{CreditNoteId, InvoiceId, TenantId};
use crate::domain::invoice::Invoice;
use crate::domain::seller::InvoiceSettings;
use crate::domain::tenant::Tenant;
use crate::store::documents::Recorded;
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

/// Where the rendering with hash `sha256` of document `id` is stored.
pub fn stored_path(dir: &Path, tenant: &TenantId, id: &str, sha256: &str) -> PathBuf {
    let short = sha256.get(..16).unwrap_or(sha256);
    dir.join(tenant.as_str()).join(format!("{id}-{short}.pdf"))
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

/// The stored file when it is there and matches its recorded hash (files stored before
/// names carried the hash are `{id}.pdf`).
async fn read_verified(dir: &Path, tenant: &TenantId, id: &str, sha256: &str) -> Option<Vec<u8>> {
    for path in [
        stored_path(dir, tenant, id, sha256),
        dir.join(tenant.as_str()).join(format!("{id}.pdf")),
    ] {
        if let Ok(bytes) = tokio::fs::read(&path).await
            && sha256_hex(&bytes) == sha256
        {
            return Some(bytes);
        }
    }
    None
}

pub(super) struct Parties {
    pub(super) tenant_name: String,
    pub(super) settings: InvoiceSettings,
    pub(super) customer: Customer,
}

pub(super) async fn parties(
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

/// A document being issued: what recording its hash takes.
#[derive(Clone, Copy)]
enum Issue<'a> {
    /// An invoice; a zero total is not announced by e-mail.
    Invoice {
        id: &'a InvoiceId,
        total: i64,
    },
    CreditNote(&'a CreditNoteId),
}

impl Issue<'_> {
    fn id(&self) -> &str {
        match self {
            Issue::Invoice { id, .. } => id.as_str(),
            Issue::CreditNote(id) => id.as_str(),
        }
    }
}

/// Keeps a fresh render and returns the bytes to serve. With a hash recorded, the render
/// must be that document (a lost file rebuilt): when it differs, the document as issued is
/// gone (the invoice, seller or customer details changed since) and serving another one
/// under its number would be wrong. Without one, the render is stored under its own name and
/// its hash recorded, unless another worker recorded its own first: then that one is served
/// and this render's file removed. The first to record queues the document's e-mail in the
/// same transaction.
async fn keep(
    db: &Db,
    dir: &Path,
    tenant: &TenantId,
    doc: Issue<'_>,
    recorded: Option<&str>,
    bytes: Vec<u8>,
    what: &str,
) -> Result<Vec<u8>, ServiceError> {
    let sha = sha256_hex(&bytes);
    let path = stored_path(dir, tenant, doc.id(), &sha);
    if let Some(recorded) = recorded {
        if recorded != sha {
            return Err(ServiceError::Document(format!(
                "the stored PDF of {what} is missing or altered, and rendering it again gives different bytes (the invoice, seller or customer details changed since it was issued); restore {} from a backup",
                stored_path(dir, tenant, doc.id(), recorded).display()
            )));
        }
        write_atomically(&path, &bytes).await?;
        return Ok(bytes);
    }
    write_atomically(&path, &bytes).await?;
    crate::crash::point("documents.stored");
    let mut tx = db.begin().await?;
    let (outcome, kind) = match doc {
        Issue::Invoice { id, total } => {
            let token = hex::encode(rand::random::<[u8; 24]>());
            let outcome = store::record_invoice_pdf(&mut tx, tenant, id, &sha, &token).await?;
            let kind = (total != 0).then_some(EmailKind::InvoiceFinalized);
            (outcome, kind)
        }
        Issue::CreditNote(id) => (
            store::record_credit_note_pdf(&mut tx, tenant, id, &sha).await?,
            Some(EmailKind::CreditNoteIssued),
        ),
    };
    let winner = match outcome {
        Recorded::First { announce } => {
            if let (true, Some(kind)) = (announce, kind) {
                let now = crate::domain::tenant::truncate_to_seconds(Utc::now());
                emails::enqueue(&mut tx, tenant, kind, doc.id(), doc.id(), now).await?;
            }
            None
        }
        Recorded::Already(winner) => Some(winner),
    };
    tx.commit().await?;
    match winner {
        Some(winner) if winner != sha => {
            if let Err(e) = tokio::fs::remove_file(&path).await {
                tracing::warn!(document = doc.id(), error = %e, "could not remove a render that lost the race to be issued");
            }
            match read_verified(dir, tenant, doc.id(), &winner).await {
                Some(issued) => Ok(issued),
                None => Err(ServiceError::Document(format!(
                    "{what} was issued by another worker whose file {} cannot be read",
                    stored_path(dir, tenant, doc.id(), &winner).display()
                ))),
            }
        }
        Some(_) | None => Ok(bytes),
    }
}

/// Whether a hosted-page token has the shape recur gives them (48 hex characters): anything
/// else is unknown without a query.
fn plausible_token(token: &str) -> bool {
    token.len() == 48 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A download's file name: the document number with anything but letters, digits and `-`
/// replaced, and `ext`.
pub(super) fn file_name(number: &str, ext: &str) -> String {
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
    format!("{safe}.{ext}")
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
    super::privacy::refuse_purged(db, tenant, "invoices", id.as_str()).await?;
    let Some(number) = inv.number.clone() else {
        return Err(ServiceError::unprocessable(
            "invoice_not_finalized",
            None,
            "a draft invoice has no PDF yet; it is rendered when the invoice is finalized",
        ));
    };
    let filename = file_name(&number, "pdf");
    let recorded = inv.document.pdf_sha256.clone();
    if let Some(recorded) = &recorded
        && let Some(bytes) = read_verified(dir, tenant, id.as_str(), recorded).await
    {
        return Ok(Pdf { bytes, filename });
    }
    let total = inv.total;
    let p = parties(db, tenant, &inv.customer).await?;
    let bytes = render_invoice_bytes(inv, p, false).await?;
    let doc = Issue::Invoice { id, total };
    let what = format!("invoice {number}");
    let bytes = keep(db, dir, tenant, doc, recorded.as_deref(), bytes, &what).await?;
    Ok(Pdf { bytes, filename })
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

pub(super) async fn load_note(
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
    super::privacy::refuse_purged(db, tenant, "credit_notes", id.as_str()).await?;
    let filename = file_name(&note.number, "pdf");
    let recorded = note.document.pdf_sha256.clone();
    if let Some(recorded) = &recorded
        && let Some(bytes) = read_verified(dir, tenant, id.as_str(), recorded).await
    {
        return Ok(Pdf { bytes, filename });
    }
    let p = parties(db, tenant, &note.customer).await?;
    let what = format!("credit note {}", note.number);
    let bytes = render(p, move |customer, seller| {
        documents::credit_note_pdf(&note, &inv, customer, seller)
    })
    .await?;
    let doc = Issue::CreditNote(id);
    let bytes = keep(db, dir, tenant, doc, recorded.as_deref(), bytes, &what).await?;
    Ok(Pdf { bytes, filename })
}

/// What one drain of the rendering queue did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rendered {
    pub invoices: usize,
    pub credit_notes: usize,
    pub failed: usize,
}

/// Renders the finalized invoices and credit notes of the tenant that have no PDF yet, in
/// batches, until `deadline` (the rest waits for the next pass). A document that fails is
/// logged and skipped (tried again next pass); it never stops the others, nor billing.
pub async fn render_pending(
    db: &Db,
    dir: &Path,
    tenant: &Tenant,
    deadline: std::time::Instant,
) -> Result<Rendered, ServiceError> {
    const BATCH: i64 = 100;
    let mut out = Rendered::default();
    let mut after: Option<InvoiceId> = None;
    loop {
        let mut tx = db.read().await?;
        let ids = store::invoices_to_render(&mut tx, &tenant.id, after.as_ref(), BATCH).await?;
        tx.commit().await?;
        for id in &ids {
            if std::time::Instant::now() >= deadline {
                return Ok(out);
            }
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
            if std::time::Instant::now() >= deadline {
                return Ok(out);
            }
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
