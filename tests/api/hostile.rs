//! Hostile requests seen from outside: bodies that are not JSON, keys given twice, control
//! characters, errors axum answers itself, odd cursors and idempotency keys, and clients that
//! open connections and never finish a request.

use crate::both;
use crate::support::{Backend, TestApp};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Path, content type, body; the status, error code and parameter expected.
type Case = (
    &'static str,
    Option<&'static str>,
    &'static str,
    u16,
    &'static str,
    Option<&'static str>,
);

/// A POST with this content type and raw body; the status and the JSON answer.
async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", app.base))
        .bearer_auth(&app.key)
        .body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON answer"))
}

both! {
    async fn bodies_are_json_objects_without_surprises(app: TestApp) {
        let before = app.row_counts().await;
        let cases: [Case; 13] = [
            ("/v1/customers", Some("application/x-www-form-urlencoded"), "name=Ada", 415, "unsupported_media_type", None),
            ("/v1/customers", Some("text/plain"), r#"{"name": "Ada"}"#, 415, "unsupported_media_type", None),
            ("/v1/customers", Some("application/json"), r#"{"name": "Ada", "name": "Eve"}"#, 400, "parameter_invalid", Some("name")),
            ("/v1/customers", Some("application/json"), r#"{"name": "Ada", "address": {"city": "A", "city": "B"}}"#, 400, "parameter_invalid", Some("address.city")),
            ("/v1/customers", Some("application/json"), r#"{"name": "Ada\u0000"}"#, 400, "parameter_invalid", Some("name")),
            ("/v1/customers", Some("application/json"), r#"{"name": "Ada", "address": {"line1": "x\u001b[31m"}}"#, 400, "parameter_invalid", Some("address.line1")),
            ("/v1/credit_notes", Some("application/json"), r#"{"invoice": "in_x", "amount": 1, "reason": "duplicate", "memo": "a\u0000b"}"#, 400, "parameter_invalid", Some("memo")),
            ("/v1/prices", Some("application/json"), r#"{"product": "P\u0007", "currency": "EUR", "unit_amount": 1}"#, 400, "parameter_invalid", Some("product")),
            ("/v1/customers", Some("application/json"), r#"{"name": "Ada 4242 4242 4242 4242"}"#, 400, "parameter_invalid", Some("name")),
            ("/v1/customers", Some("application/json"), r#"{"name": "Ada", "address": {"line2": "card 3782-822463-10005", "country": "DE"}}"#, 400, "parameter_invalid", Some("address.line2")),
            ("/v1/prices", Some("application/json"), r#"{"product": "Pro 5555555555554444", "currency": "EUR", "unit_amount": 1}"#, 400, "parameter_invalid", Some("product")),
            ("/v1/credit_notes", Some("application/json"), r#"{"invoice": "in_x", "amount": 1, "reason": "duplicate", "memo": "refund to 4000056655665556"}"#, 400, "parameter_invalid", Some("memo")),
            ("/v1/customers", Some("application/json"), r#"{"name": "Ada"} {"name": "Eve"}"#, 400, "invalid_json", None),
        ];
        for (path, ct, body, status, code, param) in cases {
            let (s, v) = post_raw(&app, path, ct, body).await;
            assert_eq!((s, v["error"]["code"].as_str(), v["error"]["param"].as_str()), (status, Some(code), param), "{body}: {v}");
        }
        assert_eq!(app.row_counts().await, before, "nothing written");
        // JSON with parameters, a +json type, no type at all.
        for ct in [Some("application/json; charset=utf-8"), Some("application/merchant+json"), None] {
            let (s, v) = post_raw(&app, "/v1/customers", ct, r#"{"name": "Ada Lovelace"}"#).await;
            assert_eq!(s, 200, "{ct:?}: {v}");
        }
        // An action route needs no body, whatever type a client sends with nothing.
        let price = app.monthly_price(1_000).await;
        let customer = app.customer().await;
        let sub = app.subscription(&customer, &price).await;
        let (s, v) = post_raw(&app, &format!("/v1/subscriptions/{}/pause", sub["id"].as_str().unwrap()), Some("application/x-www-form-urlencoded"), "").await;
        assert_eq!(s, 200, "{v}");
    }
}

both! {
    async fn errors_axum_answers_leave_in_the_envelope(app: TestApp) {
        let client = reqwest::Client::new();
        let resp = client.delete(format!("{}/v1/customers", app.base)).bearer_auth(&app.key).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 405);
        assert!(resp.headers().get("allow").is_some());
        let v: Value = resp.json().await.expect("JSON");
        assert_eq!(v["error"]["code"], "method_not_allowed");
        let resp = client.get(format!("{}/v1/customers/%FF%FE", app.base)).bearer_auth(&app.key).send().await.unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.expect("JSON");
        assert!(status == 400 || status == 404, "{status}");
        assert!(v["error"]["code"].is_string(), "{v}");
        // Cursors and idempotency keys a client got wrong.
        // Empty, malformed, of another list, unknown, or another tenant's: a 400 naming the
        // cursor, never page 1 again.
        let customer = app.customer().await;
        let other = app.other_tenant_key().await;
        let theirs = app
            .send(reqwest::Method::POST, "/v1/customers", Some(&other), None, Some(r#"{"name": "Eve"}"#))
            .await
            .ok()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for cursor in ["", "nonsense", "in_0190a0b0c0d07000800000000000000a", "cus_0190a0b0c0d07000800000000000000a", &theirs] {
            let r = app.get(&format!("/v1/customers?starting_after={cursor}")).await;
            assert_eq!((r.status.as_u16(), r.body["error"]["param"].as_str()), (400, Some("starting_after")), "{cursor}: {}", r.body);
        }
        let r = app.get(&format!("/v1/customers?starting_after={customer}")).await;
        assert_eq!(r.status, 200);
        let r = app.get(&format!("/v1/invoices?starting_after={customer}")).await;
        assert_eq!(r.status, 400);
        let r = app.send(reqwest::Method::POST, "/v1/customers", Some(&app.key), Some("key\twith tab"), Some(r#"{"name": "Ada"}"#)).await;
        assert_eq!((r.status.as_u16(), r.body["error"]["param"].as_str()), (400, Some("Idempotency-Key")), "{}", r.body);
    }
}

/// A request whose body never finishes is answered 408 in the envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_a_408_in_the_envelope() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, recur::domain::tenant::Mode::Test, |c| {
        c.server.request_timeout_secs = 1;
    })
    .await
    else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        app.key
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The answer comes while the body is still owed; read until its JSON is complete.
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).trim_end().ends_with('}') {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("answered");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"request_timeout\""), "{text}");
}

/// Connections that send half a header are closed after `server.header_timeout_secs`, and
/// more of them than `server.max_connections` only wait: the server keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_hold_the_server() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, recur::domain::tenant::Mode::Test, |c| {
        c.server.header_timeout_secs = 1;
        c.server.max_connections = 8;
    })
    .await
    else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..16 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // Every slow connection is closed by the server (a 408 or a bare close), none kept.
    for s in &mut slow {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut rest))
            .await
            .expect("the server closed a connection that never finished its header")
            .ok();
    }
    let health = reqwest::Client::new()
        .get(format!("{}/healthz", app.base))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("healthz answers");
    assert_eq!(health.status().as_u16(), 200);
}
