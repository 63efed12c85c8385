//! Invoices and their lines: written in bulk by the billing run, numbered in the same
//! transaction, read one page at a time.

use super::rows::{Rec, corrupt, from_db_uint, known, to_db_int, to_json};
use super::{Page, StoreError, Tx, on_tx, push_id_list};
use crate::domain::currency::Currency;
use crate::domain::customer::TaxExempt;
use crate::domain::ids::{
    CustomerId, InvoiceId, InvoiceLineId, PriceId, SubscriptionId, SubscriptionItemId, TenantId,
};
use crate::domain::invoice::{
    BillingReason, DocumentLinks, Invoice, InvoiceLine, InvoiceStatus, LineKind, invoice_number,
};
use crate::domain::subscription::CollectionMethod;
use chrono::{DateTime, Datelike, Utc};
use std::collections::{BTreeMap, HashMap};

/// Rows per multi-row INSERT: keeps the bind count under SQLite's 32,766 limit.
const CHUNK: usize = 500;

macro_rules! select_invoice {
    ($filter:literal) => {
        concat!(
            "SELECT id, number, customer_id, subscription_id, status, billing_reason, collection_method, currency, period_start,
                    period_end, subtotal, discount, tax, total, total_tax_amounts, tax_exempt, amount_paid, amount_due, attempt_count,
                    next_payment_attempt, due_date, created_at, finalized_at, paid_at, voided_at, marked_uncollectible_at,
                    first_failed_at, awaiting_payment_method, amount_credited, amount_refunded, starting_balance,
                    ending_balance, pdf_sha256, hosted_token
             FROM invoices ",
            $filter
        )
    };
}

fn invoice_from(r: &impl Rec) -> Result<Invoice, StoreError> {
    let id = r.parsed("id", InvoiceId::parse)?;
    let number = r.opt_text("number")?;
    Ok(Invoice {
        id: id.clone(),
        object: "invoice",
        number: number.clone(),
        customer: r.parsed("customer_id", CustomerId::parse)?,
        subscription: r.opt_parsed("subscription_id", SubscriptionId::parse)?,
        status: r.parsed("status", known(InvoiceStatus::parse))?,
        billing_reason: r.parsed("billing_reason", known(BillingReason::parse))?,
        collection_method: r.parsed("collection_method", known(CollectionMethod::parse))?,
        currency: r.parsed("currency", Currency::parse)?,
        period_start: r.time("period_start")?,
        period_end: r.time("period_end")?,
        lines: Vec::new(),
        subtotal: r.int("subtotal")?,
        discount: r.int("discount")?,
        tax: r.int("tax")?,
        total: r.int("total")?,
        total_tax_amounts: r.json("total_tax_amounts")?,
        tax_exempt: r.parsed("tax_exempt", known(TaxExempt::parse))?,
        amount_paid: r.int("amount_paid")?,
        amount_credited: r.int("amount_credited")?,
        amount_refunded: r.int("amount_refunded")?,
        amount_due: r.int("amount_due")?,
        starting_balance: r.int("starting_balance")?,
        ending_balance: r.int("ending_balance")?,
        attempt_count: u32::try_from(r.int("attempt_count")?)
            .map_err(|e| corrupt("attempt_count", e))?,
        next_payment_attempt: r.opt_time("next_payment_attempt")?,
        due_date: r.opt_time("due_date")?,
        created: r.time("created_at")?,
        finalized_at: r.opt_time("finalized_at")?,
        paid_at: r.opt_time("paid_at")?,
        voided_at: r.opt_time("voided_at")?,
        marked_uncollectible_at: r.opt_time("marked_uncollectible_at")?,
        first_failed_at: r.opt_time("first_failed_at")?,
        awaiting_payment_method: r.flag("awaiting_payment_method")?,
        document: DocumentLinks {
            pdf_url: number.map(|_| format!("/v1/invoices/{id}/pdf")),
            pdf_sha256: r.opt_text("pdf_sha256")?,
        },
        hosted_invoice_url: r.opt_text("hosted_token")?.map(|t| format!("/i/{t}")),
    })
}

