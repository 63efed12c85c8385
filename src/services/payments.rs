//! Paying invoices on request, and listing payment attempts.

use super::ServiceError;
use crate::domain::customer::Customer;
use crate::domain::ids::InvoiceId;
use crate::domain::invoice::{Invoice, InvoiceStatus};
use crate::domain::payment::Payment;
use crate::domain::subscription::CollectionMethod;
use crate::domain::tenant::Tenant;
use crate::payments::Payments;
use crate::payments::collect::{Scope, collect};
use crate::store::{Db, Page, customers, invoices, payments as store};
use chrono::{DateTime, Utc};

/// `POST /v1/invoices/{id}/pay`: an attempt now, whatever the dunning plan says.
pub async fn pay_invoice(
    db: &Db,
    payments: &Payments,
    tenant: &Tenant,
    id: &InvoiceId,
    now: DateTime<Utc>,
) -> Result<Invoice, ServiceError> {
    let mut tx = db.begin().await?;
    // Locked (PostgreSQL) until the change commits: an outcome or a credit note for this
    // invoice waits instead of being overwritten.
    let mut inv = invoices::find_invoice_headers(&mut tx, &tenant.id, std::slice::from_ref(id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ServiceError::not_found("invoice", id))?;
    match inv.status {
        InvoiceStatus::Open | InvoiceStatus::Uncollectible => {}
        InvoiceStatus::Draft | InvoiceStatus::Paid | InvoiceStatus::Void => {
            return Err(ServiceError::unprocessable(
                "invoice_invalid_state",
                None,
                format!("a {} invoice cannot be paid", inv.status.as_str()),
            ));
        }
    }
    // A `send_invoice` invoice is paid by the customer; `/pay` charges it through the
    // customer's payment method when there is one (as Stripe's does).
    if inv.collection_method == CollectionMethod::SendInvoice
        && customers::payment_methods_of(&mut tx, &tenant.id, std::slice::from_ref(&inv.customer))
            .await?
            .is_empty()
    {
        return Err(ServiceError::unprocessable(
            "payment_method_missing",
            None,
            "this invoice is collected by sending it and the customer has no payment method to charge",
        ));
    }
    inv.next_payment_attempt = Some(now);
    inv.awaiting_payment_method = false;
    invoices::update_collections(&mut tx, &tenant.id, std::slice::from_ref(&inv)).await?;
    tx.commit().await?;
    collect(db, tenant, payments, now, Scope::Invoice(id)).await?;
    let mut tx = db.read().await?;
    let inv = invoices::find_invoice(&mut tx, &tenant.id, id).await?;
    tx.commit().await?;
    inv.ok_or_else(|| ServiceError::not_found("invoice", id))
}

/// A new payment method makes the customer's hard-declined invoices due again at once.
pub async fn retry_with_new_method(
    db: &Db,
    payments: &Payments,
    tenant: &Tenant,
    customer: &Customer,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let mut tx = db.begin().await?;
    let due = invoices::retry_awaiting_method(&mut tx, &tenant.id, &customer.id, now).await?;
    tx.commit().await?;
    if due > 0 {
        collect(db, tenant, payments, now, Scope::Customer(&customer.id)).await?;
    }
    Ok(())
}

pub async fn list_payments(
    db: &Db,
    tenant: &Tenant,
    invoice: Option<&InvoiceId>,
    page: &Page,
) -> Result<(Vec<Payment>, bool), ServiceError> {
    let mut tx = db.read().await?;
    let out = store::list_payments(&mut tx, &tenant.id, invoice, page).await?;
    tx.commit().await?;
    Ok(out)
}
