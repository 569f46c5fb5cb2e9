//! API keys: their lifecycle, derived status and the validation of their fields.

use chrono::Duration;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::id::Id;
use crate::principal::Principal;
use crate::time::Timestamp;

/// Longest key name.
pub const MAX_NAME: usize = 100;
/// Largest `metadata` object, serialized.
pub const MAX_METADATA_BYTES: usize = 4096;
/// Longest regeneration grace period: seven days.
pub const MAX_GRACE_SECONDS: i64 = 7 * 24 * 3600;
/// Most CIDRs in `allowed_cidrs`.
pub const MAX_CIDRS: usize = 100;

/// A key's status as shown. `expired` is derived from the clock, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Verifies.
    Active,
    /// Revoked: final.
    Revoked,
    /// Past `expires_at`.
    Expired,
}

impl KeyStatus {
    /// The displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }

    /// Parses a filter value.
    pub fn parse(s: &str, param: &str) -> Result<Self, DomainError> {
        match s {
            "active" => Ok(Self::Active),
            "revoked" => Ok(Self::Revoked),
            "expired" => Ok(Self::Expired),
            _ => Err(DomainError::invalid(
                "invalid_status",
                param,
                format!("{param} must be active, revoked or expired"),
            )),
        }
    }
}

/// A per-key rate limit: `limit` verifications per `duration_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Verifications allowed per window, 1..=1,000,000,000.
    pub limit: i64,
    /// Window length in milliseconds, 1 s ..= 1 day.
    pub duration_ms: i64,
}

/// An API key as stored (never with its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// Its id.
    pub id: Id,
    /// The organization it belongs to.
    pub org_id: Id,
    /// Name, unique per organization among non-deleted keys.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Labels for filtering.
    pub tags: Vec<String>,
    /// A service account, or the user of a personal key.
    pub owner: Principal,
    /// Role names.
    pub roles: Vec<String>,
    /// Extra permissions (application scopes or management permissions).
    pub scopes: Vec<String>,
    /// SHA-256 of the current secret, hex.
    pub digest: String,
    /// Prefix and last four characters.
    pub masked_key: String,
    /// `None` = never expires.
    pub expires_at: Option<Timestamp>,
    /// Who created it.
    pub created_by: Principal,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Last verification.
    pub last_used_at: Option<Timestamp>,
    /// When it was revoked; revocation is final.
    pub revoked_at: Option<Timestamp>,
    /// Named rate limits (the old single `ratelimit` is the one named `default`).
    pub ratelimits: Vec<crate::usage_control::NamedLimit>,
    /// Credit balance; `None` = unlimited.
    pub credits: Option<crate::usage_control::Credits>,
    /// Bumped whenever the balance is replaced (set, refill) rather than added to or
    /// spent from: credits nodes leased under an older epoch are void.
    pub credits_epoch: i64,
    /// Client networks allowed to use it; empty = any.
    pub allowed_cidrs: Vec<IpNet>,
    /// A JSON object of at most 4 KiB.
    pub metadata: serde_json::Value,
    /// Digest of the secret replaced by the last regeneration, while its grace lasts.
    pub previous_digest: Option<String>,
    /// End of the regeneration grace period.
    pub previous_valid_until: Option<Timestamp>,
    /// The id of the customer or system in the caller's world (1–255 characters).
    pub external_id: Option<String>,
    /// False turns the key off without revoking it (verification answers `DISABLED`).
    pub enabled: bool,
    /// When it was imported from another system; `None` for keys made here.
    pub imported_at: Option<Timestamp>,
}

impl ApiKey {
    /// The status at `now`: revoked wins, then expiry.
    pub fn status(&self, now: Timestamp) -> KeyStatus {
        status_at(self.revoked_at, self.expires_at, now)
    }
}

/// Status from the two timestamps that define it.
pub fn status_at(
    revoked_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> KeyStatus {
    if revoked_at.is_some() {
        KeyStatus::Revoked
    } else if expires_at.is_some_and(|e| e <= now) {
        KeyStatus::Expired
    } else {
        KeyStatus::Active
    }
}

/// Longest `external_id`.
pub const MAX_EXTERNAL_ID: usize = 255;

/// Validates an `external_id`: 1–255 characters, no control characters.
pub fn validate_external_id(v: &str, param: &str) -> Result<String, DomainError> {
    if v.is_empty() || v.chars().count() > MAX_EXTERNAL_ID || v.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "invalid_external_id",
            param,
            format!("{param} must be 1 to {MAX_EXTERNAL_ID} characters without control characters"),
        ));
    }
    Ok(v.to_string())
}

