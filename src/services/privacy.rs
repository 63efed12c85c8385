//! A person's rights over their data (GDPR): erasure (`POST /v1/customers/{id}/erase`) and
//! access (`GET /v1/customers/{id}/data_export`). What is kept where is in docs/PRIVACY.md.

use super::ServiceError;
use crate::billing::cycle::CancelOptions;
use crate::domain::event::EventType;
use crate::domain::ids::CustomerId;
use crate::domain::subscription::SubscriptionStatus;
use crate::domain::tenant::Tenant;
use crate::store::{Db, Page, events, privacy as store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::future::Future;

/// Event payloads rewritten per transaction.
const SCRUB_BATCH: i64 = 200;

/// The refusal for a change to an erased customer.
pub(super) fn erased(id: &CustomerId) -> ServiceError {
    ServiceError::unprocessable(
        "customer_erased",
        None,
        format!("customer {id} was erased; it can no longer be changed or subscribed"),
    )
}

/// What an erasure did.
#[derive(Debug, Serialize)]
pub struct Erasure {
    pub id: CustomerId,
    pub object: &'static str,
    pub erased_at: DateTime<Utc>,
    pub subscriptions_canceled: usize,
    pub events_scrubbed: usize,
    pub emails_skipped: u64,
    pub email_files_removed: usize,
}

/// Erases a customer's personal data. First, in one transaction, its row is emptied and
/// marked `erased_at` (from then on nothing can change or subscribe it, so nothing new about
/// it is written), settled attempts lose the payment method, credit-note memos and balance
/// descriptions become `[erased]`, its invoices' hosted pages are unpublished (the stored PDFs
/// stay, as issued, as tax law requires), pending e-mails about it are skipped, and
/// `customer.erased` is recorded with the id and time only. Then its subscriptions are
/// canceled at once (no final invoice, no proration), the personal fields of every event and
/// stored idempotent answer that name it are nulled (webhook deliveries read the event, so
/// later ones carry the nulls; a retried request is still answered, not run again), and the
/// `.eml` copies of its e-mails are removed.
///
/// Every step can run again: a run cut short is finished by the next call; an erased
/// customer keeps its first `erased_at`.
pub async fn erase_customer(
    db: &Db,
    config: &crate::config::Config,
    tenant: &Tenant,
    id: &CustomerId,
    now: DateTime<Utc>,
) -> Result<Erasure, ServiceError> {
    super::customers::get_customer(db, tenant, id).await?;
    let mut tx = db.begin().await?;
    if store::erase_customer_row(&mut tx, &tenant.id, id, now).await? {
        events::insert_event(
            &mut tx,
            &tenant.id,
            EventType::CustomerErased,
            id.as_str(),
            &serde_json::json!({ "id": id, "object": "customer", "erased_at": now }),
            now,
        )
        .await?;
    }
    store::erase_customer_traces(&mut tx, &tenant.id, id).await?;
    let skipped = store::skip_pending_emails(&mut tx, &tenant.id, id).await?;
    let erased_at = store::erased_at(&mut tx, &tenant.id, id)
        .await?
        .unwrap_or(now);
    tx.commit().await?;

    let subs = all(|page| async move {
        let filter = crate::store::subscriptions::SubscriptionFilter {
            customer: Some(id.clone()),
            ..Default::default()
        };
        super::subscriptions::list_subscriptions(db, tenant, &filter, &page).await
    })
    .await?;
    let mut canceled = 0;
    for sub in subs
        .iter()
        .filter(|s| s.status != SubscriptionStatus::Canceled)
    {
        let options = CancelOptions {
            invoice_now: false,
            prorate: false,
        };
        super::subscriptions::cancel_subscription(db, tenant, &sub.id, false, options, now).await?;
        canceled += 1;
    }
    let scrubbed = scrub_events(db, tenant, id).await?;
    let mut tx = db.begin().await?;
    for (key, body) in store::responses_naming(&mut tx, &tenant.id, id.as_str()).await? {
        if let Ok(mut value) = serde_json::from_str::<Value>(&body)
            && crate::domain::privacy::scrub(&mut value)
        {
            store::set_response(&mut tx, &tenant.id, &key, &value.to_string()).await?;
        }
    }
    let emails = store::emails_of(&mut tx, &tenant.id, id).await?;
    tx.commit().await?;

    let dir = config.email.dir.join(tenant.id.as_str());
    let removed = emails
        .iter()
        .filter(|e| std::fs::remove_file(dir.join(format!("{e}.eml"))).is_ok())
        .count();
    tracing::info!(tenant.id = %tenant.id, customer.id = %id, subscriptions = canceled, events = scrubbed, "customer erased");
    Ok(Erasure {
        id: id.clone(),
        object: "customer_erasure",
        erased_at,
        subscriptions_canceled: canceled,
        events_scrubbed: scrubbed,
        emails_skipped: skipped,
        email_files_removed: removed,
    })
}

/// Nulls the personal fields of every event naming the customer, a batch per transaction.
async fn scrub_events(db: &Db, tenant: &Tenant, id: &CustomerId) -> Result<usize, ServiceError> {
    let mut after: Option<String> = None;
    let mut scrubbed = 0;
    loop {
        let mut tx = db.begin().await?;
        let rows = store::events_naming(
            &mut tx,
            &tenant.id,
            id.as_str(),
            after.as_deref(),
            SCRUB_BATCH,
        )
        .await?;
        let Some((last, _)) = rows.last() else {
            tx.commit().await?;
            return Ok(scrubbed);
        };
        after = Some(last.clone());
        for (event, data) in &rows {
            let Ok(mut value) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if crate::domain::privacy::scrub(&mut value) {
                store::set_event_data(&mut tx, &tenant.id, event, &value.to_string()).await?;
                scrubbed += 1;
            }
        }
        tx.commit().await?;
    }
}

/// Everything recur holds about one customer, as one JSON document (right of access).
#[derive(Debug, Serialize)]
pub struct DataExport {
    pub object: &'static str,
    pub generated_at: DateTime<Utc>,
    pub customer: crate::domain::customer::Customer,
    pub subscriptions: Vec<crate::domain::subscription::Subscription>,
    pub invoices: Vec<crate::domain::invoice::Invoice>,
    pub payments: Vec<crate::domain::payment::Payment>,
    pub credit_notes: Vec<crate::domain::credit_note::CreditNote>,
    pub balance_transactions: Vec<crate::domain::balance::BalanceTransaction>,
    /// Every event that names the customer: its history as recorded.
    pub events: Vec<Value>,
}

/// The customer's data. It is read a page at a time, but answered as one document: one
/// person's history, not a tenant's.
pub async fn export_customer(
    db: &Db,
    tenant: &Tenant,
    id: &CustomerId,
    now: DateTime<Utc>,
) -> Result<DataExport, ServiceError> {
    let customer = super::customers::get_customer(db, tenant, id).await?;
    let subscriptions = all(|page| async move {
        let filter = crate::store::subscriptions::SubscriptionFilter {
            customer: Some(id.clone()),
            ..Default::default()
        };
        super::subscriptions::list_subscriptions(db, tenant, &filter, &page).await
    })
    .await?;
    let invoices = all(|page| async move {
        let filter = crate::store::invoices::InvoiceFilter {
            customer: Some(id.clone()),
            subscription: None,
            status: None,
        };
        super::invoices::list_invoices(db, tenant, &filter, &page).await
    })
    .await?;
    let mut payments = Vec::new();
    let mut credit_notes = Vec::new();
    for inv in &invoices {
        let invoice = &inv.id;
        payments.extend(
            all(|page| async move {
                super::payments::list_payments(db, tenant, Some(invoice), &page).await
            })
            .await?,
        );
        credit_notes.extend(
            all(|page| async move {
                crate::payments::refunds::list_credit_notes(db, tenant, Some(invoice), &page).await
            })
            .await?,
        );
    }
    let balance_transactions = all(|page| async move {
        super::customers::list_balance_transactions(db, tenant, id, &page).await
    })
    .await?;
    let mut events = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut tx = db.read().await?;
        let rows = store::events_naming(
            &mut tx,
            &tenant.id,
            id.as_str(),
            after.as_deref(),
            SCRUB_BATCH,
        )
        .await?;
        tx.commit().await?;
        let Some((last, _)) = rows.last() else { break };
        after = Some(last.clone());
        events.extend(rows.into_iter().map(|(event, data)| {
            serde_json::json!({
                "id": event,
                "data": serde_json::from_str::<Value>(&data).unwrap_or(Value::String(data)),
            })
        }));
    }
    Ok(DataExport {
        object: "customer_data_export",
        generated_at: now,
        customer,
        subscriptions,
        invoices,
        payments,
        credit_notes,
        balance_transactions,
        events,
    })
}

