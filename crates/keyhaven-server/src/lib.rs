//! Keyhaven's HTTP edge: the router and the verification hot path (`app`), the JSON
//! API with its own request and response types (`api`), authentication of requests
//! (`auth`), the OAuth endpoints (`oauth`) and the admin console (`console`).
//!
//! Nothing here decides a rule or touches the database: every handler parses its input
//! into a use-case input of [`keyhaven_service`] and renders the answer. Follow a
//! behaviour by its noun through the layers: `api/<noun>.rs` (HTTP) →
//! `keyhaven_service::<noun>` (the use case: permission, rules, storage, audit) →
//! `keyhaven_core::<noun>` (the rules) → `keyhaven_store` (persistence).

pub mod api;
pub mod app;
pub mod auth;
pub mod console;
pub mod oauth;
