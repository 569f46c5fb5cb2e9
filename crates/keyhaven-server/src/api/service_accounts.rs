//! `/v1/organizations/{org}/service-accounts` and their credentials.

use axum::extract::State;
use axum::http::StatusCode;
use keyhaven_core::permission::Permission;
use keyhaven_core::service_account::{ServiceAccountStatus, Transition};
use keyhaven_store::ServiceAccountFilter;

use super::error::{ApiError, CommonErrors, Json};
use super::params::{path_id, PathParams, QueryParams};
use super::views::{
    ApiKeyPermissions, CredentialView, ExpandedPermissions, ListView, ServiceAccountPermissions,
    ServiceAccountView,
};
use crate::app::AppState;
use crate::auth::extract::Auth;
use keyhaven_service::credentials::{CreateCredential, UpdateCredential};
use keyhaven_service::service_accounts::{CreateServiceAccount, UpdateServiceAccount};
use keyhaven_service::Caller;

/// The caller's permissions on service accounts and keys (`expand[]=permissions`).
pub fn expanded(c: &Caller) -> ExpandedPermissions {
    ExpandedPermissions {
        service_accounts: ServiceAccountPermissions {
            view: c.has(Permission::ServiceAccountsView),
            manage: c.has(Permission::ServiceAccountsManage),
        },
        api_keys: ApiKeyPermissions {
            view: c.has(Permission::ApiKeysView),
            create: c.has(Permission::ApiKeysCreate),
            manage: c.has(Permission::ApiKeysManage),
        },
    }
}

fn view(
    sa: &keyhaven_core::service_account::ServiceAccount,
    c: &Caller,
    expand: bool,
) -> ServiceAccountView {
    let mut v = ServiceAccountView::from(sa);
    if expand {
        v.permissions = Some(expanded(c));
    }
    v
}

/// Lists service accounts [service_accounts.view]; archived ones only with
/// `status=archived` or `status=all`.
#[utoipa::path(get, path = "/v1/organizations/{org}/service-accounts", tag = "service accounts",
    params(("org" = String, Path), ("status" = Option<String>, Query, description = "active, suspended, archived or all; default: all but archived"),
        ("q" = Option<String>, Query), ("expand[]" = Option<String>, Query, description = "permissions"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ListView<ServiceAccountView>), CommonErrors), security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    q: QueryParams,
) -> Result<axum::Json<ListView<ServiceAccountView>>, ApiError> {
    q.only(&[
        "status",
        "q",
        "external_id",
        "expand[]",
        "expand",
        "limit",
        "cursor",
    ])?;
    let statuses = match q.get("status")? {
        None => vec![
            ServiceAccountStatus::Active,
            ServiceAccountStatus::Suspended,
        ],
        Some("all") => vec![],
        Some(v) => vec![ServiceAccountStatus::parse(v, "status").map_err(|_| {
            ApiError::bad_request(
                "invalid_status",
                "status must be active, suspended, archived or all",
                Some("status"),
            )
        })?],
    };
    let expand = q.expand_permissions()?;
    let filter = ServiceAccountFilter {
        statuses,
        q: q.text("q")?,
        external_id: q.parsed("external_id", keyhaven_core::value::ExternalId::parse)?,
    };
    let l = s
        .service
        .list_service_accounts(&auth.caller, &filter, &q.page()?)
        .await?;
    Ok(axum::Json(ListView::from_listing(l, |sa| {
        view(sa, &auth.caller, expand)
    })))
}

/// Creates a service account [service_accounts.manage].
#[utoipa::path(post, path = "/v1/organizations/{org}/service-accounts", tag = "service accounts",
    params(("org" = String, Path)), request_body = CreateServiceAccountBody,
    responses((status = 201, body = ServiceAccountView), CommonErrors), security(("bearer" = [])))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    Json(body): Json<CreateServiceAccountBody>,
) -> Result<(StatusCode, axum::Json<ServiceAccountView>), ApiError> {
    let sa = s
        .service
        .create_service_account(&auth.caller, CreateServiceAccount::from(body))
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(view(&sa, &auth.caller, false)),
    ))
}

/// One service account [service_accounts.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/service-accounts/{id}", tag = "service accounts",
    params(("org" = String, Path), ("id" = String, Path), ("expand[]" = Option<String>, Query, description = "permissions")),
    responses((status = 200, body = ServiceAccountView), CommonErrors), security(("bearer" = [])))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    q: QueryParams,
) -> Result<axum::Json<ServiceAccountView>, ApiError> {
    q.only(&["expand[]", "expand"])?;
    let expand = q.expand_permissions()?;
    let sa = s
        .service
        .get_service_account(&auth.caller, &path_id(&id, "service account")?)
        .await?;
    Ok(axum::Json(view(&sa, &auth.caller, expand)))
}

