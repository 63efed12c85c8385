//! `Idempotency-Key` on POST and PATCH: the first response for a key is stored and replayed for
//! the same request; the same key with a different request is refused (409).
//!
//! The key is claimed in its own transaction before the request runs, so of two concurrent
//! requests with one key exactly one runs and the other gets `idempotency_key_in_use`. The
//! request runs to completion whatever the client does (see `run_to_completion`), and every
//! event it commits carries the key. So after the request:
//! - its response is stored and replayed, unless it changed nothing and failed on our side
//!   (5xx) or met a passing conflict (`payment_in_flight`, `invoice_changed`,
//!   `clock_advance_in_progress`): then the key is freed and a retry runs anew;
//! - a key is never freed once the request committed a change, whatever its status (events
//!   carry `{key}@{claim}`, one claim per run of the key).
//!
//! A key left in flight by a process that is gone (killed between its commit and storing the
//! response), or for longer than [`IN_FLIGHT_LIMIT`], is recovered by the next request with
//! it: if the first run changed nothing the retry runs; if it did, a 500
//! `request_outcome_lost` is stored and replayed, so the change never happens twice. Keys are
//! kept 24 hours (pruned by the scheduler).

use super::error::ApiError;
use super::extract::Ctx;
use super::{AppState, BODY_LIMIT};
use crate::store::events::{REQUEST_KEY, request_changed_anything};
use crate::store::idempotency::{Claim, claim_key, release_key, save_response, take_over_key};
use crate::store::leases;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const HEADER: &str = "idempotency-key";
const MAX_KEY_LEN: usize = 255;

/// A key in flight this long is taken to be lost even when its holder cannot be checked (it
/// runs on another host).
pub const IN_FLIGHT_LIMIT: chrono::Duration = chrono::Duration::hours(1);

/// Conflicts that pass by themselves: retrying the same request later may succeed, so they are
/// not stored.
const TRANSIENT: [&str; 3] = [
    "payment_in_flight",
    "invoice_changed",
    "clock_advance_in_progress",
];

pub async fn idempotency(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !matches!(*req.method(), Method::POST | Method::PATCH) {
        return Ok(next.run(req).await);
    }
    let Some(raw_key) = req.headers().get(HEADER) else {
        return Ok(next.run(req).await);
    };
    let key = raw_key
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty()
                && k.len() <= MAX_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        })
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
            )
        })?
        .to_owned();
    let ctx = req
        .extensions()
        .get::<Ctx>()
        .cloned()
        .ok_or(ApiError::Unauthorized)?;
    let tenant = &ctx.tenant.id;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(BODY_LIMIT))?;
    let fingerprint = fingerprint(&parts.method, parts.uri.path(), &bytes);
    // One claim of the key: its events carry `{key}@{claim}`, so a key used again after it
    // was freed or pruned is judged by its own run only.
    let claim_id = format!("{:016x}", rand::random::<u64>());
    let holder = format!("{}:{claim_id}", leases::holder_name());
    let scoped = format!("{key}@{claim_id}");

    let mut tx = state.db.begin().await?;
    let claim = claim_key(&mut tx, tenant, &key, &fingerprint, &holder).await?;
    let claimed = match claim {
        Claim::Claimed => true,
        Claim::Existing {
            fingerprint: stored,
            ..
        } if stored != fingerprint => return Err(ApiError::IdempotencyKeyReused),
        Claim::Existing {
            response: Some((status, body)),
            ..
        } => return Ok(replay(status, body)),
        Claim::Existing {
            response: None,
            holder: previous,
            claimed_at,
            ..
        } => {
            let lost = previous.as_deref().is_none_or(leases::is_dead)
                || chrono::Utc::now() - claimed_at > IN_FLIGHT_LIMIT;
            if !lost {
                false
            } else {
                // The lost run's events carry its claim; a holder from before claims were
                // named cannot be judged, so it counts as having changed something.
                let lost_run = previous
                    .as_deref()
                    .and_then(|h| h.split(':').nth(4))
                    .map(|claim| format!("{key}@{claim}"));
                let changed = match &lost_run {
                    Some(run) => request_changed_anything(&mut tx, tenant, run).await?,
                    None => true,
                };
                if changed {
                    let body = outcome_lost(&key);
                    save_response(&mut tx, tenant, &key, 500, &body).await?;
                    tx.commit().await?;
                    return Ok(replay(500, body));
                }
                take_over_key(&mut tx, tenant, &key, previous.as_deref(), &holder).await?
            }
        }
    };
    tx.commit().await?;
    if !claimed {
        return Err(ApiError::IdempotencyKeyInUse);
    }

    let request = Request::from_parts(parts, Body::from(bytes));
    let response = REQUEST_KEY.scope(scoped.clone(), next.run(request)).await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let mut tx = state.db.begin().await?;
    let passing = parts.status.is_server_error() || is_transient(parts.status, &bytes);
    if passing && !request_changed_anything(&mut tx, tenant, &scoped).await? {
        release_key(&mut tx, tenant, &key).await?;
    } else {
        save_response(
            &mut tx,
            tenant,
            &key,
            parts.status.as_u16(),
            &String::from_utf8_lossy(&bytes),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

fn is_transient(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::CONFLICT
        && serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| {
            v["error"]["code"]
                .as_str()
                .is_some_and(|c| TRANSIENT.contains(&c))
        })
}

/// The answer stored for a request that committed changes but whose own answer was lost.
fn outcome_lost(key: &str) -> String {
    serde_json::json!({"error": {
        "code": "request_outcome_lost",
        "message": format!("the request with Idempotency-Key {key} committed its changes, but the server stopped before answering; they are recorded as events, and retrying with this key never repeats them"),
        "param": null,
    }})
    .to_string()
}

/// Same route and same JSON document (key order and whitespace aside) give the same
/// fingerprint.
fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => h.update(v.to_string().as_bytes()),
        Err(_) => h.update(body),
    }
    hex::encode(h.finalize())
}

fn replay(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut resp = (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_key_order_and_whitespace_but_not_values() {
        let a = fingerprint(
            &Method::POST,
            "/v1/customers",
            br#"{"name":"a","email":"x@y.co"}"#,
        );
        let b = fingerprint(
            &Method::POST,
            "/v1/customers",
            br#"{ "email": "x@y.co", "name": "a" }"#,
        );
        let c = fingerprint(
            &Method::POST,
            "/v1/customers",
            br#"{"name":"b","email":"x@y.co"}"#,
        );
        let d = fingerprint(
            &Method::POST,
            "/v1/prices",
            br#"{"name":"a","email":"x@y.co"}"#,
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
