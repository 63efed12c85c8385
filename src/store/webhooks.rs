//! Outbound webhook endpoints, the deliveries events fan out to, and every attempt made.

use super::rows::{Rec, to_json};
use super::{Page, StoreError, Tx, on_tx};
use crate::domain::ids::{EventId, TenantId, WebhookDeliveryId, WebhookEndpointId};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// An endpoint as the API shows it (the secret only once, at creation).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoint {
    pub id: WebhookEndpointId,
    pub object: &'static str,
    pub url: String,
    pub description: Option<String>,
    pub enabled_events: Vec<String>,
    /// `enabled` or `disabled`.
    pub status: String,
    pub disabled_reason: Option<String>,
    pub created: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn endpoint_from(r: &impl Rec) -> Result<Endpoint, StoreError> {
    Ok(Endpoint {
        id: r.parsed("id", WebhookEndpointId::parse)?,
        object: "webhook_endpoint",
        url: r.text("url")?,
        description: r.opt_text("description")?,
        enabled_events: r.json("enabled_events")?,
        status: r.text("status")?,
        disabled_reason: r.opt_text("disabled_reason")?,
        created: r.time("created_at")?,
        secret: None,
    })
}

const ENDPOINT: &str = "SELECT id, url, description, enabled_events, status, disabled_reason, created_at FROM webhook_endpoints";

pub async fn insert_endpoint(
    tx: &mut Tx,
    tenant: &TenantId,
    e: &Endpoint,
    secret: &str,
) -> Result<(), StoreError> {
    let events = to_json(&e.enabled_events)?;
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO webhook_endpoints (tenant_id, id, url, description, enabled_events, secret, status, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'enabled', $7)"
    )
    .bind(tenant.as_str())
    .bind(e.id.as_str())
    .bind(&e.url)
    .bind(e.description.as_deref())
    .bind(&events)
    .bind(secret)
    .bind(e.created)
    .execute(&mut *c)
    .await?
    .rows_affected()
    });
    Ok(())
}

pub async fn find_endpoint(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &WebhookEndpointId,
) -> Result<Option<Endpoint>, StoreError> {
    on_tx!(tx, |c| {
        let sql = sqlx::AssertSqlSafe(format!(
            "{ENDPOINT} WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
        ));
        let row = sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(endpoint_from).transpose()
    })
}

pub async fn list_endpoints(
    tx: &mut Tx,
    tenant: &TenantId,
    page: &Page,
) -> Result<(Vec<Endpoint>, bool), StoreError> {
    let rows = on_tx!(tx, |c| {
        let sql = sqlx::AssertSqlSafe(format!(
            "{ENDPOINT} WHERE tenant_id = $1 AND deleted_at IS NULL AND ($2 IS NULL OR id > $2)
             ORDER BY id LIMIT $3"
        ));
        let rows = sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(page.starting_after.as_deref())
            .bind(page.fetch_limit())
            .fetch_all(&mut *c)
            .await?;
        rows.iter()
            .map(endpoint_from)
            .collect::<Result<Vec<_>, _>>()?
    });
    Ok(page.split(rows))
}

/// Deletes an endpoint (kept for its delivery history, never delivered to again) and drops
/// its pending deliveries. Returns whether it existed.
pub async fn delete_endpoint(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &WebhookEndpointId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| {
        let n = sqlx::query(
            "UPDATE webhook_endpoints SET deleted_at = $3, status = 'disabled', disabled_reason = 'deleted'
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected();
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'canceled'
             WHERE tenant_id = $1 AND endpoint_id = $2 AND status = 'pending'",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .execute(&mut *c)
        .await?;
        n
    });
    Ok(n == 1)
}