/// Changes name, description or roles [service_accounts.manage].
#[utoipa::path(patch, path = "/v1/organizations/{org}/service-accounts/{id}", tag = "service accounts",
    params(("org" = String, Path), ("id" = String, Path)), request_body = UpdateServiceAccountBody,
    responses((status = 200, body = ServiceAccountView), CommonErrors), security(("bearer" = [])))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    Json(body): Json<UpdateServiceAccountBody>,
) -> Result<axum::Json<ServiceAccountView>, ApiError> {
    let sa = s
        .service
        .update_service_account(
            &auth.caller,
            &path_id(&id, "service account")?,
            UpdateServiceAccount::from(body),
        )
        .await?;
    Ok(axum::Json(view(&sa, &auth.caller, false)))
}

/// Deletes a service account with its keys and credentials [service_accounts.manage].
#[utoipa::path(delete, path = "/v1/organizations/{org}/service-accounts/{id}", tag = "service accounts",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "deleted"), CommonErrors), security(("bearer" = [])))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.service
        .delete_service_account(&auth.caller, &path_id(&id, "service account")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn transition(
    s: AppState,
    auth: Auth,
    id: String,
    t: Transition,
) -> Result<axum::Json<ServiceAccountView>, ApiError> {
    let sa = s
        .service
        .transition_service_account(&auth.caller, &path_id(&id, "service account")?, t)
        .await?;
    Ok(axum::Json(view(&sa, &auth.caller, false)))
}

/// Suspends: its keys and credentials stop verifying [service_accounts.manage].
#[utoipa::path(post, path = "/v1/organizations/{org}/service-accounts/{id}/suspend", tag = "service accounts",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = ServiceAccountView), CommonErrors), security(("bearer" = [])))]
pub async fn suspend(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
) -> Result<axum::Json<ServiceAccountView>, ApiError> {
    transition(s, auth, id, Transition::Suspend).await
}

/// Reactivates a suspended account; archived → 409 [service_accounts.manage].
#[utoipa::path(post, path = "/v1/organizations/{org}/service-accounts/{id}/reactivate", tag = "service accounts",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = ServiceAccountView), CommonErrors), security(("bearer" = [])))]
pub async fn reactivate(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
) -> Result<axum::Json<ServiceAccountView>, ApiError> {
    transition(s, auth, id, Transition::Reactivate).await
}

/// Archives (final): revokes every key and credential [service_accounts.manage].
#[utoipa::path(post, path = "/v1/organizations/{org}/service-accounts/{id}/archive", tag = "service accounts",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = ServiceAccountView), CommonErrors), security(("bearer" = [])))]
pub async fn archive(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
) -> Result<axum::Json<ServiceAccountView>, ApiError> {
    transition(s, auth, id, Transition::Archive).await
}

fn cred_view(
    c: &keyhaven_core::credential::Credential,
    caller: &Caller,
    expand: bool,
) -> CredentialView {
    let mut v = CredentialView::from(c);
    if expand {
        v.permissions = Some(expanded(caller));
    }
    v
}

/// A service account's credentials [service_accounts.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/service-accounts/{id}/credentials", tag = "credentials",
    params(("org" = String, Path), ("id" = String, Path), ("expand[]" = Option<String>, Query, description = "permissions"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ListView<CredentialView>), CommonErrors), security(("bearer" = [])))]
pub async fn list_credentials(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    q: QueryParams,
) -> Result<axum::Json<ListView<CredentialView>>, ApiError> {
    q.only(&["expand[]", "expand", "limit", "cursor"])?;
    let expand = q.expand_permissions()?;
    let l = s
        .service
        .list_credentials_page(&auth.caller, &path_id(&id, "service account")?, &q.page()?)
        .await?;
    Ok(axum::Json(ListView::from_listing(l, |c| {
        cred_view(c, &auth.caller, expand)
    })))
}

/// Creates a credential; the response holds `client_secret`, shown only here
/// [service_accounts.manage].
#[utoipa::path(post, path = "/v1/organizations/{org}/service-accounts/{id}/credentials", tag = "credentials",
    params(("org" = String, Path), ("id" = String, Path)), request_body = CreateCredentialBody,
    responses((status = 201, body = CredentialView), CommonErrors), security(("bearer" = [])))]
pub async fn create_credential(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    Json(body): Json<CreateCredentialBody>,
) -> Result<(StatusCode, axum::Json<CredentialView>), ApiError> {
    let (c, secret) = s
        .service
        .create_credential(
            &auth.caller,
            &path_id(&id, "service account")?,
            CreateCredential::from(body),
        )
        .await?;
    let mut v = CredentialView::from(&c);
    v.client_secret = Some(secret.expose().to_string());
    Ok((StatusCode::CREATED, axum::Json(v)))
}

/// One credential [service_accounts.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/service-accounts/{id}/credentials/{cred}", tag = "credentials",
    params(("org" = String, Path), ("id" = String, Path), ("cred" = String, Path), ("expand[]" = Option<String>, Query)),
    responses((status = 200, body = CredentialView), CommonErrors), security(("bearer" = [])))]
pub async fn get_credential(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id, cred)): PathParams<(String, String, String)>,
    q: QueryParams,
) -> Result<axum::Json<CredentialView>, ApiError> {
    q.only(&["expand[]", "expand"])?;
    let expand = q.expand_permissions()?;
    let c = s
        .service
        .get_credential(
            &auth.caller,
            &path_id(&id, "service account")?,
            &path_id(&cred, "credential")?,
        )
        .await?;
    Ok(axum::Json(cred_view(&c, &auth.caller, expand)))
}

