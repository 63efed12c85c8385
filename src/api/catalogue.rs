//! `/v1/prices`, `/v1/tax_rates`, `/v1/coupons`.

use super::error::ApiError;
use super::extract::{Body, Ctx, Query};
use super::{AppState, List, list, page, path_id};
use crate::domain::contact::{Country, check_text};
use crate::domain::currency::Currency;
use crate::domain::ids::{CouponId, PriceId, TaxRateId};
use crate::domain::invoice_math::TaxBehavior;
use crate::domain::period::{Interval, IntervalUnit};
use crate::domain::price::{
    MAX_UNIT_AMOUNT, Price, Recurring, UsageType, check_unit_amount, parse_tax_behavior,
    parse_tiers_mode, parse_unit_amount,
};
use crate::domain::pricing::{PriceScheme, Tier, validate_tiers};
use crate::domain::tax_rate::{Coupon, CouponDuration, CouponValue, TaxRate, parse_percentage};
use crate::services::catalogue as service;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/prices", get(list_prices).post(create_price))
        .route("/prices/{id}", get(get_price))
        .route("/tax_rates", get(list_tax_rates).post(create_tax_rate))
        .route("/tax_rates/{id}", get(get_tax_rate))
        .route("/coupons", get(list_coupons).post(create_coupon))
        .route("/coupons/{id}", get(get_coupon))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurringBody {
    /// day | week | month | year
    interval: String,
    interval_count: Option<u32>,
    /// licensed | metered
    usage_type: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierBody {
    /// A positive integer, as a JSON number or a string of digits (`100` or `"100"`), or
    /// `"inf"` / null for the last tier.
    #[schema(value_type = Option<String>, example = "100")]
    up_to: Option<serde_json::Value>,
    unit_amount: Option<i64>,
    unit_amount_decimal: Option<String>,
    flat_amount: Option<i64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePrice {
    /// The product's name, shown on invoices.
    product: String,
    currency: String,
    unit_amount: Option<i64>,
    /// Minor units, fractions allowed (`"0.025"`).
    unit_amount_decimal: Option<String>,
    recurring: Option<RecurringBody>,
    /// per_unit | tiered
    billing_scheme: Option<String>,
    /// graduated | volume
    tiers_mode: Option<String>,
    tiers: Option<Vec<TierBody>>,
    /// exclusive | inclusive
    tax_behavior: Option<String>,
}

/// One of `unit_amount` (integer) or `unit_amount_decimal` (string), never both.
fn unit_amount(
    param: &str,
    int: Option<i64>,
    dec: Option<String>,
) -> Result<Option<Decimal>, ApiError> {
    match (int, dec) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            param,
            "give unit_amount or unit_amount_decimal, not both",
        )),
        (Some(i), None) => {
            if !(0..=MAX_UNIT_AMOUNT).contains(&i) {
                return Err(ApiError::invalid(
                    param,
                    format!("unit_amount must be between 0 and {MAX_UNIT_AMOUNT}"),
                ));
            }
            Ok(Some(
                check_unit_amount(Decimal::from(i)).map_err(|e| ApiError::invalid(param, e))?,
            ))
        }
        (None, Some(s)) => {
            Ok(Some(parse_unit_amount(&s).map_err(|e| {
                ApiError::invalid(format!("{param}_decimal"), e)
            })?))
        }
        (None, None) => Ok(None),
    }
}

