//! All SQL lives here. One body of code serves SQLite and PostgreSQL: every store function is
//! written once inside [`on_tx!`], which expands it for both connection types, so a query that
//! compiles for one backend is checked by the compiler for the other as well.
//!
//! Conventions (see NOTES.md): `$n` placeholders, money as BIGINT minor units, decimals as TEXT,
//! JSON documents as TEXT, times as `timestamptz` (PostgreSQL) / RFC 3339 UTC text (SQLite,
//! always `+00:00` and whole seconds, so string order is time order), ids generated in Rust.

pub mod alerts;
pub mod api_keys;
pub mod balances;
pub mod billing;
pub mod bulk;
pub mod catalogue;
pub mod credit_notes;
pub mod customers;
pub mod documents;
pub mod emails;
pub mod events;
pub mod idempotency;
pub mod invoices;
pub mod leases;
pub mod payments;
pub mod privacy;
pub mod provider_accounts;
pub mod provider_events;
pub mod reports;
pub mod rows;
pub mod subscriptions;
pub mod tenants;
pub mod usage;
pub mod webhooks;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Expands `$body` once per backend with `$c` bound to the transaction's connection.
macro_rules! on_tx {
    ($tx:expr, |$c:ident| $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite(t, _) => {
                let $c: &mut sqlx::SqliteConnection = &mut **t;
                $body
            }
            $crate::store::Tx::Postgres(t) => {
                let $c: &mut sqlx::PgConnection = &mut **t;
                $body
            }
        }
    };
}
pub(crate) use on_tx;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique constraint rejected the write; carries the constraint (index) name.
    #[error("unique constraint `{0}` violated")]
    Conflict(String),
    #[error("stored value in column `{column}` is invalid: {detail}")]
    Corrupt { column: String, detail: String },
    #[error("unsupported database url `{0}` (expected sqlite:// or postgres://)")]
    UnsupportedUrl(String),
    #[error("could not create the database directory {0}: {1}")]
    Directory(String, std::io::Error),
    #[error("the database server did not answer within 10 s")]
    ConnectTimeout,
}

impl StoreError {
    /// Maps a unique violation to [`StoreError::Conflict`] so callers can answer 409 without
    /// matching on driver errors (one helper, like realworld's `on_constraint`).
    pub fn from_write(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            return StoreError::Conflict(db.constraint().unwrap_or(db.message()).to_owned());
        }
        StoreError::Db(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool, WriteGate),
    Postgres(PgPool),
}

/// A write transaction on SQLite holds the database's [`WriteGate`] until it ends.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>, Option<OwnedSemaphorePermit>),
    Postgres(Transaction<'static, Postgres>),
}

/// SQLite lets one connection write at a time. Write transactions of this process queue here,
/// first come first served, before `BEGIN IMMEDIATE`; without it they queue in SQLite's busy
/// handler, which sleeps and retries in growing steps (up to 100 ms each), and a busy server
/// answered some writes hundreds of milliseconds late (`recur bench api`, see Benchmarks).
/// Another process on the same file still meets the busy handler.
#[derive(Clone, Debug)]
pub struct WriteGate(Arc<Semaphore>);

impl WriteGate {
    fn new() -> WriteGate {
        WriteGate(Arc::new(Semaphore::new(1)))
    }

    /// Waits for the gate as long as SQLite's busy timeout would have waited for the lock.
    async fn enter(&self) -> Result<OwnedSemaphorePermit, StoreError> {
        tokio::time::timeout(SQLITE_BUSY_TIMEOUT, self.0.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::Db(sqlx::Error::PoolTimedOut))?
            .map_err(|_| StoreError::Db(sqlx::Error::PoolClosed))
    }
}

const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, StoreError> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .pragma("cache_size", "-16384")
                .pragma("temp_store", "memory")
                .foreign_keys(true);
            if let Some(dir) = opts.get_filename().parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Directory(dir.display().to_string(), e))?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .connect_with(opts)
                .await?;
            Ok(Db::Sqlite(pool, WriteGate::new()))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url)?;
            // One direct connection first: a server that is down or refuses fails now, with
            // its own error, instead of after the pool's acquire timeout.
            let probe = tokio::time::timeout(
                Duration::from_secs(10),
                <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts),
            )
            .await
            .map_err(|_| StoreError::ConnectTimeout)??;
            let _ = sqlx::Connection::close(probe).await;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await?;
            Ok(Db::Postgres(pool))
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(..) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// A write transaction. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`), so
    /// a transaction that reads then writes cannot fail half-way with SQLITE_BUSY.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Db::Sqlite(p, gate) => {
                let permit = gate.enter().await?;
                Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?, Some(permit))
            }
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// A read-only unit of work: a consistent snapshot without taking SQLite's write lock.
    pub async fn read(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Db::Sqlite(p, _) => Tx::Sqlite(p.begin().await?, None),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Whether the database (the schema in use, on PostgreSQL) has no table at all: not even
    /// recur's own, nor another application's.
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        let tables: i64 = match self {
            Db::Sqlite(p, _) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'")
                    .fetch_one(p)
                    .await?
            }
            Db::Postgres(p) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()",
                )
                .fetch_one(p)
                .await?
            }
        };
        Ok(tables == 0)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Db::Sqlite(p, _) => migrator(SQLITE_MIGRATIONS).run(p).await?,
            Db::Postgres(p) => migrator(POSTGRES_MIGRATIONS).run(p).await?,
        }
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(p, _) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }
}

