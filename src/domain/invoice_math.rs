//! Totals of one invoice: discount, tax and the amount the customer pays.
//!
//! Lines arrive already priced and rounded (see `pricing::line_amount` and
//! `pricing::prorate`). This module decides how a discount is spread over
//! them, how much tax each rate raises, and how the results add up, with
//! three guarantees the rest of recur relies on:
//!
//! * `total = subtotal − discount + tax` holds exactly, in integers;
//! * the per-line figures add up exactly to the invoice figures (largest
//!   remainder apportionment, ties broken by line index so results are
//!   reproducible);
//! * every tax is rounded once per rate on the sum of its lines (EN 16931
//!   BR-CO-17), so three 0.10 lines at 23% owe 0.07, not 3 × 0.02.
//!
//! All rational quantities (percentages, `r / (100 + r)`) are evaluated as
//! exact integer fractions in `i128` and rounded half away from zero by the
//! same rule as `pricing::round_minor`; `Decimal` division would be inexact
//! for fractions like 23/123. Overflow is an error, never a wrap or a panic.

use crate::domain::pricing::{MathError, round_ratio};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Whether a rate is added on top of a line amount or already contained in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaxBehavior {
    /// Tax is added on top of the (net) line amount.
    Exclusive,
    /// The line amount is gross; the tax is carved out of it.
    Inclusive,
}

/// One tax rate of the invoice; lines refer to it by its index in the slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxRateInput {
    /// Percentage, e.g. `23` or `7.5`; must be within `0..=100`.
    pub percentage: Decimal,
    /// `true` when line amounts taxed by this rate already include it.
    pub inclusive: bool,
}

impl TaxRateInput {
    /// The rate's behaviour as an enum, so callers match exhaustively instead
    /// of branching on a bool.
    pub fn behavior(&self) -> TaxBehavior {
        if self.inclusive {
            TaxBehavior::Inclusive
        } else {
            TaxBehavior::Exclusive
        }
    }
}

/// One priced line of the invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineInput {
    /// Rounded line amount in minor units; negative for proration credits.
    /// For a line with an inclusive rate it is the gross amount, tax included.
    pub amount: i64,
    /// Indices into the rates slice: all exclusive, or exactly one inclusive.
    pub tax_rates: Vec<usize>,
    /// Whether the invoice discount may reduce this line.
    pub discountable: bool,
}

/// The invoice-level discount (coupon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discount {
    /// No discount.
    None,
    /// Percentage off the discountable lines, `0 < p ≤ 100`.
    Percent(Decimal),
    /// Fixed amount off in minor units, `> 0`; capped at the discountable base.
    Amount(i64),
}

/// How the customer is taxed (the customer's `tax_exempt` setting).
///
/// Serialized as Stripe's `tax_exempt` values (`none`, `exempt`, `reverse`) so
/// the customer field maps onto it without a translation table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaxTreatment {
    /// Taxes are charged normally.
    #[serde(rename = "none")]
    Taxable,
    /// The customer is exempt: every tax is 0.
    #[serde(rename = "exempt")]
    Exempt,
    /// The customer self-assesses (EU reverse charge): every tax is 0.
    #[serde(rename = "reverse")]
    ReverseCharge,
}

/// Per-line result, in the order of the input lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineTotals {
    /// Line amount excluding tax, before discount.
    pub net_amount: i64,
    /// Share of the invoice discount, in net (ex-tax) terms.
    pub discount_amount: i64,
}

/// Tax raised by one rate over all the lines it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxTotal {
    /// Index of the rate in the rates slice.
    pub rate_index: usize,
    /// Copied from the rate so the invoice can say "incl." without a lookup.
    pub inclusive: bool,
    /// Net base the tax was computed on, after discount.
    pub taxable_amount: i64,
    /// Tax amount, rounded once for the whole rate.
    pub amount: i64,
}

/// Totals of one invoice. `total == subtotal - discount + tax` always holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceTotals {
    /// Sum of line net amounts before discount (`Σ lines[i].net_amount`).
    pub subtotal: i64,
    /// Sum of discounts in net terms (`Σ lines[i].discount_amount`).
    pub discount: i64,
    /// Sum of per-rate taxes (`Σ taxes[j].amount`).
    pub tax: i64,
    /// What the customer pays; negative when credits exceed charges.
    pub total: i64,
    /// One entry per input line, same order.
    pub lines: Vec<LineTotals>,
    /// One entry per rate used by at least one line, in rate index order.
    pub taxes: Vec<TaxTotal>,
}

