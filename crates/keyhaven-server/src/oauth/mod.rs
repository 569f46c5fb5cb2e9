//! The OAuth endpoints: `POST /oauth/token` ([`token`]: the form, client
//! authentication methods and RFC 6749 error answers; the use case is
//! [`keyhaven_service::oauth`]), and the signing key's public half at
//! `/.well-known/jwks.json` next to the RFC 8414 metadata ([`well_known`]). `iss` and
//! `aud` of every token are both `KEYHAVEN_PUBLIC_URL`.

pub mod token;
pub mod well_known;

use axum::routing::{get, post};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::app::AppState;

pub use keyhaven_service::oauth::TOKEN_LIFETIME_SECS;
pub use keyhaven_service::oauth::{load_or_create, signing_key, SigningKey};

/// The OAuth routes (`/oauth/token`, `/.well-known/…`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth/token", post(token::token))
        .route("/.well-known/jwks.json", get(well_known::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(well_known::metadata),
        )
}

struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "client_secret_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "OAuth client authentication: the credential's client id and secret, each form-urlencoded",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OAuth part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    modifiers(&BasicAuth),
    paths(token::token, well_known::jwks, well_known::metadata),
    tags((name = "oauth", description = "OAuth 2.0 client-credentials tokens for service-account credentials"))
)]
pub struct OAuthDoc;
