//! The EN 16931 semantic model of a finalized invoice or credit note: what the Peppol UBL and
//! the Factur-X (CII) writers in `crate::einvoice` put into XML, decided here once.
//!
//! The arithmetic is exact in minor units and follows the standard's own rules, so the
//! documents pass BR-CO-10…16 without the ±1 slack the CEN schematron grants:
//!
//! * a line's net (BT-131) is the invoice line's net amount before discount;
//! * the discount becomes one document-level allowance (BG-20, reason code 95) per VAT
//!   category and rate, the sum of the discount the billing engine gave that group's lines;
//! * per category and rate (BG-23): taxable = Σ line nets − Σ allowances, and the tax is what
//!   the invoice charged for it: for exclusive rates that is `round(taxable × rate)` exactly
//!   (BR-CO-17); for a tax-inclusive price the tax was carved out of the gross and may differ
//!   from that product by one minor unit (inside the rule's tolerance), because the document
//!   must state what the customer was billed, not a recomputation;
//! * totals: BT-106 = Σ BT-131, BT-109 = 106 − 107, BT-112 = 109 + 110, BT-115 = 112 − 113,
//!   each checked against the stored invoice: a model that disagrees with the invoice is an
//!   error, never a document.
//!
//! Credit notes carry one line per VAT category and rate (the credited amount of that group),
//! because a note's stored figures are per rate; their sum is the note's amount exactly.
//!
//! What cannot be expressed exactly is refused with a reason the API shows: a currency with 3
//! decimals (BR-DEC), a line with two tax rates (EN 16931 allows one VAT rate per line), a
//! seller without a VAT id or address country, a reverse charge without the buyer's VAT id.

use super::contact::{Address, TaxId};
use super::credit_note::CreditNote;
use super::currency::Currency;
use super::customer::{Customer, TaxExempt};
use super::invoice::{Invoice, InvoiceLine};
use super::seller::InvoiceSettings;
use super::subscription::CollectionMethod;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error(
        "{0} has 3 decimals; EN 16931 allows at most 2 on every amount (BR-DEC), so this document cannot be expressed exactly"
    )]
    ThreeDecimals(String),
    #[error("a draft invoice has no e-invoice; it is produced once the invoice is finalized")]
    NotFinalized,
    #[error("the invoice has no lines; EN 16931 requires at least one (BG-25)")]
    NoLines,
    #[error(
        "line {line} carries {rates} tax rates; EN 16931 allows one VAT rate per line (BT-151, BT-152)"
    )]
    SeveralRates { line: usize, rates: usize },
    #[error("the seller has no {0}: set it in PUT /v1/settings/invoice")]
    Seller(&'static str),
    #[error("the customer has no {0}: set it on the customer")]
    Buyer(&'static str),
    #[error("the document's figures do not add up ({0}); it was not produced")]
    Inconsistent(&'static str),
}

/// BT-3: what the document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 380, commercial invoice.
    Invoice,
    /// 381, credit note.
    CreditNote,
}

impl Kind {
    pub fn type_code(self) -> &'static str {
        match self {
            Kind::Invoice => "380",
            Kind::CreditNote => "381",
        }
    }
}

/// BT-118 / BT-151: the VAT categories recur produces. `O` (not subject to VAT) is not
/// among them: it forbids the seller's VAT id, which every other category needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    /// Standard rate, above 0 %.
    Standard,
    /// Zero rated: a line without a tax rate on a taxable invoice.
    Zero,
    /// Exempt (the customer's `tax_exempt: exempt`).
    Exempt,
    /// Reverse charge (the customer's `tax_exempt: reverse`).
    ReverseCharge,
}

impl Category {
    pub fn code(self) -> &'static str {
        match self {
            Category::Standard => "S",
            Category::Zero => "Z",
            Category::Exempt => "E",
            Category::ReverseCharge => "AE",
        }
    }

    /// BT-121 and BT-120: the exemption reason code and text E and AE require (BR-E-10,
    /// BR-AE-10); S and Z must not carry one.
    pub fn exemption(self) -> Option<(Option<&'static str>, &'static str)> {
        match self {
            Category::Standard | Category::Zero => None,
            Category::Exempt => Some((None, "Exempt from VAT")),
            Category::ReverseCharge => Some((Some("VATEX-EU-AE"), "Reverse charge")),
        }
    }
}

