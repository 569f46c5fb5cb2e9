//! The pages the console shows instead of what was asked for: [`PageError`] and
//! [`PageResult`], problem pages (403, 404, an expired form…) with or without the
//! navigation, and the mapping of service errors onto them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyhaven_core::DomainError;
use maud::{html, Markup};

use super::auth::Console;
use super::layout::{bare, layout, page, see_other};
use keyhaven_service::ServiceError;

/// A page the console shows instead of what was asked for.
#[derive(Debug)]
pub struct PageError(pub Box<Response>);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// What handlers return.
pub type PageResult = Result<Response, PageError>;

/// What a problem page says; kept on the response so that the console's middleware can
/// show the same page inside the navigation shell when the visitor is signed in.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The page's heading.
    pub title: String,
    /// The explanation.
    pub text: String,
}

fn problem_body(title: &str, text: &str) -> Markup {
    html! {
        div class="card narrow problem" {
            h1 { (title) }
            p { (text) }
            p { a class="btn" href="/api-keys" { "Go to the console" } }
        }
    }
}

/// A page explaining a problem, with a way back.
pub fn problem(status: StatusCode, title: &str, text: &str) -> PageError {
    let mut res = page(status, bare(title, problem_body(title, text)));
    res.extensions_mut().insert(Problem {
        title: title.to_string(),
        text: text.to_string(),
    });
    PageError(Box::new(res))
}

/// The problem page inside the shell, for a signed-in visitor.
pub fn problem_in_shell(c: &Console, status: StatusCode, p: &Problem) -> Response {
    page(
        status,
        layout(c, &p.title, "", problem_body(&p.title, &p.text)),
    )
}

/// Marks the redirect to the sign-in page that a service refusal produced, so the
/// console's middleware can add where to come back to.
#[derive(Debug, Clone, Copy)]
pub struct SignInAgain;

/// 403 page.
pub fn forbidden(permission: &str) -> PageError {
    problem(
        StatusCode::FORBIDDEN,
        "You don't have access to this page",
        &format!(
            "Your roles do not include the {permission} permission. Ask an administrator if you need it."
        ),
    )
}

/// The page for a stale or missing CSRF token.
pub fn csrf_failed() -> PageError {
    problem(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The security token of the form is missing or out of date (for example after signing in again in another tab). Go back, reload the page and submit it again.",
    )
}

impl From<ServiceError> for PageError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Domain(DomainError::PermissionDenied { permission }) => {
                forbidden(&permission)
            }
            ServiceError::Domain(DomainError::Invalid { message, .. }) => {
                problem(StatusCode::BAD_REQUEST, "That did not work", &message)
            }
            ServiceError::Domain(DomainError::Conflict { message, .. }) => {
                problem(StatusCode::CONFLICT, "That did not work", &message)
            }
            ServiceError::NotFound(what) => problem(
                StatusCode::NOT_FOUND,
                "Not found",
                &format!("There is no such {what} in your organization."),
            ),
            ServiceError::Unauthenticated(_) => {
                let mut res = see_other("/login?expired=1");
                res.extensions_mut().insert(SignInAgain);
                PageError(Box::new(res))
            }
            ServiceError::RateLimited(_) => problem(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "Wait a few minutes and try again.",
            ),
            ServiceError::Busy(secs) => {
                let mut res = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Busy",
                    "Too many sign-ins are being checked right now. Try again in a moment.",
                );
                if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                    res.0
                        .headers_mut()
                        .insert(axum::http::header::RETRY_AFTER, v);
                }
                res
            }
            ServiceError::Store(keyhaven_store::StoreError::Unavailable(why)) => {
                tracing::warn!(reason = %why, "console: database unavailable");
                let mut res = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Database unavailable",
                    "Keyhaven cannot reach its database right now. Try again in a moment.",
                );
                res.0.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("2"),
                );
                res
            }
            ServiceError::Store(e) => {
                tracing::error!(error = %e, "console: storage failed");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Keyhaven could not complete this request. Try again; if it keeps failing, an operator can find the details in the server log.",
                )
            }
            ServiceError::Internal(m) => {
                tracing::error!(error = %m, "console: internal error");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Keyhaven could not complete this request. Try again; if it keeps failing, an operator can find the details in the server log.",
                )
            }
        }
    }
}

/// Parses an id from a path, or answers 404.
pub fn path_id(raw: &str, what: &'static str) -> Result<keyhaven_core::id::Id, PageError> {
    keyhaven_core::id::Id::parse(raw, "id").map_err(|_| ServiceError::NotFound(what).into())
}
