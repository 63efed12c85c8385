//! Outbound webhooks: endpoints a SaaS backend registers, and the relay that delivers every
//! event they subscribe to with Standard Webhooks signatures (`webhook-id`, the event's id,
//! is the same on every retry), retries on the schedule of `domain::webhook`, honours
//! `Retry-After`, and disables an endpoint that answers 410 or fails for a day.
//!
//! Addresses: an endpoint must resolve to public addresses only (checked when it is created
//! and again at every connection by the client's resolver, so a name that later resolves to
//! 127.0.0.1 gets nothing); redirects are not followed. `webhooks.allow_private_urls` lifts
//! the rule for local development and tests.

use super::ServiceError;
use crate::config::Config;
use crate::domain::event::EventType;
use crate::domain::ids::{TenantId, WebhookDeliveryId, WebhookEndpointId};
use crate::domain::tenant::truncate_to_seconds;
use crate::domain::webhook::{self, DISABLE_AFTER, UrlError};
use crate::store::webhooks::{self as store, Delivery, Due, Endpoint, Outcome};
use crate::store::{Db, Page, events};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Deliveries read per relay pass.
const BATCH: i64 = 100;

fn bad_url(e: UrlError) -> ServiceError {
    ServiceError::invalid("url", e)
}

/// Checks an endpoint address as the relay will reach it: every address its host resolves to
/// must be public (unless private ones are allowed).
async fn check_reachable(url: &url::Url, allow_private: bool) -> Result<(), ServiceError> {
    if allow_private {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<IpAddr> = match (webhook::literal_ip(url), url.host_str()) {
        (Some(ip), _) => vec![ip],
        (None, Some(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|_| {
                ServiceError::invalid("url", format!("the host `{name}` does not resolve"))
            })?
            .map(|a| a.ip())
            .collect(),
        (None, None) => return Err(bad_url(UrlError::Shape)),
    };
    match addrs.iter().find(|ip| !webhook::is_public(**ip)) {
        Some(ip) => Err(bad_url(UrlError::Internal(*ip))),
        None if addrs.is_empty() => Err(ServiceError::invalid("url", "the host does not resolve")),
        None => Ok(()),
    }
}

/// Where an endpoint's signing secret is stored, which its sealed value is bound to.
pub fn secret_context(tenant: &TenantId, endpoint: &WebhookEndpointId) -> String {
    format!("webhook_endpoints.secret:{tenant}:{endpoint}")
}

/// Registers an endpoint; the returned object carries its signing secret, shown this once (it
/// is stored sealed, see `vault`).
pub async fn create(
    db: &Db,
    config: &Config,
    tenant: &TenantId,
    url: &str,
    enabled_events: Vec<String>,
    description: Option<String>,
    now: DateTime<Utc>,
) -> Result<Endpoint, ServiceError> {
    let parsed = webhook::parse_url(url).map_err(bad_url)?;
    webhook::check_events(&enabled_events)
        .map_err(|e| ServiceError::invalid("enabled_events", e))?;
    if let Some(d) = &description
        && d.chars().count() > 500
    {
        return Err(ServiceError::invalid(
            "description",
            "description is at most 500 characters",
        ));
    }
    check_reachable(&parsed, config.webhooks.allow_private_urls).await?;
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    );
    let mut endpoint = Endpoint {
        id: WebhookEndpointId::generate(),
        object: "webhook_endpoint",
        url: parsed.to_string(),
        description,
        enabled_events,
        status: "enabled".into(),
        disabled_reason: None,
        created: now,
        secret: None,
    };
    let sealed = config
        .vault()?
        .seal(&secret_context(tenant, &endpoint.id), &secret)?;
    let mut tx = db.begin().await?;
    store::insert_endpoint(&mut tx, tenant, &endpoint, &sealed).await?;
    tx.commit().await?;
    endpoint.secret = Some(secret);
    Ok(endpoint)
}

pub async fn get(
    db: &Db,
    tenant: &TenantId,
    id: &WebhookEndpointId,
) -> Result<Endpoint, ServiceError> {
    let mut tx = db.read().await?;
    let found = store::find_endpoint(&mut tx, tenant, id).await?;
    tx.commit().await?;
    found.ok_or_else(|| ServiceError::not_found("webhook endpoint", id))
}

pub async fn list(
    db: &Db,
    tenant: &TenantId,
    page: &Page,
) -> Result<(Vec<Endpoint>, bool), ServiceError> {
    let mut tx = db.read().await?;
    let out = store::list_endpoints(&mut tx, tenant, page).await?;
    tx.commit().await?;
    Ok(out)
}

pub async fn delete(
    db: &Db,
    tenant: &TenantId,
    id: &WebhookEndpointId,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let mut tx = db.begin().await?;
    if !store::delete_endpoint(&mut tx, tenant, id, now).await? {
        return Err(ServiceError::not_found("webhook endpoint", id));
    }
    tx.commit().await?;
    Ok(())
}

pub async fn deliveries(
    db: &Db,
    tenant: &TenantId,
    id: &WebhookEndpointId,
    page: &Page,
) -> Result<(Vec<Delivery>, bool), ServiceError> {
    get(db, tenant, id).await?;
    let mut tx = db.read().await?;
    let out = store::list_deliveries(&mut tx, tenant, id, page).await?;
    tx.commit().await?;
    Ok(out)
}

/// Sends a delivery again at once (one more try, its history kept).
pub async fn resend(
    db: &Db,
    tenant: &TenantId,
    endpoint: &WebhookEndpointId,
    id: &WebhookDeliveryId,
) -> Result<(), ServiceError> {
    get(db, tenant, endpoint).await?;
    let now = truncate_to_seconds(Utc::now());
    let mut tx = db.begin().await?;
    if !store::resend(&mut tx, tenant, endpoint, id, now).await? {
        return Err(ServiceError::not_found("webhook delivery", id));
    }
    tx.commit().await?;
    Ok(())
}

/// Resolves names to their public addresses only: a name that resolves to an internal
/// address at connection time (DNS rebinding) is not connected to.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| webhook::is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{} resolves to no public address", name.as_str()).into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The relay's HTTP client: no redirects, a timeout, public addresses only unless allowed.
pub fn client(config: &Config) -> Result<reqwest::Client, ServiceError> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(config.webhooks.timeout_secs))
        .user_agent(concat!("recur-webhooks/", env!("CARGO_PKG_VERSION")));
    if !config.webhooks.allow_private_urls {
        b = b.dns_resolver(Arc::new(PublicOnly));
    }
    b.build()
        .map_err(|e| ServiceError::Document(format!("webhook client: {e}")))
}

