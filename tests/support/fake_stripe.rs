//! A fake Stripe over real HTTP (wiremock) that behaves like Stripe where recur depends on it:
//! PaymentIntents created and confirmed in one call, declines per test payment method
//! (STRIPE.md §8), idempotency keys saved with their status and body (402 and 500 included;
//! not 429 or 409) and replayed with `Idempotent-Replayed: true`, the same key with other
//! parameters refused with `idempotency_error`, refunds, and listing. Its ledger records every
//! charge that really happened, so tests can prove there was never a second one.
//!
//! Faults can be injected per create request: a 500 before or after charging, a 429 with
//! `Retry-After`, a connection cut before or after charging, a reply slower than the client's
//! timeout (after charging), and 409 "in use".

#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 from the edge, nothing done, nothing saved (a retry goes through).
    ServerErrorUnsaved,
    /// The charge happened, then 500; Stripe saves the 500 under the key and replays it.
    ServerErrorAfterCharge,
    /// 429 with `Retry-After: 1`, nothing done, nothing saved.
    RateLimited,
    /// The connection is cut before the request is processed.
    CutBefore,
    /// The charge happened and the reply was saved, but the connection is cut.
    CutAfterCharge,
    /// The charge happened; the reply comes later than the client waits.
    SlowAfterCharge,
    /// 409: another request with this key is in flight; nothing done.
    InUse,
    /// No answer for 20 seconds, nothing done: a provider that is down.
    Hang,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerCharge {
    pub payment_intent: String,
    pub invoice: String,
    pub key: String,
    pub amount: i64,
    pub refunded: i64,
}

type FaultPlan = Box<dyn FnMut(u64, &str) -> Option<Fault> + Send>;

#[derive(Default)]
pub struct State {
    /// PaymentIntents by id.
    pub intents: BTreeMap<String, Value>,
    /// Idempotency key → (request fingerprint, status, body).
    saved: HashMap<String, (String, u16, Value)>,
    pub ledger: Vec<LedgerCharge>,
    /// Refunds by id, as `GET /v1/refunds/{id}` returns them.
    pub refunds: BTreeMap<String, Value>,
    pub creates: u64,
    pub faults_injected: HashMap<&'static str, u64>,
    faults: Option<FaultPlan>,
    next_id: u64,
    clock: i64,
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{:08}", self.next_id)
    }

    /// Charges per invoice in the ledger.
    pub fn charges_per_invoice(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for c in &self.ledger {
            *m.entry(c.invoice.clone()).or_insert(0) += 1;
        }
        m
    }
}

pub struct FakeStripe {
    pub server: MockServer,
    pub state: Arc<Mutex<State>>,
    /// How long a `SlowAfterCharge` reply takes (set the client's timeout below it).
    pub slow: Duration,
}

pub const SECRET_KEY: &str = "sk_test_fake";
/// The key a live-mode tenant's installation charges with; the fake answers both.
pub const LIVE_SECRET_KEY: &str = "sk_live_fake";

