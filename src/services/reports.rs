//! The summary report: what a tenant billed, collected and is owed in a window, and its
//! recurring revenue as it stands.

use super::ServiceError;
use crate::domain::ids::SubscriptionItemId;
use crate::domain::price::UsageType;
use crate::domain::pricing::line_amount;
use crate::domain::report::{CurrencySummary, Summary};
use crate::domain::tenant::Tenant;
use crate::store::{Db, reports};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

/// Items read per batch for MRR.
const BATCH: i64 = 1_000;

#[derive(Debug, Serialize)]
pub struct SummaryReport {
    pub object: &'static str,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub timezone: String,
    /// The moment MRR, subscription counts, outstanding and aging are taken at: the tenant's
    /// clock (the system time for live tenants).
    pub as_of: DateTime<Utc>,
    pub currencies: Vec<CurrencySummary>,
}

/// The window's days, their zone and the instants they span.
pub struct Window {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub timezone: chrono_tz::Tz,
    pub span: (DateTime<Utc>, DateTime<Utc>),
}

fn too_large(e: crate::domain::pricing::MathError) -> ServiceError {
    ServiceError::unprocessable("amount_too_large", None, e)
}

pub async fn summary(db: &Db, tenant: &Tenant, w: &Window) -> Result<SummaryReport, ServiceError> {
    let as_of = tenant.now(crate::domain::tenant::truncate_to_seconds(Utc::now()));
    let mut out = Summary::default();
    let mut tx = db.read().await?;
    reports::gather(&mut tx, &tenant.id, w.span, as_of, &mut out).await?;
    tx.commit().await?;
    let mut after: Option<SubscriptionItemId> = None;
    loop {
        let mut tx = db.read().await?;
        let items = reports::recurring_items(&mut tx, &tenant.id, after.as_ref(), BATCH).await?;
        tx.commit().await?;
        for (_, price, quantity) in &items {
            if let Some(r) = &price.recurring
                && r.usage_type == UsageType::Licensed
            {
                let amount = line_amount(&price.scheme, *quantity).map_err(too_large)?;
                out.add_recurring(&price.currency, amount, r.interval);
            }
        }
        match items.last() {
            Some((last, _, _)) if items.len() as i64 == BATCH => after = Some(last.clone()),
            _ => break,
        }
    }
    Ok(SummaryReport {
        object: "report.summary",
        from: w.from,
        to: w.to,
        timezone: w.timezone.name().to_owned(),
        as_of,
        currencies: out.finish().map_err(too_large)?,
    })
}
