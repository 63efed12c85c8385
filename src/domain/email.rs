//! Customer e-mails: what kinds there are, their delivery states and the retry schedule.

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmailKind {
    /// A finalized invoice, its PDF attached, with the hosted page link.
    InvoiceFinalized,
    /// A receipt for a successful charge.
    PaymentSucceeded,
    /// A failed charge: amount, reason in plain words, next retry.
    PaymentFailed,
    /// An issued credit note, its PDF attached.
    CreditNoteIssued,
    /// A trial ends in three days.
    TrialEnding,
    /// A yearly subscription renews in seven days.
    UpcomingRenewal,
}

impl EmailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailKind::InvoiceFinalized => "invoice_finalized",
            EmailKind::PaymentSucceeded => "payment_succeeded",
            EmailKind::PaymentFailed => "payment_failed",
            EmailKind::CreditNoteIssued => "credit_note_issued",
            EmailKind::TrialEnding => "trial_ending",
            EmailKind::UpcomingRenewal => "upcoming_renewal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "invoice_finalized" => Some(EmailKind::InvoiceFinalized),
            "payment_succeeded" => Some(EmailKind::PaymentSucceeded),
            "payment_failed" => Some(EmailKind::PaymentFailed),
            "credit_note_issued" => Some(EmailKind::CreditNoteIssued),
            "trial_ending" => Some(EmailKind::TrialEnding),
            "upcoming_renewal" => Some(EmailKind::UpcomingRenewal),
            _ => None,
        }
    }

    /// Whether the tenant's notification settings let this kind go out.
    pub fn enabled(self, n: &super::seller::Notifications) -> bool {
        match self {
            EmailKind::InvoiceFinalized => n.invoice_finalized,
            EmailKind::PaymentSucceeded => n.payment_succeeded,
            EmailKind::PaymentFailed => n.payment_failed,
            EmailKind::CreditNoteIssued => n.credit_note_issued,
            EmailKind::TrialEnding => n.trial_ending,
            EmailKind::UpcomingRenewal => n.upcoming_renewal,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailStatus {
    Pending,
    Sent,
    /// Given up after the last attempt (`email.failed`).
    Failed,
    /// Not sent on purpose: the tenant turned the kind off, or the customer has no address.
    Skipped,
}

impl EmailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailStatus::Pending => "pending",
            EmailStatus::Sent => "sent",
            EmailStatus::Failed => "failed",
            EmailStatus::Skipped => "skipped",
        }
    }
}

/// Trials are announced this long before they end.
pub const TRIAL_NOTICE: chrono::Duration = chrono::Duration::days(3);
/// Yearly renewals are announced this long before they bill.
pub const RENEWAL_NOTICE: chrono::Duration = chrono::Duration::days(7);

/// When to try again after the `attempt`-th failed delivery: `base · 2^(attempt−1)`, at most
/// an hour.
pub fn next_attempt(now: DateTime<Utc>, attempt: u32, base_secs: u64) -> DateTime<Utc> {
    let factor = 1_u64 << attempt.saturating_sub(1).min(20);
    let secs = base_secs.saturating_mul(factor).min(3600);
    now + Duration::seconds(i64::try_from(secs).unwrap_or(3600))
}

/// A decline in words a customer understands, as a key of the `[email]` labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineReason {
    InsufficientFunds,
    ExpiredCard,
    AuthenticationRequired,
    Generic,
}

pub fn decline_reason(code: Option<&str>) -> DeclineReason {
    match code.unwrap_or_default() {
        "insufficient_funds" => DeclineReason::InsufficientFunds,
        "expired_card" => DeclineReason::ExpiredCard,
        "authentication_required" => DeclineReason::AuthenticationRequired,
        _ => DeclineReason::Generic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour() {
        let t = DateTime::<Utc>::UNIX_EPOCH;
        let secs = |n| (next_attempt(t, n, 30) - t).num_seconds();
        assert_eq!(
            [secs(1), secs(2), secs(3), secs(8), secs(40)],
            [30, 60, 120, 3600, 3600]
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            EmailKind::InvoiceFinalized,
            EmailKind::PaymentSucceeded,
            EmailKind::PaymentFailed,
            EmailKind::CreditNoteIssued,
            EmailKind::TrialEnding,
            EmailKind::UpcomingRenewal,
        ] {
            assert_eq!(EmailKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(
            decline_reason(Some("expired_card")),
            DeclineReason::ExpiredCard
        );
        assert_eq!(decline_reason(None), DeclineReason::Generic);
    }
}
