//! `Idempotency-Key` on POST and PATCH: the first response for a key is stored and replayed for
//! the same request; the same key with a different request is refused (409).
//!
//! The key is claimed in its own transaction before the request runs, so of two concurrent
//! requests with one key exactly one runs and the other gets `idempotency_key_in_use`. A request
//! that fails on our side (5xx) releases its key so the client's retry can run. If the process
//! dies between the request's commit and storing its response, the key stays claimed and
//! retries get 409 rather than a second effect: we prefer a visible refusal to a double write.

use super::error::ApiError;
use super::extract::Ctx;
use super::{AppState, BODY_LIMIT};
use crate::store::idempotency::{Claim, claim_key, release_key, save_response};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const HEADER: &str = "idempotency-key";
const MAX_KEY_LEN: usize = 255;

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
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
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
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(BODY_LIMIT))?;
    let fingerprint = fingerprint(&parts.method, parts.uri.path(), &bytes);

    let mut tx = state.db.begin().await?;
    let claim = claim_key(&mut tx, &ctx.tenant.id, &key, &fingerprint, ctx.now).await?;
    tx.commit().await?;
    match claim {
        Claim::Existing {
            fingerprint: stored,
            ..
        } if stored != fingerprint => return Err(ApiError::IdempotencyKeyReused),
        Claim::Existing { response: None, .. } => return Err(ApiError::IdempotencyKeyInUse),
        Claim::Existing {
            response: Some((status, body)),
            ..
        } => return Ok(replay(status, body)),
        Claim::Claimed => {}
    }

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let mut tx = state.db.begin().await?;
    if parts.status.is_server_error() {
        release_key(&mut tx, &ctx.tenant.id, &key).await?;
    } else {
        save_response(
            &mut tx,
            &ctx.tenant.id,
            &key,
            parts.status.as_u16(),
            &String::from_utf8_lossy(&bytes),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
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
