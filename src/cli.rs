//! The `recur` command line: parses, loads configuration, and calls the library.

use crate::api::{AppState, router};
use crate::config::{Config, ConfigError, Overrides};
use crate::domain::ids::TenantId;
use crate::domain::tenant::Mode;
use crate::scheduler;
use crate::services::tenants::create_tenant;
use crate::store::{Db, redact_url};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "recur",
    version,
    about = "Subscription billing and invoicing engine"
)]
pub struct Cli {
    /// Configuration file layered over config/default.toml.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// sqlite://PATH or postgres://… (overrides the configuration).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Log lines as `compact` text (for people) or `json` (for collectors).
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["compact", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP API (migrates the database first).
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
    },
    /// Run the scheduler only (several may share one PostgreSQL; one on SQLite).
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// One billing pass: renewals, trial ends and cancellations due by then.
    RunCycle {
        /// Only this tenant.
        #[arg(long, value_name = "ID", value_parser = parse_tenant)]
        tenant: Option<TenantId>,
        /// Bill what is due by this instant (RFC 3339); for a test tenant a later time advances its clock.
        #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
    },
    /// Benchmarks: figures and the ratio to a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Export the billing history of a window of days as CSV (default) or JSON lines: one of
    /// invoices, invoice-lines, payments, credit-notes, journal.
    Export {
        kind: String,
        /// First day, YYYY-MM-DD, included.
        #[arg(long)]
        from: String,
        /// Last day, YYYY-MM-DD, included.
        #[arg(long)]
        to: String,
        /// Only this tenant (default: every tenant; each row names its tenant).
        #[arg(long, value_parser = parse_tenant)]
        tenant: Option<TenantId>,
        /// csv or json (JSON lines).
        #[arg(long, default_value = "csv")]
        format: String,
        /// IANA time zone of the days.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Write here instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<std::path::PathBuf>,
    },
    /// Reports on the billing history.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Compare a provider's charges with our payments for a window; repair what is safe
    /// (attempts left unknown that the provider settled, refunds made at the provider) and
    /// report the rest as a table and as `reconciliation.discrepancy` events.
    Reconcile {
        #[arg(long, value_name = "ID", value_parser = parse_tenant)]
        tenant: TenantId,
        /// First day (YYYY-MM-DD, UTC) or RFC 3339 instant.
        #[arg(long, value_name = "DATE", value_parser = parse_day_start)]
        from: DateTime<Utc>,
        /// Last day, included (YYYY-MM-DD, UTC) or RFC 3339 instant.
        #[arg(long, value_name = "DATE", value_parser = parse_day_end)]
        to: DateTime<Utc>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A year of a software company's billing on a fresh database: customers, subscriptions,
    /// usage and payments through the API and the scheduler, then PDFs, e-mails, webhooks,
    /// exports and a summary (all under --dir).
    Demo {
        /// Months to simulate, 1 to 120.
        #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=120))]
        months: u32,
        /// Where the demo writes its database, documents, e-mails, webhooks and exports; the
        /// next run removes it and starts clean.
        #[arg(long, default_value = "var/demo", value_name = "DIR")]
        dir: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Secrets at rest (provider keys, webhook signing secrets).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
}

#[derive(Subcommand, Debug)]
enum SecretsCommand {
    /// Re-seal every stored secret under the current master key (`secrets.master_key`), opening
    /// old ones with `secrets.previous_keys`; then the old keys can be dropped.
    Rotate {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ReportCommand {
    /// Per currency: MRR, ARR, subscriptions, billed, collected, refunded, outstanding,
    /// receivables aging, dunning outcomes and payment success rate, as a table.
    Summary {
        /// First day, YYYY-MM-DD, included (default: the first of this month).
        #[arg(long)]
        from: Option<String>,
        /// Last day, YYYY-MM-DD, included (default: today).
        #[arg(long)]
        to: Option<String>,
        /// Only this tenant (default: every tenant, one table each).
        #[arg(long, value_parser = parse_tenant)]
        tenant: Option<TenantId>,
        /// IANA time zone of the days.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Time one billing pass over N due subscriptions against a COPY / batched-insert baseline,
    /// on a scratch database (a temporary SQLite file, or a new schema in --database-url).
    Cycle {
        #[arg(long, default_value_t = 100_000)]
        subscriptions: usize,
        /// Concurrent billing workers on PostgreSQL (SQLite always uses one).
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Subscriptions for the test-clock part (advanced 12 months).
        #[arg(long, default_value_t = 1_000)]
        clock_subscriptions: usize,
        /// Bill in this many separate worker processes instead (PostgreSQL; prints each
        /// one's peak memory).
        #[arg(long, default_value_t = 0)]
        processes: usize,
    },
    /// One worker process of `bench cycle --processes` (started by it).
    #[command(hide = true)]
    CycleWorker {
        #[arg(long, value_parser = parse_tenant)]
        tenant: TenantId,
        #[arg(long, value_parser = parse_time)]
        until: DateTime<Utc>,
        #[arg(long)]
        batch_size: i64,
    },
    /// The HTTP API under load on a scratch database: p50/p99 latency at a fixed offered rate
    /// (GET and POST routes against GET /healthz), sign-up bursts and usage batches against
    /// same-run baselines.
    Api {
        /// Seconds each scenario runs.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Offered rate of the GET scenarios (requests per second).
        #[arg(long, default_value_t = 2_000)]
        get_rate: u32,
        /// Offered rate of the POST scenarios (requests per second).
        #[arg(long, default_value_t = 500)]
        post_rate: u32,
        /// Requests in flight in the burst and batch scenarios.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// A collection pass through the Stripe client against a local fake Stripe (fixed
    /// latency, 429 above a rate) and through the sandbox, against charging one at a time.
    Collect {
        /// Invoices charged through the fake Stripe.
        #[arg(long, default_value_t = 2_000)]
        charges: usize,
        /// Invoices charged through the sandbox.
        #[arg(long, default_value_t = 20_000)]
        sandbox_charges: usize,
        /// The fake Stripe's answer time.
        #[arg(long, default_value_t = 50)]
        latency_ms: u64,
        /// Requests per second above which the fake Stripe answers 429.
        #[arg(long, default_value_t = 100)]
        limit_per_second: u32,
    },
    /// Render N one-page invoices against a fewest-operations printpdf baseline: PDFs per
    /// second per core and the ratio.
    Pdf {
        #[arg(long, default_value_t = 1_000)]
        invoices: usize,
    },
}

#[derive(Subcommand, Debug)]
enum TenantCommand {
    /// Create a tenant and print its API key (shown once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value = "test")]
        mode: Mode,
        /// Print {"tenant_id": …, "api_key": …}.
        #[arg(long)]
        json: bool,
        /// Seller details for the tenant's documents: a JSON file shaped like
        /// `PUT /v1/settings/invoice` (`-` reads standard input).
        #[arg(long)]
        settings: Option<std::path::PathBuf>,
    },
    /// Make, list and revoke a tenant's API keys (`POST /v1/api_keys` and friends).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Connect the tenant's own Stripe account (`PUT /v1/settings/providers/stripe`): the
    /// secrets are read from files (`-`: standard input), never from arguments, so they stay
    /// out of shell history and process lists. Without them it prints the account; with
    /// `--disconnect` it removes it.
    Stripe {
        #[arg(long, value_parser = parse_tenant)]
        tenant: TenantId,
        /// A file holding the secret key (`sk_…`/`rk_…` of the tenant's mode).
        #[arg(long, value_name = "FILE", conflicts_with = "disconnect")]
        secret_key_file: Option<PathBuf>,
        /// A file holding the webhook signing secret (`whsec_…`).
        #[arg(long, value_name = "FILE", requires = "secret_key_file")]
        webhook_secret_file: Option<PathBuf>,
        #[arg(long)]
        disconnect: bool,
    },
    /// Print a tenant's invoice settings as JSON, or replace them with `--set FILE`.
    Settings {
        #[arg(long, value_parser = parse_tenant)]
        tenant: TenantId,
        /// A JSON file shaped like `PUT /v1/settings/invoice` (`-` reads standard input).
        #[arg(long)]
        set: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Make a key and print its secret (shown once).
    Create {
        #[arg(long, value_parser = parse_tenant)]
        tenant: TenantId,
        /// What the key is for, shown in lists.
        #[arg(long, default_value = "cli")]
        name: String,
        /// A restricted key (`rk_…`) that may only GET.
        #[arg(long)]
        read_only: bool,
        /// Print the key as JSON, its `secret` included.
        #[arg(long)]
        json: bool,
    },
    /// List the tenant's keys: id, scope, prefix and last 4, created, last used (no secrets).
    List {
        #[arg(long, value_parser = parse_tenant)]
        tenant: TenantId,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key at once (the last full-access key cannot be: make another first).
    Revoke {
        #[arg(long, value_parser = parse_tenant)]
        tenant: TenantId,
        /// The key's id (`key_…`, from `list`).
        key: String,
    },
}

/// Reads and checks invoice settings exactly as `PUT /v1/settings/invoice` does.
fn read_settings(path: &std::path::Path) -> anyhow::Result<crate::domain::seller::InvoiceSettings> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("settings file {}: {e}", path.display()))?
    };
    let settings =
        crate::api::settings_from_json(&text).map_err(|e| anyhow::anyhow!("settings: {e}"))?;
    if let Some(logo) = &settings.logo {
        crate::documents::check_logo(&logo.bytes)
            .map_err(|e| anyhow::anyhow!("settings: `logo`: {e}"))?;
    }
    Ok(settings)
}

/// A day's first second, or an exact instant.
fn parse_day_start(s: &str) -> Result<DateTime<Utc>, String> {
    match chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => Ok(d.and_time(chrono::NaiveTime::MIN).and_utc()),
        Err(_) => parse_time(s),
    }
}

/// A day's last second, or an exact instant.
fn parse_day_end(s: &str) -> Result<DateTime<Utc>, String> {
    match chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => Ok(d
            .and_hms_opt(23, 59, 59)
            .map(|t| t.and_utc())
            .unwrap_or_default()),
        Err(_) => parse_time(s),
    }
}

fn parse_tenant(s: &str) -> Result<TenantId, String> {
    TenantId::parse(s).map_err(|e| e.to_string())
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("`{s}` is not an RFC 3339 time (e.g. 2027-01-01T00:00:00Z): {e}"))
        .and_then(|t| crate::domain::tenant::check_instant(t.with_timezone(&Utc)))
}

/// Errors in configuration or arguments, and refusals a user can act on: exit code 2, like
/// clap's own.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Refused(String),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let bind = match &cli.command {
        Command::Serve { bind } => bind.clone(),
        Command::Migrate
        | Command::Tenant { .. }
        | Command::Secrets { .. }
        | Command::Worker
        | Command::RunCycle { .. }
        | Command::Reconcile { .. }
        | Command::Export { .. }
        | Command::Report { .. }
        | Command::Demo { .. }
        | Command::Bench { .. } => None,
    };
    let config = Config::load(
        cli.config.as_deref(),
        &Overrides {
            database_url: cli.database_url.clone(),
            bind,
            log_format: cli.log_format.clone(),
        },
    )
    .map_err(UsageError::from)?;
    if let Command::Demo { months, dir, json } = cli.command {
        // Warnings only: the progress bar and the summary are the demo's output.
        start_logging(&config, "warn");
        let opts = crate::demo::Options {
            months,
            dir,
            database_url: cli.database_url,
            json,
        };
        return crate::demo::run(config, opts).await;
    }
    start_logging(&config, "info");
    if let Command::Bench { command } = cli.command {
        return match command {
            BenchCommand::Cycle {
                subscriptions,
                workers,
                clock_subscriptions,
                processes,
            } => {
                let opts = crate::bench::CycleOptions {
                    subscriptions,
                    workers,
                    processes,
                    exe: std::env::current_exe().ok(),
                    clock_subscriptions,
                    database_url: cli.database_url,
                    batch_size: config.scheduler.batch_size,
                    payments: crate::payments::Payments::from_config(&config)?,
                };
                crate::bench::cycle(opts).await
            }
            BenchCommand::CycleWorker {
                tenant,
                until,
                batch_size,
            } => {
                let url = cli
                    .database_url
                    .ok_or_else(|| anyhow::anyhow!("bench cycle-worker needs --database-url"))?;
                let db = connect_database(&url, 4).await?;
                let report = crate::bench::cycle_worker(&db, &tenant, until, batch_size).await;
                db.close().await;
                println!("{}", serde_json::to_string(&report?)?);
                Ok(())
            }
            BenchCommand::Collect {
                charges,
                sandbox_charges,
                latency_ms,
                limit_per_second,
            } => {
                let opts = crate::bench::collect::CollectOptions {
                    charges,
                    sandbox_charges,
                    latency_ms,
                    limit_per_second,
                    database_url: cli.database_url,
                };
                crate::bench::collect::run(config, opts).await.map(drop)
            }
            BenchCommand::Api {
                seconds,
                get_rate,
                post_rate,
                concurrency,
            } => {
                if !(seconds > 0.0 && seconds <= 3600.0) || get_rate == 0 || post_rate == 0 {
                    return Err(anyhow::Error::new(UsageError::from(ConfigError::Invalid(
                        "bench api: --seconds must be in (0, 3600] and the rates above 0".into(),
                    ))));
                }
                let opts = crate::bench::api::ApiOptions {
                    seconds,
                    get_rate,
                    post_rate,
                    concurrency,
                    database_url: cli.database_url,
                };
                crate::bench::api::run(config, opts).await.map(drop)
            }
            BenchCommand::Pdf { invoices } => {
                tokio::task::spawn_blocking(move || crate::bench::pdf::run(invoices)).await?
            }
        };
    }
    let db = open(&config).await?;
    let result = match cli.command {
        Command::Bench { .. } | Command::Demo { .. } => Ok(()),
        Command::Serve { .. } => serve(db.clone(), config).await,
        Command::Worker => worker(db.clone(), config).await,
        Command::RunCycle { tenant, at } => {
            let results = scheduler::run_once(
                &db,
                &config,
                &crate::payments::Payments::from_config(&config)?,
                tenant.as_ref(),
                at,
            )
            .await?;
            if tenant.is_some() && results.is_empty() {
                return Err(anyhow::Error::new(UsageError::from(ConfigError::Invalid(
                    "no such tenant".into(),
                ))));
            }
            println!(
                "{:<38} {:>10} {:>9} {:>12} {:>6} {:>7}",
                "tenant", "boundaries", "invoices", "trials_ended", "ended", "failed"
            );
            let mut failed = 0;
            for run in results {
                match run.outcome {
                    Ok(s) => println!(
                        "{:<38} {:>10} {:>9} {:>12} {:>6} {:>7}",
                        run.tenant.id,
                        s.boundaries,
                        s.invoices_created,
                        s.trials_ended,
                        s.subscriptions_ended,
                        s.failed
                    ),
                    Err(e) => {
                        failed += 1;
                        println!("{:<38} error: {e}", run.tenant.id);
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("the run failed for {failed} tenant(s); the others completed");
            }
            Ok(())
        }
        Command::Reconcile {
            tenant,
            from,
            to,
            json,
        } => reconcile(&db, &config, &tenant, from, to, json).await,
        Command::Report {
            command:
                ReportCommand::Summary {
                    from,
                    to,
                    tenant,
                    timezone,
                    json,
                },
        } => {
            let mut tx = db.read().await?;
            let tenants = crate::store::tenants::list_tenants(&mut tx).await?;
            tx.commit().await?;
            let chosen: Vec<_> = tenants
                .into_iter()
                .filter(|t| tenant.as_ref().is_none_or(|id| &t.id == id))
                .collect();
            if let (Some(id), true) = (&tenant, chosen.is_empty()) {
                return Err(
                    UsageError::Config(crate::config::ConfigError::Invalid(format!(
                        "no tenant {id}"
                    )))
                    .into(),
                );
            }
            for t in &chosen {
                let w = crate::api::reports::summary_window(
                    from.as_deref(),
                    to.as_deref(),
                    Some(&timezone),
                    t.now(Utc::now()),
                )
                .map_err(|e| {
                    UsageError::Config(crate::config::ConfigError::Invalid(e.to_string()))
                })?;
                let report = crate::services::reports::summary(&db, t, &w).await?;
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    print!("{}", crate::reports::table(&t.name, &report));
                }
            }
            Ok(())
        }
        Command::Export {
            kind,
            from,
            to,
            tenant,
            format,
            timezone,
            output,
        } => {
            let req = crate::api::exports::export_request(
                &kind,
                Some(&from),
                Some(&to),
                Some(&timezone),
                Some(&format),
            )
            .map_err(|e| UsageError::Config(crate::config::ConfigError::Invalid(e.to_string())))?;
            export(&db, req, tenant, output).await
        }
        Command::Migrate => {
            println!(
                "migrations applied to {}",
                redact_url(config.database_url.expose())
            );
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::Key { command },
        } => api_key_command(&db, command).await,
        Command::Tenant {
            command:
                TenantCommand::Stripe {
                    tenant,
                    secret_key_file,
                    webhook_secret_file,
                    disconnect,
                },
        } => {
            stripe_account(
                &db,
                &config,
                &tenant,
                secret_key_file,
                webhook_secret_file,
                disconnect,
            )
            .await
        }
        Command::Secrets {
            command: SecretsCommand::Rotate { json },
        } => {
            let rotated = crate::services::secrets::rotate(&db, &config)
                .await
                .map_err(|e| UsageError::Refused(format!("rotation stopped: {e}")))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rotated)?);
            } else {
                println!(
                    "every secret is sealed under master key {}: {} provider accounts checked, {} re-sealed; {} webhook signing secrets checked, {} re-sealed",
                    rotated.key_id,
                    rotated.provider_accounts_checked,
                    rotated.provider_accounts_resealed,
                    rotated.webhook_secrets_checked,
                    rotated.webhook_secrets_resealed
                );
            }
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::Settings { tenant, set },
        } => {
            let settings = match set {
                Some(path) => {
                    let settings = read_settings(&path)?;
                    crate::services::documents::put_settings(&db, &tenant, settings, Utc::now())
                        .await
                        .map_err(|e| anyhow::anyhow!("settings: {e}"))?
                }
                None => crate::services::documents::get_settings(&db, &tenant).await?,
            };
            println!("{}", serde_json::to_string_pretty(&settings)?);
            Ok(())
        }
        Command::Tenant {
            command:
                TenantCommand::Create {
                    name,
                    mode,
                    json,
                    settings,
                },
        } => {
            // Checked before anything is written.
            let settings = settings.as_deref().map(read_settings).transpose()?;
            let (tenant, key) =
                create_tenant(&db, &name, mode, &config.billing.invoice_prefix, Utc::now())
                    .await
                    .map_err(|e| anyhow::anyhow!(e.to_string()))?;
            if let Some(settings) = settings {
                crate::services::documents::put_settings(&db, &tenant.id, settings, Utc::now())
                    .await
                    .map_err(|e| anyhow::anyhow!("settings: {e}"))?;
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "tenant_id": tenant.id, "api_key": key.0, "mode": mode.as_str() })
                );
            } else {
                println!(
                    "tenant_id: {}\nmode:      {}\napi_key:   {}\n(the API key is shown only once: store it now)",
                    tenant.id,
                    mode.as_str(),
                    key.0
                );
            }
            Ok(())
        }
    };
    db.close().await;
    result
}

