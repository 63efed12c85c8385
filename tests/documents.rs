//! The PDFs a customer receives, checked the way a reader and a tax office would: `qpdf
//! --check` passes, `pdffonts` shows every font embedded, `pdftotext` shows the number, every
//! line, the tax summary and the totals in the customer's language. The files are left in
//! `target/sample-documents/` to be looked at (`pdftoppm -png`).

use recur::documents::{self, Seller, sample};
use recur::domain::credit_note::{CreditNote, CreditNoteLine, Reason, RefundStatus};
use recur::domain::customer::TaxExempt;
use recur::domain::ids::CreditNoteId;
use std::path::PathBuf;
use std::process::Command;

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sample-documents");
    std::fs::create_dir_all(&dir).expect("output dir");
    dir
}

fn tool(name: &str, args: &[&str], file: &PathBuf) -> String {
    let out = Command::new(name)
        .args(args)
        .arg(file)
        .args(if name == "pdftotext" {
            &["-"][..]
        } else {
            &[][..]
        })
        .output()
        .unwrap_or_else(|e| {
            panic!("{name} (Debian qpdf / poppler-utils; .ci/run installs them): {e}")
        });
    assert!(
        out.status.success(),
        "{name} {file:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .replace('\u{a0}', " ")
}

/// qpdf and pdffonts pass; returns the text.
fn check(name: &str, bytes: &[u8]) -> String {
    let path = out_dir().join(name);
    std::fs::write(&path, bytes).expect("write");
    tool("qpdf", &["--check"], &path);
    let fonts = tool("pdffonts", &[], &path);
    let rows: Vec<&str> = fonts.lines().skip(2).collect();
    assert!(!rows.is_empty(), "{fonts}");
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let n = cols.len();
        assert_eq!(
            cols[n - 5..n - 2],
            ["yes", "yes", "yes"],
            "not embedded, subset and unicode: {row}"
        );
    }
    tool("pdftotext", &["-layout"], &path)
}

fn seller_of(settings: &recur::domain::seller::InvoiceSettings) -> Seller<'_> {
    Seller {
        settings,
        fallback_name: "Tenant",
    }
}

#[test]
fn invoices_in_every_language() {
    let settings = sample::seller();
    let cases = [
        (
            "en",
            "USD",
            "Invoice",
            "Amount due",
            "$415.73",
            "VAT",
            "Mar 1, 2026 – Mar 31, 2026",
        ),
        (
            "de",
            "EUR",
            "Rechnung",
            "Offener Betrag",
            "415,73 €",
            "Steuerübersicht",
            "01.03.2026 – 31.03.2026",
        ),
        (
            "fr",
            "EUR",
            "Facture",
            "Reste à payer",
            "415,73 €",
            "Base HT",
            "01/03/2026 – 31/03/2026",
        ),
        (
            "pl",
            "PLN",
            "Faktura",
            "Do zapłaty",
            "415,73 zł",
            "Podsumowanie VAT",
            "01.03.2026 – 31.03.2026",
        ),
        (
            "es",
            "EUR",
            "Factura",
            "Importe pendiente",
            "415,73 €",
            "Base imponible",
            "01/03/2026 – 31/03/2026",
        ),
    ];
    for (lang, cur, title, due, total, tax_word, period) in cases {
        let inv = sample::invoice(6, cur, TaxExempt::None);
        let customer = sample::customer(lang, TaxExempt::None);
        let bytes = documents::invoice_pdf(&inv, &customer, &seller_of(&settings), false).unwrap();
        let text = check(&format!("invoice-{lang}.pdf"), &bytes);
        for expected in [
            title,
            due,
            total,
            tax_word,
            period,
            "INV-2026-000042",
            "Żółta Łódź Software sp. z o.o.",
            "Müller & Søn Straße GmbH",
        ] {
            assert!(
                text.contains(expected),
                "{lang}: {expected:?} not in\n{text}"
            );
        }
        for line in &inv.lines {
            assert_eq!(
                text.matches(&line.description).count(),
                1,
                "{lang}: {}",
                line.description
            );
        }
    }
}

#[test]
fn amounts_follow_the_currency_exponent() {
    let settings = sample::seller();
    for (cur, lang, expected) in [("JPY", "en", "¥"), ("KWD", "de", "KWD")] {
        let inv = sample::invoice(3, cur, TaxExempt::None);
        let customer = sample::customer(lang, TaxExempt::None);
        let bytes = documents::invoice_pdf(&inv, &customer, &seller_of(&settings), false).unwrap();
        let text = check(&format!("invoice-{cur}.pdf"), &bytes);
        let cur_value = recur::domain::currency::Currency::parse(cur).unwrap();
        let lang_value = documents::locale::lang([Some(lang)]);
        let total = lang_value.money(inv.total, &cur_value);
        assert!(
            text.contains(&total.replace('\u{a0}', " ")) && total.contains(expected),
            "{total} in\n{text}"
        );
    }
}

