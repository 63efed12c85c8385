//! The summary report on a hand-checked book: MRR from list prices normalised to a month,
//! subscriptions by status, what was billed, collected and refunded in the window, and the
//! receivables by age.

use crate::both;
use crate::support::{TestApp, recur_cli};
use serde_json::{Value, json};

async fn customer(app: &TestApp, token: Option<&str>) -> String {
    let mut body = json!({"name": "C", "currency": "EUR"});
    if let Some(token) = token {
        body["payment_method"] = json!({"provider": "sandbox", "token": token});
    }
    app.post("/v1/customers", body).await.ok()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn subscribe(app: &TestApp, body: Value) -> Value {
    app.post("/v1/subscriptions", body).await.ok()
}

/// The book, on 2027-01-01 at noon, in EUR:
/// - A: 2 seats × 10.00 monthly, paid (MRR 20.00)
/// - B: 120.00 yearly, paid (MRR 10.00); refunded 5.00 by a credit note
/// - C: 5.00 monthly, card declined: past due, 5.00 overdue since midnight (MRR 5.00)
/// - D: 30.00 monthly by bank transfer, due in 14 days (MRR 30.00)
/// - E: trialing 14 days (no MRR, a 0.00 invoice)
/// - F: metered API calls only (no MRR until used)
async fn book(app: &TestApp) {
    app.set_clock("2027-01-01T00:00:00Z").await;
    let monthly10 = app.monthly_price(1_000).await;
    let monthly5 = app.monthly_price(500).await;
    let monthly30 = app.monthly_price(3_000).await;
    let yearly = app.post("/v1/prices", json!({"product": "Pro yearly", "currency": "EUR", "unit_amount": 12_000, "recurring": {"interval": "year"}})).await.ok();
    let metered = app.metered_price().await;
    let a = customer(app, Some("tok_visa")).await;
    subscribe(
        app,
        json!({"customer": a, "items": [{"price": monthly10, "quantity": 2}]}),
    )
    .await;
    let b = customer(app, Some("tok_visa")).await;
    let sub_b = subscribe(
        app,
        json!({"customer": b, "items": [{"price": yearly["id"]}]}),
    )
    .await;
    let c = customer(app, Some("tok_insufficient_funds")).await;
    subscribe(app, json!({"customer": c, "items": [{"price": monthly5}]})).await;
    let d = customer(app, None).await;
    subscribe(app, json!({"customer": d, "items": [{"price": monthly30}], "collection_method": "send_invoice", "days_until_due": 14})).await;
    let e = customer(app, Some("tok_visa")).await;
    subscribe(
        app,
        json!({"customer": e, "items": [{"price": monthly10}], "trial_period_days": 14}),
    )
    .await;
    let f = customer(app, Some("tok_visa")).await;
    subscribe(app, json!({"customer": f, "items": [{"price": metered}]})).await;
    app.advance("2027-01-01T12:00:00Z").await;
    let paid_b = app
        .invoices_of(sub_b["id"].as_str().unwrap())
        .await
        .pop()
        .unwrap();
    assert_eq!(paid_b["status"], "paid");
    let note = app
        .post(
            "/v1/credit_notes",
            json!({"invoice": paid_b["id"], "amount": 500, "reason": "duplicate", "refund": true}),
        )
        .await
        .ok();
    assert_eq!(note["refund_status"], "succeeded", "{note}");
}

both! {
    async fn summary_report(app: TestApp) {
        book(&app).await;
        let r = app.get("/v1/reports/summary?from=2027-01-01&to=2027-01-31").await.ok();
        assert_eq!((r["from"].as_str(), r["to"].as_str(), r["timezone"].as_str()), (Some("2027-01-01"), Some("2027-01-31"), Some("UTC")));
        assert_eq!(r["as_of"], "2027-01-01T12:00:00Z");
        let cur = &r["currencies"];
        assert_eq!(cur.as_array().unwrap().len(), 1, "{r}");
        let eur = &cur[0];
        assert_eq!(eur["currency"], "EUR");
        assert_eq!((eur["mrr"].as_i64(), eur["arr"].as_i64()), (Some(6_500), Some(78_000)), "{eur}");
        assert_eq!(
            (eur["active_subscriptions"].as_i64(), eur["past_due_subscriptions"].as_i64(), eur["trialing_subscriptions"].as_i64()),
            (Some(4), Some(1), Some(1)),
            "{eur}"
        );
        assert_eq!((eur["new_subscriptions"].as_i64(), eur["churned_subscriptions"].as_i64()), (Some(6), Some(0)));
        assert_eq!(eur["billed"], 2_000 + 12_000 + 500 + 3_000, "{eur}");
        assert_eq!(eur["collected"], 2_000 + 12_000);
        assert_eq!(eur["refunded"], 500);
        assert_eq!(eur["outstanding"], 500 + 3_000);
        assert_eq!(eur["aging"], json!({"current": 3_000, "1_30": 500, "31_60": 0, "61_90": 0, "90_plus": 0}));
        assert_eq!(eur["payment_success_rate"], "0.6667");
        assert_eq!(eur["dunning"], json!({"recovered": 0, "failed": 0}));
        // A later window: nothing happened in it; what stands is the same.
        let feb = app.get("/v1/reports/summary?from=2027-02-01&to=2027-02-28").await.ok();
        let f = &feb["currencies"][0];
        assert_eq!((f["billed"].as_i64(), f["collected"].as_i64(), f["new_subscriptions"].as_i64()), (Some(0), Some(0), Some(0)));
        assert_eq!((f["mrr"].as_i64(), f["outstanding"].as_i64()), (Some(6_500), Some(3_500)));
        assert_eq!(f["payment_success_rate"], Value::Null);
        // Without days: this month so far, on the tenant's clock.
        let now = app.get("/v1/reports/summary").await.ok();
        assert_eq!((now["from"].as_str(), now["to"].as_str()), (Some("2027-01-01"), Some("2027-01-01")));
        // Two months on, C is still unpaid and D overdue: the receivables have aged.
        app.advance("2027-03-05T00:00:00Z").await;
        let later = app.get("/v1/reports/summary?from=2027-01-01&to=2027-03-05").await.ok();
        let aging = &later["currencies"][0]["aging"];
        assert!(aging["31_60"].as_i64().unwrap() >= 3_000, "D's January invoice is 49 days overdue: {aging}");
        assert_eq!(later["currencies"][0]["outstanding"].as_i64().unwrap(), ["current", "1_30", "31_60", "61_90", "90_plus"].iter().map(|k| aging[k].as_i64().unwrap()).sum::<i64>());
    }
}

both! {
    async fn bad_report_windows(app: TestApp) {
        for (query, param) in [
            ("from=2027-13-01&to=2027-12-31", "from"),
            ("from=2027-01-01&to=yesterday", "to"),
            ("from=2027-02-01&to=2027-01-01", "to"),
            ("from=2027-01-01&to=2027-01-31&timezone=Mars/Olympus", "timezone"),
            ("from=2027-01-01&to=2027-01-31&currency=EUR", "currency"),
        ] {
            let r = app.get(&format!("/v1/reports/summary?{query}")).await;
            assert_eq!(r.status.as_u16(), 400, "{query}: {}", r.body);
            assert_eq!(r.body["error"]["param"], param, "{query}: {}", r.body);
        }
    }
}

both! {
    async fn report_on_the_command_line(app: TestApp) {
        book(&app).await;
        let args = ["report", "summary", "--tenant", &app.tenant_id, "--from", "2027-01-01", "--to", "2027-01-31"];
        let out = recur_cli(&app, &[], &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let table = String::from_utf8(out.stdout).unwrap();
        for expected in ["2027-01-01 to 2027-01-31 (UTC)", "EUR", "65.00", "780.00", "175.00", "66.7%", "  current"] {
            assert!(table.contains(expected), "{expected:?} not in:\n{table}");
        }
        let out = recur_cli(&app, &[], &[&args[..], &["--json"]].concat());
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        let api = app.get("/v1/reports/summary?from=2027-01-01&to=2027-01-31").await.ok();
        assert_eq!(json["currencies"], api["currencies"]);
        let out = recur_cli(&app, &[], &["report", "summary", "--from", "someday"]);
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

both! {
    async fn metrics_for_prometheus(app: TestApp) {
        book(&app).await;
        // No API key, like /healthz.
        let (status, headers, body) = app.raw("/metrics", None).await;
        assert_eq!(status.as_u16(), 200);
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        let text = String::from_utf8(body).unwrap();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (_, value) = line.rsplit_once(' ').expect("name and value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        let has = |needle: &str| assert!(text.contains(needle), "{needle} not in:\n{text}");
        has("recur_invoices{status=\"paid\"} 2");
        has("recur_invoices{status=\"open\"} 2");
        has("recur_payment_attempts{decline_code=\"insufficient_funds\",status=\"failed\"} 1");
        has("recur_dunning_invoices{attempts=\"1\"} 1");
        has("recur_queue_depth{queue=\"pdf\"}");
        has("recur_queue_depth{queue=\"webhook\"} 0");
        has("recur_oldest_unsettled_attempt_seconds 0");
        has("recur_provider_charge_seconds_count{outcome=\"succeeded\"}");
    }
}

both! {
    async fn logs_for_collectors(app: TestApp) {
        book(&app).await;
        // The dunning retry of C's declined invoice, logged as JSON lines with the payment's
        // span fields and no secret.
        let out = recur_cli(&app, &[("RUST_LOG", "recur=debug".into())], &["--log-format", "json", "run-cycle", "--tenant", &app.tenant_id, "--at", "2027-01-05T00:00:00Z"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<Value> = stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        let charge = lines.iter().find(|l| l["fields"]["message"] == "charge answered").unwrap_or_else(|| panic!("no charge logged:\n{stderr}"));
        let span = &charge["span"];
        assert_eq!(span["name"], "payment.charge");
        assert_eq!((span["payment.amount"].as_i64(), span["payment.currency"].as_str(), span["payment.provider"].as_str()), (Some(500), Some("EUR"), Some("sandbox")));
        assert_eq!(charge["fields"]["payment.outcome"], "declined");
        assert!(!stderr.contains(&app.key) && !stderr.contains('\u{1b}'));
        let bad = recur_cli(&app, &[], &["--log-format", "xml", "run-cycle"]);
        assert_eq!(bad.status.code(), Some(2));
    }
}
