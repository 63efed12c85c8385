//! E-invoices over HTTP: a finalized invoice or credit note as Peppol BIS Billing 3.0 UBL
//! (`/ubl`), as the CII of Factur-X (`/cii`) or as KSeF FA(3) (`/ksef`), `application/xml`.

use super::error::ApiError;
use super::extract::Ctx;
use super::{AppState, path_id};
use crate::domain::ids::{CreditNoteId, InvoiceId};
use crate::einvoice::Syntax;
use crate::services::einvoice::{self as service, Xml};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/invoices/{id}/ubl", get(invoice_ubl))
        .route("/invoices/{id}/cii", get(invoice_cii))
        .route("/credit_notes/{id}/ubl", get(credit_note_ubl))
        .route("/credit_notes/{id}/cii", get(credit_note_cii))
        .route("/invoices/{id}/ksef", get(invoice_ksef))
        .route("/credit_notes/{id}/ksef", get(credit_note_ksef))
}

fn xml_response(x: Xml) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/xml; charset=utf-8".to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", x.filename),
            ),
            (header::CACHE_CONTROL, "private, no-cache".to_owned()),
        ],
        x.body,
    )
        .into_response()
}

async fn invoice(s: &AppState, ctx: &Ctx, id: &str, syntax: Syntax) -> Result<Response, ApiError> {
    let id = path_id("invoice", id, InvoiceId::parse)?;
    Ok(xml_response(
        service::invoice_xml(&s.db, &ctx.tenant.id, &id, syntax).await?,
    ))
}

async fn credit_note(
    s: &AppState,
    ctx: &Ctx,
    id: &str,
    syntax: Syntax,
) -> Result<Response, ApiError> {
    let id = path_id("credit note", id, CreditNoteId::parse)?;
    Ok(xml_response(
        service::credit_note_xml(&s.db, &ctx.tenant.id, &id, syntax).await?,
    ))
}

#[utoipa::path(get, path = "/v1/invoices/{id}/ubl", responses(
    (status = 200, description = "the finalized invoice as Peppol BIS Billing 3.0 UBL 2.1 (EN 16931)", content_type = "application/xml"),
    (status = 422, description = "einvoice_unavailable: what the invoice or the parties lack (a seller VAT id, an address country, a 3-decimal currency…); invoice_not_finalized for a draft")))]
pub async fn invoice_ubl(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    invoice(&s, &ctx, &id, Syntax::Ubl).await
}

#[utoipa::path(get, path = "/v1/invoices/{id}/cii", responses(
    (status = 200, description = "the finalized invoice as UN/CEFACT CII, the XML of Factur-X / ZUGFeRD profile EN 16931", content_type = "application/xml"),
    (status = 422, description = "einvoice_unavailable or invoice_not_finalized, as for /ubl")))]
pub async fn invoice_cii(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    invoice(&s, &ctx, &id, Syntax::Cii).await
}

#[utoipa::path(get, path = "/v1/credit_notes/{id}/ubl", responses(
    (status = 200, description = "the credit note as a Peppol UBL CreditNote (381) referencing its invoice", content_type = "application/xml"),
    (status = 422, description = "einvoice_unavailable: what the note or the parties lack")))]
pub async fn credit_note_ubl(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    credit_note(&s, &ctx, &id, Syntax::Ubl).await
}

#[utoipa::path(get, path = "/v1/credit_notes/{id}/cii", responses(
    (status = 200, description = "the credit note as CII (type code 381)", content_type = "application/xml"),
    (status = 422, description = "einvoice_unavailable: what the note or the parties lack")))]
pub async fn credit_note_cii(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    credit_note(&s, &ctx, &id, Syntax::Cii).await
}

#[utoipa::path(get, path = "/v1/invoices/{id}/ksef", responses(
    (status = 200, description = "the finalized invoice as KSeF FA(3) XML (schema 1-0E), for sellers established in Poland", content_type = "application/xml"),
    (status = 422, description = "einvoice_unavailable: a seller outside Poland, a rate Poland does not have, VAT in a currency other than PLN, or what /ubl refuses")))]
pub async fn invoice_ksef(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    invoice(&s, &ctx, &id, Syntax::Ksef).await
}

#[utoipa::path(get, path = "/v1/credit_notes/{id}/ksef", responses(
    (status = 200, description = "the credit note as a KSeF FA(3) correction (RodzajFaktury KOR) of its invoice", content_type = "application/xml"),
    (status = 422, description = "einvoice_unavailable, as for the invoice")))]
pub async fn credit_note_ksef(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    credit_note(&s, &ctx, &id, Syntax::Ksef).await
}
