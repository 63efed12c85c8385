//! Collection and dunning: charge due invoices through their customer's provider, one attempt
//! at a time per invoice, many invoices at once. Each attempt commits its row (and idempotency key) before the provider
//! is called and records the outcome after, never holding a transaction across the call.
//! Attempts whose outcome is unknown are resolved by asking the provider before any new attempt.

use super::{ChargeRequest, ChargeResult, Payments};
use crate::domain::customer::{PaymentMethod, Provider};
use crate::domain::dunning;
use crate::domain::event::EventType;
use crate::domain::ids::{CustomerId, InvoiceId, PaymentId};
use crate::domain::invoice::Invoice;
use crate::domain::payment::{AttemptStatus, DeclineKind, DunningPlan, Payment};
use crate::domain::subscription::SubscriptionStatus;
use crate::domain::tenant::Tenant;
use crate::store::events::NewEvent;
use crate::store::payments::{self as store, Attempt};
use crate::store::{Db, StoreError, Tx, customers, events, invoices, subscriptions};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use std::collections::HashMap;

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

/// The most one charge may take, in minor units: Stripe's limit (eight digits, 999,999.99 in
/// a two-decimal currency). Larger amounts are never sent to a provider, the sandbox included;
/// they are hard-declined `amount_too_large` and wait for a person (`send_invoice`, a split).
pub const MAX_CHARGE: i64 = 99_999_999;

/// The hard decline of an amount no provider is sent.
fn too_large(amount: i64) -> ChargeResult {
    ChargeResult::Declined {
        code: "amount_too_large".into(),
        kind: DeclineKind::Hard,
        message: format!(
            "{amount} is more than one charge may take ({MAX_CHARGE} minor units); collect it another way"
        ),
        provider_ref: None,
    }
}

/// Invoices charged per batch: one transaction commits their attempts, the provider calls
/// run outside any transaction, one transaction records the outcomes.
const BATCH: i64 = 200;

/// What one collection pass looks at.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// The engine's pass: every due invoice of the tenant, then what waits only for time
    /// (unknown and stale pending attempts, unsettled refunds).
    Tenant,
    /// A request's own work: this invoice only (`/pay`).
    Invoice(&'a InvoiceId),
    /// A request's own work: this customer's due invoices (a new payment method).
    Customer(&'a CustomerId),
}

/// Charges every invoice of the tenant whose next attempt is due by `now`.
pub async fn collect_due(
    db: &Db,
    tenant: &Tenant,
    payments: &Payments,
    now: DateTime<Utc>,
) -> Result<CollectSummary, StoreError> {
    collect(db, tenant, payments, now, Scope::Tenant).await
}

/// Charges what `scope` covers whose next attempt is due by `now`.
pub async fn collect(
    db: &Db,
    tenant: &Tenant,
    payments: &Payments,
    now: DateTime<Utc>,
    scope: Scope<'_>,
) -> Result<CollectSummary, StoreError> {
    let housekeeping = matches!(scope, Scope::Tenant);
    let mut summary = CollectSummary::default();
    if housekeeping {
        summary.add(resolve_unknown(db, tenant, payments, now).await?);
    }
    let providers = payments.for_tenant(db, tenant).await?;
    // One sweep through the due invoices, earliest first: every claimed invoice leaves the due
    // list, and one that falls due again behind the cursor during the pass waits for the next.
    let mut cursor = None;
    loop {
        let (attempts, next) = claim_batch(db, tenant, now, scope, cursor.as_ref()).await?;
        let Some(next) = next else { break };
        cursor = Some(next);
        if attempts.is_empty() {
            continue;
        }
        crate::crash::point("collect.attempts_committed");
        // Charged side by side: each attempt is committed with its key, and each provider
        // paces its own requests (Stripe: a token bucket and a cap on requests in flight per
        // account), so a slow provider costs latency, not throughput.
        let outcomes: Vec<(Payment, ChargeResult)> = futures::stream::iter(attempts)
            .map(|a| charge_one(&providers, tenant, a))
            .buffered(payments.charges_at_once.max(1))
            .collect()
            .await;
        summary.payment_attempts += outcomes.len() as u64;
        summary.add(record(db, tenant, payments, outcomes, now).await?);
        crate::crash::point("collect.recorded");
    }
    if housekeeping {
        summary.add(resolve_unknown(db, tenant, payments, now).await?);
        super::refunds::resolve_refunds(db, payments, tenant, now).await?;
        mark_overdue(db, tenant, now).await?;
    }
    Ok(summary)
}

/// One provider call for one committed attempt.
async fn charge_one(
    providers: &super::TenantProviders,
    tenant: &Tenant,
    a: Attempt,
) -> (Payment, ChargeResult) {
    let result = if a.payment.amount > MAX_CHARGE {
        too_large(a.payment.amount)
    } else {
        match providers.charging_provider_for(method_of(&a).as_ref()) {
            Ok(provider) => {
                use tracing::Instrument;
                let span = tracing::info_span!(
                    "payment.charge",
                    tenant.id = %tenant.id,
                    invoice.id = %a.payment.invoice,
                    payment.id = %a.payment.id,
                    payment.attempt = a.payment.attempt_number,
                    payment.provider = a.payment.provider.as_str(),
                    payment.amount = a.payment.amount,
                    payment.currency = a.payment.currency.code(),
                );
                let started = std::time::Instant::now();
                let result = provider
                    .charge(&request(tenant, &a))
                    .instrument(span.clone())
                    .await;
                let outcome = match &result {
                    ChargeResult::Succeeded { .. } => "succeeded",
                    ChargeResult::Declined { .. } => "declined",
                    ChargeResult::Unknown { .. } => "unknown",
                };
                let seconds = started.elapsed().as_secs_f64();
                crate::metrics::provider_call(outcome, seconds);
                span.in_scope(|| {
                    tracing::debug!(
                        payment.outcome = outcome,
                        payment.seconds = seconds,
                        "charge answered"
                    )
                });
                result
            }
            Err(declined) => declined,
        }
    };
    crate::crash::point("collect.charged");
    (a.payment, result)
}

/// A `send_invoice` invoice still open past its due date makes its subscription `past_due`
/// (as Stripe does); paying it brings the subscription back.
async fn mark_overdue(db: &Db, tenant: &Tenant, now: DateTime<Utc>) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    let ids = invoices::overdue_subscriptions(&mut tx, &tenant.id, now).await?;
    let subs = subscriptions::lock_subscriptions(&mut tx, &tenant.id, &ids).await?;
    let mut evts = Vec::new();
    for mut s in subs {
        let status = s.status.after_failed_payment();
        if status == s.status {
            continue;
        }
        s.status = status;
        subscriptions::update_subscription(&mut tx, &tenant.id, &s, now).await?;
        evts.push(NewEvent {
            kind: EventType::CustomerSubscriptionUpdated,
            object_id: s.id.to_string(),
            data: data(&s).to_string(),
            at: now,
        });
    }
    events::insert_events(&mut tx, &tenant.id, &evts).await?;
    tx.commit().await
}