/// Logging at `level` unless `RUST_LOG` says otherwise, then the configuration's warnings.
fn start_logging(config: &Config, level: &str) {
    crate::telemetry::init(config.log_format, level);
    for var in &config.ignored_env {
        tracing::warn!("ignoring {var}: it names no configuration key (see config/default.toml)");
    }
}

/// Streams an export to a file or standard output; a failed export removes its partial file.
async fn export(
    db: &Db,
    req: crate::api::exports::ExportRequest,
    tenant: Option<TenantId>,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let tenants = match tenant {
        Some(t) => vec![t],
        None => {
            let mut tx = db.read().await?;
            let all = crate::store::tenants::list_tenants(&mut tx).await?;
            tx.commit().await?;
            all.into_iter().map(|t| t.id).collect()
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let task = {
        let db = db.clone();
        tokio::spawn(async move {
            crate::services::exports::export(
                &db,
                &tenants,
                req.kind,
                req.format,
                req.window,
                req.timezone,
                tx,
            )
            .await
        })
    };
    let mut sink: Box<dyn Write + Send> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Ok(bytes) => sink.write_all(&bytes)?,
            Err(e) => {
                drop(sink);
                if let Some(path) = &output {
                    let _ = std::fs::remove_file(path);
                }
                anyhow::bail!("export failed: {e}");
            }
        }
    }
    sink.flush()?;
    let rows = task.await?;
    eprintln!("{rows} {} rows", req.kind.as_str());
    Ok(())
}

