//! Portal users.

use keyhaven_core::audit::Action;
use keyhaven_core::permission::Permission;
use keyhaven_core::user::{self, User, UserStatus};
use keyhaven_core::value::{DisplayName, Email, Errors, NewPassword, RoleNames};
use keyhaven_core::DomainError;
use serde_json::json;

use crate::password;
use crate::sessions::user_principal;
use crate::{duplicate_as_conflict, Caller, Service, ServiceResult};

/// What `POST /users` carries, as sent: a draft [`NewUser`] parses.
#[derive(Debug, Clone)]
pub struct CreateUser {
    /// Unique email.
    pub email: String,
    /// Name shown in the console.
    pub display_name: String,
    /// Initial password (≥ 12 characters).
    pub password: keyhaven_core::key_format::Secret,
    /// Role names (required; may be empty).
    pub roles: Vec<String>,
}

/// A new user, every field parsed.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Unique email.
    pub email: Email,
    /// Name shown in the console.
    pub display_name: DisplayName,
    /// Initial password.
    pub password: NewPassword,
    /// Role names.
    pub roles: RoleNames,
}

impl NewUser {
    /// Parses a draft; every mistake is returned, in field order.
    pub fn parse_all(d: CreateUser) -> Result<Self, Vec<DomainError>> {
        let mut e = Errors::default();
        let email = e.take(Email::parse(&d.email, "email"));
        let display_name = e.take(DisplayName::parse(&d.display_name, "display_name"));
        let password = e.take(NewPassword::parse(d.password.expose(), "password"));
        let roles = e.take(RoleNames::parse(&d.roles, "roles"));
        match (email, display_name, password, roles) {
            (Some(email), Some(display_name), Some(password), Some(roles)) => Ok(Self {
                email,
                display_name,
                password,
                roles,
            }),
            _ => Err(e.into_vec()),
        }
    }
}

parsed_from!(CreateUser => NewUser);

/// A change to a user, every field parsed: absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// New display name.
    pub display_name: Option<DisplayName>,
    /// New roles.
    pub roles: Option<RoleNames>,
    /// New status.
    pub status: Option<UserStatus>,
}

impl UserPatch {
    /// Parses a draft; every mistake is returned, in field order.
    pub fn parse_all(d: UpdateUser) -> Result<Self, Vec<DomainError>> {
        let mut e = Errors::default();
        let display_name = e.take(
            d.display_name
                .as_deref()
                .map(|n| DisplayName::parse(n, "display_name"))
                .transpose(),
        );
        let roles = e.take(
            d.roles
                .as_deref()
                .map(|r| RoleNames::parse(r, "roles"))
                .transpose(),
        );
        match (display_name, roles) {
            (Some(display_name), Some(roles)) => Ok(Self {
                display_name,
                roles,
                status: d.status,
            }),
            _ => Err(e.into_vec()),
        }
    }
}

parsed_from!(UpdateUser => UserPatch);

impl Service {
    /// Creates a portal user in the caller's organization.
    pub async fn create_user(
        &self,
        caller: &Caller,
        input: impl TryInto<NewUser, Error: Into<crate::ServiceError>>,
    ) -> ServiceResult<User> {
        self.authorize(caller, Permission::UsersCreate, Action::UserCreate)
            .await?;
        // Authorized first: a caller who may not act learns nothing about the input.
        let input: NewUser = input.try_into().map_err(Into::into)?;
        let email = input.email.into_inner();
        let display_name = input.display_name.into_inner();
        let roles = input.roles.into_strings();
        let tx = self.store.read().await?;
        self.grant_or_deny(
            tx,
            caller,
            Action::UserCreate,
            crate::GrantChange::new(&roles, &[]),
        )
        .await?;
        let hash = password::hash(input.password.expose()).await?;
        let now = self.now();
        let u = User {
            id: self.new_id(),
            org_id: caller.org_id.clone(),
            email,
            display_name,
            password_hash: hash,
            roles,
            status: UserStatus::Active,
            last_login_at: None,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.store.begin().await?;
        tx.insert_user(&u).await.map_err(|e| {
            duplicate_as_conflict(e, "email_taken", "a user with this email already exists")
        })?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::UserCreate,
                target: Some(user_principal(&u)),
                changes: json!({ "email": u.email, "display_name": u.display_name, "roles": u.roles }),
                event: None,
            }),
            &[],
        )
        .await?;
        Ok(u)
    }
}

