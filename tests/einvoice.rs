//! E-invoices as a tax office's validator reads them: random finalized invoices and credit
//! notes (`recur::einvoice::sample`, priced by the billing engine's own arithmetic) written
//! as Peppol UBL and CII, one invoice in ten as a Factur-X PDF, plus documents broken on
//! purpose, all run through
//! `scripts/einvoice_check.py` (XSD, the CEN EN 16931 schematron, the Peppol rules). The
//! documents are left in `target/einvoice/` to be read.
//!
//! The checker runs in the Python virtualenv `.ci/run` creates (see `support/einvoice_checker.rs`).
//! `EINVOICE_CASES` sets the number of random invoices (default 1,000).

#[path = "support/einvoice_checker.rs"]
mod einvoice_checker;

use recur::documents::{self, Seller};
use recur::domain::en16931::{self, Document, SellerInput};
use recur::einvoice::ksef::KsefError;
use recur::einvoice::{self, Syntax, WriteError, facturx, sample};
use std::path::{Path, PathBuf};

/// Writes `d` as UBL and CII, and as FA(3) when KSeF takes it; returns whether it did.
fn write(dir: &Path, name: &str, d: &Document) -> bool {
    for (syntax, ext) in [(Syntax::Ubl, "ubl"), (Syntax::Cii, "cii")] {
        let xml = einvoice::write(d, syntax).expect("render");
        std::fs::write(dir.join(format!("{name}.{ext}.xml")), xml).expect("write");
    }
    match einvoice::write(d, Syntax::Ksef) {
        Ok(xml) => {
            std::fs::write(dir.join(format!("{name}.fa3.xml")), xml).expect("write");
            true
        }
        // What FA(3) cannot take is refused for a reason, never a template failure.
        Err(WriteError::Refused(
            KsefError::NotPolish(_) | KsefError::Rate(_) | KsefError::ForeignCurrencyVat(_),
        )) => false,
        Err(e) => panic!("{name}: {e}"),
    }
}

/// A document broken on purpose: `name.RULE.bad.xml` must fail with RULE.
fn write_bad(dir: &Path, name: &str, rule: &str, syntax: Syntax, xml: String) {
    let ext = match syntax {
        Syntax::Ubl => "ubl",
        Syntax::Cii => "cii",
        Syntax::Ksef => "fa3",
    };
    std::fs::write(dir.join(format!("{name}-{ext}.{rule}.bad.xml")), xml).expect("write");
}

/// The case's invoice as Factur-X: recur's PDF with the CII of `d` embedded.
fn facturx_pdf(case: &sample::Case, d: &Document) -> Vec<u8> {
    let seller = Seller {
        settings: &case.seller,
        fallback_name: "Tenant",
    };
    let pdf = documents::invoice_pdf(&case.invoice, &case.customer, &seller, false).expect("pdf");
    let cii = einvoice::write(d, Syntax::Cii).expect("cii");
    let meta = facturx::Meta {
        title: &format!("Invoice {}", d.number),
        author: "Seller",
        issued: case.invoice.finalized_at.expect("finalized"),
    };
    facturx::embed(&pdf, &cii, &meta).expect("factur-x")
}

/// A Factur-X PDF with its catalog changed by `edit`.
fn edited(pdf: &[u8], edit: impl FnOnce(&mut lopdf::Dictionary)) -> Vec<u8> {
    let mut doc = lopdf::Document::load_mem(pdf).expect("load");
    edit(doc.catalog_mut().expect("catalog"));
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("save");
    out
}

fn pdf_negatives(dir: &Path) {
    let case = sample::case(3);
    let seller = SellerInput {
        settings: &case.seller,
        fallback_name: "Tenant",
    };
    let d = en16931::invoice(&case.invoice, &case.customer, &seller).expect("model");
    let good = facturx_pdf(&case, &d);
    let bad = |name: &str, bytes: Vec<u8>| {
        std::fs::write(dir.join(format!("{name}.bad.pdf")), bytes).expect("write");
    };
    bad(
        "no-output-intent.PDFA-OUTPUTINTENT",
        edited(&good, |c| {
            c.remove(b"OutputIntents");
        }),
    );
    bad(
        "no-metadata.FACTURX-XMP",
        edited(&good, |c| {
            c.remove(b"Metadata");
        }),
    );
    let mut wrong = d.clone();
    wrong.totals.payable += 1;
    bad("wrong-total-inside.BR-CO-16", facturx_pdf(&case, &wrong));
}

