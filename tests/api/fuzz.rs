//! Hostile input, by machine: every JSON route gets random bytes and structure-aware mutations
//! of a valid body (a value replaced by one of another type or at an edge, a key removed or
//! added, deep nesting), and list routes random query strings. Never a 5xx or a dropped
//! connection, and a 4xx writes nothing. `FUZZ_CASES` cases per backend (default 150 in the
//! suite; run `FUZZ_CASES=5000 cargo test --test api fuzz -- --nocapture` for a long run);
//! `FUZZ_SEED` replays a run (the seed is printed and named in every failure).

use crate::both;
use crate::support::TestApp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};

fn cases() -> usize {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random)
}

/// A value of a random type, at the edges that break parsers and databases.
fn hostile(rng: &mut StdRng) -> Value {
    match rng.random_range(0..16) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(i64::MAX),
        3 => json!(-1),
        4 => json!(0),
        5 => json!(1e308),
        6 => json!(0.5),
        7 => json!(""),
        8 => json!("x".repeat(rng.random_range(1000..20_000))),
        9 => json!("\u{0}\u{1b}[31m\u{7f}"),
        10 => json!("Zażółć 🦀 \u{202e}gnp.exe"),
        11 => json!("4242 4242 4242 4242"),
        12 => json!("cus_00000000000000000000000000000000"),
        13 => json!([]),
        14 => json!({"nested": {"deeper": [1, "two", null]}}),
        _ => json!(rng.random_range(-1_000_000_000_000i64..1_000_000_000_000)),
    }
}

/// Paths to every node of `v` (object keys and array indexes).
fn paths(v: &Value, at: Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let mut p = at.clone();
                p.push(k.clone());
                out.push(p.clone());
                paths(x, p, out);
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                let mut p = at.clone();
                p.push(i.to_string());
                out.push(p.clone());
                paths(x, p, out);
            }
        }
        _ => {}
    }
}

