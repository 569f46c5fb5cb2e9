//! JSON shapes of resources, exactly as API.md defines them. These types are also the
//! response schemas of the OpenAPI document.

use keyhaven_core::api_key::{ApiKey, RateLimit};
use keyhaven_core::audit::AuditEntry;
use keyhaven_core::credential::Credential;
use keyhaven_core::organization::Organization;
use keyhaven_core::principal::Principal;
use keyhaven_core::role::Role;
use keyhaven_core::service_account::ServiceAccount;
use keyhaven_core::time::{rfc3339, Timestamp};
use keyhaven_core::user::User;
use keyhaven_store::Listing;
use serde::Serialize;
use utoipa::ToSchema;

use super::params::encode_cursor;

fn t(v: &Timestamp) -> String {
    rfc3339(v)
}

fn ot(v: &Option<Timestamp>) -> Option<String> {
    v.as_ref().map(rfc3339)
}

/// `{type, id, name}` of an owner, creator, actor or target.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalView {
    /// `user`, `api_key`, `service_account` or `system`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

impl From<&Principal> for PrincipalView {
    fn from(p: &Principal) -> Self {
        PrincipalView {
            kind: p.kind.as_str().to_string(),
            id: p.id.clone(),
            name: p.name.clone(),
        }
    }
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListView<T> {
    /// The items, newest first.
    pub data: Vec<T>,
    /// Whether more items follow.
    pub has_more: bool,
    /// Pass as `cursor` to get the next page.
    pub next_cursor: Option<String>,
}

impl<T> ListView<T> {
    /// Maps a store listing.
    pub fn from_listing<S>(l: Listing<S>, f: impl Fn(&S) -> T) -> Self {
        ListView {
            data: l.items.iter().map(f).collect(),
            has_more: l.has_more,
            next_cursor: l.next_cursor.as_deref().map(encode_cursor),
        }
    }
}

/// An organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationView {
    pub id: String,
    pub name: String,
    pub key_prefix: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&Organization> for OrganizationView {
    fn from(o: &Organization) -> Self {
        OrganizationView {
            id: o.id.to_string(),
            name: o.name.clone(),
            key_prefix: o.key_prefix.clone(),
            created_at: t(&o.created_at),
            updated_at: t(&o.updated_at),
        }
    }
}

/// A portal user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub roles: Vec<String>,
    /// `active` or `inactive`.
    pub status: String,
    #[schema(format = DateTime)]
    pub last_login_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.to_string(),
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            roles: u.roles.clone(),
            status: u.status.as_str().to_string(),
            last_login_at: ot(&u.last_login_at),
            created_at: t(&u.created_at),
            updated_at: t(&u.updated_at),
        }
    }
}

/// A role.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleView {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    pub key_name_pattern: Option<String>,
    pub built_in: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&Role> for RoleView {
    fn from(r: &Role) -> Self {
        RoleView {
            name: r.name.clone(),
            description: r.description.clone(),
            permissions: r.permissions.clone(),
            key_name_pattern: r.key_name_pattern.clone(),
            built_in: r.built_in,
            created_at: t(&r.created_at),
            updated_at: t(&r.updated_at),
        }
    }
}

/// One entry of the permission catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionView {
    /// e.g. `api_keys.create`.
    pub name: String,
    /// One line.
    pub description: String,
}

/// The caller's permissions on resource types (`expand[]=permissions`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ExpandedPermissions {
    pub service_accounts: ServiceAccountPermissions,
    pub api_keys: ApiKeyPermissions,
}

/// View / manage.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceAccountPermissions {
    pub view: bool,
    pub manage: bool,
}

/// View / create / manage.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyPermissions {
    pub view: bool,
    pub create: bool,
    pub manage: bool,
}

/// A service account.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceAccountView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub roles: Vec<String>,
    /// `active`, `suspended` or `archived`.
    pub status: String,
    pub created_by: PrincipalView,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Only with `expand[]=permissions`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<ExpandedPermissions>,
}

