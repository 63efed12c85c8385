//! `POST /webhooks/{provider}`: inbound provider events. No API key: the provider's signature
//! on the raw body is the authentication. 2xx only once the change is committed, so a failure
//! here makes the provider deliver again.

use super::AppState;
use super::error::ApiError;
use crate::domain::customer::Provider;
use crate::payments::webhooks::receive;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use chrono::Utc;

pub async fn inbound(
    State(s): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let provider = Provider::parse(&provider).ok_or(ApiError::NoRoute)?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let now = Utc::now();
    let event = s.payments.parse_webhook(provider, signature, &body, now)?;
    let id = event.id.clone();
    let outcome = receive(&s.db, &s.payments, provider, event, now).await?;
    tracing::info!(provider = provider.as_str(), event = %id, outcome = outcome.as_str(), "webhook");
    Ok(Json(
        serde_json::json!({ "received": true, "id": id, "outcome": outcome.as_str() }),
    ))
}