fn tier(i: usize, t: TierBody) -> Result<Tier, ApiError> {
    let param = format!("tiers[{i}]");
    let up_to = match t.up_to {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s == "inf" => None,
        Some(n @ (serde_json::Value::Number(_) | serde_json::Value::String(_))) => Some(
            match &n {
                serde_json::Value::String(s)
                    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    s.parse::<u64>().ok()
                }
                other => other.as_u64(),
            }
            .filter(|v| *v >= 1 && *v <= 1_000_000_000_000)
            .ok_or_else(|| {
                ApiError::invalid(
                    format!("{param}.up_to"),
                    "up_to must be a positive integer or \"inf\"",
                )
            })?,
        ),
        Some(_) => {
            return Err(ApiError::invalid(
                format!("{param}.up_to"),
                "up_to must be a positive integer or \"inf\"",
            ));
        }
    };
    let unit = unit_amount(
        &format!("{param}.unit_amount"),
        t.unit_amount,
        t.unit_amount_decimal,
    )?
    .unwrap_or(Decimal::ZERO);
    let flat = t.flat_amount.unwrap_or(0);
    if !(0..=MAX_UNIT_AMOUNT).contains(&flat) {
        return Err(ApiError::invalid(
            format!("{param}.flat_amount"),
            format!("flat_amount must be between 0 and {MAX_UNIT_AMOUNT}"),
        ));
    }
    Ok(Tier {
        up_to,
        unit_amount: unit,
        flat_amount: flat,
    })
}

impl CreatePrice {
    fn into_price(self, now: DateTime<Utc>) -> Result<Price, ApiError> {
        if self.product.trim().is_empty() {
            return Err(ApiError::invalid("product", "product must not be empty"));
        }
        check_text("product", &self.product, 200).map_err(|e| ApiError::invalid("product", e))?;
        let currency =
            Currency::parse(&self.currency).map_err(|e| ApiError::invalid("currency", e))?;
        let scheme_name = self.billing_scheme.as_deref().unwrap_or("per_unit");
        let unit = unit_amount("unit_amount", self.unit_amount, self.unit_amount_decimal)?;
        let scheme = match scheme_name {
            "per_unit" => {
                if self.tiers.is_some() || self.tiers_mode.is_some() {
                    return Err(ApiError::invalid(
                        "tiers",
                        "tiers are only allowed with billing_scheme=tiered",
                    ));
                }
                PriceScheme::PerUnit {
                    unit_amount: unit.ok_or_else(|| ApiError::missing("unit_amount"))?,
                }
            }
            "tiered" => {
                if unit.is_some() {
                    return Err(ApiError::invalid(
                        "unit_amount",
                        "tiered prices take their amounts from tiers",
                    ));
                }
                let mode = self
                    .tiers_mode
                    .ok_or_else(|| ApiError::missing("tiers_mode"))?;
                let mode = parse_tiers_mode(&mode).ok_or_else(|| {
                    ApiError::invalid("tiers_mode", "tiers_mode must be graduated or volume")
                })?;
                let tiers = self
                    .tiers
                    .ok_or_else(|| ApiError::missing("tiers"))?
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| tier(i, t))
                    .collect::<Result<Vec<_>, _>>()?;
                validate_tiers(&tiers).map_err(|e| ApiError::invalid("tiers", e))?;
                PriceScheme::Tiered { mode, tiers }
            }
            _ => {
                return Err(ApiError::invalid(
                    "billing_scheme",
                    "billing_scheme must be per_unit or tiered",
                ));
            }
        };
        let recurring = self
            .recurring
            .map(|r| {
                let unit = IntervalUnit::parse(&r.interval).ok_or_else(|| {
                    ApiError::invalid(
                        "recurring.interval",
                        "interval must be one of day, week, month, year",
                    )
                })?;
                let interval = Interval::new(unit, r.interval_count.unwrap_or(1))
                    .map_err(|e| ApiError::invalid("recurring.interval_count", e))?;
                let usage_type = match r.usage_type.as_deref() {
                    None => UsageType::Licensed,
                    Some(u) => UsageType::parse(u).ok_or_else(|| {
                        ApiError::invalid(
                            "recurring.usage_type",
                            "usage_type must be licensed or metered",
                        )
                    })?,
                };
                Ok::<_, ApiError>(Recurring {
                    interval,
                    usage_type,
                })
            })
            .transpose()?;
        let tax_behavior = match self.tax_behavior.as_deref() {
            None => TaxBehavior::Exclusive,
            Some(t) => parse_tax_behavior(t).ok_or_else(|| {
                ApiError::invalid(
                    "tax_behavior",
                    "tax_behavior must be exclusive or inclusive",
                )
            })?,
        };
        Ok(Price {
            id: PriceId::generate(),
            product: self.product,
            currency,
            scheme,
            recurring,
            tax_behavior,
            created: now,
        })
    }
}