/// Adds a delivery of each event to every enabled endpoint of the tenant that subscribes to
/// its type, in the events' transaction (one read of the endpoints, one insert per 1,000).
pub async fn fan_out(
    tx: &mut Tx,
    tenant: &TenantId,
    events: &[(&EventId, &str)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let endpoints: Vec<(String, Vec<String>)> = on_tx!(tx, |c| {
        let rows = sqlx::query(
            "SELECT id, enabled_events FROM webhook_endpoints
             WHERE tenant_id = $1 AND status = 'enabled' AND deleted_at IS NULL",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| Ok((r.text("id")?, r.json("enabled_events")?)))
            .collect::<Result<Vec<_>, StoreError>>()?
    });
    let rows: Vec<(String, &EventId)> = events
        .iter()
        .flat_map(|(event, kind)| {
            endpoints
                .iter()
                .filter(|(_, wanted)| crate::domain::webhook::wants(wanted, kind))
                .map(move |(endpoint, _)| (endpoint.clone(), *event))
        })
        .collect();
    for chunk in rows.chunks(1000) {
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO webhook_deliveries (tenant_id, id, endpoint_id, event_id, status, attempts, next_attempt_at, created_at) ",
            );
            q.push_values(chunk, |mut b, (endpoint, event)| {
                b.push_bind(tenant.as_str())
                    .push_bind(WebhookDeliveryId::generate().to_string())
                    .push_bind(endpoint.as_str())
                    .push_bind(event.as_str())
                    .push_bind("pending")
                    .push_bind(0_i64)
                    .push_bind(now)
                    .push_bind(now);
            });
            q.push(" ON CONFLICT (tenant_id, endpoint_id, event_id) DO NOTHING");
            q.build().execute(&mut *c).await?;
        });
    }
    Ok(())
}

/// A delivery due, with what sending it takes.
#[derive(Debug, Clone)]
pub struct Due {
    pub tenant: TenantId,
    pub id: WebhookDeliveryId,
    pub endpoint: WebhookEndpointId,
    pub url: String,
    /// The signing secret as stored: sealed (open it with the vault).
    pub secret: String,
    pub event: EventId,
    pub event_type: String,
    pub body: String,
    pub event_created: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub failing_since: Option<DateTime<Utc>>,
}

/// Pending deliveries of enabled endpoints due by `now`, oldest first.
pub async fn due(tx: &mut Tx, now: DateTime<Utc>, limit: i64) -> Result<Vec<Due>, StoreError> {
    on_tx!(tx, |c| {
        let rows = sqlx::query(
            "SELECT d.tenant_id, d.id, d.endpoint_id, e.url, e.secret, d.event_id, v.type, v.data,
                    v.created_at AS event_created, d.attempts, d.next_attempt_at, e.failing_since
             FROM webhook_deliveries d
             JOIN webhook_endpoints e ON e.tenant_id = d.tenant_id AND e.id = d.endpoint_id
             JOIN events v ON v.tenant_id = d.tenant_id AND v.id = d.event_id
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND e.status = 'enabled'
             ORDER BY d.next_attempt_at, d.id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Due {
                    tenant: r.parsed("tenant_id", TenantId::parse)?,
                    id: r.parsed("id", WebhookDeliveryId::parse)?,
                    endpoint: r.parsed("endpoint_id", WebhookEndpointId::parse)?,
                    url: r.text("url")?,
                    secret: r.text("secret")?,
                    event: r.parsed("event_id", EventId::parse)?,
                    event_type: r.text("type")?,
                    body: r.text("data")?,
                    event_created: r.time("event_created")?,
                    attempts: u32::try_from(r.int("attempts")?).unwrap_or(u32::MAX),
                    next_attempt_at: r.time("next_attempt_at")?,
                    failing_since: r.opt_time("failing_since")?,
                })
            })
            .collect()
    })
}

/// Takes a due delivery for one attempt (compare and set on its time) while its endpoint is
/// enabled, holding it until `lease_until`; whether this worker got it.
pub async fn claim(tx: &mut Tx, d: &Due, lease_until: DateTime<Utc>) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| sqlx::query(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $4
         WHERE tenant_id = $1 AND id = $2 AND status = 'pending' AND next_attempt_at = $3
           AND EXISTS (SELECT 1 FROM webhook_endpoints e
                       WHERE e.tenant_id = webhook_deliveries.tenant_id
                         AND e.id = webhook_deliveries.endpoint_id AND e.status = 'enabled')"
    )
    .bind(d.tenant.as_str())
    .bind(d.id.as_str())
    .bind(d.next_attempt_at)
    .bind(lease_until)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// How one attempt went.
