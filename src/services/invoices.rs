//! Invoices: reading them, voiding them, writing them off.

use super::ServiceError;
use crate::domain::balance::BalanceTransactionType;
use crate::domain::event::EventType;
use crate::domain::ids::InvoiceId;
use crate::domain::invoice::{Invoice, InvoiceTransitionError};
use crate::domain::tenant::Tenant;
use crate::store::invoices::{self as store, InvoiceFilter};
use crate::store::{Db, Page, events, payments, subscriptions};
use chrono::{DateTime, Utc};

/// A voided invoice gives back what it took from the customer's balance (credit it used, or
/// debt it carried): the balance is locked after the invoice, the documented order.
async fn give_back_balance(
    tx: &mut crate::store::Tx,
    tenant: &Tenant,
    inv: &Invoice,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let used = inv.ending_balance - inv.starting_balance;
    if used == 0 || inv.total < 0 {
        return Ok(());
    }
    super::balances::move_balance(
        tx,
        tenant,
        super::balances::Movement {
            customer: inv.customer.clone(),
            currency: inv.currency,
            amount: -used,
            kind: BalanceTransactionType::InvoiceVoided,
            invoice: Some(inv.id.clone()),
            credit_note: None,
            description: None,
        },
        now,
    )
    .await?;
    Ok(())
}

/// After a void, a past-due or unpaid subscription with nothing else owed is active again:
/// its status follows from what remains unpaid (the subscription is locked after the invoice,
/// the documented order).
async fn restore_subscription(
    tx: &mut crate::store::Tx,
    tenant: &Tenant,
    inv: &Invoice,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let Some(sub_id) = &inv.subscription else {
        return Ok(());
    };
    let Some(mut sub) =
        subscriptions::lock_subscriptions(tx, &tenant.id, std::slice::from_ref(sub_id))
            .await?
            .pop()
    else {
        return Ok(());
    };
    let status = sub.status.after_successful_payment();
    if status == sub.status
        || store::count_open_invoices(tx, &tenant.id, sub_id, &inv.id).await? > 0
    {
        return Ok(());
    }
    sub.status = status;
    subscriptions::update_subscription(tx, &tenant.id, &sub, now).await?;
    events::insert_event(
        tx,
        &tenant.id,
        EventType::CustomerSubscriptionUpdated,
        sub.id.as_str(),
        &sub,
        now,
    )
    .await?;
    Ok(())
}

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

/// The invoice the subscription's next renewal would bill if it were billed now (licensed
/// items, pending prorations, usage so far, discount, tax), as a draft. Writes nothing.
pub async fn upcoming(
    db: &Db,
    tenant: &Tenant,
    sub: &crate::domain::ids::SubscriptionId,
) -> Result<Invoice, ServiceError> {
    let mut tx = db.read().await?;
    let found = subscriptions::find_subscription(&mut tx, &tenant.id, sub).await?;
    let Some(found) = found else {
        tx.commit().await?;
        return Err(ServiceError::missing_in_body(
            "subscription",
            sub,
            "subscription",
        ));
    };
    let preview = crate::billing::run::preview_next(&mut tx, tenant, &found).await?;
    tx.commit().await?;
    match preview {
        Ok(Some(inv)) => Ok(inv),
        Ok(None) => Err(ServiceError::unprocessable(
            "invoice_upcoming_none",
            Some("subscription"),
            "the subscription has no upcoming invoice (it is canceled or ends at its period end)",
        )),
        Err(e) => Err(ServiceError::unprocessable(
            "subscription_unbillable",
            Some("subscription"),
            e,
        )),
    }
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
    // Locked (PostgreSQL) until this commits: a payment outcome or a credit note for the same
    // invoice waits rather than being overwritten, and cannot slip in after the check below.
    if store::find_invoice_headers(&mut tx, &tenant.id, std::slice::from_ref(id))
        .await?
        .is_empty()
    {
        return Err(ServiceError::not_found("invoice", id));
    }
    let mut inv = store::find_invoice(&mut tx, &tenant.id, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("invoice", id))?;
    // A charge in flight may take the money; voiding under it would bill a void invoice.
    if how == Closing::Void
        && !payments::in_flight(&mut tx, &tenant.id, std::slice::from_ref(id))
            .await?
            .is_empty()
    {
        return Err(ServiceError::Conflict {
            code: "payment_in_flight",
            message: "a payment of this invoice is in flight; void it once the payment settles"
                .into(),
            param: None,
        });
    }
    let before = inv.status;
    let kind = match how {
        Closing::Void => {
            inv.status = inv.status.void().map_err(invalid_state)?;
            inv.voided_at = Some(now);
            inv.amount_due = 0;
            // Nothing is owed: dunning stops.
            inv.next_payment_attempt = None;
            inv.awaiting_payment_method = false;
            EventType::InvoiceVoided
        }
        Closing::Uncollectible => {
            inv.status = inv.status.mark_uncollectible().map_err(invalid_state)?;
            inv.marked_uncollectible_at = Some(now);
            EventType::InvoiceMarkedUncollectible
        }
    };
    if !store::update_invoice_status(&mut tx, &tenant.id, &inv, before).await? {
        return Err(ServiceError::Conflict {
            code: "invoice_changed",
            message: "the invoice changed while this request ran; read it again".into(),
            param: None,
        });
    }
    store::update_collections(&mut tx, &tenant.id, std::slice::from_ref(&inv)).await?;
    events::insert_event(&mut tx, &tenant.id, kind, inv.id.as_str(), &inv, now).await?;
    if how == Closing::Void {
        give_back_balance(&mut tx, tenant, &inv, now).await?;
        restore_subscription(&mut tx, tenant, &inv, now).await?;
    }
    tx.commit().await?;
    Ok(inv)
}
