//! Payment attempts: the row (with its idempotency key) commits before the provider is called;
//! the outcome is written after.

use super::rows::{Rec, corrupt, known};
use super::{Page, StoreError, Tx, on_tx};
use crate::domain::currency::Currency;
use crate::domain::customer::Provider;
use crate::domain::ids::{InvoiceId, PaymentId, TenantId};
use crate::domain::payment::{AttemptStatus, Payment};

macro_rules! select_payment {
    ($filter:literal) => {
        concat!(
            "SELECT id, invoice_id, attempt_number, idempotency_key, provider, payment_method, status, amount, currency, provider_ref,
                    provider_customer, amount_refunded, sent_at, decline_code, failure_message, created_at, completed_at FROM payment_attempts ",
            $filter
        )
    };
}

/// An attempt with what retrying or resolving it needs.
pub struct Attempt {
    pub payment: Payment,
    pub idempotency_key: String,
    pub token: Option<String>,
    /// The customer at the provider (Stripe `cus_…`).
    pub provider_customer: Option<String>,
    /// When it was first sent, by the system clock (not the tenant's test clock).
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn attempt_from(r: &impl Rec) -> Result<Attempt, StoreError> {
    Ok(Attempt {
        payment: Payment {
            id: r.parsed("id", PaymentId::parse)?,
            object: "payment",
            invoice: r.parsed("invoice_id", InvoiceId::parse)?,
            attempt_number: u32::try_from(r.int("attempt_number")?)
                .map_err(|e| corrupt("attempt_number", e))?,
            status: r.parsed("status", known(AttemptStatus::parse))?,
            amount: r.int("amount")?,
            amount_refunded: r.int("amount_refunded")?,
            currency: r.parsed("currency", Currency::parse)?,
            provider: r.parsed("provider", known(Provider::parse))?,
            provider_ref: r.opt_text("provider_ref")?,
            decline_code: r.opt_text("decline_code")?,
            failure_message: r.opt_text("failure_message")?,
            created: r.time("created_at")?,
            completed_at: r.opt_time("completed_at")?,
        },
        idempotency_key: r.text("idempotency_key")?,
        token: r.opt_text("payment_method")?,
        provider_customer: r.opt_text("provider_customer")?,
        sent_at: r.opt_time("sent_at")?,
    })
}

/// Attempts whose outcome is not known: `unknown` ones (a timeout after sending) and
/// `pending` ones sent before `stale_before` (system time), whose outcome was lost by a crash
/// or a cut-off request. Oldest first.
pub async fn unsettled_attempts(
    tx: &mut Tx,
    tenant: &TenantId,
    stale_before: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Attempt>, StoreError> {
    on_tx!(tx, |c| {
        let rows = sqlx::query(select_payment!(
            "WHERE tenant_id = $1 AND (status = 'unknown' OR (status = 'pending' AND sent_at < $2))
             ORDER BY id LIMIT 500"
        ))
        .bind(tenant.as_str())
        .bind(stale_before)
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(attempt_from).collect()
    })
}

/// The attempt a provider charge belongs to: by the idempotency key recur wrote into the
/// charge's metadata, else by the provider's id for it.
pub async fn find_attempt(
    tx: &mut Tx,
    tenant: &TenantId,
    key: Option<&str>,
    provider_ref: &str,
) -> Result<Option<Attempt>, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(select_payment!(
            "WHERE tenant_id = $1 AND (idempotency_key = $2 OR provider_ref = $3) ORDER BY id LIMIT 1"
        ))
        .bind(tenant.as_str())
        .bind(key)
        .bind(provider_ref)
        .fetch_optional(&mut *c)
        .await?;
        row.as_ref().map(attempt_from).transpose()
    })
}

/// The current status of attempts (read after their invoices are locked, so it cannot move
/// under the caller).
pub async fn statuses_of(
    tx: &mut Tx,
    tenant: &TenantId,
    ids: &[PaymentId],
) -> Result<std::collections::HashMap<PaymentId, AttemptStatus>, StoreError> {
    if ids.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    on_tx!(tx, |c| {
        let mut q =
            sqlx::QueryBuilder::new("SELECT id, status FROM payment_attempts WHERE tenant_id = ");
        q.push_bind(tenant.as_str()).push(" AND id IN ");
        super::push_id_list(&mut q, ids.iter().map(|i| i.as_str()));
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.parsed("id", PaymentId::parse)?,
                    r.parsed("status", known(AttemptStatus::parse))?,
                ))
            })
            .collect()
    })
}

/// The attempts among `ids`, by id (the journal looks up where each refund's money went).
pub async fn attempts_by_ids(
    tx: &mut Tx,
    tenant: &TenantId,
    ids: &[PaymentId],
) -> Result<Vec<Attempt>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(select_payment!("WHERE tenant_id = "));
        q.push_bind(tenant.as_str()).push(" AND id IN ");
        super::push_id_list(&mut q, ids.iter().map(PaymentId::as_str));
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter().map(attempt_from).collect()
    })
}

