//! `POST /v1/session` (sign in) and `DELETE /v1/session` (sign out).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, Json};
use super::views;
use crate::app::AppState;
use crate::auth::extract::{session_cookie, Auth};
use keyhaven_service::RequestContext;

/// Sign-in body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    email: String,
    password: String,
}

/// The sign-in answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub user: views::UserView,
    pub organization: views::OrganizationView,
    /// Echo it in `X-CSRF-Token` on state-changing requests.
    pub csrf_token: String,
}

/// Signs in; sets the session cookie and returns the user, organization and CSRF token.
#[utoipa::path(post, path = "/v1/session", tag = "session", request_body = SignIn,
    responses((status = 200, body = SessionView), (status = 429, body = super::error::ErrorBody), super::error::CommonErrors))]
pub async fn sign_in(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<SignIn>,
) -> Result<Response, ApiError> {
    let s = state
        .service
        .sign_in(&body.email, &body.password, ctx)
        .await?;
    let mut res = axum::Json(SessionView {
        user: views::UserView::from(&s.user),
        organization: views::OrganizationView::from(&s.organization),
        csrf_token: s.csrf_token,
    })
    .into_response();
    if let Some(c) = session_cookie(&state, &s.token, None) {
        res.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(res)
}

/// Signs out the session of the cookie.
#[utoipa::path(delete, path = "/v1/session", tag = "session",
    responses((status = 204, description = "signed out"), super::error::CommonErrors))]
pub async fn sign_out(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    let Some(token) = auth.session_token else {
        return Err(ApiError::bad_request(
            "no_session",
            "this request is authenticated by an API key, not a session",
            None,
        ));
    };
    state.service.sign_out(&auth.caller, &token).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = session_cookie(&state, "", Some(0)) {
        res.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(res)
}
