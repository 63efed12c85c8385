//! The secrets scanner: a real `recur serve` process at debug logging is driven through a
//! broad flow (tenants and keys, a tenant's own Stripe account with its webhook secret,
//! customers with e-mail addresses, charges, refunds, outbound webhook endpoints, an erasure,
//! and hostile input carrying card numbers); then every log line and a dump of every table of
//! the database (each cell as text) are scanned. Zero card numbers, zero API keys, zero
//! provider secrets and zero webhook secrets anywhere; zero customer e-mail addresses in the
//! logs. Once on SQLite, once on PostgreSQL.

#[path = "support/fake_stripe.rs"]
mod fake_stripe;

use fake_stripe::FakeStripe;
use recur::store::Db;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TENANT_WEBHOOK_SECRET: &str = "whsec_scanner_account_secret";
const EMAILS: [&str; 3] = [
    "ada.scan@example.org",
    "grace.scan@example.org",
    "linus.scan@example.org",
];

fn admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A new empty PostgreSQL schema; None (skip) when PostgreSQL is unreachable outside CI.
async fn fresh_postgres() -> Option<String> {
    let admin = admin_url();
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
    let schema = format!("s_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .expect("schema");
    pool.close().await;
    let sep = if admin.contains('?') { '&' } else { '?' };
    Some(format!("{admin}{sep}options=-c%20search_path%3D{schema}"))
}

struct Server {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn recur(url: &str, dir: &std::path::Path, stripe: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recur"));
    cmd.env("RECUR_DATABASE_URL", url)
        .env("RECUR_DOCUMENTS__DIR", dir.join("documents"))
        .env("RECUR_EMAIL__DIR", dir.join("mail"))
        .env("RECUR_SECRETS__MASTER_KEY_FILE", dir.join("master.key"))
        .env("RECUR_STRIPE__API_BASE", stripe)
        .env("RECUR_WEBHOOKS__ALLOW_PRIVATE_URLS", "true")
        .env("RECUR_SERVER__RATE_LIMIT_PER_SECOND", "0")
        .env(
            "RUST_LOG",
            "debug,sqlx=debug,hyper=info,h2=info,reqwest=debug",
        );
    cmd
}

async fn start(url: &str, dir: &std::path::Path, stripe: &str) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = dir.join("serve.log");
    let child = recur(url, dir, stripe)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("RECUR_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("recur serve");
    let base = format!("http://127.0.0.1:{port}");
    // Owned at once, so the process is killed and waited for on every path.
    let server = Server { child, base, log };
    for _ in 0..200 {
        if reqwest::get(format!("{}/healthz", server.base))
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = server.log.clone();
    drop(server);
    panic!(
        "recur serve did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.send(method, path, body).await;
        assert!((200..300).contains(&status), "{path}: {status} {v}");
        v
    }
}

/// Every cell of every table as text, one line per row.
async fn dump(url: &str) -> String {
    let db = Db::connect(url, 1).await.expect("connect");
    let mut out = String::new();
    match &db {
        Db::Sqlite(p, _) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(p)
            .await
            .expect("tables");
            for t in tables {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM \"{t}\"")))
                    .fetch_all(p)
                    .await
                    .expect("rows");
                for row in rows {
                    out.push_str(&row_text(&row));
                    out.push('\n');
                }
            }
        }
        Db::Postgres(p) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
            )
            .fetch_all(p)
            .await
            .expect("tables");
            for t in tables {
                // Every column cast to text by the server.
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT to_jsonb(x)::text AS row FROM \"{t}\" x"
                )))
                .fetch_all(p)
                .await
                .expect("rows");
                for row in rows {
                    let text: String = sqlx::Row::get(&row, "row");
                    out.push_str(&text);
                    out.push('\n');
                }
            }
        }
    }
    db.close().await;
    out
}