impl Tx {
    /// Plans this transaction's statements for their own parameters each time (PostgreSQL).
    /// For work on tables that grow fast under it (collection's attempts and invoices, usage
    /// batches): a plan cached while a table was small (a sequential scan) would otherwise
    /// stay, and each batch would read every row again.
    pub async fn plan_each_statement(&mut self) -> Result<(), StoreError> {
        if let Tx::Postgres(t) = self {
            sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
                .execute(&mut **t)
                .await?;
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            // The gate opens once the commit is done.
            Tx::Sqlite(t, _permit) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// Migrations are compiled into the binary so `recur` runs from any directory.
type MigrationFile = (i64, &'static str, &'static str);

const SQLITE_MIGRATIONS: &[MigrationFile] = &[
    (
        1,
        "foundation",
        include_str!("../../migrations/sqlite/0001_foundation.sql"),
    ),
    (
        2,
        "billing",
        include_str!("../../migrations/sqlite/0002_billing.sql"),
    ),
    (
        3,
        "payments",
        include_str!("../../migrations/sqlite/0003_payments.sql"),
    ),
    (
        4,
        "provider_sync",
        include_str!("../../migrations/sqlite/0004_provider_sync.sql"),
    ),
    (
        5,
        "reliability",
        include_str!("../../migrations/sqlite/0005_reliability.sql"),
    ),
    (
        6,
        "documents",
        include_str!("../../migrations/sqlite/0006_documents.sql"),
    ),
    (
        7,
        "finance",
        include_str!("../../migrations/sqlite/0007_finance.sql"),
    ),
    (
        8,
        "quiet_backlog",
        include_str!("../../migrations/sqlite/0008_quiet_backlog.sql"),
    ),
    (
        9,
        "webhooks",
        include_str!("../../migrations/sqlite/0009_webhooks.sql"),
    ),
    (
        10,
        "audit",
        include_str!("../../migrations/sqlite/0010_audit.sql"),
    ),
    (
        11,
        "alerts",
        include_str!("../../migrations/sqlite/0011_alerts.sql"),
    ),
    (
        12,
        "api_keys",
        include_str!("../../migrations/sqlite/0012_api_keys.sql"),
    ),
    (
        13,
        "privacy",
        include_str!("../../migrations/sqlite/0013_privacy.sql"),
    ),
    (
        14,
        "provider_accounts",
        include_str!("../../migrations/sqlite/0014_provider_accounts.sql"),
    ),
    (
        15,
        "retention",
        include_str!("../../migrations/sqlite/0015_retention.sql"),
    ),
    (
        16,
        "usage_identifiers",
        include_str!("../../migrations/sqlite/0016_usage_identifiers.sql"),
    ),
];

const POSTGRES_MIGRATIONS: &[MigrationFile] = &[
    (
        1,
        "foundation",
        include_str!("../../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "billing",
        include_str!("../../migrations/postgres/0002_billing.sql"),
    ),
    (
        3,
        "payments",
        include_str!("../../migrations/postgres/0003_payments.sql"),
    ),
    (
        4,
        "provider_sync",
        include_str!("../../migrations/postgres/0004_provider_sync.sql"),
    ),
    (
        5,
        "reliability",
        include_str!("../../migrations/postgres/0005_reliability.sql"),
    ),
    (
        6,
        "documents",
        include_str!("../../migrations/postgres/0006_documents.sql"),
    ),
    (
        7,
        "finance",
        include_str!("../../migrations/postgres/0007_finance.sql"),
    ),
    (
        8,
        "quiet_backlog",
        include_str!("../../migrations/postgres/0008_quiet_backlog.sql"),
    ),
    (
        9,
        "webhooks",
        include_str!("../../migrations/postgres/0009_webhooks.sql"),
    ),
    (
        10,
        "audit",
        include_str!("../../migrations/postgres/0010_audit.sql"),
    ),
    (
        11,
        "alerts",
        include_str!("../../migrations/postgres/0011_alerts.sql"),
    ),
    (
        12,
        "api_keys",
        include_str!("../../migrations/postgres/0012_api_keys.sql"),
    ),
    (
        13,
        "privacy",
        include_str!("../../migrations/postgres/0013_privacy.sql"),
    ),
    (
        14,
        "provider_accounts",
        include_str!("../../migrations/postgres/0014_provider_accounts.sql"),
    ),
    (
        15,
        "retention",
        include_str!("../../migrations/postgres/0015_retention.sql"),
    ),
    (
        16,
        "usage_identifiers",
        include_str!("../../migrations/postgres/0016_usage_identifiers.sql"),
    ),
];

fn migrator(files: &'static [MigrationFile]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    (*name).into(),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(*sql),
                    false,
                )
            })
            .collect(),
    )
}