/// A batch of the tenant's payment attempts made in `[from, to)` after the `(created_at, id)`
/// cursor, in that order (exports).
pub async fn made_between(
    tx: &mut Tx,
    tenant: &TenantId,
    (from, to): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    after: Option<&(chrono::DateTime<chrono::Utc>, PaymentId)>,
    limit: i64,
) -> Result<Vec<Payment>, StoreError> {
    let (at, id) = super::resume_at(from, after.map(|(at, id)| (*at, id.as_str())));
    on_tx!(tx, |c| {
        let rows = sqlx::query(select_payment!(
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
        rows.iter()
            .map(|r| attempt_from(r).map(|a| a.payment))
            .collect()
    })
}

pub async fn find_payment(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &PaymentId,
) -> Result<Option<Attempt>, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(select_payment!("WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(attempt_from).transpose()
    })
}

/// Attempts among `keys` (reconciliation looks a provider page up at once).
pub async fn attempts_by_keys(
    tx: &mut Tx,
    tenant: &TenantId,
    keys: &[String],
) -> Result<Vec<Attempt>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(select_payment!("WHERE tenant_id = "));
        q.push_bind(tenant.as_str())
            .push(" AND idempotency_key IN ");
        super::push_id_list(&mut q, keys.iter().map(String::as_str));
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter().map(attempt_from).collect()
    })
}

/// Attempts of one provider created in `[from, to]` that recur counts as money taken, a page
/// at a time after `after` (reconciliation's side of the comparison).
pub async fn taken_between(
    tx: &mut Tx,
    tenant: &TenantId,
    provider: Provider,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    after: &str,
) -> Result<Vec<Attempt>, StoreError> {
    on_tx!(tx, |c| {
        let rows = sqlx::query(select_payment!(
            "WHERE tenant_id = $1 AND provider = $2 AND created_at >= $3 AND created_at <= $4 AND id > $5
               AND status IN ('succeeded', 'refunded') ORDER BY id LIMIT 500"
        ))
        .bind(tenant.as_str())
        .bind(provider.as_str())
        .bind(from)
        .bind(to)
        .bind(after)
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(attempt_from).collect()
    })
}

pub async fn list_payments(
    tx: &mut Tx,
    tenant: &TenantId,
    invoice: Option<&InvoiceId>,
    page: &Page,
) -> Result<(Vec<Payment>, bool), StoreError> {
    let rows = on_tx!(tx, |c| {
        let rows = sqlx::query(select_payment!(
            "WHERE tenant_id = $1 AND ($2 IS NULL OR invoice_id = $2) AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(tenant.as_str())
        .bind(invoice.map(InvoiceId::as_str))
        .bind(page.starting_after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| attempt_from(r).map(|a| a.payment))
            .collect::<Result<Vec<_>, _>>()?
    });
    Ok(page.split(rows))
}

/// Invoices among `ids` that already have an attempt in flight (pending or unknown).
pub async fn in_flight(
    tx: &mut Tx,
    tenant: &TenantId,
    ids: &[InvoiceId],
) -> Result<std::collections::HashSet<InvoiceId>, StoreError> {
    if ids.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT invoice_id FROM payment_attempts WHERE status IN ('pending', 'unknown') AND tenant_id = ",
        );
        q.push_bind(tenant.as_str()).push(" AND invoice_id IN ");
        super::push_id_list(&mut q, ids.iter().map(|i| i.as_str()));
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| r.parsed("invoice_id", InvoiceId::parse))
            .collect()
    })
}

/// Inserts many attempts with multi-row statements.
pub async fn insert_attempts(
    tx: &mut Tx,
    tenant: &TenantId,
    attempts: &[Attempt],
) -> Result<(), StoreError> {
    for chunk in attempts.chunks(500) {
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO payment_attempts (tenant_id, id, invoice_id, attempt_number, idempotency_key, provider, payment_method, status,
                     amount, currency, created_at, provider_customer, sent_at) ",
            );
            q.push_values(chunk, |mut b, a| {
                b.push_bind(tenant.as_str())
                    .push_bind(a.payment.id.as_str())
                    .push_bind(a.payment.invoice.as_str())
                    .push_bind(i64::from(a.payment.attempt_number))
                    .push_bind(a.idempotency_key.as_str())
                    .push_bind(a.payment.provider.as_str())
                    .push_bind(a.token.as_deref())
                    .push_bind(a.payment.status.as_str())
                    .push_bind(a.payment.amount)
                    .push_bind(a.payment.currency.code())
                    .push_bind(a.payment.created)
                    .push_bind(a.provider_customer.as_deref())
                    .push_bind(a.sent_at);
            });
            q.build()
                .execute(&mut *c)
                .await
                .map_err(StoreError::from_write)?;
        });
    }
    Ok(())
}

/// Records many outcomes with one statement per chunk.
pub async fn update_attempts(
    tx: &mut Tx,
    tenant: &TenantId,
    payments: &[Payment],
) -> Result<(), StoreError> {
    for chunk in payments.chunks(500) {
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "WITH v (id, status, provider_ref, decline_code, failure_message, completed_at, refunded) AS (",
            );
            q.push_values(chunk, |mut b, p| {
                b.push_bind(p.id.as_str())
                    .push_bind(p.status.as_str())
                    .push_bind(p.provider_ref.as_deref())
                    .push_bind(p.decline_code.as_deref())
                    .push_bind(p.failure_message.as_deref())
                    .push_bind(p.completed_at)
                    .push_bind(p.amount_refunded);
            });
            q.push(
                ") UPDATE payment_attempts SET status = v.status, provider_ref = v.provider_ref, decline_code = v.decline_code,
                     failure_message = v.failure_message, completed_at = v.completed_at,
                     amount_refunded = v.refunded
                 FROM v WHERE payment_attempts.tenant_id = ",
            );
            q.push_bind(tenant.as_str())
                .push(" AND payment_attempts.id = v.id");
            q.build().execute(&mut *c).await?;
        });
    }
    Ok(())
}
