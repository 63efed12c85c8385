//! Customers.

use super::ServiceError;
use crate::domain::contact::{Address, Email, Locale, TaxId};
use crate::domain::currency::Currency;
use crate::domain::customer::{Customer, CustomerPatch, PaymentMethod, TaxExempt};
use crate::domain::ids::CustomerId;
use crate::domain::tenant::Tenant;
use crate::store::{Db, Page, StoreError, customers, events};
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
        created: now,
        updated: now,
    };
    let mut tx = db.begin().await?;
    customers::insert_customer(&mut tx, &tenant.id, &customer)
        .await
        .map_err(on_conflict)?;
    events::insert_event(
        &mut tx,
        &tenant.id,
        "customer.created",
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
    customer.apply(patch, now);
    customers::update_customer(&mut tx, &tenant.id, &customer)
        .await
        .map_err(on_conflict)?;
    events::insert_event(
        &mut tx,
        &tenant.id,
        "customer.updated",
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
    let found = customers::find_customer(&mut tx, &tenant.id, id).await?;
    tx.commit().await?;
    found.ok_or_else(|| ServiceError::not_found("customer", id))
}

pub async fn list_customers(
    db: &Db,
    tenant: &Tenant,
    page: &Page,
) -> Result<(Vec<Customer>, bool), ServiceError> {
    let mut tx = db.read().await?;
    let out = customers::list_customers(&mut tx, &tenant.id, page).await?;
    tx.commit().await?;
    Ok(out)
}