fn line_from(r: &impl Rec) -> Result<(InvoiceId, InvoiceLine), StoreError> {
    Ok((
        r.parsed("invoice_id", InvoiceId::parse)?,
        InvoiceLine {
            id: r.parsed("id", InvoiceLineId::parse)?,
            kind: r.parsed("kind", known(LineKind::parse))?,
            description: r.text("description")?,
            price: r.opt_parsed("price_id", PriceId::parse)?,
            subscription_item: r.opt_parsed("subscription_item_id", SubscriptionItemId::parse)?,
            quantity: from_db_uint(r.int("quantity")?, "quantity")?,
            unit_amount_decimal: r.opt_parsed("unit_amount_decimal", |s| {
                s.parse::<rust_decimal::Decimal>()
            })?,
            amount: r.int("amount")?,
            net_amount: r.int("net_amount")?,
            discount_amount: r.int("discount_amount")?,
            period_start: r.time("period_start")?,
            period_end: r.time("period_end")?,
            proration: r.text("kind")? == "proration",
            tax_rates: r.json("tax_rates")?,
        },
    ))
}

/// Assigns numbers to invoices finalized in this transaction, in the order given, from the
/// tenant's per-year sequence. The sequence row is taken last and released at commit, so
/// concurrent workers queue only for this one statement, and a rollback returns the numbers.
pub async fn assign_numbers(
    tx: &mut Tx,
    tenant: &TenantId,
    prefix: &str,
    invoices: &mut [Invoice],
) -> Result<(), StoreError> {
    let mut by_year: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, inv) in invoices.iter().enumerate() {
        if let Some(at) = inv.finalized_at {
            by_year.entry(at.year()).or_default().push(i);
        }
    }
    for (year, idx) in by_year {
        let n = to_db_int(idx.len() as u64, "count")?;
        let last: i64 = on_tx!(tx, |c| {
            let row = sqlx::query(
                "INSERT INTO invoice_sequences (tenant_id, prefix, year, last_seq) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant_id, prefix, year) DO UPDATE SET last_seq = invoice_sequences.last_seq + excluded.last_seq
                 RETURNING last_seq",
            )
            .bind(tenant.as_str())
            .bind(prefix)
            .bind(i64::from(year))
            .bind(n)
            .fetch_one(&mut *c)
            .await?;
            row.int("last_seq")?
        });
        for (offset, i) in idx.into_iter().enumerate() {
            let inv = &mut invoices[i];
            let seq = last - n + 1 + offset as i64;
            inv.number = inv.finalized_at.map(|at| invoice_number(prefix, at, seq));
        }
    }
    Ok(())
}

