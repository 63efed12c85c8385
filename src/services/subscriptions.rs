//! Subscriptions: creation against the catalogue, item changes recorded for proration,
//! cancellation, pause and resume.

use super::ServiceError;
pub use crate::billing::cycle::CancelOptions;
use crate::billing::cycle::PendingChange;
use crate::billing::run;
use crate::domain::event::EventType;
use crate::domain::ids::{
    CouponId, CustomerId, PriceId, SubscriptionChangeId, SubscriptionId, SubscriptionItemId,
    TaxRateId,
};
use crate::domain::invoice_math::TaxBehavior;
use crate::domain::period::Period;
use crate::domain::period::Schedule;
use crate::domain::price::Price;
use crate::domain::pricing::{MAX_PERIOD_AMOUNT, line_amount};
use crate::domain::subscription::{
    CollectionMethod, ItemChange, ItemChangeError, MAX_ITEMS, ProrationBehavior, Subscription,
    SubscriptionItem, SubscriptionStatus, apply_item_changes,
};
use crate::domain::tax_rate::{CouponValue, TaxRate};
use crate::domain::tenant::Tenant;
use crate::store::subscriptions::{self as store, SubscriptionChange, SubscriptionFilter};
use crate::store::{Db, Page, Tx, catalogue, customers, events};
use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct NewSubscription {
    pub customer: CustomerId,
    pub items: Vec<(PriceId, u64)>,
    pub trial_period_days: Option<u32>,
    pub billing_cycle_anchor: Option<DateTime<Utc>>,
    pub collection_method: CollectionMethod,
    pub days_until_due: Option<u32>,
    pub coupon: Option<CouponId>,
    pub default_tax_rates: Vec<TaxRateId>,
    pub proration_behavior: ProrationBehavior,
}

/// The prices among `ids` that exist, in one query.
async fn prices_by_id(
    tx: &mut Tx,
    tenant: &Tenant,
    ids: &[PriceId],
) -> Result<std::collections::HashMap<PriceId, Price>, ServiceError> {
    Ok(catalogue::prices_by_ids(tx, &tenant.id, ids)
        .await?
        .into_iter()
        .map(|p| (p.id.clone(), p))
        .collect())
}

/// Prices on one subscription must agree on what an invoice can hold: one currency, one billing
/// interval, recurring, and a tax behaviour that matches the tax rates applied to them.
fn check_price(
    price: &Price,
    first: Option<&Price>,
    rates: &[TaxRate],
    param: &str,
) -> Result<(), ServiceError> {
    let Some(recurring) = price.recurring else {
        return Err(ServiceError::unprocessable(
            "price_not_recurring",
            Some(param),
            format!("price {} is not recurring", price.id),
        ));
    };
    if let Some(first) = first {
        if first.currency != price.currency {
            return Err(ServiceError::unprocessable(
                "currency_mismatch",
                Some(param),
                format!(
                    "price {} is in {} but the subscription bills in {}",
                    price.id, price.currency, first.currency
                ),
            ));
        }
        if first.recurring.map(|r| r.interval) != Some(recurring.interval) {
            return Err(ServiceError::unprocessable(
                "interval_mismatch",
                Some(param),
                format!(
                    "price {} recurs on a different interval than the subscription's other prices",
                    price.id
                ),
            ));
        }
    }
    let inclusive = matches!(price.tax_behavior, TaxBehavior::Inclusive);
    if let Some(rate) = rates.iter().find(|r| r.inclusive != inclusive) {
        return Err(ServiceError::unprocessable(
            "tax_behavior_mismatch",
            Some(param),
            format!(
                "price {} is tax-{} but tax rate {} is {}",
                price.id,
                if inclusive { "inclusive" } else { "exclusive" },
                rate.id,
                if rate.inclusive {
                    "inclusive"
                } else {
                    "exclusive"
                }
            ),
        ));
    }
    Ok(())
}

/// Refuses items whose full period would bill more than [`MAX_PERIOD_AMOUNT`] (or overflow):
/// a subscription the API accepts can always be invoiced.
fn check_period_amount<'p>(
    items: impl IntoIterator<Item = (&'p Price, u64)>,
) -> Result<(), ServiceError> {
    let mut total: i64 = 0;
    for (i, (price, quantity)) in items.into_iter().enumerate() {
        let too_large = || {
            ServiceError::unprocessable(
                "amount_too_large",
                Some(&format!("items[{i}].quantity")),
                format!(
                    "one period of this subscription would bill more than {MAX_PERIOD_AMOUNT} minor units"
                ),
            )
        };
        let amount = line_amount(&price.scheme, quantity).map_err(|_| too_large())?;
        total = total
            .checked_add(amount)
            .filter(|t| *t <= MAX_PERIOD_AMOUNT)
            .ok_or_else(too_large)?;
    }
    Ok(())
}

