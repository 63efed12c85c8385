use crate::{TestApp, both};
use reqwest::{Method, StatusCode};
use serde_json::json;

both!(
    async fn the_same_key_and_body_replays_the_first_response(app: TestApp) {
        let body = r#"{"name": "Once", "email": "once@example.com"}"#;
        let first = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("k-1"),
                Some(body),
            )
            .await;
        let reordered = r#"{"email": "once@example.com", "name": "Once"}"#;
        let again = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("k-1"),
                Some(reordered),
            )
            .await;
        assert_eq!(first.status, StatusCode::OK);
        assert_eq!(again.body, first.body);
        assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
        assert_eq!(
            app.get("/v1/customers").await.ok()["data"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let other = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("k-1"),
                Some(r#"{"name": "Twice"}"#),
            )
            .await;
        assert_eq!(other.status, StatusCode::CONFLICT);
        assert_eq!(other.error_code(), "idempotency_key_reused");
        let other_route = app
            .send(
                Method::POST,
                "/v1/tax_rates",
                Some(&app.key),
                Some("k-1"),
                Some(body),
            )
            .await;
        assert_eq!(other_route.status, StatusCode::CONFLICT);
    }
);

both!(
    async fn keys_belong_to_one_tenant(app: TestApp) {
        let body = r#"{"name": "Mine"}"#;
        app.send(
            Method::POST,
            "/v1/customers",
            Some(&app.key),
            Some("shared"),
            Some(body),
        )
        .await
        .ok();
        let other = app.other_tenant_key().await;
        let theirs = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&other),
                Some("shared"),
                Some(body),
            )
            .await
            .ok();
        assert!(theirs.get("id").is_some());
        assert!(
            app.send(Method::GET, "/v1/customers", Some(&other), None, None)
                .await
                .ok()["data"]
                .as_array()
                .unwrap()
                .len()
                == 1
        );
    }
);

