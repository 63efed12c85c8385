//! Inbound provider events: claimed by id (a redelivery changes nothing), matched to the
//! attempt through the metadata recur wrote on the charge, and applied so that any order and
//! any number of deliveries end in the same state:
//! - a success wins over a failure (a PaymentIntent that succeeded stays succeeded);
//! - a failure only settles an attempt still in flight;
//! - a refund implies the charge succeeded, and the refunded amount only grows (the provider
//!   sends its running total);
//! - a refund the provider accepted as pending settles or fails once (only a pending credit
//!   note's refund moves).

use super::collect::record_in;
use super::refunds::record_refund;
use super::{
    ChargeResult, EventChange, Payments, ProviderCharge, ProviderEvent, Received, RefundResult,
};
use crate::domain::credit_note::RefundStatus;
use crate::domain::customer::Provider;
use crate::domain::event::EventType;
use crate::domain::ids::{CreditNoteId, TenantId};
use crate::domain::payment::{AttemptStatus, Payment, Reported};
use crate::domain::tenant::Tenant;
use crate::store::events::insert_event;
use crate::store::payments::{self as attempts, Attempt};
use crate::store::{Db, StoreError, Tx, credit_notes, provider_events, tenants};
use chrono::{DateTime, Utc};

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Seen before: acknowledged, nothing changed.
    Duplicate,
    /// Matched, but the attempt was already past this (a late failure after a success).
    Stale,
    /// Not a charge recur made, or an event type recur does not track.
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::Ignored => "ignored",
        }
    }
}

/// Applies one verified event and commits; the caller answers 2xx only after this returns.
pub async fn receive(
    db: &Db,
    payments: &Payments,
    provider: Provider,
    event: ProviderEvent,
    system_now: DateTime<Utc>,
    only: Option<&TenantId>,
) -> Result<Outcome, StoreError> {
    // An event that arrived at one tenant's endpoint but names another is not that tenant's
    // to apply; it is not claimed either, so it cannot shadow the real delivery.
    if let Some(only) = only {
        let named = match &event.change {
            EventChange::RefundUpdated { tenant, .. } => tenant.as_deref(),
            EventChange::Succeeded(c) | EventChange::Refunded(c) => c.tenant.as_deref(),
            EventChange::Failed { charge, .. } => charge.tenant.as_deref(),
            EventChange::Ignored => None,
        };
        if named != Some(only.as_str()) {
            return Ok(Outcome::Ignored);
        }
    }
    let mut tx = db.begin().await?;
    if !provider_events::claim(&mut tx, provider, &event.id, &event.kind, system_now).await? {
        // Dropping the transaction rolls it back.
        return Ok(Outcome::Duplicate);
    }
    let (tenant_id, outcome) = match event.change {
        EventChange::RefundUpdated {
            tenant,
            credit_note,
            result,
        } => {
            let outcome =
                refund_updated(&mut tx, tenant.as_deref(), credit_note, result, system_now).await?;
            (tenant, outcome)
        }
        change => {
            let charge = match &change {
                EventChange::Succeeded(c) | EventChange::Refunded(c) => Some(c),
                EventChange::Failed { charge, .. } => Some(charge),
                EventChange::RefundUpdated { .. } | EventChange::Ignored => None,
            };
            let tenant_id = charge.and_then(|c| c.tenant.clone());
            let tenant = match &tenant_id {
                Some(id) => tenants::find_tenant(&mut tx, id).await?,
                None => None,
            };
            let found = match (&tenant, charge) {
                (Some(t), Some(c)) => {
                    attempts::find_attempt(
                        &mut tx,
                        &t.id,
                        c.attempt_key.as_deref(),
                        &c.provider_ref,
                    )
                    .await?
                }
                _ => None,
            };
            let outcome = match (tenant, found) {
                (Some(t), Some(a)) => apply(&mut tx, payments, &t, a, change, system_now).await?,
                _ => Outcome::Ignored,
            };
            (tenant_id, outcome)
        }
    };
    provider_events::set_outcome(
        &mut tx,
        provider,
        &event.id,
        tenant_id.as_deref(),
        outcome.as_str(),
    )
    .await?;
    crate::crash::point("webhooks.applied");
    tx.commit().await?;
    crate::crash::point("webhooks.committed");
    Ok(outcome)
}