impl FakeStripe {
    pub async fn start() -> FakeStripe {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            clock: chrono::Utc::now().timestamp(),
            ..State::default()
        }));
        let slow = Duration::from_millis(800);
        let r = Responder {
            state: state.clone(),
            slow,
        };
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents"))
            .respond_with(Create(r.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/payment_intents/pi_[0-9]+$"))
            .respond_with(Retrieve(r.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/payment_intents"))
            .respond_with(ListIntents(r.clone()))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/refunds"))
            .respond_with(CreateRefund(r.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/refunds/re_[0-9]+$"))
            .respond_with(RetrieveRefund(r))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/account"))
            .respond_with(Account)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/(payment_methods|customers)/[^/]+$"))
            .respond_with(Lookup)
            .mount(&server)
            .await;
        FakeStripe {
            server,
            state,
            slow,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Decides a fault for each create request: `(n, idempotency key) -> Option<Fault>`.
    pub fn set_faults(&self, plan: impl FnMut(u64, &str) -> Option<Fault> + Send + 'static) {
        self.state.lock().unwrap().faults = Some(Box::new(plan));
    }

    pub fn ledger(&self) -> Vec<LedgerCharge> {
        self.state.lock().unwrap().ledger.clone()
    }

    /// A PaymentIntent as Stripe would send it in an event.
    pub fn intent(&self, id: &str) -> Value {
        self.state.lock().unwrap().intents[id].clone()
    }

    /// Settles a pending refund at "Stripe" without sending its webhook.
    pub fn settle_refund(&self, id: &str, status: &str) {
        self.state
            .lock()
            .unwrap()
            .refunds
            .get_mut(id)
            .expect("a refund")["status"] = json!(status);
    }

    /// Refunds part of a charge as if from the Dashboard; returns the Charge object.
    pub fn refund_in_dashboard(&self, pi: &str, amount: i64) -> Value {
        let mut s = self.state.lock().unwrap();
        let c = s
            .ledger
            .iter_mut()
            .find(|c| c.payment_intent == pi)
            .expect("a charge");
        c.refunded += amount;
        let refunded = c.refunded;
        let intent = s.intents.get_mut(pi).unwrap();
        intent["latest_charge"]["amount_refunded"] = json!(refunded);
        intent["latest_charge"]["refunded"] = json!(refunded == intent["amount"].as_i64().unwrap());
        intent["latest_charge"].clone()
    }
}

#[derive(Clone)]
struct Responder {
    state: Arc<Mutex<State>>,
    slow: Duration,
}

fn form(req: &Request) -> BTreeMap<String, String> {
    form_urlencoded::parse(&req.body).into_owned().collect()
}

fn query(req: &Request) -> BTreeMap<String, String> {
    req.url.query_pairs().into_owned().collect()
}

fn reply(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

fn error(kind: &str, code: Option<&str>, message: &str) -> Value {
    json!({ "error": { "type": kind, "code": code, "message": message } })
}

/// A reply whose connection dies mid-body: the client gets no usable answer.
fn cut() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-length", "4096")
        .set_body_raw(b"{\"id\":".to_vec(), "application/json")
}

fn authorized(req: &Request) -> Option<ResponseTemplate> {
    let ok = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| k == SECRET_KEY || k == LIVE_SECRET_KEY);
    (!ok).then(|| {
        reply(
            401,
            &error("invalid_request_error", None, "Invalid API Key provided"),
        )
    })
}

/// (code, decline_code, advice_code, message) for a declining test method.
fn decline_of(pm: &str) -> Option<(&'static str, &'static str, Option<&'static str>)> {
    let pm = pm.replace("pm_card_visa_", "pm_card_");
    Some(match pm.as_str() {
        "pm_card_chargeDeclined" => ("card_declined", "generic_decline", Some("try_again_later")),
        "pm_card_chargeDeclinedInsufficientFunds" => (
            "card_declined",
            "insufficient_funds",
            Some("try_again_later"),
        ),
        "pm_card_chargeDeclinedLostCard" => {
            ("card_declined", "lost_card", Some("do_not_try_again"))
        }
        "pm_card_chargeDeclinedStolenCard" => {
            ("card_declined", "stolen_card", Some("do_not_try_again"))
        }
        "pm_card_chargeDeclinedExpiredCard" => {
            ("expired_card", "expired_card", Some("confirm_card_data"))
        }
        "pm_card_chargeDeclinedIncorrectCvc" => ("incorrect_cvc", "incorrect_cvc", None),
        "pm_card_chargeDeclinedProcessingError" => (
            "processing_error",
            "processing_error",
            Some("try_again_later"),
        ),
        "pm_card_chargeDeclinedFraudulent" => ("card_declined", "fraudulent", None),
        "pm_card_authenticationRequired" => {
            ("authentication_required", "authentication_required", None)
        }
        _ => return None,
    })
}

fn idempotency_key(req: &Request) -> Option<String> {
    req.headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// What Stripe saved under the key: replayed for the same parameters, refused for others.
fn replay(s: &State, key: Option<&str>, fingerprint: &str) -> Option<ResponseTemplate> {
    let (fp, status, body) = s.saved.get(key?)?;
    if fp != fingerprint {
        return Some(reply(
            400,
            &error(
                "idempotency_error",
                None,
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            ),
        ));
    }
    Some(reply(*status, body).insert_header("Idempotent-Replayed", "true"))
}

/// About a quarter of create requests faulted, every kind alike, deterministically (a
/// xorshift over the request number).
pub fn quarter_faulted() -> impl FnMut(u64, &str) -> Option<Fault> + Send {
    const KINDS: [Fault; 7] = [
        Fault::ServerErrorUnsaved,
        Fault::ServerErrorAfterCharge,
        Fault::RateLimited,
        Fault::CutBefore,
        Fault::CutAfterCharge,
        Fault::SlowAfterCharge,
        Fault::InUse,
    ];
    |n, _| {
        let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        x ^= x >> 29;
        x ^= x << 17;
        (x % 100 < 25).then(|| KINDS[(x / 100) as usize % KINDS.len()])
    }
}

/// The reliability suite's mix, per 100 create requests: 10 answer after the client's timeout
/// (charged), 5 are cut before anything happens, 3 answer 500 before and 2 after charging
/// (saved under the key), 2 answer 409 (key in use), 2 answer 429, 1 is reset after charging.
/// Deterministic over the request number.
pub fn reliability_mix() -> impl FnMut(u64, &str) -> Option<Fault> + Send {
    |n, _| {
        let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        x ^= x >> 29;
        x ^= x << 17;
        match x % 100 {
            0..10 => Some(Fault::SlowAfterCharge),
            10..15 => Some(Fault::CutBefore),
            15..18 => Some(Fault::ServerErrorUnsaved),
            18..20 => Some(Fault::ServerErrorAfterCharge),
            20..22 => Some(Fault::InUse),
            22..24 => Some(Fault::RateLimited),
            24 => Some(Fault::CutAfterCharge),
            _ => None,
        }
    }
}

struct Create(Responder);

impl Respond for Create {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(denied) = authorized(req) {
            return denied;
        }
        let params = form(req);
        let fingerprint = format!("/v1/payment_intents {params:?}");
        let key = idempotency_key(req);
        let mut s = self.0.state.lock().unwrap();
        if let Some(replayed) = replay(&s, key.as_deref(), &fingerprint) {
            return replayed;
        }
        s.creates += 1;
        let n = s.creates;
        let fault = match (&mut s.faults, &key) {
            (Some(plan), Some(k)) => plan(n, k),
            _ => None,
        };
        if let Some(f) = fault {
            *s.faults_injected.entry(fault_name(f)).or_insert(0) += 1;
        }
        match fault {
            Some(Fault::ServerErrorUnsaved) => {
                return reply(500, &error("api_error", None, "An unknown error occurred"));
            }
            Some(Fault::RateLimited) => {
                return reply(
                    429,
                    &error(
                        "invalid_request_error",
                        Some("rate_limit"),
                        "Too many requests",
                    ),
                )
                .insert_header("Retry-After", "1");
            }
            Some(Fault::CutBefore) => return cut(),
            Some(Fault::Hang) => {
                return ResponseTemplate::new(503).set_delay(Duration::from_secs(20));
            }
            Some(Fault::InUse) => {
                return reply(
                    409,
                    &error(
                        "idempotency_error",
                        Some("idempotency_key_in_use"),
                        "There is currently another in-progress request using this Idempotent Key",
                    ),
                );
            }
            _ => {}
        }
        let (status, body) = process(&mut s, &params, key.as_deref().unwrap_or(""));
        let saved = match fault {
            Some(Fault::ServerErrorAfterCharge) => {
                (500, error("api_error", None, "An unknown error occurred"))
            }
            _ => (status, body.clone()),
        };
        if let Some(k) = key {
            s.saved.insert(k, (fingerprint, saved.0, saved.1.clone()));
        }
        match fault {
            Some(Fault::ServerErrorAfterCharge) => reply(saved.0, &saved.1),
            Some(Fault::CutAfterCharge) => cut(),
            Some(Fault::SlowAfterCharge) => reply(status, &body).set_delay(self.0.slow),
            _ => reply(status, &body),
        }
    }
}

fn fault_name(f: Fault) -> &'static str {
    match f {
        Fault::ServerErrorUnsaved => "500 before charging",
        Fault::ServerErrorAfterCharge => "500 after charging (saved)",
        Fault::RateLimited => "429 Retry-After",
        Fault::CutBefore => "connection cut before",
        Fault::CutAfterCharge => "connection cut after charging",
        Fault::SlowAfterCharge => "timeout after charging",
        Fault::InUse => "409 key in use",
        Fault::Hang => "no answer",
    }
}

/// Creates and confirms a PaymentIntent the way Stripe does for an off-session card.
fn process(s: &mut State, p: &BTreeMap<String, String>, key: &str) -> (u16, Value) {
    for required in ["amount", "currency", "customer", "payment_method"] {
        if !p.contains_key(required) {
            return (
                400,
                json!({ "error": { "type": "invalid_request_error", "code": "parameter_missing", "param": required,
                    "message": format!("Missing required param: {required}.") } }),
            );
        }
    }
    if p.get("confirm").map(String::as_str) != Some("true")
        || p.get("payment_method_types[]").map(String::as_str) != Some("card")
    {
        return (
            400,
            error(
                "invalid_request_error",
                None,
                "A `return_url` must be specified because this Payment Intent is configured to automatically accept the payment methods enabled in the Dashboard",
            ),
        );
    }
    let amount: i64 = p["amount"].parse().unwrap_or(-1);
    let currency = p["currency"].clone();
    if currency != currency.to_lowercase() {
        return (
            400,
            error(
                "invalid_request_error",
                Some("invalid_currency"),
                "Invalid currency",
            ),
        );
    }
    if amount < 50 && matches!(currency.as_str(), "usd" | "eur") {
        return (
            400,
            error(
                "invalid_request_error",
                Some("amount_too_small"),
                "Amount must be at least 50 cents",
            ),
        );
    }
    let metadata: BTreeMap<String, String> = p
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), v.clone()))
        })
        .collect();
    let id = s.id("pi");
    s.clock += 1;
    let mut pi = json!({
        "id": id, "object": "payment_intent", "amount": amount, "amount_received": 0,
        "currency": currency, "customer": p["customer"], "payment_method": p["payment_method"],
        "metadata": metadata, "created": s.clock, "latest_charge": null, "last_payment_error": null,
        "status": "requires_payment_method",
    });
    let pm = p["payment_method"].as_str();
    if pm == "pm_card_processing" {
        pi["status"] = json!("processing");
        s.intents.insert(id, pi.clone());
        return (200, pi);
    }
    if let Some((code, decline, advice)) = decline_of(pm) {
        let err = json!({ "type": "card_error", "code": code, "decline_code": decline,
            "advice_code": advice, "message": "Your card was declined." });
        pi["last_payment_error"] = err.clone();
        s.intents.insert(id, pi.clone());
        let mut body = json!({ "error": err });
        body["error"]["payment_intent"] = pi;
        return (402, body);
    }
    let charge = s.id("ch");
    pi["status"] = json!("succeeded");
    // A misbehaving provider (`pm_card_wrong_amount`): says it took one unit less.
    let taken = if pm == "pm_card_wrong_amount" {
        amount - 1
    } else {
        amount
    };
    pi["amount_received"] = json!(taken);
    pi["latest_charge"] = json!({ "id": charge, "object": "charge", "payment_intent": id,
        "amount": amount, "amount_refunded": 0, "refunded": false, "currency": currency,
        "metadata": metadata, "created": s.clock });
    s.ledger.push(LedgerCharge {
        payment_intent: id.clone(),
        invoice: metadata.get("invoice_id").cloned().unwrap_or_default(),
        key: key.to_owned(),
        amount,
        refunded: 0,
    });
    s.intents.insert(id, pi.clone());
    let mut out = pi;
    out["latest_charge"] = json!(charge);
    (200, out)
}

