//! The billing run: claims due subscriptions in batches (one transaction each), bills one
//! boundary of each at that boundary's own time, and writes invoices, lines, events and the
//! subscriptions' new state with a few multi-row statements per batch. Memory is one batch.
//!
//! Batches are taken earliest boundary first, so a run that catches up months (the test clock)
//! processes every subscription's boundaries in time order and invoice numbers follow time.
//! A rerun, a second worker or a crash between batches cannot bill a period twice: the claim
//! only sees boundaries not yet moved forward, and a unique index on (subscription, period
//! start) rejects a duplicate cycle invoice, rolling its batch back.

use super::cycle::{
    CancelOptions, Inputs, Outcome, PendingChange, Transition, bill_boundary, cancellation_invoice,
    proration_invoice,
};
use crate::domain::balance::settle_invoice;
use crate::domain::customer::TaxExempt;
use crate::domain::event::EventType;
use crate::domain::ids::{CouponId, InvoiceId, PriceId, SubscriptionChangeId, TaxRateId};
use crate::domain::invoice::{Invoice, InvoiceStatus};
use crate::domain::price::{Price, UsageType};
use crate::domain::subscription::Subscription;
use crate::domain::tax_rate::{Coupon, TaxRate};
use crate::domain::tenant::Tenant;
use crate::store::events::NewEvent;
use crate::store::{Db, StoreError, Tx, balances, billing, catalogue, events, invoices};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// What a run did, for logs, the CLI and the test clock's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Subscription boundaries processed (renewals, trial ends, period-end cancellations).
    pub boundaries: u64,
    pub invoices_created: u64,
    pub trials_ended: u64,
    pub subscriptions_ended: u64,
    /// Subscriptions whose invoice could not be computed (logged, then left unbilled).
    pub failed: u64,
}

impl RunSummary {
    pub fn add(&mut self, o: RunSummary) {
        self.boundaries += o.boundaries;
        self.invoices_created += o.invoices_created;
        self.trials_ended += o.trials_ended;
        self.subscriptions_ended += o.subscriptions_ended;
        self.failed += o.failed;
    }
}

/// Catalogue rows seen during a run; prices, tax rates and coupons are immutable, so a run
/// loads each at most once however many batches reference it.
#[derive(Default)]
pub struct Catalogue {
    prices: HashMap<PriceId, Price>,
    rates: HashMap<TaxRateId, TaxRate>,
    coupons: HashMap<CouponId, Coupon>,
}

impl Catalogue {
    /// Loads what `subs` reference, and the prices of their pending changes: a swapped-out or
    /// removed item's price is still needed to credit its unused time.
    async fn load_for(
        &mut self,
        tx: &mut Tx,
        tenant: &Tenant,
        subs: &[Subscription],
        changes: &[&PendingChange],
    ) -> Result<(), StoreError> {
        let mut prices: HashSet<PriceId> = HashSet::new();
        let mut rates: HashSet<TaxRateId> = HashSet::new();
        let mut coupons: HashSet<CouponId> = HashSet::new();
        let changed_items = changes.iter().flat_map(|c| c.before.iter().chain(&c.after));
        prices.extend(
            subs.iter()
                .flat_map(|s| s.items.iter())
                .chain(changed_items)
                .map(|i| i.price.clone())
                .filter(|p| !self.prices.contains_key(p)),
        );
        for s in subs {
            rates.extend(
                s.default_tax_rates
                    .iter()
                    .filter(|r| !self.rates.contains_key(*r))
                    .cloned(),
            );
            coupons.extend(
                s.coupon
                    .iter()
                    .filter(|c| !self.coupons.contains_key(*c))
                    .cloned(),
            );
        }
        let prices: Vec<_> = prices.into_iter().collect();
        for p in catalogue::prices_by_ids(tx, &tenant.id, &prices).await? {
            self.prices.insert(p.id.clone(), p);
        }
        let rates: Vec<_> = rates.into_iter().collect();
        for r in catalogue::tax_rates_by_ids(tx, &tenant.id, &rates).await? {
            self.rates.insert(r.id.clone(), r);
        }
        let coupons: Vec<_> = coupons.into_iter().collect();
        for c in catalogue::coupons_by_ids(tx, &tenant.id, &coupons).await? {
            self.coupons.insert(c.id.clone(), c);
        }
        Ok(())
    }

