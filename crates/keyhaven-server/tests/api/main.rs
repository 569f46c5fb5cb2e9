//! The HTTP suites of `keyhaven-server`, linked as one test binary (one link instead of
//! one per suite). Each suite is a module; the helpers they share are in [`support`].
//!
//! Run one suite with a filter on its module, e.g. `cargo test -p keyhaven-server --test
//! api -- verify::`.

#[macro_use]
mod support;

mod analytics;
mod api_keys;
mod api_resources;
mod audit_sinks;
mod authorization;
mod authz_hardening;
mod bodies;
mod console;
mod contract;
mod control_chars;
mod import;
mod notices;
mod oauth;
mod resilience;
mod session;
mod tenancy;
mod usage_control;
mod verify;
mod webhooks;
