//! Several API keys per tenant: made (secret shown once), listed, read-only, rolled with an
//! overlap, revoked; rate limits per key; the CLI.

use crate::both;
use crate::support::{Backend, TestApp, recur_cli};
use reqwest::Method;
use serde_json::{Value, json};

async fn with_key(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> crate::support::Resp {
    let body = body.map(|b| b.to_string());
    app.send(method, path, Some(key), None, body.as_deref())
        .await
}

/// The id of the key the tenant was created with.
async fn default_key(app: &TestApp) -> String {
    let listed = app.get("/v1/api_keys").await.ok();
    let key = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "default")
        .expect("the first key");
    key["id"].as_str().unwrap().to_owned()
}

both!(
    async fn keys_are_made_listed_rolled_and_revoked(app: TestApp) {
        // A read-only key: its secret once, `rk_test_`, GET only.
        let ro = app
            .post(
                "/v1/api_keys",
                json!({"name": "dashboard", "scope": "read_only"}),
            )
            .await
            .ok();
        let ro_secret = ro["secret"].as_str().expect("secret").to_owned();
        assert!(ro_secret.starts_with("rk_test_"), "{ro_secret}");
        assert_eq!(ro["scope"], "read_only");
        assert_eq!(ro["prefix"], "rk_test_");
        assert_eq!(
            ro["last4"].as_str().unwrap(),
            &ro_secret[ro_secret.len() - 4..]
        );
        let ro_id = ro["id"].as_str().unwrap().to_owned();

        let listed = app.get("/v1/api_keys").await.ok();
        let keys = listed["data"].as_array().unwrap();
        assert_eq!(keys.len(), 2, "{listed}");
        assert!(keys.iter().all(|k| k.get("secret").is_none()), "{listed}");
        assert!(keys.iter().any(|k| k["name"] == "default"), "{listed}");
        let got = app.get(&format!("/v1/api_keys/{ro_id}")).await.ok();
        assert!(got.get("secret").is_none());

        assert_eq!(
            with_key(&app, Method::GET, "/v1/customers", &ro_secret, None)
                .await
                .status,
            200
        );
        let before = app.row_counts().await;
        for (method, path, body) in [
            (Method::POST, "/v1/customers", Some(json!({"name": "Eve"}))),
            (Method::POST, "/v1/api_keys", Some(json!({}))),
            (Method::POST, &*format!("/v1/api_keys/{ro_id}/revoke"), None),
            (
                Method::PATCH,
                "/v1/customers/cus_0190a0b0c0d07000800000000000000a",
                Some(json!({"name": "x"})),
            ),
            (
                Method::DELETE,
                "/v1/webhook_endpoints/we_0190a0b0c0d07000800000000000000a",
                None,
            ),
        ] {
            let r = with_key(&app, method.clone(), path, &ro_secret, body).await;
            assert_eq!(
                (r.status.as_u16(), r.error_code()),
                (403, "permission_denied"),
                "{method} {path}: {:?}",
                r.body
            );
        }
        assert_eq!(
            app.row_counts().await,
            before,
            "a refused request wrote something"
        );

        // A second full key works; rolled with an hour of overlap both work, rolled again
        // without overlap the old one stops at once.
        let full = app
            .post("/v1/api_keys", json!({"name": "backend"}))
            .await
            .ok();
        let full_secret = full["secret"].as_str().unwrap().to_owned();
        assert!(full_secret.starts_with("sk_test_"));
        let made = with_key(
            &app,
            Method::POST,
            "/v1/customers",
            &full_secret,
            Some(json!({"name": "Ada"})),
        )
        .await;
        assert_eq!(made.status, 200, "{:?}", made.body);
        let rolled = app
            .post(
                &format!("/v1/api_keys/{}/roll", full["id"].as_str().unwrap()),
                json!({"expires_in": 3600}),
            )
            .await
            .ok();
        let rolled_secret = rolled["secret"].as_str().unwrap().to_owned();
        assert_eq!(rolled["name"], "backend");
        assert_ne!(rolled_secret, full_secret);
        for k in [&full_secret, &rolled_secret] {
            assert_eq!(
                with_key(&app, Method::GET, "/v1/customers", k, None)
                    .await
                    .status,
                200
            );
        }
        let old = app
            .get(&format!("/v1/api_keys/{}", full["id"].as_str().unwrap()))
            .await
            .ok();
        assert!(old["expires_at"].is_string(), "{old}");
        let again = app
            .post(
                &format!("/v1/api_keys/{}/roll", rolled["id"].as_str().unwrap()),
                json!({}),
            )
            .await
            .ok();
        assert_eq!(
            with_key(&app, Method::GET, "/v1/customers", &rolled_secret, None)
                .await
                .status,
            401
        );
        let again_secret = again["secret"].as_str().unwrap().to_owned();
        assert_eq!(
            with_key(&app, Method::GET, "/v1/customers", &again_secret, None)
                .await
                .status,
            200
        );

        // Revoked: 401 at once; revoking twice answers the same key.
        let revoked = app
            .post(&format!("/v1/api_keys/{ro_id}/revoke"), json!({}))
            .await
            .ok();
        assert!(revoked["revoked_at"].is_string());
        assert_eq!(
            with_key(&app, Method::GET, "/v1/customers", &ro_secret, None)
                .await
                .status,
            401
        );
        assert_eq!(
            app.post(&format!("/v1/api_keys/{ro_id}/revoke"), json!({}))
                .await
                .status,
            200
        );

        // The last usable full key cannot be revoked, only rolled (the first rolled one still
        // has its hour, so it goes first).
        let full_id = full["id"].as_str().unwrap();
        assert_eq!(
            app.post(&format!("/v1/api_keys/{full_id}/revoke"), json!({}))
                .await
                .status,
            200
        );
        let again_id = again["id"].as_str().unwrap().to_owned();
        let r = with_key(
            &app,
            Method::POST,
            &format!("/v1/api_keys/{again_id}/revoke"),
            &again_secret,
            Some(json!({})),
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let default_id = default_key(&app).await;
        let r = app
            .post(&format!("/v1/api_keys/{default_id}/revoke"), json!({}))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (409, "last_full_api_key"),
            "{:?}",
            r.body
        );
        assert_eq!(app.get("/v1/customers").await.status, 200);
        // A key in a roll's overlap will stop: it does not count as the one that remains.
        let successor = app
            .post(
                &format!("/v1/api_keys/{default_id}/roll"),
                json!({"expires_in": 3600}),
            )
            .await
            .ok();
        let r = app
            .post(
                &format!("/v1/api_keys/{}/revoke", successor["id"].as_str().unwrap()),
                json!({}),
            )
            .await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (409, "last_full_api_key"),
            "{:?}",
            r.body
        );

        // Events carry the listing, never a secret.
        assert!(app.count_events("api_key.created").await >= 5);
        assert_eq!(app.count_events("api_key.rolled").await, 3);
        assert_eq!(app.count_events("api_key.revoked").await, 3);
        let events = app
            .get("/v1/events?type=api_key.created&limit=100")
            .await
            .ok()
            .to_string();
        for s in [&ro_secret, &full_secret, &rolled_secret, &again_secret] {
            assert!(!events.contains(s.as_str()));
        }
    }
);

