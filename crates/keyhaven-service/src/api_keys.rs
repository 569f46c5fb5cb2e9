//! API keys.

use keyhaven_core::api_key::{self, ApiKey, RateLimit};
use keyhaven_core::audit::Action;
use keyhaven_core::audit::Outcome;
use keyhaven_core::id::Id;
use keyhaven_core::key_format::{self, Secret};
use keyhaven_core::permission::Permission;
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::role;
use keyhaven_core::service_account::ServiceAccountStatus;
use keyhaven_core::time::{self, Timestamp};
use keyhaven_core::usage_control::{CreditOp, Credits, NamedLimit};
use keyhaven_core::value::{
    Balance, CreditSettings, Description, Errors, Expiry, ExternalId, GracePeriod, KeyName, Limits,
    LimitsPatch, Metadata, Networks, RoleNames, Scopes, Tags,
};
use keyhaven_core::webhook_event::WebhookEvent;
use keyhaven_core::DomainError;
use serde_json::json;

use crate::{duplicate_as_conflict, Caller, Service, ServiceError, ServiceResult};

/// `{type, id}` naming a key's owner.
#[derive(Debug, Clone)]
pub struct OwnerRef {
    /// `service_account` (or `user`, for one's own personal key).
    pub kind: PrincipalKind,
    /// The owner's id.
    pub id: String,
}

/// What `POST /api-keys` (or the console's form, or an import item) carries, as
/// sent: a draft that [`NewApiKey`] parses.
#[derive(Debug, Clone, Default)]
pub struct CreateApiKey {
    /// Required, 1–100 characters, unique in the organization.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// ≤ 20 tags.
    pub tags: Option<Vec<String>>,
    /// Role names.
    pub roles: Option<Vec<String>>,
    /// Extra permissions.
    pub scopes: Option<Vec<String>>,
    /// A service account; default: the caller (personal) or the calling key's owner.
    pub owner: Option<OwnerRef>,
    /// Expiry instant (future).
    pub expires_at: Option<Timestamp>,
    /// Or expiry in days from now.
    pub expires_in_days: Option<i64>,
    /// The limit named `default` (the old single rate limit).
    pub ratelimit: Option<RateLimit>,
    /// Named rate limits.
    pub ratelimits: Option<Vec<NamedLimit>>,
    /// The credit balance alone (the old field; the same number as `credits.remaining`).
    pub remaining: Option<i64>,
    /// Credits with their refill and low threshold.
    pub credits: Option<Credits>,
    /// Client networks allowed.
    pub allowed_cidrs: Option<Vec<String>>,
    /// A JSON object ≤ 4 KiB.
    pub metadata: Option<serde_json::Value>,
    /// The id of the customer or system in the caller's world.
    pub external_id: Option<String>,
    /// False to create the key turned off (default true).
    pub enabled: Option<bool>,
}

/// The audit target for a key.
pub fn key_principal(k: &ApiKey) -> Principal {
    Principal {
        kind: PrincipalKind::ApiKey,
        id: k.id.to_string(),
        name: k.name.clone(),
    }
}

