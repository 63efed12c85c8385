//! `GET /v1/exports/{kind}`: the billing history of a window of days as CSV or JSON lines,
//! streamed.

use super::AppState;
use super::error::ApiError;
use super::extract::{Ctx, Query};
use crate::exports::{Format, Kind, window};
use crate::services::reports::Window;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::NaiveDate;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new().route("/exports/{kind}", get(export))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// First day, `YYYY-MM-DD`, included.
    from: Option<String>,
    /// Last day, `YYYY-MM-DD`, included.
    to: Option<String>,
    /// IANA time zone the days are in (default `UTC`), e.g. `Europe/Warsaw`.
    timezone: Option<String>,
    /// `csv` (default) or `json` (JSON lines).
    format: Option<String>,
}

/// The checked parameters of an export (the CLI takes the same).
pub struct ExportRequest {
    pub kind: Kind,
    pub format: Format,
    pub window: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub timezone: chrono_tz::Tz,
}

pub fn export_request(
    kind: &str,
    from: Option<&str>,
    to: Option<&str>,
    timezone: Option<&str>,
    format: Option<&str>,
) -> Result<ExportRequest, ApiError> {
    let kind = Kind::parse(kind).ok_or_else(|| {
        ApiError::invalid(
            "kind",
            format!(
                "`{kind}` is not an export; one of invoices, invoice-lines, payments, credit-notes, journal"
            ),
        )
    })?;
    let format = Format::parse(format.unwrap_or("csv"))
        .ok_or_else(|| ApiError::invalid("format", "format must be csv or json"))?;
    let w = day_window(from, to, timezone, |_| None)?;
    Ok(ExportRequest {
        kind,
        format,
        window: w.span,
        from: w.from,
        to: w.to,
        timezone: w.timezone,
    })
}

/// The days `from` to `to` (both included) in `timezone` (default UTC) and the instants they
/// span, checked; an absent day takes its value from `defaults` (given the zone) or is missing.
pub fn day_window(
    from: Option<&str>,
    to: Option<&str>,
    timezone: Option<&str>,
    defaults: impl FnOnce(chrono_tz::Tz) -> Option<(NaiveDate, NaiveDate)>,
) -> Result<Window, ApiError> {
    let tz: chrono_tz::Tz = timezone.unwrap_or("UTC").parse().map_err(|_| {
        ApiError::invalid(
            "timezone",
            "timezone must be an IANA name such as Europe/Warsaw",
        )
    })?;
    let fallback = defaults(tz);
    let day = |param: &'static str, v: Option<&str>, default: Option<NaiveDate>| {
        let Some(v) = v else {
            return default.ok_or_else(|| ApiError::MissingParam {
                param: param.into(),
            });
        };
        NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map_err(|_| ApiError::invalid(param, format!("`{v}` is not a day (YYYY-MM-DD)")))
    };
    let from = day("from", from, fallback.map(|d| d.0))?;
    let to = day("to", to, fallback.map(|d| d.1))?;
    let span = window(from, to, tz).map_err(|e| ApiError::invalid("to", e))?;
    crate::domain::tenant::check_instant(span.0)
        .and_then(|_| crate::domain::tenant::check_instant(span.1))
        .map_err(|e| ApiError::invalid("from", e))?;
    Ok(Window {
        from,
        to,
        timezone: tz,
        span,
    })
}

#[utoipa::path(get, path = "/v1/exports/{kind}", params(("kind" = String, Path, description = "invoices | invoice-lines | payments | credit-notes | journal"), ExportQuery), responses((status = 200, description = "the rows as CSV (text/csv) or JSON lines (application/x-ndjson), streamed")))]
pub async fn export(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(kind): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let req = export_request(
        &kind,
        q.from.as_deref(),
        q.to.as_deref(),
        q.timezone.as_deref(),
        q.format.as_deref(),
    )?;
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let db = s.db.clone();
    let tenant = ctx.tenant.id.clone();
    tokio::spawn(async move {
        crate::services::exports::export(
            &db,
            &[tenant],
            req.kind,
            req.format,
            req.window,
            req.timezone,
            tx,
        )
        .await
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (chunk.map(Bytes::from).map_err(std::io::Error::other), rx))
    });
    let filename = format!(
        "{}-{}-{}.{}",
        req.kind.as_str(),
        req.from,
        req.to,
        req.format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, req.format.content_type().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}
