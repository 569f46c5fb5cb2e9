//! The JSON API: one module per resource, each a thin adapter from HTTP to a use case.

pub mod analytics;
pub mod api_keys;
pub mod audit_events;
pub mod audit_sinks;
pub mod error;
pub mod health;
pub mod me;
pub mod openapi;
pub mod organizations;
pub mod params;
pub mod patch;
pub mod ratelimit;
pub mod recent;
pub mod roles;
pub mod schema;
pub mod service_accounts;
pub mod session;
pub mod shared_secret;
pub mod users;
pub mod verify;
pub mod views;
pub mod webhooks;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::app::AppState;

/// Every API route.
pub fn routes() -> Router<AppState> {
    let org = Router::new()
        .route("/users", get(users::list).post(users::create))
        .route(
            "/users/{id}",
            get(users::get).patch(users::update).delete(users::delete),
        )
        .route("/users/{id}/reset-password", post(users::reset_password))
        .route("/roles", get(roles::list).post(roles::create))
        .route(
            "/roles/{name}",
            get(roles::get).patch(roles::update).delete(roles::delete),
        )
        .route(
            "/service-accounts",
            get(service_accounts::list).post(service_accounts::create),
        )
        .route(
            "/service-accounts/{id}",
            get(service_accounts::get)
                .patch(service_accounts::update)
                .delete(service_accounts::delete),
        )
        .route(
            "/service-accounts/{id}/suspend",
            post(service_accounts::suspend),
        )
        .route(
            "/service-accounts/{id}/reactivate",
            post(service_accounts::reactivate),
        )
        .route(
            "/service-accounts/{id}/archive",
            post(service_accounts::archive),
        )
        .route(
            "/service-accounts/{id}/credentials",
            get(service_accounts::list_credentials).post(service_accounts::create_credential),
        )
        .route(
            "/service-accounts/{id}/credentials/{cred}",
            get(service_accounts::get_credential)
                .patch(service_accounts::update_credential)
                .delete(service_accounts::delete_credential),
        )
        .route("/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/api-keys/batch-delete", post(api_keys::batch_delete))
        .route(
            "/api-keys/import",
            post(api_keys::import).layer(DefaultBodyLimit::max(api_keys::MAX_IMPORT_BODY)),
        )
        .route(
            "/api-keys/{id}",
            get(api_keys::get)
                .patch(api_keys::update)
                .delete(api_keys::delete),
        )
        .route("/api-keys/{id}/regenerate", post(api_keys::regenerate))
        .route("/api-keys/{id}/revoke", post(api_keys::revoke))
        .route("/api-keys/{id}/credits", post(api_keys::credits))
        .route("/api-keys/{id}/usage", get(api_keys::usage))
        .route("/api-keys/{id}/verifications", get(recent::verifications))
        .route("/metrics", get(api_keys::metrics))
        .route("/analytics/verifications", get(analytics::verifications))
        .route("/analytics/top-keys", get(analytics::top_keys))
        .route("/shared-secret", get(shared_secret::status))
        .route("/shared-secret/reveal", post(shared_secret::reveal))
        .route("/shared-secret/rotate", post(shared_secret::rotate))
        .route("/audit-events", get(audit_events::list))
        .route(
            "/audit-sinks",
            get(audit_sinks::list).post(audit_sinks::create),
        )
        .route(
            "/audit-sinks/{id}",
            get(audit_sinks::get)
                .patch(audit_sinks::update)
                .delete(audit_sinks::delete),
        )
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/webhooks/{id}/deliveries", get(webhooks::deliveries));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::prometheus))
        .route("/v1/openapi.json", get(openapi::document))
        .route(
            "/v1/session",
            post(session::sign_in).delete(session::sign_out),
        )
        .route("/v1/me", get(me::me))
        .route("/v1/me/password", post(me::change_password))
        .route("/v1/permissions", get(roles::catalog))
        .route(
            "/v1/keys/verify",
            post(verify::verify).layer(DefaultBodyLimit::max(verify::MAX_VERIFY_BODY)),
        )
        .route("/v1/auth", get(verify::forward_auth))
        .route("/v1/keys/whoami", post(api_keys::whoami))
        .route(
            "/v1/ratelimit",
            post(ratelimit::check).layer(DefaultBodyLimit::max(ratelimit::MAX_BODY)),
        )
        .route(
            "/v1/organizations/{org}",
            get(organizations::get).patch(organizations::update),
        )
        .nest("/v1/organizations/{org}", org)
        .merge(crate::oauth::routes())
}
