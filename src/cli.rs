//! The `recur` command line: parses, loads configuration, and calls the library.

use crate::api::{AppState, router};
use crate::config::{Config, Overrides};
use crate::domain::tenant::Mode;
use crate::services::tenants::create_tenant;
use crate::store::{Db, redact_url};
use anyhow::Context;
use chrono::Utc;
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
    /// Apply database migrations and exit.
    Migrate,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
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
    },
}

/// Errors in configuration or arguments: exit code 2, like clap's own.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UsageError(#[from] crate::config::ConfigError);

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let bind = match &cli.command {
        Command::Serve { bind } => bind.clone(),
        Command::Migrate | Command::Tenant { .. } => None,
    };
    let config = Config::load(
        cli.config.as_deref(),
        &Overrides {
            database_url: cli.database_url.clone(),
            bind,
        },
    )
    .map_err(UsageError::from)?;
    crate::telemetry::init(config.log_format);
    let db = open(&config).await?;
    let result = match cli.command {
        Command::Serve { .. } => serve(db.clone(), config).await,
        Command::Migrate => {
            println!(
                "migrations applied to {}",
                redact_url(config.database_url.expose())
            );
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::Create { name, mode, json },
        } => {
            let (tenant, key) =
                create_tenant(&db, &name, mode, &config.billing.invoice_prefix, Utc::now())
                    .await
                    .map_err(|e| anyhow::anyhow!(e.to_string()))?;
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

/// Connects and applies pending migrations, so every command works on a fresh database.
async fn open(config: &Config) -> anyhow::Result<Db> {
    let url = config.database_url.expose();
    let db = Db::connect(url, config.database.max_connections)
        .await
        .with_context(|| format!("cannot open database {}", redact_url(url)))?;
    db.migrate().await.context("cannot migrate the database")?;
    Ok(db)
}

async fn serve(db: Db, config: Config) -> anyhow::Result<()> {
    let bind = config.bind;
    let app = router(AppState {
        db,
        config: Arc::new(config),
    });
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    tracing::info!(%bind, "recur listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("recur stopped");
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