#[utoipa::path(post, path = "/v1/prices", request_body = CreatePrice, responses((status = 200, description = "the price")))]
pub async fn create_price(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(body): Body<CreatePrice>,
) -> Result<Json<Price>, ApiError> {
    let price = body.into_price(ctx.now)?;
    Ok(Json(
        service::create_price(&s.db, &ctx.tenant, price, ctx.now).await?,
    ))
}

#[utoipa::path(get, path = "/v1/prices/{id}", responses((status = 200, description = "the price")))]
pub async fn get_price(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Price>, ApiError> {
    let id = path_id("price", &id, PriceId::parse)?;
    Ok(Json(service::get_price(&s.db, &ctx.tenant, &id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    starting_after: Option<String>,
}

#[utoipa::path(get, path = "/v1/prices", params(ListParams), responses((status = 200, description = "a page of prices")))]
pub async fn list_prices(
    State(s): State<AppState>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
) -> Result<Json<List<Price>>, ApiError> {
    Ok(list(
        service::list_prices(
            &s.db,
            &ctx.tenant,
            &page(&s, &ctx, "price", q.limit, q.starting_after).await?,
        )
        .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaxRate {
    display_name: String,
    /// A decimal string such as "23" or "7.5".
    percentage: String,
    inclusive: Option<bool>,
    country: Option<String>,
}

#[utoipa::path(post, path = "/v1/tax_rates", request_body = CreateTaxRate, responses((status = 200, description = "the tax rate")))]
pub async fn create_tax_rate(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(b): Body<CreateTaxRate>,
) -> Result<Json<TaxRate>, ApiError> {
    if b.display_name.trim().is_empty() {
        return Err(ApiError::invalid(
            "display_name",
            "display_name must not be empty",
        ));
    }
    check_text("display_name", &b.display_name, 50)
        .map_err(|e| ApiError::invalid("display_name", e))?;
    let rate = TaxRate {
        id: TaxRateId::generate(),
        object: "tax_rate",
        percentage: parse_percentage(&b.percentage, true)
            .map_err(|e| ApiError::invalid("percentage", e))?,
        display_name: b.display_name,
        inclusive: b.inclusive.unwrap_or(false),
        country: b
            .country
            .map(|c| Country::parse(&c).map_err(|e| ApiError::invalid("country", e)))
            .transpose()?,
        created: ctx.now,
    };
    Ok(Json(
        service::create_tax_rate(&s.db, &ctx.tenant, rate, ctx.now).await?,
    ))
}

#[utoipa::path(get, path = "/v1/tax_rates/{id}", responses((status = 200, description = "the tax rate")))]
pub async fn get_tax_rate(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<TaxRate>, ApiError> {
    let id = path_id("tax_rate", &id, TaxRateId::parse)?;
    Ok(Json(service::get_tax_rate(&s.db, &ctx.tenant, &id).await?))
}

#[utoipa::path(get, path = "/v1/tax_rates", params(ListParams), responses((status = 200, description = "a page of tax rates")))]
pub async fn list_tax_rates(
    State(s): State<AppState>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
) -> Result<Json<List<TaxRate>>, ApiError> {
    Ok(list(
        service::list_tax_rates(
            &s.db,
            &ctx.tenant,
            &page(&s, &ctx, "txr", q.limit, q.starting_after).await?,
        )
        .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCoupon {
    name: Option<String>,
    /// A number or decimal string, 0 < percent_off ≤ 100.
    #[schema(value_type = Option<String>)]
    percent_off: Option<serde_json::Value>,
    amount_off: Option<i64>,
    currency: Option<String>,
    /// once | repeating | forever
    duration: String,
    duration_in_months: Option<u32>,
}

impl CreateCoupon {
    fn into_coupon(self, now: DateTime<Utc>) -> Result<Coupon, ApiError> {
        if let Some(n) = &self.name {
            check_text("name", n, 200).map_err(|e| ApiError::invalid("name", e))?;
        }
        let value = match (self.percent_off, self.amount_off) {
            (Some(p), None) => {
                if self.currency.is_some() {
                    return Err(ApiError::invalid(
                        "currency",
                        "currency goes with amount_off, not percent_off",
                    ));
                }
                let text = match p {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => {
                        return Err(ApiError::invalid(
                            "percent_off",
                            "percent_off must be a number",
                        ));
                    }
                };
                CouponValue::Percent {
                    percent_off: parse_percentage(&text, false)
                        .map_err(|e| ApiError::invalid("percent_off", e))?,
                }
            }
            (None, Some(amount_off)) => {
                if !(1..=MAX_UNIT_AMOUNT).contains(&amount_off) {
                    return Err(ApiError::invalid(
                        "amount_off",
                        format!("amount_off must be between 1 and {MAX_UNIT_AMOUNT}"),
                    ));
                }
                let currency = self.currency.ok_or_else(|| ApiError::missing("currency"))?;
                CouponValue::Amount {
                    amount_off,
                    currency: Currency::parse(&currency)
                        .map_err(|e| ApiError::invalid("currency", e))?,
                }
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "amount_off",
                    "give percent_off or amount_off, not both",
                ));
            }
            (None, None) => return Err(ApiError::missing("percent_off")),
        };
        let duration = CouponDuration::parse(&self.duration).ok_or_else(|| {
            ApiError::invalid("duration", "duration must be once, repeating or forever")
        })?;
        let months = match (duration, self.duration_in_months) {
            (CouponDuration::Repeating, Some(m)) if (1..=120).contains(&m) => Some(m),
            (CouponDuration::Repeating, Some(_)) => {
                return Err(ApiError::invalid(
                    "duration_in_months",
                    "duration_in_months must be between 1 and 120",
                ));
            }
            (CouponDuration::Repeating, None) => {
                return Err(ApiError::missing("duration_in_months"));
            }
            (CouponDuration::Once | CouponDuration::Forever, Some(_)) => {
                return Err(ApiError::invalid(
                    "duration_in_months",
                    "duration_in_months is only allowed with duration=repeating",
                ));
            }
            (CouponDuration::Once | CouponDuration::Forever, None) => None,
        };
        Ok(Coupon {
            id: CouponId::generate(),
            object: "coupon",
            name: self.name,
            value,
            duration,
            duration_in_months: months,
            created: now,
        })
    }
}

#[utoipa::path(post, path = "/v1/coupons", request_body = CreateCoupon, responses((status = 200, description = "the coupon")))]
pub async fn create_coupon(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(b): Body<CreateCoupon>,
) -> Result<Json<Coupon>, ApiError> {
    let coupon = b.into_coupon(ctx.now)?;
    Ok(Json(
        service::create_coupon(&s.db, &ctx.tenant, coupon, ctx.now).await?,
    ))
}

#[utoipa::path(get, path = "/v1/coupons/{id}", responses((status = 200, description = "the coupon")))]
pub async fn get_coupon(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Coupon>, ApiError> {
    let id = path_id("coupon", &id, CouponId::parse)?;
    Ok(Json(service::get_coupon(&s.db, &ctx.tenant, &id).await?))
}

#[utoipa::path(get, path = "/v1/coupons", params(ListParams), responses((status = 200, description = "a page of coupons")))]
pub async fn list_coupons(
    State(s): State<AppState>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
) -> Result<Json<List<Coupon>>, ApiError> {
    Ok(list(
        service::list_coupons(
            &s.db,
            &ctx.tenant,
            &page(&s, &ctx, "coupon", q.limit, q.starting_after).await?,
        )
        .await?,
    ))
}