both!(
    async fn key_requests_with_bad_input_are_refused_and_write_nothing(app: TestApp) {
        let before = app.row_counts().await;
        for (path, body, status, param) in [
            (
                "/v1/api_keys",
                json!({"scope": "admin"}),
                400,
                Some("scope"),
            ),
            ("/v1/api_keys", json!({"name": "  "}), 400, Some("name")),
            (
                "/v1/api_keys",
                json!({"name": "x".repeat(101)}),
                400,
                Some("name"),
            ),
            (
                "/v1/api_keys",
                json!({"secret": "sk_test_mine"}),
                400,
                Some("secret"),
            ),
            (
                "/v1/api_keys/key_0000000000000000/revoke",
                json!({}),
                404,
                None,
            ),
            (
                "/v1/api_keys/key_0000000000000000/roll",
                json!({}),
                404,
                None,
            ),
            ("/v1/api_keys/nonsense/roll", json!({}), 404, None),
        ] {
            let r = app.post(path, body.clone()).await;
            assert_eq!(r.status.as_u16(), status, "{path} {body}: {:?}", r.body);
            assert_eq!(
                r.body["error"]["param"].as_str(),
                param,
                "{path} {body}: {:?}",
                r.body
            );
        }
        let default_id = default_key(&app).await;
        for expires_in in [json!(-1), json!(604_801), json!(i64::MAX), json!("soon")] {
            let r = app
                .post(
                    &format!("/v1/api_keys/{default_id}/roll"),
                    json!({"expires_in": expires_in}),
                )
                .await;
            assert_eq!(r.status, 400, "{expires_in}: {:?}", r.body);
        }
        assert_eq!(
            app.get("/v1/api_keys/key_0000000000000000").await.status,
            404
        );
        assert_eq!(app.row_counts().await, before);

        // An Idempotency-Key is not replayed here: the answer's secret is never stored.
        let a = app
            .send(
                Method::POST,
                "/v1/api_keys",
                Some(&app.key),
                Some("k1"),
                Some("{}"),
            )
            .await
            .ok();
        let b = app
            .send(
                Method::POST,
                "/v1/api_keys",
                Some(&app.key),
                Some("k1"),
                Some("{}"),
            )
            .await
            .ok();
        assert_ne!(a["id"], b["id"]);
        let after = app.row_counts().await;
        let idem = |rows: &[(&str, i64)]| {
            rows.iter()
                .find(|(t, _)| *t == "idempotency_keys")
                .unwrap()
                .1
        };
        assert_eq!(idem(&after), idem(&before));
    }
);

