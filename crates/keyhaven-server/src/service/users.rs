//! Portal users.

use keyhaven_core::audit::Outcome;
use keyhaven_core::permission::Permission;
use keyhaven_core::user::{self, User, UserStatus};
use keyhaven_core::validate;
use serde::Deserialize;
use serde_json::json;

use super::sessions::user_principal;
use super::{duplicate_as_conflict, Caller, Service, ServiceResult};
use crate::auth::password;

/// Body of `POST /users`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Unique email.
    pub email: String,
    /// Name shown in the console.
    pub display_name: String,
    /// Initial password (≥ 12 characters).
    pub password: String,
    /// Role names.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Service {
    /// Creates a portal user in the caller's organization.
    pub async fn create_user(&self, caller: &Caller, input: CreateUser) -> ServiceResult<User> {
        self.authorize(caller, Permission::UsersCreate, "user.create")
            .await?;
        let email = validate::email(&input.email, "email")?;
        let display_name = user::validate_display_name(&input.display_name)?;
        validate::new_password(&input.password, "password")?;
        let roles = validate::distinct_list(&input.roles, "roles", 20)?;
        {
            let mut tx = self.store.read().await?;
            if let Err(e) = self
                .check_grant(tx.as_mut(), caller, &roles, &[], "roles")
                .await
            {
                drop(tx);
                if let super::ServiceError::Domain(keyhaven_core::DomainError::PermissionDenied {
                    permission,
                }) = &e
                {
                    self.record_denied(caller, "user.create", None, permission)
                        .await;
                }
                return Err(e);
            }
        }
        let hash = password::hash(&input.password).await?;
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
        self.audit(
            tx.as_mut(),
            caller,
            "user.create",
            Some(user_principal(&u)),
            Outcome::Success,
            json!({ "email": u.email, "display_name": u.display_name, "roles": u.roles }),
        )
        .await?;
        tx.commit().await?;
        Ok(u)
    }
}
