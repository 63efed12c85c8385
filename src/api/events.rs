//! `/v1/events`: the outbox, readable.

use super::error::ApiError;
use super::extract::{Ctx, Query};
use super::{AppState, List, list, page};
use crate::store::events::{Event, list_events as store_list};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new().route("/events", get(list_events))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListEvents {
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    limit: Option<u32>,
    starting_after: Option<String>,
}

#[utoipa::path(get, path = "/v1/events", params(ListEvents), responses((status = 200, description = "a page of events, newest first")))]
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
    let page = page(q.limit, q.starting_after)?;
    let mut tx = s.db.read().await?;
    let out = store_list(&mut tx, &ctx.tenant.id, q.kind.as_deref(), &page).await?;
    tx.commit().await?;
    Ok(list(out))
}
