//! Payment attempts and the dunning plan.

use super::currency::Currency;
use super::customer::Provider;
use super::ids::{InvoiceId, PaymentId};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptStatus {
    /// Committed before the provider is called; the outcome is not known yet.
    Pending,
    Succeeded,
    Failed,
    /// The provider may have charged (a timeout after sending); resolved by asking it, never by
    /// charging again.
    Unknown,
    Refunded,
}

/// What a provider reported about an attempt (a reply, a retrieve, a webhook, a reconciliation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    Succeeded,
    Declined,
    /// No definite answer.
    Unknown,
}

impl AttemptStatus {
    /// Pending or unknown: no outcome recorded yet.
    pub fn in_flight(self) -> bool {
        match self {
            AttemptStatus::Pending | AttemptStatus::Unknown => true,
            AttemptStatus::Succeeded | AttemptStatus::Failed | AttemptStatus::Refunded => false,
        }
    }

    /// Whether a report is news for an attempt in this status: anything while it is in
    /// flight; after a failure only a success (the money was taken after all: success wins);
    /// nothing once it succeeded or was refunded. The one rule for collection, webhooks and
    /// reconciliation, so a late reply and a webhook never both apply.
    pub fn takes(self, report: Reported) -> bool {
        match (self, report) {
            (AttemptStatus::Pending | AttemptStatus::Unknown, _) => true,
            (AttemptStatus::Failed, Reported::Succeeded) => true,
            (AttemptStatus::Failed, Reported::Declined | Reported::Unknown) => false,
            (AttemptStatus::Succeeded | AttemptStatus::Refunded, _) => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Pending => "pending",
            AttemptStatus::Succeeded => "succeeded",
            AttemptStatus::Failed => "failed",
            AttemptStatus::Unknown => "unknown",
            AttemptStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(AttemptStatus::Pending),
            "succeeded" => Some(AttemptStatus::Succeeded),
            "failed" => Some(AttemptStatus::Failed),
            "unknown" => Some(AttemptStatus::Unknown),
            "refunded" => Some(AttemptStatus::Refunded),
            _ => None,
        }
    }
}

/// Whether retrying the same payment method can work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeclineKind {
    /// Retry on the dunning plan (insufficient funds, try again later).
    Soft,
    /// Wait for a new payment method (expired, stolen, invalid account).
    Hard,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    pub id: PaymentId,
    pub object: &'static str,
    pub invoice: InvoiceId,
    pub attempt_number: u32,
    pub status: AttemptStatus,
    pub amount: i64,
    /// Given back through refunds (credit notes, or the provider's dashboard).
    pub amount_refunded: i64,
    pub currency: Currency,
    pub provider: Provider,
    /// The provider's id for the charge, once known.
    pub provider_ref: Option<String>,
    pub decline_code: Option<String>,
    pub failure_message: Option<String>,
    pub created: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Payment {
    /// The provider idempotency key of this attempt: `{invoice}-attempt-{n}`. A network
    /// retry inside the attempt reuses it; a dunning retry is a new attempt with a new key.
    pub fn idempotency_key(&self) -> String {
        attempt_key(&self.invoice, self.attempt_number)
    }
}

/// The idempotency key of attempt `n` of an invoice.
pub fn attempt_key(invoice: &InvoiceId, n: u32) -> String {
    format!("{invoice}-attempt-{n}")
}

/// What happens after the last retry fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalAction {
    /// Invoice uncollectible, subscription canceled (the default).
    Cancel,
    /// Invoice stays open, subscription stays past_due.
    LeavePastDue,
    /// Invoice uncollectible, subscription unpaid (kept, not invoiced for payment).
    MarkUnpaid,
}

impl FinalAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FinalAction::Cancel => "cancel",
            FinalAction::LeavePastDue => "leave_past_due",
            FinalAction::MarkUnpaid => "mark_unpaid",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cancel" => Some(FinalAction::Cancel),
            "leave_past_due" => Some(FinalAction::LeavePastDue),
            "mark_unpaid" => Some(FinalAction::MarkUnpaid),
            _ => None,
        }
    }
}

/// Retries counted in days after the first failure (default 1, 3, 5, 7: five attempts in all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DunningPlan {
    pub retry_days: Vec<u32>,
    pub final_action: FinalAction,
}

impl DunningPlan {
    /// A plan with at most 10 strictly increasing retry days between 1 and 60.
    pub fn new(retry_days: Vec<u32>, final_action: FinalAction) -> Result<Self, &'static str> {
        if retry_days.len() > 10
            || retry_days.windows(2).any(|w| w[0] >= w[1])
            || retry_days.iter().any(|d| *d == 0 || *d > 60)
        {
            return Err("retry_days must be at most 10 increasing days between 1 and 60");
        }
        Ok(DunningPlan {
            retry_days,
            final_action,
        })
    }

    /// When to try again after `failures` failed attempts, the first at `first_failed_at`;
    /// `None` when the plan is exhausted.
    pub fn next_retry(
        &self,
        first_failed_at: DateTime<Utc>,
        failures: u32,
    ) -> Option<DateTime<Utc>> {
        let idx = usize::try_from(failures).ok()?.checked_sub(1)?;
        self.retry_days
            .get(idx)
            .map(|d| first_failed_at + Duration::days(i64::from(*d)))
    }
}

#[cfg(test)]
mod tests {
    use super::{AttemptStatus, Reported};

    #[test]
    fn only_news_changes_an_attempt() {
        use AttemptStatus::*;
        for s in [Pending, Unknown] {
            assert!(s.in_flight());
            for r in [Reported::Succeeded, Reported::Declined, Reported::Unknown] {
                assert!(s.takes(r), "{s:?} takes {r:?}");
            }
        }
        assert!(
            Failed.takes(Reported::Succeeded),
            "success wins over a failure"
        );
        assert!(!Failed.takes(Reported::Declined));
        assert!(!Failed.takes(Reported::Unknown));
        for s in [Succeeded, Refunded] {
            assert!(!s.in_flight());
            for r in [Reported::Succeeded, Reported::Declined, Reported::Unknown] {
                assert!(!s.takes(r), "{s:?} ignores {r:?}");
            }
        }
    }

    use super::*;

    #[test]
    fn the_default_plan_retries_one_three_five_and_seven_days_after_the_first_failure() {
        let plan = DunningPlan {
            retry_days: vec![1, 3, 5, 7],
            final_action: FinalAction::Cancel,
        };
        let t: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
        let days: Vec<i64> = (1..=4)
            .map(|f| (plan.next_retry(t, f).unwrap() - t).num_days())
            .collect();
        assert_eq!(days, [1, 3, 5, 7]);
        assert_eq!(plan.next_retry(t, 5), None);
        assert_eq!(plan.next_retry(t, 0), None);
    }
}