/// Inserts invoices with their lines, in chunks of multi-row INSERTs.
pub async fn insert_invoices(
    tx: &mut Tx,
    tenant: &TenantId,
    invoices: &[Invoice],
) -> Result<(), StoreError> {
    let taxes: Vec<String> = invoices
        .iter()
        .map(|i| to_json(&i.total_tax_amounts))
        .collect::<Result<_, _>>()?;
    for (chunk, taxes) in invoices.chunks(CHUNK).zip(taxes.chunks(CHUNK)) {
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO invoices (tenant_id, id, number, customer_id, subscription_id, status, billing_reason, collection_method,
                     currency, period_start, period_end, subtotal, discount, tax, total, total_tax_amounts, tax_exempt, amount_paid,
                     amount_due, attempt_count, next_payment_attempt, due_date, created_at, finalized_at, paid_at, voided_at,
                     marked_uncollectible_at, starting_balance, ending_balance, awaiting_payment_method) ",
            );
            q.push_values(chunk.iter().zip(taxes), |mut b, (i, tax)| {
                b.push_bind(tenant.as_str())
                    .push_bind(i.id.as_str())
                    .push_bind(i.number.as_deref())
                    .push_bind(i.customer.as_str())
                    .push_bind(i.subscription.as_ref().map(SubscriptionId::as_str))
                    .push_bind(i.status.as_str())
                    .push_bind(i.billing_reason.as_str())
                    .push_bind(i.collection_method.as_str())
                    .push_bind(i.currency.code())
                    .push_bind(i.period_start)
                    .push_bind(i.period_end)
                    .push_bind(i.subtotal)
                    .push_bind(i.discount)
                    .push_bind(i.tax)
                    .push_bind(i.total)
                    .push_bind(tax.as_str())
                    .push_bind(i.tax_exempt.as_str())
                    .push_bind(i.amount_paid)
                    .push_bind(i.amount_due)
                    .push_bind(i64::from(i.attempt_count))
                    .push_bind(i.next_payment_attempt)
                    .push_bind(i.due_date)
                    .push_bind(i.created)
                    .push_bind(i.finalized_at)
                    .push_bind(i.paid_at)
                    .push_bind(i.voided_at)
                    .push_bind(i.marked_uncollectible_at)
                    .push_bind(i.starting_balance)
                    .push_bind(i.ending_balance)
                    .push_bind(i.awaiting_payment_method);
            });
            q.build()
                .execute(&mut *c)
                .await
                .map_err(StoreError::from_write)?;
        });
    }
    let lines: Vec<(&InvoiceId, usize, &InvoiceLine, String)> = invoices
        .iter()
        .flat_map(|i| {
            i.lines
                .iter()
                .enumerate()
                .map(move |(pos, l)| (&i.id, pos, l))
        })
        .map(|(id, pos, l)| Ok((id, pos, l, to_json(&l.tax_rates)?)))
        .collect::<Result<_, StoreError>>()?;
    for chunk in lines.chunks(CHUNK) {
        let quantities: Vec<i64> = chunk
            .iter()
            .map(|(_, _, l, _)| to_db_int(l.quantity, "quantity"))
            .collect::<Result<_, _>>()?;
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO invoice_lines (tenant_id, id, invoice_id, position, kind, description, price_id, subscription_item_id,
                     quantity, unit_amount_decimal, amount, net_amount, discount_amount, period_start, period_end, tax_rates) ",
            );
            q.push_values(
                chunk.iter().zip(&quantities),
                |mut b, ((invoice, pos, l, rates), qty)| {
                    b.push_bind(tenant.as_str())
                        .push_bind(l.id.as_str())
                        .push_bind(invoice.as_str())
                        .push_bind(*pos as i64)
                        .push_bind(l.kind.as_str())
                        .push_bind(l.description.as_str())
                        .push_bind(l.price.as_ref().map(PriceId::as_str))
                        .push_bind(l.subscription_item.as_ref().map(SubscriptionItemId::as_str))
                        .push_bind(*qty)
                        .push_bind(l.unit_amount_decimal.map(|d| d.to_string()))
                        .push_bind(l.amount)
                        .push_bind(l.net_amount)
                        .push_bind(l.discount_amount)
                        .push_bind(l.period_start)
                        .push_bind(l.period_end)
                        .push_bind(rates.as_str());
                },
            );
            q.build()
                .execute(&mut *c)
                .await
                .map_err(StoreError::from_write)?;
        });
    }
    Ok(())
}

/// Loads the lines of many invoices in one query.
async fn attach_lines(
    tx: &mut Tx,
    tenant: &TenantId,
    invoices: &mut [Invoice],
) -> Result<(), StoreError> {
    if invoices.is_empty() {
        return Ok(());
    }
    let rows = on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT id, invoice_id, kind, description, price_id, subscription_item_id, quantity, unit_amount_decimal, amount,
                    net_amount, discount_amount, period_start, period_end, tax_rates
             FROM invoice_lines WHERE tenant_id = ",
        );
        q.push_bind(tenant.as_str()).push(" AND invoice_id IN ");
        push_id_list(&mut q, invoices.iter().map(|i| i.id.as_str()));
        q.push(" ORDER BY invoice_id, position");
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter().map(line_from).collect::<Result<Vec<_>, _>>()?
    });
    let mut by_invoice: HashMap<InvoiceId, Vec<InvoiceLine>> = HashMap::new();
    for (id, line) in rows {
        by_invoice.entry(id).or_default().push(line);
    }
    for inv in invoices {
        inv.lines = by_invoice.remove(&inv.id).unwrap_or_default();
    }
    Ok(())
}

/// A batch of the tenant's invoices finalized in `[from, to)`, after the `(finalized_at, id)`
/// cursor, in that order; with their lines when `lines` is set. Exports page through with it.
pub async fn finalized_between(
    tx: &mut Tx,
    tenant: &TenantId,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    after: Option<&(DateTime<Utc>, InvoiceId)>,
    limit: i64,
    lines: bool,
) -> Result<Vec<Invoice>, StoreError> {
    let (at, id) = super::resume_at(from, after.map(|(at, id)| (*at, id.as_str())));
    let mut found = on_tx!(tx, |c| {
        let rows = sqlx::query(select_invoice!(
            "WHERE tenant_id = $1 AND finalized_at >= $2 AND finalized_at < $3
               AND (finalized_at > $4 OR (finalized_at = $4 AND id > $5))
             ORDER BY finalized_at, id LIMIT $6"
        ))
        .bind(tenant.as_str())
        .bind(from)
        .bind(to)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(invoice_from)
            .collect::<Result<Vec<_>, _>>()?
    });
    if lines {
        attach_lines(tx, tenant, &mut found).await?;
    }
    Ok(found)
}

