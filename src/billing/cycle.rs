//! What happens to one subscription at one boundary of its calendar, as a pure function: the
//! trial ends, the subscription ends (cancel at period end), or a new period starts and is
//! invoiced — licensed items in advance, metered usage of the period that just ended in
//! arrears, pending prorations, the coupon before tax, tax per rate.

use crate::domain::customer::TaxExempt;
use crate::domain::event::EventType;
use crate::domain::ids::{
    InvoiceId, InvoiceLineId, PriceId, SubscriptionChangeId, SubscriptionItemId,
};
use crate::domain::invoice::{
    BillingReason, Invoice, InvoiceLine, InvoiceStatus, LineKind, TaxAmount,
};
use crate::domain::invoice_math::{
    Discount, LineInput, TaxRateInput, TaxTreatment, compute_totals,
};
use crate::domain::period::{
    Interval, IntervalUnit, Period, boundary, period_starting_at, unused_fraction,
};
use crate::domain::price::{Price, UsageType};
use crate::domain::pricing::{MathError, PriceScheme, line_amount, prorate};
use crate::domain::subscription::{
    CollectionMethod, Subscription, SubscriptionItem, SubscriptionStatus,
};
use crate::domain::tax_rate::{Coupon, CouponDuration, CouponValue, TaxRate};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BillingError {
    #[error("price {0} is not in the catalogue")]
    UnknownPrice(PriceId),
    #[error("invoice arithmetic failed: {0}")]
    Math(#[from] MathError),
    #[error("the billing calendar left the representable time range")]
    OutOfRange,
}

/// A recorded item change not yet invoiced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChange {
    pub id: SubscriptionChangeId,
    pub effective_at: DateTime<Utc>,
    pub period: Period,
    pub before: Vec<SubscriptionItem>,
    pub after: Vec<SubscriptionItem>,
}

/// Everything billing one subscription needs, loaded in bulk by the caller.
pub struct Inputs<'a> {
    pub prices: &'a HashMap<PriceId, Price>,
    /// The subscription's default tax rates, in order.
    pub tax_rates: &'a [TaxRate],
    pub coupon: Option<&'a Coupon>,
    pub tax_exempt: TaxExempt,
    /// Usage total of each metered item over the period being billed (summed by the store).
    pub usage: &'a HashMap<SubscriptionItemId, u64>,
    pub pending: &'a [PendingChange],
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub subscription: Subscription,
    pub invoice: Option<Invoice>,
    /// Changes whose proration lines are on `invoice`.
    pub invoiced_changes: Vec<SubscriptionChangeId>,
    /// What happened to the subscription itself at this boundary, if anything.
    pub transition: Option<Transition>,
}

/// A change of a subscription's state at a boundary, announced as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The trial ended: `customer.subscription.updated`.
    TrialEnded,
    /// It ended at its period end: `customer.subscription.deleted`.
    Ended,
}

impl Transition {
    pub fn event(self) -> EventType {
        match self {
            Transition::TrialEnded => EventType::CustomerSubscriptionUpdated,
            Transition::Ended => EventType::CustomerSubscriptionDeleted,
        }
    }
}

fn month() -> Result<Interval, BillingError> {
    Interval::new(IntervalUnit::Month, 1).map_err(|_| BillingError::OutOfRange)
}

/// Whether the coupon still applies to an invoice for a period starting at `start`.
fn coupon_applies(
    coupon: &Coupon,
    sub: &Subscription,
    start: DateTime<Utc>,
) -> Result<bool, BillingError> {
    Ok(match coupon.duration {
        CouponDuration::Once => sub.discount_invoices == 0,
        CouponDuration::Forever => true,
        CouponDuration::Repeating => {
            let months = i64::from(coupon.duration_in_months.unwrap_or(0));
            let end = boundary(sub.start_date, month()?, months).ok_or(BillingError::OutOfRange)?;
            start < end
        }
    })
}