fn row_text(row: &sqlx::sqlite::SqliteRow) -> String {
    use sqlx::{Column, Row};
    row.columns()
        .iter()
        .map(|c| {
            let i = c.ordinal();
            row.try_get::<Option<String>, _>(i)
                .map(Option::unwrap_or_default)
                .or_else(|_| {
                    row.try_get::<Option<i64>, _>(i)
                        .map(|v| v.map(|n| n.to_string()).unwrap_or_default())
                })
                .or_else(|_| {
                    row.try_get::<Option<f64>, _>(i)
                        .map(|v| v.map(|n| n.to_string()).unwrap_or_default())
                })
                .or_else(|_| {
                    row.try_get::<Option<Vec<u8>>, _>(i).map(|v| {
                        v.map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default()
                    })
                })
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Secret-shaped text: API keys, Stripe keys, webhook secrets.
fn secret_shaped(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        let key = ["sk_test_", "sk_live_", "rk_test_", "rk_live_"]
            .iter()
            .any(|p| word.starts_with(p) && word.len() > 12);
        if key || (word.starts_with("whsec_") && word.len() > 8) {
            found.push(word.to_owned());
        }
    }
    found
}

async fn scan(url: String) {
    let dir = tempfile::tempdir().expect("dir");
    let fake = FakeStripe::start().await;
    // A tenant and its first key, from the CLI.
    let out = recur(&url, dir.path(), &fake.uri())
        .args(["tenant", "create", "--name", "Scanner GmbH", "--json"])
        .output()
        .expect("tenant create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("json");
    let server = start(&url, dir.path(), &fake.uri()).await;
    let api = Client {
        http: reqwest::Client::new(),
        base: server.base.clone(),
        key: created["api_key"].as_str().unwrap().to_owned(),
    };
    let mut secrets = vec![
        api.key.clone(),
        fake_stripe::SECRET_KEY.to_owned(),
        TENANT_WEBHOOK_SECRET.to_owned(),
    ];
    use reqwest::Method as M;

    // More keys, rolled and revoked; a bad key and a wrong one tried.
    let ro = api
        .ok(
            M::POST,
            "/v1/api_keys",
            Some(json!({"name": "ro", "scope": "read_only"})),
        )
        .await;
    let full = api
        .ok(M::POST, "/v1/api_keys", Some(json!({"name": "backend"})))
        .await;
    let rolled = api
        .ok(
            M::POST,
            &format!("/v1/api_keys/{}/roll", full["id"].as_str().unwrap()),
            Some(json!({"expires_in": 60})),
        )
        .await;
    for k in [&ro, &full, &rolled] {
        secrets.push(k["secret"].as_str().unwrap().to_owned());
    }
    let wrong = Client {
        http: reqwest::Client::new(),
        base: server.base.clone(),
        key: "sk_test_0000000000000000000000000000000000000000deadbeef".into(),
    };
    assert_eq!(wrong.send(M::GET, "/v1/customers", None).await.0, 401);
    secrets.push(wrong.key.clone());

    // The tenant's own Stripe account, and an outbound webhook endpoint.
    api.ok(
        M::PUT,
        "/v1/settings/providers/stripe",
        Some(
            json!({"secret_key": fake_stripe::SECRET_KEY, "webhook_secret": TENANT_WEBHOOK_SECRET}),
        ),
    )
    .await;
    let endpoint = api
        .ok(
            M::POST,
            "/v1/webhook_endpoints",
            Some(json!({"url": "http://127.0.0.1:9/hooks", "enabled_events": ["*"]})),
        )
        .await;
    secrets.push(endpoint["secret"].as_str().unwrap().to_owned());

    // Card numbers sent by mistake are refused, wherever a person types.
    for body in [
        json!({"name": "Ada 4242 4242 4242 4242", "email": EMAILS[0]}),
        json!({"name": "Ada", "address": {"line1": "card 5555-5555-5555-4444", "country": "DE"}}),
    ] {
        assert_eq!(api.send(M::POST, "/v1/customers", Some(body)).await.0, 400);
    }

    // Customers paying through the tenant's account, charged, refunded, one erased.
    let price = api
        .ok(M::POST, "/v1/prices", Some(json!({"product": "Pro", "currency": "EUR", "unit_amount": 2500, "recurring": {"interval": "month"}})))
        .await;
    let mut customers = Vec::new();
    for email in EMAILS {
        let c = api
            .ok(M::POST, "/v1/customers", Some(json!({"name": "Scan Person", "email": email, "currency": "EUR",
                "payment_method": {"provider": "stripe", "token": "pm_card_visa", "customer": "cus_fake"}})))
            .await;
        api.ok(
            M::POST,
            "/v1/subscriptions",
            Some(json!({"customer": c["id"], "items": [{"price": price["id"]}]})),
        )
        .await;
        customers.push(c["id"].as_str().unwrap().to_owned());
    }
    let clock = api.ok(M::GET, "/v1/invoices?limit=1", None).await;
    assert!(clock["data"].is_array());
    api.ok(
        M::POST,
        "/v1/test_clock/advance",
        Some(json!({"to": (chrono::Utc::now() + chrono::Duration::days(40)).to_rfc3339()})),
    )
    .await;
    let invoices = api
        .ok(M::GET, "/v1/invoices?status=paid&limit=1", None)
        .await;
    let paid = invoices["data"][0]["id"]
        .as_str()
        .expect("an invoice paid through the tenant's account");
    api.ok(
        M::POST,
        "/v1/credit_notes",
        Some(json!({"invoice": paid, "amount": 500, "reason": "duplicate", "refund": true})),
    )
    .await;
    assert!(!fake.ledger().is_empty(), "charged at the fake Stripe");
    api.ok(
        M::POST,
        &format!("/v1/customers/{}/erase", customers[2]),
        Some(json!({})),
    )
    .await;
    api.ok(
        M::GET,
        &format!("/v1/customers/{}/data_export", customers[0]),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server_log = server.log.clone();
    drop(server);

    let logs = std::fs::read_to_string(server_log).expect("logs");
    // The scanner itself finds what it looks for.
    assert!(recur::domain::card::holds_card_number(
        "x 4242 4242 4242 4242 y"
    ));
    assert_eq!(
        secret_shaped("key=sk_live_0123456789abcdef;"),
        ["sk_live_0123456789abcdef"]
    );
    assert!(
        logs.lines().count() > 20,
        "the server logged too little to scan:\n{logs}"
    );
    let database = dump(&url).await;
    assert!(database.contains(EMAILS[0]), "the dump reads the customers");
    for (name, text) in [("logs", &logs), ("database", &database)] {
        let cards: Vec<&str> = text
            .lines()
            .filter(|l| recur::domain::card::holds_card_number(l))
            .collect();
        assert!(cards.is_empty(), "card numbers in the {name}: {cards:#?}");
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "a secret ({}…) in the {name}",
                &s[..10]
            );
        }
        let shaped = secret_shaped(text);
        assert!(
            shaped.is_empty(),
            "secret-shaped text in the {name}: {shaped:?}"
        );
    }
    for email in EMAILS {
        assert!(!logs.contains(email), "{email} in the logs");
    }
    assert!(
        !database.contains(EMAILS[2]),
        "the erased customer's e-mail is still stored"
    );
    println!(
        "scanned {} log lines and {} dumped rows: 0 card numbers, 0 of {} secrets, 0 customer e-mails in logs",
        logs.lines().count(),
        database.lines().count(),
        secrets.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_card_or_email_leaks_into_logs_or_the_sqlite_database() {
    let dir = tempfile::tempdir().expect("dir");
    scan(format!("sqlite://{}/recur.db", dir.path().display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_card_or_email_leaks_into_logs_or_the_postgres_database() {
    if let Some(url) = fresh_postgres().await {
        scan(url).await;
    }
}
