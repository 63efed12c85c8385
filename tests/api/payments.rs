//! Charging and dunning through the sandbox provider and the test clock, for every token.

use crate::{TestApp, both};
use recur::domain::ids::InvoiceId;
use serde_json::{Value, json};

/// Fixes the clock on 2027-03-01 and subscribes a customer paying with `token`.
async fn subscribed(app: &TestApp, token: &str) -> (String, String) {
    app.set_clock("2027-03-01T00:00:00Z").await;
    subscribe(app, token).await
}

async fn subscribe(app: &TestApp, token: &str) -> (String, String) {
    let c = app
        .post("/v1/customers", json!({"name": "Payer", "currency": "EUR", "payment_method": {"provider": "sandbox", "token": token}}))
        .await
        .ok();
    let price = app.monthly_price(2500).await;
    let s = app
        .post(
            "/v1/subscriptions",
            json!({"customer": c["id"], "items": [{"price": price}]}),
        )
        .await
        .ok();
    (
        c["id"].as_str().unwrap().to_owned(),
        s["id"].as_str().unwrap().to_owned(),
    )
}

async fn payments_of(app: &TestApp, invoice: &str) -> Vec<Value> {
    let mut v = app
        .get(&format!("/v1/payments?invoice={invoice}&limit=100"))
        .await
        .ok()["data"]
        .as_array()
        .unwrap()
        .clone();
    v.reverse();
    v
}

fn statuses(p: &[Value]) -> Vec<&str> {
    p.iter().map(|x| x["status"].as_str().unwrap()).collect()
}

