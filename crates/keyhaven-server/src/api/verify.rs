//! `POST /v1/keys/verify` and `GET /v1/auth` (forward auth for reverse proxies).

use std::borrow::Cow;
use std::net::IpAddr;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::{parse_json, ApiError, JsonBytes};
use crate::app::AppState;
use keyhaven_service::verify::cache::LimitScope;
use keyhaven_service::verify::{Code, LimitUse, Usage, Verdict, VerifyError};

/// Largest verification request body.
pub const MAX_VERIFY_BODY: usize = 8 * 1024;

/// Body of `POST /v1/keys/verify`. Borrows from the request body: the hot path copies
/// nothing it only reads.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest<'a> {
    /// The key to check.
    #[serde(borrow)]
    #[schema(value_type = String)]
    pub key: Cow<'a, str>,
    /// Permissions the key must hold: a list (all of them, ≤ 100), or an expression of
    /// names joined by `AND`, `OR` and parentheses (≤ 1,000 characters), e.g.
    /// `orders:read AND (orders:write OR admin)`.
    #[serde(default, borrow)]
    #[schema(schema_with = permissions_schema)]
    pub permissions: PermissionsBody<'a>,
    /// The end client's IP, checked against the key's `allowed_cidrs` (default: the caller's).
    #[serde(default, borrow)]
    #[schema(value_type = Option<String>)]
    pub ip: Option<Cow<'a, str>>,
    /// The organization whose API asks: a key of any other organization is `NOT_FOUND`.
    /// Every organization's keys share the `kh_` prefix, so an API that serves one
    /// organization should always send it.
    #[serde(default, borrow)]
    #[schema(value_type = Option<String>, example = "01k00000000000000000000000")]
    pub organization_id: Option<Cow<'a, str>>,
    /// Credits this call spends (0..=1,000,000, default 1) when the key has a balance.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub cost: Option<i64>,
    /// Limits to apply besides the key's `auto_apply` ones, each with its cost; a name
    /// neither the key nor its service account has is 400.
    #[serde(default, borrow)]
    #[schema(max_items = 20)]
    pub ratelimits: Vec<LimitUseBody<'a>>,
    /// Analytics tags, e.g. `path:/orders`: at most 10, distinct, each 1–128 bytes
    /// without control characters. The verification is counted once more under each
    /// (`GET …/analytics/verifications?group_by=tag`).
    #[serde(default, borrow)]
    #[schema(value_type = Vec<String>, max_items = 10)]
    pub tags: Vec<Cow<'a, str>>,
}

/// `permissions` of a verification request: a list, or an expression.
#[derive(Debug)]
pub enum PermissionsBody<'a> {
    /// Every one is required.
    List(Vec<Cow<'a, str>>),
    /// A string expression (see [`keyhaven_core::permission_expr`]).
    Expr(Cow<'a, str>),
}

/// The document's schema of [`PermissionsBody`]: a list of at most 100 names, or an
/// expression of at most 1,000 characters.
fn permissions_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::String))
                .max_items(Some(100)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(keyhaven_core::permission_expr::MAX_LEN)),
        )
        .build()
        .into()
}

impl Default for PermissionsBody<'_> {
    fn default() -> Self {
        PermissionsBody::List(Vec::new())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for PermissionsBody<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = PermissionsBody<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of permissions or a permission expression")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(PermissionsBody::Expr(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(PermissionsBody::Expr(Cow::Owned(s.to_string())))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(PermissionsBody::Expr(Cow::Owned(s)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                #[derive(Deserialize)]
                struct Item<'a>(#[serde(borrow)] Cow<'a, str>);
                let mut out = Vec::new();
                while let Some(Item(p)) = seq.next_element::<Item<'de>>()? {
                    out.push(p);
                }
                Ok(PermissionsBody::List(out))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A required list of permissions, refused rather than cut short when too long:
/// dropping a requirement could let a key through.
fn check_list_len(n: usize) -> Result<(), ApiError> {
    if n > 100 {
        return Err(ApiError::bad_request(
            "too_many_permissions",
            "permissions may hold at most 100 entries",
            Some("permissions"),
        ));
    }
    Ok(())
}

/// A permission expression, or 400 on `permissions`.
fn expression(s: &str) -> Result<keyhaven_core::permission_expr::PermissionExpr, ApiError> {
    Ok(keyhaven_core::permission_expr::parse(s).map_err(keyhaven_service::ServiceError::from)?)
}

/// Whether a `permissions` query value is an expression rather than a comma list.
fn looks_like_expression(v: &str) -> bool {
    v.contains(['(', ')']) || v.split_whitespace().any(|w| w == "AND" || w == "OR")
}

/// A limit a verification names, with its cost.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitUseBody<'a> {
    /// The limit's name.
    #[serde(borrow)]
    #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9_.:-]{0,63}$")]
    pub name: Cow<'a, str>,
    /// Tokens to spend, 0..=1,000,000 (default 1; 0 reports without spending).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub cost: Option<i64>,
}

/// A cost in `param`, or 400.
fn cost_param(v: Option<i64>, param: &str) -> Result<i64, ApiError> {
    let n = v.unwrap_or(1);
    keyhaven_core::usage_control::validate_cost(n, param)
        .map_err(keyhaven_service::ServiceError::from)?;
    Ok(n)
}

/// A well-formed organization id given in `param`, or 400.
fn organization_param<'a>(v: Option<&'a str>, param: &str) -> Result<Option<&'a str>, ApiError> {
    match v {
        None => Ok(None),
        Some(s) => {
            keyhaven_core::id::Id::parse(s, param).map_err(keyhaven_service::ServiceError::from)?;
            Ok(Some(s))
        }
    }
}

/// The rate limit state in an answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RateLimitState {
    pub limit: i64,
    pub remaining: i64,
    #[schema(format = DateTime)]
    pub reset_at: String,
}

/// A limit that applied, in an answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LimitView<'a> {
    pub name: &'a str,
    pub limit: i64,
    pub remaining: i64,
    #[schema(format = DateTime)]
    pub reset_at: String,
    /// This limit refused the call.
    pub exceeded: bool,
    /// `key` or `service_account`.
    pub scope: &'static str,
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
    /// The limit named `default`, when the key has one and it applied.
    pub ratelimit: Option<RateLimitState>,
    /// Every limit that applied.
    pub ratelimits: Vec<LimitView<'a>>,
    /// Credits left, for keys with a balance.
    pub remaining: Option<i64>,
    pub rotating: bool,
    /// The key's `external_id` (valid keys).
    pub external_id: Option<&'a str>,
    /// The key's `metadata` object (valid keys).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<&'a serde_json::value::RawValue>,
    /// Whether the key is turned on (when a key was found).
    pub enabled: Option<bool>,
}

static EMPTY_OBJECT: std::sync::LazyLock<Box<serde_json::value::RawValue>> =
    std::sync::LazyLock::new(|| {
        serde_json::value::RawValue::from_string("{}".to_string())
            .unwrap_or_else(|_| serde_json::value::to_raw_value(&()).unwrap_or_default())
    });

fn response(v: &Verdict) -> VerifyResponse<'_> {
    let valid = v.code == Code::Valid;
    let k = v.key.as_deref();
    let at = |ms: i64| keyhaven_core::time::rfc3339(&keyhaven_core::time::from_millis(ms));
    let mut ratelimit = None;
    let mut ratelimits = Vec::with_capacity(v.limits.len());
    if let Some(k) = k {
        for (i, st) in &v.limits {
            let Some(l) = k.limits.get(*i) else { continue };
            if l.scope == LimitScope::Key && &*l.name == keyhaven_core::usage_control::DEFAULT_LIMIT
            {
                ratelimit = Some(RateLimitState {
                    limit: st.limit,
                    remaining: st.remaining,
                    reset_at: at(st.reset_at_ms),
                });
            }
            ratelimits.push(LimitView {
                name: &l.name,
                limit: st.limit,
                remaining: st.remaining,
                reset_at: at(st.reset_at_ms),
                exceeded: st.exceeded,
                scope: l.scope.as_str(),
            });
        }
    }
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
        ratelimits,
        remaining: v.remaining,
        rotating: v.rotating,
        external_id: shown.and_then(|k| k.external_id.as_deref()),
        metadata: shown.map(|k| k.metadata.as_deref().unwrap_or(&EMPTY_OBJECT)),
        enabled: k.map(|k| k.enabled),
    }
}