    /// What billing `sub` reads, from this catalogue and what the caller loaded.
    fn inputs<'a>(
        &'a self,
        sub: &Subscription,
        rates: &'a [TaxRate],
        exempt: &HashMap<crate::domain::ids::CustomerId, TaxExempt>,
        usage: &'a HashMap<crate::domain::ids::SubscriptionItemId, u64>,
        pending: &'a [PendingChange],
    ) -> Inputs<'a> {
        Inputs {
            prices: &self.prices,
            tax_rates: rates,
            coupon: sub.coupon.as_ref().and_then(|c| self.coupons.get(c)),
            tax_exempt: exempt
                .get(&sub.customer)
                .copied()
                .unwrap_or(TaxExempt::None),
            usage,
            pending,
        }
    }

    fn rates_of(&self, sub: &Subscription) -> Vec<TaxRate> {
        sub.default_tax_rates
            .iter()
            .filter_map(|id| self.rates.get(id).cloned())
            .collect()
    }

    fn is_metered(&self, price: &PriceId) -> bool {
        self.prices
            .get(price)
            .and_then(|p| p.recurring)
            .is_some_and(|r| r.usage_type == UsageType::Metered)
    }
}

/// What billing a batch reads besides the catalogue: pending item changes, the customers' tax
/// exemption, and each metered item's usage over the period its boundary ends.
struct Loaded {
    pending: HashMap<crate::domain::ids::SubscriptionId, Vec<PendingChange>>,
    exempt: HashMap<crate::domain::ids::CustomerId, TaxExempt>,
    usage: HashMap<crate::domain::ids::SubscriptionItemId, u64>,
}

