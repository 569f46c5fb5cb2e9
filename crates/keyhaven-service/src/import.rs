//! Importing keys from other systems (IMPORT.md) and finding a key by its secret.
//!
//! Each item is checked like a created key (the same limits on names, tags, roles,
//! scopes, owner…) and written in its own transaction with its `api_key.import` audit
//! entry, so one bad item never stops the others. A dry run does all of it and rolls
//! every transaction back.

use std::collections::HashSet;

use keyhaven_core::audit::Action;
use keyhaven_core::id::Id;
use keyhaven_core::import::{self, ImportedHash};
use keyhaven_core::key_format::{self, Secret};
use keyhaven_core::permission::Permission;
use keyhaven_core::time::{self, Timestamp};
use keyhaven_core::DomainError;
use keyhaven_store::{ChangeKind, PendingHash};
use serde_json::json;

use crate::api_keys::{key_principal, CreateApiKey};
use crate::{duplicate_as_conflict, Caller, Service, ServiceError, ServiceResult};

/// Most items in one import request.
pub const MAX_ITEMS: usize = 1000;

/// The old system's hash of an imported key.
#[derive(Debug, Clone)]
pub struct HashInput {
    /// `sha256`, `sha512`, `bcrypt`, `argon2id` or `pbkdf2_sha256`.
    pub algorithm: String,
    /// The stored hash.
    pub value: String,
    /// The clear prefix the key is found by (required for slow hashes).
    pub prefix: Option<String>,
}

/// One key to import: a create body plus exactly one of `key` and `hash`.
#[derive(Debug, Clone, Default)]
pub struct ImportItem {
    /// What a created key would get.
    pub key: CreateApiKey,
    /// The plain key (stored as its SHA-256 digest, never kept).
    pub plain: Option<Secret>,
    /// Or the old system's hash.
    pub hash: Option<HashInput>,
    /// Import it revoked (history carried over).
    pub revoked: bool,
    /// When the old system made it (not in the future).
    pub created_at: Option<Timestamp>,
}

/// The outcome of an import.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// `(index, id)` of each item imported (or, in a dry run, that would be).
    pub imported: Vec<(usize, Id)>,
    /// `(index, error)` of each item refused.
    pub errors: Vec<(usize, ServiceError)>,
}

/// How an item's secret is stored: the digest column, the masked form, and the pending
/// hash (for hashes other than SHA-256).
struct Stored {
    digest: Option<String>,
    masked: String,
    pending: Option<(import::Algorithm, String, import::Lookup)>,
    source: &'static str,
}

fn stored_form(item: &ImportItem) -> Result<Stored, DomainError> {
    match (&item.plain, &item.hash) {
        (Some(k), None) => {
            import::validate_plain_key(k.expose(), "key")?;
            Ok(Stored {
                digest: Some(key_format::digest_hex(k.expose())),
                masked: import::mask(k.expose()),
                pending: None,
                source: "key",
            })
        }
        (None, Some(h)) => {
            let parsed = import::parse_hash(&h.algorithm, &h.value, h.prefix.as_deref(), "hash")?;
            let masked = import::mask_unknown(h.prefix.as_deref());
            Ok(match parsed {
                ImportedHash::Sha256(hex) => Stored {
                    digest: Some(hex),
                    masked,
                    pending: None,
                    source: "hash",
                },
                ImportedHash::Pending {
                    algorithm,
                    value,
                    lookup,
                } => Stored {
                    digest: None,
                    masked,
                    pending: Some((algorithm, value, lookup)),
                    source: "hash",
                },
            })
        }
        (Some(_), Some(_)) => Err(DomainError::invalid(
            "conflicting_secret",
            "hash",
            "give either key or hash, not both",
        )),
        (None, None) => Err(DomainError::invalid(
            "parameter_missing",
            "key",
            "each item needs key (the plain key) or hash (the old system's hash)",
        )),
    }
}

fn key_exists() -> ServiceError {
    DomainError::conflict("key_exists", "a key with this secret already exists").into()
}

impl Service {
    /// Imports keys (see the module docs). Authorization is checked once for the
    /// request (`api_keys.create`); what each item grants is checked per item.
    pub async fn import_api_keys(
        &self,
        caller: &Caller,
        items: Vec<ImportItem>,
        dry_run: bool,
    ) -> ServiceResult<ImportReport> {
        self.authorize(caller, Permission::ApiKeysCreate, Action::ApiKeyImport)
            .await?;
        if items.len() > MAX_ITEMS {
            return Err(DomainError::invalid(
                "too_many_keys",
                "keys",
                format!("an import holds at most {MAX_ITEMS} keys"),
            )
            .into());
        }
        let mut report = ImportReport::default();
        // What earlier items of this request hold, for a dry run (nothing is written).
        let mut names = HashSet::new();
        let mut secrets = HashSet::new();
        for (index, item) in items.into_iter().enumerate() {
            match self
                .import_one(caller, item, dry_run, &mut names, &mut secrets)
                .await
            {
                Ok(id) => report.imported.push((index, id)),
                Err(e) => report.errors.push((index, e)),
            }
        }
        Ok(report)
    }

