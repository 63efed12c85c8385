//! Delivering the e-mail outbox: compose each due message from current records, send it
//! through the configured transport (`.eml` files by default, SMTP when configured), record
//! the outcome, and retry with backoff. Mail trouble never reaches billing or charging: the
//! worker delivers after them, each message on its own, with a timeout.

use super::ServiceError;
use crate::config::{Config, EmailConfig, EmailTransport, SmtpSecurity};
use crate::documents::email::{About, Composed, compose};
use crate::documents::{Seller, lang_for};
use crate::domain::credit_note::CreditNote;
use crate::domain::email::{EmailKind, EmailStatus, RENEWAL_NOTICE, TRIAL_NOTICE, next_attempt};
use crate::domain::event::EventType;
use crate::domain::ids::{CreditNoteId, InvoiceId, PaymentId, TenantId};
use crate::domain::ids::{CustomerId, SubscriptionId};
use crate::domain::invoice::{Invoice, InvoiceStatus};
use crate::domain::payment::Payment;
use crate::domain::subscription::SubscriptionStatus;
use crate::domain::tenant::Tenant;
use crate::domain::tenant::truncate_to_seconds;
use crate::store::emails::{self as store, Outgoing};
use crate::store::{Db, Page, credit_notes, customers, documents as docs_store, events};
use crate::store::{invoices, payments, subscriptions, tenants};
use chrono::{DateTime, Duration, Utc};
use lettre::message::{Attachment, Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How long a claimed message is held by the worker sending it.
const LEASE: Duration = Duration::minutes(5);
const BATCH: i64 = 50;

/// What a delivery pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub sent: usize,
    pub skipped: usize,
    pub retrying: usize,
    pub failed: usize,
}

/// A message ready to go, with the address it goes to (never logged).
struct Envelope {
    message: Message,
    recipient: String,
}

enum Transport {
    File(std::path::PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

fn transport(c: &EmailConfig) -> Result<Transport, ServiceError> {
    if c.transport == EmailTransport::File {
        return Ok(Transport::File(c.dir.clone()));
    }
    let s = &c.smtp;
    let bad =
        |e: lettre::transport::smtp::Error| ServiceError::Document(format!("email.smtp: {e}"));
    let mut b = match s.security {
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
        SmtpSecurity::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host).map_err(bad)?
        }
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host).map_err(bad)?,
    }
    .port(s.port)
    .timeout(Some(std::time::Duration::from_secs(s.timeout_secs)));
    if let (Some(user), Some(pass)) = (&s.username, &s.password) {
        b = b.credentials(Credentials::new(user.clone(), pass.expose().to_owned()));
    }
    Ok(Transport::Smtp(b.build()))
}

/// What an outbox row is about, loaded from the records as they are now.
enum Subject {
    Invoice {
        invoice: Box<Invoice>,
        payment: Option<Box<Payment>>,
        note: Option<Box<CreditNote>>,
    },
    Subscription {
        customer: CustomerId,
        at: DateTime<Utc>,
        next: Option<Box<Invoice>>,
    },
}

fn bad_id(x: crate::domain::ids::InvalidId) -> ServiceError {
    ServiceError::Document(x.to_string())
}

