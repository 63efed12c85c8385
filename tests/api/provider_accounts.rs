//! A tenant's own Stripe account: checked with Stripe when saved, sealed at rest, charged
//! through, its webhooks verified with its own secret and applied to it only; `recur secrets
//! rotate` re-seals everything under a new master key.

use crate::fake_stripe::{self, FakeStripe};
use crate::support::{Backend, TestApp, recur_cli};
use recur::config::Secret;
use recur::domain::tenant::Mode;
use recur::payments::stripe::sign;
use recur::store::Db;
use reqwest::Method;
use serde_json::{Value, json};

const TENANT_WEBHOOK_SECRET: &str = "whsec_tenant_own";

/// A test-mode app with no installation Stripe key, talking to a fresh fake Stripe.
async fn app_without_installation_key(backend: Backend) -> Option<(TestApp, FakeStripe)> {
    let fake = FakeStripe::start().await;
    let uri = fake.uri();
    let app = TestApp::spawn_with(backend, Mode::Test, move |c| {
        c.stripe.api_base = uri;
        c.stripe.secret_key = None;
        c.stripe.timeout_ms = 1000;
        c.stripe.retry_base_ms = 2;
        c.stripe.retry_max_ms = 20;
        c.webhooks.allow_private_urls = true;
    })
    .await?;
    Some((app, fake))
}

/// Every stored text that could hold a secret.
async fn stored_secrets(db: &Db) -> Vec<String> {
    let queries = [
        "SELECT secret_key || ' ' || COALESCE(webhook_secret, '') FROM provider_accounts",
        "SELECT secret FROM webhook_endpoints",
        "SELECT data FROM events",
        "SELECT COALESCE(response_body, '') FROM idempotency_keys",
    ];
    let mut out = Vec::new();
    for q in queries {
        let rows: Vec<String> = match db {
            Db::Sqlite(p, _) => sqlx::query_scalar(q).fetch_all(p).await.expect("read"),
            Db::Postgres(p) => sqlx::query_scalar(q).fetch_all(p).await.expect("read"),
        };
        out.extend(rows);
    }
    out
}

