//! Typed configuration: `config/default.toml` (compiled in), then `--config FILE`, then
//! `RECUR_*` environment variables, then command-line flags. Checked once at start-up; an
//! error names the bad key and where it came from.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

const DEFAULTS: &str = include_str!("../config/default.toml");

/// A value that must never reach logs or terminals (passwords inside database URLs).
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Compact,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database_url: Secret,
    pub bind: SocketAddr,
    pub log_format: LogFormat,
    pub database: DatabaseConfig,
    pub server: ServerConfig,
    pub billing: BillingConfig,
    pub scheduler: SchedulerConfig,
    pub dunning: DunningConfig,
    pub webhooks: WebhooksConfig,
    pub alerts: AlertsConfig,
    pub stripe: StripeConfig,
    pub documents: DocumentsConfig,
    pub email: EmailConfig,
    pub secrets: SecretsConfig,
    /// The vault for secrets at rest, loaded on first use (`Config::vault`).
    #[serde(skip)]
    vault: std::sync::OnceLock<std::sync::Arc<crate::vault::Vault>>,
    /// `RECUR_*` environment variables that name no key: left out, and warned about once
    /// logging is up (a shell often carries unrelated `RECUR_…` variables).
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

/// The master key that seals provider and webhook secrets in the database (see `vault`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// 32 bytes in base64; best given as `RECUR_SECRETS__MASTER_KEY`. Unset, the key is read
    /// from `master_key_file`, made there on first use.
    pub master_key: Option<Secret>,
    pub master_key_file: std::path::PathBuf,
    /// Earlier master keys, still accepted for opening while `recur secrets rotate` re-seals.
    pub previous_keys: Vec<Secret>,
}

impl Config {
    /// The vault for secrets at rest (the master key is read, or its file made, on first use).
    pub fn vault(&self) -> Result<std::sync::Arc<crate::vault::Vault>, crate::vault::VaultError> {
        if let Some(v) = self.vault.get() {
            return Ok(v.clone());
        }
        let loaded = std::sync::Arc::new(crate::vault::Vault::load(&self.secrets)?);
        Ok(self.vault.get_or_init(|| loaded).clone())
    }
}

/// Customer e-mail: written as `.eml` files (the default, no mail server needed) or sent over
/// SMTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub transport: EmailTransport,
    /// Where the `file` transport writes `{dir}/{tenant}/{email id}.eml`.
    pub dir: std::path::PathBuf,
    /// The sender address; the display name is the tenant's legal name.
    pub from: String,
    /// Links in e-mails (the hosted invoice page) start with this.
    pub public_url: String,
    /// Deliveries tried before an e-mail is given up (`email.failed`).
    pub max_attempts: u32,
    /// Backoff between tries: `min(base * 2^(n-1), 1 h)`.
    pub retry_base_secs: u64,
    pub smtp: SmtpConfig,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmailTransport {
    File,
    Smtp,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain SMTP (a local relay or a test server only).
    None,
    /// STARTTLS upgrade, required.
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub timeout_secs: u64,
}

/// Where rendered PDFs are stored (`{dir}/{tenant}/{document}.pdf`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentsConfig {
    pub dir: std::path::PathBuf,
}

/// The Stripe provider. Without a secret key, customers paying through Stripe get a hard
/// decline `provider_not_configured` and inbound Stripe webhooks are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    pub api_base: String,
    pub secret_key: Option<Secret>,
    /// Pinned `Stripe-Version`: replies keep the shape this client reads.
    pub api_version: String,
    /// A request that has not answered in this time is treated as unknown (it may have charged).
    pub timeout_ms: u64,
    /// Retries of one request (same idempotency key) after 5xx, 409, 429 or a network error.
    pub max_network_retries: u32,
    /// Backoff between those retries: `min(base * 2^(n-1), max)` with jitter.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// Webhook signing secrets (`whsec_…`); several while a rolled secret is still live.
    pub webhook_secrets: Vec<Secret>,
    /// Signed timestamps further than this from now, either way, are refused.
    pub webhook_tolerance_secs: i64,
    /// Requests per second this process sends one Stripe account with a live key, retries
    /// included (a token bucket; Stripe allows 100 in live mode).
    pub ops_per_second_live: u32,
    /// The same with a test key (Stripe allows 25 in test mode).
    pub ops_per_second_test: u32,
    /// Requests in flight at once to one account; also how many charges a collection pass
    /// runs side by side.
    pub max_concurrent_requests: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DunningConfig {
    /// Days after the first failed charge on which it is retried.
    pub retry_days: Vec<u32>,
    /// cancel | leave_past_due | mark_unpaid, after the last retry fails.
    pub final_action: crate::domain::payment::FinalAction,
    /// An attempt still `pending` this long after it was sent lost its outcome (a crash, a
    /// request cut off between sending and recording): it is resolved by asking the provider,
    /// like an `unknown` one. Longer than a provider call with all its retries can take.
    pub stale_pending_secs: u64,
}

