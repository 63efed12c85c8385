use crate::both;
use serde_json::json;

both!(
    async fn prices_round_trip_per_unit_and_tiered(app: TestApp) {
        let p = app
            .post("/v1/prices", json!({"product": "Storage", "currency": "KWD", "unit_amount_decimal": "0.025",
                "recurring": {"interval": "week", "interval_count": 2}, "tax_behavior": "inclusive"}))
            .await
            .ok();
        assert_eq!(p["unit_amount_decimal"], "0.025");
        assert_eq!(p["unit_amount"], serde_json::Value::Null);
        assert_eq!(p["recurring"]["interval_count"], 2);
        assert_eq!(
            app.get(&format!("/v1/prices/{}", p["id"].as_str().unwrap()))
                .await
                .ok(),
            p
        );
        let t = app
            .post("/v1/prices", json!({"product": "Seats", "currency": "JPY", "billing_scheme": "tiered", "tiers_mode": "volume",
                "tiers": [{"up_to": 10, "unit_amount": 1000}, {"up_to": "inf", "unit_amount": 800, "flat_amount": 500}],
                "recurring": {"interval": "year"}}))
            .await
            .ok();
        assert_eq!(t["tiers"][1]["up_to"], serde_json::Value::Null);
        assert_eq!(t["tiers"][1]["flat_amount"], 500);
        assert_eq!(
            app.get(&format!("/v1/prices/{}", t["id"].as_str().unwrap()))
                .await
                .ok(),
            t
        );
        assert_eq!(
            app.get("/v1/prices").await.ok()["data"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
);

both!(
    async fn tax_rates_and_coupons_round_trip(app: TestApp) {
        let r = app
            .post(
                "/v1/tax_rates",
                json!({"display_name": "VAT", "percentage": "23", "country": "PL"}),
            )
            .await
            .ok();
        assert_eq!(r["percentage"], "23");
        assert_eq!(r["inclusive"], false);
        assert_eq!(
            app.get(&format!("/v1/tax_rates/{}", r["id"].as_str().unwrap()))
                .await
                .ok(),
            r
        );
        let c = app
            .post(
                "/v1/coupons",
                json!({"amount_off": 500, "currency": "EUR", "duration": "once"}),
            )
            .await
            .ok();
        assert_eq!(c["amount_off"], 500);
        let p = app
            .post(
                "/v1/coupons",
                json!({"percent_off": "12.5", "duration": "forever"}),
            )
            .await
            .ok();
        assert_eq!(p["percent_off"], "12.5");
        assert_eq!(
            app.get(&format!("/v1/coupons/{}", c["id"].as_str().unwrap()))
                .await
                .ok(),
            c
        );
        assert_eq!(
            app.get("/v1/events?type=coupon.created").await.ok()["data"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
);

both!(
    async fn tier_bounds_are_numbers_or_strings_of_digits_as_the_openapi_says(app: TestApp) {
        let p = app
            .post("/v1/prices", serde_json::json!({"product": "Seats", "currency": "EUR", "billing_scheme": "tiered", "tiers_mode": "graduated",
                "recurring": {"interval": "month"},
                "tiers": [{"up_to": "100", "unit_amount": 5}, {"up_to": 1000, "unit_amount": 4}, {"up_to": "inf", "unit_amount": 3}]}))
            .await
            .ok();
        assert_eq!(p["tiers"][0]["up_to"], 100, "{p}");
        assert_eq!(p["tiers"][1]["up_to"], 1000);
        let doc = app.get("/openapi.json").await.ok();
        let up_to = &doc["components"]["schemas"]["TierBody"]["properties"]["up_to"];
        assert!(
            up_to["description"]
                .as_str()
                .unwrap()
                .contains("string of digits"),
            "{up_to}"
        );
    }
);
