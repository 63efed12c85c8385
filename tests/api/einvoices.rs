//! E-invoices of billed documents: `GET /v1/invoices/{id}/ubl|cii|ksef`,
//! `/pdf?format=facturx` and `/v1/credit_notes/{id}/ubl|cii|ksef` for an invoice billed through the API (23 % VAT, a 10 %
//! coupon), a reverse-charge invoice and a credit note, validated by the same checker as the
//! random ones; and what cannot be an e-invoice refused with its reason.

use crate::both;
use crate::einvoice_checker;
use crate::support::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn seller() -> Value {
    json!({
        "legal_name": "Żółta Łódź sp. z o.o.",
        "address": {"line1": "ul. Świętokrzyska 12", "city": "Warszawa", "postal_code": "00-916", "country": "PL"},
        "tax_ids": [{"type": "eu_vat", "value": "PL5260001246"}],
        "email": "billing@zolta.example",
        "bank": {"iban": "PL61109010140000071219812874", "bic": "WBKPPLPP"},
        "payment_terms": "Płatne w ciągu 14 dni <netto>.",
    })
}

/// A customer in `country` with a VAT id, taxed as `tax_exempt`, in `currency`.
async fn business(
    app: &TestApp,
    country: &str,
    vat: &str,
    tax_exempt: &str,
    currency: &str,
) -> String {
    let c = app
        .post(
            "/v1/customers",
            json!({"name": "Müller & Søn <GmbH>", "email": "ap@mueller.example", "currency": currency,
                "address": {"line1": "Königstraße 5", "city": "München", "postal_code": "80331", "country": country},
                "tax_ids": [{"type": "eu_vat", "value": vat}], "tax_exempt": tax_exempt,
                "payment_method": {"provider": "sandbox", "token": "tok_visa"}}),
        )
        .await
        .ok();
    c["id"].as_str().expect("id").to_owned()
}

/// The first invoice of a monthly subscription at 23 % VAT with a 10 % coupon.
async fn billed(app: &TestApp, customer: &str, currency: &str) -> Value {
    let vat = app
        .post(
            "/v1/tax_rates",
            json!({"display_name": "VAT", "percentage": "23"}),
        )
        .await
        .ok()["id"]
        .clone();
    let coupon = app
        .post(
            "/v1/coupons",
            json!({"percent_off": "10", "duration": "forever"}),
        )
        .await
        .ok()["id"]
        .clone();
    let price = app
        .post(
            "/v1/prices",
            json!({"product": "Pro", "currency": currency, "unit_amount": 12_345, "recurring": {"interval": "month"}}),
        )
        .await
        .ok()["id"]
        .clone();
    let sub = app
        .post(
            "/v1/subscriptions",
            json!({"customer": customer, "items": [{"price": price, "quantity": 3}], "default_tax_rates": [vat], "coupon": coupon}),
        )
        .await
        .ok();
    app.invoices_of(sub["id"].as_str().unwrap())
        .await
        .pop()
        .expect("first invoice")
}

fn between<'a>(xml: &'a str, open: &str, close: &str) -> &'a str {
    let start = xml.find(open).unwrap_or_else(|| panic!("{open} in {xml}")) + open.len();
    let len = xml[start..].find(close).expect("closing tag");
    &xml[start..start + len]
}

/// Fetches a document, checks it is XML named for the number, and keeps it in `dir`.
async fn fetch(app: &TestApp, path: &str, dir: &std::path::Path, name: &str) -> String {
    let (status, headers, bytes) = app.raw(path, Some(&app.key)).await;
    let xml = String::from_utf8(bytes).expect("utf-8");
    assert_eq!(status, StatusCode::OK, "{path}: {xml}");
    let header = |h: &str| headers[h].to_str().unwrap_or_default().to_owned();
    assert!(header("content-type").starts_with("application/xml"));
    assert!(header("content-disposition").contains(".xml\""));
    std::fs::write(dir.join(name), &xml).expect("write");
    xml
}

