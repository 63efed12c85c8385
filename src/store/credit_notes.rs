//! Credit notes, and the compare-and-set that applies one to its invoice.

use super::rows::{Rec, known, to_json};
use super::{Page, StoreError, Tx, on_tx};
use crate::domain::credit_note::{CreditNote, CreditNoteLine, Reason, RefundStatus};
use crate::domain::currency::Currency;
use crate::domain::ids::{CreditNoteId, CustomerId, InvoiceId, InvoiceLineId, PaymentId, TenantId};
use crate::domain::invoice::Invoice;
use std::collections::HashMap;

macro_rules! select_note {
    ($filter:literal) => {
        concat!(
            "SELECT id, number, invoice_id, customer_id, currency, amount, refund_amount, out_of_band_amount, credit_amount, tax_amounts, reason, memo,
                    lines, payment_id, refund_key, refund_status, refund_ref, refund_failure, created_at, pdf_sha256 FROM credit_notes ",
            $filter
        )
    };
}

fn note_from(r: &impl Rec) -> Result<CreditNote, StoreError> {
    let amount = r.int("amount")?;
    let refund_amount = r.int("refund_amount")?;
    let out_of_band_amount = r.int("out_of_band_amount")?;
    let credit_amount = r.int("credit_amount")?;
    let id = r.parsed("id", CreditNoteId::parse)?;
    Ok(CreditNote {
        document: crate::domain::invoice::DocumentLinks {
            pdf_url: Some(format!("/v1/credit_notes/{id}/pdf")),
            pdf_sha256: r.opt_text("pdf_sha256")?,
        },
        id,
        object: "credit_note",
        number: r.text("number")?,
        invoice: r.parsed("invoice_id", InvoiceId::parse)?,
        customer: r.parsed("customer_id", CustomerId::parse)?,
        currency: r.parsed("currency", Currency::parse)?,
        amount,
        pre_payment_amount: amount - refund_amount - out_of_band_amount - credit_amount,
        refund_amount,
        out_of_band_amount,
        credit_amount,
        reason: r.parsed("reason", known(Reason::parse))?,
        memo: r.opt_text("memo")?,
        lines: r.json("lines")?,
        tax_amounts: r.json("tax_amounts")?,
        payment: r.opt_parsed("payment_id", PaymentId::parse)?,
        refund_status: r.parsed("refund_status", known(RefundStatus::parse))?,
        refund_ref: r.opt_text("refund_ref")?,
        refund_failure: r.opt_text("refund_failure")?,
        created: r.time("created_at")?,
    })
}

/// The idempotency key of a credit note's refund: its own, never the charge's.
pub fn refund_key(id: &CreditNoteId) -> String {
    format!("{id}-refund")
}

pub async fn insert_credit_note(
    tx: &mut Tx,
    tenant: &TenantId,
    n: &CreditNote,
) -> Result<(), StoreError> {
    let lines = to_json(&n.lines)?;
    let taxes = to_json(&n.tax_amounts)?;
    let key = (n.refund_amount > 0).then(|| refund_key(&n.id));
    on_tx!(tx, |c| {
        sqlx::query(
            "INSERT INTO credit_notes (tenant_id, id, number, invoice_id, customer_id, currency, amount, refund_amount, out_of_band_amount,
                 reason, memo, lines, payment_id, refund_key, refund_status, refund_ref, refund_failure, created_at, credit_amount,
                 tax_amounts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
        )
        .bind(tenant.as_str())
        .bind(n.id.as_str())
        .bind(&n.number)
        .bind(n.invoice.as_str())
        .bind(n.customer.as_str())
        .bind(n.currency.code())
        .bind(n.amount)
        .bind(n.refund_amount)
        .bind(n.out_of_band_amount)
        .bind(n.reason.as_str())
        .bind(&n.memo)
        .bind(&lines)
        .bind(n.payment.as_ref().map(PaymentId::as_str))
        .bind(key.as_deref())
        .bind(n.refund_status.as_str())
        .bind(&n.refund_ref)
        .bind(&n.refund_failure)
        .bind(n.created)
        .bind(n.credit_amount)
        .bind(&taxes)
        .execute(&mut *c)
        .await
        .map_err(StoreError::from_write)?;
    });
    Ok(())
}

