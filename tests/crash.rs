//! Crashes: the real binary is killed (aborted, as by `kill -9`) at a named step boundary of
//! billing or collection, run again until it completes, and the database must end equal to a
//! crash-free run of the same data (ids and times normalised), with every invoice charged at
//! most once at the (fake) Stripe. On SQLite and PostgreSQL.

#[path = "support/fake_stripe.rs"]
mod fake_stripe;

use chrono::{DateTime, Utc};
use fake_stripe::FakeStripe;
use recur::domain::currency::Currency;
use recur::domain::customer::{PaymentMethod, Provider, TaxExempt};
use recur::domain::ids::PriceId;
use recur::domain::invoice_math::TaxBehavior;
use recur::domain::period::{Interval, IntervalUnit};
use recur::domain::price::{Price, Recurring, UsageType};
use recur::domain::pricing::PriceScheme;
use recur::domain::subscription::{CollectionMethod, ProrationBehavior};
use recur::domain::tenant::Mode;
use recur::services::customers::NewCustomer;
use recur::services::subscriptions::NewSubscription;
use recur::store::Db;
use sha2::Digest;
use std::collections::HashMap;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

/// A fresh database: a temporary SQLite file or a new PostgreSQL schema.
async fn fresh(postgres: bool) -> Option<(String, Option<tempfile::TempDir>)> {
    if !postgres {
        let dir = tempfile::tempdir().expect("dir");
        return Some((
            format!("sqlite://{}/recur.db", dir.path().display()),
            Some(dir),
        ));
    }
    let admin = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pool = match sqlx::PgPool::connect(&admin).await {
        Ok(p) => p,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL at {admin} is unreachable under CI=true: {e}")
        }
        Err(e) => {
            eprintln!("skipping PostgreSQL test: {e}");
            return None;
        }
    };
    let schema = format!("c_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .expect("schema");
    pool.close().await;
    let sep = if admin.contains('?') { '&' } else { '?' };
    Some((
        format!("{admin}{sep}options=-c%20search_path%3D{schema}"),
        None,
    ))
}

/// 24 customers paying through Stripe (one in six declines), each subscribed monthly from
/// 2027-01-01; returns the tenant id.
async fn seed(url: &str) -> String {
    seed_from(url, at("2027-01-01T00:00:00Z"), 24, None).await.0
}

/// `n` customers from `t0` (paying with `pm` when given); returns the tenant id and its API
/// key.
async fn seed_from(url: &str, t0: DateTime<Utc>, n: u64, pm: Option<&str>) -> (String, String) {
    let db = Db::connect(url, 2).await.expect("connect");
    db.migrate().await.expect("migrate");
    let (tenant, key) =
        recur::services::tenants::create_tenant(&db, "crash", Mode::Live, "INV", t0)
            .await
            .expect("tenant");
    let eur = Currency::parse("EUR").unwrap();
    let price = recur::services::catalogue::create_price(
        &db,
        &tenant,
        Price {
            id: PriceId::generate(),
            product: "Pro".into(),
            currency: eur,
            scheme: PriceScheme::PerUnit {
                unit_amount: 2500.into(),
            },
            recurring: Some(Recurring {
                interval: Interval::new(IntervalUnit::Month, 1).unwrap(),
                usage_type: UsageType::Licensed,
            }),
            tax_behavior: TaxBehavior::Exclusive,
            created: t0,
        },
        t0,
    )
    .await
    .expect("price");
    for i in 0..n {
        let pm = if let Some(pm) = pm {
            pm
        } else if i % 6 == 5 {
            "pm_card_visa_chargeDeclinedInsufficientFunds"
        } else {
            "pm_card_visa"
        };
        let c = recur::services::customers::create_customer(
            &db,
            &tenant,
            NewCustomer {
                external_id: None,
                name: format!("c{i:02}"),
                email: None,
                currency: Some(eur),
                locale: None,
                address: None,
                tax_ids: Vec::new(),
                tax_exempt: TaxExempt::None,
                payment_method: Some(PaymentMethod {
                    provider: Provider::Stripe,
                    token: pm.into(),
                    customer: Some("cus_fake".into()),
                }),
            },
            t0,
        )
        .await
        .expect("customer");
        recur::services::subscriptions::create_subscription(
            &db,
            &tenant,
            NewSubscription {
                customer: c.id,
                items: vec![(price.id.clone(), 1 + (i % 3))],
                trial_period_days: None,
                billing_cycle_anchor: None,
                collection_method: CollectionMethod::ChargeAutomatically,
                days_until_due: None,
                coupon: None,
                default_tax_rates: Vec::new(),
                proration_behavior: ProrationBehavior::CreateProrations,
            },
            t0,
        )
        .await
        .expect("subscription");
    }
    db.close().await;
    (tenant.id.to_string(), key.0)
}

