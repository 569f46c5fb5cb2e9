//! `/v1/organizations/{org}/api-keys` and `/metrics`.

use axum::extract::State;
use axum::http::StatusCode;
use keyhaven_core::api_key::KeyStatus;
use keyhaven_store::ApiKeyFilter;

use super::error::{ApiError, CommonErrors, Json};
use super::params::{path_id, PathParams, QueryParams};
use super::views::{ApiKeyView, ListView};
use crate::app::AppState;
use crate::auth::extract::Auth;
use keyhaven_service::api_keys::{
    BatchDeleted, CreateApiKey, DailyUsage, Metrics, OwnerRef, RegenerateApiKey, UpdateApiKey,
};

/// Lists keys [api_keys.view]; filters combine with AND.
#[utoipa::path(get, path = "/v1/organizations/{org}/api-keys", tag = "api keys",
    params(("org" = String, Path), ("status" = Option<String>, Query, description = "active, revoked or expired"),
        ("role" = Option<String>, Query), ("tag" = Option<String>, Query), ("owner_id" = Option<String>, Query),
        ("external_id" = Option<String>, Query, description = "only keys with this external_id"),
        ("q" = Option<String>, Query, description = "substring of name or description"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ListView<ApiKeyView>), CommonErrors), security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    q: QueryParams,
) -> Result<axum::Json<ListView<ApiKeyView>>, ApiError> {
    q.only(&[
        "status",
        "role",
        "tag",
        "owner_id",
        "external_id",
        "q",
        "limit",
        "cursor",
    ])?;
    let now = s.service.now();
    let filter = ApiKeyFilter {
        status: q
            .get("status")?
            .map(|v| KeyStatus::parse(v, "status"))
            .transpose()?,
        role: q.parsed("role", keyhaven_core::value::RoleName::parse)?,
        tag: q.parsed("tag", keyhaven_core::value::Tag::parse)?,
        owner_id: q.parsed("owner_id", keyhaven_core::id::Id::parse)?,
        q: q.text("q")?,
        external_id: q.parsed("external_id", keyhaven_core::value::ExternalId::parse)?,
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
    request_body = CreateApiKeyBody, responses((status = 201, body = ApiKeyView), CommonErrors), security(("bearer" = [])))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    Json(body): Json<CreateApiKeyBody>,
) -> Result<(StatusCode, axum::Json<ApiKeyView>), ApiError> {
    let input = CreateApiKey::from(body);
    let (k, perms, secret) = s.service.create_api_key(&auth.caller, input).await?;
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

/// Changes a key; absent fields stay, `null` clears `ratelimit`, `ratelimits`, `remaining` / `credits` [api_keys.manage].
#[utoipa::path(patch, path = "/v1/organizations/{org}/api-keys/{id}", tag = "api keys",
    params(("org" = String, Path), ("id" = String, Path)), request_body = UpdateApiKeyBody,
    responses((status = 200, body = ApiKeyView), CommonErrors), security(("bearer" = [])))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    Json(body): Json<UpdateApiKeyBody>,
) -> Result<axum::Json<ApiKeyView>, ApiError> {
    let (k, p) = s
        .service
        .update_api_key(
            &auth.caller,
            &path_id(&id, "API key")?,
            UpdateApiKey::from(body),
        )
        .await?;
    Ok(axum::Json(ApiKeyView::new(&k, s.service.now(), p)))
}

/// Replaces the secret (same id); `expires_at` is required [api_keys.manage].
#[utoipa::path(post, path = "/v1/organizations/{org}/api-keys/{id}/regenerate", tag = "api keys",
    params(("org" = String, Path), ("id" = String, Path)), request_body = RegenerateApiKeyBody,
    responses((status = 200, body = ApiKeyView), CommonErrors), security(("bearer" = [])))]
pub async fn regenerate(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    Json(body): Json<RegenerateApiKeyBody>,
) -> Result<axum::Json<ApiKeyView>, ApiError> {
    let (k, p, secret) = s
        .service
        .regenerate_api_key(
            &auth.caller,
            &path_id(&id, "API key")?,
            RegenerateApiKey::try_from(body)?,
        )
        .await?;
    let mut v = ApiKeyView::new(&k, s.service.now(), p);
    v.key = Some(secret.expose().to_string());
    Ok(axum::Json(v))
}

