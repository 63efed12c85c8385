//! `/v1/api_keys`: the tenant's keys. A new or rolled key's secret is in that one answer only;
//! `Idempotency-Key` is not honoured here, since replaying the answer would mean keeping the
//! secret (a retried create makes a second key, which can be revoked).

use super::error::ApiError;
use super::extract::{Body, Ctx};
use super::{AppState, List, list};
use crate::domain::api_key::{ApiKey, Scope, is_key_id};
use crate::services::api_keys as service;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api_keys", post(create_key).get(list_keys))
        .route("/api_keys/{id}", get(get_key))
        .route("/api_keys/{id}/revoke", post(revoke_key))
        .route("/api_keys/{id}/roll", post(roll_key))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// What the key is for (shown in lists); default `"api key"`.
    name: Option<String>,
    /// `full` (default) or `read_only` (`rk_…`: GET only).
    scope: Option<String>,
}

#[utoipa::path(post, path = "/v1/api_keys", request_body = CreateKey, responses((status = 200, description = "the key with its `secret`, shown only this once")))]
pub async fn create_key(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(b): Body<CreateKey>,
) -> Result<Json<ApiKey>, ApiError> {
    let scope = match b.scope.as_deref() {
        None => Scope::Full,
        Some(raw) => Scope::parse(raw)
            .ok_or_else(|| ApiError::invalid("scope", "scope must be full or read_only"))?,
    };
    let name = b.name.as_deref().unwrap_or("api key");
    Ok(Json(
        service::create_key(&s.db, &ctx.tenant, name, scope, system_now()).await?,
    ))
}

/// Key lifetimes run on real time, also for a test-mode tenant whose clock is frozen.
fn system_now() -> chrono::DateTime<chrono::Utc> {
    crate::domain::tenant::truncate_to_seconds(chrono::Utc::now())
}

#[utoipa::path(get, path = "/v1/api_keys", responses((status = 200, description = "every key of the tenant, oldest first, revoked and expired ones included (no secrets)")))]
pub async fn list_keys(
    State(s): State<AppState>,
    ctx: Ctx,
) -> Result<Json<List<ApiKey>>, ApiError> {
    Ok(list((service::list_keys(&s.db, &ctx.tenant).await?, false)))
}

fn key_id(raw: &str) -> Result<&str, ApiError> {
    if is_key_id(raw) {
        Ok(raw)
    } else {
        Err(ApiError::NotFound {
            kind: "api key",
            id: raw.to_owned(),
            param: None,
        })
    }
}

#[utoipa::path(get, path = "/v1/api_keys/{id}", responses((status = 200, description = "the key (no secret)"), (status = 404, description = "unknown id")))]
pub async fn get_key(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    Ok(Json(
        service::get_key(&s.db, &ctx.tenant, key_id(&id)?).await?,
    ))
}

#[utoipa::path(post, path = "/v1/api_keys/{id}/revoke", responses((status = 200, description = "the key, revoked at once"), (status = 409, description = "`last_full_api_key`: the tenant's last usable full-access key is rolled, not revoked")))]
pub async fn revoke_key(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(_): Body<super::invoices::NoFields>,
) -> Result<Json<ApiKey>, ApiError> {
    Ok(Json(
        service::revoke_key(&s.db, &ctx.tenant, key_id(&id)?, system_now()).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollKey {
    /// Seconds the old key keeps working (0 to 604800; default 0: it stops now).
    expires_in: Option<i64>,
}

#[utoipa::path(post, path = "/v1/api_keys/{id}/roll", request_body = RollKey, responses((status = 200, description = "the new key with its `secret`, shown only this once; the old one expires after `expires_in`")))]
pub async fn roll_key(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<RollKey>,
) -> Result<Json<ApiKey>, ApiError> {
    let id = key_id(&id)?;
    let overlap = chrono::Duration::try_seconds(b.expires_in.unwrap_or(0))
        .ok_or_else(|| ApiError::invalid("expires_in", "expires_in is out of range"))?;
    Ok(Json(
        service::roll_key(&s.db, &ctx.tenant, id, overlap, system_now()).await?,
    ))
}
