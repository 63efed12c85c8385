//! `/v1/usage_records` and `/v1/usage_records/batch`.

use super::error::ApiError;
use super::extract::{Body, Ctx};
use super::{AppState, body_id};
use crate::domain::ids::SubscriptionItemId;
use crate::domain::usage::{
    MAX_BATCH_RECORDS, MAX_USAGE_QUANTITY, UsageAction, UsageRecord, check_identifier,
};
use crate::services::usage::{NewUsage, Recorded, record_batch, record_usage};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/usage_records", post(create_usage_record))
        .route("/usage_records/batch", post(create_usage_batch))
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
    /// Your key for this record (1-255 characters): sent again, it is answered with the stored
    /// record and counted once. Required in a batch.
    identifier: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUsageBatch {
    /// 1 to 1,000 records, recorded all or nothing.
    records: Vec<CreateUsageRecord>,
}

/// A record as answered: `duplicate` is true when its identifier was stored before and the
/// stored record is returned.
#[derive(Serialize)]
pub struct RecordedUsage {
    #[serde(flatten)]
    record: UsageRecord,
    duplicate: bool,
}

#[derive(Serialize)]
pub struct UsageBatch {
    object: &'static str,
    /// Records stored by this request.
    created: usize,
    /// Records found stored under their identifier and not counted again.
    duplicates: usize,
    /// Every record, in the order sent.
    data: Vec<RecordedUsage>,
}

#[utoipa::path(post, path = "/v1/usage_records", request_body = CreateUsageRecord, responses((status = 200, description = "the usage record")))]
pub async fn create_usage_record(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(b): Body<CreateUsageRecord>,
) -> Result<Json<RecordedUsage>, ApiError> {
    let new = new_usage(b, false)?;
    Ok(Json(answer(
        record_usage(&s.db, &ctx.tenant, new, ctx.now).await?,
    )))
}

/// Records up to 1,000 usage records in one transaction. Any refused record refuses the batch
/// (422 `batch_rejected`, each refused record under `error.errors` with its `index`) and
/// nothing is written; records whose identifier is stored already are answered as duplicates.
#[utoipa::path(post, path = "/v1/usage_records/batch", request_body = CreateUsageBatch, responses((status = 200, description = "every record of the batch, with created and duplicates counts"), (status = 422, description = "batch_rejected: error.errors lists each refused record by index")))]
pub async fn create_usage_batch(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(b): Body<CreateUsageBatch>,
) -> Result<Json<UsageBatch>, ApiError> {
    if b.records.is_empty() || b.records.len() > MAX_BATCH_RECORDS {
        return Err(ApiError::invalid(
            "records",
            format!(
                "a batch holds 1 to {MAX_BATCH_RECORDS} records (got {})",
                b.records.len()
            ),
        ));
    }
    let mut news = Vec::with_capacity(b.records.len());
    let mut errors = Vec::new();
    for (i, r) in b.records.into_iter().enumerate() {
        match new_usage(r, true) {
            Ok(n) => news.push(n),
            Err(e) => errors.push((i, e)),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Batch(errors));
    }
    let done = record_batch(&s.db, &ctx.tenant, news, ctx.now).await?;
    let duplicates = done.iter().filter(|r| r.duplicate).count();
    Ok(Json(UsageBatch {
        object: "usage_record_batch",
        created: done.len() - duplicates,
        duplicates,
        data: done.into_iter().map(answer).collect(),
    }))
}

fn answer(r: Recorded) -> RecordedUsage {
    RecordedUsage {
        record: r.record,
        duplicate: r.duplicate,
    }
}

fn new_usage(b: CreateUsageRecord, identifier_required: bool) -> Result<NewUsage, ApiError> {
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
    match &b.identifier {
        Some(id) => check_identifier(id).map_err(|e| ApiError::invalid("identifier", e))?,
        None if identifier_required => return Err(ApiError::missing("identifier")),
        None => {}
    }
    Ok(NewUsage {
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
        identifier: b.identifier,
    })
}
