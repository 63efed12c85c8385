//! The HTTP API: `router(state)` builds every route, so tests can drive it with or without a
//! socket. Handlers stay thin: extract, parse into domain input, call a service, respond.

mod api_keys;
mod catalogue;
mod credit_notes;
mod customers;
mod documents;
mod einvoices;
pub mod error;
mod events;
pub mod exports;
pub mod extract;
mod idempotency;
mod invoices;
mod openapi;
mod provider_accounts;
pub mod rate_limit;
pub mod reports;
mod retention;
pub mod server;
mod subscriptions;
mod usage;
mod webhook_endpoints;
mod webhooks;

use crate::config::Config;
use crate::services::api_keys::authenticate;
use crate::store::{Db, Page};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use error::ApiError;
use extract::Ctx;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Invoice settings from a JSON text, parsed and checked exactly as
/// `PUT /v1/settings/invoice` does (for the CLI); the error names the parameter.
pub fn settings_from_json(text: &str) -> Result<crate::domain::seller::InvoiceSettings, String> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let body: documents::SettingsBody =
        serde_path_to_error::deserialize(de).map_err(|e| e.to_string())?;
    crate::domain::seller::InvoiceSettings::try_from(body).map_err(|e| match e {
        ApiError::InvalidParam { param, message } => format!("`{param}`: {message}"),
        other => other.to_string(),
    })
}

/// Request bodies above this size are refused before parsing.
pub const BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub payments: Arc<crate::payments::Payments>,
}

/// What the authentication layer needs: the state, and the per-key rate limits it keeps
/// between requests.
#[derive(Clone)]
struct Gate {
    state: AppState,
    limits: Option<Arc<rate_limit::RateLimits>>,
}

pub fn router(state: AppState) -> Router {
    let gate = Gate {
        state: state.clone(),
        limits: rate_limit::RateLimits::new(
            state.config.server.rate_limit_per_second,
            state.config.server.rate_limit_burst,
        )
        .map(Arc::new),
    };
    let v1 = Router::new()
        .merge(customers::routes())
        .merge(catalogue::routes())
        .merge(subscriptions::routes())
        .merge(usage::routes())
        .merge(events::routes())
        .merge(invoices::routes())
        .merge(credit_notes::routes())
        .merge(documents::routes())
        .merge(einvoices::routes())
        .merge(exports::routes())
        .merge(reports::routes())
        .merge(webhook_endpoints::routes())
        .merge(provider_accounts::routes())
        .merge(retention::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotency,
        ))
        // API keys are made outside the idempotency layer: their answer holds a secret, which
        // recur must not keep to replay.
        .merge(api_keys::routes())
        .layer(middleware::from_fn_with_state(gate, authenticate_request))
        .layer(middleware::from_fn(run_to_completion));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::document))
        .route(
            "/webhooks/{provider}",
            axum::routing::post(webhooks::inbound),
        )
        .route(
            "/webhooks/{provider}/{webhook_id}",
            axum::routing::post(webhooks::inbound_for_account),
        )
        .merge(documents::public_routes())
        .nest("/v1", v1)
        .fallback(|| async { ApiError::NoRoute })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(state.config.server.request_timeout_secs),
        ))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(middleware::from_fn(request_id))
        .layer(middleware::from_fn(envelope))
        .with_state(state)
}

/// Errors that axum and tower answer themselves (405 with its `Allow`, 408, a path that does
/// not decode, …) leave in the same `{"error": {code, message, param}}` envelope as ours.
/// Hosted invoice pages keep their plain pages.
async fn envelope(req: Request, next: Next) -> Response {
    let hosted = req.uri().path().starts_with("/i/");
    let response = next.run(req).await;
    let status = response.status();
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if hosted || json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // A short plain-text reason (axum's "Invalid URL: …") is worth passing on.
    let detail = axum::body::to_bytes(body, 512)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|t| !t.trim().is_empty());
    let code = match status {
        axum::http::StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        axum::http::StatusCode::REQUEST_TIMEOUT => "request_timeout",
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        axum::http::StatusCode::NOT_FOUND => "route_not_found",
        axum::http::StatusCode::BAD_REQUEST => "invalid_request",
        s if s.is_server_error() => "internal_error",
        _ => "http_error",
    };
    let message = detail.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_owned()
    });
    let body = error::envelope(code, &message, None);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

/// The span of a request names its route pattern (`/i/{token}`), never the path itself: the
/// hosted page's token is a password, and paths carry ids and query strings.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("-", axum::extract::MatchedPath::as_str);
    let id = req
        .extensions()
        .get::<RequestId>()
        .map_or("-", |r| r.0.as_str());
    tracing::debug_span!("request", method = %req.method(), route, request.id = id)
}

