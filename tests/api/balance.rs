//! The customer credit balance: negative totals become credit, the next invoices use it, and
//! people adjust it with a reason; every movement has a transaction.

use crate::{TestApp, both};
use serde_json::{Value, json};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

async fn balance(app: &TestApp, customer: &str) -> i64 {
    app.get(&format!("/v1/customers/{customer}")).await.ok()["balance"]
        .as_i64()
        .unwrap()
}

async fn transactions(app: &TestApp, customer: &str) -> Vec<(String, i64, i64)> {
    let page = app
        .get(&format!(
            "/v1/customers/{customer}/balance_transactions?limit=100"
        ))
        .await
        .ok();
    let mut v: Vec<_> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["type"].as_str().unwrap().to_owned(),
                t["amount"].as_i64().unwrap(),
                t["ending_balance"].as_i64().unwrap(),
            )
        })
        .collect();
    v.reverse();
    v
}

both!(
    async fn a_downgrade_credit_is_kept_and_used_by_the_next_invoice(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let p30 = app.monthly_price(3000).await;
        let p60 = app.monthly_price(6000).await;
        let s = app.subscription(&customer, &p60).await;
        app.advance("2027-01-11T00:00:00Z").await;
        app.patch(
            &format!("/v1/subscriptions/{}", id(&s)),
            json!({"items": [{"id": s["items"][0]["id"], "price": p30}], "proration_behavior": "always_invoice"}),
        )
        .await
        .ok();
        let inv = app.invoices_of(&id(&s)).await;
        // −6000 × 21/31 = −4064.52, +3000 × 21/31 = 2032.26: a credit of 2033.
        assert_eq!(inv[1]["total"], -2033);
        assert_eq!(
            (inv[1]["status"].as_str(), inv[1]["amount_due"].as_i64()),
            (Some("paid"), Some(0))
        );
        assert_eq!(
            (
                inv[1]["starting_balance"].as_i64(),
                inv[1]["ending_balance"].as_i64()
            ),
            (Some(0), Some(-2033))
        );
        assert_eq!(
            balance(&app, &customer).await,
            -2033,
            "the money is the customer's, not lost"
        );
        app.advance("2027-02-01T01:00:00Z").await;
        let feb = &app.invoices_of(&id(&s)).await[2];
        assert_eq!(feb["total"], 3000);
        assert_eq!(
            (
                feb["starting_balance"].as_i64(),
                feb["ending_balance"].as_i64()
            ),
            (Some(-2033), Some(0))
        );
        assert_eq!(
            (feb["status"].as_str(), feb["amount_paid"].as_i64()),
            (Some("paid"), Some(967)),
            "{feb}"
        );
        assert_eq!(balance(&app, &customer).await, 0);
        assert_eq!(
            transactions(&app, &customer).await,
            [
                ("invoice_credit".into(), -2033, -2033),
                ("applied_to_invoice".into(), 2033, 0)
            ]
        );
    }
);

both!(
    async fn people_adjust_a_balance_with_a_reason(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let path = format!("/v1/customers/{customer}/balance_transactions");
        let before = app.row_counts().await;
        for (body, param) in [
            (json!({"amount": 0, "description": "x"}), "amount"),
            (json!({"amount": -500}), "description"),
            (json!({"amount": -500, "description": "  "}), "description"),
            (
                json!({"amount": -500, "description": "x", "currency": "EURO"}),
                "currency",
            ),
            (
                json!({"amount": -500, "description": "x", "extra": 1}),
                "extra",
            ),
            (
                json!({"amount": 1_000_000_000_000_000_001i64, "description": "x"}),
                "amount",
            ),
        ] {
            let r = app.post(&path, body.clone()).await;
            assert!(r.status.is_client_error(), "{body}: {}", r.body);
            assert_eq!(r.body["error"]["param"], param, "{body}: {}", r.body);
        }
        let other = app
            .post(
                &path,
                json!({"amount": -500, "description": "x", "currency": "USD"}),
            )
            .await;
        assert_eq!(
            (other.status.as_u16(), other.error_code()),
            (422, "currency_mismatch")
        );
        let missing = app
            .post(
                "/v1/customers/cus_00000000000000000000000000000000/balance_transactions",
                json!({"amount": -5, "description": "x"}),
            )
            .await;
        assert_eq!(missing.status.as_u16(), 404);
        assert_eq!(
            app.row_counts().await,
            before,
            "refused adjustments write nothing"
        );

        let t = app
            .post(
                &path,
                json!({"amount": -500, "description": "goodwill for the outage"}),
            )
            .await
            .ok();
        assert_eq!(
            (
                t["type"].as_str(),
                t["ending_balance"].as_i64(),
                t["currency"].as_str()
            ),
            (Some("adjustment"), Some(-500), Some("EUR"))
        );
        assert_eq!(t["description"], "goodwill for the outage");
        app.post(
            &path,
            json!({"amount": 800, "description": "setup fee owed"}),
        )
        .await
        .ok();
        assert_eq!(
            balance(&app, &customer).await,
            300,
            "the customer now owes 300"
        );
        let p = app.monthly_price(1000).await;
        let s = app.subscription(&customer, &p).await;
        let first = &app.invoices_of(&id(&s)).await[0];
        assert_eq!(
            (
                first["total"].as_i64(),
                first["amount_due"].as_i64(),
                first["starting_balance"].as_i64()
            ),
            (Some(1000), Some(1300), Some(300))
        );
        assert_eq!(balance(&app, &customer).await, 0);
        let e = app
            .get("/v1/events?type=customer_balance_transaction.created")
            .await
            .ok();
        assert_eq!(e["data"].as_array().unwrap().len(), 3);
    }
);