/// BT-34 / BT-49: an electronic address with its EAS scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: &'static str,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostalAddress {
    pub street: Option<String>,
    pub additional: Option<String>,
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub subdivision: Option<String>,
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub name: String,
    /// BT-31 / BT-48, with its ISO country prefix (EL for Greece).
    pub vat_id: Option<String>,
    /// BT-32: a tax registration id that is not a VAT id (seller only).
    pub tax_registration: Option<String>,
    pub endpoint: Endpoint,
    pub address: PostalAddress,
}

/// BG-16: how the invoice is paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMeans {
    /// UNCL 4461: 58 SEPA credit transfer, 30 credit transfer, 48 bank card.
    pub code: &'static str,
    /// BT-83: the remittance reference (the invoice number).
    pub payment_id: String,
    /// BT-84 as an IBAN.
    pub iban: Option<String>,
    /// BT-84 as a national account number, when there is no IBAN.
    pub account: Option<String>,
    pub account_name: Option<String>,
    /// BT-86: BIC.
    pub bic: Option<String>,
}

/// One VAT category and rate of the document (BG-23), with its discount (BG-20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VatGroup {
    pub category: Category,
    /// BT-119, normalised (`23`, `7.5`, `0`).
    pub percent: Decimal,
    /// BT-116 in minor units.
    pub taxable: i64,
    /// BT-117 in minor units.
    pub tax: i64,
    /// BT-92 of this group's allowance; 0 means none.
    pub allowance: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// BT-126, from 1.
    pub id: usize,
    /// BT-153.
    pub name: String,
    /// BT-129, negative for a credit line (the price stays positive, BR-27).
    pub quantity: Decimal,
    /// BT-146 in major units, never negative.
    pub price: Decimal,
    /// BT-149: the quantity the price is for, when the price per single unit would not be
    /// exact.
    pub base_quantity: Option<Decimal>,
    /// BT-131 in minor units.
    pub net: i64,
    /// The line's share of the document-level allowance (for formats without one, such as
    /// KSeF FA(3), which spread it over the lines); 0 on credit notes.
    pub discount: i64,
    /// BG-26.
    pub period: Option<(NaiveDate, NaiveDate)>,
    pub category: Category,
    pub percent: Decimal,
}

/// BG-22, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// BT-106.
    pub lines: i64,
    /// BT-107.
    pub allowances: i64,
    /// BT-109.
    pub tax_exclusive: i64,
    /// BT-110.
    pub tax: i64,
    /// BT-112.
    pub tax_inclusive: i64,
    /// BT-113: customer credit the invoice used.
    pub prepaid: i64,
    /// BT-115.
    pub payable: i64,
}

/// BG-3: the invoice a credit note corrects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preceding {
    pub number: String,
    pub issue_date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub kind: Kind,
    pub number: String,
    pub issue_date: NaiveDate,
    /// When the document was issued (finalization, or the credit note's creation).
    pub issued_at: DateTime<Utc>,
    pub due_date: Option<NaiveDate>,
    pub currency: Currency,
    /// BT-10 (Peppol R003): the customer's external id, else its recur id.
    pub buyer_reference: String,
    pub preceding: Option<Preceding>,
    /// BT-22, at most one (Peppol R002).
    pub note: Option<String>,
    /// BG-14: spans every line's period.
    pub period: Option<(NaiveDate, NaiveDate)>,
    pub seller: Party,
    pub buyer: Party,
    pub payment: Option<PaymentMeans>,
    /// BT-20.
    pub terms: Option<String>,
    pub lines: Vec<Line>,
    pub groups: Vec<VatGroup>,
    pub totals: Totals,
}

impl Document {
    /// An amount in minor units as the XML writes it: `1234.50`, `-0.05`, `1200` (JPY).
    pub fn amount(&self, minor: i64) -> String {
        Decimal::new(minor, self.currency.exponent()).to_string()
    }
}

/// The seller as documents show it: the tenant's settings and its name as a fallback.
pub struct SellerInput<'a> {
    pub settings: &'a InvoiceSettings,
    pub fallback_name: &'a str,
}