/// What `PATCH /users/{id}` carries, as sent: a draft [`UserPatch`] parses.
#[derive(Debug, Clone, Default)]
pub struct UpdateUser {
    /// New display name.
    pub display_name: Option<String>,
    /// New role names (replaces the list).
    pub roles: Option<Vec<String>>,
    /// `active` or `inactive`.
    pub status: Option<UserStatus>,
}

/// Whether two role lists name the same set.
fn same_set(a: &[String], b: &[String]) -> bool {
    let a: std::collections::BTreeSet<&String> = a.iter().collect();
    let b: std::collections::BTreeSet<&String> = b.iter().collect();
    a == b
}

impl Service {
    /// Refuses to act on `u` (change, deactivate, delete, reset the password) unless
    /// the caller holds every management permission `u` holds; on refusal `tx` is
    /// rolled back and a denied entry for `action` on `u` is recorded (see
    /// [`Service::check_holds_all`]).
    pub(crate) async fn check_holds_user(
        &self,
        mut tx: Box<dyn keyhaven_store::Tx>,
        caller: &Caller,
        u: &User,
        action: Action,
    ) -> ServiceResult<Box<dyn keyhaven_store::Tx>> {
        let theirs: Vec<String> =
            crate::sessions::role_permissions(tx.as_mut(), &caller.org_id, &u.roles)
                .await?
                .into_iter()
                .collect();
        self.check_holds_all(tx, caller, &theirs, action, user_principal(u))
            .await
    }

    /// The first management permission `u` holds that the caller lacks, if any: the
    /// console says so before offering a form the service would refuse.
    pub async fn missing_to_manage_user(
        &self,
        caller: &Caller,
        u: &User,
    ) -> ServiceResult<Option<String>> {
        let mut tx = self.store.read().await?;
        let theirs =
            crate::sessions::role_permissions(tx.as_mut(), &caller.org_id, &u.roles).await?;
        Ok(
            keyhaven_core::permission::check_no_escalation(&caller.permissions, &theirs)
                .err()
                .map(|e| match e {
                    keyhaven_core::DomainError::PermissionDenied { permission } => permission,
                    other => other.to_string(),
                }),
        )
    }

    /// A page of users.
    pub async fn list_users(
        &self,
        caller: &Caller,
        filter: &keyhaven_store::UserFilter,
        page: &keyhaven_store::Page,
    ) -> ServiceResult<keyhaven_store::Listing<User>> {
        self.authorize(caller, Permission::UsersView, Action::UserList)
            .await?;
        let mut tx = self.store.read().await?;
        Ok(tx.list_users(&caller.org_id, filter, page).await?)
    }

    /// One user.
    pub async fn get_user(&self, caller: &Caller, id: &keyhaven_core::Id) -> ServiceResult<User> {
        self.authorize(caller, Permission::UsersView, Action::UserView)
            .await?;
        let mut tx = self.store.read().await?;
        tx.user(&caller.org_id, id)
            .await?
            .ok_or(crate::ServiceError::NotFound("user"))
    }

