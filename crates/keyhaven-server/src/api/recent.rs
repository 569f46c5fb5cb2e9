//! `GET /v1/organizations/{org}/api-keys/{id}/verifications`: a key's most recent
//! verifications, as the console's key page shows them.

use axum::extract::State;
use keyhaven_core::time::rfc3339;
use keyhaven_service::verify::recent::RECENT_PER_KEY;
use keyhaven_store::RecentVerification;

use super::error::{ApiError, CommonErrors};
use super::params::{path_id, PathParams, QueryParams};
use crate::app::AppState;
use crate::auth::extract::Auth;

/// One verification of the key.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RecentVerificationView {
    /// When it was answered (RFC 3339).
    pub at: String,
    /// The verification code (`VALID`, `FORBIDDEN`, …).
    pub code: String,
    /// The client's address as the verification judged it: the request's `ip`, else
    /// the peer (or `X-Forwarded-For` / `X-Real-IP` from a trusted proxy).
    pub ip: Option<String>,
    /// The request's analytics tags.
    pub tags: Vec<String>,
}

impl From<RecentVerification> for RecentVerificationView {
    fn from(r: RecentVerification) -> Self {
        RecentVerificationView {
            at: rfc3339(&r.at),
            code: r.code,
            ip: r.ip,
            tags: r.tags,
        }
    }
}

/// The recent verifications answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RecentVerificationsView {
    /// Newest first, at most `limit` (the last 20 are kept per key).
    pub data: Vec<RecentVerificationView>,
}

/// A key's most recent verifications, newest first, across every node [api_keys.view].
/// Each node writes them with its analytics flush (at most every second), so the latest
/// may take a second to appear.
#[utoipa::path(get, path = "/v1/organizations/{org}/api-keys/{id}/verifications", tag = "api keys",
    params(("org" = String, Path), ("id" = String, Path), ("limit" = Option<i64>, Query, minimum = 1, maximum = 20)),
    responses((status = 200, body = RecentVerificationsView), CommonErrors), security(("bearer" = [])))]
pub async fn verifications(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    q: QueryParams,
) -> Result<axum::Json<RecentVerificationsView>, ApiError> {
    q.only(&["limit"])?;
    let most = RECENT_PER_KEY as i64;
    let limit = match q.get("limit")? {
        None => most,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=most).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_limit",
                    "limit must be a number from 1 to 20",
                    Some("limit"),
                )
            })?,
    };
    let rows = s
        .service
        .recent_verifications(&auth.caller, &path_id(&id, "API key")?)
        .await?;
    Ok(axum::Json(RecentVerificationsView {
        data: rows
            .into_iter()
            .take(limit as usize)
            .map(Into::into)
            .collect(),
    }))
}
