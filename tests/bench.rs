//! `recur bench cycle` runs end to end on a small set (figures are printed, never asserted).

use recur::bench::{CycleOptions, cycle};
use recur::config::{Config, Overrides};
use recur::payments::Payments;

/// The PostgreSQL to bench on, or None (the test skips) when it is unreachable outside CI;
/// under `CI=true` the bench runs and fails.
async fn postgres() -> Option<String> {
    let url = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if sqlx::PgPool::connect(&url).await.is_err() && std::env::var("CI").as_deref() != Ok("true") {
        eprintln!("skipping: PostgreSQL unreachable");
        return None;
    }
    Some(url)
}

fn options(database_url: Option<String>) -> CycleOptions {
    CycleOptions {
        subscriptions: 300,
        workers: 2,
        processes: 0,
        exe: None,
        clock_subscriptions: 20,
        database_url,
        batch_size: 100,
        payments: Payments::from_config(
            &Config::load(None, &Overrides::default()).expect("default config"),
        )
        .expect("payments"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cycle_benchmark_runs_on_sqlite() {
    cycle(options(None)).await.expect("bench on SQLite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cycle_benchmark_runs_on_postgres() {
    let Some(url) = postgres().await else { return };
    cycle(options(Some(url.clone())))
        .await
        .expect("bench on PostgreSQL");
    // The same pass in two worker processes of the real binary.
    let mut two = options(Some(url));
    two.processes = 2;
    two.exe = Some(env!("CARGO_BIN_EXE_recur").into());
    cycle(two).await.expect("bench in two processes");
}

#[test]
fn the_pdf_benchmark_runs() {
    recur::bench::pdf::run(20).expect("bench pdf");
}

async fn api_bench(database_url: Option<String>) {
    let config = Config::load(None, &Overrides::default()).expect("default config");
    let report = recur::bench::api::run(
        config,
        recur::bench::api::ApiOptions {
            seconds: 0.5,
            get_rate: 100,
            post_rate: 40,
            concurrency: 4,
            database_url,
        },
    )
    .await
    .expect("bench api");
    assert_eq!(report.rows.len(), 10, "{report:?}");
    for r in &report.rows {
        assert!(r.done > 0 && r.errors == 0, "{r:?}");
        if let Some(offered) = r.offered {
            // Open loop: every scheduled request was sent, however slow the answers.
            assert_eq!(r.done, (offered * 0.5) as usize, "{r:?}");
        }
    }
    // Every batch and every single record the scenarios sent is stored once.
    assert!(report.usage_records_sent >= 1000, "{report:?}");
    assert_eq!(
        report.usage_records_stored,
        i64::try_from(report.usage_records_sent + report.rows[5].done).unwrap(),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_benchmark_runs_on_sqlite() {
    api_bench(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_benchmark_runs_on_postgres() {
    let Some(url) = postgres().await else { return };
    api_bench(Some(url)).await;
}

async fn collect_bench(database_url: Option<String>) {
    let config = Config::load(None, &Overrides::default()).expect("default config");
    let report = recur::bench::collect::run(
        config,
        recur::bench::collect::CollectOptions {
            charges: 60,
            sandbox_charges: 100,
            latency_ms: 20,
            limit_per_second: 100,
            database_url,
        },
    )
    .await
    .expect("bench collect");
    assert_eq!(report.rows.len(), 4, "{report:?}");
    for r in &report.rows {
        // Every invoice with an amount due is charged once (metered-only ones bill nothing),
        // and the pace keeps the fake Stripe from ever answering 429.
        assert!(r.succeeded as usize * 10 >= r.invoices * 7, "{r:?}");
        assert!(r.succeeded as usize <= r.invoices, "{r:?}");
        assert_eq!(r.rate_limited, 0, "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collect_benchmark_runs_on_sqlite() {
    collect_bench(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collect_benchmark_runs_on_postgres() {
    let Some(url) = postgres().await else { return };
    collect_bench(Some(url)).await;
}
