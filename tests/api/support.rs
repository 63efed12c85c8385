//! `TestApp`: the real server on a random port over a fresh database, SQLite or PostgreSQL.

use crate::fake_stripe::{self, FakeStripe};
use recur::api::{AppState, router};
use recur::config::{Config, Overrides, Secret};
use recur::domain::tenant::Mode;
use recur::services::tenants::create_tenant;
use recur::store::Db;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both {
    ($(#[$m:meta])* async fn $name:ident($app:ident: TestApp) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($app: $crate::support::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(app) = $crate::support::TestApp::spawn($crate::support::Backend::Sqlite).await {
                    run(app).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(app) = $crate::support::TestApp::spawn($crate::support::Backend::Postgres).await {
                    run(app).await;
                }
            }
        }
    };
}

pub const WEBHOOK_SECRET: &str = "whsec_test_secret";

/// Like `both!`, with a fake Stripe the server charges through: `name::sqlite`, `name::postgres`.
#[macro_export]
macro_rules! both_stripe {
    ($(#[$m:meta])* async fn $name:ident($app:ident: TestApp, $fake:ident: FakeStripe $(,)?) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($app: $crate::support::TestApp, $fake: $crate::fake_stripe::FakeStripe) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some((app, fake)) = $crate::support::TestApp::spawn_stripe($crate::support::Backend::Sqlite, recur::domain::tenant::Mode::Test).await {
                    run(app, fake).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some((app, fake)) = $crate::support::TestApp::spawn_stripe($crate::support::Backend::Postgres, recur::domain::tenant::Mode::Test).await {
                    run(app, fake).await;
                }
            }
        }
    };
}

pub struct TestApp {
    pub base: String,
    /// The database URL, for running the `recur` binary against the same data.
    pub url: String,
    pub db: Db,
    pub key: String,
    pub tenant_id: String,
    /// The sandbox provider the server charges through, to count real charges.
    pub payments: Arc<recur::payments::Payments>,
    client: Client,
    /// Where this server stores rendered PDFs.
    pub docs: tempfile::TempDir,
    /// Where the file e-mail transport writes `.eml` files.
    pub mail: tempfile::TempDir,
    pub config: Arc<Config>,
    _dir: Option<tempfile::TempDir>,
}

pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn ok(self) -> Value {
        assert!(
            self.status.is_success(),
            "expected success, got {} {}",
            self.status,
            self.body
        );
        self.body
    }

    pub fn error_code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A new empty database: a SQLite file in a temporary directory (kept alive by the returned
/// handle), or a new schema on the test PostgreSQL. None when PostgreSQL is unreachable
/// outside CI; under `CI=true` that fails the test.
pub async fn fresh_database(backend: Backend) -> Option<(String, Option<tempfile::TempDir>)> {
    Some(match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            (
                format!("sqlite://{}/recur.db", dir.path().display()),
                Some(dir),
            )
        }
        Backend::Postgres => {
            let schema = format!("t_{}", uuid_like());
            let admin = postgres_admin_url();
            match sqlx::PgPool::connect(&admin).await {
                Ok(pool) => {
                    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                        .execute(&pool)
                        .await
                        .expect("create schema");
                    pool.close().await;
                }
                Err(e) => {
                    if std::env::var("CI").is_ok_and(|v| v == "true") {
                        panic!("PostgreSQL at {admin} is unreachable under CI=true: {e}");
                    }
                    eprintln!("skipping PostgreSQL test: {e}");
                    return None;
                }
            }
            let sep = if admin.contains('?') { '&' } else { '?' };
            (
                format!("{admin}{sep}options=-c%20search_path%3D{schema}"),
                None,
            )
        }
    })
}

