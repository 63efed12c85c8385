//! Credit notes through the sandbox: refunds never exceed what was paid, open invoices are
//! credited before payment, lines are capped, bad input writes nothing; per-tenant dunning.

use crate::{TestApp, both};
use recur::domain::ids::InvoiceId;
use serde_json::{Value, json};

async fn invoice_paid_with(app: &TestApp, token: &str) -> Value {
    app.set_clock("2027-03-01T00:00:00Z").await;
    let c = app
        .post("/v1/customers", json!({"name": "C", "currency": "EUR", "payment_method": {"provider": "sandbox", "token": token}}))
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
    app.advance("2027-03-01T12:00:00Z").await;
    app.invoices_of(s["id"].as_str().unwrap()).await[0].clone()
}

both!(
    async fn refunds_never_exceed_what_was_paid(app: TestApp) {
        let inv = invoice_paid_with(&app, "tok_visa").await;
        let id = inv["id"].as_str().unwrap();
        assert_eq!(inv["status"], "paid");
        let cn = app
            .post("/v1/credit_notes", json!({"invoice": id, "amount": 1000, "reason": "product_unsatisfactory", "refund": true, "memo": "late delivery"}))
            .await
            .ok();
        assert!(cn["id"].as_str().unwrap().starts_with("cn_"));
        assert_eq!(
            cn["number"],
            format!("{}-CN-01", inv["number"].as_str().unwrap())
        );
        assert_eq!(
            (cn["refund_amount"].as_i64(), cn["refund_status"].as_str()),
            (Some(1000), Some("succeeded"))
        );
        let sandbox_id = InvoiceId::parse(id).unwrap();
        assert_eq!(app.payments.sandbox.refunded_for(&sandbox_id), 1000);

        let before = app.row_counts().await;
        let over = app
            .post(
                "/v1/credit_notes",
                json!({"invoice": id, "amount": 1501, "reason": "duplicate", "refund": true}),
            )
            .await;
        assert_eq!(
            (over.status.as_u16(), over.body["error"]["param"].as_str()),
            (422, Some("amount"))
        );
        assert_eq!(app.row_counts().await, before);
        assert_eq!(app.payments.sandbox.refunded_for(&sandbox_id), 1000);

        // The rest: 1,500 refunded, then nothing is left to credit.
        let line = inv["lines"][0]["id"].as_str().unwrap();
        let by_line = app
            .post("/v1/credit_notes", json!({"invoice": id, "lines": [{"invoice_line": line, "amount": 1500}], "reason": "order_change", "refund": true}))
            .await
            .ok();
        assert_eq!(
            by_line["number"],
            format!("{}-CN-02", inv["number"].as_str().unwrap())
        );
        assert_eq!(app.payments.sandbox.refunded_for(&sandbox_id), 2500);
        let inv = app.get(&format!("/v1/invoices/{id}")).await.ok();
        assert_eq!(
            (
                inv["amount_credited"].as_i64(),
                inv["amount_refunded"].as_i64()
            ),
            (Some(2500), Some(2500))
        );
        let more = app
            .post(
                "/v1/credit_notes",
                json!({"invoice": id, "amount": 1, "reason": "duplicate"}),
            )
            .await;
        assert_eq!(more.status.as_u16(), 422);
        let p = app.get(&format!("/v1/payments?invoice={id}")).await.ok();
        assert_eq!(
            (
                p["data"][0]["status"].as_str(),
                p["data"][0]["amount_refunded"].as_i64()
            ),
            (Some("refunded"), Some(2500))
        );
        let listed = app
            .get(&format!("/v1/credit_notes?invoice={id}"))
            .await
            .ok();
        assert_eq!(listed["data"].as_array().unwrap().len(), 2);
        let one = app
            .get(&format!("/v1/credit_notes/{}", cn["id"].as_str().unwrap()))
            .await
            .ok();
        assert_eq!(one["memo"], "late delivery");
        let events = app.get("/v1/events?type=credit_note.created").await.ok();
        assert_eq!(events["data"].as_array().unwrap().len(), 2);
    }
);