/// Refuses an instant that is not in the future.
pub fn validate_future(
    at: Timestamp,
    now: Timestamp,
    param: &str,
) -> Result<Timestamp, DomainError> {
    if at <= now {
        Err(DomainError::invalid(
            "expires_at_in_past",
            param,
            format!("{param} must be in the future"),
        ))
    } else {
        Ok(at)
    }
}

/// Parses `allowed_cidrs`; a bare address is taken as a single-host network.
pub fn parse_cidrs(input: &[String], param: &str) -> Result<Vec<IpNet>, DomainError> {
    if input.len() > MAX_CIDRS {
        return Err(DomainError::invalid(
            "too_many_cidrs",
            param,
            format!("{param} may hold at most {MAX_CIDRS} entries"),
        ));
    }
    input
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    DomainError::invalid(
                        "invalid_cidr",
                        format!("{param}[{i}]"),
                        format!("{param}[{i}] must be an IP network such as 10.0.0.0/8"),
                    )
                })
        })
        .collect()
}

/// Validates `metadata`: a JSON object of at most 4 KiB.
pub fn validate_metadata(v: &serde_json::Value) -> Result<(), DomainError> {
    if !v.is_object() {
        return Err(DomainError::invalid(
            "invalid_metadata",
            "metadata",
            "metadata must be a JSON object",
        ));
    }
    if v.to_string().len() > MAX_METADATA_BYTES {
        return Err(DomainError::invalid(
            "metadata_too_large",
            "metadata",
            "metadata must be at most 4096 bytes",
        ));
    }
    Ok(())
}

/// Validates a regeneration grace period.
pub fn validate_grace(seconds: i64) -> Result<Duration, DomainError> {
    if !(0..=MAX_GRACE_SECONDS).contains(&seconds) {
        Err(DomainError::invalid(
            "invalid_grace_period",
            "grace_period_seconds",
            "grace_period_seconds must be between 0 and 604800 (7 days)",
        ))
    } else {
        Ok(Duration::seconds(seconds))
    }
}

