//! Documents customers receive: invoice and credit note PDFs in the customer's language.
//!
//! The route is: billing data → a view of ready-to-print strings ([`InvoicePage`],
//! [`CreditNotePage`]) → an askama template in `templates/` → the page description of
//! [`layout`] → PDF drawing in [`pdf`]. Layout, labels and wording live in the templates and
//! locale files; this module only decides what is shown.

pub mod email;
pub mod layout;
pub mod locale;
pub mod pdf;
pub mod sample;

use crate::domain::contact::{Address, TaxId};
use crate::domain::credit_note::{CreditNote, Reason};
use crate::domain::customer::{Customer, TaxExempt};
use crate::domain::invoice::{Invoice, InvoiceStatus, LineKind};
use crate::domain::seller::InvoiceSettings;
use crate::domain::subscription::CollectionMethod;
use askama::Template;
use chrono::{DateTime, Utc};
use locale::{Labels, Lang};

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("template: {0}")]
    Template(#[from] askama::Error),
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error(transparent)]
    Pdf(#[from] pdf::PdfError),
}

/// Who issues the document: the tenant's settings, with its name when no legal name is set.
pub struct Seller<'a> {
    pub settings: &'a InvoiceSettings,
    pub fallback_name: &'a str,
}

impl Seller<'_> {
    /// The legal name, or the tenant's name without one.
    pub fn name(&self) -> String {
        self.settings
            .legal_name
            .clone()
            .unwrap_or_else(|| self.fallback_name.to_owned())
    }

    fn vat_id(&self) -> Option<&str> {
        vat_id(&self.settings.tax_ids)
    }

    fn accent(&self) -> String {
        self.settings
            .accent_color
            .as_deref()
            .and_then(|c| c.strip_prefix('#'))
            .unwrap_or("1f4e79")
            .to_owned()
    }
}

fn vat_id(ids: &[TaxId]) -> Option<&str> {
    ids.iter()
        .find(|t| t.kind.ends_with("_vat"))
        .map(|t| t.value.as_str())
}