/// A batch of the tenant's invoices, by id after `after`, whose revenue is recognised in
/// `[from, to)`: finalized before `to`, not void, with a line whose service ends after `from`;
/// with their lines.
pub async fn serving_between(
    tx: &mut Tx,
    tenant: &TenantId,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    after: Option<&InvoiceId>,
    limit: i64,
) -> Result<Vec<Invoice>, StoreError> {
    let mut found = on_tx!(tx, |c| {
        let rows = sqlx::query(select_invoice!(
            "WHERE tenant_id = $1 AND number IS NOT NULL AND status <> 'void' AND finalized_at < $3
               AND id > $4
               AND EXISTS (SELECT 1 FROM invoice_lines l
                           WHERE l.tenant_id = invoices.tenant_id AND l.invoice_id = invoices.id
                             AND l.period_end > $2)
             ORDER BY id LIMIT $5"
        ))
        .bind(tenant.as_str())
        .bind(from)
        .bind(to)
        .bind(after.map_or("", InvoiceId::as_str))
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(invoice_from)
            .collect::<Result<Vec<_>, _>>()?
    });
    attach_lines(tx, tenant, &mut found).await?;
    Ok(found)
}

/// A batch of the tenant's invoices voided or marked uncollectible in `[from, to)`, by id
/// after `after` (without lines).
pub async fn closed_between(
    tx: &mut Tx,
    tenant: &TenantId,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    after: Option<&InvoiceId>,
    limit: i64,
) -> Result<Vec<Invoice>, StoreError> {
    on_tx!(tx, |c| {
        let rows = sqlx::query(select_invoice!(
            "WHERE tenant_id = $1 AND id > $4
               AND ((voided_at >= $2 AND voided_at < $3)
                 OR (marked_uncollectible_at >= $2 AND marked_uncollectible_at < $3))
             ORDER BY id LIMIT $5"
        ))
        .bind(tenant.as_str())
        .bind(from)
        .bind(to)
        .bind(after.map_or("", InvoiceId::as_str))
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(invoice_from).collect()
    })
}

