//! Tenants: the SaaS companies billing through one recur installation.

use super::ids::TenantId;
use super::payment::DunningPlan;
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Sandbox payments and a test clock that only moves when told to.
    Test,
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "test" => Some(Mode::Test),
            "live" => Some(Mode::Live),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub mode: Mode,
    /// The frozen test clock; `None` for live tenants, which follow the system clock.
    pub clock_time: Option<DateTime<Utc>>,
    pub invoice_prefix: String,
    /// The tenant's own dunning plan; `None` follows the installation's `[dunning]` config.
    pub dunning: Option<DunningPlan>,
    pub created: DateTime<Utc>,
}

impl Tenant {
    /// The tenant's "now": the test clock when there is one, else the system time given.
    pub fn now(&self, system_now: DateTime<Utc>) -> DateTime<Utc> {
        self.clock_time.unwrap_or(system_now)
    }
}

/// Every instant recur accepts from outside (a clock, an anchor, a usage timestamp) lies in
/// `[1970-01-01, 9990-01-01)`, and every boundary the calendar computes before year 10000
/// (periods are at most 3 years): four-digit years keep SQLite's text times in time order,
/// and a test clock pushed to the end of time meets a 400, not an endless billing loop.
pub fn check_instant(t: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let range = (DateTime::UNIX_EPOCH, latest_instant());
    if t < range.0 || t >= range.1 {
        return Err(format!(
            "{} is outside the range recur accepts ({} to {})",
            t.to_rfc3339(),
            range.0.to_rfc3339(),
            range.1.to_rfc3339()
        ));
    }
    Ok(truncate_to_seconds(t))
}

/// The end of the accepted range (exclusive).
pub fn latest_instant() -> DateTime<Utc> {
    DateTime::from_timestamp(253_086_768_000, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Times are kept to whole seconds: billing needs no more, and it keeps SQLite's text times
/// and PostgreSQL's `timestamptz` in step.
pub fn truncate_to_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_accepted_inside_the_range_only() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(latest_instant(), t("9990-01-01T00:00:00Z"));
        assert!(check_instant(t("1970-01-01T00:00:00Z")).is_ok());
        assert!(check_instant(t("9989-12-31T23:59:59Z")).is_ok());
        assert!(check_instant(t("9990-01-01T00:00:00Z")).is_err());
        assert!(check_instant(t("1969-12-31T23:59:59Z")).is_err());
        assert_eq!(
            check_instant(t("2027-01-01T00:00:00.9Z")),
            Ok(t("2027-01-01T00:00:00Z"))
        );
    }
}
