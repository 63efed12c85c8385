//! Finance exports: the rows match the API object by object, sums agree per currency, text
//! cells are spreadsheet-safe, bad parameters are named, the CLI writes the same bytes.

use crate::both;
use crate::support::{TestApp, recur_cli};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;

fn csv_rows(bytes: &[u8]) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_reader(bytes);
    let headers = r.headers().expect("header row").clone();
    r.records()
        .map(|rec| {
            let rec = rec.expect("record");
            headers
                .iter()
                .map(str::to_owned)
                .zip(rec.iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

/// A year of billing through the test clock: a hostile customer name, two currencies,
/// a failed payment and a credit note.
async fn year(app: &TestApp) -> Vec<Value> {
    app.set_clock("2027-01-01T00:00:00Z").await;
    let eur = app.monthly_price(2_000).await;
    let pln = app
        .post("/v1/prices", json!({"product": "Pro PL", "currency": "PLN", "unit_amount": 9_900, "recurring": {"interval": "month"}}))
        .await
        .ok()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let hostile = app
        .post("/v1/customers", json!({"name": "=HYPERLINK(\"http://evil\",\"x\")", "external_id": "@SUM(A1)", "email": "h@example.com", "currency": "EUR",
            "tax_ids": [{"type": "eu_vat", "value": "DE129273398"}], "payment_method": {"provider": "sandbox", "token": "tok_visa"}}))
        .await
        .ok();
    let polish = app
        .post("/v1/customers", json!({"name": "Zażółć, \"Gęślą\" Jaźń", "currency": "PLN", "payment_method": {"provider": "sandbox", "token": "tok_insufficient_funds"}}))
        .await
        .ok();
    app.subscription(hostile["id"].as_str().unwrap(), &eur)
        .await;
    app.subscription(polish["id"].as_str().unwrap(), &pln).await;
    app.advance("2027-12-15T00:00:00Z").await;
    let first = app.get("/v1/invoices?limit=100").await.ok()["data"]
        .as_array()
        .unwrap()
        .clone();
    let paid = first
        .iter()
        .find(|i| i["status"] == "paid")
        .expect("a paid invoice");
    app.post(
        "/v1/credit_notes",
        json!({"invoice": paid["id"], "amount": 500, "reason": "duplicate", "refund": true}),
    )
    .await
    .ok();
    app.get("/v1/invoices?limit=100").await.ok()["data"]
        .as_array()
        .unwrap()
        .clone()
}

async fn export(app: &TestApp, path: &str) -> (StatusCode, Vec<u8>) {
    let (status, _, body) = app.raw(path, Some(&app.key)).await;
    (status, body)
}

both! {
    async fn exports_match_the_api(app: TestApp) {
        let invoices = year(&app).await;
        let (status, body) = export(&app, "/v1/exports/invoices?from=2027-01-01&to=2027-12-31").await;
        assert_eq!(status, StatusCode::OK);
        let rows = csv_rows(&body);
        let finalized: Vec<&Value> = invoices.iter().filter(|i| i["number"].is_string()).collect();
        assert_eq!(rows.len(), finalized.len());
        let mut sums: HashMap<String, rust_decimal::Decimal> = HashMap::new();
        for inv in &finalized {
            let row = rows.iter().find(|r| r["invoice_id"] == inv["id"].as_str().unwrap()).expect("row per invoice");
            let cur = inv["currency"].as_str().unwrap();
            let exp = if cur == "JPY" { 0 } else { 2 };
            for field in ["total", "tax", "amount_paid", "amount_due", "amount_credited"] {
                let major = rust_decimal::Decimal::new(inv[field].as_i64().unwrap(), exp);
                assert_eq!(row[field], major.to_string(), "{field} of {}", inv["number"]);
            }
            assert_eq!((row["number"].as_str(), row["status"].as_str(), row["currency"].as_str()), (inv["number"].as_str().unwrap(), inv["status"].as_str().unwrap(), cur));
            *sums.entry(cur.to_owned()).or_default() += rust_decimal::Decimal::new(inv["total"].as_i64().unwrap(), exp);
        }
        for (cur, sum) in &sums {
            let exported: rust_decimal::Decimal = rows.iter().filter(|r| &r["currency"] == cur).map(|r| r["total"].parse::<rust_decimal::Decimal>().unwrap()).sum();
            assert_eq!(&exported, sum, "{cur}");
        }
        // Spreadsheet-safe: formulas become text; quotes and commas survive.
        assert!(rows.iter().any(|r| r["customer_name"] == "'=HYPERLINK(\"http://evil\",\"x\")" && r["customer_external_id"] == "'@SUM(A1)" && r["customer_tax_ids"] == "eu_vat:DE129273398"));
        assert!(rows.iter().any(|r| r["customer_name"] == "Zażółć, \"Gęślą\" Jaźń"));
        // JSON lines: the same records, values unescaped.
        let (_, json_body) = export(&app, "/v1/exports/invoices?from=2027-01-01&to=2027-12-31&format=json").await;
        let lines: Vec<Value> = String::from_utf8(json_body).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), rows.len());
        assert!(lines.iter().any(|l| l["customer_name"] == "=HYPERLINK(\"http://evil\",\"x\")"));
        // Lines add up to each invoice's subtotal.
        let (_, lines_body) = export(&app, "/v1/exports/invoice-lines?from=2027-01-01&to=2027-12-31").await;
        let line_rows = csv_rows(&lines_body);
        for inv in &finalized {
            let sum: rust_decimal::Decimal = line_rows.iter().filter(|r| r["invoice_id"] == inv["id"].as_str().unwrap()).map(|r| r["amount"].parse::<rust_decimal::Decimal>().unwrap()).sum();
            assert_eq!(sum, rust_decimal::Decimal::new(inv["subtotal"].as_i64().unwrap(), 2));
        }
        // Payments and credit notes.
        let api_payments = app.get("/v1/payments?limit=100").await.ok()["data"].as_array().unwrap().len();
        let (_, pay_body) = export(&app, "/v1/exports/payments?from=2027-01-01&to=2027-12-31").await;
        let pays = csv_rows(&pay_body);
        assert_eq!(pays.len(), api_payments);
        assert!(pays.iter().any(|p| p["status"] == "failed" && p["decline_code"] == "insufficient_funds"));
        let (_, notes_body) = export(&app, "/v1/exports/credit-notes?from=2027-01-01&to=2027-12-31").await;
        let notes = csv_rows(&notes_body);
        assert_eq!(notes.len(), 1);
        assert_eq!((notes[0]["amount"].as_str(), notes[0]["reason"].as_str()), ("5.00", "duplicate"));
        // A window elsewhere is empty but for the header.
        let (_, none) = export(&app, "/v1/exports/invoices?from=2026-01-01&to=2026-12-31").await;
        assert_eq!(csv_rows(&none).len(), 0);
        assert!(String::from_utf8(none).unwrap().starts_with("tenant_id,invoice_id,number,"));
        // The CLI writes the same bytes.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("inv.csv");
        let out = recur_cli(&app, &[], &["export", "invoices", "--from", "2027-01-01", "--to", "2027-12-31", "--tenant", &app.tenant_id, "-o", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&file).unwrap(), body);
    }
}

both! {
    async fn bad_export_parameters(app: TestApp) {
        for (path, param) in [
            ("/v1/exports/invoices?to=2027-01-31", "from"),
            ("/v1/exports/invoices?from=2027-02-30&to=2027-03-01", "from"),
            ("/v1/exports/invoices?from=2027-03-01&to=2027-02-01", "to"),
            ("/v1/exports/invoices?from=2027-01-01&to=2027-01-31&timezone=Mars/Base", "timezone"),
            ("/v1/exports/invoices?from=2027-01-01&to=2027-01-31&format=xml", "format"),
            ("/v1/exports/ledger?from=2027-01-01&to=2027-01-31", "kind"),
            ("/v1/exports/invoices?from=2027-01-01&to=2027-01-31&colour=red", "colour"),
        ] {
            let r = app.get(path).await;
            assert_eq!((r.status, r.body["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some(param)), "{path}: {}", r.body);
        }
        let out = recur_cli(&app, &[], &["export", "invoices", "--from", "2027-01-01", "--to", "nope"]);
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

fn dec(s: &str) -> rust_decimal::Decimal {
    if s.is_empty() {
        rust_decimal::Decimal::ZERO
    } else {
        s.parse().unwrap()
    }
}

/// Debit less credit of `account` per currency.
fn balance(
    rows: &[HashMap<String, String>],
    account: &str,
) -> HashMap<String, rust_decimal::Decimal> {
    let mut out = HashMap::new();
    for r in rows.iter().filter(|r| r["account"] == account) {
        *out.entry(r["currency"].clone()).or_default() += dec(&r["debit"]) - dec(&r["credit"]);
    }
    out
}

fn major(minor: i64, currency: &str) -> rust_decimal::Decimal {
    rust_decimal::Decimal::new(minor, if currency == "JPY" { 0 } else { 2 })
}

both! {
    async fn the_journal_balances(app: TestApp) {
        year(&app).await;
        // An invoice sent for payment, one voided, one written off.
        let price = app.monthly_price(4_200).await;
        for _ in 0..3 {
            let c = app.post("/v1/customers", json!({"name": "Transfer", "currency": "EUR"})).await.ok();
            app.post("/v1/subscriptions", json!({"customer": c["id"], "items": [{"price": price}], "collection_method": "send_invoice", "days_until_due": 30})).await.ok();
        }
        let open: Vec<Value> = app.get("/v1/invoices?status=open&limit=100").await.ok()["data"].as_array().unwrap().clone();
        let sent: Vec<&Value> = open.iter().filter(|i| i["collection_method"] == "send_invoice").collect();
        assert_eq!(sent.len(), 3);
        app.post(&format!("/v1/invoices/{}/void", sent[0]["id"].as_str().unwrap()), json!({})).await.ok();
        let lost = sent[1];
        app.post(&format!("/v1/invoices/{}/mark_uncollectible", lost["id"].as_str().unwrap()), json!({})).await.ok();
        let (status, body) = export(&app, "/v1/exports/journal?from=2027-01-01&to=2027-12-31").await;
        assert_eq!(status, StatusCode::OK);
        let rows = csv_rows(&body);
        // Every entry balances.
        let mut entries: HashMap<&str, rust_decimal::Decimal> = HashMap::new();
        for r in &rows {
            *entries.entry(r["entry_id"].as_str()).or_default() += dec(&r["debit"]) - dec(&r["credit"]);
        }
        assert!(entries.len() > 10, "{} entries", entries.len());
        assert!(entries.values().all(|d| d.is_zero()), "unbalanced: {entries:?}");
        // The refund leaves the cash account of the provider that took the payment.
        assert!(rows.iter().any(|r| r["source_type"] == "credit_note" && r["account"] == "1000-sandbox" && r["credit"] != "0.00"));
        for source in ["invoice", "payment", "credit_note", "void", "write_off", "revenue_recognition"] {
            assert!(rows.iter().any(|r| r["source_type"] == source), "no {source} entry");
        }
        // Receivables equal the open invoices' amount due, per currency.
        let invoices: Vec<Value> = app.get("/v1/invoices?limit=100").await.ok()["data"].as_array().unwrap().clone();
        let mut due: HashMap<String, rust_decimal::Decimal> = HashMap::new();
        let mut billed: HashMap<String, rust_decimal::Decimal> = HashMap::new();
        for inv in invoices.iter().filter(|i| i["number"].is_string()) {
            let cur = inv["currency"].as_str().unwrap();
            if inv["status"] == "open" {
                *due.entry(cur.to_owned()).or_default() += major(inv["amount_due"].as_i64().unwrap(), cur);
            }
            if inv["status"] != "void" {
                *billed.entry(cur.to_owned()).or_default() += major(inv["total"].as_i64().unwrap() - inv["tax"].as_i64().unwrap(), cur);
            }
        }
        let receivables = balance(&rows, "1200");
        for cur in ["EUR", "PLN"] {
            assert_eq!(receivables.get(cur).copied().unwrap_or_default(), due.get(cur).copied().unwrap_or_default(), "receivables in {cur}");
            // What was billed net of tax is either recognised or still deferred.
            let deferred = -balance(&rows, "2400").get(cur).copied().unwrap_or_default();
            let revenue = -balance(&rows, "4000").get(cur).copied().unwrap_or_default();
            assert_eq!(deferred + revenue, billed[cur], "revenue in {cur}");
            assert!(revenue > rust_decimal::Decimal::ZERO, "{cur}: nothing recognised");
            // The clock stands at December 15th: December's service is half recognised, half
            // deferred.
            if cur == "EUR" {
                assert!(deferred > rust_decimal::Decimal::ZERO, "{cur}: {revenue} recognised, {deferred} deferred");
            }
        }
        // Recognition splits cleanly: January plus February–December is the year.
        let recognised = |from: &'static str, to: &'static str| {
            let app = &app;
            async move {
                let (_, body) = export(app, &format!("/v1/exports/journal?from={from}&to={to}")).await;
                -balance(&csv_rows(&body), "4000").values().copied().sum::<rust_decimal::Decimal>()
            }
        };
        assert_eq!(recognised("2027-01-01", "2027-01-31").await + recognised("2027-02-01", "2027-12-31").await, recognised("2027-01-01", "2027-12-31").await);
        // The tenant's own chart of accounts.
        let bad = app.put("/v1/settings/invoice", json!({"accounts": {"revenue": "4000 revenue"}})).await;
        assert_eq!((bad.status.as_u16(), bad.body["error"]["param"].as_str()), (400, Some("accounts")));
        app.put("/v1/settings/invoice", json!({"accounts": {"receivables": "AR-100"}})).await.ok();
        let (_, body) = export(&app, "/v1/exports/journal?from=2027-01-01&to=2027-12-31").await;
        let custom = csv_rows(&body);
        assert_eq!(balance(&custom, "AR-100"), receivables);
        assert!(custom.iter().any(|r| r["account"] == "2400") && !custom.iter().any(|r| r["account"] == "1200"));
    }
}
