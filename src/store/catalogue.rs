//! Prices, tax rates and coupons: written once, read by every billing run.

use super::rows::{Rec, corrupt, known, to_json};
use super::{Page, StoreError, Tx, on_tx, push_id_list};
use crate::domain::contact::Country;
use crate::domain::currency::Currency;
use crate::domain::ids::{CouponId, PriceId, TaxRateId, TenantId};
use crate::domain::period::{Interval, IntervalUnit};
use crate::domain::price::{
    Price, Recurring, UsageType, parse_tax_behavior, parse_tiers_mode, tax_behavior_str,
    tiers_mode_str,
};
use crate::domain::pricing::{PriceScheme, Tier};
use crate::domain::tax_rate::{Coupon, CouponDuration, CouponValue, TaxRate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// How tiers are kept in the `tiers` TEXT column.
#[derive(Serialize, Deserialize)]
struct StoredTier {
    up_to: Option<u64>,
    unit_amount_decimal: Decimal,
    flat_amount: i64,
}

macro_rules! select_price {
    ($filter:literal) => {
        concat!(
            "SELECT id, product, currency, billing_scheme, unit_amount_decimal, tiers_mode, tiers, interval_unit, interval_count, usage_type, tax_behavior, created_at FROM prices ",
            $filter
        )
    };
}

pub(super) fn price_from(r: &impl Rec) -> Result<Price, StoreError> {
    let scheme = match r.text("billing_scheme")?.as_str() {
        "per_unit" => PriceScheme::PerUnit {
            unit_amount: r.parsed("unit_amount_decimal", |s| s.parse::<Decimal>())?,
        },
        "tiered" => {
            let stored: Vec<StoredTier> = r.json("tiers")?;
            PriceScheme::Tiered {
                mode: r.parsed("tiers_mode", known(parse_tiers_mode))?,
                tiers: stored
                    .into_iter()
                    .map(|t| Tier {
                        up_to: t.up_to,
                        unit_amount: t.unit_amount_decimal,
                        flat_amount: t.flat_amount,
                    })
                    .collect(),
            }
        }
        other => return Err(corrupt("billing_scheme", other)),
    };
    let recurring = match r.opt_parsed("interval_unit", known(IntervalUnit::parse))? {
        Some(unit) => {
            let count = r
                .opt_int("interval_count")?
                .ok_or_else(|| corrupt("interval_count", "missing"))?;
            let count = u32::try_from(count).map_err(|e| corrupt("interval_count", e))?;
            Some(Recurring {
                interval: Interval::new(unit, count).map_err(|e| corrupt("interval_count", e))?,
                usage_type: r.parsed("usage_type", known(UsageType::parse))?,
            })
        }
        None => None,
    };
    Ok(Price {
        id: r.parsed("id", PriceId::parse)?,
        product: r.text("product")?,
        currency: r.parsed("currency", Currency::parse)?,
        scheme,
        recurring,
        tax_behavior: r.parsed("tax_behavior", known(parse_tax_behavior))?,
        created: r.time("created_at")?,
    })
}

pub async fn insert_price(tx: &mut Tx, tenant: &TenantId, p: &Price) -> Result<(), StoreError> {
    let (scheme, unit, mode, tiers) = match &p.scheme {
        PriceScheme::PerUnit { unit_amount } => {
            ("per_unit", Some(unit_amount.to_string()), None, None)
        }
        PriceScheme::Tiered { mode, tiers } => {
            let stored: Vec<StoredTier> = tiers
                .iter()
                .map(|t| StoredTier {
                    up_to: t.up_to,
                    unit_amount_decimal: t.unit_amount,
                    flat_amount: t.flat_amount,
                })
                .collect();
            (
                "tiered",
                None,
                Some(tiers_mode_str(*mode)),
                Some(to_json(&stored)?),
            )
        }
    };
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO prices (tenant_id, id, product, currency, billing_scheme, unit_amount_decimal, tiers_mode, tiers, interval_unit, interval_count, usage_type, tax_behavior, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    )
    .bind(tenant.as_str())
    .bind(p.id.as_str())
    .bind(&p.product)
    .bind(p.currency.code())
    .bind(scheme)
    .bind(&unit)
    .bind(mode)
    .bind(&tiers)
    .bind(p.recurring.map(|r| r.interval.unit().as_str()))
    .bind(p.recurring.map(|r| i64::from(r.interval.count())))
    .bind(p.recurring.map(|r| r.usage_type.as_str()))
    .bind(tax_behavior_str(p.tax_behavior))
    .bind(p.created)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    .map_err(StoreError::from_write)
    })?;
    Ok(())
}

pub async fn find_price(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &PriceId,
) -> Result<Option<Price>, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(select_price!("WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(price_from).transpose()
    })
}

