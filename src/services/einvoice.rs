//! E-invoices over the API: a finalized invoice or credit note as Peppol UBL, CII or KSeF FA(3)
//! (and an invoice as Factur-X), built from
//! the stored document and the parties' current details, the same way its PDF is.

use super::ServiceError;
use super::documents::{self as docs, Pdf, file_name, load_note, parties};
use crate::domain::en16931::{self, ModelError, SellerInput};
use crate::domain::ids::{CreditNoteId, InvoiceId, TenantId};
use crate::einvoice::{self, Syntax, WriteError, facturx};
use crate::store::{Db, invoices};
use std::path::Path;

/// An XML document to download.
pub struct Xml {
    pub body: String,
    pub filename: String,
}

fn refused(e: ModelError) -> ServiceError {
    match e {
        ModelError::NotFinalized => ServiceError::unprocessable("invoice_not_finalized", None, e),
        other => ServiceError::unprocessable("einvoice_unavailable", None, other),
    }
}

fn xml(d: &en16931::Document, syntax: Syntax) -> Result<Xml, ServiceError> {
    let body = einvoice::write(d, syntax).map_err(|e| match e {
        WriteError::Refused(e) => ServiceError::unprocessable("einvoice_unavailable", None, e),
        WriteError::Template(e) => ServiceError::Document(format!("e-invoice template: {e}")),
    })?;
    let suffix = match syntax {
        Syntax::Ubl => "ubl.xml",
        Syntax::Cii => "cii.xml",
        Syntax::Ksef => "fa3.xml",
    };
    Ok(Xml {
        body,
        filename: file_name(&d.number, suffix),
    })
}

/// The model of a stored invoice, with its seller's name.
async fn invoice_model(
    db: &Db,
    tenant: &TenantId,
    id: &InvoiceId,
) -> Result<(en16931::Document, String), ServiceError> {
    let mut tx = db.read().await?;
    let inv = invoices::find_invoice(&mut tx, tenant, id).await?;
    tx.commit().await?;
    let inv = inv.ok_or_else(|| ServiceError::not_found("invoice", id))?;
    super::privacy::refuse_purged(db, tenant, "invoices", id.as_str()).await?;
    let p = parties(db, tenant, &inv.customer).await?;
    let seller = SellerInput {
        settings: &p.settings,
        fallback_name: &p.tenant_name,
    };
    let d = en16931::invoice(&inv, &p.customer, &seller).map_err(refused)?;
    Ok((d, p.settings.legal_name.unwrap_or(p.tenant_name)))
}

pub async fn invoice_xml(
    db: &Db,
    tenant: &TenantId,
    id: &InvoiceId,
    syntax: Syntax,
) -> Result<Xml, ServiceError> {
    let (d, _) = invoice_model(db, tenant, id).await?;
    xml(&d, syntax)
}

/// The invoice's PDF as issued (the stored file its `pdf_sha256` names) with its CII
/// embedded: Factur-X, profile EN 16931.
pub async fn invoice_facturx(
    db: &Db,
    dir: &Path,
    tenant: &TenantId,
    id: &InvoiceId,
) -> Result<Pdf, ServiceError> {
    let (d, seller) = invoice_model(db, tenant, id).await?;
    let cii = xml(&d, Syntax::Cii)?.body;
    let pdf = docs::invoice_pdf(db, dir, tenant, id).await?;
    let issued = d.issue_date.and_time(chrono::NaiveTime::MIN).and_utc();
    let title = format!("Invoice {}", d.number);
    let bytes = tokio::task::spawn_blocking(move || {
        let meta = facturx::Meta {
            title: &title,
            author: &seller,
            issued,
        };
        facturx::embed(&pdf.bytes, &cii, &meta)
    })
    .await
    .map_err(|e| ServiceError::Document(format!("Factur-X task: {e}")))?
    .map_err(|e| ServiceError::Document(e.to_string()))?;
    Ok(Pdf {
        bytes,
        filename: file_name(&d.number, "facturx.pdf"),
    })
}

pub async fn credit_note_xml(
    db: &Db,
    tenant: &TenantId,
    id: &CreditNoteId,
    syntax: Syntax,
) -> Result<Xml, ServiceError> {
    let (note, inv) = load_note(db, tenant, id).await?;
    super::privacy::refuse_purged(db, tenant, "credit_notes", id.as_str()).await?;
    let p = parties(db, tenant, &note.customer).await?;
    let seller = SellerInput {
        settings: &p.settings,
        fallback_name: &p.tenant_name,
    };
    let d = en16931::credit_note(&note, &inv, &p.customer, &seller).map_err(refused)?;
    xml(&d, syntax)
}
