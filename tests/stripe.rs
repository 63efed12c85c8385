//! The Stripe client over real HTTP against the fake Stripe: success, each decline class, 5xx,
//! 429 with Retry-After, connections cut before and after charging, timeouts after charging,
//! idempotency replays and conflicts, refunds, listing, and the fault matrix.

#[path = "support/fake_stripe.rs"]
mod fake_stripe;

use fake_stripe::{FakeStripe, Fault, SECRET_KEY};
use recur::config::{Config, Overrides, Secret};
use recur::domain::currency::Currency;
use recur::domain::ids::{InvoiceId, TenantId};
use recur::domain::payment::DeclineKind;
use recur::payments::stripe::Stripe;
use recur::payments::{ChargeRequest, ChargeResult, PaymentProvider, RefundRequest, RefundResult};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn client(fake: &FakeStripe, retries: u32) -> Stripe {
    let mut c = Config::load(None, &Overrides::default()).unwrap().stripe;
    // Unpaced: the fake has no rate limit (pacing has its own test below).
    c.ops_per_second_test = 10_000;
    c.api_base = fake.uri();
    c.secret_key = Some(Secret::new(SECRET_KEY));
    c.timeout_ms = 300;
    c.max_network_retries = retries;
    c.retry_base_ms = 5;
    c.retry_max_ms = 50;
    Stripe::from_config(&c).unwrap().unwrap()
}

fn request(pm: &str, amount: i64) -> ChargeRequest {
    let invoice = InvoiceId::generate();
    ChargeRequest {
        idempotency_key: format!("{invoice}-attempt-1"),
        tenant: TenantId::generate(),
        invoice,
        attempt_number: 1,
        amount,
        currency: Currency::parse("EUR").unwrap(),
        token: pm.into(),
        provider_customer: Some("cus_fake".into()),
        provider_ref: None,
        age: chrono::Duration::zero(),
    }
}

fn only_fault(f: Fault) -> impl FnMut(u64, &str) -> Option<Fault> + Send {
    let mut done = false;
    move |_, _| {
        let first = !done;
        done = true;
        first.then_some(f)
    }
}

#[tokio::test]
async fn a_charge_succeeds_once_and_a_replay_of_its_key_changes_nothing() {
    let fake = FakeStripe::start().await;
    let stripe = client(&fake, 2);
    let req = request("pm_card_visa", 1999);
    let first = stripe.charge(&req).await;
    let ChargeResult::Succeeded {
        provider_ref,
        received,
    } = &first
    else {
        panic!("{first:?}")
    };
    assert!(provider_ref.starts_with("pi_"));
    assert_eq!(
        (received.amount, received.currency),
        (1999, Some(req.currency)),
        "what Stripe says it took is read back"
    );
    assert_eq!(
        received.attempt_key.as_deref(),
        Some(req.idempotency_key.as_str())
    );
    assert_eq!(stripe.charge(&req).await, first);
    let ledger = fake.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].amount, 1999);
    assert_eq!(ledger[0].invoice, req.invoice.to_string());
}

