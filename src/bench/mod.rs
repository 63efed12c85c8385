//! `recur bench cycle`: seeds N due subscriptions (mixed prices, taxes, coupons), times one
//! billing pass that invoices them all, then times in the same run a baseline that writes the
//! same number of rows the fastest way the backend has (PostgreSQL `COPY`, SQLite batched
//! multi-row INSERTs), and prints both rates and their ratio. Then it times a test-clock
//! advance of a smaller set over 12 months. Figures, never assertions: this is not a test.
//!
//! It always works on a scratch database: a temporary SQLite file, or a new schema inside the
//! PostgreSQL database given with `--database-url` (dropped at the end).

pub mod api;
pub mod collect;
pub mod pdf;

use crate::billing::run::run_due;
use crate::domain::currency::Currency;
use crate::domain::customer::{Customer, PaymentMethod, Provider, TaxExempt};
use crate::domain::ids::{
    CouponId, CustomerId, PriceId, SubscriptionId, SubscriptionItemId, TaxRateId,
};
use crate::domain::invoice_math::TaxBehavior;
use crate::domain::period::{Interval, IntervalUnit, boundary};
use crate::domain::price::{Price, Recurring, UsageType};
use crate::domain::pricing::{PriceScheme, Tier, TiersMode};
use crate::domain::subscription::{
    CollectionMethod, ProrationBehavior, Subscription, SubscriptionItem, SubscriptionStatus,
};
use crate::domain::tax_rate::{Coupon, CouponDuration, CouponValue, TaxRate};
use crate::domain::tenant::{Mode, Tenant};
use crate::services::{catalogue, clock, tenants};
use crate::store::{Backend, Db, bulk};
use anyhow::Context;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::time::Instant;

pub struct CycleOptions {
    pub subscriptions: usize,
    /// Concurrent billing workers (PostgreSQL only; SQLite has one writer).
    pub workers: usize,
    /// When above 0 (PostgreSQL only), the billing pass runs in this many separate processes
    /// of `exe` (`recur bench cycle-worker`), each with its own pool, as `recur worker`
    /// processes would, and each one's peak memory is printed.
    pub processes: usize,
    /// The recur binary the worker processes run.
    pub exe: Option<std::path::PathBuf>,
    pub clock_subscriptions: usize,
    pub database_url: Option<String>,
    pub batch_size: i64,
    pub payments: crate::payments::Payments,
}

