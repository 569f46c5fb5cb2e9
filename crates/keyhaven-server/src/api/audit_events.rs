//! `/v1/organizations/{org}/audit-events`.

use axum::extract::State;
use keyhaven_core::audit::Outcome;
use keyhaven_store::AuditFilter;

use super::error::{ApiError, CommonErrors};
use super::params::{PathParams, QueryParams};
use super::views::{AuditEventView, ListView};
use crate::app::AppState;
use crate::auth::extract::Auth;

/// The audit log, newest first [audit.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/audit-events", tag = "audit",
    params(("org" = String, Path), ("actor_id" = Option<String>, Query), ("action" = Option<String>, Query),
        ("target_id" = Option<String>, Query), ("outcome" = Option<String>, Query, description = "success, denied or error"),
        ("since" = Option<String>, Query, format = DateTime), ("until" = Option<String>, Query, format = DateTime),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ListView<AuditEventView>), CommonErrors), security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    q: QueryParams,
) -> Result<axum::Json<ListView<AuditEventView>>, ApiError> {
    q.only(&[
        "actor_id",
        "action",
        "target_id",
        "outcome",
        "since",
        "until",
        "limit",
        "cursor",
    ])?;
    let outcome = match q.get("outcome")? {
        None => None,
        Some(v) => Some(Outcome::parse(v).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_outcome",
                "outcome must be success, denied or error",
                Some("outcome"),
            )
        })?),
    };
    let filter = AuditFilter {
        actor_id: q.text("actor_id")?,
        action: q.text("action")?,
        target_id: q.text("target_id")?,
        outcome,
        since: q.time("since")?,
        until: q.time("until")?,
    };
    let l = s
        .service
        .list_audit_events(&auth.caller, &filter, &q.page()?)
        .await?;
    Ok(axum::Json(ListView::from_listing(l, |e| {
        AuditEventView::from(e)
    })))
}