impl Service {
    /// Creates a key and returns it with its effective permissions and its secret (the
    /// only time it is available).
    pub async fn create_api_key(
        &self,
        caller: &Caller,
        input: impl TryInto<NewApiKey, Error: Into<ServiceError>>,
    ) -> ServiceResult<(ApiKey, Vec<String>, Secret)> {
        self.authorize(caller, Permission::ApiKeysCreate, Action::ApiKeyCreate)
            .await?;
        // Authorized first: a caller who may not act learns nothing about the input.
        let input: NewApiKey = input.try_into().map_err(Into::into)?;
        let now = self.now();
        let (mut tx, mut key) = self
            .new_key_record(caller, input, now, Action::ApiKeyCreate, false)
            .await?;
        let org = tx
            .organization(&caller.org_id)
            .await?
            .ok_or(ServiceError::NotFound("organization"))?;
        let secret = key_format::generate(&org.key_prefix, &mut rand::rngs::OsRng);
        key.digest = key_format::digest_hex(secret.expose());
        key.masked_key = key_format::mask(secret.expose());
        tx.insert_api_key(&key).await.map_err(|e| {
            duplicate_as_conflict(e, "name_taken", "an API key with this name already exists")
        })?;
        if let Some(r) = key.credits.and_then(|c| c.refill) {
            tx.schedule_refill(&key.id, Some(r.next_due(now))).await?;
        }
        // In this node's index of digests before the commit, so the key works here the
        // moment it is returned (an extra digest, should the commit fail, costs nothing).
        self.verifier.index.insert_hex(&key.digest);
        let permissions = self.key_permissions(tx.as_mut(), &key).await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::ApiKeyCreate,
                target: Some(key_principal(&key)),
                changes: json!({
                    "name": key.name,
                    "owner": key.owner,
                    "roles": key.roles,
                    "scopes": key.scopes,
                    "tags": key.tags,
                    "expires_at": key.expires_at.as_ref().map(time::rfc3339),
                }),
                event: Some((
                    WebhookEvent::ApiKeyCreated,
                    crate::webhooks::key_event(&key, now),
                )),
            }),
            // Other nodes add the new digest to their index when they read this row.
            &[(keyhaven_store::ChangeKind::Key, key.id.to_string())],
        )
        .await?;
        Ok((key, permissions, secret))
    }

    /// Checks what the caller may grant for a new key, in a new transaction: the key
    /// record without its secret (`digest` and `masked_key` are empty), and the
    /// transaction to insert it in. An imported key (`imported`) may carry an expiry in
    /// the past (it arrives expired).
    pub(crate) async fn new_key_record(
        &self,
        caller: &Caller,
        input: NewApiKey,
        now: Timestamp,
        action: Action,
        imported: bool,
    ) -> ServiceResult<(Box<dyn keyhaven_store::Tx>, ApiKey)> {
        let expires_at = input.expiry.resolve(now, imported)?;
        let name = input.name.into_inner();
        let roles = input.roles.into_strings();
        let scopes = input.scopes.into_strings();
        let tx = self.store.begin().await?;
        let (mut tx, key_roles) = self
            .grant_or_deny(tx, caller, action, crate::GrantChange::new(&roles, &scopes))
            .await?;
        role::check_name_patterns(&key_roles, &name)?;
        let creator_roles = self
            .creator_roles(tx.as_mut(), caller, Permission::ApiKeysCreate)
            .await?;
        role::check_name_patterns(&creator_roles, &name)?;
        let owner = self
            .resolve_owner(tx.as_mut(), caller, input.owner.as_ref())
            .await?;
        let key = ApiKey {
            id: self.new_id(),
            org_id: caller.org_id.clone(),
            name,
            description: input.description.into_inner(),
            tags: input.tags.into_strings(),
            owner,
            roles,
            scopes,
            digest: String::new(),
            masked_key: String::new(),
            expires_at,
            created_by: caller.principal.clone(),
            created_at: now,
            updated_at: now,
            last_used_at: None,
            revoked_at: None,
            ratelimits: input.ratelimits.into_inner(),
            credits: input.credits.map(CreditSettings::get),
            credits_epoch: 0,
            allowed_cidrs: input.allowed_cidrs.into_inner(),
            metadata: input.metadata.into_inner(),
            previous_digest: None,
            previous_valid_until: None,
            external_id: input.external_id.map(ExternalId::into_inner),
            enabled: input.enabled,
            imported_at: imported.then_some(now),
        };
        Ok((tx, key))
    }

    async fn resolve_owner(
        &self,
        tx: &mut dyn keyhaven_store::Tx,
        caller: &Caller,
        owner: Option<&Owner>,
    ) -> ServiceResult<Principal> {
        match owner {
            Some(o) if o.kind == PrincipalKind::ServiceAccount => {
                let id = o.id.clone();
                let sa = tx
                    .service_account(&caller.org_id, &id)
                    .await?
                    .ok_or_else(|| {
                        DomainError::invalid(
                            "unknown_owner",
                            "owner.id",
                            "there is no such service account",
                        )
                    })?;
                if sa.status == ServiceAccountStatus::Archived {
                    return Err(DomainError::conflict(
                        "service_account_archived",
                        "an archived service account cannot get new keys",
                    )
                    .into());
                }
                Ok(Principal {
                    kind: PrincipalKind::ServiceAccount,
                    id: sa.id.to_string(),
                    name: sa.name,
                })
            }
            Some(o) if o.kind == PrincipalKind::User => {
                let id = o.id.clone();
                let allowed = caller.user_id().as_ref() == Some(&id)
                    || caller.principal.kind == PrincipalKind::System;
                let user = tx.user(&caller.org_id, &id).await?;
                match user {
                    Some(u) if allowed => Ok(Principal {
                        kind: PrincipalKind::User,
                        id: u.id.to_string(),
                        name: u.display_name,
                    }),
                    _ => Err(DomainError::invalid(
                        "invalid_owner",
                        "owner",
                        "a key may be owned by a service account, or by yourself",
                    )
                    .into()),
                }
            }
            Some(_) => Err(DomainError::invalid(
                "invalid_owner",
                "owner.type",
                "owner.type must be service_account",
            )
            .into()),
            None => match caller.principal.kind {
                PrincipalKind::User => {
                    // Owners are shown by display name (as every read of the key does).
                    let id = Id::from_trusted(caller.principal.id.clone());
                    let user = tx
                        .user(&caller.org_id, &id)
                        .await?
                        .ok_or(ServiceError::NotFound("user"))?;
                    Ok(Principal {
                        kind: PrincipalKind::User,
                        id: user.id.to_string(),
                        name: user.display_name,
                    })
                }
                PrincipalKind::ApiKey => caller
                    .key_owner
                    .clone()
                    .ok_or(ServiceError::Internal("key caller without owner".into())),
                _ => {
                    Err(DomainError::invalid("owner_required", "owner", "owner is required").into())
                }
            },
        }
    }
}

/// Input of `PATCH /api-keys/{id}`: absent fields stay, `null` clears optional ones.
#[derive(Debug, Clone, Default)]
pub struct UpdateApiKey {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New tags (replaces the list).
    pub tags: Option<Vec<String>>,
    /// New roles (replaces the list).
    pub roles: Option<Vec<String>>,
    /// New scopes (replaces the list).
    pub scopes: Option<Vec<String>>,
    /// New `default` limit, or `null` to remove it.
    pub ratelimit: Option<Option<RateLimit>>,
    /// New named limits (replaces the list; `null` = none).
    pub ratelimits: Option<Option<Vec<NamedLimit>>>,
    /// New balance (sets it), or `null` for unlimited.
    pub remaining: Option<Option<i64>>,
    /// New credits object (replaces it), or `null` for unlimited.
    pub credits: Option<Option<Credits>>,
    /// New allowed networks (replaces the list).
    pub allowed_cidrs: Option<Vec<String>>,
    /// New metadata object; `null` clears it (to `{}`).
    pub metadata: Option<Option<serde_json::Value>>,
    /// New `external_id`, or `null` to clear it.
    pub external_id: Option<Option<String>>,
    /// Turns the key off (`false`, verification answers `DISABLED`) or on again.
    pub enabled: Option<bool>,
}

/// Input of `POST /api-keys/{id}/regenerate`.
#[derive(Debug, Clone)]
pub struct RegenerateApiKey {
    /// Required: the new expiry, or `null` for never.
    pub expires_at: Option<Option<Timestamp>>,
    /// Seconds the old secret keeps verifying (0–604800).
    pub grace_period_seconds: Option<i64>,
}

/// The owner a new key names: a service account, or the caller's own user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `service_account` or `user`.
    pub kind: PrincipalKind,
    /// The owner's id.
    pub id: Id,
}

