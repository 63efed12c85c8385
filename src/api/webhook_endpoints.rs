//! `/v1/webhook_endpoints`: where recur sends its events, and what it sent there.

use super::error::ApiError;
use super::extract::{Body, Ctx, Query};
use super::{AppState, List, list, page, path_id};
use crate::domain::ids::{WebhookDeliveryId, WebhookEndpointId};
use crate::services::webhooks as service;
use crate::store::webhooks::{Delivery, Endpoint};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/webhook_endpoints",
            post(create_endpoint).get(list_endpoints),
        )
        .route(
            "/webhook_endpoints/{id}",
            get(get_endpoint).delete(delete_endpoint),
        )
        .route("/webhook_endpoints/{id}/deliveries", get(list_deliveries))
        .route(
            "/webhook_endpoints/{id}/deliveries/{delivery}/resend",
            post(resend_delivery),
        )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// An absolute http(s) URL resolving to public addresses.
    url: String,
    /// Event types (`invoice.paid`, …) or `["*"]` for all.
    enabled_events: Vec<String>,
    description: Option<String>,
}

#[utoipa::path(post, path = "/v1/webhook_endpoints", request_body = CreateEndpoint, responses((status = 200, description = "the endpoint with its signing `secret` (whsec_…), shown only this once")))]
pub async fn create_endpoint(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(b): Body<CreateEndpoint>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(
        service::create(
            &s.db,
            &s.config,
            &ctx.tenant.id,
            &b.url,
            b.enabled_events,
            b.description,
            ctx.now,
        )
        .await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<u32>,
    starting_after: Option<String>,
}

#[utoipa::path(get, path = "/v1/webhook_endpoints", params(ListQuery), responses((status = 200, description = "the endpoints, oldest first (no secrets)")))]
pub async fn list_endpoints(
    State(s): State<AppState>,
    ctx: Ctx,
    Query(q): Query<ListQuery>,
) -> Result<Json<List<Endpoint>>, ApiError> {
    let page = page(&s, &ctx, "we", q.limit, q.starting_after).await?;
    Ok(list(service::list(&s.db, &ctx.tenant.id, &page).await?))
}

#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}", responses((status = 200, description = "the endpoint (no secret)")))]
pub async fn get_endpoint(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Endpoint>, ApiError> {
    let id = path_id("webhook endpoint", &id, WebhookEndpointId::parse)?;
    Ok(Json(service::get(&s.db, &ctx.tenant.id, &id).await?))
}

#[derive(Serialize)]
pub struct Deleted {
    id: WebhookEndpointId,
    object: &'static str,
    deleted: bool,
}

#[utoipa::path(delete, path = "/v1/webhook_endpoints/{id}", responses((status = 200, description = "deleted: nothing is sent there any more; pending deliveries are canceled")))]
pub async fn delete_endpoint(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    let id = path_id("webhook endpoint", &id, WebhookEndpointId::parse)?;
    service::delete(&s.db, &ctx.tenant.id, &id, ctx.now).await?;
    Ok(Json(Deleted {
        id,
        object: "webhook_endpoint",
        deleted: true,
    }))
}

#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}/deliveries", params(ListQuery), responses((status = 200, description = "deliveries to the endpoint, newest first, each with its attempts")))]
pub async fn list_deliveries(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<List<Delivery>>, ApiError> {
    let id = path_id("webhook endpoint", &id, WebhookEndpointId::parse)?;
    let page = page(&s, &ctx, "whd", q.limit, q.starting_after).await?;
    Ok(list(
        service::deliveries(&s.db, &ctx.tenant.id, &id, &page).await?,
    ))
}

#[derive(Serialize)]
pub struct Resent {
    id: WebhookDeliveryId,
    object: &'static str,
    status: &'static str,
}

#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}/deliveries/{delivery}/resend", responses((status = 200, description = "the delivery is pending again and goes out on the relay's next pass")))]
pub async fn resend_delivery(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Json<Resent>, ApiError> {
    let id = path_id("webhook endpoint", &id, WebhookEndpointId::parse)?;
    let delivery = path_id("webhook delivery", &delivery, WebhookDeliveryId::parse)?;
    service::resend(&s.db, &ctx.tenant.id, &id, &delivery).await?;
    Ok(Json(Resent {
        id: delivery,
        object: "webhook_delivery",
        status: "pending",
    }))
}
