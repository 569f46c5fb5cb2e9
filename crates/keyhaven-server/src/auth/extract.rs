//! Extractors that turn a request into who is calling and from where.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method};
use ipnet::IpNet;
use subtle::ConstantTimeEq;

use crate::api::error::ApiError;
use crate::app::{AppState, RequestId};
use keyhaven_service::{Caller, RequestContext};

/// Name of the console session cookie.
pub const SESSION_COOKIE: &str = "kh_session";

/// The client's IP: the peer, or the forwarding headers when the peer is a trusted proxy.
pub fn client_ip(parts: &Parts, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return Some(peer);
    }
    forwarded_ip(&parts.headers, trusted).or(Some(peer))
}

/// The client IP a trusted proxy reports: `X-Forwarded-For` walked from the right,
/// skipping trusted proxies, else `X-Real-IP`.
pub fn forwarded_ip(headers: &axum::http::HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    if let Some(xff) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        for hop in xff.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) if trusted.iter().any(|n| n.contains(&ip)) => continue,
                Ok(ip) => return Some(ip),
                Err(_) => break,
            }
        }
    }
    headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
}

/// The TCP peer's address, when the server was started with connect info.
pub struct PeerIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Builds the audit context of a request.
pub fn request_context(parts: &Parts, state: &AppState) -> RequestContext {
    RequestContext {
        ip: client_ip(parts, &state.config.trusted_proxies).map(|i| i.to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect()),
        request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
        session_digest: None,
    }
}

impl FromRequestParts<AppState> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(request_context(parts, state))
    }
}

/// The `Set-Cookie` value of the session cookie. Without `max_age` it is a
/// browser-session cookie: the server's sliding idle timeout decides when a session
/// ends, not a lifetime fixed at sign-in. An empty value with `Some(0)` signs out.
pub fn session_cookie(
    state: &crate::app::AppState,
    value: &str,
    max_age: Option<i64>,
) -> Option<axum::http::HeaderValue> {
    set_cookie(state, SESSION_COOKIE, value, "Lax", max_age)
}

/// A `Set-Cookie` value for an HttpOnly cookie on `/`, `Secure` when the public URL is
/// https; without `max_age` it lasts the browser session.
pub fn set_cookie(
    state: &crate::app::AppState,
    name: &str,
    value: &str,
    same_site: &str,
    max_age: Option<i64>,
) -> Option<axum::http::HeaderValue> {
    let secure = if state.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let max_age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    axum::http::HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite={same_site}{max_age}{secure}"
    ))
    .ok()
}

/// The value of one cookie.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    cookie_in(&parts.headers, name)
}

/// The value of cookie `name` in request headers.
pub fn cookie_in<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The bearer token of the `Authorization` header, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    bearer_from(&parts.headers)
}

/// The bearer token of an `Authorization` header, if any.
pub fn bearer_from(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// An authenticated caller: by `Authorization: Bearer <key>`, or by the session cookie
/// (with `X-CSRF-Token` on state-changing methods).
pub struct Auth {
    /// Who is calling.
    pub caller: Caller,
    /// The session token, when authenticated by cookie.
    pub session_token: Option<String>,
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = Self::authenticate(parts, state).await?;
        check_org_path(parts, auth.caller.org_id.as_str()).await?;
        Ok(auth)
    }
}

/// Another organization's resources are "not found", before anything else (even a
/// malformed body) is looked at. Fails closed: when the path parameters can't be read
/// (missing, or not UTF-8) nothing says the path is the caller's organization, so the
/// answer is 404 too.
pub async fn check_org_path(parts: &mut Parts, org_id: &str) -> Result<(), ApiError> {
    let params = axum::extract::RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|_| ApiError::not_found("resource"))?;
    if params.iter().any(|(k, v)| k == "org" && v != org_id) {
        return Err(ApiError::not_found("organization"));
    }
    Ok(())
}

impl Auth {
    /// Authenticates without the organization-path check (for routes without one).
    pub(crate) async fn authenticate(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let ctx = request_context(parts, state);
        if let Some(key) = bearer(parts) {
            let caller = state.service.authenticate_key(key, ctx).await?;
            return Ok(Auth {
                caller,
                session_token: None,
            });
        }
        let Some(token) = cookie(parts, SESSION_COOKIE).map(str::to_string) else {
            return Err(ApiError::unauthenticated(
                "sign in, or send an API key as Authorization: Bearer <key>",
            ));
        };
        let (caller, session) = state.service.authenticate_session(&token, ctx).await?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !bool::from(sent.as_bytes().ct_eq(session.csrf_token.as_bytes())) {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "permission_denied",
                    "csrf_token_invalid",
                    "the X-CSRF-Token header is missing or does not match the session",
                    Some("X-CSRF-Token"),
                ));
            }
        }
        Ok(Auth {
            caller,
            session_token: Some(token),
        })
    }
}

/// The client's IP for verification: the peer, or the forwarding headers when the peer
/// is a trusted proxy (read from the request without copying its headers).
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts, &state.config.trusted_proxies)))
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::FromRequestParts;
    use axum::http::{Request, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::check_org_path;

    /// Runs `check_org_path` for organization `org-a` inside a real router.
    struct Checked;

    impl<S: Send + Sync> FromRequestParts<S> for Checked {
        type Rejection = axum::response::Response;

        async fn from_request_parts(
            parts: &mut axum::http::request::Parts,
            _: &S,
        ) -> Result<Self, Self::Rejection> {
            check_org_path(parts, "org-a")
                .await
                .map(|()| Checked)
                .map_err(IntoResponse::into_response)
        }
    }

    async fn status(path: &str) -> StatusCode {
        let app = axum::Router::new()
            .route("/o/{org}/k/{id}", get(|_: Checked| async { "ok" }))
            .route("/plain", get(|_: Checked| async { "ok" }));
        app.oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn the_organization_check_fails_closed() {
        assert_eq!(status("/o/org-a/k/1").await, StatusCode::OK);
        assert_eq!(status("/plain").await, StatusCode::OK);
        assert_eq!(status("/o/org-b/k/1").await, StatusCode::NOT_FOUND);
        // Unreadable parameters (not UTF-8): the organization can't be confirmed.
        assert_eq!(status("/o/org-b/k/%FF").await, StatusCode::NOT_FOUND);
        assert_eq!(status("/o/%FF/k/1").await, StatusCode::NOT_FOUND);
        // No path parameters at all (an extractor used outside a matched route).
        let (mut parts, _) = Request::get("/o/org-b/k/1")
            .body(Body::empty())
            .unwrap()
            .into_parts();
        assert!(check_org_path(&mut parts, "org-a").await.is_err());
    }
}
