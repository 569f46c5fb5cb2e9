//! `POST /oauth/token`: the client-credentials grant (RFC 6749 §4.4) for the client
//! credentials of service accounts, answering RS256 JWT access tokens (RFC 9068).
//!
//! The request is checked in this order, and every refusal is an RFC 6749 §5.2 error
//! object (`{"error", "error_description"}`), never a 500 for anything the client sent:
//! 1. media type and body: `application/x-www-form-urlencoded`, UTF-8, at most
//!    [`MAX_TOKEN_BODY`] bytes, no parameter twice (§3.2) → `invalid_request`;
//!    parameters without a value count as absent (§3.1), unknown ones are ignored;
//! 2. one client authentication method: HTTP Basic (§2.3.1: id and secret each
//!    form-urlencoded, then base64) or `client_id` + `client_secret` in the body, not
//!    both (a `client_id` in the body equal to the Basic one is tolerated) →
//!    `invalid_request`; none at all or an unreadable `Authorization` → `invalid_client`;
//! 3. `grant_type`: missing → `invalid_request`, other than `client_credentials` →
//!    `unsupported_grant_type`;
//! 4. `scope` syntax (§3.3) → `invalid_scope`;
//! 5. the client: unknown id, wrong secret (digests compared in constant time), revoked
//!    or expired credential, suspended or archived service account → `invalid_client`
//!    (401, always with `WWW-Authenticate: Basic realm="keyhaven"`, as HTTP requires on
//!    a 401). The description says why only once the secret was right;
//! 6. `scope` must be a subset of the service account's permissions (the union of its
//!    roles' permissions) → `invalid_scope`; without `scope`, the token carries all of them.
//!
//! Refusals for a known client (steps 5 and 6) are audited as `oauth.token` with outcome
//! `denied` (actor: the service account; target: the credential; the reason, never the
//! secret). Successful issuance is not audited per request — a busy integration would
//! drown the log; the credential's `last_used_at` records use instead.

use std::collections::BTreeSet;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use keyhaven_service::oauth::{IssuedToken, TokenRefusal, TokenRequest};
use serde::Serialize;

use crate::app::AppState;
use crate::auth::extract::request_context;
/// Largest token request body.
pub const MAX_TOKEN_BODY: usize = 16 * 1024;

/// The challenge sent with every 401.
pub const BASIC_CHALLENGE: &str = r#"Basic realm="keyhaven""#;

/// An RFC 6749 §5.2 error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// 400, 401 or 500.
    pub status: StatusCode,
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type`, `invalid_scope` or
    /// `server_error`.
    pub error: &'static str,
    /// A sentence for the developer of the client.
    pub description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            description,
        )
    }

    fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the token could not be issued because of a problem on our side; try again later",
        )
    }
}

/// The error object of the token endpoint (RFC 6749 §5.2).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type`, `invalid_scope` or
    /// `server_error`.
    pub error: String,
    /// Why, for the developer of the client.
    pub error_description: String,
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = OAuthErrorBody {
            error: self.error.to_string(),
            error_description: self.description,
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        no_store(res.headers_mut());
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BASIC_CHALLENGE),
            );
        }
        res
    }
}

/// The form parameters of a token request, as documented (the handler parses the body
/// itself, to answer RFC errors).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(as = TokenRequest)]
pub struct TokenForm {
    /// `client_credentials`.
    #[schema(example = "client_credentials")]
    pub grant_type: String,
    /// The credential's client id, unless sent with HTTP Basic.
    pub client_id: Option<String>,
    /// The credential's client secret, unless sent with HTTP Basic.
    pub client_secret: Option<String>,
    /// Space-separated permissions the token should carry: a subset of the service
    /// account's permissions (default: all of them).
    pub scope: Option<String>,
}

/// A successful token answer (RFC 6749 §5.1).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// The JWT (RFC 9068).
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires: 900.
    pub expires_in: i64,
    /// The permissions it carries, space-separated.
    pub scope: String,
}

/// The parameters the endpoint knows; a parameter given without a value is absent.
#[derive(Debug, Default)]
struct TokenParams {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

/// `POST /oauth/token`.
#[utoipa::path(post, path = "/oauth/token", tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded",
        description = "RFC 6749 §4.4. Authenticate the client with HTTP Basic (client id and secret, each form-urlencoded) or with client_id and client_secret in the body — not both."),
    security((), ("client_secret_basic" = [])),
    responses(
        (status = 200, description = "an access token (Cache-Control: no-store)", body = TokenResponse),
        (status = 400, description = "invalid_request, unsupported_grant_type or invalid_scope", body = OAuthErrorBody),
        (status = 401, description = "invalid_client (with WWW-Authenticate: Basic realm=\"keyhaven\")", body = OAuthErrorBody),
        (status = 500, description = "server_error", body = OAuthErrorBody),
    ))]