/// The tenant with this id, or a usage error.
async fn load_tenant(db: &Db, id: &TenantId) -> anyhow::Result<crate::domain::tenant::Tenant> {
    let mut tx = db.read().await?;
    let found = crate::store::tenants::find_tenant(&mut tx, id.as_str()).await?;
    tx.commit().await?;
    found.ok_or_else(|| UsageError::Refused(format!("no such tenant: {id}")).into())
}

/// A secret read from a file (`-`: standard input), without its surrounding whitespace.
fn read_secret(path: &std::path::Path) -> anyhow::Result<String> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| UsageError::Refused(format!("{}: {e}", path.display())))?
    };
    Ok(text.trim().to_owned())
}

async fn stripe_account(
    db: &Db,
    config: &Config,
    tenant: &TenantId,
    secret_key_file: Option<PathBuf>,
    webhook_secret_file: Option<PathBuf>,
    disconnect: bool,
) -> anyhow::Result<()> {
    use crate::domain::customer::Provider;
    use crate::services::provider_accounts as accounts;
    let t = load_tenant(db, tenant).await?;
    let refused = |e: crate::services::ServiceError| UsageError::Refused(e.to_string());
    let now = crate::domain::tenant::truncate_to_seconds(Utc::now());
    if disconnect {
        accounts::disconnect(db, &t, Provider::Stripe, now)
            .await
            .map_err(refused)?;
        println!("disconnected: {tenant} charges through stripe.secret_key again, if it is set");
        return Ok(());
    }
    let account = match secret_key_file {
        Some(key_file) => {
            let key = read_secret(&key_file)?;
            let webhook = webhook_secret_file
                .as_deref()
                .map(read_secret)
                .transpose()?;
            accounts::connect_stripe(db, config, &t, &key, webhook.as_deref(), now)
                .await
                .map_err(refused)?
        }
        None => accounts::get_account(db, &t, Provider::Stripe)
            .await
            .map_err(refused)?,
    };
    println!("{}", serde_json::to_string_pretty(&account)?);
    Ok(())
}