pub async fn create_subscription(
    db: &Db,
    tenant: &Tenant,
    new: NewSubscription,
    now: DateTime<Utc>,
) -> Result<Subscription, ServiceError> {
    let mut tx = db.begin().await?;
    let customer = customers::find_customer(&mut tx, &tenant.id, &new.customer)
        .await?
        .ok_or_else(|| ServiceError::missing_in_body("customer", &new.customer, "customer"))?;
    if customer.erased_at.is_some() {
        return Err(super::privacy::erased(&customer.id));
    }
    let mut found_rates =
        catalogue::tax_rates_by_ids(&mut tx, &tenant.id, &new.default_tax_rates).await?;
    let mut rates = Vec::with_capacity(new.default_tax_rates.len());
    for (i, id) in new.default_tax_rates.iter().enumerate() {
        let at = found_rates
            .iter()
            .position(|r| &r.id == id)
            .ok_or_else(|| {
                ServiceError::missing_in_body("tax_rate", id, format!("default_tax_rates[{i}]"))
            })?;
        rates.push(found_rates.swap_remove(at));
    }
    if rates.iter().filter(|r| r.inclusive).count() > 1 {
        return Err(ServiceError::unprocessable(
            "too_many_inclusive_tax_rates",
            Some("default_tax_rates"),
            "at most one inclusive tax rate can apply to a price",
        ));
    }
    let ids: Vec<PriceId> = new.items.iter().map(|(p, _)| p.clone()).collect();
    let catalogue_prices = prices_by_id(&mut tx, tenant, &ids).await?;
    let mut prices: Vec<Price> = Vec::with_capacity(new.items.len());
    for (i, (price_id, _)) in new.items.iter().enumerate() {
        let param = format!("items[{i}].price");
        let price = catalogue_prices
            .get(price_id)
            .cloned()
            .ok_or_else(|| ServiceError::missing_in_body("price", price_id, &param))?;
        check_price(&price, prices.first(), &rates, &param)?;
        if prices.iter().any(|p| p.id == price.id) {
            return Err(ServiceError::invalid(
                param,
                format!("price {} appears on more than one item", price.id),
            ));
        }
        prices.push(price);
    }
    let Some(first) = prices.first() else {
        return Err(ServiceError::MissingParam {
            param: "items".into(),
        });
    };
    check_period_amount(prices.iter().zip(new.items.iter().map(|(_, q)| *q)))?;
    let currency = first.currency;
    let Some(interval) = first.recurring.map(|r| r.interval) else {
        return Err(ServiceError::unprocessable(
            "price_not_recurring",
            Some("items[0].price"),
            "price is not recurring",
        ));
    };
    if let Some(c) = customer.currency
        && c != currency
    {
        return Err(ServiceError::unprocessable(
            "currency_mismatch",
            Some("items[0].price"),
            format!(
                "customer {} pays in {c} but the prices are in {currency}",
                customer.id
            ),
        ));
    }
    if let Some(coupon_id) = &new.coupon {
        let coupon = catalogue::find_coupon(&mut tx, &tenant.id, coupon_id)
            .await?
            .ok_or_else(|| ServiceError::missing_in_body("coupon", coupon_id, "coupon"))?;
        if let CouponValue::Amount { currency: c, .. } = coupon.value
            && c != currency
        {
            return Err(ServiceError::unprocessable(
                "currency_mismatch",
                Some("coupon"),
                format!("coupon {coupon_id} is in {c} but the subscription bills in {currency}"),
            ));
        }
    }
    let trial_end = new
        .trial_period_days
        .filter(|d| *d > 0)
        .map(|d| now + Duration::days(i64::from(d)));
    let schedule =
        Schedule::new(now, interval, trial_end, new.billing_cycle_anchor).map_err(|e| {
            ServiceError::invalid(
                if trial_end.is_some() && new.billing_cycle_anchor.is_none() {
                    "trial_period_days"
                } else {
                    "billing_cycle_anchor"
                },
                e,
            )
        })?;
    let (status, period) = match schedule.trial() {
        Some(trial) => (SubscriptionStatus::Trialing, trial),
        None => (SubscriptionStatus::Active, schedule.first_paid_period()),
    };
    let sub = Subscription {
        id: SubscriptionId::generate(),
        object: "subscription",
        customer: customer.id,
        status,
        currency,
        interval,
        items: new
            .items
            .iter()
            .map(|(price, quantity)| SubscriptionItem {
                id: SubscriptionItemId::generate(),
                price: price.clone(),
                quantity: *quantity,
            })
            .collect(),
        collection_method: new.collection_method,
        days_until_due: new.days_until_due,
        coupon: new.coupon,
        default_tax_rates: new.default_tax_rates,
        proration_behavior: new.proration_behavior,
        start_date: now,
        trial_end,
        billing_cycle_anchor: schedule.anchor(),
        current_period_start: period.start,
        current_period_end: period.end,
        cancel_at_period_end: false,
        canceled_at: None,
        ended_at: None,
        paused_at: None,
        created: now,
        next_billing_at: Some(schedule.paid_start()),
        discount_invoices: 0,
        billing_error: None,
    };
    store::insert_subscription(&mut tx, &tenant.id, &sub).await?;
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::CustomerSubscriptionCreated,
        sub.id.as_str(),
        &sub,
        now,
    )
    .await?;
    let sub = bill_if_due(&mut tx, tenant, sub, now).await?;
    tx.commit().await?;
    Ok(sub)
}

