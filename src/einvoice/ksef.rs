//! KSeF FA(3): the structured invoice of Poland's national e-invoicing system, for sellers
//! established in Poland, written from the same EN 16931 model as UBL and CII.
//!
//! The mapping (`../shared/EINVOICE.md` §4): the seller's NIP is its PL VAT id; the buyer is a
//! NIP (Polish VAT id), an EU VAT id (`KodUE` + `NrVatUE`), another country's id (`NrID`) or
//! none (`BrakID`). Per VAT category and rate: 23 % `P_13_1`/`P_14_1`, 8 % `P_13_2`, 5 %
//! `P_13_3`, domestic 0 % `P_13_6_1` (`0 KR`), exempt `P_13_7` (`zw`), reverse charge to an EU
//! business `P_13_9` (`np II`), outside the EU `P_13_8` (`np I`), to a Polish business
//! `P_13_10` (`oo`). FA(3) has no document-level discount, so each line carries its share
//! (`P_10`) and its net after it (`P_11`): Σ `P_11` of a rate = its `P_13_x`. A credit note is
//! a `KOR` with negative amounts and quantities referencing the corrected invoice (issued
//! outside KSeF: `NrKSeFN`, since recur does not transmit yet).
//!
//! Refused: sellers outside Poland, standard rates Poland does not have, and VAT in a currency
//! other than PLN (FA(3) then needs the VAT in PLN at the NBP rate, which recur does not
//! know yet).

use crate::domain::en16931::{Category, Document, Kind};
use askama::Template;
use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KsefError {
    #[error("KSeF FA(3) is for sellers established in Poland; the seller's country is {0}")]
    NotPolish(String),
    #[error("the seller's VAT id {0} is not a Polish NIP (PL and 10 digits)")]
    Nip(String),
    #[error("{0} % is not a Polish VAT rate (23, 8, 5 or 0)")]
    Rate(Decimal),
    #[error(
        "KSeF needs the VAT of a {0} invoice also in PLN at the NBP rate, which recur does not know yet"
    )]
    ForeignCurrencyVat(String),
    #[error("FA(3) documents are accepted from 2025-09-01; this one was issued {0}")]
    TooEarly(String),
    #[error("FA(3) template: {0}")]
    Template(String),
}

/// EU member states as FA(3) names them for VAT ids (Greece is EL).
const EU: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "EL", "ES", "FI", "FR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PT", "RO", "SE", "SI", "SK",
];

/// How the buyer is identified (`Podmiot2/DaneIdentyfikacyjne`).
enum BuyerId {
    Nip(String),
    Eu { country: String, number: String },
    Other { country: String, number: String },
    None,
}

struct Sum {
    net_field: &'static str,
    tax_field: Option<&'static str>,
    net: String,
    tax: String,
}

struct Row {
    number: usize,
    name: String,
    quantity: Decimal,
    price: Decimal,
    discount: Option<String>,
    net: String,
    code: &'static str,
}

struct Correction {
    reason: String,
    invoice_number: String,
    invoice_date: String,
}

struct Payment {
    due: Option<String>,
    /// 6 bank transfer, 2 card.
    form: &'static str,
    account: Option<String>,
    swift: Option<String>,
}

#[derive(Template)]
#[template(path = "einvoice/fa3.xml")]
struct Fa3<'a> {
    d: &'a Document,
    created: String,
    seller_nip: String,
    seller_name: String,
    seller_address: String,
    buyer_name: String,
    buyer_id: BuyerId,
    buyer_address: String,
    sums: Vec<Sum>,
    total: String,
    reverse_charge: bool,
    exempt: bool,
    correction: Option<Correction>,
    rows: Vec<Row>,
    payment: Option<Payment>,
}

/// `s` cut to FA(3)'s `max` characters (names and addresses 512, reasons 256), with an
/// ellipsis where it was cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max - 1).chain(['…']).collect()
    }
}