/// Loads the subject of an outbox row; `None` when it is gone or no longer true (a trial
/// that already ended, a renewal that will not happen).
async fn subject(db: &Db, tenant: &Tenant, e: &Outgoing) -> Result<Option<Subject>, ServiceError> {
    let id = &tenant.id;
    let mut tx = db.read().await?;
    let found = match e.kind {
        EmailKind::InvoiceFinalized | EmailKind::PaymentFailed => {
            let inv_id = InvoiceId::parse(&e.object_id).map_err(bad_id)?;
            let invoice = invoices::find_invoice(&mut tx, id, &inv_id).await?;
            let page = Page {
                limit: 1,
                starting_after: None,
            };
            let last = payments::list_payments(&mut tx, id, Some(&inv_id), &page)
                .await?
                .0
                .pop();
            // A payment-failed message retried after the invoice was paid or voided would
            // ask for money nobody owes; an invoice voided before its message went out is
            // not announced either.
            let still_true = |i: &Invoice| match e.kind {
                EmailKind::PaymentFailed => i.status == InvoiceStatus::Open,
                _ => i.status != InvoiceStatus::Void,
            };
            invoice.filter(still_true).map(|invoice| Subject::Invoice {
                invoice: Box::new(invoice),
                payment: last.map(Box::new),
                note: None,
            })
        }
        EmailKind::PaymentSucceeded => {
            let pay_id = PaymentId::parse(&e.object_id).map_err(bad_id)?;
            match payments::find_payment(&mut tx, id, &pay_id).await? {
                Some(a) => invoices::find_invoice(&mut tx, id, &a.payment.invoice)
                    .await?
                    .map(|invoice| Subject::Invoice {
                        invoice: Box::new(invoice),
                        payment: Some(Box::new(a.payment)),
                        note: None,
                    }),
                None => None,
            }
        }
        EmailKind::CreditNoteIssued => {
            let note_id = CreditNoteId::parse(&e.object_id).map_err(bad_id)?;
            match credit_notes::find_credit_note(&mut tx, id, &note_id).await? {
                Some(n) => invoices::find_invoice(&mut tx, id, &n.invoice)
                    .await?
                    .map(|invoice| Subject::Invoice {
                        invoice: Box::new(invoice),
                        payment: None,
                        note: Some(Box::new(n)),
                    }),
                None => None,
            }
        }
        EmailKind::TrialEnding | EmailKind::UpcomingRenewal => {
            let sub_id = SubscriptionId::parse(&e.object_id).map_err(bad_id)?;
            let sub = subscriptions::find_subscription(&mut tx, id, &sub_id).await?;
            let at = sub.as_ref().and_then(|s| match e.kind {
                EmailKind::TrialEnding => (s.status == SubscriptionStatus::Trialing)
                    .then_some(s.trial_end)
                    .flatten(),
                _ => (!s.cancel_at_period_end).then_some(s.current_period_end),
            });
            tx.commit().await?;
            return match (sub, at) {
                (Some(sub), Some(at)) => {
                    let next = super::invoices::upcoming(db, tenant, &sub.id)
                        .await
                        .ok()
                        .map(Box::new);
                    Ok(Some(Subject::Subscription {
                        customer: sub.customer,
                        at,
                        next,
                    }))
                }
                _ => Ok(None),
            };
        }
    };
    tx.commit().await?;
    Ok(found)
}

/// Builds the message for an outbox row from the records as they are now; `None` when it is
/// not to be sent (the kind is turned off, the customer has no address, the record is gone).
async fn envelope(
    db: &Db,
    config: &Config,
    e: &Outgoing,
) -> Result<Option<Envelope>, ServiceError> {
    let mut tx = db.read().await?;
    let t = tenants::find_tenant(&mut tx, e.tenant.as_str()).await?;
    let settings = docs_store::find_settings(&mut tx, &e.tenant)
        .await?
        .unwrap_or_default();
    tx.commit().await?;
    let Some(tenant) = t else { return Ok(None) };
    if !e.kind.enabled(&settings.notifications) {
        return Ok(None);
    }
    let seller = Seller {
        settings: &settings,
        fallback_name: &tenant.name,
    };
    let Some(found) = subject(db, &tenant, e).await? else {
        return Ok(None);
    };
    let customer_id = match &found {
        Subject::Invoice { invoice, .. } => invoice.customer.clone(),
        Subject::Subscription { customer, .. } => customer.clone(),
    };
    let mut tx = db.read().await?;
    let customer = customers::find_customer(&mut tx, &tenant.id, &customer_id).await?;
    tx.commit().await?;
    let Some(customer) = customer else {
        return Ok(None);
    };
    let Some(address) = customer.email.clone() else {
        return Ok(None);
    };
    let lang = lang_for(&customer, &settings);
    let link = match &found {
        Subject::Invoice { invoice, .. } => invoice
            .hosted_invoice_url
            .as_ref()
            .map(|path| format!("{}{path}", config.email.public_url.trim_end_matches('/'))),
        Subject::Subscription { .. } => None,
    };
    let about = match (&found, e.kind) {
        (Subject::Invoice { invoice, .. }, EmailKind::InvoiceFinalized) => About::Invoice(invoice),
        (
            Subject::Invoice {
                invoice,
                payment: Some(p),
                ..
            },
            EmailKind::PaymentSucceeded,
        ) => About::Receipt(invoice, p),
        (
            Subject::Invoice {
                invoice, payment, ..
            },
            EmailKind::PaymentFailed,
        ) => About::Failed(invoice, payment.as_deref()),
        (
            Subject::Invoice {
                invoice,
                note: Some(n),
                ..
            },
            EmailKind::CreditNoteIssued,
        ) => About::CreditNote(n, invoice),
        (Subject::Subscription { at, next, .. }, EmailKind::TrialEnding) => {
            About::TrialEnding(*at, next.as_deref())
        }
        (Subject::Subscription { at, next, .. }, EmailKind::UpcomingRenewal) => {
            About::Renewal(*at, next.as_deref())
        }
        (Subject::Invoice { .. } | Subject::Subscription { .. }, _) => return Ok(None),
    };
    let Composed {
        subject,
        text,
        html,
    } = compose(lang, &seller, &customer.name, about, link.as_deref())
        .map_err(|x| ServiceError::Document(x.to_string()))?;
    let dir = &config.documents.dir;
    let attachment = match (&found, e.kind) {
        (Subject::Invoice { invoice, .. }, EmailKind::InvoiceFinalized) => {
            Some(super::documents::invoice_pdf(db, dir, &tenant.id, &invoice.id).await?)
        }
        (Subject::Invoice { note: Some(n), .. }, EmailKind::CreditNoteIssued) => {
            Some(super::documents::credit_note_pdf(db, dir, &tenant.id, &n.id).await?)
        }
        _ => None,
    };
    let bad = |x: lettre::address::AddressError| ServiceError::Document(format!("address: {x}"));
    let from = Mailbox::new(Some(seller.name()), config.email.from.parse().map_err(bad)?);
    let to = Mailbox::new(
        Some(customer.name.clone()),
        address.as_str().parse().map_err(bad)?,
    );
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .message_id(Some(format!("<{}@recur>", e.id)));
    if let Some(reply) = &settings.email
        && let Ok(reply) = reply.as_str().parse()
    {
        builder = builder.reply_to(Mailbox::new(None, reply));
    }
    let body = MultiPart::alternative_plain_html(text, html);
    let built = match attachment {
        Some(pdf) => {
            let pdf_type = ContentType::parse("application/pdf")
                .map_err(|x| ServiceError::Document(x.to_string()))?;
            builder.multipart(
                MultiPart::mixed()
                    .multipart(body)
                    .singlepart(Attachment::new(pdf.filename).body(pdf.bytes, pdf_type)),
            )
        }
        None => builder.multipart(body),
    };
    let message = built.map_err(|x| ServiceError::Document(x.to_string()))?;
    Ok(Some(Envelope {
        message,
        recipient: address.as_str().to_owned(),
    }))
}