/// Invoices the period starting now (a new subscription, a resumed one) in the caller's
/// transaction, through the same code as the billing run.
async fn bill_if_due(
    tx: &mut Tx,
    tenant: &Tenant,
    sub: Subscription,
    now: DateTime<Utc>,
) -> Result<Subscription, ServiceError> {
    if sub.next_billing_at.is_none_or(|t| t > now) {
        return Ok(sub);
    }
    let mut cat = run::Catalogue::default();
    let (mut billed, _) =
        run::bill_batch(tx, tenant, std::slice::from_ref(&sub), &mut cat, now).await?;
    Ok(billed.pop().unwrap_or(sub))
}

async fn load(
    tx: &mut Tx,
    tenant: &Tenant,
    id: &SubscriptionId,
) -> Result<Subscription, ServiceError> {
    store::find_subscription(tx, &tenant.id, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("subscription", id))
}

/// The subscription, locked until the caller's transaction ends: a change writes back the
/// row it read, so nothing else may change it in between (a worker renewing it skips it).
async fn load_locked(
    tx: &mut Tx,
    tenant: &Tenant,
    id: &SubscriptionId,
) -> Result<Subscription, ServiceError> {
    store::lock_subscriptions(tx, &tenant.id, std::slice::from_ref(id))
        .await?
        .pop()
        .ok_or_else(|| ServiceError::not_found("subscription", id))
}

