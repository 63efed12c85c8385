//! The journal export: every billing record of a window as balanced double-entry postings
//! (`domain::journal`), read in batches like the other exports, plus one revenue recognition
//! entry per calendar month (in the export's time zone) and currency, up to now.

use super::ServiceError;
use super::exports::{Chunk, flush};
use crate::domain::ids::{CreditNoteId, InvoiceId, PaymentId, TenantId};
use crate::domain::journal::{self, Entry};
use crate::domain::payment::AttemptStatus;
use crate::exports::{Encoder, journal_rows, window};
use crate::store::{Db, credit_notes, documents, invoices, payments, tenants};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use std::collections::BTreeMap;
use tokio::sync::mpsc::Sender;

const BATCH: i64 = 500;

/// Writes the tenant's journal for `span` through `enc` into `out`; the number of rows, or
/// early (without error) when `out` is closed.
pub async fn write(
    db: &Db,
    tenant: &TenantId,
    span: (DateTime<Utc>, DateTime<Utc>),
    tz: chrono_tz::Tz,
    enc: &mut Encoder,
    out: &Sender<Chunk>,
) -> Result<Option<u64>, ServiceError> {
    let t = tenant.as_str();
    let mut tx = db.read().await?;
    let accounts = documents::find_settings(&mut tx, tenant)
        .await?
        .map(|s| s.accounts)
        .unwrap_or_default();
    let clock = tenants::find_tenant(&mut tx, t).await?;
    tx.commit().await?;
    // Revenue is recognised up to now (the tenant's clock), never for days still to come.
    let now = clock.map_or_else(Utc::now, |c| c.now(Utc::now()));
    let a = &accounts;
    let mut rows = 0_u64;
    let mut put = |enc: &mut Encoder, e: &Entry| -> Result<(), ServiceError> {
        debug_assert!(e.balances(), "{e:?}");
        for row in journal_rows(t, e, tz) {
            enc.row(&row)
                .map_err(|x| ServiceError::Document(format!("export: {x}")))?;
            rows += 1;
        }
        Ok(())
    };

    // Invoices finalized in the window.
    let mut cursor = None;
    loop {
        let mut tx = db.read().await?;
        let batch =
            invoices::finalized_between(&mut tx, tenant, span, cursor.as_ref(), BATCH, false)
                .await?;
        tx.commit().await?;
        for inv in &batch {
            if let Some(e) = journal::finalized(inv, a) {
                put(enc, &e)?;
            }
        }
        if !flush(enc, out).await? {
            return Ok(None);
        }
        match batch.last() {
            Some(last) if batch.len() as i64 == BATCH => {
                cursor = last.finalized_at.map(|at| (at, last.id.clone()));
            }
            _ => break,
        }
    }

    // Payments that took money.
    let mut cursor: Option<(DateTime<Utc>, PaymentId)> = None;
    loop {
        let mut tx = db.read().await?;
        let batch = payments::made_between(&mut tx, tenant, span, cursor.as_ref(), BATCH).await?;
        let ids: Vec<InvoiceId> = batch.iter().map(|p| p.invoice.clone()).collect();
        let numbers: BTreeMap<InvoiceId, String> =
            invoices::find_invoice_headers(&mut tx, tenant, &ids)
                .await?
                .into_iter()
                .map(|i| (i.id.clone(), i.number.unwrap_or_default()))
                .collect();
        tx.commit().await?;
        for p in &batch {
            if matches!(p.status, AttemptStatus::Succeeded | AttemptStatus::Refunded) {
                let number = numbers.get(&p.invoice).map_or("", String::as_str);
                let e = journal::paid(
                    p.id.as_str(),
                    p.created,
                    p.currency.code(),
                    p.amount,
                    p.provider.as_str(),
                    number,
                    a,
                );
                put(enc, &e)?;
            }
        }
        if !flush(enc, out).await? {
            return Ok(None);
        }
        match batch.last() {
            Some(last) if batch.len() as i64 == BATCH => {
                cursor = Some((last.created, last.id.clone()));
            }
            _ => break,
        }
    }

    // Credit notes issued in the window; a refund goes back where its payment came from.
    let mut cursor: Option<(DateTime<Utc>, CreditNoteId)> = None;
    loop {
        let mut tx = db.read().await?;
        let batch =
            credit_notes::issued_between(&mut tx, tenant, span, cursor.as_ref(), BATCH).await?;
        let paid_with: Vec<PaymentId> = batch.iter().filter_map(|n| n.payment.clone()).collect();
        let providers: BTreeMap<PaymentId, &str> =
            payments::attempts_by_ids(&mut tx, tenant, &paid_with)
                .await?
                .into_iter()
                .map(|a| (a.payment.id, a.payment.provider.as_str()))
                .collect();
        tx.commit().await?;
        for n in &batch {
            let provider = n
                .payment
                .as_ref()
                .and_then(|p| providers.get(p))
                .copied()
                .unwrap_or("out_of_band");
            put(enc, &journal::credited(n, provider, a))?;
        }
        if !flush(enc, out).await? {
            return Ok(None);
        }
        match batch.last() {
            Some(last) if batch.len() as i64 == BATCH => {
                cursor = Some((last.created, last.id.clone()));
            }
            _ => break,
        }
    }

    // Voids and write-offs in the window.
    let mut after: Option<InvoiceId> = None;
    loop {
        let mut tx = db.read().await?;
        let batch = invoices::closed_between(&mut tx, tenant, span, after.as_ref(), BATCH).await?;
        tx.commit().await?;
        let inside = |at: Option<DateTime<Utc>>| at.is_some_and(|at| span.0 <= at && at < span.1);
        for inv in &batch {
            if inside(inv.voided_at)
                && let Some(e) = journal::voided(inv, a)
            {
                put(enc, &e)?;
            }
            if inside(inv.marked_uncollectible_at)
                && let Some(e) = journal::written_off(inv, a)
            {
                put(enc, &e)?;
            }
        }
        if !flush(enc, out).await? {
            return Ok(None);
        }
        match batch.last() {
            Some(last) if batch.len() as i64 == BATCH => after = Some(last.id.clone()),
            _ => break,
        }
    }

    // Revenue recognised per calendar month of the window, per currency.
    let months = if now > span.0 {
        months((span.0, span.1.min(now)), tz)?
    } else {
        Vec::new()
    };
    let mut recognised: BTreeMap<(usize, String), i64> = BTreeMap::new();
    let mut after: Option<InvoiceId> = None;
    loop {
        let mut tx = db.read().await?;
        let batch = invoices::serving_between(&mut tx, tenant, span, after.as_ref(), BATCH).await?;
        tx.commit().await?;
        for inv in &batch {
            for (i, (_, from, to)) in months.iter().enumerate() {
                let amount = journal::recognised_between(inv, *from, *to);
                if amount != 0 {
                    *recognised
                        .entry((i, inv.currency.code().to_owned()))
                        .or_default() += amount;
                }
            }
        }
        match batch.last() {
            Some(last) if batch.len() as i64 == BATCH => after = Some(last.id.clone()),
            _ => break,
        }
    }
    for ((i, currency), amount) in &recognised {
        let (label, _, to) = &months[*i];
        let day = *to - Duration::seconds(1);
        put(enc, &journal::recognition(label, day, currency, *amount, a))?;
    }
    if !flush(enc, out).await? {
        return Ok(None);
    }
    Ok(Some(rows))
}

/// A calendar month as `(YYYY-MM, start, end)`.
type Month = (String, DateTime<Utc>, DateTime<Utc>);

/// The calendar months of `span` in `tz`, each cut to the span.
fn months(
    span: (DateTime<Utc>, DateTime<Utc>),
    tz: chrono_tz::Tz,
) -> Result<Vec<Month>, ServiceError> {
    let first = span.0.with_timezone(&tz).date_naive();
    let last = (span.1 - Duration::seconds(1))
        .with_timezone(&tz)
        .date_naive();
    let mut out = Vec::new();
    let mut month = first.with_day(1).unwrap_or(first);
    while month <= last {
        let next = month
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(NaiveDate::MAX);
        let end_day = next.pred_opt().unwrap_or(next);
        let (start, end) = window(month, end_day, tz).map_err(ServiceError::Document)?;
        out.push((
            format!("{:04}-{:02}", month.year(), month.month()),
            start.max(span.0),
            end.min(span.1),
        ));
        month = next;
    }
    Ok(out)
}
