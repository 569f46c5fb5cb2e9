//! Roles and the permission catalog.

use keyhaven_core::audit::Action;
use keyhaven_core::permission::{self, Permission};
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::role::{self, Role};
use keyhaven_core::value::{Description, Errors, KeyNamePattern, RoleName, RolePermissions};
use keyhaven_core::{validate, DomainError};
use serde_json::json;

use crate::changes::Changes;
use crate::{duplicate_as_conflict, Caller, Service, ServiceError, ServiceResult};

/// What `POST /roles` carries, as sent: a draft [`NewRole`] parses.
#[derive(Debug, Clone)]
pub struct CreateRole {
    /// Unique name, `^[a-z0-9][a-z0-9_.-]{0,63}$`.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Management permissions and application scopes.
    pub permissions: Vec<String>,
    /// Regular expression key and service account names must match.
    pub key_name_pattern: Option<String>,
}

/// What `PATCH /roles/{name}` carries, as sent: a draft [`RolePatch`] parses.
#[derive(Debug, Clone, Default)]
pub struct UpdateRole {
    /// New description.
    pub description: Option<String>,
    /// New permissions (replaces the list).
    pub permissions: Option<Vec<String>>,
    /// New pattern; `null` (or `""`) removes it.
    pub key_name_pattern: Option<Option<String>>,
}

/// A new custom role, every field parsed.
#[derive(Debug, Clone)]
pub struct NewRole {
    /// Its name.
    pub name: RoleName,
    /// What it is for.
    pub description: Description,
    /// Management permissions and application scopes.
    pub permissions: RolePermissions,
    /// The pattern key and service account names must match, if any.
    pub key_name_pattern: Option<KeyNamePattern>,
}

/// A `key_name_pattern` field: `""` is the same as none.
fn pattern_field(p: Option<&str>) -> Result<Option<KeyNamePattern>, DomainError> {
    match p {
        None | Some("") => Ok(None),
        Some(p) => KeyNamePattern::parse(p, "key_name_pattern").map(Some),
    }
}

impl NewRole {
    /// Parses a draft; every mistake is returned, in field order.
    pub fn parse_all(d: CreateRole) -> Result<Self, Vec<DomainError>> {
        let mut e = Errors::default();
        let name = e.take(RoleName::parse(&d.name, "name"));
        let description = e.take(Description::parse(
            d.description.as_deref().unwrap_or(""),
            "description",
        ));
        let key_name_pattern = e.take(pattern_field(d.key_name_pattern.as_deref()));
        let permissions = e.take(RolePermissions::parse(&d.permissions, "permissions"));
        match (name, description, key_name_pattern, permissions) {
            (Some(name), Some(description), Some(key_name_pattern), Some(permissions)) => {
                Ok(Self {
                    name,
                    description,
                    permissions,
                    key_name_pattern,
                })
            }
            _ => Err(e.into_vec()),
        }
    }
}

parsed_from!(CreateRole => NewRole);

/// A change to a custom role, every field parsed: absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct RolePatch {
    /// New description.
    pub description: Option<Description>,
    /// New permissions.
    pub permissions: Option<RolePermissions>,
    /// New pattern, or `None` inside to remove it.
    pub key_name_pattern: Option<Option<KeyNamePattern>>,
}

impl RolePatch {
    /// Parses a draft; every mistake is returned, in field order.
    pub fn parse_all(d: UpdateRole) -> Result<Self, Vec<DomainError>> {
        let mut e = Errors::default();
        let description = e.take(
            d.description
                .as_deref()
                .map(|x| Description::parse(x, "description"))
                .transpose(),
        );
        let permissions = e.take(
            d.permissions
                .as_deref()
                .map(|p| RolePermissions::parse(p, "permissions"))
                .transpose(),
        );
        let key_name_pattern = e.take(
            d.key_name_pattern
                .map(|p| pattern_field(p.as_deref()))
                .transpose(),
        );
        match (description, permissions, key_name_pattern) {
            (Some(description), Some(permissions), Some(key_name_pattern)) => Ok(Self {
                description,
                permissions,
                key_name_pattern,
            }),
            _ => Err(e.into_vec()),
        }
    }
}

parsed_from!(UpdateRole => RolePatch);

fn role_principal(r: &Role) -> Principal {
    Principal {
        kind: PrincipalKind::Role,
        id: r.name.clone(),
        name: r.name.clone(),
    }
}

/// The no-escalation rule for a role's permissions.
fn check_permissions(caller: &Caller, perms: RolePermissions) -> ServiceResult<Vec<String>> {
    let perms = perms.into_strings();
    permission::check_no_escalation(&caller.permissions, &perms)?;
    Ok(perms)
}

impl Service {
    /// Every role of the organization.
    pub async fn list_roles(&self, caller: &Caller) -> ServiceResult<Vec<Role>> {
        self.authorize(caller, Permission::RolesView, Action::RoleList)
            .await?;
        let mut tx = self.store.read().await?;
        Ok(tx.roles(&caller.org_id).await?)
    }

    /// A page of roles in name order; the cursor is the last name of the page before.
    pub async fn list_roles_page(
        &self,
        caller: &Caller,
        page: &keyhaven_store::Page,
    ) -> ServiceResult<keyhaven_store::Listing<Role>> {
        let mut roles = self.list_roles(caller).await?;
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(crate::page_in_memory(
            roles,
            page,
            |r| r.name.clone(),
            |r, c| r.name.as_str() > c,
        ))
    }