async fn status_of(app: &TestApp, sub: &str) -> String {
    app.get(&format!("/v1/subscriptions/{sub}")).await.ok()["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

both!(
    async fn tok_visa_pays_every_invoice_once(app: TestApp) {
        let (_, sub) = subscribed(&app, "tok_visa").await;
        app.advance("2028-03-01T00:00:00Z").await;
        let invoices = app.invoices_of(&sub).await;
        assert_eq!(invoices.len(), 13);
        for inv in &invoices {
            assert_eq!(
                (
                    inv["status"].as_str(),
                    inv["amount_due"].as_i64(),
                    inv["attempt_count"].as_i64()
                ),
                (Some("paid"), Some(0), Some(1))
            );
            let id = InvoiceId::parse(inv["id"].as_str().unwrap()).unwrap();
            assert_eq!(
                app.payments.sandbox.charges_for(&id),
                1,
                "charged exactly once"
            );
            let p = payments_of(&app, inv["id"].as_str().unwrap()).await;
            assert_eq!(statuses(&p), ["succeeded"]);
            assert!(p[0]["id"].as_str().unwrap().starts_with("pay_"));
        }
        assert_eq!(
            app.get("/v1/events?type=payment.succeeded&limit=100")
                .await
                .ok()["data"]
                .as_array()
                .unwrap()
                .len(),
            13
        );
        assert_eq!(status_of(&app, &sub).await, "active");
    }
);

both!(
    async fn tok_insufficient_funds_is_retried_on_days_1_3_5_7_then_written_off(app: TestApp) {
        let (_, sub) = subscribed(&app, "tok_insufficient_funds").await;
        app.advance("2027-03-02T12:00:00Z").await;
        let inv = &app.invoices_of(&sub).await[0];
        assert_eq!(
            (inv["status"].as_str(), inv["attempt_count"].as_i64()),
            (Some("open"), Some(2))
        );
        assert_eq!(inv["next_payment_attempt"], "2027-03-04T00:00:00Z");
        assert_eq!(status_of(&app, &sub).await, "past_due");
        app.advance("2027-03-20T00:00:00Z").await;
        let inv = &app.invoices_of(&sub).await[0];
        assert_eq!(
            (inv["status"].as_str(), inv["attempt_count"].as_i64()),
            (Some("uncollectible"), Some(5))
        );
        assert_eq!(inv["next_payment_attempt"], Value::Null);
        let p = payments_of(&app, inv["id"].as_str().unwrap()).await;
        assert_eq!(statuses(&p), ["failed"; 5]);
        let days: Vec<&str> = p
            .iter()
            .map(|x| &x["created"].as_str().unwrap()[..10])
            .collect();
        assert_eq!(
            days,
            [
                "2027-03-01",
                "2027-03-02",
                "2027-03-04",
                "2027-03-06",
                "2027-03-08"
            ]
        );
        assert_eq!(p[0]["decline_code"], "insufficient_funds");
        assert_eq!(status_of(&app, &sub).await, "canceled");
        app.advance("2027-06-01T00:00:00Z").await;
        assert_eq!(
            app.invoices_of(&sub).await.len(),
            1,
            "a canceled subscription bills no more"
        );
    }
);

both!(
    async fn tok_expired_card_waits_for_a_new_payment_method(app: TestApp) {
        let (customer, sub) = subscribed(&app, "tok_expired_card").await;
        app.advance("2027-04-10T00:00:00Z").await;
        let invoices = app.invoices_of(&sub).await;
        assert_eq!(invoices.len(), 2);
        for inv in &invoices {
            assert_eq!(
                (inv["status"].as_str(), inv["attempt_count"].as_i64()),
                (Some("open"), Some(1)),
                "hard declines are not retried"
            );
            assert_eq!(inv["next_payment_attempt"], Value::Null);
        }
        assert_eq!(status_of(&app, &sub).await, "past_due");
        app.patch(
            &format!("/v1/customers/{customer}"),
            json!({"payment_method": {"provider": "sandbox", "token": "tok_visa"}}),
        )
        .await
        .ok();
        for inv in app.invoices_of(&sub).await {
            assert_eq!(
                (inv["status"].as_str(), inv["attempt_count"].as_i64()),
                (Some("paid"), Some(2)),
                "a new method pays at once"
            );
        }
        assert_eq!(status_of(&app, &sub).await, "active");
    }
);

both!(
    async fn tok_retry_succeeds_on_the_first_retry(app: TestApp) {
        let (_, sub) = subscribed(&app, "tok_retry_succeeds").await;
        app.advance("2027-03-01T12:00:00Z").await;
        assert_eq!(status_of(&app, &sub).await, "past_due");
        app.advance("2027-03-03T00:00:00Z").await;
        let inv = &app.invoices_of(&sub).await[0];
        assert_eq!(
            (inv["status"].as_str(), inv["attempt_count"].as_i64()),
            (Some("paid"), Some(2))
        );
        assert_eq!(
            statuses(&payments_of(&app, inv["id"].as_str().unwrap()).await),
            ["failed", "succeeded"]
        );
        assert_eq!(status_of(&app, &sub).await, "active");
    }
);

both!(
    async fn tok_timeout_is_resolved_by_asking_never_by_charging_again(app: TestApp) {
        let (_, sub) = subscribed(&app, "tok_timeout").await;
        app.advance("2027-03-02T00:00:00Z").await;
        let inv = &app.invoices_of(&sub).await[0];
        assert_eq!(
            (inv["status"].as_str(), inv["attempt_count"].as_i64()),
            (Some("paid"), Some(1))
        );
        assert_eq!(
            statuses(&payments_of(&app, inv["id"].as_str().unwrap()).await),
            ["succeeded"]
        );
        let id = InvoiceId::parse(inv["id"].as_str().unwrap()).unwrap();
        assert_eq!(app.payments.sandbox.charges_for(&id), 1);
    }
);

both!(
    async fn pay_retries_now_and_refuses_settled_invoices(app: TestApp) {
        let (_, sub) = subscribed(&app, "tok_insufficient_funds").await;
        app.advance("2027-03-01T01:00:00Z").await;
        let id = app.invoices_of(&sub).await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let inv = app
            .post(&format!("/v1/invoices/{id}/pay"), json!({}))
            .await
            .ok();
        assert_eq!(
            (inv["status"].as_str(), inv["attempt_count"].as_i64()),
            (Some("open"), Some(2))
        );
        let (_, paid_sub) = subscribe(&app, "tok_visa").await;
        app.advance("2027-03-01T02:00:00Z").await;
        let paid = app.invoices_of(&paid_sub).await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = app
            .post(&format!("/v1/invoices/{paid}/pay"), json!({}))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (422, "invoice_invalid_state")
        );
    }
);

both!(
    async fn the_sandbox_reconciles_in_process(app: TestApp) {
        // No clock set: the tenant's clock and the sandbox's wall clock agree.
        let c = app.customer().await;
        let price = app.monthly_price(2500).await;
        for _ in 0..3 {
            app.post(
                "/v1/subscriptions",
                json!({"customer": c, "items": [{"price": price}]}),
            )
            .await
            .ok();
        }
        let later = (chrono::Utc::now() + chrono::Duration::minutes(5))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        app.advance(&later).await;
        let mut tx = app.db.read().await.unwrap();
        let tenant = recur::store::tenants::find_tenant(&mut tx, &app.tenant_id)
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        let (from, to) = (
            chrono::Utc::now() - chrono::Duration::hours(1),
            chrono::Utc::now() + chrono::Duration::hours(1),
        );
        let report = recur::payments::reconcile::reconcile(
            &app.db,
            &app.payments,
            &tenant,
            recur::domain::customer::Provider::Sandbox,
            from,
            to,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(
            (report.provider_charges, report.matched, report.our_payments),
            (3, 3, 3)
        );
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        let done = app
            .get("/v1/events?type=reconciliation.completed")
            .await
            .ok();
        assert_eq!(done["data"].as_array().unwrap().len(), 1);
    }
);
