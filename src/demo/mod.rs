//! `recur demo`: a year (or `--months N`) of a software company's billing, run through the
//! real API, scheduler, sandbox payments, documents, e-mail and webhooks on a fresh database,
//! then a summary of what came out and where to look.
//!
//! The demo starts recur's own HTTP API in-process on a free loopback port and drives it over
//! HTTP like any SaaS backend would (`api`); the test clock moves through the scheduler's
//! `run_once`, exactly as `recur run-cycle --at` does. Nothing goes past an invariant.

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
    // Another database is checked before anything is written, the directory included.
    if let Some(url) = &opts.database_url {
        let db = crate::cli::connect_database(url, 1).await?;
        let empty = db.is_empty().await;
        db.close().await;
        if !empty? {
            return Err(UsageError::Refused(format!(
                "{} already holds tables; the demo needs an empty database so that its figures are its own and nothing else is touched (leave out --database-url to use {})",
                redact_url(url),
                opts.dir.display()
            ))
            .into());
        }
    }
    let dir = prepare(&opts.dir)?;
    let url = opts
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.join(DATABASE).display()));
    config.database_url = Secret::new(url.clone());
    config.documents.dir = dir.join("documents");
    // The demo's webhook secrets are sealed under a key of its own, beside its database.
    if config.secrets.master_key.is_none() {
        config.secrets.master_key_file = dir.join(MASTER_KEY);
    }
    config.email.dir = dir.join("mail");
    config.email.transport = EmailTransport::File;
    config.webhooks.allow_private_urls = true;
    config.webhooks.poll_interval_ms = 100;
    // The demo drives its own tenant on loopback as fast as it can.
    config.server.rate_limit_per_second = 0;
    let db = crate::cli::open_database(&url, config.database.max_connections).await?;
    let outcome = simulate(&db, Arc::new(config), &dir, &opts, started).await;
    db.close().await;
    let summary = outcome?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.text(opts.database_url.is_some()));
    }
    if !summary.problems.is_empty() {
        anyhow::bail!("the demo ran, but {}", summary.problems.join("; "));
    }
    Ok(())
}

/// The demo's SQLite file in its directory.
const DATABASE: &str = "recur.db";

/// What the demo writes in its directory; a re-run removes these and nothing else.
const OURS: &[&str] = &[
    MARKER,
    DATABASE,
    "recur.db-wal",
    "recur.db-shm",
    "documents",
    "mail",
    "exports",
    "webhooks.jsonl",
    "recur.toml",
    MASTER_KEY,
];

/// The master key that seals the demo's secrets (see `vault`).
const MASTER_KEY: &str = "master.key";

/// Makes `dir` ready: created if missing; if it holds a previous demo (its marker and only
/// what the demo writes), those entries are removed; anything else there is refused, and the
/// directory itself is never removed.
fn prepare(dir: &Path) -> anyhow::Result<PathBuf> {
    let refuse = |why: &str| {
        anyhow::Error::new(UsageError::Refused(format!(
            "{} {why}; remove it or pass --dir to another place",
            dir.display()
        )))
    };
    if dir.exists() {
        if !dir.is_dir() {
            return Err(refuse("is a file, not a directory"));
        }
        let entries: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        let ours = |name: &std::ffi::OsString| OURS.iter().any(|o| name == *o);
        if !entries.is_empty() && !dir.join(MARKER).is_file() {
            return Err(refuse("holds files the demo did not write"));
        }
        if !entries.iter().all(ours) {
            return Err(refuse("holds files besides a previous demo's"));
        }
        for name in &entries {
            let path = dir.join(name);
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.with_context(|| format!("cannot remove {}", path.display()))?;
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
        "made by `recur demo`; the next run replaces what the demo wrote here\n",
    )
    .with_context(|| format!("cannot write in {}", dir.display()))?;
    dir.canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))
}

async fn simulate(
    db: &Db,
    config: Arc<Config>,
    dir: &Path,
    opts: &Options,
    started: std::time::Instant,
) -> anyhow::Result<summary::Summary> {
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
    let api = crate::client::Api::new(base, key.0.clone())?;
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
        progress.step(&format!(
            "{}: the scheduler has billed {invoices} invoices",
            mid.date_naive()
        ));
        script::mid_month(&api, &mut world, month).await?;
        script::post_usage(&api, &world, month * 2 + 1).await?;
        invoices += advance(db, &config, &payments, &tenant.id, next).await?;
        progress.step(&format!(
            "{}: {invoices} invoices so far",
            next.date_naive()
        ));
    }
    // The scheduler gives documents a time budget per pass; what a slow machine left over is
    // rendered and mailed now, without one.
    let far = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let rendered =
        crate::services::documents::render_pending(db, &config.documents.dir, &tenant, far).await?;
    if rendered.failed > 0 {
        anyhow::bail!(
            "{} document(s) could not be rendered; see the logs",
            rendered.failed
        );
    }
    crate::services::email::deliver_due(db, &config, &tenant.id, Utc::now(), None).await?;
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