/// Queues the reminders due at `now` (the tenant's clock): trials ending within three days,
/// yearly renewals within seven. Each once per subscription and date.
pub async fn queue_reminders(
    db: &Db,
    tenant: &Tenant,
    now: DateTime<Utc>,
) -> Result<usize, ServiceError> {
    let mut tx = db.begin().await?;
    let due = store::reminders_due(
        &mut tx,
        &tenant.id,
        now,
        now + TRIAL_NOTICE,
        now + RENEWAL_NOTICE,
    )
    .await?;
    let queued_at = truncate_to_seconds(Utc::now());
    for (kind, sub, at) in &due {
        let key = format!("{sub}@{}", at.to_rfc3339());
        store::enqueue(&mut tx, &tenant.id, *kind, &key, sub, queued_at).await?;
    }
    tx.commit().await?;
    Ok(due.len())
}

/// Sends one message; the error text never carries the recipient's address.
async fn send(t: &Transport, tenant: &TenantId, id: &str, env: Envelope) -> Result<(), String> {
    match t {
        Transport::File(dir) => {
            let path = dir.join(tenant.as_str()).join(format!("{id}.eml"));
            let write = async {
                tokio::fs::create_dir_all(dir.join(tenant.as_str())).await?;
                let tmp = path.with_extension("eml.tmp");
                tokio::fs::write(&tmp, env.message.formatted()).await?;
                tokio::fs::rename(&tmp, &path).await
            };
            write.await.map_err(|e| format!("{}: {e}", path.display()))
        }
        Transport::Smtp(smtp) => smtp
            .send(env.message.clone())
            .await
            .map(|_| ())
            .map_err(|e| smtp_error(&e, &env.recipient)),
    }
}

/// An SMTP failure in words that never carry an address: a server's answer is reduced to its
/// class and code (servers quote the recipient in any case, bracketed or encoded), and any
/// other error has the recipient removed whatever its case.
fn smtp_error(e: &lettre::transport::smtp::Error, recipient: &str) -> String {
    let code = e.status().map(|c| format!(" ({c})")).unwrap_or_default();
    if e.is_permanent() {
        return format!("the SMTP server refused the message{code}");
    }
    if e.is_transient() {
        return format!("the SMTP server deferred the message{code}");
    }
    if e.is_timeout() {
        return "the SMTP server did not answer in time".to_owned();
    }
    scrub(&e.to_string(), recipient)
}

