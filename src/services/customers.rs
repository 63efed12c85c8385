//! Customers.

use super::ServiceError;
use crate::domain::balance::{BalanceTransaction, BalanceTransactionType};
use crate::domain::contact::{Address, Email, Locale, TaxId};
use crate::domain::currency::Currency;
use crate::domain::customer::{Customer, CustomerPatch, PaymentMethod, TaxExempt};
use crate::domain::event::EventType;
use crate::domain::ids::CustomerId;
use crate::domain::tenant::Tenant;
use crate::store::{Db, Page, StoreError, Tx, balances, customers, events};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct NewCustomer {
    pub external_id: Option<String>,
    pub name: String,
    pub email: Option<Email>,
    pub currency: Option<Currency>,
    pub locale: Option<Locale>,
    pub address: Option<Address>,
    pub tax_ids: Vec<TaxId>,
    pub tax_exempt: TaxExempt,
    pub payment_method: Option<PaymentMethod>,
}

fn on_conflict(e: StoreError) -> ServiceError {
    match e {
        StoreError::Conflict(_) => ServiceError::Conflict {
            code: "resource_already_exists",
            message: "a customer with this external_id already exists".into(),
            param: Some("external_id".into()),
        },
        other => other.into(),
    }
}

pub async fn create_customer(
    db: &Db,
    tenant: &Tenant,
    new: NewCustomer,
    now: DateTime<Utc>,
) -> Result<Customer, ServiceError> {
    let customer = Customer {
        id: CustomerId::generate(),
        object: "customer",
        external_id: new.external_id,
        name: new.name,
        email: new.email,
        currency: new.currency,
        locale: new.locale,
        address: new.address,
        tax_ids: new.tax_ids,
        tax_exempt: new.tax_exempt,
        payment_method: new.payment_method,
        balance: 0,
        created: now,
        updated: now,
        erased_at: None,
    };
    let mut tx = db.begin().await?;
    customers::insert_customer(&mut tx, &tenant.id, &customer)
        .await
        .map_err(on_conflict)?;
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::CustomerCreated,
        customer.id.as_str(),
        &customer,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(customer)
}

pub async fn update_customer(
    db: &Db,
    tenant: &Tenant,
    id: &CustomerId,
    patch: CustomerPatch,
    now: DateTime<Utc>,
) -> Result<Customer, ServiceError> {
    let mut tx = db.begin().await?;
    let mut customer = customers::find_customer(&mut tx, &tenant.id, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("customer", id))?;
    if customer.erased_at.is_some() {
        return Err(super::privacy::erased(id));
    }
    customer.apply(patch, now);
    if !customers::update_customer(&mut tx, &tenant.id, &customer)
        .await
        .map_err(on_conflict)?
    {
        return Err(super::privacy::erased(id));
    }
    with_balances(&mut tx, tenant, std::slice::from_mut(&mut customer)).await?;
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::CustomerUpdated,
        customer.id.as_str(),
        &customer,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(customer)
}

pub async fn get_customer(
    db: &Db,
    tenant: &Tenant,
    id: &CustomerId,
) -> Result<Customer, ServiceError> {
    let mut tx = db.read().await?;
    let mut found: Vec<Customer> = customers::find_customer(&mut tx, &tenant.id, id)
        .await?
        .into_iter()
        .collect();
    with_balances(&mut tx, tenant, &mut found).await?;
    tx.commit().await?;
    found
        .pop()
        .ok_or_else(|| ServiceError::not_found("customer", id))
}

/// Fills in each customer's `balance`: in its currency, or in the one currency it has a
/// balance in.
async fn with_balances(
    tx: &mut Tx,
    tenant: &Tenant,
    list: &mut [Customer],
) -> Result<(), ServiceError> {
    let ids: Vec<_> = list.iter().map(|c| c.id.clone()).collect();
    let held = balances::balances_of(tx, &tenant.id, &ids).await?;
    for c in list {
        let mut mine = held.iter().filter(|((id, _), _)| id == &c.id);
        c.balance = match c.currency {
            Some(cur) => held.get(&(c.id.clone(), cur)).copied().unwrap_or(0),
            None => match (mine.next(), mine.next()) {
                (Some((_, b)), None) => *b,
                (Some(_), Some(_)) | (None, _) => 0,
            },
        };
    }
    Ok(())
}

pub async fn list_customers(
    db: &Db,
    tenant: &Tenant,
    page: &Page,
) -> Result<(Vec<Customer>, bool), ServiceError> {
    let mut tx = db.read().await?;
    let mut out = customers::list_customers(&mut tx, &tenant.id, page).await?;
    with_balances(&mut tx, tenant, &mut out.0).await?;
    tx.commit().await?;
    Ok(out)
}

/// A person's change to a customer's balance, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceAdjustment {
    /// Negative adds credit, positive adds debt.
    pub amount: i64,
    /// Defaults to the customer's currency.
    pub currency: Option<Currency>,
    pub description: String,
}

pub async fn adjust_balance(
    db: &Db,
    tenant: &Tenant,
    id: &CustomerId,
    adj: BalanceAdjustment,
    now: DateTime<Utc>,
) -> Result<BalanceTransaction, ServiceError> {
    let mut tx = db.begin().await?;
    let customer = customers::find_customer(&mut tx, &tenant.id, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("customer", id))?;
    let currency = match (adj.currency, customer.currency) {
        (Some(given), Some(own)) if given != own => {
            return Err(ServiceError::unprocessable(
                "currency_mismatch",
                Some("currency"),
                format!("customer {id} pays in {own}, not {given}"),
            ));
        }
        (Some(c), _) | (None, Some(c)) => c,
        (None, None) => {
            return Err(ServiceError::MissingParam {
                param: "currency".into(),
            });
        }
    };
    let txn = super::balances::move_balance(
        &mut tx,
        tenant,
        super::balances::Movement {
            customer: customer.id.clone(),
            currency,
            amount: adj.amount,
            kind: BalanceTransactionType::Adjustment,
            invoice: None,
            credit_note: None,
            description: Some(adj.description),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(txn)
}

pub async fn list_balance_transactions(
    db: &Db,
    tenant: &Tenant,
    id: &CustomerId,
    page: &Page,
) -> Result<(Vec<BalanceTransaction>, bool), ServiceError> {
    let mut tx = db.read().await?;
    if customers::find_customer(&mut tx, &tenant.id, id)
        .await?
        .is_none()
    {
        return Err(ServiceError::not_found("customer", id));
    }
    let out = balances::list_transactions(&mut tx, &tenant.id, id, page).await?;
    tx.commit().await?;
    Ok(out)
}
