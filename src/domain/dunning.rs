//! Dunning: what an attempt's outcome does to the attempt, its invoice and its subscription.
//! Pure: the collection pass, webhooks and reconciliation all record outcomes through
//! [`apply`], after checking that the outcome is news ([`AttemptStatus::takes`]).

use super::event::EventType;
use super::invoice::{Invoice, InvoiceStatus};
use super::payment::{AttemptStatus, DeclineKind, DunningPlan, FinalAction, Payment};
use super::subscription::Subscription;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A provider's verified answer about one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded {
        provider_ref: String,
    },
    Declined {
        code: String,
        kind: DeclineKind,
        message: String,
        provider_ref: Option<String>,
    },
    /// No definite answer: asked again later, never charged blind.
    Unknown {
        message: String,
        provider_ref: Option<String>,
    },
}

/// Outcomes counted by [`apply`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub succeeded: u64,
    pub failed: u64,
}

/// An object as event data (the API's JSON).
fn data<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// What a verified outcome does to the attempt, its invoice and its subscription: the
/// dunning decision. Returns the events to write and what was counted.
pub fn apply(
    plan: &DunningPlan,
    p: &mut Payment,
    inv: &mut Invoice,
    sub: Option<&mut Subscription>,
    result: Outcome,
    now: DateTime<Utc>,
) -> (Vec<(EventType, serde_json::Value)>, Tally) {
    let mut summary = Tally::default();
    let mut evts = Vec::new();
    match result {
        Outcome::Unknown {
            message,
            provider_ref,
        } => {
            p.status = AttemptStatus::Unknown;
            p.failure_message = Some(message);
            p.provider_ref = provider_ref.or(p.provider_ref.take());
        }
        Outcome::Succeeded { provider_ref } => {
            summary.succeeded += 1;
            p.status = AttemptStatus::Succeeded;
            p.provider_ref = Some(provider_ref);
            p.completed_at = Some(now);
            evts.push((EventType::PaymentSucceeded, data(p)));
            match inv.status.pay() {
                Ok(status) => {
                    inv.status = status;
                    inv.amount_paid += p.amount;
                    inv.amount_due = 0;
                    inv.paid_at = Some(now);
                    inv.next_payment_attempt = None;
                    inv.awaiting_payment_method = false;
                    if let Some(s) = sub {
                        s.status = s.status.after_successful_payment();
                    }
                    evts.push((EventType::InvoicePaid, data(inv)));
                }
                // Money taken for an invoice already paid or voided (a late success): someone
                // must refund or apply it.
                Err(_) => evts.push((EventType::PaymentUnapplied, data(p))),
            }
        }
        Outcome::Declined {
            code,
            kind,
            message,
            provider_ref,
        } => {
            summary.failed += 1;
            p.status = AttemptStatus::Failed;
            p.provider_ref = provider_ref.or(p.provider_ref.take());
            p.decline_code = Some(code);
            p.failure_message = Some(message);
            p.completed_at = Some(now);
            // An invoice no longer owed (paid or voided meanwhile) keeps its state: the failed
            // attempt is recorded, nothing is retried.
            if !matches!(
                inv.status,
                InvoiceStatus::Open | InvoiceStatus::Uncollectible
            ) {
                evts.push((EventType::PaymentFailed, data(p)));
                return (evts, summary);
            }
            let first = *inv.first_failed_at.get_or_insert(now);
            match kind {
                DeclineKind::Hard => {
                    inv.next_payment_attempt = None;
                    inv.awaiting_payment_method = true;
                }
                DeclineKind::Soft => {
                    // An attempt was made, so the wait for a new method (if any) is over.
                    inv.awaiting_payment_method = false;
                    inv.next_payment_attempt = plan.next_retry(first, inv.attempt_count)
                }
            }
            evts.push((EventType::PaymentFailed, data(p)));
            evts.push((EventType::InvoicePaymentFailed, data(inv)));
            let exhausted = kind == DeclineKind::Soft
                && inv.next_payment_attempt.is_none()
                && inv.status == InvoiceStatus::Open;
            let cancel = exhausted && plan.final_action == FinalAction::Cancel;
            let unpaid = exhausted && plan.final_action == FinalAction::MarkUnpaid;
            if (cancel || unpaid)
                && let Ok(status) = inv.status.mark_uncollectible()
            {
                inv.status = status;
                inv.marked_uncollectible_at = Some(now);
                evts.push((EventType::InvoiceMarkedUncollectible, data(inv)));
            }
            if let Some(s) = sub {
                s.status = s.status.after_failed_payment();
                if cancel && let Ok(status) = s.status.cancel() {
                    s.status = status;
                    s.canceled_at = Some(now);
                    s.ended_at = Some(now);
                    s.next_billing_at = None;
                } else if unpaid {
                    s.status = s.status.mark_unpaid();
                }
            }
        }
    }
    (evts, summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::currency::Currency;
    use crate::domain::customer::TaxExempt;
    use crate::domain::ids::{CustomerId, InvoiceId, PaymentId, SubscriptionId};
    use crate::domain::invoice::BillingReason;
    use crate::domain::period::{Interval, IntervalUnit};
    use crate::domain::subscription::{CollectionMethod, ProrationBehavior, SubscriptionStatus};
    use chrono::Duration;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        "2027-01-01T00:00:00Z".parse().unwrap()
    }

    fn invoice() -> Invoice {
        Invoice {
            id: InvoiceId::generate(),
            object: "invoice",
            number: None,
            customer: CustomerId::generate(),
            subscription: None,
            status: InvoiceStatus::Open,
            billing_reason: BillingReason::SubscriptionCycle,
            collection_method: CollectionMethod::ChargeAutomatically,
            currency: Currency::parse("EUR").unwrap(),
            period_start: t0(),
            period_end: t0(),
            lines: Vec::new(),
            subtotal: 5000,
            discount: 0,
            tax: 0,
            total: 5000,
            total_tax_amounts: Vec::new(),
            tax_exempt: TaxExempt::None,
            amount_paid: 0,
            amount_credited: 0,
            amount_refunded: 0,
            amount_due: 5000,
            starting_balance: 0,
            ending_balance: 0,
            attempt_count: 0,
            next_payment_attempt: Some(t0()),
            due_date: None,
            created: t0(),
            finalized_at: Some(t0()),
            paid_at: None,
            voided_at: None,
            marked_uncollectible_at: None,
            first_failed_at: None,
            awaiting_payment_method: false,
            document: Default::default(),
            hosted_invoice_url: None,
        }
    }

    fn subscription() -> Subscription {
        Subscription {
            id: SubscriptionId::generate(),
            object: "subscription",
            customer: CustomerId::generate(),
            status: SubscriptionStatus::Active,
            currency: Currency::parse("EUR").unwrap(),
            interval: Interval::new(IntervalUnit::Month, 1).unwrap(),
            items: Vec::new(),
            collection_method: CollectionMethod::ChargeAutomatically,
            days_until_due: None,
            coupon: None,
            default_tax_rates: Vec::new(),
            proration_behavior: ProrationBehavior::CreateProrations,
            start_date: t0(),
            trial_end: None,
            billing_cycle_anchor: t0(),
            current_period_start: t0(),
            current_period_end: t0() + Duration::days(31),
            cancel_at_period_end: false,
            canceled_at: None,
            ended_at: None,
            paused_at: None,
            created: t0(),
            next_billing_at: Some(t0() + Duration::days(31)),
            discount_invoices: 0,
            billing_error: None,
        }
    }

    fn attempt(inv: &Invoice) -> Payment {
        Payment {
            id: PaymentId::generate(),
            object: "payment",
            invoice: inv.id.clone(),
            attempt_number: inv.attempt_count,
            status: AttemptStatus::Pending,
            amount: inv.amount_due,
            amount_refunded: 0,
            currency: inv.currency,
            provider: crate::domain::customer::Provider::Sandbox,
            provider_ref: None,
            decline_code: None,
            failure_message: None,
            created: t0(),
            completed_at: None,
        }
    }

    fn declined(kind: DeclineKind) -> Outcome {
        Outcome::Declined {
            code: "card_declined".into(),
            kind,
            message: "declined".into(),
            provider_ref: None,
        }
    }

    fn plan(final_action: FinalAction) -> DunningPlan {
        DunningPlan {
            retry_days: vec![1, 3, 5],
            final_action,
        }
    }

    #[test]
    fn soft_declines_follow_the_plan_then_its_final_action() {
        for (action, sub_after, inv_after) in [
            (
                FinalAction::Cancel,
                SubscriptionStatus::Canceled,
                InvoiceStatus::Uncollectible,
            ),
            (
                FinalAction::MarkUnpaid,
                SubscriptionStatus::Unpaid,
                InvoiceStatus::Uncollectible,
            ),
            (
                FinalAction::LeavePastDue,
                SubscriptionStatus::PastDue,
                InvoiceStatus::Open,
            ),
        ] {
            let (mut inv, mut sub) = (invoice(), subscription());
            let mut retries = Vec::new();
            for n in 1..=4u32 {
                inv.attempt_count = n;
                let mut p = attempt(&inv);
                let now = inv.next_payment_attempt.unwrap_or(t0());
                apply(
                    &plan(action),
                    &mut p,
                    &mut inv,
                    Some(&mut sub),
                    declined(DeclineKind::Soft),
                    now,
                );
                retries.push(inv.next_payment_attempt);
            }
            let day = |d| Some(t0() + Duration::days(d));
            assert_eq!(retries, [day(1), day(3), day(5), None], "{action:?}");
            assert_eq!(
                (sub.status, inv.status),
                (sub_after, inv_after),
                "{action:?}"
            );
        }
    }

    #[test]
    fn a_hard_decline_waits_for_a_new_method_and_a_success_pays() {
        let (mut inv, mut sub) = (invoice(), subscription());
        inv.attempt_count = 1;
        let mut p = attempt(&inv);
        let (evts, tally) = apply(
            &plan(FinalAction::Cancel),
            &mut p,
            &mut inv,
            Some(&mut sub),
            declined(DeclineKind::Hard),
            t0(),
        );
        assert_eq!(
            (inv.next_payment_attempt, inv.awaiting_payment_method),
            (None, true)
        );
        assert_eq!((sub.status, tally.failed), (SubscriptionStatus::PastDue, 1));
        assert!(
            evts.iter()
                .any(|(k, _)| *k == EventType::InvoicePaymentFailed)
        );
        inv.attempt_count = 2;
        let mut p = attempt(&inv);
        let (evts, tally) = apply(
            &plan(FinalAction::Cancel),
            &mut p,
            &mut inv,
            Some(&mut sub),
            Outcome::Succeeded {
                provider_ref: "x".into(),
            },
            t0(),
        );
        assert_eq!(
            (inv.status, inv.amount_due, inv.amount_paid),
            (InvoiceStatus::Paid, 0, 5000)
        );
        assert_eq!(
            (sub.status, tally.succeeded, p.status),
            (SubscriptionStatus::Active, 1, AttemptStatus::Succeeded)
        );
        assert!(evts.iter().any(|(k, _)| *k == EventType::InvoicePaid));
    }

    #[test]
    fn a_success_for_an_invoice_already_paid_is_flagged_not_counted() {
        let mut inv = invoice();
        inv.status = InvoiceStatus::Paid;
        inv.amount_paid = 5000;
        let mut p = attempt(&inv);
        let (evts, _) = apply(
            &plan(FinalAction::Cancel),
            &mut p,
            &mut inv,
            None,
            Outcome::Succeeded {
                provider_ref: "x".into(),
            },
            t0(),
        );
        assert_eq!(inv.amount_paid, 5000, "not paid twice");
        assert_eq!(
            evts.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            [EventType::PaymentSucceeded, EventType::PaymentUnapplied]
        );
    }

    proptest! {
        /// Whatever the outcomes, money is never counted twice, an open invoice never owes
        /// less than nothing, and a paid one owes nothing and is never retried.
        #[test]
        fn outcomes_keep_the_invoice_consistent(
            outcomes in prop::collection::vec(0u8..4, 1..12),
            action in prop::sample::select(vec![FinalAction::Cancel, FinalAction::MarkUnpaid, FinalAction::LeavePastDue]),
        ) {
            let (mut inv, mut sub) = (invoice(), subscription());
            for (n, o) in outcomes.iter().enumerate() {
                inv.attempt_count = u32::try_from(n).unwrap() + 1;
                let mut p = attempt(&inv);
                let outcome = match o {
                    0 => Outcome::Succeeded { provider_ref: format!("pi_{n}") },
                    1 => declined(DeclineKind::Soft),
                    2 => declined(DeclineKind::Hard),
                    _ => Outcome::Unknown { message: "timeout".into(), provider_ref: None },
                };
                let now = t0() + Duration::days(i64::try_from(n).unwrap());
                apply(&plan(action), &mut p, &mut inv, Some(&mut sub), outcome, now);
                prop_assert!(inv.amount_paid <= inv.total);
                prop_assert!(inv.amount_due >= 0);
                if inv.status == InvoiceStatus::Paid {
                    prop_assert_eq!(inv.amount_due, 0);
                    prop_assert_eq!(inv.next_payment_attempt, None);
                    prop_assert!(sub.status != SubscriptionStatus::PastDue);
                }
                if inv.awaiting_payment_method {
                    prop_assert_eq!(inv.next_payment_attempt, None);
                }
            }
        }
    }
}