/// What a relay pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    pub delivered: usize,
    pub retrying: usize,
    pub failed: usize,
    pub disabled: usize,
}

/// The event as `GET /v1/events` shows it: the body every endpoint receives.
fn body(d: &Due) -> Result<String, ServiceError> {
    let object: serde_json::Value = serde_json::from_str(&d.body)
        .map_err(|e| ServiceError::Document(format!("event {}: {e}", d.event)))?;
    Ok(serde_json::json!({
        "id": d.event,
        "object": "event",
        "type": d.event_type,
        "data": {"object": object},
        "created": d.event_created,
    })
    .to_string())
}

/// One try: the status code (if an answer came), the `Retry-After` asked for, and an error
/// text without secrets.
async fn send(
    client: &reqwest::Client,
    d: &Due,
    secret: &str,
    allow_private: bool,
) -> (Option<u16>, Option<Duration>, Option<String>) {
    let payload = match body(d) {
        Ok(b) => b,
        Err(e) => return (None, None, Some(e.to_string())),
    };
    // Literal addresses skip the resolver: check them here.
    if !allow_private
        && let Some(ip) = webhook::parse_url(&d.url)
            .ok()
            .and_then(|u| webhook::literal_ip(&u))
        && !webhook::is_public(ip)
    {
        return (None, None, Some(UrlError::Internal(ip).to_string()));
    }
    let ts = Utc::now().timestamp();
    let signature = match standardwebhooks::Webhook::new(secret)
        .and_then(|w| w.sign(d.event.as_str(), ts, payload.as_bytes()))
    {
        Ok(s) => s,
        Err(e) => return (None, None, Some(format!("signing: {e}"))),
    };
    let sent = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("webhook-id", d.event.as_str())
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(payload)
        .send()
        .await;
    match sent {
        Ok(r) => {
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
                .map(Duration::seconds);
            let code = r.status().as_u16();
            let error = (!r.status().is_success()).then(|| format!("HTTP {code}"));
            (Some(code), retry_after, error)
        }
        Err(e) if e.is_timeout() => (None, None, Some("timed out".into())),
        Err(e) if e.is_connect() => (None, None, Some(format!("could not connect: {}", root(&e)))),
        Err(e) => (None, None, Some(root(&e))),
    }
}