/// Body of `POST /api-keys/{id}/credits`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AdjustCredits)]
pub struct AdjustCreditsBody {
    /// `set`, `increment` or `decrement`.
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::usage_control::CreditOp>)]
    pub op: keyhaven_core::usage_control::CreditOp,
    /// 0..=1,000,000,000,000.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub value: i64,
}

/// The balance after an adjustment.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CreditsBalance {
    /// Credits left.
    pub remaining: i64,
}

/// Sets, increments or decrements a key's credit balance (audited with the balance
/// before and after; every node sees it at once) [api_keys.manage].
#[utoipa::path(post, path = "/v1/organizations/{org}/api-keys/{id}/credits", tag = "api keys",
    params(("org" = String, Path), ("id" = String, Path)), request_body = AdjustCreditsBody,
    responses((status = 200, body = CreditsBalance), CommonErrors), security(("bearer" = [])))]
pub async fn credits(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    Json(body): Json<AdjustCreditsBody>,
) -> Result<axum::Json<CreditsBalance>, ApiError> {
    let remaining = s
        .service
        .adjust_credits(&auth.caller, &path_id(&id, "API key")?, body.op, body.value)
        .await?;
    Ok(axum::Json(CreditsBalance { remaining }))
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
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchDelete {
    /// 1 to 100 key ids.
    #[schema(schema_with = batch_ids)]
    pub ids: Vec<String>,
}

/// 1 to 100 ids.
fn batch_ids() -> utoipa::openapi::schema::Schema {
    use keyhaven_core::value::{Described, IdShape, Shape};
    crate::api::schema::of_shape(
        &Shape::List {
            max_items: 100,
            min_items: 1,
            item: Box::new(IdShape::shape()),
        },
        false,
    )
}

/// Deletes up to 100 keys [api_keys.manage].
#[utoipa::path(post, path = "/v1/organizations/{org}/api-keys/batch-delete", tag = "api keys",
    params(("org" = String, Path)), request_body = BatchDelete,
    responses((status = 200, body = BatchDeletedView), CommonErrors), security(("bearer" = [])))]
pub async fn batch_delete(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    Json(body): Json<BatchDelete>,
) -> Result<axum::Json<BatchDeletedView>, ApiError> {
    // Every entry is an id: anything else is a mistake in the request, not a key that
    // does not exist.
    for (i, id) in body.ids.iter().enumerate() {
        keyhaven_core::id::Id::parse(id, &format!("ids[{i}]"))?;
    }
    Ok(axum::Json(
        s.service
            .batch_delete_api_keys(&auth.caller, &body.ids)
            .await?
            .into(),
    ))
}

/// The daily usage answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UsageView {
    /// One row per day, oldest first, zero days included.
    pub data: Vec<DailyUsageView>,
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
    Ok(axum::Json(UsageView {
        data: data.into_iter().map(Into::into).collect(),
    }))
}

/// Dashboard numbers [api_keys.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/metrics", tag = "api keys", params(("org" = String, Path)),
    responses((status = 200, body = MetricsView), CommonErrors), security(("bearer" = [])))]
pub async fn metrics(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
) -> Result<axum::Json<MetricsView>, ApiError> {
    Ok(axum::Json(s.service.metrics(&auth.caller).await?.into()))
}

/// `{type, id}` naming a key's owner.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OwnerInput)]
pub struct OwnerRefBody {
    /// `service_account` (or `user`, for one's own personal key).
    #[serde(rename = "type")]
    #[schema(schema_with = owner_kinds)]
    pub kind: keyhaven_core::principal::PrincipalKind,
    /// The owner's id.
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::value::IdShape>)]
    pub id: String,
}

/// The kinds of principal that may own a key.
fn owner_kinds() -> utoipa::openapi::schema::Schema {
    crate::api::schema::of_shape(
        &keyhaven_core::value::Shape::OneOf(&["service_account", "user"]),
        false,
    )
}

impl From<OwnerRefBody> for OwnerRef {
    fn from(b: OwnerRefBody) -> Self {
        OwnerRef {
            kind: b.kind,
            id: b.id,
        }
    }
}

