//! Outbound webhooks against a local receiver that answers well, fails, times out, answers
//! 410 and 429: every event reaches the live endpoints once with a signature an independent
//! implementation (Python's `standardwebhooks`) accepts, retries keep their `webhook-id`, the
//! 410 endpoint is disabled; internal addresses are refused in every spelling.

use crate::both;
use crate::support::{Backend, TestApp};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{Duration, Utc};
use recur::services::webhooks::{self as relay, Relayed};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
struct Received {
    path: String,
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    calls: Arc<Mutex<HashMap<String, u32>>>,
}

async fn hook(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let n = {
        let mut calls = r.calls.lock().unwrap();
        let n = calls.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    r.got.lock().unwrap().push(Received {
        path: path.clone(),
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        body,
    });
    match path.as_str() {
        "flaky" if n <= 2 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "slow" if n == 1 => {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            StatusCode::OK.into_response()
        }
        "gone" => StatusCode::GONE.into_response(),
        "busy" if n == 1 => {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "120")]).into_response()
        }
        "redirect" => (StatusCode::FOUND, [("location", "/hooks/ok")]).into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn receiver() -> (String, Receiver) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/hooks/{path}", axum::routing::post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, r)
}

async fn spawn(backend: Backend, allow_private: bool) -> Option<TestApp> {
    TestApp::spawn_with(backend, recur::domain::tenant::Mode::Test, |c| {
        c.webhooks.allow_private_urls = allow_private;
        c.webhooks.timeout_secs = 1;
    })
    .await
}

