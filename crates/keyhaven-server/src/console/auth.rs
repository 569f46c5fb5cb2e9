//! The signed-in console user: the session cookie, the CSRF token of the session, and
//! the redirect to the sign-in page (and back) when the session is missing or over.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::Method;
use keyhaven_core::permission::Permission;
use subtle::ConstantTimeEq;

use super::errors::{self, csrf_failed, PageError};
use super::forms::{self, FormData};
use super::layout;
use crate::app::AppState;
use crate::auth::extract::{cookie, request_context, SESSION_COOKIE};
use keyhaven_service::{Caller, ServiceError};

/// A signed-in console user.
#[derive(Clone)]
pub struct Console {
    /// Who acts.
    pub caller: Caller,
    /// The session's CSRF token (hidden field `csrf_token` of every form).
    pub csrf: String,
    /// The session cookie's token.
    pub token: String,
    /// The clock's now.
    pub now: keyhaven_core::time::Timestamp,
}

impl Console {
    /// Refuses a form whose `csrf_token` does not match the session's.
    pub fn check_csrf(&self, form: &FormData) -> Result<(), PageError> {
        let sent = form.get("csrf_token");
        if sent.is_empty() || !bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes())) {
            return Err(csrf_failed());
        }
        Ok(())
    }

    /// Answers 403 unless the user holds `p` (the service refuses anyway; this gives the
    /// page before any form is shown).
    pub fn require(&self, p: Permission) -> Result<(), PageError> {
        if self.caller.has(p) {
            Ok(())
        } else {
            Err(errors::forbidden(p.as_str()))
        }
    }

    /// Whether the user holds `p`.
    pub fn can(&self, p: Permission) -> bool {
        self.caller.has(p)
    }
}

/// Only same-origin paths are followed after sign-in: one leading `/`, no `//` and no
/// `\` anywhere, no whitespace or control characters (browsers drop a TAB or a line
/// break, so `/<TAB>/evil.example` would become `//evil.example`, another origin).
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.contains("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_whitespace() || c.is_control())
        && !next.starts_with("/login");
    ok.then_some(next)
}

fn to_login(parts: &Parts, expired: bool) -> PageError {
    PageError(Box::new(layout::see_other(&login_url(
        &parts.method,
        &parts.uri,
        &parts.headers,
        expired,
    ))))
}

/// The sign-in address that comes back to this request's page afterwards.
pub fn login_url(
    method: &Method,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    expired: bool,
) -> String {
    let next = if method == Method::GET {
        uri.path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into())
    } else {
        // After a form post, return to the page the form was on.
        headers
            .get(axum::http::header::REFERER)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| url::Url::parse(r).ok())
            .map(|u| match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            })
            .unwrap_or_else(|| "/".into())
    };
    let next = safe_next(&next).unwrap_or("/");
    let mut q = vec![("next", next)];
    if expired {
        q.push(("expired", "1"));
    }
    format!("/login?{}", forms::query_string(&q))
}

/// Where the console's middleware finds the signed-in user of a request after the
/// handler ran (to draw a problem page inside the navigation shell).
#[derive(Clone, Default)]
pub struct ShellSlot(pub std::sync::Arc<std::sync::Mutex<Option<Console>>>);

impl FromRequestParts<AppState> for Console {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(parts, SESSION_COOKIE)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
        else {
            return Err(to_login(parts, false));
        };
        let ctx = request_context(parts, state);
        match state.service.authenticate_session(&token, ctx).await {
            Ok((caller, session)) => {
                let c = Console {
                    caller,
                    csrf: session.csrf_token,
                    token,
                    now: state.service.now(),
                };
                if let Some(slot) = parts.extensions.get::<ShellSlot>() {
                    if let Ok(mut s) = slot.0.lock() {
                        *s = Some(c.clone());
                    }
                }
                Ok(c)
            }
            Err(ServiceError::Unauthenticated(_)) => Err(to_login(parts, true)),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_same_origin_paths_are_followed() {
        for ok in [
            "/",
            "/api-keys",
            "/api-keys?q=ci&status=active",
            "/users/01H/edit",
        ] {
            assert_eq!(safe_next(ok), Some(ok), "{ok}");
        }
        for bad in [
            "",
            "api-keys",
            "https://evil.example/",
            "//evil.example/",
            "/\t/evil.example/",
            "/\n/evil.example/",
            "/\r/evil.example/",
            "/ /evil.example/",
            "/\u{a0}/evil.example/",
            "/\u{0}/x",
            "/\u{7f}/x",
            "/\\evil.example/",
            "/\\/evil.example/",
            "/a//evil.example/",
            "/login",
            "/login?next=/x",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }
}
