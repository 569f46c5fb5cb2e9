//! Sign-in and sign-out.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use maud::html;
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::auth::{safe_next, Console};
use super::errors::PageResult;
use super::forms::FormData;
use super::layout;
use crate::app::AppState;
use crate::auth::extract::session_cookie;
use keyhaven_service::{RequestContext, ServiceError};

/// Cookie holding the sign-in form's CSRF token (double submit; no session exists yet).
const LOGIN_CSRF_COOKIE: &str = "kh_login_csrf";

fn login_form(
    token: &str,
    email: &str,
    next: &str,
    message: Option<(&str, &str)>,
    status: StatusCode,
) -> Response {
    let mut res = layout::page(
        status,
        layout::bare(
            "Sign in",
            html! {
                div class="card narrow" {
                    h1 { "Sign in" }
                    p class="muted" { "Sign in to manage API keys, service accounts and users." }
                    @if let Some((kind, text)) = message {
                        div class={ "banner banner-" (kind) } role=(if kind == "error" { "alert" } else { "status" }) { (text) }
                    }
                    form method="post" action="/login" class="stack" {
                        input type="hidden" name="csrf_token" value=(token);
                        input type="hidden" name="next" value=(next);
                        div class="field" {
                            label for="f-email" { "Email" }
                            input id="f-email" name="email" type="email" value=(email) autocomplete="username" required autofocus;
                        }
                        div class="field" {
                            label for="f-password" { "Password" }
                            input id="f-password" name="password" type="password" autocomplete="current-password" required;
                        }
                        button class="btn btn-primary btn-block" type="submit" { "Sign in" }
                    }
                }
            },
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_CSRF_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600"
    )) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

fn new_token() -> String {
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// `GET /login`. Reads its query itself rather than through `forms::Query`: an unsafe
/// `next` (control characters included) is dropped and the form still shows, since
/// nothing here reaches the database.
pub async fn page(uri: axum::http::Uri) -> Response {
    let q = FormData::parse(uri.query().unwrap_or_default().as_bytes());
    let next = safe_next(q.get("next")).unwrap_or("");
    let message = if q.has("expired") {
        Some(("info", "Your session has ended. Sign in again to continue."))
    } else if q.has("signed_out") {
        Some(("info", "You have signed out."))
    } else {
        None
    };
    login_form(&new_token(), "", next, message, StatusCode::OK)
}

/// `POST /login`.
pub async fn submit(
    State(state): State<AppState>,
    ctx: RequestContext,
    parts: axum::http::HeaderMap,
    form: FormData,
) -> PageResult {
    let next = safe_next(form.get("next")).unwrap_or("").to_string();
    let email = form.get("email").to_string();
    let sent = form.get("csrf_token");
    let expected = parts
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == LOGIN_CSRF_COOKIE)
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    if sent.is_empty() || !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
        return Ok(login_form(
            &new_token(),
            &email,
            &next,
            Some((
                "error",
                "The sign-in form had expired. Please enter your password again.",
            )),
            StatusCode::FORBIDDEN,
        ));
    }
    match state
        .service
        .sign_in(&email, form.get("password"), ctx)
        .await
    {
        Ok(s) => {
            let to = if next.is_empty() { "/api-keys" } else { &next };
            let mut res = layout::see_other(to);
            if let Some(c) = session_cookie(&state, &s.token, None) {
                res.headers_mut().append(header::SET_COOKIE, c);
            }
            Ok(res)
        }
        Err(ServiceError::Unauthenticated(_)) => Ok(login_form(
            &new_token(),
            &email,
            &next,
            Some(("error", "The email or password is incorrect.")),
            StatusCode::UNAUTHORIZED,
        )),
        Err(ServiceError::RateLimited(secs)) => {
            let minutes = secs.div_ceil(60).max(1);
            let text = format!(
                "Too many failed sign-ins for this email or from this address. Try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            );
            let mut res = login_form(
                &new_token(),
                &email,
                &next,
                Some(("error", &text)),
                StatusCode::TOO_MANY_REQUESTS,
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Ok(res)
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /logout`.
pub async fn logout(State(state): State<AppState>, c: Console, form: FormData) -> PageResult {
    c.check_csrf(&form)?;
    state.service.sign_out(&c.caller, &c.token).await?;
    let mut res = layout::see_other("/login?signed_out=1");
    if let Some(v) = session_cookie(&state, "", Some(0)) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(res)
}
