//! `/v1/settings/providers/{provider}`: the tenant's own provider account (only `stripe`).

use super::AppState;
use super::error::ApiError;
use super::extract::{Body, Ctx};
use crate::domain::customer::Provider;
use crate::services::provider_accounts::{self as service, ProviderAccount};
use axum::extract::{Path, State};
use axum::routing::put;
use axum::{Json, Router};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/settings/providers/{provider}",
        put(connect).get(get_account).delete(disconnect),
    )
}

fn stripe_only(provider: &str) -> Result<Provider, ApiError> {
    match Provider::parse(provider) {
        Some(Provider::Stripe) => Ok(Provider::Stripe),
        Some(Provider::Sandbox) | None => Err(ApiError::NotFound {
            kind: "provider",
            id: provider.to_owned(),
            param: None,
        }),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectAccount {
    /// `sk_…` or `rk_…` of the tenant's mode; checked with Stripe before it is saved.
    secret_key: String,
    /// The signing secret (`whsec_…`) of the Stripe endpoint that sends to `webhook_url`.
    webhook_secret: Option<String>,
}

#[utoipa::path(put, path = "/v1/settings/providers/{provider}", request_body = ConnectAccount, responses((status = 200, description = "the account (never its secrets): mode, account id, last 4 of the key, whether a webhook secret is set, the webhook URL to give Stripe"), (status = 422, description = "`livemode_mismatch`, `provider_key_rejected`, `provider_unreachable`")))]
pub async fn connect(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(provider): Path<String>,
    Body(b): Body<ConnectAccount>,
) -> Result<Json<ProviderAccount>, ApiError> {
    stripe_only(&provider)?;
    Ok(Json(
        service::connect_stripe(
            &s.db,
            &s.config,
            &ctx.tenant,
            &b.secret_key,
            b.webhook_secret.as_deref(),
            ctx.now,
        )
        .await?,
    ))
}

#[utoipa::path(get, path = "/v1/settings/providers/{provider}", responses((status = 200, description = "the account (never its secrets)"), (status = 404, description = "no account connected")))]
pub async fn get_account(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(provider): Path<String>,
) -> Result<Json<ProviderAccount>, ApiError> {
    let provider = stripe_only(&provider)?;
    Ok(Json(
        service::get_account(&s.db, &ctx.tenant, provider).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/settings/providers/{provider}", responses((status = 200, description = "disconnected: the tenant charges through the installation's key again, if there is one")))]
pub async fn disconnect(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(provider): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let provider = stripe_only(&provider)?;
    service::disconnect(&s.db, &ctx.tenant, provider, ctx.now).await?;
    Ok(Json(serde_json::json!({
        "object": "provider_account", "provider": provider.as_str(), "deleted": true
    })))
}
