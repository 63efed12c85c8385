//! The Stripe provider over reqwest: PaymentIntents created and confirmed off-session, refunds,
//! listing for reconciliation, and signed inbound webhooks.
//!
//! Every mutating call carries an `Idempotency-Key`. One request is retried with the same key
//! after a network error, 409, 429 or 5xx (`Stripe-Should-Retry` overrides; `Retry-After` is
//! honoured up to the backoff cap). When no definite answer comes back the attempt is
//! `Unknown`: Stripe saves 500s under the key, so a 500 after the retries is not a decline.

mod signature;
pub mod wire;

pub use signature::sign;

use super::{
    ChargePage, ChargeRequest, ChargeResult, EventChange, PaymentProvider, ProviderError,
    ProviderEvent, RefundRequest, RefundResult, WebhookError,
};
use crate::config::{Secret, StripeConfig};
use crate::domain::payment::DeclineKind;
use crate::domain::tenant::Mode;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use std::time::Duration;
use wire::Decline;

pub struct Stripe {
    http: reqwest::Client,
    base: String,
    key: Secret,
    version: String,
    retries: u32,
    retry_base: Duration,
    retry_max: Duration,
    /// Every request to the account waits for a token (`stripe.ops_per_second_live/test`),
    /// so a collection pass never meets Stripe's 429 on its own.
    pace: governor::DefaultDirectRateLimiter,
    /// Requests in flight to the account (`stripe.max_concurrent_requests`).
    in_flight: tokio::sync::Semaphore,
}

/// Verifies Stripe's inbound webhooks. Needs only the signing secrets, not an API key: an
/// installation may receive events before (or without) charging through Stripe itself.
pub struct Webhooks {
    secrets: Vec<Secret>,
    tolerance_secs: i64,
}

impl Webhooks {
    /// Verification with these secrets (one account's endpoint).
    pub fn new(secrets: Vec<Secret>, tolerance_secs: i64) -> Self {
        Webhooks {
            secrets,
            tolerance_secs,
        }
    }

    pub fn from_config(c: &StripeConfig) -> Self {
        Webhooks {
            secrets: c.webhook_secrets.clone(),
            tolerance_secs: c.webhook_tolerance_secs,
        }
    }

    /// Verifies the signature on the raw body, then maps the event.
    pub fn parse(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<ProviderEvent, WebhookError> {
        signature::verify(&self.secrets, signature, body, now, self.tolerance_secs)?;
        parse_event(body)
    }
}

/// Attempts older than this are never re-sent with their key (Stripe prunes keys after 24 h).
const KEY_LIFETIME: chrono::Duration = chrono::Duration::hours(23);

/// How far back `find_by_key` reads a customer's PaymentIntents (100 per page).
const MAX_LIST_PAGES: usize = 20;

/// What one request came to after its retries.
enum Reply {
    Answer {
        status: StatusCode,
        body: serde_json::Value,
    },
    /// No answer (timeout, connection lost): the request may or may not have been processed.
    Indeterminate(String),
}

/// Why a payment method cannot be stored for a customer (`Stripe::check_method`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodRefused {
    UnknownMethod,
    UnknownCustomer,
    OtherCustomer,
    Unreachable(String),
}

/// The mode a Stripe secret or restricted key belongs to, from its prefix (`sk_live_…`,
/// `rk_test_…`); `None` for anything else.
pub fn key_mode(key: &str) -> Option<Mode> {
    let rest = key
        .strip_prefix("sk_")
        .or_else(|| key.strip_prefix("rk_"))?;
    if rest.starts_with("live_") {
        Some(Mode::Live)
    } else if rest.starts_with("test_") {
        Some(Mode::Test)
    } else {
        None
    }
}

impl Stripe {
    /// Whether the configured key is a live or a test key (the configuration refuses any
    /// other; an unknown prefix counts as live, the stricter side).
    pub fn mode(&self) -> Mode {
        key_mode(self.key.expose()).unwrap_or(Mode::Live)
    }

    /// The client, or `None` when no secret key is configured.
    pub fn from_config(c: &StripeConfig) -> Result<Option<Self>, reqwest::Error> {
        c.secret_key
            .clone()
            .map(|key| Stripe::with_key(c, key))
            .transpose()
    }