/// `text` with every occurrence of `secret` (ASCII case ignored) replaced.
fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_owned();
    }
    let lower = text.to_ascii_lowercase();
    let needle = secret.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    while let Some(at) = lower[rest..].find(&needle) {
        out.push_str(&text[rest..rest + at]);
        out.push_str("<recipient>");
        rest += at + needle.len();
    }
    out.push_str(&text[rest..]);
    out
}

/// Delivers the tenant's due e-mails, until `deadline` if one is given (what is left waits
/// for the next pass). A message that cannot be sent is retried with backoff, and given up
/// after `email.max_attempts` with an `email.failed` event; a sent one is recorded with an
/// `email.sent` event.
pub async fn deliver_due(
    db: &Db,
    config: &Config,
    tenant: &TenantId,
    now: DateTime<Utc>,
    deadline: Option<std::time::Instant>,
) -> Result<Delivered, ServiceError> {
    let started = std::time::Instant::now();
    // Each message is claimed and finished at its own time (the pass's `now` plus the time
    // the pass has taken), so a slow pass never finishes a message whose lease has lapsed.
    let clock = |now: DateTime<Utc>| {
        truncate_to_seconds(now + Duration::from_std(started.elapsed()).unwrap_or(Duration::zero()))
    };
    let t = transport(&config.email)?;
    let mut out = Delivered::default();
    let mut tx = db.read().await?;
    let due = store::due(&mut tx, tenant, truncate_to_seconds(now), BATCH).await?;
    tx.commit().await?;
    for e in due {
        if let Some(deadline) = deadline
            && std::time::Instant::now() >= deadline
        {
            break;
        }
        let lease = clock(now) + LEASE;
        let mut tx = db.begin().await?;
        let mine = store::claim(&mut tx, &e, lease).await?;
        tx.commit().await?;
        if !mine {
            continue;
        }
        let attempt = e.attempts + 1;
        let result = match envelope(db, config, &e).await {
            Ok(Some(env)) => Some(send(&t, &e.tenant, &e.id, env).await),
            Ok(None) => None,
            Err(err) => Some(Err(err.to_string())),
        };
        let at = clock(now);
        let (status, error, retry) = match result {
            None => (EmailStatus::Skipped, None, at),
            Some(Ok(())) => (EmailStatus::Sent, None, at),
            Some(Err(error)) if attempt >= config.email.max_attempts => {
                (EmailStatus::Failed, Some(error), at)
            }
            Some(Err(error)) => {
                let retry = next_attempt(at, attempt, config.email.retry_base_secs);
                (EmailStatus::Pending, Some(error), retry)
            }
        };
        let mut tx = db.begin().await?;
        if !store::finish(&mut tx, &e, lease, status, error.as_deref(), retry, at).await? {
            // The lease lapsed and another worker took the message: its outcome counts.
            tx.commit().await?;
            continue;
        }
        let payload = serde_json::json!({"id": e.id, "object": "email", "kind": e.kind.as_str(), "about": e.object_id, "status": status.as_str(), "attempts": attempt, "error": error});
        match status {
            EmailStatus::Skipped => out.skipped += 1,
            EmailStatus::Sent => {
                events::insert_event(
                    &mut tx,
                    &e.tenant,
                    EventType::EmailSent,
                    &e.id,
                    &payload,
                    at,
                )
                .await?;
                out.sent += 1;
            }
            EmailStatus::Failed => {
                events::insert_event(
                    &mut tx,
                    &e.tenant,
                    EventType::EmailFailed,
                    &e.id,
                    &payload,
                    at,
                )
                .await?;
                tracing::warn!(tenant.id = %e.tenant, email = %e.id, kind = e.kind.as_str(), error = ?error, "e-mail given up");
                out.failed += 1;
            }
            EmailStatus::Pending => {
                tracing::info!(tenant.id = %e.tenant, email = %e.id, kind = e.kind.as_str(), error = ?error, retry_at = %retry, "e-mail delivery failed; retrying");
                out.retrying += 1;
            }
        }
        tx.commit().await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn addresses_are_scrubbed_whatever_their_case() {
        let text = "550 5.1.1 <Jan.Kowalski@Example.PL>: no such user (jan.kowalski@example.pl)";
        assert_eq!(
            scrub(text, "jan.kowalski@example.pl"),
            "550 5.1.1 <<recipient>>: no such user (<recipient>)"
        );
        assert_eq!(scrub("Zażółć jan@x.pl", "JAN@X.PL"), "Zażółć <recipient>");
        assert_eq!(scrub("nothing here", "a@b.c"), "nothing here");
    }
}
