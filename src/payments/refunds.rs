//! Credit notes and the refunds they carry. Like a charge, a refund commits first (the note,
//! its own idempotency key `{note}-refund`, the invoice's refunded amount reserved) and calls
//! the provider after; a refund without a definite answer stays `pending` and is sent again
//! with the same key by the next collection pass. Refunds never exceed what was paid: the
//! invoice is written with a compare-and-set on its credit fields, so concurrent notes cannot
//! both pass the check.

use super::{Payments, RefundRequest, RefundResult};
use crate::domain::balance::BalanceTransactionType;
use crate::domain::credit_note::{self, Credit, CreditNote, Reason, RefundStatus};
use crate::domain::event::EventType;
use crate::domain::ids::{CreditNoteId, InvoiceId};
use crate::domain::invoice::{Invoice, InvoiceStatus};
use crate::domain::payment::{AttemptStatus, Payment};
use crate::domain::tenant::Tenant;
use crate::services::ServiceError;
use crate::store::events::insert_event;
use crate::store::{
    Db, Page, StoreError, Tx, credit_notes as notes, invoices, payments as attempts,
};
use chrono::{DateTime, Utc};

/// Refunds without a definite answer are re-sent with their key only this long.
const KEY_LIFETIME: chrono::Duration = chrono::Duration::hours(23);

/// How long a refund accepted as pending waits for its webhook before recur asks.
const WEBHOOK_GRACE: chrono::Duration = chrono::Duration::hours(1);

pub struct NewCreditNote {
    pub invoice: InvoiceId,
    pub credit: Credit,
    pub reason: Reason,
    pub memo: Option<String>,
    /// Where the money of a note on a paid invoice goes.
    pub settle: credit_note::Settle,
}