/// EAS codes of national VAT numbers (CEF EAS code list), by the VAT id's country prefix.
/// Parties from elsewhere are addressed by e-mail (`EM`).
const VAT_SCHEMES: &[(&str, &str)] = &[
    ("AT", "9914"),
    ("BE", "9925"),
    ("BG", "9926"),
    ("CH", "9927"),
    ("CY", "9928"),
    ("CZ", "9929"),
    ("DE", "9930"),
    ("EE", "9931"),
    ("EL", "9933"),
    ("ES", "9920"),
    ("FR", "9957"),
    ("GB", "9932"),
    ("HR", "9934"),
    ("HU", "9910"),
    ("IE", "9935"),
    ("LI", "9936"),
    ("LT", "9937"),
    ("LU", "9938"),
    ("LV", "9939"),
    ("MT", "9943"),
    ("NL", "9944"),
    ("PL", "9945"),
    ("PT", "9946"),
    ("RO", "9947"),
    ("SI", "9949"),
    ("SK", "9950"),
];

/// A VAT id with its ISO country prefix (BR-CO-09): spaces and dots removed, upper case,
/// the party's country put in front when the id has no letters ahead (EL for Greece).
fn vat_with_prefix(value: &str, country: &str) -> String {
    let compact: String = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let prefixed = compact.len() > 2 && compact.as_bytes()[..2].iter().all(u8::is_ascii_uppercase);
    if prefixed {
        compact
    } else {
        let prefix = if country == "GR" { "EL" } else { country };
        format!("{prefix}{compact}")
    }
}

fn vat_id(ids: &[TaxId], country: &str) -> Option<String> {
    ids.iter()
        .find(|t| t.kind.ends_with("_vat"))
        .map(|t| vat_with_prefix(&t.value, country))
}

fn endpoint(vat: Option<&str>, email: Option<&str>) -> Option<Endpoint> {
    let by_vat = vat.and_then(|v| {
        VAT_SCHEMES
            .iter()
            .find(|(prefix, _)| v.starts_with(prefix))
            .map(|(_, scheme)| Endpoint {
                scheme,
                id: v.to_owned(),
            })
    });
    by_vat.or_else(|| {
        email.map(|e| Endpoint {
            scheme: "EM",
            id: e.to_owned(),
        })
    })
}

fn postal(a: Option<&Address>) -> Option<PostalAddress> {
    let a = a?;
    let nonblank = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
    Some(PostalAddress {
        street: nonblank(&a.line1),
        additional: nonblank(&a.line2),
        city: nonblank(&a.city),
        postal_code: nonblank(&a.postal_code),
        subdivision: nonblank(&a.state),
        country: a.country?.as_str().to_owned(),
    })
}

fn seller_party(s: &SellerInput<'_>) -> Result<Party, ModelError> {
    let address =
        postal(s.settings.address.as_ref()).ok_or(ModelError::Seller("address country (BT-40)"))?;
    let vat = vat_id(&s.settings.tax_ids, &address.country).ok_or(ModelError::Seller(
        "VAT id (BT-31), a tax id of a type ending in _vat",
    ))?;
    let email = s.settings.email.as_ref().map(|e| e.as_str());
    Ok(Party {
        name: s
            .settings
            .legal_name
            .clone()
            .unwrap_or_else(|| s.fallback_name.to_owned()),
        endpoint: endpoint(Some(&vat), email)
            .ok_or(ModelError::Seller("electronic address (BT-34)"))?,
        tax_registration: s
            .settings
            .tax_ids
            .iter()
            .find(|t| !t.kind.ends_with("_vat"))
            .map(|t| t.value.clone()),
        vat_id: Some(vat),
        address,
    })
}

fn buyer_party(c: &Customer) -> Result<Party, ModelError> {
    let address = postal(c.address.as_ref()).ok_or(ModelError::Buyer("address country (BT-55)"))?;
    let vat = vat_id(&c.tax_ids, &address.country);
    let endpoint = endpoint(vat.as_deref(), c.email.as_ref().map(|e| e.as_str())).ok_or(
        ModelError::Buyer("electronic address (BT-49): a VAT id or an e-mail address"),
    )?;
    Ok(Party {
        name: c.name.clone(),
        vat_id: vat,
        tax_registration: None,
        endpoint,
        address,
    })
}