async fn api_key_command(db: &Db, command: KeyCommand) -> anyhow::Result<()> {
    use crate::domain::api_key::Scope;
    use crate::services::api_keys;
    let refused = |e: crate::services::ServiceError| UsageError::Refused(e.to_string());
    let now = crate::domain::tenant::truncate_to_seconds(Utc::now());
    match command {
        KeyCommand::Create {
            tenant,
            name,
            read_only,
            json,
        } => {
            let t = load_tenant(db, &tenant).await?;
            let scope = if read_only {
                Scope::ReadOnly
            } else {
                Scope::Full
            };
            let key = api_keys::create_key(db, &t, &name, scope, now)
                .await
                .map_err(refused)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&key)?);
            } else {
                println!(
                    "id:      {}\nscope:   {}\napi_key: {}\n(the API key is shown only once: store it now)",
                    key.id,
                    key.scope.as_str(),
                    key.secret.as_deref().unwrap_or_default()
                );
            }
        }
        KeyCommand::List { tenant, json } => {
            let t = load_tenant(db, &tenant).await?;
            let keys = api_keys::list_keys(db, &t).await.map_err(refused)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                println!(
                    "{:<21} {:<10} {:<16} {:<20} {:<20} {:<20} state",
                    "id", "scope", "key", "name", "created", "last used"
                );
                for k in keys {
                    let state = match (k.revoked_at, k.expires_at) {
                        (Some(t), _) => format!("revoked {}", t.format("%Y-%m-%d %H:%M")),
                        (None, Some(t)) if t <= now => {
                            format!("expired {}", t.format("%Y-%m-%d %H:%M"))
                        }
                        (None, Some(t)) => format!("expires {}", t.format("%Y-%m-%d %H:%M")),
                        (None, None) => "active".into(),
                    };
                    println!(
                        "{:<21} {:<10} {:<16} {:<20} {:<20} {:<20} {state}",
                        k.id,
                        k.scope.as_str(),
                        format!("{}…{}", k.prefix, k.last4),
                        k.name.chars().take(20).collect::<String>(),
                        k.created.format("%Y-%m-%d %H:%M"),
                        k.last_used.map_or_else(
                            || "never".into(),
                            |t| t.format("%Y-%m-%d %H:%M").to_string()
                        ),
                    );
                }
            }
        }
        KeyCommand::Revoke { tenant, key } => {
            let t = load_tenant(db, &tenant).await?;
            let revoked = api_keys::revoke_key(db, &t, &key, now)
                .await
                .map_err(refused)?;
            println!("revoked {}", revoked.id);
        }
    }
    Ok(())
}