both!(
    async fn concurrent_duplicates_produce_one_effect(app: TestApp) {
        let customer = app.customer().await;
        let price = app.monthly_price(900).await;
        let body =
            serde_json::json!({"customer": customer, "items": [{"price": price}]}).to_string();
        let mut handles = Vec::new();
        for _ in 0..8 {
            let (base, key, body) = (app.base.clone(), app.key.clone(), body.clone());
            handles.push(tokio::spawn(async move {
                reqwest::Client::new()
                    .post(format!("{base}/v1/subscriptions"))
                    .bearer_auth(key)
                    .header("Idempotency-Key", "race")
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        let mut statuses = Vec::new();
        for h in handles {
            statuses.push(h.await.unwrap());
        }
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 409),
            "{statuses:?}"
        );
        assert!(statuses.contains(&200));
        assert_eq!(
            app.get("/v1/subscriptions").await.ok()["data"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            app.get("/v1/events?type=customer.subscription.created")
                .await
                .ok()["data"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
);

both!(
    async fn a_replayed_error_is_an_error_again(app: TestApp) {
        let bad = r#"{"name": "x", "email": "nope"}"#;
        let first = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("bad-1"),
                Some(bad),
            )
            .await;
        let second = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("bad-1"),
                Some(bad),
            )
            .await;
        assert_eq!(first.status, StatusCode::BAD_REQUEST);
        assert_eq!(second.status, StatusCode::BAD_REQUEST);
        assert_eq!(second.body, first.body);
    }
);

/// Runs SQL against the app's database (to put a key in the state a killed process leaves).
async fn exec(app: &TestApp, sql: &str, binds: &[&str]) {
    match &app.db {
        recur::store::Db::Sqlite(p, _) => {
            let mut q = sqlx::query::<sqlx::Sqlite>(sqlx::AssertSqlSafe(sql.to_owned()));
            for b in binds {
                q = q.bind(*b);
            }
            q.execute(p).await.map(|_| ())
        }
        recur::store::Db::Postgres(p) => {
            let mut q = sqlx::query::<sqlx::Postgres>(sqlx::AssertSqlSafe(sql.to_owned()));
            for b in binds {
                q = q.bind(*b);
            }
            q.execute(p).await.map(|_| ())
        }
    }
    .expect("sql");
}

/// A holder name for a process of this host that no longer exists, running claim `claim`.
fn dead_holder(claim: &str) -> String {
    format!(
        "{}:4194303:deadbeef:{claim}",
        recur::store::leases::this_host()
    )
}

/// The claim id of a key's last run.
async fn claim_of(app: &TestApp, key: &str) -> String {
    let sql = "SELECT holder FROM idempotency_keys WHERE key = $1";
    let holder: String = match &app.db {
        recur::store::Db::Sqlite(p, _) => sqlx::query_scalar(sql).bind(key).fetch_one(p).await,
        recur::store::Db::Postgres(p) => sqlx::query_scalar(sql).bind(key).fetch_one(p).await,
    }
    .expect("holder");
    holder.rsplit(':').next().unwrap().to_owned()
}

crate::both!(
    async fn a_passing_conflict_is_not_stored(app: TestApp) {
        let tenant = recur::domain::ids::TenantId::parse(&app.tenant_id).unwrap();
        let live = recur::store::leases::holder_name();
        assert!(
            recur::store::leases::acquire(
                &app.db,
                &tenant,
                "test_clock",
                &live,
                chrono::Duration::minutes(10)
            )
            .await
            .unwrap()
        );
        let to = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
        let body = json!({ "to": to }).to_string();
        let busy = app
            .send(
                Method::POST,
                "/v1/test_clock/advance",
                Some(&app.key),
                Some("adv-1"),
                Some(&body),
            )
            .await;
        assert_eq!(
            (busy.status.as_u16(), busy.error_code()),
            (409, "clock_advance_in_progress")
        );
        recur::store::leases::release(&app.db, &tenant, "test_clock", &live)
            .await
            .unwrap();
        let done = app
            .send(
                Method::POST,
                "/v1/test_clock/advance",
                Some(&app.key),
                Some("adv-1"),
                Some(&body),
            )
            .await;
        assert_eq!(done.status.as_u16(), 200, "{}", done.body);
        assert!(done.headers.get("idempotent-replayed").is_none());
    }
);

crate::both!(
    async fn a_key_left_in_flight_by_a_dead_process_is_recovered(app: TestApp) {
        let body = json!({"name": "Once"}).to_string();
        // Killed after committing: the key has no response, but the customer exists.
        let first = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("k-crash"),
                Some(&body),
            )
            .await
            .ok();
        exec(&app, "UPDATE idempotency_keys SET status_code = NULL, response_body = NULL, holder = $1 WHERE key = 'k-crash'", &[&dead_holder(&claim_of(&app, "k-crash").await)]).await;
        let retry = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("k-crash"),
                Some(&body),
            )
            .await;
        assert_eq!(
            (retry.status.as_u16(), retry.error_code()),
            (500, "request_outcome_lost"),
            "{}",
            retry.body
        );
        let again = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("k-crash"),
                Some(&body),
            )
            .await;
        assert_eq!(again.body, retry.body, "the stored answer is replayed");
        let list = app.get("/v1/customers?limit=100").await.ok();
        assert_eq!(
            list["data"].as_array().unwrap().len(),
            1,
            "never created twice"
        );
        assert_eq!(list["data"][0]["id"], first["id"]);

        // Killed before committing: the key is claimed, nothing happened; the retry runs.
        exec(&app, "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at, holder)
                    SELECT tenant_id, 'k-early', fingerprint, created_at, $1 FROM idempotency_keys WHERE key = 'k-crash'", &[&dead_holder("0123456789abcdef")]).await;
        let ran = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("k-early"),
                Some(&body),
            )
            .await
            .ok();
        assert_ne!(ran["id"], first["id"]);
        // A live holder's key is in use.
        exec(&app, "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at, holder)
                    SELECT tenant_id, 'k-live', fingerprint, created_at, $1 FROM idempotency_keys WHERE key = 'k-crash'", &[&format!("{}:0123456789abcdef", recur::store::leases::holder_name())]).await;
        let busy = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("k-live"),
                Some(&body),
            )
            .await;
        assert_eq!(
            (busy.status.as_u16(), busy.error_code()),
            (409, "idempotency_key_in_use")
        );
    }
);

crate::both!(
    async fn clients_that_hang_up_never_cause_a_second_effect(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let price = app.monthly_price(1000).await;
        let n = 40;
        let hasty = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(3))
            .build()
            .unwrap();
        for i in 0..n {
            let _ = hasty
                .post(format!("{}/v1/subscriptions", app.base))
                .bearer_auth(&app.key)
                .header("Idempotency-Key", format!("cut-{i}"))
                .json(&json!({"customer": customer, "items": [{"price": price}]}))
                .send()
                .await;
        }
        let body = json!({"customer": customer, "items": [{"price": price}]}).to_string();
        let mut ids = std::collections::HashSet::new();
        for i in 0..n {
            let key = format!("cut-{i}");
            let mut tries = 0;
            let answer = loop {
                let r = app
                    .send(
                        Method::POST,
                        "/v1/subscriptions",
                        Some(&app.key),
                        Some(&key),
                        Some(&body),
                    )
                    .await;
                if r.status.as_u16() != 409 || tries > 200 {
                    break r;
                }
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            };
            assert_eq!(answer.status.as_u16(), 200, "{key}: {}", answer.body);
            ids.insert(answer.body["id"].as_str().unwrap().to_owned());
        }
        let all = app
            .get(&format!("/v1/subscriptions?customer={customer}&limit=100"))
            .await
            .ok();
        assert_eq!(
            all["data"].as_array().unwrap().len(),
            n,
            "one subscription per key"
        );
        assert_eq!(ids.len(), n);
    }
);