fn date(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

/// A period as dates: recur's periods end at an exclusive instant, EN 16931's on an
/// inclusive day.
fn period(start: DateTime<Utc>, end: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    let last = if end > start {
        end - Duration::seconds(1)
    } else {
        start
    };
    (date(start), date(last))
}

/// Quantity, price and base quantity for a line net: the price per unit when it is exact,
/// else the whole net for `|quantity|` units (BT-149), so BT-131 = BT-129 × BT-146 / BT-149
/// holds exactly (Peppol R120).
fn pricing(net: i64, quantity: u64, exponent: u32) -> (Decimal, Decimal, Option<Decimal>) {
    let sign = if net < 0 { -Decimal::ONE } else { Decimal::ONE };
    let units = match (quantity, net) {
        (0, 0) => return (Decimal::ZERO, Decimal::ZERO, None),
        // A charge without a quantity (a flat fee at quantity 0): one unit of it.
        (0, _) => Decimal::ONE,
        (q, _) => Decimal::from(q),
    };
    let magnitude = Decimal::from(net.unsigned_abs()) / Decimal::from(10_u64.pow(exponent));
    let per_unit = magnitude.checked_div(units).map(|p| p.normalize());
    match per_unit {
        Some(p) if p * units == magnitude && p.scale() <= 8 => (units * sign, p, None),
        _ => (units * sign, magnitude.normalize(), Some(units)),
    }
}

fn exponent_of(currency: &Currency) -> Result<u32, ModelError> {
    match currency.exponent() {
        e @ 0..=2 => Ok(e),
        _ => Err(ModelError::ThreeDecimals(currency.code().to_owned())),
    }
}

/// The category and rate of one invoice line.
fn line_tax(
    inv: &Invoice,
    idx: usize,
    line: &InvoiceLine,
) -> Result<(Category, Decimal), ModelError> {
    match inv.tax_exempt {
        TaxExempt::Exempt => return Ok((Category::Exempt, Decimal::ZERO)),
        TaxExempt::Reverse => return Ok((Category::ReverseCharge, Decimal::ZERO)),
        TaxExempt::None => {}
    }
    match line.tax_rates.as_slice() {
        [] => Ok((Category::Zero, Decimal::ZERO)),
        [rate] => {
            let pct = inv
                .total_tax_amounts
                .iter()
                .find(|t| &t.tax_rate == rate)
                .map(|t| t.percentage.normalize())
                .ok_or(ModelError::Inconsistent(
                    "a line's tax rate has no tax amount",
                ))?;
            let category = if pct.is_zero() {
                Category::Zero
            } else {
                Category::Standard
            };
            Ok((category, pct))
        }
        rates => Err(ModelError::SeveralRates {
            line: idx + 1,
            rates: rates.len(),
        }),
    }
}

fn payment_means(inv: &Invoice, number: &str, s: &SellerInput<'_>) -> Option<PaymentMeans> {
    match inv.collection_method {
        CollectionMethod::ChargeAutomatically => Some(PaymentMeans {
            code: "48",
            payment_id: number.to_owned(),
            iban: None,
            account: None,
            account_name: None,
            bic: None,
        }),
        CollectionMethod::SendInvoice => {
            let bank = s.settings.bank.as_ref().filter(|b| !b.is_empty())?;
            let iban = bank.iban.as_ref().map(|i| String::from(i.clone()));
            let sepa = iban.is_some() && inv.currency.code() == "EUR";
            Some(PaymentMeans {
                code: if sepa { "58" } else { "30" },
                payment_id: number.to_owned(),
                account: bank.account_number.clone().filter(|_| iban.is_none()),
                iban,
                account_name: s.settings.legal_name.clone(),
                bic: bank.bic.clone(),
            })
        }
    }
}

fn check(ok: bool, what: &'static str) -> Result<(), ModelError> {
    if ok {
        Ok(())
    } else {
        Err(ModelError::Inconsistent(what))
    }
}

fn spanning(
    periods: impl Iterator<Item = (NaiveDate, NaiveDate)>,
) -> Option<(NaiveDate, NaiveDate)> {
    periods.reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
}

/// The EN 16931 model of a finalized invoice.
pub fn invoice(
    inv: &Invoice,
    customer: &Customer,
    seller: &SellerInput<'_>,
) -> Result<Document, ModelError> {
    let exponent = exponent_of(&inv.currency)?;
    let (Some(number), Some(finalized)) = (inv.number.clone(), inv.finalized_at) else {
        return Err(ModelError::NotFinalized);
    };
    if inv.lines.is_empty() {
        return Err(ModelError::NoLines);
    }
    let seller_party = seller_party(seller)?;
    let buyer = buyer_party(customer)?;
    if inv.tax_exempt == TaxExempt::Reverse && buyer.vat_id.is_none() {
        return Err(ModelError::Buyer(
            "VAT id (BT-48), which a reverse-charge invoice must show (BR-AE-02)",
        ));
    }

    let mut lines = Vec::with_capacity(inv.lines.len());
    let mut groups = Groups::new();
    for (idx, l) in inv.lines.iter().enumerate() {
        let (category, percent) = line_tax(inv, idx, l)?;
        add(
            &mut groups,
            category,
            percent,
            l.net_amount - l.discount_amount,
            0,
        )
        .allowance += l.discount_amount;
        let (quantity, price, base_quantity) = pricing(l.net_amount, l.quantity, exponent);
        lines.push(Line {
            id: idx + 1,
            name: nonempty(&l.description, "Subscription"),
            quantity,
            price,
            base_quantity,
            net: l.net_amount,
            discount: l.discount_amount,
            period: Some(period(l.period_start, l.period_end)),
            category,
            percent,
        });
    }
    if inv.tax_exempt == TaxExempt::None {
        for t in &inv.total_tax_amounts {
            let pct = t.percentage.normalize();
            let category = if pct.is_zero() {
                Category::Zero
            } else {
                Category::Standard
            };
            if let Some(g) = groups.get_mut(&(category, pct)) {
                g.tax += t.amount;
            }
        }
    }
    let groups: Vec<VatGroup> = groups.into_values().collect();

    let line_total: i64 = lines.iter().map(|l| l.net).sum();
    let allowances: i64 = groups.iter().map(|g| g.allowance).sum();
    let tax: i64 = groups.iter().map(|g| g.tax).sum();
    let tax_exclusive = line_total - allowances;
    let tax_inclusive = tax_exclusive + tax;
    check(line_total == inv.subtotal, "Σ line nets ≠ subtotal")?;
    check(allowances == inv.discount, "Σ allowances ≠ discount")?;
    check(tax == inv.tax, "Σ VAT ≠ the invoice's tax")?;
    check(
        tax_inclusive == inv.total,
        "total with VAT ≠ the invoice's total",
    )?;
    // Credit from the customer's balance paid part of the invoice; debt carried in from
    // earlier invoices belongs to those, not to this document.
    let prepaid = (inv.ending_balance - inv.starting_balance).clamp(0, tax_inclusive.max(0));

    let issue_date = date(finalized);
    let invoice_period =
        (inv.period_end > inv.period_start).then(|| period(inv.period_start, inv.period_end));
    Ok(Document {
        kind: Kind::Invoice,
        issue_date,
        issued_at: finalized,
        due_date: Some(inv.due_date.map(date).unwrap_or(issue_date).max(issue_date)),
        currency: inv.currency,
        buyer_reference: customer_reference(customer),
        preceding: None,
        note: None,
        period: spanning(
            invoice_period
                .into_iter()
                .chain(lines.iter().filter_map(|l| l.period)),
        ),
        payment: payment_means(inv, &number, seller),
        terms: seller.settings.payment_terms.clone(),
        seller: seller_party,
        buyer,
        lines,
        groups,
        totals: Totals {
            lines: line_total,
            allowances,
            tax_exclusive,
            tax,
            tax_inclusive,
            prepaid,
            payable: tax_inclusive - prepaid,
        },
        number,
    })
}

type Groups = BTreeMap<(Category, Decimal), VatGroup>;

/// Adds to the group of `category` and `percent`, creating it.
fn add(
    groups: &mut Groups,
    category: Category,
    percent: Decimal,
    taxable: i64,
    tax: i64,
) -> &mut VatGroup {
    let g = groups.entry((category, percent)).or_insert(VatGroup {
        category,
        percent,
        taxable: 0,
        tax: 0,
        allowance: 0,
    });
    g.taxable += taxable;
    g.tax += tax;
    g
}

fn nonempty(s: &str, fallback: &str) -> String {
    if s.trim().is_empty() {
        fallback.to_owned()
    } else {
        s.to_owned()
    }
}

fn customer_reference(c: &Customer) -> String {
    c.external_id
        .clone()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| c.id.to_string())
}

