//! `/v1/organizations/{org}/api-keys` and `/metrics`.

use axum::extract::State;
use axum::http::StatusCode;
use keyhaven_core::api_key::KeyStatus;
use keyhaven_store::ApiKeyFilter;
use serde::Deserialize;

use super::error::{ApiError, CommonErrors, Json};
use super::params::{path_id, PathParams, QueryParams};
use super::views::{ApiKeyView, ListView};
use crate::app::AppState;
use crate::auth::extract::Auth;
use keyhaven_service::api_keys::{
    BatchDeleted, CreateApiKey, DailyUsage, Metrics, RegenerateApiKey, UpdateApiKey,
};

/// Lists keys [api_keys.view]; filters combine with AND.
#[utoipa::path(get, path = "/v1/organizations/{org}/api-keys", tag = "api keys",
    params(("org" = String, Path), ("status" = Option<String>, Query, description = "active, revoked or expired"),
        ("role" = Option<String>, Query), ("tag" = Option<String>, Query), ("owner_id" = Option<String>, Query),
        ("q" = Option<String>, Query, description = "substring of name or description"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ListView<ApiKeyView>), CommonErrors), security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    q: QueryParams,
) -> Result<axum::Json<ListView<ApiKeyView>>, ApiError> {
    q.only(&["status", "role", "tag", "owner_id", "q", "limit", "cursor"])?;
    let now = s.service.now();
    let filter = ApiKeyFilter {
        status: q
            .get("status")?
            .map(|v| KeyStatus::parse(v, "status"))
            .transpose()?,
        role: q.text("role")?,
        tag: q.text("tag")?,
        owner_id: q.text("owner_id")?,
        q: q.text("q")?,
        now,
    };
    let l = s
        .service
        .list_api_keys(&auth.caller, &filter, &q.page()?)
        .await?;
    Ok(axum::Json(ListView::from_listing(l, |(k, p)| {
        ApiKeyView::new(k, now, p.clone())
    })))
}

/// Creates a key; the response's `key` is the secret, returned only here [api_keys.create].
#[utoipa::path(post, path = "/v1/organizations/{org}/api-keys", tag = "api keys", params(("org" = String, Path)),
    request_body = CreateApiKey, responses((status = 201, body = ApiKeyView), CommonErrors), security(("bearer" = [])))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    Json(body): Json<CreateApiKey>,
) -> Result<(StatusCode, axum::Json<ApiKeyView>), ApiError> {
    let (k, perms, secret) = s.service.create_api_key(&auth.caller, body).await?;
    let mut v = ApiKeyView::new(&k, s.service.now(), perms);
    v.key = Some(secret.expose().to_string());
    Ok((StatusCode::CREATED, axum::Json(v)))
}

/// One key [api_keys.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/api-keys/{id}", tag = "api keys",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = ApiKeyView), CommonErrors), security(("bearer" = [])))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
) -> Result<axum::Json<ApiKeyView>, ApiError> {
    let (k, p) = s
        .service
        .get_api_key(&auth.caller, &path_id(&id, "API key")?)
        .await?;
    Ok(axum::Json(ApiKeyView::new(&k, s.service.now(), p)))
}

/// Changes a key; absent fields stay, `null` clears `ratelimit` / `remaining` [api_keys.manage].
#[utoipa::path(patch, path = "/v1/organizations/{org}/api-keys/{id}", tag = "api keys",
    params(("org" = String, Path), ("id" = String, Path)), request_body = UpdateApiKey,
    responses((status = 200, body = ApiKeyView), CommonErrors), security(("bearer" = [])))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    Json(body): Json<UpdateApiKey>,
) -> Result<axum::Json<ApiKeyView>, ApiError> {
    let (k, p) = s
        .service
        .update_api_key(&auth.caller, &path_id(&id, "API key")?, body)
        .await?;
    Ok(axum::Json(ApiKeyView::new(&k, s.service.now(), p)))
}

/// Replaces the secret (same id); `expires_at` is required [api_keys.manage].
#[utoipa::path(post, path = "/v1/organizations/{org}/api-keys/{id}/regenerate", tag = "api keys",
    params(("org" = String, Path), ("id" = String, Path)), request_body = RegenerateApiKey,
    responses((status = 200, body = ApiKeyView), CommonErrors), security(("bearer" = [])))]
pub async fn regenerate(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    Json(body): Json<RegenerateApiKey>,
) -> Result<axum::Json<ApiKeyView>, ApiError> {
    let (k, p, secret) = s
        .service
        .regenerate_api_key(&auth.caller, &path_id(&id, "API key")?, body)
        .await?;
    let mut v = ApiKeyView::new(&k, s.service.now(), p);
    v.key = Some(secret.expose().to_string());
    Ok(axum::Json(v))
}

/// Revokes a key, immediately and for good [api_keys.manage].
#[utoipa::path(post, path = "/v1/organizations/{org}/api-keys/{id}/revoke", tag = "api keys",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = ApiKeyView), CommonErrors), security(("bearer" = [])))]
pub async fn revoke(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
) -> Result<axum::Json<ApiKeyView>, ApiError> {
    let (k, p) = s
        .service
        .revoke_api_key(&auth.caller, &path_id(&id, "API key")?)
        .await?;
    Ok(axum::Json(ApiKeyView::new(&k, s.service.now(), p)))
}

/// Deletes a key permanently [api_keys.manage].
#[utoipa::path(delete, path = "/v1/organizations/{org}/api-keys/{id}", tag = "api keys",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "deleted"), CommonErrors), security(("bearer" = [])))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.service
        .delete_api_key(&auth.caller, &path_id(&id, "API key")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of a batch delete.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchDelete {
    /// 1 to 100 key ids.
    pub ids: Vec<String>,
}

/// Deletes up to 100 keys [api_keys.manage].
#[utoipa::path(post, path = "/v1/organizations/{org}/api-keys/batch-delete", tag = "api keys",
    params(("org" = String, Path)), request_body = BatchDelete,
    responses((status = 200, body = BatchDeleted), CommonErrors), security(("bearer" = [])))]
pub async fn batch_delete(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    Json(body): Json<BatchDelete>,
) -> Result<axum::Json<BatchDeleted>, ApiError> {
    Ok(axum::Json(
        s.service
            .batch_delete_api_keys(&auth.caller, &body.ids)
            .await?,
    ))
}

/// The daily usage answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UsageView {
    /// One row per day, oldest first, zero days included.
    pub data: Vec<DailyUsage>,
}

/// Verifications per day [api_keys.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/api-keys/{id}/usage", tag = "api keys",
    params(("org" = String, Path), ("id" = String, Path), ("days" = Option<i64>, Query, minimum = 1, maximum = 90)),
    responses((status = 200, body = UsageView), CommonErrors), security(("bearer" = [])))]
pub async fn usage(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    q: QueryParams,
) -> Result<axum::Json<UsageView>, ApiError> {
    q.only(&["days"])?;
    let days = match q.get("days")? {
        None => 30,
        Some(v) => v.parse::<i64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_days",
                "days must be a number from 1 to 90",
                Some("days"),
            )
        })?,
    };
    let data = s
        .service
        .api_key_usage(&auth.caller, &path_id(&id, "API key")?, days)
        .await?;
    Ok(axum::Json(UsageView { data }))
}

/// Dashboard numbers [api_keys.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/metrics", tag = "api keys", params(("org" = String, Path)),
    responses((status = 200, body = Metrics), CommonErrors), security(("bearer" = [])))]
pub async fn metrics(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
) -> Result<axum::Json<Metrics>, ApiError> {
    Ok(axum::Json(s.service.metrics(&auth.caller).await?))
}
