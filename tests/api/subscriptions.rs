use crate::both;
use chrono::{DateTime, Utc};
use serde_json::json;

fn time(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

both!(
    async fn a_subscription_starts_active_on_a_monthly_period(app: TestApp) {
        let customer = app.customer().await;
        let price = app.monthly_price(4900).await;
        let s = app
            .post(
                "/v1/subscriptions",
                json!({"customer": customer, "items": [{"price": price, "quantity": 3}]}),
            )
            .await
            .ok();
        assert!(s["id"].as_str().unwrap().starts_with("sub_"));
        assert_eq!(s["status"], "active");
        assert_eq!(s["items"][0]["quantity"], 3);
        assert!(s["items"][0]["id"].as_str().unwrap().starts_with("si_"));
        let start = time(&s["current_period_start"]);
        let end = time(&s["current_period_end"]);
        assert_eq!(start, time(&s["start_date"]));
        assert!(
            (28..=31).contains(&(end - start).num_days()),
            "{start} .. {end}"
        );
        assert_eq!(
            app.get(&format!("/v1/subscriptions/{}", s["id"].as_str().unwrap()))
                .await
                .ok(),
            s
        );
    }
);

both!(
    async fn a_trial_comes_first_and_anchors_the_cycle(app: TestApp) {
        let customer = app.customer().await;
        let price = app.monthly_price(4900).await;
        let s = app
            .post(
                "/v1/subscriptions",
                json!({"customer": customer, "items": [{"price": price}], "trial_period_days": 14}),
            )
            .await
            .ok();
        assert_eq!(s["status"], "trialing");
        assert_eq!(s["trial_end"], s["current_period_end"]);
        assert_eq!(s["billing_cycle_anchor"], s["trial_end"]);
        assert_eq!(
            (time(&s["trial_end"]) - time(&s["start_date"])).num_days(),
            14
        );
    }
);

both!(
    async fn a_billing_cycle_anchor_gives_a_short_first_period(app: TestApp) {
        let customer = app.customer().await;
        let price = app.monthly_price(4900).await;
        let now = time(
            &app.post(
                "/v1/tax_rates",
                json!({"display_name": "x", "percentage": "0"}),
            )
            .await
            .ok()["created"],
        );
        let anchor = now + chrono::Duration::days(10);
        let s = app
            .post("/v1/subscriptions", json!({"customer": customer, "items": [{"price": price}], "billing_cycle_anchor": anchor.to_rfc3339()}))
            .await
            .ok();
        assert_eq!(time(&s["current_period_end"]), anchor);
        assert_eq!(time(&s["billing_cycle_anchor"]), anchor);
        let too_far = now + chrono::Duration::days(45);
        let r = app
            .post("/v1/subscriptions", json!({"customer": customer, "items": [{"price": price}], "billing_cycle_anchor": too_far.to_rfc3339()}))
            .await;
        assert_eq!(r.status.as_u16(), 400);
        assert_eq!(r.body["error"]["param"], "billing_cycle_anchor");
    }
);

both!(
    async fn item_changes_are_recorded_for_proration(app: TestApp) {
        let customer = app.customer().await;
        let price = app.monthly_price(1000).await;
        let extra = app.monthly_price(500).await;
        let s = app.subscription(&customer, &price).await;
        let id = s["id"].as_str().unwrap();
        let item = s["items"][0]["id"].as_str().unwrap();
        let s2 = app
            .patch(
                &format!("/v1/subscriptions/{id}"),
                json!({"items": [{"id": item, "quantity": 4}, {"price": extra, "quantity": 2}]}),
            )
            .await
            .ok();
        assert_eq!(s2["items"].as_array().unwrap().len(), 2);
        assert_eq!(s2["items"][0]["quantity"], 4);
        assert_eq!(s2["items"][0]["id"], item);
        let s3 = app
            .patch(
                &format!("/v1/subscriptions/{id}"),
                json!({"items": [{"id": item, "deleted": true}], "proration_behavior": "none"}),
            )
            .await
            .ok();
        assert_eq!(s3["items"].as_array().unwrap().len(), 1);
        assert_eq!(s3["items"][0]["price"], extra);
        assert_eq!(
            app.get(&format!("/v1/subscriptions/{id}")).await.ok()["items"],
            s3["items"]
        );
        let counts = app.row_counts().await;
        assert!(counts.contains(&("subscription_changes", 2)), "{counts:?}");
        let r = app
            .patch(
                &format!("/v1/subscriptions/{id}"),
                json!({"items": [{"id": s3["items"][0]["id"], "deleted": true}]}),
            )
            .await;
        assert_eq!(r.status.as_u16(), 400);
        assert_eq!(
            app.get("/v1/events?type=customer.subscription.updated")
                .await
                .ok()["data"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
);

both!(
    async fn cancel_pause_and_resume_follow_the_state_machine(app: TestApp) {
        let customer = app.customer().await;
        let price = app.monthly_price(1000).await;
        let id = app.subscription(&customer, &price).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let s = app
            .post(
                &format!("/v1/subscriptions/{id}/cancel"),
                json!({"at_period_end": true}),
            )
            .await
            .ok();
        assert_eq!(
            (s["status"].as_str(), s["cancel_at_period_end"].as_bool()),
            (Some("active"), Some(true))
        );
        let s = app
            .post(&format!("/v1/subscriptions/{id}/pause"), json!({}))
            .await
            .ok();
        assert_eq!(s["status"], "paused");
        assert!(s["paused_at"].is_string());
        let r = app
            .post(&format!("/v1/subscriptions/{id}/pause"), json!({}))
            .await;
        assert_eq!(r.status.as_u16(), 422);
        let s = app
            .post(&format!("/v1/subscriptions/{id}/resume"), json!({}))
            .await
            .ok();
        assert_eq!(s["status"], "active");
        let s = app
            .post(&format!("/v1/subscriptions/{id}/cancel"), json!({}))
            .await
            .ok();
        assert_eq!(s["status"], "canceled");
        assert!(s["ended_at"].is_string());
        for path in ["cancel", "pause", "resume"] {
            let r = app
                .post(&format!("/v1/subscriptions/{id}/{path}"), json!({}))
                .await;
            assert_eq!(r.status.as_u16(), 422, "{path}");
            assert_eq!(r.error_code(), "subscription_invalid_state");
        }
        let r = app
            .patch(
                &format!("/v1/subscriptions/{id}"),
                json!({"cancel_at_period_end": false}),
            )
            .await;
        assert_eq!(r.status.as_u16(), 422);
        assert_eq!(
            app.get("/v1/events?type=customer.subscription.deleted")
                .await
                .ok()["data"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
);

both!(
    async fn subscriptions_are_filtered_by_customer_and_status(app: TestApp) {
        let a = app.customer().await;
        let b = app.customer().await;
        let price = app.monthly_price(1000).await;
        app.subscription(&a, &price).await;
        let sb = app.subscription(&b, &price).await;
        app.post(
            &format!("/v1/subscriptions/{}/cancel", sb["id"].as_str().unwrap()),
            json!({}),
        )
        .await
        .ok();
        let by_a = app
            .get(&format!("/v1/subscriptions?customer={a}"))
            .await
            .ok();
        assert_eq!(by_a["data"].as_array().unwrap().len(), 1);
        assert_eq!(by_a["data"][0]["customer"], a.as_str());
        let canceled = app.get("/v1/subscriptions?status=canceled").await.ok();
        assert_eq!(canceled["data"].as_array().unwrap().len(), 1);
        assert_eq!(canceled["data"][0]["id"], sb["id"]);
        assert_eq!(
            app.get("/v1/subscriptions?status=active&limit=1")
                .await
                .ok()["data"][0]["items"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
);