/// A new key, every field parsed: what `create_api_key` and the import take.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The name.
    pub name: KeyName,
    /// The description (may be empty).
    pub description: Description,
    /// Its tags.
    pub tags: Tags,
    /// Role names.
    pub roles: RoleNames,
    /// Extra permissions.
    pub scopes: Scopes,
    /// A service account; default: the caller (personal) or the calling key's owner.
    pub owner: Option<Owner>,
    /// When it expires.
    pub expiry: Expiry,
    /// Its rate limits.
    pub ratelimits: Limits,
    /// Its credits; none is unlimited.
    pub credits: Option<CreditSettings>,
    /// Client networks allowed (none: any).
    pub allowed_cidrs: Networks,
    /// Its metadata object.
    pub metadata: Metadata,
    /// The id of the customer or system in the caller's world.
    pub external_id: Option<ExternalId>,
    /// False to create the key turned off.
    pub enabled: bool,
}

impl NewApiKey {
    /// Parses a draft field by field; every mistake is returned, in the order of the
    /// fields (the console shows them all at once).
    pub fn parse_all(d: CreateApiKey) -> Result<Self, Vec<DomainError>> {
        let mut e = Errors::default();
        let name = e.take(KeyName::parse(&d.name, "name"));
        let description = e.take(Description::parse(
            d.description.as_deref().unwrap_or(""),
            "description",
        ));
        let tags = e.take(Tags::parse(d.tags.as_deref().unwrap_or(&[]), "tags"));
        let roles = e.take(RoleNames::parse(d.roles.as_deref().unwrap_or(&[]), "roles"));
        let scopes = e.take(Scopes::parse(d.scopes.as_deref().unwrap_or(&[]), "scopes"));
        let expiry = e.take(Expiry::parse(d.expires_at, d.expires_in_days));
        let external_id = e.take(
            d.external_id
                .as_deref()
                .map(|x| ExternalId::parse(x, "external_id"))
                .transpose(),
        );
        let ratelimits = e.take(Limits::parse(d.ratelimit, d.ratelimits));
        let credits = e.take(CreditSettings::resolve(d.credits, d.remaining));
        let allowed_cidrs = e.take(Networks::parse(
            d.allowed_cidrs.as_deref().unwrap_or(&[]),
            "allowed_cidrs",
        ));
        let metadata = e.take(Metadata::parse(d.metadata));
        let owner = e.take(
            d.owner
                .map(|o| Id::parse(&o.id, "owner.id").map(|id| Owner { kind: o.kind, id }))
                .transpose(),
        );
        match (
            name,
            description,
            tags,
            roles,
            scopes,
            expiry,
            external_id,
            ratelimits,
            credits,
            allowed_cidrs,
            metadata,
            owner,
        ) {
            (
                Some(name),
                Some(description),
                Some(tags),
                Some(roles),
                Some(scopes),
                Some(expiry),
                Some(external_id),
                Some(ratelimits),
                Some(credits),
                Some(allowed_cidrs),
                Some(metadata),
                Some(owner),
            ) => Ok(Self {
                name,
                description,
                tags,
                roles,
                scopes,
                owner,
                expiry,
                ratelimits,
                credits,
                allowed_cidrs,
                metadata,
                external_id,
                enabled: d.enabled.unwrap_or(true),
            }),
            _ => Err(e.into_vec()),
        }
    }
}

parsed_from!(CreateApiKey => NewApiKey);

/// A change to a key's credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CreditsPatch {
    /// They stay.
    #[default]
    Keep,
    /// They become these (none: unlimited).
    Replace(Option<CreditSettings>),
    /// The balance is set; the refill and threshold stay.
    Balance(Balance),
}

impl CreditsPatch {
    /// Parses a patch's `credits` and old `remaining` fields (`null` clears).
    pub fn parse(
        credits: Option<Option<Credits>>,
        remaining: Option<Option<i64>>,
    ) -> Result<Self, DomainError> {
        Ok(match (credits, remaining) {
            (Some(c), Some(r)) => CreditsPatch::Replace(CreditSettings::resolve(c, r)?),
            (Some(c), None) => CreditsPatch::Replace(c.map(CreditSettings::parse).transpose()?),
            (None, Some(Some(n))) => CreditsPatch::Balance(Balance::parse(n, "remaining")?),
            (None, Some(None)) => CreditsPatch::Replace(None),
            (None, None) => CreditsPatch::Keep,
        })
    }
}

/// A change to a key, every field parsed: absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct ApiKeyPatch {
    /// New name.
    pub name: Option<KeyName>,
    /// New description.
    pub description: Option<Description>,
    /// New tags.
    pub tags: Option<Tags>,
    /// New roles.
    pub roles: Option<RoleNames>,
    /// New scopes.
    pub scopes: Option<Scopes>,
    /// New limits.
    pub limits: LimitsPatch,
    /// New credits.
    pub credits: CreditsPatch,
    /// New allowed networks.
    pub allowed_cidrs: Option<Networks>,
    /// New metadata.
    pub metadata: Option<Metadata>,
    /// New `external_id`, or `None` inside to clear it.
    pub external_id: Option<Option<ExternalId>>,
    /// Turned off or on.
    pub enabled: Option<bool>,
}