fn address_lines(a: Option<&Address>, out: &mut Vec<String>) {
    let Some(a) = a else { return };
    out.extend(a.line1.iter().chain(&a.line2).cloned());
    let city = [a.postal_code.as_deref(), a.city.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    if !city.is_empty() {
        out.push(city);
    }
    out.extend(a.state.iter().cloned());
    out.extend(a.country.map(|c| c.as_str().to_owned()));
}

fn tax_id_lines(l: &Labels, ids: &[TaxId], out: &mut Vec<String>) {
    for t in ids {
        let label = if t.kind.ends_with("_vat") {
            &l.vat_id
        } else {
            &l.tax_id
        };
        out.push(format!("{label}: {}", t.value));
    }
}

fn seller_block(l: &Labels, s: &Seller<'_>) -> String {
    let mut lines = Vec::new();
    address_lines(s.settings.address.as_ref(), &mut lines);
    tax_id_lines(l, &s.settings.tax_ids, &mut lines);
    lines.extend(s.settings.email.iter().map(|e| e.as_str().to_owned()));
    lines.extend(s.settings.phone.iter().cloned());
    lines.join("\n")
}

fn buyer_block(l: &Labels, c: &Customer) -> String {
    let mut lines = Vec::new();
    address_lines(c.address.as_ref(), &mut lines);
    tax_id_lines(l, &c.tax_ids, &mut lines);
    lines.extend(c.email.iter().map(|e| e.as_str().to_owned()));
    lines.join("\n")
}

fn footer(s: &Seller<'_>) -> String {
    match &s.settings.footer {
        Some(f) => f.clone(),
        None => [
            Some(s.name()),
            s.settings.email.as_ref().map(|e| e.as_str().to_owned()),
            s.settings.phone.clone(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · "),
    }
}

/// The document's language: the customer's, else the tenant's, else English.
pub fn lang_for(customer: &Customer, seller: &InvoiceSettings) -> &'static Lang {
    let tag = |l: Option<&crate::domain::contact::Locale>| {
        l.map(|l| String::from(l.clone())).unwrap_or_default()
    };
    let (c, t) = (tag(customer.locale.as_ref()), tag(seller.locale.as_ref()));
    locale::lang([Some(c.as_str()), Some(t.as_str())])
}

pub struct Row {
    pub description: String,
    pub period: String,
    pub quantity: String,
    pub unit_price: String,
    pub amount: String,
    pub proration: bool,
    pub usage: bool,
}

pub struct TaxRow {
    pub name: String,
    pub taxable: String,
    pub rate: String,
    pub amount: String,
}

#[derive(Template)]
#[template(path = "invoice.layout")]
pub struct InvoicePage<'a> {
    pub l: &'a Labels,
    pub accent: String,
    pub has_logo: bool,
    pub draft: bool,
    pub title: String,
    pub number: String,
    pub issue_date: String,
    pub due_date: Option<String>,
    pub period: Option<String>,
    pub status: String,
    pub status_color: &'static str,
    pub seller_name: String,
    pub seller_block: String,
    pub buyer_name: String,
    pub buyer_block: String,
    pub rows: Vec<Row>,
    pub subtotal: String,
    pub discount: Option<String>,
    pub taxes: Vec<TaxRow>,
    pub total: String,
    pub paid: Option<String>,
    pub credited: Option<String>,
    pub balance_applied: Option<String>,
    pub amount_due: String,
    pub notices: Vec<String>,
    pub payment: Option<String>,
    pub terms: Option<String>,
    pub footer: String,
}

fn status_label(l: &Labels, s: InvoiceStatus) -> (String, &'static str) {
    match s {
        InvoiceStatus::Draft => (l.status_draft.clone(), "6b7280"),
        InvoiceStatus::Open => (l.status_open.clone(), "b45309"),
        InvoiceStatus::Paid => (l.status_paid.clone(), "15803d"),
        InvoiceStatus::Void => (l.status_void.clone(), "6b7280"),
        InvoiceStatus::Uncollectible => (l.status_uncollectible.clone(), "b91c1c"),
    }
}

fn tax_rows(
    lang: &Lang,
    taxes: &[crate::domain::invoice::TaxAmount],
    inv_currency: &crate::domain::currency::Currency,
) -> Vec<TaxRow> {
    taxes
        .iter()
        .map(|t| TaxRow {
            name: t.display_name.clone(),
            taxable: lang.money(t.taxable_amount, inv_currency),
            rate: lang.percent(t.percentage),
            amount: lang.money(t.amount, inv_currency),
        })
        .collect()
}

/// The legal notices: reverse charge with both VAT ids, or the exemption.
fn notices(l: &Labels, exempt: TaxExempt, seller: &Seller<'_>, buyer: &Customer) -> Vec<String> {
    match exempt {
        TaxExempt::None => Vec::new(),
        TaxExempt::Exempt => vec![l.exempt.clone()],
        TaxExempt::Reverse => vec![format!(
            "{}\n{} ({}): {} · {} ({}): {}",
            l.reverse_charge,
            l.vat_id,
            l.seller,
            seller.vat_id().unwrap_or("—"),
            l.vat_id,
            l.buyer,
            vat_id(&buyer.tax_ids).unwrap_or("—"),
        )],
    }
}

/// Bank transfer details for invoices the customer pays themselves; the reference is the
/// invoice number.
fn payment_text(lang: &Lang, inv: &Invoice, seller: &Seller<'_>) -> Option<String> {
    let l = &lang.labels;
    let bank = seller.settings.bank.as_ref().filter(|b| !b.is_empty())?;
    if inv.collection_method != CollectionMethod::SendInvoice
        || !matches!(inv.status, InvoiceStatus::Open | InvoiceStatus::Draft)
    {
        return None;
    }
    let mut lines = vec![
        l.pay_by_transfer.clone(),
        format!("{}: {}", l.account_holder, seller.name()),
    ];
    if let Some(iban) = &bank.iban {
        lines.push(format!("{}: {}", l.iban, iban.display()));
    }
    if let Some(bic) = &bank.bic {
        lines.push(format!("{}: {bic}", l.bic));
    }
    if let Some(acct) = &bank.account_number {
        lines.push(format!("{}: {acct}", l.account_number));
    }
    lines.push(format!(
        "{}: {}",
        l.reference,
        inv.number.as_deref().unwrap_or("—")
    ));
    lines.push(format!(
        "{}: {}",
        l.amount_due,
        lang.money(inv.amount_due, &inv.currency)
    ));
    Some(lines.join("\n"))
}

/// The invoice's page view. `draft` marks a preview (the upcoming invoice).
pub fn invoice_page<'a>(
    lang: &'a Lang,
    inv: &Invoice,
    customer: &Customer,
    seller: &Seller<'_>,
    draft: bool,
) -> InvoicePage<'a> {
    let l = &lang.labels;
    let cur = &inv.currency;
    let (status, status_color) = status_label(l, inv.status);
    let nonzero = |v: i64| (v != 0).then(|| lang.money(v, cur));
    InvoicePage {
        l,
        accent: seller.accent(),
        has_logo: seller.settings.logo.is_some(),
        draft,
        title: l.invoice.clone(),
        number: inv.number.clone().unwrap_or_else(|| l.draft.clone()),
        issue_date: lang.date(inv.finalized_at.unwrap_or(inv.created)),
        due_date: inv.due_date.map(|d| lang.date(d)),
        period: (inv.period_end > inv.period_start)
            .then(|| lang.period(inv.period_start, inv.period_end)),
        status,
        status_color,
        seller_name: seller.name(),
        seller_block: seller_block(l, seller),
        buyer_name: customer.name.clone(),
        buyer_block: buyer_block(l, customer),
        rows: inv
            .lines
            .iter()
            .map(|line| Row {
                description: line.description.clone(),
                period: lang.period(line.period_start, line.period_end),
                quantity: lang.number(line.quantity.into(), 0),
                unit_price: line
                    .unit_amount_decimal
                    .map(|u| lang.unit_price(u, cur))
                    .unwrap_or_default(),
                amount: lang.money(line.amount, cur),
                proration: line.proration || line.kind == LineKind::Proration,
                usage: line.kind == LineKind::Usage,
            })
            .collect(),
        subtotal: lang.money(inv.subtotal, cur),
        discount: nonzero(-inv.discount),
        taxes: tax_rows(lang, &inv.total_tax_amounts, cur),
        total: lang.money(inv.total, cur),
        paid: nonzero(inv.amount_paid),
        credited: nonzero(-inv.amount_credited),
        balance_applied: nonzero(inv.starting_balance - inv.ending_balance),
        amount_due: lang.money(inv.amount_due, cur),
        notices: notices(l, inv.tax_exempt, seller, customer),
        payment: payment_text(lang, inv, seller),
        terms: seller.settings.payment_terms.clone(),
        footer: footer(seller),
    }
}

