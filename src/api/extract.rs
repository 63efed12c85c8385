//! Extractors that turn a request into typed input or an [`ApiError`] in the contract's shape.

use super::error::ApiError;
use crate::domain::tenant::Tenant;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

/// The authenticated tenant and its "now" (the test clock for test-mode tenants).
#[derive(Debug, Clone)]
pub struct Ctx {
    pub tenant: Tenant,
    pub now: DateTime<Utc>,
    /// The API key's id: `key_` + the first 16 hex digits of its SHA-256.
    pub api_key: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Ctx>()
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }
}

/// A JSON body. Errors name the offending field by its path (`items[0].quantity`), and an
/// empty body reads as `{}` so action routes (`/cancel`) need no body.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(super::BODY_LIMIT))?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::InvalidJson(format!("invalid JSON body: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::InvalidJson(
                "the body must be a JSON object".into(),
            ));
        }
        serde_path_to_error::deserialize(value)
            .map(Body)
            .map_err(json_error)
    }
}

fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let path = e.path().to_string();
    let inner = e.into_inner();
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::InvalidJson(format!("invalid JSON body: {inner}"))
        }
        Category::Data => field_error(&path, &inner.to_string()),
    }
}

/// Maps serde's messages about a field onto the contract's codes.
pub fn field_error(path: &str, message: &str) -> ApiError {
    let join = |field: &str| {
        if path == "." || path.is_empty() {
            field.to_owned()
        } else if path == field || path.ends_with(&format!(".{field}")) {
            path.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    let message = message.split(" at line ").next().unwrap_or(message);
    if let Some(field) = backticked(message, "unknown field `") {
        ApiError::UnknownParam { param: join(field) }
    } else if let Some(field) = backticked(message, "missing field `") {
        ApiError::MissingParam { param: join(field) }
    } else {
        ApiError::InvalidParam {
            param: path.to_owned(),
            message: message.to_owned(),
        }
    }
}

fn backticked<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

/// Query parameters, parsed strictly: unknown parameters are errors, not silently ignored.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(raw));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                field_error(&path, &e.into_inner().to_string())
            })
    }
}

fn form_urlencoded_parse(raw: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(raw.as_bytes())
}
