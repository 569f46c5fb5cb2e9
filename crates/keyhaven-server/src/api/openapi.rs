//! The OpenAPI 3.1 document, generated from the handlers' annotations and served at
//! `/v1/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::*;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("API key")
                    .build(),
            ),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Keyhaven", description = "Issues, verifies and governs API keys, service accounts and their credentials."),
    modifiers(&Security),
    components(schemas(api_keys::ImportKeyItem, api_keys::ImportHashBody, api_keys::ImportLookupBody)),
    paths(
        health::healthz, health::readyz, health::prometheus,
        session::sign_in, session::sign_out, me::me, me::change_password,
        roles::catalog,
        organizations::get, organizations::update,
        users::list, users::create, users::get, users::update, users::delete, users::reset_password,
        roles::list, roles::create, roles::get, roles::update, roles::delete,
        service_accounts::list, service_accounts::create, service_accounts::get, service_accounts::update,
        service_accounts::delete, service_accounts::suspend, service_accounts::reactivate, service_accounts::archive,
        service_accounts::list_credentials, service_accounts::create_credential, service_accounts::get_credential,
        service_accounts::update_credential, service_accounts::delete_credential,
        api_keys::list, api_keys::create, api_keys::get, api_keys::update, api_keys::delete,
        api_keys::regenerate, api_keys::revoke, api_keys::credits, api_keys::batch_delete, api_keys::import, api_keys::whoami, api_keys::usage, recent::verifications, api_keys::metrics,
        shared_secret::status, shared_secret::reveal, shared_secret::rotate,
        audit_events::list,
        audit_sinks::list, audit_sinks::create, audit_sinks::get, audit_sinks::update, audit_sinks::delete,
        analytics::verifications, analytics::top_keys,
        webhooks::list, webhooks::create, webhooks::get, webhooks::update, webhooks::delete, webhooks::deliveries,
        verify::verify, verify::forward_auth, ratelimit::check,
    )
)]
pub struct ApiDoc;

/// `GET /v1/openapi.json`.
pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::oauth::OAuthDoc::openapi());
    super::schema::constrain_parameters(&mut doc);
    super::schema::close_request_bodies(&mut doc);
    axum::Json(doc)
}
