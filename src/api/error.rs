//! `ApiError`: every failure a client can see, as `{"error": {code, message, param}}`.

use crate::services::ServiceError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("{message}")]
    InvalidParam { param: String, message: String },
    #[error("missing required parameter: {param}")]
    MissingParam { param: String },
    #[error("received unknown parameter: {param}")]
    UnknownParam { param: String },
    #[error("invalid or missing API key; send `Authorization: Bearer <api key>`")]
    Unauthorized,
    #[error("this API key is read-only: it may only GET")]
    ReadOnlyKey,
    #[error("too many requests with this API key; retry after {0} s")]
    RateLimited(u64),
    #[error("no such {kind}: '{id}'")]
    NotFound {
        kind: &'static str,
        id: String,
        param: Option<String>,
    },
    #[error("unknown route")]
    NoRoute,
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        param: Option<String>,
    },
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        param: Option<String>,
    },
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    IdempotencyKeyInUse,
    #[error("request body is larger than the {0} byte limit")]
    PayloadTooLarge(usize),
    #[error("the body must be JSON, sent with `Content-Type: application/json` (got `{0}`)")]
    UnsupportedMediaType(String),
    #[error("the test clock is only available to test-mode tenants")]
    NotTestMode,
    #[error("{0}")]
    Webhook(#[from] crate::payments::WebhookError),
    /// Records of a batch that were refused, by index; the body lists each under `errors`.
    #[error("{} records of the batch were refused; nothing was recorded", .0.len())]
    Batch(Vec<(usize, ApiError)>),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn invalid(param: impl Into<String>, message: impl std::fmt::Display) -> Self {
        ApiError::InvalidParam {
            param: param.into(),
            message: message.to_string(),
        }
    }

    pub fn missing(param: impl Into<String>) -> Self {
        ApiError::MissingParam {
            param: param.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, Option<&str>) {
        match self {
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json", None),
            ApiError::InvalidParam { param, .. } => {
                (StatusCode::BAD_REQUEST, "parameter_invalid", Some(param))
            }
            ApiError::MissingParam { param } => {
                (StatusCode::BAD_REQUEST, "parameter_missing", Some(param))
            }
            ApiError::UnknownParam { param } => {
                (StatusCode::BAD_REQUEST, "parameter_unknown", Some(param))
            }
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::ReadOnlyKey => (StatusCode::FORBIDDEN, "permission_denied", None),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", None),
            // An unknown id in the path is 404; one named in the body is a bad request about
            // that field (Stripe does the same), so clients can tell "no such route object" from
            // "your reference is wrong".
            ApiError::NotFound { param: None, .. } => {
                (StatusCode::NOT_FOUND, "resource_missing", None)
            }
            ApiError::NotFound { param: Some(p), .. } => {
                (StatusCode::BAD_REQUEST, "resource_missing", Some(p))
            }
            ApiError::NoRoute => (StatusCode::NOT_FOUND, "route_not_found", None),
            ApiError::Unprocessable { code, param, .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, code, param.as_deref())
            }
            ApiError::Conflict { code, param, .. } => {
                (StatusCode::CONFLICT, code, param.as_deref())
            }
            ApiError::IdempotencyKeyReused => {
                (StatusCode::CONFLICT, "idempotency_key_reused", None)
            }
            ApiError::IdempotencyKeyInUse => (StatusCode::CONFLICT, "idempotency_key_in_use", None),
            ApiError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None)
            }
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                None,
            ),
            ApiError::NotTestMode => (StatusCode::UNPROCESSABLE_ENTITY, "not_test_mode", None),
            ApiError::Webhook(crate::payments::WebhookError::Unsupported) => {
                (StatusCode::NOT_FOUND, "route_not_found", None)
            }
            ApiError::Webhook(crate::payments::WebhookError::NotConfigured) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "webhook_not_configured",
                None,
            ),
            ApiError::Webhook(crate::payments::WebhookError::BadPayload(_)) => {
                (StatusCode::BAD_REQUEST, "invalid_json", None)
            }
            ApiError::Webhook(
                crate::payments::WebhookError::MissingSignature
                | crate::payments::WebhookError::Malformed(_)
                | crate::payments::WebhookError::Stale(_)
                | crate::payments::WebhookError::Mismatch,
            ) => (StatusCode::BAD_REQUEST, "signature_invalid", None),
            ApiError::Batch(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "batch_rejected",
                Some("records"),
            ),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, param) = self.parts();
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
        let mut body = envelope(code, &self.to_string(), param);
        if let ApiError::Batch(errors) = &self {
            body["error"]["errors"] = errors.iter().map(batch_entry).collect();
        }
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::RateLimited(secs) = self {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// The error object every failure leaves in: `{"error": {code, message, param}}`.
pub fn envelope(code: &str, message: &str, param: Option<&str>) -> serde_json::Value {
    json!({ "error": { "code": code, "message": message, "param": param } })
}

/// One refused record of a batch: its index, and its error as the single-record route would
/// answer it, with `param` naming the field inside `records[index]`.
fn batch_entry((index, e): &(usize, ApiError)) -> serde_json::Value {
    let (_, code, param) = e.parts();
    json!({
        "index": index,
        "code": code,
        "message": e.to_string(),
        "param": param.map(|p| format!("records[{index}].{p}")),
    })
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::InvalidParam { param, message } => {
                ApiError::InvalidParam { param, message }
            }
            ServiceError::MissingParam { param } => ApiError::MissingParam { param },
            ServiceError::MissingResource { kind, id, param } => {
                ApiError::NotFound { kind, id, param }
            }
            ServiceError::Unprocessable {
                code,
                message,
                param,
            } => ApiError::Unprocessable {
                code,
                message,
                param,
            },
            ServiceError::Conflict {
                code,
                message,
                param,
            } => ApiError::Conflict {
                code,
                message,
                param,
            },
            ServiceError::Batch(errors) => {
                ApiError::Batch(errors.into_iter().map(|(i, e)| (i, e.into())).collect())
            }
            ServiceError::Store(e) => e.into(),
            ServiceError::Document(e) => ApiError::Internal(anyhow::anyhow!(e)),
            ServiceError::Vault(e) => ApiError::Internal(e.into()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.into())
    }
}
