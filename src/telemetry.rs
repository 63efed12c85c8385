//! Logging with `tracing`: compact for people, JSON for collectors, filtered by `RUST_LOG`.
//! Logs go to stderr so that stdout carries only command output (`tenant create --json`), with
//! colour only when stderr is a terminal (a file or a collector gets plain text).

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// `level`: what is logged when `RUST_LOG` is unset (`info`, or `warn` for commands whose
/// output is their own, like the demo's progress bar).
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},sqlx=warn,tower_http=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Compact => builder.compact().try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