pub async fn find_invoice(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &InvoiceId,
) -> Result<Option<Invoice>, StoreError> {
    let found = on_tx!(tx, |c| {
        let row = sqlx::query(select_invoice!("WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(invoice_from).transpose()?
    });
    let Some(inv) = found else { return Ok(None) };
    let mut one = [inv];
    attach_lines(tx, tenant, &mut one).await?;
    let [inv] = one;
    Ok(Some(inv))
}

#[derive(Debug, Clone, Default)]
pub struct InvoiceFilter {
    pub customer: Option<CustomerId>,
    pub subscription: Option<SubscriptionId>,
    pub status: Option<InvoiceStatus>,
}

pub async fn list_invoices(
    tx: &mut Tx,
    tenant: &TenantId,
    f: &InvoiceFilter,
    page: &Page,
) -> Result<(Vec<Invoice>, bool), StoreError> {
    let rows = on_tx!(tx, |c| {
        let rows = sqlx::query(select_invoice!(
            "WHERE tenant_id = $1 AND ($2 IS NULL OR customer_id = $2) AND ($3 IS NULL OR subscription_id = $3)
               AND ($4 IS NULL OR status = $4) AND ($5 IS NULL OR id < $5)
             ORDER BY id DESC LIMIT $6"
        ))
        .bind(tenant.as_str())
        .bind(f.customer.as_ref().map(CustomerId::as_str))
        .bind(f.subscription.as_ref().map(SubscriptionId::as_str))
        .bind(f.status.map(InvoiceStatus::as_str))
        .bind(page.starting_after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(invoice_from)
            .collect::<Result<Vec<_>, _>>()?
    });
    let (mut invoices, more) = page.split(rows);
    attach_lines(tx, tenant, &mut invoices).await?;
    Ok((invoices, more))
}

/// Writes a status change; the `status = $3` guard makes a concurrent change lose cleanly.
pub async fn update_invoice_status(
    tx: &mut Tx,
    tenant: &TenantId,
    inv: &Invoice,
    expected: InvoiceStatus,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |c| {
        sqlx::query(
        "UPDATE invoices SET status = $4, amount_due = $5, amount_paid = $6, paid_at = $7, voided_at = $8, marked_uncollectible_at = $9
         WHERE tenant_id = $1 AND id = $2 AND status = $3"
    )
    .bind(tenant.as_str())
    .bind(inv.id.as_str())
    .bind(expected.as_str())
    .bind(inv.status.as_str())
    .bind(inv.amount_due)
    .bind(inv.amount_paid)
    .bind(inv.paid_at)
    .bind(inv.voided_at)
    .bind(inv.marked_uncollectible_at)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// Invoices to charge now: open (or written off and retried with `/pay`), collected
/// automatically, whose next attempt is due; earliest first, strictly after the
/// `(next_payment_attempt, id)` cursor when one is given (a pass's earlier batches left dead
/// index entries behind on PostgreSQL; without the cursor each claim walked them all again,
/// and a pass over N invoices took time in N²). The cursor is a row comparison, always
/// present (the epoch without one), so PostgreSQL's plan starts the index scan at it. `invoice` / `customer` narrow it to what one
/// request asked for; an invoice named by `/pay` is charged whatever its collection method.
pub async fn due_for_collection(
    tx: &mut Tx,
    tenant: &TenantId,
    now: chrono::DateTime<chrono::Utc>,
    limit: i64,
    (invoice, customer): (Option<&InvoiceId>, Option<&CustomerId>),
    after: Option<&(chrono::DateTime<chrono::Utc>, InvoiceId)>,
) -> Result<Vec<Invoice>, StoreError> {
    // SQLite has one writer. On PostgreSQL the earliest due invoices are locked, in id order
    // like every other locker of invoices (no deadlock), until their attempts commit; the
    // outer conditions are checked again on the locked rows, so a concurrent claim's invoices
    // drop out.
    macro_rules! due {
        ($t:expr, $sql:expr) => {{
            let rows = sqlx::query($sql)
                .bind(tenant.as_str())
                .bind(now)
                .bind(limit)
                .bind(invoice.map(InvoiceId::as_str))
                .bind(customer.map(CustomerId::as_str))
                .bind(after.map_or(chrono::DateTime::UNIX_EPOCH, |a| a.0))
                .bind(after.map_or("", |a| a.1.as_str()))
                .fetch_all(&mut **$t)
                .await?;
            rows.iter().map(invoice_from).collect()
        }};
    }
    match tx {
        Tx::Sqlite(t, _) => due!(
            t,
            select_invoice!(
                "WHERE tenant_id = $1 AND next_payment_attempt <= $2 AND status IN ('open', 'uncollectible')
                   AND (collection_method = 'charge_automatically' OR id = $4)
                   AND ($4 IS NULL OR id = $4) AND ($5 IS NULL OR customer_id = $5)
                   AND (next_payment_attempt, id) > ($6, $7)
                 ORDER BY next_payment_attempt, id LIMIT $3"
            )
        ),
        Tx::Postgres(t) => due!(
            t,
            select_invoice!(
                "WHERE tenant_id = $1 AND next_payment_attempt <= $2 AND status IN ('open', 'uncollectible')
                   AND (collection_method = 'charge_automatically' OR id = $4)
                   AND id IN (SELECT id FROM invoices WHERE tenant_id = $1 AND next_payment_attempt <= $2
                                AND status IN ('open', 'uncollectible')
                                AND (collection_method = 'charge_automatically' OR id = $4)
                                AND ($4::text IS NULL OR id = $4) AND ($5::text IS NULL OR customer_id = $5)
                                AND (next_payment_attempt, id) > ($6, $7)
                              ORDER BY next_payment_attempt, id LIMIT $3)
                 ORDER BY id FOR UPDATE"
            )
        ),
    }
}

/// The earliest pending collection, for the test clock's stepping.
pub async fn next_collection_time(
    tx: &mut Tx,
    tenant: &TenantId,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(
            "SELECT MIN(next_payment_attempt) AS t FROM invoices
             WHERE tenant_id = $1 AND status IN ('open', 'uncollectible') AND collection_method = 'charge_automatically'",
        )
        .bind(tenant.as_str())
        .fetch_one(&mut *c)
        .await?;
        row.opt_time("t")
    })
}

/// After a customer's payment method changes: hard-declined invoices are due again now.
pub async fn retry_awaiting_method(
    tx: &mut Tx,
    tenant: &TenantId,
    customer: &CustomerId,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64, StoreError> {
    on_tx!(tx, |c| sqlx::query(
        "UPDATE invoices SET next_payment_attempt = $3, awaiting_payment_method = FALSE
         WHERE tenant_id = $1 AND customer_id = $2 AND awaiting_payment_method AND status = 'open'"
    )
    .bind(tenant.as_str())
    .bind(customer.as_str())
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(StoreError::from)
}

/// Many invoices by id, without their lines (collection needs only the header).
/// Invoices without their lines, locked on PostgreSQL until the transaction ends: outcomes,
/// webhooks and credit notes for one invoice take turns.
pub async fn find_invoice_headers(
    tx: &mut Tx,
    tenant: &TenantId,
    ids: &[InvoiceId],
) -> Result<Vec<Invoice>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let lock = match tx {
        Tx::Sqlite(..) => "",
        Tx::Postgres(_) => " ORDER BY id FOR UPDATE",
    };
    on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(select_invoice!("WHERE tenant_id = "));
        q.push_bind(tenant.as_str()).push(" AND id IN ");
        push_id_list(&mut q, ids.iter().map(|i| i.as_str()));
        q.push(lock);
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter().map(invoice_from).collect()
    })
}

/// Writes what collection changes on many invoices, one statement per chunk.
pub async fn update_collections(
    tx: &mut Tx,
    tenant: &TenantId,
    invoices: &[Invoice],
) -> Result<(), StoreError> {
    for chunk in invoices.chunks(500) {
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "WITH v (id, status, paid, due, attempts, next_at, paid_at, uncollectible_at, first_failed_at, awaiting) AS (",
            );
            q.push_values(chunk, |mut b, i| {
                b.push_bind(i.id.as_str())
                    .push_bind(i.status.as_str())
                    .push_bind(i.amount_paid)
                    .push_bind(i.amount_due)
                    .push_bind(i64::from(i.attempt_count))
                    .push_bind(i.next_payment_attempt)
                    .push_bind(i.paid_at)
                    .push_bind(i.marked_uncollectible_at)
                    .push_bind(i.first_failed_at)
                    .push_bind(i.awaiting_payment_method);
            });
            q.push(
                ") UPDATE invoices SET status = v.status, amount_paid = v.paid, amount_due = v.due, attempt_count = v.attempts,
                     next_payment_attempt = v.next_at, paid_at = v.paid_at, marked_uncollectible_at = v.uncollectible_at,
                     first_failed_at = v.first_failed_at, awaiting_payment_method = v.awaiting
                 FROM v WHERE invoices.tenant_id = ",
            );
            q.push_bind(tenant.as_str()).push(" AND invoices.id = v.id");
            q.build().execute(&mut *c).await?;
        });
    }
    Ok(())
}