    /// A client for `key` (a tenant's own account) with the configured timeouts and retries.
    pub fn with_key(c: &StripeConfig, key: Secret) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(c.timeout_ms))
            .connect_timeout(Duration::from_millis(c.timeout_ms.min(10_000)))
            .user_agent(concat!("recur/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let per_second = match key_mode(key.expose()) {
            Some(Mode::Live) => c.ops_per_second_live,
            _ => c.ops_per_second_test,
        };
        let per_second = std::num::NonZeroU32::new(per_second).unwrap_or(std::num::NonZeroU32::MIN);
        // Bursts of a tenth of a second's worth: the pace stays even within each second.
        let burst =
            std::num::NonZeroU32::new(per_second.get() / 10).unwrap_or(std::num::NonZeroU32::MIN);
        Ok(Stripe {
            http,
            base: c.api_base.trim_end_matches('/').to_owned(),
            key,
            version: c.api_version.clone(),
            retries: c.max_network_retries,
            retry_base: Duration::from_millis(c.retry_base_ms),
            retry_max: Duration::from_millis(c.retry_max_ms),
            pace: governor::RateLimiter::direct(
                governor::Quota::per_second(per_second).allow_burst(burst),
            ),
            in_flight: tokio::sync::Semaphore::new(c.max_concurrent_requests.max(1)),
        })
    }

    /// Checks the key with Stripe (`GET /v1/account`): the account's id, `None` when a
    /// restricted key may not read it; the reason when Stripe refuses the key or cannot be
    /// reached (`Err((unreachable, message))`).
    pub async fn account_id(&self) -> Result<Option<String>, (bool, String)> {
        match self.send(Method::GET, "/v1/account", &[], None).await {
            Reply::Answer { status, body } if status.is_success() => {
                Ok(body["id"].as_str().map(str::to_owned))
            }
            Reply::Answer { status, .. } if status == StatusCode::FORBIDDEN => Ok(None),
            Reply::Answer { status, body } => Err((
                status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
                error_of(&body)
                    .message
                    .unwrap_or_else(|| format!("Stripe answered {status}")),
            )),
            Reply::Indeterminate(message) => Err((true, message)),
        }
    }

    /// Checks that a payment method and a customer exist in this account and that the method
    /// is not attached to another customer (Stripe's test methods `pm_card_…` are attached to
    /// none).
    pub async fn check_method(&self, token: &str, customer: &str) -> Result<(), MethodRefused> {
        let owner = match self
            .send(
                Method::GET,
                &format!("/v1/payment_methods/{token}"),
                &[],
                None,
            )
            .await
        {
            Reply::Answer { status, body } if status.is_success() => {
                body["customer"].as_str().map(str::to_owned)
            }
            Reply::Answer { status, .. } if status == StatusCode::NOT_FOUND => {
                return Err(MethodRefused::UnknownMethod);
            }
            Reply::Answer { status, body } => {
                return Err(MethodRefused::Unreachable(
                    error_of(&body)
                        .message
                        .unwrap_or_else(|| format!("Stripe answered {status}")),
                ));
            }
            Reply::Indeterminate(m) => return Err(MethodRefused::Unreachable(m)),
        };
        if owner.as_deref().is_some_and(|o| o != customer) {
            return Err(MethodRefused::OtherCustomer);
        }
        match self
            .send(Method::GET, &format!("/v1/customers/{customer}"), &[], None)
            .await
        {
            Reply::Answer { status, body } if status.is_success() && body["deleted"] != true => {
                Ok(())
            }
            Reply::Answer { status, .. }
                if status.is_success() || status == StatusCode::NOT_FOUND =>
            {
                Err(MethodRefused::UnknownCustomer)
            }
            Reply::Answer { status, body } => Err(MethodRefused::Unreachable(
                error_of(&body)
                    .message
                    .unwrap_or_else(|| format!("Stripe answered {status}")),
            )),
            Reply::Indeterminate(m) => Err(MethodRefused::Unreachable(m)),
        }
    }

    /// `min(base * 2^(n-1), max)` scaled by jitter in [0.5, 1]; a `Retry-After` hint replaces
    /// the computed delay, within the same cap.
    fn backoff(&self, retry: u32, hint: Option<Duration>) -> Duration {
        let exp = self
            .retry_base
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
        let jittered = exp
            .min(self.retry_max)
            .mul_f64(rand::random_range(0.5..=1.0));
        hint.map_or(jittered, |h| h.min(self.retry_max))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Reply {
        let mut retry = 0;
        loop {
            let mut rb = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(self.key.expose())
                .header("Stripe-Version", &self.version);
            rb = if method == Method::POST {
                rb.form(params)
            } else {
                rb.query(params)
            };
            if let Some(key) = idempotency_key {
                rb = rb.header("Idempotency-Key", key);
            }
            let slot = self.in_flight.acquire().await;
            self.pace.until_ready().await;
            let (again, hint, reply) = match rb.send().await {
                Err(e) => (true, None, Reply::Indeterminate(describe(&e))),
                Ok(resp) => {
                    let status = resp.status();
                    let header = |name: &str| {
                        resp.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let should = header("stripe-should-retry").map(|v| v == "true");
                    let hint = header("retry-after")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    match resp.json::<serde_json::Value>().await {
                        Err(e) => (true, None, Reply::Indeterminate(describe(&e))),
                        Ok(body) => {
                            let transient = status == StatusCode::CONFLICT
                                || status == StatusCode::TOO_MANY_REQUESTS
                                || status.is_server_error();
                            (
                                should.unwrap_or(transient),
                                hint,
                                Reply::Answer { status, body },
                            )
                        }
                    }
                }
            };
            // The slot is free again once the answer is read, before any backoff.
            drop(slot);
            if !again || retry >= self.retries {
                return reply;
            }
            retry += 1;
            tracing::debug!(path, retry, "retrying a Stripe request with the same key");
            tokio::time::sleep(self.backoff(retry, hint)).await;
        }
    }

    /// The create-and-confirm form, or `None` without a Stripe customer or a representable
    /// amount.
    fn create_params(req: &ChargeRequest) -> Option<Vec<(&'static str, String)>> {
        let amount = wire::to_stripe(req.amount, req.currency).ok()?;
        let customer = req.provider_customer.as_deref()?;
        Some(vec![
            ("amount", amount.to_string()),
            ("currency", req.currency.code().to_ascii_lowercase()),
            ("customer", customer.to_owned()),
            ("payment_method", req.token.clone()),
            ("payment_method_types[]", "card".into()),
            ("confirm", "true".into()),
            ("off_session", "true".into()),
            ("description", format!("Invoice {}", req.invoice)),
            ("metadata[tenant_id]", req.tenant.to_string()),
            ("metadata[invoice_id]", req.invoice.to_string()),
            ("metadata[attempt_key]", req.idempotency_key.clone()),
        ])
    }

    /// Stripe saved a 500 under the key, so replaying it teaches nothing: look for the
    /// PaymentIntent among the customer's (a list read, consistent, unlike search). `None` when
    /// the list cannot be read; a decline when it was read and holds no such intent (nothing
    /// was charged, so the plan may try again with a new key).
    async fn find_by_key(&self, req: &ChargeRequest) -> Option<ChargeResult> {
        let customer = req.provider_customer.clone()?;
        let mut after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut params = vec![("customer", customer.clone()), ("limit", "100".into())];
            if let Some(a) = &after {
                params.push(("starting_after", a.clone()));
            }
            let Reply::Answer { status, body } = self
                .send(Method::GET, "/v1/payment_intents", &params, None)
                .await
            else {
                return None;
            };
            if !status.is_success() {
                return None;
            }
            let list: wire::List<wire::PaymentIntent> = serde_json::from_value(body).ok()?;
            if let Some(pi) = list
                .data
                .iter()
                .find(|pi| pi.metadata.get(wire::META_ATTEMPT) == Some(&req.idempotency_key))
            {
                return Some(from_intent(pi));
            }
            if !list.has_more {
                return Some(ChargeResult::Declined {
                    code: "provider_error".into(),
                    kind: DeclineKind::Soft,
                    message: "Stripe answered 500 and holds no PaymentIntent for this attempt"
                        .into(),
                    provider_ref: None,
                });
            }
            after = list.data.last().map(|pi| pi.id.clone());
        }
        None
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer from Stripe in time (the request may have been processed)".into()
    } else if e.is_connect() {
        "could not connect to Stripe".into()
    } else {
        format!("connection to Stripe failed: {e}")
    }
}

