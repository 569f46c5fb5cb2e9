//! `POST /v1/session` (sign in) and `DELETE /v1/session` (sign out).

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, Json};
use super::views;
use crate::app::AppState;
use crate::auth::extract::{Auth, SESSION_COOKIE};
use crate::service::sessions::IDLE_TIMEOUT_HOURS;
use crate::service::RequestContext;

/// Sign-in body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    email: String,
    password: String,
}

fn cookie(state: &AppState, value: &str, max_age: i64) -> Option<HeaderValue> {
    let secure = if state.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// Signs in; sets the session cookie and returns the user, organization and CSRF token.
pub async fn sign_in(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<SignIn>,
) -> Result<Response, ApiError> {
    let s = state
        .service
        .sign_in(&body.email, &body.password, ctx)
        .await?;
    let mut res = axum::Json(json!({
        "user": views::user(&s.user),
        "organization": views::organization(&s.organization),
        "csrf_token": s.csrf_token,
    }))
    .into_response();
    if let Some(c) = cookie(&state, &s.token, IDLE_TIMEOUT_HOURS * 3600) {
        res.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(res)
}

/// Signs out the session of the cookie.
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
    if let Some(c) = cookie(&state, "", 0) {
        res.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(res)
}
