//! Test support shared by every suite: [`app`] starts the real application (on SQLite or
//! PostgreSQL, with an injected clock) and [`client`] talks to it over HTTP as one
//! principal, with checks for the contract's conventions and audit look-ups.

#[macro_use]
mod app;
mod client;

pub use app::*;
pub use client::*;
