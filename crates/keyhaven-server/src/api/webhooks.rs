//! `/v1/organizations/{org}/webhooks`.

use axum::extract::State;
use axum::http::StatusCode;
use keyhaven_store::{Delivery, DeliveryStatus, WebhookEndpoint};
use serde::Serialize;

use super::error::{ApiError, CommonErrors, Json};
use super::params::{path_id, PathParams, QueryParams};
use super::views::ListView;
use crate::app::AppState;
use crate::auth::extract::Auth;
use keyhaven_service::webhooks::{CreateWebhook, UpdateWebhook};

/// A webhook endpoint.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&WebhookEndpoint> for WebhookView {
    fn from(w: &WebhookEndpoint) -> Self {
        WebhookView {
            id: w.id.to_string(),
            url: w.url.clone(),
            events: w.events.clone(),
            description: w.description.clone(),
            enabled: w.enabled,
            created_at: keyhaven_core::time::rfc3339(&w.created_at),
            updated_at: keyhaven_core::time::rfc3339(&w.updated_at),
        }
    }
}

/// One delivery of one event.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub event_type: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub attempts: i64,
    /// HTTP status of the last attempt.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub delivered_at: Option<String>,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        DeliveryView {
            id: d.id.to_string(),
            event_type: d.event_type.clone(),
            status: d.status.as_str().to_string(),
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            next_attempt_at: (d.status == DeliveryStatus::Pending)
                .then(|| keyhaven_core::time::rfc3339(&d.next_attempt_at)),
            created_at: keyhaven_core::time::rfc3339(&d.created_at),
            delivered_at: d.delivered_at.as_ref().map(keyhaven_core::time::rfc3339),
        }
    }
}

/// Lists endpoints [webhooks.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/webhooks", tag = "webhooks",
    params(("org" = String, Path), ("limit" = Option<i64>, Query, minimum = 1, maximum = 100), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ListView<WebhookView>), CommonErrors), security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    q: QueryParams,
) -> Result<axum::Json<ListView<WebhookView>>, ApiError> {
    q.only(&["limit", "cursor"])?;
    let l = s.service.list_webhooks(&auth.caller, &q.page()?).await?;
    Ok(axum::Json(ListView::from_listing(l, |w| {
        WebhookView::from(w)
    })))
}

/// Creates an endpoint [webhooks.manage].
#[utoipa::path(post, path = "/v1/organizations/{org}/webhooks", tag = "webhooks", params(("org" = String, Path)),
    request_body = CreateWebhookBody, responses((status = 201, body = WebhookView), CommonErrors), security(("bearer" = [])))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    Json(body): Json<CreateWebhookBody>,
) -> Result<(StatusCode, axum::Json<WebhookView>), ApiError> {
    let w = s
        .service
        .create_webhook(&auth.caller, CreateWebhook::from(body))
        .await?;
    Ok((StatusCode::CREATED, axum::Json((&w).into())))
}

/// One endpoint [webhooks.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/webhooks/{id}", tag = "webhooks",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = WebhookView), CommonErrors), security(("bearer" = [])))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
) -> Result<axum::Json<WebhookView>, ApiError> {
    let w = s
        .service
        .get_webhook(&auth.caller, &path_id(&id, "webhook")?)
        .await?;
    Ok(axum::Json((&w).into()))
}

/// Changes an endpoint [webhooks.manage].
#[utoipa::path(patch, path = "/v1/organizations/{org}/webhooks/{id}", tag = "webhooks",
    params(("org" = String, Path), ("id" = String, Path)), request_body = UpdateWebhookBody,
    responses((status = 200, body = WebhookView), CommonErrors), security(("bearer" = [])))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    Json(body): Json<UpdateWebhookBody>,
) -> Result<axum::Json<WebhookView>, ApiError> {
    let w = s
        .service
        .update_webhook(
            &auth.caller,
            &path_id(&id, "webhook")?,
            UpdateWebhook::from(body),
        )
        .await?;
    Ok(axum::Json((&w).into()))
}

/// Deletes an endpoint and its deliveries [webhooks.manage].
#[utoipa::path(delete, path = "/v1/organizations/{org}/webhooks/{id}", tag = "webhooks",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "deleted"), CommonErrors), security(("bearer" = [])))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.service
        .delete_webhook(&auth.caller, &path_id(&id, "webhook")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An endpoint's deliveries, newest first [webhooks.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/webhooks/{id}/deliveries", tag = "webhooks",
    params(("org" = String, Path), ("id" = String, Path), ("limit" = Option<i64>, Query, minimum = 1, maximum = 100), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ListView<DeliveryView>), CommonErrors), security(("bearer" = [])))]
pub async fn deliveries(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    q: QueryParams,
) -> Result<axum::Json<ListView<DeliveryView>>, ApiError> {
    q.only(&["limit", "cursor"])?;
    let l = s
        .service
        .list_deliveries(&auth.caller, &path_id(&id, "webhook")?, &q.page()?)
        .await?;
    Ok(axum::Json(ListView::from_listing(l, |d| {
        DeliveryView::from(d)
    })))
}

/// Body of `POST /webhooks`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateWebhook)]
pub struct CreateWebhookBody {
    /// An http(s) URL that is not Keyhaven itself.
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::value::WebhookUrlShape>)]
    pub url: String,
    /// Event types to receive.
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::value::WebhookEventList>)]
    pub events: Vec<String>,
    /// Free text.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Description>)]
    pub description: Option<String>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

impl From<CreateWebhookBody> for CreateWebhook {
    fn from(b: CreateWebhookBody) -> Self {
        CreateWebhook {
            url: b.url,
            events: b.events,
            description: b.description,
            enabled: b.enabled,
        }
    }
}

/// Body of `PATCH /webhooks/{id}`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateWebhook)]
pub struct UpdateWebhookBody {
    /// New URL.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::WebhookUrlShape>)]
    pub url: Option<String>,
    /// New event types (replaces the list).
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::WebhookEventList>)]
    pub events: Option<Vec<String>>,
    /// New description.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Description>)]
    pub description: Option<String>,
    /// Turn deliveries on or off.
    #[serde(default)]
    pub enabled: Option<bool>,
}

impl From<UpdateWebhookBody> for UpdateWebhook {
    fn from(b: UpdateWebhookBody) -> Self {
        UpdateWebhook {
            url: b.url,
            events: b.events,
            description: b.description,
            enabled: b.enabled,
        }
    }
}
