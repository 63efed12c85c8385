//! The sandbox provider: in-process and deterministic, keyed by idempotency key, with a ledger
//! of the charges that really happened so tests can count them.
//!
//! Tokens: `tok_visa` succeeds; `tok_insufficient_funds` always soft-declines;
//! `tok_expired_card` hard-declines; `tok_retry_succeeds` soft-declines on an invoice's first
//! attempt and succeeds after; `tok_timeout` charges but answers as if the connection timed out
//! on the first call for a key, so the attempt is unknown until retrieved. Other tokens
//! hard-decline as `invalid_account`.

use super::{ChargeRequest, ChargeResult, PaymentProvider};
use crate::domain::ids::InvoiceId;
use crate::domain::payment::DeclineKind;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxCharge {
    pub invoice: InvoiceId,
    pub amount: i64,
}

#[derive(Default)]
pub struct Sandbox {
    /// Charges by idempotency key: the same key never charges twice.
    ledger: Mutex<HashMap<String, SandboxCharge>>,
    answered: Mutex<HashSet<String>>,
}

impl Sandbox {
    /// Charges that really happened, for one invoice.
    pub fn charges_for(&self, invoice: &InvoiceId) -> usize {
        self.ledger
            .lock()
            .map(|l| l.values().filter(|c| &c.invoice == invoice).count())
            .unwrap_or(0)
    }

    fn record(&self, req: &ChargeRequest) -> ChargeResult {
        if let Ok(mut l) = self.ledger.lock() {
            l.entry(req.idempotency_key.clone())
                .or_insert(SandboxCharge {
                    invoice: req.invoice.clone(),
                    amount: req.amount,
                });
        }
        ChargeResult::Succeeded {
            provider_ref: format!("sbx_{}", req.idempotency_key),
        }
    }

    fn decline(code: &str, kind: DeclineKind, message: &str) -> ChargeResult {
        ChargeResult::Declined {
            code: code.into(),
            kind,
            message: message.into(),
        }
    }
}

#[async_trait::async_trait]
impl PaymentProvider for Sandbox {
    async fn charge(&self, req: &ChargeRequest) -> ChargeResult {
        match req.token.as_str() {
            "tok_visa" => self.record(req),
            "tok_insufficient_funds" => Self::decline(
                "insufficient_funds",
                DeclineKind::Soft,
                "Your card has insufficient funds.",
            ),
            "tok_expired_card" => {
                Self::decline("expired_card", DeclineKind::Hard, "Your card has expired.")
            }
            "tok_retry_succeeds" if req.attempt_number == 1 => Self::decline(
                "try_again_later",
                DeclineKind::Soft,
                "The card was declined; try again later.",
            ),
            "tok_retry_succeeds" => self.record(req),
            "tok_timeout" => {
                let outcome = self.record(req);
                let first = self
                    .answered
                    .lock()
                    .map(|mut a| a.insert(req.idempotency_key.clone()))
                    .unwrap_or(false);
                if first {
                    ChargeResult::Unknown {
                        message: "timed out after the request was sent".into(),
                    }
                } else {
                    outcome
                }
            }
            _ => Self::decline(
                "invalid_account",
                DeclineKind::Hard,
                "The payment method is not valid.",
            ),
        }
    }

    async fn retrieve(&self, req: &ChargeRequest) -> ChargeResult {
        let charged = self
            .ledger
            .lock()
            .map(|l| l.contains_key(&req.idempotency_key))
            .unwrap_or(false);
        // tok_timeout always charges: after a restart the ledger is empty but the charge is real.
        if charged || req.token == "tok_timeout" {
            self.record(req)
        } else {
            Self::decline(
                "no_charge",
                DeclineKind::Soft,
                "no charge was made for this attempt",
            )
        }
    }
}