/// A database URL with any password replaced, for error messages and logs: the one in the
/// user part and a `password=` query parameter (which PostgreSQL URLs also accept).
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return raw.to_owned();
    };
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return raw.to_owned();
    }
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" { "***".into() } else { v };
                (k.into_owned(), v.into_owned())
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::{SQLITE_MIGRATIONS, migrator, redact_url};

    /// An upgrade finds finalized invoices and credit notes the outbox never knew: they are
    /// rendered without an e-mail; what is finalized after it is announced.
    #[tokio::test]
    async fn an_upgrade_renders_the_backlog_quietly() {
        use std::str::FromStr;
        let options = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite::memory:")
            .unwrap()
            .foreign_keys(false);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let before_documents = &SQLITE_MIGRATIONS[..5];
        migrator(before_documents).run(&pool).await.unwrap();
        let invoice = |id: &'static str, number: Option<&'static str>| {
            sqlx::query(
                "INSERT INTO invoices (tenant_id, id, number, customer_id, status, billing_reason,
                     collection_method, currency, period_start, period_end, subtotal, discount, tax,
                     total, total_tax_amounts, tax_exempt, amount_paid, amount_due, attempt_count,
                     created_at)
                 VALUES ('t', $1, $2, 'c', 'paid', 'subscription_cycle', 'charge_automatically',
                     'EUR', 'p', 'p', 100, 0, 0, 100, '[]', 'none', 100, 0, 1, 'c')",
            )
            .bind(id)
            .bind(number)
        };
        invoice("in_old", Some("INV-1"))
            .execute(&pool)
            .await
            .unwrap();
        invoice("in_draft", None).execute(&pool).await.unwrap();
        migrator(SQLITE_MIGRATIONS).run(&pool).await.unwrap();
        invoice("in_new", Some("INV-2"))
            .execute(&pool)
            .await
            .unwrap();
        let announced: Vec<(String, bool)> =
            sqlx::query_as("SELECT id, announce_pdf FROM invoices ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            announced,
            [
                ("in_draft".to_owned(), true),
                ("in_new".to_owned(), true),
                ("in_old".to_owned(), false)
            ]
        );
    }

    #[test]
    fn passwords_never_leave_in_urls() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://var/recur.db"), "sqlite://var/recur.db");
        let query = redact_url("postgres://u@h/db?sslmode=require&password=hunter2");
        assert!(
            !query.contains("hunter2") && query.contains("sslmode=require"),
            "{query}"
        );
    }
}

/// Where a batched `(time, id)` read resumes: after the last row of the previous batch, or
/// at the window's start (every id sorts after `""`).
pub(crate) fn resume_at(
    from: chrono::DateTime<chrono::Utc>,
    after: Option<(chrono::DateTime<chrono::Utc>, &str)>,
) -> (chrono::DateTime<chrono::Utc>, &str) {
    after.unwrap_or((from, ""))
}

/// Appends `(…)` with one bound parameter per id: the IN list of a batch query.
pub(crate) fn push_id_list<'i, DB: sqlx::Database>(
    q: &mut sqlx::QueryBuilder<DB>,
    ids: impl IntoIterator<Item = &'i str>,
) where
    for<'t> &'i str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    q.push("(");
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(id);
    }
    q.push(")");
}

/// Cursor pagination: newest first, `starting_after` is the last id the caller saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub starting_after: Option<String>,
}

impl Page {
    /// One row more than asked for tells whether there is a next page.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    pub fn split<T>(&self, mut rows: Vec<T>) -> (Vec<T>, bool) {
        let limit = self.limit as usize;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        (rows, has_more)
    }
}

/// The tables a list pages over, by the prefix of their ids.
const LISTED: &[(&str, &str)] = &[
    ("cus", "customers"),
    ("price", "prices"),
    ("txr", "tax_rates"),
    ("coupon", "coupons"),
    ("sub", "subscriptions"),
    ("in", "invoices"),
    ("pay", "payment_attempts"),
    ("cn", "credit_notes"),
    ("cbtxn", "customer_balance_transactions"),
    ("evt", "events"),
    ("alrt", "alerts"),
    ("we", "webhook_endpoints"),
    ("whd", "webhook_deliveries"),
];

/// Whether the tenant has a row with this id in the table its prefix names (a list's
/// `starting_after`); `None` when the prefix names no listed table.
pub async fn listed_id_exists(
    tx: &mut Tx,
    tenant: &str,
    prefix: &str,
    id: &str,
) -> Result<Option<bool>, StoreError> {
    let Some((_, table)) = LISTED.iter().find(|(p, _)| *p == prefix) else {
        return Ok(None);
    };
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {table} WHERE tenant_id = $1 AND id = $2"
    ));
    let n: i64 = on_tx!(tx, |c| sqlx::query_scalar(sql)
        .bind(tenant)
        .bind(id)
        .fetch_one(&mut *c)
        .await?);
    Ok(Some(n > 0))
}