/// Refuses a change to a revoked key (revocation is final).
pub fn check_not_revoked(key: &ApiKey) -> Result<(), DomainError> {
    if key.revoked_at.is_some() {
        Err(DomainError::conflict(
            "key_revoked",
            "the key is revoked; revocation is final",
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn now() -> Timestamp {
        Utc.with_ymd_and_hms(2026, 11, 22, 18, 20, 0).unwrap()
    }

    fn key_with(scopes: &[&str]) -> ApiKey {
        ApiKey {
            id: Id::from_trusted("01k00000000000000000000001".into()),
            org_id: Id::from_trusted("01k00000000000000000000002".into()),
            name: "k".into(),
            description: String::new(),
            tags: vec![],
            owner: Principal::system("test"),
            roles: vec![],
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            digest: String::new(),
            masked_key: String::new(),
            expires_at: None,
            created_by: Principal::system("test"),
            created_at: now(),
            updated_at: now(),
            last_used_at: None,
            revoked_at: None,
            ratelimits: Vec::new(),
            credits: None,
            credits_epoch: 0,
            allowed_cidrs: vec![],
            metadata: serde_json::json!({}),
            previous_digest: None,
            previous_valid_until: None,
            external_id: None,
            enabled: true,
            imported_at: None,
        }
    }

    fn set(items: &[&str]) -> crate::permission::PermissionSet {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_personal_key_holds_management_permissions_only_as_far_as_its_user_does() {
        let k = key_with(&["billing:read", "users.view"]);
        let roles = set(&["api_keys.view", "api_keys.manage"]);
        let held = set(&["api_keys.view"]);
        let a = effective_access(&k, roles.clone(), &OwnerState::User(Some((true, held))));
        assert_eq!(a.permissions, set(&["api_keys.view", "billing:read"]));
        assert!(a.owner_active);
        let gone = effective_access(&k, roles.clone(), &OwnerState::User(None));
        assert_eq!(gone.permissions, set(&["billing:read"]));
        assert!(!gone.owner_active);
        let inactive = effective_access(&k, roles, &OwnerState::User(Some((false, set(&[])))));
        assert!(!inactive.owner_active);
    }

    #[test]
    fn a_service_account_key_has_all_its_permissions_while_the_account_is_active() {
        let k = key_with(&["billing:read"]);
        let roles = set(&["api_keys.manage"]);
        let a = effective_access(&k, roles.clone(), &OwnerState::ServiceAccount(Some(true)));
        assert_eq!(a.permissions, set(&["api_keys.manage", "billing:read"]));
        assert!(a.owner_active);
        assert!(
            !effective_access(&k, roles.clone(), &OwnerState::ServiceAccount(Some(false)))
                .owner_active
        );
        assert!(!effective_access(&k, roles, &OwnerState::ServiceAccount(None)).owner_active);
    }

    #[test]
    fn status_is_derived() {
        let n = now();
        assert_eq!(status_at(None, None, n), KeyStatus::Active);
        assert_eq!(
            status_at(None, Some(n + Duration::seconds(1)), n),
            KeyStatus::Active
        );
        assert_eq!(status_at(None, Some(n), n), KeyStatus::Expired);
        assert_eq!(
            status_at(Some(n), Some(n - Duration::days(1)), n),
            KeyStatus::Revoked
        );
    }

    #[test]
    fn expiry_rules() {
        use crate::value::Expiry;
        let n = now();
        let resolve_expiry = |at, days, now| Expiry::parse(at, days)?.resolve(now, false);
        assert_eq!(resolve_expiry(None, None, n), Ok(None));
        assert_eq!(
            resolve_expiry(None, Some(30), n),
            Ok(Some(n + Duration::days(30)))
        );
        assert!(resolve_expiry(Some(n - Duration::seconds(1)), None, n).is_err());
        assert!(resolve_expiry(Some(n + Duration::days(1)), Some(3), n).is_err());
        assert!(resolve_expiry(None, Some(0), n).is_err());
    }

    #[test]
    fn cidrs_metadata_grace() {
        let c = parse_cidrs(&["10.1.2.3/8".into(), "::1".into()], "allowed_cidrs").unwrap();
        assert_eq!(c[0].to_string(), "10.0.0.0/8");
        assert_eq!(c[1].to_string(), "::1/128");
        assert!(parse_cidrs(&["nope".into()], "allowed_cidrs").is_err());
        assert!(validate_metadata(&serde_json::json!([1])).is_err());
        assert!(validate_metadata(&serde_json::json!({"a": "x".repeat(5000)})).is_err());
        assert!(validate_grace(604_801).is_err());
    }
}

/// The state of a key's owner, as far as it decides the key's access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerState {
    /// A personal key's user: whether they are active and the permissions their roles
    /// grant now; `None` when the user no longer exists.
    User(Option<(bool, crate::permission::PermissionSet)>),
    /// A service account's key: whether the account is active (`None`: it is gone).
    ServiceAccount(Option<bool>),
    /// Any other owner (none today): always active.
    Other,
}

/// What a key may do, and whether its owner lets it do anything at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAccess {
    /// The key's roles' permissions and its scopes; for a personal key, management
    /// permissions only as far as its user holds them now.
    pub permissions: crate::permission::PermissionSet,
    /// False when the owner is inactive, suspended, archived or gone (`DISABLED`).
    pub owner_active: bool,
}

/// The one rule for a key's effective access, used by verification, by key
/// authentication of management calls and by the API's answer about a key.
pub fn effective_access(
    key: &ApiKey,
    role_permissions: crate::permission::PermissionSet,
    owner: &OwnerState,
) -> KeyAccess {
    let mut permissions = role_permissions;
    permissions.extend(key.scopes.iter().cloned());
    let owner_active = match owner {
        OwnerState::User(Some((active, held))) => {
            permissions.retain(|p| !crate::permission::is_management(p) || held.contains(p));
            *active
        }
        OwnerState::User(None) => {
            permissions.retain(|p| !crate::permission::is_management(p));
            false
        }
        OwnerState::ServiceAccount(active) => active.unwrap_or(false),
        OwnerState::Other => true,
    };
    KeyAccess {
        permissions,
        owner_active,
    }
}
