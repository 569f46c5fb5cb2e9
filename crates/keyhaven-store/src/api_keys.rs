//! API keys (stored by digest, never in plain text).

use async_trait::async_trait;
use keyhaven_core::api_key::{ApiKey, KeyStatus};
use keyhaven_core::id::Id;
use keyhaven_core::import::{Algorithm, Lookup};
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::time::Timestamp;
use keyhaven_core::usage_control::Credits;
use sqlx::any::AnyRow;

use crate::error::{StoreError, StoreResult};
use crate::row::{
    bind_all, id, int, json, json_element_pattern, json_element_start_pattern, like_pattern,
    listing, ms, opt_int, opt_ms, opt_text, opt_time, text, time, to_json, Arg, Where,
};
use crate::sort::{self, Column, Sort, SortDir, SortKey, Value};
use crate::sql::SqlTx;
use crate::{Listing, Page};

/// Filters of `GET /api-keys`, combined with AND.
#[derive(Debug, Clone)]
pub struct ApiKeyFilter {
    /// Only keys with this status at `now`.
    pub status: Option<KeyStatus>,
    /// Only keys holding this role.
    pub role: Option<String>,
    /// Only keys carrying this tag.
    pub tag: Option<String>,
    /// Only keys owned by this service account or user.
    pub owner_id: Option<String>,
    /// Case-insensitive substring of name or description.
    pub q: Option<String>,
    /// Only keys with this `external_id`.
    pub external_id: Option<String>,
    /// The instant `status` is judged at.
    pub now: Timestamp,
}

/// Key counts for the dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyCounts {
    /// Every key.
    pub total: i64,
    /// Neither revoked nor expired.
    pub active: i64,
    /// Past expiry, not revoked.
    pub expired: i64,
    /// Revoked.
    pub revoked: i64,
}

/// A key found by digest: by its current secret, or by the previous one during a
/// regeneration grace period.
#[derive(Debug, Clone)]
pub struct KeyMatch {
    /// The key.
    pub key: ApiKey,
    /// True when the digest matched the replaced secret.
    pub previous: bool,
}

/// The digests a key is found by: its current secret's, and the replaced secret's
/// during a regeneration grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDigests {
    /// Key id.
    pub id: String,
    /// Digest of the current secret (hex).
    pub digest: String,
    /// Digest of the replaced secret, while it is still accepted (hex).
    pub previous_digest: Option<String>,
    /// How a key imported with another hash is found until its first verification.
    pub import_lookup: Option<Lookup>,
}

/// A key imported with a hash other than SHA-256, waiting for its first successful
/// verification (IMPORT.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingHash {
    /// The key.
    pub key_id: Id,
    /// How it is found.
    pub lookup: Lookup,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// The hash as stored (lowercase hex for SHA-512).
    pub value: String,
}

/// The digest placeholder of a key known only by a pending hash: matches no digest.
pub fn pending_digest(key_id: &Id) -> String {
    format!("import:{key_id}")
}