/// The EN 16931 model of a credit note on `inv`: one line per VAT category and rate.
pub fn credit_note(
    note: &CreditNote,
    inv: &Invoice,
    customer: &Customer,
    seller: &SellerInput<'_>,
) -> Result<Document, ModelError> {
    exponent_of(&note.currency)?;
    let (Some(inv_number), Some(finalized)) = (inv.number.clone(), inv.finalized_at) else {
        return Err(ModelError::NotFinalized);
    };
    let seller_party = seller_party(seller)?;
    let buyer = buyer_party(customer)?;
    if inv.tax_exempt == TaxExempt::Reverse && buyer.vat_id.is_none() {
        return Err(ModelError::Buyer(
            "VAT id (BT-48), which a reverse-charge credit note must show (BR-AE-02)",
        ));
    }
    let mut groups = Groups::new();
    match inv.tax_exempt {
        TaxExempt::Exempt => {
            add(&mut groups, Category::Exempt, Decimal::ZERO, note.amount, 0);
        }
        TaxExempt::Reverse => {
            add(
                &mut groups,
                Category::ReverseCharge,
                Decimal::ZERO,
                note.amount,
                0,
            );
        }
        TaxExempt::None => {
            for t in &note.tax_amounts {
                let pct = t.percentage.normalize();
                let category = if pct.is_zero() {
                    Category::Zero
                } else {
                    Category::Standard
                };
                add(&mut groups, category, pct, t.taxable_amount, t.amount);
            }
        }
    }
    // What the per-rate figures leave of the note's amount: the untaxed lines' share (zero
    // rated, negative when they were credits), else the cent proportional splitting rounded
    // away, which goes to the largest group.
    let rest = note.amount - groups.values().map(|g| g.taxable + g.tax).sum::<i64>();
    let untaxed_lines = inv.lines.iter().any(|l| l.tax_rates.is_empty());
    let largest = groups
        .iter()
        .max_by_key(|(_, g)| g.taxable)
        .map(|(k, _)| *k);
    match largest {
        _ if rest == 0 => {}
        Some(key) if !untaxed_lines => {
            if let Some(g) = groups.get_mut(&key) {
                g.taxable += rest;
            }
        }
        _ => {
            add(&mut groups, Category::Zero, Decimal::ZERO, rest, 0);
        }
    }
    let groups: Vec<VatGroup> = groups.into_values().collect();
    let described = credited_descriptions(note, inv);
    let invoice_period =
        (inv.period_end > inv.period_start).then(|| period(inv.period_start, inv.period_end));
    let lines: Vec<Line> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let (quantity, price, base_quantity) = pricing(g.taxable, 1, note.currency.exponent());
            Line {
                id: i + 1,
                name: format!("{described} ({} {}%)", g.category.code(), g.percent),
                quantity,
                price,
                base_quantity,
                net: g.taxable,
                discount: 0,
                period: invoice_period,
                category: g.category,
                percent: g.percent,
            }
        })
        .collect();
    let line_total: i64 = lines.iter().map(|l| l.net).sum();
    let tax: i64 = groups.iter().map(|g| g.tax).sum();
    check(
        line_total + tax == note.amount,
        "lines and VAT ≠ the note's amount",
    )?;
    let memo = note.memo.as_deref().filter(|m| !m.trim().is_empty());
    Ok(Document {
        kind: Kind::CreditNote,
        number: note.number.clone(),
        issue_date: date(note.created),
        issued_at: note.created,
        due_date: None,
        currency: note.currency,
        buyer_reference: customer_reference(customer),
        preceding: Some(Preceding {
            number: inv_number,
            issue_date: date(finalized),
        }),
        note: Some(match memo {
            Some(m) => format!("Reason: {}. {m}", note.reason.as_str()),
            None => format!("Reason: {}", note.reason.as_str()),
        }),
        period: invoice_period,
        seller: seller_party,
        buyer,
        payment: None,
        terms: None,
        lines,
        groups,
        totals: Totals {
            lines: line_total,
            allowances: 0,
            tax_exclusive: line_total,
            tax,
            tax_inclusive: note.amount,
            prepaid: 0,
            payable: note.amount,
        },
    })
}

/// "Credit on invoice …" with the credited lines' descriptions when the note names lines.
fn credited_descriptions(note: &CreditNote, inv: &Invoice) -> String {
    let names: Vec<&str> = note
        .lines
        .iter()
        .filter_map(|cl| inv.lines.iter().find(|l| l.id == cl.invoice_line))
        .map(|l| l.description.as_str())
        .filter(|d| !d.trim().is_empty())
        .collect();
    let number = inv.number.as_deref().unwrap_or_default();
    if names.is_empty() {
        format!("Credit on invoice {number}")
    } else {
        format!("Credit on invoice {number}: {}", names.join("; "))
    }
}
