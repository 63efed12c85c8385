use crate::both;
use serde_json::json;

both!(
    async fn usage_is_recorded_for_metered_items_only(app: TestApp) {
        let customer = app.customer().await;
        let metered = app.metered_price().await;
        let sub = app.subscription(&customer, &metered).await;
        let item = sub["items"][0]["id"].as_str().unwrap();
        let u = app
            .post(
                "/v1/usage_records",
                json!({"subscription_item": item, "quantity": 120}),
            )
            .await
            .ok();
        assert_eq!(u["quantity"], 120);
        assert_eq!(u["action"], "increment");
        let s = app
            .post(
                "/v1/usage_records",
                json!({"subscription_item": item, "quantity": 7, "action": "set"}),
            )
            .await
            .ok();
        assert_eq!(s["action"], "set");

        let licensed = app.monthly_price(100).await;
        let sub2 = app.subscription(&customer, &licensed).await;
        let r = app
            .post(
                "/v1/usage_records",
                json!({"subscription_item": sub2["items"][0]["id"], "quantity": 1}),
            )
            .await;
        assert_eq!(r.status.as_u16(), 422);
        assert_eq!(r.error_code(), "price_not_metered");
    }
);

both!(
    async fn usage_is_totalled_per_period_with_a_set_replacing_what_came_before(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let metered = app.metered_price().await;
        let s = app.subscription(&customer, &metered).await;
        let item = s["items"][0]["id"].as_str().unwrap().to_owned();
        let post = |quantity: u64, action: &'static str, ts: &'static str| {
            let (app, item) = (&app, item.clone());
            async move {
                app.post("/v1/usage_records", serde_json::json!({"subscription_item": item, "quantity": quantity, "action": action, "timestamp": ts}))
                    .await
                    .ok();
            }
        };
        app.advance("2027-01-20T00:00:00Z").await;
        post(10, "increment", "2027-01-02T00:00:00Z").await;
        post(5, "set", "2027-01-03T00:00:00Z").await;
        // Same instant as the set but recorded after it: counted on top.
        post(3, "increment", "2027-01-03T00:00:00Z").await;
        post(2, "increment", "2027-01-04T00:00:00Z").await;
        post(1, "set", "2027-01-01T00:00:00Z").await;
        app.advance("2027-02-10T00:00:00Z").await;
        post(7, "increment", "2027-02-05T00:00:00Z").await;
        app.advance("2027-03-01T00:00:00Z").await;
        let inv = app.invoices_of(s["id"].as_str().unwrap()).await;
        let quantities: Vec<i64> = inv
            .iter()
            .map(|i| i["lines"][0]["quantity"].as_i64().unwrap())
            .collect();
        // January: the set of the 3rd (5), then 3 and 2 after it; February: 7.
        assert_eq!(quantities, [10, 7], "{inv:?}");
    }
);