#[derive(Template)]
#[template(path = "credit_note.layout")]
pub struct CreditNotePage<'a> {
    pub l: &'a Labels,
    pub accent: String,
    pub has_logo: bool,
    pub number: String,
    pub issue_date: String,
    pub invoice_number: String,
    pub reason: String,
    pub memo: Option<String>,
    pub seller_name: String,
    pub seller_block: String,
    pub buyer_name: String,
    pub buyer_block: String,
    pub rows: Vec<Row>,
    pub taxes: Vec<TaxRow>,
    pub total: String,
    pub refunded: Option<String>,
    pub to_balance: Option<String>,
    pub notices: Vec<String>,
    pub footer: String,
}

fn reason_label(l: &Labels, r: Reason) -> String {
    match r {
        Reason::Duplicate => l.reason_duplicate.clone(),
        Reason::Fraudulent => l.reason_fraudulent.clone(),
        Reason::OrderChange => l.reason_order_change.clone(),
        Reason::ProductUnsatisfactory => l.reason_product_unsatisfactory.clone(),
    }
}

/// The credit note's page view: the lines it credits (or the whole amount, for a note by
/// amount) and its per-rate tax.
pub fn credit_note_page<'a>(
    lang: &'a Lang,
    note: &CreditNote,
    inv: &Invoice,
    customer: &Customer,
    seller: &Seller<'_>,
) -> CreditNotePage<'a> {
    let l = &lang.labels;
    let cur = &note.currency;
    let nonzero = |v: i64| (v != 0).then(|| lang.money(v, cur));
    let rows = if note.lines.is_empty() {
        vec![Row {
            description: format!(
                "{} {}",
                l.corrects_invoice,
                inv.number.as_deref().unwrap_or("")
            ),
            period: lang.period(inv.period_start, inv.period_end),
            quantity: String::new(),
            unit_price: String::new(),
            amount: lang.money(note.amount, cur),
            proration: false,
            usage: false,
        }]
    } else {
        note.lines
            .iter()
            .map(|cl| {
                let line = inv.lines.iter().find(|il| il.id == cl.invoice_line);
                Row {
                    description: line.map(|il| il.description.clone()).unwrap_or_default(),
                    period: line
                        .map(|il| lang.period(il.period_start, il.period_end))
                        .unwrap_or_default(),
                    quantity: String::new(),
                    unit_price: String::new(),
                    amount: lang.money(cl.amount, cur),
                    proration: false,
                    usage: false,
                }
            })
            .collect()
    };
    CreditNotePage {
        l,
        accent: seller.accent(),
        has_logo: seller.settings.logo.is_some(),
        number: note.number.clone(),
        issue_date: lang.date(note.created),
        invoice_number: inv.number.clone().unwrap_or_default(),
        reason: reason_label(l, note.reason),
        memo: note.memo.clone(),
        seller_name: seller.name(),
        seller_block: seller_block(l, seller),
        buyer_name: customer.name.clone(),
        buyer_block: buyer_block(l, customer),
        rows,
        taxes: tax_rows(lang, &note.tax_amounts, cur),
        total: lang.money(note.amount, cur),
        refunded: nonzero(note.refund_amount),
        to_balance: nonzero(note.credit_amount),
        notices: notices(l, inv.tax_exempt, seller, customer),
        footer: footer(seller),
    }
}

