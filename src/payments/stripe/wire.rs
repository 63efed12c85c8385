//! Stripe's wire format: the JSON objects recur reads, amounts in Stripe's units, and how a
//! decline is classified. Nothing here leaves the `stripe` module.

use crate::domain::currency::Currency;
use crate::payments::{ChargeStatus, ProviderCharge, RefundResult};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Debug, Clone, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub status: String,
    pub amount: i64,
    #[serde(default)]
    pub amount_received: i64,
    pub currency: String,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    pub latest_charge: Option<LatestCharge>,
    pub last_payment_error: Option<ApiError>,
}

/// `latest_charge` is an id, or the Charge itself when expanded.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LatestCharge {
    Id(String),
    Charge(Charge),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Charge {
    pub id: String,
    pub payment_intent: Option<String>,
    pub amount: i64,
    #[serde(default)]
    pub amount_refunded: i64,
    pub currency: String,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiError {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub code: Option<String>,
    pub decline_code: Option<String>,
    pub advice_code: Option<String>,
    pub message: Option<String>,
    pub payment_intent: Option<Box<PaymentIntent>>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

#[derive(Debug, Deserialize)]
pub struct Refund {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

impl Refund {
    pub fn result(&self) -> RefundResult {
        match self.status.as_str() {
            "succeeded" => RefundResult::Succeeded {
                refund_ref: self.id.clone(),
            },
            "failed" | "canceled" => RefundResult::Failed {
                code: format!("refund_{}", self.status),
                message: self.failure_reason.clone().map_or_else(
                    || format!("Stripe reports the refund {}", self.status),
                    |r| format!("Stripe reports the refund {}: {r}", self.status),
                ),
            },
            _ => RefundResult::Pending {
                refund_ref: self.id.clone(),
            },
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

/// Metadata keys recur writes on every PaymentIntent, to find its attempt again.
pub const META_TENANT: &str = "tenant_id";
pub const META_INVOICE: &str = "invoice_id";
pub const META_ATTEMPT: &str = "attempt_key";
pub const META_CREDIT_NOTE: &str = "credit_note";

/// How to treat a decline. Stripe has no hard/soft column; this follows its "next steps".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decline {
    /// Retry on the dunning plan.
    Soft,
    /// Wait for a new payment method (or the customer's action).
    Hard,
}

/// `advice_code` wins when present, then `decline_code`, then `code`; unknown codes are soft
/// (the plan bounds how often they are retried).
pub fn classify(code: Option<&str>, decline_code: Option<&str>, advice: Option<&str>) -> Decline {
    match advice {
        Some("do_not_try_again" | "confirm_card_data") => return Decline::Hard,
        Some("try_again_later") => return Decline::Soft,
        _ => {}
    }
    let by_code = |c: &str| match c {
        "expired_card"
        | "incorrect_number"
        | "incorrect_cvc"
        | "incorrect_zip"
        | "invalid_number"
        | "invalid_cvc"
        | "invalid_expiry_month"
        | "invalid_expiry_year"
        | "lost_card"
        | "stolen_card"
        | "fraudulent"
        | "merchant_blacklist"
        | "pickup_card"
        | "restricted_card"
        | "invalid_account"
        | "new_account_information_available"
        | "do_not_try_again"
        | "revocation_of_authorization"
        | "revocation_of_all_authorizations"
        | "stop_payment_order"
        | "card_not_supported"
        | "currency_not_supported"
        | "transaction_not_allowed"
        | "not_permitted"
        | "service_not_allowed"
        | "security_violation"
        | "testmode_decline"
        | "authentication_required" => Some(Decline::Hard),
        // The issuer saw a similar charge: recur's own charges carry one key per attempt and an
        // invoice is paid by its first success, so an earlier charge of ours would have
        // settled the invoice already; retry on the plan.
        "duplicate_transaction"
        | "insufficient_funds"
        | "withdrawal_count_limit_exceeded"
        | "card_velocity_exceeded"
        | "generic_decline"
        | "do_not_honor"
        | "call_issuer"
        | "no_action_taken"
        | "try_again_later"
        | "processing_error"
        | "reenter_transaction"
        | "approve_with_id"
        | "issuer_not_available"
        | "card_decline_rate_limit_exceeded" => Some(Decline::Soft),
        _ => None,
    };
    decline_code
        .and_then(by_code)
        .or_else(|| code.and_then(by_code))
        .unwrap_or(Decline::Soft)
}

/// Stripe's exponent for a currency (docs.stripe.com/currencies), which is not always ISO's.
fn stripe_exponent(c: Currency) -> u32 {
    match c.code() {
        // Two decimals that must be 00 (Stripe's special case wins over its zero-decimal list).
        "ISK" | "UGX" => 2,
        "BIF" | "CLP" | "DJF" | "GNF" | "JPY" | "KMF" | "KRW" | "MGA" | "PYG" | "RWF" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "JOD" | "KWD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Our minor units (ISO exponent) to Stripe's `amount`; an error when Stripe cannot carry the
/// exact amount (three-decimal currencies need a last digit 0, MGA whole ariary).
pub fn to_stripe(amount: i64, c: Currency) -> Result<i64, String> {
    let (ours, theirs) = (c.exponent(), stripe_exponent(c));
    let out = if theirs >= ours {
        10i64
            .checked_pow(theirs - ours)
            .and_then(|f| amount.checked_mul(f))
    } else {
        let f = 10i64.pow(ours - theirs);
        (amount % f == 0).then_some(amount / f)
    };
    let exact_for_three_decimals = theirs != 3 || out.is_some_and(|a| a % 10 == 0);
    match out {
        Some(a) if exact_for_three_decimals => Ok(a),
        _ => Err(format!(
            "{amount} minor units of {} cannot be charged exactly through Stripe",
            c.code()
        )),
    }
}

/// Stripe's `amount` back to our minor units (rounding toward zero where Stripe is finer).
pub fn from_stripe(amount: i64, c: Currency) -> i64 {
    let (ours, theirs) = (c.exponent(), stripe_exponent(c));
    if theirs >= ours {
        amount / 10i64.pow(theirs - ours)
    } else {
        amount.saturating_mul(10i64.pow(ours - theirs))
    }
}

impl PaymentIntent {
    /// The one mapping of a PaymentIntent's status to ours (charge replies, retrieves,
    /// webhooks and reconciliation all read it): the statuses that end without money are
    /// failures; anything else not `succeeded` — `processing`, `requires_capture`, a status
    /// this client does not know yet — is not final, so nothing is concluded from it.
    pub fn charge_status(&self) -> ChargeStatus {
        match self.status.as_str() {
            "succeeded" => ChargeStatus::Succeeded,
            "requires_payment_method"
            | "requires_action"
            | "requires_confirmation"
            | "canceled" => ChargeStatus::Failed,
            _ => ChargeStatus::Processing,
        }
    }

    /// As recur's neutral view (amounts in our minor units).
    pub fn to_charge(&self) -> ProviderCharge {
        let currency = Currency::parse(&self.currency.to_ascii_uppercase()).ok();
        let ours = |a: i64| currency.map_or(a, |c| from_stripe(a, c));
        let refunded = match &self.latest_charge {
            Some(LatestCharge::Charge(ch)) => ch.amount_refunded,
            _ => 0,
        };
        // What a succeeded PaymentIntent took is `amount_received`; until then, what it asks.
        let amount = match self.charge_status() {
            ChargeStatus::Succeeded => self.amount_received,
            ChargeStatus::Processing | ChargeStatus::Failed => self.amount,
        };
        ProviderCharge {
            provider_ref: self.id.clone(),
            status: self.charge_status(),
            amount: ours(amount),
            currency,
            amount_refunded: ours(refunded),
            tenant: self.metadata.get(META_TENANT).cloned(),
            invoice: self.metadata.get(META_INVOICE).cloned(),
            attempt_key: self.metadata.get(META_ATTEMPT).cloned(),
        }
    }
}

impl Charge {
    /// A Charge (from `charge.refunded`) in the neutral view, keyed by its PaymentIntent.
    pub fn to_charge(&self) -> ProviderCharge {
        let currency = Currency::parse(&self.currency.to_ascii_uppercase()).ok();
        let ours = |a: i64| currency.map_or(a, |c| from_stripe(a, c));
        ProviderCharge {
            provider_ref: self
                .payment_intent
                .clone()
                .unwrap_or_else(|| self.id.clone()),
            status: ChargeStatus::Succeeded,
            amount: ours(self.amount),
            currency,
            amount_refunded: ours(self.amount_refunded),
            tenant: self.metadata.get(META_TENANT).cloned(),
            invoice: self.metadata.get(META_INVOICE).cloned(),
            attempt_key: self.metadata.get(META_ATTEMPT).cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cur(c: &str) -> Currency {
        Currency::parse(c).unwrap()
    }

    #[test]
    fn one_mapping_of_payment_intent_statuses() {
        let pi = |status: &str| PaymentIntent {
            id: "pi_1".into(),
            status: status.into(),
            amount: 100,
            amount_received: 0,
            currency: "eur".into(),
            metadata: HashMap::new(),
            latest_charge: None,
            last_payment_error: None,
        };
        assert_eq!(pi("succeeded").charge_status(), ChargeStatus::Succeeded);
        for failed in [
            "requires_payment_method",
            "requires_action",
            "requires_confirmation",
            "canceled",
        ] {
            assert_eq!(pi(failed).charge_status(), ChargeStatus::Failed, "{failed}");
        }
        for open in ["processing", "requires_capture", "a_status_from_the_future"] {
            assert_eq!(pi(open).charge_status(), ChargeStatus::Processing, "{open}");
        }
    }

    #[test]
    fn amounts_follow_stripes_currency_rules() {
        assert_eq!(to_stripe(1999, cur("USD")), Ok(1999));
        assert_eq!(to_stripe(500, cur("JPY")), Ok(500));
        assert_eq!(to_stripe(5, cur("ISK")), Ok(500));
        assert_eq!(to_stripe(5120, cur("KWD")), Ok(5120));
        assert!(to_stripe(5124, cur("KWD")).is_err());
        assert_eq!(to_stripe(1200, cur("MGA")), Ok(12));
        assert!(to_stripe(1250, cur("MGA")).is_err());
        assert_eq!(from_stripe(500, cur("ISK")), 5);
        assert_eq!(from_stripe(12, cur("MGA")), 1200);
    }

    proptest! {
        #[test]
        fn amounts_round_trip(amount in 0i64..100_000_000, code in prop::sample::select(
            vec!["USD", "EUR", "JPY", "ISK", "UGX", "KWD", "MGA", "HUF", "CLP"])) {
            let c = cur(code);
            if let Ok(a) = to_stripe(amount, c) {
                prop_assert_eq!(from_stripe(a, c), amount);
            }
        }
    }

    #[test]
    fn declines_follow_advice_then_decline_code_then_code() {
        use Decline::*;
        let c = |code, decline, advice| classify(code, decline, advice);
        assert_eq!(
            c(Some("card_declined"), Some("insufficient_funds"), None),
            Soft
        );
        assert_eq!(
            c(
                Some("card_declined"),
                Some("generic_decline"),
                Some("try_again_later")
            ),
            Soft
        );
        assert_eq!(
            c(
                Some("card_declined"),
                Some("lost_card"),
                Some("do_not_try_again")
            ),
            Hard
        );
        assert_eq!(
            c(
                Some("expired_card"),
                Some("expired_card"),
                Some("confirm_card_data")
            ),
            Hard
        );
        assert_eq!(
            c(
                Some("card_declined"),
                Some("generic_decline"),
                Some("do_not_try_again")
            ),
            Hard
        );
        assert_eq!(c(Some("incorrect_cvc"), None, None), Hard);
        assert_eq!(c(Some("processing_error"), None, None), Soft);
        assert_eq!(
            c(
                Some("authentication_required"),
                Some("authentication_required"),
                None
            ),
            Hard
        );
        assert_eq!(
            c(Some("card_declined"), Some("duplicate_transaction"), None),
            Soft
        );
        assert_eq!(c(Some("card_declined"), Some("something_new"), None), Soft);
        assert_eq!(c(None, None, None), Soft);
    }
}