/// Every row of a list, following `starting_after` a page of 100 at a time.
async fn all<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, ServiceError>
where
    T: Serialize,
    F: FnMut(Page) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, bool), ServiceError>>,
{
    let mut out: Vec<T> = Vec::new();
    let mut starting_after = None;
    loop {
        let (rows, more) = fetch(Page {
            limit: 100,
            starting_after,
        })
        .await?;
        let last = rows
            .last()
            .and_then(|r| serde_json::to_value(r).ok())
            .and_then(|v| v["id"].as_str().map(str::to_owned));
        out.extend(rows);
        match (more, last) {
            (true, Some(id)) => starting_after = Some(id),
            (true, None) | (false, _) => return Ok(out),
        }
    }
}

/// Issued documents kept after their customer is erased, unless the tenant sets another period.
pub const DEFAULT_RETENTION_YEARS: i64 = 10;

/// The tenant's retention period in years.
pub async fn retention(db: &Db, tenant: &Tenant) -> Result<i64, ServiceError> {
    let mut tx = db.read().await?;
    let years = store::retention_years(&mut tx, &tenant.id).await?;
    tx.commit().await?;
    Ok(years.unwrap_or(DEFAULT_RETENTION_YEARS))
}

/// Sets the retention period (1 to 30 years; `None`: the default), with an event.
pub async fn set_retention(
    db: &Db,
    tenant: &Tenant,
    years: Option<i64>,
    now: DateTime<Utc>,
) -> Result<i64, ServiceError> {
    if let Some(y) = years
        && !(1..=30).contains(&y)
    {
        return Err(ServiceError::invalid(
            "years",
            "years must be between 1 and 30 (tax law asks for 5 to 10 in most countries)",
        ));
    }
    let mut tx = db.begin().await?;
    store::set_retention_years(&mut tx, &tenant.id, years).await?;
    let effective = years.unwrap_or(DEFAULT_RETENTION_YEARS);
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::TenantRetentionUpdated,
        tenant.id.as_str(),
        &serde_json::json!({ "object": "retention", "years": effective, "default": years.is_none() }),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(effective)
}

