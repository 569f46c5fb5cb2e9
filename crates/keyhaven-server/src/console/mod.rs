//! The admin console: server-rendered pages over the same use cases as the API.
//!
//! Every page is HTML built with `maud` (compiled into the binary); the stylesheet and
//! the small script are embedded with `include_str!`. Handlers call the use cases in
//! [`keyhaven_service`] and never re-implement a rule: a refusal from the service layer
//! becomes a message next to the field, a 403 page, or a redirect to the sign-in page.
//!
//! One file per thing the console shows, named after it:
//!
//! - `api_keys`: API keys (list with metrics and filters, create, details with the
//!   usage chart, edit, regenerate, revoke, delete); its keys table also serves the
//!   service account page.
//! - `service_accounts`: the API Access section's service accounts and their
//!   credentials.
//! - `audit_log`: the audit log with its filters (its own menu entry).
//! - `users`: users (create, edit, reset password, delete).
//! - `roles`: roles and their permissions.
//! - `webhooks`: webhook endpoints and their recent deliveries.
//! - `audit_sinks`: audit streaming on the audit log page (audit.manage).
//! - `shared_secret`: the API shared secret (status, reveal, rotate).
//! - `account`: the signed-in user's own profile and password.
//! - `login`: sign-in and sign-out; `auth`: the session extractor (`Console`),
//!   CSRF check and the way back after signing in.
//!
//! What the pages share:
//!
//! - `layout`: the page frame (head, navigation shell, bare frame, API Access tabs,
//!   headings) and the HTML answers `page`, `ok` and `see_other`.
//! - `forms`: submitted data (`FormData`, `Query`), `FieldErrors` and the wording of
//!   service refusals, fields, checklists, `form_page`.
//! - `errors`: `PageError` / `PageResult`, problem pages and the conversion of service
//!   errors into them.
//! - `widgets`: times, badges, chips, banners, empty states, the shown-once secret, the
//!   pager.
//!
//! This file is the route table and the middleware around it.

mod account;
mod analytics;
mod api_keys;
mod audit_log;
mod audit_sinks;
mod auth;
mod errors;
mod flash;
mod forms;
mod import;
mod layout;
mod login;
mod recent;
mod roles;
mod scopes;
mod service_accounts;
mod shared_secret;
mod sorting;
mod users;
mod webhooks;
mod widgets;

use axum::extract::{FromRequestParts, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::app::AppState;

const APP_CSS: &str = include_str!("../../static/app.css");
const APP_JS: &str = include_str!("../../static/app.js");

/// The console's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/api-keys") }))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/api-keys", get(api_keys::list))
        .route("/analytics", get(analytics::page))
        .route(
            "/api-keys/new",
            get(api_keys::new_page).post(api_keys::create),
        )
        .route("/api-keys/delete", post(api_keys::bulk_delete))
        .route("/api-keys/revoke", post(api_keys::bulk_revoke))
        .route("/api-keys/import", get(import::page).post(import::submit))
        .route("/api-keys/{id}/enabled", post(api_keys::set_enabled))
        .route("/api-keys/{id}/{what}", get(api_keys::new_secret))
        .route("/api-keys/{id}", get(api_keys::details))
        .route(
            "/api-keys/{id}/edit",
            get(api_keys::edit_page).post(api_keys::edit),
        )
        .route(
            "/api-keys/{id}/regenerate",
            get(api_keys::regenerate_page).post(api_keys::regenerate),
        )
        .route("/api-keys/{id}/credits", post(api_keys::adjust_credits))
        .route("/api-keys/{id}/revoke", post(api_keys::revoke))
        .route("/api-keys/{id}/delete", post(api_keys::delete))
        .route("/settings/api-access", get(service_accounts::index))
        .route(
            "/settings/api-access/new",
            get(service_accounts::new_page).post(service_accounts::create),
        )
        .route("/settings/api-access/{id}", get(service_accounts::detail))
        .route(
            "/settings/api-access/{id}/edit",
            get(service_accounts::edit_page).post(service_accounts::edit),
        )
        .route(
            "/settings/api-access/{id}/delete",
            post(service_accounts::delete),
        )
        .route(
            "/settings/api-access/{id}/credentials/{cid}/edit",
            get(service_accounts::edit_credential_page).post(service_accounts::edit_credential),
        )
        .route(
            "/settings/api-access/{id}/transition",
            post(service_accounts::transition),
        )
        .route(
            "/settings/api-access/{id}/credentials",
            post(service_accounts::create_credential),
        )
        .route(
            "/settings/api-access/{id}/credentials/{cid}/created",
            get(service_accounts::credential_created),
        )
        .route(
            "/settings/api-access/{id}/credentials/{cid}/delete",
            post(service_accounts::delete_credential),
        )
        .route("/users", get(users::users))
        .route(
            "/users/new",
            get(users::new_user_page).post(users::create_user),
        )
        .route(
            "/users/{id}/edit",
            get(users::edit_user_page).post(users::edit_user),
        )
        .route(
            "/users/{id}/reset-password",
            get(users::reset_page).post(users::reset_password),
        )
        .route("/users/{id}/delete", post(users::delete_user))
        .route("/roles", get(roles::roles))
        .route(
            "/roles/new",
            get(roles::new_role_page).post(roles::create_role),
        )
        .route("/roles/{name}/delete", post(roles::delete_role))
        .route(
            "/roles/{name}/edit",
            get(roles::edit_role_page).post(roles::edit_role),
        )
        .route("/settings/shared-secret", get(shared_secret::shared_secret))
        .route(
            "/settings/shared-secret/reveal",
            post(shared_secret::reveal_secret),
        )
        .route(
            "/settings/shared-secret/rotate",
            post(shared_secret::rotate_secret),
        )
        .route(
            "/settings/audit-sinks",
            axum::routing::post(audit_sinks::create_sink),
        )
        .route("/settings/audit-sinks/new", get(audit_sinks::new_sink_page))
        .route(
            "/settings/audit-sinks/{id}/delete",
            post(audit_sinks::delete_sink),
        )
        .route(
            "/settings/webhooks",
            get(webhooks::webhooks).post(webhooks::create_webhook),
        )
        .route(
            "/settings/webhooks/{id}/edit",
            get(webhooks::edit_webhook_page).post(webhooks::edit_webhook),
        )
        .route(
            "/settings/webhooks/{id}/delete",
            post(webhooks::delete_webhook),
        )
        .route(
            "/account",
            get(account::account).post(account::change_password),
        )
        .route("/account/profile", post(account::update_profile))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .layer(middleware::from_fn(shell))
        .layer(middleware::from_fn(security_headers))
}

