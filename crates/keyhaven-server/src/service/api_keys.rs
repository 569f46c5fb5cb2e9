//! API keys.

use keyhaven_core::api_key::{self, ApiKey, RateLimit};
use keyhaven_core::audit::Outcome;
use keyhaven_core::id::Id;
use keyhaven_core::key_format::{self, Secret};
use keyhaven_core::permission::{self, Permission};
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::role;
use keyhaven_core::service_account::ServiceAccountStatus;
use keyhaven_core::time::{self, Timestamp};
use keyhaven_core::{validate, DomainError};
use serde::Deserialize;
use serde_json::json;

use super::{duplicate_as_conflict, Caller, Service, ServiceError, ServiceResult};

/// `{type, id}` naming a key's owner.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerRef {
    /// `service_account` (or `user`, for one's own personal key).
    #[serde(rename = "type")]
    pub kind: PrincipalKind,
    /// The owner's id.
    pub id: String,
}

/// Body of `POST /api-keys`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// Required, 1–100 characters, unique in the organization.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// ≤ 20 tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Role names.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Extra permissions.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// A service account; default: the caller (personal) or the calling key's owner.
    #[serde(default)]
    pub owner: Option<OwnerRef>,
    /// Expiry instant (future).
    #[serde(default, with = "time::serde_rfc3339::option")]
    pub expires_at: Option<Timestamp>,
    /// Or expiry in days from now.
    #[serde(default)]
    pub expires_in_days: Option<i64>,
    /// Optional rate limit.
    #[serde(default)]
    pub ratelimit: Option<RateLimit>,
    /// Optional number of uses.
    #[serde(default)]
    pub remaining: Option<i64>,
    /// Client networks allowed.
    #[serde(default)]
    pub allowed_cidrs: Option<Vec<String>>,
    /// A JSON object ≤ 4 KiB.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
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
    /// Creates a key and returns it with its secret (the only time it is available).
    pub async fn create_api_key(
        &self,
        caller: &Caller,
        input: CreateApiKey,
    ) -> ServiceResult<(ApiKey, Secret)> {
        self.authorize(caller, Permission::ApiKeysCreate, "api_key.create")
            .await?;
        let now = self.now();
        let name = api_key::validate_name(&input.name)?;
        let description =
            validate::description(input.description.as_deref().unwrap_or(""), "description")?;
        let tags = validate::tags(input.tags.as_deref().unwrap_or(&[]), "tags")?;
        let roles = validate::distinct_list(input.roles.as_deref().unwrap_or(&[]), "roles", 20)?;
        let scopes =
            validate::distinct_list(input.scopes.as_deref().unwrap_or(&[]), "scopes", 100)?;
        for (i, s) in scopes.iter().enumerate() {
            permission::validate_scope(s, &format!("scopes[{i}]"))?;
        }
        let expires_at = api_key::resolve_expiry(input.expires_at, input.expires_in_days, now)?;
        if let Some(rl) = &input.ratelimit {
            api_key::validate_ratelimit(rl)?;
        }
        if let Some(n) = input.remaining {
            api_key::validate_remaining(n)?;
        }
        let allowed_cidrs = api_key::parse_cidrs(input.allowed_cidrs.as_deref().unwrap_or(&[]))?;
        let metadata = input.metadata.unwrap_or_else(|| json!({}));
        api_key::validate_metadata(&metadata)?;

        let mut tx = self.store.begin().await?;
        let key_roles = match self
            .check_grant(tx.as_mut(), caller, &roles, &scopes, "roles")
            .await
        {
            Ok(r) => r,
            Err(e) => {
                drop(tx);
                if let ServiceError::Domain(DomainError::PermissionDenied { permission }) = &e {
                    self.record_denied(caller, "api_key.create", None, permission)
                        .await;
                }
                return Err(e);
            }
        };
        role::check_name_patterns(&key_roles, &name)?;
        if let Some(uid) = caller.user_id() {
            if let Some(u) = tx.user(&caller.org_id, &uid).await? {
                let mut creator_roles = Vec::new();
                for r in &u.roles {
                    if let Some(r) = tx.role(&caller.org_id, r).await? {
                        if r.permissions
                            .iter()
                            .any(|p| p == Permission::ApiKeysCreate.as_str())
                        {
                            creator_roles.push(r);
                        }
                    }
                }
                role::check_name_patterns(&creator_roles, &name)?;
            }
        }
        let owner = self
            .resolve_owner(tx.as_mut(), caller, input.owner.as_ref())
            .await?;
        let org = tx
            .organization(&caller.org_id)
            .await?
            .ok_or(ServiceError::NotFound("organization"))?;
        let secret = key_format::generate(&org.key_prefix, &mut rand::rngs::OsRng);
        let key = ApiKey {
            id: self.new_id(),
            org_id: caller.org_id.clone(),
            name,
            description,
            tags,
            owner,
            roles,
            scopes,
            digest: key_format::digest_hex(secret.expose()),
            masked_key: key_format::mask(secret.expose()),
            expires_at,
            created_by: caller.principal.clone(),
            created_at: now,
            updated_at: now,
            last_used_at: None,
            revoked_at: None,
            ratelimit: input.ratelimit,
            remaining: input.remaining,
            allowed_cidrs,
            metadata,
            previous_digest: None,
            previous_valid_until: None,
        };
        tx.insert_api_key(&key).await.map_err(|e| {
            duplicate_as_conflict(e, "name_taken", "an API key with this name already exists")
        })?;
        self.audit(
            tx.as_mut(),
            caller,
            "api_key.create",
            Some(key_principal(&key)),
            Outcome::Success,
            json!({
                "name": key.name,
                "owner": key.owner,
                "roles": key.roles,
                "scopes": key.scopes,
                "tags": key.tags,
                "expires_at": key.expires_at.as_ref().map(time::rfc3339),
            }),
        )
        .await?;
        tx.commit().await?;
        Ok((key, secret))
    }

    async fn resolve_owner(
        &self,
        tx: &mut dyn keyhaven_store::Tx,
        caller: &Caller,
        owner: Option<&OwnerRef>,
    ) -> ServiceResult<Principal> {
        match owner {
            Some(o) if o.kind == PrincipalKind::ServiceAccount => {
                let id = Id::parse(&o.id, "owner.id")?;
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
                let id = Id::parse(&o.id, "owner.id")?;
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
                PrincipalKind::User => Ok(Principal {
                    name: caller.principal.name.clone(),
                    ..caller.principal.clone()
                }),
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
