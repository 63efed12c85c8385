//! The sandbox provider: in-process and deterministic, keyed by idempotency key, with a ledger
//! of the charges and refunds that really happened so tests can count them.
//!
//! Tokens: `tok_visa` succeeds; `tok_insufficient_funds` always soft-declines;
//! `tok_expired_card` hard-declines; `tok_retry_succeeds` soft-declines on an invoice's first
//! attempt and succeeds after; `tok_timeout` charges but answers as if the connection timed out
//! on the first call for a key, so the attempt is unknown until retrieved. Other tokens
//! hard-decline as `invalid_account`. The ledger lives in the process that charged; it sends no
//! webhooks.

use super::{
    ChargePage, ChargeRequest, ChargeResult, ChargeStatus, PaymentProvider, ProviderCharge,
    ProviderError, RefundRequest, RefundResult,
};
use crate::domain::currency::Currency;
use crate::domain::ids::{InvoiceId, TenantId};
use crate::domain::payment::DeclineKind;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxCharge {
    pub tenant: TenantId,
    pub invoice: InvoiceId,
    pub amount: i64,
    pub currency: Currency,
    pub refunded: i64,
    pub created: DateTime<Utc>,
}

#[derive(Default)]
struct Ledger {
    /// Charges by idempotency key: the same key never charges twice.
    charges: BTreeMap<String, SandboxCharge>,
    /// Charge keys, oldest first, so the ledger can forget the oldest.
    order: VecDeque<String>,
    /// Refunds by their idempotency key: (charge key, amount).
    refunds: HashMap<String, (String, i64)>,
    answered: HashSet<String>,
}

/// The sandbox keeps the newest this many charges (and their refunds) in memory; older ones
/// are forgotten, so a long-running `serve` stays flat. A refund of a forgotten charge fails
/// `resource_missing`, as a provider's would for an unknown charge.
pub const LEDGER_CAPACITY: usize = 200_000;

pub struct Sandbox {
    ledger: Mutex<Ledger>,
    capacity: usize,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::with_capacity(LEDGER_CAPACITY)
    }
}

const REF_PREFIX: &str = "sbx_";

