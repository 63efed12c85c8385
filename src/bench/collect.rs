//! `recur bench collect`: a collection pass over due invoices, charged through the Stripe
//! client against a local fake Stripe that answers after a fixed latency and refuses with 429
//! above a rate limit (Stripe's live limit is 100 requests per second), and through the
//! in-process sandbox. The same-run baseline charges the same way one invoice at a time, as
//! collection did before charges ran side by side. Figures, never assertions.

use super::{scratch, seed_due_subscriptions, seed_paying, time};
use crate::billing::run::run_due;
use crate::config::{Config, Secret};
use crate::domain::customer::{PaymentMethod, Provider};
use crate::domain::tenant::{Mode, Tenant};
use crate::payments::Payments;
use crate::payments::collect::collect_due;
use crate::services::tenants;
use crate::store::{Backend, Db};
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct CollectOptions {
    /// Invoices charged through the fake Stripe.
    pub charges: usize,
    /// Invoices charged through the sandbox.
    pub sandbox_charges: usize,
    /// How long the fake Stripe takes to answer.
    pub latency_ms: u64,
    /// Requests per second above which the fake Stripe answers 429.
    pub limit_per_second: u32,
    pub database_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CollectRow {
    pub name: String,
    pub invoices: usize,
    pub succeeded: u64,
    pub seconds: f64,
    /// 429 answers of the fake Stripe during the pass.
    pub rate_limited: usize,
}

impl CollectRow {
    pub fn per_second(&self) -> f64 {
        self.succeeded as f64 / self.seconds.max(1e-9)
    }
}

#[derive(Debug, Clone)]
pub struct CollectReport {
    pub rows: Vec<CollectRow>,
}

/// A fake Stripe that knows one request: creating and confirming a PaymentIntent.
struct Fake {
    latency: Duration,
    limit: governor::DefaultDirectRateLimiter,
    requests: AtomicUsize,
    limited: AtomicUsize,
}

async fn create_intent(
    State(f): State<Arc<Fake>>,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    let n = f.requests.fetch_add(1, Ordering::Relaxed);
    if f.limit.check().is_err() {
        f.limited.fetch_add(1, Ordering::Relaxed);
        let body = json!({"error": {"type": "rate_limit_error", "message": "Too many requests"}});
        return (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    }
    tokio::time::sleep(f.latency).await;
    let get = |k: &str| {
        params
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    let amount: i64 = get("amount")
        .and_then(|a| a.parse().ok())
        .unwrap_or_default();
    let metadata: HashMap<&str, &str> = params
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k, v.as_str()))
        })
        .collect();
    Json(json!({
        "id": format!("pi_bench{n}"), "object": "payment_intent", "status": "succeeded",
        "amount": amount, "amount_received": amount, "currency": get("currency"),
        "metadata": metadata, "latest_charge": format!("ch_bench{n}"),
    }))
    .into_response()
}

pub async fn run(config: Config, opts: CollectOptions) -> anyhow::Result<CollectReport> {
    let scratch = scratch(opts.database_url.as_deref()).await?;
    let report = scenarios(&scratch.db, config, &opts).await;
    scratch.close().await?;
    let report = report?;
    println!(
        "  {:<52} {:>8} {:>9} {:>8} {:>10} {:>6}",
        "scenario", "invoices", "succeeded", "seconds", "charges/s", "429s"
    );
    for r in &report.rows {
        println!(
            "  {:<52} {:>8} {:>9} {:>8.2} {:>10.0} {:>6}",
            r.name,
            r.invoices,
            r.succeeded,
            r.seconds,
            r.per_second(),
            r.rate_limited
        );
    }
    if let [stripe, one_by_one, sandbox, sandbox_one, ..] = report.rows.as_slice() {
        println!(
            "  ratio side by side / one at a time: Stripe {:.1}, sandbox {:.1}",
            stripe.per_second() / one_by_one.per_second().max(1e-9),
            sandbox.per_second() / sandbox_one.per_second().max(1e-9)
        );
    }
    Ok(report)
}

async fn scenarios(
    db: &Db,
    mut config: Config,
    opts: &CollectOptions,
) -> anyhow::Result<CollectReport> {
    db.migrate().await?;
    let backend = match db.backend() {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    let per_second = std::num::NonZeroU32::new(opts.limit_per_second.max(1))
        .unwrap_or(std::num::NonZeroU32::MIN);
    let fake = Arc::new(Fake {
        latency: Duration::from_millis(opts.latency_ms),
        limit: governor::RateLimiter::direct(governor::Quota::per_second(per_second)),
        requests: AtomicUsize::new(0),
        limited: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = Router::new()
        .route("/v1/payment_intents", axum::routing::post(create_intent))
        .with_state(fake.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    config.stripe.secret_key = Some(Secret::new("sk_live_bench"));
    config.stripe.api_base = base;
    println!(
        "recur bench collect: {backend}, fake Stripe answering in {} ms with 429 above {}/s, pace {}/s and {} in flight per account",
        opts.latency_ms,
        opts.limit_per_second,
        config.stripe.ops_per_second_live,
        config.stripe.max_concurrent_requests
    );
    let start = time("2026-12-01T00:00:00Z");
    let due = time("2027-01-01T00:00:00Z");
    let stripe_card = Some(PaymentMethod {
        provider: Provider::Stripe,
        token: "pm_card_visa".into(),
        customer: Some("cus_bench".into()),
    });
    let mut rows = Vec::new();
    let one_by_one = (opts.charges / 10).max(20);
    for (name, n, at_once) in [
        ("Stripe (fake), side by side", opts.charges, None),
        (
            "Stripe (fake), one at a time (baseline)",
            one_by_one,
            Some(1),
        ),
    ] {
        let (tenant, _) = tenants::create_tenant(db, name, Mode::Live, "COL", start).await?;
        seed_paying(db, &tenant, n, start, due, stripe_card.clone()).await?;
        let mut payments = Payments::from_config(&config)?;
        payments.charges_at_once = at_once.unwrap_or(payments.charges_at_once);
        let limited = fake.limited.load(Ordering::Relaxed);
        let mut row = pass(db, &tenant, &payments, name, n, due).await?;
        row.rate_limited = fake.limited.load(Ordering::Relaxed) - limited;
        rows.push(row);
    }
    let sandbox_one = (opts.sandbox_charges / 10).max(20);
    for (name, n, at_once) in [
        ("sandbox, side by side", opts.sandbox_charges, None),
        ("sandbox, one at a time (baseline)", sandbox_one, Some(1)),
    ] {
        let (tenant, _) = tenants::create_tenant(db, name, Mode::Test, "SBX", start).await?;
        seed_due_subscriptions(db, &tenant, n, start, due).await?;
        let mut payments = Payments::from_config(&config)?;
        payments.charges_at_once = at_once.unwrap_or(payments.charges_at_once);
        rows.push(pass(db, &tenant, &payments, name, n, due).await?);
    }
    server.abort();
    Ok(CollectReport { rows })
}

/// Bills the tenant's due subscriptions (untimed), then times one collection pass.
async fn pass(
    db: &Db,
    tenant: &Tenant,
    payments: &Payments,
    name: &str,
    n: usize,
    due: DateTime<Utc>,
) -> anyhow::Result<CollectRow> {
    run_due(db, tenant, due, 500).await?;
    let t = Instant::now();
    let summary = collect_due(db, tenant, payments, due).await?;
    Ok(CollectRow {
        name: name.into(),
        invoices: n,
        succeeded: summary.payments_succeeded,
        seconds: t.elapsed().as_secs_f64(),
        rate_limited: 0,
    })
}
