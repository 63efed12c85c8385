//! Customer e-mails: the outbox written with what it announces, delivered as `.eml` files by
//! default and over SMTP when configured, retried, given up, never sent twice.

use crate::both;
use crate::support::{TestApp, recur_cli};
use mailparse::{MailHeaderMap, ParsedMail};
use recur::config::{EmailTransport, SmtpSecurity};
use serde_json::{Value, json};
use std::path::Path;

/// The messages in a directory of `.eml` files (or a Maildir's `new/`), parsed.
fn messages(dir: &Path) -> Vec<Vec<u8>> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_else(|_| Vec::new());
    out.sort();
    out.into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
        .map(|p| std::fs::read(p).expect("message"))
        .collect()
}

struct Mail {
    to: String,
    subject: String,
    text: String,
    html: String,
    pdf: Option<(String, Vec<u8>)>,
}

fn read(raw: &[u8]) -> Mail {
    let m = mailparse::parse_mail(raw).expect("a MIME message");
    let mut mail = Mail {
        to: m.headers.get_first_value("To").unwrap_or_default(),
        subject: m.headers.get_first_value("Subject").unwrap_or_default(),
        text: String::new(),
        html: String::new(),
        pdf: None,
    };
    fn walk(p: &ParsedMail<'_>, mail: &mut Mail) {
        match p.ctype.mimetype.as_str() {
            "text/plain" => mail.text = p.get_body().unwrap_or_default(),
            "text/html" => mail.html = p.get_body().unwrap_or_default(),
            "application/pdf" => {
                let name = p
                    .get_content_disposition()
                    .params
                    .get("filename")
                    .cloned()
                    .unwrap_or_default();
                mail.pdf = Some((name, p.get_body_raw().unwrap_or_default()));
            }
            _ => {}
        }
        for s in &p.subparts {
            walk(s, mail);
        }
    }
    walk(&m, &mut mail);
    mail
}