impl DunningConfig {
    pub fn plan(&self) -> crate::domain::payment::DunningPlan {
        crate::domain::payment::DunningPlan {
            retry_days: self.retry_days.clone(),
            final_action: self.final_action,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// When the scheduler wakes (cron with seconds: `0 * * * * *` is every minute).
    pub cron: String,
    /// Subscriptions billed per transaction.
    pub batch_size: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub request_timeout_secs: u64,
    /// A request's headers must arrive within this; idle keep-alive connections close too.
    pub header_timeout_secs: u64,
    /// Connections open at once (keep it below the process's open-file limit).
    pub max_connections: usize,
    /// Terminate TLS in `recur serve` with this certificate chain and private key (PEM), both
    /// or neither; without them it speaks plain HTTP (run it behind a reverse proxy).
    pub tls_cert_file: Option<std::path::PathBuf>,
    pub tls_key_file: Option<std::path::PathBuf>,
    /// Requests per second each API key may make on average (0: no limit)…
    pub rate_limit_per_second: u32,
    /// …and in one burst.
    pub rate_limit_burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingConfig {
    pub invoice_prefix: String,
}

/// When the scheduler raises alerts (`GET /v1/alerts`, `alert.*` events, error logs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Failed ÷ finished payment attempts over the window at or above this fires
    /// `payment_failure_rate`…
    pub payment_failure_rate: f64,
    pub payment_failure_window_mins: i64,
    /// …once the window holds at least this many finished attempts.
    pub payment_failure_min_attempts: i64,
    /// Attempts pending or unknown for longer than this fire `unsettled_attempts`.
    pub unsettled_after_mins: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    pub allow_private_urls: bool,
    /// An endpoint that has not answered in this time has failed this attempt.
    pub timeout_secs: u64,
    /// How often the relay looks for deliveries due.
    pub poll_interval_ms: u64,
}

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// `compact` or `json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist; pass the path of a TOML file")]
    MissingFile(String),
    #[error("config file {0} is a directory; pass the path of a TOML file in it")]
    Directory(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid configuration: `{key}` {message}")]
    BadValue { key: &'static str, message: String },
}

impl Config {
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            if path.is_dir() {
                return Err(ConfigError::Directory(path.display().to_string()));
            }
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            figment = figment.merge(Toml::file(path));
        }
        let known = known_keys();
        let ignored_env: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| env_key(k).is_some_and(|key| !known.contains(&key)))
            .collect();
        let mut config: Config = figment
            .merge(
                Env::prefixed("RECUR_")
                    .split("__")
                    .filter(move |k| known.contains(&k.as_str().to_ascii_lowercase())),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(&e)))?;
        config.check()?;
        config.ignored_env = ignored_env;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let url = self.database_url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return Err(ConfigError::BadValue {
                key: "database_url",
                message: "must start with sqlite:// or postgres://".into(),
            });
        }
        if !(1..=200).contains(&self.database.max_connections) {
            return Err(ConfigError::BadValue {
                key: "database.max_connections",
                message: "must be between 1 and 200".into(),
            });
        }
        if !(1..=3600).contains(&self.server.request_timeout_secs) {
            return Err(ConfigError::BadValue {
                key: "server.request_timeout_secs",
                message: "must be between 1 and 3600".into(),
            });
        }
        if !(1..=300).contains(&self.server.header_timeout_secs) {
            return Err(ConfigError::BadValue {
                key: "server.header_timeout_secs",
                message: "must be between 1 and 300".into(),
            });
        }
        if !(1..=100_000).contains(&self.server.max_connections) {
            return Err(ConfigError::BadValue {
                key: "server.max_connections",
                message: "must be between 1 and 100000".into(),
            });
        }
        if self.server.tls_cert_file.is_some() != self.server.tls_key_file.is_some() {
            return Err(ConfigError::BadValue {
                key: "server.tls_cert_file",
                message: "tls_cert_file and tls_key_file are given together (or neither)".into(),
            });
        }
        if self.server.rate_limit_per_second > 100_000
            || self.server.rate_limit_burst > 1_000_000
            || (self.server.rate_limit_per_second > 0 && self.server.rate_limit_burst == 0)
        {
            return Err(ConfigError::BadValue {
                key: "server.rate_limit_per_second",
                message: "rate_limit_per_second must be 0 (no limit) to 100000, and rate_limit_burst 1 to 1000000 when there is a limit".into(),
            });
        }
        if let Err(e) = cron::Schedule::from_str(&self.scheduler.cron) {
            return Err(ConfigError::BadValue {
                key: "scheduler.cron",
                message: format!("is not a cron expression with seconds: {e}"),
            });
        }
        if !(1..=5000).contains(&self.scheduler.batch_size) {
            return Err(ConfigError::BadValue {
                key: "scheduler.batch_size",
                message: "must be between 1 and 5000".into(),
            });
        }
        if let Err(message) = crate::domain::payment::DunningPlan::new(
            self.dunning.retry_days.clone(),
            self.dunning.final_action,
        ) {
            return Err(ConfigError::BadValue {
                key: "dunning.retry_days",
                message: message.into(),
            });
        }
        if !(self.stripe.api_base.starts_with("https://")
            || self.stripe.api_base.starts_with("http://"))
        {
            return Err(ConfigError::BadValue {
                key: "stripe.api_base",
                message: "must be an http(s) URL".into(),
            });
        }
        if let Some(key) = &self.stripe.secret_key
            && crate::payments::stripe::key_mode(key.expose()).is_none()
        {
            return Err(ConfigError::BadValue {
                key: "stripe.secret_key",
                message: "must be a Stripe secret or restricted key (sk_test_…, sk_live_…, rk_test_…, rk_live_…); its prefix decides which tenants may charge through it".into(),
            });
        }
        for key in self
            .secrets
            .master_key
            .iter()
            .chain(&self.secrets.previous_keys)
        {
            crate::vault::Vault::with_key(key).map_err(|e| ConfigError::BadValue {
                key: "secrets.master_key",
                message: e.to_string(),
            })?;
        }
        if !(1..=600_000).contains(&self.stripe.timeout_ms)
            || self.stripe.max_network_retries > 10
            || self.stripe.retry_base_ms > self.stripe.retry_max_ms
        {
            return Err(ConfigError::BadValue {
                key: "stripe",
                message: "timeout_ms must be 1..600000, max_network_retries at most 10, retry_base_ms at most retry_max_ms".into(),
            });
        }
        if !(1..=10_000).contains(&self.stripe.ops_per_second_live)
            || !(1..=10_000).contains(&self.stripe.ops_per_second_test)
            || !(1..=1000).contains(&self.stripe.max_concurrent_requests)
        {
            return Err(ConfigError::BadValue {
                key: "stripe",
                message: "ops_per_second_live and ops_per_second_test must be 1..10000, max_concurrent_requests 1..1000".into(),
            });
        }
        if !(1..=3600).contains(&self.stripe.webhook_tolerance_secs) {
            return Err(ConfigError::BadValue {
                key: "stripe.webhook_tolerance_secs",
                message: "must be between 1 and 3600".into(),
            });
        }
        let p = &self.billing.invoice_prefix;
        if p.is_empty() || p.len() > 12 || !p.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ConfigError::BadValue {
                key: "billing.invoice_prefix",
                message: "must be 1 to 12 letters or digits".into(),
            });
        }
        Ok(())
    }
}

