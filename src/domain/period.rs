//! Billing period arithmetic.
//!
//! Customers predict their bills from these rules, so they are fixed by
//! contract and must never drift:
//!
//! * The k-th boundary of a calendar is `anchor + k·interval`, always computed
//!   from the anchor (never by adding intervals one after the other), so a
//!   clipped month does not shorten every later period: an anchor on Jan 31
//!   gives Feb 28 (Feb 29 in leap years), then Mar 31, Apr 30, May 31, …
//! * Month and year steps keep the anchor's day of month, clipped to the last
//!   day of the target month, and keep the time of day. Day and week steps are
//!   exact multiples of 86 400 / 604 800 seconds (all times are UTC).
//! * Periods are half-open `[start, end)`.
//! * Proration is per second and expressed as integer fractions; there are no
//!   floats in this module so that money computations stay exact.
//!
//! Everything here is pure: times come in as arguments and nothing reads the
//! clock or performs I/O, which lets the test clock replay billing exactly.

use std::fmt;
use std::iter;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize};

const SECONDS_PER_DAY: i64 = 86_400;
const SECONDS_PER_WEEK: i64 = 7 * SECONDS_PER_DAY;
const MONTHS_PER_YEAR: i64 = 12;

/// Why a billing calendar could not be built; each variant names the rule the
/// caller broke so the API layer can show it to the merchant unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// The interval count is zero or makes the interval longer than 3 years.
    #[error("interval_count must be between 1 and {max} for {unit} (got {count})")]
    IntervalCountOutOfRange {
        /// Unit the count was given for.
        unit: IntervalUnit,
        /// The rejected count.
        count: u32,
        /// Largest count allowed for this unit (3 years' worth).
        max: u32,
    },
    /// A trial must have a positive length.
    #[error("trial_end ({trial_end}) must be after the subscription start ({start})")]
    TrialEndNotAfterStart {
        /// Subscription start.
        start: DateTime<Utc>,
        /// The rejected trial end.
        trial_end: DateTime<Utc>,
    },
    /// The billing cycle anchor lies before the first paid moment.
    #[error(
        "billing_cycle_anchor ({anchor}) must not be before the paid start ({paid_start}, \
         the subscription start or the end of its trial)"
    )]
    BillingCycleAnchorBeforePaidStart {
        /// The rejected anchor.
        anchor: DateTime<Utc>,
        /// Start of paid service (subscription start, or trial end).
        paid_start: DateTime<Utc>,
    },
    /// The billing cycle anchor is one full interval or more after the paid
    /// start, which would leave a stub longer than a regular period.
    #[error(
        "billing_cycle_anchor ({anchor}) must be less than one interval after the paid start \
         ({paid_start}), i.e. before {limit}"
    )]
    BillingCycleAnchorTooFarAfterPaidStart {
        /// The rejected anchor.
        anchor: DateTime<Utc>,
        /// Start of paid service (subscription start, or trial end).
        paid_start: DateTime<Utc>,
        /// The first instant that is too late (paid start plus one interval).
        limit: DateTime<Utc>,
    },
    /// The dates are so close to the limits of the supported calendar
    /// (about ±262 000 years) that the first periods cannot be computed.
    #[error("subscription dates are outside the supported calendar range")]
    OutOfRange,
}

/// The calendar unit a price recurs in; serialized lowercase (`"month"`) to
/// match the public API and stored plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntervalUnit {
    /// Exactly 86 400 seconds.
    Day,
    /// Exactly 604 800 seconds.
    Week,
    /// A calendar month, clipped to the month's last day.
    Month,
    /// A calendar year (12 months), clipped to the month's last day.
    Year,
}

/// Written the way the API spells units, so error messages match the
/// request fields the merchant sent.
impl fmt::Display for IntervalUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl IntervalUnit {
    /// Largest count for this unit such that the interval is at most 3 years.
    const fn max_count(self) -> u32 {
        match self {
            IntervalUnit::Day => 1095,
            IntervalUnit::Week => 156,
            IntervalUnit::Month => 36,
            IntervalUnit::Year => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IntervalUnit::Day => "day",
            IntervalUnit::Week => "week",
            IntervalUnit::Month => "month",
            IntervalUnit::Year => "year",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(IntervalUnit::Day),
            "week" => Some(IntervalUnit::Week),
            "month" => Some(IntervalUnit::Month),
            "year" => Some(IntervalUnit::Year),
            _ => None,
        }
    }
}

/// How often a price recurs (`count` × `unit`), validated so every calendar
/// built from it has positive periods of at most 3 years.
///
/// Fields are private so an invalid interval cannot exist; deserialization
/// goes through [`Interval::new`] too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Interval {
    unit: IntervalUnit,
    count: u32,
}

/// How one interval moves a boundary: either a fixed number of seconds or a
/// number of calendar months.
#[derive(Debug, Clone, Copy)]
enum Step {
    Seconds(i64),
    Months(i64),
}

impl Interval {
    /// Validates `count` (1 ..= 3 years' worth of `unit`) and builds the
    /// interval.
    pub fn new(unit: IntervalUnit, count: u32) -> Result<Interval, PeriodError> {
        let max = unit.max_count();
        if count == 0 || count > max {
            return Err(PeriodError::IntervalCountOutOfRange { unit, count, max });
        }
        Ok(Interval { unit, count })
    }

    /// The calendar unit, needed to describe the price to customers.
    pub fn unit(&self) -> IntervalUnit {
        self.unit
    }

    /// How many units make one period.
    pub fn count(&self) -> u32 {
        self.count
    }

    fn step(self) -> Step {
        let count = i64::from(self.count);
        match self.unit {
            IntervalUnit::Day => Step::Seconds(count * SECONDS_PER_DAY),
            IntervalUnit::Week => Step::Seconds(count * SECONDS_PER_WEEK),
            IntervalUnit::Month => Step::Months(count),
            IntervalUnit::Year => Step::Months(count * MONTHS_PER_YEAR),
        }
    }
}

/// Deserializes `{"unit": "month", "count": 3}` and applies the same
/// validation as [`Interval::new`], so stored or submitted data cannot
/// smuggle in an invalid interval.
impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            unit: IntervalUnit,
            count: u32,
        }
        let raw = Raw::deserialize(deserializer)?;
        Interval::new(raw.unit, raw.count).map_err(serde::de::Error::custom)
    }
}

/// A half-open span of time `[start, end)` that is billed (or, for a trial,
/// not billed) as one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Period {
    /// First instant inside the period.
    pub start: DateTime<Utc>,
    /// First instant after the period (exclusive).
    pub end: DateTime<Utc>,
}

impl Period {
    /// Whole seconds from start to end (sub-second parts truncated); the
    /// denominator of per-second proration.
    pub fn duration_secs(&self) -> i64 {
        self.end.signed_duration_since(self.start).num_seconds()
    }
}

/// Adds `months` calendar months to `at`, keeping its day of month (clipped
/// to the target month's last day) and its time of day.
fn add_months(at: DateTime<Utc>, months: i64) -> Option<DateTime<Utc>> {
    let naive = at.naive_utc();
    let index = i64::from(naive.year())
        .checked_mul(MONTHS_PER_YEAR)?
        .checked_add(i64::from(naive.month0()))?
        .checked_add(months)?;
    let year = i32::try_from(index.div_euclid(MONTHS_PER_YEAR)).ok()?;
    let month = u32::try_from(index.rem_euclid(MONTHS_PER_YEAR)).ok()? + 1;
    let day = naive.day().min(days_in_month(year, month));
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    Some(date.and_time(naive.time()).and_utc())
}