/// Changes a credential's name or description [service_accounts.manage].
#[utoipa::path(patch, path = "/v1/organizations/{org}/service-accounts/{id}/credentials/{cred}", tag = "credentials",
    params(("org" = String, Path), ("id" = String, Path), ("cred" = String, Path)), request_body = UpdateCredentialBody,
    responses((status = 200, body = CredentialView), CommonErrors), security(("bearer" = [])))]
pub async fn update_credential(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id, cred)): PathParams<(String, String, String)>,
    Json(body): Json<UpdateCredentialBody>,
) -> Result<axum::Json<CredentialView>, ApiError> {
    let c = s
        .service
        .update_credential(
            &auth.caller,
            &path_id(&id, "service account")?,
            &path_id(&cred, "credential")?,
            UpdateCredential::from(body),
        )
        .await?;
    Ok(axum::Json(CredentialView::from(&c)))
}

/// Deletes a credential [service_accounts.manage].
#[utoipa::path(delete, path = "/v1/organizations/{org}/service-accounts/{id}/credentials/{cred}", tag = "credentials",
    params(("org" = String, Path), ("id" = String, Path), ("cred" = String, Path)),
    responses((status = 204, description = "deleted"), CommonErrors), security(("bearer" = [])))]
pub async fn delete_credential(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id, cred)): PathParams<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    s.service
        .delete_credential(
            &auth.caller,
            &path_id(&id, "service account")?,
            &path_id(&cred, "credential")?,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /service-accounts/{id}/credentials`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateCredential)]
pub struct CreateCredentialBody {
    /// 1–100 characters.
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::value::CredentialName>)]
    pub name: String,
    /// What it is for.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Description>)]
    pub description: Option<String>,
    /// Expiry (future); none = never.
    #[serde(default, with = "keyhaven_core::time::serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<keyhaven_core::time::Timestamp>,
}

impl From<CreateCredentialBody> for CreateCredential {
    fn from(b: CreateCredentialBody) -> Self {
        CreateCredential {
            name: b.name,
            description: b.description,
            expires_at: b.expires_at,
        }
    }
}

/// Body of `PATCH /service-accounts/{id}/credentials/{cred}`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateCredential)]
pub struct UpdateCredentialBody {
    /// New name.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::CredentialName>)]
    pub name: Option<String>,
    /// New description.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Description>)]
    pub description: Option<String>,
}

impl From<UpdateCredentialBody> for UpdateCredential {
    fn from(b: UpdateCredentialBody) -> Self {
        UpdateCredential {
            name: b.name,
            description: b.description,
        }
    }
}

/// Body of `POST /service-accounts`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateServiceAccount)]
pub struct CreateServiceAccountBody {
    /// 1–100 characters.
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::value::ServiceAccountName>)]
    pub name: String,
    /// What it is for.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Description>)]
    pub description: Option<String>,
    /// Role names.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::RoleNames>)]
    pub roles: Option<Vec<String>>,
    /// Up to 10 rate limits shared by all of its keys.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub ratelimits: Option<Vec<super::views::NamedLimitView>>,
    /// The id of the customer or system in the caller's world (1–255 characters).
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::ExternalId>)]
    pub external_id: Option<String>,
}

impl From<CreateServiceAccountBody> for CreateServiceAccount {
    fn from(b: CreateServiceAccountBody) -> Self {
        CreateServiceAccount {
            name: b.name,
            description: b.description,
            roles: b.roles,
            ratelimits: b
                .ratelimits
                .map(|l| l.into_iter().map(Into::into).collect()),
            external_id: b.external_id,
        }
    }
}

/// Body of `PATCH /service-accounts/{id}`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateServiceAccount)]
pub struct UpdateServiceAccountBody {
    /// New name.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::ServiceAccountName>)]
    pub name: Option<String>,
    /// New description.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::Description>)]
    pub description: Option<String>,
    /// New role names (replaces the list).
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::RoleNames>)]
    pub roles: Option<Vec<String>>,
    /// New shared rate limits (replaces the list), or `null` for none.
    #[serde(default, deserialize_with = "super::patch::double_option")]
    #[schema(value_type = Option<Vec<super::views::NamedLimitView>>, max_items = 10)]
    pub ratelimits: Option<Option<Vec<super::views::NamedLimitView>>>,
    /// New `external_id`, or `null` to clear it.
    #[serde(default, deserialize_with = "super::patch::double_option")]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::ExternalId>)]
    pub external_id: Option<Option<String>>,
}

impl From<UpdateServiceAccountBody> for UpdateServiceAccount {
    fn from(b: UpdateServiceAccountBody) -> Self {
        UpdateServiceAccount {
            name: b.name,
            description: b.description,
            roles: b.roles,
            ratelimits: b
                .ratelimits
                .map(|o| o.map(|l| l.into_iter().map(Into::into).collect())),
            external_id: b.external_id,
        }
    }
}
