use crate::both;
use reqwest::{Method, StatusCode};

both!(
    async fn the_same_key_and_body_replays_the_first_response(app: TestApp) {
        let body = r#"{"name": "Once", "email": "once@example.com"}"#;
        let first = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("k-1"),
                Some(body),
            )
            .await;
        let reordered = r#"{"email": "once@example.com", "name": "Once"}"#;
        let again = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("k-1"),
                Some(reordered),
            )
            .await;
        assert_eq!(first.status, StatusCode::OK);
        assert_eq!(again.body, first.body);
        assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
        assert_eq!(
            app.get("/v1/customers").await.ok()["data"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let other = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("k-1"),
                Some(r#"{"name": "Twice"}"#),
            )
            .await;
        assert_eq!(other.status, StatusCode::CONFLICT);
        assert_eq!(other.error_code(), "idempotency_key_reused");
        let other_route = app
            .send(
                Method::POST,
                "/v1/tax_rates",
                Some(&app.key),
                Some("k-1"),
                Some(body),
            )
            .await;
        assert_eq!(other_route.status, StatusCode::CONFLICT);
    }
);

both!(
    async fn keys_belong_to_one_tenant(app: TestApp) {
        let body = r#"{"name": "Mine"}"#;
        app.send(
            Method::POST,
            "/v1/customers",
            Some(&app.key),
            Some("shared"),
            Some(body),
        )
        .await
        .ok();
        let other = app.other_tenant_key().await;
        let theirs = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&other),
                Some("shared"),
                Some(body),
            )
            .await
            .ok();
        assert!(theirs.get("id").is_some());
        assert!(
            app.send(Method::GET, "/v1/customers", Some(&other), None, None)
                .await
                .ok()["data"]
                .as_array()
                .unwrap()
                .len()
                == 1
        );
    }
);

both!(
    async fn concurrent_duplicates_produce_one_effect(app: TestApp) {
        let customer = app.customer().await;
        let price = app.monthly_price(900).await;
        let body =
            serde_json::json!({"customer": customer, "items": [{"price": price}]}).to_string();
        let mut handles = Vec::new();
        for _ in 0..8 {
            let (base, key, body) = (app.base.clone(), app.key.clone(), body.clone());
            handles.push(tokio::spawn(async move {
                reqwest::Client::new()
                    .post(format!("{base}/v1/subscriptions"))
                    .bearer_auth(key)
                    .header("Idempotency-Key", "race")
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        let mut statuses = Vec::new();
        for h in handles {
            statuses.push(h.await.unwrap());
        }
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 409),
            "{statuses:?}"
        );
        assert!(statuses.contains(&200));
        assert_eq!(
            app.get("/v1/subscriptions").await.ok()["data"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            app.get("/v1/events?type=customer.subscription.created")
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
    async fn a_replayed_error_is_an_error_again(app: TestApp) {
        let bad = r#"{"name": "x", "email": "nope"}"#;
        let first = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("bad-1"),
                Some(bad),
            )
            .await;
        let second = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("bad-1"),
                Some(bad),
            )
            .await;
        assert_eq!(first.status, StatusCode::BAD_REQUEST);
        assert_eq!(second.status, StatusCode::BAD_REQUEST);
        assert_eq!(second.body, first.body);
    }
);