#[test]
fn three_hundred_lines_paginate() {
    let settings = sample::seller();
    let inv = sample::invoice(300, "EUR", TaxExempt::None);
    let customer = sample::customer("en", TaxExempt::None);
    let bytes = documents::invoice_pdf(&inv, &customer, &seller_of(&settings), false).unwrap();
    let text = check("invoice-300-lines.pdf", &bytes);
    let pages: Vec<&str> = text
        .split('\u{c}')
        .filter(|p| !p.trim().is_empty())
        .collect();
    let n = pages.len();
    assert!(n >= 7, "{n} pages");
    for (i, page) in pages.iter().enumerate() {
        assert!(
            page.contains(&format!("Page {} of {n}", i + 1)),
            "page {}",
            i + 1
        );
        let has_rows = page.contains("(");
        if has_rows {
            assert!(
                page.contains("Description") && page.contains("Unit price"),
                "table head on page {}",
                i + 1
            );
        }
    }
    for line in &inv.lines {
        assert_eq!(
            text.matches(&line.description).count(),
            1,
            "{}",
            line.description
        );
    }
    let last = pages[n - 1];
    assert!(
        last.contains("Amount due") && last.contains("Tax summary"),
        "totals on the last page:\n{last}"
    );
    for page in &pages[..n - 1] {
        assert!(!page.contains("Amount due"), "totals only on the last page");
    }
}

#[test]
fn legal_notices() {
    let settings = sample::seller();
    let rc = sample::invoice(2, "EUR", TaxExempt::Reverse);
    let customer = sample::customer("de", TaxExempt::Reverse);
    let bytes = documents::invoice_pdf(&rc, &customer, &seller_of(&settings), false).unwrap();
    let text = check("invoice-reverse-charge.pdf", &bytes);
    for expected in ["Reverse Charge", "PL5260001246", "DE129273398"] {
        assert!(text.contains(expected), "{expected:?} not in\n{text}");
    }
    let ex = sample::invoice(2, "EUR", TaxExempt::Exempt);
    let customer = sample::customer("fr", TaxExempt::Exempt);
    let bytes = documents::invoice_pdf(&ex, &customer, &seller_of(&settings), false).unwrap();
    assert!(check("invoice-exempt.pdf", &bytes).contains("Exonéré de TVA."));
    // Bank transfer instructions with the invoice number as the reference.
    let inv = sample::invoice(2, "EUR", TaxExempt::None);
    let customer = sample::customer("en", TaxExempt::None);
    let text = check(
        "invoice-send.pdf",
        &documents::invoice_pdf(&inv, &customer, &seller_of(&settings), false).unwrap(),
    );
    for expected in [
        "Payment instructions",
        "IBAN: PL61 1090 1014 0000 0712 1981 2874",
        "Reference: INV-2026-000042",
    ] {
        assert!(text.contains(expected), "{expected:?} not in\n{text}");
    }
}

#[test]
fn drafts_are_marked() {
    let settings = sample::seller();
    let mut inv = sample::invoice(3, "EUR", TaxExempt::None);
    inv.number = None;
    let customer = sample::customer("pl", TaxExempt::None);
    let bytes = documents::invoice_pdf(&inv, &customer, &seller_of(&settings), true).unwrap();
    let text = check("invoice-upcoming-draft.pdf", &bytes);
    assert!(
        text.contains("PROJEKT") && text.contains("nie jest dokumentem podatkowym"),
        "{text}"
    );
}

#[test]
fn credit_notes_in_two_languages() {
    let settings = sample::seller();
    let inv = sample::invoice(4, "EUR", TaxExempt::None);
    for lang in ["en", "pl"] {
        let customer = sample::customer(lang, TaxExempt::None);
        let line = &inv.lines[0];
        let note = CreditNote {
            id: CreditNoteId::generate(),
            object: "credit_note",
            number: "INV-2026-000042-CN-01".into(),
            invoice: inv.id.clone(),
            customer: customer.id.clone(),
            currency: inv.currency,
            amount: line.amount,
            pre_payment_amount: 0,
            refund_amount: line.amount,
            out_of_band_amount: 0,
            credit_amount: 0,
            reason: Reason::ProductUnsatisfactory,
            memo: Some("Seat removed".into()),
            lines: vec![CreditNoteLine {
                invoice_line: line.id.clone(),
                amount: line.amount,
            }],
            tax_amounts: inv.total_tax_amounts[..1].to_vec(),
            payment: None,
            refund_status: RefundStatus::Succeeded,
            refund_ref: None,
            refund_failure: None,
            created: inv.created,
            document: Default::default(),
        };
        let bytes =
            documents::credit_note_pdf(&note, &inv, &customer, &seller_of(&settings)).unwrap();
        let text = check(&format!("credit-note-{lang}.pdf"), &bytes);
        let (title, reason) = if lang == "en" {
            ("Credit note", "Product unsatisfactory")
        } else {
            ("Faktura korygująca", "Reklamacja produktu")
        };
        for expected in [
            title,
            reason,
            "INV-2026-000042-CN-01",
            "INV-2026-000042",
            &line.description,
            "Seat removed",
        ] {
            assert!(
                text.contains(expected),
                "{lang}: {expected:?} not in\n{text}"
            );
        }
    }
}