struct Retrieve(Responder);

impl Respond for Retrieve {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(denied) = authorized(req) {
            return denied;
        }
        let id = req.url.path().rsplit('/').next().unwrap_or_default();
        match self.0.state.lock().unwrap().intents.get(id) {
            Some(pi) => {
                let mut pi = pi.clone();
                if let Some(ch) = pi["latest_charge"]["id"].as_str() {
                    pi["latest_charge"] = json!(ch);
                }
                reply(200, &pi)
            }
            None => reply(
                404,
                &error(
                    "invalid_request_error",
                    Some("resource_missing"),
                    "No such payment_intent",
                ),
            ),
        }
    }
}

struct ListIntents(Responder);

impl Respond for ListIntents {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(denied) = authorized(req) {
            return denied;
        }
        let q = query(req);
        let num = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok());
        let limit = num("limit").unwrap_or(10).clamp(1, 100) as usize;
        let s = self.0.state.lock().unwrap();
        // Newest first, like Stripe; ids grow with creation.
        let mut all: Vec<&Value> = s
            .intents
            .values()
            .rev()
            .filter(|pi| q.get("customer").is_none_or(|c| pi["customer"] == json!(c)))
            .filter(|pi| num("created[gte]").is_none_or(|t| pi["created"].as_i64() >= Some(t)))
            .filter(|pi| num("created[lte]").is_none_or(|t| pi["created"].as_i64() <= Some(t)))
            .collect();
        if let Some(after) = q.get("starting_after") {
            let pos = all.iter().position(|pi| pi["id"] == json!(after));
            all = all.split_off(pos.map_or(all.len(), |p| p + 1));
        }
        let has_more = all.len() > limit;
        all.truncate(limit);
        reply(
            200,
            &json!({ "object": "list", "url": "/v1/payment_intents", "has_more": has_more, "data": all }),
        )
    }
}