fn one_line(a: &crate::domain::en16931::PostalAddress) -> String {
    let city = [a.postal_code.as_deref(), a.city.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let parts: Vec<&str> = [
        a.street.as_deref(),
        a.additional.as_deref(),
        Some(city.as_str()),
    ]
    .into_iter()
    .flatten()
    .filter(|p| !p.trim().is_empty())
    .collect();
    if parts.is_empty() {
        a.country.clone()
    } else {
        clip(&parts.join(", "), 512)
    }
}

fn buyer_id(d: &Document) -> BuyerId {
    let Some(vat) = d.buyer.vat_id.as_deref() else {
        return BuyerId::None;
    };
    let (prefix, number) = vat.split_at(2.min(vat.len()));
    match prefix {
        "PL" => BuyerId::Nip(number.to_owned()),
        p if EU.contains(&p) => BuyerId::Eu {
            country: p.to_owned(),
            number: number.to_owned(),
        },
        _ => BuyerId::Other {
            country: d.buyer.address.country.clone(),
            number: vat.to_owned(),
        },
    }
}

/// The FA(3) fields of a VAT group: (net field, tax field, P_12 code).
fn fields(
    category: Category,
    percent: Decimal,
    buyer: &BuyerId,
) -> Result<(&'static str, Option<&'static str>, &'static str), KsefError> {
    Ok(match category {
        Category::Standard => match percent.normalize().to_string().as_str() {
            "23" => ("P_13_1", Some("P_14_1"), "23"),
            "8" => ("P_13_2", Some("P_14_2"), "8"),
            "5" => ("P_13_3", Some("P_14_3"), "5"),
            _ => return Err(KsefError::Rate(percent)),
        },
        Category::Zero => ("P_13_6_1", None, "0 KR"),
        Category::Exempt => ("P_13_7", None, "zw"),
        Category::ReverseCharge => match buyer {
            BuyerId::Nip(_) => ("P_13_10", None, "oo"),
            BuyerId::Eu { .. } => ("P_13_9", None, "np II"),
            BuyerId::Other { .. } | BuyerId::None => ("P_13_8", None, "np I"),
        },
    })
}

/// The FA(3) view of `d`: a correction's amounts and quantities are negative.
fn view(d: &Document) -> Result<Fa3<'_>, KsefError> {
    if d.seller.address.country != "PL" {
        return Err(KsefError::NotPolish(d.seller.address.country.clone()));
    }
    let vat = d.seller.vat_id.clone().unwrap_or_default();
    let nip = vat.strip_prefix("PL").unwrap_or_default();
    if nip.len() != 10 || !nip.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KsefError::Nip(vat));
    }
    let earliest = Utc
        .with_ymd_and_hms(2025, 9, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    if d.issued_at < earliest {
        return Err(KsefError::TooEarly(d.issue_date.to_string()));
    }
    if d.currency.code() != "PLN" && d.totals.tax != 0 {
        return Err(KsefError::ForeignCurrencyVat(d.currency.code().to_owned()));
    }
    let sign: i64 = match d.kind {
        Kind::Invoice => 1,
        Kind::CreditNote => -1,
    };
    let money = |v: i64| d.amount(v * sign);
    let buyer = buyer_id(d);
    let mut sums: Vec<(Sum, &'static str)> = Vec::new();
    for g in &d.groups {
        let (net_field, tax_field, _) = fields(g.category, g.percent, &buyer)?;
        sums.push((
            Sum {
                net_field,
                tax_field,
                net: money(g.taxable),
                tax: money(g.tax),
            },
            net_field,
        ));
    }
    // The XSD orders the sums by field: P_13_1 … P_13_11.
    let order = [
        "P_13_1", "P_13_2", "P_13_3", "P_13_6_1", "P_13_7", "P_13_8", "P_13_9", "P_13_10",
    ];
    sums.sort_by_key(|(_, f)| order.iter().position(|o| o == f));
    let rows = d
        .lines
        .iter()
        .map(|l| {
            let (_, _, code) = fields(l.category, l.percent, &buyer)?;
            let unit = Decimal::from(10_i64.pow(d.currency.exponent()));
            let net = Decimal::from(l.net) / unit;
            let quantity = l.quantity * Decimal::from(sign);
            // P_9A, the unit net price before discount, to FA(3)'s 8 decimals.
            let price = if l.quantity.is_zero() {
                Decimal::ZERO
            } else {
                (net / l.quantity).abs().round_dp(8).normalize()
            };
            Ok(Row {
                number: l.id,
                name: clip(&l.name, 512),
                quantity,
                price,
                discount: (l.discount != 0).then(|| money(l.discount)),
                net: money(l.net - l.discount),
                code,
            })
        })
        .collect::<Result<Vec<_>, KsefError>>()?;
    let correction = match d.kind {
        Kind::Invoice => None,
        Kind::CreditNote => d.preceding.as_ref().map(|p| Correction {
            reason: clip(d.note.as_deref().unwrap_or("Correction"), 256),
            invoice_number: p.number.clone(),
            invoice_date: p.issue_date.to_string(),
        }),
    };
    let payment = d.payment.as_ref().map(|p| Payment {
        due: d.due_date.map(|x| x.to_string()),
        form: if p.code == "48" { "2" } else { "6" },
        account: p.iban.clone().or_else(|| p.account.clone()),
        swift: p.bic.clone(),
    });
    Ok(Fa3 {
        created: d.issued_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        seller_nip: nip.to_owned(),
        seller_name: clip(&d.seller.name, 512),
        buyer_name: clip(&d.buyer.name, 512),
        seller_address: one_line(&d.seller.address),
        buyer_address: one_line(&d.buyer.address),
        buyer_id: buyer,
        sums: sums.into_iter().map(|(s, _)| s).collect(),
        total: money(d.totals.tax_inclusive),
        reverse_charge: d
            .groups
            .iter()
            .any(|g| g.category == Category::ReverseCharge),
        exempt: d.groups.iter().any(|g| g.category == Category::Exempt),
        correction,
        rows,
        payment,
        d,
    })
}

/// The document as FA(3) XML.
pub fn write(d: &Document) -> Result<String, KsefError> {
    view(d)?
        .render()
        .map_err(|e| KsefError::Template(e.to_string()))
}