/// Body of `POST /api-keys`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateApiKey)]
pub struct CreateApiKeyBody {
    /// Required, 1–100 characters, unique in the organization.
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::value::KeyName>)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Description>)]
    pub description: Option<String>,
    /// ≤ 20 tags.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Tags>)]
    pub tags: Option<Vec<String>>,
    /// Role names.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::RoleNames>)]
    pub roles: Option<Vec<String>>,
    /// Extra permissions.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Scopes>)]
    pub scopes: Option<Vec<String>>,
    /// A service account; default: the caller (personal) or the calling key's owner.
    #[serde(default)]
    pub owner: Option<OwnerRefBody>,
    /// Expiry instant (future).
    #[serde(default, with = "keyhaven_core::time::serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<keyhaven_core::time::Timestamp>,
    /// Or expiry in days from now.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<i64>,
    /// The limit named `default` (kept from before named limits).
    #[serde(default)]
    #[schema(value_type = Option<RateLimitInput>)]
    pub ratelimit: Option<keyhaven_core::api_key::RateLimit>,
    /// Up to 10 named limits.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub ratelimits: Option<Vec<super::views::NamedLimitView>>,
    /// The credit balance alone (the same number as `credits.remaining`).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub remaining: Option<i64>,
    /// Credits with an optional refill and low threshold.
    #[serde(default)]
    pub credits: Option<super::views::CreditsView>,
    /// Client networks allowed.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Networks>)]
    pub allowed_cidrs: Option<Vec<String>>,
    /// A JSON object ≤ 4 KiB.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The id of the customer or system in the caller's world (1–255 characters).
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::ExternalId>)]
    pub external_id: Option<String>,
    /// False to create the key turned off (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

impl From<CreateApiKeyBody> for CreateApiKey {
    fn from(b: CreateApiKeyBody) -> Self {
        CreateApiKey {
            name: b.name,
            description: b.description,
            tags: b.tags,
            roles: b.roles,
            scopes: b.scopes,
            owner: b.owner.map(Into::into),
            expires_at: b.expires_at,
            expires_in_days: b.expires_in_days,
            ratelimit: b.ratelimit,
            ratelimits: b
                .ratelimits
                .map(|l| l.into_iter().map(Into::into).collect()),
            remaining: b.remaining,
            credits: b.credits.map(Into::into),
            allowed_cidrs: b.allowed_cidrs,
            metadata: b.metadata,
            external_id: b.external_id,
            enabled: b.enabled,
        }
    }
}

/// `{limit, duration_ms}`: at most `limit` verifications per `duration_ms`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitInput {
    /// 1..=1,000,000,000.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub limit: i64,
    /// 1000..=2,592,000,000 (30 days).
    #[schema(minimum = 1000, maximum = 2_592_000_000_i64)]
    pub duration_ms: i64,
}

/// Body of `PATCH /api-keys/{id}`: absent fields stay, `null` clears optional ones.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateApiKey)]
pub struct UpdateApiKeyBody {
    /// New name.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::KeyName>)]
    pub name: Option<String>,
    /// New description.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Description>)]
    pub description: Option<String>,
    /// New tags (replaces the list).
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Tags>)]
    pub tags: Option<Vec<String>>,
    /// New roles (replaces the list).
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::RoleNames>)]
    pub roles: Option<Vec<String>>,
    /// New scopes (replaces the list).
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Scopes>)]
    pub scopes: Option<Vec<String>>,
    /// New `default` limit, or `null` to remove it.
    #[serde(default, deserialize_with = "super::patch::double_option")]
    #[schema(value_type = Option<RateLimitInput>)]
    pub ratelimit: Option<Option<keyhaven_core::api_key::RateLimit>>,
    /// New named limits (replaces the list), or `null` for none.
    #[serde(default, deserialize_with = "super::patch::double_option")]
    #[schema(value_type = Option<Vec<super::views::NamedLimitView>>, max_items = 10)]
    pub ratelimits: Option<Option<Vec<super::views::NamedLimitView>>>,
    /// A new balance (sets it), or `null` for unlimited.
    #[serde(default, deserialize_with = "super::patch::double_option")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub remaining: Option<Option<i64>>,
    /// New credits (replaces them), or `null` for unlimited.
    #[serde(default, deserialize_with = "super::patch::double_option")]
    #[schema(value_type = Option<super::views::CreditsView>)]
    pub credits: Option<Option<super::views::CreditsView>>,
    /// New allowed networks (replaces the list).
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Networks>)]
    pub allowed_cidrs: Option<Vec<String>>,
    /// New metadata object; `null` clears it (to `{}`).
    #[serde(default, deserialize_with = "super::patch::double_option")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<serde_json::Value>>,
    /// New `external_id`, or `null` to clear it.
    #[serde(default, deserialize_with = "super::patch::double_option")]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::ExternalId>)]
    pub external_id: Option<Option<String>>,
    /// `false` turns the key off without revoking it (verification answers
    /// `DISABLED`); `true` turns it back on.
    #[serde(default)]
    pub enabled: Option<bool>,
}