/// The period that starts at `at` on the subscription's calendar (the domain's one rule).
fn period_starting(
    sub: &Subscription,
    at: DateTime<Utc>,
) -> Result<(Period, Option<(i64, i64)>), BillingError> {
    period_starting_at(sub.billing_cycle_anchor, sub.interval, at).ok_or(BillingError::OutOfRange)
}

struct Draft {
    lines: Vec<InvoiceLine>,
}

impl Draft {
    fn push(
        &mut self,
        kind: LineKind,
        (price, item): (&Price, &SubscriptionItem),
        quantity: u64,
        amount: i64,
        period: Period,
        description: String,
    ) {
        let unit = match &price.scheme {
            PriceScheme::PerUnit { unit_amount } => Some(*unit_amount),
            PriceScheme::Tiered { .. } => None,
        };
        self.lines.push(InvoiceLine {
            id: InvoiceLineId::generate(),
            kind,
            description,
            price: Some(price.id.clone()),
            subscription_item: Some(item.id.clone()),
            quantity,
            unit_amount_decimal: unit,
            amount,
            net_amount: amount,
            discount_amount: 0,
            period_start: period.start,
            period_end: period.end,
            proration: matches!(kind, LineKind::Proration),
            tax_rates: Vec::new(),
        });
    }
}

fn price_of<'a>(inputs: &'a Inputs<'_>, id: &PriceId) -> Result<&'a Price, BillingError> {
    inputs
        .prices
        .get(id)
        .ok_or_else(|| BillingError::UnknownPrice(id.clone()))
}