struct CreateRefund(Responder);

impl Respond for CreateRefund {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(denied) = authorized(req) {
            return denied;
        }
        let p = form(req);
        let fingerprint = format!("/v1/refunds {p:?}");
        let key = idempotency_key(req);
        let mut s = self.0.state.lock().unwrap();
        if let Some(replayed) = replay(&s, key.as_deref(), &fingerprint) {
            return replayed;
        }
        let pi = p.get("payment_intent").cloned().unwrap_or_default();
        let amount: i64 = p.get("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
        let refund_id = s.id("re");
        let (status, body) = match s.ledger.iter_mut().find(|c| c.payment_intent == pi) {
            None => (
                404,
                error(
                    "invalid_request_error",
                    Some("resource_missing"),
                    "No such payment_intent",
                ),
            ),
            Some(c) if c.refunded >= c.amount => (
                400,
                error(
                    "invalid_request_error",
                    Some("charge_already_refunded"),
                    "Charge has already been refunded.",
                ),
            ),
            Some(c) if amount <= 0 || c.refunded + amount > c.amount => (
                400,
                error(
                    "invalid_request_error",
                    Some("amount_too_large"),
                    "Refund amount is greater than unrefunded amount on charge",
                ),
            ),
            Some(c) => {
                c.refunded += amount;
                // Amounts ending in 7 come back pending, like a bank transfer refund.
                let status = if amount % 10 == 7 {
                    "pending"
                } else {
                    "succeeded"
                };
                (
                    200,
                    json!({ "id": refund_id, "object": "refund", "amount": amount, "payment_intent": pi, "status": status,
                            "metadata": { "credit_note": p.get("metadata[credit_note]"), "tenant_id": p.get("metadata[tenant_id]") } }),
                )
            }
        };
        if status == 200 {
            let refunded = s
                .ledger
                .iter()
                .find(|c| c.payment_intent == pi)
                .map_or(0, |c| c.refunded);
            if let Some(intent) = s.intents.get_mut(&pi) {
                intent["latest_charge"]["amount_refunded"] = json!(refunded);
            }
        }
        if status == 200 {
            s.refunds.insert(refund_id, body.clone());
        }
        if let Some(k) = key {
            s.saved.insert(k, (fingerprint, status, body.clone()));
        }
        reply(status, &body)
    }
}