/// Number of days in `month` (1-based) of the proleptic Gregorian `year`.
fn days_in_month(year: i32, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Calendar month number of `at`, counted from year 0 (monotone in time).
fn month_index(at: DateTime<Utc>) -> i64 {
    i64::from(at.year()) * MONTHS_PER_YEAR + i64::from(at.month0())
}

/// The k-th boundary of the calendar anchored at `anchor`: `anchor + k·interval`,
/// computed directly from the anchor so month clipping never accumulates.
///
/// `k` may be negative (periods before the anchor, e.g. to size a stub).
/// Returns `None` only when the result is outside chrono's range.
pub fn boundary(anchor: DateTime<Utc>, interval: Interval, k: i64) -> Option<DateTime<Utc>> {
    let t = match interval.step() {
        Step::Seconds(secs) => {
            let delta = TimeDelta::try_seconds(k.checked_mul(secs)?)?;
            anchor.checked_add_signed(delta)
        }
        Step::Months(months) => add_months(anchor, k.checked_mul(months)?),
    }?;
    // Past year 9999 an instant no longer stores as four-digit-year text: out of range.
    (t.year() <= 9999).then_some(t)
}

/// The index of the period containing `t`: the largest k with
/// `boundary(anchor, interval, k) <= t` (negative before the anchor).
///
/// Runs in constant time (estimate from the elapsed time, then adjust by at
/// most a step or two) because billing runs call it for every subscription.
/// Returns `None` only when the needed boundaries are outside chrono's range.
pub fn period_index_at(anchor: DateTime<Utc>, interval: Interval, t: DateTime<Utc>) -> Option<i64> {
    let estimate = match interval.step() {
        Step::Seconds(secs) => t
            .signed_duration_since(anchor)
            .num_seconds()
            .div_euclid(secs),
        Step::Months(months) => (month_index(t) - month_index(anchor)).div_euclid(months),
    };
    refine_index(anchor, interval, t, estimate)
}

/// Turns an estimate of `period_index_at` into the exact answer by walking
/// boundaries down and then up. The estimates above are off by at most one,
/// so this takes a step or two; it stays correct for any estimate.
fn refine_index(
    anchor: DateTime<Utc>,
    interval: Interval,
    t: DateTime<Utc>,
    estimate: i64,
) -> Option<i64> {
    let mut k = estimate;
    // Step down until boundary(k) <= t.
    loop {
        match boundary(anchor, interval, k) {
            Some(b) if b <= t => break,
            Some(_) => k = k.checked_sub(1)?,
            // Past the end of the representable range, so certainly after t.
            None if k > 0 => k -= 1,
            None => return None,
        }
    }
    // Step up while the next boundary is still <= t. A boundary that cannot
    // be represented lies after every representable t.
    loop {
        let next = k.checked_add(1)?;
        match boundary(anchor, interval, next) {
            Some(b) if b <= t => k = next,
            Some(_) | None => return Some(k),
        }
    }
}

/// The period `[boundary(k), boundary(k+1))` containing `t`, with its index k.
///
/// Returns `None` only when a boundary is outside chrono's range.
pub fn period_at(
    anchor: DateTime<Utc>,
    interval: Interval,
    t: DateTime<Utc>,
) -> Option<(i64, Period)> {
    let k = period_index_at(anchor, interval, t)?;
    let start = boundary(anchor, interval, k)?;
    let end = boundary(anchor, interval, k.checked_add(1)?)?;
    Some((k, Period { start, end }))
}

/// The period a subscription bills from `at` on its calendar (what the billing run invoices
/// at a boundary): before the anchor, the short stub `[at, anchor)` with its share of the full
/// interval ending at the anchor; from the anchor on, `[at, next boundary)`. `None` only
/// outside chrono's range.
pub fn period_starting_at(
    anchor: DateTime<Utc>,
    interval: Interval,
    at: DateTime<Utc>,
) -> Option<(Period, Option<(i64, i64)>)> {
    if at < anchor {
        let before = boundary(anchor, interval, -1)?;
        let full = (anchor - before).num_seconds();
        let stub = (anchor - at).num_seconds().min(full);
        return Some((
            Period {
                start: at,
                end: anchor,
            },
            Some((stub, full)),
        ));
    }
    let (_, containing) = period_at(anchor, interval, at)?;
    Some((
        Period {
            start: at,
            end: containing.end,
        },
        None,
    ))
}

/// Share of `period` still ahead at `at`, as (remaining seconds, period
/// seconds), for per-second proration when a subscription changes mid-period.
///
/// The numerator is clamped to `[0, period seconds]`, so times before the
/// period give the whole period and times after it give nothing. A period
/// shorter than one second (or inverted) yields `(0, 1)`, so the denominator
/// is always positive and callers can divide without checking.
pub fn remaining_fraction(period: &Period, at: DateTime<Utc>) -> (i64, i64) {
    let total = period.duration_secs();
    if total <= 0 {
        return (0, 1);
    }
    let remaining = period.end.signed_duration_since(at).num_seconds();
    (remaining.clamp(0, total), total)
}

/// Share of a billing interval that a change at `at` leaves unused in `period`, as
/// (remaining seconds, interval seconds). The denominator is the full interval of the
/// subscription's calendar that `period` ends (Stripe's rule): a short stub before the anchor
/// is the tail of a full interval, so a credit for its unused time is never more than what
/// the stub was billed, and a charge for it never more than a full interval would cost.
/// Falls back to the period's own length where the calendar gives no interval.
pub fn unused_fraction(
    anchor: DateTime<Utc>,
    interval: Interval,
    period: &Period,
    at: DateTime<Utc>,
) -> (i64, i64) {
    let (remaining, own) = remaining_fraction(period, at);
    let full = period_index_at(anchor, interval, period.end - TimeDelta::seconds(1))
        .and_then(|k| {
            Some((
                boundary(anchor, interval, k)?,
                boundary(anchor, interval, k + 1)?,
            ))
        })
        .filter(|(_, end)| *end == period.end)
        .map_or(own, |(start, end)| (end - start).num_seconds());
    (remaining, full.max(own))
}

/// Which part of a subscription's calendar a period is, because trials are
/// free, stubs are prorated and regular periods are charged in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodKind {
    /// The free trial `[start, trial_end)`.
    Trial(Period),
    /// The short, prorated first paid period `[paid_start, anchor)` that
    /// exists when a billing cycle anchor is later than the paid start.
    Stub(Period),
    /// A full period `[boundary(anchor, index), boundary(anchor, index + 1))`;
    /// index 0 starts at the anchor.
    Regular {
        /// Position counted from the anchor (0 for the period starting there).
        index: i64,
        /// The period itself.
        period: Period,
    },
}

impl PeriodKind {
    /// The period regardless of kind, for callers that only need its dates.
    pub fn period(&self) -> Period {
        match self {
            PeriodKind::Trial(period) | PeriodKind::Stub(period) => *period,
            PeriodKind::Regular { period, .. } => *period,
        }
    }
}