fn is_licensed(p: &Price) -> bool {
    p.recurring
        .is_none_or(|r| r.usage_type == UsageType::Licensed)
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Proration lines for one change: credit the unused time on the old items, charge the rest of
/// the period on the new ones. Unchanged items are left out (their credit and charge cancel).
fn proration_lines(
    draft: &mut Draft,
    inputs: &Inputs<'_>,
    sub: &Subscription,
    change: &PendingChange,
) -> Result<(), BillingError> {
    let (num, den) = unused_fraction(
        sub.billing_cycle_anchor,
        sub.interval,
        &change.period,
        change.effective_at,
    );
    // A change after its period ended (a paused subscription) leaves no time to prorate.
    if num == 0 {
        return Ok(());
    }
    let rest = Period {
        start: change.effective_at,
        end: change.period.end,
    };
    let unchanged =
        |a: &SubscriptionItem, others: &[SubscriptionItem]| others.iter().any(|b| b == a);
    for item in change
        .before
        .iter()
        .filter(|i| !unchanged(i, &change.after))
    {
        let price = price_of(inputs, &item.price)?;
        if is_licensed(price) {
            let credit = -prorate(line_amount(&price.scheme, item.quantity)?, num, den)?;
            let text = format!(
                "Unused time on {} × {} after {}",
                item.quantity,
                price.product,
                day(change.effective_at)
            );
            draft.push(
                LineKind::Proration,
                (price, item),
                item.quantity,
                credit,
                rest,
                text,
            );
        }
    }
    for item in change
        .after
        .iter()
        .filter(|i| !unchanged(i, &change.before))
    {
        let price = price_of(inputs, &item.price)?;
        if is_licensed(price) {
            let charge = prorate(line_amount(&price.scheme, item.quantity)?, num, den)?;
            let text = format!(
                "Remaining time on {} × {} after {}",
                item.quantity,
                price.product,
                day(change.effective_at)
            );
            draft.push(
                LineKind::Proration,
                (price, item),
                item.quantity,
                charge,
                rest,
                text,
            );
        }
    }
    Ok(())
}

/// Usage lines for the metered items over `period`.
fn usage_lines(
    draft: &mut Draft,
    inputs: &Inputs<'_>,
    sub: &Subscription,
    period: Period,
) -> Result<(), BillingError> {
    for item in &sub.items {
        let price = price_of(inputs, &item.price)?;
        if !is_licensed(price) {
            let total = inputs.usage.get(&item.id).copied().unwrap_or(0);
            let amount = line_amount(&price.scheme, total)?;
            let text = format!(
                "{total} × {} (usage {} – {})",
                price.product,
                day(period.start),
                day(period.end)
            );
            draft.push(LineKind::Usage, (price, item), total, amount, period, text);
        }
    }
    Ok(())
}

/// Turns the lines into an invoice with totals; `None` when there is nothing to bill.
fn finish(
    draft: Draft,
    sub: &Subscription,
    inputs: &Inputs<'_>,
    reason: BillingReason,
    period: Period,
    at: DateTime<Utc>,
    discount: bool,
) -> Result<Option<Invoice>, BillingError> {
    if draft.lines.is_empty() {
        return Ok(None);
    }
    let rates: Vec<TaxRateInput> = inputs
        .tax_rates
        .iter()
        .map(|r| TaxRateInput {
            percentage: r.percentage,
            inclusive: r.inclusive,
        })
        .collect();
    let all_rates: Vec<usize> = (0..rates.len()).collect();
    let line_inputs: Vec<LineInput> = draft
        .lines
        .iter()
        .map(|l| LineInput {
            amount: l.amount,
            tax_rates: all_rates.clone(),
            discountable: true,
        })
        .collect();
    let discount_input = match (discount, inputs.coupon) {
        (true, Some(c)) => match &c.value {
            CouponValue::Percent { percent_off } => Discount::Percent(*percent_off),
            CouponValue::Amount { amount_off, .. } => Discount::Amount(*amount_off),
        },
        (true, None) | (false, Some(_)) | (false, None) => Discount::None,
    };
    let treatment = match inputs.tax_exempt {
        TaxExempt::None => TaxTreatment::Taxable,
        TaxExempt::Exempt => TaxTreatment::Exempt,
        TaxExempt::Reverse => TaxTreatment::ReverseCharge,
    };
    let totals = compute_totals(&line_inputs, &rates, &discount_input, treatment)?;
    let tax_ids: Vec<_> = inputs.tax_rates.iter().map(|r| r.id.clone()).collect();
    let lines = draft
        .lines
        .into_iter()
        .zip(&totals.lines)
        .map(|(mut l, t)| {
            l.net_amount = t.net_amount;
            l.discount_amount = t.discount_amount;
            l.tax_rates = tax_ids.clone();
            l
        })
        .collect();
    let taxes = totals
        .taxes
        .iter()
        .map(|t| {
            let r = &inputs.tax_rates[t.rate_index];
            TaxAmount {
                tax_rate: r.id.clone(),
                display_name: r.display_name.clone(),
                percentage: r.percentage,
                inclusive: r.inclusive,
                taxable_amount: t.taxable_amount,
                amount: t.amount,
            }
        })
        .collect();
    let owed = totals.total.max(0);
    let unpaid = sub.status == SubscriptionStatus::Unpaid;
    let (status, paid_at) = if owed == 0 {
        (InvoiceStatus::Paid, Some(at))
    } else {
        (InvoiceStatus::Open, None)
    };
    let due_date = match sub.collection_method {
        CollectionMethod::SendInvoice => {
            Some(at + Duration::days(i64::from(sub.days_until_due.unwrap_or(0))))
        }
        CollectionMethod::ChargeAutomatically => None,
    };
    Ok(Some(Invoice {
        id: InvoiceId::generate(),
        object: "invoice",
        number: None,
        customer: sub.customer.clone(),
        subscription: Some(sub.id.clone()),
        status,
        billing_reason: reason,
        collection_method: sub.collection_method,
        currency: sub.currency,
        period_start: period.start,
        period_end: period.end,
        lines,
        subtotal: totals.subtotal,
        discount: totals.discount,
        tax: totals.tax,
        total: totals.total,
        total_tax_amounts: taxes,
        tax_exempt: inputs.tax_exempt,
        amount_paid: 0,
        amount_credited: 0,
        amount_refunded: 0,
        amount_due: owed,
        starting_balance: 0,
        ending_balance: 0,
        attempt_count: 0,
        // Automatic collection charges as soon as the invoice is final, except for an
        // `unpaid` subscription: its invoices wait for the customer (a payment, a new method).
        next_payment_attempt: match sub.collection_method {
            CollectionMethod::ChargeAutomatically if owed > 0 && !unpaid => Some(at),
            CollectionMethod::ChargeAutomatically | CollectionMethod::SendInvoice => None,
        },
        due_date,
        created: at,
        finalized_at: Some(at),
        paid_at,
        voided_at: None,
        marked_uncollectible_at: None,
        first_failed_at: None,
        awaiting_payment_method: unpaid
            && owed > 0
            && sub.collection_method == CollectionMethod::ChargeAutomatically,
        document: Default::default(),
        hosted_invoice_url: None,
    }))
}

/// Bills `sub` at its next boundary `at` (= `sub.next_billing_at`).
pub fn bill_boundary(
    sub: &Subscription,
    at: DateTime<Utc>,
    inputs: &Inputs<'_>,
) -> Result<Outcome, BillingError> {
    let mut next = sub.clone();
    let ending = Period {
        start: sub.current_period_start,
        end: sub.current_period_end,
    };
    // An empty period (a resumed subscription's) has not ended anything.
    let period_ended = ending.end == at && ending.start < at;
    let ended_paid_period = period_ended && sub.status != SubscriptionStatus::Trialing;
    let pending: Vec<&PendingChange> = inputs
        .pending
        .iter()
        .filter(|c| c.effective_at <= at)
        .collect();
    let mut draft = Draft { lines: Vec::new() };
    if ended_paid_period {
        usage_lines(&mut draft, inputs, sub, ending)?;
    }
    for change in &pending {
        proration_lines(&mut draft, inputs, sub, change)?;
    }
    let invoiced_changes: Vec<SubscriptionChangeId> =
        pending.iter().map(|c| c.id.clone()).collect();

    if sub.cancel_at_period_end && period_ended {
        next.status = SubscriptionStatus::Canceled;
        next.canceled_at = Some(sub.canceled_at.unwrap_or(at));
        next.ended_at = Some(at);
        next.next_billing_at = None;
        let discount = match inputs.coupon {
            Some(c) => coupon_applies(c, sub, ending.start)?,
            None => false,
        };
        let invoice = finish(
            draft,
            sub,
            inputs,
            BillingReason::SubscriptionFinal,
            ending,
            at,
            discount,
        )?;
        if discount && invoice.is_some() {
            next.discount_invoices += 1;
        }
        return Ok(Outcome {
            subscription: next,
            invoice,
            invoiced_changes,
            transition: Some(Transition::Ended),
        });
    }

    let mut event = None;
    if sub.trial_end.is_some_and(|t| t <= at)
        && let Ok(status) = sub.status.trial_ended()
    {
        next.status = status;
        event = Some(Transition::TrialEnded);
    }
    let (period, stub) = period_starting(sub, at)?;
    for item in &sub.items {
        let price = price_of(inputs, &item.price)?;
        if is_licensed(price) {
            let full = line_amount(&price.scheme, item.quantity)?;
            let amount = match stub {
                Some((n, d)) => prorate(full, n, d)?,
                None => full,
            };
            let text = format!(
                "{} × {} ({} – {})",
                item.quantity,
                price.product,
                day(period.start),
                day(period.end)
            );
            draft.push(
                LineKind::Subscription,
                (price, item),
                item.quantity,
                amount,
                period,
                text,
            );
        }
    }
    let first = !ended_paid_period;
    let reason = if first {
        BillingReason::SubscriptionCreate
    } else {
        BillingReason::SubscriptionCycle
    };
    let discount = match inputs.coupon {
        Some(c) => coupon_applies(c, sub, period.start)?,
        None => false,
    };
    let invoice = finish(draft, sub, inputs, reason, period, at, discount)?;
    // A coupon that applied counts the invoice, whatever its amount: `once` is the first
    // invoice, even one of zero.
    if discount && invoice.is_some() {
        next.discount_invoices += 1;
    }
    next.current_period_start = period.start;
    next.current_period_end = period.end;
    next.next_billing_at = Some(period.end);
    Ok(Outcome {
        subscription: next,
        invoice,
        invoiced_changes,
        transition: event,
    })
}

/// What cancelling now bills (Stripe's `invoice_now` / `prorate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CancelOptions {
    /// A final invoice for the usage of the period so far and the pending prorations.
    pub invoice_now: bool,
    /// A credit for the unused time of the licensed items already invoiced.
    pub prorate: bool,
}

