//! Defects found by reading the engine as an attacker and as a bad day would: each test here
//! failed before its fix.

use crate::both;
use crate::fake_stripe::{self, FakeStripe, Fault};
use crate::support::{Backend, TestApp, WEBHOOK_SECRET};
use recur::config::Secret;
use recur::domain::tenant::Mode;
use serde_json::{Value, json};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

async fn payments_of(app: &TestApp, invoice: &str) -> Vec<Value> {
    app.get(&format!("/v1/payments?invoice={invoice}&limit=100"))
        .await
        .ok()["data"]
        .as_array()
        .unwrap()
        .clone()
}

async fn customer_with(app: &TestApp, token: &str) -> String {
    id(&app
        .post(
            "/v1/customers",
            json!({"name": "T", "currency": "EUR", "payment_method": {"provider": "sandbox", "token": token}}),
        )
        .await
        .ok())
}

both!(
    async fn pay_charges_only_the_invoice_it_names(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let p = app.monthly_price(1000).await;
        let a = app
            .subscription(&customer_with(&app, "tok_visa").await, &p)
            .await;
        let b = app
            .subscription(&customer_with(&app, "tok_visa").await, &p)
            .await;
        let ia = app.invoices_of(&id(&a)).await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let ib = app.invoices_of(&id(&b)).await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let paid = app
            .post(&format!("/v1/invoices/{ia}/pay"), json!({}))
            .await
            .ok();
        assert_eq!(paid["status"], "paid");
        assert!(
            payments_of(&app, &ib).await.is_empty(),
            "a request charges its own invoice only"
        );
        let other = app.get(&format!("/v1/invoices/{ib}")).await.ok();
        assert_eq!(other["status"], "open");
    }
);

both!(
    async fn an_invoice_cannot_be_voided_under_a_payment_in_flight(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let p = app.monthly_price(1000).await;
        let s = app
            .subscription(&customer_with(&app, "tok_timeout").await, &p)
            .await;
        let inv = id(&app.invoices_of(&id(&s)).await[0]);
        let paid = app
            .post(&format!("/v1/invoices/{inv}/pay"), json!({}))
            .await
            .ok();
        assert_eq!(paid["status"], "open");
        let statuses: Vec<Value> = payments_of(&app, &inv)
            .await
            .iter()
            .map(|p| p["status"].clone())
            .collect();
        assert_eq!(statuses, [json!("unknown")]);
        let void = app
            .post(&format!("/v1/invoices/{inv}/void"), json!({}))
            .await;
        assert_eq!(
            (void.status.as_u16(), void.error_code()),
            (409, "payment_in_flight"),
            "{}",
            void.body
        );
        assert_eq!(
            app.get(&format!("/v1/invoices/{inv}")).await.ok()["status"],
            "open"
        );
    }
);

both!(
    async fn voiding_an_invoice_stops_its_dunning(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let p = app.monthly_price(1000).await;
        let s = app
            .subscription(&customer_with(&app, "tok_insufficient_funds").await, &p)
            .await;
        app.advance("2027-01-01T01:00:00Z").await;
        let inv = app.invoices_of(&id(&s)).await[0].clone();
        assert!(inv["next_payment_attempt"].is_string(), "{inv}");
        let void = app
            .post(&format!("/v1/invoices/{}/void", id(&inv)), json!({}))
            .await
            .ok();
        assert_eq!(
            (void["status"].as_str(), &void["next_payment_attempt"]),
            (Some("void"), &Value::Null)
        );
        let sub = app.get(&format!("/v1/subscriptions/{}", id(&s))).await.ok();
        assert_eq!(
            sub["status"], "active",
            "nothing else is owed: the subscription is active again"
        );
        app.advance("2027-01-20T00:00:00Z").await;
        assert_eq!(
            payments_of(&app, &id(&inv)).await.len(),
            1,
            "no retry of a void invoice"
        );
    }
);

both!(
    async fn usage_stamped_into_an_invoiced_period_is_refused(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let metered = app.metered_price().await;
        let s = app.subscription(&customer, &metered).await;
        let item = s["items"][0]["id"].as_str().unwrap().to_owned();
        app.advance("2027-02-10T00:00:00Z").await;
        let before = app.row_counts().await;
        let late = app
            .post("/v1/usage_records", json!({"subscription_item": item, "quantity": 5, "timestamp": "2027-01-20T00:00:00Z"}))
            .await;
        assert_eq!(
            (late.status.as_u16(), late.error_code()),
            (422, "usage_period_closed"),
            "{}",
            late.body
        );
        assert_eq!(late.body["error"]["param"], "timestamp");
        assert!(
            late.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("2027-02-01")
        );
        assert_eq!(
            app.row_counts().await,
            before,
            "refused usage writes nothing"
        );
        app.post(
            "/v1/usage_records",
            json!({"subscription_item": item, "quantity": 5, "timestamp": "2027-02-01T00:00:00Z"}),
        )
        .await
        .ok();
    }
);

