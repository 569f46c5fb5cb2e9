//! `POST /v1/keys/verify` and `GET /v1/auth` (forward auth for reverse proxies).

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, Json};
use crate::app::AppState;
use crate::auth::extract::{ClientIp, PeerIp};
use crate::verify::{Code, Verdict};

/// Largest verification request body.
pub const MAX_VERIFY_BODY: usize = 8 * 1024;

/// Body of `POST /v1/keys/verify`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The key to check.
    pub key: String,
    /// Permissions the key must all hold.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// The end client's IP, checked against the key's `allowed_cidrs` (default: the caller's).
    #[serde(default)]
    pub ip: Option<String>,
}

/// The rate limit state in an answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RateLimitState {
    pub limit: i64,
    pub remaining: i64,
    #[schema(format = DateTime)]
    pub reset_at: String,
}

/// The owner in an answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OwnerRef<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub id: &'a str,
    pub name: &'a str,
}

/// A verification answer (borrowing from the cached key: no copies on the hot path).
#[derive(Serialize, utoipa::ToSchema)]
pub struct VerifyResponse<'a> {
    pub valid: bool,
    /// VALID, MALFORMED, NOT_FOUND, EXPIRED, REVOKED, DISABLED, FORBIDDEN, RATE_LIMITED,
    /// USAGE_EXCEEDED or IP_NOT_ALLOWED.
    pub code: &'static str,
    pub key_id: Option<&'a str>,
    pub organization_id: Option<&'a str>,
    pub name: Option<&'a str>,
    pub owner: Option<OwnerRef<'a>>,
    #[schema(value_type = Option<Vec<String>>)]
    pub permissions: Option<&'a [Box<str>]>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    pub ratelimit: Option<RateLimitState>,
    pub remaining: Option<i64>,
    pub rotating: bool,
}

fn response(v: &Verdict) -> VerifyResponse<'_> {
    let valid = v.code == Code::Valid;
    let k = v.key.as_deref();
    let ratelimit = match (k.and_then(|k| k.ratelimit.as_deref().copied()), v.rate) {
        (Some(limit), Some(d)) => Some(RateLimitState {
            limit: limit.limit,
            remaining: d.remaining,
            reset_at: keyhaven_core::time::rfc3339(&keyhaven_core::time::from_millis(
                d.reset_at_ms,
            )),
        }),
        _ => None,
    };
    let shown = k.filter(|_| valid);
    VerifyResponse {
        valid,
        code: v.code.as_str(),
        key_id: k.map(|k| k.id()),
        organization_id: k.map(|k| k.org_id.as_ref()),
        name: shown.map(|k| k.name.as_ref()),
        owner: shown.map(|k| OwnerRef {
            kind: k.owner.kind.as_str(),
            id: &k.owner.id,
            name: &k.owner.name,
        }),
        permissions: shown.map(|k| k.permissions.as_ref()),
        expires_at: shown
            .and_then(|k| k.expires_at_ms)
            .map(|ms| keyhaven_core::time::rfc3339(&keyhaven_core::time::from_millis(ms))),
        ratelimit,
        remaining: v.remaining,
        rotating: v.rotating,
    }
}

fn client_ip(state: &AppState, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let trusted = &state.config.trusted_proxies;
    if trusted.is_empty() || !trusted.iter().any(|n| n.contains(&peer)) {
        return Some(peer);
    }
    crate::auth::extract::forwarded_ip(headers, trusted).or(Some(peer))
}

fn internal(e: keyhaven_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "verification failed on storage");
    ApiError::internal()
}

/// Verifies a key: 200 with `valid` and a `code`, for valid and invalid keys alike.
#[utoipa::path(post, path = "/v1/keys/verify", tag = "verification", request_body = VerifyRequest,
    responses((status = 200, body = VerifyResponse), (status = 400, body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody), (status = 415, body = super::error::ErrorBody)))]