/// `recur run-cycle` to 2027-04-01 in batches of 5; `crash` names the point to abort at.
fn run_cycle(
    url: &str,
    fake: &FakeStripe,
    tenant: &str,
    crash: Option<&str>,
    docs: &std::path::Path,
) -> std::process::ExitStatus {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_recur"));
    cmd.args([
        "run-cycle",
        "--tenant",
        tenant,
        "--at",
        "2027-04-01T00:00:00Z",
    ])
    .env("RECUR_DATABASE_URL", url)
    .env("RECUR_DOCUMENTS__DIR", docs)
    .env("RECUR_STRIPE__API_BASE", fake.uri())
    .env("RECUR_STRIPE__SECRET_KEY", fake_stripe::LIVE_SECRET_KEY)
    .env("RECUR_STRIPE__TIMEOUT_MS", "3000")
    .env("RECUR_SCHEDULER__BATCH_SIZE", "5")
    // What a killed run left pending is resolved by the next run at once.
    .env("RECUR_DUNNING__STALE_PENDING_SECS", "0")
    .env("RUST_LOG", "error")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    if let Some(point) = crash {
        cmd.env("CRASH_AT", point);
    }
    cmd.status().expect("run recur")
}

/// The database's billing state with ids and times normalised: invoices (customer, period,
/// number, total, status, paid, attempts) and attempts (customer, period, n, status, amount).
async fn normalised(url: &str) -> (Vec<String>, Vec<String>) {
    let db = Db::connect(url, 1).await.expect("connect");
    let inv_sql = "SELECT c.name || ' ' || substr(CAST(i.period_start AS TEXT), 1, 10) || ' ' || i.number || ' ' ||
                          CAST(i.total AS TEXT) || ' ' || i.status || ' ' || CAST(i.amount_paid AS TEXT) || ' ' ||
                          CAST(i.attempt_count AS TEXT)
                   FROM invoices i JOIN customers c ON c.id = i.customer_id ORDER BY 1";
    let pay_sql = "SELECT c.name || ' ' || substr(CAST(i.period_start AS TEXT), 1, 10) || ' ' ||
                          CAST(p.attempt_number AS TEXT) || ' ' || p.status || ' ' || CAST(p.amount AS TEXT)
                   FROM payment_attempts p JOIN invoices i ON i.id = p.invoice_id
                   JOIN customers c ON c.id = i.customer_id ORDER BY 1";
    let rows = match &db {
        Db::Sqlite(p, _) => (
            sqlx::query_scalar(inv_sql)
                .fetch_all(p)
                .await
                .expect("invoices"),
            sqlx::query_scalar(pay_sql)
                .fetch_all(p)
                .await
                .expect("attempts"),
        ),
        Db::Postgres(p) => (
            sqlx::query_scalar(inv_sql)
                .fetch_all(p)
                .await
                .expect("invoices"),
            sqlx::query_scalar(pay_sql)
                .fetch_all(p)
                .await
                .expect("attempts"),
        ),
    };
    db.close().await;
    rows
}

/// Crash points and the pass at which the process dies there.
const CRASHES: [&str; 6] = [
    "billing.batch_written:2",
    "billing.batch_committed:3",
    "collect.attempts_committed",
    "collect.charged:7",
    "collect.recorded",
    "collect.resolved",
];

