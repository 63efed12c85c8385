//! Payments: the `PaymentProvider` trait, the providers, collection with dunning, and keeping
//! our records in sync with the provider (webhooks, reconciliation, refunds). Provider wire
//! types and statuses stay inside each provider's module; the rest of recur sees the types here.

pub mod collect;
pub mod reconcile;
pub mod refunds;
pub mod sandbox;
pub mod stripe;
pub mod webhooks;

use crate::domain::currency::Currency;
use crate::domain::customer::{PaymentMethod, Provider};
use crate::domain::ids::{InvoiceId, TenantId};
use crate::domain::payment::{DeclineKind, DunningPlan};
use crate::domain::tenant::Mode;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;

/// One charge as the provider sees it. The idempotency key is derived from (invoice, attempt
/// number): a network retry inside the attempt reuses it, a dunning retry gets a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub idempotency_key: String,
    pub tenant: TenantId,
    pub invoice: InvoiceId,
    pub attempt_number: u32,
    pub amount: i64,
    pub currency: Currency,
    /// The payment method at the provider (`tok_…`, `pm_…`).
    pub token: String,
    /// The customer at the provider (Stripe `cus_…`), for providers that need one.
    pub provider_customer: Option<String>,
    /// The provider's id for this attempt when an earlier answer gave one.
    pub provider_ref: Option<String>,
    /// How long ago the attempt was made (zero for a new charge): a provider forgets
    /// idempotency keys after a while, so old attempts are looked up, never re-sent.
    pub age: chrono::Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    /// The provider says it took the money; what it says it took is checked against the
    /// attempt before the invoice counts as paid.
    Succeeded {
        provider_ref: String,
        received: Received,
    },
    Declined {
        code: String,
        kind: DeclineKind,
        message: String,
        provider_ref: Option<String>,
    },
    /// The request may have charged (a timeout after sending, a 5xx, a charge still
    /// processing): ask the provider later, never charge blind.
    Unknown {
        message: String,
        provider_ref: Option<String>,
    },
}

impl From<ChargeResult> for crate::domain::dunning::Outcome {
    /// The verified result as the dunning decision reads it (what was received has been
    /// checked by then).
    fn from(r: ChargeResult) -> Self {
        use crate::domain::dunning::Outcome;
        match r {
            ChargeResult::Succeeded { provider_ref, .. } => Outcome::Succeeded { provider_ref },
            ChargeResult::Declined {
                code,
                kind,
                message,
                provider_ref,
            } => Outcome::Declined {
                code,
                kind,
                message,
                provider_ref,
            },
            ChargeResult::Unknown {
                message,
                provider_ref,
            } => Outcome::Unknown {
                message,
                provider_ref,
            },
        }
    }
}

impl ChargeResult {
    /// What this result reports, for the attempt state machine.
    pub fn reported(&self) -> crate::domain::payment::Reported {
        use crate::domain::payment::Reported;
        match self {
            ChargeResult::Succeeded { .. } => Reported::Succeeded,
            ChargeResult::Declined { .. } => Reported::Declined,
            ChargeResult::Unknown { .. } => Reported::Unknown,
        }
    }

    fn hard(code: &str, message: &str) -> Self {
        ChargeResult::Declined {
            code: code.into(),
            kind: DeclineKind::Hard,
            message: message.into(),
            provider_ref: None,
        }
    }
}

/// What a provider says a successful charge took, and the references recur wrote into it.
/// References the provider did not echo back are `None` and not held against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub amount: i64,
    pub currency: Option<Currency>,
    pub tenant: Option<String>,
    pub invoice: Option<String>,
    pub attempt_key: Option<String>,
}

impl Received {
    pub fn of(c: &ProviderCharge) -> Self {
        Received {
            amount: c.amount,
            currency: c.currency,
            tenant: c.tenant.clone(),
            invoice: c.invoice.clone(),
            attempt_key: c.attempt_key.clone(),
        }
    }

    /// Why this answer does not belong to the attempt, if it does not: another amount or
    /// currency, or another tenant's, invoice's or attempt's charge.
    pub fn mismatch(
        &self,
        tenant: &TenantId,
        p: &crate::domain::payment::Payment,
    ) -> Option<String> {
        let key = p.idempotency_key();
        let differs = |name: &str, got: &Option<String>, want: &str| {
            got.as_deref()
                .filter(|g| *g != want)
                .map(|g| format!("{name} {g} where {want} was expected"))
        };
        if self.amount != p.amount || self.currency != Some(p.currency) {
            return Some(format!(
                "the provider reports {} {} taken for an attempt of {} {}",
                self.amount,
                self.currency
                    .as_ref()
                    .map_or("(no currency)", Currency::code),
                p.amount,
                p.currency.code()
            ));
        }
        differs("tenant", &self.tenant, tenant.as_str())
            .or_else(|| differs("invoice", &self.invoice, p.invoice.as_str()))
            .or_else(|| differs("attempt", &self.attempt_key, &key))
    }
}

