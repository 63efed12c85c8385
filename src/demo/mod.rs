//! `recur demo`: a year (or `--months N`) of a software company's billing, run through the
//! real API, scheduler, sandbox payments, documents, e-mail and webhooks on a fresh database,
//! then a summary of what came out and where to look.
//!
//! The demo starts recur's own HTTP API in-process on a free loopback port and drives it over
//! HTTP like any SaaS backend would (`api`); the test clock moves through the scheduler's
//! `run_once`, exactly as `recur run-cycle --at` does. Nothing goes past an invariant.

mod api;
mod receiver;
mod script;
mod summary;

use crate::api::{AppState, router};
use crate::cli::UsageError;
use crate::config::{Config, EmailTransport, Secret};
use crate::domain::tenant::Mode;
use crate::payments::Payments;
use crate::store::{Db, redact_url};
use anyhow::Context;
use chrono::{Datelike, TimeZone, Utc};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use summary::Summary;

/// A file in every directory the demo made: what lets a second run remove it.
const MARKER: &str = ".recur-demo";

pub struct Options {
    pub months: u32,
    /// Where the database (unless `database_url`), PDFs, e-mails, exports and webhooks go.
    pub dir: PathBuf,
    /// Another database than `{dir}/recur.db`; it must hold no tenant yet.
    pub database_url: Option<String>,
    pub json: bool,
}

pub async fn run(mut config: Config, opts: Options) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let dir = prepare(&opts.dir)?;
    let url = opts
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("recur.db").display()));
    config.database_url = Secret::new(url.clone());
    config.documents.dir = dir.join("documents");
    config.email.dir = dir.join("mail");
    config.email.transport = EmailTransport::File;
    config.webhooks.allow_private_urls = true;
    config.webhooks.poll_interval_ms = 100;
    let db = crate::cli::open_database(&url, config.database.max_connections).await?;
    let mut tx = db.read().await?;
    let existing = crate::store::tenants::list_tenants(&mut tx).await?;
    tx.commit().await?;
    if !existing.is_empty() {
        db.close().await;
        return Err(UsageError::Refused(format!(
            "{} already holds {} tenant(s); the demo needs an empty database so that its figures are its own (leave out --database-url to use {})",
            redact_url(&url),
            existing.len(),
            dir.display()
        ))
        .into());
    }
    let outcome = simulate(&db, Arc::new(config), &dir, &opts, started).await;
    db.close().await;
    let summary = outcome?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.text(opts.database_url.is_some()));
    }
    Ok(())
}

/// Makes `dir` empty and ours: a previous demo's directory is removed, anything else refused.
fn prepare(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        let refuse = |why: &str| {
            anyhow::Error::new(UsageError::Refused(format!(
                "{} {why}; remove it or pass --dir to another place",
                dir.display()
            )))
        };
        if !dir.is_dir() {
            return Err(refuse("is a file, not a directory"));
        }
        if dir.join(MARKER).is_file() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot remove the previous demo in {}", dir.display()))?;
        } else if std::fs::read_dir(dir)?.next().is_some() {
            return Err(refuse("holds files the demo did not write"));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        UsageError::Refused(format!(
            "cannot create {} ({e}); pass --dir to a writable place",
            dir.display()
        ))
    })?;
    std::fs::write(
        dir.join(MARKER),
        "made by `recur demo`; the next run removes this directory\n",
    )?;
    Ok(dir.canonicalize()?)
}

async fn simulate(
    db: &Db,
    config: Arc<Config>,
    dir: &Path,
    opts: &Options,
    started: std::time::Instant,
) -> anyhow::Result<Summary> {
    let today = Utc::now().date_naive();
    let start = Utc
        .with_ymd_and_hms(today.year(), today.month(), 1, 0, 0, 0)
        .single()
        .context("the first of this month")?;
    let end = script::months_after(start, opts.months);
    let (tenant, key) = crate::services::tenants::create_tenant(
        db,
        "Nordlicht Software",
        Mode::Test,
        &config.billing.invoice_prefix,
        start,
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating the demo tenant: {e}"))?;
    let payments = Arc::new(Payments::from_config(&config)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = router(AppState {
        db: db.clone(),
        config: config.clone(),
        payments: payments.clone(),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let api = api::Api::new(base, key.0.clone())?;
    let receiver = receiver::Receiver::start(dir.join("webhooks.jsonl")).await?;

    let progress = Progress::new(u64::from(opts.months) * 2);
    progress.say("setting up a tenant, its catalogue and 25 customers through the API");
    let mut world = script::setup(&api, &receiver.url).await?;
    receiver.set_secret(&world.webhook_secret)?;
    // The relay starts once the receiver knows the secret; what setup queued goes out first.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let relay = tokio::spawn(crate::services::webhooks::run(
        db.clone(),
        config.clone(),
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
    ));
    let mut invoices = 0;
    for month in 0..opts.months {
        let first = script::months_after(start, month);
        let mid = first + chrono::Duration::days(14);
        let next = script::months_after(start, month + 1);
        script::post_usage(&api, &world, month * 2).await?;
        invoices += advance(db, &config, &payments, &tenant.id, mid).await?;
        progress.step(&format!("{}: {invoices} invoices so far", mid.date_naive()));
        script::mid_month(&api, &mut world, month).await?;
        script::post_usage(&api, &world, month * 2 + 1).await?;
        invoices += advance(db, &config, &payments, &tenant.id, next).await?;
        progress.step(&format!(
            "{}: {invoices} invoices so far",
            next.date_naive()
        ));
    }
    progress.say("delivering the last webhooks");
    let _ = stop_tx.send(true);
    relay.await??;
    drain_webhooks(db, &config).await?;
    progress.finish();

    summary::collect(summary::Inputs {
        api: &api,
        db,
        config: &config,
        tenant: &tenant,
        api_key: &key.0,
        world: &world,
        dir,
        start,
        end,
        months: opts.months,
        receiver: receiver.received(),
        webhooks_file: &receiver.path,
        started,
    })
    .await
}

/// Moves the tenant's test clock to `to` through the scheduler (billing, charges, dunning,
/// documents, e-mails); the number of invoices it created.
async fn advance(
    db: &Db,
    config: &Config,
    payments: &Payments,
    tenant: &crate::domain::ids::TenantId,
    to: chrono::DateTime<Utc>,
) -> anyhow::Result<u64> {
    let runs = crate::scheduler::run_once(db, config, payments, Some(tenant), Some(to)).await?;
    let mut created = 0;
    for run in runs {
        let s = run
            .outcome
            .map_err(|e| anyhow::anyhow!("billing run: {e}"))?;
        created += s.invoices_created;
    }
    Ok(created)
}

/// Delivers every webhook still due (the receiver always accepts).
async fn drain_webhooks(db: &Db, config: &Config) -> anyhow::Result<()> {
    let client = crate::services::webhooks::client(config)?;
    loop {
        let r =
            crate::services::webhooks::deliver_due(db, config, &client, Utc::now(), None).await?;
        if r == crate::services::webhooks::Relayed::default() {
            return Ok(());
        }
    }
}

/// A progress bar on a terminal, plain lines otherwise (a pipe, CI).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(steps: u64) -> Progress {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new(steps);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40.cyan/blue} {pos}/{len} half-months  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Progress { bar }
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(line.to_owned()),
            None => eprintln!("demo: {line}"),
        }
    }

    fn step(&self, line: &str) {
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(line.to_owned());
            }
            None => eprintln!("demo: {line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