fn node<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |cur, key| match cur {
        Value::Object(m) => m.get_mut(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

/// A body for one case: random bytes, or `valid` mutated.
fn mutate(rng: &mut StdRng, valid: &Value) -> Vec<u8> {
    let mut v = valid.clone();
    let mut all = Vec::new();
    paths(&v, Vec::new(), &mut all);
    match rng.random_range(0..7) {
        0 => {
            return (0..rng.random_range(0..200))
                .map(|_| rng.random())
                .collect();
        }
        1 | 2 if !all.is_empty() => {
            let p = &all[rng.random_range(0..all.len())];
            if let Some(n) = node(&mut v, p) {
                *n = hostile(rng);
            }
        }
        3 if !all.is_empty() => {
            let p = &all[rng.random_range(0..all.len())];
            let (last, parent) = p.split_last().expect("a path");
            if let Some(Value::Object(m)) = node(&mut v, parent) {
                m.remove(last);
            }
        }
        4 => {
            if let Value::Object(m) = &mut v {
                m.insert(format!("unknown_{}", rng.random::<u16>()), hostile(rng));
            }
        }
        5 => {
            for _ in 0..rng.random_range(1..300) {
                v = json!([v]);
            }
        }
        _ => {}
    }
    serde_json::to_vec(&v).expect("json")
}

async fn raw(app: &TestApp, method: Method, path: &str, body: Vec<u8>) -> (u16, String) {
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: the connection failed: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

both!(
    async fn every_route_answers_hostile_bodies_without_5xx_or_writes(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let price = app.monthly_price(2500).await;
        let metered = app.metered_price().await;
        let sub = app
            .post(
                "/v1/subscriptions",
                json!({"customer": customer, "items": [{"price": price}, {"price": metered}]}),
            )
            .await
            .ok();
        let item = sub["items"][1]["id"].as_str().unwrap().to_owned();
        let sub_id = sub["id"].as_str().unwrap().to_owned();
        app.advance("2027-02-01T00:00:00Z").await;
        let invoice = app.invoices_of(&sub_id).await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let routes: Vec<(Method, String, Value)> = vec![
            (
                Method::POST,
                "/v1/customers".into(),
                json!({"name": "Ada", "email": "ada@example.com", "currency": "EUR",
                "address": {"line1": "1 Road", "city": "Berlin", "country": "DE"},
                "tax_ids": [{"type": "eu_vat", "value": "DE123456789"}],
                "payment_method": {"provider": "sandbox", "token": "tok_visa"}}),
            ),
            (
                Method::PATCH,
                format!("/v1/customers/{customer}"),
                json!({"name": "Ada L", "email": "ada@example.org"}),
            ),
            (
                Method::POST,
                format!("/v1/customers/{customer}/balance_transactions"),
                json!({"amount": -100, "description": "goodwill", "currency": "EUR"}),
            ),
            (
                Method::POST,
                "/v1/prices".into(),
                json!({"product": "Pro", "currency": "EUR", "unit_amount": 1000, "recurring": {"interval": "month"}}),
            ),
            (
                Method::POST,
                "/v1/tax_rates".into(),
                json!({"display_name": "VAT", "percentage": "23", "country": "PL"}),
            ),
            (
                Method::POST,
                "/v1/coupons".into(),
                json!({"percent_off": "12.5", "duration": "forever"}),
            ),
            (
                Method::POST,
                "/v1/subscriptions".into(),
                json!({"customer": customer, "items": [{"price": price, "quantity": 2}]}),
            ),
            (
                Method::PATCH,
                format!("/v1/subscriptions/{sub_id}"),
                json!({"cancel_at_period_end": true}),
            ),
            (
                Method::POST,
                "/v1/usage_records".into(),
                json!({"subscription_item": item, "quantity": 5}),
            ),
            (
                Method::POST,
                "/v1/usage_records/batch".into(),
                json!({"records": [{"subscription_item": item, "quantity": 5, "identifier": "f-1"},
                    {"subscription_item": item, "quantity": 2, "action": "set", "identifier": "f-2"}]}),
            ),
            (
                Method::POST,
                "/v1/credit_notes".into(),
                json!({"invoice": invoice, "amount": 100, "reason": "duplicate"}),
            ),
            (
                Method::POST,
                "/v1/api_keys".into(),
                json!({"name": "fuzz", "scope": "read_only"}),
            ),
            (
                Method::POST,
                "/v1/webhook_endpoints".into(),
                json!({"url": "https://example.com/h", "enabled_events": ["*"]}),
            ),
            (
                Method::PUT,
                "/v1/settings/invoice".into(),
                json!({"legal_name": "Acme GmbH", "email": "billing@acme.example", "locale": "de"}),
            ),
            (
                Method::PUT,
                "/v1/settings/dunning".into(),
                json!({"retry_days": [1, 3], "final_action": "cancel"}),
            ),
            (
                Method::POST,
                format!("/v1/invoices/{invoice}/pay"),
                json!({}),
            ),
            (
                Method::POST,
                format!("/v1/customers/{customer}/erase"),
                json!({}),
            ),
        ];
        let seed = seed();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut statuses = std::collections::BTreeMap::new();
        for case in 0..cases() {
            let (method, path, valid) = &routes[rng.random_range(0..routes.len())];
            // Erasure is final: it runs on its valid body only in the last cases.
            if path.ends_with("/erase") && case + 5 < cases() {
                continue;
            }
            let body = mutate(&mut rng, valid);
            let before = app.row_counts().await;
            let (status, answer) = raw(&app, method.clone(), path, body.clone()).await;
            *statuses.entry(status).or_insert(0) += 1;
            let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            assert!(
                status < 500,
                "seed {seed}, case {case}: {method} {path} {shown} -> {status} {answer}"
            );
            if status >= 400 {
                assert_eq!(
                    app.row_counts().await,
                    before,
                    "seed {seed}, case {case}: {method} {path} {shown} -> {status} wrote"
                );
            }
        }
        // Query strings of list routes.
        for case in 0..cases() / 3 {
            let list = [
                "/v1/customers",
                "/v1/invoices",
                "/v1/subscriptions",
                "/v1/events",
                "/v1/payments",
                "/v1/credit_notes",
                "/v1/prices",
            ];
            let path = list[rng.random_range(0..list.len())];
            let key = [
                "limit",
                "starting_after",
                "customer",
                "status",
                "type",
                "created[gte]",
                "subscription",
                "x",
            ][rng.random_range(0..8)];
            let value: String = match hostile(&mut rng) {
                Value::String(s) => s.chars().take(300).collect(),
                other => other.to_string(),
            };
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair(key, &value)
                .finish();
            let (status, answer) =
                raw(&app, Method::GET, &format!("{path}?{query}"), Vec::new()).await;
            *statuses.entry(status).or_insert(0) += 1;
            assert!(
                status < 500,
                "seed {seed}, query case {case}: {path}?{query} -> {status} {answer}"
            );
        }
        println!(
            "fuzz seed {seed}: {} bodies and {} query strings, statuses {statuses:?}",
            cases(),
            cases() / 3
        );
    }
);