impl ApiKeyPatch {
    /// Parses a draft field by field; every mistake is returned, in field order.
    pub fn parse_all(d: UpdateApiKey) -> Result<Self, Vec<DomainError>> {
        let mut e = Errors::default();
        let name = e.take(
            d.name
                .as_deref()
                .map(|n| KeyName::parse(n, "name"))
                .transpose(),
        );
        let description = e.take(
            d.description
                .as_deref()
                .map(|x| Description::parse(x, "description"))
                .transpose(),
        );
        let external_id = e.take(
            d.external_id
                .map(|x| {
                    x.as_deref()
                        .map(|x| ExternalId::parse(x, "external_id"))
                        .transpose()
                })
                .transpose(),
        );
        let tags = e.take(
            d.tags
                .as_deref()
                .map(|t| Tags::parse(t, "tags"))
                .transpose(),
        );
        let roles = e.take(
            d.roles
                .as_deref()
                .map(|r| RoleNames::parse(r, "roles"))
                .transpose(),
        );
        let scopes = e.take(
            d.scopes
                .as_deref()
                .map(|s| Scopes::parse(s, "scopes"))
                .transpose(),
        );
        let limits = e.take(LimitsPatch::parse(d.ratelimit, d.ratelimits));
        let credits = e.take(CreditsPatch::parse(d.credits, d.remaining));
        let allowed_cidrs = e.take(
            d.allowed_cidrs
                .as_deref()
                .map(|c| Networks::parse(c, "allowed_cidrs"))
                .transpose(),
        );
        let metadata = e.take(d.metadata.map(Metadata::parse).transpose());
        match (
            name,
            description,
            external_id,
            tags,
            roles,
            scopes,
            limits,
            credits,
            allowed_cidrs,
            metadata,
        ) {
            (
                Some(name),
                Some(description),
                Some(external_id),
                Some(tags),
                Some(roles),
                Some(scopes),
                Some(limits),
                Some(credits),
                Some(allowed_cidrs),
                Some(metadata),
            ) => Ok(Self {
                name,
                description,
                tags,
                roles,
                scopes,
                limits,
                credits,
                allowed_cidrs,
                metadata,
                external_id,
                enabled: d.enabled,
            }),
            _ => Err(e.into_vec()),
        }
    }
}

parsed_from!(UpdateApiKey => ApiKeyPatch);

/// A regeneration, parsed: the new expiry (`None`: never) and the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regenerate {
    /// The new expiry instant, or `None` for a key that never expires.
    pub expires_at: Option<Timestamp>,
    /// How long the old secret keeps verifying.
    pub grace: GracePeriod,
}

impl TryFrom<RegenerateApiKey> for Regenerate {
    type Error = DomainError;

    fn try_from(d: RegenerateApiKey) -> Result<Self, DomainError> {
        let Some(expires_at) = d.expires_at else {
            return Err(DomainError::invalid(
                "parameter_missing",
                "expires_at",
                "expires_at is required (null for a key that never expires)",
            ));
        };
        Ok(Regenerate {
            expires_at,
            grace: GracePeriod::parse(d.grace_period_seconds.unwrap_or(0))?,
        })
    }
}

/// The dashboard numbers.
#[derive(Debug, Clone, Copy)]
pub struct Metrics {
    /// Every key.
    pub total_keys: i64,
    /// Neither revoked nor expired.
    pub active_keys: i64,
    /// Expired.
    pub expired_keys: i64,
    /// Revoked.
    pub revoked_keys: i64,
    /// Verifications since 00:00 UTC.
    pub api_calls_today: i64,
}

/// Verifications of one key on one UTC day.
#[derive(Debug, Clone)]
pub struct DailyUsage {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Successful verifications.
    pub valid: i64,
    /// Refused verifications.
    pub invalid: i64,
}

/// Result of a batch delete.
#[derive(Debug, Clone, Default)]
pub struct BatchDeleted {
    /// Ids that were deleted.
    pub deleted: Vec<String>,
    /// Ids that did not exist in the organization.
    pub not_found: Vec<String>,
}

/// The start of `t`'s UTC day.
pub fn day_start(t: Timestamp) -> Timestamp {
    t.date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc())
        .unwrap_or(t)
}

/// Why a key's owner keeps its keys from verifying (they answer `DISABLED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerHold {
    /// The user of a personal key is inactive.
    UserInactive,
    /// The user of a personal key no longer exists.
    UserGone,
    /// The service account is suspended.
    AccountSuspended,
    /// The service account is archived.
    AccountArchived,
    /// The service account no longer exists.
    AccountGone,
}

impl Service {
    /// For the owners of `keys`, those that keep their keys from verifying, by owner
    /// id: one lookup per distinct owner. Owners that let their keys verify are absent.
    pub async fn key_owner_holds<'a>(
        &self,
        caller: &Caller,
        keys: impl IntoIterator<Item = &'a ApiKey>,
    ) -> ServiceResult<std::collections::HashMap<String, OwnerHold>> {
        self.authorize(caller, Permission::ApiKeysView, Action::ApiKeyList)
            .await?;
        let mut owners: Vec<&Principal> = keys.into_iter().map(|k| &k.owner).collect();
        owners.sort_by(|a, b| a.id.cmp(&b.id));
        owners.dedup_by(|a, b| a.id == b.id);
        let mut out = std::collections::HashMap::new();
        if owners.is_empty() {
            return Ok(out);
        }
        let mut tx = self.store.read().await?;
        for o in owners {
            let id = Id::from_trusted(o.id.clone());
            let hold = match o.kind {
                PrincipalKind::User => match tx.user(&caller.org_id, &id).await? {
                    Some(u) if u.status == keyhaven_core::user::UserStatus::Active => None,
                    Some(_) => Some(OwnerHold::UserInactive),
                    None => Some(OwnerHold::UserGone),
                },
                PrincipalKind::ServiceAccount => {
                    match tx.service_account(&caller.org_id, &id).await? {
                        Some(a) => match a.status {
                            ServiceAccountStatus::Active => None,
                            ServiceAccountStatus::Suspended => Some(OwnerHold::AccountSuspended),
                            ServiceAccountStatus::Archived => Some(OwnerHold::AccountArchived),
                        },
                        None => Some(OwnerHold::AccountGone),
                    }
                }
                _ => None,
            };
            if let Some(h) = hold {
                out.insert(o.id.clone(), h);
            }
        }
        Ok(out)
    }
}

