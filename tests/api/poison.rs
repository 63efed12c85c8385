//! A subscription whose billing fails is set aside, visibly, and never holds up its
//! neighbours: neither the other subscriptions of its batch nor other tenants.

use crate::both;
use crate::support::{Backend, TestApp};
use recur::store::Db;
use serde_json::{Value, json};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

/// Moves a subscription's stored billing state back to a period already invoiced, as a lost
/// update would: billing it again collides with the invoice of that period.
async fn revert_period(app: &TestApp, sub: &str, start: &str, end: &str) {
    let start: chrono::DateTime<chrono::Utc> = start.parse().unwrap();
    let end: chrono::DateTime<chrono::Utc> = end.parse().unwrap();
    let sql = "UPDATE subscriptions SET current_period_start = $1, current_period_end = $2, next_billing_at = $1 WHERE id = $3";
    match &app.db {
        Db::Sqlite(p, _) => sqlx::query(sql)
            .bind(start)
            .bind(end)
            .bind(sub)
            .execute(p)
            .await
            .map(|_| ()),
        Db::Postgres(p) => sqlx::query(sql)
            .bind(start)
            .bind(end)
            .bind(sub)
            .execute(p)
            .await
            .map(|_| ()),
    }
    .expect("revert");
}

both!(
    async fn a_subscription_that_cannot_be_billed_is_set_aside_and_retried(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let fine = app.monthly_price(1000).await;
        let huge = app
            .post("/v1/prices", json!({"product": "Huge calls", "currency": "EUR", "unit_amount": 1_000_000_000_000i64,
                                       "recurring": {"interval": "month", "usage_type": "metered"}}))
            .await
            .ok();
        let others: Vec<Value> = subscribe_many(&app, &customer, &fine, 3).await;
        let bad = app.subscription(&customer, &id(&huge)).await;
        let item = bad["items"][0]["id"].as_str().unwrap().to_owned();
        // Usage whose bill overflows every amount type: the renewal cannot be computed.
        app.post(
            "/v1/usage_records",
            json!({"subscription_item": item, "quantity": 1_000_000_000}),
        )
        .await
        .ok();
        let r = app.advance("2027-03-01T00:00:00Z").await;
        assert_eq!(
            r["failed"], 1,
            "set aside once, not retried every step: {r}"
        );
        for o in &others {
            assert_eq!(
                app.invoices_of(&id(o)).await.len(),
                3,
                "its neighbours are billed"
            );
        }
        let b = app
            .get(&format!("/v1/subscriptions/{}", id(&bad)))
            .await
            .ok();
        assert!(
            b["billing_error"].as_str().is_some_and(|e| !e.is_empty()),
            "{b}"
        );
        assert_eq!(b["status"], "active");
        assert_eq!(app.invoices_of(&id(&bad)).await.len(), 0);
        let events = app
            .get("/v1/events?type=customer.subscription.billing_failed")
            .await
            .ok();
        assert_eq!(events["data"].as_array().unwrap().len(), 1);
        assert_eq!(
            events["data"][0]["data"]["object"]["billing_error"],
            b["billing_error"]
        );

        // Still broken: retrying sets it aside again, with the reason.
        let again = app
            .post(
                &format!("/v1/subscriptions/{}/retry_billing", id(&bad)),
                json!({}),
            )
            .await
            .ok();
        assert!(again["billing_error"].is_string());
        // Fixed (the usage corrected), then retried: it catches up January and February.
        app.post("/v1/usage_records", json!({"subscription_item": item, "quantity": 1, "action": "set", "timestamp": "2027-01-15T00:00:00Z"}))
            .await
            .ok();
        let fixed = app
            .post(
                &format!("/v1/subscriptions/{}/retry_billing", id(&bad)),
                json!({}),
            )
            .await
            .ok();
        assert_eq!(fixed["billing_error"], Value::Null);
        let inv = app.invoices_of(&id(&bad)).await;
        assert_eq!(inv.len(), 2, "{inv:?}");
        assert_eq!(
            inv[0]["total"], 1_000_000_000_000i64,
            "one call at the corrected usage"
        );
        assert_eq!(
            &fixed["current_period_start"].as_str().unwrap()[..10],
            "2027-03-01"
        );
        let none = app
            .post(
                &format!("/v1/subscriptions/{}/retry_billing", id(&fixed)),
                json!({}),
            )
            .await;
        assert_eq!(
            (none.status.as_u16(), none.error_code()),
            (422, "subscription_invalid_state")
        );
    }
);

both!(
    async fn a_batch_that_fails_is_billed_one_by_one(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let p = app.monthly_price(1000).await;
        let subs = subscribe_many(&app, &customer, &p, 4).await;
        app.advance("2027-02-01T00:00:00Z").await;
        revert_period(
            &app,
            &id(&subs[1]),
            "2027-01-01T00:00:00Z",
            "2027-02-01T00:00:00Z",
        )
        .await;
        let r = app.advance("2027-03-01T00:00:00Z").await;
        assert_eq!(r["failed"], 1, "{r}");
        for (i, s) in subs.iter().enumerate() {
            let n = app.invoices_of(&id(s)).await.len();
            assert_eq!(n, if i == 1 { 2 } else { 3 }, "subscription {i}");
        }
        let b = app
            .get(&format!("/v1/subscriptions/{}", id(&subs[1])))
            .await
            .ok();
        assert!(
            b["billing_error"].as_str().unwrap().contains("unique"),
            "{b}"
        );
    }
);