/// Asks the provider about attempts left `unknown` (a timeout after sending) or `pending` past
/// `dunning.stale_pending_secs` (their outcome was lost).
async fn resolve_unknown(
    db: &Db,
    tenant: &Tenant,
    payments: &Payments,
    now: DateTime<Utc>,
) -> Result<CollectSummary, StoreError> {
    let stale_before = Utc::now() - payments.stale_pending;
    let mut tx = db.read().await?;
    let unknown = store::unsettled_attempts(&mut tx, &tenant.id, stale_before).await?;
    tx.commit().await?;
    if unknown.is_empty() {
        return Ok(CollectSummary::default());
    }
    let providers = payments.for_tenant(db, tenant).await?;
    let mut outcomes = Vec::with_capacity(unknown.len());
    for a in unknown {
        let result = if a.payment.amount > MAX_CHARGE {
            too_large(a.payment.amount)
        } else {
            match providers.provider_for(method_of(&a).as_ref()) {
                Ok(provider) => provider.retrieve(&request(tenant, &a)).await,
                Err(declined) => declined,
            }
        };
        outcomes.push((a.payment, result));
        crate::crash::point("collect.resolved");
    }
    record(db, tenant, payments, outcomes, now).await
}

/// The payment method the attempt was made with.
fn method_of(a: &Attempt) -> Option<PaymentMethod> {
    a.token.clone().map(|token| PaymentMethod {
        provider: a.payment.provider,
        token,
        customer: a.provider_customer.clone(),
    })
}

/// The provider request of an attempt. Its age is measured on the system clock: providers
/// forget keys in real time, whatever a test clock says.
fn request(tenant: &Tenant, a: &Attempt) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: a.idempotency_key.clone(),
        tenant: tenant.id.clone(),
        invoice: a.payment.invoice.clone(),
        attempt_number: a.payment.attempt_number,
        amount: a.payment.amount,
        currency: a.payment.currency,
        token: a.token.clone().unwrap_or_default(),
        provider_customer: a.provider_customer.clone(),
        provider_ref: a.payment.provider_ref.clone(),
        age: a.sent_at.map_or(chrono::Duration::zero(), |t| {
            (Utc::now() - t).max(chrono::Duration::zero())
        }),
    }
}