struct Scratch {
    db: Db,
    /// The URL that reaches the scratch database (with its schema on PostgreSQL).
    url: Option<String>,
    schema: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

async fn scratch(url: Option<&str>) -> anyhow::Result<Scratch> {
    match url {
        Some(u) if u.starts_with("postgres") => {
            let admin = Db::connect(u, 2)
                .await
                .context("cannot connect to PostgreSQL")?;
            let schema = format!(
                "recur_bench_{}",
                &uuid::Uuid::now_v7().simple().to_string()[20..]
            );
            let mut tx = admin.begin().await?;
            bulk::create_schema(&mut tx, &schema).await?;
            tx.commit().await?;
            admin.close().await;
            let sep = if u.contains('?') { '&' } else { '?' };
            let url = format!("{u}{sep}options=-c%20search_path%3D{schema}");
            let db = Db::connect(&url, 8).await?;
            Ok(Scratch {
                db,
                url: Some(url),
                schema: Some((u.to_owned(), schema)),
                _dir: None,
            })
        }
        Some(u) => Ok(Scratch {
            db: Db::connect(u, 4).await?,
            url: Some(u.to_owned()),
            schema: None,
            _dir: None,
        }),
        None => {
            let dir = tempfile::tempdir()?;
            let db = Db::connect(&format!("sqlite://{}/bench.db", dir.path().display()), 4).await?;
            Ok(Scratch {
                db,
                url: None,
                schema: None,
                _dir: Some(dir),
            })
        }
    }
}

impl Scratch {
    /// Closes the pool; a PostgreSQL scratch schema is dropped.
    async fn close(self) -> anyhow::Result<()> {
        self.db.close().await;
        if let Some((url, schema)) = &self.schema {
            let admin = Db::connect(url, 1).await?;
            let mut tx = admin.begin().await?;
            bulk::drop_schema(&mut tx, schema).await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// A small catalogue that exercises every pricing path.
async fn catalogue(
    db: &Db,
    tenant: &Tenant,
    at: DateTime<Utc>,
) -> anyhow::Result<(Vec<Price>, Vec<TaxRate>, Vec<Coupon>)> {
    let eur = Currency::parse("EUR")?;
    let monthly = Interval::new(IntervalUnit::Month, 1)?;
    let recurring = |usage_type| {
        Some(Recurring {
            interval: monthly,
            usage_type,
        })
    };
    let tiers = vec![
        Tier {
            up_to: Some(5),
            unit_amount: Decimal::from(500),
            flat_amount: 1000,
        },
        Tier {
            up_to: Some(10),
            unit_amount: Decimal::from(400),
            flat_amount: 0,
        },
        Tier {
            up_to: None,
            unit_amount: Decimal::from(300),
            flat_amount: 0,
        },
    ];
    let schemes = [
        PriceScheme::PerUnit {
            unit_amount: Decimal::from(4900),
        },
        PriceScheme::PerUnit {
            unit_amount: Decimal::from(1990),
        },
        PriceScheme::PerUnit {
            unit_amount: "0.5".parse()?,
        },
        PriceScheme::Tiered {
            mode: TiersMode::Graduated,
            tiers: tiers.clone(),
        },
        PriceScheme::Tiered {
            mode: TiersMode::Volume,
            tiers,
        },
    ];
    let mut prices = Vec::new();
    for (i, scheme) in schemes.into_iter().enumerate() {
        let usage = if i == 2 {
            UsageType::Metered
        } else {
            UsageType::Licensed
        };
        let p = Price {
            id: PriceId::generate(),
            product: format!("Bench product {i}"),
            currency: eur,
            scheme,
            recurring: recurring(usage),
            tax_behavior: TaxBehavior::Exclusive,
            created: at,
        };
        prices.push(catalogue::create_price(db, tenant, p, at).await?);
    }
    let mut rates = Vec::new();
    for (name, pct) in [("VAT 23%", 23), ("VAT 8%", 8)] {
        let r = TaxRate {
            id: TaxRateId::generate(),
            object: "tax_rate",
            display_name: name.into(),
            percentage: Decimal::from(pct),
            inclusive: false,
            country: None,
            created: at,
        };
        rates.push(catalogue::create_tax_rate(db, tenant, r, at).await?);
    }
    let mut coupons = Vec::new();
    for (value, duration) in [
        (
            CouponValue::Percent {
                percent_off: Decimal::from(10),
            },
            CouponDuration::Forever,
        ),
        (
            CouponValue::Amount {
                amount_off: 500,
                currency: eur,
            },
            CouponDuration::Once,
        ),
    ] {
        let c = Coupon {
            id: CouponId::generate(),
            object: "coupon",
            name: None,
            value,
            duration,
            duration_in_months: None,
            created: at,
        };
        coupons.push(catalogue::create_coupon(db, tenant, c, at).await?);
    }
    Ok((prices, rates, coupons))
}

/// Creates a mixed catalogue and `n` subscriptions (each with its own customer) whose period
/// `[start, due)` has ended, so all are due at `due`; customers of a test-mode tenant pay
/// with a sandbox card, a live tenant's have no payment method. Used by the benchmark and by
/// the concurrency and crash tests.
pub async fn seed_due_subscriptions(
    db: &Db,
    tenant: &Tenant,
    n: usize,
    start: DateTime<Utc>,
    due: DateTime<Utc>,
) -> anyhow::Result<()> {
    // Sandbox tokens charge for test-mode tenants only.
    let method = (tenant.mode == Mode::Test).then(|| PaymentMethod {
        provider: Provider::Sandbox,
        token: "tok_visa".into(),
        customer: None,
    });
    seed_paying(db, tenant, n, start, due, method).await
}

/// Like [`seed_due_subscriptions`], every customer paying with `method`.
pub async fn seed_paying(
    db: &Db,
    tenant: &Tenant,
    n: usize,
    start: DateTime<Utc>,
    due: DateTime<Utc>,
    method: Option<PaymentMethod>,
) -> anyhow::Result<()> {
    let cat = catalogue(db, tenant, start).await?;
    seed(db, tenant, n, start, due, &cat, method.as_ref()).await?;
    bulk::analyze(db).await?;
    Ok(())
}

async fn seed(
    db: &Db,
    tenant: &Tenant,
    n: usize,
    start: DateTime<Utc>,
    due: DateTime<Utc>,
    cat: &(Vec<Price>, Vec<TaxRate>, Vec<Coupon>),
    method: Option<&PaymentMethod>,
) -> anyhow::Result<()> {
    let (prices, rates, coupons) = cat;
    let eur = Currency::parse("EUR")?;
    let monthly = Interval::new(IntervalUnit::Month, 1)?;
    let mut i = 0;
    while i < n {
        let end = (i + 5000).min(n);
        let mut customers = Vec::with_capacity(end - i);
        let mut subs = Vec::with_capacity(end - i);
        for k in i..end {
            let customer = Customer {
                id: CustomerId::generate(),
                object: "customer",
                external_id: Some(format!("bench-{k}")),
                name: format!("Customer {k}"),
                balance: 0,
                email: None,
                currency: Some(eur),
                locale: None,
                address: None,
                tax_ids: Vec::new(),
                tax_exempt: if k % 20 == 0 {
                    TaxExempt::Reverse
                } else {
                    TaxExempt::None
                },
                payment_method: method.cloned(),
                created: start,
                updated: start,
                erased_at: None,
            };
            let mut items = vec![SubscriptionItem {
                id: SubscriptionItemId::generate(),
                price: prices[k % 5].id.clone(),
                quantity: 1 + (k % 12) as u64,
            }];
            if k % 5 == 0 {
                items.push(SubscriptionItem {
                    id: SubscriptionItemId::generate(),
                    price: prices[(k + 1) % 5].id.clone(),
                    quantity: 2,
                });
            }
            let tax = match k % 10 {
                0..=4 => vec![rates[0].id.clone()],
                5 | 6 => vec![rates[1].id.clone()],
                _ => Vec::new(),
            };
            let coupon = match k % 20 {
                1 | 2 => Some(coupons[0].id.clone()),
                3 => Some(coupons[1].id.clone()),
                _ => None,
            };
            subs.push(Subscription {
                id: SubscriptionId::generate(),
                object: "subscription",
                customer: customer.id.clone(),
                status: SubscriptionStatus::Active,
                currency: eur,
                interval: monthly,
                items,
                collection_method: CollectionMethod::ChargeAutomatically,
                days_until_due: None,
                coupon,
                default_tax_rates: tax,
                proration_behavior: ProrationBehavior::CreateProrations,
                start_date: start,
                trial_end: None,
                billing_cycle_anchor: start,
                current_period_start: start,
                current_period_end: due,
                cancel_at_period_end: false,
                canceled_at: None,
                ended_at: None,
                paused_at: None,
                created: start,
                next_billing_at: Some(due),
                discount_invoices: 0,
                billing_error: None,
            });
            customers.push(customer);
        }
        let mut tx = db.begin().await?;
        bulk::insert_customers(&mut tx, &tenant.id, &customers).await?;
        bulk::insert_subscriptions(&mut tx, &tenant.id, &subs).await?;
        tx.commit().await?;
        i = end;
    }
    Ok(())
}

/// Runs the billing pass in `n` processes of `exe` and waits for all: the boundaries they
/// billed, and each one's peak resident memory (as it reported it).
async fn worker_processes(
    exe: &std::path::Path,
    url: &str,
    tenant: &Tenant,
    until: DateTime<Utc>,
    batch: i64,
    n: usize,
) -> anyhow::Result<(u64, Vec<f64>)> {
    let mut children = Vec::new();
    for _ in 0..n {
        children.push(
            tokio::process::Command::new(exe)
                .arg("--database-url")
                .arg(url)
                .args(["bench", "cycle-worker", "--tenant", tenant.id.as_str()])
                .arg("--until")
                .arg(until.to_rfc3339())
                .arg("--batch-size")
                .arg(batch.to_string())
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", exe.display()))?,
        );
    }
    let mut boundaries = 0;
    let mut peaks = Vec::new();
    for child in children {
        let out = child.wait_with_output().await?;
        anyhow::ensure!(
            out.status.success(),
            "a worker process failed: {}",
            out.status
        );
        let report: WorkerReport =
            serde_json::from_slice(&out.stdout).context("a worker process's report is not JSON")?;
        boundaries += report.boundaries;
        peaks.push(report.peak_mb);
    }
    Ok((boundaries, peaks))
}

/// What `recur bench cycle-worker` prints on its standard output.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct WorkerReport {
    pub boundaries: u64,
    pub peak_mb: f64,
}

/// `recur bench cycle-worker`: one worker process of `bench cycle --processes`, billing what
/// is due for the tenant by `until` alongside the others, as `recur worker` would.
pub async fn cycle_worker(
    db: &Db,
    tenant: &crate::domain::ids::TenantId,
    until: DateTime<Utc>,
    batch: i64,
) -> anyhow::Result<WorkerReport> {
    let mut tx = db.read().await?;
    let tenant = crate::store::tenants::find_tenant(&mut tx, tenant.as_str())
        .await?
        .context("no such tenant")?;
    tx.commit().await?;
    let summary = run_due(db, &tenant, until, batch).await?;
    Ok(WorkerReport {
        boundaries: summary.boundaries,
        peak_mb: peak_memory_mb().unwrap_or_default(),
    })
}

fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

pub async fn cycle(opts: CycleOptions) -> anyhow::Result<()> {
    let scratch = scratch(opts.database_url.as_deref()).await?;
    let db = &scratch.db;
    db.migrate().await?;
    let backend = match db.backend() {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    let start = time("2026-12-01T00:00:00Z");
    let due = time("2027-01-01T00:00:00Z");
    let n = opts.subscriptions;
    println!(
        "recur bench cycle: {backend}, {n} due subscriptions, batch {}",
        opts.batch_size
    );

    let (tenant, _) = tenants::create_tenant(db, "bench", Mode::Live, "BEN", start).await?;
    let t = Instant::now();
    seed_due_subscriptions(db, &tenant, n, start, due).await?;
    println!("  seeded in {:.2}s", t.elapsed().as_secs_f64());

    let processes = match (db.backend(), &scratch.url, &opts.exe) {
        (Backend::Postgres, Some(url), Some(exe)) if opts.processes > 0 => {
            Some((url.clone(), exe.clone()))
        }
        _ => None,
    };
    let workers = match (db.backend(), &processes) {
        (Backend::Sqlite, _) => 1,
        (Backend::Postgres, Some(_)) => opts.processes,
        (Backend::Postgres, None) => opts.workers.max(1),
    };
    let t = Instant::now();
    let (boundaries, how) = match processes {
        Some((url, exe)) => {
            let (boundaries, peaks) =
                worker_processes(&exe, &url, &tenant, due, opts.batch_size, workers).await?;
            let peaks: Vec<String> = peaks.iter().map(|mb| format!("{mb:.0}")).collect();
            (
                boundaries,
                format!(
                    "{workers} process{}, peak RSS {} MB",
                    if workers == 1 { "" } else { "es" },
                    peaks.join(" / ")
                ),
            )
        }
        None => {
            let mut handles = Vec::new();
            for _ in 0..workers {
                let (db, tenant, batch) = (db.clone(), tenant.clone(), opts.batch_size);
                handles.push(tokio::spawn(async move {
                    run_due(&db, &tenant, due, batch).await
                }));
            }
            let mut boundaries = 0;
            for h in handles {
                boundaries += h.await??.boundaries;
            }
            (
                boundaries,
                format!("{workers} worker{}", if workers == 1 { "" } else { "s" }),
            )
        }
    };
    let billing = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        usize::try_from(boundaries)? == n,
        "the pass billed {boundaries} of {n} due subscriptions"
    );
    let mut tx = db.read().await?;
    let (invoices, lines, events) = bulk::billing_row_counts(&mut tx, &tenant.id).await?;
    tx.commit().await?;
    let billed_rate = boundaries as f64 / billing;
    println!(
        "  billing pass ({how}): {boundaries} subscriptions -> {invoices} invoices, {lines} lines, {events} events in {billing:.2}s = {billed_rate:.0} subscriptions/s"
    );

    let n_inv = usize::try_from(invoices)?.max(1);
    let lines_per = (usize::try_from(lines)? + n_inv / 2) / n_inv;
    let events_per = (usize::try_from(events)? + n_inv / 2) / n_inv;
    let mut tx = db.begin().await?;
    bulk::create_baseline_tables(&mut tx).await?;
    tx.commit().await?;
    let t = Instant::now();
    let mut tx = db.begin().await?;
    bulk::write_baseline(&mut tx, &tenant.id, n_inv, lines_per, events_per, due).await?;
    tx.commit().await?;
    let base = t.elapsed().as_secs_f64();
    let base_rate = n_inv as f64 / base;
    let how = match db.backend() {
        Backend::Sqlite => "batched INSERTs",
        Backend::Postgres => "COPY",
    };
    println!(
        "  baseline ({how}) of the same rows ({lines_per} lines, {events_per} events per invoice): {base:.2}s = {base_rate:.0} invoices/s"
    );
    println!("  ratio billing/baseline: {:.2}", billed_rate / base_rate);

    let m = opts.clock_subscriptions;
    let (test_tenant, _) =
        tenants::create_tenant(db, "bench clock", Mode::Test, "CLK", start).await?;
    seed_due_subscriptions(db, &test_tenant, m, start, start).await?;
    let year_later =
        boundary(start, Interval::new(IntervalUnit::Month, 12)?, 1).context("date range")?;
    let t = Instant::now();
    let advanced = clock::advance_clock(
        db,
        &opts.payments,
        &test_tenant,
        year_later,
        opts.batch_size,
    )
    .await?;
    println!(
        "  test clock: {m} subscriptions advanced 12 months -> {} invoices in {:.2}s",
        advanced.summary.invoices_created,
        t.elapsed().as_secs_f64()
    );
    if let Some(mb) = peak_memory_mb() {
        println!("  peak memory (VmHWM): {mb:.0} MB");
    }
    scratch.close().await
}
