//! Documents over HTTP: `/v1/settings/invoice`, the PDFs of invoices and credit notes, and
//! the hosted invoice page `/i/{token}` (no API key).

use super::customers::{AddressBody, TaxIdBody, address, email, locale, tax_ids, text};
use super::error::ApiError;
use super::extract::{Body, Ctx, Query};
use super::{AppState, body_id, path_id};
use crate::documents::{self, Seller};
use crate::domain::ids::{CreditNoteId, InvoiceId, SubscriptionId};
use crate::domain::journal::Accounts;
use crate::domain::seller::{
    BankAccount, Iban, InvoiceSettings, Logo, Notifications, check_bic, check_color, check_link,
    check_phone,
};
use crate::services::documents::{self as service, Pdf};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings/invoice", get(get_settings).put(put_settings))
        .route("/invoices/upcoming", get(upcoming))
        .route("/invoices/upcoming/pdf", get(upcoming_pdf))
        .route("/invoices/{id}/pdf", get(invoice_pdf))
        .route("/credit_notes/{id}/pdf", get(credit_note_pdf))
}

/// Routes without an API key: the hosted invoice page and its PDF.
pub fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/i/{token}", get(hosted_page))
        .route("/i/{token}/pdf", get(hosted_pdf))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BankBody {
    iban: Option<String>,
    bic: Option<String>,
    account_number: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsBody {
    invoice_finalized: Option<bool>,
    payment_succeeded: Option<bool>,
    payment_failed: Option<bool>,
    credit_note_issued: Option<bool>,
    trial_ending: Option<bool>,
    upcoming_renewal: Option<bool>,
}

/// The seller on the tenant's documents. A PUT replaces all of it: absent fields are cleared.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    legal_name: Option<String>,
    address: Option<AddressBody>,
    tax_ids: Option<Vec<TaxIdBody>>,
    email: Option<String>,
    phone: Option<String>,
    bank: Option<BankBody>,
    /// Printed under the totals (at most 1,000 characters).
    payment_terms: Option<String>,
    /// Printed at the bottom of every page (at most 1,000 characters).
    footer: Option<String>,
    /// Language of documents for customers without one of their own: en, de, fr, pl, es.
    locale: Option<String>,
    /// `#RRGGBB`.
    accent_color: Option<String>,
    /// `data:image/png;base64,…` or `data:image/jpeg;base64,…`, at most 256 KiB.
    logo: Option<String>,
    /// Which customer e-mails are sent (all by default).
    notifications: Option<NotificationsBody>,
    /// Where customers update their payment method (linked from payment-failed e-mails).
    payment_method_url: Option<String>,
    /// Account codes of the journal export; any left out keep their defaults.
    #[schema(value_type = Option<Object>)]
    accounts: Option<Accounts>,
}

fn bank(b: BankBody) -> Result<BankAccount, ApiError> {
    let out = BankAccount {
        iban: b
            .iban
            .map(|i| Iban::parse(&i).map_err(|e| ApiError::invalid("bank.iban", e)))
            .transpose()?,
        bic: b
            .bic
            .map(|c| check_bic(&c).map_err(|e| ApiError::invalid("bank.bic", e)))
            .transpose()?,
        account_number: b
            .account_number
            .map(|a| text("bank.account_number", a, 64))
            .transpose()?,
    };
    if out.is_empty() {
        return Err(ApiError::invalid(
            "bank",
            "bank needs an iban or an account_number",
        ));
    }
    Ok(out)
}

