//! A person's data: everything recur holds as one JSON document, and erasure.

use crate::both;
use crate::support::{TestApp, recur_cli};
use recur::store::Db;
use reqwest::Method;
use serde_json::json;

const NAME: &str = "Ada Lovelace";
const EMAIL: &str = "ada.lovelace@example.org";
const STREET: &str = "12 Analytical Engine Row";
const VAT: &str = "PL5260001246";

/// Every stored text that could hold the person's data: customers, event payloads, stored
/// idempotent answers.
async fn stored_texts(app: &TestApp) -> Vec<String> {
    let queries = [
        "SELECT name || ' ' || COALESCE(email, '') || ' ' || COALESCE(address, '') || ' ' || tax_ids FROM customers",
        "SELECT data FROM events",
        "SELECT COALESCE(response_body, '') FROM idempotency_keys",
        "SELECT COALESCE(payment_method, '') FROM payment_attempts",
    ];
    let mut out = Vec::new();
    for q in queries {
        let rows: Vec<String> = match &app.db {
            Db::Sqlite(p, _) => sqlx::query_scalar(q).fetch_all(p).await.expect("read"),
            Db::Postgres(p) => sqlx::query_scalar(q).fetch_all(p).await.expect("read"),
        };
        out.extend(rows);
    }
    out
}

fn holds_person(texts: &[String]) -> Vec<&String> {
    texts
        .iter()
        .filter(|t| {
            [NAME, EMAIL, STREET, VAT, "tok_visa"]
                .iter()
                .any(|p| t.contains(p))
        })
        .collect()
}

both!(
    async fn a_customer_is_exported_then_erased_everywhere_but_issued_documents(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let c = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("signup-ada"),
                Some(
                    &json!({"name": NAME, "email": EMAIL, "currency": "EUR",
                    "address": {"line1": STREET, "city": "Kraków", "country": "PL"},
                    "tax_ids": [{"type": "eu_vat", "value": VAT}],
                    "payment_method": {"provider": "sandbox", "token": "tok_visa"}})
                    .to_string(),
                ),
            )
            .await
            .ok();
        let id = c["id"].as_str().unwrap().to_owned();
        let price = app.monthly_price(2500).await;
        let sub = app.subscription(&id, &price).await;
        app.post(
            &format!("/v1/customers/{id}/balance_transactions"),
            json!({"amount": -300, "description": "goodwill"}),
        )
        .await
        .ok();
        app.advance("2027-02-01T00:00:00Z").await;

        // Right of access: one document with everything.
        let export = app
            .get(&format!("/v1/customers/{id}/data_export"))
            .await
            .ok();
        assert_eq!(export["object"], "customer_data_export");
        assert_eq!(export["customer"]["email"], EMAIL);
        assert_eq!(export["subscriptions"].as_array().unwrap().len(), 1);
        let invoices = export["invoices"].as_array().unwrap();
        assert_eq!(invoices.len(), 2, "{export}");
        assert!(
            !export["payments"].as_array().unwrap().is_empty(),
            "{export}"
        );
        assert!(
            !export["balance_transactions"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        let history = export["events"].to_string();
        assert!(
            history.contains("customer.created") || history.contains(NAME),
            "{history}"
        );
        assert!(
            !holds_person(&stored_texts(&app).await).is_empty(),
            "the person is stored before"
        );
        // The first invoice's PDF and its public page, as the customer received them.
        let first = invoices.last().unwrap()["id"].as_str().unwrap().to_owned();
        let (status, _, pdf) = app
            .raw(&format!("/v1/invoices/{first}/pdf"), Some(&app.key))
            .await;
        assert_eq!(status, 200);
        let hosted = app.get(&format!("/v1/invoices/{first}")).await.ok()["hosted_invoice_url"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(app.raw(&hosted, None).await.0, 200);

        // Erasure.
        let erased = app
            .post(&format!("/v1/customers/{id}/erase"), json!({}))
            .await
            .ok();
        assert_eq!(erased["object"], "customer_erasure");
        assert_eq!(erased["subscriptions_canceled"], 1);
        assert!(erased["events_scrubbed"].as_u64().unwrap() >= 1, "{erased}");
        let left = stored_texts(&app).await;
        assert_eq!(
            holds_person(&left),
            Vec::<&String>::new(),
            "personal data left behind"
        );

        let customer = app.get(&format!("/v1/customers/{id}")).await.ok();
        assert_eq!(customer["name"], "[erased]");
        assert!(customer["email"].is_null() && customer["address"].is_null());
        assert!(customer["erased_at"].is_string());
        assert_eq!(
            app.get(&format!(
                "/v1/subscriptions/{}",
                sub["id"].as_str().unwrap()
            ))
            .await
            .ok()["status"],
            "canceled"
        );
        // Issued invoices stay, with their numbers, amounts and PDFs as issued, but their
        // public pages are gone.
        let (status, _, kept_pdf) = app
            .raw(&format!("/v1/invoices/{first}/pdf"), Some(&app.key))
            .await;
        assert_eq!((status.as_u16(), kept_pdf == pdf), (200, true));
        assert_eq!(app.raw(&hosted, None).await.0, 404);
        let kept = app
            .get(&format!(
                "/v1/invoices/{}",
                invoices[0]["id"].as_str().unwrap()
            ))
            .await
            .ok();
        assert_eq!(kept["number"], invoices[0]["number"]);
        assert_eq!(kept["total"], invoices[0]["total"]);

        // Nothing more can be done with the customer; erasing again changes nothing.
        let r = app
            .patch(&format!("/v1/customers/{id}"), json!({"name": NAME}))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (422, "customer_erased")
        );
        let r = app
            .post(
                "/v1/subscriptions",
                json!({"customer": id, "items": [{"price": price}]}),
            )
            .await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (422, "customer_erased")
        );
        let again = app
            .post(&format!("/v1/customers/{id}/erase"), json!({}))
            .await
            .ok();
        assert_eq!(again["erased_at"], erased["erased_at"]);
        assert_eq!(again["subscriptions_canceled"], 0);
        assert_eq!(app.count_events("customer.erased").await, 1);
        let event = app.get("/v1/events?type=customer.erased").await.ok();
        assert_eq!(
            event["data"][0]["data"]["object"]["id"],
            id.as_str(),
            "{event}"
        );
        // The key that signed the customer up no longer replays the person's data.
        let replay = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&app.key),
                Some("signup-ada"),
                Some(&json!({"name": "Someone"}).to_string()),
            )
            .await;
        assert!(!replay.body.to_string().contains(EMAIL));
    }
);

