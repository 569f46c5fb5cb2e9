//! Roles: named sets of permissions, three built in, the rest defined per organization.

use regex::Regex;

use crate::error::DomainError;
use crate::permission::{Permission, PermissionSet};
use crate::time::Timestamp;

/// Name of the built-in role holding every management permission.
pub const SUPER_ADMIN: &str = "super-admin";
/// Name of the built-in administrator role.
pub const ADMIN: &str = "admin";
/// Name of the built-in read-only role.
pub const READ_ONLY: &str = "read-only";

/// A role as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// Unique within the organization; the role's identifier.
    pub name: String,
    /// What the role is for.
    pub description: String,
    /// Management permissions and application scopes.
    pub permissions: Vec<String>,
    /// A regular expression that names of keys and service accounts created under
    /// this role must match, searched for as written: `^` and `$` anchor it, so
    /// `^ci-` means "starts with ci-" and `ci-` alone means "contains ci-".
    pub key_name_pattern: Option<String>,
    /// Built-in roles cannot be changed or deleted.
    pub built_in: bool,
    /// When the role was created (the organization's creation for built-ins).
    pub created_at: Timestamp,
    /// When the role last changed.
    pub updated_at: Timestamp,
}

/// The built-in roles' definitions: (name, description, permissions).
pub fn built_in_definitions() -> Vec<(&'static str, &'static str, Vec<Permission>)> {
    use Permission::*;
    let admin_excluded = [
        UsersCreate,
        UsersResetPassword,
        UsersDelete,
        RolesManage,
        OrganizationManage,
        AuditManage,
    ];
    vec![
        (
            SUPER_ADMIN,
            "Every management permission",
            Permission::ALL.to_vec(),
        ),
        (
            ADMIN,
            "Manages keys, service accounts, secrets and webhooks; cannot manage users' accounts, roles or the organization",
            Permission::ALL
                .iter()
                .copied()
                .filter(|p| !admin_excluded.contains(p))
                .collect(),
        ),
        (
            READ_ONLY,
            "Sees the organization, roles, service accounts and API keys",
            vec![OrganizationView, RolesView, ServiceAccountsView, ApiKeysView],
        ),
    ]
}

/// The built-in roles as [`Role`] values stamped with `at`.
pub fn built_in_roles(at: Timestamp) -> Vec<Role> {
    built_in_definitions()
        .into_iter()
        .map(|(name, description, perms)| Role {
            name: name.to_string(),
            description: description.to_string(),
            permissions: perms.iter().map(|p| p.as_str().to_string()).collect(),
            key_name_pattern: None,
            built_in: true,
            created_at: at,
            updated_at: at,
        })
        .collect()
}

/// Whether `name` is one of the built-in roles.
pub fn is_built_in(name: &str) -> bool {
    matches!(name, SUPER_ADMIN | ADMIN | READ_ONLY)
}

/// Validates a role name: `^[a-z0-9][a-z0-9_.-]{0,63}$`.
pub fn validate_name(name: &str, param: &str) -> Result<(), DomainError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-')
        });
    if ok {
        Ok(())
    } else if name.is_empty() {
        Err(DomainError::invalid(
            "name_required",
            param,
            format!("{param} must not be empty"),
        ))
    } else {
        Err(DomainError::invalid(
            "invalid_role_name",
            param,
            format!("{param} must be 1-64 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"),
        ))
    }
}

/// Validates a `key_name_pattern`: a regular expression of at most 200 characters.
/// The pattern is used as written, with ordinary search semantics (a name matches when
/// the pattern matches some part of it; `^` and `$` anchor it), as every regex tool
/// reads it: `^ci-` matches `ci-build`, `ci-` also matches `my-ci-build`.
pub fn validate_pattern(pattern: &str, param: &str) -> Result<Regex, DomainError> {
    crate::validate::no_control_chars(pattern, param)?;
    if pattern.is_empty() || pattern.chars().count() > 200 {
        return Err(DomainError::invalid(
            "invalid_pattern",
            param,
            format!("{param} must be 1-200 characters"),
        ));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|_| {
            DomainError::invalid(
                "invalid_pattern",
                param,
                format!("{param} is not a valid regular expression"),
            )
        })
}

/// Checks `name` against the key-name patterns of every role in `roles`.
pub fn check_name_patterns(roles: &[Role], name: &str) -> Result<(), DomainError> {
    for role in roles {
        if let Some(p) = &role.key_name_pattern {
            let re = validate_pattern(p, "key_name_pattern")?;
            if !re.is_match(name) {
                return Err(DomainError::invalid(
                    "name_pattern_mismatch",
                    "name",
                    format!(
                        "name must match the pattern {p} required by role {}",
                        role.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The union of the permissions of `roles`.
pub fn union(roles: &[Role]) -> PermissionSet {
    roles
        .iter()
        .flat_map(|r| r.permissions.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn built_ins_match_the_matrix() {
        let roles = built_in_roles(Utc::now());
        let get = |n: &str| {
            roles
                .iter()
                .find(|r| r.name == n)
                .unwrap()
                .permissions
                .clone()
        };
        assert_eq!(get(SUPER_ADMIN).len(), Permission::ALL.len());
        let admin = get(ADMIN);
        assert!(admin.contains(&"api_keys.manage".to_string()));
        assert!(admin.contains(&"users.update".to_string()));
        for p in [
            "users.create",
            "users.reset_password",
            "users.delete",
            "roles.manage",
            "organization.manage",
            "audit.manage",
        ] {
            assert!(!admin.contains(&p.to_string()), "{p}");
        }
        assert_eq!(
            get(READ_ONLY),
            vec![
                "organization.view",
                "roles.view",
                "service_accounts.view",
                "api_keys.view"
            ]
        );
    }

    #[test]
    fn name_pattern_is_searched_as_written() {
        let mut role = built_in_roles(Utc::now()).remove(0);
        let matches =
            |role: &Role, name: &str| check_name_patterns(std::slice::from_ref(role), name).is_ok();
        // Anchored at both ends: the whole name.
        role.key_name_pattern = Some("^svc-[a-z]+$".into());
        assert!(matches(&role, "svc-billing"));
        assert!(!matches(&role, "my-svc-billing"));
        assert!(!matches(&role, "svc-billing-2"));
        // `^` alone: a prefix (it used to match only the bare prefix itself).
        role.key_name_pattern = Some("^ci-".into());
        assert!(matches(&role, "ci-"));
        assert!(matches(&role, "ci-build"));
        assert!(!matches(&role, "xci-build"));
        // No anchor: anywhere in the name.
        role.key_name_pattern = Some("ci-".into());
        assert!(matches(&role, "my-ci-build"));
        assert!(!matches(&role, "prod"));
        // `$` alone: a suffix.
        role.key_name_pattern = Some("-prod$".into());
        assert!(matches(&role, "orders-prod"));
        assert!(!matches(&role, "orders-prod-2"));
        assert!(validate_pattern("(", "p").is_err());
    }

    #[test]
    fn role_names() {
        assert!(validate_name("billing-reader", "name").is_ok());
        assert!(validate_name("", "name").is_err());
        assert!(validate_name("Billing", "name").is_err());
    }
}