/// Lets a problem page (403, 404, expired form…) keep the navigation when the visitor
/// is signed in, and sends a session that ended during a service call back to the
/// sign-in page with the way back.
async fn shell(mut req: Request, next: Next) -> Response {
    let slot = auth::ShellSlot::default();
    req.extensions_mut().insert(slot.clone());
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let res = next.run(req).await;
    if res.extensions().get::<errors::SignInAgain>().is_some() {
        return layout::see_other(&auth::login_url(&method, &uri, &headers, true));
    }
    let Some(p) = res.extensions().get::<errors::Problem>().cloned() else {
        return res;
    };
    let signed_in = slot.0.lock().ok().and_then(|s| s.clone());
    match signed_in {
        Some(c) => errors::problem_in_shell(&c, res.status(), &p),
        None => res,
    }
}

/// Whether `path` belongs to the JSON API rather than the console.
fn is_api_path(path: &str) -> bool {
    ["/v1", "/oauth", "/.well-known"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

async fn console_problem(
    state: &AppState,
    req: Request,
    status: StatusCode,
    title: &str,
    text: &str,
) -> Response {
    let (mut parts, _) = req.into_parts();
    let mut res = match auth::Console::from_request_parts(&mut parts, state).await {
        Ok(c) => errors::problem_in_shell(
            &c,
            status,
            &errors::Problem {
                title: title.into(),
                text: text.into(),
            },
        ),
        Err(_) => errors::problem(status, title, text).into_response(),
    };
    add_security_headers(&mut res);
    res
}

/// The router's fallback: an HTML 404 page for console paths, `api` (the JSON error)
/// for paths under /v1, /oauth and /.well-known.
pub async fn not_found<F, Fut, R>(state: AppState, req: Request, api: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = R>,
    R: IntoResponse,
{
    if is_api_path(req.uri().path()) {
        return api().await.into_response();
    }
    console_problem(
        &state,
        req,
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address. Check the link, or start again from the console.",
    )
    .await
}

/// The router's fallback for a known path with the wrong method: HTML for console
/// paths, `api` (the JSON error) for API paths.
pub async fn method_not_allowed<F, Fut, R>(state: AppState, req: Request, api: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = R>,
    R: IntoResponse,
{
    if is_api_path(req.uri().path()) {
        return api().await.into_response();
    }
    console_problem(
        &state,
        req,
        StatusCode::METHOD_NOT_ALLOWED,
        "This address does not accept that request",
        "Open the page from the console's navigation instead of sending a form or link to it directly.",
    )
    .await
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        APP_CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        APP_JS,
    )
        .into_response()
}

/// Content-Security-Policy without inline script, no framing, no referrer leaks.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    add_security_headers(&mut res);
    res
}

fn add_security_headers(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use axum::middleware;
    use axum::routing::{get, post};
    use axum::Router;
    use tower::ServiceExt;

    use super::errors::PageError;
    use keyhaven_service::ServiceError;

    async fn ended() -> Result<&'static str, PageError> {
        Err(ServiceError::Unauthenticated("the session has ended").into())
    }

    fn app() -> Router {
        Router::new()
            .route("/api-keys", get(ended))
            .route("/api-keys/new", post(ended))
            .layer(middleware::from_fn(super::shell))
    }

    #[tokio::test]
    async fn a_session_ending_in_a_service_call_returns_to_the_page() {
        let res = app()
            .oneshot(
                Request::get("/api-keys?status=active")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            res.headers()[header::LOCATION],
            "/login?next=%2Fapi-keys%3Fstatus%3Dactive&expired=1"
        );
        // After a form post: back to the page the form was on.
        let res = app()
            .oneshot(
                Request::post("/api-keys/new")
                    .header(header::REFERER, "http://localhost/api-keys/new?owner=x")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            res.headers()[header::LOCATION],
            "/login?next=%2Fapi-keys%2Fnew%3Fowner%3Dx&expired=1"
        );
    }

    #[test]
    fn api_paths_keep_json() {
        for p in ["/v1", "/v1/keys", "/oauth/token", "/.well-known/jwks.json"] {
            assert!(super::is_api_path(p), "{p}");
        }
        for p in ["/", "/v1x", "/api-keys", "/oauthx", "/static/app.css"] {
            assert!(!super::is_api_path(p), "{p}");
        }
    }
}
