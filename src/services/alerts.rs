//! Alerts raised by the scheduler after each tenant's pass: the payment failure rate over a
//! window, attempts left unsettled, a pass that overran the scheduler's interval. (Disabled
//! webhook endpoints and reconciliation discrepancies raise theirs where they happen.)

use super::ServiceError;
use crate::config::Config;
use crate::domain::event::EventType;
use crate::domain::tenant::{Tenant, truncate_to_seconds};
use crate::store::alerts::{self as store, Alert, Raise};
use crate::store::{Db, Page};
use chrono::{Duration, Utc};

/// Raises the tenant-wide alert `kind` when `holds` carries its message, resolves it
/// otherwise; 1 when this call raised it.
async fn condition(
    tx: &mut crate::store::Tx,
    tenant: &Tenant,
    kind: EventType,
    holds: Option<String>,
    now: chrono::DateTime<Utc>,
) -> Result<usize, ServiceError> {
    match holds {
        Some(message) => {
            let raised =
                store::raise(tx, &tenant.id, kind, "", &message, Raise::Condition, now).await?;
            Ok(usize::from(raised))
        }
        None => {
            store::resolve(tx, &tenant.id, kind, "", now).await?;
            Ok(0)
        }
    }
}

/// Checks the tenant's conditions, raising what crossed its threshold and resolving what
/// cleared; returns how many alerts it raised.
pub async fn evaluate(db: &Db, config: &Config, tenant: &Tenant) -> Result<usize, ServiceError> {
    let a = &config.alerts;
    let now = tenant.now(truncate_to_seconds(Utc::now()));
    let system_now = truncate_to_seconds(Utc::now());
    let mut tx = db.begin().await?;
    let window = Duration::minutes(a.payment_failure_window_mins);
    let (failed, finished) =
        store::attempt_outcomes(&mut tx, &tenant.id, now - window, now).await?;
    let rate = if finished > 0 {
        failed as f64 / finished as f64
    } else {
        0.0
    };
    let failing = (finished >= a.payment_failure_min_attempts && rate >= a.payment_failure_rate)
        .then(|| {
            format!(
                "{failed} of {finished} payment attempts in the last {} minutes failed ({:.0} %; threshold {:.0} %)",
                a.payment_failure_window_mins,
                rate * 100.0,
                a.payment_failure_rate * 100.0
            )
        });
    let kind = EventType::AlertPaymentFailureRate;
    let mut raised = condition(&mut tx, tenant, kind, failing, now).await?;
    let stale = system_now - Duration::minutes(a.unsettled_after_mins);
    let unsettled = store::unsettled_before(&mut tx, &tenant.id, stale).await?;
    let stuck = (unsettled > 0).then(|| {
        format!(
            "{unsettled} payment attempts are still pending or unknown after {} minutes",
            a.unsettled_after_mins
        )
    });
    let kind = EventType::AlertUnsettledAttempts;
    raised += condition(&mut tx, tenant, kind, stuck, now).await?;
    tx.commit().await?;
    Ok(raised)
}

/// A tenant's pass took longer than the scheduler's interval: passes will pile up.
pub async fn overrun(
    db: &Db,
    tenant: &Tenant,
    took: std::time::Duration,
    interval: std::time::Duration,
) -> Result<(), ServiceError> {
    let now = tenant.now(truncate_to_seconds(Utc::now()));
    let message = format!(
        "billing and collection took {:.1} s, longer than the scheduler's interval of {} s",
        took.as_secs_f64(),
        interval.as_secs()
    );
    let mut tx = db.begin().await?;
    store::raise(
        &mut tx,
        &tenant.id,
        EventType::AlertBillingOverrun,
        "",
        &message,
        Raise::Once,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn list(
    db: &Db,
    tenant: &Tenant,
    page: &Page,
) -> Result<(Vec<Alert>, bool), ServiceError> {
    let mut tx = db.read().await?;
    let out = store::list_alerts(&mut tx, &tenant.id, page).await?;
    tx.commit().await?;
    Ok(out)
}
