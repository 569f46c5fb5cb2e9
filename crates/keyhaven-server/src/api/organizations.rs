//! `GET|PATCH /v1/organizations/{org}`.

use axum::extract::State;

use super::error::{ApiError, CommonErrors, Json};
use super::params::PathParams;
use super::views::OrganizationView;
use crate::app::AppState;
use crate::auth::extract::Auth;
use keyhaven_service::organizations::UpdateOrganization;

/// The organization [organization.view].
#[utoipa::path(get, path = "/v1/organizations/{org}", tag = "organization",
    params(("org" = String, Path, description = "organization id")),
    responses((status = 200, body = OrganizationView), CommonErrors), security(("bearer" = [])))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
) -> Result<axum::Json<OrganizationView>, ApiError> {
    let o = s.service.get_organization(&auth.caller).await?;
    Ok(axum::Json((&o).into()))
}

/// Renames the organization or changes its key prefix [organization.manage].
#[utoipa::path(patch, path = "/v1/organizations/{org}", tag = "organization",
    params(("org" = String, Path, description = "organization id")),
    request_body = UpdateOrganizationBody,
    responses((status = 200, body = OrganizationView), CommonErrors), security(("bearer" = [])))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    Json(body): Json<UpdateOrganizationBody>,
) -> Result<axum::Json<OrganizationView>, ApiError> {
    let o = s
        .service
        .update_organization(&auth.caller, UpdateOrganization::from(body))
        .await?;
    Ok(axum::Json((&o).into()))
}

/// Body of `PATCH /organizations/{org}`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateOrganization)]
pub struct UpdateOrganizationBody {
    /// New name.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::OrganizationName>)]
    pub name: Option<String>,
    /// New key prefix for keys created from now on.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::nullable::<keyhaven_core::value::KeyPrefix>)]
    pub key_prefix: Option<String>,
}

impl From<UpdateOrganizationBody> for UpdateOrganization {
    fn from(b: UpdateOrganizationBody) -> Self {
        UpdateOrganization {
            name: b.name,
            key_prefix: b.key_prefix,
        }
    }
}
