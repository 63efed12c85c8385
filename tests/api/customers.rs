use crate::both;
use serde_json::json;

both!(
    async fn customers_are_created_read_updated_and_listed(app: TestApp) {
        let c = app
            .post("/v1/customers", json!({"external_id": "crm-1", "name": "Zażółć Gęślą", "email": "z@example.pl", "currency": "PLN", "locale": "pl-PL",
                "address": {"line1": "ul. Długa 1", "city": "Gdańsk", "postal_code": "80-001", "country": "PL"},
                "tax_ids": [{"type": "eu_vat", "value": "PL5260001246"}], "tax_exempt": "reverse"}))
            .await
            .ok();
        let id = c["id"].as_str().unwrap();
        assert!(id.starts_with("cus_"));
        let got = app.get(&format!("/v1/customers/{id}")).await.ok();
        assert_eq!(got, c);
        assert_eq!(got["address"]["city"], "Gdańsk");
        let patched = app.patch(&format!("/v1/customers/{id}"), json!({"email": null, "name": "New Name", "payment_method": {"provider": "stripe", "token": "pm_card_visa", "customer": "cus_Q1"}})).await.ok();
        assert_eq!(patched["email"], serde_json::Value::Null);
        assert_eq!(patched["name"], "New Name");
        assert_eq!(patched["locale"], "pl-PL");
        assert_eq!(patched["payment_method"]["token"], "pm_card_visa");
        assert_eq!(patched["payment_method"]["customer"], "cus_Q1");
        let events = app.get("/v1/events?type=customer.updated").await.ok();
        assert_eq!(events["data"].as_array().unwrap().len(), 1);
    }
);

both!(
    async fn lists_page_newest_first_with_a_cursor(app: TestApp) {
        let mut ids = Vec::new();
        for i in 0..5 {
            let c = app
                .post("/v1/customers", json!({"name": format!("c{i}")}))
                .await
                .ok();
            ids.push(c["id"].as_str().unwrap().to_owned());
        }
        let first = app.get("/v1/customers?limit=2").await.ok();
        let got: Vec<&str> = first["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(got, vec![ids[4].as_str(), ids[3].as_str()]);
        assert_eq!(first["has_more"], true);
        let rest = app
            .get(&format!("/v1/customers?limit=10&starting_after={}", ids[3]))
            .await
            .ok();
        assert_eq!(rest["data"].as_array().unwrap().len(), 3);
        assert_eq!(rest["has_more"], false);
    }
);

both!(
    async fn hostile_text_is_stored_verbatim(app: TestApp) {
        let name = "Robert'); DROP TABLE customers;-- \u{1F600} <script>alert(1)</script>";
        let c = app.post("/v1/customers", json!({"name": name})).await.ok();
        let got = app
            .get(&format!("/v1/customers/{}", c["id"].as_str().unwrap()))
            .await
            .ok();
        assert_eq!(got["name"], name);
        assert_eq!(
            app.get("/v1/customers").await.ok()["data"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
);

both!(
    async fn external_ids_are_unique_per_tenant(app: TestApp) {
        app.post("/v1/customers", json!({"name": "a", "external_id": "x-1"}))
            .await
            .ok();
        let before = app.row_counts().await;
        let r = app
            .post("/v1/customers", json!({"name": "b", "external_id": "x-1"}))
            .await;
        assert_eq!(r.status.as_u16(), 409);
        assert_eq!(r.error_code(), "resource_already_exists");
        assert_eq!(r.body["error"]["param"], "external_id");
        assert_eq!(app.row_counts().await, before);
    }
);