impl TryFrom<SettingsBody> for InvoiceSettings {
    type Error = ApiError;
    fn try_from(b: SettingsBody) -> Result<Self, ApiError> {
        let defaults = Notifications::default();
        let n = b.notifications.unwrap_or_default();
        Ok(InvoiceSettings {
            legal_name: b
                .legal_name
                .map(|n| text("legal_name", n, 200))
                .transpose()?,
            address: b.address.map(address).transpose()?,
            tax_ids: b.tax_ids.map(tax_ids).transpose()?.unwrap_or_default(),
            email: b.email.map(email).transpose()?,
            phone: b
                .phone
                .map(|p| check_phone(&p).map_err(|e| ApiError::invalid("phone", e)))
                .transpose()?,
            bank: b.bank.map(bank).transpose()?,
            payment_terms: b
                .payment_terms
                .map(|t| text("payment_terms", t, 1000))
                .transpose()?,
            footer: b.footer.map(|f| text("footer", f, 1000)).transpose()?,
            locale: b
                .locale
                .map(|l| {
                    let parsed = locale(l.clone())?;
                    let lang = l.split('-').next().unwrap_or_default();
                    if !documents::locale::supported().any(|s| s == lang) {
                        return Err(ApiError::invalid(
                            "locale",
                            format!(
                                "documents are written in {}; `{l}` is not one of them",
                                documents::locale::supported()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                    Ok(parsed)
                })
                .transpose()?,
            accent_color: b
                .accent_color
                .map(|c| check_color(&c).map_err(|e| ApiError::invalid("accent_color", e)))
                .transpose()?,
            logo: b
                .logo
                .map(|l| Logo::from_data_url(&l).map_err(|e| ApiError::invalid("logo", e)))
                .transpose()?,
            accounts: match b.accounts {
                Some(a) => {
                    a.check().map_err(|e| ApiError::invalid("accounts", e))?;
                    a
                }
                None => Accounts::default(),
            },
            payment_method_url: b
                .payment_method_url
                .map(|u| check_link(&u).map_err(|e| ApiError::invalid("payment_method_url", e)))
                .transpose()?,
            notifications: Notifications {
                invoice_finalized: n.invoice_finalized.unwrap_or(defaults.invoice_finalized),
                payment_succeeded: n.payment_succeeded.unwrap_or(defaults.payment_succeeded),
                payment_failed: n.payment_failed.unwrap_or(defaults.payment_failed),
                credit_note_issued: n.credit_note_issued.unwrap_or(defaults.credit_note_issued),
                trial_ending: n.trial_ending.unwrap_or(defaults.trial_ending),
                upcoming_renewal: n.upcoming_renewal.unwrap_or(defaults.upcoming_renewal),
            },
        })
    }
}

#[utoipa::path(get, path = "/v1/settings/invoice", responses((status = 200, description = "the seller on this tenant's documents")))]
pub async fn get_settings(
    State(s): State<AppState>,
    ctx: Ctx,
) -> Result<Json<InvoiceSettings>, ApiError> {
    Ok(Json(service::get_settings(&s.db, &ctx.tenant.id).await?))
}

#[utoipa::path(put, path = "/v1/settings/invoice", request_body = SettingsBody, responses((status = 200, description = "the settings as stored")))]
pub async fn put_settings(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(b): Body<SettingsBody>,
) -> Result<Json<InvoiceSettings>, ApiError> {
    let settings = InvoiceSettings::try_from(b)?;
    Ok(Json(
        service::put_settings(&s.db, &ctx.tenant.id, settings, ctx.now).await?,
    ))
}

fn pdf_response(pdf: Pdf) -> Response {
    let disposition = format!("inline; filename=\"{}\"", pdf.filename);
    (
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "private, no-cache".to_owned()),
        ],
        pdf.bytes,
    )
        .into_response()
}

/// Which PDF of an invoice.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PdfQuery {
    /// `pdf` (default): the PDF as issued. `facturx`: the same PDF as PDF/A-3 with the
    /// invoice's CII embedded as `factur-x.xml` (Factur-X / ZUGFeRD, profile EN 16931).
    format: Option<String>,
}

#[utoipa::path(get, path = "/v1/invoices/{id}/pdf", params(PdfQuery), responses(
    (status = 200, description = "the finalized invoice's PDF (application/pdf), the same bytes every time", content_type = "application/pdf"),
    (status = 422, description = "format=facturx: einvoice_unavailable with what the invoice or the parties lack")))]
