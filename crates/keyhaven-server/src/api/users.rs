//! `/v1/organizations/{org}/users`.

use axum::extract::State;
use axum::http::StatusCode;
use keyhaven_core::user::UserStatus;
use keyhaven_store::UserFilter;

use super::error::{ApiError, CommonErrors, Json};
use super::params::{path_id, PathParams, QueryParams};
use super::views::{ListView, UserView};
use crate::app::AppState;
use crate::auth::extract::Auth;
use keyhaven_service::users::{CreateUser, UpdateUser};

/// Lists users [users.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/users", tag = "users",
    params(("org" = String, Path), ("status" = Option<String>, Query, description = "active or inactive"),
        ("role" = Option<String>, Query), ("q" = Option<String>, Query, description = "substring of email or display name"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ListView<UserView>), CommonErrors), security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    q: QueryParams,
) -> Result<axum::Json<ListView<UserView>>, ApiError> {
    q.only(&["status", "role", "q", "limit", "cursor"])?;
    let filter = UserFilter {
        status: q
            .get("status")?
            .map(|v| UserStatus::parse(v, "status"))
            .transpose()?,
        role: q.parsed("role", keyhaven_core::value::RoleName::parse)?,
        q: q.text("q")?,
    };
    let page = q.page()?;
    let l = s.service.list_users(&auth.caller, &filter, &page).await?;
    Ok(axum::Json(ListView::from_listing(l, |u| UserView::from(u))))
}

/// Creates a user [users.create].
#[utoipa::path(post, path = "/v1/organizations/{org}/users", tag = "users", params(("org" = String, Path)),
    request_body = CreateUserBody,
    responses((status = 201, body = UserView), CommonErrors), security(("bearer" = [])))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    Json(body): Json<CreateUserBody>,
) -> Result<(StatusCode, axum::Json<UserView>), ApiError> {
    let input = CreateUser::from(body);
    let u = s.service.create_user(&auth.caller, input).await?;
    Ok((StatusCode::CREATED, axum::Json((&u).into())))
}

/// One user [users.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/users/{id}", tag = "users",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = UserView), CommonErrors), security(("bearer" = [])))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
) -> Result<axum::Json<UserView>, ApiError> {
    let u = s
        .service
        .get_user(&auth.caller, &path_id(&id, "user")?)
        .await?;
    Ok(axum::Json((&u).into()))
}

/// Changes display name, roles or status [users.update].
#[utoipa::path(patch, path = "/v1/organizations/{org}/users/{id}", tag = "users",
    params(("org" = String, Path), ("id" = String, Path)), request_body = UpdateUserBody,
    responses((status = 200, body = UserView), CommonErrors), security(("bearer" = [])))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    Json(body): Json<UpdateUserBody>,
) -> Result<axum::Json<UserView>, ApiError> {
    let u = s
        .service
        .update_user(&auth.caller, &path_id(&id, "user")?, UpdateUser::from(body))
        .await?;
    Ok(axum::Json((&u).into()))
}

/// Deletes a user [users.delete].
#[utoipa::path(delete, path = "/v1/organizations/{org}/users/{id}", tag = "users",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "deleted"), CommonErrors), security(("bearer" = [])))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.service
        .delete_user(&auth.caller, &path_id(&id, "user")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of the admin password reset.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    /// The new password (≥ 12 characters).
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::value::NewPasswordShape>)]
    pub password: String,
}

/// Sets another user's password [users.reset_password].
#[utoipa::path(post, path = "/v1/organizations/{org}/users/{id}/reset-password", tag = "users",
    params(("org" = String, Path), ("id" = String, Path)), request_body = ResetPassword,
    responses((status = 204, description = "password changed"), CommonErrors), security(("bearer" = [])))]
pub async fn reset_password(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    Json(body): Json<ResetPassword>,
) -> Result<StatusCode, ApiError> {
    s.service
        .reset_password(&auth.caller, &path_id(&id, "user")?, &body.password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /users`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateUser)]
pub struct CreateUserBody {
    /// Unique email.
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::value::Email>)]
    pub email: String,
    /// Name shown in the console.
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::value::DisplayName>)]
    pub display_name: String,
    /// Initial password (≥ 12 characters).
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::value::NewPasswordShape>)]
    pub password: keyhaven_core::key_format::Secret,
    /// Role names (required; may be empty).
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::value::RoleNames>)]
    pub roles: Vec<String>,
}

impl From<CreateUserBody> for CreateUser {
    fn from(b: CreateUserBody) -> Self {
        CreateUser {
            email: b.email,
            display_name: b.display_name,
            password: b.password,
            roles: b.roles,
        }
    }
}

/// Body of `PATCH /users/{id}`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateUser)]
pub struct UpdateUserBody {
    /// New display name.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::DisplayName>)]
    pub display_name: Option<String>,
    /// New role names (replaces the list).
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::RoleNames>)]
    pub roles: Option<Vec<String>>,
    /// `active` or `inactive`.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::user::UserStatus>)]
    pub status: Option<keyhaven_core::user::UserStatus>,
}

impl From<UpdateUserBody> for UpdateUser {
    fn from(b: UpdateUserBody) -> Self {
        UpdateUser {
            display_name: b.display_name,
            roles: b.roles,
            status: b.status,
        }
    }
}