/// `POST /v1/credit_notes`.
pub async fn create_credit_note(
    db: &Db,
    payments: &Payments,
    tenant: &Tenant,
    new: NewCreditNote,
    now: DateTime<Utc>,
) -> Result<CreditNote, ServiceError> {
    let mut tx = db.begin().await?;
    let inv = invoices::find_invoice(&mut tx, &tenant.id, &new.invoice)
        .await?
        .ok_or_else(|| ServiceError::MissingResource {
            kind: "invoice",
            id: new.invoice.to_string(),
            param: Some("invoice".into()),
        })?;
    let earlier = notes::notes_of_invoice(&mut tx, &tenant.id, &inv.id).await?;
    let (paid, _) = attempts::list_payments(
        &mut tx,
        &tenant.id,
        Some(&inv.id),
        &Page {
            limit: 100,
            starting_after: None,
        },
    )
    .await?;
    if paid
        .iter()
        .any(|p| matches!(p.status, AttemptStatus::Pending | AttemptStatus::Unknown))
    {
        return Err(ServiceError::Conflict {
            code: "payment_in_flight",
            message: "a payment of this invoice is in flight; credit it once it settles".into(),
            param: None,
        });
    }
    let refunded_at_provider: i64 = paid.iter().map(|p| p.amount_refunded).sum();
    let split = credit_note::split(
        &inv,
        new.credit,
        new.settle,
        &notes::credited_lines(&earlier),
        inv.amount_refunded.max(refunded_at_provider),
    )
    .map_err(|e| {
        let param = match e {
            credit_note::CreditError::UnknownLine(_)
            | credit_note::CreditError::RepeatedLine(_)
            | credit_note::CreditError::LineExceeded { .. } => "lines",
            credit_note::CreditError::NotPositive | credit_note::CreditError::Exceeded { .. } => {
                "amount"
            }
            credit_note::CreditError::RefundExceeded { .. }
            | credit_note::CreditError::NothingPaid => "refund",
            credit_note::CreditError::InvoiceState(_) => "invoice",
        };
        ServiceError::unprocessable("credit_note_invalid", Some(param), e.to_string())
    })?;
    // The charge to refund: the succeeded payment with the most left on it.
    let payment = if split.refund > 0 {
        let p = paid
            .iter()
            .filter(|p| p.status == AttemptStatus::Succeeded && p.provider_ref.is_some())
            .max_by_key(|p| p.amount - p.amount_refunded)
            .filter(|p| p.amount - p.amount_refunded >= split.refund)
            .cloned()
            .ok_or_else(|| {
                ServiceError::unprocessable(
                    "credit_note_invalid",
                    Some("refund"),
                    "no payment of this invoice through a provider has enough left to refund; \
                     credit it with refund: false",
                )
            })?;
        Some(p)
    } else {
        None
    };
    let mut after = inv.clone();
    after.amount_credited += split.amount;
    after.amount_refunded += split.refund;
    after.amount_due -= split.pre_payment;
    let settled = split.pre_payment > 0 && after.amount_due == 0;
    if settled && let Ok(status) = after.status.pay() {
        after.status = status;
        after.paid_at = Some(now);
        after.next_payment_attempt = None;
        after.awaiting_payment_method = false;
    }
    let id = CreditNoteId::generate();
    let document = crate::domain::invoice::DocumentLinks {
        pdf_url: Some(format!("/v1/credit_notes/{id}/pdf")),
        pdf_sha256: None,
    };
    let note = CreditNote {
        document,
        number: format!(
            "{}-CN-{:02}",
            inv.number.as_deref().unwrap_or(inv.id.as_str()),
            earlier.len() + 1
        ),
        id,
        object: "credit_note",
        invoice: inv.id.clone(),
        customer: inv.customer.clone(),
        currency: inv.currency,
        amount: split.amount,
        pre_payment_amount: split.pre_payment,
        refund_amount: split.refund,
        out_of_band_amount: split.out_of_band,
        credit_amount: split.to_balance,
        reason: new.reason,
        memo: new.memo,
        lines: split.lines,
        tax_amounts: split.tax_amounts,
        payment: payment.as_ref().map(|p| p.id.clone()),
        refund_status: if split.refund > 0 {
            RefundStatus::Pending
        } else {
            RefundStatus::None
        },
        refund_ref: None,
        refund_failure: None,
        created: now,
    };
    if !notes::apply_to_invoice(&mut tx, &tenant.id, &inv, &after).await? {
        return Err(ServiceError::Conflict {
            code: "invoice_changed",
            message: "the invoice changed while the credit note was made; try again".into(),
            param: None,
        });
    }
    notes::insert_credit_note(&mut tx, &tenant.id, &note).await?;
    if note.credit_amount > 0 {
        credit_balance(&mut tx, tenant, &note).await?;
    }
    insert_event(
        &mut tx,
        &tenant.id,
        EventType::CreditNoteCreated,
        note.id.as_str(),
        &note,
        now,
    )
    .await?;
    if after.status == InvoiceStatus::Paid && inv.status != InvoiceStatus::Paid {
        insert_event(
            &mut tx,
            &tenant.id,
            EventType::InvoicePaid,
            after.id.as_str(),
            &after,
            now,
        )
        .await?;
    }
    tx.commit().await?;
    match payment {
        Some(p) => Ok(refund(db, payments, tenant, note, &p, now).await?),
        None => Ok(note),
    }
}

/// Puts a note's `credit_amount` on the customer's balance, with its transaction and event.
async fn credit_balance(
    tx: &mut Tx,
    tenant: &Tenant,
    note: &CreditNote,
) -> Result<(), ServiceError> {
    crate::services::balances::move_balance(
        tx,
        tenant,
        crate::services::balances::Movement {
            customer: note.customer.clone(),
            currency: note.currency,
            amount: -note.credit_amount,
            kind: BalanceTransactionType::CreditNote,
            invoice: Some(note.invoice.clone()),
            credit_note: Some(note.id.clone()),
            description: None,
        },
        note.created,
    )
    .await?;
    Ok(())
}

