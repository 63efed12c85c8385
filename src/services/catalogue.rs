//! Prices, tax rates and coupons. They are immutable once created (as in Stripe): invoices
//! already issued keep pointing at what they were billed with.

use super::ServiceError;
use crate::domain::event::EventType;
use crate::domain::ids::{CouponId, PriceId, TaxRateId};
use crate::domain::price::Price;
use crate::domain::tax_rate::{Coupon, TaxRate};
use crate::domain::tenant::Tenant;
use crate::store::{Db, Page, catalogue, events};
use chrono::{DateTime, Utc};

pub async fn create_price(
    db: &Db,
    tenant: &Tenant,
    price: Price,
    now: DateTime<Utc>,
) -> Result<Price, ServiceError> {
    let mut tx = db.begin().await?;
    catalogue::insert_price(&mut tx, &tenant.id, &price).await?;
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::PriceCreated,
        price.id.as_str(),
        &price,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(price)
}

pub async fn get_price(db: &Db, tenant: &Tenant, id: &PriceId) -> Result<Price, ServiceError> {
    let mut tx = db.read().await?;
    let found = catalogue::find_price(&mut tx, &tenant.id, id).await?;
    tx.commit().await?;
    found.ok_or_else(|| ServiceError::not_found("price", id))
}

pub async fn list_prices(
    db: &Db,
    tenant: &Tenant,
    page: &Page,
) -> Result<(Vec<Price>, bool), ServiceError> {
    let mut tx = db.read().await?;
    let out = catalogue::list_prices(&mut tx, &tenant.id, page).await?;
    tx.commit().await?;
    Ok(out)
}

pub async fn create_tax_rate(
    db: &Db,
    tenant: &Tenant,
    rate: TaxRate,
    now: DateTime<Utc>,
) -> Result<TaxRate, ServiceError> {
    let mut tx = db.begin().await?;
    catalogue::insert_tax_rate(&mut tx, &tenant.id, &rate).await?;
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::TaxRateCreated,
        rate.id.as_str(),
        &rate,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(rate)
}

pub async fn get_tax_rate(
    db: &Db,
    tenant: &Tenant,
    id: &TaxRateId,
) -> Result<TaxRate, ServiceError> {
    let mut tx = db.read().await?;
    let found = catalogue::find_tax_rate(&mut tx, &tenant.id, id).await?;
    tx.commit().await?;
    found.ok_or_else(|| ServiceError::not_found("tax_rate", id))
}

pub async fn list_tax_rates(
    db: &Db,
    tenant: &Tenant,
    page: &Page,
) -> Result<(Vec<TaxRate>, bool), ServiceError> {
    let mut tx = db.read().await?;
    let out = catalogue::list_tax_rates(&mut tx, &tenant.id, page).await?;
    tx.commit().await?;
    Ok(out)
}

pub async fn create_coupon(
    db: &Db,
    tenant: &Tenant,
    coupon: Coupon,
    now: DateTime<Utc>,
) -> Result<Coupon, ServiceError> {
    let mut tx = db.begin().await?;
    catalogue::insert_coupon(&mut tx, &tenant.id, &coupon).await?;
    events::insert_event(
        &mut tx,
        &tenant.id,
        EventType::CouponCreated,
        coupon.id.as_str(),
        &coupon,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(coupon)
}

pub async fn get_coupon(db: &Db, tenant: &Tenant, id: &CouponId) -> Result<Coupon, ServiceError> {
    let mut tx = db.read().await?;
    let found = catalogue::find_coupon(&mut tx, &tenant.id, id).await?;
    tx.commit().await?;
    found.ok_or_else(|| ServiceError::not_found("coupon", id))
}

pub async fn list_coupons(
    db: &Db,
    tenant: &Tenant,
    page: &Page,
) -> Result<(Vec<Coupon>, bool), ServiceError> {
    let mut tx = db.read().await?;
    let out = catalogue::list_coupons(&mut tx, &tenant.id, page).await?;
    tx.commit().await?;
    Ok(out)
}