/// A decline from Stripe's error object.
fn declined(err: &wire::ApiError, provider_ref: Option<String>) -> ChargeResult {
    let code = err
        .decline_code
        .clone()
        .or_else(|| err.code.clone())
        .unwrap_or_else(|| "card_declined".into());
    let message = err
        .message
        .clone()
        .unwrap_or_else(|| "The card was declined.".into());
    let kind = match wire::classify(
        err.code.as_deref(),
        err.decline_code.as_deref(),
        err.advice_code.as_deref(),
    ) {
        Decline::Soft => DeclineKind::Soft,
        Decline::Hard => DeclineKind::Hard,
    };
    ChargeResult::Declined {
        code,
        kind,
        message,
        provider_ref,
    }
}

/// What a PaymentIntent's status means for the attempt: [`wire::PaymentIntent::charge_status`]
/// decides, the failure's details say which decline it is.
fn from_intent(pi: &wire::PaymentIntent) -> ChargeResult {
    let provider_ref = Some(pi.id.clone());
    match pi.charge_status() {
        super::ChargeStatus::Succeeded => ChargeResult::Succeeded {
            provider_ref: pi.id.clone(),
            received: super::Received::of(&pi.to_charge()),
        },
        super::ChargeStatus::Processing => ChargeResult::Unknown {
            message: format!("the payment is {}", pi.status),
            provider_ref,
        },
        super::ChargeStatus::Failed => failure_of(pi, provider_ref),
    }
}