/// Live subscriptions with a `send_invoice` invoice still open past its due date.
pub async fn overdue_subscriptions(
    tx: &mut Tx,
    tenant: &TenantId,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<SubscriptionId>, StoreError> {
    on_tx!(tx, |c| {
        let rows = sqlx::query(
            "SELECT DISTINCT i.subscription_id FROM invoices i JOIN subscriptions s
               ON s.tenant_id = i.tenant_id AND s.id = i.subscription_id
             WHERE i.tenant_id = $1 AND i.status = 'open' AND i.collection_method = 'send_invoice'
               AND i.due_date < $2 AND s.status IN ('active', 'trialing')
             ORDER BY i.subscription_id LIMIT 500",
        )
        .bind(tenant.as_str())
        .bind(now)
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| r.parsed("subscription_id", SubscriptionId::parse))
            .collect()
    })
}

/// How many invoices of a subscription, other than `except`, are still owed (open).
pub async fn count_open_invoices(
    tx: &mut Tx,
    tenant: &TenantId,
    subscription: &SubscriptionId,
    except: &InvoiceId,
) -> Result<i64, StoreError> {
    on_tx!(tx, |c| {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM invoices WHERE tenant_id = $1 AND subscription_id = $2
               AND status = 'open' AND id <> $3",
        )
        .bind(tenant.as_str())
        .bind(subscription.as_str())
        .bind(except.as_str())
        .fetch_one(&mut *c)
        .await?;
        Ok(n)
    })
}
