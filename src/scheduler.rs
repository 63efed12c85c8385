//! The scheduler: wakes on the configured cron expression and runs what is due for every
//! tenant — live tenants up to the system time, test tenants up to their own clock. Cron only
//! decides when to look; what is due follows each subscription's calendar.
//!
//! On PostgreSQL any number of schedulers may run: they split due subscriptions with
//! `FOR UPDATE SKIP LOCKED`. On SQLite there is one writer, so one scheduler holds a lease;
//! `recur worker` exits with a message when another holds it, and the scheduler inside
//! `recur serve` waits and retries on each tick.

use crate::billing::run::{RunSummary, run_due};
use crate::config::Config;
use crate::domain::event::EventType;
use crate::domain::ids::TenantId;
use crate::domain::tenant::{Mode, Tenant, truncate_to_seconds};
use crate::payments::Payments;
use crate::payments::collect::collect_due;
use crate::services::ServiceError;
use crate::services::clock::advance_clock;
use crate::store::{Backend, Db, StoreError, events, idempotency, leases, tenants};
use chrono::{DateTime, Duration, Utc};
use std::str::FromStr;

const LEASE: &str = "scheduler";

/// How long an `Idempotency-Key` is honoured (as Stripe's are).
const KEY_LIFETIME: Duration = Duration::hours(24);

/// The leases row for the installation-wide scheduler lease.
fn global() -> TenantId {
    TenantId::parse("ten_00000000000000000000000000000000").unwrap_or_else(|_| TenantId::generate())
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(
        "another scheduler ({holder}) holds the SQLite scheduler lease until {until}; only one may run on SQLite (use PostgreSQL for several workers)"
    )]
    LeaseHeld {
        holder: String,
        until: DateTime<Utc>,
    },
    #[error("invalid scheduler.cron: {0}")]
    Cron(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// What one pass did for one tenant: its summary, or the error that stopped its run (other
/// tenants' runs go on regardless).
pub struct TenantRun {
    pub tenant: Tenant,
    pub outcome: Result<RunSummary, SchedulerError>,
}

/// Tenants run at once in one pass: a tenant whose provider is slow or down holds one of
/// these, never the others' billing and charges.
const TENANTS_AT_ONCE: usize = 4;

/// One pass: everything due by `at` (default: now; a test tenant's own clock) for one tenant
/// or all, [`TENANTS_AT_ONCE`] tenants at a time. For a test tenant, a later `at` advances its
/// clock. A tenant whose run fails is logged and recorded as a `tenant.run_failed` event; the
/// others go on. The result is in tenant order.
pub async fn run_once(
    db: &Db,
    config: &Config,
    payments: &Payments,
    only: Option<&TenantId>,
    at: Option<DateTime<Utc>>,
) -> Result<Vec<TenantRun>, SchedulerError> {
    use futures::StreamExt;
    // The time between two wake-ups: a tenant's pass longer than this overran.
    let interval = cron::Schedule::from_str(&config.scheduler.cron)
        .ok()
        .and_then(|s| {
            let mut next = s.upcoming(Utc);
            let (a, b) = (next.next()?, next.next()?);
            (b - a).to_std().ok()
        });
    let mut tx = db.read().await?;
    let all = tenants::list_tenants(&mut tx).await?;
    tx.commit().await?;
    let mut out: Vec<TenantRun> = futures::stream::iter(
        all.into_iter()
            .filter(|t| only.is_none_or(|id| &t.id == id)),
    )
    .map(|tenant| async move {
        let started = std::time::Instant::now();
        let outcome = run_tenant(db, config, payments, &tenant, at).await;
        let (boundaries, invoices) = outcome
            .as_ref()
            .map_or((0, 0), |s| (s.boundaries, s.invoices_created));
        let took = started.elapsed();
        crate::metrics::billing_pass(took.as_secs_f64(), outcome.is_ok(), boundaries, invoices);
        if let Some(every) = interval
            && took > every
            && let Err(e) = crate::services::alerts::overrun(db, &tenant, took, every).await
        {
            tracing::error!(tenant.id = %tenant.id, error = %e, "could not raise the overrun alert");
        }
        if let Err(e) = crate::services::alerts::evaluate(db, config, &tenant).await {
            tracing::error!(tenant.id = %tenant.id, error = %e, "evaluating alerts failed");
        }
        if let Err(e) = &outcome {
            tracing::error!(tenant.id = %tenant.id, error = %e, "tenant's run failed; the others go on");
            if let Err(write) = record_failure(db, &tenant, e).await {
                tracing::error!(tenant.id = %tenant.id, error = %write, "could not record the failed run");
            }
        }
        TenantRun { tenant, outcome }
    })
    .buffer_unordered(TENANTS_AT_ONCE)
    .collect()
    .await;
    out.sort_by(|a, b| a.tenant.id.as_str().cmp(b.tenant.id.as_str()));
    // Documents and e-mails once every tenant is billed and charged, within a time budget:
    // a dead SMTP server or a rendering backlog never delays billing, nor holds the pass
    // (and on SQLite the scheduler lease) for long; what is left waits for the next pass.
    let pass_ends = std::time::Instant::now() + DOCUMENTS_PER_PASS;
    futures::stream::iter(&out)
        .for_each_concurrent(TENANTS_AT_ONCE, |run| async move {
            let deadline = pass_ends.min(std::time::Instant::now() + DOCUMENTS_PER_TENANT);
            documents(db, config, &run.tenant, at, deadline).await;
        })
        .await;
    Ok(out)
}

/// How long one pass spends on documents and e-mails, in all and for one tenant.
const DOCUMENTS_PER_PASS: std::time::Duration = std::time::Duration::from_secs(120);
const DOCUMENTS_PER_TENANT: std::time::Duration = std::time::Duration::from_secs(30);

/// Renders the tenant's new PDFs, queues its reminders and delivers its due e-mails (the
/// last attach the PDFs and link the hosted pages made first). Failures are logged and
/// retried next pass.
async fn documents(
    db: &Db,
    config: &Config,
    tenant: &Tenant,
    at: Option<DateTime<Utc>>,
    deadline: std::time::Instant,
) {
    let dir = &config.documents.dir;
    match crate::services::documents::render_pending(db, dir, tenant, deadline).await {
        Ok(r) if r.failed > 0 => {
            tracing::warn!(tenant.id = %tenant.id, failed = r.failed, "some documents could not be rendered")
        }
        Ok(_) => {}
        Err(e) => tracing::error!(tenant.id = %tenant.id, error = %e, "rendering documents failed"),
    }
    // Only a test clock moves the purge's "now"; `--at` on a live tenant never purges early.
    let now = match (tenant.mode, at) {
        (Mode::Test, Some(at)) => at.max(tenant.now(Utc::now())),
        (Mode::Test | Mode::Live, _) => tenant.now(Utc::now()),
    };
    if let Err(e) = crate::services::privacy::purge_expired(db, config, tenant, now).await {
        tracing::error!(tenant.id = %tenant.id, error = %e, "purging expired documents failed");
    }
    // A test tenant's clock has moved to `at` when the pass advanced it.
    let now = tenant.now(Utc::now());
    if let Err(e) =
        crate::services::email::queue_reminders(db, tenant, at.unwrap_or(now).max(now)).await
    {
        tracing::error!(tenant.id = %tenant.id, error = %e, "queuing reminders failed");
    }
    let deliver =
        crate::services::email::deliver_due(db, config, &tenant.id, Utc::now(), Some(deadline));
    if let Err(e) = deliver.await {
        tracing::error!(tenant.id = %tenant.id, error = %e, "delivering e-mails failed");
    }
}

async fn run_tenant(
    db: &Db,
    config: &Config,
    payments: &Payments,
    tenant: &Tenant,
    at: Option<DateTime<Utc>>,
) -> Result<RunSummary, SchedulerError> {
    let batch = config.scheduler.batch_size;
    let summary = match (tenant.mode, tenant.clock_time, at) {
        (Mode::Test, Some(clock), Some(at)) if at > clock => {
            advance_clock(db, payments, tenant, at, batch)
                .await?
                .summary
        }
        (Mode::Test, Some(clock), Some(_) | None) => {
            let billed = run_due(db, tenant, clock, batch).await?;
            collect_due(db, tenant, payments, clock).await?;
            billed
        }
        (Mode::Live | Mode::Test, _, at) => {
            let now = at.unwrap_or_else(|| truncate_to_seconds(Utc::now()));
            let billed = run_due(db, tenant, now, batch).await?;
            collect_due(db, tenant, payments, now).await?;
            billed
        }
    };
    Ok(summary)
}

/// The failed run as an event of the tenant's, so operators and webhooks hear of it.
async fn record_failure(db: &Db, tenant: &Tenant, e: &SchedulerError) -> Result<(), StoreError> {
    let now = truncate_to_seconds(Utc::now());
    let mut tx = db.begin().await?;
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::TenantRunFailed,
        tenant.id.as_str(),
        &serde_json::json!({ "tenant": tenant.id, "error": e.to_string() }),
        now,
    )
    .await?;
    tx.commit().await
}

