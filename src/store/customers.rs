use super::rows::{Rec, known, to_json};
use super::{Page, StoreError, Tx, on_tx};
use crate::domain::contact::{Email, Locale};
use crate::domain::currency::Currency;
use crate::domain::customer::{Customer, PaymentMethod, Provider, TaxExempt};
use crate::domain::ids::{CustomerId, TenantId};

macro_rules! select_customer {
    ($filter:literal) => {
        concat!(
            "SELECT id, external_id, name, email, currency, locale, address, tax_ids, tax_exempt, pm_provider, pm_token, pm_customer, created_at, updated_at, erased_at FROM customers ",
            $filter
        )
    };
}

fn customer_from(r: &impl Rec) -> Result<Customer, StoreError> {
    let payment_method = match (
        r.opt_parsed("pm_provider", known(Provider::parse))?,
        r.opt_text("pm_token")?,
    ) {
        (Some(provider), Some(token)) => Some(PaymentMethod {
            provider,
            token,
            customer: r.opt_text("pm_customer")?,
        }),
        (None, None) | (Some(_), None) | (None, Some(_)) => None,
    };
    Ok(Customer {
        id: r.parsed("id", CustomerId::parse)?,
        object: "customer",
        external_id: r.opt_text("external_id")?,
        name: r.text("name")?,
        email: r.opt_parsed("email", Email::parse)?,
        currency: r.opt_parsed("currency", Currency::parse)?,
        locale: r.opt_parsed("locale", Locale::parse)?,
        address: r.opt_json("address")?,
        tax_ids: r.json("tax_ids")?,
        tax_exempt: r.parsed("tax_exempt", known(TaxExempt::parse))?,
        payment_method,
        balance: 0,
        created: r.time("created_at")?,
        updated: r.time("updated_at")?,
        erased_at: r.opt_time("erased_at")?,
    })
}

pub async fn insert_customer(
    tx: &mut Tx,
    tenant: &TenantId,
    cu: &Customer,
) -> Result<(), StoreError> {
    let address = cu.address.as_ref().map(to_json).transpose()?;
    let tax_ids = to_json(&cu.tax_ids)?;
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO customers (tenant_id, id, external_id, name, email, currency, locale, address, tax_ids, tax_exempt, pm_provider, pm_token, created_at, updated_at, pm_customer)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    )
    .bind(tenant.as_str())
    .bind(cu.id.as_str())
    .bind(&cu.external_id)
    .bind(&cu.name)
    .bind(cu.email.as_ref().map(Email::as_str))
    .bind(cu.currency.map(|x| x.code().to_owned()))
    .bind(cu.locale.clone().map(String::from))
    .bind(&address)
    .bind(&tax_ids)
    .bind(cu.tax_exempt.as_str())
    .bind(cu.payment_method.as_ref().map(|p| p.provider.as_str()))
    .bind(cu.payment_method.as_ref().map(|p| p.token.as_str()))
    .bind(cu.created)
    .bind(cu.updated)
    .bind(cu.payment_method.as_ref().and_then(|p| p.customer.as_deref()))
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    .map_err(StoreError::from_write)
    })?;
    Ok(())
}

/// Writes the customer back; `false` when it was erased meanwhile (nothing written).
pub async fn update_customer(
    tx: &mut Tx,
    tenant: &TenantId,
    cu: &Customer,
) -> Result<bool, StoreError> {
    let address = cu.address.as_ref().map(to_json).transpose()?;
    let tax_ids = to_json(&cu.tax_ids)?;
    let n = on_tx!(tx, |c| {
        sqlx::query(
        "UPDATE customers SET external_id = $3, name = $4, email = $5, currency = $6, locale = $7, address = $8, tax_ids = $9,
             tax_exempt = $10, pm_provider = $11, pm_token = $12, updated_at = $13, pm_customer = $14
         WHERE tenant_id = $1 AND id = $2 AND erased_at IS NULL"
    )
    .bind(tenant.as_str())
    .bind(cu.id.as_str())
    .bind(&cu.external_id)
    .bind(&cu.name)
    .bind(cu.email.as_ref().map(Email::as_str))
    .bind(cu.currency.map(|x| x.code().to_owned()))
    .bind(cu.locale.clone().map(String::from))
    .bind(&address)
    .bind(&tax_ids)
    .bind(cu.tax_exempt.as_str())
    .bind(cu.payment_method.as_ref().map(|p| p.provider.as_str()))
    .bind(cu.payment_method.as_ref().map(|p| p.token.as_str()))
    .bind(cu.updated)
    .bind(cu.payment_method.as_ref().and_then(|p| p.customer.as_deref()))
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    .map_err(StoreError::from_write)
    })?;
    Ok(n == 1)
}

/// The tenant's customers with these ids (one query; unknown ids are left out).
pub async fn customers_by_ids(
    tx: &mut Tx,
    tenant: &TenantId,
    ids: &[CustomerId],
) -> Result<Vec<Customer>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(select_customer!("WHERE tenant_id = "));
        q.push_bind(tenant.as_str()).push(" AND id IN ");
        super::push_id_list(&mut q, ids.iter().map(CustomerId::as_str));
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter().map(customer_from).collect()
    })
}

pub async fn find_customer(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &CustomerId,
) -> Result<Option<Customer>, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(select_customer!("WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(customer_from).transpose()
    })
}

pub async fn list_customers(
    tx: &mut Tx,
    tenant: &TenantId,
    page: &Page,
) -> Result<(Vec<Customer>, bool), StoreError> {
    let rows = on_tx!(tx, |c| {
        let rows = sqlx::query(select_customer!(
            "WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(tenant.as_str())
        .bind(page.starting_after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(customer_from)
            .collect::<Result<Vec<_>, _>>()?
    });
    Ok(page.split(rows))
}

/// Payment methods of many customers in one query (collection works in batches).
pub async fn payment_methods_of(
    tx: &mut Tx,
    tenant: &TenantId,
    ids: &[CustomerId],
) -> Result<std::collections::HashMap<CustomerId, PaymentMethod>, StoreError> {
    if ids.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT id, pm_provider, pm_token, pm_customer FROM customers WHERE tenant_id = ",
        );
        q.push_bind(tenant.as_str())
            .push(" AND pm_token IS NOT NULL AND id IN ");
        super::push_id_list(&mut q, ids.iter().map(|i| i.as_str()));
        let rows = q.build().fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.parsed("id", CustomerId::parse)?,
                    PaymentMethod {
                        provider: r.parsed("pm_provider", known(Provider::parse))?,
                        token: r.text("pm_token")?,
                        customer: r.opt_text("pm_customer")?,
                    },
                ))
            })
            .collect()
    })
}

/// Whether another tenant stored this Stripe customer (`pm_customer`) with its payment
/// method: on the installation's shared Stripe account, one tenant must not charge another
/// tenant's customers by naming their ids. The one query that reads across tenants, on
/// purpose.
pub async fn stripe_customer_of_another_tenant(
    tx: &mut Tx,
    tenant: &TenantId,
    stripe_customer: &str,
) -> Result<bool, StoreError> {
    let n: i64 = on_tx!(tx, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM customers
         WHERE pm_provider = 'stripe' AND pm_customer = $2 AND tenant_id <> $1"
    )
    .bind(tenant.as_str())
    .bind(stripe_customer)
    .fetch_one(&mut *c)
    .await?);
    Ok(n > 0)
}