/// A refund the provider had accepted as pending settled or failed. Only a pending note moves.
async fn refund_updated(
    tx: &mut Tx,
    tenant: Option<&str>,
    credit_note: Option<String>,
    result: RefundResult,
    system_now: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let (Some(tenant), Some(id)) = (tenant, credit_note) else {
        return Ok(Outcome::Ignored);
    };
    let Some(t) = tenants::find_tenant(tx, tenant).await? else {
        return Ok(Outcome::Ignored);
    };
    let Ok(id) = CreditNoteId::parse(&id) else {
        return Ok(Outcome::Ignored);
    };
    let Some(note) = credit_notes::find_credit_note(tx, &t.id, &id).await? else {
        return Ok(Outcome::Ignored);
    };
    if note.refund_status != RefundStatus::Pending
        || matches!(
            result,
            RefundResult::Pending { .. } | RefundResult::Unknown { .. }
        )
    {
        return Ok(Outcome::Stale);
    }
    record_refund(tx, &t, note, result, t.now(system_now)).await?;
    Ok(Outcome::Applied)
}

async fn apply(
    tx: &mut Tx,
    payments: &Payments,
    tenant: &Tenant,
    a: Attempt,
    change: EventChange,
    system_now: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let now = tenant.now(system_now);
    let plan = payments.plan_for(tenant);
    match change {
        EventChange::Succeeded(c) => {
            if !a.payment.status.takes(Reported::Succeeded) {
                return Ok(Outcome::Stale);
            }
            let result = ChargeResult::Succeeded {
                received: Received::of(&c),
                provider_ref: c.provider_ref,
            };
            record_in(tx, tenant, plan, vec![(a.payment, result)], now).await?;
            Ok(Outcome::Applied)
        }
        EventChange::Failed {
            charge,
            code,
            kind,
            message,
        } => {
            if !a.payment.status.takes(Reported::Declined) {
                return Ok(Outcome::Stale);
            }
            let result = ChargeResult::Declined {
                code,
                kind,
                message,
                provider_ref: Some(charge.provider_ref),
            };
            record_in(tx, tenant, plan, vec![(a.payment, result)], now).await?;
            Ok(Outcome::Applied)
        }
        EventChange::Refunded(c) => {
            let mut p = a.payment;
            if p.status.takes(Reported::Succeeded) {
                let received = Received::of(&c);
                let matches = received.mismatch(&tenant.id, &p).is_none();
                let result = ChargeResult::Succeeded {
                    provider_ref: c.provider_ref.clone(),
                    received,
                };
                record_in(tx, tenant, plan, vec![(p.clone(), result)], now).await?;
                if !matches {
                    // Held for a person (record_in said why); no refund is booked against it.
                    return Ok(Outcome::Applied);
                }
                p.status = AttemptStatus::Succeeded;
                p.provider_ref = Some(c.provider_ref.clone());
                p.completed_at = Some(now);
            }
            Ok(if refunded_to(tx, tenant, &mut p, &c, now).await? {
                Outcome::Applied
            } else {
                Outcome::Stale
            })
        }
        EventChange::RefundUpdated { .. } | EventChange::Ignored => Ok(Outcome::Ignored),
    }
}

/// Raises the attempt's refunded amount to the provider's running total (never lowers it);
/// `true` when it changed. A fully refunded attempt reads `refunded`.
pub(super) async fn refunded_to(
    tx: &mut Tx,
    tenant: &Tenant,
    p: &mut Payment,
    c: &ProviderCharge,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let total = c.amount_refunded.min(p.amount);
    if total <= p.amount_refunded {
        return Ok(false);
    }
    p.amount_refunded = total;
    if total >= p.amount {
        p.status = AttemptStatus::Refunded;
    }
    attempts::update_attempts(tx, &tenant.id, std::slice::from_ref(p)).await?;
    insert_event(
        tx,
        &tenant.id,
        EventType::PaymentRefunded,
        p.id.as_str(),
        p,
        now,
    )
    .await?;
    Ok(true)
}
