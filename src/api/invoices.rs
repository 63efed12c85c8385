//! `/v1/invoices` and `/v1/test_clock/advance`.

use super::error::ApiError;
use super::extract::{Body, Ctx, Query};
use super::{AppState, List, body_id, list, page, path_id};
use crate::domain::ids::{CustomerId, InvoiceId, SubscriptionId};
use crate::domain::invoice::{Invoice, InvoiceStatus};
use crate::services::clock::{Advanced, advance_clock};
use crate::services::invoices::{self as service, Closing};
use crate::store::invoices::InvoiceFilter;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/invoices", get(list_invoices))
        .route("/invoices/{id}", get(get_invoice))
        .route("/invoices/{id}/void", post(void_invoice))
        .route(
            "/invoices/{id}/mark_uncollectible",
            post(mark_uncollectible),
        )
        .route("/invoices/{id}/pay", post(pay_invoice))
        .route("/payments", get(list_payments))
        .route("/test_clock/advance", post(advance))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListInvoices {
    customer: Option<String>,
    subscription: Option<String>,
    /// draft | open | paid | void | uncollectible
    status: Option<String>,
    limit: Option<u32>,
    starting_after: Option<String>,
}

#[utoipa::path(get, path = "/v1/invoices", params(ListInvoices), responses((status = 200, description = "a page of invoices with their lines, newest first")))]
pub async fn list_invoices(
    State(s): State<AppState>,
    ctx: Ctx,
    Query(q): Query<ListInvoices>,
) -> Result<Json<List<Invoice>>, ApiError> {
    let filter = InvoiceFilter {
        customer: q
            .customer
            .map(|c| body_id("customer", &c, CustomerId::parse))
            .transpose()?,
        subscription: q
            .subscription
            .map(|c| body_id("subscription", &c, SubscriptionId::parse))
            .transpose()?,
        status: q
            .status
            .map(|s| {
                InvoiceStatus::parse(&s).ok_or_else(|| {
                    ApiError::invalid(
                        "status",
                        "status must be one of draft, open, paid, void, uncollectible",
                    )
                })
            })
            .transpose()?,
    };
    Ok(list(
        service::list_invoices(
            &s.db,
            &ctx.tenant,
            &filter,
            &page(&s, &ctx, "in", q.limit, q.starting_after).await?,
        )
        .await?,
    ))
}

#[utoipa::path(get, path = "/v1/invoices/{id}", responses((status = 200, description = "the invoice with its lines")))]
pub async fn get_invoice(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Invoice>, ApiError> {
    let id = path_id("invoice", &id, InvoiceId::parse)?;
    Ok(Json(service::get_invoice(&s.db, &ctx.tenant, &id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

#[utoipa::path(post, path = "/v1/invoices/{id}/void", responses((status = 200, description = "the voided invoice (it keeps its number)")))]
pub async fn void_invoice(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(_): Body<NoFields>,
) -> Result<Json<Invoice>, ApiError> {
    let id = path_id("invoice", &id, InvoiceId::parse)?;
    Ok(Json(
        service::close_invoice(&s.db, &ctx.tenant, &id, Closing::Void, ctx.now).await?,
    ))
}

#[utoipa::path(post, path = "/v1/invoices/{id}/mark_uncollectible", responses((status = 200, description = "the invoice, written off")))]
pub async fn mark_uncollectible(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(_): Body<NoFields>,
) -> Result<Json<Invoice>, ApiError> {
    let id = path_id("invoice", &id, InvoiceId::parse)?;
    Ok(Json(
        service::close_invoice(&s.db, &ctx.tenant, &id, Closing::Uncollectible, ctx.now).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// RFC 3339; must be after the clock's current time.
    to: DateTime<Utc>,
}

#[utoipa::path(post, path = "/v1/test_clock/advance", request_body = AdvanceClock, responses((status = 200, description = "what ran between the old and the new time")))]
pub async fn advance(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(b): Body<AdvanceClock>,
) -> Result<Json<Advanced>, ApiError> {
    let to = crate::domain::tenant::check_instant(b.to).map_err(|e| ApiError::invalid("to", e))?;
    Ok(Json(
        advance_clock(
            &s.db,
            &s.payments,
            &ctx.tenant,
            to,
            s.config.scheduler.batch_size,
        )
        .await?,
    ))
}

#[utoipa::path(post, path = "/v1/invoices/{id}/pay", responses((status = 200, description = "the invoice after an immediate charge attempt")))]
pub async fn pay_invoice(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(_): Body<NoFields>,
) -> Result<Json<Invoice>, ApiError> {
    let id = path_id("invoice", &id, InvoiceId::parse)?;
    Ok(Json(
        crate::services::payments::pay_invoice(&s.db, &s.payments, &ctx.tenant, &id, ctx.now)
            .await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListPayments {
    invoice: Option<String>,
    limit: Option<u32>,
    starting_after: Option<String>,
}

#[utoipa::path(get, path = "/v1/payments", params(ListPayments), responses((status = 200, description = "payment attempts, newest first")))]
pub async fn list_payments(
    State(s): State<AppState>,
    ctx: Ctx,
    Query(q): Query<ListPayments>,
) -> Result<Json<List<crate::domain::payment::Payment>>, ApiError> {
    let invoice = q
        .invoice
        .map(|i| body_id("invoice", &i, InvoiceId::parse))
        .transpose()?;
    let page = page(&s, &ctx, "pay", q.limit, q.starting_after).await?;
    Ok(list(
        crate::services::payments::list_payments(&s.db, &ctx.tenant, invoice.as_ref(), &page)
            .await?,
    ))
}