    async fn import_one(
        &self,
        caller: &Caller,
        item: ImportItem,
        dry_run: bool,
        names: &mut HashSet<String>,
        secrets: &mut HashSet<String>,
    ) -> ServiceResult<Id> {
        let now = self.now();
        let stored = stored_form(&item)?;
        if let Some(at) = item.created_at {
            if at > now {
                return Err(DomainError::invalid(
                    "created_at_in_future",
                    "created_at",
                    "created_at must not be in the future",
                )
                .into());
            }
        }
        let secret_id = match (&stored.digest, &stored.pending) {
            (Some(d), _) => format!("d:{d}"),
            (None, Some((_, v, l))) => format!("{}:{}:{v}", l.kind(), l.value()),
            (None, None) => String::new(),
        };
        // Each item arrives as a draft: its mistakes are reported for that item.
        let new = crate::api_keys::NewApiKey::try_from(item.key)?;
        let (mut tx, mut key) = self
            .new_key_record(caller, new, now, Action::ApiKeyImport, true)
            .await?;
        if !names.insert(key.name.clone()) && dry_run {
            return Err(DomainError::conflict(
                "name_taken",
                "an API key with this name already exists",
            )
            .into());
        }
        if !secrets.insert(secret_id) {
            return Err(key_exists());
        }
        match (&stored.digest, &stored.pending) {
            (Some(d), _) => {
                if tx.api_key_by_digest(d).await?.is_some() {
                    return Err(key_exists());
                }
                key.digest = d.clone();
            }
            (None, Some((_, value, lookup))) => {
                if let import::Lookup::Sha512(_) = lookup {
                    if tx
                        .pending_hashes(lookup)
                        .await?
                        .iter()
                        .any(|p| &p.value == value)
                    {
                        return Err(key_exists());
                    }
                }
                key.digest = keyhaven_store::pending_digest(&key.id);
            }
            (None, None) => return Err(ServiceError::Internal("import without a secret".into())),
        }
        key.masked_key = stored.masked.clone();
        if let Some(at) = item.created_at {
            key.created_at = at;
        }
        if item.revoked {
            key.revoked_at = Some(now);
        }
        tx.insert_api_key(&key).await.map_err(|e| {
            duplicate_as_conflict(e, "name_taken", "an API key with this name already exists")
        })?;
        if let Some((algorithm, value, lookup)) = &stored.pending {
            tx.insert_pending_hash(&PendingHash {
                key_id: key.id.clone(),
                lookup: lookup.clone(),
                algorithm: *algorithm,
                value: value.clone(),
            })
            .await?;
        }
        if let Some(r) = key.credits.and_then(|c| c.refill) {
            tx.schedule_refill(&key.id, Some(r.next_due(now))).await?;
        }
        if dry_run {
            // Everything was checked, the database included; nothing stays.
            drop(tx);
            return Ok(key.id);
        }
        match &stored.pending {
            None => self.verifier.index.insert_hex(&key.digest),
            Some((_, _, lookup)) => self.verifier.index.insert(&lookup.index_digest()),
        }
        let mut changes = json!({
            "name": key.name,
            "owner": key.owner,
            "roles": key.roles,
            "scopes": key.scopes,
            "tags": key.tags,
            "expires_at": key.expires_at.as_ref().map(time::rfc3339),
            "created_at": time::rfc3339(&key.created_at),
            "revoked": item.revoked,
            "source": stored.source,
        });
        if let Some((algorithm, _, _)) = &stored.pending {
            changes["algorithm"] = json!(algorithm.as_str());
        }
        if let Some(e) = &key.external_id {
            changes["external_id"] = json!(e);
        }
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::ApiKeyImport,
                target: Some(key_principal(&key)),
                changes,
                event: None,
            }),
            &[(ChangeKind::Key, key.id.to_string())],
        )
        .await?;
        // Its secret may have been tried before it was imported.
        self.verifier.cache.forget_unknown_hex(&key.digest);
        Ok(key.id)
    }

    /// The key a secret belongs to, as `GET /api-keys/{id}` shows it, for support
    /// desks (`api_keys.view`; audited). A string that names no key of the caller's
    /// organization is `NotFound`, whatever else it names.
    pub async fn whoami(
        &self,
        caller: &Caller,
        secret: &str,
    ) -> ServiceResult<(keyhaven_core::api_key::ApiKey, Vec<String>)> {
        self.authorize(caller, Permission::ApiKeysView, Action::ApiKeyWhoami)
            .await?;
        let found = self
            .verifier
            .identify(secret)
            .await?
            .filter(|k| *k.org_id == *caller.org_id.as_str());
        let Some(found) = found else {
            return Err(ServiceError::NotFound("API key"));
        };
        let id = Id::from_trusted(found.id().to_string());
        let mut tx = self.store.begin().await?;
        let key = tx
            .api_key(&caller.org_id, &id)
            .await?
            .ok_or(ServiceError::NotFound("API key"))?;
        let permissions = self.key_permissions(tx.as_mut(), &key).await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::ApiKeyWhoami,
                target: Some(key_principal(&key)),
                changes: json!({}),
                event: None,
            }),
            &[],
        )
        .await?;
        Ok((key, permissions))
    }
}
