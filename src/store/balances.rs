//! Customer balances (one row per customer and currency) and their ledger of transactions.
//! Balances are read locked (PostgreSQL, `FOR UPDATE`, in customer order) and written back
//! with the transactions that moved them, in one transaction.

use super::rows::{Rec, known};
use super::{Page, StoreError, Tx, on_tx, push_id_list};
use crate::domain::balance::{BalanceTransaction, BalanceTransactionType};
use crate::domain::currency::Currency;
use crate::domain::ids::{BalanceTransactionId, CreditNoteId, CustomerId, InvoiceId, TenantId};
use std::collections::{BTreeMap, HashMap};

/// A customer's balance in one currency.
pub type Key = (CustomerId, Currency);

/// Makes sure rows exist for `keys`, so the lock below covers them (a balance created
/// concurrently would otherwise not be seen, and one credit could overwrite another).
pub async fn ensure_rows(tx: &mut Tx, tenant: &TenantId, keys: &[Key]) -> Result<(), StoreError> {
    for chunk in keys.chunks(500) {
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO customer_balances (tenant_id, customer_id, currency, balance) ",
            );
            q.push_values(chunk, |mut b, (customer, currency)| {
                b.push_bind(tenant.as_str())
                    .push_bind(customer.as_str())
                    .push_bind(currency.code())
                    .push_bind(0i64);
            });
            q.push(" ON CONFLICT (tenant_id, customer_id, currency) DO NOTHING");
            q.build().execute(&mut *c).await?;
        });
    }
    Ok(())
}

/// The balances of these customers (every currency), locked until the transaction ends.
pub async fn lock_balances(
    tx: &mut Tx,
    tenant: &TenantId,
    customers: &[CustomerId],
) -> Result<HashMap<Key, i64>, StoreError> {
    balances(tx, tenant, customers, true).await
}

/// The balances of these customers (every currency), for showing them.
pub async fn balances_of(
    tx: &mut Tx,
    tenant: &TenantId,
    customers: &[CustomerId],
) -> Result<HashMap<Key, i64>, StoreError> {
    balances(tx, tenant, customers, false).await
}

async fn balances(
    tx: &mut Tx,
    tenant: &TenantId,
    customers: &[CustomerId],
    lock: bool,
) -> Result<HashMap<Key, i64>, StoreError> {
    if customers.is_empty() {
        return Ok(HashMap::new());
    }
    let suffix = match (tx as &Tx, lock) {
        (Tx::Postgres(_), true) => " ORDER BY customer_id, currency FOR UPDATE",
        (Tx::Postgres(_) | Tx::Sqlite(..), _) => "",
    };
    on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT customer_id, currency, balance FROM customer_balances WHERE tenant_id = ",
        );
        q.push_bind(tenant.as_str()).push(" AND customer_id IN ");
        push_id_list(&mut q, customers.iter().map(CustomerId::as_str));
        q.push(suffix);
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    (
                        r.parsed("customer_id", CustomerId::parse)?,
                        r.parsed("currency", Currency::parse)?,
                    ),
                    r.int("balance")?,
                ))
            })
            .collect()
    })
}

/// Records transactions and sets each balance they moved to the last one's ending balance.
pub async fn record(
    tx: &mut Tx,
    tenant: &TenantId,
    txns: &[BalanceTransaction],
) -> Result<(), StoreError> {
    if txns.is_empty() {
        return Ok(());
    }
    let mut last: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for t in txns {
        last.insert((t.customer.as_str(), t.currency.code()), t.ending_balance);
    }
    let finals: Vec<_> = last.into_iter().collect();
    for chunk in finals.chunks(500) {
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO customer_balances (tenant_id, customer_id, currency, balance) ",
            );
            q.push_values(chunk, |mut b, ((customer, currency), balance)| {
                b.push_bind(tenant.as_str())
                    .push_bind(*customer)
                    .push_bind(*currency)
                    .push_bind(*balance);
            });
            q.push(
                " ON CONFLICT (tenant_id, customer_id, currency) DO UPDATE SET balance = excluded.balance",
            );
            q.build().execute(&mut *c).await?;
        });
    }
    for chunk in txns.chunks(500) {
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO customer_balance_transactions (tenant_id, id, customer_id, currency, amount, ending_balance,
                     type, invoice_id, credit_note_id, description, created_at) ",
            );
            q.push_values(chunk, |mut b, t| {
                b.push_bind(tenant.as_str())
                    .push_bind(t.id.as_str())
                    .push_bind(t.customer.as_str())
                    .push_bind(t.currency.code())
                    .push_bind(t.amount)
                    .push_bind(t.ending_balance)
                    .push_bind(t.kind.as_str())
                    .push_bind(t.invoice.as_ref().map(InvoiceId::as_str))
                    .push_bind(t.credit_note.as_ref().map(CreditNoteId::as_str))
                    .push_bind(t.description.as_deref())
                    .push_bind(t.created);
            });
            q.build().execute(&mut *c).await?;
        });
    }
    Ok(())
}

/// A customer's balance transactions, newest first.
pub async fn list_transactions(
    tx: &mut Tx,
    tenant: &TenantId,
    customer: &CustomerId,
    page: &Page,
) -> Result<(Vec<BalanceTransaction>, bool), StoreError> {
    let rows = on_tx!(tx, |c| {
        let rows = sqlx::query(
            "SELECT id, customer_id, currency, amount, ending_balance, type, invoice_id, credit_note_id, description, created_at
             FROM customer_balance_transactions
             WHERE tenant_id = $1 AND customer_id = $2 AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        )
        .bind(tenant.as_str())
        .bind(customer.as_str())
        .bind(page.starting_after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BalanceTransaction {
                    id: r.parsed("id", BalanceTransactionId::parse)?,
                    object: "customer_balance_transaction",
                    customer: r.parsed("customer_id", CustomerId::parse)?,
                    currency: r.parsed("currency", Currency::parse)?,
                    amount: r.int("amount")?,
                    ending_balance: r.int("ending_balance")?,
                    kind: r.parsed("type", known(BalanceTransactionType::parse))?,
                    invoice: r.opt_parsed("invoice_id", InvoiceId::parse)?,
                    credit_note: r.opt_parsed("credit_note_id", CreditNoteId::parse)?,
                    description: r.opt_text("description")?,
                    created: r.time("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?
    });
    Ok(page.split(rows))
}
