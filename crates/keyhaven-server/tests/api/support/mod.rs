//! Test support shared by every suite: [`app`] starts the real application (on SQLite or
//! PostgreSQL, with an injected clock) and [`client`] talks to it over HTTP as one
//! principal, with checks for the contract's conventions and audit look-ups; [`store`]
//! wraps a store to count its transactions (or make it panic).

#[macro_use]
mod app;
mod client;
mod store;

pub use app::*;
pub use client::*;
pub use store::*;