impl Service {
    /// A key's effective permissions: its roles' permissions and its scopes; for a
    /// personal key, management permissions only as far as its user holds them now.
    pub async fn key_permissions(
        &self,
        tx: &mut dyn keyhaven_store::Tx,
        k: &ApiKey,
    ) -> ServiceResult<Vec<String>> {
        let perms = tx.key_access(k).await?.permissions;
        Ok(perms.into_iter().collect())
    }

    /// A page of keys, each with its effective permissions.
    pub async fn list_api_keys(
        &self,
        caller: &Caller,
        filter: &keyhaven_store::ApiKeyFilter,
        page: &keyhaven_store::Page,
    ) -> ServiceResult<keyhaven_store::Listing<(ApiKey, Vec<String>)>> {
        self.authorize(caller, Permission::ApiKeysView, Action::ApiKeyList)
            .await?;
        let mut tx = self.store.read().await?;
        let l = tx.list_api_keys(&caller.org_id, filter, page).await?;
        let mut items = Vec::with_capacity(l.items.len());
        for mut k in l.items {
            let p = self.key_permissions(tx.as_mut(), &k).await?;
            self.live_credits(&mut k);
            items.push((k, p));
        }
        Ok(keyhaven_store::Listing {
            items,
            has_more: l.has_more,
            next_cursor: l.next_cursor,
        })
    }

    /// One key with its effective permissions.
    pub async fn get_api_key(
        &self,
        caller: &Caller,
        id: &Id,
    ) -> ServiceResult<(ApiKey, Vec<String>)> {
        self.authorize(caller, Permission::ApiKeysView, Action::ApiKeyView)
            .await?;
        let mut tx = self.store.read().await?;
        let mut k = tx
            .api_key(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("API key"))?;
        let p = self.key_permissions(tx.as_mut(), &k).await?;
        self.live_credits(&mut k);
        Ok((k, p))
    }

    /// Shows the balance as counted now where the counter engine knows it better than
    /// the database (spending written behind on SQLite).
    pub(crate) fn live_credits(&self, k: &mut ApiKey) {
        if let Some(c) = &mut k.credits {
            if let Some(n) = self
                .verifier
                .meter
                .live_balance(k.id.as_str(), k.credits_epoch)
            {
                c.remaining = n;
            }
        }
    }

    /// Changes a key's fields.
    pub async fn update_api_key(
        &self,
        caller: &Caller,
        id: &Id,
        input: impl TryInto<ApiKeyPatch, Error: Into<ServiceError>>,
    ) -> ServiceResult<(ApiKey, Vec<String>)> {
        self.authorize(caller, Permission::ApiKeysManage, Action::ApiKeyUpdate)
            .await?;
        // Authorized first: a caller who may not act learns nothing about the input.
        let input: ApiKeyPatch = input.try_into().map_err(Into::into)?;
        let name = input.name.map(KeyName::into_inner);
        let roles = input.roles.map(RoleNames::into_strings);
        let scopes = input.scopes.map(Scopes::into_strings);
        let mut tx = self.store.begin().await?;
        let mut k = tx
            .api_key(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("API key"))?;
        api_key::check_not_revoked(&k)?;
        let new_roles = roles.unwrap_or_else(|| k.roles.clone());
        let new_scopes = scopes.unwrap_or_else(|| k.scopes.clone());
        let (mut tx, found) = self
            .grant_or_deny(
                tx,
                caller,
                Action::ApiKeyUpdate,
                crate::GrantChange {
                    old_roles: &k.roles,
                    old_scopes: &k.scopes,
                    roles: &new_roles,
                    scopes: &new_scopes,
                },
            )
            .await?;
        let new_name = name.unwrap_or_else(|| k.name.clone());
        role::check_name_patterns(&found, &new_name)?;
        if new_name != k.name {
            // A rename is bound like a create: by the pattern of every role through
            // which the caller may create or change keys.
            self.check_creator_patterns(
                tx.as_mut(),
                caller,
                &[Permission::ApiKeysCreate, Permission::ApiKeysManage],
                &new_name,
            )
            .await?;
        }
        let mut ch = crate::changes::Changes::default();
        ch.field("name", &k.name, &new_name);
        k.name = new_name;
        if let Some(d) = input.description.map(Description::into_inner) {
            ch.field("description", &k.description, &d);
            k.description = d;
        }
        if let Some(t) = input.tags.map(Tags::into_strings) {
            ch.field("tags", &k.tags, &t);
            k.tags = t;
        }
        ch.field("roles", &k.roles, &new_roles);
        k.roles = new_roles;
        ch.field("scopes", &k.scopes, &new_scopes);
        k.scopes = new_scopes;
        let limits = input.limits.apply(&k.ratelimits)?.into_inner();
        ch.field("ratelimits", &k.ratelimits, &limits);
        k.ratelimits = limits;
        let credits = match input.credits {
            CreditsPatch::Keep => k.credits,
            CreditsPatch::Replace(c) => c.map(CreditSettings::get),
            CreditsPatch::Balance(n) => {
                let n = n.get();
                Some(Credits {
                    remaining: n,
                    ..k.credits.unwrap_or(Credits {
                        remaining: n,
                        refill: None,
                        low_threshold: None,
                    })
                })
            }
        };
        let old_balance = k.credits.map(|c| c.remaining);
        let new_balance = credits.map(|c| c.remaining);
        let balance_set = new_balance.is_some() && new_balance != old_balance;
        let refill_changed = credits.and_then(|c| c.refill) != k.credits.and_then(|c| c.refill);
        ch.field("credits", &k.credits, &credits);
        k.credits = credits;
        if balance_set {
            // The balance is replaced: credits nodes leased before are void.
            k.credits_epoch += 1;
        }
        if let Some(c) = input.allowed_cidrs.map(Networks::into_inner) {
            let old: Vec<String> = k.allowed_cidrs.iter().map(|c| c.to_string()).collect();
            let new: Vec<String> = c.iter().map(|c| c.to_string()).collect();
            ch.field("allowed_cidrs", &old, &new);
            k.allowed_cidrs = c;
        }
        if let Some(m) = input.metadata.map(Metadata::into_inner) {
            ch.field("metadata", &k.metadata, &m);
            k.metadata = m;
        }
        if let Some(e) = input.external_id.map(|e| e.map(ExternalId::into_inner)) {
            ch.field("external_id", &k.external_id, &e);
            k.external_id = e;
        }
        if let Some(on) = input.enabled {
            ch.field("enabled", &k.enabled, &on);
            k.enabled = on;
        }
        let mut success = None;
        if !ch.is_empty() {
            k.updated_at = self.now();
            tx.update_api_key(&k).await.map_err(|e| {
                duplicate_as_conflict(e, "name_taken", "an API key with this name already exists")
            })?;
            if refill_changed || balance_set {
                let next = k
                    .credits
                    .and_then(|c| c.refill)
                    .map(|r| r.next_due(k.updated_at));
                tx.schedule_refill(&k.id, next).await?;
            }
            success = Some(crate::Success {
                action: Action::ApiKeyUpdate,
                target: Some(key_principal(&k)),
                changes: ch.into_value(),
                event: Some((
                    WebhookEvent::ApiKeyUpdated,
                    crate::webhooks::key_event(&k, k.updated_at),
                )),
            });
        }
        let p = self.key_permissions(tx.as_mut(), &k).await?;
        self.commit_mutation(
            tx,
            caller,
            success,
            &[(keyhaven_store::ChangeKind::Key, k.id.to_string())],
        )
        .await?;
        if let (true, Some(n)) = (balance_set, new_balance) {
            self.verifier.meter.credits_adjusted(
                k.id.as_str(),
                keyhaven_store::CreditChange {
                    before: old_balance.unwrap_or(0),
                    after: n,
                    epoch: k.credits_epoch,
                },
                CreditOp::Set,
                n,
            );
        }
        Ok((k, p))
    }