/// Keys that may be set though the defaults leave them unset.
const UNSET_KEYS: &[&str] = &[
    "secrets.master_key",
    "server.tls_cert_file",
    "server.tls_key_file",
    "stripe.secret_key",
    "email.smtp.username",
    "email.smtp.password",
];

/// Every configuration key as a dotted path (`email.smtp.port`): the defaults' leaves and
/// [`UNSET_KEYS`].
fn known_keys() -> std::collections::BTreeSet<String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut std::collections::BTreeSet<String>) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => walk(&key, t, out),
                _ => {
                    out.insert(key);
                }
            }
        }
    }
    let mut out: std::collections::BTreeSet<String> =
        UNSET_KEYS.iter().map(|k| (*k).to_owned()).collect();
    if let Ok(defaults) = DEFAULTS.parse::<toml::Table>() {
        walk("", &defaults, &mut out);
    }
    out
}

/// `RECUR_EMAIL__SMTP__PORT` → `email.smtp.port`; None for other variables.
/// The prefix matches in any case, as figment's does.
fn env_key(var: &str) -> Option<String> {
    let (prefix, rest) = var.split_at_checked(6)?;
    prefix
        .eq_ignore_ascii_case("RECUR_")
        .then(|| rest.to_ascii_lowercase().replace("__", "."))
}