both!(
    async fn erasure_and_export_refuse_what_they_cannot_name(app: TestApp) {
        let before = app.row_counts().await;
        let unknown = "cus_0190a0b0c0d07000800000000000000a";
        assert_eq!(
            app.post(&format!("/v1/customers/{unknown}/erase"), json!({}))
                .await
                .status,
            404
        );
        assert_eq!(
            app.get(&format!("/v1/customers/{unknown}/data_export"))
                .await
                .status,
            404
        );
        assert_eq!(
            app.get("/v1/customers/nonsense/data_export").await.status,
            404
        );
        let id = app.customer().await;
        let r = app
            .post(
                &format!("/v1/customers/{id}/erase"),
                json!({"confirm": true}),
            )
            .await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (400, "parameter_unknown")
        );
        let other = app.other_tenant_key().await;
        let r = app
            .send(
                Method::POST,
                &format!("/v1/customers/{id}/erase"),
                Some(&other),
                None,
                Some("{}"),
            )
            .await;
        assert_eq!(r.status, 404);
        let after = app.row_counts().await;
        let customers =
            |rows: &[(&str, i64)]| rows.iter().find(|(t, _)| *t == "customers").unwrap().1;
        assert_eq!(customers(&after), customers(&before) + 1);
        assert_eq!(
            app.get(&format!("/v1/customers/{id}")).await.ok()["name"],
            "Ada"
        );
    }
);

both!(
    async fn an_erased_customers_documents_are_purged_after_the_retention_period(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        for (years, status) in [
            (json!(0), 400),
            (json!(31), 400),
            (json!("ten"), 400),
            (json!(1), 200),
        ] {
            let r = app
                .put("/v1/settings/retention", json!({"years": years}))
                .await;
            assert_eq!(r.status.as_u16(), status, "{years}: {:?}", r.body);
        }
        assert_eq!(app.get("/v1/settings/retention").await.ok()["years"], 1);
        let price = app.monthly_price(2500).await;
        let gone = app.customer().await;
        let kept = app.customer().await;
        let sub_gone = app.subscription(&gone, &price).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let sub_kept = app.subscription(&kept, &price).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let first = |sub: String| {
            let app = &app;
            async move {
                app.invoices_of(&sub).await[0]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            }
        };
        let (inv_gone, inv_kept) = (first(sub_gone).await, first(sub_kept).await);
        for inv in [&inv_gone, &inv_kept] {
            assert_eq!(
                app.raw(&format!("/v1/invoices/{inv}/pdf"), Some(&app.key))
                    .await
                    .0,
                200
            );
        }
        let pdfs = |app: &TestApp| {
            let dir = app.docs.path().join(&app.tenant_id);
            std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
        };
        let before = pdfs(&app);
        app.post(&format!("/v1/customers/{gone}/erase"), json!({}))
            .await
            .ok();

        // Within the period nothing is purged; a year and a month later the erased customer's
        // PDFs go (by the scheduler's pass), the other customer's stay.
        let run = |app: &TestApp| recur_cli(app, &[], &["run-cycle", "--tenant", &app.tenant_id]);
        assert!(run(&app).status.success());
        assert_eq!(
            app.raw(&format!("/v1/invoices/{inv_gone}/pdf"), Some(&app.key))
                .await
                .0,
            200
        );
        app.advance("2028-02-01T00:00:00Z").await;
        let out = run(&app);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (status, _, body) = app
            .raw(&format!("/v1/invoices/{inv_gone}/pdf"), Some(&app.key))
            .await;
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(
            (status.as_u16(), answer["error"]["code"].as_str()),
            (422, Some("document_purged")),
            "{answer}"
        );
        assert_eq!(
            app.raw(&format!("/v1/invoices/{inv_kept}/pdf"), Some(&app.key))
                .await
                .0,
            200
        );
        assert!(pdfs(&app) >= before, "the kept customer's PDFs stay");
        let files: Vec<String> = std::fs::read_dir(app.docs.path().join(&app.tenant_id))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!files.iter().any(|f| f.starts_with(&inv_gone)), "{files:?}");
        assert!(files.iter().any(|f| f.starts_with(&inv_kept)), "{files:?}");
        let invoice = app.get(&format!("/v1/invoices/{inv_gone}")).await.ok();
        assert!(
            invoice["number"].is_string() && invoice["total"] == 2500,
            "{invoice}"
        );
        assert_eq!(app.count_events("documents.purged").await, 1);
        // Running again finds nothing more.
        assert!(run(&app).status.success());
        assert_eq!(app.count_events("documents.purged").await, 1);
    }
);