both!(
    async fn the_test_clock_stops_before_the_end_of_time(app: TestApp) {
        app.set_clock("9989-06-01T00:00:00Z").await;
        let customer = app.customer().await;
        let p = app
            .post("/v1/prices", json!({"product": "Triennial", "currency": "EUR", "unit_amount": 9000, "recurring": {"interval": "year", "interval_count": 3}}))
            .await
            .ok();
        let s = app.subscription(&customer, &id(&p)).await;
        let r = app.advance("9989-12-31T00:00:00Z").await;
        assert_eq!(r["invoices_created"], 0);
        let past = app
            .post(
                "/v1/test_clock/advance",
                json!({"to": "9990-01-01T00:00:00Z"}),
            )
            .await;
        assert_eq!(
            (past.status.as_u16(), past.body["error"]["param"].as_str()),
            (400, Some("to")),
            "{}",
            past.body
        );
        let anchor = app
            .post("/v1/subscriptions", json!({"customer": customer, "items": [{"price": id(&p)}], "billing_cycle_anchor": "1969-12-31T00:00:00Z"}))
            .await;
        assert_eq!(
            (
                anchor.status.as_u16(),
                anchor.body["error"]["param"].as_str()
            ),
            (400, Some("billing_cycle_anchor"))
        );
        assert_eq!(
            app.invoices_of(&id(&s)).await.len(),
            1,
            "one invoice for the one period"
        );
        let s = app.get(&format!("/v1/subscriptions/{}", id(&s))).await.ok();
        assert_eq!(
            &s["current_period_end"].as_str().unwrap()[..10],
            "9992-06-01"
        );
    }
);

both!(
    async fn concurrent_item_removals_never_leave_a_subscription_empty(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let mut prices = Vec::new();
        for amount in [1000, 2000, 3000] {
            prices.push(app.monthly_price(amount).await);
        }
        for round in 0..8 {
            let s = app
                .post("/v1/subscriptions", json!({"customer": customer, "items": [{"price": prices[0]}, {"price": prices[1]}], "proration_behavior": "none"}))
                .await
                .ok();
            let path = format!("/v1/subscriptions/{}", id(&s));
            let drop_item = |i: usize| {
                let (app, path, item) = (&app, path.clone(), s["items"][i]["id"].clone());
                async move {
                    app.patch(&path, json!({"items": [{"id": item, "deleted": true}]}))
                        .await
                }
            };
            let (a, b) = tokio::join!(drop_item(0), drop_item(1));
            let ok = [a.status.is_success(), b.status.is_success()];
            assert_eq!(
                ok.iter().filter(|o| **o).count(),
                1,
                "round {round}: exactly one removal wins: {} {}",
                a.body,
                b.body
            );
            let after = app.get(&path).await.ok();
            assert_eq!(
                after["items"].as_array().unwrap().len(),
                1,
                "round {round}: {after}"
            );
        }
    }
);

/// A test tenant's server charging through a fake Stripe, resolving pending attempts older
/// than one second.
async fn stripe_app(backend: Backend) -> Option<(TestApp, FakeStripe)> {
    let fake = FakeStripe::start().await;
    let uri = fake.uri();
    let app = TestApp::spawn_with(backend, Mode::Test, move |c| {
        c.stripe.api_base = uri;
        c.stripe.secret_key = Some(Secret::new(fake_stripe::SECRET_KEY));
        c.stripe.webhook_secrets = vec![Secret::new(WEBHOOK_SECRET)];
        c.stripe.timeout_ms = 2000;
        c.stripe.retry_base_ms = 2;
        c.stripe.retry_max_ms = 20;
        c.dunning.stale_pending_secs = 1;
    })
    .await?;
    Some((app, fake))
}

/// The process dies between committing an attempt and recording its outcome (the collecting
/// task is dropped mid-call while Stripe charges): the attempt stays `pending`, and the next
/// pass resolves it by asking Stripe — paid once, never charged again.
mod an_attempt_cut_off_mid_charge_is_resolved_and_applied {
    use super::*;

