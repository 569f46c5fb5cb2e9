//! References to whoever acts or owns: users, keys, service accounts, the system.

use serde::{Deserialize, Serialize};

/// The kind of a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A portal user.
    User,
    /// An API key.
    ApiKey,
    /// A service account.
    ServiceAccount,
    /// Keyhaven itself (bootstrap, background jobs, the CLI).
    System,
    /// A role (as an audit target).
    Role,
    /// An organization (as an audit target).
    Organization,
    /// A client credential (as an audit target).
    Credential,
    /// The shared secret (as an audit target).
    SharedSecret,
}

impl PrincipalKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ApiKey => "api_key",
            Self::ServiceAccount => "service_account",
            Self::System => "system",
            Self::Role => "role",
            Self::Organization => "organization",
            Self::Credential => "credential",
            Self::SharedSecret => "shared_secret",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "api_key" => Some(Self::ApiKey),
            "service_account" => Some(Self::ServiceAccount),
            "system" => Some(Self::System),
            "role" => Some(Self::Role),
            "organization" => Some(Self::Organization),
            "credential" => Some(Self::Credential),
            "shared_secret" => Some(Self::SharedSecret),
            _ => None,
        }
    }
}

/// `{type, id, name}` as the API shows owners, creators, actors and targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// What kind of principal.
    #[serde(rename = "type")]
    pub kind: PrincipalKind,
    /// Its id.
    pub id: String,
    /// Its name at the time of reference.
    pub name: String,
}

impl Principal {
    /// Keyhaven itself, for actions taken by the CLI or background jobs.
    pub fn system(name: &str) -> Self {
        Principal {
            kind: PrincipalKind::System,
            id: String::new(),
            name: name.to_string(),
        }
    }
}