pub async fn list_prices(
    tx: &mut Tx,
    tenant: &TenantId,
    page: &Page,
) -> Result<(Vec<Price>, bool), StoreError> {
    let rows = on_tx!(tx, |c| {
        let rows = sqlx::query(select_price!(
            "WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(tenant.as_str())
        .bind(page.starting_after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(price_from).collect::<Result<Vec<_>, _>>()?
    });
    Ok(page.split(rows))
}

macro_rules! select_tax_rate {
    ($filter:literal) => {
        concat!(
            "SELECT id, display_name, percentage, inclusive, country, created_at FROM tax_rates ",
            $filter
        )
    };
}

fn tax_rate_from(r: &impl Rec) -> Result<TaxRate, StoreError> {
    Ok(TaxRate {
        id: r.parsed("id", TaxRateId::parse)?,
        object: "tax_rate",
        display_name: r.text("display_name")?,
        percentage: r.parsed("percentage", |s| s.parse::<Decimal>())?,
        inclusive: r.flag("inclusive")?,
        country: r.opt_parsed("country", Country::parse)?,
        created: r.time("created_at")?,
    })
}

pub async fn insert_tax_rate(
    tx: &mut Tx,
    tenant: &TenantId,
    t: &TaxRate,
) -> Result<(), StoreError> {
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO tax_rates (tenant_id, id, display_name, percentage, inclusive, country, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )
    .bind(tenant.as_str())
    .bind(t.id.as_str())
    .bind(&t.display_name)
    .bind(t.percentage.to_string())
    .bind(t.inclusive)
    .bind(t.country.map(|x| x.as_str().to_owned()))
    .bind(t.created)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    .map_err(StoreError::from_write)
    })?;
    Ok(())
}

pub async fn find_tax_rate(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &TaxRateId,
) -> Result<Option<TaxRate>, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(select_tax_rate!("WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(tax_rate_from).transpose()
    })
}

pub async fn list_tax_rates(
    tx: &mut Tx,
    tenant: &TenantId,
    page: &Page,
) -> Result<(Vec<TaxRate>, bool), StoreError> {
    let rows = on_tx!(tx, |c| {
        let rows = sqlx::query(select_tax_rate!(
            "WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(tenant.as_str())
        .bind(page.starting_after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(tax_rate_from)
            .collect::<Result<Vec<_>, _>>()?
    });
    Ok(page.split(rows))
}

macro_rules! select_coupon {
    ($filter:literal) => {
        concat!("SELECT id, name, percent_off, amount_off, currency, duration, duration_in_months, created_at FROM coupons ", $filter)
    };
}

fn coupon_from(r: &impl Rec) -> Result<Coupon, StoreError> {
    let value = match (r.opt_text("percent_off")?, r.opt_int("amount_off")?) {
        (Some(p), None) => CouponValue::Percent {
            percent_off: p.parse().map_err(|e| corrupt("percent_off", e))?,
        },
        (None, Some(amount_off)) => CouponValue::Amount {
            amount_off,
            currency: r.parsed("currency", Currency::parse)?,
        },
        (Some(_), Some(_)) | (None, None) => {
            return Err(corrupt(
                "percent_off",
                "exactly one of percent_off and amount_off",
            ));
        }
    };
    let months = r
        .opt_int("duration_in_months")?
        .map(u32::try_from)
        .transpose()
        .map_err(|e| corrupt("duration_in_months", e))?;
    Ok(Coupon {
        id: r.parsed("id", CouponId::parse)?,
        object: "coupon",
        name: r.opt_text("name")?,
        value,
        duration: r.parsed("duration", known(CouponDuration::parse))?,
        duration_in_months: months,
        created: r.time("created_at")?,
    })
}

pub async fn insert_coupon(tx: &mut Tx, tenant: &TenantId, cp: &Coupon) -> Result<(), StoreError> {
    let (percent, amount, currency) = match &cp.value {
        CouponValue::Percent { percent_off } => (Some(percent_off.to_string()), None, None),
        CouponValue::Amount {
            amount_off,
            currency,
        } => (None, Some(*amount_off), Some(currency.code().to_owned())),
    };
    on_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO coupons (tenant_id, id, name, percent_off, amount_off, currency, duration, duration_in_months, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )
    .bind(tenant.as_str())
    .bind(cp.id.as_str())
    .bind(&cp.name)
    .bind(&percent)
    .bind(amount)
    .bind(&currency)
    .bind(cp.duration.as_str())
    .bind(cp.duration_in_months.map(i64::from))
    .bind(cp.created)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected())
    .map_err(StoreError::from_write)
    })?;
    Ok(())
}

pub async fn find_coupon(
    tx: &mut Tx,
    tenant: &TenantId,
    id: &CouponId,
) -> Result<Option<Coupon>, StoreError> {
    on_tx!(tx, |c| {
        let row = sqlx::query(select_coupon!("WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(coupon_from).transpose()
    })
}

pub async fn list_coupons(
    tx: &mut Tx,
    tenant: &TenantId,
    page: &Page,
) -> Result<(Vec<Coupon>, bool), StoreError> {
    let rows = on_tx!(tx, |c| {
        let rows = sqlx::query(select_coupon!(
            "WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(tenant.as_str())
        .bind(page.starting_after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(coupon_from)
            .collect::<Result<Vec<_>, _>>()?
    });
    Ok(page.split(rows))
}

/// Catalogue rows by id, one query per kind: the billing run loads what a batch references.
macro_rules! by_ids {
    ($name:ident, $select:ident, $from:ident, $id:ty, $out:ty) => {
        pub async fn $name(
            tx: &mut Tx,
            tenant: &TenantId,
            ids: &[$id],
        ) -> Result<Vec<$out>, StoreError> {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            on_tx!(tx, |c| {
                let mut q = sqlx::QueryBuilder::new($select!("WHERE tenant_id = "));
                q.push_bind(tenant.as_str()).push(" AND id IN ");
                push_id_list(&mut q, ids.iter().map(|id| id.as_str()));
                let rows = q.build().fetch_all(&mut *c).await?;
                rows.iter().map($from).collect::<Result<Vec<_>, _>>()
            })
        }
    };
}

by_ids!(prices_by_ids, select_price, price_from, PriceId, Price);
by_ids!(
    tax_rates_by_ids,
    select_tax_rate,
    tax_rate_from,
    TaxRateId,
    TaxRate
);
by_ids!(coupons_by_ids, select_coupon, coupon_from, CouponId, Coupon);