    async fn run(backend: Backend) {
        let Some((app, fake)) = stripe_app(backend).await else {
            return;
        };
        app.set_clock("2027-03-01T00:00:00Z").await;
        let price = app.monthly_price(2500).await;
        let c = app
            .post("/v1/customers", json!({"name": "P", "currency": "EUR", "payment_method": {"provider": "stripe", "token": "pm_card_visa", "customer": "cus_fake"}}))
            .await
            .ok();
        let s = app.subscription(&id(&c), &price).await;
        let inv = id(&app.invoices_of(&id(&s)).await[0]);
        fake.set_faults(|_, _| Some(Fault::SlowAfterCharge));
        let tenant = app.tenant().await;
        let now = tenant.clock_time.unwrap();
        let (db, payments) = (app.db.clone(), app.payments.clone());
        let task = tokio::spawn(async move {
            recur::payments::collect::collect_due(&db, &tenant, &payments, now).await
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        task.abort();
        let _ = task.await;
        let p = payments_of(&app, &inv).await;
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0]["status"], "pending",
            "the outcome was lost with the task"
        );
        fake.set_faults(|_, _| None);
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        app.advance("2027-03-01T01:00:00Z").await;
        let p = payments_of(&app, &inv).await;
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0]["status"], "succeeded");
        assert_eq!(
            app.get(&format!("/v1/invoices/{inv}")).await.ok()["status"],
            "paid"
        );
        assert_eq!(
            fake.state.lock().unwrap().charges_per_invoice().get(&inv),
            Some(&1)
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

both!(
    async fn items_are_limited_per_subscription_not_per_request(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let mut prices = Vec::new();
        for i in 0..21 {
            prices.push(app.monthly_price(100 + i).await);
        }
        let items: Vec<Value> = prices[..20].iter().map(|p| json!({"price": p})).collect();
        let s = app
            .post(
                "/v1/subscriptions",
                json!({"customer": customer, "items": items}),
            )
            .await
            .ok();
        let before = app.row_counts().await;
        let more = app
            .patch(
                &format!("/v1/subscriptions/{}", id(&s)),
                json!({"items": [{"price": prices[20]}]}),
            )
            .await;
        assert_eq!(
            (more.status.as_u16(), more.body["error"]["param"].as_str()),
            (400, Some("items")),
            "{}",
            more.body
        );
        assert_eq!(app.row_counts().await, before);
    }
);

both!(
    async fn two_advances_of_one_clock_never_run_together(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let p = app.monthly_price(1000).await;
        for _ in 0..30 {
            app.subscription(&customer, &p).await;
        }
        let go = |to: &'static str| {
            let app = &app;
            async move {
                app.post("/v1/test_clock/advance", json!({ "to": to }))
                    .await
            }
        };
        let (a, b) = tokio::join!(go("2028-01-01T00:00:00Z"), go("2028-01-01T00:00:00Z"));
        let codes = [a.status.as_u16(), b.status.as_u16()];
        assert!(codes.contains(&200), "{codes:?}");
        let invoices = app.get("/v1/invoices?limit=100").await.ok();
        assert!(invoices["has_more"].as_bool().unwrap());
        let r = app
            .get("/v1/events?type=invoice.created&limit=100")
            .await
            .ok();
        assert!(!r["data"].as_array().unwrap().is_empty());
        if codes.contains(&409) {
            let busy = if a.status.as_u16() == 409 { &a } else { &b };
            assert_eq!(busy.error_code(), "clock_advance_in_progress");
        }
        // Whatever interleaving happened, each subscription has one invoice per month.
        let s = app
            .get(&format!("/v1/subscriptions?customer={customer}&limit=100"))
            .await
            .ok();
        for sub in s["data"].as_array().unwrap() {
            assert_eq!(app.invoices_of(sub["id"].as_str().unwrap()).await.len(), 13);
        }
    }
);

both!(
    async fn a_clock_lease_left_by_a_dead_process_is_taken_over_at_once(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let tenant = recur::domain::ids::TenantId::parse(&app.tenant_id).unwrap();
        let dead = format!("{}:4194303:deadbeef:0", recur::store::leases::this_host());
        assert!(
            recur::store::leases::acquire(
                &app.db,
                &tenant,
                "test_clock",
                &dead,
                chrono::Duration::minutes(10)
            )
            .await
            .unwrap()
        );
        let r = app
            .post(
                "/v1/test_clock/advance",
                json!({"to": "2027-01-02T00:00:00Z"}),
            )
            .await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.body);
        // A live holder elsewhere in this process still blocks.
        let live = format!("{}:0", recur::store::leases::holder_name());
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
        let busy = app
            .post(
                "/v1/test_clock/advance",
                json!({"to": "2027-01-03T00:00:00Z"}),
            )
            .await;
        assert_eq!(
            (busy.status.as_u16(), busy.error_code()),
            (409, "clock_advance_in_progress")
        );
    }
);

