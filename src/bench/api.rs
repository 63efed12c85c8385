//! `recur bench api`: the HTTP API under load, served in-process by the real listener on a
//! loopback port over a scratch database, driven by recur's own client.
//!
//! Latency scenarios are open loop: request `i` is due at `start + i / rate` and its latency
//! runs from that instant, so a server that falls behind shows it in the tail instead of
//! slowing the generator down (no coordinated omission). `GET /healthz` (HTTP plus an empty
//! read transaction, no authentication) at the same rate is the same-run baseline.
//! Throughput scenarios are closed loop at a fixed concurrency: sign-ups (`POST
//! /v1/subscriptions`, the first invoice billed and numbered in the request) against `POST
//! /v1/customers`, and usage batches of 1,000 records against writing the same records with
//! the store's INSERTs directly. The load generator shares the machine's cores with the server.

use super::scratch;
use crate::api::server::{Limits, serve};
use crate::api::{AppState, router};
use crate::client::{Api, id};
use crate::config::Config;
use crate::domain::ids::{SubscriptionId, SubscriptionItemId, UsageRecordId};
use crate::domain::tenant::{Mode, Tenant};
use crate::domain::usage::{UsageAction, UsageRecord};
use crate::store::{Backend, Db, usage};
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct ApiOptions {
    /// How long each scenario runs.
    pub seconds: f64,
    /// Offered rate of the GET scenarios, requests per second.
    pub get_rate: u32,
    /// Offered rate of the POST scenarios, requests per second.
    pub post_rate: u32,
    /// Requests in flight in the throughput scenarios.
    pub concurrency: usize,
    pub database_url: Option<String>,
}

/// One scenario's figures.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub offered: Option<f64>,
    pub done: usize,
    pub errors: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What `recur bench api` measured, for its smoke test.
#[derive(Debug, Clone)]
pub struct ApiReport {
    pub rows: Vec<Row>,
    /// Usage records the batches stored, as the database counts them.
    pub usage_records_stored: i64,
    pub usage_records_sent: usize,
}

/// The tenant's world the scenarios touch.
struct World {
    customers: Vec<String>,
    prices: (String, String),
    metered_items: Vec<String>,
    invoice: String,
}

