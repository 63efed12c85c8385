//! Collection and dunning: charge due invoices through their customer's provider, one attempt
//! at a time per invoice. Each attempt commits its row (and idempotency key) before the provider
//! is called and records the outcome after, never holding a transaction across the call.
//! Attempts whose outcome is unknown are resolved by asking the provider before any new attempt.

use super::{ChargeRequest, ChargeResult, Payments};
use crate::domain::ids::PaymentId;
use crate::domain::invoice::{Invoice, InvoiceStatus};
use crate::domain::payment::{AttemptStatus, DeclineKind, FinalAction, Payment};
use crate::domain::subscription::SubscriptionStatus;
use crate::domain::tenant::Tenant;
use crate::store::payments::{self as store, Attempt};
use crate::store::{Db, StoreError, customers, events, invoices, subscriptions};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CollectSummary {
    pub payment_attempts: u64,
    pub payments_succeeded: u64,
    pub payments_failed: u64,
}

impl CollectSummary {
    pub fn add(&mut self, o: CollectSummary) {
        self.payment_attempts += o.payment_attempts;
        self.payments_succeeded += o.payments_succeeded;
        self.payments_failed += o.payments_failed;
    }
}

/// Charges every invoice of the tenant whose next attempt is due by `now`.
pub async fn collect_due(
    db: &Db,
    tenant: &Tenant,
    payments: &Payments,
    now: DateTime<Utc>,
) -> Result<CollectSummary, StoreError> {
    let mut summary = resolve_unknown(db, tenant, payments, now).await?;
    loop {
        let mut tx = db.read().await?;
        let due = invoices::due_for_collection(&mut tx, &tenant.id, now, 100).await?;
        tx.commit().await?;
        if due.is_empty() {
            break;
        }
        for inv in due {
            summary.add(attempt(db, tenant, payments, inv, now).await?);
        }
    }
    summary.add(resolve_unknown(db, tenant, payments, now).await?);
    Ok(summary)
}

/// Asks the provider about attempts left `unknown` (a timeout after sending).
async fn resolve_unknown(
    db: &Db,
    tenant: &Tenant,
    payments: &Payments,
    now: DateTime<Utc>,
) -> Result<CollectSummary, StoreError> {
    let mut tx = db.read().await?;
    let unknown = store::unknown_attempts(&mut tx, &tenant.id).await?;
    tx.commit().await?;
    let mut summary = CollectSummary::default();
    for a in unknown {
        let req = request(&a);
        let method = a
            .token
            .clone()
            .map(|token| crate::domain::customer::PaymentMethod {
                provider: a.payment.provider,
                token,
            });
        let result = match payments.provider_for(method.as_ref()) {
            Ok((provider, _)) => provider.retrieve(&req).await,
            Err(declined) => declined,
        };
        summary.add(record(db, tenant, payments, a.payment, result, now).await?);
    }
    Ok(summary)
}

fn request(a: &Attempt) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: a.idempotency_key.clone(),
        invoice: a.payment.invoice.clone(),
        attempt_number: a.payment.attempt_number,
        amount: a.payment.amount,
        currency: a.payment.currency,
        token: a.token.clone().unwrap_or_default(),
    }
}

/// One attempt: intent committed, provider called, outcome recorded.
async fn attempt(
    db: &Db,
    tenant: &Tenant,
    payments: &Payments,
    mut inv: Invoice,
    now: DateTime<Utc>,
) -> Result<CollectSummary, StoreError> {
    let mut tx = db.begin().await?;
    let customer = customers::find_customer(&mut tx, &tenant.id, &inv.customer).await?;
    let method = customer.and_then(|c| c.payment_method);
    let number = inv.attempt_count + 1;
    let a = Attempt {
        payment: Payment {
            id: PaymentId::generate(),
            object: "payment",
            invoice: inv.id.clone(),
            attempt_number: number,
            status: AttemptStatus::Pending,
            amount: inv.amount_due,
            currency: inv.currency,
            provider: method
                .as_ref()
                .map_or(crate::domain::customer::Provider::Sandbox, |m| m.provider),
            provider_ref: None,
            decline_code: None,
            failure_message: None,
            created: now,
            completed_at: None,
        },
        idempotency_key: format!("{}-attempt-{number}", inv.id),
        token: method.as_ref().map(|m| m.token.clone()),
    };
    match store::insert_attempt(&mut tx, &tenant.id, &a).await {
        Ok(()) => {}
        // Another attempt for this invoice is in flight: it owns the invoice.
        Err(StoreError::Conflict(_)) => return Ok(CollectSummary::default()),
        Err(e) => return Err(e),
    }
    inv.next_payment_attempt = None;
    inv.attempt_count = number;
    invoices::update_collection(&mut tx, &tenant.id, &inv).await?;
    tx.commit().await?;

    let result = match payments.provider_for(method.as_ref()) {
        Ok((provider, _)) => provider.charge(&request(&a)).await,
        Err(declined) => declined,
    };
    let mut summary = record(db, tenant, payments, a.payment, result, now).await?;
    summary.payment_attempts += 1;
    Ok(summary)
}

