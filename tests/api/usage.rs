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