both!(
    async fn an_open_invoice_is_credited_before_payment(app: TestApp) {
        let inv = invoice_paid_with(&app, "tok_insufficient_funds").await;
        let id = inv["id"].as_str().unwrap();
        assert_eq!(
            (inv["status"].as_str(), inv["amount_due"].as_i64()),
            (Some("open"), Some(2500))
        );
        let r = app
            .post(
                "/v1/credit_notes",
                json!({"invoice": id, "amount": 500, "reason": "order_change", "refund": true}),
            )
            .await;
        assert_eq!(r.status.as_u16(), 422, "nothing was paid to refund");
        let cn = app
            .post(
                "/v1/credit_notes",
                json!({"invoice": id, "amount": 1000, "reason": "order_change"}),
            )
            .await
            .ok();
        assert_eq!(
            (
                cn["pre_payment_amount"].as_i64(),
                cn["refund_status"].as_str()
            ),
            (Some(1000), Some("none"))
        );
        let inv = app.get(&format!("/v1/invoices/{id}")).await.ok();
        assert_eq!(inv["amount_due"], 1500);
        // The next retry charges what is left.
        app.advance("2027-03-03T00:00:00Z").await;
        let p = app
            .get(&format!("/v1/payments?invoice={id}&limit=1"))
            .await
            .ok();
        assert_eq!(p["data"][0]["amount"], 1500);
        app.post(
            "/v1/credit_notes",
            json!({"invoice": id, "amount": 1500, "reason": "order_change"}),
        )
        .await
        .ok();
        let inv = app.get(&format!("/v1/invoices/{id}")).await.ok();
        assert_eq!(
            (inv["status"].as_str(), inv["amount_due"].as_i64()),
            (Some("paid"), Some(0))
        );
        assert!(inv["next_payment_attempt"].is_null());
    }
);

both!(
    async fn bad_credit_notes_are_refused_and_write_nothing(app: TestApp) {
        let inv = invoice_paid_with(&app, "tok_visa").await;
        let id = inv["id"].as_str().unwrap();
        let line = inv["lines"][0]["id"].as_str().unwrap();
        let before = app.row_counts().await;
        let cases = [
            (
                json!({"amount": 100, "reason": "duplicate"}),
                400,
                "invoice",
            ),
            (json!({"invoice": id, "reason": "duplicate"}), 400, "amount"),
            (json!({"invoice": id, "amount": 100}), 400, "reason"),
            (
                json!({"invoice": id, "amount": 100, "reason": "because"}),
                400,
                "reason",
            ),
            (
                json!({"invoice": id, "amount": 100, "lines": [{"invoice_line": line, "amount": 1}], "reason": "duplicate"}),
                400,
                "amount",
            ),
            (
                json!({"invoice": id, "amount": -5, "reason": "duplicate"}),
                422,
                "amount",
            ),
            (
                json!({"invoice": id, "amount": 2501, "reason": "duplicate"}),
                422,
                "amount",
            ),
            (
                json!({"invoice": id, "lines": [], "reason": "duplicate"}),
                400,
                "lines",
            ),
            (
                json!({"invoice": id, "lines": [{"invoice_line": line, "amount": 2501}], "reason": "duplicate"}),
                422,
                "lines",
            ),
            (
                json!({"invoice": id, "lines": [{"invoice_line": "il_nope", "amount": 1}], "reason": "duplicate"}),
                400,
                "lines[0].invoice_line",
            ),
            (
                json!({"invoice": "in_0190a1b2c3d4e5f60718293a4b5c6d7e", "amount": 1, "reason": "duplicate"}),
                400,
                "invoice",
            ),
            (
                json!({"invoice": id, "amount": 1, "reason": "duplicate", "refund": "yes"}),
                400,
                "refund",
            ),
            (
                json!({"invoice": id, "amount": 1, "reason": "duplicate", "colour": "red"}),
                400,
                "colour",
            ),
        ];
        for (body, status, param) in cases {
            let r = app.post("/v1/credit_notes", body.clone()).await;
            assert_eq!(
                (r.status.as_u16(), r.body["error"]["param"].as_str()),
                (status, Some(param)),
                "{body} → {}",
                r.body
            );
        }
        assert_eq!(app.row_counts().await, before);
        let r = app.get("/v1/credit_notes/cn_nope").await;
        assert_eq!(r.status.as_u16(), 404);
        let voided = app
            .post(&format!("/v1/invoices/{id}/void"), json!({}))
            .await;
        assert_eq!(voided.status.as_u16(), 422, "a paid invoice is not voided");
    }
);