impl From<UpdateApiKeyBody> for UpdateApiKey {
    fn from(b: UpdateApiKeyBody) -> Self {
        UpdateApiKey {
            name: b.name,
            description: b.description,
            tags: b.tags,
            roles: b.roles,
            scopes: b.scopes,
            ratelimit: b.ratelimit,
            ratelimits: b
                .ratelimits
                .map(|o| o.map(|l| l.into_iter().map(Into::into).collect())),
            remaining: b.remaining,
            credits: b.credits.map(|o| o.map(Into::into)),
            allowed_cidrs: b.allowed_cidrs,
            metadata: b.metadata,
            external_id: b.external_id,
            enabled: b.enabled,
        }
    }
}

/// Body of `POST /api-keys/{id}/regenerate`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RegenerateApiKey)]
pub struct RegenerateApiKeyBody {
    /// Required: the new expiry, or `null` for never.
    #[serde(deserialize_with = "super::patch::double_option", default)]
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub expires_at: Option<Option<String>>,
    /// Seconds the old secret keeps verifying (0–604800).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604_800)]
    pub grace_period_seconds: Option<i64>,
}

impl TryFrom<RegenerateApiKeyBody> for RegenerateApiKey {
    type Error = ApiError;

    fn try_from(b: RegenerateApiKeyBody) -> Result<Self, ApiError> {
        let expires_at = match b.expires_at {
            None => None,
            Some(None) => Some(None),
            Some(Some(s)) => Some(Some(
                keyhaven_core::time::parse_rfc3339(&s, "expires_at")
                    .map_err(keyhaven_service::ServiceError::from)?,
            )),
        };
        Ok(RegenerateApiKey {
            expires_at,
            grace_period_seconds: b.grace_period_seconds,
        })
    }
}

/// The dashboard numbers.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Metrics)]
pub struct MetricsView {
    /// Every key.
    pub total_keys: i64,
    /// Neither revoked nor expired.
    pub active_keys: i64,
    /// Expired.
    pub expired_keys: i64,
    /// Revoked.
    pub revoked_keys: i64,
    /// Verifications since 00:00 UTC.
    pub api_calls_today: i64,
}

impl From<Metrics> for MetricsView {
    fn from(v: Metrics) -> Self {
        MetricsView {
            total_keys: v.total_keys,
            active_keys: v.active_keys,
            expired_keys: v.expired_keys,
            revoked_keys: v.revoked_keys,
            api_calls_today: v.api_calls_today,
        }
    }
}

/// Verifications of one key on one UTC day.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = DailyUsage)]
pub struct DailyUsageView {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Successful verifications.
    pub valid: i64,
    /// Refused verifications.
    pub invalid: i64,
}

impl From<DailyUsage> for DailyUsageView {
    fn from(v: DailyUsage) -> Self {
        DailyUsageView {
            date: v.date,
            valid: v.valid,
            invalid: v.invalid,
        }
    }
}

/// Result of a batch delete.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = BatchDeleted)]
pub struct BatchDeletedView {
    /// Ids that were deleted.
    pub deleted: Vec<String>,
    /// Ids that did not exist in the organization.
    pub not_found: Vec<String>,
}

