//! `/v1/subscriptions`.

use super::error::ApiError;
use super::extract::{Body, Ctx, Query};
use super::{AppState, List, body_id, list, page, path_id};
use crate::domain::ids::{
    CouponId, CustomerId, PriceId, SubscriptionId, SubscriptionItemId, TaxRateId,
};
use crate::domain::subscription::MAX_ITEMS;
use crate::domain::subscription::{
    CollectionMethod, ItemChange, ProrationBehavior, Subscription, SubscriptionStatus,
};
use crate::services::subscriptions::{
    self as service, CancelOptions, NewSubscription, SubscriptionUpdate,
};
use crate::store::subscriptions::SubscriptionFilter;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Quantities above this are almost certainly a unit mistake (cents for euros, bytes for GB).
pub const MAX_QUANTITY: u64 = 1_000_000_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/subscriptions",
            get(list_subscriptions).post(create_subscription),
        )
        .route(
            "/subscriptions/{id}",
            get(get_subscription)
                .patch(update_subscription)
                .post(update_subscription),
        )
        .route("/subscriptions/{id}/cancel", post(cancel_subscription))
        .route("/subscriptions/{id}/pause", post(pause_subscription))
        .route("/subscriptions/{id}/resume", post(resume_subscription))
        .route(
            "/subscriptions/{id}/retry_billing",
            post(retry_subscription_billing),
        )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemBody {
    price: String,
    quantity: Option<u64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    customer: String,
    items: Vec<ItemBody>,
    trial_period_days: Option<u32>,
    /// RFC 3339; the first period runs from now to this instant and is prorated.
    billing_cycle_anchor: Option<DateTime<Utc>>,
    /// charge_automatically | send_invoice
    collection_method: Option<String>,
    days_until_due: Option<u32>,
    coupon: Option<String>,
    default_tax_rates: Option<Vec<String>>,
    /// create_prorations | always_invoice | none
    proration_behavior: Option<String>,
}

fn quantity(param: String, q: Option<u64>) -> Result<u64, ApiError> {
    let q = q.unwrap_or(1);
    if q > MAX_QUANTITY {
        return Err(ApiError::invalid(
            param,
            format!("quantity must be at most {MAX_QUANTITY}"),
        ));
    }
    Ok(q)
}

fn proration(s: Option<String>) -> Result<Option<ProrationBehavior>, ApiError> {
    s.map(|s| {
        ProrationBehavior::parse(&s).ok_or_else(|| {
            ApiError::invalid(
                "proration_behavior",
                "proration_behavior must be create_prorations, always_invoice or none",
            )
        })
    })
    .transpose()
}

impl TryFrom<CreateSubscription> for NewSubscription {
    type Error = ApiError;

