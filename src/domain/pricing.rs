//! Pricing math: turning a price scheme and a quantity into one line amount.
//!
//! Money in recur is always an `i64` count of the currency's minor unit (cents).
//! Unit prices are `Decimal`s in *minor* units because real price lists contain
//! sub-cent prices ("0.025 cents per API call"); they only become money once a
//! whole line has been computed, and that conversion is the single rounding
//! step of the line. Rounding once per line (not per unit, not per tier) is what
//! keeps a 1,000,000-call line from drifting by up to 1,000,000 × 0.5 cents.
//!
//! Every operation is checked: an amount that does not fit, or a `Decimal`
//! operation that would silently drop digits, is reported as
//! [`MathError::Overflow`] rather than producing a wrong bill.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Upper bound on the number of tiers of one price. Stripe caps tiers at the
/// same number; the bound keeps validation and line computation O(100) no
/// matter what a client sends.
pub const MAX_TIERS: usize = 100;

/// Every way the billing math can refuse its input or its result.
///
/// One enum serves both `pricing` and `invoice_math` so that callers chaining
/// them (price → line amount → invoice totals) handle a single error type.
/// Variants carry the offending index so the API layer can point at the exact
/// request parameter (`tiers[3].up_to`, `lines[2].tax_rates`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MathError {
    /// The exact result (or an intermediate of it) does not fit in the target
    /// type. We never wrap, saturate or silently round instead.
    #[error("arithmetic overflow while computing {context}: the exact result does not fit")]
    Overflow {
        /// What was being computed, for logs and error messages.
        context: &'static str,
    },
    /// A tiered price needs at least one tier to price anything.
    #[error("a tiered price needs at least one tier")]
    EmptyTiers,
    /// More than [`MAX_TIERS`] tiers.
    #[error("a tiered price may have at most {max} tiers, got {count}")]
    TooManyTiers {
        /// Number of tiers supplied.
        count: usize,
        /// The limit, [`MAX_TIERS`].
        max: usize,
    },
    /// `up_to` of tier `index` is not greater than the previous tier's
    /// `up_to` (for the first tier: not at least 1).
    #[error(
        "tier {index}: up_to must be greater than the previous tier's up_to (the first tier's must be at least 1)"
    )]
    TiersNotAscending {
        /// Index of the offending tier.
        index: usize,
    },
    /// A tier other than the last has `up_to: None` (infinity).
    #[error("tier {index}: only the last tier may be unbounded (up_to = inf)")]
    UnboundedTierNotLast {
        /// Index of the offending tier.
        index: usize,
    },
    /// The last tier has a finite `up_to`, so some quantities would have no price.
    #[error("the last tier must be unbounded (up_to = inf) so that every quantity has a price")]
    LastTierMustBeUnbounded,
    /// A tier's unit amount is negative.
    #[error("tier {index}: unit_amount must not be negative")]
    NegativeTierUnitAmount {
        /// Index of the offending tier.
        index: usize,
    },
    /// A tier's flat amount is negative.
    #[error("tier {index}: flat_amount must not be negative")]
    NegativeTierFlatAmount {
        /// Index of the offending tier.
        index: usize,
    },
    /// A per-unit price is negative.
    #[error("unit_amount must not be negative")]
    NegativeUnitAmount,
    /// Proration denominator is zero or negative.
    #[error("proration denominator must be positive, got {denominator}")]
    InvalidProrationDenominator {
        /// The rejected denominator.
        denominator: i64,
    },
    /// Proration numerator outside `0..=denominator`.
    #[error(
        "proration numerator must be between 0 and the denominator {denominator}, got {numerator}"
    )]
    ProrationNumeratorOutOfRange {
        /// The rejected numerator.
        numerator: i64,
        /// The denominator it was checked against.
        denominator: i64,
    },
    /// A line references a tax rate index that is not in the rates slice.
    #[error("line {line}: tax rate index {rate} does not exist")]
    UnknownTaxRate {
        /// Index of the offending line.
        line: usize,
        /// The unknown rate index.
        rate: usize,
    },
    /// A line lists the same tax rate twice, which would tax it twice.
    #[error("line {line}: tax rate {rate} is listed more than once")]
    DuplicateTaxRate {
        /// Index of the offending line.
        line: usize,
        /// The repeated rate index.
        rate: usize,
    },
    /// A line combines an inclusive rate with any other rate.
    #[error(
        "line {line}: an inclusive tax rate must be the line's only rate (rates must be all exclusive or exactly one inclusive)"
    )]
    MixedTaxBehavior {
        /// Index of the offending line.
        line: usize,
    },
    /// A tax rate percentage outside `0..=100`.
    #[error("tax rate {rate}: percentage must be between 0 and 100, got {percentage}")]
    TaxPercentageOutOfRange {
        /// Index of the offending rate.
        rate: usize,
        /// The rejected percentage.
        percentage: Decimal,
    },
    /// A percent discount outside `(0, 100]`.
    #[error("percent discount must be greater than 0 and at most 100, got {percent}")]
    DiscountPercentOutOfRange {
        /// The rejected percentage.
        percent: Decimal,
    },
    /// An amount discount that is zero or negative.
    #[error("amount discount must be positive, got {amount}")]
    NonPositiveDiscountAmount {
        /// The rejected amount.
        amount: i64,
    },
}

