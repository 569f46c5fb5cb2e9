//! `/v1/organizations/{org}/shared-secret`.

use axum::extract::State;

use super::error::{ApiError, CommonErrors};
use super::params::PathParams;
use crate::app::AppState;
use crate::auth::extract::Auth;

/// Whether a shared secret exists.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SharedSecretView {
    pub exists: bool,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// Until when the previous secret still signs, during a rotation.
    #[schema(format = DateTime)]
    pub previous_valid_until: Option<String>,
}

/// The secret itself.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RevealedSecret {
    /// `whsec_…`
    pub secret: String,
}

/// A new secret.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    /// `whsec_…`
    pub secret: String,
    #[schema(format = DateTime)]
    pub previous_valid_until: Option<String>,
}

/// Whether a secret exists and since when [shared_secret.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/shared-secret", tag = "shared secret", params(("org" = String, Path)),
    responses((status = 200, body = SharedSecretView), CommonErrors), security(("bearer" = [])))]
pub async fn status(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
) -> Result<axum::Json<SharedSecretView>, ApiError> {
    let st = s.service.shared_secret_status(&auth.caller).await?;
    Ok(axum::Json(SharedSecretView {
        exists: st.exists,
        created_at: st.created_at.as_ref().map(keyhaven_core::time::rfc3339),
        previous_valid_until: st
            .previous_valid_until
            .as_ref()
            .map(keyhaven_core::time::rfc3339),
    }))
}

/// Reveals the secret (audited) [shared_secret.view].
#[utoipa::path(post, path = "/v1/organizations/{org}/shared-secret/reveal", tag = "shared secret", params(("org" = String, Path)),
    responses((status = 200, body = RevealedSecret), CommonErrors), security(("bearer" = [])))]
pub async fn reveal(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
) -> Result<axum::Json<RevealedSecret>, ApiError> {
    let secret = s.service.reveal_shared_secret(&auth.caller).await?;
    Ok(axum::Json(RevealedSecret { secret }))
}

/// Creates or rotates the secret; the previous one signs for 24 more hours [shared_secret.manage].
#[utoipa::path(post, path = "/v1/organizations/{org}/shared-secret/rotate", tag = "shared secret", params(("org" = String, Path)),
    responses((status = 200, body = RotatedSecret), CommonErrors), security(("bearer" = [])))]
pub async fn rotate(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
) -> Result<axum::Json<RotatedSecret>, ApiError> {
    let (secret, until) = s.service.rotate_shared_secret(&auth.caller).await?;
    Ok(axum::Json(RotatedSecret {
        secret,
        previous_valid_until: until.as_ref().map(keyhaven_core::time::rfc3339),
    }))
}