both!(
    async fn another_tenants_key_is_not_found(app: TestApp) {
        let other = app.other_tenant_key().await;
        let mine = default_key(&app).await;
        let r = with_key(
            &app,
            Method::GET,
            &format!("/v1/api_keys/{mine}"),
            &other,
            None,
        )
        .await;
        assert_eq!(r.status, 404);
        let r = with_key(
            &app,
            Method::POST,
            &format!("/v1/api_keys/{mine}/roll"),
            &other,
            Some(json!({})),
        )
        .await;
        assert_eq!(r.status, 404);
        assert_eq!(app.get("/v1/customers").await.status, 200);
    }
);

async fn rate_limited(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, recur::domain::tenant::Mode::Test, |c| {
        c.server.rate_limit_per_second = 1;
        c.server.rate_limit_burst = 3;
    })
    .await
    else {
        return;
    };
    let other = app.other_tenant_key().await;
    for _ in 0..3 {
        assert_eq!(app.get("/v1/customers").await.status, 200);
    }
    let r = app.get("/v1/customers").await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (429, "rate_limited"),
        "{:?}",
        r.body
    );
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let before = app.row_counts().await;
    let r = app.post("/v1/customers", json!({"name": "Ada"})).await;
    assert_eq!(r.status, 429);
    assert_eq!(app.row_counts().await, before);
    // Another key has its own bucket; the limited one refills.
    assert_eq!(
        with_key(&app, Method::GET, "/v1/customers", &other, None)
            .await
            .status,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.get("/v1/customers").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after_on_sqlite() {
    rate_limited(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after_on_postgres() {
    rate_limited(Backend::Postgres).await;
}

both!(
    async fn the_cli_makes_lists_and_revokes_keys(app: TestApp) {
        let out = recur_cli(
            &app,
            &[],
            &[
                "tenant",
                "key",
                "create",
                "--tenant",
                &app.tenant_id,
                "--read-only",
                "--name",
                "reports",
                "--json",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key: Value = serde_json::from_slice(&out.stdout).expect("json");
        let secret = key["secret"].as_str().unwrap();
        assert!(secret.starts_with("rk_test_"));
        assert_eq!(
            with_key(&app, Method::GET, "/v1/invoices", secret, None)
                .await
                .status,
            200
        );

        let out = recur_cli(
            &app,
            &[],
            &["tenant", "key", "list", "--tenant", &app.tenant_id],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(
            text.contains("reports") && text.contains("read_only") && text.contains("active"),
            "{text}"
        );
        assert!(!text.contains(secret), "{text}");

        let id = key["id"].as_str().unwrap();
        let out = recur_cli(
            &app,
            &[],
            &["tenant", "key", "revoke", "--tenant", &app.tenant_id, id],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            with_key(&app, Method::GET, "/v1/invoices", secret, None)
                .await
                .status,
            401
        );

        let out = recur_cli(
            &app,
            &[],
            &[
                "tenant",
                "key",
                "list",
                "--tenant",
                "ten_0190a0b0c0d07000800000000000000a",
            ],
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no such tenant"));
    }
);