/// Sends a committed refund and records the answer.
async fn refund(
    db: &Db,
    payments: &Payments,
    tenant: &Tenant,
    note: CreditNote,
    p: &Payment,
    now: DateTime<Utc>,
) -> Result<CreditNote, StoreError> {
    let providers = payments.for_tenant(db, tenant).await?;
    let Some(provider) = providers.provider(p.provider) else {
        return Ok(note);
    };
    let req = RefundRequest {
        idempotency_key: notes::refund_key(&note.id),
        provider_ref: p.provider_ref.clone().unwrap_or_default(),
        amount: note.refund_amount,
        currency: note.currency,
        reason: note.reason.as_str().into(),
        credit_note: note.id.to_string(),
        tenant: tenant.id.clone(),
    };
    crate::crash::point("refunds.note_committed");
    let result = provider.refund(&req).await;
    crate::crash::point("refunds.refunded");
    let mut tx = db.begin().await?;
    let (note, _) = record_refund(&mut tx, tenant, note, result, now).await?;
    tx.commit().await?;
    Ok(note)
}

/// Writes what the provider said about a note's refund, inside the caller's transaction
/// (webhooks settle refunds the provider accepted as pending the same way).
/// `applied` is false when the note was no longer pending (settled meanwhile by a webhook or
/// another pass): nothing is written then.
pub(super) async fn record_refund(
    tx: &mut crate::store::Tx,
    tenant: &Tenant,
    stale: CreditNote,
    result: RefundResult,
    now: DateTime<Utc>,
) -> Result<(CreditNote, bool), StoreError> {
    // Lock the invoice (PostgreSQL; SQLite has one writer), then read the note again: only a
    // pending note moves, once.
    invoices::find_invoice_headers(tx, &tenant.id, std::slice::from_ref(&stale.invoice)).await?;
    let Some(mut note) = notes::find_credit_note(tx, &tenant.id, &stale.id).await? else {
        return Ok((stale, false));
    };
    if note.refund_status != RefundStatus::Pending {
        return Ok((note, false));
    }
    let kind = match result {
        RefundResult::Succeeded { refund_ref } => {
            note.refund_status = RefundStatus::Succeeded;
            note.refund_ref = Some(refund_ref);
            note.refund_failure = None;
            Some(EventType::CreditNoteRefunded)
        }
        // Accepted, not settled: the provider's refund webhook settles it; until then the
        // note is not re-sent (it has its reference).
        RefundResult::Pending { refund_ref } => {
            note.refund_ref = Some(refund_ref);
            None
        }
        RefundResult::Failed { code, message } => {
            note.refund_status = RefundStatus::Failed;
            note.refund_failure = Some(format!("{code}: {message}"));
            if !release(tx, tenant, &note).await? {
                // Someone changed the invoice in between; the next pass tries again.
                note.refund_status = RefundStatus::Pending;
                return Ok((note, false));
            }
            Some(EventType::CreditNoteRefundFailed)
        }
        RefundResult::Unknown { message } => {
            note.refund_failure = Some(message);
            None
        }
    };
    notes::update_refund(tx, &tenant.id, &note).await?;
    if note.refund_status == RefundStatus::Succeeded
        && let Some(pay) = &note.payment
        && let Some(mut a) = attempts::find_payment(tx, &tenant.id, pay).await?
    {
        let total = notes::refunded_through_notes(tx, &tenant.id, pay).await?;
        if total > a.payment.amount_refunded {
            a.payment.amount_refunded = total.min(a.payment.amount);
            if a.payment.amount_refunded >= a.payment.amount {
                a.payment.status = AttemptStatus::Refunded;
            }
            attempts::update_attempts(tx, &tenant.id, std::slice::from_ref(&a.payment)).await?;
            insert_event(
                tx,
                &tenant.id,
                EventType::PaymentRefunded,
                a.payment.id.as_str(),
                &a.payment,
                now,
            )
            .await?;
        }
    }
    if let Some(kind) = kind {
        insert_event(tx, &tenant.id, kind, note.id.as_str(), &note, now).await?;
    }
    Ok((note, true))
}

