//! The JSON API: one module per resource, each a thin adapter from HTTP to a use case.

pub mod error;
pub mod health;
pub mod me;
pub mod session;
pub mod views;

use axum::routing::{get, post};
use axum::Router;

use crate::app::AppState;

/// Every API route.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            "/v1/session",
            post(session::sign_in).delete(session::sign_out),
        )
        .route("/v1/me", get(me::me))
        .route("/v1/me/password", post(me::change_password))
}