fn state_error(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::unprocessable("subscription_invalid_state", None, e)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionUpdate {
    pub items: Vec<ItemChange>,
    pub proration_behavior: Option<ProrationBehavior>,
    pub cancel_at_period_end: Option<bool>,
}

/// Applies a PATCH. Item changes are recorded with the items before and after and the period
/// they fall in, so the billing run can add proration lines for exactly this change.
pub async fn update_subscription(
    db: &Db,
    tenant: &Tenant,
    id: &SubscriptionId,
    update: SubscriptionUpdate,
    now: DateTime<Utc>,
) -> Result<Subscription, ServiceError> {
    let mut tx = db.begin().await?;
    let mut sub = load_locked(&mut tx, tenant, id).await?;
    sub.status.check_modifiable().map_err(state_error)?;
    let mut restarted = false;
    if !update.items.is_empty() {
        let before = sub.items.clone();
        let after = apply_item_changes(&before, &update.items).map_err(|e| match e {
            ItemChangeError::UnknownItem(ref item) => {
                ServiceError::missing_in_body("subscription_item", item, "items")
            }
            ItemChangeError::NoItemsLeft
            | ItemChangeError::DuplicatePrice(_)
            | ItemChangeError::ItemTwice(_) => ServiceError::invalid("items", e),
        })?;
        if after.len() > MAX_ITEMS {
            return Err(ServiceError::invalid(
                "items",
                format!(
                    "a subscription has at most {MAX_ITEMS} items; this change would leave {}",
                    after.len()
                ),
            ));
        }
        let rates =
            catalogue::tax_rates_by_ids(&mut tx, &tenant.id, &sub.default_tax_rates).await?;
        let ids: Vec<PriceId> = before
            .iter()
            .take(1)
            .chain(&after)
            .map(|i| i.price.clone())
            .collect();
        let known = prices_by_id(&mut tx, tenant, &ids).await?;
        let old_first = known
            .get(&before[0].price)
            .ok_or_else(|| ServiceError::missing_in_body("price", &before[0].price, "items"))?;
        // When every item moves to prices of another interval, the billing cycle restarts on
        // it now (Stripe's rule); otherwise every new price must match the subscription's.
        let new_interval = after
            .first()
            .and_then(|i| known.get(&i.price))
            .and_then(|p| p.recurring.map(|r| (p, r.interval)))
            .filter(|(p, interval)| {
                Some(*interval) != old_first.recurring.map(|r| r.interval)
                    && after
                        .iter()
                        .all(|a| !before.iter().any(|b| b.price == a.price))
                    && p.currency == sub.currency
            });
        let first = new_interval.map_or(old_first, |(p, _)| p);
        let mut checked = Vec::new();
        for (i, item) in after.iter().enumerate() {
            if before.iter().any(|b| b.price == item.price) || checked.contains(&item.price) {
                continue;
            }
            let param = format!("items[{i}].price");
            let price = known
                .get(&item.price)
                .ok_or_else(|| ServiceError::missing_in_body("price", &item.price, &param))?;
            check_price(price, Some(first), &rates, &param)?;
            checked.push(item.price.clone());
        }
        check_period_amount(
            after
                .iter()
                .filter_map(|i| known.get(&i.price).map(|p| (p, i.quantity))),
        )?;
        for gone in before
            .iter()
            .filter(|b| !after.iter().any(|a| a.id == b.id))
        {
            store::retire_item(&mut tx, &tenant.id, &gone.id, now).await?;
        }
        store::upsert_items(&mut tx, &tenant.id, &sub.id, &after, now).await?;
        // A trial is free, so changing it has nothing to prorate.
        let behavior = match sub.status {
            SubscriptionStatus::Trialing => ProrationBehavior::None,
            SubscriptionStatus::Active
            | SubscriptionStatus::PastDue
            | SubscriptionStatus::Unpaid
            | SubscriptionStatus::Paused
            | SubscriptionStatus::Canceled => {
                update.proration_behavior.unwrap_or(sub.proration_behavior)
            }
        };
        let restart = new_interval.is_some() && sub.status != SubscriptionStatus::Trialing;
        let change = SubscriptionChange {
            id: SubscriptionChangeId::generate(),
            subscription: sub.id.clone(),
            effective_at: now,
            proration_behavior: behavior,
            items_before: before,
            // A restarted cycle bills the new items as its first period; the change itself
            // only credits the old items' unused time.
            items_after: if restart { Vec::new() } else { after.clone() },
            period_start: sub.current_period_start,
            period_end: sub.current_period_end,
        };
        store::insert_subscription_change(&mut tx, &tenant.id, &change).await?;
        sub.items = after;
        if let Some((_, interval)) = new_interval {
            sub.interval = interval;
        }
        restarted = restart;
        if restart {
            sub.billing_cycle_anchor = now;
            sub.current_period_end = now;
            sub.next_billing_at = Some(now);
        } else if behavior == ProrationBehavior::AlwaysInvoice {
            let pending = PendingChange {
                id: change.id.clone(),
                effective_at: change.effective_at,
                period: Period {
                    start: change.period_start,
                    end: change.period_end,
                },
                before: change.items_before.clone(),
                after: change.items_after.clone(),
            };
            run::invoice_change_now(&mut tx, tenant, &mut sub, &pending).await?;
        }
    }
    if let Some(flag) = update.cancel_at_period_end {
        sub.cancel_at_period_end = flag;
    }
    store::update_subscription(&mut tx, &tenant.id, &sub, now).await?;
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::CustomerSubscriptionUpdated,
        sub.id.as_str(),
        &sub,
        now,
    )
    .await?;
    // A restarted cycle's first period is invoiced at once.
    let sub = if restarted {
        bill_if_due(&mut tx, tenant, sub, now).await?
    } else {
        sub
    };
    tx.commit().await?;
    Ok(sub)
}

