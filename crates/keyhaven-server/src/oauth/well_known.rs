//! `GET /.well-known/jwks.json` (the public signing key) and
//! `GET /.well-known/oauth-authorization-server` (RFC 8414 metadata).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::error::ApiError;
use crate::app::AppState;

/// How long clients may cache the JWKS and the metadata.
const CACHE: &str = "public, max-age=300";

/// A public key as a JSON Web Key (RFC 7517), as `/.well-known/jwks.json` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Jwk {
    /// `RSA`.
    pub kty: &'static str,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: &'static str,
    /// `RS256`.
    pub alg: &'static str,
    /// The key id, as in the JWT header.
    pub kid: String,
    /// Modulus, base64url.
    pub n: String,
    /// Public exponent, base64url.
    pub e: String,
}

impl From<&keyhaven_service::oauth::SigningKey> for Jwk {
    fn from(k: &keyhaven_service::oauth::SigningKey) -> Self {
        Jwk {
            kty: "RSA",
            use_: "sig",
            alg: "RS256",
            kid: k.kid.clone(),
            n: k.n.clone(),
            e: k.e.clone(),
        }
    }
}

/// A JSON Web Key Set (RFC 7517 §5).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Jwks {
    /// The keys that sign access tokens (one today).
    pub keys: Vec<Jwk>,
}

/// Authorization server metadata (RFC 8414 §2).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuthorizationServerMetadata {
    /// Keyhaven's public URL; the `iss` of every token.
    pub issuer: String,
    /// `<issuer>/oauth/token`.
    pub token_endpoint: String,
    /// `<issuer>/.well-known/jwks.json`.
    pub jwks_uri: String,
    /// `["client_credentials"]`.
    pub grant_types_supported: Vec<&'static str>,
    /// `["client_secret_basic", "client_secret_post"]`.
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// Required by RFC 8414, and empty: Keyhaven has no authorization endpoint, so it
    /// supports no `response_type` (listing `token` would announce the implicit grant).
    pub response_types_supported: Vec<&'static str>,
}

fn cacheable(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE));
    res
}

/// `GET /.well-known/jwks.json`.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "oauth",
    responses((status = 200, description = "the public key that signs access tokens", body = Jwks),
        (status = 500, body = crate::api::error::ErrorBody)))]
pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let key = keyhaven_service::oauth::signing_key(&state.service)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "no OAuth signing key");
            ApiError::internal()
        })?;
    Ok(cacheable(
        axum::Json(Jwks {
            keys: vec![Jwk::from(key.as_ref())],
        })
        .into_response(),
    ))
}

/// `GET /.well-known/oauth-authorization-server`.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth",
    responses((status = 200, description = "RFC 8414 authorization server metadata", body = AuthorizationServerMetadata)))]
pub async fn metadata(State(state): State<AppState>) -> Response {
    let issuer = state.config.public_url.clone();
    cacheable(
        axum::Json(AuthorizationServerMetadata {
            token_endpoint: format!("{issuer}/oauth/token"),
            jwks_uri: format!("{issuer}/.well-known/jwks.json"),
            issuer,
            grant_types_supported: vec!["client_credentials"],
            token_endpoint_auth_methods_supported: vec![
                "client_secret_basic",
                "client_secret_post",
            ],
            response_types_supported: Vec::new(),
        })
        .into_response(),
    )
}
