//! Reconciliation: the provider's charges for a window against our attempts and invoices.
//! What is safe is repaired (an attempt left unknown or pending that the provider shows
//! succeeded or failed; a refund made at the provider that we had not recorded); the rest is
//! reported, as rows and as `reconciliation.discrepancy` events, for a person to decide.
//!
//! Memory: the provider is read a page (100 charges) at a time and each page is matched with
//! one query; only the ids of the attempts seen are kept for the second pass, which pages our
//! side of the window looking for money we think we took that the provider does not show.

use super::collect::record_in;
use super::webhooks::refunded_to;
use super::{ChargeResult, ChargeStatus, Payments, ProviderCharge};
use crate::domain::customer::Provider;
use crate::domain::event::EventType;
use crate::domain::payment::AttemptStatus;
use crate::domain::tenant::Tenant;
use crate::services::ServiceError;
use crate::store::events::insert_event;
use crate::store::payments as attempts;
use crate::store::{Db, StoreError};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// repaired_succeeded, repaired_refund, charge_without_invoice,
    /// succeeded_but_failed_here, amount_mismatch, currency_mismatch, missing_at_provider.
    pub kind: &'static str,
    pub repaired: bool,
    pub provider_ref: Option<String>,
    pub invoice: Option<String>,
    pub payment: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub provider_charges: u64,
    pub matched: u64,
    pub our_payments: u64,
    pub repaired: u64,
    pub findings: Vec<Finding>,
}

/// Provider clocks and ours differ by the time a request takes; widen the provider's window so
/// a charge made at the edge still finds its attempt.
const EDGE: Duration = Duration::hours(1);