impl From<&ServiceAccount> for ServiceAccountView {
    fn from(s: &ServiceAccount) -> Self {
        ServiceAccountView {
            id: s.id.to_string(),
            name: s.name.clone(),
            description: s.description.clone(),
            roles: s.roles.clone(),
            status: s.status.as_str().to_string(),
            created_by: (&s.created_by).into(),
            created_at: t(&s.created_at),
            updated_at: t(&s.updated_at),
            permissions: None,
        }
    }
}

/// A client credential (its secret only in the create response).
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub description: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Only in the response that creates it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Only with `expand[]=permissions`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<ExpandedPermissions>,
}

impl From<&Credential> for CredentialView {
    fn from(c: &Credential) -> Self {
        CredentialView {
            id: c.id.to_string(),
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            description: c.description.clone(),
            created_at: t(&c.created_at),
            updated_at: t(&c.updated_at),
            last_used_at: ot(&c.last_used_at),
            expires_at: ot(&c.expires_at),
            client_secret: None,
            permissions: None,
        }
    }
}

/// A rate limit.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitView {
    pub limit: i64,
    pub duration_ms: i64,
}

/// An API key (its secret only in the create and regenerate responses).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    /// Always `api_key`.
    #[serde(rename = "type")]
    pub kind: String,
    pub owner: PrincipalView,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// Effective permissions: its roles' and its scopes.
    pub permissions: Vec<String>,
    /// Prefix, `_…` and the last four characters.
    pub masked_key: String,
    /// `active`, `revoked` or `expired`.
    pub status: String,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    pub created_by: PrincipalView,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    pub ratelimit: Option<RateLimitView>,
    pub remaining: Option<i64>,
    pub allowed_cidrs: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// The secret: only in the response that creates or regenerates it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl ApiKeyView {
    /// The view of `k` at `now`, with its effective permissions.
    pub fn new(k: &ApiKey, now: Timestamp, permissions: Vec<String>) -> Self {
        ApiKeyView {
            id: k.id.to_string(),
            name: k.name.clone(),
            description: k.description.clone(),
            tags: k.tags.clone(),
            kind: "api_key".into(),
            owner: (&k.owner).into(),
            roles: k.roles.clone(),
            scopes: k.scopes.clone(),
            permissions,
            masked_key: k.masked_key.clone(),
            status: k.status(now).as_str().to_string(),
            expires_at: ot(&k.expires_at),
            created_by: (&k.created_by).into(),
            created_at: t(&k.created_at),
            updated_at: t(&k.updated_at),
            last_used_at: ot(&k.last_used_at),
            revoked_at: ot(&k.revoked_at),
            ratelimit: k
                .ratelimit
                .map(|RateLimit { limit, duration_ms }| RateLimitView { limit, duration_ms }),
            remaining: k.remaining,
            allowed_cidrs: k.allowed_cidrs.iter().map(|c| c.to_string()).collect(),
            metadata: k.metadata.clone(),
            key: None,
        }
    }
}

/// An audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    pub id: String,
    #[schema(format = DateTime)]
    pub at: String,
    pub actor: PrincipalView,
    pub action: String,
    pub target: Option<PrincipalView>,
    /// `success`, `denied` or `error`.
    pub outcome: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&AuditEntry> for AuditEventView {
    fn from(e: &AuditEntry) -> Self {
        AuditEventView {
            id: e.id.to_string(),
            at: t(&e.at),
            actor: (&e.draft.actor).into(),
            action: e.draft.action.clone(),
            target: e.draft.target.as_ref().map(Into::into),
            outcome: e.draft.outcome.as_str().to_string(),
            ip: e.draft.ip.clone(),
            user_agent: e.draft.user_agent.clone(),
            request_id: e.draft.request_id.clone(),
            changes: e.draft.changes.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}
