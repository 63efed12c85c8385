//! `recur demo`: three months of the demo on a new database, its summary checked against the
//! database and the files it wrote.

use crate::support::{Backend, fresh_database};
use recur::store::Db;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

async fn rows(db: &Db, sql: &'static str) -> Vec<(String, i64, i64)> {
    match db {
        Db::Sqlite(p, _) => sqlx::query_as(sql).fetch_all(p).await,
        Db::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await,
    }
    .expect(sql)
}

async fn scalar(db: &Db, sql: &'static str) -> i64 {
    match db {
        Db::Sqlite(p, _) => sqlx::query_scalar(sql).fetch_one(p).await,
        Db::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
    }
    .expect(sql)
}

fn run_demo(dir: &Path, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(["demo", "--months", "3", "--json", "--dir"])
        .arg(dir)
        .args(extra)
        .env_remove("RECUR_DATABASE_URL")
        .output()
        .expect("run recur demo")
}

async fn the_demo_matches_its_database(backend: Backend) {
    // PostgreSQL: an empty schema named with --database-url; SQLite: the demo's own file.
    let (url, _keep) = match backend {
        Backend::Sqlite => (String::new(), None),
        Backend::Postgres => match fresh_database(backend).await {
            Some(db) => db,
            None => return,
        },
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("demo");
    let extra: Vec<&str> = match backend {
        Backend::Sqlite => vec![],
        Backend::Postgres => vec!["--database-url", &url],
    };
    let out = run_demo(&dir, &extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&out.stdout).expect("the summary as JSON");
    assert_eq!(s["problems"], serde_json::json!([]));
    let db_url = match backend {
        Backend::Sqlite => format!(
            "sqlite://{}/recur.db",
            dir.canonicalize().unwrap().display()
        ),
        Backend::Postgres => url.clone(),
    };
    let db = Db::connect(&db_url, 2).await.expect("the demo's database");

    // Invoices by status, and per currency, as the database has them.
    let mut by_status = BTreeMap::new();
    for (status, n, _) in rows(
        &db,
        "SELECT status, COUNT(*), CAST(0 AS BIGINT) FROM invoices GROUP BY status",
    )
    .await
    {
        by_status.insert(status, n);
    }
    let summary_status: BTreeMap<String, i64> =
        serde_json::from_value(s["invoices"].clone()).unwrap();
    assert_eq!(summary_status, by_status);
    assert!(by_status["paid"] > 40, "{by_status:?}");
    assert!(
        by_status.get("open").is_some_and(|n| *n > 0),
        "the bank-transfer invoices stay open"
    );
    let per_currency = rows(&db, "SELECT currency, COUNT(*), CAST(SUM(total) AS BIGINT) FROM invoices WHERE status <> 'draft' GROUP BY currency").await;
    assert_eq!(per_currency.len(), 4, "EUR, JPY, PLN, USD");
    for (cur, n, total) in &per_currency {
        assert_eq!(s["currencies"][cur]["invoices"], *n, "{cur}");
        assert_eq!(s["currencies"][cur]["total"], *total, "{cur}");
        let billed = s["report"]["currencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["currency"] == cur.as_str())
            .expect("the report has every currency")["billed"]
            .clone();
        assert_eq!(
            billed, *total,
            "the report bills what was invoiced in {cur}"
        );
    }

    // No period billed twice; every story happened.
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM (SELECT subscription_id, period_start FROM invoices WHERE billing_reason IN ('subscription_create', 'subscription_cycle') GROUP BY subscription_id, period_start HAVING COUNT(*) > 1) d").await, 0);
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM customers").await, 25);
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM credit_notes").await, 1);
    assert_eq!(s["credit_notes"], 1);
    assert!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM payment_attempts WHERE status = 'failed'"
        )
        .await
            > 0,
        "declines"
    );
    assert!(scalar(&db, "SELECT COUNT(*) FROM usage_records").await > 0);
    assert!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM invoices WHERE tax_exempt = 'reverse'"
        )
        .await
            > 0
    );
    assert_eq!(
        s["subscriptions"]["canceled"], 3,
        "dunning gave up twice, one canceled at period end"
    );

    // Every finalized invoice and the credit note have a PDF that qpdf accepts.
    let finalized = scalar(
        &db,
        "SELECT COUNT(*) FROM invoices WHERE number IS NOT NULL",
    )
    .await;
    let rendered = scalar(
        &db,
        "SELECT COUNT(*) FROM invoices WHERE number IS NOT NULL AND pdf_sha256 IS NOT NULL",
    )
    .await;
    assert_eq!(rendered, finalized);
    assert_eq!(s["pdfs"], finalized + 1);
    let tenant = s["tenant_id"].as_str().unwrap();
    let pdfs: Vec<_> = std::fs::read_dir(dir.join("documents").join(tenant))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(pdfs.len() as i64, finalized + 1);
    for pdf in &pdfs {
        let out = std::process::Command::new("qpdf")
            .arg("--check")
            .arg(pdf)
            .output()
            .expect("qpdf (apt-get install qpdf)");
        assert!(
            out.status.success(),
            "{}: {}",
            pdf.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    for example in s["pdf_examples"].as_array().unwrap() {
        assert!(
            Path::new(example["path"].as_str().unwrap()).is_file(),
            "{example}"
        );
    }

    // E-mails written, webhooks received and verified, exports on disk.
    let sent = scalar(&db, "SELECT COUNT(*) FROM emails WHERE status = 'sent'").await;
    assert!(sent > 25, "{sent}");
    assert_eq!(s["emails"], sent);
    let delivered = scalar(
        &db,
        "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'succeeded'",
    )
    .await;
    let all = scalar(&db, "SELECT COUNT(*) FROM webhook_deliveries").await;
    assert_eq!(
        (
            s["webhooks_received"].as_i64(),
            s["webhooks_refused"].as_i64()
        ),
        (Some(delivered), Some(0))
    );
    assert_eq!(delivered, all, "every delivery went out");
    let lines = std::fs::read_to_string(s["webhooks_file"].as_str().unwrap()).unwrap();
    assert_eq!(lines.lines().count() as i64, delivered);
    for export in s["exports"].as_array().unwrap() {
        let text = std::fs::read_to_string(export.as_str().unwrap()).unwrap();
        assert!(text.lines().count() > 10, "{export}");
    }
    db.close().await;

    // A second run refuses to mix with a database that holds data; on its own directory it
    // starts clean.
    if backend == Backend::Postgres {
        let other = tmp.path().join("other");
        let again = run_demo(&other, &extra);
        assert_eq!(again.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&again.stderr).contains("needs an empty database"));
        assert!(!other.exists(), "refused before writing anything");
    } else {
        let again = run_demo(&dir, &[]);
        assert!(
            again.status.success(),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
        let s2: Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(
            s2["invoices"], s["invoices"],
            "the same months, the same invoices"
        );
        assert_ne!(s2["tenant_id"], s["tenant_id"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_sqlite() {
    the_demo_matches_its_database(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_postgres() {
    the_demo_matches_its_database(Backend::Postgres).await;
}

#[test]
fn a_rerun_removes_only_what_the_demo_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    std::fs::create_dir_all(dir.join("exports")).unwrap();
    std::fs::write(dir.join(".recur-demo"), "").unwrap();
    std::fs::write(dir.join("exports/invoices.csv"), "old").unwrap();
    std::fs::write(dir.join("my-notes.txt"), "mine").unwrap();
    let out = run_demo(&dir, &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("besides a previous demo's"));
    assert_eq!(
        std::fs::read_to_string(dir.join("my-notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("exports/invoices.csv")).unwrap(),
        "old"
    );
}

#[test]
fn a_directory_the_demo_did_not_make_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    let out = run_demo(tmp.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds files the demo did not write"));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("notes.txt")).unwrap(),
        "mine"
    );
}
