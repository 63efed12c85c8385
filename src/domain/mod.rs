//! The pure domain: no I/O, no async, no sqlx. Everything else depends on it, never the
//! reverse.

pub mod api_key;
pub mod balance;
pub mod card;
pub mod contact;
pub mod credit_note;
pub mod currency;
pub mod customer;
pub mod dunning;
pub mod email;
pub mod en16931;
pub mod event;
pub mod ids;
pub mod invoice;
pub mod invoice_math;
pub mod journal;
pub mod payment;
pub mod period;
pub mod price;
pub mod pricing;
pub mod privacy;
pub mod report;
pub mod seller;
pub mod subscription;
pub mod tax_rate;
pub mod tenant;
pub mod usage;
pub mod webhook;
