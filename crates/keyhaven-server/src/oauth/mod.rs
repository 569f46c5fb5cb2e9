//! OAuth 2.0 client-credentials tokens for service-account credentials.

use axum::Router;
use utoipa::OpenApi;

use crate::app::AppState;

/// The OAuth routes (`/oauth/token`, `/.well-known/…`).
pub fn routes() -> Router<AppState> {
    Router::new()
}

/// The OAuth part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi()]
pub struct OAuthDoc;

/// Background work of the OAuth module (stops when `stopped` turns true).
pub fn spawn_background(
    _state: &AppState,
    _stopped: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    Vec::new()
}