pub async fn token(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    match issue(&state, &parts, body).await {
        Ok(res) => {
            let mut res = axum::Json(res).into_response();
            no_store(res.headers_mut());
            res
        }
        Err(e) => e.into_response(),
    }
}

async fn issue(
    state: &AppState,
    parts: &Parts,
    body: axum::body::Body,
) -> Result<TokenResponse, OAuthError> {
    if !is_form(&parts.headers) {
        return Err(OAuthError::invalid_request(
            "send the parameters form-encoded, with Content-Type: application/x-www-form-urlencoded",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_TOKEN_BODY)
        .await
        .map_err(|_| {
            OAuthError::invalid_request(format!(
                "the request body could not be read or is larger than {MAX_TOKEN_BODY} bytes"
            ))
        })?;
    let params = parse_form(&bytes)?;
    let basic = basic_credentials(&parts.headers)?;
    let (client_id, client_secret) = client_credentials(basic, &params)?;
    match params.grant_type.as_deref() {
        None => return Err(OAuthError::invalid_request("grant_type is required")),
        Some("client_credentials") => {}
        Some(_) => {
            return Err(OAuthError::unsupported_grant_type(
                "the only grant type is client_credentials",
            ))
        }
    }
    let scope = params.scope.as_deref().map(parse_scope).transpose()?;
    let ctx = request_context(parts, state);
    let issued = state
        .service
        .issue_access_token(
            TokenRequest {
                client_id: &client_id,
                client_secret: &client_secret,
                scope,
                issuer: &state.config.public_url,
            },
            &ctx,
        )
        .await?;
    Ok(TokenResponse::from(issued))
}

impl From<IssuedToken> for TokenResponse {
    fn from(t: IssuedToken) -> Self {
        TokenResponse {
            access_token: t.access_token,
            token_type: t.token_type,
            expires_in: t.expires_in,
            scope: t.scope,
        }
    }
}

impl From<TokenRefusal> for OAuthError {
    fn from(r: TokenRefusal) -> Self {
        match r {
            TokenRefusal::InvalidClient(d) => OAuthError::invalid_client(d),
            TokenRefusal::InvalidScope(d) => OAuthError::invalid_scope(d),
            TokenRefusal::ServerError => OAuthError::server_error(),
        }
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Parses the form body: UTF-8, each known parameter at most once (RFC 6749 §3.2), a
/// parameter without a value counts as absent (§3.1), unknown parameters are ignored.
fn parse_form(bytes: &[u8]) -> Result<TokenParams, OAuthError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(OAuthError::invalid_request("the body is not UTF-8 text"));
    }
    let mut p = TokenParams::default();
    let mut seen: BTreeSet<&'static str> = BTreeSet::new();
    for (name, value) in form_urlencoded::parse(bytes) {
        let (key, slot) = match name.as_ref() {
            "grant_type" => ("grant_type", &mut p.grant_type),
            "client_id" => ("client_id", &mut p.client_id),
            "client_secret" => ("client_secret", &mut p.client_secret),
            "scope" => ("scope", &mut p.scope),
            _ => continue,
        };
        if !seen.insert(key) {
            return Err(OAuthError::invalid_request(format!(
                "{key} is given more than once"
            )));
        }
        // form_urlencoded replaces bytes that do not decode to UTF-8 with U+FFFD.
        if value.contains('\u{FFFD}') {
            return Err(OAuthError::invalid_request(format!(
                "{key} is not percent-encoded UTF-8"
            )));
        }
        if !value.is_empty() {
            *slot = Some(value.into_owned());
        }
    }
    Ok(p)
}

/// The client id and secret of an `Authorization: Basic` header (RFC 6749 §2.3.1), if
/// there is one.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OAuthError::invalid_request(
            "send at most one Authorization header",
        ));
    }
    let bad = || {
        OAuthError::invalid_client(
            "the Authorization header must be HTTP Basic: base64 of the form-urlencoded client id, a colon, and the form-urlencoded client secret",
        )
    };
    let value = value.to_str().map_err(|_| bad())?.trim();
    let (scheme, encoded) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let encoded = encoded.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let id = form_decode(id).ok_or_else(bad)?;
    let secret = form_decode(secret).ok_or_else(bad)?;
    if id.is_empty() || secret.is_empty() {
        return Err(bad());
    }
    Ok(Some((id, secret)))
}