/// Rounds a minor-unit amount to a whole minor unit, half away from zero.
///
/// Half away from zero (0.5 → 1, −0.5 → −1, 2.5 → 3) is what customers and tax
/// authorities expect and what Stripe does; banker's rounding (`Decimal::round`)
/// would turn 2.5 into 2 and make a refund differ from its charge. Rounding is
/// symmetric around zero, so a credit is always the exact negative of the
/// matching charge.
pub fn round_minor(d: Decimal) -> Result<i64, MathError> {
    d.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
        .to_i64()
        .ok_or(MathError::Overflow {
            context: "rounding to minor units",
        })
}

/// One tier of a tiered price.
///
/// `up_to` is inclusive (Stripe semantics): a tier with `up_to: Some(5)` covers
/// units 1..=5 (or, after a tier ending at 2, units 3..=5). `None` means the
/// tier is unbounded, which only the last tier may be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// Inclusive upper bound of the tier; `None` = infinity.
    pub up_to: Option<u64>,
    /// Price of one unit in this tier, in minor units (may be fractional).
    pub unit_amount: Decimal,
    /// Fixed fee charged once when the quantity reaches this tier, in minor units.
    pub flat_amount: i64,
}

/// How a tiered price turns a quantity into an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TiersMode {
    /// Each tier prices only the units that fall inside it.
    Graduated,
    /// The tier the total quantity falls in prices all units.
    Volume,
}

/// What a price charges per quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceScheme {
    /// Every unit costs the same.
    PerUnit {
        /// Price of one unit in minor units (may be fractional).
        unit_amount: Decimal,
    },
    /// Price depends on the quantity through tiers.
    Tiered {
        /// Graduated or volume.
        mode: TiersMode,
        /// Tiers, validated with [`validate_tiers`] before use.
        tiers: Vec<Tier>,
    },
}

/// Checks that tiers describe a total, unambiguous price.
///
/// Rejected: no tiers, more than [`MAX_TIERS`], negative unit or flat amounts,
/// an unbounded tier before the last, `up_to` not strictly increasing (the
/// first tier's `up_to` must be at least 1, since a tier covering no unit can
/// never charge anything), and a bounded last tier (quantities above it would
/// have no price). Errors name the first offending tier, checking tiers in
/// order, so the API can report `tiers[index]`.
pub fn validate_tiers(tiers: &[Tier]) -> Result<(), MathError> {
    if tiers.is_empty() {
        return Err(MathError::EmptyTiers);
    }
    if tiers.len() > MAX_TIERS {
        return Err(MathError::TooManyTiers {
            count: tiers.len(),
            max: MAX_TIERS,
        });
    }
    let last = tiers.len() - 1;
    let mut previous_up_to: u64 = 0;
    for (index, tier) in tiers.iter().enumerate() {
        if tier.unit_amount.is_sign_negative() && !tier.unit_amount.is_zero() {
            return Err(MathError::NegativeTierUnitAmount { index });
        }
        if tier.flat_amount < 0 {
            return Err(MathError::NegativeTierFlatAmount { index });
        }
        match tier.up_to {
            None if index != last => return Err(MathError::UnboundedTierNotLast { index }),
            None => {}
            Some(up_to) => {
                if up_to <= previous_up_to {
                    return Err(MathError::TiersNotAscending { index });
                }
                previous_up_to = up_to;
            }
        }
    }
    if tiers[last].up_to.is_some() {
        return Err(MathError::LastTierMustBeUnbounded);
    }
    Ok(())
}

