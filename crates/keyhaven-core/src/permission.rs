//! Permissions: the fixed management catalog and the organization's application scopes.
//!
//! Both kinds share one namespace of strings. A string that names a catalog entry is a
//! management permission; any other string matching the scope pattern is an application
//! scope, opaque to Keyhaven and returned by verification.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::error::DomainError;

macro_rules! catalog {
    ($( $variant:ident = $name:literal : $desc:literal ),+ $(,)?) => {
        /// A management permission of the fixed catalog.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Permission { $( #[doc = $desc] $variant ),+ }

        impl Permission {
            /// Every management permission, in catalog order.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),+];

            /// The permission's name, e.g. `api_keys.create`.
            pub fn as_str(self) -> &'static str {
                match self { $(Permission::$variant => $name),+ }
            }

            /// A one-line description for the catalog endpoint and the console.
            pub fn description(self) -> &'static str {
                match self { $(Permission::$variant => $desc),+ }
            }
        }

        impl FromStr for Permission {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($name => Ok(Permission::$variant),)+ _ => Err(()) }
            }
        }
    };
}

catalog! {
    OrganizationView = "organization.view": "See the organization's settings",
    OrganizationManage = "organization.manage": "Change the organization's name and key prefix",
    UsersView = "users.view": "See portal users",
    UsersCreate = "users.create": "Create portal users",
    UsersUpdate = "users.update": "Change portal users' names, roles and status",
    UsersResetPassword = "users.reset_password": "Set another user's password",
    UsersDelete = "users.delete": "Delete portal users",
    RolesView = "roles.view": "See roles, needed to assign them",
    RolesManage = "roles.manage": "Create, edit and delete custom roles",
    ServiceAccountsView = "service_accounts.view": "See service accounts and their credentials",
    ServiceAccountsManage = "service_accounts.manage": "Create, change, suspend, archive and delete service accounts and credentials",
    ApiKeysView = "api_keys.view": "See API keys, their usage and the dashboard metrics",
    ApiKeysCreate = "api_keys.create": "Create API keys",
    ApiKeysManage = "api_keys.manage": "Edit, regenerate, revoke and delete API keys",
    AuditView = "audit.view": "Read the audit log and API activity",
    AuditManage = "audit.manage": "Configure audit sinks that stream the audit log elsewhere",
    SharedSecretView = "shared_secret.view": "Reveal the organization's shared secret",
    SharedSecretManage = "shared_secret.manage": "Create or rotate the organization's shared secret",
    WebhooksView = "webhooks.view": "See webhook endpoints and their deliveries",
    WebhooksManage = "webhooks.manage": "Create, change and delete webhook endpoints",
    RatelimitsUse = "ratelimits.use": "Check and spend rate limits on anything through /v1/ratelimit",
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `s` names a management permission.
pub fn is_management(s: &str) -> bool {
    Permission::from_str(s).is_ok()
}

/// Checks that `s` is a valid permission string (catalog entry or application scope):
/// `^[a-z0-9][a-z0-9_.:-]{0,63}$`.
pub fn validate_scope(s: &str, param: &str) -> Result<(), DomainError> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b[1..].iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b':' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "invalid_scope",
            param,
            format!("{param} must match ^[a-z0-9][a-z0-9_.:-]{{0,63}}$"),
        ))
    }
}

/// A set of permission strings (management and scopes together).
pub type PermissionSet = BTreeSet<String>;

/// Every management permission as a set.
pub fn all_management() -> PermissionSet {
    Permission::ALL
        .iter()
        .map(|p| p.as_str().to_string())
        .collect()
}

/// The no-escalation rule: a principal holding `held` may grant `granted` only if it
/// holds every management permission among them. Application scopes are free to grant.
/// Returns the first management permission that is missing.
pub fn check_no_escalation<'a>(
    held: &PermissionSet,
    granted: impl IntoIterator<Item = &'a String>,
) -> Result<(), DomainError> {
    for p in granted {
        if is_management(p) && !held.contains(p) {
            return Err(DomainError::denied(p.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_round_trips_and_has_descriptions() {
        assert_eq!(Permission::ALL.len(), 21);
        for p in Permission::ALL {
            assert_eq!(Permission::from_str(p.as_str()), Ok(*p));
            assert!(!p.description().is_empty());
            validate_scope(p.as_str(), "p").unwrap();
        }
    }

    #[test]
    fn scopes_follow_the_pattern() {
        for ok in ["read", "billing:read", "a", "x.y-z_1"] {
            assert!(validate_scope(ok, "s").is_ok(), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "Read", "-x", "a b", long.as_str(), "ä"] {
            assert!(validate_scope(bad, "s").is_err(), "{bad}");
        }
    }

    #[test]
    fn escalation_is_refused_but_scopes_are_free() {
        let held: PermissionSet = ["api_keys.create".to_string()].into();
        let grant = ["read".to_string(), "api_keys.create".to_string()];
        assert!(check_no_escalation(&held, &grant).is_ok());
        let grant = ["users.delete".to_string()];
        assert_eq!(
            check_no_escalation(&held, &grant),
            Err(DomainError::denied("users.delete"))
        );
    }
}