/// Storage of API keys.
#[async_trait]
pub trait ApiKeys {
    /// The digests of up to `limit` keys with ids after `after` (all organizations), by
    /// id: every key's, page by page, for the verification cache's index of digests.
    async fn api_key_digests(
        &mut self,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<KeyDigests>>;
    /// The digests of the keys with these ids (all organizations; unknown ids are skipped).
    async fn api_key_digests_of(&mut self, ids: &[String]) -> StoreResult<Vec<KeyDigests>>;
    /// Adds a key; a taken name is [`StoreError::Duplicate`].
    async fn insert_api_key(&mut self, key: &ApiKey) -> StoreResult<()>;
    /// One key.
    async fn api_key(&mut self, org_id: &Id, id: &Id) -> StoreResult<Option<ApiKey>>;
    /// A key by the digest of its current or previous secret, in whatever organization.
    async fn api_key_by_digest(&mut self, digest: &str) -> StoreResult<Option<KeyMatch>>;
    /// A page of keys, newest first.
    async fn list_api_keys(
        &mut self,
        org_id: &Id,
        filter: &ApiKeyFilter,
        page: &Page,
    ) -> StoreResult<Listing<ApiKey>>;
    /// A page of keys in the order `sort` asks (`None`: newest first, as
    /// [`ApiKeys::list_api_keys`]); the cursor is the one the previous page returned
    /// with the same sort.
    async fn list_api_keys_sorted(
        &mut self,
        org_id: &Id,
        filter: &ApiKeyFilter,
        sort: Option<Sort>,
        page: &Page,
    ) -> StoreResult<Listing<ApiKey>>;
    /// Saves every mutable field of a key.
    async fn update_api_key(&mut self, key: &ApiKey) -> StoreResult<()>;
    /// Removes a key; false when there was none.
    async fn delete_api_key(&mut self, org_id: &Id, id: &Id) -> StoreResult<bool>;
    /// Revokes every live key of an owner; returns their ids.
    async fn revoke_keys_of_owner(
        &mut self,
        org_id: &Id,
        owner_id: &Id,
        at: Timestamp,
    ) -> StoreResult<Vec<Id>>;
    /// Ids of every key of an owner.
    async fn key_ids_of_owner(&mut self, org_id: &Id, owner_id: &Id) -> StoreResult<Vec<Id>>;
    /// Dashboard counts at `now`.
    async fn key_counts(&mut self, org_id: &Id, now: Timestamp) -> StoreResult<KeyCounts>;
    /// Keeps an imported key's hash until its first successful verification (the key
    /// was inserted with [`pending_digest`] as its digest).
    async fn insert_pending_hash(&mut self, h: &PendingHash) -> StoreResult<()>;
    /// The pending hashes found by `lookup` (all organizations).
    async fn pending_hashes(&mut self, lookup: &Lookup) -> StoreResult<Vec<PendingHash>>;
    /// Replaces a pending hash by the key's SHA-256 `digest` and its masked form, and
    /// deletes the hash; false when another verification did it first.
    async fn settle_pending_hash(
        &mut self,
        key_id: &Id,
        digest: &str,
        masked_key: &str,
    ) -> StoreResult<bool>;
    /// Deletes a key's pending hash (its secret was replaced); false when it had none.
    async fn drop_pending_hash(&mut self, key_id: &Id) -> StoreResult<bool>;
}

const SELECT: &str =
    "SELECT k.*, COALESCE(sa.name, u.display_name, '') AS owner_name FROM api_keys k \
     LEFT JOIN service_accounts sa ON k.owner_type = 'service_account' AND sa.id = k.owner_id \
     LEFT JOIN users u ON k.owner_type = 'user' AND u.id = k.owner_id";

const DIGESTS: &str = "SELECT k.id, k.digest, k.previous_digest, h.kind AS lookup_kind, h.lookup \
     FROM api_keys k LEFT JOIN api_key_hashes h ON h.key_id = k.id";

fn digests_from_row(r: &AnyRow) -> StoreResult<KeyDigests> {
    let import_lookup = match (opt_text(r, "lookup_kind")?, opt_text(r, "lookup")?) {
        (Some(kind), Some(v)) => Lookup::from_stored(&kind, v),
        _ => None,
    };
    Ok(KeyDigests {
        id: text(r, "id")?,
        digest: text(r, "digest")?,
        previous_digest: opt_text(r, "previous_digest")?,
        import_lookup,
    })
}

fn pending_from_row(r: &AnyRow) -> StoreResult<PendingHash> {
    let kind = text(r, "kind")?;
    let alg = text(r, "algorithm")?;
    Ok(PendingHash {
        key_id: id(r, "key_id")?,
        lookup: Lookup::from_stored(&kind, text(r, "lookup")?)
            .ok_or_else(|| StoreError::Corrupt(format!("lookup kind {kind}")))?,
        algorithm: Algorithm::parse(&alg)
            .ok_or_else(|| StoreError::Corrupt(format!("hash algorithm {alg}")))?,
        value: text(r, "value")?,
    })
}

fn from_row(r: &AnyRow) -> StoreResult<ApiKey> {
    let owner_type = text(r, "owner_type")?;
    let owner_kind = PrincipalKind::parse(&owner_type)
        .ok_or_else(|| StoreError::Corrupt(format!("owner type {owner_type}")))?;
    let cidrs: Vec<String> = json(r, "allowed_cidrs")?;
    let allowed_cidrs = cidrs
        .iter()
        .map(|c| {
            c.parse()
                .map_err(|_| StoreError::Corrupt(format!("cidr {c}")))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let credits = match opt_int(r, "remaining")? {
        Some(remaining) => Some(Credits {
            remaining,
            refill: opt_text(r, "credits_refill")?
                .map(|t| {
                    serde_json::from_str(&t)
                        .map_err(|e| StoreError::Corrupt(format!("credits_refill: {e}")))
                })
                .transpose()?,
            low_threshold: opt_int(r, "credits_low_threshold")?,
        }),
        None => None,
    };
    Ok(ApiKey {
        id: id(r, "id")?,
        org_id: id(r, "org_id")?,
        name: text(r, "name")?,
        description: text(r, "description")?,
        tags: json(r, "tags")?,
        owner: Principal {
            kind: owner_kind,
            id: text(r, "owner_id")?,
            name: text(r, "owner_name")?,
        },
        roles: json(r, "roles")?,
        scopes: json(r, "scopes")?,
        digest: text(r, "digest")?,
        masked_key: text(r, "masked_key")?,
        expires_at: opt_time(r, "expires_at")?,
        created_by: json(r, "created_by")?,
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
        last_used_at: opt_time(r, "last_used_at")?,
        revoked_at: opt_time(r, "revoked_at")?,
        ratelimits: json(r, "ratelimits")?,
        credits,
        credits_epoch: int(r, "credits_epoch")?,
        allowed_cidrs,
        metadata: json(r, "metadata")?,
        previous_digest: opt_text(r, "previous_digest")?,
        previous_valid_until: opt_time(r, "previous_valid_until")?,
        external_id: opt_text(r, "external_id")?,
        enabled: int(r, "enabled")? != 0,
        imported_at: opt_time(r, "imported_at")?,
    })
}

fn refill_json(k: &ApiKey) -> Option<String> {
    k.credits.and_then(|c| c.refill).map(|r| to_json(&r))
}

fn cidrs_json(k: &ApiKey) -> String {
    to_json(
        &k.allowed_cidrs
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
    )
}

/// The `WHERE` clauses of a keys listing.
fn key_where(org_id: &Id, f: &ApiKeyFilter) -> Where {
    let mut w = Where::new();
    w.push("k.org_id = ?", Arg::Text(org_id.to_string()));
    let now = ms(&f.now);
    match f.status {
        Some(KeyStatus::Revoked) => w.clauses.push("k.revoked_at IS NOT NULL".into()),
        Some(KeyStatus::Expired) => {
            w.push("k.revoked_at IS NULL AND k.expires_at <= ?", Arg::Int(now))
        }
        Some(KeyStatus::Active) => w.push(
            "k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > ?)",
            Arg::Int(now),
        ),
        None => {}
    }
    if let Some(r) = &f.role {
        w.push(
            "k.roles LIKE ? ESCAPE '\\'",
            Arg::Text(json_element_pattern(r)),
        );
    }
    if let Some(t) = &f.tag {
        w.push(
            "(',' || substr(k.tags, 2)) LIKE ? ESCAPE '\\'",
            Arg::Text(json_element_start_pattern(t)),
        );
    }
    if let Some(o) = &f.owner_id {
        w.push("k.owner_id = ?", Arg::Text(o.clone()));
    }
    if let Some(e) = &f.external_id {
        w.push("k.external_id = ?", Arg::Text(e.clone()));
    }
    if let Some(q) = &f.q {
        w.push(
            "(lower(k.name) LIKE ? ESCAPE '\\' OR lower(k.description) LIKE ? ESCAPE '\\')",
            Arg::Text(like_pattern(q)),
        );
    }
    w
}

/// The column a keys listing sorts by, and each key's value in it.
fn key_column(key: SortKey) -> (Column, fn(&ApiKey) -> Value) {
    match key {
        SortKey::Created => (Column::Int("k.created_at", 0), |k| {
            Value::Int(ms(&k.created_at))
        }),
        SortKey::Name | SortKey::Email => {
            (Column::Lower("k.name"), |k| Value::Text(k.name.clone()))
        }
        SortKey::LastUsed => (Column::Int("k.last_used_at", -1), |k| {
            Value::Int(opt_ms(&k.last_used_at).unwrap_or(-1))
        }),
        SortKey::Expires => (Column::Int("k.expires_at", i64::MAX), |k| {
            Value::Int(opt_ms(&k.expires_at).unwrap_or(i64::MAX))
        }),
    }
}

#[async_trait]
impl ApiKeys for SqlTx {
    async fn insert_api_key(&mut self, k: &ApiKey) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, org_id, name, description, tags, owner_type, owner_id, roles, scopes, digest, \
             masked_key, expires_at, created_by, created_at, updated_at, last_used_at, revoked_at, ratelimits, \
             remaining, credits_refill, credits_low_threshold, credits_epoch, allowed_cidrs, metadata, previous_digest, \
             previous_valid_until, external_id, enabled, imported_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, \
             $27, $28, $29)",
        )
        .bind(k.id.as_str())
        .bind(k.org_id.as_str())
        .bind(&k.name)
        .bind(&k.description)
        .bind(to_json(&k.tags))
        .bind(k.owner.kind.as_str())
        .bind(&k.owner.id)
        .bind(to_json(&k.roles))
        .bind(to_json(&k.scopes))
        .bind(&k.digest)
        .bind(&k.masked_key)
        .bind(opt_ms(&k.expires_at))
        .bind(to_json(&k.created_by))
        .bind(ms(&k.created_at))
        .bind(ms(&k.updated_at))
        .bind(opt_ms(&k.last_used_at))
        .bind(opt_ms(&k.revoked_at))
        .bind(to_json(&k.ratelimits))
        .bind(k.credits.map(|c| c.remaining))
        .bind(refill_json(k))
        .bind(k.credits.and_then(|c| c.low_threshold))
        .bind(k.credits_epoch)
        .bind(cidrs_json(k))
        .bind(to_json(&k.metadata))
        .bind(k.previous_digest.clone())
        .bind(opt_ms(&k.previous_valid_until))
        .bind(k.external_id.clone())
        .bind(i64::from(k.enabled))
        .bind(opt_ms(&k.imported_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn api_key(&mut self, org_id: &Id, key_id: &Id) -> StoreResult<Option<ApiKey>> {
        let lock = self.lock_for_update("k");
        let row = sqlx::query(&format!("{SELECT} WHERE k.org_id = $1 AND k.id = $2{lock}"))
            .bind(org_id.as_str())
            .bind(key_id.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn api_key_digests(
        &mut self,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<KeyDigests>> {
        let rows = sqlx::query(&format!("{DIGESTS} WHERE k.id > $1 ORDER BY k.id LIMIT $2"))
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(digests_from_row).collect()
    }

    async fn api_key_digests_of(&mut self, ids: &[String]) -> StoreResult<Vec<KeyDigests>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(200) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("{DIGESTS} WHERE k.id IN ({})", marks.join(", "));
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            let rows = q.fetch_all(&mut *self.tx).await?;
            for r in &rows {
                out.push(digests_from_row(r)?);
            }
        }
        Ok(out)
    }

    async fn api_key_by_digest(&mut self, digest: &str) -> StoreResult<Option<KeyMatch>> {
        let row = sqlx::query(&format!(
            "{SELECT} WHERE k.digest = $1 OR k.previous_digest = $1"
        ))
        .bind(digest)
        .fetch_optional(&mut *self.tx)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let key = from_row(&r)?;
                let previous = key.digest != digest;
                Ok(Some(KeyMatch { key, previous }))
            }
        }
    }

    async fn list_api_keys(
        &mut self,
        org_id: &Id,
        f: &ApiKeyFilter,
        page: &Page,
    ) -> StoreResult<Listing<ApiKey>> {
        self.list_api_keys_sorted(org_id, f, None, page).await
    }

    async fn list_api_keys_sorted(
        &mut self,
        org_id: &Id,
        f: &ApiKeyFilter,
        sort: Option<Sort>,
        page: &Page,
    ) -> StoreResult<Listing<ApiKey>> {
        let w = key_where(org_id, f);
        let column = sort.map(|s| key_column(s.key));
        let dir = sort.map_or(SortDir::Desc, |s| s.dir);
        let (sql, args) = w.finish_sorted(page, "k.id", column.map(|(c, _)| c), dir);
        let rows = bind_all(sqlx::query(&format!("{SELECT} WHERE {sql}")), args)
            .fetch_all(&mut *self.tx)
            .await?;
        let items = rows.iter().map(from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(listing(items, page, |k| match column {
            None => k.id.to_string(),
            Some((_, value)) => sort::cursor(k.id.as_str(), &value(k)),
        }))
    }

    async fn update_api_key(&mut self, k: &ApiKey) -> StoreResult<()> {
        sqlx::query(
            "UPDATE api_keys SET name = $3, description = $4, tags = $5, roles = $6, scopes = $7, digest = $8, \
             masked_key = $9, expires_at = $10, updated_at = $11, revoked_at = $12, ratelimits = $13, \
             remaining = $14, credits_refill = $15, credits_low_threshold = $16, credits_epoch = $17, \
             allowed_cidrs = $18, metadata = $19, previous_digest = $20, previous_valid_until = $21, \
             external_id = $22, enabled = $23, \
             credits_low_notified = CASE WHEN $14 IS NULL OR $16 IS NULL OR $14 >= $16 THEN 0 ELSE credits_low_notified END, \
             credits_exhausted_notified = CASE WHEN $14 IS NULL OR $14 > 0 THEN 0 ELSE credits_exhausted_notified END \
             WHERE org_id = $1 AND id = $2",
        )
        .bind(k.org_id.as_str())
        .bind(k.id.as_str())
        .bind(&k.name)
        .bind(&k.description)
        .bind(to_json(&k.tags))
        .bind(to_json(&k.roles))
        .bind(to_json(&k.scopes))
        .bind(&k.digest)
        .bind(&k.masked_key)
        .bind(opt_ms(&k.expires_at))
        .bind(ms(&k.updated_at))
        .bind(opt_ms(&k.revoked_at))
        .bind(to_json(&k.ratelimits))
        .bind(k.credits.map(|c| c.remaining))
        .bind(refill_json(k))
        .bind(k.credits.and_then(|c| c.low_threshold))
        .bind(k.credits_epoch)
        .bind(cidrs_json(k))
        .bind(to_json(&k.metadata))
        .bind(k.previous_digest.clone())
        .bind(opt_ms(&k.previous_valid_until))
        .bind(k.external_id.clone())
        .bind(i64::from(k.enabled))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_api_key(&mut self, org_id: &Id, key_id: &Id) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM api_keys WHERE org_id = $1 AND id = $2")
            .bind(org_id.as_str())
            .bind(key_id.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn revoke_keys_of_owner(
        &mut self,
        org_id: &Id,
        owner_id: &Id,
        at: Timestamp,
    ) -> StoreResult<Vec<Id>> {
        let rows = sqlx::query(
            "UPDATE api_keys SET revoked_at = $3, updated_at = $3, previous_digest = NULL, previous_valid_until = NULL \
             WHERE org_id = $1 AND owner_id = $2 AND revoked_at IS NULL RETURNING id",
        )
        .bind(org_id.as_str())
        .bind(owner_id.as_str())
        .bind(ms(&at))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(|r| id(r, "id")).collect()
    }

    async fn key_ids_of_owner(&mut self, org_id: &Id, owner_id: &Id) -> StoreResult<Vec<Id>> {
        let rows =
            sqlx::query("SELECT id FROM api_keys WHERE org_id = $1 AND owner_id = $2 ORDER BY id")
                .bind(org_id.as_str())
                .bind(owner_id.as_str())
                .fetch_all(&mut *self.tx)
                .await?;
        rows.iter().map(|r| id(r, "id")).collect()
    }

    async fn key_counts(&mut self, org_id: &Id, now: Timestamp) -> StoreResult<KeyCounts> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total, \
             CAST(COALESCE(SUM(CASE WHEN revoked_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS revoked, \
             CAST(COALESCE(SUM(CASE WHEN revoked_at IS NULL AND expires_at <= $2 THEN 1 ELSE 0 END), 0) AS BIGINT) AS expired \
             FROM api_keys WHERE org_id = $1",
        )
        .bind(org_id.as_str())
        .bind(ms(&now))
        .fetch_one(&mut *self.tx)
        .await?;
        let total = int(&row, "total")?;
        let revoked = int(&row, "revoked")?;
        let expired = int(&row, "expired")?;
        Ok(KeyCounts {
            total,
            active: total - revoked - expired,
            expired,
            revoked,
        })
    }

    async fn insert_pending_hash(&mut self, h: &PendingHash) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_key_hashes (key_id, kind, lookup, algorithm, value) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(h.key_id.as_str())
        .bind(h.lookup.kind())
        .bind(h.lookup.value())
        .bind(h.algorithm.as_str())
        .bind(&h.value)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn pending_hashes(&mut self, lookup: &Lookup) -> StoreResult<Vec<PendingHash>> {
        let rows = sqlx::query(
            "SELECT key_id, kind, lookup, algorithm, value FROM api_key_hashes \
             WHERE kind = $1 AND lookup = $2 ORDER BY key_id LIMIT 100",
        )
        .bind(lookup.kind())
        .bind(lookup.value())
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(pending_from_row).collect()
    }

    async fn settle_pending_hash(
        &mut self,
        key_id: &Id,
        digest: &str,
        masked_key: &str,
    ) -> StoreResult<bool> {
        let placeholder = pending_digest(key_id);
        let r = sqlx::query(
            "UPDATE api_keys SET digest = $2, masked_key = $3 WHERE id = $1 AND digest = $4",
        )
        .bind(key_id.as_str())
        .bind(digest)
        .bind(masked_key)
        .bind(&placeholder)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("DELETE FROM api_key_hashes WHERE key_id = $1")
            .bind(key_id.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn drop_pending_hash(&mut self, key_id: &Id) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM api_key_hashes WHERE key_id = $1")
            .bind(key_id.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
