//! Inbound Stripe webhooks: signatures (valid, tampered, stale both ways, rotated secrets), and
//! 100 events delivered three times each in shuffled order, each applied once.

use crate::fake_stripe::FakeStripe;
use crate::support::WEBHOOK_SECRET;
use crate::{TestApp, both_stripe};
use rand::seq::SliceRandom;
use recur::payments::stripe::sign;
use serde_json::{Value, json};

async fn deliver(app: &TestApp, body: &str, signature: Option<String>) -> crate::support::Resp {
    let client = reqwest::Client::new();
    let mut req = client
        .post(format!("{}/webhooks/stripe", app.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(s) = signature {
        req = req.header("Stripe-Signature", s);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    crate::support::Resp {
        status,
        body,
        headers,
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn event(id: &str, kind: &str, object: Value) -> String {
    json!({"id": id, "object": "event", "type": kind, "created": now(), "livemode": false,
           "api_version": "2024-06-20", "data": {"object": object}})
    .to_string()
}

/// On 2027-03-01, `n` customers paying with Stripe test method `pm`, each subscribed monthly at
/// 25.00 EUR and charged once (the clock advanced an hour): (customer, first invoice) each.
async fn charged_invoices(app: &TestApp, pm: &str, n: usize) -> Vec<(String, String)> {
    app.set_clock("2027-03-01T00:00:00Z").await;
    let price = app.monthly_price(2500).await;
    let mut subs = Vec::new();
    for _ in 0..n {
        let c = app
            .post(
                "/v1/customers",
                json!({"name": "P", "currency": "EUR", "payment_method":
                       {"provider": "stripe", "token": pm, "customer": "cus_fake"}}),
            )
            .await
            .ok();
        let s = app
            .post(
                "/v1/subscriptions",
                json!({"customer": c["id"], "items": [{"price": price}]}),
            )
            .await
            .ok();
        subs.push((
            c["id"].as_str().unwrap().to_owned(),
            s["id"].as_str().unwrap().to_owned(),
        ));
    }
    app.advance("2027-03-01T01:00:00Z").await;
    let mut out = Vec::new();
    for (customer, sub) in subs {
        let inv = app.invoices_of(&sub).await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        out.push((customer, inv));
    }
    out
}

/// `n` invoices whose charges Stripe is still processing: their attempts are unknown.
async fn processing_invoices(app: &TestApp, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (_, inv) in charged_invoices(app, "pm_card_processing", n).await {
        let p = app.get(&format!("/v1/payments?invoice={inv}")).await.ok();
        assert_eq!(p["data"][0]["status"], "unknown");
        let pi = p["data"][0]["provider_ref"].as_str().unwrap().to_owned();
        out.push((inv, pi));
    }
    out
}

fn succeeded(fake: &FakeStripe, pi: &str) -> Value {
    let mut o = fake.intent(pi);
    o["status"] = json!("succeeded");
    o["amount_received"] = o["amount"].clone();
    o
}

fn failed(fake: &FakeStripe, pi: &str) -> Value {
    let mut o = fake.intent(pi);
    o["status"] = json!("requires_payment_method");
    o["last_payment_error"] = json!({"type": "card_error", "code": "card_declined",
        "decline_code": "insufficient_funds", "advice_code": "try_again_later",
        "message": "Your card has insufficient funds."});
    o
}

fn refunded(fake: &FakeStripe, pi: &str, amount: i64) -> Value {
    let o = fake.intent(pi);
    json!({"id": format!("ch_{pi}"), "object": "charge", "payment_intent": pi,
           "amount": o["amount"], "amount_refunded": amount, "refunded": false,
           "currency": o["currency"], "metadata": o["metadata"], "created": now()})
}

both_stripe!(
    async fn signatures_are_verified_on_the_raw_body(app: TestApp, fake: FakeStripe) {
        let invs = processing_invoices(&app, 1).await;
        let (inv, pi) = &invs[0];
        let body = event(
            "evt_sig_1",
            "payment_intent.succeeded",
            succeeded(&fake, pi),
        );
        let before = app.row_counts().await;

        let tampered = body.replace("\"amount\":2500", "\"amount\":1");
        let r = deliver(
            &app,
            &tampered,
            Some(sign(WEBHOOK_SECRET, now(), body.as_bytes())),
        )
        .await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (400, "signature_invalid")
        );
        // 301 s old, or 301 s ahead with two seconds of slack for the server's own clock read
        // (a second may tick between signing here and checking there).
        for skew in [-301, 303] {
            let r = deliver(
                &app,
                &body,
                Some(sign(WEBHOOK_SECRET, now() + skew, body.as_bytes())),
            )
            .await;
            assert_eq!(
                (r.status.as_u16(), r.error_code()),
                (400, "signature_invalid"),
                "{skew}"
            );
        }
        let r = deliver(
            &app,
            &body,
            Some(sign("whsec_other", now(), body.as_bytes())),
        )
        .await;
        assert_eq!(r.status.as_u16(), 400);
        let r = deliver(&app, &body, None).await;
        assert_eq!(r.status.as_u16(), 400);
        let r = deliver(&app, &body, Some("t=abc,v1=zz".into())).await;
        assert_eq!(r.status.as_u16(), 400);
        // Signed, but with an id no database would store (PostgreSQL refuses NUL): a 400,
        // never a 500 that asks Stripe to redeliver.
        for (id, kind) in [
            ("evt_\u{0}nul", "payment_intent.succeeded"),
            ("evt_nul_type", "payment_intent.\u{0}"),
        ] {
            let nul = event(id, kind, succeeded(&fake, pi));
            let r = deliver(
                &app,
                &nul,
                Some(sign(WEBHOOK_SECRET, now(), nul.as_bytes())),
            )
            .await;
            assert_eq!(
                (r.status.as_u16(), r.error_code()),
                (400, "invalid_json"),
                "{}",
                r.body
            );
        }
        assert_eq!(
            app.row_counts().await,
            before,
            "a refused webhook writes nothing"
        );

        // Rotated on Stripe's side: the old secret's v1 and ours side by side.
        let t = now() - 299;
        let rolled = format!(
            "{},{}",
            sign("whsec_rolled_away", t, body.as_bytes()),
            sign(WEBHOOK_SECRET, t, body.as_bytes())
                .split_once(',')
                .unwrap()
                .1
        );
        let r = deliver(&app, &body, Some(rolled)).await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.body);
        assert_eq!(r.body["outcome"], "applied");
        let invoice = app.get(&format!("/v1/invoices/{inv}")).await.ok();
        assert_eq!(invoice["status"], "paid");
        let r = deliver(
            &app,
            &body,
            Some(sign(WEBHOOK_SECRET, now(), body.as_bytes())),
        )
        .await;
        assert_eq!(r.body["outcome"], "duplicate");
        let r = app.post("/webhooks/paypal", json!({})).await;
        assert_eq!(r.status.as_u16(), 404);
    }
);

both_stripe!(
    async fn a_hundred_events_delivered_three_times_in_any_order_apply_once(
        app: TestApp,
        fake: FakeStripe,
    ) {
        let invs = processing_invoices(&app, 60).await;
        let mut events = Vec::new();
        for (i, (_, pi)) in invs.iter().enumerate() {
            if i < 40 {
                events.push(event(
                    &format!("evt_s{i}"),
                    "payment_intent.succeeded",
                    succeeded(&fake, pi),
                ));
                events.push(event(
                    &format!("evt_r{i}"),
                    "charge.refunded",
                    refunded(&fake, pi, 700),
                ));
            } else {
                events.push(event(
                    &format!("evt_f{i}"),
                    "payment_intent.payment_failed",
                    failed(&fake, pi),
                ));
            }
        }
        assert_eq!(events.len(), 100);
        let mut deliveries: Vec<&String> = events.iter().chain(&events).chain(&events).collect();
        deliveries.shuffle(&mut rand::rng());
        let mut outcomes = std::collections::HashMap::<String, usize>::new();
        for body in deliveries {
            let r = deliver(
                &app,
                body,
                Some(sign(WEBHOOK_SECRET, now(), body.as_bytes())),
            )
            .await;
            assert_eq!(r.status.as_u16(), 200, "{}", r.body);
            *outcomes
                .entry(r.body["outcome"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        assert_eq!(outcomes.get("duplicate"), Some(&200), "{outcomes:?}");
        let count = |kind: &'static str| {
            let app = &app;
            async move {
                app.get(&format!("/v1/events?type={kind}&limit=100"))
                    .await
                    .ok()["data"]
                    .as_array()
                    .unwrap()
                    .len()
            }
        };
        assert_eq!(count("payment.succeeded").await, 40);
        assert_eq!(count("payment.refunded").await, 40);
        assert_eq!(count("payment.failed").await, 20);
        assert_eq!(count("invoice.paid").await, 40);
        for (i, (inv, _)) in invs.iter().enumerate() {
            let invoice = app.get(&format!("/v1/invoices/{inv}")).await.ok();
            let p = app.get(&format!("/v1/payments?invoice={inv}")).await.ok();
            if i < 40 {
                assert_eq!(invoice["status"], "paid");
                assert_eq!(p["data"][0]["status"], "succeeded");
                assert_eq!(p["data"][0]["amount_refunded"], 700);
            } else {
                assert_eq!(invoice["status"], "open");
                assert_eq!(p["data"][0]["status"], "failed");
                assert_eq!(p["data"][0]["decline_code"], "insufficient_funds");
                assert_eq!(invoice["next_payment_attempt"], "2027-03-02T01:00:00Z");
            }
        }
    }
);

both_stripe!(
    async fn refunds_accepted_as_pending_settle_or_fail_through_the_refund_webhook(
        app: TestApp,
        fake: FakeStripe,
    ) {
        let (_, inv) = charged_invoices(&app, "pm_card_visa", 1).await.remove(0);
        let mut notes = Vec::new();
        for amount in [507, 707] {
            let n = app
                .post(
                    "/v1/credit_notes",
                    json!({"invoice": inv, "amount": amount, "reason": "order_change", "refund": true}),
                )
                .await
                .ok();
            assert_eq!(n["refund_status"], "pending");
            assert!(n["refund_ref"].as_str().unwrap().starts_with("re_"));
            notes.push(n);
        }
        // Pending refunds are not re-sent by collection passes.
        app.advance("2027-03-02T00:00:00Z").await;
        assert_eq!(fake.ledger()[0].refunded, 507 + 707);

        let refund = |n: &Value, status: &str| {
            json!({"id": n["refund_ref"], "object": "refund", "amount": n["refund_amount"],
                   "status": status, "failure_reason": if status == "failed" { json!("lost_or_stolen_card") } else { json!(null) },
                   "metadata": {"credit_note": n["id"], "tenant_id": app.tenant_id}})
        };
        let settled = event("evt_re_1", "refund.updated", refund(&notes[0], "succeeded"));
        let failed = event("evt_re_2", "refund.failed", refund(&notes[1], "failed"));
        for body in [&settled, &failed, &settled] {
            let r = deliver(
                &app,
                body,
                Some(sign(WEBHOOK_SECRET, now(), body.as_bytes())),
            )
            .await;
            assert_eq!(r.status.as_u16(), 200, "{}", r.body);
        }
        let late = event("evt_re_3", "refund.updated", refund(&notes[1], "succeeded"));
        let r = deliver(
            &app,
            &late,
            Some(sign(WEBHOOK_SECRET, now(), late.as_bytes())),
        )
        .await;
        assert_eq!(r.body["outcome"], "stale", "a failed refund stays failed");

        let a = app
            .get(&format!(
                "/v1/credit_notes/{}",
                notes[0]["id"].as_str().unwrap()
            ))
            .await
            .ok();
        let b = app
            .get(&format!(
                "/v1/credit_notes/{}",
                notes[1]["id"].as_str().unwrap()
            ))
            .await
            .ok();
        assert_eq!(
            (a["refund_status"].as_str(), b["refund_status"].as_str()),
            (Some("succeeded"), Some("failed"))
        );
        assert!(
            b["refund_failure"]
                .as_str()
                .unwrap()
                .contains("lost_or_stolen_card")
        );
        let invoice = app.get(&format!("/v1/invoices/{inv}")).await.ok();
        assert_eq!(
            (
                invoice["amount_credited"].as_i64(),
                invoice["amount_refunded"].as_i64()
            ),
            (Some(507), Some(507))
        );
        let p = app.get(&format!("/v1/payments?invoice={inv}")).await.ok();
        assert_eq!(p["data"][0]["amount_refunded"], 507);
        let failed_events = app
            .get("/v1/events?type=credit_note.refund_failed")
            .await
            .ok();
        assert_eq!(failed_events["data"].as_array().unwrap().len(), 1);
    }
);

both_stripe!(
    async fn a_late_success_for_a_paid_invoice_is_flagged_not_counted_twice(
        app: TestApp,
        fake: FakeStripe,
    ) {
        let (customer, inv) =
            charged_invoices(&app, "pm_card_visa_chargeDeclinedInsufficientFunds", 1)
                .await
                .remove(0);
        let first = app.get(&format!("/v1/payments?invoice={inv}")).await.ok()["data"][0].clone();
        assert_eq!(first["status"], "failed");
        app.patch(
            &format!("/v1/customers/{customer}"),
            json!({"payment_method": {"provider": "stripe", "token": "pm_card_visa", "customer": "cus_fake"}}),
        )
        .await
        .ok();
        let paid = app
            .post(&format!("/v1/invoices/{inv}/pay"), json!({}))
            .await
            .ok();
        assert_eq!(
            (paid["status"].as_str(), paid["amount_paid"].as_i64()),
            (Some("paid"), Some(2500))
        );

        // Stripe later reports the first (declined) PaymentIntent as succeeded after all.
        let pi = first["provider_ref"].as_str().unwrap();
        let body = event("evt_late", "payment_intent.succeeded", succeeded(&fake, pi));
        let r = deliver(
            &app,
            &body,
            Some(sign(WEBHOOK_SECRET, now(), body.as_bytes())),
        )
        .await;
        assert_eq!(r.body["outcome"], "applied");
        let after = app.get(&format!("/v1/invoices/{inv}")).await.ok();
        assert_eq!(
            after["amount_paid"], 2500,
            "money taken twice is not counted twice"
        );
        let flagged = app.get("/v1/events?type=payment.unapplied").await.ok();
        assert_eq!(flagged["data"].as_array().unwrap().len(), 1);
        assert_eq!(flagged["data"][0]["data"]["object"]["id"], first["id"]);
    }
);

both_stripe!(
    async fn a_pending_refund_whose_webhook_is_lost_is_asked_about(app: TestApp, fake: FakeStripe) {
        let (_, inv) = charged_invoices(&app, "pm_card_visa", 1).await.remove(0);
        let note = app
            .post(
                "/v1/credit_notes",
                json!({"invoice": inv, "amount": 307, "reason": "duplicate", "refund": true}),
            )
            .await
            .ok();
        assert_eq!(note["refund_status"], "pending");
        fake.settle_refund(note["refund_ref"].as_str().unwrap(), "succeeded");
        // Within the hour the webhook has to arrive, nothing asks; after it, the next pass does.
        app.advance("2027-03-01T01:30:00Z").await;
        let id = note["id"].as_str().unwrap();
        let n = app.get(&format!("/v1/credit_notes/{id}")).await.ok();
        assert_eq!(n["refund_status"], "pending");
        app.advance("2027-03-01T03:00:00Z").await;
        let n = app.get(&format!("/v1/credit_notes/{id}")).await.ok();
        assert_eq!(n["refund_status"], "succeeded");
        let p = app.get(&format!("/v1/payments?invoice={inv}")).await.ok();
        assert_eq!(p["data"][0]["amount_refunded"], 307);
    }
);

/// A server configured as the README shows for receiving only: signing secrets, no API key.
mod webhook_secrets_alone_are_enough_to_receive_events {
    use super::*;
    use crate::support::Backend;
    use recur::config::Secret;

    async fn run(backend: Backend) {
        let Some(app) = TestApp::spawn_with(backend, recur::domain::tenant::Mode::Test, |c| {
            c.stripe.webhook_secrets = vec![Secret::new(WEBHOOK_SECRET)];
        })
        .await
        else {
            return;
        };
        let body = event(
            "evt_alone",
            "customer.created",
            json!({"id": "cus_x", "object": "customer"}),
        );
        let ok = deliver(
            &app,
            &body,
            Some(sign(WEBHOOK_SECRET, now(), body.as_bytes())),
        )
        .await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert_eq!(ok.body["outcome"], "ignored");
        let bad = deliver(
            &app,
            &body,
            Some(sign("whsec_other", now(), body.as_bytes())),
        )
        .await;
        assert_eq!(bad.status, 400);
        assert_eq!(bad.error_code(), "signature_invalid");
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

/// The storm's size: invoices whose events are delivered (`RELIABILITY_STORM_INVOICES`, default 150
/// in the test suite: 250 events, 750 deliveries). Two in three succeed and are partly
/// refunded, one in three fails.
fn storm_invoices() -> usize {
    std::env::var("RELIABILITY_STORM_INVOICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

both_stripe!(
    async fn a_storm_from_eight_senders_applies_each_event_once(app: TestApp, fake: FakeStripe) {
        let n = storm_invoices();
        let invs = processing_invoices(&app, n).await;
        let mut events = Vec::new();
        let mut expected = (0, 0);
        for (i, (_, pi)) in invs.iter().enumerate() {
            if i % 3 == 2 {
                expected.1 += 1;
                events.push(event(
                    &format!("evt_f{i}"),
                    "payment_intent.payment_failed",
                    failed(&fake, pi),
                ));
            } else {
                expected.0 += 1;
                events.push(event(
                    &format!("evt_s{i}"),
                    "payment_intent.succeeded",
                    succeeded(&fake, pi),
                ));
                events.push(event(
                    &format!("evt_r{i}"),
                    "charge.refunded",
                    refunded(&fake, pi, 300),
                ));
            }
        }
        let mut deliveries: Vec<String> = events
            .iter()
            .chain(&events)
            .chain(&events)
            .cloned()
            .collect();
        deliveries.shuffle(&mut rand::rng());
        let started = std::time::Instant::now();
        let chunk = deliveries.len().div_ceil(8);
        let senders = deliveries.chunks(chunk).map(|part| {
            let app = &app;
            async move {
                let mut duplicates = 0;
                for body in part {
                    let r = deliver(
                        app,
                        body,
                        Some(sign(WEBHOOK_SECRET, now(), body.as_bytes())),
                    )
                    .await;
                    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
                    duplicates += usize::from(r.body["outcome"] == "duplicate");
                }
                duplicates
            }
        });
        let duplicates: usize = futures::future::join_all(senders).await.into_iter().sum();
        eprintln!(
            "webhook storm: {} events, {} deliveries from 8 senders in {:.2}s",
            events.len(),
            events.len() * 3,
            started.elapsed().as_secs_f64()
        );
        assert_eq!(
            duplicates,
            events.len() * 2,
            "every event applied once, its copies answered duplicate"
        );
        assert_eq!(app.count_events("payment.succeeded").await, expected.0);
        assert_eq!(app.count_events("invoice.paid").await, expected.0);
        assert_eq!(app.count_events("payment.refunded").await, expected.0);
        assert_eq!(app.count_events("payment.failed").await, expected.1);
        for (i, (inv, _)) in invs.iter().enumerate().step_by(7) {
            let p = app.get(&format!("/v1/payments?invoice={inv}")).await.ok();
            if i % 3 == 2 {
                assert_eq!(p["data"][0]["status"], "failed");
            } else {
                assert_eq!(
                    (
                        p["data"][0]["status"].as_str(),
                        p["data"][0]["amount_refunded"].as_i64()
                    ),
                    (Some("succeeded"), Some(300))
                );
            }
        }
    }
);