/// Computes the amount of one line, rounded once to whole minor units.
///
/// * Per unit: `round(quantity × unit_amount)`.
/// * Graduated: for every tier the quantity reaches, that tier's units × its
///   unit amount plus its flat amount; the exact sum is rounded once. A tier
///   holding zero units contributes nothing, not even its flat amount, so
///   quantity 0 costs 0.
/// * Volume: all units × the unit amount of the tier the quantity falls in,
///   plus that tier's flat amount, rounded once. Quantity 0 costs 0 (as in
///   Stripe): a flat fee is a charge for *using* a tier, and with no usage no
///   tier is used. This also makes graduated and volume agree for a single
///   tier at every quantity.
///
/// Tiers are validated on every call: the function must be safe on data that
/// bypassed the API (old rows, imports), and validation is at most 100 steps.
/// The most one period of a subscription may bill before tax, in minor units (10^15: ten
/// trillion euros). Checked when items change, so a renewal can always be computed (tax and
/// prorations included) and never fails for an amount the API accepted.
pub const MAX_PERIOD_AMOUNT: i64 = 1_000_000_000_000_000;

pub fn line_amount(scheme: &PriceScheme, quantity: u64) -> Result<i64, MathError> {
    match scheme {
        PriceScheme::PerUnit { unit_amount } => {
            if unit_amount.is_sign_negative() && !unit_amount.is_zero() {
                return Err(MathError::NegativeUnitAmount);
            }
            let amount = exact_mul(
                Decimal::from(quantity),
                *unit_amount,
                "per-unit line amount",
            )?;
            round_minor(amount)
        }
        PriceScheme::Tiered { mode, tiers } => {
            validate_tiers(tiers)?;
            match mode {
                TiersMode::Graduated => graduated_amount(tiers, quantity),
                TiersMode::Volume => volume_amount(tiers, quantity),
            }
        }
    }
}

/// Exact graduated sum; tiers must already be validated.
fn graduated_amount(tiers: &[Tier], quantity: u64) -> Result<i64, MathError> {
    const CONTEXT: &str = "graduated line amount";
    let mut total = Decimal::ZERO;
    // Units already priced by earlier tiers (the previous tier's up_to).
    let mut lower: u64 = 0;
    for tier in tiers {
        if quantity <= lower {
            break;
        }
        let upper = tier.up_to.map_or(quantity, |up_to| up_to.min(quantity));
        let units = upper
            .checked_sub(lower)
            .ok_or(MathError::Overflow { context: CONTEXT })?;
        let units_amount = exact_mul(Decimal::from(units), tier.unit_amount, CONTEXT)?;
        total = exact_add(total, units_amount, CONTEXT)?;
        total = exact_add(total, Decimal::from(tier.flat_amount), CONTEXT)?;
        match tier.up_to {
            Some(up_to) => lower = up_to,
            None => break,
        }
    }
    round_minor(total)
}

/// Volume amount; tiers must already be validated.
fn volume_amount(tiers: &[Tier], quantity: u64) -> Result<i64, MathError> {
    const CONTEXT: &str = "volume line amount";
    if quantity == 0 {
        return Ok(0);
    }
    // Validation guarantees an unbounded last tier, so a tier is always found;
    // the error branch only guards against unvalidated input.
    let tier = tiers
        .iter()
        .find(|tier| tier.up_to.is_none_or(|up_to| quantity <= up_to))
        .ok_or(MathError::LastTierMustBeUnbounded)?;
    let units_amount = exact_mul(Decimal::from(quantity), tier.unit_amount, CONTEXT)?;
    let total = exact_add(units_amount, Decimal::from(tier.flat_amount), CONTEXT)?;
    round_minor(total)
}

/// `a × b`, refusing results `Decimal` cannot hold exactly.
///
/// `Decimal::checked_mul` only fails when the integer part overflows; when the
/// 96-bit mantissa is merely too small for all fractional digits it silently
/// rounds them away (banker's rounding). An exact product has scale
/// `a.scale() + b.scale()`, so a smaller scale means digits were dropped and
/// the bill would be wrong: we report overflow instead. Zero is always exact
/// (`Decimal` normalises a zero product to scale 0).
fn exact_mul(a: Decimal, b: Decimal, context: &'static str) -> Result<Decimal, MathError> {
    let product = a.checked_mul(b).ok_or(MathError::Overflow { context })?;
    if product.is_zero() || product.scale() == a.scale() + b.scale() {
        Ok(product)
    } else {
        Err(MathError::Overflow { context })
    }
}

/// `a + b`, refusing results `Decimal` cannot hold exactly (see [`exact_mul`]):
/// an exact sum keeps the larger of the two scales.
fn exact_add(a: Decimal, b: Decimal, context: &'static str) -> Result<Decimal, MathError> {
    let sum = a.checked_add(b).ok_or(MathError::Overflow { context })?;
    if sum.is_zero() || sum.scale() == a.scale().max(b.scale()) {
        Ok(sum)
    } else {
        Err(MathError::Overflow { context })
    }
}