pub async fn invoice_pdf(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(q): Query<PdfQuery>,
) -> Result<Response, ApiError> {
    let id = path_id("invoice", &id, InvoiceId::parse)?;
    let dir = &s.config.documents.dir;
    let pdf = match q.format.as_deref() {
        None | Some("pdf") => service::invoice_pdf(&s.db, dir, &ctx.tenant.id, &id).await?,
        Some("facturx") => {
            crate::services::einvoice::invoice_facturx(&s.db, dir, &ctx.tenant.id, &id).await?
        }
        Some(other) => {
            return Err(ApiError::InvalidParam {
                param: "format".into(),
                message: format!("format `{other}` is not one of pdf, facturx"),
            });
        }
    };
    Ok(pdf_response(pdf))
}

#[utoipa::path(get, path = "/v1/credit_notes/{id}/pdf", responses((status = 200, description = "the credit note's PDF (application/pdf)", content_type = "application/pdf")))]
pub async fn credit_note_pdf(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id("credit note", &id, CreditNoteId::parse)?;
    let pdf = service::credit_note_pdf(&s.db, &s.config.documents.dir, &ctx.tenant.id, &id).await?;
    Ok(pdf_response(pdf))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UpcomingQuery {
    /// The subscription whose next renewal to preview.
    subscription: Option<String>,
}

fn subscription_param(q: UpcomingQuery) -> Result<SubscriptionId, ApiError> {
    let raw = q.subscription.ok_or_else(|| ApiError::MissingParam {
        param: "subscription".into(),
    })?;
    body_id("subscription", &raw, SubscriptionId::parse)
}

#[utoipa::path(get, path = "/v1/invoices/upcoming", params(UpcomingQuery), responses((status = 200, description = "the next renewal's invoice as it would be billed now, a draft without id or number; nothing is written")))]
pub async fn upcoming(
    State(s): State<AppState>,
    ctx: Ctx,
    Query(q): Query<UpcomingQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sub = subscription_param(q)?;
    let inv = crate::services::invoices::upcoming(&s.db, &ctx.tenant, &sub).await?;
    let mut v = serde_json::to_value(inv).map_err(|e| ApiError::Internal(e.into()))?;
    // A preview is not stored: it has no id, no PDF and no hosted page.
    for field in ["id", "pdf_url", "pdf_sha256", "hosted_invoice_url"] {
        v[field] = serde_json::Value::Null;
    }
    Ok(Json(v))
}

#[utoipa::path(get, path = "/v1/invoices/upcoming/pdf", params(UpcomingQuery), responses((status = 200, description = "the upcoming invoice as a PDF marked DRAFT", content_type = "application/pdf")))]
pub async fn upcoming_pdf(
    State(s): State<AppState>,
    ctx: Ctx,
    Query(q): Query<UpcomingQuery>,
) -> Result<Response, ApiError> {
    let sub = subscription_param(q)?;
    Ok(pdf_response(
        service::upcoming_pdf(&s.db, &ctx.tenant, &sub).await?,
    ))
}

/// Headers of every hosted response: nothing loads from elsewhere, nothing frames it, no
/// referrer leaks the token, nothing caches it.
fn locked_down(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

fn not_found() -> Response {
    locked_down((StatusCode::NOT_FOUND, "Not Found").into_response())
}

pub async fn hosted_page(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let found = match service::hosted_invoice(&s.db, &token).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return locked_down(ApiError::from(e).into_response()),
    };
    let seller = Seller {
        settings: &found.settings,
        fallback_name: &found.tenant_name,
    };
    match documents::hosted_page(
        &found.invoice,
        &found.customer,
        &seller,
        format!("/i/{token}/pdf"),
    ) {
        Ok(html) => locked_down(
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        ),
        Err(e) => locked_down(ApiError::Internal(e.into()).into_response()),
    }
}

pub async fn hosted_pdf(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    match service::hosted_pdf(&s.db, &s.config.documents.dir, &token).await {
        Ok(Some(pdf)) => locked_down(pdf_response(pdf)),
        Ok(None) => not_found(),
        Err(e) => locked_down(ApiError::from(e).into_response()),
    }
}
