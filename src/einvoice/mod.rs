//! Structured invoices (EN 16931): the model of `domain::en16931` written as Peppol BIS
//! Billing 3.0 UBL, as UN/CEFACT CII for Factur-X / ZUGFeRD (profile EN 16931, embedded in the
//! PDF by [`facturx`]) and as Poland's KSeF FA(3) ([`ksef`]), from askama templates in
//! `templates/einvoice/` (escaped as XML). The writers decide nothing: every figure and code
//! comes from the model, so every syntax says the same.

pub mod facturx;
pub mod ksef;
pub mod sample;

use crate::domain::en16931::{Document, Kind};
use askama::Template;
use chrono::NaiveDate;

/// Which syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// OASIS UBL 2.1 with the Peppol BIS Billing 3.0 customization.
    Ubl,
    /// UN/CEFACT Cross Industry Invoice D16B, as embedded in Factur-X.
    Cii,
    /// KSeF FA(3), for sellers established in Poland.
    Ksef,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The document cannot be expressed in this syntax (KSeF's own limits).
    #[error(transparent)]
    Refused(#[from] ksef::KsefError),
    #[error("e-invoice template: {0}")]
    Template(#[from] askama::Error),
}

#[derive(Template)]
#[template(path = "einvoice/ubl.xml")]
struct Ubl<'a> {
    d: &'a Document,
    cur: &'a str,
    /// `Invoice` or `CreditNote`: the root, the type code's and the lines' element names.
    root: &'static str,
    quantity_tag: &'static str,
}

#[derive(Template)]
#[template(path = "einvoice/cii.xml")]
struct Cii<'a> {
    d: &'a Document,
    cur: &'a str,
}

impl Ubl<'_> {
    fn money(&self, minor: &i64) -> String {
        self.d.amount(*minor)
    }
}

impl Cii<'_> {
    fn money(&self, minor: &i64) -> String {
        self.d.amount(*minor)
    }

    /// A date in UN/CEFACT format 102 (`YYYYMMDD`).
    fn day(&self, d: &NaiveDate) -> String {
        d.format("%Y%m%d").to_string()
    }
}

/// The document as XML in `syntax`.
pub fn write(d: &Document, syntax: Syntax) -> Result<String, WriteError> {
    let cur = d.currency.code();
    match syntax {
        Syntax::Ubl => {
            let (root, quantity_tag) = match d.kind {
                Kind::Invoice => ("Invoice", "InvoicedQuantity"),
                Kind::CreditNote => ("CreditNote", "CreditedQuantity"),
            };
            Ok(Ubl {
                d,
                cur,
                root,
                quantity_tag,
            }
            .render()?)
        }
        Syntax::Cii => Ok(Cii { d, cur }.render()?),
        Syntax::Ksef => Ok(ksef::write(d)?),
    }
}