/// Reconciles against Stripe. The sandbox keeps its ledger in the process that charged, so a
/// separate `recur reconcile` process has nothing to compare it with; in-process callers (tests)
/// use `payments::reconcile` with it directly.
async fn reconcile(
    db: &Db,
    config: &Config,
    tenant: &TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    json: bool,
) -> anyhow::Result<()> {
    if from > to {
        return Err(anyhow::Error::new(UsageError::from(ConfigError::Invalid(
            "--from must not be after --to".into(),
        ))));
    }
    let t = load_tenant(db, tenant).await?;
    let payments = crate::payments::Payments::from_config(config)?;
    let report = crate::payments::reconcile::reconcile(
        db,
        &payments,
        &t,
        crate::domain::customer::Provider::Stripe,
        from,
        to,
        Utc::now(),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "provider charges: {}  matched: {}  our payments: {}  repaired: {}  to review: {}",
        report.provider_charges,
        report.matched,
        report.our_payments,
        report.repaired,
        report.findings.iter().filter(|f| !f.repaired).count()
    );
    if !report.findings.is_empty() {
        println!(
            "{:<26} {:<8} {:<30} {:<34} detail",
            "finding", "repaired", "provider_ref", "invoice"
        );
    }
    for f in &report.findings {
        println!(
            "{:<26} {:<8} {:<30} {:<34} {}",
            f.kind,
            if f.repaired { "yes" } else { "no" },
            f.provider_ref.as_deref().unwrap_or("-"),
            f.invoice.as_deref().unwrap_or("-"),
            f.detail
        );
    }
    Ok(())
}