    /// One role.
    pub async fn get_role(&self, caller: &Caller, name: &str) -> ServiceResult<Role> {
        self.authorize(caller, Permission::RolesView, Action::RoleView)
            .await?;
        validate::no_control_chars(name, "name")?;
        let mut tx = self.store.read().await?;
        tx.role(&caller.org_id, name)
            .await?
            .ok_or(ServiceError::NotFound("role"))
    }

    /// Creates a custom role.
    pub async fn create_role(
        &self,
        caller: &Caller,
        input: impl TryInto<NewRole, Error: Into<ServiceError>>,
    ) -> ServiceResult<Role> {
        self.authorize(caller, Permission::RolesManage, Action::RoleCreate)
            .await?;
        // Authorized first: a caller who may not act learns nothing about the input.
        let input: NewRole = input.try_into().map_err(Into::into)?;
        let description = input.description.into_inner();
        let pattern = input.key_name_pattern.map(KeyNamePattern::into_inner);
        let permissions = self
            .or_deny(
                caller,
                Action::RoleCreate,
                check_permissions(caller, input.permissions),
            )
            .await?;
        let input_name = input.name.into_inner();
        if role::is_built_in(&input_name) {
            return Err(
                DomainError::conflict("name_taken", "a built-in role has this name").into(),
            );
        }
        let now = self.now();
        let r = Role {
            name: input_name,
            description,
            permissions,
            key_name_pattern: pattern,
            built_in: false,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.store.begin().await?;
        tx.insert_role(&caller.org_id, &r).await.map_err(|e| {
            duplicate_as_conflict(e, "name_taken", "a role with this name already exists")
        })?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::RoleCreate,
                target: Some(role_principal(&r)),
                changes: json!({ "permissions": r.permissions, "key_name_pattern": r.key_name_pattern }),
                event: None,
            }),
            &[],
        )
        .await?;
        Ok(r)
    }

    /// Changes a custom role.
    pub async fn update_role(
        &self,
        caller: &Caller,
        name: &str,
        input: impl TryInto<RolePatch, Error: Into<ServiceError>>,
    ) -> ServiceResult<Role> {
        self.authorize(caller, Permission::RolesManage, Action::RoleUpdate)
            .await?;
        // Authorized first: a caller who may not act learns nothing about the input.
        let input: RolePatch = input.try_into().map_err(Into::into)?;
        validate::no_control_chars(name, "name")?;
        let description = input.description.map(Description::into_inner);
        let checked = input
            .permissions
            .map(|p| check_permissions(caller, p))
            .transpose();
        let permissions = self.or_deny(caller, Action::RoleUpdate, checked).await?;
        let pattern = input
            .key_name_pattern
            .map(|p| p.map(KeyNamePattern::into_inner));
        let mut tx = self.store.begin().await?;
        let mut r = tx
            .role(&caller.org_id, name)
            .await?
            .ok_or(ServiceError::NotFound("role"))?;
        if r.built_in {
            return Err(
                DomainError::conflict("built_in_role", "built-in roles cannot be changed").into(),
            );
        }
        // The pattern limits what the role's holders may name; loosening it widens
        // what they can do, so changing it needs every permission the role grants.
        let mut tx = match &pattern {
            Some(p) if *p != r.key_name_pattern => {
                let grants = r.permissions.clone();
                self.check_holds_all(tx, caller, &grants, Action::RoleUpdate, role_principal(&r))
                    .await?
            }
            _ => tx,
        };
        let mut changes = Changes::default();
        if let Some(d) = description {
            changes.field("description", &r.description, &d);
            r.description = d;
        }
        if let Some(p) = permissions {
            changes.field("permissions", &r.permissions, &p);
            r.permissions = p;
        }
        if let Some(p) = pattern {
            changes.field("key_name_pattern", &r.key_name_pattern, &p);
            r.key_name_pattern = p;
        }
        if !changes.is_empty() {
            r.updated_at = self.now();
            tx.update_role(&caller.org_id, &r).await?;
            self.commit_mutation(
                tx,
                caller,
                Some(crate::Success {
                    action: Action::RoleUpdate,
                    target: Some(role_principal(&r)),
                    changes: changes.into_value(),
                    event: None,
                }),
                &[(
                    keyhaven_store::ChangeKind::Organization,
                    caller.org_id.to_string(),
                )],
            )
            .await?;
        }
        Ok(r)
    }

    /// Deletes a custom role that nobody holds.
    pub async fn delete_role(&self, caller: &Caller, name: &str) -> ServiceResult<()> {
        self.authorize(caller, Permission::RolesManage, Action::RoleDelete)
            .await?;
        validate::no_control_chars(name, "name")?;
        let mut tx = self.store.begin().await?;
        let r = tx
            .role(&caller.org_id, name)
            .await?
            .ok_or(ServiceError::NotFound("role"))?;
        if r.built_in {
            return Err(
                DomainError::conflict("built_in_role", "built-in roles cannot be deleted").into(),
            );
        }
        if tx.role_in_use(&caller.org_id, name).await? {
            return Err(DomainError::conflict(
                "role_in_use",
                "the role is still assigned to a user, service account or API key",
            )
            .into());
        }
        tx.delete_role(&caller.org_id, name).await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::RoleDelete,
                target: Some(role_principal(&r)),
                changes: json!({}),
                event: None,
            }),
            &[(
                keyhaven_store::ChangeKind::Organization,
                caller.org_id.to_string(),
            )],
        )
        .await?;
        Ok(())
    }
}