pub(crate) fn client_ip(
    state: &AppState,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let trusted = &state.config.trusted_proxies;
    if trusted.is_empty() || !trusted.iter().any(|n| n.contains(&peer)) {
        return Some(peer);
    }
    crate::auth::extract::forwarded_ip(headers, trusted).or(Some(peer))
}

fn internal(e: VerifyError) -> ApiError {
    let e = match e {
        VerifyError::UnknownLimit(name) => {
            return ApiError::bad_request(
                "unknown_ratelimit",
                format!("the key has no rate limit named {name:?}"),
                Some("ratelimits"),
            )
        }
        VerifyError::Store(e) => e,
    };
    match e {
        // An outage: a key not cached cannot be checked now (cached ones still are).
        keyhaven_store::StoreError::Unavailable(why) => ApiError::unavailable(&why),
        e => {
            tracing::error!(error = %e, "verification failed on storage");
            ApiError::internal()
        }
    }
}

/// Verifies a key: 200 with `valid` and a `code`, for valid and invalid keys alike.
#[utoipa::path(post, path = "/v1/keys/verify", tag = "verification", request_body = VerifyRequest,
    responses((status = 200, body = VerifyResponse), (status = 400, body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody), (status = 415, body = super::error::ErrorBody)))]
pub async fn verify(State(state): State<AppState>, req: Request) -> Response {
    let peer = peer_of(&req);
    verify_request(&state, peer, req).await
}

pub(crate) fn peer_of(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// `POST /v1/keys/verify` for a client at `peer`: the route's handler, and what the
/// node's hot path (`app::Node`) calls directly.
pub async fn verify_request(state: &AppState, peer: Option<IpAddr>, req: Request) -> Response {
    match verify_inner(state, peer, req).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

async fn verify_inner(
    state: &AppState,
    peer: Option<IpAddr>,
    req: Request,
) -> Result<Response, ApiError> {
    let client = client_ip(state, peer, req.headers());
    let bytes = json_body(req, MAX_VERIFY_BODY).await?;
    // Whole numbers written as floats (`"cost": 2.0`) are read as integers; only a body
    // that fails to parse is looked at again.
    let normalized;
    let body: VerifyRequest<'_> = match parse_json(&bytes) {
        Ok(b) => b,
        Err(e) => {
            normalized = super::error::integral_floats(&bytes).ok_or(e)?;
            parse_json(&normalized)?
        }
    };
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
    let expr;
    let required: &(dyn keyhaven_core::permission_expr::Requirement + Sync) =
        match &body.permissions {
            PermissionsBody::List(l) => {
                check_list_len(l.len())?;
                l
            }
            PermissionsBody::Expr(s) => {
                expr = expression(s)?;
                &expr
            }
        };
    let org = organization_param(body.organization_id.as_deref(), "organization_id")?;
    let cost = cost_param(body.cost, "cost")?;
    if body.ratelimits.len() > 20 {
        return Err(ApiError::bad_request(
            "too_many_ratelimits",
            "ratelimits may hold at most 20 entries",
            Some("ratelimits"),
        ));
    }
    // No allocation without tags (an empty Vec allocates nothing).
    let tags: Vec<&str> = body.tags.iter().map(|t| t.as_ref()).collect();
    keyhaven_service::analytics::validate_tags(&tags)
        .map_err(keyhaven_service::ServiceError::from)?;
    let mut uses = Vec::with_capacity(body.ratelimits.len());
    for (i, r) in body.ratelimits.iter().enumerate() {
        if !keyhaven_core::usage_control::is_limit_name(&r.name) {
            return Err(ApiError::bad_request(
                "invalid_ratelimit",
                format!(
                    "ratelimits[{i}].name must match {}",
                    keyhaven_core::usage_control::NAME_PATTERN
                ),
                Some(&format!("ratelimits[{i}].name")),
            ));
        }
        uses.push(LimitUse {
            name: &r.name,
            cost: cost_param(r.cost, &format!("ratelimits[{i}].cost"))?,
        });
    }
    let v = state
        .service
        .verifier()
        .verify_in(
            org,
            &body.key,
            required,
            ip,
            Usage {
                cost,
                limits: &uses,
                meter: true,
                tags: &tags,
            },
        )
        .await
        .map_err(internal)?;
    Ok(json_response(StatusCode::OK, render(&v)))
}

/// The JSON body of a hot-path request, at most `max` bytes: 413 for a larger declared
/// length at once, and a body without one is cut off at the limit as it streams in
/// (the hot path skips the router's body limit layer).
pub(crate) async fn json_body(req: Request, max: usize) -> Result<axum::body::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::too_large());
    }
    let req = req.map(|b| Body::new(http_body_util::Limited::new(b, max)));
    let JsonBytes(bytes) = JsonBytes::from_request(req, &()).await?;
    Ok(bytes)
}

