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
    /// Rate limits shared by all of its keys (one bucket per account and name).
    pub ratelimits: Vec<NamedLimitView>,
    /// The id of the customer or system in the caller's world.
    pub external_id: Option<String>,
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
            ratelimits: s.ratelimits.iter().map(Into::into).collect(),
            external_id: s.external_id.clone(),
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

/// A named rate limit: a token bucket of `limit` tokens refilled evenly over `duration_ms`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NamedRateLimit)]
pub struct NamedLimitView {
    /// `^[a-z0-9][a-z0-9_.:-]{0,63}$`, unique per key or service account.
    #[schema(pattern = "^[a-z0-9][a-z0-9_.:-]{0,63}$", max_length = 64)]
    pub name: String,
    /// 1..=1,000,000,000.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub limit: i64,
    /// 1,000..=2,592,000,000 (30 days).
    #[schema(minimum = 1000, maximum = 2_592_000_000_i64)]
    pub duration_ms: i64,
    /// Applied to every verification (default), or only when a request names it.
    #[serde(default = "yes")]
    pub auto_apply: bool,
}

fn yes() -> bool {
    true
}

impl From<NamedLimitView> for keyhaven_core::usage_control::NamedLimit {
    fn from(v: NamedLimitView) -> Self {
        keyhaven_core::usage_control::NamedLimit {
            name: v.name,
            limit: v.limit,
            duration_ms: v.duration_ms,
            auto_apply: v.auto_apply,
        }
    }
}

impl From<&keyhaven_core::usage_control::NamedLimit> for NamedLimitView {
    fn from(l: &keyhaven_core::usage_control::NamedLimit) -> Self {
        NamedLimitView {
            name: l.name.clone(),
            limit: l.limit,
            duration_ms: l.duration_ms,
            auto_apply: l.auto_apply,
        }
    }
}

/// A balance refill: the balance is set to `amount` at 00:00 UTC every day, or on
/// `day_of_month` (the last day in shorter months) every month.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreditRefill)]
pub struct RefillView {
    /// `daily` or `monthly`.
    #[schema(schema_with = crate::api::schema::value::<keyhaven_core::usage_control::RefillInterval>)]
    pub interval: keyhaven_core::usage_control::RefillInterval,
    /// The balance after a refill.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
    /// Monthly only: 1..=31 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 31)]
    pub day_of_month: Option<u32>,
}

/// A credit balance, spent by a verification's `cost`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Credits)]
pub struct CreditsView {
    /// Credits left (the same number as the key's `remaining`).
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub remaining: i64,
    /// When the balance is set back, if ever.
    #[serde(default)]
    pub refill: Option<RefillView>,
    /// `api_key.credits_low` fires once each time the balance falls below this.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub low_threshold: Option<i64>,
}

impl From<CreditsView> for keyhaven_core::usage_control::Credits {
    fn from(v: CreditsView) -> Self {
        keyhaven_core::usage_control::Credits {
            remaining: v.remaining,
            refill: v.refill.map(|r| keyhaven_core::usage_control::Refill {
                interval: r.interval,
                amount: r.amount,
                day_of_month: r.day_of_month,
            }),
            low_threshold: v.low_threshold,
        }
    }
}

impl From<&keyhaven_core::usage_control::Credits> for CreditsView {
    fn from(c: &keyhaven_core::usage_control::Credits) -> Self {
        CreditsView {
            remaining: c.remaining,
            refill: c.refill.map(|r| RefillView {
                interval: r.interval,
                amount: r.amount,
                day_of_month: r.day_of_month,
            }),
            low_threshold: c.low_threshold,
        }
    }
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
    /// The limit named `default`, if the key has one.
    pub ratelimit: Option<RateLimitView>,
    /// Every named limit.
    pub ratelimits: Vec<NamedLimitView>,
    /// The credit balance (`credits.remaining`); `null` = unlimited.
    pub remaining: Option<i64>,
    /// The credit balance and its rules; `null` = unlimited.
    pub credits: Option<CreditsView>,
    pub allowed_cidrs: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// The id of the customer or system in the caller's world.
    pub external_id: Option<String>,
    /// False: turned off without being revoked (verification answers `DISABLED`).
    pub enabled: bool,
    /// When it was imported from another system; `null` for keys made here.
    #[schema(format = DateTime)]
    pub imported_at: Option<String>,
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
            ratelimit: keyhaven_core::usage_control::default_limit(&k.ratelimits).map(|l| {
                let RateLimit { limit, duration_ms } = l.rate();
                RateLimitView { limit, duration_ms }
            }),
            ratelimits: k.ratelimits.iter().map(Into::into).collect(),
            remaining: k.credits.map(|c| c.remaining),
            credits: k.credits.as_ref().map(Into::into),
            allowed_cidrs: k.allowed_cidrs.iter().map(|c| c.to_string()).collect(),
            metadata: k.metadata.clone(),
            external_id: k.external_id.clone(),
            enabled: k.enabled,
            imported_at: ot(&k.imported_at),
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