    /// Active super-admins that would remain if `user` became `after_roles`/`after_status`.
    async fn check_super_admins_remain(
        &self,
        tx: &mut dyn keyhaven_store::Tx,
        user: &User,
        still_super_admin: bool,
    ) -> ServiceResult<()> {
        let was = user.status == UserStatus::Active
            && user
                .roles
                .iter()
                .any(|r| r == keyhaven_core::role::SUPER_ADMIN);
        if was && !still_super_admin {
            let n = tx
                .lock_active_with_role(&user.org_id, keyhaven_core::role::SUPER_ADMIN)
                .await?;
            user::check_keeps_super_admin((n - 1).max(0) as usize)?;
        }
        Ok(())
    }

    /// Changes a user's display name, roles or status.
    pub async fn update_user(
        &self,
        caller: &Caller,
        id: &keyhaven_core::Id,
        input: impl TryInto<UserPatch, Error: Into<crate::ServiceError>>,
    ) -> ServiceResult<User> {
        self.authorize(caller, Permission::UsersUpdate, Action::UserUpdate)
            .await?;
        // Authorized first: a caller who may not act learns nothing about the input.
        let input: UserPatch = input.try_into().map_err(Into::into)?;
        let display_name = input.display_name.map(DisplayName::into_inner);
        let roles = input.roles.map(RoleNames::into_strings);
        let mut tx = self.store.begin().await?;
        let mut u = tx
            .user(&caller.org_id, id)
            .await?
            .ok_or(crate::ServiceError::NotFound("user"))?;
        let new_roles = roles.unwrap_or_else(|| u.roles.clone());
        let new_status = input.status.unwrap_or(u.status);
        // Changing a user at all needs every management permission they hold (the
        // no-escalation rule applied to the target: an admin can't deactivate or
        // demote a super-admin), except changing one's own display name.
        let own_name_only = caller.acting_user_id().as_ref() == Some(&u.id)
            && new_status == u.status
            && same_set(&new_roles, &u.roles);
        if !own_name_only {
            tx = self
                .check_holds_user(tx, caller, &u, Action::UserUpdate)
                .await?;
        }
        // The grant rule shared with keys and service accounts: only management
        // permissions the user did not hold before count as granted.
        let (mut tx, _) = self
            .grant_or_deny(
                tx,
                caller,
                Action::UserUpdate,
                crate::GrantChange {
                    old_roles: &u.roles,
                    old_scopes: &[],
                    roles: &new_roles,
                    scopes: &[],
                },
            )
            .await?;
        let still = new_status == UserStatus::Active
            && new_roles
                .iter()
                .any(|r| r == keyhaven_core::role::SUPER_ADMIN);
        self.check_super_admins_remain(tx.as_mut(), &u, still)
            .await?;
        let mut changes = crate::changes::Changes::default();
        if let Some(d) = display_name {
            changes.field("display_name", &u.display_name, &d);
            u.display_name = d;
        }
        changes.field("roles", &u.roles, &new_roles);
        u.roles = new_roles;
        changes.field("status", u.status.as_str(), new_status.as_str());
        let deactivated = u.status == UserStatus::Active && new_status == UserStatus::Inactive;
        u.status = new_status;
        if !changes.is_empty() {
            u.updated_at = self.now();
            tx.update_user(&u).await?;
            if deactivated {
                tx.delete_sessions_of_user(&u.id).await?;
            }
            self.commit_mutation(
                tx,
                caller,
                Some(crate::Success {
                    action: Action::UserUpdate,
                    target: Some(user_principal(&u)),
                    changes: changes.into_value(),
                    event: None,
                }),
                &[(keyhaven_store::ChangeKind::Owner, u.id.to_string())],
            )
            .await?;
        }
        Ok(u)
    }

