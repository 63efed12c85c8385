//! API integration tests: each test runs against the real server on a random port, once on
//! SQLite and once on PostgreSQL, each on a fresh database.

mod support;

mod bad_input;
mod billing;
mod catalogue;
mod customers;
mod idempotency;
mod payments;
mod subscriptions;
mod tenancy;
mod usage;

pub use support::TestApp;