/// Runs until `shutdown` resolves.
pub async fn run(
    db: Db,
    config: std::sync::Arc<Config>,
    payments: std::sync::Arc<Payments>,
    exit_if_busy: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SchedulerError> {
    let schedule = cron::Schedule::from_str(&config.scheduler.cron)
        .map_err(|e| SchedulerError::Cron(e.to_string()))?;
    let holder = leases::holder_name();
    tokio::pin!(shutdown);
    let mut first = true;
    loop {
        if !first {
            let Some(next) = schedule.upcoming(Utc).next() else {
                return Ok(());
            };
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
        let may_run = match db.backend() {
            Backend::Postgres => true,
            Backend::Sqlite => {
                let lease_for = Duration::minutes(5);
                let got = leases::acquire(&db, &global(), LEASE, &holder, lease_for).await?;
                if !got && (exit_if_busy || first) {
                    let (holder, until) = leases::current(&db, &global(), LEASE)
                        .await?
                        .unwrap_or_default();
                    let err = SchedulerError::LeaseHeld { holder, until };
                    if exit_if_busy {
                        return Err(err);
                    }
                    tracing::warn!(error = %err, "scheduler waiting for the lease");
                }
                got
            }
        };
        first = false;
        if may_run {
            match idempotency::prune_keys(&db, Utc::now() - KEY_LIFETIME).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(keys = n, "pruned expired idempotency keys"),
                Err(e) => tracing::error!(error = %e, "pruning idempotency keys failed"),
            }
            match run_once(&db, &config, &payments, None, None).await {
                Ok(results) => {
                    for run in &results {
                        if let Ok(s) = &run.outcome
                            && s.boundaries > 0
                        {
                            tracing::info!(tenant.id = %run.tenant.id, invoices = s.invoices_created, boundaries = s.boundaries, "scheduled run");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "scheduled run failed"),
            }
        }
    }
}

/// Releases the SQLite lease on a clean stop so the next scheduler need not wait it out.
pub async fn release(db: &Db) -> Result<(), StoreError> {
    leases::release(db, &global(), LEASE, &leases::holder_name()).await
}