/// A subscription's whole calendar: optional free trial, optional prorated
/// stub up to the billing cycle anchor, then regular periods from the anchor.
///
/// Built once from the subscription's dates and validated up front, so every
/// query afterwards is infallible or fails only at the far end of the
/// calendar range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    start: DateTime<Utc>,
    interval: Interval,
    trial_end: Option<DateTime<Utc>>,
    anchor: DateTime<Utc>,
    /// `boundary(anchor, interval, 1)`, precomputed so the first regular
    /// period is always available.
    first_regular_end: DateTime<Utc>,
    /// Precomputed stub proration, `None` when there is no stub.
    stub_fraction: Option<(i64, i64)>,
}

impl Schedule {
    /// Validates the subscription's dates and builds its calendar.
    ///
    /// The anchor is `billing_cycle_anchor` if given, else `trial_end` if
    /// given, else `start`. `trial_end` must be after `start`. A given
    /// `billing_cycle_anchor` must be at or after the paid start (trial end,
    /// or start) and strictly less than one interval after it (Stripe's
    /// rule), so a stub is always shorter than a regular period.
    pub fn new(
        start: DateTime<Utc>,
        interval: Interval,
        trial_end: Option<DateTime<Utc>>,
        billing_cycle_anchor: Option<DateTime<Utc>>,
    ) -> Result<Schedule, PeriodError> {
        if let Some(trial_end) = trial_end
            && trial_end <= start
        {
            return Err(PeriodError::TrialEndNotAfterStart { start, trial_end });
        }
        let paid_start = trial_end.unwrap_or(start);
        let anchor = match billing_cycle_anchor {
            None => paid_start,
            Some(anchor) => {
                if anchor < paid_start {
                    return Err(PeriodError::BillingCycleAnchorBeforePaidStart {
                        anchor,
                        paid_start,
                    });
                }
                let limit = boundary(paid_start, interval, 1).ok_or(PeriodError::OutOfRange)?;
                if anchor >= limit {
                    return Err(PeriodError::BillingCycleAnchorTooFarAfterPaidStart {
                        anchor,
                        paid_start,
                        limit,
                    });
                }
                anchor
            }
        };
        let first_regular_end = boundary(anchor, interval, 1).ok_or(PeriodError::OutOfRange)?;
        let stub_fraction = if anchor > paid_start {
            let previous = boundary(anchor, interval, -1).ok_or(PeriodError::OutOfRange)?;
            let stub_secs = anchor.signed_duration_since(paid_start).num_seconds();
            let full_secs = anchor.signed_duration_since(previous).num_seconds();
            Some((stub_secs, full_secs))
        } else {
            None
        };
        Ok(Schedule {
            start,
            interval,
            trial_end,
            anchor,
            first_regular_end,
            stub_fraction,
        })
    }

    /// The instant regular periods are counted from (index 0 starts here).
    pub fn anchor(&self) -> DateTime<Utc> {
        self.anchor
    }

    /// The free trial, if any, so it can be shown and never charged.
    pub fn trial(&self) -> Option<Period> {
        self.trial_end.map(|end| Period {
            start: self.start,
            end,
        })
    }

    /// The first instant that is paid for: the trial end, or the start.
    pub fn paid_start(&self) -> DateTime<Utc> {
        self.trial_end.unwrap_or(self.start)
    }

    /// The first period that creates a charge: the stub `[paid_start, anchor)`
    /// if there is one, else `[anchor, boundary(anchor, 1))`.
    pub fn first_paid_period(&self) -> Period {
        let paid_start = self.paid_start();
        if self.anchor > paid_start {
            Period {
                start: paid_start,
                end: self.anchor,
            }
        } else {
            Period {
                start: self.anchor,
                end: self.first_regular_end,
            }
        }
    }

    /// Proration of the stub as (stub seconds, seconds of the full period
    /// ending at the anchor), or `None` without a stub. Always `0 <= n < d`.
    pub fn stub_fraction(&self) -> Option<(i64, i64)> {
        self.stub_fraction
    }

    /// Which period of this calendar contains `t`, or `None` if `t` is before
    /// the subscription start (or the period lies outside chrono's range).
    pub fn period_containing(&self, t: DateTime<Utc>) -> Option<PeriodKind> {
        if t < self.start {
            return None;
        }
        if let Some(trial) = self.trial()
            && t < trial.end
        {
            return Some(PeriodKind::Trial(trial));
        }
        if t < self.anchor {
            return Some(PeriodKind::Stub(Period {
                start: self.paid_start(),
                end: self.anchor,
            }));
        }
        let (index, period) = period_at(self.anchor, self.interval, t)?;
        Some(PeriodKind::Regular { index, period })
    }

    /// The period that follows `p`, i.e. the period starting at `p.end`, so a
    /// renewal job can advance a subscription one period at a time.
    ///
    /// For a `p` that is not a period of this calendar, this is the first
    /// period (trial included) starting at or after `p.end`. In the
    /// unreachable far future where the next boundary exceeds chrono's range,
    /// the period starts at `p.end` and ends at `DateTime::<Utc>::MAX_UTC`.
    pub fn next_period_after(&self, p: &Period) -> Period {
        self.first_period_starting_at_or_after(p.end)
            .unwrap_or(Period {
                start: p.end,
                end: DateTime::<Utc>::MAX_UTC,
            })
    }