    /// Deletes a user (not oneself, not the last super-admin).
    pub async fn delete_user(&self, caller: &Caller, id: &keyhaven_core::Id) -> ServiceResult<()> {
        self.authorize(caller, Permission::UsersDelete, Action::UserDelete)
            .await?;
        let mut tx = self.store.begin().await?;
        let u = tx
            .user(&caller.org_id, id)
            .await?
            .ok_or(crate::ServiceError::NotFound("user"))?;
        if let Some(me) = caller.acting_user_id() {
            user::check_not_self(&me, &u.id, "delete")?;
        }
        let mut tx = self
            .check_holds_user(tx, caller, &u, Action::UserDelete)
            .await?;
        self.check_super_admins_remain(tx.as_mut(), &u, false)
            .await?;
        tx.delete_user(&caller.org_id, id).await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::UserDelete,
                target: Some(user_principal(&u)),
                changes: json!({ "email": u.email }),
                event: None,
            }),
            &[(keyhaven_store::ChangeKind::Owner, u.id.to_string())],
        )
        .await?;
        Ok(())
    }

    /// Sets another user's password (not one's own: that goes through `/v1/me/password`).
    pub async fn reset_password(
        &self,
        caller: &Caller,
        id: &keyhaven_core::Id,
        new: &str,
    ) -> ServiceResult<()> {
        self.authorize(
            caller,
            Permission::UsersResetPassword,
            Action::UserResetPassword,
        )
        .await?;
        {
            let mut tx = self.store.read().await?;
            let u = tx
                .user(&caller.org_id, id)
                .await?
                .ok_or(crate::ServiceError::NotFound("user"))?;
            if let Some(me) = caller.acting_user_id() {
                user::check_not_self(&me, &u.id, "reset the password of")?;
            }
            // Setting someone's password is taking over their account: only for users
            // whose management permissions the caller holds all of.
            self.check_holds_user(tx, caller, &u, Action::UserResetPassword)
                .await?;
        }
        let new = NewPassword::parse(new, "password")?;
        let new = new.expose();
        let hash = password::hash(new).await?;
        let mut tx = self.store.begin().await?;
        let mut u = tx
            .user(&caller.org_id, id)
            .await?
            .ok_or(crate::ServiceError::NotFound("user"))?;
        u.password_hash = hash;
        u.updated_at = self.now();
        tx.update_user(&u).await?;
        tx.delete_sessions_of_user(&u.id).await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::UserResetPassword,
                target: Some(user_principal(&u)),
                changes: json!({}),
                event: None,
            }),
            &[],
        )
        .await?;
        Ok(())
    }
}

impl Service {
    /// The signed-in user's own profile (no permission needed: everyone may see
    /// themselves).
    pub async fn own_profile(&self, caller: &Caller) -> ServiceResult<User> {
        let id = caller
            .user_id()
            .ok_or(keyhaven_core::DomainError::conflict(
                "users_only",
                "only portal users have a profile",
            ))?;
        let mut tx = self.store.read().await?;
        tx.user(&caller.org_id, &id)
            .await?
            .ok_or(crate::ServiceError::NotFound("user"))
    }

    /// Changes the signed-in user's own display name (no permission needed).
    pub async fn update_own_display_name(
        &self,
        caller: &Caller,
        display_name: &str,
    ) -> ServiceResult<User> {
        let id = caller
            .user_id()
            .ok_or(keyhaven_core::DomainError::conflict(
                "users_only",
                "only portal users have a profile",
            ))?;
        let display_name = DisplayName::parse(display_name, "display_name")?.into_inner();
        let mut tx = self.store.begin().await?;
        let mut u = tx
            .user(&caller.org_id, &id)
            .await?
            .ok_or(crate::ServiceError::NotFound("user"))?;
        let mut changes = crate::changes::Changes::default();
        changes.field("display_name", &u.display_name, &display_name);
        if !changes.is_empty() {
            u.display_name = display_name;
            u.updated_at = self.now();
            tx.update_user(&u).await?;
            self.commit_mutation(
                tx,
                caller,
                Some(crate::Success {
                    action: Action::UserUpdate,
                    target: Some(user_principal(&u)),
                    changes: changes.into_value(),
                    event: None,
                }),
                &[(keyhaven_store::ChangeKind::Owner, u.id.to_string())],
            )
            .await?;
        }
        Ok(u)
    }
}