async fn crash_runs_end_like_a_clean_run(postgres: bool) {
    let Some((url, _dir)) = fresh(postgres).await else {
        return;
    };
    let fake = FakeStripe::start().await;
    let tenant = seed(&url).await;
    let docs = tempfile::tempdir().expect("documents dir");
    assert!(run_cycle(&url, &fake, &tenant, None, docs.path()).success());
    let clean = normalised(&url).await;
    let clean_charges = fake.ledger().len();
    assert!(
        clean.0.len() >= 24 * 4 && clean_charges > 0,
        "{} invoices",
        clean.0.len()
    );
    let mut crashes = 0;
    for point in CRASHES {
        let Some((url, _dir)) = fresh(postgres).await else {
            return;
        };
        let fake = FakeStripe::start().await;
        let tenant = seed(&url).await;
        let docs = tempfile::tempdir().expect("documents dir");
        // `collect.resolved` is only passed when something is left to resolve: crash mid-charge
        // first, then again while resolving.
        let mut plan = vec![point];
        if point == "collect.resolved" {
            plan.insert(0, "collect.charged:4");
        }
        for p in plan {
            let status = run_cycle(&url, &fake, &tenant, Some(p), docs.path());
            assert!(!status.success(), "{p}: the run should have died");
            crashes += 1;
        }
        let mut runs = 0;
        while !run_cycle(&url, &fake, &tenant, None, docs.path()).success() {
            runs += 1;
            assert!(runs < 3, "{point}: the rerun keeps failing");
        }
        let after = normalised(&url).await;
        assert_eq!(
            after, clean,
            "{point}: the crashed-and-rerun database differs from a clean run"
        );
        let mut per_invoice: HashMap<String, usize> = HashMap::new();
        for c in fake.ledger() {
            *per_invoice.entry(c.invoice).or_default() += 1;
        }
        assert!(
            per_invoice.values().all(|n| *n == 1),
            "{point}: an invoice charged twice"
        );
        assert_eq!(
            fake.ledger().len(),
            clean_charges,
            "{point}: charges lost or added"
        );
    }
    eprintln!(
        "crash suite ({}): {} crashes at {} points, {} invoices and {} charges each time, 0 doubled, 0 lost",
        if postgres { "PostgreSQL" } else { "SQLite" },
        crashes,
        CRASHES.len(),
        clean.0.len(),
        clean_charges
    );
}

/// Every finalized invoice's (id, recorded hash, hash of its stored file).
async fn documents_of(
    url: &str,
    docs: &std::path::Path,
) -> Vec<(String, Option<String>, Option<String>)> {
    let db = Db::connect(url, 1).await.expect("connect");
    let sql = "SELECT tenant_id, id, pdf_sha256 FROM invoices WHERE number IS NOT NULL ORDER BY id";
    let rows: Vec<(String, String, Option<String>)> = match &db {
        Db::Sqlite(p, _) => sqlx::query_as(sql).fetch_all(p).await.expect("invoices"),
        Db::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await.expect("invoices"),
    };
    db.close().await;
    rows.into_iter()
        .map(|(tenant, id, recorded)| {
            let tenant = recur::domain::ids::TenantId::parse(&tenant).expect("tenant id");
            let path = recorded
                .as_deref()
                .map(|sha| recur::services::documents::stored_path(docs, &tenant, &id, sha));
            let file = path
                .and_then(|p| std::fs::read(p).ok())
                .map(|b| hex::encode(sha2::Sha256::digest(&b)));
            (id, recorded, file)
        })
        .collect()
}

