//! Prices: what one unit of a product costs, how often, and how usage is counted.

use super::currency::Currency;
use super::ids::PriceId;
use super::invoice_math::TaxBehavior;
use super::period::Interval;
use super::pricing::{PriceScheme, TiersMode};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

/// The largest unit amount we accept, in minor units: beyond it products of quantity and price
/// leave the range finance systems (and `i64` totals over many lines) handle comfortably.
pub const MAX_UNIT_AMOUNT: i64 = 1_000_000_000_000;

/// Unit prices may carry fractions of a minor unit, but not more than this many decimals.
pub const MAX_UNIT_DECIMALS: u32 = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitAmountError {
    #[error("`{0}` is not a decimal number")]
    NotDecimal(String),
    #[error("unit amounts must not be negative")]
    Negative,
    #[error("unit amounts must be at most {MAX_UNIT_AMOUNT} minor units")]
    TooLarge,
    #[error("unit amounts may have at most {MAX_UNIT_DECIMALS} decimal places")]
    TooPrecise,
}

/// Parses a decimal unit amount in minor units (`"0.025"` is a fortieth of a cent).
pub fn parse_unit_amount(s: &str) -> Result<Decimal, UnitAmountError> {
    let well_formed = !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && !s.starts_with('.')
        && !s.ends_with('.');
    if !well_formed {
        return Err(UnitAmountError::NotDecimal(s.to_owned()));
    }
    let d: Decimal = s
        .parse()
        .map_err(|_| UnitAmountError::NotDecimal(s.to_owned()))?;
    check_unit_amount(d)
}

pub fn check_unit_amount(d: Decimal) -> Result<Decimal, UnitAmountError> {
    if d.is_sign_negative() && !d.is_zero() {
        return Err(UnitAmountError::Negative);
    }
    if d > Decimal::from(MAX_UNIT_AMOUNT) {
        return Err(UnitAmountError::TooLarge);
    }
    if d.normalize().scale() > MAX_UNIT_DECIMALS {
        return Err(UnitAmountError::TooPrecise);
    }
    Ok(d.normalize())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageType {
    /// Billed in advance for the quantity on the subscription item.
    Licensed,
    /// Billed in arrears from the usage records of the period that ended.
    Metered,
}

impl UsageType {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageType::Licensed => "licensed",
            UsageType::Metered => "metered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "licensed" => Some(UsageType::Licensed),
            "metered" => Some(UsageType::Metered),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recurring {
    pub interval: Interval,
    pub usage_type: UsageType,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub id: PriceId,
    pub product: String,
    pub currency: Currency,
    pub scheme: PriceScheme,
    /// `None` for one-time prices, which cannot be put on a subscription.
    pub recurring: Option<Recurring>,
    pub tax_behavior: TaxBehavior,
    pub created: DateTime<Utc>,
}

pub fn tax_behavior_str(t: TaxBehavior) -> &'static str {
    match t {
        TaxBehavior::Exclusive => "exclusive",
        TaxBehavior::Inclusive => "inclusive",
    }
}

pub fn parse_tax_behavior(s: &str) -> Option<TaxBehavior> {
    match s {
        "exclusive" => Some(TaxBehavior::Exclusive),
        "inclusive" => Some(TaxBehavior::Inclusive),
        _ => None,
    }
}

pub fn tiers_mode_str(m: TiersMode) -> &'static str {
    match m {
        TiersMode::Graduated => "graduated",
        TiersMode::Volume => "volume",
    }
}

pub fn parse_tiers_mode(s: &str) -> Option<TiersMode> {
    match s {
        "graduated" => Some(TiersMode::Graduated),
        "volume" => Some(TiersMode::Volume),
        _ => None,
    }
}

/// The wire shape of a tier: Stripe's names, `up_to: null` for the last tier.
#[derive(Serialize)]
struct TierView {
    up_to: Option<u64>,
    unit_amount_decimal: String,
    flat_amount: i64,
}

#[derive(Serialize)]
struct RecurringView {
    interval: &'static str,
    interval_count: u32,
    usage_type: &'static str,
}

#[derive(Serialize)]
struct PriceView<'a> {
    id: &'a PriceId,
    object: &'static str,
    product: &'a str,
    currency: Currency,
    billing_scheme: &'static str,
    unit_amount: Option<i64>,
    unit_amount_decimal: Option<String>,
    tiers_mode: Option<&'static str>,
    tiers: Option<Vec<TierView>>,
    recurring: Option<RecurringView>,
    #[serde(rename = "type")]
    kind: &'static str,
    tax_behavior: &'static str,
    created: DateTime<Utc>,
}

impl Serialize for Price {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (billing_scheme, unit_amount, unit_amount_decimal, tiers_mode, tiers) = match &self
            .scheme
        {
            PriceScheme::PerUnit { unit_amount } => {
                let whole = unit_amount
                    .fract()
                    .is_zero()
                    .then(|| {
                        i64::try_from(unit_amount.mantissa() / 10i128.pow(unit_amount.scale())).ok()
                    })
                    .flatten();
                ("per_unit", whole, Some(unit_amount.to_string()), None, None)
            }
            PriceScheme::Tiered { mode, tiers } => {
                let views = tiers
                    .iter()
                    .map(|t| TierView {
                        up_to: t.up_to,
                        unit_amount_decimal: t.unit_amount.to_string(),
                        flat_amount: t.flat_amount,
                    })
                    .collect();
                (
                    "tiered",
                    None,
                    None,
                    Some(tiers_mode_str(*mode)),
                    Some(views),
                )
            }
        };
        PriceView {
            id: &self.id,
            object: "price",
            product: &self.product,
            currency: self.currency,
            billing_scheme,
            unit_amount,
            unit_amount_decimal,
            tiers_mode,
            tiers,
            recurring: self.recurring.map(|r| RecurringView {
                interval: r.interval.unit().as_str(),
                interval_count: r.interval.count(),
                usage_type: r.usage_type.as_str(),
            }),
            kind: if self.recurring.is_some() {
                "recurring"
            } else {
                "one_time"
            },
            tax_behavior: tax_behavior_str(self.tax_behavior),
            created: self.created,
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_amounts_accept_fractions_of_minor_units() {
        assert_eq!(parse_unit_amount("0.025").unwrap().to_string(), "0.025");
        assert_eq!(parse_unit_amount("1000").unwrap(), Decimal::from(1000));
        assert_eq!(parse_unit_amount("10.50").unwrap().to_string(), "10.5");
    }

    #[test]
    fn bad_unit_amounts_are_rejected() {
        assert_eq!(parse_unit_amount("-1"), Err(UnitAmountError::Negative));
        assert_eq!(
            parse_unit_amount("1e5"),
            Err(UnitAmountError::NotDecimal("1e5".into()))
        );
        assert_eq!(
            parse_unit_amount("1000000000001"),
            Err(UnitAmountError::TooLarge)
        );
        assert_eq!(
            parse_unit_amount("0.0000000000001"),
            Err(UnitAmountError::TooPrecise)
        );
        assert!(parse_unit_amount("").is_err());
        assert!(parse_unit_amount("NaN").is_err());
        assert!(parse_unit_amount("99999999999999999999999999999999999").is_err());
    }
}
