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

/// Times are kept to whole seconds: billing needs no more, and it keeps SQLite's text times
/// and PostgreSQL's `timestamptz` in step.
pub fn truncate_to_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}
