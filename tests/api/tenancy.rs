use crate::both;
use reqwest::{Method, StatusCode};

both!(
    async fn requests_without_a_valid_key_are_refused(app: TestApp) {
        for key in [None, Some("sk_test_wrong"), Some("")] {
            let r = app
                .send(Method::GET, "/v1/customers", key, None, None)
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            assert_eq!(r.error_code(), "unauthorized");
        }
        let r = app
            .send(
                Method::POST,
                "/v1/customers",
                None,
                None,
                Some(r#"{"name":"x"}"#),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    }
);

both!(
    async fn a_tenant_never_sees_another_tenants_rows(app: TestApp) {
        let customer = app.customer().await;
        let price = app.monthly_price(1000).await;
        let sub = app.subscription(&customer, &price).await;
        let other = app.other_tenant_key().await;
        for path in [
            format!("/v1/customers/{customer}"),
            format!("/v1/prices/{price}"),
            format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap()),
        ] {
            let r = app.send(Method::GET, &path, Some(&other), None, None).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        }
        for path in [
            "/v1/customers",
            "/v1/prices",
            "/v1/subscriptions",
            "/v1/events",
        ] {
            let r = app.send(Method::GET, path, Some(&other), None, None).await;
            assert_eq!(r.body["data"].as_array().unwrap().len(), 0, "{path}");
        }
        let body =
            serde_json::json!({"customer": customer, "items": [{"price": price}]}).to_string();
        let r = app
            .send(
                Method::POST,
                "/v1/subscriptions",
                Some(&other),
                None,
                Some(&body),
            )
            .await;
        assert_eq!(r.error_code(), "resource_missing");
        let r = app
            .send(
                Method::PATCH,
                &format!("/v1/customers/{customer}"),
                Some(&other),
                None,
                Some(r#"{"name":"stolen"}"#),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(
            app.get(&format!("/v1/customers/{customer}")).await.ok()["name"],
            "Ada"
        );
    }
);

both!(
    async fn openapi_document_lists_the_routes(app: TestApp) {
        let doc = app
            .send(Method::GET, "/openapi.json", None, None, None)
            .await
            .ok();
        for path in [
            "/v1/customers",
            "/v1/prices",
            "/v1/subscriptions/{id}",
            "/v1/usage_records",
            "/v1/events",
        ] {
            assert!(
                doc["paths"].get(path).is_some(),
                "{path} missing from OpenAPI"
            );
        }
    }
);