/// Computes the totals of one invoice.
///
/// Steps (the contract with the invoice renderer and the ledger):
/// 1. The discount is computed on the discountable lines (gross for inclusive
///    lines) before tax and apportioned to the positive discountable lines by
///    largest remainder.
/// 2. Each rate is applied once to the sum of its lines after discount:
///    exclusive `round(base × r/100)`, inclusive `round(A × r/(100+r))` of the
///    gross after discount `A`.
/// 3. Inclusive groups report their pre-discount net `N = G − round(G × r/(100+r))`
///    in the subtotal and `N − (A − T)` as their discount, so
///    `total = subtotal − discount + tax` holds by construction.
///
/// `Exempt` and `ReverseCharge` zero every tax; inclusive lines then count
/// their whole gross as net. Inputs are validated in the order rates, lines,
/// discount, and the first problem found is returned.
pub fn compute_totals(
    lines: &[LineInput],
    rates: &[TaxRateInput],
    discount: &Discount,
    treatment: TaxTreatment,
) -> Result<InvoiceTotals, MathError> {
    validate_rates(rates)?;
    let members = lines_per_rate(lines, rates)?;
    let invoice_discount = discount_total(lines, discount)?;
    let allocations = allocate_discount(lines, invoice_discount)?;
    let charge_tax = match treatment {
        TaxTreatment::Taxable => true,
        TaxTreatment::Exempt | TaxTreatment::ReverseCharge => false,
    };

    // Untaxed and exclusive lines: amount is already net, discount already net.
    // Inclusive groups overwrite their members below.
    let mut line_net: Vec<i128> = lines.iter().map(|line| i128::from(line.amount)).collect();
    let mut line_discount = allocations.clone();
    let mut taxes = Vec::new();

    for (rate_index, (rate, member_lines)) in rates.iter().zip(&members).enumerate() {
        if member_lines.is_empty() {
            continue;
        }
        let gross = sum(
            member_lines.iter().map(|&i| i128::from(lines[i].amount)),
            "tax base",
        )?;
        let discounted = sum(member_lines.iter().map(|&i| allocations[i]), "tax base")?;
        let after_discount = sub(gross, discounted, "tax base")?;
        let (taxable_amount, amount) = match (rate.behavior(), charge_tax) {
            (TaxBehavior::Exclusive, true) => {
                let share = percent_fraction(rate.percentage)?;
                (after_discount, share.apply(after_discount)?)
            }
            (TaxBehavior::Exclusive | TaxBehavior::Inclusive, false) => (after_discount, 0),
            (TaxBehavior::Inclusive, true) => {
                let share = inclusive_fraction(rate.percentage)?;
                let group = InclusiveGroup {
                    members: member_lines,
                    gross,
                    after_discount,
                    share,
                };
                group.apportion(&allocations, &mut line_net, &mut line_discount)?
            }
        };
        taxes.push(TaxTotal {
            rate_index,
            inclusive: rate.inclusive,
            taxable_amount: to_i64(taxable_amount, "taxable amount")?,
            amount: to_i64(amount, "tax amount")?,
        });
    }

    let subtotal = sum(line_net.iter().copied(), "subtotal")?;
    let discount = sum(line_discount.iter().copied(), "discount")?;
    let tax = sum(taxes.iter().map(|t| i128::from(t.amount)), "tax")?;
    let total = add(sub(subtotal, discount, "total")?, tax, "total")?;
    let lines = line_net
        .iter()
        .zip(&line_discount)
        .map(|(&net, &discount)| {
            Ok(LineTotals {
                net_amount: to_i64(net, "line net amount")?,
                discount_amount: to_i64(discount, "line discount")?,
            })
        })
        .collect::<Result<Vec<_>, MathError>>()?;
    Ok(InvoiceTotals {
        subtotal: to_i64(subtotal, "subtotal")?,
        discount: to_i64(discount, "discount")?,
        tax: to_i64(tax, "tax")?,
        total: to_i64(total, "total")?,
        lines,
        taxes,
    })
}

/// Lines sharing one inclusive rate, with their gross before and after discount.
struct InclusiveGroup<'a> {
    members: &'a [usize],
    /// `G`: Σ gross of the member lines.
    gross: i128,
    /// `A`: Σ (gross − gross discount) of the member lines.
    after_discount: i128,
    /// `r / (100 + r)`: the tax share of a gross amount.
    share: Fraction,
}

impl InclusiveGroup<'_> {
    /// Computes the group's tax and rewrites its lines in net terms.
    ///
    /// Returns `(taxable_amount, tax)` = `(A − T, T)`. Each member's net is its
    /// gross minus its share of `round(G × share)` (so Σ nets = `N`), and its
    /// discount is its share of `N − (A − T)` proportional to its gross
    /// discount, so a line without a discount never shows one.
    fn apportion(
        &self,
        gross_discounts: &[i128],
        line_net: &mut [i128],
        line_discount: &mut [i128],
    ) -> Result<(i128, i128), MathError> {
        const CONTEXT: &str = "inclusive tax";
        let tax_before_discount = self.share.apply(self.gross)?;
        let tax = self.share.apply(self.after_discount)?;
        let net_before_discount = sub(self.gross, tax_before_discount, CONTEXT)?;
        let net_after_discount = sub(self.after_discount, tax, CONTEXT)?;
        let net_discount = sub(net_before_discount, net_after_discount, CONTEXT)?;

        // Per-line tax before discount: ideal a_i × r/(100+r), total round(G × share).
        // `line_net` still holds each member's gross: a line with an inclusive
        // rate has no other rate, so no other group has touched it.
        let ideal_tax = self
            .members
            .iter()
            .map(|&i| mul(line_net[i], self.share.numerator, CONTEXT))
            .collect::<Result<Vec<_>, _>>()?;
        let line_tax = apportion(tax_before_discount, &ideal_tax, self.share.denominator)?;

        // Per-line net discount proportional to the gross discount of the line.
        let member_discounts: Vec<i128> =
            self.members.iter().map(|&i| gross_discounts[i]).collect();
        let group_gross_discount = sum(member_discounts.iter().copied(), CONTEXT)?;
        let discount_shares = if group_gross_discount == 0 {
            // No discount reached the group, so A = G and T = round(G × share):
            // the net discount is 0 and there is nothing to spread.
            vec![0; self.members.len()]
        } else {
            let ideal = member_discounts
                .iter()
                .map(|&d| mul(net_discount, d, CONTEXT))
                .collect::<Result<Vec<_>, _>>()?;
            apportion(net_discount, &ideal, group_gross_discount)?
        };

        for ((&i, tax_share), discount_share) in
            self.members.iter().zip(line_tax).zip(discount_shares)
        {
            line_net[i] = sub(line_net[i], tax_share, CONTEXT)?;
            line_discount[i] = discount_share;
        }
        Ok((net_after_discount, tax))
    }
}

/// An exact non-negative fraction `numerator / denominator`, `denominator > 0`.
#[derive(Debug, Clone, Copy)]
struct Fraction {
    numerator: i128,
    denominator: i128,
}

impl Fraction {
    /// `round(value × self)`, half away from zero, exactly.
    fn apply(&self, value: i128) -> Result<i128, MathError> {
        const CONTEXT: &str = "applying a percentage";
        round_ratio(
            mul(value, self.numerator, CONTEXT)?,
            self.denominator,
            CONTEXT,
        )
    }
}

/// `p / 100` as an exact fraction: `p = m / 10^s` gives `m / (100 · 10^s)`.
///
/// The percentage is normalised first so that "23.000" costs no more range
/// than "23" in the products that follow.
fn percent_fraction(percentage: Decimal) -> Result<Fraction, MathError> {
    const CONTEXT: &str = "percentage fraction";
    let (mantissa, power) = decimal_parts(percentage)?;
    Ok(Fraction {
        numerator: mantissa,
        denominator: mul(100, power, CONTEXT)?,
    })
}