pub async fn reconcile(
    db: &Db,
    payments: &Payments,
    tenant: &Tenant,
    provider: Provider,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    system_now: DateTime<Utc>,
) -> Result<Report, ServiceError> {
    let providers = payments.for_tenant(db, tenant).await?;
    let Some(client) = providers.provider(provider) else {
        return Err(ServiceError::unprocessable(
            "provider_not_configured",
            Some("provider"),
            format!("the {} provider is not configured", provider.as_str()),
        ));
    };
    let now = tenant.now(system_now);
    let mut report = Report::default();
    let mut seen = HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = client
            .list_charges(from - EDGE, to + EDGE, after.as_deref())
            .await
            .map_err(|e| {
                ServiceError::unprocessable("provider_unavailable", None, e.to_string())
            })?;
        let mine: Vec<ProviderCharge> = page
            .charges
            .into_iter()
            .filter(|c| c.tenant.as_deref() == Some(tenant.id.as_str()))
            .collect();
        report.provider_charges += mine.len() as u64;
        check_page(db, payments, tenant, mine, &mut seen, &mut report, now).await?;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut cursor = String::new();
    loop {
        let mut tx = db.read().await?;
        let ours =
            attempts::taken_between(&mut tx, &tenant.id, provider, from, to, &cursor).await?;
        tx.commit().await?;
        let Some(last) = ours.last() else { break };
        cursor = last.payment.id.to_string();
        for a in ours {
            report.our_payments += 1;
            if !seen.contains(a.payment.id.as_str()) {
                report.findings.push(Finding {
                    kind: "missing_at_provider",
                    repaired: false,
                    provider_ref: a.payment.provider_ref.clone(),
                    invoice: Some(a.payment.invoice.to_string()),
                    payment: Some(a.payment.id.to_string()),
                    detail: format!(
                        "recorded as {} for {} but the provider lists no such charge",
                        a.payment.status.as_str(),
                        a.payment.amount
                    ),
                });
            }
        }
    }
    let mut tx = db.begin().await?;
    for f in report.findings.iter().filter(|f| !f.repaired) {
        let id = f
            .payment
            .clone()
            .or(f.provider_ref.clone())
            .unwrap_or_default();
        insert_event(
            &mut tx,
            &tenant.id,
            EventType::ReconciliationDiscrepancy,
            &id,
            f,
            now,
        )
        .await?;
    }
    insert_event(
        &mut tx,
        &tenant.id,
        EventType::ReconciliationCompleted,
        tenant.id.as_str(),
        &serde_json::json!({
            "provider": provider.as_str(), "from": from, "to": to,
            "provider_charges": report.provider_charges, "matched": report.matched,
            "our_payments": report.our_payments, "repaired": report.repaired,
            "discrepancies": report.findings.iter().filter(|f| !f.repaired).count(),
        }),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(report)
}

async fn check_page(
    db: &Db,
    payments: &Payments,
    tenant: &Tenant,
    charges: Vec<ProviderCharge>,
    seen: &mut HashSet<String>,
    report: &mut Report,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let keys: Vec<String> = charges
        .iter()
        .filter_map(|c| c.attempt_key.clone())
        .collect();
    let mut tx = db.begin().await?;
    let mut by_key: HashMap<String, attempts::Attempt> =
        attempts::attempts_by_keys(&mut tx, &tenant.id, &keys)
            .await?
            .into_iter()
            .map(|a| (a.idempotency_key.clone(), a))
            .collect();
    let mut outcomes = Vec::new();
    let mut refunds = Vec::new();
    for c in charges {
        let finding = |kind, repaired, detail: String, payment: Option<String>| Finding {
            kind,
            repaired,
            provider_ref: Some(c.provider_ref.clone()),
            invoice: c.invoice.clone(),
            payment,
            detail,
        };
        let Some(a) = c.attempt_key.as_ref().and_then(|k| by_key.remove(k)) else {
            if c.status == ChargeStatus::Succeeded {
                report.findings.push(finding(
                    "charge_without_invoice",
                    false,
                    format!("a charge of {} with no attempt of ours", c.amount),
                    None,
                ));
            }
            continue;
        };
        report.matched += 1;
        seen.insert(a.payment.id.to_string());
        let pid = Some(a.payment.id.to_string());
        if c.currency.is_some_and(|cur| cur != a.payment.currency) {
            report.findings.push(finding(
                "currency_mismatch",
                false,
                format!(
                    "provider charged {}, we asked for {}",
                    c.currency
                        .map_or("an unknown currency".into(), |x| x.code().to_owned()),
                    a.payment.currency.code()
                ),
                pid.clone(),
            ));
        } else if c.amount != a.payment.amount {
            report.findings.push(finding(
                "amount_mismatch",
                false,
                format!(
                    "provider charged {}, we asked for {}",
                    c.amount, a.payment.amount
                ),
                pid.clone(),
            ));
        }
        let in_flight = a.payment.status.in_flight();
        match c.status {
            ChargeStatus::Succeeded if in_flight => {
                report.repaired += 1;
                report.findings.push(finding(
                    "repaired_succeeded",
                    true,
                    format!(
                        "attempt was {}; the provider shows it succeeded",
                        a.payment.status.as_str()
                    ),
                    pid.clone(),
                ));
                outcomes.push((
                    a.payment.clone(),
                    ChargeResult::Succeeded {
                        provider_ref: c.provider_ref.clone(),
                        received: super::Received::of(&c),
                    },
                ));
            }
            ChargeStatus::Succeeded if a.payment.status == AttemptStatus::Failed => {
                report.findings.push(finding(
                    "succeeded_but_failed_here",
                    false,
                    "the provider took the money but the attempt is recorded as failed".into(),
                    pid.clone(),
                ));
            }
            // Already settled here as the provider shows it, or not final at the provider:
            // nothing to repair or report (failures are the collection pass's to classify).
            ChargeStatus::Succeeded | ChargeStatus::Processing | ChargeStatus::Failed => {}
        }
        if c.amount_refunded > a.payment.amount_refunded && !in_flight {
            report.repaired += 1;
            report.findings.push(finding(
                "repaired_refund",
                true,
                format!(
                    "the provider refunded {}, we had {}",
                    c.amount_refunded, a.payment.amount_refunded
                ),
                pid,
            ));
            refunds.push((a.payment, c));
        }
    }
    record_in(&mut tx, tenant, payments.plan_for(tenant), outcomes, now).await?;
    for (mut p, c) in refunds {
        refunded_to(&mut tx, tenant, &mut p, &c, now).await?;
    }
    tx.commit().await?;
    Ok(())
}
