//! The admin console: server-rendered pages over the same use cases as the API.

use axum::Router;

use crate::app::AppState;

/// The console's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