impl From<BatchDeleted> for BatchDeletedView {
    fn from(v: BatchDeleted) -> Self {
        BatchDeletedView {
            deleted: v.deleted,
            not_found: v.not_found,
        }
    }
}

/// Body of `POST /api-keys/import`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ImportApiKeys)]
pub struct ImportKeysBody {
    /// Up to 1,000 items; each is a `CreateApiKey` body plus exactly one of `key` (the
    /// plain key, 16–256 printable ASCII characters) and `hash` (`{"algorithm":
    /// "sha256"|"sha512"|"bcrypt"|"argon2id"|"pbkdf2_sha256", "value", "lookup"?:
    /// {"prefix"}}`), and optionally `revoked` and `created_at` (the `ImportKeyItem`
    /// schema). Each item is checked on its own: one that is not valid is reported in
    /// `errors` with its index, and the others are imported.
    #[schema(value_type = Vec<Object>, max_items = 1000)]
    pub keys: Vec<serde_json::Value>,
    /// Check everything and report, writing nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What an import item adds to a `CreateApiKey` body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct ImportKeyItem {
    /// Required, 1–100 characters, unique in the organization.
    pub name: String,
    /// The plain key (stored as its SHA-256 digest, never kept).
    #[schema(min_length = 16, max_length = 256)]
    pub key: Option<String>,
    /// Or the old system's hash.
    pub hash: Option<ImportHashBody>,
    /// Import the key revoked.
    pub revoked: Option<bool>,
    /// When the old system made it.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<String>,
}

/// The old system's hash of a key.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportHashBody {
    /// `sha256`, `sha512`, `bcrypt`, `argon2id` or `pbkdf2_sha256`.
    pub algorithm: String,
    /// The stored hash: a digest in hex, base64 or base64url (`sha512$$<hex>` as
    /// djangorestframework-api-key stores it), or the slow hash's own string.
    #[schema(min_length = 1, max_length = 1024)]
    pub value: String,
    /// How the key is found: required for slow hashes.
    #[serde(default)]
    pub lookup: Option<ImportLookupBody>,
}

/// `{"prefix"}`: the part of the key before its first separator, stored in clear.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportLookupBody {
    /// The clear prefix.
    #[schema(min_length = 1, max_length = 64)]
    pub prefix: String,
}

/// One imported item.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ImportedItem {
    /// Its position in `keys`.
    pub index: usize,
    /// The new key's id.
    pub id: String,
}

/// One refused item.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ImportItemError {
    /// Its position in `keys`.
    pub index: usize,
    /// Machine-readable code.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// The parameter at fault, within the item.
    pub param: Option<String>,
}

/// The answer of an import.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ImportReportView {
    /// What was imported (in a dry run: what would be).
    pub imported: Vec<ImportedItem>,
    /// What was refused, with why.
    pub errors: Vec<ImportItemError>,
    /// Whether nothing was written.
    pub dry_run: bool,
}

fn item_error(index: usize, e: ApiError) -> ImportItemError {
    ImportItemError {
        index,
        code: e.info.code,
        message: e.info.message,
        param: e.info.param,
    }
}

/// Reads one import item (of the API or of `keyhaven admin import-keys`): the import
/// fields, then the rest as a create body.
pub fn import_item(v: serde_json::Value) -> Result<keyhaven_service::import::ImportItem, ApiError> {
    let serde_json::Value::Object(mut m) = v else {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "each item must be a JSON object",
            None,
        ));
    };
    let plain = match m.remove("key") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(keyhaven_core::key_format::Secret::new(s)),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "key must be a string",
                Some("key"),
            ))
        }
    };
    let hash = match m.remove("hash") {
        None | Some(serde_json::Value::Null) => None,
        Some(h) => {
            let bytes = serde_json::to_vec(&h).map_err(|_| ApiError::internal())?;
            let h: ImportHashBody = super::error::parse_json_owned(&bytes).map_err(|mut e| {
                e.info.param = Some(match e.info.param.take() {
                    Some(p) => format!("hash.{p}"),
                    None => "hash".to_string(),
                });
                e
            })?;
            Some(keyhaven_service::import::HashInput {
                algorithm: h.algorithm,
                value: h.value,
                prefix: h.lookup.map(|l| l.prefix),
            })
        }
    };
    let revoked = match m.remove("revoked") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "revoked must be true or false",
                Some("revoked"),
            ))
        }
    };
    let created_at = match m.remove("created_at") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(
            keyhaven_core::time::parse_rfc3339(&s, "created_at")
                .map_err(keyhaven_service::ServiceError::from)?,
        ),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "created_at must be an RFC 3339 date-time",
                Some("created_at"),
            ))
        }
    };
    let rest =
        serde_json::to_vec(&serde_json::Value::Object(m)).map_err(|_| ApiError::internal())?;
    let body: CreateApiKeyBody = super::error::parse_json_owned(&rest)?;
    Ok(keyhaven_service::import::ImportItem {
        key: body.into(),
        plain,
        hash,
        revoked,
        created_at,
    })
}