#[tokio::test]
async fn declines_are_classified_hard_or_soft() {
    let fake = FakeStripe::start().await;
    let stripe = client(&fake, 2);
    let cases = [
        (
            "pm_card_visa_chargeDeclinedInsufficientFunds",
            "insufficient_funds",
            DeclineKind::Soft,
        ),
        (
            "pm_card_visa_chargeDeclined",
            "generic_decline",
            DeclineKind::Soft,
        ),
        (
            "pm_card_chargeDeclinedProcessingError",
            "processing_error",
            DeclineKind::Soft,
        ),
        (
            "pm_card_chargeDeclinedExpiredCard",
            "expired_card",
            DeclineKind::Hard,
        ),
        (
            "pm_card_chargeDeclinedIncorrectCvc",
            "incorrect_cvc",
            DeclineKind::Hard,
        ),
        (
            "pm_card_visa_chargeDeclinedLostCard",
            "lost_card",
            DeclineKind::Hard,
        ),
        (
            "pm_card_visa_chargeDeclinedStolenCard",
            "stolen_card",
            DeclineKind::Hard,
        ),
        (
            "pm_card_chargeDeclinedFraudulent",
            "fraudulent",
            DeclineKind::Hard,
        ),
        (
            "pm_card_authenticationRequired",
            "authentication_required",
            DeclineKind::Hard,
        ),
    ];
    for (pm, want_code, want_kind) in cases {
        match stripe.charge(&request(pm, 1000)).await {
            ChargeResult::Declined {
                code,
                kind,
                provider_ref,
                ..
            } => {
                assert_eq!((code.as_str(), kind), (want_code, want_kind), "{pm}");
                assert!(provider_ref.is_some_and(|r| r.starts_with("pi_")), "{pm}");
            }
            other => panic!("{pm}: {other:?}"),
        }
    }
    assert!(fake.ledger().is_empty());
    // Amounts Stripe refuses, and a wrong key, charge nothing either.
    assert!(matches!(
        stripe.charge(&request("pm_card_visa", 20)).await,
        ChargeResult::Declined { code, kind: DeclineKind::Hard, .. } if code == "amount_too_small"
    ));
    let mut c = Config::load(None, &Overrides::default()).unwrap().stripe;
    c.api_base = fake.uri();
    c.secret_key = Some(Secret::new("sk_test_wrong"));
    let wrong = Stripe::from_config(&c).unwrap().unwrap();
    // A wrong key is the installation's fault: the attempt waits instead of using up dunning.
    assert!(matches!(
        wrong.charge(&request("pm_card_visa", 1000)).await,
        ChargeResult::Unknown { .. }
    ));
}

#[tokio::test]
async fn transient_failures_are_retried_with_the_same_key_inside_the_attempt() {
    for fault in [
        Fault::ServerErrorUnsaved,
        Fault::RateLimited,
        Fault::CutBefore,
        Fault::CutAfterCharge,
        Fault::SlowAfterCharge,
        Fault::InUse,
    ] {
        let fake = FakeStripe::start().await;
        fake.set_faults(only_fault(fault));
        let stripe = client(&fake, 2);
        let started = Instant::now();
        let result = stripe.charge(&request("pm_card_visa", 1500)).await;
        assert!(
            matches!(result, ChargeResult::Succeeded { .. }),
            "{fault:?}: {result:?}"
        );
        assert_eq!(fake.ledger().len(), 1, "{fault:?} charged once");
        if fault == Fault::RateLimited {
            // Retry-After: 1 is honoured up to the configured cap (50 ms here).
            assert!(started.elapsed() < Duration::from_millis(900));
        }
    }
}

#[tokio::test]
async fn no_answer_leaves_the_attempt_unknown_and_retrieving_it_never_charges_twice() {
    // A timeout after charging with no retries left: unknown, then resolved by the replay.
    let fake = FakeStripe::start().await;
    fake.set_faults(only_fault(Fault::SlowAfterCharge));
    let stripe = client(&fake, 0);
    let req = request("pm_card_visa", 2500);
    assert!(matches!(
        stripe.charge(&req).await,
        ChargeResult::Unknown { .. }
    ));
    assert!(matches!(
        stripe.retrieve(&req).await,
        ChargeResult::Succeeded { .. }
    ));
    assert_eq!(fake.ledger().len(), 1);

    // Stripe saved a 500 for a request that did charge: the replay repeats the 500, so the
    // client finds the intent by listing the customer's.
    let fake = FakeStripe::start().await;
    fake.set_faults(only_fault(Fault::ServerErrorAfterCharge));
    let stripe = client(&fake, 2);
    let req = request("pm_card_visa", 2500);
    assert!(matches!(
        stripe.charge(&req).await,
        ChargeResult::Unknown { .. }
    ));
    assert!(matches!(
        stripe.retrieve(&req).await,
        ChargeResult::Succeeded { .. }
    ));
    assert_eq!(fake.ledger().len(), 1);

    // A PaymentIntent still processing stays unknown until it settles.
    let req = request("pm_card_processing", 2500);
    let ChargeResult::Unknown { provider_ref, .. } = stripe.charge(&req).await else {
        panic!("processing is not a result")
    };
    let mut again = req.clone();
    again.provider_ref = provider_ref;
    assert!(matches!(
        stripe.retrieve(&again).await,
        ChargeResult::Unknown { .. }
    ));
}