both!(
    async fn each_tenant_can_set_its_own_dunning_plan(app: TestApp) {
        let d = app.get("/v1/settings/dunning").await.ok();
        assert_eq!(
            (d["source"].as_str(), d["retry_days"].clone()),
            (Some("installation"), json!([1, 3, 5, 7]))
        );
        let before = app.row_counts().await;
        for bad in [
            json!({"retry_days": [3, 1], "final_action": "cancel"}),
            json!({"retry_days": [0], "final_action": "cancel"}),
            json!({"retry_days": [2], "final_action": "explode"}),
            json!({"retry_days": [2]}),
        ] {
            let r = app
                .send(
                    reqwest::Method::PUT,
                    "/v1/settings/dunning",
                    Some(&app.key),
                    None,
                    Some(&bad.to_string()),
                )
                .await;
            assert_eq!(r.status.as_u16(), 400, "{bad}");
        }
        assert_eq!(app.row_counts().await, before);
        let d = app
            .send(
                reqwest::Method::PUT,
                "/v1/settings/dunning",
                Some(&app.key),
                None,
                Some(&json!({"retry_days": [2], "final_action": "leave_past_due"}).to_string()),
            )
            .await
            .ok();
        assert_eq!(d["source"], "tenant");
        let inv = invoice_paid_with(&app, "tok_insufficient_funds").await;
        app.advance("2027-03-20T00:00:00Z").await;
        let id = inv["id"].as_str().unwrap();
        let p = app.get(&format!("/v1/payments?invoice={id}")).await.ok();
        assert_eq!(
            p["data"].as_array().unwrap().len(),
            2,
            "one retry, two days after"
        );
        let inv = app.get(&format!("/v1/invoices/{id}")).await.ok();
        assert_eq!(inv["status"], "open");
        let sub = app
            .get(&format!(
                "/v1/subscriptions/{}",
                inv["subscription"].as_str().unwrap()
            ))
            .await
            .ok();
        assert_eq!(sub["status"], "past_due");
        let d = app
            .send(
                reqwest::Method::DELETE,
                "/v1/settings/dunning",
                Some(&app.key),
                None,
                None,
            )
            .await
            .ok();
        assert_eq!(d["source"], "installation");
    }
);

both!(
    async fn a_line_is_credited_up_to_its_taxed_amount_with_the_tax_per_rate(app: TestApp) {
        app.set_clock("2027-03-01T00:00:00Z").await;
        let customer = app.customer().await;
        let price = app.monthly_price(4900).await;
        let vat = app
            .post(
                "/v1/tax_rates",
                json!({"display_name": "VAT", "percentage": "23"}),
            )
            .await
            .ok();
        let s = app
            .post("/v1/subscriptions", json!({"customer": customer, "items": [{"price": price}], "default_tax_rates": [vat["id"]]}))
            .await
            .ok();
        app.advance("2027-03-01T12:00:00Z").await;
        let inv = app.invoices_of(s["id"].as_str().unwrap()).await[0].clone();
        assert_eq!(inv["total"], 6027);
        let line = inv["lines"][0]["id"].clone();
        let over = app
            .post("/v1/credit_notes", json!({"invoice": inv["id"], "lines": [{"invoice_line": line, "amount": 6028}], "reason": "order_change"}))
            .await;
        assert_eq!(over.status.as_u16(), 422, "{}", over.body);
        let by_amount = app
            .post(
                "/v1/credit_notes",
                json!({"invoice": inv["id"], "amount": 1000, "reason": "order_change"}),
            )
            .await
            .ok();
        // 1000 of 6027: 1127 × 1000/6027 = 186.99 tax on 4900 × 1000/6027 = 813.01.
        assert_eq!(by_amount["tax_amounts"][0]["amount"], 187);
        assert_eq!(by_amount["tax_amounts"][0]["taxable_amount"], 813);
        assert_eq!(by_amount["tax_amounts"][0]["percentage"], "23");
        let full = app
            .post("/v1/credit_notes", json!({"invoice": inv["id"], "lines": [{"invoice_line": line, "amount": 5027}], "reason": "order_change"}))
            .await
            .ok();
        assert_eq!(
            full["amount"], 5027,
            "the line's 4900 plus its tax can be credited"
        );
        assert_eq!(full["tax_amounts"][0]["amount"], 940);
        let again = app
            .get(&format!(
                "/v1/credit_notes/{}",
                full["id"].as_str().unwrap()
            ))
            .await
            .ok();
        assert_eq!(again["tax_amounts"], full["tax_amounts"], "stored as shown");
    }
);
