//! `POST /v1/ratelimit`: rate limiting anything (USAGE-CONTROL.md).
//!
//! A call with an API key (`Authorization: Bearer` or `X-API-Key`) is authenticated
//! from the verification cache, like a verification, and served by the node's hot
//! path; a call with a session (or a key the cache refuses, for the precise error and
//! its audit entry) goes through the ordinary authentication.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::app::AppState;
use crate::auth::extract::Auth;
use keyhaven_core::permission::Permission;
use keyhaven_service::ratelimits::RatelimitCheck;
use keyhaven_service::verify::{Code, Usage};

/// Largest request body.
pub const MAX_BODY: usize = 8 * 1024;

/// Body of `POST /v1/ratelimit`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RatelimitRequest)]
pub struct RatelimitBody {
    /// What is limited, e.g. `api-calls`; 1..=255 bytes, no control characters.
    #[schema(min_length = 1, max_length = 255)]
    pub namespace: String,
    /// Who is limited, e.g. an end user's id; 1..=255 bytes, no control characters.
    #[schema(min_length = 1, max_length = 255)]
    pub identifier: String,
    /// Tokens in a full bucket, 1..=1,000,000,000.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub limit: i64,
    /// Time to refill an empty bucket: 1,000..=2,592,000,000 ms.
    #[schema(minimum = 1000, maximum = 2_592_000_000_i64)]
    pub duration_ms: i64,
    /// Tokens to spend (default 1; 0 reports without spending).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub cost: Option<i64>,
}

/// The answer, 200 whether or not the call may proceed.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = RatelimitResponse)]
pub struct RatelimitAnswer {
    /// Whether the tokens were there (and were spent).
    pub success: bool,
    pub limit: i64,
    pub remaining: i64,
    #[schema(format = DateTime)]
    pub reset_at: String,
}

/// Checks and spends a limit on anything in the caller's organization [ratelimits.use].
#[utoipa::path(post, path = "/v1/ratelimit", tag = "verification", request_body = RatelimitBody,
    responses((status = 200, body = RatelimitAnswer), (status = 400, body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody), (status = 415, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn check(State(state): State<AppState>, req: Request) -> Response {
    let peer = super::verify::peer_of(&req);
    check_request(&state, peer, req).await
}

/// `POST /v1/ratelimit` for a client at `peer`: the route's handler and the hot path's.
pub async fn check_request(state: &AppState, peer: Option<IpAddr>, req: Request) -> Response {
    match check_inner(state, peer, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn check_inner(
    state: &AppState,
    peer: Option<IpAddr>,
    req: Request,
) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    // The fast way: a key the verification cache knows, holding ratelimits.use.
    let key = crate::auth::extract::bearer_from(&parts.headers)
        .or_else(|| parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    let mut org: Option<String> = None;
    if let Some(key) = key {
        let ip = super::verify::client_ip(state, peer, &parts.headers);
        if let Ok(v) = state
            .service
            .verifier()
            .verify_in(
                None,
                key,
                &[Permission::RatelimitsUse.as_str()],
                ip,
                Usage::UNMETERED,
            )
            .await
        {
            if v.code == Code::Valid {
                org = v.key.as_ref().map(|k| k.org_id.to_string());
            }
        }
    }
    let caller = match org {
        Some(_) => None,
        None => Some(Auth::authenticate(&mut parts, state).await?.caller),
    };
    let bytes = super::verify::json_body(Request::from_parts(parts, body), MAX_BODY).await?;
    let b: RatelimitBody = super::error::parse_json_owned(&bytes)?;
    let check = RatelimitCheck {
        namespace: b.namespace,
        identifier: b.identifier,
        limit: b.limit,
        duration_ms: b.duration_ms,
        cost: b.cost.unwrap_or(1),
    };
    let st = match (&org, &caller) {
        (Some(org), _) => state.service.ratelimit_in(org, &check).await?,
        (None, Some(caller)) => state.service.check_ratelimit(caller, &check).await?,
        (None, None) => return Err(ApiError::internal()),
    };
    let answer = RatelimitAnswer {
        success: !st.exceeded,
        limit: st.limit,
        remaining: st.remaining,
        reset_at: keyhaven_core::time::rfc3339(&keyhaven_core::time::from_millis(st.reset_at_ms)),
    };
    let body = serde_json::to_vec(&answer).map_err(|_| ApiError::internal())?;
    Ok(super::verify::json_response(StatusCode::OK, body))
}
