//! What the demo made, read back through the API (and the report service behind
//! `GET /v1/reports/summary`), and the words that show it to a person.

use super::receiver::Received;
use super::script::World;
use crate::client::Api;
use crate::config::Config;
use crate::domain::tenant::Tenant;
use crate::services::reports::SummaryReport;
use crate::store::Db;
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    /// Finalized invoices (every status but draft).
    pub invoices: u64,
    /// Their totals, paid amounts and amounts still due, in minor units.
    pub total: i64,
    pub paid: i64,
    pub due: i64,
}

#[derive(Debug, Serialize)]
pub struct Example {
    pub path: PathBuf,
    pub number: String,
    pub customer: String,
    pub locale: String,
    pub status: String,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub tenant_id: String,
    /// The demo tenant's API key, for `recur serve` against the demo's database.
    pub api_key: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub months: u32,
    pub seconds: f64,
    pub customers: usize,
    /// Subscriptions and invoices by status.
    pub subscriptions: BTreeMap<String, u64>,
    pub invoices: BTreeMap<String, u64>,
    pub currencies: BTreeMap<String, Totals>,
    pub credit_notes: usize,
    pub report: SummaryReport,
    pub dir: PathBuf,
    pub pdfs: usize,
    pub pdf_examples: Vec<Example>,
    pub emails: usize,
    pub email_example: Option<PathBuf>,
    pub webhooks_received: usize,
    pub webhooks_refused: usize,
    pub webhooks_file: PathBuf,
    pub exports: Vec<PathBuf>,
    /// `recur serve --config` this file serves the demo's data.
    pub config_file: PathBuf,
    /// What did not come out as it should (documents unrendered, webhooks undelivered,
    /// deliveries the receiver refused); empty on a good run.
    pub problems: Vec<String>,
}

pub struct Inputs<'a> {
    pub api: &'a Api,
    pub db: &'a Db,
    pub config: &'a Config,
    pub tenant: &'a Tenant,
    pub api_key: &'a str,
    pub world: &'a World,
    pub dir: &'a Path,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub months: u32,
    pub receiver: Received,
    pub webhooks_file: &'a Path,
    pub started: std::time::Instant,
}

