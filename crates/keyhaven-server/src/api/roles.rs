//! `/v1/permissions` and `/v1/organizations/{org}/roles`.

use axum::extract::State;
use axum::http::StatusCode;
use keyhaven_core::permission::Permission;

use super::error::{ApiError, CommonErrors, Json};
use super::params::{PathParams, QueryParams};
use super::views::{ListView, PermissionView, RoleView};
use crate::app::AppState;
use crate::auth::extract::Auth;
use keyhaven_service::roles::{CreateRole, UpdateRole};

/// The management permission catalog (any authenticated caller).
#[utoipa::path(get, path = "/v1/permissions", tag = "roles",
    responses((status = 200, body = ListView<PermissionView>), CommonErrors), security(("bearer" = [])))]
pub async fn catalog(_auth: Auth) -> axum::Json<ListView<PermissionView>> {
    axum::Json(ListView {
        data: Permission::ALL
            .iter()
            .map(|p| PermissionView {
                name: p.as_str().to_string(),
                description: p.description().to_string(),
            })
            .collect(),
        has_more: false,
        next_cursor: None,
    })
}

/// The roles, in name order [roles.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/roles", tag = "roles",
    params(("org" = String, Path), ("limit" = Option<i64>, Query, minimum = 1, maximum = 100), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ListView<RoleView>), CommonErrors), security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    q: QueryParams,
) -> Result<axum::Json<ListView<RoleView>>, ApiError> {
    q.only(&["limit", "cursor"])?;
    let l = s
        .service
        .list_roles_page(&auth.caller, &q.page_by_name()?)
        .await?;
    Ok(axum::Json(ListView::from_listing(l, |r| RoleView::from(r))))
}

/// Creates a custom role [roles.manage].
#[utoipa::path(post, path = "/v1/organizations/{org}/roles", tag = "roles", params(("org" = String, Path)),
    request_body = CreateRoleBody, responses((status = 201, body = RoleView), CommonErrors), security(("bearer" = [])))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    Json(body): Json<CreateRoleBody>,
) -> Result<(StatusCode, axum::Json<RoleView>), ApiError> {
    let input = CreateRole::from(body);
    let r = s.service.create_role(&auth.caller, input).await?;
    Ok((StatusCode::CREATED, axum::Json((&r).into())))
}

/// One role [roles.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/roles/{name}", tag = "roles",
    params(("org" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = RoleView), CommonErrors), security(("bearer" = [])))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, name)): PathParams<(String, String)>,
) -> Result<axum::Json<RoleView>, ApiError> {
    let r = s.service.get_role(&auth.caller, &name).await?;
    Ok(axum::Json((&r).into()))
}

/// Changes a custom role [roles.manage]; built-in roles → 409.
#[utoipa::path(patch, path = "/v1/organizations/{org}/roles/{name}", tag = "roles",
    params(("org" = String, Path), ("name" = String, Path)), request_body = UpdateRoleBody,
    responses((status = 200, body = RoleView), CommonErrors), security(("bearer" = [])))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, name)): PathParams<(String, String)>,
    Json(body): Json<UpdateRoleBody>,
) -> Result<axum::Json<RoleView>, ApiError> {
    let r = s
        .service
        .update_role(&auth.caller, &name, UpdateRole::from(body))
        .await?;
    Ok(axum::Json((&r).into()))
}

/// Deletes a custom role nobody holds [roles.manage].
#[utoipa::path(delete, path = "/v1/organizations/{org}/roles/{name}", tag = "roles",
    params(("org" = String, Path), ("name" = String, Path)),
    responses((status = 204, description = "deleted"), CommonErrors), security(("bearer" = [])))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, name)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.service.delete_role(&auth.caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /roles`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateRole)]
pub struct CreateRoleBody {
    /// Unique name, `^[a-z0-9][a-z0-9_.-]{0,63}$`.
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::value::RoleName>)]
    pub name: String,
    /// What it is for.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Description>)]
    pub description: Option<String>,
    /// Management permissions and application scopes.
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::value::RolePermissions>)]
    pub permissions: Vec<String>,
    /// Regular expression key and service account names must match, searched for as
    /// written: it matches anywhere in the name unless `^` / `$` anchor it
    /// (`^ci-` = starts with `ci-`).
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::key_name_pattern_field)]
    pub key_name_pattern: Option<String>,
}

impl From<CreateRoleBody> for CreateRole {
    fn from(b: CreateRoleBody) -> Self {
        CreateRole {
            name: b.name,
            description: b.description,
            permissions: b.permissions,
            key_name_pattern: b.key_name_pattern,
        }
    }
}

/// Body of `PATCH /roles/{name}`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateRole)]
pub struct UpdateRoleBody {
    /// New description.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Description>)]
    pub description: Option<String>,
    /// New permissions (replaces the list).
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::RolePermissions>)]
    pub permissions: Option<Vec<String>>,
    /// New pattern (searched for as written; `^` / `$` anchor it); `null` (or `""`)
    /// removes it. Changing it needs every management permission the role grants.
    #[serde(default, deserialize_with = "super::patch::double_option")]
    #[schema(schema_with = crate::api::schema::key_name_pattern_field)]
    pub key_name_pattern: Option<Option<String>>,
}

impl From<UpdateRoleBody> for UpdateRole {
    fn from(b: UpdateRoleBody) -> Self {
        UpdateRole {
            description: b.description,
            permissions: b.permissions,
            key_name_pattern: b.key_name_pattern,
        }
    }
}