/// Prometheus text, no API key (like `/healthz`: expose it to the scraper's network only).
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = crate::metrics::render(&state.db).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.db.read().await {
        Ok(tx) => {
            let _ = tx.commit().await;
            Json(serde_json::json!({ "status": "ok" })).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "unavailable" })),
            )
                .into_response()
        }
    }
}

/// A request that changes something runs to the end in a task of its own: a client that hangs
/// up, or the request timeout answering 408, stops the waiting, never the work half-way (an
/// attempt sent but not recorded, an idempotency key claimed but never answered, a clock
/// advance that billed but did not move the clock). Reads are simply dropped.
async fn run_to_completion(req: Request, next: Next) -> Response {
    use tracing::Instrument;
    if matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        return next.run(req).await;
    }
    let work = tokio::spawn(next.run(req).instrument(tracing::Span::current()));
    match work.await {
        Ok(response) => response,
        Err(e) => ApiError::Internal(anyhow::anyhow!("request task failed: {e}")).into_response(),
    }
}

/// Resolves the bearer key to its tenant and the tenant's clock, holds the key to its rate and
/// a read-only key to `GET`; nothing under `/v1` runs without it.
async fn authenticate_request(
    State(Gate { state, limits }): State<Gate>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .ok_or(ApiError::Unauthorized)?;
    let system_now = crate::domain::tenant::truncate_to_seconds(Utc::now());
    let (tenant, api_key) = authenticate(&state.db, key, system_now)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if let Some(limits) = &limits {
        limits.check(&api_key.id).map_err(ApiError::RateLimited)?;
    }
    if api_key.scope == crate::domain::api_key::Scope::ReadOnly
        && !matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        )
    {
        return Err(ApiError::ReadOnlyKey);
    }
    crate::services::api_keys::record_use(&state.db, &tenant, &api_key, system_now);
    let now = tenant.now(system_now);
    let api_key = api_key.id;
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let audit = crate::store::events::Audit {
        id: request_id,
        api_key: api_key.clone(),
    };
    req.extensions_mut().insert(Ctx {
        tenant,
        now,
        api_key,
    });
    Ok(crate::store::events::AUDIT
        .scope(audit, next.run(req))
        .await)
}

/// The id of a request: `req_` + a UUIDv7, in the `Request-Id` response header and on every
/// event the request writes.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

async fn request_id(mut req: Request, next: Next) -> Response {
    let id = format!("req_{}", uuid::Uuid::now_v7().simple());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("request-id", v);
    }
    response
}

/// `{"object": "list", "data": [...], "has_more": bool}`.
#[derive(Serialize)]
pub struct List<T: Serialize> {
    object: &'static str,
    data: Vec<T>,
    has_more: bool,
}

pub fn list<T: Serialize>((data, has_more): (Vec<T>, bool)) -> Json<List<T>> {
    Json(List {
        object: "list",
        data,
        has_more,
    })
}

/// Checks the common list parameters. `prefix` is the id prefix of what the list holds: a
/// `starting_after` must be an id of that kind that exists for the tenant, so a client paging
/// on a bad cursor gets a 400 instead of page 1 again (and again).
pub async fn page(
    s: &AppState,
    ctx: &Ctx,
    prefix: &str,
    limit: Option<u32>,
    starting_after: Option<String>,
) -> Result<Page, ApiError> {
    let limit = limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "limit must be between 1 and 100",
        ));
    }
    if let Some(cursor) = &starting_after {
        let well_formed = cursor.len() <= 100
            && cursor
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric())
                });
        if !well_formed {
            return Err(ApiError::invalid(
                "starting_after",
                format!("starting_after must be the id of an object of this list ({prefix}_…)"),
            ));
        }
        let mut tx = s.db.read().await?;
        let exists =
            crate::store::listed_id_exists(&mut tx, ctx.tenant.id.as_str(), prefix, cursor).await?;
        tx.commit().await?;
        if exists != Some(true) {
            return Err(ApiError::NotFound {
                kind: "object",
                id: cursor.clone(),
                param: Some("starting_after".into()),
            });
        }
    }
    Ok(Page {
        limit,
        starting_after,
    })
}

/// Parses an id taken from the path; a malformed one cannot exist, so it is a 404 like any
/// other unknown id.
pub fn path_id<T, E>(
    kind: &'static str,
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, ApiError> {
    parse(raw).map_err(|_| ApiError::NotFound {
        kind,
        id: raw.to_owned(),
        param: None,
    })
}

/// Parses an id given in the body, naming the field when it is malformed.
pub fn body_id<T, E: std::fmt::Display>(
    param: &str,
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, ApiError> {
    parse(raw).map_err(|e| ApiError::invalid(param, e))
}