/// The decline a failed PaymentIntent stands for.
fn failure_of(pi: &wire::PaymentIntent, provider_ref: Option<String>) -> ChargeResult {
    match pi.status.as_str() {
        "requires_payment_method" => declined(
            pi.last_payment_error.as_ref().unwrap_or(&wire::ApiError {
                code: Some("card_declined".into()),
                ..wire::ApiError::default()
            }),
            provider_ref,
        ),
        "requires_action" | "requires_confirmation" => ChargeResult::Declined {
            code: "authentication_required".into(),
            kind: DeclineKind::Hard,
            message: "The customer must authenticate this payment.".into(),
            provider_ref,
        },
        _ => ChargeResult::Declined {
            code: "payment_intent_canceled".into(),
            kind: DeclineKind::Hard,
            message: "The PaymentIntent was canceled.".into(),
            provider_ref,
        },
    }
}

fn error_of(body: &serde_json::Value) -> wire::ApiError {
    serde_json::from_value::<wire::ErrorBody>(body.clone())
        .map(|b| b.error)
        .unwrap_or_default()
}

/// A reply to a create or retrieve of a PaymentIntent.
fn charge_result(reply: Reply) -> ChargeResult {
    let (status, body) = match reply {
        Reply::Indeterminate(message) => {
            return ChargeResult::Unknown {
                message,
                provider_ref: None,
            };
        }
        Reply::Answer { status, body } => (status, body),
    };
    if status.is_success() {
        return match serde_json::from_value::<wire::PaymentIntent>(body) {
            Ok(pi) => from_intent(&pi),
            Err(e) => ChargeResult::Unknown {
                message: format!("unexpected reply from Stripe: {e}"),
                provider_ref: None,
            },
        };
    }
    let err = error_of(&body);
    let message = err
        .message
        .clone()
        .unwrap_or_else(|| format!("Stripe answered {status}"));
    match status.as_u16() {
        402 => {
            let pi = err.payment_intent.as_ref().map(|p| p.id.clone());
            declined(&err, pi)
        }
        // 401/403: the installation's key or account is wrong. Nothing was charged and Stripe
        // saved nothing under the key, so the attempt waits (unknown, asked again each pass)
        // instead of using up the customer's dunning plan.
        401 | 403 | 409 | 429 | 500.. => ChargeResult::Unknown {
            message,
            provider_ref: None,
        },
        _ => ChargeResult::Declined {
            code: err
                .code
                .or(err.kind)
                .unwrap_or_else(|| "invalid_request".into()),
            kind: DeclineKind::Hard,
            message,
            provider_ref: None,
        },
    }
}