pub async fn collect(i: Inputs<'_>) -> anyhow::Result<Summary> {
    let docs = &i.config.documents.dir;
    let invoices = i.api.list_all("/v1/invoices").await?;
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut currencies: BTreeMap<String, Totals> = BTreeMap::new();
    let mut pdfs = 0;
    let mut unrendered = 0;
    let mut examples: Vec<Example> = Vec::new();
    // Oldest first, so the examples are early invoices.
    for inv in invoices.iter().rev() {
        let status = inv["status"].as_str().unwrap_or_default().to_owned();
        *by_status.entry(status.clone()).or_default() += 1;
        if status == "draft" {
            continue;
        }
        let t = currencies
            .entry(inv["currency"].as_str().unwrap_or_default().to_owned())
            .or_default();
        t.invoices += 1;
        t.total += inv["total"].as_i64().unwrap_or(0);
        t.paid += inv["amount_paid"].as_i64().unwrap_or(0);
        t.due += inv["amount_due"].as_i64().unwrap_or(0);
        let Some(sha) = inv["pdf_sha256"].as_str() else {
            unrendered += 1;
            continue;
        };
        pdfs += 1;
        let customer = i
            .world
            .customer(inv["customer"].as_str().unwrap_or_default());
        let locale = customer.map_or("en", |c| c.locale());
        let wanted = !examples.iter().any(|e| e.locale == locale) && status == "paid"
            || inv["tax_exempt"] == "reverse"
                && !examples.iter().any(|e| e.status == "reverse charge");
        if wanted && examples.len() < 6 {
            let id = inv["id"].as_str().unwrap_or_default();
            examples.push(Example {
                path: crate::services::documents::stored_path(docs, &i.tenant.id, id, sha),
                number: inv["number"].as_str().unwrap_or_default().to_owned(),
                customer: customer.map_or("", |c| c.name()).to_owned(),
                locale: locale.to_owned(),
                status: if inv["tax_exempt"] == "reverse" {
                    "reverse charge".to_owned()
                } else {
                    status
                },
            });
        }
    }
    let notes = i.api.list_all("/v1/credit_notes").await?;
    for note in &notes {
        let (Some(sha), Some(id)) = (note["pdf_sha256"].as_str(), note["id"].as_str()) else {
            unrendered += 1;
            continue;
        };
        pdfs += 1;
        let customer = i
            .world
            .customer(note["customer"].as_str().unwrap_or_default());
        if examples.len() < 7 {
            examples.push(Example {
                path: crate::services::documents::stored_path(docs, &i.tenant.id, id, sha),
                number: note["number"].as_str().unwrap_or_default().to_owned(),
                customer: customer.map_or("", |c| c.name()).to_owned(),
                locale: customer.map_or("en", |c| c.locale()).to_owned(),
                status: "credit note".to_owned(),
            });
        }
    }
    let undelivered = i
        .api
        .list_all(&format!(
            "/v1/webhook_endpoints/{}/deliveries",
            i.world.webhook_endpoint
        ))
        .await?
        .iter()
        .filter(|d| d["status"] != "succeeded")
        .count();
    let mut problems = Vec::new();
    if unrendered > 0 {
        problems.push(format!("{unrendered} document(s) have no PDF yet"));
    }
    if undelivered > 0 {
        problems.push(format!("{undelivered} webhook(s) were not delivered"));
    }
    if i.receiver.refused > 0 {
        problems.push(format!(
            "the receiver refused {} delivery(ies) with a bad signature",
            i.receiver.refused
        ));
    }
    let mut subscriptions: BTreeMap<String, u64> = BTreeMap::new();
    for s in i.api.list_all("/v1/subscriptions").await? {
        *subscriptions
            .entry(s["status"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    let mail_dir = i.config.email.dir.join(i.tenant.id.as_str());
    let mut mails: Vec<PathBuf> = match std::fs::read_dir(&mail_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    mails.sort();

    // The clock stops at the start of the day after the last month: that day's renewals
    // belong in the exports and the report.
    let (from, to) = (i.start.date_naive(), i.end.date_naive());
    let exports_dir = i.dir.join("exports");
    std::fs::create_dir_all(&exports_dir)?;
    let mut exports = Vec::new();
    for kind in ["invoices", "payments", "journal"] {
        let body = i
            .api
            .bytes(&format!("/v1/exports/{kind}?from={from}&to={to}"))
            .await?;
        let path = exports_dir.join(format!("{kind}.csv"));
        std::fs::write(&path, body)?;
        exports.push(path);
    }
    let mut tx = i.db.read().await?;
    let tenant = crate::store::tenants::find_tenant(&mut tx, i.tenant.id.as_str())
        .await?
        .context("the demo tenant")?;
    tx.commit().await?;
    let window = crate::api::reports::summary_window(
        Some(&from.to_string()),
        Some(&to.to_string()),
        Some("UTC"),
        tenant.now(Utc::now()),
    )
    .map_err(|e| anyhow::anyhow!("report window: {e}"))?;
    let report = crate::services::reports::summary(i.db, &tenant, &window).await?;
    let config_file = write_config(i.dir, i.config)?;
    Ok(Summary {
        tenant_id: i.tenant.id.to_string(),
        api_key: i.api_key.to_owned(),
        from: i.start,
        to: i.end,
        months: i.months,
        seconds: i.started.elapsed().as_secs_f64(),
        customers: i.world.customers.len(),
        subscriptions,
        invoices: by_status,
        currencies,
        credit_notes: notes.len(),
        report,
        dir: i.dir.to_owned(),
        pdfs,
        pdf_examples: examples,
        emails: mails.len(),
        email_example: mails.first().cloned(),
        webhooks_received: i.receiver.verified,
        webhooks_refused: i.receiver.refused,
        webhooks_file: i.webhooks_file.to_owned(),
        exports,
        config_file,
        problems,
    })
}

/// A configuration file for `recur serve --config FILE` on the demo's database and files.
fn write_config(dir: &Path, config: &Config) -> anyhow::Result<PathBuf> {
    let url = config.database_url.expose();
    let mut text = String::from(
        "# Written by `recur demo`: `recur serve --config THIS_FILE` serves the demo's data.\n",
    );
    if url.starts_with("sqlite:") {
        let _ = writeln!(text, "database_url = {}", toml_string(url));
    }
    let _ = writeln!(
        text,
        "\n[documents]\ndir = {}\n\n[email]\ndir = {}\n\n[secrets]\nmaster_key_file = {}",
        toml_string(&config.documents.dir.display().to_string()),
        toml_string(&config.email.dir.display().to_string()),
        toml_string(&config.secrets.master_key_file.display().to_string())
    );
    let path = dir.join("recur.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A path as the reader typed it: relative to the working directory when inside it.
fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_owned())
        .display()
        .to_string()
}

impl Summary {
    /// The summary for a person. `own_database`: the demo ran on a `--database-url`, which
    /// the printed `serve` line must repeat.
    pub fn text(&self, own_database: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nrecur demo: {} months of billing for Nordlicht Software GmbH (a test-mode tenant), {} to {}, in {:.1} s\n",
            self.months,
            self.from.date_naive(),
            self.to.date_naive(),
            self.seconds
        );
        let join = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "customers      {}\nsubscriptions  {}\ninvoices       {}\ncredit notes   {}\n",
            self.customers,
            join(&self.subscriptions),
            join(&self.invoices),
            self.credit_notes
        );
        out.push_str(&crate::reports::table(
            "Report (recur report summary)",
            &self.report,
        ));
        let _ = writeln!(
            out,
            "PDFs ({} in {}), for example:",
            self.pdfs,
            shown(&self.dir.join("documents"))
        );
        for e in &self.pdf_examples {
            let _ = writeln!(
                out,
                "  {}  {} · {} · {} · {}",
                shown(&e.path),
                e.number,
                e.customer,
                e.locale,
                e.status
            );
        }
        let _ = writeln!(
            out,
            "\nE-mails: {} written as .eml files{}",
            self.emails,
            self.email_example
                .as_ref()
                .map(|p| format!(", e.g. {}", shown(p)))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "Webhooks: {} signed deliveries verified by the demo's receiver, in {}",
            self.webhooks_received,
            shown(&self.webhooks_file)
        );
        for p in &self.problems {
            let _ = writeln!(out, "Problem: {p}");
        }
        let _ = writeln!(out, "Exports:");
        for p in &self.exports {
            let _ = writeln!(out, "  {}", shown(p));
        }
        let recur = if std::env::var_os("CARGO").is_some() {
            "cargo run --release --"
        } else {
            "recur"
        };
        // A flag, which wins over RECUR_DATABASE_URL in the reader's environment.
        let db = if own_database {
            " --database-url URL".to_owned()
        } else {
            format!(
                " --database-url sqlite://{}",
                shown(&self.dir.join(super::DATABASE))
            )
        };
        let _ = writeln!(
            out,
            "\nExplore the same data through the API (API key {}):\n  {recur} serve --config {}{db}\n  curl -s -H 'Authorization: Bearer {}' 'http://127.0.0.1:8080/v1/invoices?limit=2'\n  curl -s -H 'Authorization: Bearer {}' 'http://127.0.0.1:8080/v1/reports/summary?from={}&to={}'",
            self.api_key,
            shown(&self.config_file),
            self.api_key,
            self.api_key,
            self.report.from,
            self.report.to
        );
        out
    }
}
