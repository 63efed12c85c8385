//! Alerts fire once when their threshold is crossed, and not otherwise.

use crate::both;
use crate::support::{Backend, TestApp};
use serde_json::json;

async fn spawn(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, recur::domain::tenant::Mode::Test, |c| {
        c.alerts.payment_failure_min_attempts = 3;
        c.alerts.payment_failure_rate = 0.5;
        c.alerts.unsettled_after_mins = -1;
    })
    .await
}

async fn tenant(app: &TestApp) -> recur::domain::tenant::Tenant {
    let mut tx = app.db.read().await.unwrap();
    let t = recur::store::tenants::find_tenant(&mut tx, &app.tenant_id)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    t
}

async fn evaluate(app: &TestApp) -> usize {
    recur::services::alerts::evaluate(&app.db, &app.config, &tenant(app).await)
        .await
        .unwrap()
}

async fn subscribe(app: &TestApp, token: &str, price: &str) {
    let c = app
        .post("/v1/customers", json!({"name": "C", "currency": "EUR", "payment_method": {"provider": "sandbox", "token": token}}))
        .await
        .ok();
    app.post(
        "/v1/subscriptions",
        json!({"customer": c["id"], "items": [{"price": price}]}),
    )
    .await
    .ok();
}

both! {
    async fn alerts_fire_once(app: TestApp) {
        let backend = if app.url.starts_with("sqlite") { Backend::Sqlite } else { Backend::Postgres };
        let Some(app) = spawn(backend).await else { return };
        app.set_clock("2027-01-01T00:00:00Z").await;
        let price = app.monthly_price(1_000).await;
        // Healthy payments: nothing fires.
        for _ in 0..3 {
            subscribe(&app, "tok_visa", &price).await;
        }
        app.advance("2027-01-01T01:00:00Z").await;
        assert_eq!(evaluate(&app).await, 0);
        assert!(app.get("/v1/alerts").await.ok()["data"].as_array().unwrap().is_empty());
        // Declines cross 50 % of the last hour's attempts: fires, once.
        for _ in 0..4 {
            subscribe(&app, "tok_insufficient_funds", &price).await;
        }
        app.advance("2027-01-01T01:30:00Z").await;
        assert_eq!(evaluate(&app).await, 1);
        assert_eq!(evaluate(&app).await, 0, "fires once while it holds");
        let alerts = app.get("/v1/alerts").await.ok();
        let a = &alerts["data"][0];
        assert_eq!((a["kind"].as_str(), a["status"].as_str()), (Some("payment_failure_rate"), Some("firing")));
        assert!(a["message"].as_str().unwrap().starts_with("4 of 4 payment attempts in the last 60 minutes"), "{a}");
        assert_eq!(app.count_events("alert.payment_failure_rate").await, 1);
        // An hour later the window holds no attempts: resolved.
        app.advance("2027-01-01T03:00:00Z").await;
        evaluate(&app).await;
        let a = &app.get("/v1/alerts").await.ok()["data"][0];
        assert_eq!(a["status"], "resolved");
        assert!(a["resolved_at"].is_string());
        // An attempt whose outcome stays unknown (the provider never answers; the sandbox
        // always would, so the row is set as a silent provider leaves it).
        let sql = "UPDATE payment_attempts SET status = 'unknown', sent_at = $1, completed_at = NULL
                   WHERE id = (SELECT MAX(id) FROM payment_attempts)";
        let sent = chrono::Utc::now() - chrono::Duration::hours(1);
        match &app.db {
            recur::store::Db::Sqlite(p, _) => sqlx::query(sql).bind(sent).execute(p).await.map(|_| ()),
            recur::store::Db::Postgres(p) => sqlx::query(sql).bind(sent).execute(p).await.map(|_| ()),
        }
        .unwrap();
        assert_eq!(evaluate(&app).await, 1);
        assert_eq!(evaluate(&app).await, 0);
        assert_eq!(app.count_events("alert.unsettled_attempts").await, 1);
        // A pass longer than the scheduler's interval: a one-off alert each time.
        let t = tenant(&app).await;
        let (took, every) = (std::time::Duration::from_secs(75), std::time::Duration::from_secs(60));
        recur::services::alerts::overrun(&app.db, &t, took, every).await.unwrap();
        let a = &app.get("/v1/alerts").await.ok()["data"][0];
        assert_eq!((a["kind"].as_str(), a["status"].as_str()), (Some("billing_overrun"), Some("fired")));
        assert!(a["message"].as_str().unwrap().contains("75.0 s, longer than the scheduler's interval of 60 s"), "{a}");
    }
}