/// The innermost cause of an error (reqwest's own text names only the URL).
fn root(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Delivers what is due at `now` (the system time; tests pass a later one), until `deadline`
/// if one is given. Each delivery is claimed and recorded at its own time: `now` plus the
/// time the pass has taken.
pub async fn deliver_due(
    db: &Db,
    config: &Config,
    client: &reqwest::Client,
    now: DateTime<Utc>,
    deadline: Option<std::time::Instant>,
) -> Result<Relayed, ServiceError> {
    let allow_private = config.webhooks.allow_private_urls;
    let hold = Duration::seconds(i64::try_from(config.webhooks.timeout_secs).unwrap_or(60) + 60);
    let started = std::time::Instant::now();
    let clock = || {
        truncate_to_seconds(now + Duration::from_std(started.elapsed()).unwrap_or(Duration::zero()))
    };
    let mut out = Relayed::default();
    let mut tx = db.read().await?;
    let due = store::due(&mut tx, truncate_to_seconds(now), BATCH).await?;
    tx.commit().await?;
    for d in due {
        if deadline.is_some_and(|at| std::time::Instant::now() >= at) {
            break;
        }
        let lease = clock() + hold;
        let mut tx = db.begin().await?;
        let mine = store::claim(&mut tx, &d, lease).await?;
        tx.commit().await?;
        if !mine {
            continue;
        }
        let attempt = d.attempts + 1;
        let started = std::time::Instant::now();
        // A secret that does not open is this installation's fault (a missing or wrong
        // master key), not the endpoint's: nothing is sent or counted, and the delivery is due
        // again when its claim lapses.
        let secret = match config
            .vault()
            .and_then(|v| v.open(&secret_context(&d.tenant, &d.endpoint), &d.secret))
        {
            Ok(secret) => secret,
            Err(e) => {
                tracing::error!(tenant.id = %d.tenant, endpoint = %d.endpoint, error = %e, "cannot open a webhook signing secret; check secrets.master_key");
                continue;
            }
        };
        let (code, retry_after, error) = send(client, &d, secret.expose(), allow_private).await;
        let at = clock();
        let ok = code.is_some_and(|c| (200..300).contains(&c));
        let gone = code == Some(410);
        let retry = (!ok && !gone)
            .then(|| webhook::next_attempt(at, attempt, retry_after))
            .flatten();
        let status = match (ok, retry) {
            (true, _) => "succeeded",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        let outcome = Outcome {
            attempt,
            at,
            status_code: code,
            error: error.as_deref(),
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            status,
            retry_at: retry.unwrap_or(at),
        };
        let mut tx = db.begin().await?;
        if !store::finish(&mut tx, &d, lease, &outcome).await? {
            tx.commit().await?;
            continue;
        }
        store::endpoint_health(&mut tx, &d.tenant, &d.endpoint, ok, at).await?;
        let reason = if gone {
            Some("the endpoint answered 410 Gone")
        } else if !ok
            && d.failing_since
                .is_some_and(|since| at - since >= DISABLE_AFTER)
        {
            Some("every delivery failed for a day")
        } else {
            None
        };
        if let Some(reason) = reason
            && store::disable(&mut tx, &d.tenant, &d.endpoint, reason).await?
        {
            let endpoint = store::find_endpoint(&mut tx, &d.tenant, &d.endpoint).await?;
            events::insert_event(
                &mut tx,
                &d.tenant,
                EventType::WebhookEndpointDisabled,
                d.endpoint.as_str(),
                &endpoint,
                at,
            )
            .await?;
            tracing::error!(tenant.id = %d.tenant, endpoint = %d.endpoint, reason, "webhook endpoint disabled");
            out.disabled += 1;
        }
        tx.commit().await?;
        match status {
            "succeeded" => out.delivered += 1,
            "pending" => out.retrying += 1,
            _ => out.failed += 1,
        }
        crate::metrics::webhook_attempt(status);
    }
    Ok(out)
}

/// The relay: delivers due webhooks every `webhooks.poll_interval_ms` until `shutdown`.
pub async fn run(
    db: Db,
    config: Arc<Config>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServiceError> {
    let client = client(&config)?;
    let every = std::time::Duration::from_millis(config.webhooks.poll_interval_ms.max(50));
    tokio::pin!(shutdown);
    loop {
        match deliver_due(&db, &config, &client, Utc::now(), None).await {
            Ok(r) if r != Relayed::default() => {
                tracing::debug!(
                    delivered = r.delivered,
                    retrying = r.retrying,
                    failed = r.failed,
                    "webhook relay pass"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "webhook relay pass failed"),
        }
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
    }
}
