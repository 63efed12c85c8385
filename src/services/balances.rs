//! Moving a customer's credit balance: the one way every movement is written (adjustments,
//! credit notes to the balance, voided invoices giving back what they used).

use super::ServiceError;
use crate::domain::balance::{BalanceTransaction, BalanceTransactionType};
use crate::domain::currency::Currency;
use crate::domain::event::EventType;
use crate::domain::ids::{CreditNoteId, CustomerId, InvoiceId};
use crate::domain::tenant::Tenant;
use crate::store::{Tx, balances, events};
use chrono::{DateTime, Utc};

/// One movement of one customer's balance in one currency, and what it refers to.
pub struct Movement {
    pub customer: CustomerId,
    pub currency: Currency,
    /// Negative adds credit, positive uses it up (or adds debt).
    pub amount: i64,
    pub kind: BalanceTransactionType,
    pub invoice: Option<InvoiceId>,
    pub credit_note: Option<CreditNoteId>,
    pub description: Option<String>,
}

/// Moves the balance inside the caller's transaction: locks it (after whatever the caller
/// locked: invoices, subscriptions), records the transaction with the balance it leaves, and
/// announces it.
pub async fn move_balance(
    tx: &mut Tx,
    tenant: &Tenant,
    m: Movement,
    now: DateTime<Utc>,
) -> Result<BalanceTransaction, ServiceError> {
    let key = (m.customer.clone(), m.currency);
    balances::ensure_rows(tx, &tenant.id, std::slice::from_ref(&key)).await?;
    let held = balances::lock_balances(tx, &tenant.id, std::slice::from_ref(&m.customer)).await?;
    let txn = BalanceTransaction::new(
        &m.customer,
        m.currency,
        held.get(&key).copied().unwrap_or(0),
        m.amount,
        m.kind,
        now,
    )
    .map_err(|e| ServiceError::unprocessable("balance_out_of_range", Some("amount"), e))?;
    let txn = BalanceTransaction {
        invoice: m.invoice,
        credit_note: m.credit_note,
        description: m.description,
        ..txn
    };
    balances::record(tx, &tenant.id, std::slice::from_ref(&txn)).await?;
    events::insert_event(
        tx,
        &tenant.id,
        EventType::CustomerBalanceTransactionCreated,
        txn.id.as_str(),
        &txn,
        now,
    )
    .await?;
    Ok(txn)
}
