//! recur: subscription billing and invoicing. See DESIGN.md for the data flow: `domain` is pure;
//! `store` holds all SQL; `services` are what the API, CLI and scheduler call.

pub mod api;
pub mod bench;
pub mod billing;
pub mod cli;
pub mod client;
pub mod config;
pub mod crash;
pub mod demo;
pub mod documents;
pub mod domain;
pub mod einvoice;
pub mod exports;
pub mod metrics;
pub mod payments;
pub mod reports;
pub mod scheduler;
pub mod services;
pub mod store;
pub mod telemetry;
pub mod vault;