/// A JSON response from bytes already rendered.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut res = Response::new(axum::body::Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// Appends `s` as a JSON string. Most strings here (ids, codes, permissions) need no
/// escaping and are copied as they are; the rest go through serde_json.
fn push_str(out: &mut Vec<u8>, s: &str) {
    // No early exit, so the compiler can check many bytes per instruction.
    let special = s.bytes().fold(false, |acc, b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !special {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing a &str to a Vec cannot fail; keep the document valid regardless.
        out.extend_from_slice(b"null");
    }
}

fn push_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn push_int(out: &mut Vec<u8>, n: i64) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{n}");
}

/// Renders [`response`] as JSON by hand: the same document serde would write (a unit
/// test holds them equal), without its per-field overhead on the hot path.
fn render(v: &Verdict) -> Vec<u8> {
    let r = response(v);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(if r.valid {
        b"{\"valid\":true,\"code\":"
    } else {
        b"{\"valid\":false,\"code\":"
    });
    push_str(&mut out, r.code);
    out.extend_from_slice(b",\"key_id\":");
    push_opt_str(&mut out, r.key_id);
    out.extend_from_slice(b",\"organization_id\":");
    push_opt_str(&mut out, r.organization_id);
    out.extend_from_slice(b",\"name\":");
    push_opt_str(&mut out, r.name);
    out.extend_from_slice(b",\"owner\":");
    match &r.owner {
        Some(o) => {
            out.extend_from_slice(b"{\"type\":");
            push_str(&mut out, o.kind);
            out.extend_from_slice(b",\"id\":");
            push_str(&mut out, o.id);
            out.extend_from_slice(b",\"name\":");
            push_str(&mut out, o.name);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"permissions\":");
    match r.permissions {
        Some(perms) => {
            out.push(b'[');
            for (i, p) in perms.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_str(&mut out, p);
            }
            out.push(b']');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"expires_at\":");
    push_opt_str(&mut out, r.expires_at.as_deref());
    out.extend_from_slice(b",\"ratelimit\":");
    match &r.ratelimit {
        Some(rl) => {
            out.extend_from_slice(b"{\"limit\":");
            push_int(&mut out, rl.limit);
            out.extend_from_slice(b",\"remaining\":");
            push_int(&mut out, rl.remaining);
            out.extend_from_slice(b",\"reset_at\":");
            push_str(&mut out, &rl.reset_at);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"ratelimits\":[");
    for (i, l) in r.ratelimits.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        push_str(&mut out, l.name);
        out.extend_from_slice(b",\"limit\":");
        push_int(&mut out, l.limit);
        out.extend_from_slice(b",\"remaining\":");
        push_int(&mut out, l.remaining);
        out.extend_from_slice(b",\"reset_at\":");
        push_str(&mut out, &l.reset_at);
        out.extend_from_slice(if l.exceeded {
            b",\"exceeded\":true,\"scope\":"
        } else {
            b",\"exceeded\":false,\"scope\":"
        });
        push_str(&mut out, l.scope);
        out.push(b'}');
    }
    out.push(b']');
    out.extend_from_slice(b",\"remaining\":");
    match r.remaining {
        Some(n) => push_int(&mut out, n),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(if r.rotating {
        b",\"rotating\":true"
    } else {
        b",\"rotating\":false"
    });
    out.extend_from_slice(b",\"external_id\":");
    push_opt_str(&mut out, r.external_id);
    out.extend_from_slice(b",\"metadata\":");
    match r.metadata {
        Some(m) => out.extend_from_slice(m.get().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(match r.enabled {
        Some(true) => b",\"enabled\":true}",
        Some(false) => b",\"enabled\":false}",
        None => b",\"enabled\":null}",
    });
    out
}

static CODE: HeaderName = HeaderName::from_static("x-keyhaven-code");

/// Forward auth: 200 with identity headers, 401, 403 or 429 (with `Retry-After`);
/// every answer carries `X-Keyhaven-Code`.
#[utoipa::path(get, path = "/v1/auth", tag = "verification",
    params(("permissions" = Option<String>, Query, description = "comma-separated permissions the key must hold"),
        ("organization_id" = Option<String>, Query, description = "the organization whose API asks: another organization's key is NOT_FOUND (or send X-Keyhaven-Organization-Id)"),
        ("X-Keyhaven-Organization-Id" = Option<String>, Header, description = "the same as the organization_id query parameter, which wins when both are given"),
        ("X-API-Key" = Option<String>, Header, description = "the key, unless sent as Authorization: Bearer"),
        ("X-Keyhaven-Tags" = Option<String>, Header, description = "analytics tags, comma-separated: at most 10, distinct, each 1-128 bytes without control characters")),
    responses((status = 200, description = "valid; identity in X-Keyhaven-* headers", body = VerifyResponse),
        (status = 400, description = "a malformed organization_id, too many permissions or bad tags", body = super::error::ErrorBody),
        (status = 401, body = VerifyResponse), (status = 403, body = VerifyResponse), (status = 429, body = VerifyResponse)))]
pub async fn forward_auth(State(state): State<AppState>, req: Request) -> Response {
    let peer = peer_of(&req);
    forward_auth_request(&state, peer, req).await
}

/// `GET /v1/auth` for a client at `peer`: the route's handler, and what the node's hot
/// path calls directly. Reads the request in place: no copy of its headers.
pub async fn forward_auth_request(
    state: &AppState,
    peer: Option<IpAddr>,
    req: Request,
) -> Response {
    let headers = req.headers();
    let uri = req.uri();
    if crate::app::uri_too_long(uri) {
        let mut res = ApiError::uri_too_long().into_response();
        res.headers_mut()
            .insert(CODE.clone(), HeaderValue::from_static("BAD_REQUEST"));
        return res;
    }
    let key = crate::auth::extract::bearer_from(headers)
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .unwrap_or_default();
    let mut required = Vec::new();
    let mut expr_text: Option<String> = None;
    let mut cost_text: Option<String> = None;
    let mut org: Option<String> = headers
        .get("x-keyhaven-organization-id")
        .map(|v| v.to_str().unwrap_or("\u{0}").to_string());
    // A malformed header is refused even when the query parameter (which wins) is given.
    if let Err(e) = organization_param(org.as_deref(), "X-Keyhaven-Organization-Id") {
        let mut res = e.into_response();
        res.headers_mut()
            .insert(CODE.clone(), HeaderValue::from_static("BAD_REQUEST"));
        return res;
    }
    if let Some(q) = uri.query() {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            if v.is_empty() && matches!(&*k, "organization_id" | "cost" | "permissions") {
                let mut res = ApiError::bad_request(
                    "empty_parameter",
                    format!("{k} must not be empty; leave the parameter out instead"),
                    Some(&k),
                )
                .into_response();
                res.headers_mut()
                    .insert(CODE.clone(), HeaderValue::from_static("BAD_REQUEST"));
                return res;
            }
            if k == "organization_id" {
                org = Some(v.into_owned());
            } else if k == "cost" {
                cost_text = Some(v.into_owned());
            } else if k == "permissions" && (looks_like_expression(&v) || expr_text.is_some()) {
                // An expression; several `permissions` parameters with one are all required.
                let joined = match expr_text.take() {
                    Some(e) => format!("({e}) AND ({v})"),
                    None if required.is_empty() => v.into_owned(),
                    None => format!("{} AND ({v})", required.join(" AND ")),
                };
                required.clear();
                expr_text = Some(joined);
            } else if k == "permissions" {
                required.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(str::to_string),
                );
            }
        }
    }
    let expr = match expr_text.as_deref().map(expression).transpose() {
        Ok(e) => e,
        Err(e) => {
            let mut res = e.into_response();
            res.headers_mut()
                .insert(CODE.clone(), HeaderValue::from_static("BAD_REQUEST"));
            return res;
        }
    };
    if let Err(e) = check_list_len(required.len()) {
        let mut res = e.into_response();
        res.headers_mut()
            .insert(CODE.clone(), HeaderValue::from_static("BAD_REQUEST"));
        return res;
    }
    let org = match organization_param(org.as_deref(), "organization_id") {
        Ok(o) => o,
        Err(e) => {
            let mut res = e.into_response();
            res.headers_mut()
                .insert(CODE.clone(), HeaderValue::from_static("BAD_REQUEST"));
            return res;
        }
    };
    let cost = match cost_text.as_deref().map(|t| t.trim().parse::<i64>()) {
        None => Ok(1),
        Some(Ok(n)) => cost_param(Some(n), "cost"),
        Some(Err(_)) => Err(ApiError::bad_request(
            "invalid_cost",
            "cost must be a whole number between 0 and 1000000",
            Some("cost"),
        )),
    };
    let cost = match cost {
        Ok(c) => c,
        Err(e) => {
            let mut res = e.into_response();
            res.headers_mut()
                .insert(CODE.clone(), HeaderValue::from_static("BAD_REQUEST"));
            return res;
        }
    };
    let tags = match forward_tags(headers) {
        Ok(t) => t,
        Err(e) => {
            let mut res = e.into_response();
            res.headers_mut()
                .insert(CODE.clone(), HeaderValue::from_static("BAD_REQUEST"));
            return res;
        }
    };
    let ip = client_ip(state, peer, headers);
    let usage = Usage {
        cost,
        limits: &[],
        meter: true,
        tags: &tags,
    };
    let v = match state
        .service
        .verifier()
        .verify_in(
            org,
            key,
            match &expr {
                Some(e) => e as &(dyn keyhaven_core::permission_expr::Requirement + Sync),
                None => &required,
            },
            ip,
            usage,
        )
        .await
    {
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
    let mut res = json_response(status, render(&v));
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
            if let Some(e) = &k.external_id {
                set(h, "x-keyhaven-external-id", e);
            }
        }
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        let now = state.service.now().timestamp_millis();
        let secs = v
            .refused_by()
            .map(|d| ((d.reset_at_ms - now) as f64 / 1000.0).ceil() as i64)
            .unwrap_or(3600)
            .max(1);
        if let Ok(val) = HeaderValue::from_str(&secs.to_string()) {
            h.insert(axum::http::header::RETRY_AFTER, val);
        }
    }
    res
}

