//! `GET /v1/me` and `POST /v1/me/password`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, Json};
use crate::app::AppState;
use crate::auth::extract::Auth;

/// Who the credential belongs to and what it may do.
pub async fn me(auth: Auth) -> axum::Json<Value> {
    let c = &auth.caller;
    axum::Json(json!({
        "principal": { "type": c.principal.kind, "id": c.principal.id, "name": c.principal.name },
        "organization_id": c.org_id,
        "permissions": c.permissions,
    }))
}

/// Password change body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// Changes the signed-in user's password.
pub async fn change_password(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .change_own_password(&auth.caller, &body.current_password, &body.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
