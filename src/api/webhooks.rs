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
    let outcome = receive(&s.db, &s.payments, provider, event, now, None).await?;
    tracing::info!(provider = provider.as_str(), event = %id, outcome = outcome.as_str(), "webhook");
    Ok(Json(
        serde_json::json!({ "received": true, "id": id, "outcome": outcome.as_str() }),
    ))
}

/// `POST /webhooks/{provider}/{webhook_id}`: events of one tenant's own account, verified with
/// that account's signing secret only and applied to that tenant only (an event naming another
/// tenant is answered `ignored` and changes nothing).
pub async fn inbound_for_account(
    State(s): State<AppState>,
    Path((provider, webhook_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let provider = match Provider::parse(&provider) {
        Some(Provider::Stripe) => Provider::Stripe,
        Some(Provider::Sandbox) | None => return Err(ApiError::NoRoute),
    };
    let well_formed = webhook_id.len() <= 64
        && webhook_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let found = if well_formed {
        crate::services::provider_accounts::webhook_endpoint(
            &s.db,
            &s.config,
            provider,
            &webhook_id,
        )
        .await?
    } else {
        None
    };
    let Some((tenant, secret)) = found else {
        return Err(ApiError::NoRoute);
    };
    let secret = secret.ok_or(ApiError::Webhook(
        crate::payments::WebhookError::NotConfigured,
    ))?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let now = Utc::now();
    let event = crate::payments::stripe::Webhooks::new(
        vec![secret],
        s.config.stripe.webhook_tolerance_secs,
    )
    .parse(signature, &body, now)?;
    let id = event.id.clone();
    let outcome = receive(&s.db, &s.payments, provider, event, now, Some(&tenant)).await?;
    tracing::info!(provider = provider.as_str(), tenant.id = %tenant, event = %id, outcome = outcome.as_str(), "webhook");
    Ok(Json(
        serde_json::json!({ "received": true, "id": id, "outcome": outcome.as_str() }),
    ))
}