both! {
    async fn billed_documents_are_valid_einvoices(app: TestApp) {
        app.put("/v1/settings/invoice", seller()).await.ok();
        let dir = tempfile::tempdir().expect("dir");
        let customer = business(&app, "PL", "PL1234563218", "none", "EUR").await;
        let inv = billed(&app, &customer, "EUR").await;
        let id = inv["id"].as_str().unwrap();
        let number = inv["number"].as_str().unwrap();
        let ubl = fetch(&app, &format!("/v1/invoices/{id}/ubl"), dir.path(), "invoice.ubl.xml").await;
        let cii = fetch(&app, &format!("/v1/invoices/{id}/cii"), dir.path(), "invoice.cii.xml").await;
        assert_eq!(between(&ubl, "<cbc:ID>", "</cbc:ID>"), number);
        assert!(ubl.contains("Müller &#38; Søn &#60;GmbH&#62;"), "names escaped: {ubl}");
        // 3 × 123.45 = 370.35, −10 % = 333.31 (discount 37.04, half away from zero), 23 % VAT = 76.66.
        assert_eq!(inv["total"], 40_997);
        assert!(ubl.contains(r#"<cbc:TaxInclusiveAmount currencyID="EUR">409.97</cbc:TaxInclusiveAmount>"#), "{ubl}");
        assert!(ubl.contains(r#"<cbc:AllowanceTotalAmount currencyID="EUR">37.04</cbc:AllowanceTotalAmount>"#));
        assert!(cii.contains("<ram:GrandTotalAmount>409.97</ram:GrandTotalAmount>"));
        // Factur-X: the PDF as issued with the CII inside.
        let (status, headers, pdf) = app.raw(&format!("/v1/invoices/{id}/pdf?format=facturx"), Some(&app.key)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/pdf");
        assert!(headers["content-disposition"].to_str().unwrap().contains(".facturx.pdf"));
        let embedded = pdf.windows(cii.len()).any(|w| w == cii.as_bytes());
        assert!(embedded, "the CII served at /cii is the one embedded");
        std::fs::write(dir.path().join("invoice.facturx.pdf"), &pdf).expect("write");
        let plain = app.raw(&format!("/v1/invoices/{id}/pdf"), Some(&app.key)).await.2;
        assert_eq!(plain, app.raw(&format!("/v1/invoices/{id}/pdf?format=pdf"), Some(&app.key)).await.2);
        let r = app.get(&format!("/v1/invoices/{id}/pdf?format=xrechnung")).await;
        assert_eq!((r.status, r.error_code()), (StatusCode::BAD_REQUEST, "parameter_invalid"));

        let note = app
            .post("/v1/credit_notes", json!({"invoice": id, "amount": 12_300, "reason": "order_change", "memo": "one seat <less>"}))
            .await
            .ok();
        let note_id = note["id"].as_str().unwrap();
        let cn = fetch(&app, &format!("/v1/credit_notes/{note_id}/ubl"), dir.path(), "note.ubl.xml").await;
        fetch(&app, &format!("/v1/credit_notes/{note_id}/cii"), dir.path(), "note.cii.xml").await;
        assert!(cn.starts_with("<?xml") && cn.contains("<CreditNote "));
        assert!(cn.contains(&format!("<cbc:ID>{number}</cbc:ID>")), "references the invoice");
        assert!(cn.contains(r#"<cbc:PayableAmount currencyID="EUR">123.00</cbc:PayableAmount>"#));

        let reverse = business(&app, "DE", "DE129273398", "reverse", "EUR").await;
        let inv = billed(&app, &reverse, "EUR").await;
        let rc = fetch(&app, &format!("/v1/invoices/{}/ubl", inv["id"].as_str().unwrap()), dir.path(), "reverse.ubl.xml").await;
        assert!(rc.contains("<cbc:TaxExemptionReasonCode>VATEX-EU-AE</cbc:TaxExemptionReasonCode>"));
        assert!(rc.contains(r#"<cbc:EndpointID schemeID="9930">DE129273398</cbc:EndpointID>"#));
        fetch(&app, &format!("/v1/invoices/{}/cii", inv["id"].as_str().unwrap()), dir.path(), "reverse.cii.xml").await;

        // KSeF: VAT in EUR needs PLN figures recur does not have; a reverse charge has no VAT.
        let r = app.get(&format!("/v1/invoices/{id}/ksef")).await;
        assert_eq!(r.error_code(), "einvoice_unavailable");
        assert!(r.body["error"]["message"].as_str().unwrap().contains("PLN"), "{}", r.body);
        let fa = fetch(&app, &format!("/v1/invoices/{}/ksef", inv["id"].as_str().unwrap()), dir.path(), "reverse.fa3.xml").await;
        assert!(fa.contains("<KodUE>DE</KodUE>") && fa.contains("<P_12>np II</P_12>"), "{fa}");
        let pln = business(&app, "PL", "PL1234563218", "none", "PLN").await;
        let inv = billed(&app, &pln, "PLN").await;
        let pln_id = inv["id"].as_str().unwrap();
        let fa = fetch(&app, &format!("/v1/invoices/{pln_id}/ksef"), dir.path(), "pln.fa3.xml").await;
        assert!(fa.contains("<NIP>5260001246</NIP>") && fa.contains("<NIP>1234563218</NIP>"), "{fa}");
        assert!(fa.contains("<P_13_1>333.31</P_13_1>") && fa.contains("<P_14_1>76.66</P_14_1>"), "{fa}");
        assert!(fa.contains("<P_10>37.04</P_10>"), "the discount spread over the line: {fa}");
        let note = app
            .post("/v1/credit_notes", json!({"invoice": pln_id, "amount": 12_300, "reason": "order_change"}))
            .await
            .ok();
        let kor = fetch(&app, &format!("/v1/credit_notes/{}/ksef", note["id"].as_str().unwrap()), dir.path(), "pln-note.fa3.xml").await;
        assert!(kor.contains("<RodzajFaktury>KOR</RodzajFaktury>") && kor.contains("<P_15>-123.00</P_15>"), "{kor}");

        if let Some(report) = einvoice_checker::validate(dir.path()) {
            assert!(report.contains("10 documents"), "{report}");
        }
    }
}

both! {
    async fn what_cannot_be_an_einvoice_is_refused(app: TestApp) {
        let customer = business(&app, "PL", "PL1234563218", "none", "EUR").await;
        let inv = billed(&app, &customer, "EUR").await;
        let path = format!("/v1/invoices/{}/ubl", inv["id"].as_str().unwrap());
        // No seller details at all.
        let r = app.get(&path).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert_eq!(r.error_code(), "einvoice_unavailable");
        assert!(r.body["error"]["message"].as_str().unwrap().contains("address country"), "{}", r.body);
        // An address but no VAT id.
        let mut s = seller();
        s["tax_ids"] = json!([]);
        app.put("/v1/settings/invoice", s).await.ok();
        let r = app.get(&path).await;
        assert_eq!(r.error_code(), "einvoice_unavailable");
        assert!(r.body["error"]["message"].as_str().unwrap().contains("VAT id"), "{}", r.body);
        app.put("/v1/settings/invoice", seller()).await.ok();
        assert_eq!(app.get(&path).await.status, StatusCode::OK);

        // Three decimals cannot be exact.
        let kwd = business(&app, "PL", "PL1234563218", "none", "KWD").await;
        let inv = billed(&app, &kwd, "KWD").await;
        let r = app.get(&format!("/v1/invoices/{}/cii", inv["id"].as_str().unwrap())).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body["error"]["message"].as_str().unwrap().contains("KWD has 3 decimals"), "{}", r.body);

        // Unknown ids, and another tenant's invoice, are not found.
        for p in ["/v1/invoices/in_00000000000000000000000000000000/ubl", "/v1/credit_notes/cn_00000000000000000000000000000000/cii"] {
            assert_eq!(app.get(p).await.status, StatusCode::NOT_FOUND, "{p}");
        }
        let other = app.other_tenant_key().await;
        let r = app.send(reqwest::Method::GET, &path, Some(&other), None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
}
