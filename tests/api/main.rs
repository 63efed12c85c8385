//! API integration tests: each test runs against the real server on a random port, once on
//! SQLite and once on PostgreSQL, each on a fresh database.

#[path = "../support/einvoice_checker.rs"]
mod einvoice_checker;
#[path = "../support/fake_stripe.rs"]
mod fake_stripe;
mod support;

mod alerts;
mod api_keys;
mod bad_input;
mod balance;
mod billing;
mod catalogue;
mod credit_notes;
mod customers;
mod demo;
mod documents;
mod einvoices;
mod emails;
mod exports;
mod first_contact;
mod fuzz;
mod hostile;
mod idempotency;
mod livemode;
mod outbound_webhooks;
mod payments;
mod plan_changes;
mod poison;
mod privacy;
mod provider_accounts;
mod readme;
mod reliability;
mod reports;
mod schema;
mod stripe_payments;
mod subscriptions;
mod tenancy;
mod tls;
mod usage;
mod webhooks;

pub use support::TestApp;
