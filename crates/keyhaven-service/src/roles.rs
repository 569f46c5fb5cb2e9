//! Roles and the permission catalog.

use keyhaven_core::audit::Action;
use keyhaven_core::permission::{self, Permission};
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::role::{self, Role};
use keyhaven_core::{validate, DomainError};
use serde_json::json;

use crate::changes::Changes;
use crate::{duplicate_as_conflict, Caller, Service, ServiceError, ServiceResult};

/// Input of `POST /roles`.
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

/// Input of `PATCH /roles/{name}`.
#[derive(Debug, Clone, Default)]
pub struct UpdateRole {
    /// New description.
    pub description: Option<String>,
    /// New permissions (replaces the list).
    pub permissions: Option<Vec<String>>,
    /// New pattern; `null` (or `""`) removes it.
    pub key_name_pattern: Option<Option<String>>,
}

fn role_principal(r: &Role) -> Principal {
    Principal {
        kind: PrincipalKind::Role,
        id: r.name.clone(),
        name: r.name.clone(),
    }
}

fn check_permissions(caller: &Caller, perms: &[String]) -> ServiceResult<Vec<String>> {
    let perms = validate::distinct_list(perms, "permissions", 200)?;
    role::validate_permissions(&perms, "permissions")?;
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
    pub async fn create_role(&self, caller: &Caller, input: CreateRole) -> ServiceResult<Role> {
        self.authorize(caller, Permission::RolesManage, Action::RoleCreate)
            .await?;
        role::validate_name(&input.name, "name")?;
        let description =
            validate::description(input.description.as_deref().unwrap_or(""), "description")?;
        let pattern = match input.key_name_pattern.as_deref() {
            None | Some("") => None,
            Some(p) => {
                role::validate_pattern(p, "key_name_pattern")?;
                Some(p.to_string())
            }
        };
        let permissions = self
            .or_deny(
                caller,
                Action::RoleCreate,
                check_permissions(caller, &input.permissions),
            )
            .await?;
        if role::is_built_in(&input.name) {
            return Err(
                DomainError::conflict("name_taken", "a built-in role has this name").into(),
            );
        }
        let now = self.now();
        let r = Role {
            name: input.name,
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
        input: UpdateRole,
    ) -> ServiceResult<Role> {
        self.authorize(caller, Permission::RolesManage, Action::RoleUpdate)
            .await?;
        validate::no_control_chars(name, "name")?;
        let description = input
            .description
            .as_deref()
            .map(|d| validate::description(d, "description"))
            .transpose()?;
        let checked = input
            .permissions
            .as_deref()
            .map(|p| check_permissions(caller, p))
            .transpose();
        let permissions = self.or_deny(caller, Action::RoleUpdate, checked).await?;
        let pattern = match input.key_name_pattern {
            None => None,
            Some(None) => Some(None),
            Some(Some(p)) if p.is_empty() => Some(None),
            Some(Some(p)) => {
                role::validate_pattern(&p, "key_name_pattern")?;
                Some(Some(p))
            }
        };
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