pub async fn update_refund(
    tx: &mut Tx,
    tenant: &TenantId,
    n: &CreditNote,
) -> Result<(), StoreError> {
    on_tx!(tx, |c| {
        sqlx::query(
            "UPDATE credit_notes SET refund_status = $3, refund_ref = $4, refund_failure = $5 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.as_str())
        .bind(n.id.as_str())
        .bind(n.refund_status.as_str())
        .bind(&n.refund_ref)
        .bind(&n.refund_failure)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// A batch of the tenant's credit notes issued in `[from, to)` after the `(created_at, id)`
/// cursor, in that order (exports).
pub async fn issued_between(
    tx: &mut Tx,
    tenant: &TenantId,
    (from, to): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    after: Option<&(chrono::DateTime<chrono::Utc>, CreditNoteId)>,
    limit: i64,
) -> Result<Vec<CreditNote>, StoreError> {
    let (at, id) = super::resume_at(from, after.map(|(at, id)| (*at, id.as_str())));
    on_tx!(tx, |c| {
        let rows = sqlx::query(select_note!(
            "WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3
               AND (created_at > $4 OR (created_at = $4 AND id > $5))
             ORDER BY created_at, id LIMIT $6"
        ))
        .bind(tenant.as_str())
        .bind(from)
        .bind(to)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(note_from).collect()
    })
}

pub async fn find_credit_note(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &CreditNoteId,
) -> Result<Option<CreditNote>, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(select_note!("WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(note_from).transpose()
    })
}

pub async fn list_credit_notes(
    tx: &mut Tx,
    tenant: &TenantId,
    invoice: Option<&InvoiceId>,
    page: &Page,
) -> Result<(Vec<CreditNote>, bool), StoreError> {
    let rows = on_tx!(tx, |c| {
        let rows = sqlx::query(select_note!(
            "WHERE tenant_id = $1 AND ($2 IS NULL OR invoice_id = $2) AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(tenant.as_str())
        .bind(invoice.map(InvoiceId::as_str))
        .bind(page.starting_after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(note_from).collect::<Result<Vec<_>, _>>()?
    });
    Ok(page.split(rows))
}

/// Every note of one invoice (a handful), oldest first.
pub async fn notes_of_invoice(
    tx: &mut Tx,
    tenant: &TenantId,
    invoice: &InvoiceId,
) -> Result<Vec<CreditNote>, StoreError> {
    on_tx!(tx, |c| {
        let rows = sqlx::query(select_note!(
            "WHERE tenant_id = $1 AND invoice_id = $2 ORDER BY id"
        ))
        .bind(tenant.as_str())
        .bind(invoice.as_str())
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(note_from).collect()
    })
}

/// What earlier notes credited per invoice line (a note whose refund failed gave it back).
pub fn credited_lines(notes: &[CreditNote]) -> HashMap<InvoiceLineId, i64> {
    let mut out = HashMap::new();
    for CreditNoteLine {
        invoice_line,
        amount,
    } in notes
        .iter()
        .filter(|n| n.refund_status != RefundStatus::Failed)
        .flat_map(|n| n.lines.iter())
    {
        *out.entry(invoice_line.clone()).or_insert(0) += amount;
    }
    out
}

/// Refunds to send again: committed without a definite answer (no provider reference yet),
/// made since `since`, oldest first.
pub async fn pending_refunds(
    tx: &mut Tx,
    tenant: &TenantId,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<CreditNote>, StoreError> {
    on_tx!(tx, |c| {
        let rows = sqlx::query(select_note!(
            "WHERE tenant_id = $1 AND refund_status = 'pending' AND refund_ref IS NULL AND created_at >= $2
             ORDER BY id LIMIT 200"
        ))
        .bind(tenant.as_str())
        .bind(since)
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(note_from).collect()
    })
}

/// Refunds the provider accepted as pending whose settling webhook has not come by `before`.
pub async fn awaiting_refunds(
    tx: &mut Tx,
    tenant: &TenantId,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<CreditNote>, StoreError> {
    on_tx!(tx, |c| {
        let rows = sqlx::query(select_note!(
            "WHERE tenant_id = $1 AND refund_status = 'pending' AND refund_ref IS NOT NULL AND created_at <= $2
             ORDER BY id LIMIT 200"
        ))
        .bind(tenant.as_str())
        .bind(before)
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(note_from).collect()
    })
}

/// Refunds of one payment that succeeded through recur.
pub async fn refunded_through_notes(
    tx: &mut Tx,
    tenant: &TenantId,
    payment: &PaymentId,
) -> Result<i64, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(refund_amount), 0) AS BIGINT) AS s FROM credit_notes
             WHERE tenant_id = $1 AND payment_id = $2 AND refund_status = 'succeeded'",
        )
        .bind(tenant.as_str())
        .bind(payment.as_str())
        .fetch_one(&mut *c)
        .await?;
        row.int("s")
    })
}

/// Writes the invoice's credit fields if nobody changed them since `before` was read (a new
/// payment attempt counts as a change): `false` means a concurrent change won and nothing was
/// written.
pub async fn apply_to_invoice(
    tx: &mut Tx,
    tenant: &TenantId,
    before: &Invoice,
    after: &Invoice,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| {
        sqlx::query(
            "UPDATE invoices SET status = $3, amount_due = $4, amount_credited = $5, amount_refunded = $6, paid_at = $7,
                 next_payment_attempt = $8, awaiting_payment_method = $9
             WHERE tenant_id = $1 AND id = $2 AND status = $10 AND amount_due = $11 AND amount_credited = $12
               AND amount_refunded = $13 AND attempt_count = $14",
        )
        .bind(tenant.as_str())
        .bind(after.id.as_str())
        .bind(after.status.as_str())
        .bind(after.amount_due)
        .bind(after.amount_credited)
        .bind(after.amount_refunded)
        .bind(after.paid_at)
        .bind(after.next_payment_attempt)
        .bind(after.awaiting_payment_method)
        .bind(before.status.as_str())
        .bind(before.amount_due)
        .bind(before.amount_credited)
        .bind(before.amount_refunded)
        .bind(i64::from(before.attempt_count))
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}