/// Connects and applies pending migrations, so every command works on a fresh database.
async fn open(config: &Config) -> anyhow::Result<Db> {
    open_database(
        config.database_url.expose(),
        config.database.max_connections,
    )
    .await
}

/// [`open`] for a URL: what a newcomer gets wrong first (PostgreSQL down, a wrong password,
/// `./var` unwritable or a file, a file that is not a database) is one line saying what to do,
/// with exit code 2.
pub(crate) async fn open_database(url: &str, max_connections: u32) -> anyhow::Result<Db> {
    let db = connect_database(url, max_connections).await?;
    if let Err(e) = db.migrate().await {
        db.close().await;
        let shown = redact_url(url);
        return Err(match sqlite_code(&e) {
            Some(NOT_A_DATABASE) => not_a_database(&shown),
            _ => anyhow::Error::new(e).context(format!("cannot migrate the database {shown}")),
        });
    }
    Ok(db)
}

/// Connects without migrating, with [`open_database`]'s messages.
pub(crate) async fn connect_database(url: &str, max_connections: u32) -> anyhow::Result<Db> {
    use crate::store::StoreError;
    let e = match Db::connect(url, max_connections).await {
        Ok(db) => return Ok(db),
        Err(e) => e,
    };
    let shown = redact_url(url);
    let postgres = !url.starts_with("sqlite:");
    let sqlstate = match &e {
        StoreError::Db(sqlx::Error::Database(d)) => d.code().map(|c| c.into_owned()),
        _ => None,
    };
    let advice = match &e {
        StoreError::Directory(dir, io) if io.kind() == std::io::ErrorKind::AlreadyExists => {
            format!(
                "{dir} is a file, where the database's directory should be: move it aside, or point --database-url elsewhere"
            )
        }
        StoreError::Directory(dir, io) => format!(
            "cannot create the database directory {dir} ({}): make it a writable directory, or point --database-url elsewhere",
            io.kind()
        ),
        StoreError::Db(sqlx::Error::Io(io)) if postgres => format!(
            "cannot reach PostgreSQL at {shown} ({}): start it (pg_ctlcluster … start, systemctl start postgresql), or fix --database-url",
            io.kind()
        ),
        StoreError::ConnectTimeout => format!(
            "the database at {shown} did not answer within 10 s: check the host and port in --database-url, and that the server is up"
        ),
        // Invalid authorization (28xxx) or no such database (3D000).
        StoreError::Db(sqlx::Error::Database(d))
            if postgres
                && sqlstate
                    .as_deref()
                    .is_some_and(|c| c.starts_with("28") || c == "3D000") =>
        {
            format!(
                "PostgreSQL at {shown} refused the connection ({}): check the user, password and database name in --database-url",
                d.message()
            )
        }
        _ if sqlite_code(&e) == Some(NOT_A_DATABASE) => return Err(not_a_database(&shown)),
        _ if sqlite_code(&e) == Some(CANNOT_OPEN) => format!(
            "cannot open {shown} (a directory, or not writable?): point --database-url at a file recur may write"
        ),
        _ => {
            return Err(anyhow::Error::new(e).context(format!("cannot open the database {shown}")));
        }
    };
    Err(UsageError::Refused(advice).into())
}

