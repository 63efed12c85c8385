//! Plan changes as a customer's finance team checks them: every expected figure is computed
//! by hand first (January has 31 days; a change on the 11th leaves 21 of them).

use crate::{TestApp, both};
use serde_json::{Value, json};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

fn amounts(inv: &Value) -> Vec<i64> {
    inv["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["amount"].as_i64().expect("amount"))
        .collect()
}

async fn two_prices(app: &TestApp) -> (String, String, String) {
    app.set_clock("2027-01-01T00:00:00Z").await;
    (
        app.customer().await,
        app.monthly_price(3000).await,
        app.monthly_price(6000).await,
    )
}

both!(
    async fn a_price_swap_keeps_billing_with_its_prorations(app: TestApp) {
        let (customer, p30, p60) = two_prices(&app).await;
        let s = app.subscription(&customer, &p30).await;
        app.advance("2027-01-11T00:00:00Z").await;
        let item = s["items"][0]["id"].as_str().unwrap();
        app.patch(
            &format!("/v1/subscriptions/{}", id(&s)),
            json!({"items": [{"id": item, "price": p60}]}),
        )
        .await
        .ok();
        let r = app.advance("2027-03-01T00:00:00Z").await;
        assert_eq!(r["failed"], 0, "{r}");
        let inv = app.invoices_of(&id(&s)).await;
        assert_eq!(inv.len(), 3, "January, February and March are invoiced");
        // −3000 × 21/31 = −2032.26, +6000 × 21/31 = 4064.52, then a month on P60.
        assert_eq!(amounts(&inv[1]), [-2032, 4065, 6000]);
        assert_eq!(inv[1]["total"], 8033);
        assert_eq!(amounts(&inv[2]), [6000]);
        let s = app.get(&format!("/v1/subscriptions/{}", id(&s))).await.ok();
        assert_eq!(s["status"], "active");
        assert_eq!(
            &s["current_period_end"].as_str().unwrap()[..10],
            "2027-04-01"
        );
    }
);

both!(
    async fn removing_an_item_keeps_billing_the_rest(app: TestApp) {
        let (customer, p30, p60) = two_prices(&app).await;
        let s = app
            .post(
                "/v1/subscriptions",
                json!({"customer": customer, "items": [{"price": p30}, {"price": p60}]}),
            )
            .await
            .ok();
        app.advance("2027-01-11T00:00:00Z").await;
        let gone = s["items"][1]["id"].as_str().unwrap();
        app.patch(
            &format!("/v1/subscriptions/{}", id(&s)),
            json!({"items": [{"id": gone, "deleted": true}]}),
        )
        .await
        .ok();
        let r = app.advance("2027-03-01T00:00:00Z").await;
        assert_eq!(r["failed"], 0, "{r}");
        let inv = app.invoices_of(&id(&s)).await;
        assert_eq!(inv.len(), 3);
        assert_eq!(amounts(&inv[1]), [-4065, 3000]);
        assert_eq!(amounts(&inv[2]), [3000]);
    }
);

both!(
    async fn a_swapped_subscription_set_to_cancel_at_period_end_ends(app: TestApp) {
        let (customer, p30, p60) = two_prices(&app).await;
        let s = app.subscription(&customer, &p30).await;
        app.advance("2027-01-11T00:00:00Z").await;
        let item = s["items"][0]["id"].as_str().unwrap();
        app.patch(
            &format!("/v1/subscriptions/{}", id(&s)),
            json!({"items": [{"id": item, "price": p60}], "cancel_at_period_end": true}),
        )
        .await
        .ok();
        let r = app.advance("2027-03-01T00:00:00Z").await;
        assert_eq!(
            (r["failed"].as_i64(), r["subscriptions_ended"].as_i64()),
            (Some(0), Some(1)),
            "{r}"
        );
        let s = app.get(&format!("/v1/subscriptions/{}", id(&s))).await.ok();
        assert_eq!(s["status"], "canceled");
        let inv = app.invoices_of(&id(&s)).await;
        assert_eq!(
            amounts(&inv[1]),
            [-2032, 4065],
            "the final invoice bills the prorations"
        );
    }
);

both!(
    async fn always_invoice_prorations_get_the_subscriptions_discount(app: TestApp) {
        let (customer, p30, p60) = two_prices(&app).await;
        let half = id(&app
            .post(
                "/v1/coupons",
                json!({"percent_off": 50, "duration": "forever"}),
            )
            .await
            .ok());
        let s = app
            .post(
                "/v1/subscriptions",
                json!({"customer": customer, "items": [{"price": p30}], "coupon": half}),
            )
            .await
            .ok();
        app.advance("2027-01-11T00:00:00Z").await;
        let item = s["items"][0]["id"].as_str().unwrap();
        app.patch(
            &format!("/v1/subscriptions/{}", id(&s)),
            json!({"items": [{"id": item, "price": p60}], "proration_behavior": "always_invoice"}),
        )
        .await
        .ok();
        let inv = app.invoices_of(&id(&s)).await;
        assert_eq!(inv.len(), 2);
        assert_eq!(amounts(&inv[1]), [-2032, 4065]);
        // 2033 net before the discount; half of it off (rounded half away from zero).
        assert_eq!(
            (
                inv[1]["subtotal"].as_i64(),
                inv[1]["discount"].as_i64(),
                inv[1]["total"].as_i64()
            ),
            (Some(2033), Some(1017), Some(1016))
        );
    }
);

both!(
    async fn changes_inside_a_short_first_period_prorate_against_the_full_interval(app: TestApp) {
        let (customer, p30, p60) = two_prices(&app).await;
        let up = app
            .post("/v1/subscriptions", json!({"customer": customer, "items": [{"price": p30}], "billing_cycle_anchor": "2027-01-11T00:00:00Z"}))
            .await
            .ok();
        let down = app
            .post("/v1/subscriptions", json!({"customer": customer, "items": [{"price": p60}], "billing_cycle_anchor": "2027-01-11T00:00:00Z"}))
            .await
            .ok();
        // The stub: 10 of the 31 days of 2026-12-11 – 2027-01-11.
        assert_eq!(amounts(&app.invoices_of(&id(&up)).await[0]), [968]);
        assert_eq!(amounts(&app.invoices_of(&id(&down)).await[0]), [1935]);
        app.advance("2027-01-06T00:00:00Z").await;
        for (s, to) in [(&up, &p60), (&down, &p30)] {
            app.patch(
                &format!("/v1/subscriptions/{}", id(s)),
                json!({"items": [{"id": s["items"][0]["id"], "price": to}]}),
            )
            .await
            .ok();
        }
        app.advance("2027-01-11T00:00:00Z").await;
        // 5 days of 31 remain: 3000 × 5/31 = 483.87, 6000 × 5/31 = 967.74.
        assert_eq!(
            amounts(&app.invoices_of(&id(&up)).await[1]),
            [-484, 968, 6000]
        );
        assert_eq!(
            amounts(&app.invoices_of(&id(&down)).await[1]),
            [-968, 484, 3000]
        );
    }
);

both!(
    async fn a_change_to_a_paused_subscription_after_its_period_writes_no_prorations(app: TestApp) {
        let (customer, p30, p60) = two_prices(&app).await;
        let s = app.subscription(&customer, &p30).await;
        app.post(&format!("/v1/subscriptions/{}/pause", id(&s)), json!({}))
            .await
            .ok();
        app.advance("2027-02-15T00:00:00Z").await;
        app.patch(
            &format!("/v1/subscriptions/{}", id(&s)),
            json!({"items": [{"id": s["items"][0]["id"], "price": p60}]}),
        )
        .await
        .ok();
        app.post(&format!("/v1/subscriptions/{}/resume", id(&s)), json!({}))
            .await
            .ok();
        let inv = app.invoices_of(&id(&s)).await;
        assert_eq!(inv.len(), 2, "{inv:?}");
        assert_eq!(
            amounts(&inv[1]),
            [6000],
            "the new cycle, no zero or reversed proration lines"
        );
    }
);

both!(
    async fn a_once_coupon_applies_to_the_first_invoice_whatever_its_amount(app: TestApp) {
        let (customer, p30, _) = two_prices(&app).await;
        let once = id(&app
            .post(
                "/v1/coupons",
                json!({"percent_off": 50, "duration": "once"}),
            )
            .await
            .ok());
        let zero = app
            .post("/v1/subscriptions", json!({"customer": customer, "items": [{"price": p30, "quantity": 0}], "coupon": once}))
            .await
            .ok();
        let trial = app
            .post("/v1/subscriptions", json!({"customer": customer, "items": [{"price": p30}], "coupon": once, "trial_period_days": 14}))
            .await
            .ok();
        app.patch(
            &format!("/v1/subscriptions/{}", id(&zero)),
            json!({"items": [{"id": zero["items"][0]["id"], "quantity": 1}], "proration_behavior": "none"}),
        )
        .await
        .ok();
        app.advance("2027-03-01T00:00:00Z").await;
        let z = app.invoices_of(&id(&zero)).await;
        let discounts: Vec<i64> = z.iter().map(|i| i["discount"].as_i64().unwrap()).collect();
        assert_eq!(
            discounts,
            [0, 0, 0],
            "the zero first invoice used the coupon"
        );
        // With a trial the first invoice is the one at the trial's end (the trial bills nothing).
        let t = app.invoices_of(&id(&trial)).await;
        let discounts: Vec<i64> = t.iter().map(|i| i["discount"].as_i64().unwrap()).collect();
        assert_eq!(discounts, [1500, 0]);
    }
);

both!(
    async fn usage_recorded_before_a_pause_is_billed_when_it_resumes(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let metered = app.metered_price().await;
        let s = app.subscription(&customer, &metered).await;
        let item = s["items"][0]["id"].as_str().unwrap().to_owned();
        app.advance("2027-01-10T00:00:00Z").await;
        app.post(
            "/v1/usage_records",
            json!({"subscription_item": item, "quantity": 40}),
        )
        .await
        .ok();
        app.post(&format!("/v1/subscriptions/{}/pause", id(&s)), json!({}))
            .await
            .ok();
        app.advance("2027-03-10T00:00:00Z").await;
        let r = app
            .post(&format!("/v1/subscriptions/{}/resume", id(&s)), json!({}))
            .await
            .ok();
        assert_eq!(r["status"], "active");
        let inv = app.invoices_of(&id(&s)).await;
        assert_eq!(inv.len(), 1, "{inv:?}");
        // 40 calls at 0.5 cents.
        assert_eq!(amounts(&inv[0]), [20]);
        assert_eq!(
            &inv[0]["lines"][0]["period_start"].as_str().unwrap()[..10],
            "2027-01-01"
        );
    }
);

both!(
    async fn cancelling_now_can_bill_usage_and_credit_unused_time(app: TestApp) {
        let (customer, p30, _) = two_prices(&app).await;
        let metered = app.metered_price().await;
        let s = app
            .post(
                "/v1/subscriptions",
                json!({"customer": customer, "items": [{"price": p30}, {"price": metered}]}),
            )
            .await
            .ok();
        let plain = app.subscription(&customer, &p30).await;
        app.advance("2027-01-11T00:00:00Z").await;
        app.post(
            "/v1/usage_records",
            json!({"subscription_item": s["items"][1]["id"], "quantity": 40}),
        )
        .await
        .ok();
        let bad = app
            .post(
                &format!("/v1/subscriptions/{}/cancel", id(&s)),
                json!({"at_period_end": true, "prorate": true}),
            )
            .await;
        assert_eq!(
            (bad.status.as_u16(), bad.body["error"]["param"].as_str()),
            (400, Some("prorate"))
        );
        let c = app
            .post(
                &format!("/v1/subscriptions/{}/cancel", id(&s)),
                json!({"invoice_now": true, "prorate": true}),
            )
            .await
            .ok();
        assert_eq!(c["status"], "canceled");
        let inv = app.invoices_of(&id(&s)).await;
        assert_eq!(inv.len(), 2);
        assert_eq!(inv[1]["billing_reason"], "subscription_final");
        // 40 calls at 0.5 cents, then 21 of January's 31 days of 3000 given back.
        assert_eq!(amounts(&inv[1]), [20, -2032]);
        assert_eq!(inv[1]["total"], -2012);
        let cus = app.get(&format!("/v1/customers/{customer}")).await.ok();
        assert_eq!(
            cus["balance"], -2012,
            "the unused time is the customer's credit"
        );
        app.post(
            &format!("/v1/subscriptions/{}/cancel", id(&plain)),
            json!({}),
        )
        .await
        .ok();
        assert_eq!(
            app.invoices_of(&id(&plain)).await.len(),
            1,
            "a plain cancel bills nothing"
        );
    }
);

both!(
    async fn swapping_to_a_yearly_price_restarts_the_cycle_now(app: TestApp) {
        let (customer, p30, _) = two_prices(&app).await;
        let yearly = id(&app
            .post("/v1/prices", json!({"product": "Annual", "currency": "EUR", "unit_amount": 30000, "recurring": {"interval": "year"}}))
            .await
            .ok());
        let s = app.subscription(&customer, &p30).await;
        app.advance("2027-01-11T00:00:00Z").await;
        let r = app
            .patch(
                &format!("/v1/subscriptions/{}", id(&s)),
                json!({"items": [{"id": s["items"][0]["id"], "price": yearly}]}),
            )
            .await
            .ok();
        assert_eq!(
            &r["current_period_start"].as_str().unwrap()[..10],
            "2027-01-11"
        );
        assert_eq!(
            &r["current_period_end"].as_str().unwrap()[..10],
            "2028-01-11"
        );
        let inv = app.invoices_of(&id(&s)).await;
        assert_eq!(inv.len(), 2, "the new period is invoiced at once");
        // 21 unused days of January credited, a year charged from today.
        assert_eq!(amounts(&inv[1]), [-2032, 30000]);
        app.advance("2028-01-12T00:00:00Z").await;
        let inv = app.invoices_of(&id(&s)).await;
        assert_eq!(inv.len(), 3, "{inv:?}");
        assert_eq!(amounts(&inv[2]), [30000]);
        // Mixing intervals on one subscription stays refused.
        let mixed = app
            .patch(
                &format!("/v1/subscriptions/{}", id(&s)),
                json!({"items": [{"price": p30}]}),
            )
            .await;
        assert_eq!(
            (mixed.status.as_u16(), mixed.error_code()),
            (422, "interval_mismatch")
        );
    }
);

both!(
    async fn a_year_of_changes_bills_every_period_as_computed_by_hand(app: TestApp) {
        let (customer, p30, p60) = two_prices(&app).await;
        let p10 = app.monthly_price(1000).await;
        let s = app
            .post("/v1/subscriptions", json!({"customer": customer, "items": [{"price": p30}, {"price": p10, "quantity": 2}]}))
            .await
            .ok();
        let path = format!("/v1/subscriptions/{}", id(&s));
        // February has 28 days: on the 15th, 14 remain.
        app.advance("2027-02-15T00:00:00Z").await;
        app.patch(
            &path,
            json!({"items": [{"id": s["items"][0]["id"], "price": p60}]}),
        )
        .await
        .ok();
        // April has 30 days: on the 16th, 15 remain.
        app.advance("2027-04-16T00:00:00Z").await;
        app.patch(
            &path,
            json!({"items": [{"id": s["items"][1]["id"], "deleted": true}]}),
        )
        .await
        .ok();
        app.advance("2027-05-10T00:00:00Z").await;
        app.post(&format!("{path}/pause"), json!({})).await.ok();
        app.advance("2027-07-05T00:00:00Z").await;
        app.post(&format!("{path}/resume"), json!({})).await.ok();
        app.advance("2028-01-01T00:00:00Z").await;
        let got: Vec<(String, Vec<i64>, i64)> = app
            .invoices_of(&id(&s))
            .await
            .iter()
            .map(|i| {
                (
                    i["period_start"].as_str().unwrap()[..10].to_owned(),
                    amounts(i),
                    i["total"].as_i64().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, Vec<i64>, i64)> = [
            ("2027-01-01", vec![3000, 2000], 5000),
            ("2027-02-01", vec![3000, 2000], 5000),
            // −3000 × 14/28, +6000 × 14/28, then March on P60 and 2 × P10.
            ("2027-03-01", vec![-1500, 3000, 6000, 2000], 9500),
            ("2027-04-01", vec![6000, 2000], 8000),
            // −2000 × 15/30 for the removed item.
            ("2027-05-01", vec![-1000, 6000], 5000),
            // Paused from May 10; resumed July 5: a new cycle from then, nothing for the pause.
            ("2027-07-05", vec![6000], 6000),
            ("2027-08-05", vec![6000], 6000),
            ("2027-09-05", vec![6000], 6000),
            ("2027-10-05", vec![6000], 6000),
            ("2027-11-05", vec![6000], 6000),
            ("2027-12-05", vec![6000], 6000),
        ]
        .into_iter()
        .map(|(d, a, t)| (d.to_owned(), a, t))
        .collect();
        assert_eq!(got, want);
    }
);

both!(
    async fn cancelling_with_prorate_bills_the_pending_changes_it_credits(app: TestApp) {
        let (customer, p30, p60) = two_prices(&app).await;
        let s = app.subscription(&customer, &p30).await;
        app.advance("2027-01-11T00:00:00Z").await;
        app.patch(
            &format!("/v1/subscriptions/{}", id(&s)),
            json!({"items": [{"id": s["items"][0]["id"], "price": p60}]}),
        )
        .await
        .ok();
        app.post(
            &format!("/v1/subscriptions/{}/cancel", id(&s)),
            json!({"prorate": true}),
        )
        .await
        .ok();
        let inv = app.invoices_of(&id(&s)).await;
        // The upgrade (−2032 + 4065) is billed with the credit for P60's unused 21 days
        // (−4065): net, the unused time of what was paid for, P30's.
        assert_eq!(amounts(&inv[1]), [-2032, 4065, -4065]);
        assert_eq!(inv[1]["total"], -2032);
    }
);