#[async_trait::async_trait]
impl PaymentProvider for Stripe {
    async fn charge(&self, req: &ChargeRequest) -> ChargeResult {
        if let Err(message) = wire::to_stripe(req.amount, req.currency) {
            return ChargeResult::hard("amount_not_representable", &message);
        }
        let Some(params) = Self::create_params(req) else {
            return ChargeResult::hard(
                "no_provider_customer",
                "the payment method names no Stripe customer",
            );
        };
        charge_result(
            self.send(
                Method::POST,
                "/v1/payment_intents",
                &params,
                Some(&req.idempotency_key),
            )
            .await,
        )
    }

    /// With the PaymentIntent's id, read it; without one (no answer ever came), send the same
    /// request with the same key: Stripe replays what it did, or answers 409 while the first
    /// request still runs. Keys live at least 24 hours; unknown attempts are resolved within
    /// minutes by the scheduler, and `recur reconcile` covers longer outages.
    async fn retrieve(&self, req: &ChargeRequest) -> ChargeResult {
        match &req.provider_ref {
            Some(id) => charge_result(
                self.send(Method::GET, &format!("/v1/payment_intents/{id}"), &[], None)
                    .await,
            ),
            // Stripe keeps keys at least 24 hours; past that a re-send could charge anew.
            None if req.age >= KEY_LIFETIME => {
                self.find_by_key(req)
                    .await
                    .unwrap_or_else(|| ChargeResult::Unknown {
                        message: "Stripe's list of PaymentIntents could not be read".into(),
                        provider_ref: None,
                    })
            }
            None => {
                let Some(params) = Self::create_params(req) else {
                    return self.charge(req).await;
                };
                let replay = self
                    .send(
                        Method::POST,
                        "/v1/payment_intents",
                        &params,
                        Some(&req.idempotency_key),
                    )
                    .await;
                // A saved 500 replays forever; an idempotency error means the key no longer
                // matches what Stripe holds. Either way the list decides.
                let look_up = match &replay {
                    Reply::Answer { status, body } => {
                        status.is_server_error()
                            || error_of(body).kind.as_deref() == Some("idempotency_error")
                    }
                    Reply::Indeterminate(_) => false,
                };
                let result = charge_result(replay);
                if look_up {
                    self.find_by_key(req).await.unwrap_or(result)
                } else {
                    result
                }
            }
        }
    }

    async fn refund(&self, req: &RefundRequest) -> RefundResult {
        let amount = match wire::to_stripe(req.amount, req.currency) {
            Ok(a) => a,
            Err(message) => {
                return RefundResult::Failed {
                    code: "amount_not_representable".into(),
                    message,
                };
            }
        };
        let reason = match req.reason.as_str() {
            "duplicate" | "fraudulent" => req.reason.clone(),
            _ => "requested_by_customer".into(),
        };
        let params = [
            ("payment_intent", req.provider_ref.clone()),
            ("amount", amount.to_string()),
            ("reason", reason),
            ("metadata[credit_note]", req.credit_note.clone()),
            ("metadata[tenant_id]", req.tenant.to_string()),
        ];
        let reply = self
            .send(
                Method::POST,
                "/v1/refunds",
                &params,
                Some(&req.idempotency_key),
            )
            .await;
        let (status, body) = match reply {
            Reply::Indeterminate(message) => return RefundResult::Unknown { message },
            Reply::Answer { status, body } => (status, body),
        };
        if status.is_success() {
            return match serde_json::from_value::<wire::Refund>(body) {
                Ok(r) => r.result(),
                Err(e) => RefundResult::Unknown {
                    message: format!("unexpected reply from Stripe: {e}"),
                },
            };
        }
        let err = error_of(&body);
        let message = err
            .message
            .clone()
            .unwrap_or_else(|| format!("Stripe answered {status}"));
        // An idempotency error means Stripe holds something else under the key: whether that
        // refunded is not known, so it is not a failure that gives the credit back.
        if matches!(status.as_u16(), 401 | 403 | 409 | 429 | 500..)
            || err.kind.as_deref() == Some("idempotency_error")
        {
            RefundResult::Unknown { message }
        } else {
            RefundResult::Failed {
                code: err.code.unwrap_or_else(|| "refund_failed".into()),
                message,
            }
        }
    }

