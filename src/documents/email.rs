//! Customer e-mails as words: subject, plain text and HTML from `templates/email/` in the
//! customer's language. Pure; sending is `services::email`'s business.

use super::locale::Lang;
use super::{DocumentError, Seller};
use crate::domain::credit_note::CreditNote;
use crate::domain::email::{DeclineReason, decline_reason};
use crate::domain::invoice::{Invoice, InvoiceStatus};
use crate::domain::payment::Payment;
use askama::Template;
use chrono::{DateTime, Utc};

#[derive(Template)]
#[template(path = "email/message.txt")]
struct Text<'a> {
    greeting: &'a str,
    paragraphs: &'a [String],
    /// Buttons in HTML, `label: url` lines in text; the first is the main action.
    links: &'a [(&'a str, &'a str)],
    signature: &'a str,
    seller_name: &'a str,
    footer: &'a str,
}

/// The HTML part: the same words as [`Text`], in a page.
#[derive(Template)]
#[template(path = "email/message.html")]
struct Html<'a> {
    lang: &'a str,
    subject: &'a str,
    accent: &'a str,
    m: &'a Text<'a>,
}

/// A message ready for the transport.
#[derive(Debug, Clone)]
pub struct Composed {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What a message is about.
pub enum About<'a> {
    Invoice(&'a Invoice),
    Receipt(&'a Invoice, &'a Payment),
    Failed(&'a Invoice, Option<&'a Payment>),
    CreditNote(&'a CreditNote, &'a Invoice),
    /// A trial ending at the date, with the invoice it will then bill (if it can be previewed).
    TrialEnding(DateTime<Utc>, Option<&'a Invoice>),
    /// A yearly renewal at the date, with its previewed invoice.
    Renewal(DateTime<Utc>, Option<&'a Invoice>),
}

fn fill(template: &str, pairs: &[(&str, &str)]) -> String {
    pairs.iter().fold(template.to_owned(), |s, (k, v)| {
        s.replace(&format!("{{{k}}}"), v)
    })
}

/// Composes the message to `customer_name` about `about`; `link` is the hosted invoice page.
pub fn compose(
    lang: &Lang,
    seller: &Seller<'_>,
    customer_name: &str,
    about: About<'_>,
    link: Option<&str>,
) -> Result<Composed, DocumentError> {
    let e = &lang.email;
    let seller_name = seller.name();
    let number_of = |inv: &Invoice| inv.number.clone().unwrap_or_default();
    let (subject, paragraphs) = match about {
        About::Invoice(inv) => {
            let number = number_of(inv);
            let amount = lang.money(inv.total, &inv.currency);
            let mut p = vec![fill(
                &e.invoice_body,
                &[("number", &number), ("amount", &amount)],
            )];
            use crate::domain::subscription::CollectionMethod;
            match (inv.status, inv.collection_method) {
                (InvoiceStatus::Paid, _) => p.push(e.invoice_paid.clone()),
                (_, CollectionMethod::SendInvoice) => {
                    if let Some(due) = inv.due_date {
                        p.push(fill(&e.invoice_due, &[("date", &lang.date(due))]));
                    }
                }
                (_, CollectionMethod::ChargeAutomatically) => p.push(e.invoice_autopay.clone()),
            }
            let subject = fill(
                &e.subject_invoice,
                &[("number", &number), ("seller", &seller_name)],
            );
            (subject, p)
        }
        About::Receipt(inv, pay) => {
            let number = number_of(inv);
            let amount = lang.money(pay.amount, &pay.currency);
            (
                fill(
                    &e.subject_receipt,
                    &[("number", &number), ("seller", &seller_name)],
                ),
                vec![fill(
                    &e.receipt_body,
                    &[("number", &number), ("amount", &amount)],
                )],
            )
        }
        About::Failed(inv, pay) => {
            let number = number_of(inv);
            let amount = lang.money(inv.amount_due, &inv.currency);
            let reason = match decline_reason(pay.and_then(|p| p.decline_code.as_deref())) {
                DeclineReason::InsufficientFunds => &e.decline_insufficient_funds,
                DeclineReason::ExpiredCard => &e.decline_expired_card,
                DeclineReason::AuthenticationRequired => &e.decline_authentication_required,
                DeclineReason::Generic => &e.decline_generic,
            };
            let next = match inv.next_payment_attempt {
                Some(at) => fill(&e.failed_retry, &[("date", &lang.date(at))]),
                None => e.failed_no_retry.clone(),
            };
            (
                fill(&e.subject_failed, &[("number", &number)]),
                vec![
                    fill(
                        &e.failed_body,
                        &[("number", &number), ("amount", &amount), ("reason", reason)],
                    ),
                    next,
                    e.failed_update.clone(),
                ],
            )
        }
        About::CreditNote(note, inv) => {
            let amount = lang.money(note.amount, &note.currency);
            (
                fill(
                    &e.subject_credit_note,
                    &[("number", &note.number), ("seller", &seller_name)],
                ),
                vec![fill(
                    &e.credit_note_body,
                    &[
                        ("number", &note.number),
                        ("amount", &amount),
                        ("invoice", &number_of(inv)),
                    ],
                )],
            )
        }
        About::TrialEnding(at, next) | About::Renewal(at, next) => {
            let date = lang.date(at);
            let (subject, body) = match about {
                About::TrialEnding(..) => (&e.subject_trial, &e.trial_body),
                _ => (&e.subject_renewal, &e.renewal_body),
            };
            let mut p = vec![fill(body, &[("date", &date)])];
            if let Some(inv) = next {
                p.push(fill(
                    &e.next_amount,
                    &[("amount", &lang.money(inv.total, &inv.currency))],
                ));
            }
            (
                fill(subject, &[("date", &date), ("seller", &seller_name)]),
                p,
            )
        }
    };
    let mut links: Vec<(&str, &str)> = Vec::with_capacity(2);
    if let (About::Failed(..), Some(update)) = (&about, &seller.settings.payment_method_url) {
        links.push((&e.update_payment_method, update));
    }
    if let Some(link) = link {
        links.push((&e.view_online, link));
    }
    let greeting = fill(&e.greeting, &[("name", customer_name)]);
    let footer = super::footer(seller);
    let words = Text {
        greeting: &greeting,
        paragraphs: &paragraphs,
        links: &links,
        signature: &e.signature,
        seller_name: &seller_name,
        footer: &footer,
    };
    let text = words.render()?;
    let html = Html {
        lang: lang.code,
        subject: &subject,
        accent: &seller.accent(),
        m: &words,
    }
    .render()?;
    Ok(Composed {
        subject,
        text,
        html,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::{locale, sample};
    use crate::domain::customer::TaxExempt;

    #[test]
    fn a_hostile_name_stays_text() {
        let settings = sample::seller();
        let seller = Seller {
            settings: &settings,
            fallback_name: "",
        };
        let inv = sample::invoice(2, "EUR", TaxExempt::None);
        let m = compose(
            locale::lang([Some("de")]),
            &seller,
            "<script>alert(1)</script>",
            About::Invoice(&inv),
            Some("https://billing.example/i/abc"),
        )
        .unwrap();
        assert!(
            !m.html.contains("<script>") && m.html.contains("script&#62;alert(1)"),
            "{}",
            m.html
        );
        assert!(m.text.contains("Guten Tag <script>alert(1)</script>,"));
        assert_eq!(
            m.subject,
            "Rechnung INV-2026-000042 von Żółta Łódź Software sp. z o.o."
        );
        assert!(m.text.contains("https://billing.example/i/abc") && m.text.contains("15.03.2026"));
    }
}