/// Keys per route for the cut-off clients (`RELIABILITY_CUTOFF_KEYS`, 20 in the test suite).
fn cutoff_keys() -> usize {
    std::env::var("RELIABILITY_CUTOFF_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Sends a keyed POST whose client hangs up after 1–4 ms, then retries it with the same key
/// until it is no longer in use: the stored answer.
async fn cut_then_retry(
    app: &TestApp,
    path: &str,
    key: &str,
    body: &serde_json::Value,
    i: usize,
) -> crate::support::Resp {
    let hasty = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(1 + (i % 4) as u64))
        .build()
        .unwrap();
    let _ = hasty
        .post(format!("{}{path}", app.base))
        .bearer_auth(&app.key)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await;
    for _ in 0..400 {
        let r = app
            .send(
                Method::POST,
                path,
                Some(&app.key),
                Some(key),
                Some(&body.to_string()),
            )
            .await;
        if r.error_code() != "idempotency_key_in_use" {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{key} stays in use");
}

crate::both!(
    async fn cut_off_credit_notes_payments_and_clock_advances_happen_once(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let n = cutoff_keys();
        let customer = app.customer().await;
        let price = app.monthly_price(100_000).await;
        // Invoices due but not charged yet (charging waits for the clock's next step).
        let mut invoices = Vec::new();
        for _ in 0..n {
            let s = app.subscription(&customer, &price).await;
            invoices.push(
                app.invoices_of(s["id"].as_str().unwrap()).await[0]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        for (i, inv) in invoices.iter().enumerate() {
            let r = cut_then_retry(
                &app,
                &format!("/v1/invoices/{inv}/pay"),
                &format!("pay-{i}"),
                &json!({}),
                i,
            )
            .await;
            assert_eq!(r.body["status"], "paid", "{}", r.body);
        }
        let paid = recur::domain::ids::InvoiceId::parse(&invoices[0]).unwrap();
        for (i, inv) in invoices.iter().enumerate() {
            let id = recur::domain::ids::InvoiceId::parse(inv).unwrap();
            assert_eq!(
                app.payments.sandbox.charges_for(&id),
                1,
                "invoice {i} charged once"
            );
        }
        for i in 0..n {
            let r = cut_then_retry(&app, "/v1/credit_notes", &format!("cn-{i}"),
                &json!({"invoice": invoices[0], "amount": 10, "reason": "order_change", "refund": true}), i).await;
            assert_eq!(r.status.as_u16(), 200, "{}", r.body);
        }
        assert_eq!(
            app.payments.sandbox.refunded_for(&paid),
            10 * n as i64,
            "each note refunded once"
        );
        assert_eq!(app.count_events("credit_note.created").await, n as i64);
        for i in 0..n {
            let to = format!("2027-01-{:02}T00:00:00Z", 2 + i.min(27));
            let r = cut_then_retry(
                &app,
                "/v1/test_clock/advance",
                &format!("adv-{i}"),
                &json!({ "to": to }),
                i,
            )
            .await;
            assert!(
                r.status.is_success() || r.status.as_u16() == 400,
                "{}",
                r.body
            );
        }
        let s = app
            .get(&format!("/v1/subscriptions?customer={customer}&limit=100"))
            .await
            .ok();
        for sub in s["data"].as_array().unwrap() {
            assert_eq!(
                app.invoices_of(sub["id"].as_str().unwrap()).await.len(),
                1,
                "no period billed twice"
            );
        }
    }
);

both! {
    async fn changes_are_attributable(app: TestApp) {
        let r = app
            .send(reqwest::Method::POST, "/v1/customers", Some(&app.key), Some("audit-1"), Some(r#"{"name": "Audited", "currency": "EUR"}"#))
            .await;
        let request_id = r.headers["request-id"].to_str().unwrap().to_owned();
        assert!(request_id.starts_with("req_") && request_id.len() == 36, "{request_id}");
        let id = r.ok()["id"].as_str().unwrap().to_owned();
        let events = app.get(&format!("/v1/events?object_id={id}")).await.ok();
        let e = &events["data"][0];
        assert_eq!(events["data"].as_array().unwrap().len(), 1);
        assert_eq!(e["type"], "customer.created");
        assert_eq!(e["request"]["id"], request_id.as_str());
        assert_eq!(e["request"]["idempotency_key"], "audit-1");
        let key_id = e["request"]["api_key"].as_str().unwrap();
        assert!(key_id.starts_with("key_") && key_id.len() == 20 && !app.key.contains(&key_id[4..]), "{key_id}");
        // Another request, another id; the same key, the same key id.
        let second = app.post("/v1/customers", serde_json::json!({"name": "Second"})).await.ok();
        let e2 = app.get(&format!("/v1/events?object_id={}", second["id"].as_str().unwrap())).await.ok();
        assert_ne!(e2["data"][0]["request"]["id"], e["request"]["id"]);
        assert_eq!(e2["data"][0]["request"]["api_key"], key_id);
        assert_eq!(e2["data"][0]["request"]["idempotency_key"], serde_json::Value::Null);
        // By type and time range.
        let created = e["created"].as_str().unwrap();
        let all = app.get(&format!("/v1/events?type=customer.created&created[gte]={created}")).await.ok();
        assert_eq!(all["data"].as_array().unwrap().len(), 2);
        let none = app.get(&format!("/v1/events?type=customer.created&created[lt]={created}")).await.ok();
        assert!(none["data"].as_array().unwrap().is_empty());
        for (query, param) in [("created[gte]=yesterday", "created[gte]"), ("object_id=in_1'%20OR%201=1", "object_id")] {
            let r = app.get(&format!("/v1/events?{query}")).await;
            assert_eq!((r.status.as_u16(), r.body["error"]["param"].as_str()), (400, Some(param)), "{query}");
        }
    }
}