/// Decodes one `application/x-www-form-urlencoded` value: `+` is a space, `%XX` a byte.
/// `None` when a `%` is not followed by two hex digits or the result is not UTF-8.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The client id and secret, from exactly one authentication method.
fn client_credentials(
    basic: Option<(String, String)>,
    params: &TokenParams,
) -> Result<(String, String), OAuthError> {
    match (basic, &params.client_id, &params.client_secret) {
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request(
            "authenticate the client one way: HTTP Basic or client_id and client_secret in the body, not both",
        )),
        (Some((id, _)), Some(body_id), None) if *body_id != id => Err(OAuthError::invalid_request(
            "client_id in the body differs from the client id in the Authorization header",
        )),
        (Some((id, secret)), _, None) => Ok((id, secret)),
        (None, Some(id), Some(secret)) => Ok((id.clone(), secret.clone())),
        (None, Some(_), None) => Err(OAuthError::invalid_request(
            "client_secret is required with client_id (or send both with HTTP Basic)",
        )),
        (None, None, Some(_)) => Err(OAuthError::invalid_request(
            "client_id is required with client_secret",
        )),
        (None, None, None) => Err(OAuthError::invalid_client(
            "no client authentication: send HTTP Basic credentials, or client_id and client_secret in the body",
        )),
    }
}

/// Splits `scope` (RFC 6749 §3.3) into its tokens.
fn parse_scope(scope: &str) -> Result<BTreeSet<String>, OAuthError> {
    let mut out = BTreeSet::new();
    for token in scope.split(' ').filter(|t| !t.is_empty()) {
        let valid = token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
            let shown: String = token.chars().take(64).collect();
            return Err(OAuthError::invalid_scope(format!(
                "{shown:?} is not a valid scope token"
            )));
        }
        out.insert(token.to_string());
    }
    if out.is_empty() {
        return Err(OAuthError::invalid_scope(
            "scope has no scope token; leave it out to get every permission",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(v: &str) -> Result<Option<(String, String)>, OAuthError> {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        basic_credentials(&h)
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        assert_eq!(
            basic(&format!("Basic {}", b64("a%3Ab:c+d%25"))).unwrap(),
            Some(("a:b".into(), "c d%".into()))
        );
        assert_eq!(
            basic(&format!("basic {}", b64("id:s:e"))).unwrap(),
            Some(("id".into(), "s:e".into()))
        );
        for bad in [
            "Bearer abc".to_string(),
            "Basic".to_string(),
            "Basic !!!".to_string(),
            format!("Basic {}", b64("nocolon")),
            format!("Basic {}", b64(":secret")),
            format!("Basic {}", b64("id:")),
            format!("Basic {}", b64("id:%zz")),
            format!("Basic {}", b64("id:%e2%28")),
            format!("Basic {}", b64("id:%+1")),
            format!("Basic {}", b64("id:%é")),
        ] {
            assert_eq!(basic(&bad).unwrap_err().error, "invalid_client", "{bad}");
        }
    }

    #[test]
    fn form_rules() {
        let p = parse_form(b"grant_type=client_credentials&scope=&x=1&x=2").unwrap();
        assert_eq!(p.grant_type.as_deref(), Some("client_credentials"));
        assert_eq!(p.scope, None);
        assert_eq!(
            parse_form(b"scope=a&scope=b").unwrap_err().error,
            "invalid_request"
        );
        assert_eq!(
            parse_form(b"scope=&scope=b").unwrap_err().error,
            "invalid_request"
        );
        assert_eq!(
            parse_form(b"scope=%ff").unwrap_err().error,
            "invalid_request"
        );
        assert_eq!(parse_form(b"\xff").unwrap_err().error, "invalid_request");
    }

    #[test]
    fn scope_tokens() {
        assert_eq!(
            parse_scope("read  billing:read read").unwrap(),
            BTreeSet::from(["read".to_string(), "billing:read".to_string()])
        );
        for bad in ["a\"b", "a\\b", "é", "   ", "a\tb"] {
            assert_eq!(
                parse_scope(bad).unwrap_err().error,
                "invalid_scope",
                "{bad}"
            );
        }
    }
}