/// FA(3) documents broken on purpose: the XSD must refuse them.
fn ksef_negatives(dir: &Path) {
    let (case, xml) = (0..)
        .map(sample::case)
        .find_map(|c| {
            let seller = SellerInput {
                settings: &c.seller,
                fallback_name: "Tenant",
            };
            let d = en16931::invoice(&c.invoice, &c.customer, &seller).ok()?;
            let xml = einvoice::write(&d, Syntax::Ksef).ok()?;
            Some((c.invoice.number.clone(), xml))
        })
        .expect("a KSeF case");
    let bad = |name: &str, xml: String| {
        assert!(xml.contains("<Faktura"), "{case:?}");
        std::fs::write(dir.join(format!("{name}-fa3.XSD.bad.xml")), xml).expect("write");
    };
    let code = xml.find("<P_12>").expect("a line");
    let end = xml[code..].find("</P_12>").expect("closed") + code;
    bad(
        "rate-code",
        format!("{}<P_12>0{}", &xml[..code], &xml[end..]),
    );
    bad("nip", xml.replacen("<NIP>", "<NIP>PL", 1));
    bad("three-decimals", xml.replacen("</P_15>", "1</P_15>", 1));
}

fn negatives(dir: &Path) {
    let reverse = (0..)
        .map(sample::case)
        .find(|c| c.invoice.tax_exempt == recur::domain::customer::TaxExempt::Reverse)
        .expect("a reverse-charge case");
    let seller = SellerInput {
        settings: &reverse.seller,
        fallback_name: "Tenant",
    };
    let d = en16931::invoice(&reverse.invoice, &reverse.customer, &seller).expect("model");
    for syntax in [Syntax::Ubl, Syntax::Cii] {
        // A payable amount one cent off.
        let mut wrong = d.clone();
        wrong.totals.payable += 1;
        write_bad(
            dir,
            "wrong-total",
            "BR-CO-16",
            syntax,
            einvoice::write(&wrong, syntax).unwrap(),
        );
        // A total with VAT one cent off.
        let mut wrong = d.clone();
        wrong.totals.tax_inclusive += 1;
        write_bad(
            dir,
            "wrong-gross",
            "BR-CO-15",
            syntax,
            einvoice::write(&wrong, syntax).unwrap(),
        );
        // Reverse charge without its exemption reason.
        let xml = einvoice::write(&d, syntax).unwrap();
        let stripped: String = xml
            .lines()
            .filter(|l| !l.contains("ExemptionReason"))
            .collect::<Vec<_>>()
            .join("\n");
        write_bad(dir, "no-ae-reason", "BR-AE-10", syntax, stripped);
        // Amounts with three decimals.
        let mut kwd = d.clone();
        kwd.currency = recur::domain::currency::Currency::parse("KWD").unwrap();
        write_bad(
            dir,
            "three-decimals",
            "BR-DEC",
            syntax,
            einvoice::write(&kwd, syntax).unwrap(),
        );
    }
}

#[test]
fn random_invoices_pass_the_validators() {
    let cases: u64 = std::env::var("EINVOICE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/einvoice/random");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("output dir");
    let (mut invoices, mut notes, mut pdfs, mut ksef_documents) = (0, 0, 0, 0);
    for seed in 0..cases {
        let case = sample::case(seed);
        let seller = SellerInput {
            settings: &case.seller,
            fallback_name: "Tenant",
        };
        let d = en16931::invoice(&case.invoice, &case.customer, &seller)
            .unwrap_or_else(|e| panic!("case {seed}: {e}"));
        ksef_documents += usize::from(write(&dir, &format!("{seed:05}-invoice"), &d));
        invoices += 1;
        // One invoice in ten also as Factur-X, long ones included.
        if seed % 10 == 0 {
            let pdf = facturx_pdf(&case, &d);
            std::fs::write(dir.join(format!("{seed:05}-invoice.facturx.pdf")), pdf).expect("write");
            pdfs += 1;
        }
        for (n, note) in case.credit_notes.iter().enumerate() {
            let d = en16931::credit_note(note, &case.invoice, &case.customer, &seller)
                .unwrap_or_else(|e| panic!("case {seed} note {n}: {e}"));
            ksef_documents += usize::from(write(&dir, &format!("{seed:05}-credit-note-{n}"), &d));
            notes += 1;
        }
    }
    negatives(&dir);
    pdf_negatives(&dir);
    ksef_negatives(&dir);
    eprintln!(
        "{invoices} invoices and {notes} credit notes, each as UBL and CII; {pdfs} as Factur-X; \
         {ksef_documents} as KSeF FA(3)"
    );
    assert!(
        ksef_documents * 10 > invoices,
        "too few Polish documents: {ksef_documents}"
    );
    if let Some(report) = einvoice_checker::validate(&dir) {
        eprintln!("{report}");
    }
}