/// The final invoice of a subscription cancelled at `at`, and the pending changes it bills.
/// `None` when there is nothing to bill (a trial's items were never charged).
pub fn cancellation_invoice(
    sub: &Subscription,
    at: DateTime<Utc>,
    inputs: &Inputs<'_>,
    options: CancelOptions,
) -> Result<(Option<Invoice>, Vec<SubscriptionChangeId>), BillingError> {
    let mut draft = Draft { lines: Vec::new() };
    let so_far = Period {
        start: sub.current_period_start,
        end: at.max(sub.current_period_start),
    };
    let charged = sub.status != SubscriptionStatus::Trialing;
    let mut invoiced = Vec::new();
    if options.invoice_now && charged {
        // Usage stamped at the very instant of cancelling is part of what is billed.
        let usage = Period {
            start: so_far.start,
            end: so_far.end + Duration::seconds(1),
        };
        usage_lines(&mut draft, inputs, sub, usage)?;
    }
    // The unused-time credit is computed on the items as they are now, so the changes that
    // made them so are billed with it: crediting an upgrade never billed would give money away.
    if (options.invoice_now || options.prorate) && charged {
        for change in inputs.pending.iter().filter(|c| c.effective_at <= at) {
            proration_lines(&mut draft, inputs, sub, change)?;
            invoiced.push(change.id.clone());
        }
    }
    if options.prorate && charged {
        let unused = PendingChange {
            id: SubscriptionChangeId::generate(),
            effective_at: at,
            period: Period {
                start: sub.current_period_start,
                end: sub.current_period_end,
            },
            before: sub.items.clone(),
            after: Vec::new(),
        };
        proration_lines(&mut draft, inputs, sub, &unused)?;
    }
    let discount = match inputs.coupon {
        Some(c) => coupon_applies(c, sub, so_far.start)?,
        None => false,
    };
    let invoice = finish(
        draft,
        sub,
        inputs,
        BillingReason::SubscriptionFinal,
        so_far,
        at,
        discount,
    )?;
    Ok((invoice, invoiced))
}