/// `GET /v1/account`: the account of the key (`acct_fake`), or 401 for an unknown key.
struct Account;

impl Respond for Account {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        authorized(req)
            .unwrap_or_else(|| reply(200, &json!({"id": "acct_fake", "object": "account"})))
    }
}

/// `GET /v1/payment_methods/{id}` and `GET /v1/customers/{id}` of the account: Stripe's
/// test methods `pm_card_*` (attached to no customer, as Stripe answers for them), a method
/// `pm_attached_*` of customer `cus_other`, and customers `cus_fake` and `cus_other`; anything
/// else is 404.
struct Lookup;

impl Respond for Lookup {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(denied) = authorized(req) {
            return denied;
        }
        let id = req.url.path().rsplit('/').next().unwrap_or_default();
        let found = if req.url.path().starts_with("/v1/payment_methods/") {
            if id.starts_with("pm_card_") {
                Some(json!({"id": id, "object": "payment_method", "customer": null}))
            } else if id.starts_with("pm_attached_") {
                Some(json!({"id": id, "object": "payment_method", "customer": "cus_other"}))
            } else {
                None
            }
        } else {
            ["cus_fake", "cus_other"]
                .contains(&id)
                .then(|| json!({"id": id, "object": "customer"}))
        };
        found.map_or_else(
            || {
                reply(
                    404,
                    &error(
                        "invalid_request_error",
                        Some("resource_missing"),
                        &format!("No such object: '{id}'"),
                    ),
                )
            },
            |v| reply(200, &v),
        )
    }
}

struct RetrieveRefund(Responder);

impl Respond for RetrieveRefund {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(denied) = authorized(req) {
            return denied;
        }
        let id = req.url.path().rsplit('/').next().unwrap_or_default();
        match self.0.state.lock().unwrap().refunds.get(id) {
            Some(r) => reply(200, r),
            None => reply(
                404,
                &error(
                    "invalid_request_error",
                    Some("resource_missing"),
                    "No such refund",
                ),
            ),
        }
    }
}