async fn post_event(app: &TestApp, path: &str, secret: &str, body: &str) -> (u16, Value) {
    let signature = sign(secret, chrono::Utc::now().timestamp(), body.as_bytes());
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .header("Stripe-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn own_account(backend: Backend) {
    let Some((app, fake)) = app_without_installation_key(backend).await else {
        return;
    };
    let path = "/v1/settings/providers/stripe";
    let before = app.row_counts().await;
    for (body, status, code, param) in [
        (
            json!({"secret_key": "sk_live_fake"}),
            422,
            "livemode_mismatch",
            Some("secret_key"),
        ),
        (
            json!({"secret_key": "sk_test_wrong"}),
            422,
            "provider_key_rejected",
            Some("secret_key"),
        ),
        (
            json!({"secret_key": "pk_test_public"}),
            400,
            "parameter_invalid",
            Some("secret_key"),
        ),
        (
            json!({"secret_key": fake_stripe::SECRET_KEY, "webhook_secret": "nope"}),
            400,
            "parameter_invalid",
            Some("webhook_secret"),
        ),
        (json!({}), 400, "parameter_missing", Some("secret_key")),
    ] {
        let r = app.put(path, body.clone()).await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (status, code),
            "{body}: {:?}",
            r.body
        );
        assert_eq!(r.body["error"]["param"].as_str(), param, "{body}");
    }
    assert_eq!(
        app.row_counts().await,
        before,
        "a refused account wrote something"
    );
    assert_eq!(app.get(path).await.status, 404);
    assert_eq!(app.get("/v1/settings/providers/sandbox").await.status, 404);

    // Without an account or an installation key, Stripe customers cannot be charged.
    let account = app
        .put(
            path,
            json!({"secret_key": fake_stripe::SECRET_KEY, "webhook_secret": TENANT_WEBHOOK_SECRET}),
        )
        .await
        .ok();
    assert_eq!(account["account"], "acct_fake");
    assert_eq!(account["mode"], "test");
    assert_eq!(account["secret_key_last4"], "fake");
    assert_eq!(account["webhook_secret_set"], true);
    let webhook_url = account["webhook_url"].as_str().unwrap().to_owned();
    assert!(
        webhook_url.starts_with("/webhooks/stripe/whk_"),
        "{webhook_url}"
    );
    assert!(!account.to_string().contains(fake_stripe::SECRET_KEY));
    assert_eq!(
        app.get(path).await.ok()["webhook_url"],
        webhook_url.as_str()
    );

    // Sealed at rest: no secret in the database, the account's or an endpoint's.
    let endpoint = app
        .post(
            "/v1/webhook_endpoints",
            json!({"url": "http://127.0.0.1:9/hooks", "enabled_events": ["*"]}),
        )
        .await;
    let endpoint_secret = endpoint.body["secret"].as_str().map(str::to_owned);
    let stored = stored_secrets(&app.db).await;
    for secret in [
        Some(fake_stripe::SECRET_KEY.to_owned()),
        Some(TENANT_WEBHOOK_SECRET.to_owned()),
        endpoint_secret,
    ]
    .into_iter()
    .flatten()
    {
        assert!(
            stored.iter().all(|t| !t.contains(&secret)),
            "{secret} is stored readable"
        );
    }
    assert!(stored[0].starts_with("enc:v1:"), "{}", stored[0]);

    // Charged through the tenant's own account.
    app.set_clock("2027-03-01T00:00:00Z").await;
    let c = app
        .post("/v1/customers", json!({"name": "P", "currency": "EUR",
            "payment_method": {"provider": "stripe", "token": "pm_card_visa", "customer": "cus_fake"}}))
        .await
        .ok();
    let price = app.monthly_price(2500).await;
    let sub = app.subscription(c["id"].as_str().unwrap(), &price).await;
    app.advance("2027-03-01T01:00:00Z").await;
    let invoice = app.invoices_of(sub["id"].as_str().unwrap()).await[0].clone();
    assert_eq!(invoice["status"], "paid", "{invoice}");
    assert_eq!(fake.ledger().len(), 1);

    // Its webhooks: verified with its own secret only, applied to it only.
    let payments = app
        .get(&format!(
            "/v1/payments?invoice={}",
            invoice["id"].as_str().unwrap()
        ))
        .await
        .ok();
    let pi = payments["data"][0]["provider_ref"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut intent = fake.intent(&pi);
    intent["status"] = json!("succeeded");
    let body = json!({"id": "evt_own_1", "object": "event", "type": "payment_intent.succeeded",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "api_version": "2024-06-20",
        "data": {"object": intent}})
    .to_string();
    let (status, reply) = post_event(&app, &webhook_url, TENANT_WEBHOOK_SECRET, &body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["received"], true);
    let (status, _) = post_event(&app, &webhook_url, "whsec_someone_else", &body).await;
    assert_eq!(status, 400);
    let (status, _) = post_event(&app, "/webhooks/stripe", TENANT_WEBHOOK_SECRET, &body).await;
    assert_ne!(
        status, 200,
        "the installation endpoint does not know the tenant's secret"
    );
    let (status, _) = post_event(
        &app,
        "/webhooks/stripe/whk_00000000000000000000000000000000",
        TENANT_WEBHOOK_SECRET,
        &body,
    )
    .await;
    assert_eq!(status, 404);
    // An event naming another tenant, signed with this tenant's secret, changes nothing.
    let mut foreign = fake.intent(&pi);
    foreign["metadata"]["tenant_id"] = json!("ten_0190a0b0c0d07000800000000000000a");
    foreign["status"] = json!("requires_payment_method");
    let body =
        json!({"id": "evt_foreign_1", "object": "event", "type": "payment_intent.payment_failed",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "api_version": "2024-06-20",
        "data": {"object": foreign}})
        .to_string();
    let (status, reply) = post_event(&app, &webhook_url, TENANT_WEBHOOK_SECRET, &body).await;
    assert_eq!(
        (status, reply["outcome"].as_str()),
        (200, Some("ignored")),
        "{reply}"
    );
    assert_eq!(
        app.get(&format!("/v1/invoices/{}", invoice["id"].as_str().unwrap()))
            .await
            .ok()["status"],
        "paid"
    );

    // The key rolled within the same account keeps the webhook secret; the account cannot be
    // disconnected once payments went through it (their refunds belong there).
    let again = app
        .put(path, json!({"secret_key": fake_stripe::SECRET_KEY}))
        .await
        .ok();
    assert_eq!(
        (
            again["webhook_secret_set"].as_bool(),
            again["webhook_url"].as_str()
        ),
        (Some(true), Some(webhook_url.as_str()))
    );
    let r = app
        .send(Method::DELETE, path, Some(&app.key), None, None)
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (409, "provider_account_in_use"),
        "{:?}",
        r.body
    );
    assert_eq!(app.get(path).await.status, 200);
    assert_eq!(app.count_events("provider_account.connected").await, 2);
    assert_eq!(app.count_events("provider_account.disconnected").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_own_stripe_account_is_sealed_charged_and_heard_on_sqlite() {
    own_account(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_own_stripe_account_is_sealed_charged_and_heard_on_postgres() {
    own_account(Backend::Postgres).await;
}

async fn rotation(backend: Backend) {
    let Some((app, _fake)) = app_without_installation_key(backend).await else {
        return;
    };
    app.put(
        "/v1/settings/providers/stripe",
        json!({"secret_key": fake_stripe::SECRET_KEY, "webhook_secret": TENANT_WEBHOOK_SECRET}),
    )
    .await
    .ok();
    app.post(
        "/v1/webhook_endpoints",
        json!({"url": "http://127.0.0.1:9/hooks", "enabled_events": ["*"]}),
    )
    .await
    .ok();
    let old =
        std::fs::read_to_string(app.docs.path().join("master.key")).expect("the app's key file");
    let new = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="; // 32 × 'B'
    // Without the old key the stored secrets cannot be opened: the rotation stops, names why
    // and changes nothing.
    let before = stored_secrets(&app.db).await;
    let out = recur_cli(
        &app,
        &[("RECUR_SECRETS__MASTER_KEY", new.into())],
        &["secrets", "rotate"],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not configured"));
    assert_eq!(stored_secrets(&app.db).await, before);
    // With it listed as a previous key, everything is re-sealed under the new one.
    let out = recur_cli(
        &app,
        &[
            ("RECUR_SECRETS__MASTER_KEY", new.into()),
            (
                "RECUR_SECRETS__PREVIOUS_KEYS",
                format!("[\"{}\"]", old.trim()),
            ),
        ],
        &["secrets", "rotate", "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rotated["provider_accounts_resealed"], 1, "{rotated}");
    assert_eq!(rotated["webhook_secrets_resealed"], 1, "{rotated}");
    let vault = recur::vault::Vault::with_key(&Secret::new(new)).unwrap();
    let old_vault = recur::vault::Vault::with_key(&Secret::new(old.trim())).unwrap();
    let sealed: Vec<(String, String)> = match &app.db {
        Db::Sqlite(p, _) => sqlx::query_as("SELECT tenant_id, secret_key FROM provider_accounts")
            .fetch_all(p)
            .await
            .unwrap(),
        Db::Postgres(p) => sqlx::query_as("SELECT tenant_id, secret_key FROM provider_accounts")
            .fetch_all(p)
            .await
            .unwrap(),
    };
    let tenant = recur::domain::ids::TenantId::parse(&sealed[0].0).unwrap();
    let context = recur::store::provider_accounts::sealed_context(
        &tenant,
        recur::domain::customer::Provider::Stripe,
        "secret_key",
    );
    assert_eq!(
        vault.open(&context, &sealed[0].1).unwrap().expose(),
        fake_stripe::SECRET_KEY
    );
    assert!(old_vault.open(&context, &sealed[0].1).is_err());
    // Running it again finds nothing to do.
    let out = recur_cli(
        &app,
        &[("RECUR_SECRETS__MASTER_KEY", new.into())],
        &["secrets", "rotate", "--json"],
    );
    let again: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (
            again["provider_accounts_resealed"].as_u64(),
            again["webhook_secrets_resealed"].as_u64()
        ),
        (Some(0), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_master_key_reseals_every_secret_on_sqlite() {
    rotation(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_master_key_reseals_every_secret_on_postgres() {
    rotation(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_connects_shows_and_disconnects_an_account_from_files() {
    let Some((app, _fake)) = app_without_installation_key(Backend::Sqlite).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (key, hook) = (dir.path().join("key"), dir.path().join("hook"));
    std::fs::write(&key, format!("{}\n", fake_stripe::SECRET_KEY)).unwrap();
    std::fs::write(&hook, TENANT_WEBHOOK_SECRET).unwrap();
    let uri = app.config.stripe.api_base.clone();
    let env = [("RECUR_STRIPE__API_BASE", uri)];
    let tenant = app.tenant_id.clone();
    let out = recur_cli(
        &app,
        &env,
        &[
            "tenant",
            "stripe",
            "--tenant",
            &tenant,
            "--secret-key-file",
            key.to_str().unwrap(),
            "--webhook-secret-file",
            hook.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("\"secret_key_last4\": \"fake\"")
            && !shown.contains(fake_stripe::SECRET_KEY),
        "{shown}"
    );
    assert_eq!(
        app.get("/v1/settings/providers/stripe").await.ok()["account"],
        "acct_fake"
    );
    // A key Stripe refuses: exit 2, the reason, nothing changed.
    std::fs::write(&key, "sk_test_wrong").unwrap();
    let out = recur_cli(
        &app,
        &env,
        &[
            "tenant",
            "stripe",
            "--tenant",
            &tenant,
            "--secret-key-file",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Stripe refused the key"));
    let out = recur_cli(
        &app,
        &env,
        &["tenant", "stripe", "--tenant", &tenant, "--disconnect"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.get("/v1/settings/providers/stripe").await.status, 404);
}
