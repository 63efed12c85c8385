//! `recur bench cycle` runs end to end on a small set (figures are printed, never asserted).

use recur::bench::{CycleOptions, cycle};
use recur::config::{Config, Overrides};
use recur::payments::Payments;

fn options(database_url: Option<String>) -> CycleOptions {
    CycleOptions {
        subscriptions: 300,
        workers: 2,
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
    let url = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if sqlx::PgPool::connect(&url).await.is_err() && std::env::var("CI").as_deref() != Ok("true") {
        eprintln!("skipping: PostgreSQL unreachable");
        return;
    }
    cycle(options(Some(url)))
        .await
        .expect("bench on PostgreSQL");
}

#[test]
fn the_pdf_benchmark_runs() {
    recur::bench::pdf::run(20).expect("bench pdf");
}
