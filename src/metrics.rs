//! `GET /metrics` in the Prometheus text format. Two kinds of figures:
//!
//! - measured in this process as work happens (billing pass duration and size, provider call
//!   latency by outcome, webhook deliveries by outcome): histograms and counters in a
//!   process-wide registry;
//! - read from the database at scrape time (invoices by status, payment attempts by status
//!   and decline code, dunning stages, queue depths, the age of the oldest unsettled attempt),
//!   so every process reports the installation's state whichever process did the work.

use crate::store::{Db, StoreError, on_tx, rows::Rec};
use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use std::sync::OnceLock;

struct Live {
    registry: Registry,
    pass_seconds: HistogramVec,
    pass_subscriptions: IntCounterVec,
    provider_seconds: HistogramVec,
    webhook_deliveries: IntCounterVec,
}

fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(|| {
        let registry = Registry::new();
        let pass_seconds = HistogramVec::new(
            HistogramOpts::new(
                "recur_billing_pass_seconds",
                "Duration of one tenant's billing and collection in a scheduler pass",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0]),
            &["outcome"],
        )
        .unwrap_or_else(|e| panic!("metric definition: {e}"));
        let pass_subscriptions = IntCounterVec::new(
            Opts::new(
                "recur_billing_boundaries_total",
                "Subscription boundaries billed by scheduler passes",
            ),
            &["kind"],
        )
        .unwrap_or_else(|e| panic!("metric definition: {e}"));
        let provider_seconds = HistogramVec::new(
            HistogramOpts::new(
                "recur_provider_charge_seconds",
                "Latency of charge calls to payment providers",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["outcome"],
        )
        .unwrap_or_else(|e| panic!("metric definition: {e}"));
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "recur_webhook_attempts_total",
                "Outbound webhook delivery attempts by outcome",
            ),
            &["outcome"],
        )
        .unwrap_or_else(|e| panic!("metric definition: {e}"));
        for c in [
            Box::new(pass_seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(pass_subscriptions.clone()),
            Box::new(provider_seconds.clone()),
            Box::new(webhook_deliveries.clone()),
        ] {
            registry
                .register(c)
                .unwrap_or_else(|e| panic!("metric registration: {e}"));
        }
        Live {
            registry,
            pass_seconds,
            pass_subscriptions,
            provider_seconds,
            webhook_deliveries,
        }
    })
}

/// A tenant's billing pass took `seconds`, billing `boundaries` and creating `invoices`.
pub fn billing_pass(seconds: f64, ok: bool, boundaries: u64, invoices: u64) {
    let l = live();
    l.pass_seconds
        .with_label_values(&[if ok { "ok" } else { "failed" }])
        .observe(seconds);
    l.pass_subscriptions
        .with_label_values(&["boundaries"])
        .inc_by(boundaries);
    l.pass_subscriptions
        .with_label_values(&["invoices"])
        .inc_by(invoices);
}

/// A charge call answered `outcome` (succeeded, declined, unknown) after `seconds`.
pub fn provider_call(outcome: &str, seconds: f64) {
    live()
        .provider_seconds
        .with_label_values(&[outcome])
        .observe(seconds);
}

/// A webhook attempt ended `outcome` (delivered, retrying, failed).
pub fn webhook_attempt(outcome: &str) {
    live()
        .webhook_deliveries
        .with_label_values(&[outcome])
        .inc();
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric definition: {e}"));
    registry
        .register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric registration: {e}"));
    g
}

/// Counts per label from a `SELECT label, COUNT(*) AS n … GROUP BY label` query.
async fn counts(db: &Db, sql: &'static str) -> Result<Vec<(Vec<String>, i64)>, StoreError> {
    let mut tx = db.read().await?;
    let out = on_tx!(&mut tx, |c| {
        let rows = sqlx::query(sql).fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| {
                let mut labels = vec![r.text("a")?];
                if let Ok(b) = r.opt_text("b") {
                    labels.push(b.unwrap_or_else(|| "none".to_owned()));
                }
                Ok((labels, r.int("n")?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?
    });
    tx.commit().await?;
    Ok(out)
}

/// When the oldest attempt still pending or unknown was sent (by the system clock; its
/// creation time, on the tenant's clock, if it was never sent).
async fn oldest_unsettled(db: &Db) -> Result<Option<DateTime<Utc>>, StoreError> {
    let mut tx = db.read().await?;
    let out = on_tx!(&mut tx, |c| {
        let row = sqlx::query(
            "SELECT MIN(COALESCE(sent_at, created_at)) AS oldest FROM payment_attempts
             WHERE status IN ('pending', 'unknown')",
        )
        .fetch_one(&mut *c)
        .await?;
        row.opt_time("oldest")?
    });
    tx.commit().await?;
    Ok(out)
}

/// Everything, as Prometheus text.
pub async fn render(db: &Db) -> Result<String, StoreError> {
    let scrape = Registry::new();
    let invoices = gauge(&scrape, "recur_invoices", "Invoices by status", &["status"]);
    for (l, n) in counts(
        db,
        "SELECT status AS a, COUNT(*) AS n FROM invoices GROUP BY status",
    )
    .await?
    {
        invoices.with_label_values(&[l[0].as_str()]).set(n as f64);
    }
    let attempts = gauge(
        &scrape,
        "recur_payment_attempts",
        "Payment attempts by status and decline code",
        &["status", "decline_code"],
    );
    for (l, n) in counts(
        db,
        "SELECT status AS a, decline_code AS b, COUNT(*) AS n FROM payment_attempts GROUP BY status, decline_code",
    )
    .await?
    {
        attempts
            .with_label_values(&[l[0].as_str(), l[1].as_str()])
            .set(n as f64);
    }
    let dunning = gauge(
        &scrape,
        "recur_dunning_invoices",
        "Open invoices in dunning by the number of attempts made",
        &["attempts"],
    );
    for (l, n) in counts(
        db,
        "SELECT CASE WHEN attempt_count >= 4 THEN '4+' ELSE CAST(attempt_count AS TEXT) END AS a, COUNT(*) AS n
         FROM invoices WHERE status = 'open' AND first_failed_at IS NOT NULL GROUP BY 1",
    )
    .await?
    {
        dunning.with_label_values(&[l[0].as_str()]).set(n as f64);
    }
    let queues = gauge(
        &scrape,
        "recur_queue_depth",
        "Work waiting, by queue",
        &["queue"],
    );
    for (l, n) in counts(
        db,
        "SELECT 'pdf' AS a, COUNT(*) AS n FROM invoices WHERE number IS NOT NULL AND pdf_sha256 IS NULL
         UNION ALL SELECT 'email' AS a, COUNT(*) AS n FROM emails WHERE status = 'pending'
         UNION ALL SELECT 'webhook' AS a, COUNT(*) AS n FROM webhook_deliveries WHERE status = 'pending'",
    )
    .await?
    {
        queues.with_label_values(&[l[0].as_str()]).set(n as f64);
    }
    let oldest = gauge(
        &scrape,
        "recur_oldest_unsettled_attempt_seconds",
        "Age of the oldest payment attempt still pending or unknown (0 when none)",
        &[],
    );
    let age = oldest_unsettled(db)
        .await?
        .map_or(0.0, |t| (Utc::now() - t).num_seconds().max(0) as f64);
    oldest.with_label_values::<&str>(&[]).set(age);
    let mut families = live().registry.gather();
    families.extend(scrape.gather());
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut out)
        .map_err(|e| crate::store::rows::corrupt("metrics", e))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
