//! Finance exports, streamed: the records of a window are read a batch at a time from a
//! `(time, id)` cursor, each batch in its own short read transaction, turned into rows and
//! handed to `out` as bytes. Memory is one batch whatever the size of the export; when the
//! receiver is gone (the client hung up) the reading stops.

use super::ServiceError;
use crate::domain::customer::Customer;
use crate::domain::ids::{CustomerId, InvoiceId, TenantId};
use crate::domain::invoice::Invoice;
use crate::exports::{self, Encoder, Kind};
use crate::store::{Db, Tx, credit_notes, customers, invoices, payments};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use tokio::sync::mpsc::Sender;

/// Records read per batch.
const BATCH: i64 = 500;

/// A chunk of the export, or the error that cut it short.
pub type Chunk = Result<Vec<u8>, String>;

fn encoding(e: csv::Error) -> ServiceError {
    ServiceError::Document(format!("export: {e}"))
}

async fn customers_of(
    tx: &mut Tx,
    tenant: &TenantId,
    ids: impl Iterator<Item = CustomerId>,
) -> Result<HashMap<CustomerId, Customer>, ServiceError> {
    let ids: Vec<CustomerId> = ids.collect::<HashSet<_>>().into_iter().collect();
    Ok(customers::customers_by_ids(tx, tenant, &ids)
        .await?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect())
}

async fn invoices_of(
    tx: &mut Tx,
    tenant: &TenantId,
    ids: impl Iterator<Item = InvoiceId>,
) -> Result<HashMap<InvoiceId, Invoice>, ServiceError> {
    let ids: Vec<InvoiceId> = ids.collect::<HashSet<_>>().into_iter().collect();
    Ok(invoices::find_invoice_headers(tx, tenant, &ids)
        .await?
        .into_iter()
        .map(|i| (i.id.clone(), i))
        .collect())
}

/// Hands what the encoder holds to the receiver; `false` when nobody listens any more.
pub(super) async fn flush(enc: &mut Encoder, out: &Sender<Chunk>) -> Result<bool, ServiceError> {
    let bytes = enc.take().map_err(encoding)?;
    Ok(bytes.is_empty() || out.send(Ok(bytes)).await.is_ok())
}

/// Writes the tenant's rows of `kind` in `window` through `enc` into `out`, batch by batch.
/// Returns the number of rows, or stops early (without error) when `out` is closed.
pub async fn export_rows(
    db: &Db,
    tenant: &TenantId,
    kind: Kind,
    window: (DateTime<Utc>, DateTime<Utc>),
    tz: chrono_tz::Tz,
    enc: &mut Encoder,
    out: &Sender<Chunk>,
) -> Result<u64, ServiceError> {
    let t = tenant.as_str();
    let mut rows = 0_u64;
    match kind {
        Kind::Journal => Ok(super::journal::write(db, tenant, window, tz, enc, out)
            .await?
            .unwrap_or(0)),
        Kind::Invoices | Kind::InvoiceLines => {
            let mut cursor = None;
            loop {
                let mut tx = db.read().await?;
                let lines = kind == Kind::InvoiceLines;
                let batch = invoices::finalized_between(
                    &mut tx,
                    tenant,
                    window,
                    cursor.as_ref(),
                    BATCH,
                    lines,
                )
                .await?;
                let who =
                    customers_of(&mut tx, tenant, batch.iter().map(|i| i.customer.clone())).await?;
                tx.commit().await?;
                for inv in &batch {
                    let c = who.get(&inv.customer);
                    if lines {
                        for row in exports::line_rows(t, inv, c) {
                            enc.row(&row).map_err(encoding)?;
                            rows += 1;
                        }
                    } else {
                        enc.row(&exports::invoice_row(t, inv, c))
                            .map_err(encoding)?;
                        rows += 1;
                    }
                }
                if !flush(enc, out).await? {
                    return Ok(rows);
                }
                match batch.last() {
                    Some(last) if batch.len() as i64 == BATCH => {
                        cursor = last.finalized_at.map(|at| (at, last.id.clone()));
                    }
                    _ => return Ok(rows),
                }
            }
        }
        Kind::Payments => {
            let mut cursor = None;
            loop {
                let mut tx = db.read().await?;
                let batch =
                    payments::made_between(&mut tx, tenant, window, cursor.as_ref(), BATCH).await?;
                let invs =
                    invoices_of(&mut tx, tenant, batch.iter().map(|p| p.invoice.clone())).await?;
                let who = customers_of(&mut tx, tenant, invs.values().map(|i| i.customer.clone()))
                    .await?;
                tx.commit().await?;
                for p in &batch {
                    let inv = invs.get(&p.invoice);
                    let c = inv.and_then(|i| who.get(&i.customer));
                    enc.row(&exports::payment_row(t, p, inv, c))
                        .map_err(encoding)?;
                    rows += 1;
                }
                if !flush(enc, out).await? {
                    return Ok(rows);
                }
                match batch.last() {
                    Some(last) if batch.len() as i64 == BATCH => {
                        cursor = Some((last.created, last.id.clone()));
                    }
                    _ => return Ok(rows),
                }
            }
        }
        Kind::CreditNotes => {
            let mut cursor = None;
            loop {
                let mut tx = db.read().await?;
                let batch =
                    credit_notes::issued_between(&mut tx, tenant, window, cursor.as_ref(), BATCH)
                        .await?;
                let invs =
                    invoices_of(&mut tx, tenant, batch.iter().map(|n| n.invoice.clone())).await?;
                let who =
                    customers_of(&mut tx, tenant, batch.iter().map(|n| n.customer.clone())).await?;
                tx.commit().await?;
                for n in &batch {
                    let row =
                        exports::credit_note_row(t, n, invs.get(&n.invoice), who.get(&n.customer));
                    enc.row(&row).map_err(encoding)?;
                    rows += 1;
                }
                if !flush(enc, out).await? {
                    return Ok(rows);
                }
                match batch.last() {
                    Some(last) if batch.len() as i64 == BATCH => {
                        cursor = Some((last.created, last.id.clone()));
                    }
                    _ => return Ok(rows),
                }
            }
        }
    }
}

/// A whole export for the given tenants into `out`: the header once, then every tenant's
/// rows; an error is sent as the last chunk so the receiver can cut its output short.
pub async fn export(
    db: &Db,
    tenants: &[TenantId],
    kind: Kind,
    format: exports::Format,
    window: (DateTime<Utc>, DateTime<Utc>),
    tz: chrono_tz::Tz,
    out: Sender<Chunk>,
) -> u64 {
    let run = async {
        let mut enc = Encoder::new(kind, format).map_err(encoding)?;
        if !flush(&mut enc, &out).await? {
            return Ok(0);
        }
        let mut rows = 0;
        for t in tenants {
            rows += export_rows(db, t, kind, window, tz, &mut enc, &out).await?;
        }
        Ok::<_, ServiceError>(rows)
    };
    match run.await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(export = kind.as_str(), error = %e, "export failed");
            let _ = out.send(Err(e.to_string())).await;
            0
        }
    }
}