/// SQLite's primary result codes (the low byte of the extended code sqlx reports).
const CANNOT_OPEN: i32 = 14;
const NOT_A_DATABASE: i32 = 26;

fn sqlite_code(e: &crate::store::StoreError) -> Option<i32> {
    use crate::store::StoreError;
    let db = match e {
        StoreError::Db(sqlx::Error::Database(d))
        | StoreError::Migrate(sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(d))) => d,
        _ => return None,
    };
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    db.code()?.parse::<i32>().ok().map(|c| c & 0xff)
}

fn not_a_database(shown: &str) -> anyhow::Error {
    UsageError::Refused(format!(
        "{shown} is not a SQLite database (damaged, or another kind of file): move it aside, or point --database-url elsewhere"
    ))
    .into()
}

/// `bind` cannot be listened on: in use, or not ours to take.
fn listen_failed(bind: std::net::SocketAddr, e: &std::io::Error) -> anyhow::Error {
    let advice = match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "{bind} is in use by another program: stop it, or pass --bind 127.0.0.1:PORT with a free port"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "not allowed to listen on {bind}: use a port above 1023 (--bind 127.0.0.1:8080)"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "{bind} is not an address of this machine: pass --bind 127.0.0.1:PORT or 0.0.0.0:PORT"
        ),
        _ => return anyhow::anyhow!("cannot listen on {bind}: {e}"),
    };
    UsageError::Refused(advice).into()
}

