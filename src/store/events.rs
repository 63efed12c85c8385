//! The transactional outbox: every state change writes its event in the same transaction.

use super::rows::Rec;
use super::{Page, StoreError, Tx, on_tx};
use crate::domain::email::EmailKind;
use crate::domain::event::EventType;
use crate::domain::ids::{EventId, TenantId};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: EventId,
    pub object: &'static str,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
    pub created: DateTime<Utc>,
    /// The API request that caused it (`null` for the scheduler's own work).
    pub request: Option<EventRequest>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRequest {
    pub id: String,
    pub api_key: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

tokio::task_local! {
    /// The `Idempotency-Key` of the request whose work is running. Every event it commits
    /// carries it, so after a failure one can tell whether the request changed anything.
    pub static REQUEST_KEY: String;
    /// Who is asking: the API request whose work is running. Every event it commits names it.
    pub static AUDIT: Audit;
}

/// The request behind a change: its id (the `Request-Id` response header) and the API key
/// it came with (`key_` + the first 16 hex digits of the key's SHA-256, never the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audit {
    pub id: String,
    pub api_key: String,
}

fn request_key() -> Option<String> {
    REQUEST_KEY.try_with(Clone::clone).ok()
}

fn audit() -> Option<Audit> {
    AUDIT.try_with(Clone::clone).ok()
}

/// Whether a request with this `Idempotency-Key` committed any change (every change writes
/// an event in its transaction).
pub async fn request_changed_anything(
    tx: &mut Tx,
    tenant: &TenantId,
    key: &str,
) -> Result<bool, StoreError> {
    on_tx!(tx, |c| {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT id FROM events WHERE tenant_id = $1 AND request_key = $2 LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(key)
        .fetch_optional(&mut *c)
        .await?;
        Ok(found.is_some())
    })
}

/// Records `kind` for `object` (serialized as the API shows it) inside the caller's
/// transaction, with what follows from it there: the customer e-mail it announces, the
/// webhook deliveries it owes, the alert it raises.
pub async fn insert_event(
    tx: &mut Tx,
    tenant: &TenantId,
    kind: EventType,
    object_id: &str,
    object: &impl Serialize,
    now: DateTime<Utc>,
) -> Result<EventId, StoreError> {
    let data = super::rows::to_json(object)?;
    let id = insert_alert_event(tx, tenant, kind, object_id, &data, now).await?;
    enqueue_emails(tx, tenant, &[(kind, object_id, &data)]).await?;
    let alert = match kind {
        EventType::ReconciliationDiscrepancy => Some((
            EventType::AlertReconciliationDiscrepancy,
            "a provider's records and ours disagree: see the reconciliation.discrepancy event",
        )),
        EventType::WebhookEndpointDisabled => Some((
            EventType::AlertWebhookEndpointDisabled,
            "a webhook endpoint was disabled and receives nothing until it is created again",
        )),
        _ => None,
    };
    if let Some((alert, message)) = alert {
        super::alerts::raise(
            tx,
            tenant,
            alert,
            object_id,
            message,
            super::alerts::Raise::Once,
            now,
        )
        .await?;
    }
    Ok(id)
}

/// Writes an event row and its webhook deliveries, and nothing else (an alert's own event).
pub async fn insert_alert_event(
    tx: &mut Tx,
    tenant: &TenantId,
    kind: EventType,
    object_id: &str,
    data: &str,
    now: DateTime<Utc>,
) -> Result<EventId, StoreError> {
    let id = EventId::generate();
    let who = audit();
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO events (tenant_id, id, type, object_id, data, created_at, request_key, request_id, api_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .bind(kind.as_str())
    .bind(object_id)
    .bind(data)
    .bind(now)
    .bind(request_key())
    .bind(who.as_ref().map(|a| a.id.as_str()))
    .bind(who.as_ref().map(|a| a.api_key.as_str()))
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    })?;
    // Deliveries run on the system clock, whatever the tenant's test clock says.
    let queued_at = crate::domain::tenant::truncate_to_seconds(Utc::now());
    super::webhooks::fan_out(tx, tenant, &[(&id, kind.as_str())], queued_at).await?;
    Ok(id)
}

/// The customer e-mail an event announces, queued in the event's own transaction: a
/// receipt per successful payment, a notice per failed attempt of an invoice.
fn email_of(kind: EventType, object_id: &str, data: &str) -> Option<(EmailKind, String)> {
    match kind {
        EventType::PaymentSucceeded => Some((EmailKind::PaymentSucceeded, object_id.to_owned())),
        EventType::InvoicePaymentFailed => {
            let attempt = serde_json::from_str::<serde_json::Value>(data)
                .ok()
                .and_then(|v| v["attempt_count"].as_u64())
                .unwrap_or_default();
            Some((EmailKind::PaymentFailed, format!("{object_id}#{attempt}")))
        }
        _ => None,
    }
}