pub struct Outcome<'a> {
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub error: Option<&'a str>,
    pub duration_ms: i64,
    /// `succeeded`, `failed` (given up) or `pending` (tried again at `retry_at`).
    pub status: &'static str,
    pub retry_at: DateTime<Utc>,
}

/// Records the attempt and the delivery's new state, while this worker's lease holds;
/// whether it did.
pub async fn finish(
    tx: &mut Tx,
    d: &Due,
    lease_until: DateTime<Utc>,
    o: &Outcome<'_>,
) -> Result<bool, StoreError> {
    on_tx!(tx, |c| {
        let n = sqlx::query(
            "UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, last_status_code = $5,
                    last_error = $6, delivered_at = CASE WHEN $3 = 'succeeded' THEN $7 ELSE delivered_at END
             WHERE tenant_id = $1 AND id = $2 AND status = 'pending' AND next_attempt_at = $8",
        )
        .bind(d.tenant.as_str())
        .bind(d.id.as_str())
        .bind(o.status)
        .bind(o.retry_at)
        .bind(o.status_code.map(i64::from))
        .bind(o.error)
        .bind(o.at)
        .bind(lease_until)
        .execute(&mut *c)
        .await?
        .rows_affected();
        if n == 1 {
            sqlx::query(
                "INSERT INTO webhook_attempts (tenant_id, delivery_id, attempt, attempted_at, status_code, error, duration_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(d.tenant.as_str())
            .bind(d.id.as_str())
            .bind(i64::from(o.attempt))
            .bind(o.at)
            .bind(o.status_code.map(i64::from))
            .bind(o.error)
            .bind(o.duration_ms)
            .execute(&mut *c)
            .await?;
        }
        Ok(n == 1)
    })
}

/// Records an endpoint's health after an attempt: a success clears `failing_since`, a failure
/// sets it if unset.
pub async fn endpoint_health(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &WebhookEndpointId,
    ok: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let sql = if ok {
        "UPDATE webhook_endpoints SET failing_since = NULL
         WHERE tenant_id = $1 AND id = $2 AND failing_since IS NOT NULL AND failing_since <= $3"
    } else {
        "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $3)
         WHERE tenant_id = $1 AND id = $2"
    };
    on_tx!(tx, |c| sqlx::query(sql)
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected());
    Ok(())
}

/// Disables an endpoint still enabled; whether this call did.
pub async fn disable(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &WebhookEndpointId,
    reason: &str,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| sqlx::query(
        "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $3
         WHERE tenant_id = $1 AND id = $2 AND status = 'enabled'"
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .bind(reason)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// A delivery with its attempts, as `GET /v1/webhook_endpoints/{id}/deliveries` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: WebhookDeliveryId,
    pub object: &'static str,
    pub endpoint: WebhookEndpointId,
    pub event: EventId,
    pub event_type: String,
    /// `pending`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    pub attempts: Vec<Attempt>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

pub async fn list_deliveries(
    tx: &mut Tx,
    tenant: &TenantId,
    endpoint: &WebhookEndpointId,
    page: &Page,
) -> Result<(Vec<Delivery>, bool), StoreError> {
    let (mut found, more) = on_tx!(tx, |c| {
        let rows = sqlx::query(
            "SELECT d.id, d.endpoint_id, d.event_id, v.type, d.status, d.next_attempt_at, d.created_at, d.delivered_at
             FROM webhook_deliveries d JOIN events v ON v.tenant_id = d.tenant_id AND v.id = d.event_id
             WHERE d.tenant_id = $1 AND d.endpoint_id = $2 AND ($3 IS NULL OR d.id < $3)
             ORDER BY d.id DESC LIMIT $4",
        )
        .bind(tenant.as_str())
        .bind(endpoint.as_str())
        .bind(page.starting_after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&mut *c)
        .await?;
        let all = rows
            .iter()
            .map(|r| {
                let status = r.text("status")?;
                Ok(Delivery {
                    id: r.parsed("id", WebhookDeliveryId::parse)?,
                    object: "webhook_delivery",
                    endpoint: r.parsed("endpoint_id", WebhookEndpointId::parse)?,
                    event: r.parsed("event_id", EventId::parse)?,
                    event_type: r.text("type")?,
                    next_attempt_at: if status == "pending" {
                        Some(r.time("next_attempt_at")?)
                    } else {
                        None
                    },
                    status,
                    attempts: Vec::new(),
                    created: r.time("created_at")?,
                    delivered_at: r.opt_time("delivered_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        page.split(all)
    });
    if found.is_empty() {
        return Ok((found, more));
    }
    // The page's attempts in one query.
    let attempts = on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT delivery_id, attempted_at, status_code, error, duration_ms FROM webhook_attempts
             WHERE tenant_id = ",
        );
        q.push_bind(tenant.as_str()).push(" AND delivery_id IN ");
        super::push_id_list(&mut q, found.iter().map(|d| d.id.as_str()));
        q.push(" ORDER BY delivery_id, attempt");
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.text("delivery_id")?,
                    Attempt {
                        attempted_at: r.time("attempted_at")?,
                        status_code: r.opt_int("status_code")?,
                        error: r.opt_text("error")?,
                        duration_ms: r.int("duration_ms")?,
                    },
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?
    });
    for (delivery, attempt) in attempts {
        if let Some(d) = found.iter_mut().find(|d| d.id.as_str() == delivery) {
            d.attempts.push(attempt);
        }
    }
    Ok((found, more))
}

/// Queues a delivery again (a resend asked for by the API): pending now, its attempts kept.
/// Whether the delivery exists for that endpoint.
pub async fn resend(
    tx: &mut Tx,
    tenant: &TenantId,
    endpoint: &WebhookEndpointId,
    id: &WebhookDeliveryId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $4
         WHERE tenant_id = $1 AND endpoint_id = $2 AND id = $3"
    )
    .bind(tenant.as_str())
    .bind(endpoint.as_str())
    .bind(id.as_str())
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// Endpoint signing secrets as stored, a page at a time in (tenant, id) order after `after`:
/// for `recur secrets rotate`.
pub async fn endpoint_secrets(
    tx: &mut Tx,
    after: Option<(&TenantId, &WebhookEndpointId)>,
    limit: i64,
) -> Result<Vec<(TenantId, WebhookEndpointId, String)>, StoreError> {
    let rows: Vec<(String, String, String)> = on_tx!(tx, |c| sqlx::query_as(
        "SELECT tenant_id, id, secret FROM webhook_endpoints
         WHERE $1 IS NULL OR tenant_id > $1 OR (tenant_id = $1 AND id > $2)
         ORDER BY tenant_id, id LIMIT $3"
    )
    .bind(after.map(|(t, _)| t.as_str()))
    .bind(after.map(|(_, e)| e.as_str()))
    .bind(limit)
    .fetch_all(&mut *c)
    .await?);
    rows.into_iter()
        .map(|(t, e, s)| {
            Ok((
                TenantId::parse(&t).map_err(|e| super::rows::corrupt("tenant_id", e))?,
                WebhookEndpointId::parse(&e).map_err(|e| super::rows::corrupt("id", e))?,
                s,
            ))
        })
        .collect()
}

/// Replaces an endpoint's stored secret (re-sealed) if it is still `before`.
pub async fn reseal_endpoint_secret(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &WebhookEndpointId,
    before: &str,
    sealed: &str,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| {
        sqlx::query(
        "UPDATE webhook_endpoints SET secret = $4 WHERE tenant_id = $1 AND id = $2 AND secret = $3"
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .bind(before)
    .bind(sealed)
    .execute(&mut *c)
    .await?
    .rows_affected()
    });
    Ok(n == 1)
}
