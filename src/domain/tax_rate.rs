//! Tax rates and coupons: the catalogue objects that change an invoice's totals.

use super::contact::Country;
use super::currency::Currency;
use super::ids::{CouponId, TaxRateId};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PercentageError {
    #[error("`{0}` is not a decimal percentage")]
    NotDecimal(String),
    #[error("percentage must be between {min} and 100")]
    OutOfRange { min: &'static str },
    #[error("percentage may have at most 4 decimal places")]
    TooPrecise,
}

/// Parses a percentage such as `"23"` or `"7.5"`. `allow_zero` is true for tax rates (0 % VAT
/// exists) and false for coupons (a 0 % coupon is a mistake).
pub fn parse_percentage(s: &str, allow_zero: bool) -> Result<Decimal, PercentageError> {
    let well_formed = !s.is_empty()
        && s.len() <= 12
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
    let d: Decimal = if well_formed {
        s.parse()
            .map_err(|_| PercentageError::NotDecimal(s.to_owned()))?
    } else {
        return Err(PercentageError::NotDecimal(s.to_owned()));
    };
    let min = if allow_zero { "0" } else { "0 (exclusive)" };
    let low_ok = if allow_zero {
        d >= Decimal::ZERO
    } else {
        d > Decimal::ZERO
    };
    if !low_ok || d > Decimal::ONE_HUNDRED {
        return Err(PercentageError::OutOfRange { min });
    }
    if d.normalize().scale() > 4 {
        return Err(PercentageError::TooPrecise);
    }
    Ok(d.normalize())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaxRate {
    pub id: TaxRateId,
    pub object: &'static str,
    pub display_name: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub percentage: Decimal,
    pub inclusive: bool,
    pub country: Option<Country>,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CouponDuration {
    /// Applies to the first invoice only.
    Once,
    /// Applies to invoices for the first `duration_in_months` months.
    Repeating,
    Forever,
}

impl CouponDuration {
    pub fn as_str(self) -> &'static str {
        match self {
            CouponDuration::Once => "once",
            CouponDuration::Repeating => "repeating",
            CouponDuration::Forever => "forever",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "once" => Some(CouponDuration::Once),
            "repeating" => Some(CouponDuration::Repeating),
            "forever" => Some(CouponDuration::Forever),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CouponValue {
    Percent {
        #[serde(with = "rust_decimal::serde::str")]
        percent_off: Decimal,
    },
    Amount {
        amount_off: i64,
        currency: Currency,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coupon {
    pub id: CouponId,
    pub object: &'static str,
    pub name: Option<String>,
    #[serde(flatten)]
    pub value: CouponValue,
    pub duration: CouponDuration,
    pub duration_in_months: Option<u32>,
    pub created: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        assert_eq!(parse_percentage("23", true).unwrap(), Decimal::from(23));
        assert_eq!(parse_percentage("0", true).unwrap(), Decimal::ZERO);
        assert!(parse_percentage("0", false).is_err());
        assert!(parse_percentage("100.0001", true).is_err());
        assert!(parse_percentage("-1", true).is_err());
        assert!(parse_percentage("7.12345", true).is_err());
        assert!(parse_percentage("abc", true).is_err());
    }
}