/// `r / (100 + r)` as an exact fraction: `m / (100 · 10^s + m)`. This is the
/// part of a gross amount that is tax when the rate is inclusive.
fn inclusive_fraction(percentage: Decimal) -> Result<Fraction, MathError> {
    const CONTEXT: &str = "inclusive tax fraction";
    let (mantissa, power) = decimal_parts(percentage)?;
    Ok(Fraction {
        numerator: mantissa,
        denominator: add(mul(100, power, CONTEXT)?, mantissa, CONTEXT)?,
    })
}

/// Mantissa and `10^scale` of a normalised decimal. Scale is at most 28, so
/// `10^scale` fits in `i128`.
fn decimal_parts(value: Decimal) -> Result<(i128, i128), MathError> {
    let normalized = value.normalize();
    let power = 10_i128
        .checked_pow(normalized.scale())
        .ok_or(MathError::Overflow {
            context: "decimal scale",
        })?;
    Ok((normalized.mantissa(), power))
}

/// Rejects rates outside `0..=100`, in index order.
fn validate_rates(rates: &[TaxRateInput]) -> Result<(), MathError> {
    let hundred = Decimal::ONE_HUNDRED;
    for (rate, input) in rates.iter().enumerate() {
        if input.percentage < Decimal::ZERO || input.percentage > hundred {
            return Err(MathError::TaxPercentageOutOfRange {
                rate,
                percentage: input.percentage,
            });
        }
    }
    Ok(())
}

/// For each rate, the indices of the lines it applies to (ascending).
///
/// Also enforces the per-line rules: known indices, no repeats (a repeat would
/// tax the line twice), and an inclusive rate only on its own (a gross amount
/// cannot be split between an inclusive rate and anything else unambiguously).
fn lines_per_rate(
    lines: &[LineInput],
    rates: &[TaxRateInput],
) -> Result<Vec<Vec<usize>>, MathError> {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); rates.len()];
    for (line, input) in lines.iter().enumerate() {
        let mut has_inclusive = false;
        for (position, &rate) in input.tax_rates.iter().enumerate() {
            let tax_rate = rates
                .get(rate)
                .ok_or(MathError::UnknownTaxRate { line, rate })?;
            if input.tax_rates[..position].contains(&rate) {
                return Err(MathError::DuplicateTaxRate { line, rate });
            }
            match tax_rate.behavior() {
                TaxBehavior::Inclusive => has_inclusive = true,
                TaxBehavior::Exclusive => {}
            }
        }
        if has_inclusive && input.tax_rates.len() > 1 {
            return Err(MathError::MixedTaxBehavior { line });
        }
        for &rate in &input.tax_rates {
            if let Some(list) = members.get_mut(rate) {
                list.push(line);
            }
        }
    }
    Ok(members)
}

/// The invoice discount in line-amount terms (gross for inclusive lines).
///
/// The discount is validated even when it ends up 0, so a bad coupon is
/// reported regardless of the invoice it is tried on.
fn discount_total(lines: &[LineInput], discount: &Discount) -> Result<i128, MathError> {
    match discount {
        Discount::None => Ok(0),
        Discount::Percent(percent) => {
            if *percent <= Decimal::ZERO || *percent > Decimal::ONE_HUNDRED {
                return Err(MathError::DiscountPercentOutOfRange { percent: *percent });
            }
            let base = discount_base(lines)?;
            if base <= 0 {
                return Ok(0);
            }
            percent_fraction(*percent)?.apply(base)
        }
        Discount::Amount(amount) => {
            if *amount <= 0 {
                return Err(MathError::NonPositiveDiscountAmount { amount: *amount });
            }
            let base = discount_base(lines)?;
            if base <= 0 {
                return Ok(0);
            }
            Ok(i128::from(*amount).min(base))
        }
    }
}

/// Σ amounts of discountable lines, credits included: a credit on a
/// discountable line reduces what the coupon can take off.
fn discount_base(lines: &[LineInput]) -> Result<i128, MathError> {
    sum(
        lines
            .iter()
            .filter(|line| line.discountable)
            .map(|line| i128::from(line.amount)),
        "discount base",
    )
}

/// Splits `discount` over the discountable lines with positive amounts,
/// proportionally to their amounts. Other lines get 0.
///
/// Credits are excluded because a negative share would *raise* a line; since
/// the discount never exceeds the base and the base never exceeds the sum of
/// the positive lines, each share stays within `0..=amount`.
fn allocate_discount(lines: &[LineInput], discount: i128) -> Result<Vec<i128>, MathError> {
    const CONTEXT: &str = "discount allocation";
    let mut allocations = vec![0_i128; lines.len()];
    if discount == 0 {
        return Ok(allocations);
    }
    let eligible: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.discountable && line.amount > 0)
        .map(|(i, _)| i)
        .collect();
    let weight = sum(
        eligible.iter().map(|&i| i128::from(lines[i].amount)),
        CONTEXT,
    )?;
    let ideal = eligible
        .iter()
        .map(|&i| mul(discount, i128::from(lines[i].amount), CONTEXT))
        .collect::<Result<Vec<_>, _>>()?;
    let shares = apportion(discount, &ideal, weight)?;
    for (&i, share) in eligible.iter().zip(shares) {
        allocations[i] = share;
    }
    Ok(allocations)
}

/// Largest-remainder apportionment.
///
/// The ideal share `k` is `ideal_numerators[k] / denominator`; every share gets
/// the floor of its ideal, and the `target − Σ floors` units left over go one
/// each to the shares with the largest fractional parts, lower index first on
/// ties, so the result sums exactly to `target` and is reproducible. Callers
/// pass a target within one unit per share of Σ ideals (an exact sum, or the
/// rounded sum), so the leftover is in `0..=len`; anything else is reported
/// instead of silently mis-allocating.
fn apportion(
    target: i128,
    ideal_numerators: &[i128],
    denominator: i128,
) -> Result<Vec<i128>, MathError> {
    const CONTEXT: &str = "apportioning an amount over lines";
    let overflow = MathError::Overflow { context: CONTEXT };
    if denominator <= 0 {
        return Err(overflow);
    }
    let mut shares = Vec::with_capacity(ideal_numerators.len());
    let mut remainders = Vec::with_capacity(ideal_numerators.len());
    for &numerator in ideal_numerators {
        shares.push(
            numerator
                .checked_div_euclid(denominator)
                .ok_or(overflow.clone())?,
        );
        remainders.push(
            numerator
                .checked_rem_euclid(denominator)
                .ok_or(overflow.clone())?,
        );
    }
    let floors = sum(shares.iter().copied(), CONTEXT)?;
    let leftover = sub(target, floors, CONTEXT)?;
    let leftover = usize::try_from(leftover).map_err(|_| overflow.clone())?;
    if leftover > shares.len() {
        return Err(overflow);
    }
    let mut order: Vec<usize> = (0..shares.len()).collect();
    // Largest remainder first; the stable sort keeps lower indices first on ties.
    order.sort_by(|&a, &b| remainders[b].cmp(&remainders[a]));
    for &k in order.iter().take(leftover) {
        shares[k] = add(shares[k], 1, CONTEXT)?;
    }
    Ok(shares)
}