impl Sandbox {
    /// A sandbox remembering at most `capacity` charges.
    pub fn with_capacity(capacity: usize) -> Self {
        Sandbox {
            ledger: Mutex::new(Ledger::default()),
            capacity: capacity.max(1),
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic while holding the lock cannot leave the maps half-written: every change is
        // one insert. Keep serving.
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Charges that really happened, for one invoice.
    pub fn charges_for(&self, invoice: &InvoiceId) -> usize {
        self.ledger()
            .charges
            .values()
            .filter(|c| &c.invoice == invoice)
            .count()
    }

    /// Money given back for one invoice.
    pub fn refunded_for(&self, invoice: &InvoiceId) -> i64 {
        self.ledger()
            .charges
            .values()
            .filter(|c| &c.invoice == invoice)
            .map(|c| c.refunded)
            .sum()
    }

    fn record(&self, req: &ChargeRequest) -> ChargeResult {
        let mut ledger = self.ledger();
        if !ledger.charges.contains_key(&req.idempotency_key) {
            ledger.charges.insert(
                req.idempotency_key.clone(),
                SandboxCharge {
                    tenant: req.tenant.clone(),
                    invoice: req.invoice.clone(),
                    amount: req.amount,
                    currency: req.currency,
                    refunded: 0,
                    created: Utc::now(),
                },
            );
            ledger.order.push_back(req.idempotency_key.clone());
            while ledger.order.len() > self.capacity {
                let Some(old) = ledger.order.pop_front() else {
                    break;
                };
                ledger.charges.remove(&old);
                ledger.answered.remove(&old);
                ledger.refunds.retain(|_, (charge, _)| *charge != old);
            }
        }
        drop(ledger);
        ChargeResult::Succeeded {
            provider_ref: format!("{REF_PREFIX}{}", req.idempotency_key),
            received: super::Received {
                amount: req.amount,
                currency: Some(req.currency),
                tenant: Some(req.tenant.to_string()),
                invoice: Some(req.invoice.to_string()),
                attempt_key: Some(req.idempotency_key.clone()),
            },
        }
    }

    fn decline(code: &str, kind: DeclineKind, message: &str) -> ChargeResult {
        ChargeResult::Declined {
            code: code.into(),
            kind,
            message: message.into(),
            provider_ref: None,
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
                let first = self.ledger().answered.insert(req.idempotency_key.clone());
                if first {
                    ChargeResult::Unknown {
                        message: "timed out after the request was sent".into(),
                        provider_ref: None,
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
        let charged = self.ledger().charges.contains_key(&req.idempotency_key);
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

    async fn refund(&self, req: &RefundRequest) -> RefundResult {
        let mut ledger = self.ledger();
        let refund_ref = format!("{REF_PREFIX}re_{}", req.idempotency_key);
        if ledger.refunds.contains_key(&req.idempotency_key) {
            return RefundResult::Succeeded { refund_ref };
        }
        let key = req
            .provider_ref
            .strip_prefix(REF_PREFIX)
            .unwrap_or_default()
            .to_owned();
        let Some(charge) = ledger.charges.get_mut(&key) else {
            return RefundResult::Failed {
                code: "resource_missing".into(),
                message: format!("no charge {}", req.provider_ref),
            };
        };
        if req.amount <= 0 || charge.refunded + req.amount > charge.amount {
            return RefundResult::Failed {
                code: "amount_too_large".into(),
                message: "the refund is larger than what is left of the charge".into(),
            };
        }
        charge.refunded += req.amount;
        ledger
            .refunds
            .insert(req.idempotency_key.clone(), (key, req.amount));
        RefundResult::Succeeded { refund_ref }
    }

    /// Sandbox refunds settle at once; a reference it never gave is unknown to it.
    async fn refund_status(&self, refund_ref: &str) -> RefundResult {
        let key = refund_ref
            .strip_prefix(REF_PREFIX)
            .and_then(|r| r.strip_prefix("re_"))
            .unwrap_or_default();
        if self.ledger().refunds.contains_key(key) {
            RefundResult::Succeeded {
                refund_ref: refund_ref.to_owned(),
            }
        } else {
            RefundResult::Unknown {
                message: format!("no refund {refund_ref}"),
            }
        }
    }

    async fn list_charges(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        _starting_after: Option<&str>,
    ) -> Result<ChargePage, ProviderError> {
        let charges = self
            .ledger()
            .charges
            .iter()
            .filter(|(_, c)| c.created >= from && c.created <= to)
            .map(|(key, c)| ProviderCharge {
                provider_ref: format!("{REF_PREFIX}{key}"),
                status: ChargeStatus::Succeeded,
                amount: c.amount,
                currency: Some(c.currency),
                amount_refunded: c.refunded,
                tenant: Some(c.tenant.to_string()),
                invoice: Some(c.invoice.to_string()),
                attempt_key: Some(key.clone()),
            })
            .collect();
        Ok(ChargePage {
            charges,
            next: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{InvoiceId, TenantId};

    fn request(invoice: &InvoiceId) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: format!("{invoice}-attempt-1"),
            tenant: TenantId::generate(),
            invoice: invoice.clone(),
            attempt_number: 1,
            amount: 100,
            currency: Currency::parse("EUR").unwrap(),
            token: "tok_visa".into(),
            provider_customer: None,
            provider_ref: None,
            age: chrono::Duration::zero(),
        }
    }

    #[tokio::test]
    async fn the_ledger_keeps_the_newest_charges_only() {
        let sandbox = Sandbox::with_capacity(3);
        let invoices: Vec<InvoiceId> = (0..5).map(|_| InvoiceId::generate()).collect();
        for inv in &invoices {
            sandbox.charge(&request(inv)).await;
            // A replay of the same key is not a new charge.
            sandbox.charge(&request(inv)).await;
        }
        let kept: Vec<usize> = invoices.iter().map(|i| sandbox.charges_for(i)).collect();
        assert_eq!(kept, [0, 0, 1, 1, 1]);
    }
}
