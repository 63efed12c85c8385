//! Test and live separation: a test-mode tenant charges only through the sandbox or a Stripe
//! test key, a live tenant only through a live key and never through sandbox tokens.

use crate::support::{Backend, TestApp, recur_cli};
use recur::config::Secret;
use recur::domain::tenant::Mode;
use serde_json::json;

const SANDBOX: &str = r#"{"provider": "sandbox", "token": "tok_visa"}"#;
const STRIPE: &str = r#"{"provider": "stripe", "token": "pm_card_visa", "customer": "cus_fake"}"#;

/// An app whose installation Stripe key is `stripe_key`, talking to a fake Stripe (kept
/// alive by the app's lifetime through the returned pair).
async fn app(
    backend: Backend,
    mode: Mode,
    stripe_key: Option<&str>,
) -> Option<(TestApp, crate::fake_stripe::FakeStripe)> {
    let fake = crate::fake_stripe::FakeStripe::start().await;
    let (key, uri) = (stripe_key.map(Secret::new), fake.uri());
    let app = TestApp::spawn_with(backend, mode, move |c| {
        c.stripe.secret_key = key;
        c.stripe.api_base = uri;
    })
    .await?;
    Some((app, fake))
}

fn method(raw: &str) -> serde_json::Value {
    serde_json::from_str(raw).unwrap()
}

/// Creating and updating a customer with `pm` is refused (`livemode_mismatch`, nothing
/// written) or accepted.
async fn assert_method(app: &TestApp, pm: &str, refused: bool) {
    let before = app.row_counts().await;
    let r = app
        .post(
            "/v1/customers",
            json!({"name": "Ada", "payment_method": method(pm)}),
        )
        .await;
    if !refused {
        assert_eq!(r.status, 200, "{pm}: {:?}", r.body);
        return;
    }
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (422, "livemode_mismatch"),
        "{pm}: {:?}",
        r.body
    );
    assert_eq!(r.body["error"]["param"], "payment_method");
    assert_eq!(app.row_counts().await, before);
    let c = app.post("/v1/customers", json!({"name": "Bo"})).await.ok();
    let before = app.row_counts().await;
    let r = app
        .patch(
            &format!("/v1/customers/{}", c["id"].as_str().unwrap()),
            json!({"payment_method": method(pm)}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (422, "livemode_mismatch"),
        "{pm}: {:?}",
        r.body
    );
    assert_eq!(app.row_counts().await, before);
}

async fn mixing_is_refused_both_ways(backend: Backend) {
    // A live tenant: no sandbox tokens, no Stripe test key; a live key is fine.
    let Some((live, _f1)) = app(backend, Mode::Live, Some("sk_test_fake")).await else {
        return;
    };
    assert_method(&live, SANDBOX, true).await;
    assert_method(&live, STRIPE, true).await;
    let Some((live, _f2)) = app(backend, Mode::Live, Some("sk_live_fake")).await else {
        return;
    };
    assert_method(&live, SANDBOX, true).await;
    assert_method(&live, STRIPE, false).await;
    // A test tenant: the sandbox always, Stripe only with a test key.
    let Some((test, _f3)) = app(backend, Mode::Test, Some("rk_live_fake")).await else {
        return;
    };
    assert_method(&test, STRIPE, true).await;
    assert_method(&test, SANDBOX, false).await;
    let Some((test, _f4)) = app(backend, Mode::Test, Some("sk_test_fake")).await else {
        return;
    };
    assert_method(&test, STRIPE, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixing_test_and_live_is_refused_both_ways_on_sqlite() {
    mixing_is_refused_both_ways(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixing_test_and_live_is_refused_both_ways_on_postgres() {
    mixing_is_refused_both_ways(Backend::Postgres).await;
}

/// A sandbox token stored for a live tenant before the rule (written past the API here) is
/// never charged: the attempt fails hard with `livemode_mismatch`.
async fn a_stored_sandbox_method_never_charges_live(backend: Backend) {
    let Some((app, _fake)) = app(backend, Mode::Live, None).await else {
        return;
    };
    let tenant = app.tenant().await;
    let customer = recur::services::customers::create_customer(
        &app.db,
        &tenant,
        recur::services::customers::NewCustomer {
            external_id: None,
            name: "Legacy".into(),
            email: None,
            currency: None,
            locale: None,
            address: None,
            tax_ids: Vec::new(),
            tax_exempt: recur::domain::customer::TaxExempt::None,
            payment_method: Some(recur::domain::customer::PaymentMethod {
                provider: recur::domain::customer::Provider::Sandbox,
                token: "tok_visa".into(),
                customer: None,
            }),
        },
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let price = app.monthly_price(2500).await;
    let sub = app.subscription(customer.id.as_str(), &price).await;
    let invoice = app.invoices_of(sub["id"].as_str().unwrap()).await[0].clone();
    // The scheduler's collection pass, as `recur serve` runs it.
    recur::payments::collect::collect_due(&app.db, &tenant, &app.payments, chrono::Utc::now())
        .await
        .unwrap();
    let payments = app
        .get(&format!(
            "/v1/payments?invoice={}",
            invoice["id"].as_str().unwrap()
        ))
        .await
        .ok();
    let attempt = &payments["data"][0];
    assert_eq!(attempt["status"], "failed", "{payments}");
    assert_eq!(attempt["decline_code"], "livemode_mismatch", "{payments}");
    assert_eq!(
        app.get(&format!("/v1/invoices/{}", invoice["id"].as_str().unwrap()))
            .await
            .ok()["status"],
        "open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_sandbox_method_never_charges_live_on_sqlite() {
    a_stored_sandbox_method_never_charges_live(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_sandbox_method_never_charges_live_on_postgres() {
    a_stored_sandbox_method_never_charges_live(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripe_key_without_a_mode_prefix_is_refused_at_start() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let out = recur_cli(
        &app,
        &[("RECUR_STRIPE__SECRET_KEY", "whsec_oops".into())],
        &["migrate"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stripe.secret_key") && err.contains("sk_live_"),
        "{err}"
    );
    assert!(
        !err.contains("whsec_oops"),
        "the key leaked into the message: {err}"
    );
}