pub async fn run(mut config: Config, opts: ApiOptions) -> anyhow::Result<ApiReport> {
    let scratch = scratch(opts.database_url.as_deref()).await?;
    let db = scratch.db.clone();
    db.migrate().await?;
    let backend = match db.backend() {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    let files = tempfile::tempdir()?;
    config.documents.dir = files.path().join("documents");
    config.secrets.master_key = None;
    config.secrets.master_key_file = files.path().join("master.key");
    config.server.rate_limit_per_second = 0;
    let config = Arc::new(config);
    let now = Utc::now();
    let (tenant, key) =
        crate::services::tenants::create_tenant(&db, "bench api", Mode::Test, "API", now).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = router(AppState {
        db: db.clone(),
        config: config.clone(),
        payments: Arc::new(crate::payments::Payments::from_config(&config)?),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        app,
        Limits::from_config(&config.server),
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    let api = Arc::new(Api::new(base, key.0.clone())?);
    println!(
        "recur bench api: {backend}, {} s per scenario, offered {} GET/s and {} POST/s, {} in flight for throughput",
        opts.seconds, opts.get_rate, opts.post_rate, opts.concurrency
    );
    let world = setup(&api).await?;
    let report = scenarios(&api, &db, &tenant, world, &opts).await;
    let _ = stop.send(());
    let _ = server.await;
    scratch.close().await?;
    let report = report?;
    print_rows(&report.rows);
    if let Some(mb) = super::peak_memory_mb() {
        println!("  peak memory (VmHWM, server and load generator): {mb:.0} MB");
    }
    Ok(report)
}

async fn setup(api: &Api) -> anyhow::Result<World> {
    let price = |amount: i64, usage: &str| {
        json!({"product": "Bench", "currency": "EUR", "unit_amount": amount,
               "recurring": {"interval": "month", "usage_type": usage}})
    };
    let seat = id(&api.post("/v1/prices", price(1500, "licensed")).await?);
    let support = id(&api.post("/v1/prices", price(4900, "licensed")).await?);
    let calls = id(&api.post("/v1/prices", price(2, "metered")).await?);
    let mut customers = Vec::new();
    for i in 0..64 {
        customers.push(id(&api.post("/v1/customers", customer_body(i)).await?));
    }
    let mut metered_items = Vec::new();
    let mut invoice = String::new();
    for c in customers.iter().take(16) {
        let s = api
            .post(
                "/v1/subscriptions",
                json!({"customer": c, "items": [{"price": seat, "quantity": 3}, {"price": calls}]}),
            )
            .await?;
        metered_items.push(
            s["items"]
                .as_array()
                .and_then(|items| items.iter().find(|i| i["price"] == calls.as_str()))
                .map(id)
                .context("the metered item")?,
        );
        if invoice.is_empty() {
            let list = api
                .get(&format!("/v1/invoices?subscription={}&limit=1", id(&s)))
                .await?;
            invoice = list["data"][0]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
    }
    anyhow::ensure!(!invoice.is_empty(), "a sign-up billed no invoice");
    Ok(World {
        customers,
        prices: (seat, support),
        metered_items,
        invoice,
    })
}

fn customer_body(i: usize) -> Value {
    json!({"name": format!("Bench customer {i}"), "currency": "EUR",
           "payment_method": {"provider": "sandbox", "token": "tok_visa"}})
}

async fn scenarios(
    api: &Arc<Api>,
    db: &Db,
    tenant: &Tenant,
    world: World,
    opts: &ApiOptions,
) -> anyhow::Result<ApiReport> {
    let world = Arc::new(world);
    let mut rows = Vec::new();
    let get = |path: String| {
        move |api: Arc<Api>, _: usize| {
            let path = path.clone();
            async move { api.get(&path).await.map(drop) }
        }
    };
    rows.push(
        open_loop(
            "GET /healthz (baseline)",
            api,
            opts,
            opts.get_rate,
            get("/healthz".into()),
        )
        .await,
    );
    let customer = format!("/v1/customers/{}", world.customers[0]);
    rows.push(
        open_loop(
            "GET /v1/customers/{id}",
            api,
            opts,
            opts.get_rate,
            get(customer),
        )
        .await,
    );
    let invoice = format!("/v1/invoices/{}", world.invoice);
    rows.push(
        open_loop(
            "GET /v1/invoices/{id}",
            api,
            opts,
            opts.get_rate,
            get(invoice),
        )
        .await,
    );
    rows.push(
        open_loop(
            "POST /v1/customers",
            api,
            opts,
            opts.post_rate,
            |api, i| async move { api.post("/v1/customers", customer_body(i)).await.map(drop) },
        )
        .await,
    );
    let signup = {
        let world = world.clone();
        move |api: Arc<Api>, i: usize| {
            let world = world.clone();
            async move {
                let (customers, (seat, support)) = (&world.customers, &world.prices);
                let body = json!({"customer": customers[i % customers.len()],
                    "items": [{"price": seat, "quantity": 1 + i % 5}, {"price": support}]});
                api.post("/v1/subscriptions", body).await.map(drop)
            }
        }
    };
    rows.push(
        open_loop(
            "POST /v1/subscriptions (2 items, billed)",
            api,
            opts,
            opts.post_rate,
            signup.clone(),
        )
        .await,
    );
    let record = {
        let world = world.clone();
        move |api: Arc<Api>, i: usize| {
            let world = world.clone();
            async move {
                let items = &world.metered_items;
                let body =
                    json!({"subscription_item": items[i % items.len()], "quantity": 1 + i % 7});
                api.post("/v1/usage_records", body).await.map(drop)
            }
        }
    };
    rows.push(open_loop("POST /v1/usage_records", api, opts, opts.post_rate, record).await);

    rows.push(
        closed_loop(
            "burst: POST /v1/customers (baseline)",
            api,
            opts,
            |api, i| async move { api.post("/v1/customers", customer_body(i)).await.map(drop) },
        )
        .await,
    );
    rows.push(closed_loop("burst: POST /v1/subscriptions", api, opts, signup).await);

    let sent = Arc::new(AtomicUsize::new(0));
    let batches = {
        let (world, sent) = (world.clone(), sent.clone());
        move |api: Arc<Api>, i: usize| {
            let (world, sent) = (world.clone(), sent.clone());
            async move {
                let items = &world.metered_items;
                let records: Vec<Value> = (0..BATCH)
                    .map(|k| {
                        json!({"subscription_item": items[(i + k) % items.len()],
                        "quantity": 1 + k % 9, "identifier": format!("b{i}-{k}")})
                    })
                    .collect();
                let r = api
                    .post("/v1/usage_records/batch", json!({"records": records}))
                    .await?;
                anyhow::ensure!(r["created"] == BATCH, "batch {i}: {}", r["created"]);
                sent.fetch_add(BATCH, Ordering::Relaxed);
                Ok(())
            }
        }
    };
    let mut row = closed_loop(
        "usage: POST /v1/usage_records/batch (1,000)",
        api,
        opts,
        batches,
    )
    .await;
    row.per_second *= BATCH as f64;
    rows.push(row);
    let mut tx = db.read().await?;
    let usage_records_stored = usage::count_records(&mut tx, &tenant.id).await?;
    tx.commit().await?;
    rows.push(usage_baseline(db, tenant, &world.metered_items, opts).await?);
    Ok(ApiReport {
        rows,
        usage_records_stored,
        usage_records_sent: sent.load(Ordering::Relaxed),
    })
}

const BATCH: usize = 1000;

/// Offered `rate` requests per second for `opts.seconds`, latency from each request's due time.
async fn open_loop<F, Fut>(name: &str, api: &Arc<Api>, opts: &ApiOptions, rate: u32, make: F) -> Row
where
    F: Fn(Arc<Api>, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let n = ((opts.seconds * f64::from(rate)) as usize).max(1);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let fut = make(api.clone(), i);
        tasks.spawn(async move {
            let ok = fut.await.is_ok();
            (ok, due.elapsed())
        });
    }
    let (latencies, errors) = collect(tasks).await;
    let elapsed = start.elapsed().as_secs_f64();
    row(name, Some(f64::from(rate)), latencies, errors, elapsed)
}

/// `opts.concurrency` requests in flight for `opts.seconds`.
async fn closed_loop<F, Fut>(name: &str, api: &Arc<Api>, opts: &ApiOptions, make: F) -> Row
where
    F: Fn(Arc<Api>, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(opts.seconds);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..opts.concurrency.max(1) {
        let (api, make, next) = (api.clone(), make.clone(), next.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let ok = make(api.clone(), i).await.is_ok();
                out.push((ok, t.elapsed()));
            }
            out
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        for (ok, d) in done.unwrap_or_default() {
            if !ok {
                errors += 1;
            }
            latencies.push(d);
        }
    }
    row(name, None, latencies, errors, start.elapsed().as_secs_f64())
}

async fn collect(mut tasks: tokio::task::JoinSet<(bool, Duration)>) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((ok, d)) => {
                errors += usize::from(!ok);
                latencies.push(d);
            }
            Err(_) => errors += 1,
        }
    }
    (latencies, errors)
}