async fn subscribe_many(app: &TestApp, customer: &str, price: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(app.subscription(customer, price).await);
    }
    out
}

/// One tenant's failing run never stops the scheduler's pass over the others.
mod a_failing_tenant_does_not_stop_the_others {
    use super::*;

    async fn run(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let other = app.other_tenant_key().await;
        let send = |path: &'static str, body: Value| {
            let (app, other) = (&app, &other);
            async move {
                app.send(
                    reqwest::Method::POST,
                    path,
                    Some(other),
                    None,
                    Some(&body.to_string()),
                )
                .await
                .ok()
            }
        };
        let c = send("/v1/customers", json!({"name": "B", "currency": "EUR", "payment_method": {"provider": "sandbox", "token": "tok_visa"}})).await;
        let p = send("/v1/prices", json!({"product": "B", "currency": "EUR", "unit_amount": 500, "recurring": {"interval": "month"}})).await;
        send(
            "/v1/subscriptions",
            json!({"customer": c["id"], "items": [{"price": p["id"]}]}),
        )
        .await;
        // Our tenant's clock is held by an advance that never finishes: its run fails.
        let ours = recur::domain::ids::TenantId::parse(&app.tenant_id).unwrap();
        assert!(
            recur::store::leases::acquire(
                &app.db,
                &ours,
                "test_clock",
                "elsewhere:1",
                chrono::Duration::minutes(10)
            )
            .await
            .unwrap()
        );
        let at = (chrono::Utc::now() + chrono::Duration::days(40)).to_rfc3339();
        let out = crate::support::recur_cli(&app, &[], &["run-cycle", "--at", &at]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success(),
            "a failed tenant makes the command fail: {stdout}"
        );
        assert!(
            stdout.contains(&format!("{} error:", app.tenant_id)),
            "{stdout}"
        );
        let b = app
            .send(
                reqwest::Method::GET,
                "/v1/invoices",
                Some(&other),
                None,
                None,
            )
            .await
            .ok();
        assert_eq!(
            b["data"].as_array().unwrap().len(),
            2,
            "the other tenant was billed: {stdout}"
        );
        let e = app.get("/v1/events?type=tenant.run_failed").await.ok();
        assert_eq!(e["data"].as_array().unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        run(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        run(Backend::Postgres).await;
    }
}

/// A tenant whose provider does not answer holds one of the pass's places, never the other
/// tenants' billing and charges.
mod a_tenant_whose_provider_hangs_does_not_delay_the_others {
    use super::*;
    use crate::fake_stripe::{self, FakeStripe, Fault};
    use recur::config::Secret;
    use recur::domain::tenant::Mode;

    async fn run(backend: Backend) {
        let fake = FakeStripe::start().await;
        let uri = fake.uri();
        let Some(app) = TestApp::spawn_with(backend, Mode::Test, move |c| {
            c.stripe.api_base = uri;
            c.stripe.secret_key = Some(Secret::new(fake_stripe::SECRET_KEY));
            c.stripe.timeout_ms = 30_000;
            c.stripe.max_network_retries = 0;
        })
        .await
        else {
            return;
        };
        let price = app.monthly_price(1000).await;
        for _ in 0..3 {
            let c = app
                .post("/v1/customers", json!({"name": "Stuck", "currency": "EUR", "payment_method": {"provider": "stripe", "token": "pm_card_visa", "customer": "cus_fake"}}))
                .await
                .ok();
            app.subscription(&id(&c), &price).await;
        }
        let other = app.other_tenant_key().await;
        let post = |path: &'static str, body: Value| {
            let (app, other) = (&app, &other);
            async move {
                app.send(
                    reqwest::Method::POST,
                    path,
                    Some(other),
                    None,
                    Some(&body.to_string()),
                )
                .await
                .ok()
            }
        };
        let c = post("/v1/customers", json!({"name": "B", "currency": "EUR", "payment_method": {"provider": "sandbox", "token": "tok_visa"}})).await;
        let p = post("/v1/prices", json!({"product": "B", "currency": "EUR", "unit_amount": 500, "recurring": {"interval": "month"}})).await;
        post(
            "/v1/subscriptions",
            json!({"customer": c["id"], "items": [{"price": p["id"]}]}),
        )
        .await;
        let before = app
            .send(
                reqwest::Method::GET,
                "/v1/invoices",
                Some(&other),
                None,
                None,
            )
            .await
            .ok();
        assert_eq!(
            before["data"][0]["status"], "open",
            "charged only by the pass"
        );
        fake.set_faults(|_, _| Some(Fault::Hang));
        let config = recur::config::Config::load(
            None,
            &recur::config::Overrides {
                database_url: Some(app.url.clone()),
                bind: None,
                log_format: None,
            },
        )
        .unwrap();
        let (db, payments) = (app.db.clone(), app.payments.clone());
        let pass = tokio::spawn(async move {
            recur::scheduler::run_once(&db, &config, &payments, None, None).await
        });
        let started = std::time::Instant::now();
        let paid = loop {
            let list = app
                .send(
                    reqwest::Method::GET,
                    "/v1/invoices",
                    Some(&other),
                    None,
                    None,
                )
                .await
                .ok();
            if list["data"][0]["status"] == "paid" {
                break true;
            }
            if started.elapsed() > std::time::Duration::from_secs(15) {
                break false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert!(
            !pass.is_finished(),
            "the hanging provider is still being waited for"
        );
        pass.abort();
        assert!(
            paid,
            "the other tenant was charged while the first tenant's provider hung"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        run(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        run(Backend::Postgres).await;
    }
}
