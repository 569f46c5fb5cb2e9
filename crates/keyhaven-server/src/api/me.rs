//! `GET /v1/me` and `POST /v1/me/password`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::error::{ApiError, CommonErrors, Json};
use super::views::PrincipalView;
use crate::app::AppState;
use crate::auth::extract::Auth;

/// `GET /v1/me`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct MeView {
    pub principal: PrincipalView,
    pub organization_id: String,
    pub permissions: Vec<String>,
}

/// Who the credential belongs to and what it may do.
#[utoipa::path(get, path = "/v1/me", tag = "session",
    responses((status = 200, body = MeView), CommonErrors), security(("bearer" = [])))]
pub async fn me(auth: Auth) -> axum::Json<MeView> {
    let c = &auth.caller;
    axum::Json(MeView {
        principal: (&c.principal).into(),
        organization_id: c.org_id.to_string(),
        permissions: c.permissions.iter().cloned().collect(),
    })
}

/// Password change body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// Changes the signed-in user's password (users only; an API key has no password →
/// 403). The user's other sessions end; this one stays.
#[utoipa::path(post, path = "/v1/me/password", tag = "session", request_body = ChangePassword,
    responses((status = 204, description = "changed"), CommonErrors), security(("bearer" = [])))]
pub async fn change_password(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    if auth.caller.user_id().is_none() {
        state
            .service
            .record_denied(
                &auth.caller,
                keyhaven_core::audit::Action::UserPasswordChange,
                None,
                "a signed-in user",
            )
            .await;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_denied",
            "users_only",
            "only a signed-in user can change their password; an API key has none",
            None,
        ));
    }
    state
        .service
        .change_own_password(&auth.caller, &body.current_password, &body.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
