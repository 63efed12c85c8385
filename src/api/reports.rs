//! `GET /v1/reports/summary`: what the tenant billed, collected and is owed in a window of
//! days, and its recurring revenue as it stands.

use super::AppState;
use super::error::ApiError;
use super::exports::day_window;
use super::extract::{Ctx, Query};
use crate::services::reports::{SummaryReport, Window, summary};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new().route("/reports/summary", get(get_summary))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    /// First day, `YYYY-MM-DD`, included (default: the first of this month).
    from: Option<String>,
    /// Last day, `YYYY-MM-DD`, included (default: today).
    to: Option<String>,
    /// IANA time zone the days are in (default `UTC`).
    timezone: Option<String>,
}

/// The report's window: the days asked for, or this month so far at `now` (the tenant's
/// clock) in the zone.
pub fn summary_window(
    from: Option<&str>,
    to: Option<&str>,
    timezone: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Window, ApiError> {
    day_window(from, to, timezone, |tz| {
        let today = now.with_timezone(&tz).date_naive();
        today.with_day(1).map(|first| (first, today))
    })
}

#[utoipa::path(get, path = "/v1/reports/summary", params(SummaryQuery), responses((status = 200, description = "the summary per currency: MRR, ARR, subscriptions, billed, collected, refunded, outstanding, aging, dunning, payment success rate")))]
pub async fn get_summary(
    State(s): State<AppState>,
    ctx: Ctx,
    Query(q): Query<SummaryQuery>,
) -> Result<Json<SummaryReport>, ApiError> {
    let now = ctx.tenant.now(ctx.now);
    let w = summary_window(
        q.from.as_deref(),
        q.to.as_deref(),
        q.timezone.as_deref(),
        now,
    )?;
    Ok(Json(summary(&s.db, &ctx.tenant, &w).await?))
}