/// The analytics tags of a forward-auth request: `X-Keyhaven-Tags`, comma-separated
/// (blank items skipped; the header may be repeated), checked like the JSON `tags`.
fn forward_tags(headers: &HeaderMap) -> Result<Vec<&str>, ApiError> {
    let mut tags = Vec::new();
    for v in headers.get_all("x-keyhaven-tags") {
        let v = std::str::from_utf8(v.as_bytes()).map_err(|_| {
            ApiError::bad_request(
                "invalid_tag",
                "X-Keyhaven-Tags must be UTF-8 text",
                Some("tags"),
            )
        })?;
        tags.extend(v.split(',').map(str::trim).filter(|t| !t.is_empty()));
        if tags.len() > keyhaven_service::analytics::MAX_TAGS {
            break;
        }
    }
    keyhaven_service::analytics::validate_tags(&tags)
        .map_err(keyhaven_service::ServiceError::from)?;
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keyhaven_core::principal::PrincipalKind;

    use super::*;
    use keyhaven_service::meter::{BucketSpec, LimitState};
    use keyhaven_service::verify::cache::{id_bytes, CachedKey, Owner};
    use keyhaven_service::verify::cache::{KeyLimit, LimitScope};

    fn key(name: &str, owner_name: &str, perms: &[&str]) -> Arc<CachedKey> {
        Arc::new(CachedKey {
            key_id: id_bytes("01kkeyid0000000000000000000"),
            revoked: false,
            owner_active: true,
            enabled: true,
            external_id: None,
            metadata: None,
            expires_at_ms: Some(1_795_000_000_000),
            previous_until_ms: None,
            org_id: Arc::from("01korg00000000000000000000"),
            name: name.into(),
            owner: Arc::new(Owner {
                kind: PrincipalKind::ServiceAccount,
                id: "01kowner000000000000000000".into(),
                name: owner_name.into(),
            }),
            permissions: perms.iter().map(|p| Box::<str>::from(*p)).collect(),
            limits: Box::new([
                KeyLimit {
                    name: "default".into(),
                    scope: LimitScope::Key,
                    auto_apply: true,
                    bucket: BucketSpec {
                        id: "k:x:default:100:60000".into(),
                        limit: 100,
                        duration_ms: 60_000,
                    },
                },
                KeyLimit {
                    name: "tokens".into(),
                    scope: LimitScope::ServiceAccount,
                    auto_apply: false,
                    bucket: BucketSpec {
                        id: "s:x:tokens:5000:1000".into(),
                        limit: 5000,
                        duration_ms: 1000,
                    },
                },
            ]),
            credits: None,
            allowed_cidrs: Box::new([]),
            loaded_at_ms: 0,
        })
    }

    #[test]
    fn the_hand_rendered_answer_is_what_serde_writes() {
        let odd = "quote \" backslash \\ newline \n tab \t nul \u{0} é ✓";
        let verdicts = [
            Verdict {
                code: Code::Valid,
                key: Some(key("billing", "payments", &["read", "write"])),
                limits: vec![
                    (
                        0,
                        LimitState {
                            limit: 100,
                            remaining: 99,
                            reset_at_ms: 1_795_000_060_000,
                            exceeded: false,
                        },
                    ),
                    (
                        1,
                        LimitState {
                            limit: 5000,
                            remaining: 0,
                            reset_at_ms: 1_795_000_000_200,
                            exceeded: true,
                        },
                    ),
                ],
                remaining: Some(-0),
                rotating: true,
            },
            Verdict {
                code: Code::Valid,
                key: Some(key(odd, odd, &[])),
                limits: Vec::new(),
                remaining: Some(41),
                rotating: false,
            },
            Verdict {
                code: Code::Forbidden,
                key: Some(key("k", "o", &["read"])),
                limits: Vec::new(),
                remaining: None,
                rotating: false,
            },
            Verdict {
                code: Code::Malformed,
                key: None,
                limits: Vec::new(),
                remaining: None,
                rotating: false,
            },
        ];
        for v in &verdicts {
            let by_hand = render(v);
            let by_serde = serde_json::to_vec(&response(v)).unwrap();
            assert_eq!(
                String::from_utf8(by_hand).unwrap(),
                String::from_utf8(by_serde).unwrap()
            );
        }
    }
}