/// Reads one line of JSON Lines as an import item (`keyhaven admin import-keys` and the
/// console's import screen).
pub fn import_line(line: &str) -> Result<keyhaven_service::import::ImportItem, ApiError> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
        let msg = e.to_string();
        let clean = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        ApiError::bad_request(
            "invalid_json",
            format!("the line is not valid JSON: {clean}"),
            None,
        )
    })?;
    import_item(v)
}

/// The largest import body (1,000 items).
pub const MAX_IMPORT_BODY: usize = 8 * 1024 * 1024;

/// Imports keys from another system, keeping their secrets: plain keys or stored
/// hashes. One bad item never stops the others; `dry_run` reports without writing.
/// Each imported key is audited (`api_key.import`) [api_keys.create].
#[utoipa::path(post, path = "/v1/organizations/{org}/api-keys/import", tag = "api keys", params(("org" = String, Path)),
    request_body = ImportKeysBody, responses((status = 200, body = ImportReportView), CommonErrors), security(("bearer" = [])))]
pub async fn import(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    Json(body): Json<ImportKeysBody>,
) -> Result<axum::Json<ImportReportView>, ApiError> {
    if body.keys.len() > keyhaven_service::import::MAX_ITEMS {
        return Err(ApiError::bad_request(
            "too_many_keys",
            "an import holds at most 1000 keys",
            Some("keys"),
        ));
    }
    let mut items = Vec::with_capacity(body.keys.len());
    let mut positions = Vec::with_capacity(body.keys.len());
    let mut errors = Vec::new();
    for (index, v) in body.keys.into_iter().enumerate() {
        match import_item(v) {
            Ok(item) => {
                items.push(item);
                positions.push(index);
            }
            Err(e) => errors.push(item_error(index, e)),
        }
    }
    let report = s
        .service
        .import_api_keys(&auth.caller, items, body.dry_run)
        .await?;
    let imported = report
        .imported
        .into_iter()
        .map(|(i, id)| ImportedItem {
            index: positions.get(i).copied().unwrap_or(i),
            id: id.to_string(),
        })
        .collect();
    errors.extend(
        report
            .errors
            .into_iter()
            .map(|(i, e)| item_error(positions.get(i).copied().unwrap_or(i), ApiError::from(e))),
    );
    errors.sort_by_key(|e| e.index);
    Ok(axum::Json(ImportReportView {
        imported,
        errors,
        dry_run: body.dry_run,
    }))
}

/// Body of `POST /v1/keys/whoami`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhoamiBody {
    /// The key string (anything that is not a key is 404).
    pub key: String,
}

/// The key a secret belongs to, as `GET /api-keys/{id}` shows it, for support desks;
/// another organization's key or no key is 404. Audited (`api_key.whoami`)
/// [api_keys.view].
#[utoipa::path(post, path = "/v1/keys/whoami", tag = "api keys", request_body = WhoamiBody,
    responses((status = 200, body = ApiKeyView), CommonErrors), security(("bearer" = [])))]
pub async fn whoami(
    State(s): State<AppState>,
    auth: Auth,
    Json(body): Json<WhoamiBody>,
) -> Result<axum::Json<ApiKeyView>, ApiError> {
    let (k, p) = s.service.whoami(&auth.caller, &body.key).await?;
    Ok(axum::Json(ApiKeyView::new(&k, s.service.now(), p)))
}