/// Commits the intent for a batch of due invoices: an attempt row each (with its idempotency
/// key), and the invoices taken off the due list. An invoice that already has an attempt in
/// flight is left to it; a concurrent collector racing for the same invoice fails on the
/// in-flight unique index and its whole batch rolls back.
/// Answers the attempts and the cursor after the batch's latest due invoice (`None`: nothing
/// was due after `after`).
async fn claim_batch(
    db: &Db,
    tenant: &Tenant,
    now: DateTime<Utc>,
    scope: Scope<'_>,
    after: Option<&(DateTime<Utc>, InvoiceId)>,
) -> Result<(Vec<Attempt>, Option<(DateTime<Utc>, InvoiceId)>), StoreError> {
    let (invoice, customer) = match scope {
        Scope::Tenant => (None, None),
        Scope::Invoice(id) => (Some(id), None),
        Scope::Customer(id) => (None, Some(id)),
    };
    let mut tx = db.begin().await?;
    tx.plan_each_statement().await?;
    let due =
        invoices::due_for_collection(&mut tx, &tenant.id, now, BATCH, (invoice, customer), after)
            .await?;
    let cursor = due
        .iter()
        .filter_map(|i| i.next_payment_attempt.map(|t| (t, i.id.clone())))
        .max();
    let customer_ids: Vec<_> = due.iter().map(|i| i.customer.clone()).collect();
    let methods = customers::payment_methods_of(&mut tx, &tenant.id, &customer_ids).await?;
    let invoice_ids: Vec<_> = due.iter().map(|i| i.id.clone()).collect();
    let busy = store::in_flight(&mut tx, &tenant.id, &invoice_ids).await?;
    let mut attempts = Vec::with_capacity(due.len());
    let mut taken = Vec::with_capacity(due.len());
    for mut inv in due {
        let method = methods.get(&inv.customer);
        let number = inv.attempt_count + 1;
        let a = Attempt {
            payment: Payment {
                id: PaymentId::generate(),
                object: "payment",
                invoice: inv.id.clone(),
                attempt_number: number,
                status: AttemptStatus::Pending,
                amount: inv.amount_due,
                amount_refunded: 0,
                currency: inv.currency,
                provider: method.map_or(Provider::Sandbox, |m| m.provider),
                provider_ref: None,
                decline_code: None,
                failure_message: None,
                created: now,
                completed_at: None,
            },
            idempotency_key: crate::domain::payment::attempt_key(&inv.id, number),
            token: method.map(|m| m.token.clone()),
            provider_customer: method.and_then(|m| m.customer.clone()),
            sent_at: Some(Utc::now()),
        };
        // Off the due list either way; an attempt already in flight is resolved by asking the
        // provider, which sets the next attempt if one is needed.
        inv.next_payment_attempt = None;
        if !busy.contains(&inv.id) {
            inv.attempt_count = number;
            attempts.push(a);
        }
        taken.push(inv);
    }
    store::insert_attempts(&mut tx, &tenant.id, &attempts).await?;
    invoices::update_collections(&mut tx, &tenant.id, &taken).await?;
    tx.commit().await?;
    Ok((attempts, cursor))
}

/// An object as event data (the API's JSON).
fn data<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// A success whose amount, currency or references do not match the attempt is never applied
/// as paid: it becomes a decline `provider_answer_mismatch` and the invoice is held for a
/// person (no retry, not charged by a new payment method; only `/pay` charges it again), with
/// a `reconciliation.discrepancy` event and an error log.
fn verified(
    tenant: &crate::domain::ids::TenantId,
    p: &Payment,
    result: ChargeResult,
) -> (ChargeResult, Option<(EventType, serde_json::Value)>) {
    let ChargeResult::Succeeded {
        provider_ref,
        received,
    } = result
    else {
        return (result, None);
    };
    let Some(why) = received.mismatch(tenant, p) else {
        let ok = ChargeResult::Succeeded {
            provider_ref,
            received,
        };
        return (ok, None);
    };
    tracing::error!(payment.id = %p.id, provider_ref = %provider_ref, reason = %why, "provider answer does not match the attempt; held for a person");
    let event = (
        EventType::ReconciliationDiscrepancy,
        serde_json::json!({
            "id": p.id, "kind": "provider_answer_mismatch", "repaired": false,
            "provider_ref": provider_ref, "invoice": p.invoice, "payment": p.id, "detail": why,
        }),
    );
    let held = ChargeResult::Declined {
        code: "provider_answer_mismatch".into(),
        kind: DeclineKind::Hard,
        message: why,
        provider_ref: Some(provider_ref),
    };
    (held, Some(event))
}