both!(
    async fn a_credit_note_can_credit_the_balance_instead_of_the_card(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let p = app.monthly_price(4000).await;
        let s = app.subscription(&customer, &p).await;
        app.advance("2027-01-02T00:00:00Z").await;
        let inv = app.invoices_of(&id(&s)).await[0].clone();
        assert_eq!(inv["status"], "paid");
        let both = app
            .post("/v1/credit_notes", json!({"invoice": id(&inv), "amount": 1500, "reason": "order_change", "refund": true, "credit_to_balance": true}))
            .await;
        assert_eq!(
            (both.status.as_u16(), both.body["error"]["param"].as_str()),
            (400, Some("credit_to_balance"))
        );
        let note = app
            .post("/v1/credit_notes", json!({"invoice": id(&inv), "amount": 1500, "reason": "order_change", "credit_to_balance": true}))
            .await
            .ok();
        assert_eq!(
            (
                note["credit_amount"].as_i64(),
                note["refund_amount"].as_i64(),
                note["out_of_band_amount"].as_i64()
            ),
            (Some(1500), Some(0), Some(0))
        );
        assert_eq!(balance(&app, &customer).await, -1500);
        let t = transactions(&app, &customer).await;
        assert_eq!(t, [("credit_note".into(), -1500, -1500)]);
        assert_eq!(
            app.payments
                .sandbox
                .refunded_for(&recur::domain::ids::InvoiceId::parse(&id(&inv)).unwrap()),
            0,
            "no money went back to the card"
        );
        app.advance("2027-02-01T01:00:00Z").await;
        let feb = &app.invoices_of(&id(&s)).await[1];
        assert_eq!(
            (
                feb["starting_balance"].as_i64(),
                feb["amount_paid"].as_i64()
            ),
            (Some(-1500), Some(2500))
        );
        let open_inv = {
            let c2 = app
                .post("/v1/customers", json!({"name": "B", "currency": "EUR", "payment_method": {"provider": "sandbox", "token": "tok_insufficient_funds"}}))
                .await
                .ok();
            let s2 = app.subscription(&id(&c2), &p).await;
            app.invoices_of(&id(&s2)).await[0].clone()
        };
        let open = app
            .post("/v1/credit_notes", json!({"invoice": id(&open_inv), "amount": 100, "reason": "order_change", "credit_to_balance": true}))
            .await;
        assert_eq!(
            open.status.as_u16(),
            422,
            "an open invoice is credited by lowering what is due: {}",
            open.body
        );
    }
);

both!(
    async fn voiding_an_invoice_gives_back_the_balance_it_used(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = id(&app
            .post("/v1/customers", json!({"name": "V", "currency": "EUR", "payment_method": {"provider": "sandbox", "token": "tok_insufficient_funds"}}))
            .await
            .ok());
        app.post(
            &format!("/v1/customers/{customer}/balance_transactions"),
            json!({"amount": -500, "description": "goodwill"}),
        )
        .await
        .ok();
        let p = app.monthly_price(1000).await;
        let s = app.subscription(&customer, &p).await;
        let inv = app.invoices_of(&id(&s)).await[0].clone();
        assert_eq!(
            (inv["starting_balance"].as_i64(), inv["amount_due"].as_i64()),
            (Some(-500), Some(500))
        );
        assert_eq!(balance(&app, &customer).await, 0);
        app.post(&format!("/v1/invoices/{}/void", id(&inv)), json!({}))
            .await
            .ok();
        assert_eq!(
            balance(&app, &customer).await,
            -500,
            "the credit the void invoice used is back"
        );
        let t = transactions(&app, &customer).await;
        assert_eq!(
            t.last().unwrap(),
            &("invoice_voided".to_owned(), -500, -500)
        );
    }
);
