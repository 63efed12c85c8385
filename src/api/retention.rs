//! `/v1/settings/retention`: how long an erased customer's issued documents are kept.

use super::AppState;
use super::error::ApiError;
use super::extract::{Body, Ctx};
use crate::services::privacy as service;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new().route("/settings/retention", get(get_retention).put(put_retention))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    /// 1 to 30; `null` returns to the default (10).
    years: Option<i64>,
}

fn shown(years: i64) -> Json<Value> {
    Json(json!({ "object": "retention", "years": years }))
}

#[utoipa::path(get, path = "/v1/settings/retention", responses((status = 200, description = "{object, years}: an erased customer's issued invoices and credit notes keep their PDFs this long, then the scheduler purges them")))]
pub async fn get_retention(State(s): State<AppState>, ctx: Ctx) -> Result<Json<Value>, ApiError> {
    Ok(shown(service::retention(&s.db, &ctx.tenant).await?))
}

#[utoipa::path(put, path = "/v1/settings/retention", request_body = RetentionBody, responses((status = 200, description = "the retention in force")))]
pub async fn put_retention(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(b): Body<RetentionBody>,
) -> Result<Json<Value>, ApiError> {
    Ok(shown(
        service::set_retention(&s.db, &ctx.tenant, b.years, ctx.now).await?,
    ))
}
