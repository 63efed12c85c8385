//! Payments: the `PaymentProvider` trait, the providers, and collection with dunning.
//! Provider wire types and statuses stay inside each provider's module.

pub mod collect;
pub mod sandbox;

use crate::domain::currency::Currency;
use crate::domain::customer::{PaymentMethod, Provider};
use crate::domain::ids::InvoiceId;
use crate::domain::payment::{DeclineKind, DunningPlan};
use std::sync::Arc;

/// One charge as the provider sees it. The idempotency key is derived from (invoice, attempt
/// number): a network retry inside the attempt reuses it, a dunning retry gets a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub idempotency_key: String,
    pub invoice: InvoiceId,
    pub attempt_number: u32,
    pub amount: i64,
    pub currency: Currency,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    Succeeded {
        provider_ref: String,
    },
    Declined {
        code: String,
        kind: DeclineKind,
        message: String,
    },
    /// The request may have charged (timeout after sending): ask the provider later.
    Unknown {
        message: String,
    },
}

#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync {
    async fn charge(&self, req: &ChargeRequest) -> ChargeResult;
    /// The outcome of an earlier request with the same idempotency key, without charging.
    async fn retrieve(&self, req: &ChargeRequest) -> ChargeResult;
}

/// The providers this installation can charge through, and the dunning plan.
pub struct Payments {
    pub sandbox: Arc<sandbox::Sandbox>,
    pub plan: DunningPlan,
}

impl Payments {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Payments {
            sandbox: Arc::new(sandbox::Sandbox::default()),
            plan: config.dunning.plan(),
        }
    }

    /// The provider for a customer's payment method, or why there is none (a hard decline:
    /// nothing happens until the method changes).
    pub fn provider_for(
        &self,
        method: Option<&PaymentMethod>,
    ) -> Result<(&dyn PaymentProvider, String), ChargeResult> {
        match method {
            Some(PaymentMethod {
                provider: Provider::Sandbox,
                token,
            }) => Ok((self.sandbox.as_ref(), token.clone())),
            Some(PaymentMethod {
                provider: Provider::Stripe,
                ..
            }) => Err(ChargeResult::Declined {
                code: "provider_not_configured".into(),
                kind: DeclineKind::Hard,
                message: "the stripe provider is not available in this build".into(),
            }),
            None => Err(ChargeResult::Declined {
                code: "no_payment_method".into(),
                kind: DeclineKind::Hard,
                message: "the customer has no payment method".into(),
            }),
        }
    }
}