async fn customer(app: &TestApp, name: &str, email: &str, locale: &str, token: &str) -> String {
    app.post("/v1/customers", json!({"name": name, "email": email, "currency": "EUR", "locale": locale, "payment_method": {"provider": "sandbox", "token": token}}))
        .await
        .ok()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

both! {
    async fn emails_as_files(app: TestApp) {
        app.put("/v1/settings/invoice", json!({"legal_name": "Acme GmbH", "email": "billing@acme.example", "locale": "de", "payment_method_url": "https://acme.example/billing?from=mail&x=<1>"})).await.ok();
        let price = app.monthly_price(12_345).await;
        let paying = customer(&app, "Jürgen Groß", "juergen@kunde.example", "de-DE", "tok_visa").await;
        let broke = customer(&app, "Ann Broke", "ann@broke.example", "en", "tok_insufficient_funds").await;
        let paid_inv = app.invoices_of(app.subscription(&paying, &price).await["id"].as_str().unwrap()).await.pop().unwrap();
        let failed_inv = app.invoices_of(app.subscription(&broke, &price).await["id"].as_str().unwrap()).await.pop().unwrap();
        let out = recur_cli(&app, &[], &["run-cycle"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let dir = app.mail.path().join(&app.tenant_id);
        let mails: Vec<Mail> = messages(&dir).iter().map(|m| read(m)).collect();
        let find = |to: &str, subject: &str| {
            mails.iter().find(|m| m.to.contains(to) && m.subject.starts_with(subject)).unwrap_or_else(|| {
                panic!("no {subject:?} to {to}: {:?}", mails.iter().map(|m| (&m.to, &m.subject)).collect::<Vec<_>>())
            })
        };
        let number = paid_inv["number"].as_str().unwrap();
        let invoice = find("juergen@kunde.example", &format!("Rechnung {number} von Acme GmbH"));
        assert!(invoice.text.contains("Guten Tag Jürgen Groß,") && invoice.text.contains("123,45\u{a0}€"), "{}", invoice.text);
        assert!(invoice.html.contains("Jürgen Groß") && invoice.html.contains("<a href=\"http://127.0.0.1:8080/i/"), "{}", invoice.html);
        let (name, pdf) = invoice.pdf.as_ref().expect("the PDF attached");
        assert_eq!(name, &format!("{number}.pdf"));
        let (_, _, served) = app.raw(&format!("/v1/invoices/{}/pdf", paid_inv["id"].as_str().unwrap()), Some(&app.key)).await;
        assert_eq!(pdf, &served, "the attachment is the stored PDF");
        let hosted = app.get(&format!("/v1/invoices/{}", paid_inv["id"].as_str().unwrap())).await.ok()["hosted_invoice_url"].as_str().unwrap().to_owned();
        assert!(invoice.text.contains(&format!("http://127.0.0.1:8080{hosted}")));
        let receipt = find("juergen@kunde.example", "Zahlungsbestätigung für Rechnung");
        assert!(receipt.text.contains("123,45\u{a0}€") && receipt.pdf.is_none());
        let failed = find("ann@broke.example", &format!("Payment failed for invoice {}", failed_inv["number"].as_str().unwrap()));
        assert!(failed.text.contains("the card has insufficient funds") && failed.text.contains("We will try again on"), "{}", failed.text);
        // The way to a new payment method comes first, then the invoice.
        let update = failed.text.find("Update your payment method: https://acme.example/billing?from=mail&x=%3C1%3E").expect("the update link");
        assert!(update < failed.text.find("View the invoice online: http").expect("the invoice link"), "{}", failed.text);
        assert!(failed.html.contains("href=\"https://acme.example/billing?from=mail&#38;x=%3C1%3E\""), "{}", failed.html);
        assert!(!invoice.text.contains("acme.example/billing"), "only payment-failed mails link it");
        // Every message an email.sent event, none carrying an address.
        let sent = app.get("/v1/events?type=email.sent&limit=100").await.ok();
        let sent = sent["data"].as_array().unwrap();
        assert_eq!(sent.len(), mails.len());
        assert!(sent.iter().all(|e| !e.to_string().contains('@')));
        // A rerun sends nothing again.
        assert!(recur_cli(&app, &[], &["run-cycle"]).status.success());
        assert_eq!(messages(&dir).len(), mails.len());
    }
}

/// A free port on loopback (nothing listens on it until the test starts a server there).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// aiosmtpd (PyPI; `.ci/run` installs it) writing what it receives into a Maildir.
struct SmtpSink {
    child: std::process::Child,
    maildir: tempfile::TempDir,
}

impl SmtpSink {
    fn start(port: u16) -> Option<SmtpSink> {
        let maildir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(maildir.path().join("box"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(SmtpSink { child, maildir });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    fn received(&self) -> Vec<Vec<u8>> {
        messages(&self.maildir.path().join("box/new"))
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtp_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("python3 -m aiosmtpd is needed under CI=true (.ci/run installs it)");
    }
    ok
}

async fn smtp_app(
    backend: crate::support::Backend,
    port: u16,
    max_attempts: u32,
) -> Option<TestApp> {
    TestApp::spawn_with(backend, recur::domain::tenant::Mode::Test, move |c| {
        c.email.transport = EmailTransport::Smtp;
        c.email.smtp.host = "127.0.0.1".into();
        c.email.smtp.port = port;
        c.email.smtp.security = SmtpSecurity::None;
        c.email.smtp.timeout_secs = 2;
        c.email.public_url = "https://billing.acme.example".into();
        c.email.max_attempts = max_attempts;
    })
    .await
}

async fn finalized_invoice(app: &TestApp) -> Value {
    app.put(
        "/v1/settings/invoice",
        json!({"legal_name": "Acme Sp. z o.o.", "locale": "pl"}),
    )
    .await
    .ok();
    let price = app.monthly_price(5_000).await;
    let c = app
        .post("/v1/customers", json!({"name": "Łucja Żak", "email": "lucja@klient.example", "currency": "EUR", "locale": "pl"}))
        .await
        .ok();
    let sub = app
        .post("/v1/subscriptions", json!({"customer": c["id"], "items": [{"price": price}], "collection_method": "send_invoice", "days_until_due": 14}))
        .await
        .ok();
    let inv = app
        .invoices_of(sub["id"].as_str().unwrap())
        .await
        .pop()
        .unwrap();
    // Rendering records the PDF and queues the invoice e-mail.
    app.raw(
        &format!("/v1/invoices/{}/pdf", inv["id"].as_str().unwrap()),
        Some(&app.key),
    )
    .await;
    inv
}

fn tenant(app: &TestApp) -> recur::domain::ids::TenantId {
    recur::domain::ids::TenantId::parse(&app.tenant_id).unwrap()
}

async fn deliver(app: &TestApp, minutes_later: i64) -> recur::services::email::Delivered {
    let at = chrono::Utc::now() + chrono::Duration::minutes(minutes_later);
    recur::services::email::deliver_due(&app.db, &app.config, &tenant(app), at, None)
        .await
        .expect("deliver")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_refuses_then_recovers() {
    if !smtp_available() {
        eprintln!("skipping: python3 -m aiosmtpd is not installed");
        return;
    }
    for backend in [
        crate::support::Backend::Sqlite,
        crate::support::Backend::Postgres,
    ] {
        let port = free_port();
        let Some(app) = smtp_app(backend, port, 8).await else {
            continue;
        };
        let inv = finalized_invoice(&app).await;
        // Nobody listens yet: the attempt fails and is retried later, nothing else waits.
        let first = deliver(&app, 0).await;
        assert_eq!((first.sent, first.retrying), (0, 1));
        let sink = SmtpSink::start(port).expect("aiosmtpd started");
        // Not yet due again.
        assert_eq!(deliver(&app, 0).await.sent, 0);
        let second = deliver(&app, 2).await;
        assert_eq!(second.sent, 1);
        assert_eq!(
            deliver(&app, 120).await,
            Default::default(),
            "delivered once"
        );
        let got = sink.received();
        assert_eq!(got.len(), 1);
        let m = read(&got[0]);
        let number = inv["number"].as_str().unwrap();
        assert!(
            m.to.contains("lucja@klient.example") && m.to.contains("Łucja Żak"),
            "{}",
            m.to
        );
        assert_eq!(m.subject, format!("Faktura {number} od Acme Sp. z o.o."));
        assert!(
            m.text.contains("Dzień dobry Łucja Żak,") && m.text.contains("50,00\u{a0}€"),
            "{}",
            m.text
        );
        assert!(
            m.html.contains("Zobacz fakturę online")
                && m.html.contains("https://billing.acme.example/i/"),
            "{}",
            m.html
        );
        let (name, pdf) = m.pdf.expect("attachment");
        assert!(name == format!("{number}.pdf") && pdf.starts_with(b"%PDF-"));
        assert_eq!(app.count_events("email.sent").await, 1);
    }
}

both! {
    async fn emails_give_up_and_respect_settings(app: TestApp) {
        let port = free_port();
        let Some(app2) = smtp_app(if app.url.starts_with("sqlite") { crate::support::Backend::Sqlite } else { crate::support::Backend::Postgres }, port, 2).await else { return };
        finalized_invoice(&app2).await;
        assert_eq!(deliver(&app2, 0).await.retrying, 1);
        let last = deliver(&app2, 5).await;
        assert_eq!(last.failed, 1, "given up after max_attempts");
        assert_eq!(app2.count_events("email.failed").await, 1);
        let failed = app2.get("/v1/events?type=email.failed").await.ok();
        let e = failed["data"][0]["data"]["object"].clone();
        assert_eq!((e["kind"].as_str(), e["attempts"].as_u64()), (Some("invoice_finalized"), Some(2)));
        assert!(!failed.to_string().contains("lucja@"), "no address in events");
        assert_eq!(deliver(&app2, 600).await, Default::default());
        // Turned off: the queued message is skipped, not sent.
        app.put("/v1/settings/invoice", json!({"notifications": {"invoice_finalized": false}})).await.ok();
        let price = app.monthly_price(5_000).await;
        let c = customer(&app, "Off", "off@example.com", "en", "tok_visa").await;
        let inv = app.invoices_of(app.subscription(&c, &price).await["id"].as_str().unwrap()).await.pop().unwrap();
        app.raw(&format!("/v1/invoices/{}/pdf", inv["id"].as_str().unwrap()), Some(&app.key)).await;
        let d = deliver(&app, 0).await;
        assert_eq!((d.sent, d.skipped), (0, 1));
        assert!(messages(&app.mail.path().join(&app.tenant_id)).is_empty());
    }
}

both! {
    async fn reminders(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let monthly = app.monthly_price(2_500).await;
        let yearly = app
            .post("/v1/prices", json!({"product": "Pro yearly", "currency": "EUR", "unit_amount": 24_000, "recurring": {"interval": "year"}}))
            .await
            .ok()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let trialist = customer(&app, "Tria", "tria@example.com", "en", "tok_visa").await;
        let annual = customer(&app, "Anna", "anna@example.com", "fr", "tok_visa").await;
        app.post("/v1/subscriptions", json!({"customer": trialist, "items": [{"price": monthly}], "trial_period_days": 14})).await.ok();
        app.subscription(&annual, &yearly).await;
        let dir = app.mail.path().join(&app.tenant_id);
        let subjects = || {
            let mut v: Vec<String> = messages(&dir).iter().map(|m| read(m).subject).collect();
            v.sort();
            v
        };
        let run = |at: &str| {
            let out = recur_cli(&app, &[], &["run-cycle", "--at", at]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        };
        run("2027-01-10T00:00:00Z");
        assert!(!subjects().iter().any(|s| s.contains("trial")), "not yet: {:?}", subjects());
        run("2027-01-12T12:00:00Z");
        run("2027-01-13T00:00:00Z");
        let trial: Vec<String> = subjects().into_iter().filter(|s| s.contains("trial")).collect();
        assert_eq!(trial, ["Your trial with test tenant ends on Jan 15, 2027"], "once");
        let mail = messages(&dir).iter().map(|m| read(m)).find(|m| m.subject.contains("trial")).unwrap();
        assert!(mail.text.contains("The next invoice will be €25.00."), "{}", mail.text);
        run("2027-12-26T00:00:00Z");
        let renewal: Vec<String> = subjects().into_iter().filter(|s| s.contains("renouvelle")).collect();
        assert_eq!(renewal, ["Votre abonnement chez test tenant se renouvelle le 01/01/2028"], "{:?}", subjects());
    }
}

both! {
    async fn a_paid_invoice_gets_no_payment_failed_mail(app: TestApp) {
        app.set_clock("2027-03-01T00:00:00Z").await;
        let c = customer(&app, "Ann Broke", "ann@broke.example", "en", "tok_insufficient_funds").await;
        let price = app.monthly_price(5_000).await;
        let sub = app.post("/v1/subscriptions", json!({"customer": c, "items": [{"price": price}]})).await.ok();
        app.advance("2027-03-01T12:00:00Z").await;
        let inv = app.invoices_of(sub["id"].as_str().unwrap()).await.pop().unwrap();
        assert_eq!(app.count_events("invoice.payment_failed").await, 1);
        // The customer pays before the queued message goes out: it asks for nothing any more.
        app.patch(&format!("/v1/customers/{c}"), json!({"payment_method": {"provider": "sandbox", "token": "tok_visa"}})).await.ok();
        let paid = app.post(&format!("/v1/invoices/{}/pay", inv["id"].as_str().unwrap()), json!({})).await.ok();
        assert_eq!(paid["status"], "paid");
        let d = deliver(&app, 0).await;
        assert_eq!((d.sent, d.skipped), (1, 1), "the receipt, not the failure");
        let mails: Vec<Mail> = messages(&app.mail.path().join(&app.tenant_id)).iter().map(|m| read(m)).collect();
        assert_eq!(mails.len(), 1);
        assert!(mails[0].subject.starts_with("Receipt for invoice"), "{}", mails[0].subject);
    }
}

both! {
    async fn a_lapsed_lease_records_nothing(app: TestApp) {
        use recur::domain::email::EmailStatus;
        use recur::store::emails as outbox;
        finalized_invoice(&app).await;
        let t = tenant(&app);
        let now = recur::domain::tenant::truncate_to_seconds(chrono::Utc::now());
        let minutes = chrono::Duration::minutes;
        let due = |at| {
            let db = app.db.clone();
            let t = t.clone();
            async move {
                let mut tx = db.read().await.unwrap();
                let due = outbox::due(&mut tx, &t, at, 10).await.unwrap();
                tx.commit().await.unwrap();
                due
            }
        };
        let claim = |e, lease| {
            let db = app.db.clone();
            async move {
                let mut tx = db.begin().await.unwrap();
                let mine = outbox::claim(&mut tx, &e, lease).await.unwrap();
                tx.commit().await.unwrap();
                mine
            }
        };
        let finish = |e, lease| {
            let db = app.db.clone();
            async move {
                let mut tx = db.begin().await.unwrap();
                let done = outbox::finish(&mut tx, &e, lease, EmailStatus::Sent, None, now, now).await.unwrap();
                tx.commit().await.unwrap();
                done
            }
        };
        let slow = due(now + minutes(1)).await.pop().expect("the invoice e-mail is due");
        assert!(claim(slow.clone(), now + minutes(5)).await);
        assert!(!claim(slow.clone(), now + minutes(5)).await, "claimed once");
        // The first worker overruns its lease; a second one takes the message.
        let fresh = due(now + minutes(6)).await.pop().expect("due again once the lease lapsed");
        assert!(claim(fresh.clone(), now + minutes(11)).await);
        assert!(!finish(slow, now + minutes(5)).await, "the late worker records nothing");
        assert!(finish(fresh, now + minutes(11)).await);
        assert!(due(now + minutes(60)).await.is_empty());
    }
}
