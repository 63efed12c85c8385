//! Charging through the Stripe client and the fake Stripe, end to end through the server:
//! declines on the dunning plan, hard declines waiting for a new method, faults that never
//! double-charge, refunds through credit notes, and `recur reconcile`.

use crate::fake_stripe::{self, SECRET_KEY};
use crate::support::recur_cli;
use crate::{TestApp, both_stripe};
use serde_json::{Value, json};
use std::collections::HashMap;

async fn stripe_customer(app: &TestApp, pm: &str) -> String {
    let c = app
        .post(
            "/v1/customers",
            json!({"name": "Payer", "currency": "EUR",
                   "payment_method": {"provider": "stripe", "token": pm, "customer": "cus_fake"}}),
        )
        .await
        .ok();
    c["id"].as_str().unwrap().to_owned()
}

async fn subscribe(app: &TestApp, customer: &str, price: &str) -> String {
    let s = app
        .post(
            "/v1/subscriptions",
            json!({"customer": customer, "items": [{"price": price}]}),
        )
        .await
        .ok();
    s["id"].as_str().unwrap().to_owned()
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

both_stripe!(
    async fn stripe_declines_follow_the_plan_and_a_new_method_pays_at_once(
        app: TestApp,
        fake: FakeStripe,
    ) {
        app.set_clock("2027-03-01T00:00:00Z").await;
        let price = app.monthly_price(2500).await;
        let good = stripe_customer(&app, "pm_card_visa").await;
        let soft = stripe_customer(&app, "pm_card_visa_chargeDeclinedInsufficientFunds").await;
        let hard = stripe_customer(&app, "pm_card_chargeDeclinedExpiredCard").await;
        let good_sub = subscribe(&app, &good, &price).await;
        let soft_sub = subscribe(&app, &soft, &price).await;
        let hard_sub = subscribe(&app, &hard, &price).await;
        app.advance("2027-03-20T00:00:00Z").await;

        let inv = &app.invoices_of(&good_sub).await[0];
        assert_eq!(inv["status"], "paid");
        let p = payments_of(&app, inv["id"].as_str().unwrap()).await;
        assert_eq!(p.len(), 1);
        assert_eq!(p[0]["provider"], "stripe");
        assert!(p[0]["provider_ref"].as_str().unwrap().starts_with("pi_"));

        // Soft: 1, 3, 5, 7 days after the first failure, then the final action.
        let inv = &app.invoices_of(&soft_sub).await[0];
        assert_eq!(inv["status"], "uncollectible");
        let p = payments_of(&app, inv["id"].as_str().unwrap()).await;
        let codes: Vec<_> = p
            .iter()
            .map(|x| x["decline_code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["insufficient_funds"; 5]);
        let app_sub = app.get(&format!("/v1/subscriptions/{soft_sub}")).await.ok();
        assert_eq!(app_sub["status"], "canceled");

        // Hard: one attempt, then nothing until the method changes; the new one pays at once.
        let inv = &app.invoices_of(&hard_sub).await[0];
        let id = inv["id"].as_str().unwrap().to_owned();
        assert_eq!(inv["status"], "open");
        assert_eq!(payments_of(&app, &id).await.len(), 1);
        assert!(inv["next_payment_attempt"].is_null());
        app.patch(
            &format!("/v1/customers/{hard}"),
            json!({"payment_method": {"provider": "stripe", "token": "pm_card_visa", "customer": "cus_fake"}}),
        )
        .await
        .ok();
        let inv = app.get(&format!("/v1/invoices/{id}")).await.ok();
        assert_eq!(inv["status"], "paid");

        let per_invoice = fake.state.lock().unwrap().charges_per_invoice();
        assert_eq!(per_invoice.len(), 2, "{per_invoice:?}");
        assert!(per_invoice.values().all(|n| *n == 1));
    }
);

both_stripe!(
    async fn a_stripe_customer_without_a_provider_customer_is_refused(
        app: TestApp,
        _fake: FakeStripe,
    ) {
        let before = app.row_counts().await;
        let r = app
            .post(
                "/v1/customers",
                json!({"name": "X", "payment_method": {"provider": "stripe", "token": "pm_card_visa"}}),
            )
            .await;
        assert_eq!(r.status, 400);
        assert_eq!(r.body["error"]["param"], "payment_method");
        assert_eq!(app.row_counts().await, before);
    }
);

// Monthly billing of 170 subscriptions over six renewals (over 1,000 attempts) with about a
// quarter of Stripe's create requests faulted: no invoice charged twice, every charged invoice
// paid, every paid invoice charged, nothing left unknown.
both_stripe!(
    async fn faults_through_the_whole_stack_never_double_charge(app: TestApp, fake: FakeStripe) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        fake.set_faults(fake_stripe::quarter_faulted());
        let price = app.monthly_price(1900).await;
        let mut subs = Vec::new();
        for _ in 0..170 {
            let c = stripe_customer(&app, "pm_card_visa").await;
            subs.push(subscribe(&app, &c, &price).await);
        }
        app.advance("2027-06-01T00:00:00Z").await;
        app.advance("2027-06-02T00:00:00Z").await;
        let ledger = fake.state.lock().unwrap().charges_per_invoice();
        let mut paid = 0;
        for sub in &subs {
            for inv in app.invoices_of(sub).await {
                let id = inv["id"].as_str().unwrap();
                assert_eq!(inv["status"], "paid", "{id}");
                assert_eq!(ledger.get(id), Some(&1), "{id} charged exactly once");
                let p = payments_of(&app, id).await;
                assert!(
                    p.iter()
                        .all(|x| x["status"] != "unknown" && x["status"] != "pending")
                );
                paid += 1;
            }
        }
        assert_eq!(paid, 170 * 6);
        assert_eq!(ledger.len(), paid);
        let s = fake.state.lock().unwrap();
        let faults: u64 = s.faults_injected.values().sum();
        assert!(faults * 100 >= s.creates * 15);
        eprintln!(
            "through the server: {paid} invoices, {} create requests, {faults} faults, 0 double charges",
            s.creates
        );
    }
);

both_stripe!(
    async fn credit_notes_refund_through_stripe_with_their_own_key(app: TestApp, fake: FakeStripe) {
        app.set_clock("2027-03-01T00:00:00Z").await;
        let price = app.monthly_price(2500).await;
        let c = stripe_customer(&app, "pm_card_visa").await;
        let sub = subscribe(&app, &c, &price).await;
        app.advance("2027-03-02T00:00:00Z").await;
        let inv = app.invoices_of(&sub).await[0].clone();
        let id = inv["id"].as_str().unwrap();
        let cn = app
            .post(
                "/v1/credit_notes",
                json!({"invoice": id, "amount": 1000, "reason": "requested_by_customer_is_not_a_reason"}),
            )
            .await;
        assert_eq!(cn.status, 400);
        let cn = app
            .post(
                "/v1/credit_notes",
                json!({"invoice": id, "amount": 1000, "reason": "order_change", "refund": true}),
            )
            .await
            .ok();
        assert_eq!(cn["refund_status"], "succeeded");
        assert_eq!(cn["refund_amount"], 1000);
        assert_eq!(fake.ledger()[0].refunded, 1000);
        let over = app
            .post(
                "/v1/credit_notes",
                json!({"invoice": id, "amount": 1600, "reason": "order_change", "refund": true}),
            )
            .await;
        assert_eq!(over.status, 422);
        assert_eq!(fake.ledger()[0].refunded, 1000);
        let p = payments_of(&app, id).await;
        assert_eq!(p[0]["amount_refunded"], 1000);
    }
);

both_stripe!(
    async fn reconcile_repairs_what_is_safe_and_reports_the_rest(app: TestApp, fake: FakeStripe) {
        // The clock starts at the tenant's creation: provider and attempt times agree.
        let price = app.monthly_price(2500).await;
        let visa = stripe_customer(&app, "pm_card_visa").await;
        let slow = stripe_customer(&app, "pm_card_processing").await;
        let paid_sub = subscribe(&app, &visa, &price).await;
        let odd_sub = subscribe(&app, &visa, &price).await;
        let processing_sub = subscribe(&app, &slow, &price).await;
        let later = (chrono::Utc::now() + chrono::Duration::minutes(5))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        app.advance(&later).await;
        let pi_of = |inv: &Value| inv["id"].as_str().unwrap().to_owned();
        let processing_inv = pi_of(&app.invoices_of(&processing_sub).await[0]);
        let p = payments_of(&app, &processing_inv).await;
        assert_eq!(p[0]["status"], "unknown");
        let pi = p[0]["provider_ref"].as_str().unwrap().to_owned();
        let paid_inv = pi_of(&app.invoices_of(&paid_sub).await[0]);
        let paid_pi = payments_of(&app, &paid_inv).await[0]["provider_ref"]
            .as_str()
            .unwrap()
            .to_owned();
        let odd_inv = pi_of(&app.invoices_of(&odd_sub).await[0]);
        let odd_pi = payments_of(&app, &odd_inv).await[0]["provider_ref"]
            .as_str()
            .unwrap()
            .to_owned();
        {
            let mut s = fake.state.lock().unwrap();
            // The processing charge settled at Stripe, and nobody told us.
            let intent = s.intents.get_mut(&pi).unwrap();
            intent["status"] = json!("succeeded");
            intent["amount_received"] = intent["amount"].clone();
            // Stripe shows another amount for one charge.
            let odd = s.intents.get_mut(&odd_pi).unwrap();
            odd["amount"] = json!(2400);
            odd["amount_received"] = json!(2400);
            // A charge carrying our tenant but no attempt of ours.
            let mut stray = s.intents[&paid_pi].clone();
            stray["id"] = json!("pi_99999999");
            stray["metadata"]["attempt_key"] = json!("in_unknown-attempt-1");
            s.intents.insert("pi_99999999".into(), stray);
        }
        fake.refund_in_dashboard(&paid_pi, 500);
        let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let env = [
            ("RECUR_STRIPE__API_BASE", fake.uri()),
            ("RECUR_STRIPE__SECRET_KEY", SECRET_KEY.to_owned()),
        ];
        let out = recur_cli(
            &app,
            &env,
            &[
                "reconcile",
                "--tenant",
                &app.tenant_id,
                "--from",
                &day,
                "--to",
                &day,
                "--json",
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_str(&stdout).unwrap();
        let kinds: HashMap<&str, bool> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["kind"].as_str().unwrap(),
                    f["repaired"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(kinds.get("repaired_succeeded"), Some(&true), "{report}");
        assert_eq!(kinds.get("repaired_refund"), Some(&true), "{report}");
        assert_eq!(kinds.get("amount_mismatch"), Some(&false), "{report}");
        assert_eq!(
            kinds.get("charge_without_invoice"),
            Some(&false),
            "{report}"
        );
        let inv = app
            .get(&format!("/v1/invoices/{processing_inv}"))
            .await
            .ok();
        assert_eq!(inv["status"], "paid");
        assert_eq!(
            payments_of(&app, &paid_inv).await[0]["amount_refunded"],
            500
        );
        let events = app
            .get("/v1/events?type=reconciliation.discrepancy&limit=100")
            .await
            .ok();
        assert_eq!(events["data"].as_array().unwrap().len(), 2, "{events}");
        // Each discrepancy raised its alert, once.
        assert_eq!(
            app.count_events("alert.reconciliation_discrepancy").await,
            2
        );
        let alerts = app.get("/v1/alerts").await.ok();
        assert!(
            alerts["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["kind"] == "reconciliation_discrepancy" && a["status"] == "fired"),
            "{alerts}"
        );

        // A second run finds the repairs done and the same two things to review.
        let out = recur_cli(
            &app,
            &env,
            &[
                "reconcile",
                "--tenant",
                &app.tenant_id,
                "--from",
                &day,
                "--to",
                &day,
            ],
        );
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(table.contains("repaired: 0"), "{table}");
        assert!(table.contains("amount_mismatch"), "{table}");
        assert!(table.contains("charge_without_invoice"), "{table}");

        let bad = recur_cli(
            &app,
            &env,
            &[
                "reconcile",
                "--tenant",
                &app.tenant_id,
                "--from",
                "2027-02-01",
                "--to",
                "2027-01-01",
            ],
        );
        assert_eq!(bad.status.code(), Some(2));
    }
);

both_stripe!(
    async fn a_success_for_the_wrong_amount_is_held_not_applied(app: TestApp, fake: FakeStripe) {
        app.set_clock("2027-03-01T00:00:00Z").await;
        let price = app.monthly_price(2500).await;
        let c = stripe_customer(&app, "pm_card_wrong_amount").await;
        let s = subscribe(&app, &c, &price).await;
        app.advance("2027-03-10T00:00:00Z").await;
        let inv = app.invoices_of(&s).await[0].clone();
        let inv_id = inv["id"].as_str().unwrap();
        assert_eq!(inv["status"], "open", "never marked paid: {inv}");
        let p = payments_of(&app, inv_id).await;
        assert_eq!(p.len(), 1, "held, not retried: {p:?}");
        assert_eq!(
            (p[0]["status"].as_str(), p[0]["decline_code"].as_str()),
            (Some("failed"), Some("provider_answer_mismatch"))
        );
        assert!(
            p[0]["failure_message"].as_str().unwrap().contains("2499"),
            "{}",
            p[0]
        );
        let d = app
            .get("/v1/events?type=reconciliation.discrepancy")
            .await
            .ok();
        assert_eq!(d["data"].as_array().unwrap().len(), 1);
        assert_eq!(
            d["data"][0]["data"]["object"]["kind"],
            "provider_answer_mismatch"
        );
        assert_eq!(d["data"][0]["data"]["object"]["invoice"], inv_id);
        assert_eq!(fake.ledger().len(), 1);
        // Held for a person: a new payment method does not charge it again.
        app.patch(&format!("/v1/customers/{c}"), json!({"payment_method": {"provider": "stripe", "token": "pm_card_visa", "customer": "cus_fake"}}))
            .await
            .ok();
        assert_eq!(payments_of(&app, inv_id).await.len(), 1);
        assert_eq!(fake.ledger().len(), 1);
    }
);

both_stripe!(
    async fn a_stripe_method_must_be_the_accounts_and_its_customers(
        app: TestApp,
        _fake: FakeStripe,
    ) {
        let before = app.row_counts().await;
        for (pm, customer, code, param) in [
            (
                "pm_nobody_knows",
                "cus_fake",
                "payment_method_unknown",
                "payment_method.token",
            ),
            (
                "pm_card_visa",
                "cus_nobody",
                "payment_method_unknown",
                "payment_method.customer",
            ),
            (
                "pm_attached_elsewhere",
                "cus_fake",
                "payment_method_customer_mismatch",
                "payment_method.customer",
            ),
        ] {
            let body = json!({"name": "X", "payment_method": {"provider": "stripe", "token": pm, "customer": customer}});
            let r = app.post("/v1/customers", body.clone()).await;
            assert_eq!(
                (r.status.as_u16(), r.error_code()),
                (422, code),
                "{body}: {:?}",
                r.body
            );
            assert_eq!(r.body["error"]["param"], param);
        }
        assert_eq!(
            app.row_counts().await,
            before,
            "a refused method was stored"
        );
        // Its own customer's method, and Stripe's test methods, are accepted.
        for (pm, customer) in [
            ("pm_attached_mine", "cus_other"),
            ("pm_card_visa", "cus_fake"),
        ] {
            let r = app
                .post("/v1/customers", json!({"name": "Y", "payment_method": {"provider": "stripe", "token": pm, "customer": customer}}))
                .await;
            assert_eq!(r.status, 200, "{pm}: {:?}", r.body);
        }
        // On the installation's shared key, another tenant cannot name this tenant's Stripe
        // customer.
        let other = app.other_tenant_key().await;
        let body = json!({"name": "Z", "payment_method": {"provider": "stripe", "token": "pm_card_visa", "customer": "cus_fake"}});
        let r = app
            .send(
                reqwest::Method::POST,
                "/v1/customers",
                Some(&other),
                None,
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (422, "payment_method_customer_mismatch"),
            "{:?}",
            r.body
        );
    }
);