/// Prorates `amount` by `numerator / denominator`, rounded half away from zero.
///
/// Used for mid-period plan changes: the unused part of the old item is
/// credited with `-prorate(old, remaining, period)` and the new item charged
/// with `prorate(new, remaining, period)`. The arithmetic is exact in `i128`
/// (no `Decimal` division, which would be inexact for e.g. 1/3), and because
/// rounding is symmetric `prorate(-a, n, d) == -prorate(a, n, d)`, so a charge
/// and its credit always cancel. With `0 ≤ numerator ≤ denominator` the result
/// is never larger in magnitude than `amount`, so it cannot overflow.
pub fn prorate(amount: i64, numerator: i64, denominator: i64) -> Result<i64, MathError> {
    const CONTEXT: &str = "proration";
    if denominator <= 0 {
        return Err(MathError::InvalidProrationDenominator { denominator });
    }
    if !(0..=denominator).contains(&numerator) {
        return Err(MathError::ProrationNumeratorOutOfRange {
            numerator,
            denominator,
        });
    }
    let scaled = i128::from(amount)
        .checked_mul(i128::from(numerator))
        .ok_or(MathError::Overflow { context: CONTEXT })?;
    let rounded = round_ratio(scaled, i128::from(denominator), CONTEXT)?;
    i64::try_from(rounded).map_err(|_| MathError::Overflow { context: CONTEXT })
}

