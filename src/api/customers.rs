//! `/v1/customers`.

use super::error::ApiError;
use super::extract::{Body, Ctx, Query};
use super::{AppState, list, page, path_id};
use crate::domain::balance::BalanceTransaction;
use crate::domain::contact::{Address, Country, Email, Locale, TaxId, check_text};
use crate::domain::currency::Currency;
use crate::domain::customer::{Customer, CustomerPatch, PaymentMethod, Provider, TaxExempt};
use crate::domain::ids::CustomerId;
use crate::services::customers::{self as service, BalanceAdjustment, NewCustomer};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/customers", get(list_customers).post(create_customer))
        .route(
            "/customers/{id}",
            get(get_customer)
                .patch(update_customer)
                .post(update_customer),
        )
        .route(
            "/customers/{id}/balance_transactions",
            get(list_balance_transactions).post(create_balance_transaction),
        )
        .route("/customers/{id}/erase", axum::routing::post(erase_customer))
        .route("/customers/{id}/data_export", get(export_customer))
}

#[utoipa::path(post, path = "/v1/customers/{id}/erase", responses((status = 200, description = "what the erasure did: subscriptions canceled, events scrubbed, e-mails skipped and removed (see docs/PRIVACY.md)"), (status = 404, description = "unknown id")))]
pub async fn erase_customer(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(_): Body<super::invoices::NoFields>,
) -> Result<Json<crate::services::privacy::Erasure>, ApiError> {
    let id = path_id("customer", &id, CustomerId::parse)?;
    Ok(Json(
        crate::services::privacy::erase_customer(&s.db, &s.config, &ctx.tenant, &id, ctx.now)
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/customers/{id}/data_export", responses((status = 200, description = "everything recur holds about the customer as one JSON document: the customer, subscriptions, invoices, payments, credit notes, balance transactions and the events that name it"), (status = 404, description = "unknown id")))]
pub async fn export_customer(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<crate::services::privacy::DataExport>, ApiError> {
    let id = path_id("customer", &id, CustomerId::parse)?;
    Ok(Json(
        crate::services::privacy::export_customer(&s.db, &ctx.tenant, &id, ctx.now).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBalanceTransaction {
    /// Minor units; negative adds credit the next invoices use, positive adds debt.
    amount: i64,
    /// ISO 4217; defaults to the customer's currency.
    currency: Option<String>,
    /// Why (required, at most 500 characters).
    description: String,
}

#[utoipa::path(post, path = "/v1/customers/{id}/balance_transactions", request_body = CreateBalanceTransaction, responses((status = 200, description = "the balance transaction")))]
pub async fn create_balance_transaction(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<CreateBalanceTransaction>,
) -> Result<Json<BalanceTransaction>, ApiError> {
    let id = path_id("customer", &id, CustomerId::parse)?;
    if b.amount == 0 {
        return Err(ApiError::invalid("amount", "amount must not be zero"));
    }
    let description = b.description.trim().to_owned();
    if description.is_empty() || description.chars().count() > 500 {
        return Err(ApiError::invalid(
            "description",
            "description (the reason) is required, at most 500 characters",
        ));
    }
    let currency = b
        .currency
        .map(|c| {
            Currency::parse(&c.to_ascii_uppercase()).map_err(|e| ApiError::invalid("currency", e))
        })
        .transpose()?;
    let adj = BalanceAdjustment {
        amount: b.amount,
        currency,
        description,
    };
    Ok(Json(
        service::adjust_balance(&s.db, &ctx.tenant, &id, adj, ctx.now).await?,
    ))
}

#[utoipa::path(get, path = "/v1/customers/{id}/balance_transactions", params(ListParams), responses((status = 200, description = "the customer's balance transactions, newest first")))]
pub async fn list_balance_transactions(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(q): Query<ListParams>,
) -> Result<Json<super::List<BalanceTransaction>>, ApiError> {
    let id = path_id("customer", &id, CustomerId::parse)?;
    let page = page(&s, &ctx, "cbtxn", q.limit, q.starting_after).await?;
    Ok(list(
        service::list_balance_transactions(&s.db, &ctx.tenant, &id, &page).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressBody {
    line1: Option<String>,
    line2: Option<String>,
    city: Option<String>,
    postal_code: Option<String>,
    state: Option<String>,
    country: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaxIdBody {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentMethodBody {
    provider: String,
    token: String,
    /// The provider's customer the method is attached to: required for stripe (`cus_…`).
    customer: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    external_id: Option<String>,
    name: String,
    email: Option<String>,
    currency: Option<String>,
    locale: Option<String>,
    address: Option<AddressBody>,
    tax_ids: Option<Vec<TaxIdBody>>,
    /// none | exempt | reverse
    tax_exempt: Option<String>,
    payment_method: Option<PaymentMethodBody>,
}

/// `null` clears a field, absence leaves it: PATCH needs to tell the two apart.
fn present<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomer {
    #[serde(default, deserialize_with = "present")]
    external_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    currency: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    locale: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    address: Option<Option<AddressBody>>,
    #[serde(default, deserialize_with = "present")]
    tax_ids: Option<Option<Vec<TaxIdBody>>>,
    #[serde(default, deserialize_with = "present")]
    tax_exempt: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    payment_method: Option<Option<PaymentMethodBody>>,
}

/// Fields that always have a value: `null` is a mistake, not a way to clear them.
fn required<T>(param: &'static str, v: Option<Option<T>>) -> Result<Option<T>, ApiError> {
    match v {
        Some(None) => Err(ApiError::invalid(param, format!("{param} cannot be null"))),
        Some(Some(x)) => Ok(Some(x)),
        None => Ok(None),
    }
}

pub(super) fn text(param: &'static str, s: String, max: usize) -> Result<String, ApiError> {
    check_text(param, &s, max).map_err(|e| ApiError::invalid(param, e))?;
    Ok(s)
}

fn name(s: String) -> Result<String, ApiError> {
    if s.trim().is_empty() {
        return Err(ApiError::invalid("name", "name must not be empty"));
    }
    text("name", s, 200)
}

fn external_id(s: String) -> Result<String, ApiError> {
    if s.trim().is_empty() {
        return Err(ApiError::invalid(
            "external_id",
            "external_id must not be empty",
        ));
    }
    text("external_id", s, 200)
}

pub(super) fn email(s: String) -> Result<Email, ApiError> {
    Email::parse(&s).map_err(|e| ApiError::invalid("email", e))
}

fn currency(s: String) -> Result<Currency, ApiError> {
    Currency::parse(&s).map_err(|e| ApiError::invalid("currency", e))
}

pub(super) fn locale(s: String) -> Result<Locale, ApiError> {
    Locale::parse(&s).map_err(|e| ApiError::invalid("locale", e))
}

pub(super) fn address(a: AddressBody) -> Result<Address, ApiError> {
    let field = |name: &'static str, v: Option<String>| v.map(|s| text(name, s, 200)).transpose();
    Ok(Address {
        line1: field("address.line1", a.line1)?,
        line2: field("address.line2", a.line2)?,
        city: field("address.city", a.city)?,
        postal_code: field("address.postal_code", a.postal_code)?,
        state: field("address.state", a.state)?,
        country: a
            .country
            .map(|c| Country::parse(&c).map_err(|e| ApiError::invalid("address.country", e)))
            .transpose()?,
    })
}

pub(super) fn tax_ids(v: Vec<TaxIdBody>) -> Result<Vec<TaxId>, ApiError> {
    if v.len() > 5 {
        return Err(ApiError::invalid("tax_ids", "at most 5 tax ids"));
    }
    v.into_iter()
        .enumerate()
        .map(|(i, t)| {
            TaxId::parse(&t.kind, &t.value)
                .map_err(|e| ApiError::invalid(format!("tax_ids[{i}]"), e))
        })
        .collect()
}

fn tax_exempt(s: String) -> Result<TaxExempt, ApiError> {
    TaxExempt::parse(&s).ok_or_else(|| {
        ApiError::invalid(
            "tax_exempt",
            "tax_exempt must be one of none, exempt, reverse",
        )
    })
}

fn payment_method(p: PaymentMethodBody) -> Result<PaymentMethod, ApiError> {
    PaymentMethod::parse(&p.provider, &p.token, p.customer.as_deref())
        .map_err(|e| ApiError::invalid("payment_method", e))
}

impl TryFrom<CreateCustomer> for NewCustomer {
    type Error = ApiError;

    fn try_from(b: CreateCustomer) -> Result<Self, ApiError> {
        Ok(NewCustomer {
            external_id: b.external_id.map(external_id).transpose()?,
            name: name(b.name)?,
            email: b.email.map(email).transpose()?,
            currency: b.currency.map(currency).transpose()?,
            locale: b.locale.map(locale).transpose()?,
            address: b.address.map(address).transpose()?,
            tax_ids: b.tax_ids.map(tax_ids).transpose()?.unwrap_or_default(),
            tax_exempt: b
                .tax_exempt
                .map(tax_exempt)
                .transpose()?
                .unwrap_or_default(),
            payment_method: b.payment_method.map(payment_method).transpose()?,
        })
    }
}

impl TryFrom<UpdateCustomer> for CustomerPatch {
    type Error = ApiError;

    fn try_from(b: UpdateCustomer) -> Result<Self, ApiError> {
        let clearable = |v: Option<Option<String>>, f: fn(String) -> Result<String, ApiError>| {
            v.map(|o| o.map(f).transpose()).transpose()
        };
        Ok(CustomerPatch {
            external_id: clearable(b.external_id, external_id)?,
            name: required("name", b.name)?.map(name).transpose()?,
            email: b.email.map(|o| o.map(email).transpose()).transpose()?,
            currency: b
                .currency
                .map(|o| o.map(currency).transpose())
                .transpose()?,
            locale: b.locale.map(|o| o.map(locale).transpose()).transpose()?,
            address: b.address.map(|o| o.map(address).transpose()).transpose()?,
            tax_ids: required("tax_ids", b.tax_ids)?.map(tax_ids).transpose()?,
            tax_exempt: required("tax_exempt", b.tax_exempt)?
                .map(tax_exempt)
                .transpose()?,
            payment_method: b
                .payment_method
                .map(|o| o.map(payment_method).transpose())
                .transpose()?,
        })
    }
}

/// A payment method is checked before it is stored: one the tenant's mode cannot charge
/// through (a sandbox token for a live tenant, a Stripe method for a test tenant on a live
/// key, or the reverse) is refused, and a Stripe method must exist in the tenant's Stripe
/// account (its own, or the installation's), with its customer, and not belong to another
/// customer.
async fn check_mode(
    s: &AppState,
    ctx: &Ctx,
    method: Option<&PaymentMethod>,
) -> Result<(), ApiError> {
    use crate::payments::stripe::MethodRefused;
    let Some(m) = method else {
        return Ok(());
    };
    let providers = s.payments.for_tenant(&s.db, &ctx.tenant).await?;
    providers
        .check_mode(m.provider)
        .map_err(|message| ApiError::Unprocessable {
            code: "livemode_mismatch",
            message,
            param: Some("payment_method".into()),
        })?;
    let (Some(stripe), Some(customer)) = (
        providers
            .stripe()
            .filter(|_| m.provider == Provider::Stripe),
        m.customer.as_deref(),
    ) else {
        return Ok(());
    };
    let refused = |code: &'static str, param: &str, message: String| ApiError::Unprocessable {
        code,
        message,
        param: Some(param.into()),
    };
    if !providers.own_stripe_account() {
        let mut tx = s.db.read().await?;
        let taken = crate::store::customers::stripe_customer_of_another_tenant(
            &mut tx,
            &ctx.tenant.id,
            customer,
        )
        .await?;
        tx.commit().await?;
        if taken {
            return Err(refused(
                "payment_method_customer_mismatch",
                "payment_method.customer",
                format!(
                    "Stripe customer {customer} belongs to another tenant of this installation"
                ),
            ));
        }
    }
    match stripe.check_method(&m.token, customer).await {
        Ok(()) => Ok(()),
        Err(MethodRefused::UnknownMethod) => Err(refused(
            "payment_method_unknown",
            "payment_method.token",
            format!(
                "no payment method {} in the tenant's Stripe account",
                m.token
            ),
        )),
        Err(MethodRefused::UnknownCustomer) => Err(refused(
            "payment_method_unknown",
            "payment_method.customer",
            format!("no customer {customer} in the tenant's Stripe account"),
        )),
        Err(MethodRefused::OtherCustomer) => Err(refused(
            "payment_method_customer_mismatch",
            "payment_method.customer",
            format!(
                "payment method {} belongs to another Stripe customer",
                m.token
            ),
        )),
        Err(MethodRefused::Unreachable(reason)) => Err(refused(
            "provider_unreachable",
            "payment_method",
            format!(
                "Stripe could not be reached to check the payment method; nothing was saved: {reason}"
            ),
        )),
    }
}

#[utoipa::path(post, path = "/v1/customers", request_body = CreateCustomer, responses((status = 200, description = "the customer")))]
pub async fn create_customer(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(body): Body<CreateCustomer>,
) -> Result<Json<Customer>, ApiError> {
    let new = NewCustomer::try_from(body)?;
    check_mode(&s, &ctx, new.payment_method.as_ref()).await?;
    Ok(Json(
        service::create_customer(&s.db, &ctx.tenant, new, ctx.now).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/customers/{id}", request_body = UpdateCustomer, responses((status = 200, description = "the customer")))]
pub async fn update_customer(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(body): Body<UpdateCustomer>,
) -> Result<Json<Customer>, ApiError> {
    let id = path_id("customer", &id, CustomerId::parse)?;
    let patch = CustomerPatch::try_from(body)?;
    check_mode(
        &s,
        &ctx,
        patch.payment_method.as_ref().and_then(Option::as_ref),
    )
    .await?;
    let new_method = matches!(patch.payment_method, Some(Some(_)));
    let customer = service::update_customer(&s.db, &ctx.tenant, &id, patch, ctx.now).await?;
    if new_method {
        crate::services::payments::retry_with_new_method(
            &s.db,
            &s.payments,
            &ctx.tenant,
            &customer,
            ctx.now,
        )
        .await?;
    }
    Ok(Json(customer))
}

#[utoipa::path(get, path = "/v1/customers/{id}", responses((status = 200, description = "the customer"), (status = 404, description = "unknown id")))]
pub async fn get_customer(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Customer>, ApiError> {
    let id = path_id("customer", &id, CustomerId::parse)?;
    Ok(Json(service::get_customer(&s.db, &ctx.tenant, &id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    starting_after: Option<String>,
}

#[utoipa::path(get, path = "/v1/customers", params(ListParams), responses((status = 200, description = "a page of customers, newest first")))]
pub async fn list_customers(
    State(s): State<AppState>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
) -> Result<Json<super::List<Customer>>, ApiError> {
    let page = page(&s, &ctx, "cus", q.limit, q.starting_after).await?;
    Ok(list(
        service::list_customers(&s.db, &ctx.tenant, &page).await?,
    ))
}