#[tokio::test]
async fn a_reused_key_with_other_parameters_is_refused() {
    let fake = FakeStripe::start().await;
    let stripe = client(&fake, 2);
    let req = request("pm_card_visa", 1000);
    assert!(matches!(
        stripe.charge(&req).await,
        ChargeResult::Succeeded { .. }
    ));
    let mut other = req.clone();
    other.amount = 2000;
    assert!(matches!(
        stripe.charge(&other).await,
        ChargeResult::Declined { code, .. } if code == "idempotency_error"
    ));
    assert_eq!(fake.ledger().len(), 1);
}

#[tokio::test]
async fn refunds_carry_their_own_key_and_never_exceed_the_charge() {
    let fake = FakeStripe::start().await;
    let stripe = client(&fake, 2);
    let req = request("pm_card_visa", 5000);
    let ChargeResult::Succeeded { provider_ref, .. } = stripe.charge(&req).await else {
        panic!("charge")
    };
    let refund = |key: &str, amount| RefundRequest {
        idempotency_key: key.into(),
        provider_ref: provider_ref.clone(),
        amount,
        currency: req.currency,
        reason: "requested_by_customer".into(),
        credit_note: key.trim_end_matches("-refund").into(),
        tenant: req.tenant.clone(),
    };
    let first = stripe.refund(&refund("cn_1-refund", 3000)).await;
    assert!(matches!(first, RefundResult::Succeeded { .. }), "{first:?}");
    assert_eq!(stripe.refund(&refund("cn_1-refund", 3000)).await, first);
    assert!(matches!(
        stripe.refund(&refund("cn_2-refund", 2001)).await,
        RefundResult::Failed { code, .. } if code == "amount_too_large"
    ));
    assert!(matches!(
        stripe.refund(&refund("cn_3-refund", 2000)).await,
        RefundResult::Succeeded { .. }
    ));
    assert_eq!(fake.ledger()[0].refunded, 5000);
}

#[tokio::test]
async fn listing_pages_through_every_charge_in_the_window() {
    let fake = FakeStripe::start().await;
    let stripe = client(&fake, 2);
    for _ in 0..230 {
        stripe.charge(&request("pm_card_visa", 1000)).await;
    }
    let from = chrono::Utc::now() - chrono::Duration::hours(1);
    let to = chrono::Utc::now() + chrono::Duration::hours(1);
    let (mut seen, mut after, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let page = stripe
            .list_charges(from, to, after.as_deref())
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.charges.into_iter().map(|c| c.provider_ref));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!((seen.len(), pages), (230, 3));
}