    /// Every paid period (stub and regular, never the trial) whose start lies
    /// in `[from, to)`, in order; the test clock uses it to replay billing.
    pub fn periods_starting_in(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Iterator<Item = Period> + use<> {
        let schedule = *self;
        let first = if from <= self.paid_start() {
            Some(self.first_paid_period())
        } else {
            self.first_period_starting_at_or_after(from)
        };
        iter::successors(first, move |p| {
            schedule.first_period_starting_at_or_after(p.end)
        })
        .take_while(move |p| p.start < to)
    }

    /// First period of the calendar (trial included) whose start is `>= t`.
    fn first_period_starting_at_or_after(&self, t: DateTime<Utc>) -> Option<Period> {
        if t <= self.start {
            return Some(self.trial().unwrap_or_else(|| self.first_paid_period()));
        }
        let containing = self.period_containing(t)?.period();
        if containing.start == t {
            return Some(containing);
        }
        // Periods are contiguous, so the one containing the end starts there.
        self.period_containing(containing.end)
            .map(|kind| kind.period())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, TimeZone, Timelike};
    use proptest::prelude::*;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, s).unwrap()
    }

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        at(y, m, d, 0, 0, 0)
    }

    fn iv(unit: IntervalUnit, count: u32) -> Interval {
        Interval::new(unit, count).unwrap()
    }

    fn monthly() -> Interval {
        iv(IntervalUnit::Month, 1)
    }

    fn b(anchor: DateTime<Utc>, interval: Interval, k: i64) -> DateTime<Utc> {
        boundary(anchor, interval, k).unwrap()
    }

    fn period(start: DateTime<Utc>, end: DateTime<Utc>) -> Period {
        Period { start, end }
    }

    // ----- boundary examples -------------------------------------------------

    #[test]
    fn jan31_monthly_for_14_months_across_a_leap_year() {
        let anchor = at(2024, 1, 31, 10, 0, 0);
        let expected = [
            at(2024, 1, 31, 10, 0, 0),
            at(2024, 2, 29, 10, 0, 0),
            at(2024, 3, 31, 10, 0, 0),
            at(2024, 4, 30, 10, 0, 0),
            at(2024, 5, 31, 10, 0, 0),
            at(2024, 6, 30, 10, 0, 0),
            at(2024, 7, 31, 10, 0, 0),
            at(2024, 8, 31, 10, 0, 0),
            at(2024, 9, 30, 10, 0, 0),
            at(2024, 10, 31, 10, 0, 0),
            at(2024, 11, 30, 10, 0, 0),
            at(2024, 12, 31, 10, 0, 0),
            at(2025, 1, 31, 10, 0, 0),
            at(2025, 2, 28, 10, 0, 0),
            at(2025, 3, 31, 10, 0, 0),
        ];
        for (k, want) in expected.iter().enumerate() {
            assert_eq!(b(anchor, monthly(), k as i64), *want, "k = {k}");
        }
    }

    #[test]
    fn jan31_monthly_non_leap_year_clips_to_feb_28_then_recovers() {
        let anchor = at(2023, 1, 31, 10, 0, 0);
        assert_eq!(b(anchor, monthly(), 1), at(2023, 2, 28, 10, 0, 0));
        // Not Mar 28: computed from the anchor, not from Feb 28.
        assert_eq!(b(anchor, monthly(), 2), at(2023, 3, 31, 10, 0, 0));
    }

    #[test]
    fn feb29_yearly_clips_in_common_years_and_returns_in_leap_years() {
        let anchor = at(2024, 2, 29, 12, 0, 0);
        let yearly = iv(IntervalUnit::Year, 1);
        assert_eq!(b(anchor, yearly, 1), at(2025, 2, 28, 12, 0, 0));
        assert_eq!(b(anchor, yearly, 2), at(2026, 2, 28, 12, 0, 0));
        assert_eq!(b(anchor, yearly, 3), at(2027, 2, 28, 12, 0, 0));
        assert_eq!(b(anchor, yearly, 4), at(2028, 2, 29, 12, 0, 0));
        assert_eq!(b(anchor, yearly, -1), at(2023, 2, 28, 12, 0, 0));
        assert_eq!(b(anchor, yearly, -4), at(2020, 2, 29, 12, 0, 0));
        // 2100 is not a leap year.
        assert_eq!(b(anchor, yearly, 76), at(2100, 2, 28, 12, 0, 0));
        assert_eq!(b(anchor, yearly, 80), at(2104, 2, 29, 12, 0, 0));
    }

    #[test]
    fn mar31_quarterly() {
        let anchor = day(2025, 3, 31);
        let quarterly = iv(IntervalUnit::Month, 3);
        assert_eq!(b(anchor, quarterly, 1), day(2025, 6, 30));
        assert_eq!(b(anchor, quarterly, 2), day(2025, 9, 30));
        assert_eq!(b(anchor, quarterly, 3), day(2025, 12, 31));
        assert_eq!(b(anchor, quarterly, 4), day(2026, 3, 31));
        assert_eq!(b(anchor, quarterly, -1), day(2024, 12, 31));
        assert_eq!(b(anchor, quarterly, -4), day(2024, 3, 31));
    }

    #[test]
    fn biweekly_is_exactly_fourteen_days() {
        let anchor = at(2025, 3, 1, 9, 30, 0);
        let biweekly = iv(IntervalUnit::Week, 2);
        assert_eq!(b(anchor, biweekly, 1), at(2025, 3, 15, 9, 30, 0));
        assert_eq!(b(anchor, biweekly, 2), at(2025, 3, 29, 9, 30, 0));
        assert_eq!(b(anchor, biweekly, -1), at(2025, 2, 15, 9, 30, 0));
        assert_eq!(b(anchor, biweekly, 26), at(2026, 2, 28, 9, 30, 0));
        let p = period_at(anchor, biweekly, at(2025, 3, 20, 0, 0, 0)).unwrap();
        assert_eq!(
            p,
            (
                1,
                period(at(2025, 3, 15, 9, 30, 0), at(2025, 3, 29, 9, 30, 0))
            )
        );
        assert_eq!(p.1.duration_secs(), 14 * 86_400);
    }

    #[test]
    fn daily_boundaries_step_one_day() {
        let anchor = at(2024, 2, 28, 6, 0, 0);
        let daily = iv(IntervalUnit::Day, 1);
        assert_eq!(b(anchor, daily, 1), at(2024, 2, 29, 6, 0, 0));
        assert_eq!(b(anchor, daily, 2), at(2024, 3, 1, 6, 0, 0));
        assert_eq!(b(anchor, daily, 366), at(2025, 2, 28, 6, 0, 0));
        assert_eq!(b(anchor, daily, -1), at(2024, 2, 27, 6, 0, 0));
        assert_eq!(
            period_index_at(anchor, daily, at(2024, 3, 1, 5, 59, 59)),
            Some(1)
        );
        assert_eq!(
            period_index_at(anchor, daily, at(2024, 3, 1, 6, 0, 0)),
            Some(2)
        );
    }

    #[test]
    fn anchors_on_the_28th_to_31st_keep_their_day_where_it_exists() {
        for d in 28..=31 {
            let anchor = day(2024, 1, d);
            assert_eq!(b(anchor, monthly(), 1), day(2024, 2, d.min(29)), "day {d}");
            assert_eq!(b(anchor, monthly(), 2), day(2024, 3, d), "day {d}");
            assert_eq!(b(anchor, monthly(), 3), day(2024, 4, d.min(30)), "day {d}");
            assert_eq!(b(anchor, monthly(), 13), day(2025, 2, d.min(28)), "day {d}");
        }
    }

    #[test]
    fn time_of_day_is_preserved_to_the_nanosecond() {
        let anchor = NaiveDate::from_ymd_opt(2024, 1, 31)
            .unwrap()
            .and_time(NaiveTime::from_hms_nano_opt(23, 59, 59, 123_456_789).unwrap())
            .and_utc();
        let feb = b(anchor, monthly(), 1);
        assert_eq!((feb.month(), feb.day()), (2, 29));
        assert_eq!(feb.time(), anchor.time());
        let next_year = b(anchor, iv(IntervalUnit::Year, 1), 1);
        assert_eq!(next_year.time(), anchor.time());
        let week = b(anchor, iv(IntervalUnit::Week, 1), 1);
        assert_eq!(week.nanosecond(), 123_456_789);
    }

    #[test]
    fn negative_k_reaches_periods_before_the_anchor() {
        let anchor = day(2024, 3, 31);
        assert_eq!(b(anchor, monthly(), -1), day(2024, 2, 29));
        assert_eq!(b(anchor, monthly(), -2), day(2024, 1, 31));
        assert_eq!(b(anchor, monthly(), -13), day(2023, 2, 28));
        assert_eq!(
            period_index_at(anchor, monthly(), day(2024, 3, 1)),
            Some(-1)
        );
        assert_eq!(
            period_at(anchor, monthly(), day(2024, 3, 30)),
            Some((-1, period(day(2024, 2, 29), day(2024, 3, 31))))
        );
        assert_eq!(
            period_index_at(anchor, monthly(), day(2024, 2, 29)),
            Some(-1)
        );
        assert_eq!(
            period_index_at(anchor, monthly(), at(2024, 2, 28, 23, 59, 59)),
            Some(-2)
        );
    }

    #[test]
    fn period_index_at_exact_boundaries_and_just_before() {
        let anchor = at(2024, 1, 31, 10, 0, 0);
        for k in -30..30 {
            let bk = b(anchor, monthly(), k);
            assert_eq!(period_index_at(anchor, monthly(), bk), Some(k));
            let before = bk - TimeDelta::nanoseconds(1);
            assert_eq!(period_index_at(anchor, monthly(), before), Some(k - 1));
        }
    }

    #[test]
    fn boundary_overflow_is_none_not_a_panic() {
        let anchor = day(2024, 1, 1);
        for unit in [
            IntervalUnit::Day,
            IntervalUnit::Week,
            IntervalUnit::Month,
            IntervalUnit::Year,
        ] {
            let interval = iv(unit, unit.max_count());
            assert_eq!(boundary(anchor, interval, i64::MAX), None);
            assert_eq!(boundary(anchor, interval, i64::MIN), None);
            assert_eq!(boundary(anchor, interval, 10_000_000), None);
            assert_eq!(boundary(anchor, interval, -10_000_000), None);
        }
        let max = DateTime::<Utc>::MAX_UTC;
        let min = DateTime::<Utc>::MIN_UTC;
        // Calendars end with year 9999: later boundaries would not store as four-digit years.
        let late = day(9998, 6, 1);
        assert_eq!(
            boundary(late, iv(IntervalUnit::Year, 1), 1),
            Some(day(9999, 6, 1))
        );
        assert_eq!(boundary(late, iv(IntervalUnit::Year, 3), 1), None);
        assert_eq!(boundary(late, iv(IntervalUnit::Month, 1), 19), None);
        // Index exists, but the period's end is out of range.
        assert!(period_index_at(anchor, monthly(), max).is_some());
        assert_eq!(period_at(anchor, monthly(), max), None);
        // A boundary can land exactly on the earliest representable instant…
        assert_eq!(
            period_at(anchor, monthly(), min).map(|(_, p)| p.start),
            Some(min)
        );
        // …but when it would land before it, there is no answer.
        assert_eq!(period_index_at(day(2024, 1, 15), monthly(), min), None);
        assert!(period_index_at(max, monthly(), min).is_none());
    }

    // ----- intervals ---------------------------------------------------------

    #[test]
    fn interval_counts_are_limited_to_three_years() {
        let cases = [
            (IntervalUnit::Day, 1095),
            (IntervalUnit::Week, 156),
            (IntervalUnit::Month, 36),
            (IntervalUnit::Year, 3),
        ];
        for (unit, max) in cases {
            let ok = Interval::new(unit, max).unwrap();
            assert_eq!((ok.unit(), ok.count()), (unit, max));
            assert!(Interval::new(unit, 1).is_ok());
            assert_eq!(
                Interval::new(unit, 0),
                Err(PeriodError::IntervalCountOutOfRange {
                    unit,
                    count: 0,
                    max
                })
            );
            assert_eq!(
                Interval::new(unit, max + 1),
                Err(PeriodError::IntervalCountOutOfRange {
                    unit,
                    count: max + 1,
                    max
                })
            );
        }
        let message = Interval::new(IntervalUnit::Month, 37)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "interval_count must be between 1 and 36 for month (got 37)"
        );
    }

    #[test]
    fn interval_unit_serde_names_are_lowercase() {
        use serde::de::IntoDeserializer;
        use serde::de::value::Error;
        for (name, unit) in [
            ("day", IntervalUnit::Day),
            ("week", IntervalUnit::Week),
            ("month", IntervalUnit::Month),
            ("year", IntervalUnit::Year),
        ] {
            let parsed: Result<IntervalUnit, Error> =
                IntervalUnit::deserialize(name.into_deserializer());
            assert_eq!(parsed, Ok(unit));
            assert_eq!(unit.to_string(), name);
        }
        let capitalized: Result<IntervalUnit, Error> =
            IntervalUnit::deserialize("Month".into_deserializer());
        assert!(capitalized.is_err());
    }

    #[test]
    fn interval_deserialize_validates_the_count() {
        use serde::de::value::{Error, MapDeserializer};
        let parse = |fields: Vec<(&'static str, Value)>| -> Result<Interval, Error> {
            Interval::deserialize(MapDeserializer::new(fields.into_iter()))
        };
        assert_eq!(
            parse(vec![
                ("unit", Value::Str("month")),
                ("count", Value::Num(3))
            ]),
            Ok(iv(IntervalUnit::Month, 3))
        );
        let err = parse(vec![("unit", Value::Str("year")), ("count", Value::Num(4))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("between 1 and 3 for year"), "{err}");
        let err = parse(vec![
            ("unit", Value::Str("day")),
            ("interval_count", Value::Num(4)),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("interval_count"), "{err}");
    }

    /// A value that deserializes either as a string or as a number.
    #[derive(Clone, Copy)]
    enum Value {
        Str(&'static str),
        Num(u32),
    }

    impl<'de> serde::de::IntoDeserializer<'de, serde::de::value::Error> for Value {
        type Deserializer = ValueDeserializer;
        fn into_deserializer(self) -> ValueDeserializer {
            ValueDeserializer(self)
        }
    }

    struct ValueDeserializer(Value);

    impl<'de> Deserializer<'de> for ValueDeserializer {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            visitor: V,
        ) -> Result<V::Value, Self::Error> {
            match self.0 {
                Value::Str(s) => visitor.visit_str(s),
                Value::Num(n) => visitor.visit_u32(n),
            }
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map struct identifier ignored_any
        }

        fn deserialize_enum<V: serde::de::Visitor<'de>>(
            self,
            name: &'static str,
            variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Self::Error> {
            use serde::de::IntoDeserializer;
            match self.0 {
                Value::Str(s) => s
                    .into_deserializer()
                    .deserialize_enum(name, variants, visitor),
                Value::Num(n) => visitor.visit_u32(n),
            }
        }
    }

    // ----- schedules ---------------------------------------------------------

    #[test]
    fn no_trial_no_anchor_starts_regular_periods_at_start() {
        let s = Schedule::new(day(2025, 1, 31), monthly(), None, None).unwrap();
        assert_eq!(s.anchor(), day(2025, 1, 31));
        assert_eq!(s.paid_start(), day(2025, 1, 31));
        assert_eq!(s.trial(), None);
        assert_eq!(s.stub_fraction(), None);
        assert_eq!(
            s.first_paid_period(),
            period(day(2025, 1, 31), day(2025, 2, 28))
        );
        assert_eq!(s.period_containing(day(2025, 1, 30)), None);
        assert_eq!(
            s.period_containing(day(2025, 3, 30)),
            Some(PeriodKind::Regular {
                index: 1,
                period: period(day(2025, 2, 28), day(2025, 3, 31))
            })
        );
    }

    #[test]
    fn trial_then_first_regular_period() {
        let start = day(2025, 1, 1);
        let trial_end = day(2025, 1, 15);
        let s = Schedule::new(start, monthly(), Some(trial_end), None).unwrap();
        assert_eq!(s.anchor(), trial_end);
        assert_eq!(s.paid_start(), trial_end);
        assert_eq!(s.trial(), Some(period(start, trial_end)));
        assert_eq!(s.stub_fraction(), None);
        let first = s.first_paid_period();
        assert_eq!(first, period(trial_end, day(2025, 2, 15)));
        assert_eq!(s.period_containing(day(2024, 12, 31)), None);
        assert_eq!(
            s.period_containing(start),
            Some(PeriodKind::Trial(period(start, trial_end)))
        );
        assert_eq!(
            s.period_containing(at(2025, 1, 14, 23, 59, 59)),
            Some(PeriodKind::Trial(period(start, trial_end)))
        );
        assert_eq!(
            s.period_containing(trial_end),
            Some(PeriodKind::Regular {
                index: 0,
                period: first
            })
        );
        let trial = s.trial().unwrap();
        assert_eq!(s.next_period_after(&trial), first);
        assert_eq!(
            s.next_period_after(&first),
            period(day(2025, 2, 15), day(2025, 3, 15))
        );
    }

    #[test]
    fn billing_cycle_anchor_creates_a_prorated_stub() {
        let start = day(2025, 1, 10);
        let anchor = day(2025, 2, 1);
        let s = Schedule::new(start, monthly(), None, Some(anchor)).unwrap();
        assert_eq!(s.anchor(), anchor);
        assert_eq!(s.paid_start(), start);
        let stub = period(start, anchor);
        assert_eq!(s.first_paid_period(), stub);
        assert_eq!(s.stub_fraction(), Some((22 * 86_400, 31 * 86_400)));
        assert_eq!(
            s.period_containing(day(2025, 1, 20)),
            Some(PeriodKind::Stub(stub))
        );
        let regular0 = period(anchor, day(2025, 3, 1));
        assert_eq!(
            s.period_containing(anchor),
            Some(PeriodKind::Regular {
                index: 0,
                period: regular0
            })
        );
        assert_eq!(s.next_period_after(&stub), regular0);
        assert_eq!(
            s.next_period_after(&regular0),
            period(day(2025, 3, 1), day(2025, 4, 1))
        );
    }

    #[test]
    fn trial_followed_by_stub_up_to_the_anchor() {
        let start = day(2025, 1, 1);
        let trial_end = day(2025, 1, 15);
        let anchor = day(2025, 2, 1);
        let s = Schedule::new(start, monthly(), Some(trial_end), Some(anchor)).unwrap();
        assert_eq!(s.trial(), Some(period(start, trial_end)));
        assert_eq!(s.first_paid_period(), period(trial_end, anchor));
        assert_eq!(s.stub_fraction(), Some((17 * 86_400, 31 * 86_400)));
        assert_eq!(
            s.next_period_after(&s.trial().unwrap()),
            period(trial_end, anchor)
        );
        let kinds: Vec<_> = [day(2025, 1, 2), day(2025, 1, 20), day(2025, 2, 2)]
            .into_iter()
            .map(|t| s.period_containing(t).unwrap())
            .collect();
        assert!(matches!(kinds[0], PeriodKind::Trial(_)));
        assert!(matches!(kinds[1], PeriodKind::Stub(_)));
        assert!(matches!(kinds[2], PeriodKind::Regular { index: 0, .. }));
    }

    #[test]
    fn anchor_equal_to_paid_start_means_no_stub() {
        let start = day(2025, 1, 10);
        let s = Schedule::new(start, monthly(), None, Some(start)).unwrap();
        assert_eq!(s.stub_fraction(), None);
        assert_eq!(s.first_paid_period(), period(start, day(2025, 2, 10)));
    }

    #[test]
    fn stub_before_a_clipped_month_uses_the_clipped_previous_boundary() {
        // Anchor Mar 31 2025: the full period ending there is [Feb 28, Mar 31).
        let start = day(2025, 3, 10);
        let s = Schedule::new(start, monthly(), None, Some(day(2025, 3, 31))).unwrap();
        assert_eq!(s.stub_fraction(), Some((21 * 86_400, 31 * 86_400)));
        // Anchor Mar 28 with start Mar 1: full period [Feb 28, Mar 28) = 28 days.
        let s = Schedule::new(day(2025, 3, 1), monthly(), None, Some(day(2025, 3, 28))).unwrap();
        assert_eq!(s.stub_fraction(), Some((27 * 86_400, 28 * 86_400)));
    }

    #[test]
    fn invalid_schedules_are_rejected_with_named_errors() {
        let start = day(2025, 1, 31);
        assert_eq!(
            Schedule::new(start, monthly(), Some(start), None),
            Err(PeriodError::TrialEndNotAfterStart {
                start,
                trial_end: start
            })
        );
        assert!(matches!(
            Schedule::new(start, monthly(), Some(day(2025, 1, 1)), None),
            Err(PeriodError::TrialEndNotAfterStart { .. })
        ));
        assert_eq!(
            Schedule::new(start, monthly(), None, Some(day(2025, 1, 30))),
            Err(PeriodError::BillingCycleAnchorBeforePaidStart {
                anchor: day(2025, 1, 30),
                paid_start: start
            })
        );
        // Anchor inside the trial is before the paid start.
        assert!(matches!(
            Schedule::new(
                day(2025, 1, 1),
                monthly(),
                Some(day(2025, 1, 15)),
                Some(day(2025, 1, 10))
            ),
            Err(PeriodError::BillingCycleAnchorBeforePaidStart { .. })
        ));
        // One interval after Jan 31 is Feb 28 (clipped): not allowed.
        let err = Schedule::new(start, monthly(), None, Some(day(2025, 2, 28))).unwrap_err();
        assert_eq!(
            err,
            PeriodError::BillingCycleAnchorTooFarAfterPaidStart {
                anchor: day(2025, 2, 28),
                paid_start: start,
                limit: day(2025, 2, 28)
            }
        );
        assert!(err.to_string().contains("less than one interval"), "{err}");
        // One second less is allowed.
        let s = Schedule::new(start, monthly(), None, Some(at(2025, 2, 27, 23, 59, 59))).unwrap();
        assert_eq!(s.stub_fraction(), Some((28 * 86_400 - 1, 31 * 86_400)));
        // Out of range: the first period cannot be computed.
        assert_eq!(
            Schedule::new(DateTime::<Utc>::MAX_UTC, monthly(), None, None),
            Err(PeriodError::OutOfRange)
        );
    }

    #[test]
    fn periods_starting_in_replays_a_year_of_monthly_billing() {
        let start = day(2024, 1, 1);
        let trial_end = day(2024, 1, 8);
        let anchor = day(2024, 1, 31);
        let s = Schedule::new(start, monthly(), Some(trial_end), Some(anchor)).unwrap();
        let all: Vec<Period> = s.periods_starting_in(start, day(2025, 1, 1)).collect();
        let starts: Vec<_> = all.iter().map(|p| p.start).collect();
        assert_eq!(
            starts,
            vec![
                trial_end,
                day(2024, 1, 31),
                day(2024, 2, 29),
                day(2024, 3, 31),
                day(2024, 4, 30),
                day(2024, 5, 31),
                day(2024, 6, 30),
                day(2024, 7, 31),
                day(2024, 8, 31),
                day(2024, 9, 30),
                day(2024, 10, 31),
                day(2024, 11, 30),
                day(2024, 12, 31),
            ]
        );
        assert!(all.windows(2).all(|w| w[0].end == w[1].start));
        // Starting mid-period skips to the next period start; `to` is exclusive.
        let some: Vec<Period> = s
            .periods_starting_in(day(2024, 3, 1), day(2024, 4, 30))
            .collect();
        assert_eq!(some, vec![period(day(2024, 3, 31), day(2024, 4, 30))]);
        assert_eq!(
            s.periods_starting_in(day(2024, 5, 1), day(2024, 5, 1))
                .count(),
            0
        );
    }

    #[test]
    fn next_period_after_a_foreign_period_is_the_first_starting_at_or_after_its_end() {
        let s = Schedule::new(day(2025, 1, 1), monthly(), Some(day(2025, 1, 10)), None).unwrap();
        let before = period(day(2024, 1, 1), day(2024, 6, 1));
        assert_eq!(s.next_period_after(&before), s.trial().unwrap());
        let mid = period(day(2025, 1, 1), day(2025, 2, 1));
        assert_eq!(
            s.next_period_after(&mid),
            period(day(2025, 2, 10), day(2025, 3, 10))
        );
        let last = period(day(2025, 1, 1), DateTime::<Utc>::MAX_UTC);
        assert_eq!(s.next_period_after(&last).end, DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn period_kind_exposes_its_period() {
        let p = period(day(2025, 1, 1), day(2025, 2, 1));
        assert_eq!(PeriodKind::Trial(p).period(), p);
        assert_eq!(PeriodKind::Stub(p).period(), p);
        assert_eq!(
            PeriodKind::Regular {
                index: 3,
                period: p
            }
            .period(),
            p
        );
    }

    // ----- proration ---------------------------------------------------------

    #[test]
    fn remaining_fraction_is_per_second_and_clamped() {
        let p = period(day(2025, 2, 1), day(2025, 3, 1));
        let total = 28 * 86_400;
        assert_eq!(p.duration_secs(), total);
        assert_eq!(remaining_fraction(&p, p.start), (total, total));
        assert_eq!(
            remaining_fraction(&p, day(2025, 2, 15)),
            (14 * 86_400, total)
        );
        assert_eq!(remaining_fraction(&p, p.end), (0, total));
        assert_eq!(remaining_fraction(&p, day(2024, 1, 1)), (total, total));
        assert_eq!(remaining_fraction(&p, day(2026, 1, 1)), (0, total));
        let empty = period(day(2025, 2, 1), day(2025, 2, 1));
        assert_eq!(remaining_fraction(&empty, day(2025, 2, 1)), (0, 1));
        let inverted = period(day(2025, 3, 1), day(2025, 2, 1));
        assert_eq!(remaining_fraction(&inverted, day(2025, 2, 10)), (0, 1));
    }

    #[test]
    fn a_stub_is_prorated_as_the_tail_of_a_full_interval() {
        // Start 2027-01-01, anchor 2027-01-11: the stub is the last 10 days of the interval
        // 2026-12-11 – 2027-01-11 (31 days).
        let anchor = day(2027, 1, 11);
        let stub = period(day(2027, 1, 1), anchor);
        assert_eq!(
            unused_fraction(anchor, monthly(), &stub, day(2027, 1, 6)),
            (5 * 86_400, 31 * 86_400)
        );
        assert_eq!(
            unused_fraction(anchor, monthly(), &stub, stub.start),
            (10 * 86_400, 31 * 86_400)
        );
        // A regular period is its own interval.
        let feb = period(day(2027, 2, 11), day(2027, 3, 11));
        assert_eq!(
            unused_fraction(anchor, monthly(), &feb, day(2027, 2, 25)),
            (14 * 86_400, 28 * 86_400)
        );
        // After the period, or with a calendar the period does not follow: nothing unused /
        // the period's own length.
        assert_eq!(
            unused_fraction(anchor, monthly(), &feb, day(2027, 4, 1)).0,
            0
        );
        let odd = period(day(2027, 2, 3), day(2027, 2, 20));
        assert_eq!(
            unused_fraction(anchor, monthly(), &odd, day(2027, 2, 3)),
            (17 * 86_400, 17 * 86_400)
        );
    }

    // ----- property tests ----------------------------------------------------

    /// Independent reference for `boundary`: days and weeks by repeated
    /// addition, months by total-month index and stepping the day down until
    /// the date exists.
    fn reference_boundary(anchor: DateTime<Utc>, interval: Interval, k: i64) -> DateTime<Utc> {
        let count = i64::from(interval.count());
        match interval.unit() {
            IntervalUnit::Day | IntervalUnit::Week => {
                let step = if interval.unit() == IntervalUnit::Day {
                    TimeDelta::days(count)
                } else {
                    TimeDelta::weeks(count)
                };
                let mut t = anchor;
                for _ in 0..k.unsigned_abs() {
                    t = if k > 0 { t + step } else { t - step };
                }
                t
            }
            IntervalUnit::Month | IntervalUnit::Year => {
                let months = if interval.unit() == IntervalUnit::Month {
                    count
                } else {
                    count * 12
                };
                let total =
                    i64::from(anchor.year()) * 12 + i64::from(anchor.month() - 1) + k * months;
                let year = i32::try_from(total.div_euclid(12)).unwrap();
                let month = u32::try_from(total.rem_euclid(12)).unwrap() + 1;
                let mut d = anchor.day();
                loop {
                    if let Some(date) = NaiveDate::from_ymd_opt(year, month, d) {
                        return date.and_time(anchor.time()).and_utc();
                    }
                    d -= 1;
                }
            }
        }
    }

    fn year_strategy() -> impl Strategy<Value = i32> {
        prop_oneof![
            // Leap years (and 2100, which is not one).
            2 => (0i32..=26).prop_map(|i| 2000 + 4 * i),
            3 => 1999i32..=2105,
        ]
    }

    fn anchor_strategy() -> impl Strategy<Value = DateTime<Utc>> {
        let day = prop_oneof![3 => 28u32..=31, 1 => 1u32..=31];
        (
            year_strategy(),
            1u32..=12,
            day,
            0u32..24,
            0u32..60,
            0u32..60,
            prop_oneof![3 => Just(0u32), 1 => 0u32..1_000_000_000],
        )
            .prop_map(|(y, m, mut d, h, min, s, nanos)| {
                loop {
                    if let Some(date) = NaiveDate::from_ymd_opt(y, m, d) {
                        let time = NaiveTime::from_hms_nano_opt(h, min, s, nanos).unwrap();
                        break date.and_time(time).and_utc();
                    }
                    d -= 1;
                }
            })
    }

    fn interval_strategy() -> impl Strategy<Value = Interval> {
        prop_oneof![
            Just(IntervalUnit::Day),
            Just(IntervalUnit::Week),
            Just(IntervalUnit::Month),
            Just(IntervalUnit::Year),
        ]
        .prop_flat_map(|unit| {
            let max = unit.max_count();
            prop_oneof![3 => 1u32..=12.min(max), 1 => 1u32..=max]
                .prop_map(move |count| Interval::new(unit, count).unwrap())
        })
    }

    /// Random schedules: optional trial of up to 60 days, optional anchor
    /// anywhere in the allowed window after the paid start.
    fn schedule_strategy() -> impl Strategy<Value = Schedule> {
        (
            anchor_strategy(),
            interval_strategy(),
            prop::option::of(1i64..=60 * 86_400),
            prop::option::of(0u64..=u64::MAX),
        )
            .prop_map(|(start, interval, trial_secs, anchor_pick)| {
                let trial_end = trial_secs.map(|s| start + TimeDelta::seconds(s));
                let paid_start = trial_end.unwrap_or(start);
                let anchor = anchor_pick.map(|pick| {
                    let limit = boundary(paid_start, interval, 1).unwrap();
                    let window = limit.signed_duration_since(paid_start).num_seconds();
                    let offset = i64::try_from(pick % u64::try_from(window).unwrap()).unwrap();
                    paid_start + TimeDelta::seconds(offset)
                });
                Schedule::new(start, interval, trial_end, anchor).unwrap()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The billing run's period: it starts where it is billed, ends at the next
        /// boundary (or the anchor for a stub, whose share of its interval is a proper
        /// fraction), and billing again at its end continues the calendar.
        #[test]
        fn period_starting_at_continues_the_calendar(
            anchor in anchor_strategy(),
            interval in interval_strategy(),
            offset in -40_000_000i64..40_000_000,
        ) {
            let at = anchor + TimeDelta::seconds(offset);
            let (p, stub) = period_starting_at(anchor, interval, at).unwrap();
            prop_assert_eq!(p.start, at);
            prop_assert!(p.end > at);
            match stub {
                Some((n, d)) => {
                    prop_assert!(at < anchor);
                    prop_assert_eq!(p.end, anchor);
                    prop_assert!(0 < n && n <= d);
                }
                None => {
                    prop_assert!(at >= anchor);
                    let k = period_index_at(anchor, interval, at).unwrap();
                    prop_assert_eq!(Some(p.end), boundary(anchor, interval, k + 1));
                    let (next, _) = period_starting_at(anchor, interval, p.end).unwrap();
                    prop_assert_eq!(next.start, p.end);
                }
            }
        }

        #[test]
        fn boundary_matches_independent_reference(
            anchor in anchor_strategy(),
            interval in interval_strategy(),
            k in -200i64..=200,
        ) {
            prop_assert_eq!(
                boundary(anchor, interval, k),
                Some(reference_boundary(anchor, interval, k))
            );
        }

        #[test]
        fn boundaries_strictly_increase_and_keep_time_of_day(
            anchor in anchor_strategy(),
            interval in interval_strategy(),
            k in -500i64..=500,
        ) {
            let here = boundary(anchor, interval, k).unwrap();
            let next = boundary(anchor, interval, k + 1).unwrap();
            prop_assert!(here < next);
            prop_assert_eq!(here.time(), anchor.time());
            prop_assert_eq!(boundary(anchor, interval, 0), Some(anchor));
        }

        #[test]
        fn period_index_at_inverts_boundary(
            anchor in anchor_strategy(),
            interval in interval_strategy(),
            k in -1000i64..=1000,
        ) {
            let bk = boundary(anchor, interval, k).unwrap();
            prop_assert_eq!(period_index_at(anchor, interval, bk), Some(k));
            let just_before = bk - TimeDelta::nanoseconds(1);
            prop_assert_eq!(period_index_at(anchor, interval, just_before), Some(k - 1));
        }

        #[test]
        fn refine_index_corrects_any_nearby_estimate(
            anchor in anchor_strategy(),
            interval in interval_strategy(),
            k in -300i64..=300,
            within_nanos in 0i64..1_000_000_000,
            error in -5i64..=5,
        ) {
            let start = boundary(anchor, interval, k).unwrap();
            let end = boundary(anchor, interval, k + 1).unwrap();
            // A t inside period k, at its start or up to a second in.
            let t = (start + TimeDelta::nanoseconds(within_nanos)).min(end - TimeDelta::nanoseconds(1));
            prop_assert_eq!(refine_index(anchor, interval, t, k + error), Some(k));
            prop_assert_eq!(refine_index(anchor, interval, start, k + error), Some(k));
        }

        #[test]
        fn period_at_contains_t(
            anchor in anchor_strategy(),
            interval in interval_strategy(),
            offset_secs in -(200 * 365 * 86_400i64)..=(200 * 365 * 86_400i64),
            offset_nanos in 0i64..1_000_000_000,
        ) {
            let t = anchor + TimeDelta::seconds(offset_secs) + TimeDelta::nanoseconds(offset_nanos);
            let (k, p) = period_at(anchor, interval, t).unwrap();
            prop_assert!(p.start <= t && t < p.end, "{:?} does not contain {}", p, t);
            prop_assert_eq!(p.start, boundary(anchor, interval, k).unwrap());
            prop_assert_eq!(p.end, boundary(anchor, interval, k + 1).unwrap());
            prop_assert_eq!(k < 0, t < anchor);
        }

        #[test]
        fn periods_starting_in_yields_contiguous_paid_periods(
            schedule in schedule_strategy(),
            from_offset_days in -60i64..=800,
            span_days in 0i64..=800,
        ) {
            let from = schedule.paid_start() + TimeDelta::days(from_offset_days);
            let to = from + TimeDelta::days(span_days);
            let periods: Vec<Period> = schedule.periods_starting_in(from, to).collect();
            for w in periods.windows(2) {
                prop_assert_eq!(w[0].end, w[1].start);
            }
            for p in &periods {
                prop_assert!(from <= p.start && p.start < to);
                prop_assert!(p.start < p.end);
                prop_assert!(p.start >= schedule.paid_start());
                let kind = schedule.period_containing(p.start).unwrap();
                prop_assert_eq!(kind.period(), *p);
                prop_assert!(!matches!(kind, PeriodKind::Trial(_)));
            }
            // Nothing skipped at either end.
            match periods.first() {
                Some(first) => {
                    if first.start > schedule.paid_start() {
                        let previous = schedule
                            .period_containing(first.start - TimeDelta::nanoseconds(1))
                            .unwrap()
                            .period();
                        prop_assert!(previous.start < from);
                    }
                    let last = periods[periods.len() - 1];
                    prop_assert!(schedule.next_period_after(&last).start >= to);
                }
                None => {
                    let first_paid = schedule.first_paid_period();
                    if from <= first_paid.start {
                        prop_assert!(first_paid.start >= to);
                    } else {
                        let containing = schedule.period_containing(from).unwrap().period();
                        prop_assert!(containing.start == from && from >= to || containing.end >= to);
                    }
                }
            }
        }

        #[test]
        fn next_period_after_walks_the_calendar(
            schedule in schedule_strategy(),
            steps in 1usize..=40,
        ) {
            let mut p = schedule.trial().unwrap_or_else(|| schedule.first_paid_period());
            for _ in 0..steps {
                let next = schedule.next_period_after(&p);
                prop_assert_eq!(next.start, p.end);
                prop_assert!(next.start < next.end);
                p = next;
            }
        }

        #[test]
        fn stub_fraction_is_a_proper_fraction(schedule in schedule_strategy()) {
            match schedule.stub_fraction() {
                Some((n, d)) => {
                    prop_assert!(schedule.anchor() > schedule.paid_start());
                    prop_assert!(0 <= n && n < d, "({}, {})", n, d);
                    prop_assert_eq!(n, schedule.first_paid_period().duration_secs());
                }
                None => prop_assert_eq!(schedule.anchor(), schedule.paid_start()),
            }
        }

        #[test]
        fn remaining_fraction_stays_within_bounds(
            anchor in anchor_strategy(),
            interval in interval_strategy(),
            offset_secs in -(4 * 365 * 86_400i64)..=(4 * 365 * 86_400i64),
            at_offset_secs in -(4 * 365 * 86_400i64)..=(4 * 365 * 86_400i64),
        ) {
            let (_, p) = period_at(anchor, interval, anchor + TimeDelta::seconds(offset_secs)).unwrap();
            let now = p.start + TimeDelta::seconds(at_offset_secs);
            let (n, d) = remaining_fraction(&p, now);
            prop_assert_eq!(d, p.duration_secs());
            prop_assert!(d > 0);
            prop_assert!(0 <= n && n <= d);
            if p.start <= now && now < p.end {
                prop_assert_eq!(n, p.end.signed_duration_since(now).num_seconds());
            }
        }
    }
}