async fn serve(db: Db, config: Config) -> anyhow::Result<()> {
    let bind = config.bind;
    // Certificate problems are found before anything listens.
    let tls = crate::api::server::tls_acceptor(&config.server).map_err(UsageError::Refused)?;
    let config = Arc::new(config);
    let payments = Arc::new(crate::payments::Payments::from_config(&config)?);
    let app = router(AppState {
        db: db.clone(),
        config: config.clone(),
        payments: payments.clone(),
    });
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| listen_failed(bind, &e))?;
    tracing::info!(%bind, tls = tls.is_some(), "recur listening");
    let limits = crate::api::server::Limits::from_config(&config.server);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stop_scheduler = stop_rx.clone();
    let relay = relay(&db, &config, stop_rx.clone());
    let jobs = tokio::spawn(scheduler::run(
        db.clone(),
        config,
        payments,
        false,
        async move {
            let _ = stop_scheduler.wait_for(|s| *s).await;
        },
    ));
    crate::api::server::serve(listener, app, limits, tls, shutdown_signal()).await;
    let _ = stop_tx.send(true);
    if let Ok(Err(e)) = jobs.await {
        tracing::error!(error = %e, "scheduler stopped with an error");
    }
    if let Ok(Err(e)) = relay.await {
        tracing::error!(error = %e, "webhook relay stopped with an error");
    }
    scheduler::release(&db).await?;
    tracing::info!("recur stopped");
    Ok(())
}

/// The webhook relay as a task that stops when `stop` turns true.
fn relay(
    db: &Db,
    config: &Arc<Config>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Result<(), crate::services::ServiceError>> {
    tokio::spawn(crate::services::webhooks::run(
        db.clone(),
        config.clone(),
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    ))
}

async fn worker(db: Db, config: Config) -> anyhow::Result<()> {
    tracing::info!(cron = %config.scheduler.cron, "recur worker started");
    let payments = Arc::new(crate::payments::Payments::from_config(&config)?);
    let config = Arc::new(config);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let relay = relay(&db, &config, stop_rx);
    let result = scheduler::run(db.clone(), config, payments, true, shutdown_signal()).await;
    let _ = stop_tx.send(true);
    if let Ok(Err(e)) = relay.await {
        tracing::error!(error = %e, "webhook relay stopped with an error");
    }
    scheduler::release(&db).await?;
    result?;
    tracing::info!("recur worker stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