/// Cancels at once (with a final invoice as `options` ask) or at the period end.
pub async fn cancel_subscription(
    db: &Db,
    tenant: &Tenant,
    id: &SubscriptionId,
    at_period_end: bool,
    options: CancelOptions,
    now: DateTime<Utc>,
) -> Result<Subscription, ServiceError> {
    let mut tx = db.begin().await?;
    let mut sub = load_locked(&mut tx, tenant, id).await?;
    let kind = if at_period_end {
        sub.status.check_modifiable().map_err(state_error)?;
        sub.cancel_at_period_end = true;
        EventType::CustomerSubscriptionUpdated
    } else {
        let status = sub.status.cancel().map_err(state_error)?;
        if options != CancelOptions::default() {
            run::invoice_cancellation(&mut tx, tenant, &sub, now, options).await?;
        }
        sub.status = status;
        sub.canceled_at = Some(now);
        sub.ended_at = Some(now);
        sub.next_billing_at = None;
        EventType::CustomerSubscriptionDeleted
    };
    store::update_subscription(&mut tx, &tenant.id, &sub, now).await?;
    events::insert_event(&mut tx, &tenant.id, kind, sub.id.as_str(), &sub, now).await?;
    tx.commit().await?;
    Ok(sub)
}

pub async fn pause_subscription(
    db: &Db,
    tenant: &Tenant,
    id: &SubscriptionId,
    now: DateTime<Utc>,
) -> Result<Subscription, ServiceError> {
    let mut tx = db.begin().await?;
    let mut sub = load_locked(&mut tx, tenant, id).await?;
    sub.status = sub.status.pause().map_err(state_error)?;
    sub.paused_at = Some(now);
    store::update_subscription(&mut tx, &tenant.id, &sub, now).await?;
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::CustomerSubscriptionPaused,
        sub.id.as_str(),
        &sub,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(sub)
}

pub async fn resume_subscription(
    db: &Db,
    tenant: &Tenant,
    id: &SubscriptionId,
    now: DateTime<Utc>,
) -> Result<Subscription, ServiceError> {
    let mut tx = db.begin().await?;
    let mut sub = load_locked(&mut tx, tenant, id).await?;
    sub.status = sub.status.resume().map_err(state_error)?;
    sub.paused_at = None;
    // Resuming inside the period already invoiced simply continues it. Once the pause has
    // outlasted that period, a new cycle starts now (Stripe's `billing_cycle_anchor: now`): the
    // paused time is not billed and the first period after the pause is invoiced at once,
    // with the usage recorded since the interrupted period began (billed in arrears, it would
    // otherwise be lost).
    if now >= sub.current_period_end {
        sub.billing_cycle_anchor = now;
        sub.current_period_end = now;
    }
    sub.next_billing_at = Some(sub.current_period_end.max(now));
    store::update_subscription(&mut tx, &tenant.id, &sub, now).await?;
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::CustomerSubscriptionResumed,
        sub.id.as_str(),
        &sub,
        now,
    )
    .await?;
    let sub = bill_if_due(&mut tx, tenant, sub, now).await?;
    tx.commit().await?;
    Ok(sub)
}

/// Clears a subscription's `billing_error` and bills what is due now; billing that fails again
/// sets it aside again (the run's own rule), so the answer shows the new reason.
pub async fn retry_billing(
    db: &Db,
    tenant: &Tenant,
    id: &SubscriptionId,
    now: DateTime<Utc>,
) -> Result<Subscription, ServiceError> {
    let mut tx = db.begin().await?;
    let mut sub = load_locked(&mut tx, tenant, id).await?;
    if sub.billing_error.is_none() {
        return Err(state_error(
            "billing of this subscription has not failed; there is nothing to retry",
        ));
    }
    sub.billing_error = None;
    store::update_subscription(&mut tx, &tenant.id, &sub, now).await?;
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::CustomerSubscriptionBillingRetried,
        sub.id.as_str(),
        &sub,
        now,
    )
    .await?;
    tx.commit().await?;
    run::run_due_one(db, tenant, id, now).await?;
    get_subscription(db, tenant, id).await
}

pub async fn get_subscription(
    db: &Db,
    tenant: &Tenant,
    id: &SubscriptionId,
) -> Result<Subscription, ServiceError> {
    let mut tx = db.read().await?;
    let sub = load(&mut tx, tenant, id).await;
    tx.commit().await?;
    sub
}

pub async fn list_subscriptions(
    db: &Db,
    tenant: &Tenant,
    filter: &SubscriptionFilter,
    page: &Page,
) -> Result<(Vec<Subscription>, bool), ServiceError> {
    let mut tx = db.read().await?;
    let out = store::list_subscriptions(&mut tx, &tenant.id, filter, page).await?;
    tx.commit().await?;
    Ok(out)
}
