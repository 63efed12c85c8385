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
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

tokio::task_local! {
    /// The `Idempotency-Key` of the request whose work is running. Every event it commits
    /// carries it, so after a failure one can tell whether the request changed anything.
    pub static REQUEST_KEY: String;
}

fn request_key() -> Option<String> {
    REQUEST_KEY.try_with(Clone::clone).ok()
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

/// Records `kind` for `object` (serialized as the API shows it) inside the caller's transaction.
pub async fn insert_event(
    tx: &mut Tx,
    tenant: &TenantId,
    kind: EventType,
    object_id: &str,
    object: &impl Serialize,
    now: DateTime<Utc>,
) -> Result<EventId, StoreError> {
    let id = EventId::generate();
    let data = super::rows::to_json(object)?;
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO events (tenant_id, id, type, object_id, data, created_at, request_key) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .bind(kind.as_str())
    .bind(object_id)
    .bind(&data)
    .bind(now)
    .bind(request_key())
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    })?;
    enqueue_email(tx, tenant, kind, object_id, &data).await?;
    // Deliveries run on the system clock, whatever the tenant's test clock says.
    let queued_at = crate::domain::tenant::truncate_to_seconds(Utc::now());
    super::webhooks::fan_out(tx, tenant, &[(&id, kind.as_str())], queued_at).await?;
    Ok(id)
}

/// The customer e-mail an event announces, queued in the event's own transaction: a
/// receipt per successful payment, a notice per failed attempt of an invoice.
async fn enqueue_email(
    tx: &mut Tx,
    tenant: &TenantId,
    kind: EventType,
    object_id: &str,
    data: &str,
) -> Result<(), StoreError> {
    let (email, dedupe) = match kind {
        EventType::PaymentSucceeded => (EmailKind::PaymentSucceeded, object_id.to_owned()),
        EventType::InvoicePaymentFailed => {
            let attempt = serde_json::from_str::<serde_json::Value>(data)
                .ok()
                .and_then(|v| v["attempt_count"].as_u64())
                .unwrap_or_default();
            (EmailKind::PaymentFailed, format!("{object_id}#{attempt}"))
        }
        _ => return Ok(()),
    };
    let now = crate::domain::tenant::truncate_to_seconds(Utc::now());
    super::emails::enqueue(tx, tenant, email, &dedupe, object_id, now).await
}

fn event_from(r: &impl Rec) -> Result<Event, StoreError> {
    Ok(Event {
        id: r.parsed("id", EventId::parse)?,
        object: "event",
        kind: r.text("type")?,
        data: EventData {
            object: r.json("data")?,
        },
        created: r.time("created_at")?,
    })
}

pub async fn list_events(
    tx: &mut Tx,
    tenant: &TenantId,
    kind: Option<&str>,
    page: &Page,
) -> Result<(Vec<Event>, bool), StoreError> {
    let rows = on_tx!(tx, |c| {
        let rows = sqlx::query(
            "SELECT id, type, data, created_at FROM events
             WHERE tenant_id = $1 AND ($2 IS NULL OR type = $2) AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        )
        .bind(tenant.as_str())
        .bind(kind)
        .bind(page.starting_after.as_deref())
        .bind(page.fetch_limit())
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
    let key = request_key();
    let ids: Vec<EventId> = events.iter().map(|_| EventId::generate()).collect();
    for (chunk, chunk_ids) in events.chunks(1000).zip(ids.chunks(1000)) {
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO events (tenant_id, id, type, object_id, data, created_at, request_key) ",
            );
            q.push_values(chunk.iter().zip(chunk_ids), |mut b, (e, id)| {
                b.push_bind(tenant.as_str())
                    .push_bind(id.as_str())
                    .push_bind(e.kind.as_str())
                    .push_bind(e.object_id.as_str())
                    .push_bind(e.data.as_str())
                    .push_bind(e.at)
                    .push_bind(key.as_deref());
            });
            q.build().execute(&mut *c).await?;
        });
    }
    for e in events {
        enqueue_email(tx, tenant, e.kind, &e.object_id, &e.data).await?;
    }
    let queued_at = crate::domain::tenant::truncate_to_seconds(Utc::now());
    let typed: Vec<(&EventId, &str)> = ids
        .iter()
        .zip(events)
        .map(|(id, e)| (id, e.kind.as_str()))
        .collect();
    super::webhooks::fan_out(tx, tenant, &typed, queued_at).await
}