/// The matrix's size (`RELIABILITY_FAULT_ATTEMPTS`; 1,200 in the test suite, 10,000 for the
/// reliability suite's figures).
fn fault_attempts() -> i64 {
    std::env::var("RELIABILITY_FAULT_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_200)
}

/// Attempts (16 at a time) under the reliability mix, a quarter of create requests faulted:
/// every attempt ends succeeded or declined (none unknown), every charge in the fake's ledger
/// belongs to an attempt we count as succeeded, and no attempt's key charged twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_never_double_charges_nor_loses_a_charge() {
    use futures::StreamExt;
    let fake = FakeStripe::start().await;
    fake.set_faults(fake_stripe::reliability_mix());
    let stripe = client(&fake, 2);
    let started = Instant::now();
    let n = fault_attempts();
    let results: Vec<(String, ChargeResult, u32)> = futures::stream::iter(0..n)
        .map(|i| {
            let stripe = &stripe;
            async move {
                let pm = match i % 10 {
                    0 => "pm_card_visa_chargeDeclinedInsufficientFunds",
                    1 => "pm_card_chargeDeclinedExpiredCard",
                    _ => "pm_card_visa",
                };
                let req = request(pm, 1000 + i);
                let mut result = stripe.charge(&req).await;
                let mut rounds = 0;
                while let ChargeResult::Unknown { provider_ref, .. } = &result {
                    rounds += 1;
                    assert!(rounds < 10, "attempt {i} stays unknown");
                    let mut again = req.clone();
                    again.provider_ref = provider_ref.clone();
                    result = stripe.retrieve(&again).await;
                }
                (req.idempotency_key, result, rounds)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let unknown_after_charge = results.iter().filter(|(_, _, r)| *r > 0).count();
    let outcomes: HashMap<String, ChargeResult> =
        results.into_iter().map(|(k, r, _)| (k, r)).collect();
    let elapsed = started.elapsed();
    let s = fake.state.lock().unwrap();
    let faults: u64 = s.faults_injected.values().sum();
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for c in &s.ledger {
        *per_key.entry(c.key.as_str()).or_insert(0) += 1;
    }
    assert!(per_key.values().all(|n| *n == 1), "a key charged twice");
    for c in &s.ledger {
        assert!(
            matches!(outcomes.get(&c.key), Some(ChargeResult::Succeeded { provider_ref, .. }) if *provider_ref == c.payment_intent),
            "charge {} is not recorded as succeeded",
            c.payment_intent
        );
    }
    let succeeded = outcomes
        .values()
        .filter(|r| matches!(r, ChargeResult::Succeeded { .. }))
        .count();
    assert_eq!(succeeded, s.ledger.len(), "a success without a charge");
    assert!(s.creates >= n.unsigned_abs());
    assert!(
        faults * 100 >= s.creates * 15,
        "{faults} faults in {} creates",
        s.creates
    );
    eprintln!(
        "fault matrix: {} attempts, {} create requests, {faults} faults injected ({:.1}%), {:?}; \
         {} charged once each, {} declined, {} unknown after the first call (all resolved), \
         0 double charges, {:.2?}",
        outcomes.len(),
        s.creates,
        faults as f64 * 100.0 / s.creates as f64,
        s.faults_injected,
        s.ledger.len(),
        outcomes.len() - succeeded,
        unknown_after_charge,
        elapsed
    );
}

#[tokio::test]
async fn an_attempt_older_than_stripes_key_lifetime_is_looked_up_never_resent() {
    let fake = FakeStripe::start().await;
    fake.set_faults(only_fault(Fault::SlowAfterCharge));
    let stripe = client(&fake, 0);
    let charged = request("pm_card_visa", 2500);
    assert!(matches!(
        stripe.charge(&charged).await,
        ChargeResult::Unknown { .. }
    ));
    let never_sent = request("pm_card_visa", 2600);
    let creates = fake.state.lock().unwrap().creates;
    let day = chrono::Duration::hours(24);
    let (mut a, mut b) = (charged.clone(), never_sent.clone());
    a.age = day;
    b.age = day;
    assert!(matches!(
        stripe.retrieve(&a).await,
        ChargeResult::Succeeded { .. }
    ));
    assert!(matches!(
        stripe.retrieve(&b).await,
        ChargeResult::Declined { code, kind: DeclineKind::Soft, .. } if code == "provider_error"
    ));
    assert_eq!(
        fake.state.lock().unwrap().creates,
        creates,
        "nothing re-sent"
    );
    assert_eq!(fake.ledger().len(), 1);
}

/// Requests to one account are paced by its token bucket (test keys: `ops_per_second_test`),
/// however many are sent at once: 21 charges at 10 per second with bursts of 1 take at least
/// 2 s, and every one succeeds once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_one_account_are_paced_by_its_token_bucket() {
    let fake = FakeStripe::start().await;
    let mut c = Config::load(None, &Overrides::default()).unwrap().stripe;
    c.api_base = fake.uri();
    c.secret_key = Some(Secret::new(SECRET_KEY));
    c.ops_per_second_test = 10;
    c.max_concurrent_requests = 8;
    let stripe = Stripe::from_config(&c).unwrap().unwrap();
    let started = Instant::now();
    let requests: Vec<ChargeRequest> = (0..21).map(|_| request("pm_card_visa", 500)).collect();
    let results = futures::future::join_all(requests.iter().map(|r| stripe.charge(r))).await;
    let took = started.elapsed();
    assert!(
        results
            .iter()
            .all(|r| matches!(r, ChargeResult::Succeeded { .. })),
        "{results:?}"
    );
    assert!(
        took >= Duration::from_millis(1900),
        "21 charges in {took:?}"
    );
}