impl TestApp {
    /// Starts a server, or returns None when PostgreSQL is unreachable outside CI. Under
    /// `CI=true` an unreachable PostgreSQL fails the test: CI must never pass by skipping.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, Mode::Test, |_| {}).await
    }

    /// A server whose Stripe provider talks to a fresh fake Stripe, with webhook secret
    /// [`WEBHOOK_SECRET`].
    pub async fn spawn_stripe(backend: Backend, mode: Mode) -> Option<(TestApp, FakeStripe)> {
        let fake = FakeStripe::start().await;
        let uri = fake.uri();
        let app = Self::spawn_with(backend, mode, move |c| {
            c.stripe.api_base = uri;
            c.stripe.secret_key = Some(Secret::new(fake_stripe::SECRET_KEY));
            c.stripe.webhook_secrets = vec![Secret::new(WEBHOOK_SECRET)];
            c.stripe.timeout_ms = 300;
            c.stripe.retry_base_ms = 2;
            c.stripe.retry_max_ms = 20;
        })
        .await?;
        Some((app, fake))
    }

    pub async fn spawn_with(
        backend: Backend,
        mode: Mode,
        configure: impl FnOnce(&mut Config),
    ) -> Option<TestApp> {
        let (url, dir) = fresh_database(backend).await?;
        let mut config = Config::load(
            None,
            &Overrides {
                database_url: Some(url.clone()),
                bind: None,
                log_format: None,
            },
        )
        .expect("config");
        let docs = tempfile::tempdir().expect("documents dir");
        config.documents.dir = docs.path().to_owned();
        let mail = tempfile::tempdir().expect("mail dir");
        config.email.dir = mail.path().to_owned();
        // Each app seals its secrets under a master key of its own, made on first use.
        config.secrets.master_key_file = docs.path().join("master.key");
        // Load tests drive one key far faster than any client; the rate-limit tests
        // (`api_keys.rs`) turn the limit back on.
        config.server.rate_limit_per_second = 0;
        // The fake Stripe has no rate limit; pacing has its own test (tests/stripe.rs).
        config.stripe.ops_per_second_test = 10_000;
        config.stripe.ops_per_second_live = 10_000;
        configure(&mut config);
        let db = Db::connect(&url, 5).await.expect("connect");
        let url = url.clone();
        db.migrate().await.expect("migrate");
        let (tenant, key) = create_tenant(&db, "test tenant", mode, "INV", chrono::Utc::now())
            .await
            .expect("tenant");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let payments = Arc::new(recur::payments::Payments::from_config(&config).expect("payments"));
        let config = Arc::new(config);
        let app = router(AppState {
            db: db.clone(),
            config: config.clone(),
            payments: payments.clone(),
        });
        // The listener `recur serve` runs, with its header timeout and connection cap.
        let limits = recur::api::server::Limits::from_config(&config.server);
        let tls = recur::api::server::tls_acceptor(&config.server).expect("tls files");
        tokio::spawn(recur::api::server::serve(
            listener,
            app,
            limits,
            tls,
            std::future::pending(),
        ));
        Some(TestApp {
            base: format!("http://{addr}"),
            url,
            db,
            key: key.0,
            tenant_id: tenant.id.to_string(),
            payments,
            client: Client::new(),
            docs,
            mail,
            config,
            _dir: dir,
        })
    }

    /// Another tenant on the same server and database.
    /// This app's tenant as stored now (its clock included).
    pub async fn tenant(&self) -> recur::domain::tenant::Tenant {
        recur::services::api_keys::authenticate(&self.db, &self.key, chrono::Utc::now())
            .await
            .expect("authenticate")
            .expect("the app's key works")
            .0
    }

    pub async fn other_tenant_key(&self) -> String {
        create_tenant(&self.db, "other", Mode::Test, "INV", chrono::Utc::now())
            .await
            .expect("tenant")
            .1
            .0
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        idem: Option<&str>,
        body: Option<&str>,
    ) -> Resp {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(i) = idem {
            req = req.header("Idempotency-Key", i);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            body,
            headers,
        }
    }

    /// A GET whose body is bytes (PDFs), with or without the API key.
    pub async fn raw(
        &self,
        path: &str,
        key: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let mut req = self.client.get(format!("{}{}", self.base, path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.expect("request");
        let (status, headers) = (resp.status(), resp.headers().clone());
        (status, headers, resp.bytes().await.expect("body").to_vec())
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(
            Method::PUT,
            path,
            Some(&self.key),
            None,
            Some(&body.to_string()),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, Some(&self.key), None, None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(
            Method::POST,
            path,
            Some(&self.key),
            None,
            Some(&body.to_string()),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(
            Method::PATCH,
            path,
            Some(&self.key),
            None,
            Some(&body.to_string()),
        )
        .await
    }

    /// Row counts of every table: bad input must leave all of them unchanged.
    pub async fn row_counts(&self) -> Vec<(&'static str, i64)> {
        const TABLES: [&str; 21] = [
            "tenants",
            "api_keys",
            "provider_accounts",
            "customers",
            "prices",
            "tax_rates",
            "coupons",
            "subscriptions",
            "subscription_items",
            "subscription_changes",
            "usage_records",
            "events",
            "idempotency_keys",
            "invoices",
            "payment_attempts",
            "credit_notes",
            "provider_events",
            "invoice_settings",
            "emails",
            "webhook_endpoints",
            "webhook_deliveries",
        ];
        let mut out = Vec::new();
        for t in TABLES {
            let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {t}"));
            let n: i64 = match &self.db {
                Db::Sqlite(p, _) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
                Db::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
            };
            out.push((t, n));
        }
        out
    }

    /// How many events of `kind` this tenant has (the API pages at 100).
    pub async fn count_events(&self, kind: &str) -> i64 {
        let sql = "SELECT COUNT(*) FROM events WHERE tenant_id = $1 AND type = $2";
        match &self.db {
            Db::Sqlite(p, _) => sqlx::query_scalar(sql)
                .bind(&self.tenant_id)
                .bind(kind)
                .fetch_one(p)
                .await
                .expect("count"),
            Db::Postgres(p) => sqlx::query_scalar(sql)
                .bind(&self.tenant_id)
                .bind(kind)
                .fetch_one(p)
                .await
                .expect("count"),
        }
    }

    pub async fn customer(&self) -> String {
        let c = self
            .post(
                "/v1/customers",
                serde_json::json!({"name": "Ada", "email": "ada@example.com", "currency": "EUR",
            "payment_method": {"provider": "sandbox", "token": "tok_visa"}}),
            )
            .await
            .ok();
        c["id"].as_str().expect("id").to_owned()
    }

    pub async fn monthly_price(&self, amount: i64) -> String {
        let p = self
            .post(
                "/v1/prices",
                serde_json::json!({"product": "Pro", "currency": "EUR", "unit_amount": amount,
            "recurring": {"interval": "month"}}),
            )
            .await
            .ok();
        p["id"].as_str().expect("id").to_owned()
    }

    pub async fn metered_price(&self) -> String {
        let p = self.post("/v1/prices", serde_json::json!({"product": "API calls", "currency": "EUR", "unit_amount_decimal": "0.5",
            "recurring": {"interval": "month", "usage_type": "metered"}})).await.ok();
        p["id"].as_str().expect("id").to_owned()
    }

    /// Moves this tenant's test clock to `at` before anything is created, so calendars in a
    /// test are fixed (anchors on the 31st, leap years).
    pub async fn set_clock(&self, at: &str) {
        let at: chrono::DateTime<chrono::Utc> = at.parse().expect("time");
        let id = recur::domain::ids::TenantId::parse(&self.tenant_id).expect("tenant id");
        let mut tx = self.db.begin().await.expect("tx");
        assert!(
            recur::store::tenants::update_tenant_clock(&mut tx, &id, at)
                .await
                .expect("clock")
        );
        tx.commit().await.expect("commit");
    }

    pub async fn advance(&self, to: &str) -> Value {
        self.post("/v1/test_clock/advance", serde_json::json!({ "to": to }))
            .await
            .ok()
    }

    /// The subscription's invoices, oldest first.
    pub async fn invoices_of(&self, sub: &str) -> Vec<Value> {
        let page = self
            .get(&format!("/v1/invoices?subscription={sub}&limit=100"))
            .await
            .ok();
        let mut v = page["data"].as_array().expect("data").clone();
        v.reverse();
        v
    }

    pub async fn subscription(&self, customer: &str, price: &str) -> Value {
        self.post(
            "/v1/subscriptions",
            serde_json::json!({"customer": customer, "items": [{"price": price, "quantity": 1}]}),
        )
        .await
        .ok()
    }
}

fn uuid_like() -> String {
    recur::domain::ids::EventId::generate()
        .as_str()
        .trim_start_matches("evt_")
        .to_owned()
}

/// Runs the `recur` binary against the app's database with extra environment.
pub fn recur_cli(app: &TestApp, env: &[(&str, String)], args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(args)
        .env("RECUR_DATABASE_URL", &app.url)
        .env("RECUR_DOCUMENTS__DIR", app.docs.path())
        .env("RECUR_EMAIL__DIR", app.mail.path())
        .env(
            "RECUR_SECRETS__MASTER_KEY_FILE",
            app.docs.path().join("master.key"),
        )
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run recur")
}
