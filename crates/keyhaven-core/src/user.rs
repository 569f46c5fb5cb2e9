//! Portal users: the humans who sign in to the console.

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::id::Id;
use crate::time::Timestamp;

/// Whether a user may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// May sign in; personal keys verify.
    Active,
    /// May not sign in; personal keys stop verifying.
    Inactive,
}

impl UserStatus {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Inactive => "inactive",
        }
    }

    /// Parses a status from a filter or a stored value.
    pub fn parse(s: &str, param: &str) -> Result<Self, DomainError> {
        match s {
            "active" => Ok(UserStatus::Active),
            "inactive" => Ok(UserStatus::Inactive),
            _ => Err(DomainError::invalid(
                "invalid_status",
                param,
                format!("{param} must be active or inactive"),
            )),
        }
    }
}

/// A portal user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its id.
    pub id: Id,
    /// The organization it belongs to.
    pub org_id: Id,
    /// Lowercased email, unique across the installation.
    pub email: String,
    /// Name shown in the console.
    pub display_name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Names of its roles.
    pub roles: Vec<String>,
    /// Active or inactive.
    pub status: UserStatus,
    /// Last successful sign-in.
    pub last_login_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Refuses a change that would leave the organization without an active super-admin.
/// `remaining` is the number of active super-admins the change would leave.
pub fn check_keeps_super_admin(remaining: usize) -> Result<(), DomainError> {
    if remaining == 0 {
        Err(DomainError::conflict(
            "last_super_admin",
            "the organization must keep at least one active super-admin",
        ))
    } else {
        Ok(())
    }
}

/// A user may not delete themselves or reset their own password through the admin reset.
pub fn check_not_self(actor: &Id, target: &Id, what: &str) -> Result<(), DomainError> {
    if actor == target {
        Err(DomainError::conflict(
            "self_action",
            format!("you cannot {what} your own account"),
        ))
    } else {
        Ok(())
    }
}