fn row(
    name: &str,
    offered: Option<f64>,
    mut latencies: Vec<Duration>,
    errors: usize,
    elapsed: f64,
) -> Row {
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Row {
        name: name.into(),
        offered,
        done: latencies.len(),
        errors,
        per_second: latencies.len() as f64 / elapsed.max(1e-9),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    }
}

/// The same usage records written by the store's multi-row INSERTs in transactions of 1,000,
/// with no HTTP, JSON, checks or events: the storage's own pace.
async fn usage_baseline(
    db: &Db,
    tenant: &Tenant,
    items: &[String],
    opts: &ApiOptions,
) -> anyhow::Result<Row> {
    let items: Vec<SubscriptionItemId> = items
        .iter()
        .map(|i| SubscriptionItemId::parse(i))
        .collect::<Result<_, _>>()?;
    let sub = SubscriptionId::generate();
    let now: DateTime<Utc> = Utc::now();
    let deadline = Instant::now() + Duration::from_secs_f64(opts.seconds);
    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut n = 0usize;
    while Instant::now() < deadline {
        let rows: Vec<(SubscriptionId, UsageRecord)> = (0..BATCH)
            .map(|k| {
                n += 1;
                (
                    sub.clone(),
                    UsageRecord {
                        id: UsageRecordId::generate(),
                        object: "usage_record",
                        subscription_item: items[k % items.len()].clone(),
                        quantity: 1,
                        action: UsageAction::Increment,
                        timestamp: now,
                        created: now,
                        identifier: Some(format!("base-{n}")),
                    },
                )
            })
            .collect();
        let t = Instant::now();
        let mut tx = db.begin().await?;
        usage::insert_usage_records(&mut tx, &tenant.id, &rows).await?;
        tx.commit().await?;
        latencies.push(t.elapsed());
    }
    let mut r = row(
        "usage baseline: store INSERTs (1,000 per transaction)",
        None,
        latencies,
        0,
        start.elapsed().as_secs_f64(),
    );
    r.per_second *= BATCH as f64;
    Ok(r)
}

fn print_rows(rows: &[Row]) {
    println!(
        "  {:<48} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7}",
        "scenario", "offered/s", "done/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for r in rows {
        println!(
            "  {:<48} {:>9} {:>9.0} {:>8.1} {:>8.1} {:>8.1} {:>7}",
            r.name,
            r.offered.map_or("-".into(), |o| format!("{o:.0}")),
            r.per_second,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.errors
        );
    }
    let find = |prefix: &str| rows.iter().find(|r| r.name.starts_with(prefix));
    if let (Some(s), Some(c)) = (
        find("burst: POST /v1/subscriptions"),
        find("burst: POST /v1/customers"),
    ) {
        println!(
            "  ratio sign-ups/customers: {:.2}",
            s.per_second / c.per_second.max(1e-9)
        );
    }
    if let (Some(b), Some(base)) = (find("usage: "), find("usage baseline")) {
        println!(
            "  ratio usage batch/store baseline: {:.2}",
            b.per_second / base.per_second.max(1e-9)
        );
    }
}