fn add(a: i128, b: i128, context: &'static str) -> Result<i128, MathError> {
    a.checked_add(b).ok_or(MathError::Overflow { context })
}

fn sub(a: i128, b: i128, context: &'static str) -> Result<i128, MathError> {
    a.checked_sub(b).ok_or(MathError::Overflow { context })
}

fn mul(a: i128, b: i128, context: &'static str) -> Result<i128, MathError> {
    a.checked_mul(b).ok_or(MathError::Overflow { context })
}

fn sum(values: impl IntoIterator<Item = i128>, context: &'static str) -> Result<i128, MathError> {
    values
        .into_iter()
        .try_fold(0_i128, |acc, v| add(acc, v, context))
}

fn to_i64(value: i128, context: &'static str) -> Result<i64, MathError> {
    i64::try_from(value).map_err(|_| MathError::Overflow { context })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pricing::{prorate, round_minor};
    use proptest::prelude::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn rate(percentage: &str, inclusive: bool) -> TaxRateInput {
        TaxRateInput {
            percentage: dec(percentage),
            inclusive,
        }
    }

    fn line(amount: i64, tax_rates: &[usize]) -> LineInput {
        LineInput {
            amount,
            tax_rates: tax_rates.to_vec(),
            discountable: true,
        }
    }

    fn fixed(amount: i64, tax_rates: &[usize]) -> LineInput {
        LineInput {
            discountable: false,
            ..line(amount, tax_rates)
        }
    }

    fn lt(net_amount: i64, discount_amount: i64) -> LineTotals {
        LineTotals {
            net_amount,
            discount_amount,
        }
    }

    fn tt(rate_index: usize, inclusive: bool, taxable_amount: i64, amount: i64) -> TaxTotal {
        TaxTotal {
            rate_index,
            inclusive,
            taxable_amount,
            amount,
        }
    }

    fn totals(
        lines: &[LineInput],
        rates: &[TaxRateInput],
        discount: &Discount,
        treatment: TaxTreatment,
    ) -> InvoiceTotals {
        let result = compute_totals(lines, rates, discount, treatment).unwrap();
        assert_identities(&result);
        result
    }

    /// Sums in i128 so that the check itself cannot overflow on extreme invoices.
    fn assert_identities(t: &InvoiceTotals) {
        let wide = |v: i64| i128::from(v);
        assert_eq!(
            wide(t.total),
            wide(t.subtotal) - wide(t.discount) + wide(t.tax)
        );
        assert_eq!(
            wide(t.subtotal),
            t.lines.iter().map(|l| wide(l.net_amount)).sum::<i128>()
        );
        assert_eq!(
            wide(t.discount),
            t.lines
                .iter()
                .map(|l| wide(l.discount_amount))
                .sum::<i128>()
        );
        assert_eq!(
            wide(t.tax),
            t.taxes.iter().map(|x| wide(x.amount)).sum::<i128>()
        );
    }

    #[test]
    fn en16931_tax_is_rounded_once_per_rate() {
        let t = totals(
            &[line(10, &[0]), line(10, &[0]), line(10, &[0])],
            &[rate("23", false)],
            &Discount::None,
            TaxTreatment::Taxable,
        );
        assert_eq!((t.subtotal, t.discount, t.tax, t.total), (30, 0, 7, 37));
        assert_eq!(t.taxes, vec![tt(0, false, 30, 7)]);
        assert_eq!(t.lines, vec![lt(10, 0); 3]);
    }

    #[test]
    fn inclusive_rate_carves_tax_out_of_gross() {
        let t = totals(
            &[line(12300, &[0])],
            &[rate("23", true)],
            &Discount::None,
            TaxTreatment::Taxable,
        );
        assert_eq!(
            (t.subtotal, t.discount, t.tax, t.total),
            (10000, 0, 2300, 12300)
        );
        assert_eq!(t.taxes, vec![tt(0, true, 10000, 2300)]);
        assert_eq!(t.lines, vec![lt(10000, 0)]);
    }

    #[test]
    fn inclusive_group_lines_sum_to_group_net() {
        // Each line's tax is 186.99…; the group's is round(560.98) = 561, so
        // the three lines get 187 each by largest remainder.
        let t = totals(
            &[line(1000, &[0]), line(1000, &[0]), line(1000, &[0])],
            &[rate("23", true)],
            &Discount::None,
            TaxTreatment::Taxable,
        );
        assert_eq!(
            (t.subtotal, t.discount, t.tax, t.total),
            (2439, 0, 561, 3000)
        );
        assert_eq!(t.lines, vec![lt(813, 0); 3]);
    }

    #[test]
    fn inclusive_rate_with_percent_discount() {
        // G = 12300, A = 11070, T = 2070; N = 10000, net after discount 9000.
        let t = totals(
            &[line(12300, &[0])],
            &[rate("23", true)],
            &Discount::Percent(dec("10")),
            TaxTreatment::Taxable,
        );
        assert_eq!(
            (t.subtotal, t.discount, t.tax, t.total),
            (10000, 1000, 2070, 11070)
        );
        assert_eq!(t.taxes, vec![tt(0, true, 9000, 2070)]);
        assert_eq!(t.lines, vec![lt(10000, 1000)]);
    }

    #[test]
    fn percent_coupon_with_reverse_charge() {
        let rates = [rate("23", false)];
        let t = totals(
            &[line(8650, &[0])],
            &rates,
            &Discount::Percent(dec("10")),
            TaxTreatment::ReverseCharge,
        );
        assert_eq!(
            (t.subtotal, t.discount, t.tax, t.total),
            (8650, 865, 0, 7785)
        );
        assert_eq!(t.taxes, vec![tt(0, false, 7785, 0)]);

        // Same invoice split over two lines: 865 splits exactly 500 / 365.
        let t = totals(
            &[line(5000, &[0]), line(3650, &[0])],
            &rates,
            &Discount::Percent(dec("10")),
            TaxTreatment::ReverseCharge,
        );
        assert_eq!(
            (t.subtotal, t.discount, t.tax, t.total),
            (8650, 865, 0, 7785)
        );
        assert_eq!(t.lines, vec![lt(5000, 500), lt(3650, 365)]);

        // Taxed normally: round(7785 × 0.23) = round(1790.55) = 1791.
        let t = totals(
            &[line(8650, &[0])],
            &rates,
            &Discount::Percent(dec("10")),
            TaxTreatment::Taxable,
        );
        assert_eq!(
            (t.subtotal, t.discount, t.tax, t.total),
            (8650, 865, 1791, 9576)
        );
    }

    #[test]
    fn percent_discount_rounds_half_away_from_zero() {
        // 12.5% of 100 = 12.5 → 13; 12.5% of 4 = 0.5 → 1.
        let t = totals(
            &[line(100, &[])],
            &[],
            &Discount::Percent(dec("12.5")),
            TaxTreatment::Taxable,
        );
        assert_eq!(t.discount, 13);
        let t = totals(
            &[line(4, &[])],
            &[],
            &Discount::Percent(dec("12.5")),
            TaxTreatment::Taxable,
        );
        assert_eq!(t.discount, 1);
        let t = totals(
            &[line(5000, &[])],
            &[],
            &Discount::Percent(dec("100")),
            TaxTreatment::Taxable,
        );
        assert_eq!((t.discount, t.total), (5000, 0));
    }

    #[test]
    fn amount_coupon_is_capped_at_discountable_base() {
        let t = totals(
            &[line(1000, &[]), line(500, &[]), fixed(300, &[])],
            &[],
            &Discount::Amount(5000),
            TaxTreatment::Taxable,
        );
        assert_eq!(
            (t.subtotal, t.discount, t.tax, t.total),
            (1800, 1500, 0, 300)
        );
        assert_eq!(t.lines, vec![lt(1000, 1000), lt(500, 500), lt(300, 0)]);
    }

    #[test]
    fn discount_ties_go_to_the_lower_line_index() {
        let t = totals(
            &[line(100, &[]), line(100, &[]), line(100, &[])],
            &[],
            &Discount::Amount(100),
            TaxTreatment::Taxable,
        );
        assert_eq!(t.lines, vec![lt(100, 34), lt(100, 33), lt(100, 33)]);
        let t = totals(
            &[line(100, &[]), line(100, &[]), line(100, &[])],
            &[],
            &Discount::Amount(200),
            TaxTreatment::Taxable,
        );
        assert_eq!(t.lines, vec![lt(100, 67), lt(100, 67), lt(100, 66)]);
    }

    #[test]
    fn proration_credit_lines() {
        let rates = [rate("20", false)];
        // Upgrade a third into the period: credit 2/3 of 3000, charge 2/3 of 6000.
        let credit = -prorate(3000, 20, 30).unwrap();
        let charge = prorate(6000, 20, 30).unwrap();
        let t = totals(
            &[line(credit, &[0]), line(charge, &[0])],
            &rates,
            &Discount::None,
            TaxTreatment::Taxable,
        );
        assert_eq!((credit, charge), (-2000, 4000));
        assert_eq!(
            (t.subtotal, t.discount, t.tax, t.total),
            (2000, 0, 400, 2400)
        );

        // Downgrade: the credit exceeds the charge, so the invoice is a credit
        // and a percent coupon has nothing to take off.
        let credit = -prorate(6000, 20, 30).unwrap();
        let charge = prorate(1500, 20, 30).unwrap();
        let t = totals(
            &[line(credit, &[0]), line(charge, &[0])],
            &rates,
            &Discount::Percent(dec("10")),
            TaxTreatment::Taxable,
        );
        assert_eq!(
            (t.subtotal, t.discount, t.tax, t.total),
            (-3000, 0, -600, -3600)
        );
        assert_eq!(t.taxes, vec![tt(0, false, -3000, -600)]);

        // A credit reduces the discount base but receives no allocation.
        let t = totals(
            &[line(5000, &[0]), line(-1000, &[0])],
            &rates,
            &Discount::Percent(dec("50")),
            TaxTreatment::Taxable,
        );
        assert_eq!(t.lines, vec![lt(5000, 2000), lt(-1000, 0)]);
        assert_eq!(
            (t.subtotal, t.discount, t.tax, t.total),
            (4000, 2000, 400, 2400)
        );
    }

    #[test]
    fn credit_tax_rounds_symmetrically() {
        // 7.5% of ±20 = ±1.5 → ±2.
        let rates = [rate("7.5", false)];
        let t = totals(
            &[line(20, &[0])],
            &rates,
            &Discount::None,
            TaxTreatment::Taxable,
        );
        assert_eq!(t.tax, 2);
        let t = totals(
            &[line(-20, &[0])],
            &rates,
            &Discount::None,
            TaxTreatment::Taxable,
        );
        assert_eq!(t.tax, -2);
    }

    #[test]
    fn mixed_exclusive_rates() {
        let t = totals(
            &[line(1000, &[0, 1]), line(2000, &[1]), line(700, &[])],
            &[rate("10", false), rate("5", false), rate("99", false)],
            &Discount::None,
            TaxTreatment::Taxable,
        );
        assert_eq!(
            t.taxes,
            vec![tt(0, false, 1000, 100), tt(1, false, 3000, 150)]
        );
        assert_eq!(
            (t.subtotal, t.discount, t.tax, t.total),
            (3700, 0, 250, 3950)
        );
    }

    #[test]
    fn inclusive_and_exclusive_rates_on_different_lines() {
        let t = totals(
            &[line(12300, &[0]), line(1000, &[1])],
            &[rate("23", true), rate("10", false)],
            &Discount::None,
            TaxTreatment::Taxable,
        );
        assert_eq!(
            t.taxes,
            vec![tt(0, true, 10000, 2300), tt(1, false, 1000, 100)]
        );
        assert_eq!(
            (t.subtotal, t.discount, t.tax, t.total),
            (11000, 0, 2400, 13400)
        );
    }

    #[test]
    fn exempt_customer_with_inclusive_line() {
        for treatment in [TaxTreatment::Exempt, TaxTreatment::ReverseCharge] {
            let t = totals(
                &[line(12300, &[0])],
                &[rate("23", true)],
                &Discount::None,
                treatment,
            );
            assert_eq!(
                (t.subtotal, t.discount, t.tax, t.total),
                (12300, 0, 0, 12300)
            );
            assert_eq!(t.taxes, vec![tt(0, true, 12300, 0)]);
            assert_eq!(t.lines, vec![lt(12300, 0)]);

            let t = totals(
                &[line(12300, &[0])],
                &[rate("23", true)],
                &Discount::Percent(dec("10")),
                treatment,
            );
            assert_eq!(
                (t.subtotal, t.discount, t.tax, t.total),
                (12300, 1230, 0, 11070)
            );
            assert_eq!(t.taxes, vec![tt(0, true, 11070, 0)]);
        }
    }

    #[test]
    fn empty_invoice_is_zero() {
        let t = totals(
            &[],
            &[rate("23", false)],
            &Discount::Amount(100),
            TaxTreatment::Taxable,
        );
        assert_eq!((t.subtotal, t.discount, t.tax, t.total), (0, 0, 0, 0));
        assert!(t.taxes.is_empty());
        assert!(t.lines.is_empty());
    }

    #[test]
    fn invalid_inputs_are_rejected() {
        let none = Discount::None;
        let taxable = TaxTreatment::Taxable;
        let rates = [
            rate("23", false),
            rate("10", false),
            rate("23", true),
            rate("8", true),
        ];
        assert_eq!(
            compute_totals(&[line(1, &[4])], &rates, &none, taxable),
            Err(MathError::UnknownTaxRate { line: 0, rate: 4 })
        );
        assert_eq!(
            compute_totals(&[line(1, &[]), line(1, &[1, 1])], &rates, &none, taxable),
            Err(MathError::DuplicateTaxRate { line: 1, rate: 1 })
        );
        assert_eq!(
            compute_totals(&[line(1, &[0, 2])], &rates, &none, taxable),
            Err(MathError::MixedTaxBehavior { line: 0 })
        );
        assert_eq!(
            compute_totals(&[line(1, &[2, 3])], &rates, &none, taxable),
            Err(MathError::MixedTaxBehavior { line: 0 })
        );
        assert_eq!(
            compute_totals(&[], &[rate("100.01", false)], &none, taxable),
            Err(MathError::TaxPercentageOutOfRange {
                rate: 0,
                percentage: dec("100.01")
            })
        );
        assert_eq!(
            compute_totals(&[], &[rate("0", false), rate("-1", true)], &none, taxable),
            Err(MathError::TaxPercentageOutOfRange {
                rate: 1,
                percentage: dec("-1")
            })
        );
        for percent in ["0", "-5", "100.5"] {
            assert_eq!(
                compute_totals(&[], &[], &Discount::Percent(dec(percent)), taxable),
                Err(MathError::DiscountPercentOutOfRange {
                    percent: dec(percent)
                })
            );
        }
        for amount in [0, -1] {
            assert_eq!(
                compute_totals(&[], &[], &Discount::Amount(amount), taxable),
                Err(MathError::NonPositiveDiscountAmount { amount })
            );
        }
        // Boundary values are accepted.
        assert!(
            compute_totals(
                &[line(1, &[0])],
                &[rate("100", true)],
                &Discount::Percent(dec("100")),
                taxable
            )
            .is_ok()
        );
        assert!(
            compute_totals(
                &[line(1, &[0])],
                &[rate("0", false)],
                &Discount::Percent(dec("0.0001")),
                taxable
            )
            .is_ok()
        );
    }

    #[test]
    fn extreme_amounts_are_errors_not_panics() {
        let taxable = TaxTreatment::Taxable;
        let is_overflow =
            |r: Result<InvoiceTotals, MathError>| matches!(r, Err(MathError::Overflow { .. }));
        assert!(is_overflow(compute_totals(
            &[line(i64::MAX, &[]), line(1, &[])],
            &[],
            &Discount::None,
            taxable
        )));
        assert!(is_overflow(compute_totals(
            &[line(i64::MIN, &[]), line(-1, &[])],
            &[],
            &Discount::None,
            taxable
        )));
        assert!(is_overflow(compute_totals(
            &[line(i64::MAX, &[0])],
            &[rate("23", false)],
            &Discount::None,
            taxable
        )));
        // Extreme but representable invoices still work.
        let t = totals(
            &[line(i64::MAX, &[])],
            &[],
            &Discount::Percent(dec("50")),
            taxable,
        );
        assert_eq!(t.discount, i64::MAX / 2 + 1);
        let t = totals(
            &[line(i64::MAX, &[0])],
            &[rate("23", true)],
            &Discount::None,
            taxable,
        );
        assert_eq!(t.total, i64::MAX);
        let t = totals(
            &[line(i64::MIN, &[0])],
            &[rate("23", false)],
            &Discount::None,
            TaxTreatment::Exempt,
        );
        assert_eq!(t.total, i64::MIN);
        // An absurdly precise percentage on a huge base overflows i128: error.
        let precise = Decimal::from_str("22.9999999999999999999999999").unwrap();
        assert!(is_overflow(compute_totals(
            &[line(i64::MAX, &[0])],
            &[TaxRateInput {
                percentage: precise,
                inclusive: false
            }],
            &Discount::None,
            taxable
        )));
    }

    #[test]
    fn tax_treatment_uses_stripe_tax_exempt_names() {
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, StrDeserializer};
        let parse = |s: &'static str| {
            let deserializer: StrDeserializer<'_, Error> = s.into_deserializer();
            TaxTreatment::deserialize(deserializer)
        };
        assert_eq!(parse("none").unwrap(), TaxTreatment::Taxable);
        assert_eq!(parse("exempt").unwrap(), TaxTreatment::Exempt);
        assert_eq!(parse("reverse").unwrap(), TaxTreatment::ReverseCharge);
        assert!(parse("taxable").is_err());
        assert_eq!(rate("1", true).behavior(), TaxBehavior::Inclusive);
        assert_eq!(rate("1", false).behavior(), TaxBehavior::Exclusive);
    }

    #[test]
    fn apportion_reports_impossible_targets() {
        assert!(apportion(5, &[1, 1], 2).is_err()); // leftover 4 > 2 shares
        assert!(apportion(-1, &[1, 1], 2).is_err());
        assert!(apportion(0, &[], 0).is_err());
        assert_eq!(apportion(2, &[3, 3, 3], 9), Ok(vec![1, 1, 0]));
        // Ideals −1.5 and 0.5: floors −2 and 0, the leftover unit goes to index 0 on the tie.
        assert_eq!(apportion(-1, &[-3, 1], 2), Ok(vec![-1, 0]));
    }

    // ---- property tests -------------------------------------------------

    type Invoice = (Vec<LineInput>, Vec<TaxRateInput>, Discount, TaxTreatment);

    fn percentage() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            prop::sample::select(vec![
                "0", "5", "7.5", "8.875", "19", "20", "21", "23", "25", "100"
            ])
            .prop_map(dec),
            (0_i64..=10_000).prop_map(|m| Decimal::new(m, 2)),
            (0_i64..=100_000).prop_map(|m| Decimal::new(m, 3)),
        ]
    }

    fn amount() -> impl Strategy<Value = i64> {
        prop_oneof![
            3 => 0_i64..=500_000,
            1 => -100_000_i64..=0,
            2 => -20_i64..=20,
        ]
    }

    fn discount() -> impl Strategy<Value = Discount> {
        prop_oneof![
            Just(Discount::None),
            (1_i64..=10_000).prop_map(|m| Discount::Percent(Decimal::new(m, 2))),
            (1_i64..=100).prop_map(|m| Discount::Percent(Decimal::from(m))),
            (1_i64..=1_000_000).prop_map(Discount::Amount),
            (1_i64..=100).prop_map(Discount::Amount),
        ]
    }

    fn treatment() -> impl Strategy<Value = TaxTreatment> {
        prop_oneof![
            3 => Just(TaxTreatment::Taxable),
            1 => Just(TaxTreatment::Exempt),
            1 => Just(TaxTreatment::ReverseCharge),
        ]
    }

    /// Turns random index lists into valid rate lists: drops unknown and
    /// repeated indices, and keeps only the first inclusive rate if any.
    fn repair(rates: &[TaxRateInput], raw: Vec<(i64, Vec<usize>, bool)>) -> Vec<LineInput> {
        raw.into_iter()
            .map(|(amount, indices, discountable)| {
                let mut chosen: Vec<usize> = Vec::new();
                for i in indices {
                    if i < rates.len() && !chosen.contains(&i) {
                        chosen.push(i);
                    }
                }
                if let Some(&inclusive) = chosen.iter().find(|&&i| rates[i].inclusive) {
                    chosen = vec![inclusive];
                }
                LineInput {
                    amount,
                    tax_rates: chosen,
                    discountable,
                }
            })
            .collect()
    }

    fn invoice_with(
        amounts: BoxedStrategy<i64>,
        discounts: BoxedStrategy<Discount>,
    ) -> impl Strategy<Value = Invoice> {
        prop::collection::vec((percentage(), any::<bool>()), 0..5).prop_flat_map(move |raw_rates| {
            let rates: Vec<TaxRateInput> = raw_rates
                .into_iter()
                .map(|(percentage, inclusive)| TaxRateInput {
                    percentage,
                    inclusive,
                })
                .collect();
            let max_index = rates.len().max(1);
            let raw_line = (
                amounts.clone(),
                prop::collection::vec(0..max_index, 0..4),
                prop::bool::weighted(0.8),
            );
            (
                prop::collection::vec(raw_line, 0..8),
                Just(rates),
                discounts.clone(),
                treatment(),
            )
                .prop_map(|(raw, rates, discount, treatment)| {
                    (repair(&rates, raw), rates, discount, treatment)
                })
        })
    }

    fn invoice() -> impl Strategy<Value = Invoice> {
        invoice_with(amount().boxed(), discount().boxed())
    }

    /// The discount in gross terms, recomputed from the inputs with `Decimal`.
    fn expected_gross_discount(lines: &[LineInput], discount: &Discount) -> i64 {
        let base: i64 = lines
            .iter()
            .filter(|l| l.discountable)
            .map(|l| l.amount)
            .sum();
        if base <= 0 {
            return 0;
        }
        match discount {
            Discount::None => 0,
            Discount::Percent(p) => {
                round_minor(Decimal::from(base) * *p / Decimal::ONE_HUNDRED).unwrap()
            }
            Discount::Amount(a) => (*a).min(base),
        }
    }

    fn taxes_charged(treatment: TaxTreatment) -> bool {
        match treatment {
            TaxTreatment::Taxable => true,
            TaxTreatment::Exempt | TaxTreatment::ReverseCharge => false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn total_is_subtotal_minus_discount_plus_tax(
            (lines, rates, discount, treatment) in invoice(),
        ) {
            let t = compute_totals(&lines, &rates, &discount, treatment).unwrap();
            prop_assert_eq!(t.total, t.subtotal - t.discount + t.tax);
            prop_assert_eq!(t.tax, t.taxes.iter().map(|x| x.amount).sum::<i64>());
        }

        #[test]
        fn line_nets_sum_to_subtotal((lines, rates, discount, treatment) in invoice()) {
            let t = compute_totals(&lines, &rates, &discount, treatment).unwrap();
            prop_assert_eq!(t.lines.len(), lines.len());
            prop_assert_eq!(t.subtotal, t.lines.iter().map(|l| l.net_amount).sum::<i64>());
        }

        #[test]
        fn line_discounts_sum_to_discount((lines, rates, discount, treatment) in invoice()) {
            let t = compute_totals(&lines, &rates, &discount, treatment).unwrap();
            prop_assert_eq!(t.discount, t.lines.iter().map(|l| l.discount_amount).sum::<i64>());
            for (input, out) in lines.iter().zip(&t.lines) {
                prop_assert!(out.discount_amount >= 0);
                if !input.discountable || input.amount <= 0 {
                    prop_assert_eq!(out.discount_amount, 0);
                }
                if !input.tax_rates.iter().any(|&r| rates[r].inclusive) {
                    prop_assert!(out.discount_amount <= input.amount.max(0));
                }
            }
        }

        #[test]
        fn discount_never_exceeds_positive_base((lines, rates, discount, treatment) in invoice()) {
            let t = compute_totals(&lines, &rates, &discount, treatment).unwrap();
            let base: i64 = lines.iter().filter(|l| l.discountable).map(|l| l.amount).sum();
            prop_assert!(t.discount >= 0);
            prop_assert!(t.discount <= base.max(0));
            prop_assert!(expected_gross_discount(&lines, &discount) <= base.max(0));
        }

        #[test]
        fn total_is_what_the_customer_pays((lines, rates, discount, treatment) in invoice()) {
            // Independently of the net/gross bookkeeping: the customer pays every
            // line amount, minus the gross discount, plus exclusive taxes only.
            let t = compute_totals(&lines, &rates, &discount, treatment).unwrap();
            let gross: i64 = lines.iter().map(|l| l.amount).sum();
            let exclusive_tax: i64 =
                t.taxes.iter().filter(|x| !x.inclusive).map(|x| x.amount).sum();
            let gross_discount = expected_gross_discount(&lines, &discount);
            prop_assert_eq!(t.total, gross - gross_discount + exclusive_tax);
        }

        #[test]
        fn without_inclusive_rates_or_discount_subtotal_is_sum_of_amounts(
            (lines, rates, _, treatment) in invoice(),
        ) {
            let rates: Vec<TaxRateInput> = rates
                .into_iter()
                .map(|r| TaxRateInput { inclusive: false, ..r })
                .collect();
            let t = compute_totals(&lines, &rates, &Discount::None, treatment).unwrap();
            prop_assert_eq!(t.subtotal, lines.iter().map(|l| l.amount).sum::<i64>());
            prop_assert_eq!(t.discount, 0);
            for (input, out) in lines.iter().zip(&t.lines) {
                prop_assert_eq!(out.net_amount, input.amount);
            }
        }

        #[test]
        fn per_rate_tax_matches_independent_recomputation(
            (lines, rates, discount, treatment) in invoice(),
        ) {
            let t = compute_totals(&lines, &rates, &discount, treatment).unwrap();
            let used: Vec<usize> = (0..rates.len())
                .filter(|&r| lines.iter().any(|l| l.tax_rates.contains(&r)))
                .collect();
            prop_assert_eq!(t.taxes.iter().map(|x| x.rate_index).collect::<Vec<_>>(), used);
            for x in &t.taxes {
                let rate = &rates[x.rate_index];
                prop_assert_eq!(x.inclusive, rate.inclusive);
                let members: Vec<usize> = (0..lines.len())
                    .filter(|&i| lines[i].tax_rates.contains(&x.rate_index))
                    .collect();
                let after_discount: i64 = members
                    .iter()
                    .map(|&i| t.lines[i].net_amount - t.lines[i].discount_amount)
                    .sum();
                if rate.inclusive {
                    // taxable = A − T = Σ line nets after discount.
                    prop_assert_eq!(x.taxable_amount, after_discount);
                    if taxes_charged(treatment) {
                        let gross_after = Decimal::from(x.taxable_amount + x.amount);
                        // Decimal division is inexact, but with these small rate
                        // denominators its error is far below the distance to a tie.
                        let denominator = Decimal::ONE_HUNDRED + rate.percentage;
                        let expected =
                            round_minor(gross_after * rate.percentage / denominator).unwrap();
                        prop_assert_eq!(x.amount, expected);
                    } else {
                        prop_assert_eq!(x.amount, 0);
                    }
                    if matches!(discount, Discount::None) {
                        let gross: i64 = members.iter().map(|&i| lines[i].amount).sum();
                        prop_assert_eq!(x.taxable_amount + x.amount, gross);
                    }
                } else {
                    prop_assert_eq!(x.taxable_amount, after_discount);
                    let expected = if taxes_charged(treatment) {
                        let exact =
                            Decimal::from(after_discount) * rate.percentage / Decimal::ONE_HUNDRED;
                        round_minor(exact).unwrap()
                    } else {
                        0
                    };
                    prop_assert_eq!(x.amount, expected);
                }
            }
        }

        #[test]
        fn inclusive_line_nets_are_within_a_cent_of_exact(
            (lines, rates, _, treatment) in invoice(),
        ) {
            let t = compute_totals(&lines, &rates, &Discount::None, treatment).unwrap();
            for (input, out) in lines.iter().zip(&t.lines) {
                if let [r] = input.tax_rates[..]
                    && rates[r].inclusive
                    && taxes_charged(treatment)
                {
                    let p = rates[r].percentage;
                    let exact = Decimal::from(input.amount) * Decimal::ONE_HUNDRED
                        / (Decimal::ONE_HUNDRED + p);
                    prop_assert!((Decimal::from(out.net_amount) - exact).abs() < Decimal::ONE);
                }
            }
        }

        #[test]
        fn extreme_inputs_never_panic(
            (lines, rates, discount, treatment) in invoice_with(
                prop_oneof![
                    any::<i64>(),
                    Just(i64::MAX),
                    Just(i64::MIN),
                    (i64::MAX - 10)..=i64::MAX,
                ]
                .boxed(),
                prop_oneof![
                    Just(Discount::None),
                    any::<i64>().prop_map(Discount::Amount),
                    (any::<i64>(), 0_u32..=28)
                        .prop_map(|(m, s)| Discount::Percent(Decimal::new(m, s))),
                    Just(Discount::Percent(Decimal::ONE_HUNDRED)),
                ].boxed(),
            ),
            wild_rate in (any::<i64>(), 0_u32..=28, any::<bool>()),
        ) {
            let mut rates = rates;
            rates.push(TaxRateInput {
                percentage: Decimal::new(wild_rate.0, wild_rate.1),
                inclusive: wild_rate.2,
            });
            if let Ok(t) = compute_totals(&lines, &rates, &discount, treatment) {
                assert_identities(&t);
            }
            // Lines pointing at the wild rate as well.
            let mut pointed = lines.clone();
            let wild = rates.len() - 1;
            for l in &mut pointed {
                if l.tax_rates.is_empty() {
                    l.tax_rates.push(wild);
                }
            }
            if let Ok(t) = compute_totals(&pointed, &rates, &discount, treatment) {
                assert_identities(&t);
            }
        }
    }
}