    /// Replaces a key's secret; the old one may verify during a grace period.
    pub async fn regenerate_api_key(
        &self,
        caller: &Caller,
        id: &Id,
        input: impl TryInto<Regenerate, Error: Into<ServiceError>>,
    ) -> ServiceResult<(ApiKey, Vec<String>, Secret)> {
        self.authorize(caller, Permission::ApiKeysManage, Action::ApiKeyRegenerate)
            .await?;
        // Authorized first: a caller who may not act learns nothing about the input.
        let input: Regenerate = input.try_into().map_err(Into::into)?;
        let now = self.now();
        let expires_at = match input.expires_at {
            None => None,
            Some(t) => Expiry::At(t).resolve(now, false)?,
        };
        let grace = input.grace.get();
        let mut tx = self.store.begin().await?;
        let mut k = tx
            .api_key(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("API key"))?;
        api_key::check_not_revoked(&k)?;
        // The new secret carries the key's permissions: only a caller holding every
        // management permission it has (for a personal key: as far as its user holds
        // them now) may receive it.
        let held_by_key = self.key_permissions(tx.as_mut(), &k).await?;
        let mut tx = self
            .check_holds_all(
                tx,
                caller,
                &held_by_key,
                Action::ApiKeyRegenerate,
                key_principal(&k),
            )
            .await?;
        let org = tx
            .organization(&caller.org_id)
            .await?
            .ok_or(ServiceError::NotFound("organization"))?;
        let secret = key_format::generate(&org.key_prefix, &mut rand::rngs::OsRng);
        if grace.num_seconds() > 0 {
            k.previous_digest = Some(k.digest.clone());
            k.previous_valid_until = Some(now + grace);
        } else {
            k.previous_digest = None;
            k.previous_valid_until = None;
        }
        let old_expiry = k.expires_at;
        if tx.drop_pending_hash(&k.id).await? {
            // An imported key never verified: its old secret has no digest to keep.
            k.previous_digest = None;
            k.previous_valid_until = None;
        }
        k.digest = key_format::digest_hex(secret.expose());
        k.masked_key = key_format::mask(secret.expose());
        k.expires_at = expires_at;
        k.updated_at = now;
        tx.update_api_key(&k).await?;
        self.verifier.index.insert_hex(&k.digest);
        let mut ch = crate::changes::Changes::default();
        ch.field(
            "expires_at",
            &old_expiry.as_ref().map(time::rfc3339),
            &k.expires_at.as_ref().map(time::rfc3339),
        );
        let mut changes = ch.into_value();
        changes["grace_period_seconds"] = json!(grace.num_seconds());
        let p = self.key_permissions(tx.as_mut(), &k).await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::ApiKeyRegenerate,
                target: Some(key_principal(&k)),
                changes,
                event: Some((
                    WebhookEvent::ApiKeyRegenerated,
                    crate::webhooks::key_event(&k, now),
                )),
            }),
            &[(keyhaven_store::ChangeKind::Key, k.id.to_string())],
        )
        .await?;
        Ok((k, p, secret))
    }

    /// Sets, increments or decrements a key's credit balance; returns the balance after.
    /// Audited with the balance before and after. Every node sees it at once: a `set`
    /// voids what nodes leased before (a new epoch), an increment or decrement keeps
    /// their leases, which still belong to the balance.
    pub async fn adjust_credits(
        &self,
        caller: &Caller,
        id: &Id,
        op: CreditOp,
        value: i64,
    ) -> ServiceResult<i64> {
        self.authorize(caller, Permission::ApiKeysManage, Action::ApiKeyCredits)
            .await?;
        let value = Balance::parse(value, "value")?.get();
        // What was spent and is written behind goes to the database first, so the
        // audited balance "before" is the one counted.
        self.verifier
            .meter
            .engine()
            .flush()
            .await
            .map_err(keyhaven_store::StoreError::from)?;
        let mut tx = self.store.begin().await?;
        let k = tx
            .api_key(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("API key"))?;
        if k.credits.is_none() {
            return Err(DomainError::Conflict {
                code: "no_credits",
                message:
                    "this key has no credit balance; give it one with PATCH {\"credits\": …} first"
                        .into(),
            }
            .into());
        }
        let change = tx
            .adjust_credits(&caller.org_id, id, op, value)
            .await?
            .ok_or(ServiceError::NotFound("API key"))?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::ApiKeyCredits,
                target: Some(key_principal(&k)),
                changes: json!({
                    "op": op.as_str(),
                    "value": value,
                    "remaining": {"from": change.before, "to": change.after},
                }),
                event: None,
            }),
            &[(keyhaven_store::ChangeKind::Key, k.id.to_string())],
        )
        .await?;
        Ok(self
            .verifier
            .meter
            .credits_adjusted(k.id.as_str(), change, op, value))
    }

    /// Revokes a key (final); revoking a revoked key changes nothing.
    pub async fn revoke_api_key(
        &self,
        caller: &Caller,
        id: &Id,
    ) -> ServiceResult<(ApiKey, Vec<String>)> {
        self.authorize(caller, Permission::ApiKeysManage, Action::ApiKeyRevoke)
            .await?;
        let mut tx = self.store.begin().await?;
        let mut k = tx
            .api_key(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("API key"))?;
        let mut success = None;
        if k.revoked_at.is_none() {
            let now = self.now();
            k.revoked_at = Some(now);
            k.updated_at = now;
            k.previous_digest = None;
            k.previous_valid_until = None;
            tx.update_api_key(&k).await?;
            success = Some(crate::Success {
                action: Action::ApiKeyRevoke,
                target: Some(key_principal(&k)),
                changes: json!({}),
                event: Some((
                    WebhookEvent::ApiKeyRevoked,
                    crate::webhooks::key_event(&k, now),
                )),
            });
        }
        let p = self.key_permissions(tx.as_mut(), &k).await?;
        self.commit_mutation(
            tx,
            caller,
            success,
            &[(keyhaven_store::ChangeKind::Key, k.id.to_string())],
        )
        .await?;
        Ok((k, p))
    }

    /// Deletes a key permanently.
    pub async fn delete_api_key(&self, caller: &Caller, id: &Id) -> ServiceResult<()> {
        self.authorize(caller, Permission::ApiKeysManage, Action::ApiKeyDelete)
            .await?;
        let mut tx = self.store.begin().await?;
        let k = tx
            .api_key(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("API key"))?;
        tx.delete_api_key(&caller.org_id, id).await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::ApiKeyDelete,
                target: Some(key_principal(&k)),
                changes: json!({}),
                event: Some((
                    WebhookEvent::ApiKeyDeleted,
                    crate::webhooks::key_event(&k, self.now()),
                )),
            }),
            &[(keyhaven_store::ChangeKind::Key, k.id.to_string())],
        )
        .await?;
        Ok(())
    }

    /// Deletes up to 100 keys in one transaction.
    pub async fn batch_delete_api_keys(
        &self,
        caller: &Caller,
        ids: &[String],
    ) -> ServiceResult<BatchDeleted> {
        self.authorize(caller, Permission::ApiKeysManage, Action::ApiKeyDelete)
            .await?;
        if ids.is_empty() || ids.len() > 100 {
            return Err(
                DomainError::invalid("invalid_ids", "ids", "ids must hold 1 to 100 ids").into(),
            );
        }
        let mut out = BatchDeleted::default();
        let mut tx = self.store.begin().await?;
        for raw in ids {
            if out.deleted.contains(raw) || out.not_found.contains(raw) {
                continue;
            }
            let Ok(id) = Id::parse(raw, "ids") else {
                out.not_found.push(raw.clone());
                continue;
            };
            match tx.api_key(&caller.org_id, &id).await? {
                Some(k) => {
                    tx.delete_api_key(&caller.org_id, &id).await?;
                    self.audit(
                        tx.as_mut(),
                        caller,
                        Action::ApiKeyDelete,
                        Some(key_principal(&k)),
                        Outcome::Success,
                        json!({ "batch": true }),
                    )
                    .await?;
                    self.emit(
                        tx.as_mut(),
                        &caller.org_id,
                        WebhookEvent::ApiKeyDeleted,
                        crate::webhooks::key_event(&k, self.now()),
                    )
                    .await?;
                    out.deleted.push(raw.clone());
                }
                None => out.not_found.push(raw.clone()),
            }
        }
        self.commit_mutation(
            tx,
            caller,
            None,
            &out.deleted
                .iter()
                .map(|id| (keyhaven_store::ChangeKind::Key, id.clone()))
                .collect::<Vec<_>>(),
        )
        .await?;
        Ok(out)
    }

    /// Daily verification counts of a key for the last `days` days (oldest first,
    /// zero days included).
    pub async fn api_key_usage(
        &self,
        caller: &Caller,
        id: &Id,
        days: i64,
    ) -> ServiceResult<Vec<DailyUsage>> {
        self.authorize(caller, Permission::ApiKeysView, Action::ApiKeyUsage)
            .await?;
        if !(1..=90).contains(&days) {
            return Err(DomainError::invalid(
                "invalid_days",
                "days",
                "days must be between 1 and 90",
            )
            .into());
        }
        let today = day_start(self.now());
        let from = today - chrono::Duration::days(days - 1);
        let to = today + chrono::Duration::days(1);
        let mut tx = self.store.read().await?;
        tx.api_key(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("API key"))?;
        // The analytics' daily rows, per code (so the chart and analytics agree, and
        // the chart outlives the hourly retention).
        let q = keyhaven_store::AnalyticsQuery {
            org_id: caller.org_id.clone(),
            since_ms: from.timestamp_millis(),
            until_ms: to.timestamp_millis(),
            granularity: keyhaven_store::Granularity::Day,
            group_by: vec![keyhaven_store::Dimension::Code],
            key_id: Some(id.to_string()),
            owner_id: None,
            code: None,
            tag: None,
            limit: 1000,
            after: None,
        };
        let rows = tx.verification_counts(&q).await?.rows;
        let mut out: Vec<DailyUsage> = (0..days)
            .map(|d| DailyUsage {
                date: (from + chrono::Duration::days(d))
                    .format("%Y-%m-%d")
                    .to_string(),
                valid: 0,
                invalid: 0,
            })
            .collect();
        for r in rows {
            let idx = (r.time - from.timestamp_millis()) / 86_400_000;
            if let Some(slot) = usize::try_from(idx).ok().and_then(|i| out.get_mut(i)) {
                if r.code.as_deref() == Some("VALID") {
                    slot.valid += r.count;
                } else {
                    slot.invalid += r.count;
                }
            }
        }
        Ok(out)
    }

    /// The dashboard numbers.
    pub async fn metrics(&self, caller: &Caller) -> ServiceResult<Metrics> {
        self.authorize(caller, Permission::ApiKeysView, Action::ApiKeyMetrics)
            .await?;
        let now = self.now();
        let mut tx = self.store.read().await?;
        let c = tx.key_counts(&caller.org_id, now).await?;
        let calls = tx.calls_since(&caller.org_id, day_start(now)).await?;
        Ok(Metrics {
            total_keys: c.total,
            active_keys: c.active,
            expired_keys: c.expired,
            revoked_keys: c.revoked,
            api_calls_today: calls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(errors: &[DomainError]) -> Vec<String> {
        errors
            .iter()
            .map(|e| match e {
                DomainError::Invalid { param, .. } => param.clone().unwrap_or_default(),
                other => other.to_string(),
            })
            .collect()
    }

    #[test]
    fn a_draft_is_parsed_with_every_mistake_in_field_order() {
        let errors = NewApiKey::parse_all(CreateApiKey {
            name: "   ".into(),
            tags: Some(vec!["ok".into(), "".into()]),
            scopes: Some(vec!["Bad Scope".into()]),
            expires_in_days: Some(0),
            allowed_cidrs: Some(vec!["10.0.0.0/33".into()]),
            metadata: Some(serde_json::json!([1])),
            owner: Some(OwnerRef {
                kind: PrincipalKind::ServiceAccount,
                id: "nope".into(),
            }),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            params(&errors),
            [
                "name",
                "tags[1]",
                "scopes[0]",
                "expires_in_days",
                "allowed_cidrs[0]",
                "metadata",
                "owner.id"
            ]
        );
        // The API names the first.
        let first = NewApiKey::try_from(CreateApiKey {
            name: "".into(),
            scopes: Some(vec!["Bad".into()]),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(
            first,
            DomainError::Invalid {
                code: "name_required",
                ..
            }
        ));
    }

    #[test]
    fn a_valid_draft_gets_the_defaults() {
        let k = NewApiKey::try_from(CreateApiKey {
            name: "  ci deploy ".into(),
            tags: Some(vec!["a".into(), "a".into()]),
            remaining: Some(5),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(k.name.as_str(), "ci deploy");
        assert_eq!(k.tags.to_strings(), ["a"]);
        assert_eq!(k.expiry, Expiry::Never);
        assert!(k.enabled);
        assert_eq!(k.credits.map(|c| c.get().remaining), Some(5));
        assert_eq!(k.metadata.into_inner(), serde_json::json!({}));
    }

    #[test]
    fn credits_and_remaining_must_agree() {
        let c = |remaining| Credits {
            remaining,
            refill: None,
            low_threshold: None,
        };
        assert!(NewApiKey::try_from(CreateApiKey {
            name: "k".into(),
            remaining: Some(5),
            credits: Some(c(6)),
            ..Default::default()
        })
        .is_err());
        assert_eq!(
            CreditsPatch::parse(Some(Some(c(5))), Some(Some(5))).unwrap(),
            CreditsPatch::Replace(Some(CreditSettings::parse(c(5)).unwrap()))
        );
        assert_eq!(
            CreditsPatch::parse(None, Some(None)).unwrap(),
            CreditsPatch::Replace(None)
        );
        assert!(matches!(
            CreditsPatch::parse(None, Some(Some(7))).unwrap(),
            CreditsPatch::Balance(b) if b.get() == 7
        ));
        assert!(CreditsPatch::parse(None, Some(Some(-1))).is_err());
        assert_eq!(CreditsPatch::parse(None, None).unwrap(), CreditsPatch::Keep);
    }

    #[test]
    fn a_patch_parses_only_what_it_changes() {
        let p = ApiKeyPatch::try_from(UpdateApiKey {
            external_id: Some(None),
            ..Default::default()
        })
        .unwrap();
        assert!(p.name.is_none() && p.limits.is_empty());
        assert_eq!(p.external_id, Some(None));
        let errors = ApiKeyPatch::parse_all(UpdateApiKey {
            name: Some("".into()),
            external_id: Some(Some("".into())),
            ratelimit: Some(Some(RateLimit {
                limit: 0,
                duration_ms: 1000,
            })),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(params(&errors), ["name", "external_id", "ratelimit.limit"]);
    }

    #[test]
    fn regeneration_needs_an_expiry_and_a_grace_in_range() {
        assert!(Regenerate::try_from(RegenerateApiKey {
            expires_at: None,
            grace_period_seconds: None,
        })
        .is_err());
        assert!(Regenerate::try_from(RegenerateApiKey {
            expires_at: Some(None),
            grace_period_seconds: Some(604_801),
        })
        .is_err());
        let r = Regenerate::try_from(RegenerateApiKey {
            expires_at: Some(None),
            grace_period_seconds: Some(3600),
        })
        .unwrap();
        assert_eq!(r.grace.get().num_seconds(), 3600);
    }
}