    fn try_from(b: CreateSubscription) -> Result<Self, ApiError> {
        if b.items.is_empty() {
            return Err(ApiError::missing("items"));
        }
        if b.items.len() > MAX_ITEMS {
            return Err(ApiError::invalid(
                "items",
                format!("at most {MAX_ITEMS} items"),
            ));
        }
        let items = b
            .items
            .into_iter()
            .enumerate()
            .map(|(i, it)| {
                let price = body_id(&format!("items[{i}].price"), &it.price, PriceId::parse)?;
                Ok((
                    price,
                    quantity(format!("items[{i}].quantity"), it.quantity)?,
                ))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        if let Some(days) = b.trial_period_days
            && days > 730
        {
            return Err(ApiError::invalid(
                "trial_period_days",
                "trial_period_days must be at most 730",
            ));
        }
        let collection_method = match b.collection_method.as_deref() {
            None => CollectionMethod::ChargeAutomatically,
            Some(m) => CollectionMethod::parse(m).ok_or_else(|| {
                ApiError::invalid(
                    "collection_method",
                    "collection_method must be charge_automatically or send_invoice",
                )
            })?,
        };
        match (collection_method, b.days_until_due) {
            (CollectionMethod::SendInvoice, None) => {
                return Err(ApiError::missing("days_until_due"));
            }
            (CollectionMethod::SendInvoice, Some(d)) if d > 365 => {
                return Err(ApiError::invalid(
                    "days_until_due",
                    "days_until_due must be at most 365",
                ));
            }
            (CollectionMethod::ChargeAutomatically, Some(_)) => {
                return Err(ApiError::invalid(
                    "days_until_due",
                    "days_until_due is only allowed with collection_method=send_invoice",
                ));
            }
            (CollectionMethod::SendInvoice, Some(_))
            | (CollectionMethod::ChargeAutomatically, None) => {}
        }
        let rates = b.default_tax_rates.unwrap_or_default();
        if rates.len() > 5 {
            return Err(ApiError::invalid(
                "default_tax_rates",
                "at most 5 tax rates",
            ));
        }
        let default_tax_rates = rates
            .iter()
            .enumerate()
            .map(|(i, r)| body_id(&format!("default_tax_rates[{i}]"), r, TaxRateId::parse))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(dup) = default_tax_rates
            .iter()
            .enumerate()
            .find(|(i, r)| default_tax_rates[..*i].contains(r))
        {
            return Err(ApiError::invalid(
                format!("default_tax_rates[{}]", dup.0),
                "tax rate listed twice",
            ));
        }
        Ok(NewSubscription {
            customer: body_id("customer", &b.customer, CustomerId::parse)?,
            items,
            trial_period_days: b.trial_period_days,
            billing_cycle_anchor: b
                .billing_cycle_anchor
                .map(crate::domain::tenant::check_instant)
                .transpose()
                .map_err(|e| ApiError::invalid("billing_cycle_anchor", e))?,
            collection_method,
            days_until_due: b.days_until_due,
            coupon: b
                .coupon
                .map(|c| body_id("coupon", &c, CouponId::parse))
                .transpose()?,
            default_tax_rates,
            proration_behavior: proration(b.proration_behavior)?.unwrap_or_default(),
        })
    }
}

#[utoipa::path(post, path = "/v1/subscriptions", request_body = CreateSubscription, responses((status = 200, description = "the subscription")))]
pub async fn create_subscription(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(b): Body<CreateSubscription>,
) -> Result<Json<Subscription>, ApiError> {
    let new = NewSubscription::try_from(b)?;
    Ok(Json(
        service::create_subscription(&s.db, &ctx.tenant, new, ctx.now).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemChangeBody {
    id: Option<String>,
    price: Option<String>,
    quantity: Option<u64>,
    deleted: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscription {
    items: Option<Vec<ItemChangeBody>>,
    proration_behavior: Option<String>,
    cancel_at_period_end: Option<bool>,
}

fn item_change(i: usize, c: ItemChangeBody) -> Result<ItemChange, ApiError> {
    let param = |f: &str| format!("items[{i}].{f}");
    let quantity = c
        .quantity
        .map(|q| quantity(param("quantity"), Some(q)))
        .transpose()?;
    let price = c
        .price
        .map(|p| body_id(&param("price"), &p, PriceId::parse))
        .transpose()?;
    match (c.id, c.deleted.unwrap_or(false)) {
        (Some(id), true) => {
            if price.is_some() || quantity.is_some() {
                return Err(ApiError::invalid(
                    param("deleted"),
                    "a deleted item takes no price or quantity",
                ));
            }
            Ok(ItemChange::Delete {
                id: body_id(&param("id"), &id, SubscriptionItemId::parse)?,
            })
        }
        (Some(id), false) => {
            if price.is_none() && quantity.is_none() {
                return Err(ApiError::missing(param("quantity")));
            }
            Ok(ItemChange::Update {
                id: body_id(&param("id"), &id, SubscriptionItemId::parse)?,
                price,
                quantity,
            })
        }
        (None, true) => Err(ApiError::missing(param("id"))),
        (None, false) => Ok(ItemChange::Add {
            price: price.ok_or_else(|| ApiError::missing(param("price")))?,
            quantity: quantity.unwrap_or(1),
        }),
    }
}

impl TryFrom<UpdateSubscription> for SubscriptionUpdate {
    type Error = ApiError;

    fn try_from(b: UpdateSubscription) -> Result<Self, ApiError> {
        let items = b.items.unwrap_or_default();
        if items.len() > MAX_ITEMS {
            return Err(ApiError::invalid(
                "items",
                format!("at most {MAX_ITEMS} item changes"),
            ));
        }
        let update = SubscriptionUpdate {
            items: items
                .into_iter()
                .enumerate()
                .map(|(i, c)| item_change(i, c))
                .collect::<Result<_, _>>()?,
            proration_behavior: proration(b.proration_behavior)?,
            cancel_at_period_end: b.cancel_at_period_end,
        };
        if update.items.is_empty() && update.cancel_at_period_end.is_none() {
            return Err(ApiError::missing("items"));
        }
        Ok(update)
    }
}

#[utoipa::path(patch, path = "/v1/subscriptions/{id}", request_body = UpdateSubscription, responses((status = 200, description = "the subscription")))]
pub async fn update_subscription(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<UpdateSubscription>,
) -> Result<Json<Subscription>, ApiError> {
    let id = path_id("subscription", &id, SubscriptionId::parse)?;
    let update = SubscriptionUpdate::try_from(b)?;
    Ok(Json(
        service::update_subscription(&s.db, &ctx.tenant, &id, update, ctx.now).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelSubscription {
    at_period_end: Option<bool>,
    /// Cancelling now: a final invoice for the usage so far and pending prorations.
    invoice_now: Option<bool>,
    /// Cancelling now: credit the unused time of the period already invoiced (to the
    /// customer's balance when the final invoice comes out negative).
    prorate: Option<bool>,
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/cancel", request_body = CancelSubscription, responses((status = 200, description = "the subscription")))]
pub async fn cancel_subscription(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<CancelSubscription>,
) -> Result<Json<Subscription>, ApiError> {
    let id = path_id("subscription", &id, SubscriptionId::parse)?;
    let at_period_end = b.at_period_end.unwrap_or(false);
    let options = CancelOptions {
        invoice_now: b.invoice_now.unwrap_or(false),
        prorate: b.prorate.unwrap_or(false),
    };
    if at_period_end && options != CancelOptions::default() {
        return Err(ApiError::invalid(
            if options.invoice_now {
                "invoice_now"
            } else {
                "prorate"
            },
            "invoice_now and prorate apply to cancelling now, not at the period end",
        ));
    }
    Ok(Json(
        service::cancel_subscription(&s.db, &ctx.tenant, &id, at_period_end, options, ctx.now)
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/pause", responses((status = 200, description = "the subscription")))]
pub async fn pause_subscription(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(_): Body<NoFields>,
) -> Result<Json<Subscription>, ApiError> {
    let id = path_id("subscription", &id, SubscriptionId::parse)?;
    Ok(Json(
        service::pause_subscription(&s.db, &ctx.tenant, &id, ctx.now).await?,
    ))
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/resume", responses((status = 200, description = "the subscription")))]
pub async fn resume_subscription(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(_): Body<NoFields>,
) -> Result<Json<Subscription>, ApiError> {
    let id = path_id("subscription", &id, SubscriptionId::parse)?;
    Ok(Json(
        service::resume_subscription(&s.db, &ctx.tenant, &id, ctx.now).await?,
    ))
}

/// Takes a subscription that billing set aside (`billing_error`) back into the run, billing
/// what is due at once; if it fails again it is set aside again with the new reason.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/retry_billing", responses((status = 200, description = "the subscription")))]
pub async fn retry_subscription_billing(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Body(_): Body<NoFields>,
) -> Result<Json<Subscription>, ApiError> {
    let id = path_id("subscription", &id, SubscriptionId::parse)?;
    Ok(Json(
        service::retry_billing(&s.db, &ctx.tenant, &id, ctx.now).await?,
    ))
}

#[utoipa::path(get, path = "/v1/subscriptions/{id}", responses((status = 200, description = "the subscription")))]
pub async fn get_subscription(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, ApiError> {
    let id = path_id("subscription", &id, SubscriptionId::parse)?;
    Ok(Json(
        service::get_subscription(&s.db, &ctx.tenant, &id).await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListSubscriptions {
    customer: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    starting_after: Option<String>,
}

#[utoipa::path(get, path = "/v1/subscriptions", params(ListSubscriptions), responses((status = 200, description = "a page of subscriptions")))]
pub async fn list_subscriptions(
    State(s): State<AppState>,
    ctx: Ctx,
    Query(q): Query<ListSubscriptions>,
) -> Result<Json<List<Subscription>>, ApiError> {
    let filter = SubscriptionFilter {
        customer: q.customer.map(|c| body_id("customer", &c, CustomerId::parse)).transpose()?,
        status: q
            .status
            .map(|s| {
                SubscriptionStatus::parse(&s).ok_or_else(|| {
                    ApiError::invalid("status", "status must be one of trialing, active, past_due, unpaid, paused, canceled")
                })
            })
            .transpose()?,
    };
    Ok(list(
        service::list_subscriptions(
            &s.db,
            &ctx.tenant,
            &filter,
            &page(&s, &ctx, "sub", q.limit, q.starting_after).await?,
        )
        .await?,
    ))
}