pub async fn verify(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    Json(body): Json<VerifyRequest>,
) -> Result<Response, ApiError> {
    let ip = match body.ip.as_deref() {
        Some(s) => Some(s.trim().parse::<IpAddr>().map_err(|_| {
            ApiError::bad_request(
                "invalid_ip",
                "ip must be an IPv4 or IPv6 address",
                Some("ip"),
            )
        })?),
        None => client,
    };
    if body.permissions.len() > 100 {
        return Err(ApiError::bad_request(
            "too_many_permissions",
            "permissions may hold at most 100 entries",
            Some("permissions"),
        ));
    }
    let v = state
        .service
        .verifier
        .verify(&body.key, &body.permissions, ip)
        .await
        .map_err(internal)?;
    Ok(axum::Json(response(&v)).into_response())
}

static CODE: HeaderName = HeaderName::from_static("x-keyhaven-code");

/// Forward auth: 200 with identity headers, 401, 403 or 429 (with `Retry-After`);
/// every answer carries `X-Keyhaven-Code`.
#[utoipa::path(get, path = "/v1/auth", tag = "verification",
    params(("permissions" = Option<String>, Query, description = "comma-separated permissions the key must hold"),
        ("X-API-Key" = Option<String>, Header, description = "the key, unless sent as Authorization: Bearer")),
    responses((status = 200, description = "valid; identity in X-Keyhaven-* headers", body = VerifyResponse),
        (status = 401, body = VerifyResponse), (status = 403, body = VerifyResponse), (status = 429, body = VerifyResponse)))]
pub async fn forward_auth(
    State(state): State<AppState>,
    PeerIp(peer): PeerIp,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let key = crate::auth::extract::bearer_from(&headers)
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .unwrap_or_default();
    let mut required = Vec::new();
    if let Some(q) = uri.query() {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            if k == "permissions" {
                required.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(str::to_string),
                );
            }
        }
    }
    if required.len() > 100 {
        // Refused rather than cut short: dropping a requirement could let a key through.
        let mut res = ApiError::bad_request(
            "too_many_permissions",
            "permissions may hold at most 100 entries",
            Some("permissions"),
        )
        .into_response();
        res.headers_mut()
            .insert(CODE.clone(), HeaderValue::from_static("BAD_REQUEST"));
        return res;
    }
    let ip = client_ip(&state, peer, &headers);
    let v = match state.service.verifier.verify(key, &required, ip).await {
        Ok(v) => v,
        Err(e) => {
            let mut res = internal(e).into_response();
            res.headers_mut()
                .insert(CODE.clone(), HeaderValue::from_static("ERROR"));
            return res;
        }
    };
    let status = match v.code {
        Code::Valid => StatusCode::OK,
        Code::Forbidden | Code::IpNotAllowed => StatusCode::FORBIDDEN,
        Code::RateLimited | Code::UsageExceeded => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut res = (status, axum::Json(response(&v))).into_response();
    let h = res.headers_mut();
    h.insert(CODE.clone(), HeaderValue::from_static(v.code.as_str()));
    if let Some(k) = &v.key {
        if v.code == Code::Valid {
            let set = |h: &mut HeaderMap, name: &'static str, value: &str| {
                if let Ok(val) = HeaderValue::from_str(value) {
                    h.insert(HeaderName::from_static(name), val);
                }
            };
            set(h, "x-keyhaven-key-id", k.id());
            set(h, "x-keyhaven-organization-id", &k.org_id);
            set(h, "x-keyhaven-owner-id", &k.owner.id);
            set(h, "x-keyhaven-permissions", &k.permissions.join(","));
        }
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        let now = state.service.now().timestamp_millis();
        let secs = v
            .rate
            .map(|d| ((d.reset_at_ms - now) as f64 / 1000.0).ceil() as i64)
            .unwrap_or(3600)
            .max(1);
        if let Ok(val) = HeaderValue::from_str(&secs.to_string()) {
            h.insert(axum::http::header::RETRY_AFTER, val);
        }
    }
    res
}