/// Figment's error with the key path and the layer it came from, on one line, with any value
/// of `database_url` left out (it may hold a password).
fn describe(e: &figment::Error) -> String {
    let key = e.path.join(".");
    let origin = e.metadata.as_ref().map_or_else(
        || "defaults".to_owned(),
        |m| match &m.source {
            Some(figment::Source::File(path)) => path.display().to_string(),
            _ => m.name.to_string(),
        },
    );
    let kind = if key == "database_url" {
        "invalid value".to_owned()
    } else {
        // TOML syntax errors span several lines: where, the offending line with a caret
        // under it, then what is wrong. Where and what, on one line, find the mistake.
        let text = e.kind.to_string();
        let quoted = |l: &str| {
            l.starts_with('|')
                || l.split_once(" |")
                    .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
        };
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !quoted(l))
            .collect::<Vec<_>>()
            .join(": ")
    };
    if key.is_empty() {
        format!("{kind} (from {origin})")
    } else {
        format!("`{key}`: {kind} (from {origin})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_are_valid() {
        let c = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(c.billing.invoice_prefix, "INV");
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = Secret("postgres://u:hunter2@h/db".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn flags_override_and_are_checked() {
        let bad = Overrides {
            database_url: Some("mysql://x".into()),
            bind: None,
            log_format: None,
        };
        let err = Config::load(None, &bad).unwrap_err().to_string();
        assert!(err.contains("database_url"), "{err}");
        let bad_bind = Overrides {
            database_url: None,
            bind: Some("nowhere".into()),
            log_format: None,
        };
        let err = Config::load(None, &bad_bind).unwrap_err().to_string();
        assert!(err.contains("bind"), "{err}");
    }

    #[test]
    fn environment_keys_map_to_the_defaults() {
        let known = known_keys();
        for key in [
            "database_url",
            "email.smtp.port",
            "stripe.secret_key",
            "dunning.retry_days",
        ] {
            assert!(known.contains(key), "{key}");
        }
        assert_eq!(
            env_key("RECUR_EMAIL__SMTP__PORT").as_deref(),
            Some("email.smtp.port")
        );
        assert_eq!(env_key("PATH"), None);
        assert_eq!(env_key("recur_bind").as_deref(), Some("bind"));
        assert!(!known.contains(&env_key("RECUR_HOME").unwrap()));
    }

    #[test]
    fn a_directory_is_not_a_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::load(Some(dir.path()), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
    }

    #[test]
    fn a_toml_error_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(
            &file,
            "bind = \"127.0.0.1:1\"\n[database\nmax_connections = 3\n",
        )
        .unwrap();
        let err = Config::load(Some(&file), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("bad.toml") && err.contains("line 2"), "{err}");
        assert!(!err.contains('^'), "{err}");
    }

    #[test]
    fn a_missing_config_file_is_named() {
        let err = Config::load(
            Some(Path::new("/nonexistent/recur.toml")),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/recur.toml"));
    }
}