fn to_pdf(
    source: &str,
    title: &str,
    issued: DateTime<Utc>,
    seller: &Seller<'_>,
) -> Result<Vec<u8>, DocumentError> {
    let layout = layout::parse(source)?;
    Ok(pdf::render(
        layout,
        &pdf::Meta {
            title,
            issued_at: issued.timestamp(),
            logo: seller.settings.logo.as_ref().map(|l| l.bytes.as_slice()),
        },
    )?)
}

/// The invoice as PDF bytes: the same input gives the same bytes.
pub fn invoice_pdf(
    inv: &Invoice,
    customer: &Customer,
    seller: &Seller<'_>,
    draft: bool,
) -> Result<Vec<u8>, DocumentError> {
    let lang = lang_for(customer, seller.settings);
    let page = invoice_page(lang, inv, customer, seller, draft);
    let title = format!("{} {}", page.title, page.number);
    to_pdf(
        &page.render()?,
        &title,
        inv.finalized_at.unwrap_or(inv.created),
        seller,
    )
}

pub fn credit_note_pdf(
    note: &CreditNote,
    inv: &Invoice,
    customer: &Customer,
    seller: &Seller<'_>,
) -> Result<Vec<u8>, DocumentError> {
    let lang = lang_for(customer, seller.settings);
    let page = credit_note_page(lang, note, inv, customer, seller);
    let title = format!("{} {}", lang.labels.credit_note, note.number);
    to_pdf(&page.render()?, &title, note.created, seller)
}

#[derive(Template)]
#[template(path = "hosted_invoice.html")]
pub struct HostedPage<'a> {
    pub p: InvoicePage<'a>,
    pub lang: &'static str,
    pub title: String,
    pub logo: Option<String>,
    pub pdf_href: String,
}

/// The hosted invoice page (HTML, escaped by askama) in the customer's language.
pub fn hosted_page(
    inv: &Invoice,
    customer: &Customer,
    seller: &Seller<'_>,
    pdf_href: String,
) -> Result<String, DocumentError> {
    let lang = lang_for(customer, seller.settings);
    let p = invoice_page(lang, inv, customer, seller, false);
    let title = lang.labels.hosted_title.replace("{number}", &p.number);
    Ok(HostedPage {
        p,
        lang: lang.code,
        title,
        logo: seller.settings.logo.as_ref().map(|l| l.data_url()),
        pdf_href,
    }
    .render()?)
}

/// Checks a logo the way the renderer will read it.
pub fn check_logo(bytes: &[u8]) -> Result<(), DocumentError> {
    printpdf::RawImage::decode_from_bytes(bytes, &mut Vec::new())
        .map(|_| ())
        .map_err(|e| DocumentError::Pdf(pdf::PdfError::Logo(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    fn render(lines: usize, currency: &str, locale: &str, exempt: TaxExempt) -> Vec<u8> {
        let settings = sample::seller();
        let seller = Seller {
            settings: &settings,
            fallback_name: "Tenant",
        };
        let inv = sample::invoice(lines, currency, exempt);
        let customer = sample::customer(locale, exempt);
        invoice_pdf(&inv, &customer, &seller, false).unwrap()
    }

    #[test]
    fn rendering_is_deterministic() {
        let a = render(5, "EUR", "pl", TaxExempt::None);
        let b = render(5, "EUR", "pl", TaxExempt::None);
        assert!(a.starts_with(b"%PDF-"));
        assert_eq!(a, b);
    }
}