/// A refund of (part of) a charge, with its own idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub idempotency_key: String,
    /// The charge's provider reference (a Stripe PaymentIntent).
    pub provider_ref: String,
    pub amount: i64,
    pub currency: Currency,
    pub reason: String,
    /// The credit note asking for it, and its tenant (written into the provider's metadata
    /// so the provider's refund events find their way back).
    pub credit_note: String,
    pub tenant: TenantId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundResult {
    Succeeded {
        refund_ref: String,
    },
    /// Accepted, money not back yet (`charge.refunded` confirms it).
    Pending {
        refund_ref: String,
    },
    Failed {
        code: String,
        message: String,
    },
    /// No definite answer: sent again later with the same key.
    Unknown {
        message: String,
    },
}

/// A charge as the provider's own records show it (reconciliation, webhooks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCharge {
    pub provider_ref: String,
    pub status: ChargeStatus,
    pub amount: i64,
    pub currency: Option<Currency>,
    pub amount_refunded: i64,
    /// What recur wrote into the charge's metadata; `None` for charges recur did not make.
    pub tenant: Option<String>,
    pub invoice: Option<String>,
    pub attempt_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeStatus {
    Succeeded,
    Processing,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargePage {
    pub charges: Vec<ProviderCharge>,
    /// Where the next page starts, when there is one.
    pub next: Option<String>,
}

/// An inbound provider event, verified and mapped to what recur acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    pub id: String,
    pub kind: String,
    pub change: EventChange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventChange {
    Succeeded(ProviderCharge),
    Failed {
        charge: ProviderCharge,
        code: String,
        kind: DeclineKind,
        message: String,
    },
    /// `amount_refunded` is the running total the provider holds for the charge.
    Refunded(ProviderCharge),
    /// A refund recur asked for changed status (settled or failed after being accepted).
    RefundUpdated {
        tenant: Option<String>,
        credit_note: Option<String>,
        result: RefundResult,
    },
    /// Verified, but nothing recur tracks (acknowledged and recorded).
    Ignored,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("this provider sends no webhooks")]
    Unsupported,
    #[error("no webhook signing secret is configured")]
    NotConfigured,
    #[error("missing Stripe-Signature header")]
    MissingSignature,
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    #[error("timestamp outside the tolerance of {0} seconds")]
    Stale(i64),
    #[error("no signature matches the payload")]
    Mismatch,
    #[error("the event is not valid JSON of the expected shape: {0}")]
    BadPayload(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProviderError(pub String);

#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync {
    async fn charge(&self, req: &ChargeRequest) -> ChargeResult;
    /// The outcome of the attempt with this idempotency key, to resolve an `unknown` one.
    /// Never a second charge: a provider that can only learn it by re-sending does so with the
    /// same key, which replays the first outcome.
    async fn retrieve(&self, req: &ChargeRequest) -> ChargeResult;
    async fn refund(&self, req: &RefundRequest) -> RefundResult;
    /// The current state of a refund the provider accepted as pending (when its webhook is
    /// late or lost).
    async fn refund_status(&self, refund_ref: &str) -> RefundResult;
    /// Charges created in `[from, to]`, a page at a time (reconciliation).
    async fn list_charges(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        starting_after: Option<&str>,
    ) -> Result<ChargePage, ProviderError>;
}

/// The providers this installation can charge through, and the default dunning plan.
pub struct Payments {
    pub sandbox: Arc<sandbox::Sandbox>,
    /// The installation's Stripe key (`stripe.secret_key`): tenants without an account of
    /// their own charge through it.
    pub stripe: Option<Arc<stripe::Stripe>>,
    pub stripe_webhooks: stripe::Webhooks,
    pub plan: DunningPlan,
    /// Pending attempts older than this (system time) are resolved like unknown ones.
    pub stale_pending: chrono::Duration,
    /// Charges a collection pass has in flight at once (`stripe.max_concurrent_requests`);
    /// each provider paces its own requests below that.
    pub charges_at_once: usize,
    config: Arc<crate::config::Config>,
    /// Clients of tenants' own Stripe accounts, with the sealed key each was made from.
    tenant_stripe: std::sync::Mutex<HashMap<TenantId, (String, Arc<stripe::Stripe>)>>,
}

impl Payments {
    pub fn from_config(config: &crate::config::Config) -> Result<Self, reqwest::Error> {
        Ok(Payments {
            sandbox: Arc::new(sandbox::Sandbox::default()),
            stripe: stripe::Stripe::from_config(&config.stripe)?.map(Arc::new),
            stripe_webhooks: stripe::Webhooks::from_config(&config.stripe),
            plan: config.dunning.plan(),
            stale_pending: chrono::Duration::seconds(
                i64::try_from(config.dunning.stale_pending_secs).unwrap_or(i64::MAX / 1000),
            ),
            charges_at_once: config.stripe.max_concurrent_requests,
            config: Arc::new(config.clone()),
            tenant_stripe: std::sync::Mutex::default(),
        })
    }

    /// The tenant's dunning plan, or the installation's.
    pub fn plan_for<'a>(&'a self, tenant: &'a crate::domain::tenant::Tenant) -> &'a DunningPlan {
        tenant.dunning.as_ref().unwrap_or(&self.plan)
    }

    /// Verifies an inbound webhook to the installation's endpoint (`/webhooks/{provider}`,
    /// `stripe.webhook_secrets`) on its raw body and maps it.
    pub fn parse_webhook(
        &self,
        provider: Provider,
        signature: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<ProviderEvent, WebhookError> {
        match provider {
            Provider::Sandbox => Err(WebhookError::Unsupported),
            Provider::Stripe => self.stripe_webhooks.parse(signature, body, now),
        }
    }

    /// The providers `tenant` charges through: the sandbox, and Stripe with the tenant's own
    /// account when it connected one, else the installation's key.
    pub async fn for_tenant(
        &self,
        db: &crate::store::Db,
        tenant: &crate::domain::tenant::Tenant,
    ) -> Result<TenantProviders, crate::store::StoreError> {
        let mut tx = db.read().await?;
        let account =
            crate::store::provider_accounts::find_account(&mut tx, &tenant.id, Provider::Stripe)
                .await?;
        tx.commit().await?;
        let (stripe, own) = match account {
            Some(a) => (Some(self.tenant_client(&a)?), true),
            None => (self.stripe.clone(), false),
        };
        Ok(TenantProviders {
            sandbox: self.sandbox.clone(),
            stripe,
            own_account: own,
            mode: tenant.mode,
        })
    }

    /// The client of a tenant's own Stripe account, made once per key.
    fn tenant_client(
        &self,
        a: &crate::store::provider_accounts::StoredAccount,
    ) -> Result<Arc<stripe::Stripe>, crate::store::StoreError> {
        let cached = self
            .tenant_stripe
            .lock()
            .ok()
            .and_then(|m| m.get(&a.tenant).cloned());
        if let Some((sealed, client)) = cached
            && sealed == a.secret_key
        {
            return Ok(client);
        }
        let context =
            crate::store::provider_accounts::sealed_context(&a.tenant, a.provider, "secret_key");
        let key = self
            .config
            .vault()
            .and_then(|v| v.open(&context, &a.secret_key))
            .map_err(|e| crate::store::rows::corrupt("provider_accounts.secret_key", e))?;
        let client = Arc::new(
            stripe::Stripe::with_key(&self.config.stripe, key)
                .map_err(|e| crate::store::rows::corrupt("provider_accounts.secret_key", e))?,
        );
        if let Ok(mut m) = self.tenant_stripe.lock() {
            m.insert(a.tenant.clone(), (a.secret_key.clone(), client.clone()));
        }
        Ok(client)
    }
}

/// The providers one tenant charges through (`Payments::for_tenant`).
pub struct TenantProviders {
    sandbox: Arc<sandbox::Sandbox>,
    stripe: Option<Arc<stripe::Stripe>>,
    /// Whether `stripe` is the tenant's own account rather than the installation's key.
    own_account: bool,
    mode: Mode,
}

impl TenantProviders {
    /// The Stripe client the tenant charges through (its own account's or the installation's).
    pub fn stripe(&self) -> Option<&stripe::Stripe> {
        self.stripe.as_deref()
    }

    /// Whether Stripe is the tenant's own account (not the installation's shared key).
    pub fn own_stripe_account(&self) -> bool {
        self.own_account
    }

    pub fn provider(&self, provider: Provider) -> Option<&dyn PaymentProvider> {
        match provider {
            Provider::Sandbox => Some(self.sandbox.as_ref()),
            Provider::Stripe => self.stripe.as_deref().map(|s| s as &dyn PaymentProvider),
        }
    }

    /// Whether the tenant may charge through `provider`: a test-mode tenant only through the
    /// sandbox or a Stripe test key, a live tenant only through a live Stripe key, never
    /// through sandbox tokens. The reason when not.
    pub fn check_mode(&self, provider: Provider) -> Result<(), String> {
        let mode = self.mode;
        match (mode, provider) {
            (Mode::Test, Provider::Sandbox) => Ok(()),
            (Mode::Live, Provider::Sandbox) => Err(
                "sandbox payment methods only charge for test-mode tenants; a live tenant charges through Stripe with a live key".into(),
            ),
            (_, Provider::Stripe) => match self.stripe.as_deref().map(stripe::Stripe::mode) {
                Some(key) if key != mode => Err(format!(
                    "a {}-mode tenant cannot charge through {} {} Stripe key",
                    mode.as_str(),
                    if self.own_account { "its account's" } else { "this installation's (stripe.secret_key)" },
                    key.as_str()
                )),
                Some(_) | None => Ok(()),
            },
        }
    }

    /// The provider to charge a customer's payment method through, or why there is none (a
    /// hard decline: nothing happens until the method changes).
    pub fn charging_provider_for(
        &self,
        method: Option<&PaymentMethod>,
    ) -> Result<&dyn PaymentProvider, ChargeResult> {
        let provider = self.provider_for(method)?;
        if let Some(m) = method {
            self.check_mode(m.provider)
                .map_err(|reason| ChargeResult::hard("livemode_mismatch", &reason))?;
        }
        Ok(provider)
    }

    /// The provider for a customer's payment method, or why there is none.
    pub fn provider_for(
        &self,
        method: Option<&PaymentMethod>,
    ) -> Result<&dyn PaymentProvider, ChargeResult> {
        let Some(method) = method else {
            return Err(ChargeResult::hard(
                "no_payment_method",
                "the customer has no payment method",
            ));
        };
        self.provider(method.provider).ok_or_else(|| {
            ChargeResult::hard(
                "provider_not_configured",
                "no Stripe account: connect one (PUT /v1/settings/providers/stripe) or set stripe.secret_key",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{InvoiceId, PaymentId};
    use crate::domain::payment::{AttemptStatus, Payment};

    fn attempt() -> (TenantId, Payment) {
        let p = Payment {
            id: PaymentId::generate(),
            object: "payment",
            invoice: InvoiceId::generate(),
            attempt_number: 2,
            status: AttemptStatus::Pending,
            amount: 6027,
            amount_refunded: 0,
            currency: Currency::parse("EUR").unwrap(),
            provider: Provider::Stripe,
            provider_ref: None,
            decline_code: None,
            failure_message: None,
            created: Utc::now(),
            completed_at: None,
        };
        (TenantId::generate(), p)
    }

    fn answer(t: &TenantId, p: &Payment) -> Received {
        Received {
            amount: p.amount,
            currency: Some(p.currency),
            tenant: Some(t.to_string()),
            invoice: Some(p.invoice.to_string()),
            attempt_key: Some(p.idempotency_key()),
        }
    }

    #[test]
    fn an_answer_must_match_the_attempt_it_settles() {
        let (t, p) = attempt();
        assert_eq!(answer(&t, &p).mismatch(&t, &p), None);
        let silent = Received {
            tenant: None,
            invoice: None,
            attempt_key: None,
            ..answer(&t, &p)
        };
        assert_eq!(
            silent.mismatch(&t, &p),
            None,
            "missing references are not held against it"
        );
        let cases = [
            Received {
                amount: 6026,
                ..answer(&t, &p)
            },
            Received {
                currency: Currency::parse("PLN").ok(),
                ..answer(&t, &p)
            },
            Received {
                currency: None,
                ..answer(&t, &p)
            },
            Received {
                tenant: Some(TenantId::generate().to_string()),
                ..answer(&t, &p)
            },
            Received {
                invoice: Some(InvoiceId::generate().to_string()),
                ..answer(&t, &p)
            },
            Received {
                attempt_key: Some(format!("{}-attempt-1", p.invoice)),
                ..answer(&t, &p)
            },
        ];
        for r in cases {
            assert!(r.mismatch(&t, &p).is_some(), "{r:?}");
        }
    }
}
