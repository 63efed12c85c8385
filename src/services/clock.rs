//! The test clock: a test-mode tenant's time moves only when told to, and moving it runs
//! everything that falls due in between, in time order.

use super::ServiceError;
use crate::billing::run::{RunSummary, run_due};
use crate::domain::tenant::{Mode, Tenant};
use crate::payments::Payments;
use crate::payments::collect::{CollectSummary, collect_due};
use crate::store::{Db, invoices, leases, subscriptions, tenants};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// One call may move the clock at most this far, so a typo cannot start a run of centuries.
pub const MAX_ADVANCE_DAYS: i64 = 3660;

#[derive(Debug, Clone, Serialize)]
pub struct Advanced {
    pub object: &'static str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    #[serde(flatten)]
    pub summary: RunSummary,
    #[serde(flatten)]
    pub payments: CollectSummary,
}

pub async fn advance_clock(
    db: &Db,
    payments: &Payments,
    tenant: &Tenant,
    to: DateTime<Utc>,
    batch_size: i64,
) -> Result<Advanced, ServiceError> {
    let from = match (tenant.mode, tenant.clock_time) {
        (Mode::Test, Some(clock)) => clock,
        (Mode::Test, None) | (Mode::Live, Some(_) | None) => {
            return Err(ServiceError::unprocessable(
                "not_test_mode",
                None,
                "only test-mode tenants have a test clock",
            ));
        }
    };
    if to <= from {
        return Err(ServiceError::invalid(
            "to",
            format!(
                "to must be after the clock's current time {}",
                from.to_rfc3339()
            ),
        ));
    }
    if to - from > Duration::days(MAX_ADVANCE_DAYS) {
        return Err(ServiceError::invalid(
            "to",
            format!("the clock moves at most {MAX_ADVANCE_DAYS} days per call"),
        ));
    }
    let holder = leases::task_holder_name();
    if !leases::acquire(db, &tenant.id, "test_clock", &holder, Duration::minutes(10)).await? {
        return Err(ServiceError::Conflict {
            code: "clock_advance_in_progress",
            message: "another advance of this clock is running; retry when it has finished".into(),
            param: None,
        });
    }
    let result = advance_holding_lease(db, payments, tenant, to, batch_size).await;
    leases::release(db, &tenant.id, "test_clock", &holder).await?;
    let (summary, payments) = result?;
    Ok(Advanced {
        object: "test_clock_advance",
        from,
        to,
        summary,
        payments,
    })
}

/// Steps through every instant something falls due — a subscription boundary or a payment
/// retry — earliest first, billing then collecting at each, so dunning and renewals interleave
/// exactly as they would in real time.
async fn advance_holding_lease(
    db: &Db,
    payments: &Payments,
    tenant: &Tenant,
    to: DateTime<Utc>,
    batch_size: i64,
) -> Result<(RunSummary, CollectSummary), ServiceError> {
    let mut billed = RunSummary::default();
    let mut collected = CollectSummary::default();
    loop {
        let mut tx = db.read().await?;
        let next_boundary = subscriptions::next_billing_time(&mut tx, &tenant.id).await?;
        let next_charge = invoices::next_collection_time(&mut tx, &tenant.id).await?;
        tx.commit().await?;
        let Some(step) = [next_boundary, next_charge]
            .into_iter()
            .flatten()
            .filter(|t| *t <= to)
            .min()
        else {
            break;
        };
        let b = run_due(db, tenant, step, batch_size).await?;
        let c = collect_due(db, tenant, payments, step).await?;
        // The clock follows the committed work step by step: an advance cut off by a crash
        // leaves the clock where its billing is, so usage posted next is stamped after it.
        move_clock(db, tenant, step).await?;
        if b.boundaries == 0 && c.payment_attempts == 0 {
            break;
        }
        billed.add(b);
        collected.add(c);
    }
    // What only waits for time, not for a due date (unknown attempts, unsettled refunds), is
    // looked after at the end as the scheduler would.
    collected.add(collect_due(db, tenant, payments, to).await?);
    move_clock(db, tenant, to).await?;
    Ok((billed, collected))
}

async fn move_clock(db: &Db, tenant: &Tenant, to: DateTime<Utc>) -> Result<(), ServiceError> {
    let mut tx = db.begin().await?;
    tenants::update_tenant_clock(&mut tx, &tenant.id, to).await?;
    tx.commit().await?;
    Ok(())
}