/// A crash after billing committed but before any PDF was rendered, and one between storing
/// a PDF and recording its hash: the next run renders every invoice, once, and records the
/// hash of the file it stored.
async fn documents_survive_crashes(postgres: bool) {
    for point in ["billing.batch_committed:2", "documents.stored:3"] {
        let Some((url, _dir)) = fresh(postgres).await else {
            return;
        };
        let fake = FakeStripe::start().await;
        let tenant = seed(&url).await;
        let docs = tempfile::tempdir().expect("documents dir");
        assert!(!run_cycle(&url, &fake, &tenant, Some(point), docs.path()).success());
        let half = documents_of(&url, docs.path()).await;
        assert!(
            half.iter().any(|(_, recorded, _)| recorded.is_none()),
            "{point}: the crash left work"
        );
        let mut runs = 0;
        while !run_cycle(&url, &fake, &tenant, None, docs.path()).success() {
            runs += 1;
            assert!(runs < 3, "{point}: the rerun keeps failing");
        }
        let all = documents_of(&url, docs.path()).await;
        assert!(all.len() >= 24 * 4, "{} invoices", all.len());
        for (f, recorded, file) in &all {
            assert!(
                recorded.is_some() && recorded == file,
                "{point}: {f} recorded {recorded:?}, stored {file:?}"
            );
        }
        let stored = std::fs::read_dir(docs.path().join(&tenant))
            .expect("tenant dir")
            .count();
        assert_eq!(
            stored,
            all.len(),
            "{point}: one file per invoice, nothing else"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_documents_survive_crashes() {
    documents_survive_crashes(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_documents_survive_crashes() {
    documents_survive_crashes(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_crash_runs_end_like_a_clean_run() {
    crash_runs_end_like_a_clean_run(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_runs_end_like_a_clean_run() {
    crash_runs_end_like_a_clean_run(true).await;
}

/// A server killed between committing a credit note and sending its refund, or between
/// Stripe's refund and recording it: the next collection pass sends the refund again with the
/// note's own key, so the customer is refunded exactly once.
async fn refund_crashes_refund_once(postgres: bool) {
    for point in ["refunds.note_committed", "refunds.refunded"] {
        let Some((url, _dir)) = fresh(postgres).await else {
            return;
        };
        let fake = FakeStripe::start().await;
        let now = recur::domain::tenant::truncate_to_seconds(Utc::now());
        let (tenant, key) = seed_from(&url, now, 1, None).await;
        let env = |cmd: &mut std::process::Command| {
            cmd.env("RECUR_DATABASE_URL", &url)
                .env("RECUR_STRIPE__API_BASE", fake.uri())
                .env("RECUR_STRIPE__SECRET_KEY", fake_stripe::LIVE_SECRET_KEY)
                .env("RECUR_DUNNING__STALE_PENDING_SECS", "0")
                .env("RUST_LOG", "error")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
        };
        let collect = || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_recur"));
            cmd.args(["run-cycle", "--tenant", &tenant]);
            env(&mut cmd);
            cmd.status().expect("run-cycle")
        };
        assert!(collect().success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_recur"));
        server
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("CRASH_AT", point);
        env(&mut server);
        let mut server = server.spawn().expect("serve");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let invoices: serde_json::Value = http
            .get(format!("{base}/v1/invoices"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let invoice = invoices["data"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(invoices["data"][0]["status"], "paid");
        let cut = http
            .post(format!("{base}/v1/credit_notes"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"invoice": invoice, "amount": 700, "reason": "order_change", "refund": true}))
            .send()
            .await;
        assert!(cut.is_err(), "{point}: the server died mid-request");
        assert!(!server.wait().unwrap().success(), "{point}: aborted");
        assert!(collect().success(), "{point}: the next pass completes");
        let refunded: i64 = fake.ledger().iter().map(|c| c.refunded).sum();
        assert_eq!(refunded, 700, "{point}: refunded exactly once");
        let db = Db::connect(&url, 1).await.unwrap();
        let sql = "SELECT refund_status FROM credit_notes";
        let status: String = match &db {
            Db::Sqlite(p, _) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            Db::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        };
        assert_eq!(status, "succeeded", "{point}");
        db.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refund_crashes_refund_once() {
    refund_crashes_refund_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refund_crashes_refund_once() {
    refund_crashes_refund_once(true).await;
}

/// A server killed while applying a webhook (before its commit) or right after it (before
/// answering): Stripe delivers again, and the event is applied exactly once.
async fn webhook_crashes_apply_once(postgres: bool) {
    const SECRET: &str = "whsec_crash";
    for point in ["webhooks.applied", "webhooks.committed"] {
        let Some((url, _dir)) = fresh(postgres).await else {
            return;
        };
        let fake = FakeStripe::start().await;
        let now = recur::domain::tenant::truncate_to_seconds(Utc::now());
        let (tenant, key) = seed_from(&url, now, 1, Some("pm_card_processing")).await;
        let env = |cmd: &mut std::process::Command| {
            cmd.env("RECUR_DATABASE_URL", &url)
                .env("RECUR_STRIPE__API_BASE", fake.uri())
                .env("RECUR_STRIPE__SECRET_KEY", fake_stripe::LIVE_SECRET_KEY)
                .env("RECUR_STRIPE__WEBHOOK_SECRETS", format!("[\"{SECRET}\"]"))
                .env("RUST_LOG", "error")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
        };
        let mut cycle = std::process::Command::new(env!("CARGO_BIN_EXE_recur"));
        cycle.args(["run-cycle", "--tenant", &tenant]);
        env(&mut cycle);
        assert!(cycle.status().unwrap().success());
        let serve = |crash: Option<&str>| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_recur"));
            cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")]);
            env(&mut cmd);
            if let Some(p) = crash {
                cmd.env("CRASH_AT", p);
            }
            (
                cmd.spawn().expect("serve"),
                format!("http://127.0.0.1:{port}"),
            )
        };
        let http = reqwest::Client::new();
        let up = |base: String| {
            let http = http.clone();
            async move {
                for _ in 0..100 {
                    if http.get(format!("{base}/healthz")).send().await.is_ok() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                panic!("server did not start");
            }
        };
        let (mut dying, base) = serve(Some(point));
        up(base.clone()).await;
        let payments: serde_json::Value = http
            .get(format!("{base}/v1/payments"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(payments["data"][0]["status"], "unknown");
        let pi = payments["data"][0]["provider_ref"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut object = fake.intent(&pi);
        object["status"] = serde_json::json!("succeeded");
        object["amount_received"] = object["amount"].clone();
        let body = serde_json::json!({"id": "evt_crash", "object": "event", "type": "payment_intent.succeeded",
            "created": Utc::now().timestamp(), "livemode": false, "api_version": "2024-06-20",
            "data": {"object": object}})
        .to_string();
        let deliver = |base: String| {
            let (http, body) = (http.clone(), body.clone());
            async move {
                let signature =
                    recur::payments::stripe::sign(SECRET, Utc::now().timestamp(), body.as_bytes());
                http.post(format!("{base}/webhooks/stripe"))
                    .header("content-type", "application/json")
                    .header("Stripe-Signature", signature)
                    .body(body)
                    .send()
                    .await
            }
        };
        assert!(
            deliver(base.clone()).await.is_err(),
            "{point}: the server died before answering"
        );
        assert!(!dying.wait().unwrap().success());
        let (mut server, base) = serve(None);
        up(base.clone()).await;
        let again: serde_json::Value = deliver(base.clone()).await.unwrap().json().await.unwrap();
        let expected = if point == "webhooks.applied" {
            "applied"
        } else {
            "duplicate"
        };
        assert_eq!(again["outcome"], expected, "{point}: Stripe's redelivery");
        let third: serde_json::Value = deliver(base.clone()).await.unwrap().json().await.unwrap();
        assert_eq!(third["outcome"], "duplicate");
        let events: serde_json::Value = http
            .get(format!("{base}/v1/events?type=payment.succeeded"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            events["data"].as_array().unwrap().len(),
            1,
            "{point}: applied once"
        );
        server.kill().unwrap();
        server.wait().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_webhook_crashes_apply_once() {
    webhook_crashes_apply_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_webhook_crashes_apply_once() {
    webhook_crashes_apply_once(true).await;
}