fn backend_of(app: &TestApp) -> Backend {
    if app.url.starts_with("sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

/// Checks every received message with Python's `standardwebhooks` (`.ci/run` installs it).
fn verify_with_python(secrets: &HashMap<String, String>, got: &[Received]) {
    let messages: Vec<Value> = got
        .iter()
        .map(|m| json!({"secret": secrets[&m.path], "id": m.id, "timestamp": m.timestamp, "signature": m.signature, "body": m.body}))
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&messages).unwrap()).unwrap();
    let script = "import json,sys\nfrom standardwebhooks.webhooks import Webhook\nfor m in json.load(open(sys.argv[1])):\n    Webhook(m['secret']).verify(m['body'], {'webhook-id': m['id'], 'webhook-timestamp': m['timestamp'], 'webhook-signature': m['signature']})\nprint('ok', len(json.load(open(sys.argv[1]))))\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(file.path())
        .output()
        .expect("python3");
    if !out.status.success()
        && String::from_utf8_lossy(&out.stderr).contains("No module named 'standardwebhooks'")
        && std::env::var("CI").is_err()
    {
        eprintln!("skipping the independent signature check: pip install standardwebhooks");
        return;
    }
    assert!(
        out.status.success(),
        "python verification failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn pass(app: &TestApp, at: chrono::DateTime<Utc>) -> Relayed {
    let client = relay::client(&app.config).unwrap();
    relay::deliver_due(&app.db, &app.config, &client, at, None)
        .await
        .expect("relay pass")
}

both! {
    async fn webhooks_reach_live_endpoints(app: TestApp) {
        let Some(app) = spawn(backend_of(&app), true).await else { return };
        let (base, rx) = receiver().await;
        let mut secrets = HashMap::new();
        let mut ids = HashMap::new();
        for (path, events) in [("ok", json!(["*"])), ("flaky", json!(["customer.subscription.created", "customer.created"])), ("gone", json!(["*"])), ("busy", json!(["customer.created"])), ("slow", json!(["customer.created"])), ("redirect", json!(["customer.created"]))] {
            let e = app.post("/v1/webhook_endpoints", json!({"url": format!("{base}/{path}"), "enabled_events": events})).await.ok();
            assert!(e["secret"].as_str().unwrap().starts_with("whsec_"));
            secrets.insert(path.to_owned(), e["secret"].as_str().unwrap().to_owned());
            ids.insert(path, e["id"].as_str().unwrap().to_owned());
        }
        // The secret is shown once.
        let listed = app.get("/v1/webhook_endpoints").await.ok();
        assert_eq!(listed["data"].as_array().unwrap().len(), 6);
        assert!(!listed.to_string().contains("whsec_"));
        let customer = app.customer().await;
        let price = app.monthly_price(1_000).await;
        app.subscription(&customer, &price).await;
        let t0 = Utc::now();
        // Through the schedule: now, after 5 s, 5 min, 30 min (and Retry-After's 2 min).
        for at in [t0, t0 + Duration::seconds(10), t0 + Duration::minutes(3), t0 + Duration::minutes(10), t0 + Duration::hours(1)] {
            pass(&app, at).await;
        }
        let got = rx.got.lock().unwrap().clone();
        let at = |path: &str| got.iter().filter(|m| m.path == path).cloned().collect::<Vec<_>>();
        // Every event once to the catch-all endpoint (the endpoint's disablement among them),
        // the body the event as the API shows it.
        let events = app.get("/v1/events?limit=100").await.ok()["data"].as_array().unwrap().clone();
        assert!(events.iter().any(|e| e["type"] == "webhook_endpoint.disabled"));
        let ok = at("ok");
        assert_eq!(ok.len(), events.len(), "{ok:?}");
        for e in &events {
            let m = ok.iter().find(|m| m.id == e["id"].as_str().unwrap()).expect("each event delivered");
            let body: Value = serde_json::from_str(&m.body).unwrap();
            assert_eq!(body["type"], e["type"]);
            assert_eq!(body["data"], e["data"]);
        }
        // Failures retried under the same webhook-id until they pass.
        let flaky = at("flaky");
        let wanted = events.iter().filter(|e| e["type"] == "customer.subscription.created" || e["type"] == "customer.created").count();
        assert_eq!(wanted, 2);
        assert_eq!(flaky.len(), wanted + 2);
        let first = &flaky[0].id;
        assert!(flaky.iter().filter(|m| &m.id == first).count() >= 2, "retries share the webhook-id");
        // A timeout is a failure retried; 429 waits as long as Retry-After asks.
        assert_eq!(at("slow").len(), 2);
        let busy = at("busy");
        assert_eq!(busy.len(), 2);
        assert_eq!(busy[0].id, busy[1].id);
        let d = app.get(&format!("/v1/webhook_endpoints/{}/deliveries", ids["busy"])).await.ok();
        let attempts = d["data"][0]["attempts"].as_array().unwrap();
        assert_eq!(attempts.iter().map(|a| a["status_code"].as_i64()).collect::<Vec<_>>(), [Some(429), Some(204)]);
        let gap = chrono::DateTime::parse_from_rfc3339(attempts[1]["attempted_at"].as_str().unwrap()).unwrap() - chrono::DateTime::parse_from_rfc3339(attempts[0]["attempted_at"].as_str().unwrap()).unwrap();
        assert!(gap >= Duration::seconds(120), "Retry-After honoured: {gap}");
        // A redirect is not followed: the delivery failed, nothing reached /ok through it.
        let redirected = app.get(&format!("/v1/webhook_endpoints/{}/deliveries", ids["redirect"])).await.ok();
        assert_eq!(redirected["data"][0]["attempts"][0]["status_code"], 302);
        // 410: tried once, the endpoint disabled with an event, nothing more sent there.
        assert_eq!(at("gone").len(), 1);
        let gone = app.get(&format!("/v1/webhook_endpoints/{}", ids["gone"])).await.ok();
        assert_eq!((gone["status"].as_str(), gone["disabled_reason"].as_str()), (Some("disabled"), Some("the endpoint answered 410 Gone")));
        assert_eq!(app.count_events("webhook_endpoint.disabled").await, 1);
        assert_eq!(app.count_events("alert.webhook_endpoint_disabled").await, 1);
        let alerts = app.get("/v1/alerts").await.ok();
        assert_eq!((alerts["data"][0]["kind"].as_str(), alerts["data"][0]["subject"].as_str()), (Some("webhook_endpoint_disabled"), Some(ids["gone"].as_str())));
        app.customer().await;
        pass(&app, t0 + Duration::hours(2)).await;
        assert_eq!(rx.got.lock().unwrap().iter().filter(|m| m.path == "gone").count(), 1);
        // Every message carries a valid Standard Webhooks signature.
        let got = rx.got.lock().unwrap().clone();
        verify_with_python(&secrets, &got);
        // A resend goes out again under the same id.
        let delivered = app.get(&format!("/v1/webhook_endpoints/{}/deliveries?limit=1", ids["ok"])).await.ok();
        let one = &delivered["data"][0];
        let resent = app.post(&format!("/v1/webhook_endpoints/{}/deliveries/{}/resend", ids["ok"], one["id"].as_str().unwrap()), json!({})).await.ok();
        assert_eq!(resent["status"], "pending");
        pass(&app, t0 + Duration::hours(3)).await;
        let again = rx.got.lock().unwrap().iter().filter(|m| m.path == "ok" && m.id == one["event"].as_str().unwrap()).count();
        assert_eq!(again, 2);
        // Deleted: nothing more is sent there.
        app.send(reqwest::Method::DELETE, &format!("/v1/webhook_endpoints/{}", ids["ok"]), Some(&app.key), None, None).await.ok();
        app.customer().await;
        pass(&app, t0 + Duration::hours(4)).await;
        // (Since the count above: the customer made after the 410, and the resend.)
        assert_eq!(rx.got.lock().unwrap().iter().filter(|m| m.path == "ok").count(), ok.len() + 2);
    }
}

both! {
    async fn a_day_of_failures_disables_an_endpoint(app: TestApp) {
        let Some(app) = spawn(backend_of(&app), true).await else { return };
        // Nothing listens on this port: every attempt fails to connect.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = app.post("/v1/webhook_endpoints", json!({"url": format!("http://127.0.0.1:{port}/hook"), "enabled_events": ["customer.created"]})).await.ok();
        app.customer().await;
        let t0 = Utc::now();
        let mut offsets = vec![0];
        offsets.extend(recur::domain::webhook::RETRY_DELAYS_SECS.iter().scan(0, |sum, d| { *sum += d + 1; Some(*sum) }));
        for s in offsets {
            pass(&app, t0 + Duration::seconds(s)).await;
        }
        let e = app.get(&format!("/v1/webhook_endpoints/{}", e["id"].as_str().unwrap())).await.ok();
        assert_eq!((e["status"].as_str(), e["disabled_reason"].as_str()), (Some("disabled"), Some("every delivery failed for a day")));
        let d = app.get(&format!("/v1/webhook_endpoints/{}/deliveries", e["id"].as_str().unwrap())).await.ok();
        assert_eq!(d["data"][0]["status"], "failed");
        assert!(d["data"][0]["attempts"][0]["error"].as_str().unwrap().contains("could not connect"), "{d}");
    }
}

both! {
    async fn internal_addresses_are_refused(app: TestApp) {
        let before = app.row_counts().await;
        for url in [
            "http://127.0.0.1/hook",
            "http://2130706433/hook",
            "http://0177.0.0.1/hook",
            "http://0x7f000001/hook",
            "http://[::1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://localhost/hook",
            "http://localhost./hook",
            "http://LOCALHOST/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://10.0.0.7/hook",
            "http://192.168.0.1/hook",
            "http://0.0.0.0/hook",
            "http://user:secret@example.com/hook",
            "ftp://example.com/hook",
            "not a url",
        ] {
            let r = app.post("/v1/webhook_endpoints", json!({"url": url, "enabled_events": ["*"]})).await;
            assert_eq!(r.status.as_u16(), 400, "{url}: {}", r.body);
            assert_eq!(r.body["error"]["param"], "url", "{url}");
        }
        for (body, param) in [
            (json!({"url": "https://example.com/", "enabled_events": ["invoice.exploded"]}), "enabled_events"),
            (json!({"url": "https://example.com/", "enabled_events": []}), "enabled_events"),
            (json!({"url": "https://example.com/"}), "enabled_events"),
        ] {
            let r = app.post("/v1/webhook_endpoints", body).await;
            assert_eq!((r.status.as_u16(), r.body["error"]["param"].as_str()), (400, Some(param)), "{}", r.body);
        }
        assert_eq!(app.row_counts().await, before, "nothing written");
        // Allowed once (local development), then refused at connection time when the
        // installation no longer allows private addresses.
        let Some(dev) = spawn(backend_of(&app), true).await else { return };
        let (base, rx) = receiver().await;
        dev.post("/v1/webhook_endpoints", json!({"url": format!("{base}/ok"), "enabled_events": ["*"]})).await.ok();
        dev.customer().await;
        let mut strict = (*dev.config).clone();
        strict.webhooks.allow_private_urls = false;
        let client = relay::client(&strict).unwrap();
        let r = relay::deliver_due(&dev.db, &strict, &client, Utc::now(), None).await.unwrap();
        assert_eq!((r.delivered, r.retrying), (0, 1));
        assert!(rx.got.lock().unwrap().is_empty(), "nothing reached the internal address");
    }
}

both! {
    async fn a_secret_that_does_not_open_holds_the_delivery_without_blaming_the_endpoint(app: TestApp) {
        let Some(app) = spawn(backend_of(&app), true).await else { return };
        let (base, rx) = receiver().await;
        let endpoint = app
            .post("/v1/webhook_endpoints", json!({"url": format!("{base}/held"), "enabled_events": ["*"]}))
            .await
            .ok();
        // The stored secret was sealed under a master key this process no longer has.
        let stranger = "enc:v1:deadbeef:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let sql = "UPDATE webhook_endpoints SET secret = $1 WHERE id = $2";
        match &app.db {
            recur::store::Db::Sqlite(p, _) => sqlx::query(sql).bind(stranger).bind(endpoint["id"].as_str()).execute(p).await.map(|_| ()),
            recur::store::Db::Postgres(p) => sqlx::query(sql).bind(stranger).bind(endpoint["id"].as_str()).execute(p).await.map(|_| ()),
        }
        .unwrap();
        app.post("/v1/customers", json!({"name": "Ada"})).await.ok();
        let r = pass(&app, Utc::now()).await;
        assert_eq!((r.delivered, r.retrying, r.failed, r.disabled), (0, 0, 0, 0), "{r:?}");
        assert!(rx.got.lock().unwrap().is_empty(), "nothing is sent unsigned");
        let shown = app.get(&format!("/v1/webhook_endpoints/{}", endpoint["id"].as_str().unwrap())).await.ok();
        assert_eq!(shown["status"], "enabled", "{shown}");
        let deliveries = app.get(&format!("/v1/webhook_endpoints/{}/deliveries", endpoint["id"].as_str().unwrap())).await.ok();
        assert!(deliveries["data"].as_array().unwrap().iter().all(|d| d["status"] == "pending" && d["attempts"].as_array().is_none_or(Vec::is_empty)), "{deliveries}");
    }
}
