//! Inbound provider events, deduplicated by the provider's event id.

use super::{StoreError, Tx, on_tx};
use crate::domain::customer::Provider;
use chrono::{DateTime, Utc};

/// Claims an event id inside the caller's transaction: `false` when it was seen before (the
/// caller changes nothing). Concurrent deliveries of one event wait on the primary key and
/// then see it taken.
pub async fn claim(
    tx: &mut Tx,
    provider: Provider,
    event_id: &str,
    kind: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO provider_events (provider, event_id, kind, outcome, received_at) VALUES ($1, $2, $3, 'received', $4)
         ON CONFLICT (provider, event_id) DO NOTHING"
    )
    .bind(provider.as_str())
    .bind(event_id)
    .bind(kind)
    .bind(at)
    .execute(&mut *c)
    .await?
    .rows_affected()
    });
    Ok(n == 1)
}

/// What came of a claimed event (applied, ignored, unmatched), and for which tenant.
pub async fn set_outcome(
    tx: &mut Tx,
    provider: Provider,
    event_id: &str,
    tenant: Option<&str>,
    outcome: &str,
) -> Result<(), StoreError> {
    on_tx!(tx, |c| {
        sqlx::query(
        "UPDATE provider_events SET outcome = $3, tenant_id = $4 WHERE provider = $1 AND event_id = $2"
    )
    .bind(provider.as_str())
    .bind(event_id)
    .bind(outcome)
    .bind(tenant)
    .execute(&mut *c)
    .await?
    .rows_affected()
    });
    Ok(())
}
