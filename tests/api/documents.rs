//! Documents: seller settings, invoice and credit note PDFs (stored, hashed, served the same
//! every time, rendered by the worker), and the hosted invoice page.

use crate::both;
use crate::support::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A 1×1 PNG.
const PNG: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn seller() -> Value {
    json!({
        "legal_name": "Żółta Łódź sp. z o.o.",
        "address": {"line1": "ul. Świętokrzyska 12", "city": "Warszawa", "postal_code": "00-916", "country": "PL"},
        "tax_ids": [{"type": "eu_vat", "value": "PL5260001246"}],
        "email": "billing@zolta.example",
        "phone": "+48 22 123 45 67",
        "bank": {"iban": "pl61 1090 1014 0000 0712 1981 2874", "bic": "WBKPPLPP"},
        "payment_terms": "Płatne w ciągu 14 dni.",
        "footer": "Żółta Łódź sp. z o.o. · KRS 0000012345",
        "locale": "pl",
        "accent_color": "#1F4E79",
        "logo": PNG,
    })
}

/// Text of a PDF through poppler's `pdftotext` (installed by `.ci/run`).
pub fn pdf_text(bytes: &[u8]) -> String {
    let f = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(f.path(), bytes).expect("write pdf");
    let out = std::process::Command::new("pdftotext")
        .args(["-layout"])
        .arg(f.path())
        .arg("-")
        .output()
        .expect("pdftotext (Debian poppler-utils) must be installed; .ci/run installs it");
    assert!(out.status.success(), "pdftotext failed");
    // Poppler gives no-break spaces back as plain ones.
    String::from_utf8(out.stdout)
        .expect("utf-8 text")
        .replace('\u{a0}', " ")
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Where the invoice's PDF as issued (its recorded hash) is stored.
async fn stored_pdf(app: &TestApp, id: &str) -> std::path::PathBuf {
    let inv = app.get(&format!("/v1/invoices/{id}")).await.ok();
    let sha = inv["pdf_sha256"].as_str().expect("a recorded PDF");
    let tenant = recur::domain::ids::TenantId::parse(&app.tenant_id).unwrap();
    recur::services::documents::stored_path(app.docs.path(), &tenant, id, sha)
}

async fn polish_invoice(app: &TestApp) -> Value {
    app.put("/v1/settings/invoice", seller()).await.ok();
    let c = app
        .post(
            "/v1/customers",
            json!({"name": "Zażółć Gęślą Jaźń S.A.", "email": "ksiegowosc@jazn.example", "currency": "EUR", "locale": "pl-PL",
                "address": {"line1": "ul. Długa 5", "city": "Gdańsk", "postal_code": "80-827", "country": "PL"},
                "tax_ids": [{"type": "eu_vat", "value": "PL1234563218"}],
                "payment_method": {"provider": "sandbox", "token": "tok_visa"}}),
        )
        .await
        .ok();
    let p = app.monthly_price(12_345).await;
    let sub = app.subscription(c["id"].as_str().unwrap(), &p).await;
    app.invoices_of(sub["id"].as_str().unwrap())
        .await
        .pop()
        .expect("first invoice")
}

both! {
    async fn seller_settings(app: TestApp) {
        let empty = app.get("/v1/settings/invoice").await.ok();
        assert_eq!(empty["legal_name"], Value::Null);
        assert_eq!(empty["notifications"]["invoice_finalized"], true);
        let stored = app.put("/v1/settings/invoice", seller()).await.ok();
        assert_eq!(stored["bank"]["iban"], "PL61109010140000071219812874");
        assert_eq!(stored["accent_color"], "#1f4e79");
        assert_eq!(stored["logo"], PNG);
        assert_eq!(app.get("/v1/settings/invoice").await.ok(), stored);
        // A PUT replaces everything: what is absent is cleared.
        let less = app.put("/v1/settings/invoice", json!({"legal_name": "Acme"})).await.ok();
        assert_eq!(less["bank"], Value::Null);
        assert_eq!(less["legal_name"], "Acme");
    }
}

both! {
    async fn bad_settings(app: TestApp) {
        app.put("/v1/settings/invoice", seller()).await.ok();
        let before = app.row_counts().await;
        let kept = app.get("/v1/settings/invoice").await.ok();
        let with = |k: &str, v: Value| {
            let mut b = seller();
            b[k] = v;
            b
        };
        let jpeg_claiming_png = PNG.replace("image/png", "image/jpeg");
        let not_an_image = format!("data:image/png;base64,{}", base64_of(b"\x89PNG\r\n\x1a\nnot really"));
        for (body, param) in [
            (with("bank", json!({"iban": "PL61 1090 1014 0000 0712 1981 2875"})), "bank.iban"),
            (with("payment_method_url", json!("javascript:alert(1)")), "payment_method_url"),
            (with("bank", json!({"bic": "wbkpplpp", "iban": "PL61109010140000071219812874"})), "bank.bic"),
            (with("bank", json!({})), "bank"),
            (with("accent_color", json!("blue")), "accent_color"),
            (with("logo", json!("https://example.com/logo.png")), "logo"),
            (with("logo", json!(jpeg_claiming_png)), "logo"),
            (with("logo", json!(not_an_image)), "logo"),
            (with("locale", json!("ja")), "locale"),
            (with("locale", json!("EN")), "locale"),
            (with("phone", json!("call me maybe")), "phone"),
            (with("email", json!("nope")), "email"),
            (with("legal_name", json!("a\u{0}b")), "legal_name"),
            (with("footer", json!("x".repeat(1001))), "footer"),
            (with("tax_ids", json!([{"type": "VAT", "value": "1"}])), "tax_ids[0]"),
            (with("address", json!({"country": "XX"})), "address.country"),
            (with("colour", json!("#000000")), "colour"),
        ] {
            let r = app.put("/v1/settings/invoice", body).await;
            assert_eq!(
                (r.status, r.body["error"]["param"].as_str()),
                (StatusCode::BAD_REQUEST, Some(param)),
                "{}",
                r.body
            );
        }
        assert_eq!(app.row_counts().await, before);
        assert_eq!(app.get("/v1/settings/invoice").await.ok(), kept);
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

both! {
    async fn invoice_pdf(app: TestApp) {
        let inv = polish_invoice(&app).await;
        let id = inv["id"].as_str().unwrap();
        let number = inv["number"].as_str().unwrap();
        assert_eq!(inv["pdf_url"], format!("/v1/invoices/{id}/pdf"));
        let (status, headers, bytes) = app.raw(&format!("/v1/invoices/{id}/pdf"), Some(&app.key)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/pdf");
        assert!(bytes.starts_with(b"%PDF-"));
        let text = pdf_text(&bytes);
        for expected in [number, "Faktura", "Zażółć Gęślą Jaźń S.A.", "Żółta Łódź sp. z o.o.", "NIP: PL1234563218", "123,45 €", "Do zapłaty", "Strona 1 z 1"] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
        // Served the same every time; the hash on the invoice is the file's.
        let (_, _, again) = app.raw(&format!("/v1/invoices/{id}/pdf"), Some(&app.key)).await;
        assert_eq!(again, bytes);
        let inv = app.get(&format!("/v1/invoices/{id}")).await.ok();
        assert_eq!(inv["pdf_sha256"], sha256(&bytes));
        let stored = stored_pdf(&app, id).await;
        assert_eq!(std::fs::read(&stored).unwrap(), bytes);
        // Another tenant cannot read it.
        let other = app.other_tenant_key().await;
        let (status, _, _) = app.raw(&format!("/v1/invoices/{id}/pdf"), Some(&other)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = app.raw(&format!("/v1/invoices/{id}/pdf"), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

both! {
    async fn stored_pdf_is_proved(app: TestApp) {
        let inv = polish_invoice(&app).await;
        let id = inv["id"].as_str().unwrap();
        let path = format!("/v1/invoices/{id}/pdf");
        let (_, _, first) = app.raw(&path, Some(&app.key)).await;
        let stored = stored_pdf(&app, id).await;
        // A lost or altered file is rebuilt byte for byte.
        std::fs::remove_file(&stored).unwrap();
        assert_eq!(app.raw(&path, Some(&app.key)).await.2, first);
        std::fs::write(&stored, b"%PDF-1.7 tampered").unwrap();
        assert_eq!(app.raw(&path, Some(&app.key)).await.2, first);
        assert_eq!(std::fs::read(&stored).unwrap(), first);
        // Once the seller's details changed, a lost file cannot be rebuilt as issued: an
        // error, never a different document under the same number.
        app.put("/v1/settings/invoice", json!({"legal_name": "Someone Else Ltd"})).await.ok();
        std::fs::remove_file(&stored).unwrap();
        let (status, _, _) = app.raw(&path, Some(&app.key)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}

both! {
    async fn hosted_page(app: TestApp) {
        let inv = polish_invoice(&app).await;
        let id = inv["id"].as_str().unwrap();
        let (_, _, pdf) = app.raw(&format!("/v1/invoices/{id}/pdf"), Some(&app.key)).await;
        let inv = app.get(&format!("/v1/invoices/{id}")).await.ok();
        let url = inv["hosted_invoice_url"].as_str().expect("hosted url once rendered").to_owned();
        assert!(url.starts_with("/i/") && url.len() == 3 + 48, "{url}");
        let (status, headers, body) = app.raw(&url, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert!(headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["x-frame-options"], "DENY");
        let html = String::from_utf8(body).unwrap();
        // The same total as the API, in the customer's language.
        assert_eq!(inv["total"], 12_345);
        assert!(html.contains("<strong id=\"total\">123,45\u{a0}€</strong>"), "{html}");
        assert!(html.contains("Zażółć Gęślą Jaźń S.A.") && html.contains("lang=\"pl\""));
        assert_eq!(app.raw(&format!("{url}/pdf"), None).await.2, pdf);
        for bad in ["/i/0123456789abcdef0123456789abcdef0123456789abcdef", "/i/short", "/i/%27%20OR%201%3D1", &url.to_uppercase().replace("/I/", "/i/")] {
            let (status, _, body) = app.raw(bad, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
            assert_eq!(body, b"Not Found");
        }
    }
}

both! {
    async fn credit_note_pdf(app: TestApp) {
        let inv = polish_invoice(&app).await;
        let id = inv["id"].as_str().unwrap();
        let note = app
            .post("/v1/credit_notes", json!({"invoice": id, "amount": 2000, "reason": "order_change", "refund": false, "memo": "Zmiana planu"}))
            .await
            .ok();
        assert_eq!(note["pdf_url"], format!("/v1/credit_notes/{}/pdf", note["id"].as_str().unwrap()));
        let (status, headers, bytes) = app.raw(note["pdf_url"].as_str().unwrap(), Some(&app.key)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/pdf");
        let text = pdf_text(&bytes);
        for expected in ["Faktura korygująca", note["number"].as_str().unwrap(), inv["number"].as_str().unwrap(), "Zmiana zamówienia", "Zmiana planu", "20,00 €", "Razem korekta"] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
        let note = app.get(&format!("/v1/credit_notes/{}", note["id"].as_str().unwrap())).await.ok();
        assert_eq!(note["pdf_sha256"], sha256(&bytes));
    }
}

both! {
    async fn worker_renders(app: TestApp) {
        let inv = polish_invoice(&app).await;
        let id = inv["id"].as_str().unwrap();
        assert_eq!(inv["pdf_sha256"], Value::Null, "rendering is off the billing path");
        assert_eq!(inv["hosted_invoice_url"], Value::Null);
        let out = crate::support::recur_cli(&app, &[("RUST_LOG", "debug".into())], &["run-cycle"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stderr.is_empty() && !out.stderr.contains(&0x1b), "plain logs when stderr is not a terminal");
        let inv = app.get(&format!("/v1/invoices/{id}")).await.ok();
        let stored = stored_pdf(&app, id).await;
        let bytes = std::fs::read(&stored).expect("the worker stored the PDF");
        assert_eq!(inv["pdf_sha256"], sha256(&bytes));
        let hosted = inv["hosted_invoice_url"].as_str().expect("a hosted page");
        assert!(!String::from_utf8_lossy(&out.stderr).contains(&hosted[3..]), "the token is never logged");
        // The API serves what the worker rendered.
        assert_eq!(app.raw(&format!("/v1/invoices/{id}/pdf"), Some(&app.key)).await.2, bytes);
    }
}

both! {
    async fn upcoming_invoice(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let licensed = app.monthly_price(2_000).await;
        let metered = app.metered_price().await;
        let sub = app
            .post("/v1/subscriptions", json!({"customer": customer, "items": [{"price": licensed, "quantity": 2}, {"price": metered}]}))
            .await
            .ok();
        let sub_id = sub["id"].as_str().unwrap();
        let item = sub["items"][1]["id"].as_str().unwrap();
        app.advance("2027-01-10T00:00:00Z").await;
        app.post("/v1/usage_records", json!({"subscription_item": item, "quantity": 300})).await.ok();
        let before = app.row_counts().await;
        let up = app.get(&format!("/v1/invoices/upcoming?subscription={sub_id}")).await.ok();
        assert_eq!(app.row_counts().await, before, "a preview writes nothing");
        assert_eq!((up["id"].clone(), up["number"].clone(), up["status"].as_str()), (Value::Null, Value::Null, Some("draft")));
        // Two seats at 20.00 and 300 calls at 0.5 cents.
        assert_eq!(up["total"], 4_000 + 150);
        assert_eq!(up["period_start"], "2027-02-01T00:00:00Z");
        let (status, headers, pdf) = app.raw(&format!("/v1/invoices/upcoming/pdf?subscription={sub_id}"), Some(&app.key)).await;
        assert_eq!((status, &headers["content-type"]), (StatusCode::OK, &"application/pdf".parse().unwrap()));
        let text = pdf_text(&pdf);
        assert!(text.contains("DRAFT") && text.contains("€41.50"), "{text}");
        assert_eq!(app.row_counts().await, before);
        // The renewal bills what the preview showed.
        app.advance("2027-02-01T00:00:00Z").await;
        let renewal = app.invoices_of(sub_id).await.pop().unwrap();
        assert_eq!((renewal["total"].clone(), renewal["lines"].as_array().unwrap().len()), (up["total"].clone(), up["lines"].as_array().unwrap().len()));

        let r = app.get("/v1/invoices/upcoming").await;
        assert_eq!((r.status, r.body["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("subscription")));
        let r = app.get("/v1/invoices/upcoming?subscription=sub_00000000000000000000000000000000").await;
        assert_eq!((r.status, r.body["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("subscription")), "{}", r.body);
        // Ending at its period end, it still has its final usage invoice to come; once
        // canceled, nothing.
        app.post(&format!("/v1/subscriptions/{sub_id}/cancel"), json!({"at_period_end": true})).await.ok();
        let last = app.get(&format!("/v1/invoices/upcoming?subscription={sub_id}")).await.ok();
        assert_eq!(last["billing_reason"], "subscription_final");
        app.post(&format!("/v1/subscriptions/{sub_id}/cancel"), json!({})).await.ok();
        let r = app.get(&format!("/v1/invoices/upcoming?subscription={sub_id}")).await;
        assert_eq!((r.status.as_u16(), r.error_code()), (422, "invoice_upcoming_none"), "{}", r.body);
    }
}

both! {
    async fn settings_from_the_cli(app: TestApp) {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("seller.json");
        std::fs::write(&good, seller().to_string()).unwrap();
        let out = crate::support::recur_cli(&app, &[], &["tenant", "settings", "--tenant", &app.tenant_id, "--set", good.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(printed, app.get("/v1/settings/invoice").await.ok());
        assert_eq!(printed["legal_name"], "Żółta Łódź sp. z o.o.");
        // Bad input names the parameter and changes nothing, on both commands.
        let bad = dir.path().join("bad.json");
        let mut body = seller();
        body["bank"]["iban"] = json!("PL00 1090 1014 0000 0712 1981 2874");
        std::fs::write(&bad, body.to_string()).unwrap();
        let before = app.row_counts().await;
        let out = crate::support::recur_cli(&app, &[], &["tenant", "settings", "--tenant", &app.tenant_id, "--set", bad.to_str().unwrap()]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("bank.iban"), "{}", String::from_utf8_lossy(&out.stderr));
        let out = crate::support::recur_cli(&app, &[], &["tenant", "create", "--name", "Nope", "--settings", bad.to_str().unwrap()]);
        assert!(!out.status.success());
        assert_eq!(app.row_counts().await, before);
        assert_eq!(app.get("/v1/settings/invoice").await.ok(), printed);
        let out = crate::support::recur_cli(&app, &[], &["tenant", "create", "--name", "Seller two", "--json", "--settings", good.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let created: Value = serde_json::from_slice(&out.stdout).unwrap();
        let out = crate::support::recur_cli(&app, &[], &["tenant", "settings", "--tenant", created["tenant_id"].as_str().unwrap()]);
        let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(theirs, printed);
    }
}

both! {
    async fn racing_renders_issue_one_document(app: TestApp) {
        let inv = polish_invoice(&app).await;
        let id = inv["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/invoices/{id}/pdf");
        // Renders racing a change of seller details render different bytes: one is issued,
        // every request is served that one, and no other file is left.
        let requests = (0..8).map(|i| {
            let (app, path) = (&app, &path);
            async move {
                if i % 2 == 1 {
                    app.put("/v1/settings/invoice", json!({"legal_name": format!("Seller {i}")})).await.ok();
                }
                app.raw(path, Some(&app.key)).await
            }
        });
        let served = futures::future::join_all(requests).await;
        let issued = std::fs::read(stored_pdf(&app, &id).await).unwrap();
        for (status, _, bytes) in &served {
            assert_eq!(*status, StatusCode::OK);
            assert!(bytes == &issued, "a request was served another render");
        }
        let files = std::fs::read_dir(app.docs.path().join(&app.tenant_id))
            .unwrap()
            .filter(|f| f.as_ref().unwrap().file_name().to_string_lossy().starts_with(&id))
            .count();
        assert_eq!(files, 1);
    }
}

both! {
    async fn a_failed_render_is_retried(app: TestApp) {
        let inv = polish_invoice(&app).await;
        let id = inv["id"].as_str().unwrap();
        let mut tx = app.db.read().await.unwrap();
        let tenant = recur::store::tenants::find_tenant(&mut tx, &app.tenant_id).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        let render = || recur::services::documents::render_pending(&app.db, app.docs.path(), &tenant, std::time::Instant::now() + std::time::Duration::from_secs(60));
        // The tenant's directory cannot be made: the render fails, is logged, records nothing.
        let blocker = app.docs.path().join(&app.tenant_id);
        std::fs::write(&blocker, b"not a directory").unwrap();
        let r = render().await.unwrap();
        assert_eq!((r.invoices, r.failed), (0, 1));
        assert_eq!(app.get(&format!("/v1/invoices/{id}")).await.ok()["pdf_sha256"], Value::Null);
        assert_eq!(app.count_events("email.sent").await, 0);
        // Fixed, the next pass renders it.
        std::fs::remove_file(&blocker).unwrap();
        let r = render().await.unwrap();
        assert_eq!((r.invoices, r.failed), (1, 0));
        assert!(std::fs::read(stored_pdf(&app, id).await).unwrap().starts_with(b"%PDF-"));
        // Past its deadline a pass renders nothing; the next one does.
        let second = polish_invoice(&app).await;
        let late = recur::services::documents::render_pending(&app.db, app.docs.path(), &tenant, std::time::Instant::now()).await.unwrap();
        assert_eq!(late, Default::default());
        assert_eq!(app.get(&format!("/v1/invoices/{}", second["id"].as_str().unwrap())).await.ok()["pdf_sha256"], Value::Null);
        assert_eq!(render().await.unwrap().invoices, 1);
    }
}
