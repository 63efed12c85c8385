//! Billing: what is due, building invoices, proration, usage, numbering. `cycle` is the pure
//! rule for one boundary; `run` claims due subscriptions in batches and writes the results.

pub mod cycle;
pub mod run;
