//! The Keyhaven server: configuration, use cases, HTTP API, authentication.
//!
//! Follow a behaviour by its noun through the layers: `api/<noun>.rs` (HTTP) →
//! `service/<noun>.rs` (the use case: permission, rules, storage, audit) →
//! `keyhaven_core::<noun>` (the rules) → `keyhaven_store` (persistence).

pub mod api;
pub mod app;
pub mod auth;
pub mod console;
pub mod oauth;