/// Queues the e-mails these events announce.
async fn enqueue_emails(
    tx: &mut Tx,
    tenant: &TenantId,
    events: &[(EventType, &str, &str)],
) -> Result<(), StoreError> {
    let emails: Vec<(EmailKind, String, &str)> = events
        .iter()
        .filter_map(|(kind, object_id, data)| {
            email_of(*kind, object_id, data).map(|(k, dedupe)| (k, dedupe, *object_id))
        })
        .collect();
    if emails.is_empty() {
        return Ok(());
    }
    let now = crate::domain::tenant::truncate_to_seconds(Utc::now());
    super::emails::enqueue_many(tx, tenant, &emails, now).await
}

fn event_from(r: &impl Rec) -> Result<Event, StoreError> {
    let key = r.opt_text("request_key")?;
    let request = match (r.opt_text("request_id")?, key) {
        (None, None) => None,
        (id, key) => Some(EventRequest {
            id: id.unwrap_or_default(),
            api_key: r.opt_text("api_key")?,
            // Stored as `{key}@{claim}`: the key as the client sent it.
            idempotency_key: key
                .map(|k| k.rsplit_once('@').map_or(k.clone(), |(k, _)| k.to_owned())),
        }),
    };
    Ok(Event {
        id: r.parsed("id", EventId::parse)?,
        object: "event",
        kind: r.text("type")?,
        data: EventData {
            object: r.json("data")?,
        },
        created: r.time("created_at")?,
        request,
    })
}

/// What `GET /v1/events` filters on.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub kind: Option<String>,
    pub object_id: Option<String>,
    pub created_gte: Option<DateTime<Utc>>,
    pub created_lt: Option<DateTime<Utc>>,
}

pub async fn list_events(
    tx: &mut Tx,
    tenant: &TenantId,
    f: &EventFilter,
    page: &Page,
) -> Result<(Vec<Event>, bool), StoreError> {
    let rows = on_tx!(tx, |c| {
        let rows = sqlx::query(
            "SELECT id, type, data, created_at, request_key, request_id, api_key FROM events
             WHERE tenant_id = $1 AND ($2 IS NULL OR type = $2) AND ($3 IS NULL OR id < $3)
               AND ($5 IS NULL OR object_id = $5) AND ($6 IS NULL OR created_at >= $6)
               AND ($7 IS NULL OR created_at < $7)
             ORDER BY id DESC LIMIT $4",
        )
        .bind(tenant.as_str())
        .bind(f.kind.as_deref())
        .bind(page.starting_after.as_deref())
        .bind(page.fetch_limit())
        .bind(f.object_id.as_deref())
        .bind(f.created_gte)
        .bind(f.created_lt)
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(event_from).collect::<Result<Vec<_>, _>>()?
    });
    Ok(page.split(rows))
}

/// An event to record in bulk (the billing run writes thousands per batch).
pub struct NewEvent {
    pub kind: EventType,
    pub object_id: String,
    pub data: String,
    pub at: DateTime<Utc>,
}

pub async fn insert_events(
    tx: &mut Tx,
    tenant: &TenantId,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let key = request_key();
    let who = audit();
    let ids: Vec<EventId> = events.iter().map(|_| EventId::generate()).collect();
    for (chunk, chunk_ids) in events.chunks(1000).zip(ids.chunks(1000)) {
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO events (tenant_id, id, type, object_id, data, created_at, request_key, request_id, api_key) ",
            );
            q.push_values(chunk.iter().zip(chunk_ids), |mut b, (e, id)| {
                b.push_bind(tenant.as_str())
                    .push_bind(id.as_str())
                    .push_bind(e.kind.as_str())
                    .push_bind(e.object_id.as_str())
                    .push_bind(e.data.as_str())
                    .push_bind(e.at)
                    .push_bind(key.as_deref())
                    .push_bind(who.as_ref().map(|a| a.id.clone()))
                    .push_bind(who.as_ref().map(|a| a.api_key.clone()));
            });
            q.build().execute(&mut *c).await?;
        });
    }
    let announced: Vec<(EventType, &str, &str)> = events
        .iter()
        .map(|e| (e.kind, e.object_id.as_str(), e.data.as_str()))
        .collect();
    enqueue_emails(tx, tenant, &announced).await?;
    let queued_at = crate::domain::tenant::truncate_to_seconds(Utc::now());
    let typed: Vec<(&EventId, &str)> = ids
        .iter()
        .zip(events)
        .map(|(id, e)| (id, e.kind.as_str()))
        .collect();
    super::webhooks::fan_out(tx, tenant, &typed, queued_at).await
}