/// A refund the provider refused gives back what the note took: the invoice's credited and
/// refunded amounts (and, through the note's failed status, its lines). `false` when the
/// invoice changed meanwhile (nothing written; the note stays pending for the next pass).
async fn release(
    tx: &mut crate::store::Tx,
    tenant: &Tenant,
    note: &CreditNote,
) -> Result<bool, StoreError> {
    let Some(before) =
        invoices::find_invoice_headers(tx, &tenant.id, std::slice::from_ref(&note.invoice))
            .await?
            .into_iter()
            .next()
    else {
        return Ok(true);
    };
    let mut after: Invoice = before.clone();
    after.amount_refunded -= note.refund_amount;
    after.amount_credited -= note.amount;
    notes::apply_to_invoice(tx, &tenant.id, &before, &after).await
}

/// Sends again, with the same key, refunds that have no answer yet, and asks about refunds the
/// provider accepted as pending whose webhook is an hour late.
pub async fn resolve_refunds(
    db: &Db,
    payments: &Payments,
    tenant: &Tenant,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut tx = db.read().await?;
    // Past a provider's key lifetime a re-send could refund anew: those wait for a person
    // (the note stays `pending`, visible in the API).
    let unsent = notes::pending_refunds(&mut tx, &tenant.id, now - KEY_LIFETIME).await?;
    let awaiting = notes::awaiting_refunds(&mut tx, &tenant.id, now - WEBHOOK_GRACE).await?;
    let mut found = Vec::with_capacity(unsent.len());
    for note in unsent {
        let Some(pay_id) = note.payment.clone() else {
            continue;
        };
        if let Some(a) = attempts::find_payment(&mut tx, &tenant.id, &pay_id).await? {
            found.push((note, a.payment));
        }
    }
    tx.commit().await?;
    let n = (found.len() + awaiting.len()) as u64;
    let providers = payments.for_tenant(db, tenant).await?;
    for (note, p) in found {
        refund(db, payments, tenant, note, &p, now).await?;
    }
    for note in awaiting {
        let (Some(refund_ref), Some(pay_id)) = (note.refund_ref.clone(), note.payment.clone())
        else {
            continue;
        };
        let mut tx = db.read().await?;
        let payment = attempts::find_payment(&mut tx, &tenant.id, &pay_id).await?;
        tx.commit().await?;
        let Some(provider) = payment.and_then(|a| providers.provider(a.payment.provider)) else {
            continue;
        };
        let result = provider.refund_status(&refund_ref).await;
        if matches!(
            result,
            RefundResult::Succeeded { .. } | RefundResult::Failed { .. }
        ) {
            let mut tx = db.begin().await?;
            record_refund(&mut tx, tenant, note, result, now).await?;
            tx.commit().await?;
        }
    }
    Ok(n)
}

pub async fn find_credit_note(
    db: &Db,
    tenant: &Tenant,
    id: &CreditNoteId,
) -> Result<CreditNote, ServiceError> {
    let mut tx = db.read().await?;
    let n = notes::find_credit_note(&mut tx, &tenant.id, id).await?;
    tx.commit().await?;
    n.ok_or_else(|| ServiceError::not_found("credit note", id))
}

pub async fn list_credit_notes(
    db: &Db,
    tenant: &Tenant,
    invoice: Option<&InvoiceId>,
    page: &Page,
) -> Result<(Vec<CreditNote>, bool), ServiceError> {
    let mut tx = db.read().await?;
    let out = notes::list_credit_notes(&mut tx, &tenant.id, invoice, page).await?;
    tx.commit().await?;
    Ok(out)
}
