//! `/v1/usage_records`.

use super::error::ApiError;
use super::extract::{Body, Ctx};
use super::{AppState, body_id};
use crate::domain::ids::SubscriptionItemId;
use crate::domain::usage::{MAX_USAGE_QUANTITY, UsageAction, UsageRecord};
use crate::services::usage::{NewUsage, record_usage};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new().route("/usage_records", post(create_usage_record))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUsageRecord {
    subscription_item: String,
    quantity: u64,
    /// RFC 3339; defaults to now.
    timestamp: Option<DateTime<Utc>>,
    /// increment | set
    action: Option<String>,
}

#[utoipa::path(post, path = "/v1/usage_records", request_body = CreateUsageRecord, responses((status = 200, description = "the usage record")))]
pub async fn create_usage_record(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(b): Body<CreateUsageRecord>,
) -> Result<Json<UsageRecord>, ApiError> {
    if b.quantity > MAX_USAGE_QUANTITY {
        return Err(ApiError::invalid(
            "quantity",
            format!("quantity must be at most {MAX_USAGE_QUANTITY}"),
        ));
    }
    let action = match b.action.as_deref() {
        None => UsageAction::Increment,
        Some(a) => UsageAction::parse(a)
            .ok_or_else(|| ApiError::invalid("action", "action must be increment or set"))?,
    };
    let new = NewUsage {
        subscription_item: body_id(
            "subscription_item",
            &b.subscription_item,
            SubscriptionItemId::parse,
        )?,
        quantity: b.quantity,
        timestamp: b
            .timestamp
            .map(crate::domain::tenant::check_instant)
            .transpose()
            .map_err(|e| ApiError::invalid("timestamp", e))?,
        action,
    };
    Ok(Json(record_usage(&s.db, &ctx.tenant, new, ctx.now).await?))
}