/// Exact `numerator / denominator` rounded half away from zero, in integers.
///
/// Shared with `invoice_math` so that every rational quantity in recur (tax,
/// percent discounts, proration) is rounded by the same rule as
/// [`round_minor`] without passing through an inexact `Decimal` division.
/// `denominator` must be positive; anything else is reported as overflow
/// rather than panicking on division by zero.
pub(crate) fn round_ratio(
    numerator: i128,
    denominator: i128,
    context: &'static str,
) -> Result<i128, MathError> {
    if denominator <= 0 {
        return Err(MathError::Overflow { context });
    }
    let overflow = MathError::Overflow { context };
    // Both truncate toward zero, so the remainder has the numerator's sign.
    let quotient = numerator.checked_div(denominator).ok_or(overflow.clone())?;
    let remainder = numerator.checked_rem(denominator).ok_or(overflow.clone())?;
    let twice_remainder = remainder
        .unsigned_abs()
        .checked_mul(2)
        .ok_or(overflow.clone())?;
    if twice_remainder >= denominator.unsigned_abs() {
        quotient.checked_add(numerator.signum()).ok_or(overflow)
    } else {
        Ok(quotient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn tier(up_to: Option<u64>, unit: &str, flat: i64) -> Tier {
        Tier {
            up_to,
            unit_amount: dec(unit),
            flat_amount: flat,
        }
    }

    /// The example price used in several tests: 1..=5 @ 500 + 1000 flat,
    /// 6..=10 @ 400, 11.. @ 300.
    fn example_tiers() -> Vec<Tier> {
        vec![
            tier(Some(5), "500", 1000),
            tier(Some(10), "400", 0),
            tier(None, "300", 0),
        ]
    }

    fn graduated(tiers: Vec<Tier>) -> PriceScheme {
        PriceScheme::Tiered {
            mode: TiersMode::Graduated,
            tiers,
        }
    }

    fn volume(tiers: Vec<Tier>) -> PriceScheme {
        PriceScheme::Tiered {
            mode: TiersMode::Volume,
            tiers,
        }
    }

    fn per_unit(unit: &str) -> PriceScheme {
        PriceScheme::PerUnit {
            unit_amount: dec(unit),
        }
    }

    #[test]
    fn round_minor_is_half_away_from_zero() {
        assert_eq!(round_minor(dec("0.5")), Ok(1));
        assert_eq!(round_minor(dec("-0.5")), Ok(-1));
        assert_eq!(round_minor(dec("1.5")), Ok(2));
        assert_eq!(round_minor(dec("2.5")), Ok(3));
        assert_eq!(round_minor(dec("-2.5")), Ok(-3));
        assert_eq!(round_minor(dec("2.4999999999")), Ok(2));
        assert_eq!(round_minor(dec("-2.4999999999")), Ok(-2));
        assert_eq!(round_minor(dec("0.49")), Ok(0));
        assert_eq!(round_minor(dec("-0.49")), Ok(0));
        assert_eq!(round_minor(dec("0")), Ok(0));
        assert_eq!(round_minor(dec("7")), Ok(7));
        // 0.025 × 20 = 0.5 → 1 cent.
        assert_eq!(round_minor(dec("0.025") * Decimal::from(20)), Ok(1));
    }

    #[test]
    fn round_minor_overflow_is_an_error() {
        assert_eq!(round_minor(Decimal::from(i64::MAX)), Ok(i64::MAX));
        assert_eq!(round_minor(Decimal::from(i64::MIN)), Ok(i64::MIN));
        assert!(round_minor(Decimal::from(i64::MAX) + Decimal::ONE).is_err());
        assert!(round_minor(dec("9223372036854775807.5")).is_err());
        assert_eq!(round_minor(dec("9223372036854775806.5")), Ok(i64::MAX));
        assert!(round_minor(Decimal::MAX).is_err());
        assert!(round_minor(Decimal::MIN).is_err());
    }

    #[test]
    fn per_unit_amounts() {
        // 3 × 0.025 = 0.075 → 0.
        assert_eq!(line_amount(&per_unit("0.025"), 3), Ok(0));
        assert_eq!(line_amount(&per_unit("0.025"), 20), Ok(1));
        assert_eq!(line_amount(&per_unit("0.025"), 60), Ok(2)); // 1.5 → 2
        assert_eq!(line_amount(&per_unit("0.025"), 100), Ok(3)); // 2.5 → 3
        assert_eq!(line_amount(&per_unit("1999"), 3), Ok(5997));
        assert_eq!(line_amount(&per_unit("1999"), 0), Ok(0));
        assert_eq!(line_amount(&per_unit("0"), 5), Ok(0));
        assert_eq!(
            line_amount(&per_unit("-1"), 5),
            Err(MathError::NegativeUnitAmount)
        );
    }

    #[test]
    fn per_unit_overflow_is_an_error() {
        assert!(matches!(
            line_amount(&per_unit("1"), u64::MAX),
            Err(MathError::Overflow { .. })
        ));
        assert_eq!(line_amount(&per_unit("1"), i64::MAX as u64), Ok(i64::MAX));
        assert!(line_amount(&per_unit("79228162514264337593543950335"), u64::MAX).is_err());
    }

    #[test]
    fn per_unit_refuses_silent_precision_loss() {
        // 10^18 × 0.123456789012 = 123456789012000000 exactly, but the exact
        // product needs 30 significant digits, more than Decimal holds; the
        // value itself would fit in i64, so only the exactness guard catches it.
        assert!(matches!(
            line_amount(&per_unit("0.123456789012"), 1_000_000_000_000_000_000),
            Err(MathError::Overflow { .. })
        ));
        // A product that still fits exactly is accepted.
        assert_eq!(
            line_amount(&per_unit("0.123456789012"), 100_000_000_000_000_000),
            Ok(12_345_678_901_200_000)
        );
    }

    #[test]
    fn graduated_example() {
        let scheme = graduated(example_tiers());
        // 1000 flat + 5 × 500 + 5 × 400 + 2 × 300.
        assert_eq!(line_amount(&scheme, 12), Ok(6100));
        assert_eq!(line_amount(&scheme, 0), Ok(0));
        assert_eq!(line_amount(&scheme, 1), Ok(1500));
        assert_eq!(line_amount(&scheme, 5), Ok(3500));
        assert_eq!(line_amount(&scheme, 6), Ok(3900));
        assert_eq!(line_amount(&scheme, 10), Ok(5500));
        assert_eq!(line_amount(&scheme, 11), Ok(5800));
    }

    #[test]
    fn graduated_flat_fee_only_when_tier_is_reached() {
        let scheme = graduated(vec![tier(Some(5), "0", 0), tier(None, "0", 700)]);
        assert_eq!(line_amount(&scheme, 5), Ok(0));
        assert_eq!(line_amount(&scheme, 6), Ok(700));
    }

    #[test]
    fn graduated_rounds_once_over_all_tiers() {
        // 0.4 + 0.4 would be 0 + 0 if each tier were rounded; summed it is 0.8 → 1.
        let scheme = graduated(vec![tier(Some(1), "0.4", 0), tier(None, "0.4", 0)]);
        assert_eq!(line_amount(&scheme, 2), Ok(1));
    }

    #[test]
    fn volume_example() {
        let scheme = volume(example_tiers());
        assert_eq!(line_amount(&scheme, 12), Ok(3600));
        assert_eq!(line_amount(&scheme, 10), Ok(4000));
        assert_eq!(line_amount(&scheme, 6), Ok(2400));
        assert_eq!(line_amount(&scheme, 5), Ok(3500));
        assert_eq!(line_amount(&scheme, 1), Ok(1500));
        // Stripe bills nothing for zero units, even when the tier has a flat fee.
        assert_eq!(line_amount(&scheme, 0), Ok(0));
    }

    #[test]
    fn tiered_overflow_is_an_error() {
        let big = graduated(vec![
            tier(Some(1), "0", i64::MAX),
            tier(None, "0", i64::MAX),
        ]);
        assert!(matches!(
            line_amount(&big, 2),
            Err(MathError::Overflow { .. })
        ));
        assert_eq!(line_amount(&big, 1), Ok(i64::MAX));
        let huge = volume(vec![tier(None, "1000000", 0)]);
        assert!(line_amount(&huge, u64::MAX).is_err());
    }

    #[test]
    fn validate_tiers_reports_the_offending_tier() {
        assert_eq!(validate_tiers(&example_tiers()), Ok(()));
        assert_eq!(validate_tiers(&[]), Err(MathError::EmptyTiers));
        assert_eq!(validate_tiers(&[tier(None, "1", 0)]), Ok(()));
        assert_eq!(
            validate_tiers(&[
                tier(Some(5), "1", 0),
                tier(Some(5), "1", 0),
                tier(None, "1", 0)
            ]),
            Err(MathError::TiersNotAscending { index: 1 })
        );
        assert_eq!(
            validate_tiers(&[
                tier(Some(5), "1", 0),
                tier(Some(3), "1", 0),
                tier(None, "1", 0)
            ]),
            Err(MathError::TiersNotAscending { index: 1 })
        );
        assert_eq!(
            validate_tiers(&[tier(Some(0), "1", 0), tier(None, "1", 0)]),
            Err(MathError::TiersNotAscending { index: 0 })
        );
        assert_eq!(
            validate_tiers(&[tier(None, "1", 0), tier(None, "1", 0)]),
            Err(MathError::UnboundedTierNotLast { index: 0 })
        );
        assert_eq!(
            validate_tiers(&[tier(Some(5), "1", 0), tier(Some(10), "1", 0)]),
            Err(MathError::LastTierMustBeUnbounded)
        );
        assert_eq!(
            validate_tiers(&[tier(Some(5), "1", 0), tier(None, "-0.01", 0)]),
            Err(MathError::NegativeTierUnitAmount { index: 1 })
        );
        assert_eq!(
            validate_tiers(&[tier(Some(5), "1", -1), tier(None, "1", 0)]),
            Err(MathError::NegativeTierFlatAmount { index: 0 })
        );
        // -0 is zero, not negative.
        assert_eq!(validate_tiers(&[tier(None, "-0", 0)]), Ok(()));

        let mut many: Vec<Tier> = (1..=100).map(|i| tier(Some(i), "1", 0)).collect();
        many.push(tier(None, "1", 0));
        assert_eq!(
            validate_tiers(&many),
            Err(MathError::TooManyTiers {
                count: 101,
                max: MAX_TIERS
            })
        );
        many.remove(0);
        assert_eq!(validate_tiers(&many), Ok(()));
    }

    #[test]
    fn line_amount_validates_tiers() {
        let scheme = graduated(vec![tier(Some(5), "1", 0)]);
        assert_eq!(
            line_amount(&scheme, 1),
            Err(MathError::LastTierMustBeUnbounded)
        );
    }

    #[test]
    fn tiers_mode_is_lowercase_in_serde() {
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, StrDeserializer};
        let parse = |s: &'static str| {
            let deserializer: StrDeserializer<'_, Error> = s.into_deserializer();
            TiersMode::deserialize(deserializer)
        };
        assert_eq!(parse("graduated").unwrap(), TiersMode::Graduated);
        assert_eq!(parse("volume").unwrap(), TiersMode::Volume);
        assert!(parse("Graduated").is_err());
    }

    #[test]
    fn prorate_examples() {
        assert_eq!(prorate(1000, 15, 30), Ok(500));
        assert_eq!(prorate(1000, 1, 3), Ok(333));
        assert_eq!(prorate(1000, 2, 3), Ok(667));
        assert_eq!(prorate(-1000, 2, 3), Ok(-667));
        assert_eq!(prorate(1, 1, 2), Ok(1)); // 0.5 → 1
        assert_eq!(prorate(-1, 1, 2), Ok(-1)); // −0.5 → −1
        assert_eq!(prorate(5, 1, 2), Ok(3)); // 2.5 → 3
        assert_eq!(prorate(i64::MAX, 1, 1), Ok(i64::MAX));
        assert_eq!(prorate(i64::MIN, 1, 1), Ok(i64::MIN));
        assert_eq!(prorate(i64::MAX, i64::MAX - 1, i64::MAX), Ok(i64::MAX - 1));
        assert_eq!(
            prorate(100, 1, 0),
            Err(MathError::InvalidProrationDenominator { denominator: 0 })
        );
        assert_eq!(
            prorate(100, 4, 3),
            Err(MathError::ProrationNumeratorOutOfRange {
                numerator: 4,
                denominator: 3
            })
        );
        assert_eq!(
            prorate(100, -1, 3),
            Err(MathError::ProrationNumeratorOutOfRange {
                numerator: -1,
                denominator: 3
            })
        );
    }

    #[test]
    fn round_ratio_rejects_non_positive_denominator() {
        assert!(round_ratio(1, 0, "test").is_err());
        assert!(round_ratio(1, -2, "test").is_err());
        assert_eq!(round_ratio(i128::MIN, 1, "test"), Ok(i128::MIN));
        assert_eq!(round_ratio(i128::MAX, 2, "test"), Ok(i128::MAX / 2 + 1));
    }

    /// Integer-only reference for half-away-from-zero rounding of
    /// `mantissa / 10^scale`, sharing no code with `round_minor`.
    fn reference_round(mantissa: i128, scale: u32) -> Option<i64> {
        let divisor = 10_i128.pow(scale);
        let magnitude = mantissa.abs();
        let mut whole = magnitude / divisor;
        if (magnitude % divisor) * 2 >= divisor {
            whole += 1;
        }
        let signed = if mantissa < 0 { -whole } else { whole };
        i64::try_from(signed).ok()
    }

    /// Mantissas spanning Decimal's full 96-bit range, plus small values and
    /// exact half-way points, which random 96-bit numbers almost never hit.
    fn mantissa_and_scale() -> impl Strategy<Value = (i128, u32)> {
        const MAX_MANTISSA: i128 = (1_i128 << 96) - 1;
        prop_oneof![
            (-MAX_MANTISSA..=MAX_MANTISSA, 0_u32..=28),
            (-1_000_000_i128..=1_000_000, 0_u32..=6),
            (-1_000_000_i128..=1_000_000, 1_u32..=20).prop_map(|(whole, scale)| (
                whole * 10_i128.pow(scale) + 5 * 10_i128.pow(scale - 1),
                scale
            )),
            (any::<i64>(), 0_u32..=3).prop_map(|(m, s)| (i128::from(m), s)),
        ]
    }

    fn unit_amount() -> impl Strategy<Value = Decimal> {
        (0_i64..=100_000, 0_u32..=4).prop_map(|(m, s)| Decimal::new(m, s))
    }

    fn valid_tiers() -> impl Strategy<Value = Vec<Tier>> {
        prop::collection::vec((1_u64..=50, unit_amount(), 0_i64..=10_000), 0..6).prop_flat_map(
            |bounded| {
                (unit_amount(), 0_i64..=10_000).prop_map(move |(last_unit, last_flat)| {
                    let mut up_to = 0;
                    let mut tiers: Vec<Tier> = bounded
                        .iter()
                        .map(|(width, unit_amount, flat_amount)| {
                            up_to += width;
                            Tier {
                                up_to: Some(up_to),
                                unit_amount: *unit_amount,
                                flat_amount: *flat_amount,
                            }
                        })
                        .collect();
                    tiers.push(Tier {
                        up_to: None,
                        unit_amount: last_unit,
                        flat_amount: last_flat,
                    });
                    tiers
                })
            },
        )
    }

    fn any_decimal() -> impl Strategy<Value = Decimal> {
        const MAX_MANTISSA: i128 = (1_i128 << 96) - 1;
        (-MAX_MANTISSA..=MAX_MANTISSA, 0_u32..=28)
            .prop_map(|(m, s)| Decimal::try_from_i128_with_scale(m, s).unwrap())
    }

    fn any_tier() -> impl Strategy<Value = Tier> {
        (prop::option::of(any::<u64>()), any_decimal(), any::<i64>()).prop_map(
            |(up_to, unit_amount, flat_amount)| Tier {
                up_to,
                unit_amount,
                flat_amount,
            },
        )
    }

    proptest! {
        /// Fuzz: any decimal text a client sends as a price parses or is refused, and rounding
        /// any decimal to minor units answers (an amount or an error), never a panic.
        #[test]
        fn any_decimal_text_parses_or_is_refused_and_rounds_without_panic(text in "[-+0-9.eE_ ]{0,40}|.{0,40}") {
            if let Ok(d) = text.parse::<Decimal>() {
                let _ = round_minor(d);
            }
        }

        #[test]
        fn any_currency_code_is_known_or_refused(code in ".{0,8}") {
            let _ = crate::domain::currency::Currency::parse(&code);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn round_minor_matches_integer_reference((mantissa, scale) in mantissa_and_scale()) {
            let d = Decimal::try_from_i128_with_scale(mantissa, scale).unwrap();
            let expected = reference_round(mantissa, scale);
            prop_assert_eq!(round_minor(d).ok(), expected);
        }

        #[test]
        fn graduated_equals_volume_with_one_tier(
            unit in unit_amount(),
            flat in 0_i64..=1_000_000,
            quantity in prop_oneof![0_u64..=1_000, any::<u64>()],
        ) {
            let tiers = vec![Tier { up_to: None, unit_amount: unit, flat_amount: flat }];
            prop_assert_eq!(
                line_amount(&graduated(tiers.clone()), quantity),
                line_amount(&volume(tiers), quantity)
            );
        }

        #[test]
        fn graduated_is_monotone_in_quantity(
            tiers in valid_tiers(),
            q1 in 0_u64..=500,
            q2 in 0_u64..=500,
        ) {
            let (low, high) = if q1 <= q2 { (q1, q2) } else { (q2, q1) };
            let scheme = graduated(tiers);
            let low_amount = line_amount(&scheme, low).unwrap();
            let high_amount = line_amount(&scheme, high).unwrap();
            prop_assert!(
                low_amount <= high_amount,
                "{} units cost {} but {} units cost {}",
                low, low_amount, high, high_amount
            );
        }

        #[test]
        fn per_unit_matches_decimal_product(unit in unit_amount(), quantity in 0_u64..=10_000_000) {
            let expected = round_minor(Decimal::from(quantity) * unit).unwrap();
            let scheme = PriceScheme::PerUnit { unit_amount: unit };
            prop_assert_eq!(line_amount(&scheme, quantity), Ok(expected));
        }

        #[test]
        fn prorate_credit_and_charge_cancel(
            amount in prop_oneof![-1_000_000_i64..=1_000_000, any::<i64>()],
            (numerator, denominator) in (1_i64..=i64::MAX).prop_flat_map(|d| (0..=d, Just(d))),
        ) {
            let charge = prorate(amount, numerator, denominator).unwrap();
            // Old item credited, new item (same amount) charged: nets to zero.
            if let Some(credit) = charge.checked_neg() {
                prop_assert_eq!(credit + prorate(amount, numerator, denominator).unwrap(), 0);
            }
            prop_assert!(charge.unsigned_abs() <= amount.unsigned_abs());
            if let Some(negated) = amount.checked_neg() {
                // Crediting the negated amount is exactly the negated charge.
                let credit = prorate(negated, numerator, denominator).ok();
                prop_assert_eq!(credit, charge.checked_neg());
            }
            prop_assert_eq!(prorate(amount, denominator, denominator), Ok(amount));
            prop_assert_eq!(prorate(amount, 0, denominator), Ok(0));
        }

        #[test]
        fn prorate_matches_decimal_reference(
            amount in -1_000_000_000_i64..=1_000_000_000,
            (numerator, denominator) in (1_i64..=1_000_000).prop_flat_map(|d| (0..=d, Just(d))),
        ) {
            // Decimal is exact here: the quotient is rounded to 28 digits, far
            // beyond the 1/(2·denominator) gap that separates a value from a tie.
            let exact =
                Decimal::from(amount) * Decimal::from(numerator) / Decimal::from(denominator);
            prop_assert_eq!(prorate(amount, numerator, denominator), round_minor(exact));
        }

        #[test]
        fn prorate_never_panics(
            amount in any::<i64>(),
            numerator in any::<i64>(),
            denominator in any::<i64>(),
        ) {
            let result = prorate(amount, numerator, denominator);
            let valid = denominator > 0 && (0..=denominator).contains(&numerator);
            prop_assert_eq!(result.is_ok(), valid);
        }

        #[test]
        fn line_amount_never_panics(
            tiers in prop::collection::vec(any_tier(), 0..5),
            unit in any_decimal(),
            quantity in any::<u64>(),
        ) {
            let _ = line_amount(&graduated(tiers.clone()), quantity);
            let _ = line_amount(&volume(tiers), quantity);
            let _ = line_amount(&PriceScheme::PerUnit { unit_amount: unit }, quantity);
        }

        #[test]
        fn line_amount_never_panics_on_valid_extreme_tiers(
            tiers in valid_tiers(),
            flat in prop_oneof![0_i64..=i64::MAX, Just(i64::MAX)],
            unit in any_decimal().prop_map(|d| d.abs()),
            quantity in any::<u64>(),
        ) {
            let mut tiers = tiers;
            if let Some(last) = tiers.last_mut() {
                last.flat_amount = flat;
                last.unit_amount = unit;
            }
            for scheme in [graduated(tiers.clone()), volume(tiers)] {
                match line_amount(&scheme, quantity) {
                    Ok(_) | Err(MathError::Overflow { .. }) => {}
                    Err(other) => prop_assert!(false, "unexpected error {other}"),
                }
            }
        }
    }
}
