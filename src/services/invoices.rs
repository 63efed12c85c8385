//! Invoices: reading them, voiding them, writing them off.

use super::ServiceError;
use crate::domain::ids::InvoiceId;
use crate::domain::invoice::{Invoice, InvoiceTransitionError};
use crate::domain::tenant::Tenant;
use crate::store::invoices::{self as store, InvoiceFilter};
use crate::store::{Db, Page, events};
use chrono::{DateTime, Utc};

pub async fn get_invoice(
    db: &Db,
    tenant: &Tenant,
    id: &InvoiceId,
) -> Result<Invoice, ServiceError> {
    let mut tx = db.read().await?;
    let found = store::find_invoice(&mut tx, &tenant.id, id).await?;
    tx.commit().await?;
    found.ok_or_else(|| ServiceError::not_found("invoice", id))
}

pub async fn list_invoices(
    db: &Db,
    tenant: &Tenant,
    filter: &InvoiceFilter,
    page: &Page,
) -> Result<(Vec<Invoice>, bool), ServiceError> {
    let mut tx = db.read().await?;
    let out = store::list_invoices(&mut tx, &tenant.id, filter, page).await?;
    tx.commit().await?;
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    Void,
    Uncollectible,
}

fn invalid_state(e: InvoiceTransitionError) -> ServiceError {
    ServiceError::unprocessable("invoice_invalid_state", None, e)
}

/// Voids an invoice (it keeps its number; nothing is owed) or writes it off as uncollectible.
pub async fn close_invoice(
    db: &Db,
    tenant: &Tenant,
    id: &InvoiceId,
    how: Closing,
    now: DateTime<Utc>,
) -> Result<Invoice, ServiceError> {
    let mut tx = db.begin().await?;
    let mut inv = store::find_invoice(&mut tx, &tenant.id, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("invoice", id))?;
    let before = inv.status;
    let kind = match how {
        Closing::Void => {
            inv.status = inv.status.void().map_err(invalid_state)?;
            inv.voided_at = Some(now);
            inv.amount_due = 0;
            "invoice.voided"
        }
        Closing::Uncollectible => {
            inv.status = inv.status.mark_uncollectible().map_err(invalid_state)?;
            inv.marked_uncollectible_at = Some(now);
            "invoice.marked_uncollectible"
        }
    };
    if !store::update_invoice_status(&mut tx, &tenant.id, &inv, before).await? {
        return Err(ServiceError::Conflict {
            code: "invoice_changed",
            message: "the invoice changed while this request ran; read it again".into(),
            param: None,
        });
    }
    events::insert_event(&mut tx, &tenant.id, kind, inv.id.as_str(), &inv, now).await?;
    tx.commit().await?;
    Ok(inv)
}