    async fn refund_status(&self, refund_ref: &str) -> RefundResult {
        match self
            .send(Method::GET, &format!("/v1/refunds/{refund_ref}"), &[], None)
            .await
        {
            Reply::Answer { status, body } if status.is_success() => {
                match serde_json::from_value::<wire::Refund>(body) {
                    Ok(r) => r.result(),
                    Err(e) => RefundResult::Unknown {
                        message: format!("unexpected reply from Stripe: {e}"),
                    },
                }
            }
            Reply::Answer { status, body } => RefundResult::Unknown {
                message: error_of(&body)
                    .message
                    .unwrap_or_else(|| format!("Stripe answered {status}")),
            },
            Reply::Indeterminate(message) => RefundResult::Unknown { message },
        }
    }

    async fn list_charges(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        starting_after: Option<&str>,
    ) -> Result<ChargePage, ProviderError> {
        let mut params = vec![
            ("created[gte]", from.timestamp().to_string()),
            ("created[lte]", to.timestamp().to_string()),
            ("limit", "100".to_owned()),
            ("expand[]", "data.latest_charge".to_owned()),
        ];
        if let Some(after) = starting_after {
            params.push(("starting_after", after.to_owned()));
        }
        match self
            .send(Method::GET, "/v1/payment_intents", &params, None)
            .await
        {
            Reply::Indeterminate(m) => Err(ProviderError(m)),
            Reply::Answer { status, body } if status.is_success() => {
                let list: wire::List<wire::PaymentIntent> = serde_json::from_value(body)
                    .map_err(|e| ProviderError(format!("unexpected list from Stripe: {e}")))?;
                let next = if list.has_more {
                    list.data.last().map(|p| p.id.clone())
                } else {
                    None
                };
                Ok(ChargePage {
                    charges: list
                        .data
                        .iter()
                        .map(wire::PaymentIntent::to_charge)
                        .collect(),
                    next,
                })
            }
            Reply::Answer { status, body } => Err(ProviderError(format!(
                "Stripe answered {status}: {}",
                error_of(&body).message.unwrap_or_default()
            ))),
        }
    }
}

/// A verified event body as recur's change.
fn parse_event(body: &[u8]) -> Result<ProviderEvent, WebhookError> {
    let bad = |e: serde_json::Error| WebhookError::BadPayload(e.to_string());
    let event: wire::Event = serde_json::from_slice(body).map_err(bad)?;
    // Stored as they come: an id or type no database would keep (PostgreSQL refuses NUL) is a
    // bad payload, answered 400, never a 500 that asks for redelivery.
    let printable = |s: &str| !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control);
    if !printable(&event.id) || !printable(&event.kind) {
        return Err(WebhookError::BadPayload(
            "the event's id and type must be 1 to 255 printable characters".into(),
        ));
    }
    let change = match event.kind.as_str() {
        "payment_intent.succeeded" => {
            let pi: wire::PaymentIntent = serde_json::from_value(event.data.object).map_err(bad)?;
            EventChange::Succeeded(pi.to_charge())
        }
        "payment_intent.payment_failed" => {
            let pi: wire::PaymentIntent = serde_json::from_value(event.data.object).map_err(bad)?;
            match from_intent(&pi) {
                ChargeResult::Declined {
                    code,
                    kind,
                    message,
                    ..
                } => EventChange::Failed {
                    charge: pi.to_charge(),
                    code,
                    kind,
                    message,
                },
                _ => EventChange::Ignored,
            }
        }
        "refund.updated" | "refund.failed" | "charge.refund.updated" => {
            let r: wire::Refund = serde_json::from_value(event.data.object).map_err(bad)?;
            EventChange::RefundUpdated {
                tenant: r.metadata.get(wire::META_TENANT).cloned(),
                credit_note: r.metadata.get(wire::META_CREDIT_NOTE).cloned(),
                result: r.result(),
            }
        }
        "charge.refunded" => {
            let ch: wire::Charge = serde_json::from_value(event.data.object).map_err(bad)?;
            EventChange::Refunded(ch.to_charge())
        }
        _ => EventChange::Ignored,
    };
    Ok(ProviderEvent {
        id: event.id,
        kind: event.kind,
        change,
    })
}
