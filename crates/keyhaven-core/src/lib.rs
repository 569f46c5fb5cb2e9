//! Keyhaven's domain, free of I/O.
//!
//! Everything here is pure and synchronous: no database, no network, no clock reads
//! (the current time is always passed in) and no global randomness (an RNG is passed
//! in). That keeps every rule of the product — the key format, the permission catalog
//! and the no-escalation rule, the lifecycles of users, service accounts, keys and
//! credentials, the audit hash chain and the typed values every API field is parsed
//! into ([`value`]) — testable in microseconds, and lets the storage and HTTP layers
//! stay thin.

pub mod api_key;
pub mod audit;
pub mod audit_export;
pub mod audit_sink;
pub mod credential;
pub mod error;
pub mod id;
pub mod import;
pub mod key_format;
pub mod organization;
pub mod permission;
pub mod permission_expr;
pub mod principal;
pub mod role;
pub mod service_account;
pub mod time;
pub mod usage_control;
pub mod user;
pub mod validate;
pub mod value;
pub mod webhook_event;

pub use error::{DomainError, DomainResult};
pub use id::Id;
pub use permission::Permission;
