//! Service accounts: non-human identities that own keys and credentials.

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::id::Id;
use crate::principal::Principal;
use crate::time::Timestamp;

/// A service account's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAccountStatus {
    /// Its keys and credentials verify.
    Active,
    /// Temporarily disabled: its keys answer `DISABLED`.
    Suspended,
    /// Terminal: every key and credential it owned is revoked.
    Archived,
}

impl ServiceAccountStatus {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Archived => "archived",
        }
    }

    /// Parses a stored or filter value.
    pub fn parse(s: &str, param: &str) -> Result<Self, DomainError> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "archived" => Ok(Self::Archived),
            _ => Err(DomainError::invalid(
                "invalid_status",
                param,
                format!("{param} must be active, suspended or archived"),
            )),
        }
    }
}

/// A service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// Its id.
    pub id: Id,
    /// The organization it belongs to.
    pub org_id: Id,
    /// Display name, 1–100 characters.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Names of its roles.
    pub roles: Vec<String>,
    /// Lifecycle state.
    pub status: ServiceAccountStatus,
    /// Rate limits shared by all of its keys (one bucket per account and name).
    pub ratelimits: Vec<crate::usage_control::NamedLimit>,
    /// The id of the customer or system in the caller's world (1–255 characters).
    pub external_id: Option<String>,
    /// Who created it.
    pub created_by: Principal,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A lifecycle transition asked of a service account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// active → suspended.
    Suspend,
    /// suspended → active.
    Reactivate,
    /// any → archived (terminal).
    Archive,
}

/// The state after `t`, or a conflict. Repeating a transition that already holds is a
/// no-op; nothing leaves `archived`.
pub fn transition(
    from: ServiceAccountStatus,
    t: Transition,
) -> Result<ServiceAccountStatus, DomainError> {
    use ServiceAccountStatus::*;
    match (from, t) {
        (Archived, Transition::Archive) => Ok(Archived),
        (Archived, _) => Err(DomainError::conflict(
            "service_account_archived",
            "an archived service account cannot change state",
        )),
        (_, Transition::Suspend) => Ok(Suspended),
        (_, Transition::Reactivate) => Ok(Active),
        (_, Transition::Archive) => Ok(Archived),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceAccountStatus::*;

    #[test]
    fn lifecycle() {
        assert_eq!(transition(Active, Transition::Suspend), Ok(Suspended));
        assert_eq!(transition(Suspended, Transition::Reactivate), Ok(Active));
        assert_eq!(transition(Suspended, Transition::Archive), Ok(Archived));
        assert!(transition(Archived, Transition::Reactivate).is_err());
        assert!(transition(Archived, Transition::Suspend).is_err());
        assert_eq!(transition(Archived, Transition::Archive), Ok(Archived));
    }
}