/// An object as event data (the API's JSON).
fn data<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// Writes an attempt's outcome and what follows from it for the invoice and subscription.
async fn record(
    db: &Db,
    tenant: &Tenant,
    payments: &Payments,
    mut p: Payment,
    result: ChargeResult,
    now: DateTime<Utc>,
) -> Result<CollectSummary, StoreError> {
    let mut summary = CollectSummary::default();
    let mut tx = db.begin().await?;
    let Some(mut inv) = invoices::find_invoice(&mut tx, &tenant.id, &p.invoice).await? else {
        return Ok(summary);
    };
    let mut sub = match &inv.subscription {
        Some(id) => subscriptions::find_subscription(&mut tx, &tenant.id, id).await?,
        None => None,
    };
    let before = sub.as_ref().map(|s| s.status);
    let mut evts: Vec<(&'static str, serde_json::Value)> = Vec::new();
    match result {
        ChargeResult::Unknown { message } => {
            p.status = AttemptStatus::Unknown;
            p.failure_message = Some(message);
            store::update_attempt(&mut tx, &tenant.id, &p).await?;
            tx.commit().await?;
            return Ok(summary);
        }
        ChargeResult::Succeeded { provider_ref } => {
            summary.payments_succeeded += 1;
            p.status = AttemptStatus::Succeeded;
            p.provider_ref = Some(provider_ref);
            p.completed_at = Some(now);
            if let Ok(status) = inv.status.pay() {
                inv.status = status;
                inv.amount_paid += p.amount;
                inv.amount_due = 0;
                inv.paid_at = Some(now);
                inv.next_payment_attempt = None;
                inv.awaiting_payment_method = false;
            }
            if let Some(s) = sub.as_mut() {
                s.status = s.status.after_successful_payment();
            }
            evts.push(("payment.succeeded", data(&p)));
            evts.push(("invoice.paid", data(&inv)));
        }
        ChargeResult::Declined {
            code,
            kind,
            message,
        } => {
            summary.payments_failed += 1;
            p.status = AttemptStatus::Failed;
            p.decline_code = Some(code);
            p.failure_message = Some(message);
            p.completed_at = Some(now);
            let first = *inv.first_failed_at.get_or_insert(now);
            match kind {
                DeclineKind::Hard => {
                    inv.next_payment_attempt = None;
                    inv.awaiting_payment_method = true;
                }
                DeclineKind::Soft => {
                    inv.next_payment_attempt = payments.plan.next_retry(first, inv.attempt_count)
                }
            }
            if let Some(s) = sub.as_mut() {
                s.status = s.status.after_failed_payment();
            }
            evts.push(("payment.failed", data(&p)));
            evts.push(("invoice.payment_failed", data(&inv)));
            let exhausted = kind == DeclineKind::Soft
                && inv.next_payment_attempt.is_none()
                && inv.status == InvoiceStatus::Open;
            if exhausted {
                match payments.plan.final_action {
                    FinalAction::LeavePastDue => {}
                    FinalAction::Cancel | FinalAction::MarkUnpaid => {
                        if let Ok(status) = inv.status.mark_uncollectible() {
                            inv.status = status;
                            inv.marked_uncollectible_at = Some(now);
                            evts.push(("invoice.marked_uncollectible", data(&inv)));
                        }
                        if let Some(s) = sub.as_mut() {
                            if payments.plan.final_action == FinalAction::Cancel
                                && let Ok(status) = s.status.cancel()
                            {
                                s.status = status;
                                s.canceled_at = Some(now);
                                s.ended_at = Some(now);
                                s.next_billing_at = None;
                            } else if payments.plan.final_action == FinalAction::MarkUnpaid {
                                s.status = SubscriptionStatus::Unpaid;
                            }
                        }
                    }
                }
            }
        }
    }
    store::update_attempt(&mut tx, &tenant.id, &p).await?;
    invoices::update_collection(&mut tx, &tenant.id, &inv).await?;
    if let Some(s) = &sub
        && Some(s.status) != before
    {
        subscriptions::update_subscription(&mut tx, &tenant.id, s, now).await?;
        let kind = if s.status == SubscriptionStatus::Canceled {
            "customer.subscription.deleted"
        } else {
            "customer.subscription.updated"
        };
        evts.push((kind, data(s)));
    }
    for (kind, data) in &evts {
        let id = data
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        events::insert_event(&mut tx, &tenant.id, kind, &id, data, now).await?;
    }
    tx.commit().await?;
    Ok(summary)
}