async fn load_batch(
    tx: &mut Tx,
    tenant: &Tenant,
    subs: &[Subscription],
    cat: &mut Catalogue,
) -> Result<Loaded, StoreError> {
    let ids: Vec<_> = subs.iter().map(|s| s.id.clone()).collect();
    let pending = billing::pending_changes(tx, &tenant.id, &ids).await?;
    let changes: Vec<&PendingChange> = pending.values().flatten().collect();
    cat.load_for(tx, tenant, subs, &changes).await?;
    let customers: Vec<_> = subs
        .iter()
        .map(|s| s.customer.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let exempt = billing::tax_exempt_of(tx, &tenant.id, &customers).await?;
    // Each metered item's usage over the period its subscription's boundary ends.
    let windows: Vec<_> = subs
        .iter()
        .filter_map(|s| s.next_billing_at.map(|to| (s, to)))
        .flat_map(|(s, to)| {
            s.items
                .iter()
                .filter(|i| cat.is_metered(&i.price))
                .map(move |i| (i.id.clone(), s.current_period_start, to))
        })
        .collect();
    let usage = billing::usage_totals(tx, &tenant.id, &windows).await?;
    Ok(Loaded {
        pending,
        exempt,
        usage,
    })
}

/// The invoice the subscription's next boundary would produce if it were billed now: its
/// licensed items, pending prorations, usage recorded so far, discount and tax, as a draft
/// without a number. Reads only; the customer's credit balance is applied when the real
/// invoice is written, not here.
pub async fn preview_next(
    tx: &mut Tx,
    tenant: &Tenant,
    sub: &Subscription,
) -> Result<Result<Option<Invoice>, super::cycle::BillingError>, StoreError> {
    let Some(at) = sub.next_billing_at else {
        return Ok(Ok(None));
    };
    let mut cat = Catalogue::default();
    let loaded = load_batch(tx, tenant, std::slice::from_ref(sub), &mut cat).await?;
    let rates = cat.rates_of(sub);
    let inputs = cat.inputs(
        sub,
        &rates,
        &loaded.exempt,
        &loaded.usage,
        loaded.pending.get(&sub.id).map_or(&[][..], Vec::as_slice),
    );
    Ok(bill_boundary(sub, at, &inputs).map(|outcome| {
        outcome.invoice.map(|mut inv| {
            inv.status = InvoiceStatus::Draft;
            inv.number = None;
            inv.finalized_at = None;
            inv.paid_at = None;
            inv.amount_paid = 0;
            inv.amount_due = inv.total.max(0);
            inv
        })
    }))
}

/// The invoice as events carry it: the object without its lines (those are one GET away).
fn event_payload(inv: &mut Invoice) -> Result<String, StoreError> {
    let lines = std::mem::take(&mut inv.lines);
    let json = serde_json::to_string(inv).map_err(|e| crate::store::rows::corrupt("invoice", e));
    inv.lines = lines;
    json
}

/// Settles freshly finalized invoices against their customers' balances: negative totals
/// become credit, credit (or debt) is used on the next invoices, in the order given. Balances
/// are locked for the rest of the transaction (after the subscriptions the caller holds).
async fn settle_balances(
    tx: &mut Tx,
    tenant: &Tenant,
    invoices: &mut [Invoice],
    evts: &mut Vec<NewEvent>,
) -> Result<(), StoreError> {
    let credits: Vec<balances::Key> = invoices
        .iter()
        .filter(|i| i.total < 0)
        .map(|i| (i.customer.clone(), i.currency))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    balances::ensure_rows(tx, &tenant.id, &credits).await?;
    let customers: Vec<_> = invoices
        .iter()
        .map(|i| i.customer.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut held = balances::lock_balances(tx, &tenant.id, &customers).await?;
    if held.values().all(|b| *b == 0) && credits.is_empty() {
        return Ok(());
    }
    let mut txns = Vec::new();
    for inv in invoices.iter_mut() {
        let Some(balance) = held.get_mut(&(inv.customer.clone(), inv.currency)) else {
            continue;
        };
        if let Some(t) = settle_invoice(inv, *balance)
            .map_err(|e| crate::store::rows::corrupt("customer_balances", e))?
        {
            *balance = t.ending_balance;
            evts.push(NewEvent {
                kind: EventType::CustomerBalanceTransactionCreated,
                object_id: t.id.to_string(),
                data: serde_json::to_string(&t)
                    .map_err(|e| crate::store::rows::corrupt("balance transaction", e))?,
                at: t.created,
            });
            txns.push(t);
        }
    }
    balances::record(tx, &tenant.id, &txns).await
}

/// Settles, numbers, inserts and announces freshly finalized invoices.
pub async fn write_invoices(
    tx: &mut Tx,
    tenant: &Tenant,
    invoices: &mut [Invoice],
    evts: &mut Vec<NewEvent>,
) -> Result<(), StoreError> {
    settle_balances(tx, tenant, invoices, evts).await?;
    invoices::assign_numbers(tx, &tenant.id, &tenant.invoice_prefix, invoices).await?;
    invoices::insert_invoices(tx, &tenant.id, invoices).await?;
    for inv in invoices.iter_mut() {
        let data = event_payload(inv)?;
        let mut kinds = vec![EventType::InvoiceCreated, EventType::InvoiceFinalized];
        if inv.status == InvoiceStatus::Paid {
            kinds.push(EventType::InvoicePaid);
        }
        for kind in kinds {
            evts.push(NewEvent {
                kind,
                object_id: inv.id.to_string(),
                data: data.clone(),
                at: inv.created,
            });
        }
    }
    Ok(())
}

/// Bills the next boundary of each subscription given (all due), inside the caller's
/// transaction.
pub async fn bill_batch(
    tx: &mut Tx,
    tenant: &Tenant,
    subs: &[Subscription],
    cat: &mut Catalogue,
    now: DateTime<Utc>,
) -> Result<(Vec<Subscription>, RunSummary), StoreError> {
    let mut summary = RunSummary::default();
    if subs.is_empty() {
        return Ok((Vec::new(), summary));
    }
    let Loaded {
        pending,
        exempt,
        usage,
    } = load_batch(tx, tenant, subs, cat).await?;
    let mut invoices_out: Vec<Invoice> = Vec::new();
    let mut updated: Vec<Subscription> = Vec::with_capacity(subs.len());
    let mut done_changes: Vec<(SubscriptionChangeId, InvoiceId)> = Vec::new();
    let mut evts: Vec<NewEvent> = Vec::new();
    for sub in subs {
        let Some(at) = sub.next_billing_at else {
            continue;
        };
        let rates = cat.rates_of(sub);
        let inputs = cat.inputs(
            sub,
            &rates,
            &exempt,
            &usage,
            pending.get(&sub.id).map_or(&[][..], Vec::as_slice),
        );
        summary.boundaries += 1;
        match bill_boundary(sub, at, &inputs) {
            Ok(Outcome {
                subscription,
                invoice,
                invoiced_changes,
                transition,
            }) => {
                if let Some(inv) = invoice {
                    done_changes.extend(invoiced_changes.into_iter().map(|c| (c, inv.id.clone())));
                    invoices_out.push(inv);
                }
                if let Some(t) = transition {
                    match t {
                        Transition::Ended => summary.subscriptions_ended += 1,
                        Transition::TrialEnded => summary.trials_ended += 1,
                    }
                    let kind = t.event();
                    let data = serde_json::to_string(&subscription)
                        .map_err(|e| crate::store::rows::corrupt("subscription", e))?;
                    evts.push(NewEvent {
                        kind,
                        object_id: subscription.id.to_string(),
                        data,
                        at,
                    });
                }
                updated.push(subscription);
            }
            Err(e) => {
                summary.failed += 1;
                let (stopped, event) = set_aside(sub, &e.to_string(), at)?;
                evts.push(event);
                updated.push(stopped);
            }
        }
    }
    summary.invoices_created = invoices_out.len() as u64;
    // The invoices go last: numbering takes the tenant's sequence row, which stays locked until
    // commit, so every other write of the batch happens before it and concurrent sign-ups and
    // workers queue for as short a time as possible.
    billing::mark_changes_invoiced(tx, &tenant.id, &done_changes).await?;
    billing::update_billing_state(tx, &tenant.id, &updated, now).await?;
    events::insert_events(tx, &tenant.id, &std::mem::take(&mut evts)).await?;
    write_invoices(tx, tenant, &mut invoices_out, &mut evts).await?;
    events::insert_events(tx, &tenant.id, &evts).await?;
    Ok((updated, summary))
}

/// A subscription that cannot be billed is set aside with the reason: it keeps its next
/// boundary, leaves the run until retried (`retry_billing`), and says so in an event.
fn set_aside(
    sub: &Subscription,
    error: &str,
    at: DateTime<Utc>,
) -> Result<(Subscription, NewEvent), StoreError> {
    tracing::error!(subscription.id = %sub.id, error = %error, "subscription cannot be billed; set aside until retried");
    let mut stopped = sub.clone();
    stopped.billing_error = Some(error.to_owned());
    let data = serde_json::to_string(&stopped)
        .map_err(|e| crate::store::rows::corrupt("subscription", e))?;
    let event = NewEvent {
        kind: EventType::CustomerSubscriptionBillingFailed,
        object_id: sub.id.to_string(),
        data,
        at,
    };
    Ok((stopped, event))
}

/// A pass that made this many invoices refreshes the planner's statistics before collection
/// reads them (`bulk::analyze_invoices`).
const ANALYZE_AFTER: u64 = 10_000;

/// Runs every boundary due by `until` for one tenant, batch by batch.
pub async fn run_due(
    db: &Db,
    tenant: &Tenant,
    until: DateTime<Utc>,
    batch_size: i64,
) -> Result<RunSummary, StoreError> {
    let mut total = RunSummary::default();
    let mut cat = Catalogue::default();
    let mut cursor: Option<(DateTime<Utc>, String)> = None;
    loop {
        let mut tx = db.begin().await?;
        let subs = crate::store::subscriptions::claim_due(
            &mut tx,
            &tenant.id,
            until,
            cursor.as_ref(),
            batch_size,
        )
        .await?;
        let Some(last) = subs
            .last()
            .and_then(|s| s.next_billing_at.map(|t| (t, s.id.to_string())))
        else {
            tx.commit().await?;
            // Once more from the start: rows another worker held, or whose next boundary fell
            // behind the cursor, are picked up before the run ends.
            match cursor.take() {
                Some(_) => continue,
                None => break,
            }
        };
        let now = last.0;
        let updated = match bill_batch(&mut tx, tenant, &subs, &mut cat, now).await {
            Ok((updated, summary)) => {
                crate::crash::point("billing.batch_written");
                tx.commit().await?;
                crate::crash::point("billing.batch_committed");
                total.add(summary);
                updated
            }
            Err(e) => {
                // One bad row must not roll its neighbours back on every pass: bill the batch
                // one subscription at a time, and set aside the ones that still fail.
                drop(tx);
                tracing::warn!(tenant.id = %tenant.id, error = %e, "billing batch failed; billing its subscriptions one by one");
                let ids: Vec<_> = subs.iter().map(|s| s.id.clone()).collect();
                let (updated, summary) = bill_one_by_one(db, tenant, &ids, &mut cat, until).await?;
                total.add(summary);
                updated
            }
        };
        // Resume after this batch, unless a billed subscription's next boundary comes earlier:
        // then from there, so boundaries keep being billed in time order.
        let earliest_next = updated
            .iter()
            .filter(|s| s.billing_error.is_none())
            .filter_map(|s| s.next_billing_at)
            .filter(|t| *t <= until)
            .min();
        cursor = Some(match earliest_next {
            Some(t) if (t, "") < (last.0, last.1.as_str()) => (t, String::new()),
            Some(_) | None => last,
        });
    }
    if total.boundaries > 0 {
        tracing::info!(tenant.id = %tenant.id, boundaries = total.boundaries, invoices = total.invoices_created, "billing run");
    }
    if total.invoices_created >= ANALYZE_AFTER {
        crate::store::bulk::analyze_invoices(db).await?;
    }
    Ok(total)
}

/// Bills one subscription's boundaries due by `until` (a retried one catching up), each in its
/// own transaction; one that fails is set aside again.
pub async fn run_due_one(
    db: &Db,
    tenant: &Tenant,
    id: &crate::domain::ids::SubscriptionId,
    until: DateTime<Utc>,
) -> Result<RunSummary, StoreError> {
    let mut total = RunSummary::default();
    let mut cat = Catalogue::default();
    loop {
        let (updated, summary) =
            bill_one_by_one(db, tenant, std::slice::from_ref(id), &mut cat, until).await?;
        total.add(summary);
        if summary.boundaries == 0 || updated.iter().any(|s| s.billing_error.is_some()) {
            return Ok(total);
        }
    }
}

/// The fallback for a batch that failed as a whole: each subscription in its own transaction,
/// claimed again (another worker may have taken it meanwhile); one that fails alone is set
/// aside in a transaction of its own.
async fn bill_one_by_one(
    db: &Db,
    tenant: &Tenant,
    ids: &[crate::domain::ids::SubscriptionId],
    cat: &mut Catalogue,
    until: DateTime<Utc>,
) -> Result<(Vec<Subscription>, RunSummary), StoreError> {
    let mut total = RunSummary::default();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let mut tx = db.begin().await?;
        let Some(fresh) =
            crate::store::subscriptions::claim_one_due(&mut tx, &tenant.id, id, until).await?
        else {
            tx.commit().await?;
            continue;
        };
        let Some(at) = fresh.next_billing_at else {
            tx.commit().await?;
            continue;
        };
        match bill_batch(&mut tx, tenant, std::slice::from_ref(&fresh), cat, at).await {
            Ok((updated, summary)) => {
                tx.commit().await?;
                total.add(summary);
                out.extend(updated);
            }
            // Only a failure that billing the same rows again would meet again (a constraint,
            // a value the store cannot hold) sets the subscription aside; a passing one (a lost
            // connection, a deadlock) fails the run, which the next pass repeats.
            Err(e @ (StoreError::Conflict(_) | StoreError::Corrupt { .. })) => {
                drop(tx);
                let mut tx = db.begin().await?;
                // Claimed again: set aside only as it still is (another worker may have
                // billed it meanwhile).
                let again =
                    crate::store::subscriptions::claim_one_due(&mut tx, &tenant.id, id, until)
                        .await?
                        .filter(|s| s.next_billing_at == fresh.next_billing_at);
                let Some(again) = again else {
                    tx.commit().await?;
                    continue;
                };
                let (stopped, event) = set_aside(&again, &e.to_string(), at)?;
                billing::update_billing_state(
                    &mut tx,
                    &tenant.id,
                    std::slice::from_ref(&stopped),
                    at,
                )
                .await?;
                events::insert_events(&mut tx, &tenant.id, std::slice::from_ref(&event)).await?;
                tx.commit().await?;
                total.boundaries += 1;
                total.failed += 1;
                out.push(stopped);
            }
            Err(passing) => return Err(passing),
        }
    }
    Ok((out, total))
}

/// `always_invoice`: the prorations of one change on an invoice of their own, at once, with
/// the subscription's discount (a used-up `once` coupon counts this invoice).
pub async fn invoice_change_now(
    tx: &mut Tx,
    tenant: &Tenant,
    sub: &mut Subscription,
    change: &PendingChange,
) -> Result<Option<Invoice>, StoreError> {
    let mut cat = Catalogue::default();
    cat.load_for(tx, tenant, std::slice::from_ref(sub), &[change])
        .await?;
    let exempt =
        billing::tax_exempt_of(tx, &tenant.id, std::slice::from_ref(&sub.customer)).await?;
    let rates = cat.rates_of(sub);
    let usage = HashMap::new();
    let inputs = cat.inputs(sub, &rates, &exempt, &usage, &[]);
    let invoice = proration_invoice(sub, change, &inputs)
        .map_err(|e| crate::store::rows::corrupt("proration", e))?;
    let Some(inv) = invoice else { return Ok(None) };
    if inputs.coupon.is_some() {
        sub.discount_invoices += 1;
    }
    write_one(tx, tenant, inv, vec![change.id.clone()])
        .await
        .map(Some)
}

/// Settles, numbers, inserts and announces one invoice made outside the run, and marks the
/// changes it bills as invoiced.
async fn write_one(
    tx: &mut Tx,
    tenant: &Tenant,
    inv: Invoice,
    changes: Vec<SubscriptionChangeId>,
) -> Result<Invoice, StoreError> {
    let mut one = [inv];
    let mut evts = Vec::new();
    write_invoices(tx, tenant, &mut one, &mut evts).await?;
    events::insert_events(tx, &tenant.id, &evts).await?;
    let [inv] = one;
    let done: Vec<_> = changes.into_iter().map(|c| (c, inv.id.clone())).collect();
    billing::mark_changes_invoiced(tx, &tenant.id, &done).await?;
    Ok(inv)
}

/// Cancelling now with `invoice_now` / `prorate`: the final invoice, in the caller's
/// transaction (the subscription is locked by the caller).
pub async fn invoice_cancellation(
    tx: &mut Tx,
    tenant: &Tenant,
    sub: &Subscription,
    at: DateTime<Utc>,
    options: CancelOptions,
) -> Result<Option<Invoice>, StoreError> {
    let pending = billing::pending_changes(tx, &tenant.id, std::slice::from_ref(&sub.id)).await?;
    let changes: Vec<PendingChange> = pending.into_values().flatten().collect();
    let refs: Vec<&PendingChange> = changes.iter().collect();
    let mut cat = Catalogue::default();
    cat.load_for(tx, tenant, std::slice::from_ref(sub), &refs)
        .await?;
    let exempt =
        billing::tax_exempt_of(tx, &tenant.id, std::slice::from_ref(&sub.customer)).await?;
    // The usage so far, the cancelling instant included.
    let through = at + chrono::Duration::seconds(1);
    let windows: Vec<_> = sub
        .items
        .iter()
        .filter(|i| cat.is_metered(&i.price))
        .map(|i| (i.id.clone(), sub.current_period_start, through))
        .collect();
    let usage = billing::usage_totals(tx, &tenant.id, &windows).await?;
    let rates = cat.rates_of(sub);
    let inputs = cat.inputs(sub, &rates, &exempt, &usage, &changes);
    let (invoice, invoiced) = cancellation_invoice(sub, at, &inputs, options)
        .map_err(|e| crate::store::rows::corrupt("cancellation", e))?;
    let Some(inv) = invoice else { return Ok(None) };
    write_one(tx, tenant, inv, invoiced).await.map(Some)
}
