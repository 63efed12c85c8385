//! Billing scenarios through the API and the test clock: every invoice's period and totals.

use crate::{TestApp, both};
use serde_json::{Value, json};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

fn day(v: &Value) -> &str {
    &v.as_str().expect("time")[..10]
}

/// (period_start day, period_end day, subtotal, discount, tax, total) of each invoice.
fn summary(invoices: &[Value]) -> Vec<(String, String, i64, i64, i64, i64)> {
    invoices
        .iter()
        .map(|i| {
            (
                day(&i["period_start"]).to_owned(),
                day(&i["period_end"]).to_owned(),
                i["subtotal"].as_i64().unwrap(),
                i["discount"].as_i64().unwrap(),
                i["tax"].as_i64().unwrap(),
                i["total"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn price(app: &TestApp, body: Value) -> String {
    id(&app.post("/v1/prices", body).await.ok())
}

async fn sub(app: &TestApp, body: Value) -> Value {
    app.post("/v1/subscriptions", body).await.ok()
}

both!(
    async fn a_year_of_a_monthly_subscription_anchored_on_the_31st(app: TestApp) {
        app.set_clock("2028-01-31T10:00:00Z").await;
        let customer = app.customer().await;
        let p = app.monthly_price(4900).await;
        let vat = id(&app
            .post(
                "/v1/tax_rates",
                json!({"display_name": "VAT", "percentage": "23"}),
            )
            .await
            .ok());
        let s = sub(
            &app,
            json!({"customer": customer, "items": [{"price": p}], "default_tax_rates": [vat]}),
        )
        .await;
        let r = app.advance("2029-01-31T10:00:00Z").await;
        assert_eq!(r["invoices_created"], 12);
        let inv = app.invoices_of(&id(&s)).await;
        let ends: Vec<&str> = inv.iter().map(|i| day(&i["period_end"])).collect();
        assert_eq!(
            ends,
            [
                "2028-02-29",
                "2028-03-31",
                "2028-04-30",
                "2028-05-31",
                "2028-06-30",
                "2028-07-31",
                "2028-08-31",
                "2028-09-30",
                "2028-10-31",
                "2028-11-30",
                "2028-12-31",
                "2029-01-31",
                "2029-02-28"
            ]
        );
        for i in &inv {
            assert_eq!(
                (
                    i["subtotal"].as_i64(),
                    i["tax"].as_i64(),
                    i["total"].as_i64(),
                    i["amount_due"].as_i64()
                ),
                (Some(4900), Some(1127), Some(6027), Some(0))
            );
            assert_eq!(
                (i["status"].as_str(), i["amount_paid"].as_i64()),
                (Some("paid"), Some(6027)),
                "tok_visa pays each invoice"
            );
            assert_eq!(i["lines"].as_array().unwrap().len(), 1);
        }
        let numbers: Vec<&str> = inv.iter().map(|i| i["number"].as_str().unwrap()).collect();
        assert_eq!(numbers[0], "INV-2028-000001");
        assert_eq!(numbers[11], "INV-2028-000012");
        assert_eq!(numbers[12], "INV-2029-000001");
        assert_eq!(inv[0]["billing_reason"], "subscription_create");
        assert_eq!(inv[1]["billing_reason"], "subscription_cycle");
        let s = app.get(&format!("/v1/subscriptions/{}", id(&s))).await.ok();
        assert_eq!(day(&s["current_period_start"]), "2029-01-31");
        assert_eq!(day(&s["current_period_end"]), "2029-02-28");
    }
);

both!(
    async fn yearly_and_biweekly_subscriptions_follow_their_intervals(app: TestApp) {
        app.set_clock("2027-03-01T00:00:00Z").await;
        let customer = app.customer().await;
        let yearly = price(&app, json!({"product": "Annual", "currency": "EUR", "unit_amount": 50000, "recurring": {"interval": "year"}})).await;
        let biweekly = price(&app, json!({"product": "Fortnight", "currency": "EUR", "unit_amount": 700, "recurring": {"interval": "week", "interval_count": 2}})).await;
        let y = sub(
            &app,
            json!({"customer": customer, "items": [{"price": yearly}]}),
        )
        .await;
        let w = sub(
            &app,
            json!({"customer": customer, "items": [{"price": biweekly, "quantity": 2}]}),
        )
        .await;
        app.advance("2028-03-01T00:00:00Z").await;
        let yi = summary(&app.invoices_of(&id(&y)).await);
        assert_eq!(
            yi.iter().map(|i| i.0.as_str()).collect::<Vec<_>>(),
            ["2027-03-01", "2028-03-01"]
        );
        assert!(yi.iter().all(|i| i.5 == 50000));
        let wi = summary(&app.invoices_of(&id(&w)).await);
        assert_eq!(wi.len(), 27, "366 days / 14 = 26 renewals + the first");
        assert_eq!(wi[1].0, "2027-03-15");
        assert!(wi.iter().all(|i| i.5 == 1400));
    }
);

both!(
    async fn tiered_prices_bill_graduated_and_volume_amounts(app: TestApp) {
        app.set_clock("2027-05-01T00:00:00Z").await;
        let customer = app.customer().await;
        let tiers = json!([{"up_to": 5, "unit_amount": 500, "flat_amount": 1000}, {"up_to": 10, "unit_amount": 400}, {"up_to": "inf", "unit_amount": 300}]);
        let g = price(&app, json!({"product": "Seats", "currency": "EUR", "billing_scheme": "tiered", "tiers_mode": "graduated", "tiers": tiers, "recurring": {"interval": "month"}})).await;
        let v = price(&app, json!({"product": "Seats", "currency": "EUR", "billing_scheme": "tiered", "tiers_mode": "volume", "tiers": tiers, "recurring": {"interval": "month"}})).await;
        let sg = sub(
            &app,
            json!({"customer": customer, "items": [{"price": g, "quantity": 12}]}),
        )
        .await;
        let sv = sub(
            &app,
            json!({"customer": customer, "items": [{"price": v, "quantity": 12}]}),
        )
        .await;
        app.advance("2027-06-01T00:00:00Z").await;
        // Graduated: 1000 flat + 5 × 500 + 5 × 400 + 2 × 300. Volume: 12 × 300.
        assert!(
            summary(&app.invoices_of(&id(&sg)).await)
                .iter()
                .all(|i| i.2 == 6100)
        );
        assert!(
            summary(&app.invoices_of(&id(&sv)).await)
                .iter()
                .all(|i| i.2 == 3600)
        );
    }
);

both!(
    async fn metered_usage_is_billed_in_arrears_rounded_once(app: TestApp) {
        app.set_clock("2027-04-01T00:00:00Z").await;
        let customer = app.customer().await;
        let metered = app.metered_price().await;
        let s = sub(
            &app,
            json!({"customer": customer, "items": [{"price": metered}]}),
        )
        .await;
        let item = s["items"][0]["id"].as_str().unwrap().to_owned();
        assert!(
            app.invoices_of(&id(&s)).await.is_empty(),
            "nothing to bill in advance for usage"
        );
        app.post(
            "/v1/usage_records",
            json!({"subscription_item": item, "quantity": 1000}),
        )
        .await
        .ok();
        app.advance("2027-04-10T00:00:00Z").await;
        app.post(
            "/v1/usage_records",
            json!({"subscription_item": item, "quantity": 1}),
        )
        .await
        .ok();
        app.advance("2027-05-05T00:00:00Z").await;
        app.post(
            "/v1/usage_records",
            json!({"subscription_item": item, "quantity": 500}),
        )
        .await
        .ok();
        app.post(
            "/v1/usage_records",
            json!({"subscription_item": item, "quantity": 40, "action": "set"}),
        )
        .await
        .ok();
        app.post(
            "/v1/usage_records",
            json!({"subscription_item": item, "quantity": 2}),
        )
        .await
        .ok();
        app.advance("2027-06-01T00:00:00Z").await;
        let inv = app.invoices_of(&id(&s)).await;
        assert_eq!(inv.len(), 2);
        // 1001 × 0.5 = 500.5 -> 501 (half away from zero, once per line).
        assert_eq!(inv[0]["lines"][0]["quantity"], 1001);
        assert_eq!(inv[0]["subtotal"], 501);
        assert_eq!(
            (
                day(&inv[0]["lines"][0]["period_start"]),
                day(&inv[0]["lines"][0]["period_end"])
            ),
            ("2027-04-01", "2027-05-01")
        );
        // A set replaces what was counted before it: 40 + 2.
        assert_eq!(inv[1]["lines"][0]["quantity"], 42);
        assert_eq!(inv[1]["subtotal"], 21);
    }
);

both!(
    async fn coupons_apply_before_tax_for_their_duration(app: TestApp) {
        app.set_clock("2027-01-15T00:00:00Z").await;
        let customer = app.customer().await;
        let p = app.monthly_price(10000).await;
        let vat = id(&app
            .post(
                "/v1/tax_rates",
                json!({"display_name": "VAT", "percentage": "23"}),
            )
            .await
            .ok());
        let repeating = id(&app
            .post(
                "/v1/coupons",
                json!({"percent_off": 10, "duration": "repeating", "duration_in_months": 3}),
            )
            .await
            .ok());
        let once = id(&app
            .post(
                "/v1/coupons",
                json!({"amount_off": 2500, "currency": "EUR", "duration": "once"}),
            )
            .await
            .ok());
        let a = sub(&app, json!({"customer": customer, "items": [{"price": p}], "coupon": repeating, "default_tax_rates": [vat]})).await;
        let b = sub(
            &app,
            json!({"customer": customer, "items": [{"price": p}], "coupon": once}),
        )
        .await;
        app.advance("2027-06-15T00:00:00Z").await;
        let ai = summary(&app.invoices_of(&id(&a)).await);
        let discounted = (10000, 1000, 2070, 11070);
        let full = (10000, 0, 2300, 12300);
        let got: Vec<_> = ai.iter().map(|i| (i.2, i.3, i.4, i.5)).collect();
        assert_eq!(got, [discounted, discounted, discounted, full, full, full]);
        let bi = summary(&app.invoices_of(&id(&b)).await);
        assert_eq!(
            bi.iter().map(|i| i.5).collect::<Vec<_>>(),
            [7500, 10000, 10000, 10000, 10000, 10000]
        );
    }
);

both!(
    async fn taxes_are_per_rate_inclusive_split_back_and_reverse_charged(app: TestApp) {
        app.set_clock("2027-02-01T00:00:00Z").await;
        let customer = app.customer().await;
        let incl_price = price(&app, json!({"product": "Gross", "currency": "EUR", "unit_amount": 12300, "recurring": {"interval": "month"}, "tax_behavior": "inclusive"})).await;
        let incl = id(&app
            .post(
                "/v1/tax_rates",
                json!({"display_name": "VAT incl.", "percentage": "23", "inclusive": true}),
            )
            .await
            .ok());
        let s = sub(&app, json!({"customer": customer, "items": [{"price": incl_price}], "default_tax_rates": [incl]})).await;
        let i = &app.invoices_of(&id(&s)).await[0];
        assert_eq!(
            (
                i["subtotal"].as_i64(),
                i["tax"].as_i64(),
                i["total"].as_i64()
            ),
            (Some(10000), Some(2300), Some(12300))
        );
        assert_eq!(i["total_tax_amounts"][0]["inclusive"], true);
        // EN 16931: three lines of 0.10 at 23 % make 0.07 of VAT (per rate), not 0.06 (per line).
        let dime = |n: &str| json!({"product": n, "currency": "EUR", "unit_amount": 10, "recurring": {"interval": "month"}});
        let (d1, d2, d3) = (
            price(&app, dime("a")).await,
            price(&app, dime("b")).await,
            price(&app, dime("c")).await,
        );
        let vat = id(&app
            .post(
                "/v1/tax_rates",
                json!({"display_name": "VAT", "percentage": "23"}),
            )
            .await
            .ok());
        let s = sub(&app, json!({"customer": customer, "items": [{"price": d1}, {"price": d2}, {"price": d3}], "default_tax_rates": [vat]})).await;
        let i = &app.invoices_of(&id(&s)).await[0];
        assert_eq!(
            (
                i["subtotal"].as_i64(),
                i["tax"].as_i64(),
                i["total"].as_i64()
            ),
            (Some(30), Some(7), Some(37))
        );
        let reverse = id(&app
            .post(
                "/v1/customers",
                json!({"name": "EU buyer", "tax_exempt": "reverse", "currency": "EUR"}),
            )
            .await
            .ok());
        let s = sub(
            &app,
            json!({"customer": reverse, "items": [{"price": d1}], "default_tax_rates": [vat]}),
        )
        .await;
        let i = &app.invoices_of(&id(&s)).await[0];
        assert_eq!(
            (
                i["tax"].as_i64(),
                i["total"].as_i64(),
                i["tax_exempt"].as_str()
            ),
            (Some(0), Some(10), Some("reverse"))
        );
    }
);

both!(
    async fn quantity_changes_prorate_onto_the_next_invoice_or_at_once(app: TestApp) {
        app.set_clock("2027-04-01T00:00:00Z").await;
        let customer = app.customer().await;
        let p = app.monthly_price(3000).await;
        let a = sub(
            &app,
            json!({"customer": customer, "items": [{"price": p, "quantity": 1}]}),
        )
        .await;
        let b = sub(
            &app,
            json!({"customer": customer, "items": [{"price": p, "quantity": 1}]}),
        )
        .await;
        let c = sub(
            &app,
            json!({"customer": customer, "items": [{"price": p, "quantity": 1}]}),
        )
        .await;
        app.advance("2027-04-16T00:00:00Z").await;
        let item = |s: &Value| s["items"][0]["id"].as_str().unwrap().to_owned();
        app.patch(
            &format!("/v1/subscriptions/{}", id(&a)),
            json!({"items": [{"id": item(&a), "quantity": 3}]}),
        )
        .await
        .ok();
        app.patch(&format!("/v1/subscriptions/{}", id(&b)), json!({"items": [{"id": item(&b), "quantity": 3}], "proration_behavior": "always_invoice"})).await.ok();
        app.patch(
            &format!("/v1/subscriptions/{}", id(&c)),
            json!({"items": [{"id": item(&c), "quantity": 3}], "proration_behavior": "none"}),
        )
        .await
        .ok();
        // Half of April's 30 days remain: credit 1 × 3000 / 2, charge 3 × 3000 / 2.
        let bi = app.invoices_of(&id(&b)).await;
        assert_eq!(bi.len(), 2, "always_invoice bills the prorations at once");
        assert_eq!(bi[1]["billing_reason"], "subscription_update");
        let amounts: Vec<i64> = bi[1]["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["amount"].as_i64().unwrap())
            .collect();
        assert_eq!(amounts, [-1500, 4500]);
        assert!(
            bi[1]["lines"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["proration"] == true)
        );
        app.advance("2027-05-01T00:00:00Z").await;
        let ai = app.invoices_of(&id(&a)).await;
        let may: Vec<i64> = ai[1]["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["amount"].as_i64().unwrap())
            .collect();
        assert_eq!(may, [-1500, 4500, 9000]);
        assert_eq!(ai[1]["subtotal"], 12000);
        assert_eq!(
            app.invoices_of(&id(&b)).await[2]["subtotal"],
            9000,
            "prorations are not billed twice"
        );
        assert_eq!(app.invoices_of(&id(&c)).await[1]["subtotal"], 9000);
    }
);

both!(
    async fn a_trial_bills_nothing_until_it_ends(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let p = app.monthly_price(2000).await;
        let s = sub(
            &app,
            json!({"customer": customer, "items": [{"price": p}], "trial_period_days": 14}),
        )
        .await;
        assert!(app.invoices_of(&id(&s)).await.is_empty());
        let r = app.advance("2027-03-01T00:00:00Z").await;
        assert_eq!(r["trials_ended"], 1);
        let inv = summary(&app.invoices_of(&id(&s)).await);
        assert_eq!(
            inv.iter()
                .map(|i| (i.0.as_str(), i.1.as_str()))
                .collect::<Vec<_>>(),
            [("2027-01-15", "2027-02-15"), ("2027-02-15", "2027-03-15")]
        );
        assert_eq!(
            app.get(&format!("/v1/subscriptions/{}", id(&s))).await.ok()["status"],
            "active"
        );
    }
);

both!(
    async fn cancel_at_period_end_stops_billing_at_the_boundary(app: TestApp) {
        app.set_clock("2027-01-10T00:00:00Z").await;
        let customer = app.customer().await;
        let p = app.monthly_price(2000).await;
        let s = sub(&app, json!({"customer": customer, "items": [{"price": p}]})).await;
        app.post(
            &format!("/v1/subscriptions/{}/cancel", id(&s)),
            json!({"at_period_end": true}),
        )
        .await
        .ok();
        let r = app.advance("2027-06-01T00:00:00Z").await;
        assert_eq!(r["subscriptions_ended"], 1);
        assert_eq!(app.invoices_of(&id(&s)).await.len(), 1);
        let s = app.get(&format!("/v1/subscriptions/{}", id(&s))).await.ok();
        assert_eq!(s["status"], "canceled");
        assert_eq!(day(&s["ended_at"]), "2027-02-10");
    }
);

both!(
    async fn a_paused_subscription_is_not_invoiced_and_resumes_on_a_new_cycle(app: TestApp) {
        app.set_clock("2027-01-10T00:00:00Z").await;
        let customer = app.customer().await;
        let p = app.monthly_price(2000).await;
        let s = sub(&app, json!({"customer": customer, "items": [{"price": p}]})).await;
        app.post(&format!("/v1/subscriptions/{}/pause", id(&s)), json!({}))
            .await
            .ok();
        app.advance("2027-04-20T00:00:00Z").await;
        assert_eq!(app.invoices_of(&id(&s)).await.len(), 1);
        let resumed = app
            .post(&format!("/v1/subscriptions/{}/resume", id(&s)), json!({}))
            .await
            .ok();
        assert_eq!(day(&resumed["current_period_start"]), "2027-04-20");
        app.advance("2027-05-25T00:00:00Z").await;
        let inv = summary(&app.invoices_of(&id(&s)).await);
        assert_eq!(
            inv.iter().map(|i| i.0.as_str()).collect::<Vec<_>>(),
            ["2027-01-10", "2027-04-20", "2027-05-20"]
        );
    }
);

both!(
    async fn a_billing_cycle_anchor_prorates_the_short_first_period(app: TestApp) {
        app.set_clock("2027-01-10T00:00:00Z").await;
        let customer = app.customer().await;
        let p = app.monthly_price(3100).await;
        let s = sub(&app, json!({"customer": customer, "items": [{"price": p}], "billing_cycle_anchor": "2027-02-01T00:00:00Z"})).await;
        app.advance("2027-03-01T00:00:00Z").await;
        let inv = summary(&app.invoices_of(&id(&s)).await);
        // 22 of January's 31 days.
        assert_eq!(
            inv[0],
            ("2027-01-10".into(), "2027-02-01".into(), 2200, 0, 0, 2200)
        );
        assert_eq!(inv[1].0, "2027-02-01");
        assert_eq!(inv[1].2, 3100);
        assert_eq!(inv[2].0, "2027-03-01");
    }
);

both!(
    async fn invoices_are_voided_or_written_off_once_and_zero_totals_are_paid(app: TestApp) {
        let customer = app.customer().await;
        let p = app.monthly_price(1000).await;
        let free = app.monthly_price(0).await;
        let a = sub(&app, json!({"customer": customer, "items": [{"price": p}]})).await;
        let b = sub(&app, json!({"customer": customer, "items": [{"price": p}]})).await;
        let z = sub(
            &app,
            json!({"customer": customer, "items": [{"price": free}]}),
        )
        .await;
        let zi = &app.invoices_of(&id(&z)).await[0];
        assert_eq!(
            (zi["status"].as_str(), zi["amount_due"].as_i64()),
            (Some("paid"), Some(0))
        );
        assert!(zi["number"].as_str().unwrap().starts_with("INV-"));
        let ia = id(&app.invoices_of(&id(&a)).await[0]);
        let ib = id(&app.invoices_of(&id(&b)).await[0]);
        let v = app
            .post(&format!("/v1/invoices/{ia}/void"), json!({}))
            .await
            .ok();
        assert_eq!(
            (v["status"].as_str(), v["amount_due"].as_i64()),
            (Some("void"), Some(0))
        );
        assert!(v["number"].is_string(), "a void keeps its number");
        let u = app
            .post(&format!("/v1/invoices/{ib}/mark_uncollectible"), json!({}))
            .await
            .ok();
        assert_eq!(u["status"], "uncollectible");
        let r = app
            .post(&format!("/v1/invoices/{ia}/void"), json!({}))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (422, "invoice_invalid_state")
        );
        let r = app
            .post(&format!("/v1/invoices/{}/void", id(zi)), json!({}))
            .await;
        assert_eq!(r.status.as_u16(), 422);
        assert_eq!(
            app.get("/v1/invoices?status=void").await.ok()["data"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        for kind in [
            "invoice.created",
            "invoice.finalized",
            "invoice.paid",
            "invoice.voided",
            "invoice.marked_uncollectible",
        ] {
            assert!(
                !app.get(&format!("/v1/events?type={kind}")).await.ok()["data"]
                    .as_array()
                    .unwrap()
                    .is_empty(),
                "{kind}"
            );
        }
    }
);

both!(
    async fn the_clock_only_moves_forward_and_reruns_bill_nothing_twice(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let p = app.monthly_price(1000).await;
        let s = sub(&app, json!({"customer": customer, "items": [{"price": p}]})).await;
        app.advance("2027-03-01T00:00:00Z").await;
        for bad in [
            "2027-02-01T00:00:00Z",
            "2027-03-01T00:00:00Z",
            "2047-03-01T00:00:00Z",
        ] {
            let r = app.post("/v1/test_clock/advance", json!({"to": bad})).await;
            assert_eq!(
                (r.status.as_u16(), r.error_code()),
                (400, "parameter_invalid"),
                "{bad}"
            );
        }
        let tenant = app.tenant().await;
        let clock = tenant.clock_time.unwrap();
        for _ in 0..3 {
            let again = recur::billing::run::run_due(&app.db, &tenant, clock, 500)
                .await
                .unwrap();
            assert_eq!(again.invoices_created, 0);
        }
        assert_eq!(app.invoices_of(&id(&s)).await.len(), 3);
    }
);

both!(
    async fn live_tenants_have_no_test_clock(app: TestApp) {
        let (_, key) = recur::services::tenants::create_tenant(
            &app.db,
            "live",
            recur::domain::tenant::Mode::Live,
            "INV",
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        let r = app
            .send(
                reqwest::Method::POST,
                "/v1/test_clock/advance",
                Some(&key.0),
                None,
                Some(r#"{"to": "2030-01-01T00:00:00Z"}"#),
            )
            .await;
        assert_eq!((r.status.as_u16(), r.error_code()), (422, "not_test_mode"));
    }
);