/// Writes a batch of outcomes and what follows from them, in one transaction.
async fn record(
    db: &Db,
    tenant: &Tenant,
    payments: &Payments,
    outcomes: Vec<(Payment, ChargeResult)>,
    now: DateTime<Utc>,
) -> Result<CollectSummary, StoreError> {
    let mut tx = db.begin().await?;
    tx.plan_each_statement().await?;
    let summary = record_in(&mut tx, tenant, payments.plan_for(tenant), outcomes, now).await?;
    tx.commit().await?;
    Ok(summary)
}

/// Writes outcomes inside the caller's transaction (webhooks and reconciliation commit them
/// with their own bookkeeping).
pub(super) async fn record_in(
    tx: &mut Tx,
    tenant: &Tenant,
    plan: &DunningPlan,
    outcomes: Vec<(Payment, ChargeResult)>,
    now: DateTime<Utc>,
) -> Result<CollectSummary, StoreError> {
    let mut summary = CollectSummary::default();
    let ids: Vec<_> = outcomes.iter().map(|(p, _)| p.invoice.clone()).collect();
    let mut invs: HashMap<_, _> = invoices::find_invoice_headers(tx, &tenant.id, &ids)
        .await?
        .into_iter()
        .map(|i| (i.id.clone(), i))
        .collect();
    let sub_ids: Vec<_> = invs
        .values()
        .filter_map(|i| i.subscription.clone())
        .collect::<std::collections::HashSet<_>>()
        .into_iter()
        .collect();
    let mut subs: HashMap<_, _> = subscriptions::lock_subscriptions(tx, &tenant.id, &sub_ids)
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let before: HashMap<_, _> = subs.iter().map(|(id, s)| (id.clone(), s.status)).collect();
    // The invoices are locked now: whatever settled an attempt meanwhile (a webhook, a
    // reconciliation) has committed, and this outcome only applies if it is still news.
    let pay_ids: Vec<_> = outcomes.iter().map(|(p, _)| p.id.clone()).collect();
    let current = store::statuses_of(tx, &tenant.id, &pay_ids).await?;
    let mut evts = Vec::new();
    let mut recorded = Vec::with_capacity(outcomes.len());
    for (mut p, result) in outcomes {
        let Some(status) = current.get(&p.id) else {
            continue;
        };
        let Some(inv) = invs.get_mut(&p.invoice) else {
            continue;
        };
        // Verified first: a success that does not match is a decline, and only news counts
        // (a mismatched success for an attempt already failed changes nothing, again).
        let (result, discrepancy) = verified(&tenant.id, &p, result);
        if !status.takes(result.reported()) {
            continue;
        }
        let sub = inv.subscription.as_ref().and_then(|id| subs.get_mut(id));
        let (e, tally) = dunning::apply(plan, &mut p, inv, sub, result.into(), now);
        let s = CollectSummary {
            payment_attempts: 0,
            payments_succeeded: tally.succeeded,
            payments_failed: tally.failed,
        };
        if let Some(d) = discrepancy {
            // Held for a person: neither the dunning plan nor a new payment method charges
            // an invoice the provider may already have taken money for.
            inv.next_payment_attempt = None;
            inv.awaiting_payment_method = false;
            evts.push(d);
        }
        summary.add(s);
        evts.extend(e);
        recorded.push(p);
    }
    store::update_attempts(tx, &tenant.id, &recorded).await?;
    let changed: Vec<Invoice> = invs.into_values().collect();
    invoices::update_collections(tx, &tenant.id, &changed).await?;
    for s in subs
        .values()
        .filter(|s| before.get(&s.id) != Some(&s.status))
    {
        subscriptions::update_subscription(tx, &tenant.id, s, now).await?;
        let kind = if s.status == SubscriptionStatus::Canceled {
            EventType::CustomerSubscriptionDeleted
        } else {
            EventType::CustomerSubscriptionUpdated
        };
        evts.push((kind, data(s)));
    }
    let rows: Vec<NewEvent> = evts
        .into_iter()
        .map(|(kind, data)| NewEvent {
            kind,
            object_id: data
                .get("id")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
            data: data.to_string(),
            at: now,
        })
        .collect();
    events::insert_events(tx, &tenant.id, &rows).await?;
    Ok(summary)
}