both!(
    async fn amounts_nobody_can_bill_or_charge_are_refused_before_anything_happens(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let huge = app
            .post("/v1/prices", json!({"product": "Huge", "currency": "EUR", "unit_amount": 1_000_000_000_000i64, "recurring": {"interval": "month"}}))
            .await
            .ok();
        let before = app.row_counts().await;
        let r = app
            .post("/v1/subscriptions", json!({"customer": customer, "items": [{"price": id(&huge), "quantity": 1_000_000_000}]}))
            .await;
        assert_eq!(
            (
                r.status.as_u16(),
                r.error_code(),
                r.body["error"]["param"].as_str()
            ),
            (422, "amount_too_large", Some("items[0].quantity")),
            "{}",
            r.body
        );
        assert_eq!(app.row_counts().await, before, "nothing written");
        // One unit bills 10^12 (within a period's limit) but no provider charges that much.
        let s = app.subscription(&customer, &id(&huge)).await;
        for behavior in ["always_invoice", "create_prorations"] {
            let p = app
                .patch(&format!("/v1/subscriptions/{}", id(&s)), json!({"items": [{"id": s["items"][0]["id"], "quantity": 1_000_000_000}], "proration_behavior": behavior}))
                .await;
            assert_eq!(
                (p.status.as_u16(), p.error_code()),
                (422, "amount_too_large"),
                "{behavior}: {}",
                p.body
            );
        }
        app.advance("2027-01-01T01:00:00Z").await;
        let inv = app.invoices_of(&id(&s)).await[0].clone();
        let p = payments_of(&app, &id(&inv)).await;
        assert_eq!(
            (p[0]["status"].as_str(), p[0]["decline_code"].as_str()),
            (Some("failed"), Some("amount_too_large"))
        );
        let inv_id = recur::domain::ids::InvoiceId::parse(&id(&inv)).unwrap();
        assert_eq!(app.payments.sandbox.charges_for(&inv_id), 0, "never sent");
    }
);

both!(
    async fn an_overdue_sent_invoice_makes_its_subscription_past_due(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let p = app.monthly_price(1000).await;
        let s = app
            .post("/v1/subscriptions", json!({"customer": customer, "items": [{"price": p}], "collection_method": "send_invoice", "days_until_due": 7}))
            .await
            .ok();
        app.advance("2027-01-07T00:00:00Z").await;
        assert_eq!(
            app.get(&format!("/v1/subscriptions/{}", id(&s))).await.ok()["status"],
            "active"
        );
        app.advance("2027-01-09T00:00:00Z").await;
        assert_eq!(
            app.get(&format!("/v1/subscriptions/{}", id(&s))).await.ok()["status"],
            "past_due"
        );
        // The customer has a card: /pay charges it, and the subscription is active again.
        let inv = id(&app.invoices_of(&id(&s)).await[0]);
        let paid = app
            .post(&format!("/v1/invoices/{inv}/pay"), json!({}))
            .await
            .ok();
        assert_eq!(paid["status"], "paid");
        assert_eq!(
            app.get(&format!("/v1/subscriptions/{}", id(&s))).await.ok()["status"],
            "active"
        );
        // Without a payment method there is nothing to charge.
        let bare = app
            .post(
                "/v1/customers",
                json!({"name": "No card", "currency": "EUR"}),
            )
            .await
            .ok();
        let s2 = app
            .post("/v1/subscriptions", json!({"customer": id(&bare), "items": [{"price": p}], "collection_method": "send_invoice", "days_until_due": 7}))
            .await
            .ok();
        let inv2 = id(&app.invoices_of(&id(&s2)).await[0]);
        let r = app
            .post(&format!("/v1/invoices/{inv2}/pay"), json!({}))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (422, "payment_method_missing")
        );
    }
);

both!(
    async fn unpaid_subscriptions_invoice_but_charge_only_when_the_customer_acts(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        app.send(
            reqwest::Method::PUT,
            "/v1/settings/dunning",
            Some(&app.key),
            None,
            Some(&json!({"retry_days": [1], "final_action": "mark_unpaid"}).to_string()),
        )
        .await
        .ok();
        let customer = customer_with(&app, "tok_insufficient_funds").await;
        let p = app.monthly_price(1000).await;
        let s = app.subscription(&customer, &p).await;
        app.advance("2027-01-05T00:00:00Z").await;
        assert_eq!(
            app.get(&format!("/v1/subscriptions/{}", id(&s))).await.ok()["status"],
            "unpaid"
        );
        app.advance("2027-02-05T00:00:00Z").await;
        let inv = app.invoices_of(&id(&s)).await;
        assert_eq!(inv.len(), 2, "invoices are still made");
        assert!(
            payments_of(&app, &id(&inv[1])).await.is_empty(),
            "but not charged while unpaid"
        );
        app.patch(
            &format!("/v1/customers/{customer}"),
            json!({"payment_method": {"provider": "sandbox", "token": "tok_visa"}}),
        )
        .await
        .ok();
        let feb = app.get(&format!("/v1/invoices/{}", id(&inv[1]))).await.ok();
        assert_eq!(
            feb["status"], "paid",
            "a new method pays what waited: {feb}"
        );
        assert_eq!(
            app.get(&format!("/v1/subscriptions/{}", id(&s))).await.ok()["status"],
            "active"
        );
    }
);
