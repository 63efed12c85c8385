//! `/v1/events`: the outbox, readable.

use super::error::ApiError;
use super::extract::{Ctx, Query};
use super::{AppState, List, list, page};
use crate::store::events::{Event, EventFilter, list_events as store_list};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(list_events))
        .route("/alerts", get(list_alerts))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListEvents {
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// Only events about this object (`in_…`, `cus_…`, …).
    object_id: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[serde(rename = "created[gte]")]
    #[param(rename = "created[gte]")]
    created_gte: Option<String>,
    /// Only events before this time (RFC 3339).
    #[serde(rename = "created[lt]")]
    #[param(rename = "created[lt]")]
    created_lt: Option<String>,
    limit: Option<u32>,
    starting_after: Option<String>,
}

fn time(param: &str, v: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    v.map(|v| {
        chrono::DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|_| ApiError::invalid(param, format!("`{v}` is not an RFC 3339 time")))
    })
    .transpose()
}

#[utoipa::path(get, path = "/v1/events", params(ListEvents), responses((status = 200, description = "a page of events, newest first; each names the request (id, API key, idempotency key) that caused it")))]
pub async fn list_events(
    State(s): State<AppState>,
    ctx: Ctx,
    Query(q): Query<ListEvents>,
) -> Result<Json<List<Event>>, ApiError> {
    if let Some(k) = &q.kind
        && (k.len() > 100
            || !k
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'))
    {
        return Err(ApiError::invalid(
            "type",
            "type must be an event type such as invoice.paid",
        ));
    }
    if let Some(o) = &q.object_id
        && (o.len() > 100 || !o.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        return Err(ApiError::invalid(
            "object_id",
            "object_id must be an id such as in_…",
        ));
    }
    let filter = EventFilter {
        kind: q.kind,
        object_id: q.object_id,
        created_gte: time("created[gte]", q.created_gte.as_deref())?,
        created_lt: time("created[lt]", q.created_lt.as_deref())?,
    };
    let page = page(&s, &ctx, "evt", q.limit, q.starting_after).await?;
    let mut tx = s.db.read().await?;
    let out = store_list(&mut tx, &ctx.tenant.id, &filter, &page).await?;
    tx.commit().await?;
    Ok(list(out))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListAlerts {
    limit: Option<u32>,
    starting_after: Option<String>,
}

#[utoipa::path(get, path = "/v1/alerts", params(ListAlerts), responses((status = 200, description = "the tenant's alerts, newest first: firing, resolved or fired once")))]
pub async fn list_alerts(
    State(s): State<AppState>,
    ctx: Ctx,
    Query(q): Query<ListAlerts>,
) -> Result<Json<List<crate::store::alerts::Alert>>, ApiError> {
    let page = page(&s, &ctx, "alrt", q.limit, q.starting_after).await?;
    Ok(list(
        crate::services::alerts::list(&s.db, &ctx.tenant, &page).await?,
    ))
}