/// Prorations invoiced at once (`always_invoice`): an invoice of just these lines.
pub fn proration_invoice(
    sub: &Subscription,
    change: &PendingChange,
    inputs: &Inputs<'_>,
) -> Result<Option<Invoice>, BillingError> {
    let mut draft = Draft { lines: Vec::new() };
    proration_lines(&mut draft, inputs, sub, change)?;
    let period = Period {
        start: change.effective_at,
        end: change.period.end,
    };
    // The same discount rule as every other invoice of the subscription.
    let discount = match inputs.coupon {
        Some(c) => coupon_applies(c, sub, change.period.start)?,
        None => false,
    };
    finish(
        draft,
        sub,
        inputs,
        BillingReason::SubscriptionUpdate,
        period,
        change.effective_at,
        discount,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::currency::Currency;
    use crate::domain::ids::{CustomerId, SubscriptionId, TaxRateId};
    use crate::domain::invoice_math::TaxBehavior;
    use crate::domain::price::Recurring;
    use crate::domain::subscription::ProrationBehavior;
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn price(unit: i64) -> Price {
        Price {
            id: PriceId::generate(),
            product: "P".into(),
            currency: Currency::parse("EUR").unwrap(),
            scheme: PriceScheme::PerUnit {
                unit_amount: unit.into(),
            },
            recurring: Some(Recurring {
                interval: month().unwrap(),
                usage_type: UsageType::Licensed,
            }),
            tax_behavior: TaxBehavior::Exclusive,
            created: at("2027-01-01T00:00:00Z"),
        }
    }

    fn subscription(
        items: Vec<SubscriptionItem>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Subscription {
        Subscription {
            id: SubscriptionId::generate(),
            object: "subscription",
            customer: CustomerId::generate(),
            status: SubscriptionStatus::Active,
            currency: Currency::parse("EUR").unwrap(),
            interval: month().unwrap(),
            items,
            collection_method: CollectionMethod::ChargeAutomatically,
            days_until_due: None,
            coupon: None,
            default_tax_rates: Vec::new(),
            proration_behavior: ProrationBehavior::CreateProrations,
            start_date: start,
            trial_end: None,
            billing_cycle_anchor: start,
            current_period_start: start,
            current_period_end: end,
            cancel_at_period_end: false,
            canceled_at: None,
            ended_at: None,
            paused_at: None,
            created: start,
            next_billing_at: Some(end),
            discount_invoices: 0,
            billing_error: None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the prices, quantities, tax, coupon and mid-period change, a renewal invoice
        /// keeps `total = subtotal − discount + tax`, its lines sum to the subtotal, and a change
        /// that leaves an item as it was adds nothing for that item.
        #[test]
        fn renewal_invoices_keep_their_identities(
            units in prop::collection::vec(0i64..1_000_000, 1..4),
            quantities in prop::collection::vec(0u64..1000, 4),
            new_quantity in 0u64..1000,
            pct in prop::sample::select(vec![0u32, 5, 8, 23]),
            percent_off in prop::option::of(1u32..=100),
            change_secs in 0i64..(28 * 86400),
        ) {
            let start = at("2027-02-01T00:00:00Z");
            let end = at("2027-03-01T00:00:00Z");
            let prices: Vec<Price> = units.iter().map(|u| price(*u)).collect();
            let items: Vec<SubscriptionItem> = prices.iter().zip(&quantities).map(|(p, q)| SubscriptionItem {
                id: SubscriptionItemId::generate(), price: p.id.clone(), quantity: *q,
            }).collect();
            let mut after = items.clone();
            after[0].quantity = new_quantity;
            let change = PendingChange {
                id: SubscriptionChangeId::generate(),
                effective_at: start + Duration::seconds(change_secs),
                period: Period { start, end },
                before: items.clone(),
                after: after.clone(),
            };
            let rate = TaxRate {
                id: TaxRateId::generate(), object: "tax_rate", display_name: "VAT".into(),
                percentage: pct.into(), inclusive: false, country: None, created: start,
            };
            let coupon = percent_off.map(|p| Coupon {
                id: crate::domain::ids::CouponId::generate(), object: "coupon", name: None,
                value: CouponValue::Percent { percent_off: p.into() }, duration: CouponDuration::Forever,
                duration_in_months: None, created: start,
            });
            let by_id: HashMap<PriceId, Price> = prices.iter().map(|p| (p.id.clone(), p.clone())).collect();
            let usage = HashMap::new();
            let rates = [rate];
            let pending = [change];
            let inputs = Inputs {
                prices: &by_id, tax_rates: &rates, coupon: coupon.as_ref(), tax_exempt: TaxExempt::None,
                usage: &usage, pending: &pending,
            };
            let sub = subscription(after.clone(), start, end);
            let out = bill_boundary(&sub, end, &inputs).unwrap();
            let inv = out.invoice.unwrap();
            prop_assert_eq!(inv.total, inv.subtotal - inv.discount + inv.tax);
            prop_assert_eq!(inv.lines.iter().map(|l| l.net_amount).sum::<i64>(), inv.subtotal);
            prop_assert_eq!(inv.lines.iter().map(|l| l.discount_amount).sum::<i64>(), inv.discount);
            prop_assert_eq!(inv.tax, inv.total_tax_amounts.iter().map(|t| t.amount).sum::<i64>());
            let prorated: Vec<&InvoiceLine> = inv.lines.iter().filter(|l| l.proration).collect();
            prop_assert!(prorated.iter().all(|l| l.subscription_item.as_ref() == Some(&items[0].id)));
            if new_quantity == quantities[0] {
                prop_assert!(prorated.is_empty());
            }
            prop_assert_eq!(out.subscription.current_period_start, end);
            prop_assert_eq!(out.invoiced_changes.len(), 1);
        }

        /// Crediting and re-charging the same items at the same price nets to zero at any
        /// instant of the period.
        #[test]
        fn a_same_price_change_nets_zero(unit in 0i64..10_000_000, q in 0u64..10_000, secs in 0i64..(31 * 86400)) {
            let start = at("2027-01-01T00:00:00Z");
            let end = at("2027-02-01T00:00:00Z");
            let p = price(unit);
            let before = vec![SubscriptionItem { id: SubscriptionItemId::generate(), price: p.id.clone(), quantity: q }];
            let after = vec![SubscriptionItem { id: SubscriptionItemId::generate(), price: p.id.clone(), quantity: q }];
            let change = PendingChange {
                id: SubscriptionChangeId::generate(), effective_at: start + Duration::seconds(secs),
                period: Period { start, end }, before, after,
            };
            let by_id: HashMap<PriceId, Price> = [(p.id.clone(), p.clone())].into();
            let usage = HashMap::new();
            let inputs = Inputs { prices: &by_id, tax_rates: &[], coupon: None, tax_exempt: TaxExempt::None, usage: &usage, pending: &[] };
            let sub = subscription(Vec::new(), start, end);
            if let Some(inv) = proration_invoice(&sub, &change, &inputs).unwrap() {
                prop_assert_eq!(inv.lines.len(), 2);
                prop_assert_eq!(inv.subtotal, 0);
                prop_assert_eq!(inv.total, 0);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// A credit for unused time never exceeds what that time was billed, in a short stub
        /// before the anchor as in a full period, at any instant of it.
        #[test]
        fn a_proration_credit_never_exceeds_the_charge_for_the_same_time(
            unit in 1i64..10_000_000,
            q in 1u64..1000,
            stub_days in 1i64..28,
            at_secs in 0i64..(28 * 86400),
            stub in any::<bool>(),
        ) {
            let start = at("2027-01-01T00:00:00Z");
            let anchor = if stub { start + Duration::days(stub_days) } else { start };
            let end = if stub { anchor } else { at("2027-02-01T00:00:00Z") };
            let p = price(unit);
            let item = SubscriptionItem { id: SubscriptionItemId::generate(), price: p.id.clone(), quantity: q };
            let by_id: HashMap<PriceId, Price> = [(p.id.clone(), p.clone())].into();
            let usage = HashMap::new();
            let inputs = Inputs { prices: &by_id, tax_rates: &[], coupon: None, tax_exempt: TaxExempt::None, usage: &usage, pending: &[] };
            let mut sub = subscription(vec![item.clone()], start, end);
            sub.billing_cycle_anchor = anchor;
            sub.next_billing_at = Some(start);
            let first = bill_boundary(&sub, start, &inputs).unwrap().invoice.unwrap();
            let billed = first.subtotal;
            let effective_at = (start + Duration::seconds(at_secs)).min(end);
            let change = PendingChange {
                id: SubscriptionChangeId::generate(), effective_at,
                period: Period { start, end }, before: vec![item.clone()],
                after: vec![SubscriptionItem { quantity: 0, ..item.clone() }],
            };
            if let Some(inv) = proration_invoice(&sub, &change, &inputs).unwrap() {
                let credit = -inv.lines[0].amount;
                prop_assert!(credit >= 0);
                prop_assert!(credit <= billed, "credit {} for time billed {}", credit, billed);
            }
        }
    }
}