/// What one retention purge removed.
#[derive(Debug, Default, Serialize)]
pub struct Purged {
    pub invoices: usize,
    pub credit_notes: usize,
}

/// Removes the stored PDFs of erased customers' invoices and credit notes issued longer ago
/// than the tenant's retention period (by its clock), a batch per transaction; each is marked
/// `document_purged_at` and recorded in a `documents.purged` event (ids only). The rows, their
/// numbers, amounts and the documents' hashes stay. Run by the scheduler; safe to run again
/// (a file already gone is simply marked).
pub async fn purge_expired(
    db: &Db,
    config: &crate::config::Config,
    tenant: &Tenant,
    now: DateTime<Utc>,
) -> Result<Purged, ServiceError> {
    let years = retention(db, tenant).await?;
    let months = u32::try_from(years * 12).unwrap_or(u32::MAX);
    let Some(before) = now.checked_sub_months(chrono::Months::new(months)) else {
        return Ok(Purged::default());
    };
    let dir = &config.documents.dir;
    let mut out = Purged::default();
    loop {
        let mut tx = db.read().await?;
        let batch = store::expired_documents(&mut tx, &tenant.id, before, 100).await?;
        tx.commit().await?;
        if batch.is_empty() {
            return Ok(out);
        }
        for doc in &batch {
            for path in [
                super::documents::stored_path(dir, &tenant.id, &doc.id, &doc.sha256),
                dir.join(tenant.id.as_str()).join(format!("{}.pdf", doc.id)),
            ] {
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(ServiceError::Document(format!("{}: {e}", path.display())));
                }
            }
        }
        let mut tx = db.begin().await?;
        let mut marked = Vec::with_capacity(batch.len());
        for doc in &batch {
            if store::mark_purged(&mut tx, &tenant.id, doc, now).await? {
                marked.push(doc);
            }
        }
        if marked.is_empty() {
            tx.commit().await?;
            continue;
        }
        let ids = |table: &str| {
            marked
                .iter()
                .filter(|d| d.table == table)
                .map(|d| d.id.clone())
                .collect::<Vec<_>>()
        };
        let (invoices, credit_notes) = (ids("invoices"), ids("credit_notes"));
        events::insert_event(
            &mut tx,
            &tenant.id,
            EventType::DocumentsPurged,
            tenant.id.as_str(),
            &serde_json::json!({ "object": "purge", "retention_years": years,
                "invoices": invoices, "credit_notes": credit_notes }),
            now,
        )
        .await?;
        tx.commit().await?;
        out.invoices += invoices.len();
        out.credit_notes += credit_notes.len();
        tracing::info!(tenant.id = %tenant.id, invoices = invoices.len(), credit_notes = credit_notes.len(), "documents purged after the retention period");
    }
}

/// The refusal for a document whose PDF was purged, when it was.
pub async fn refuse_purged(
    db: &Db,
    tenant: &crate::domain::ids::TenantId,
    table: &'static str,
    id: &str,
) -> Result<(), ServiceError> {
    let mut tx = db.read().await?;
    let purged = store::document_purged_at(&mut tx, tenant, table, id).await?;
    tx.commit().await?;
    match purged {
        Some(at) => Err(ServiceError::unprocessable(
            "document_purged",
            None,
            format!(
                "the PDF of {id} was removed on {} after the retention period of its erased customer; its amounts stay in the records",
                at.format("%Y-%m-%d")
            ),
        )),
        None => Ok(()),
    }
}
