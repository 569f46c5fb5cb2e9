//! The in-memory key cache: key records by digest, populated on first use, with a
//! bounded negative cache for digests that match no key.
//!
//! A hit is a sharded-map read: no database access and no global lock.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;
use ipnet::IpNet;
use keyhaven_core::api_key::RateLimit;
use keyhaven_core::key_format::KeyDigest;
use keyhaven_core::principal::PrincipalKind;

/// How long "no such key" is remembered.
pub const NEGATIVE_TTL_MS: i64 = 60_000;
/// Most digests remembered as unknown; beyond this the negative cache starts over.
pub const NEGATIVE_CAPACITY: usize = 100_000;

/// What verification needs to know about a key, precomputed at load.
#[derive(Debug)]
pub struct CachedKey {
    /// Key id.
    pub key_id: Arc<str>,
    /// Organization id.
    pub org_id: Arc<str>,
    /// Key name.
    pub name: Arc<str>,
    /// Owner kind.
    pub owner_kind: PrincipalKind,
    /// Owner id.
    pub owner_id: Arc<str>,
    /// Owner name.
    pub owner_name: Arc<str>,
    /// Effective permissions, sorted.
    pub permissions: Box<[Box<str>]>,
    /// Expiry, ms.
    pub expires_at_ms: Option<i64>,
    /// Revoked (final).
    pub revoked: bool,
    /// The owner is active (user active / service account active).
    pub owner_active: bool,
    /// Rate limit.
    pub ratelimit: Option<RateLimit>,
    /// Whether the key has a `remaining` budget (kept in the database).
    pub counts_uses: bool,
    /// Allowed client networks; empty = any.
    pub allowed_cidrs: Box<[IpNet]>,
    /// Set when this entry is for the secret replaced by a regeneration: the end of
    /// its grace period, ms.
    pub previous_until_ms: Option<i64>,
}

impl CachedKey {
    /// Whether the key holds every permission in `required`.
    pub fn has_all(&self, required: &[String]) -> bool {
        required.iter().all(|r| {
            self.permissions
                .binary_search_by(|p| p.as_ref().cmp(r.as_str()))
                .is_ok()
        })
    }

    /// Whether `ip` may use the key.
    pub fn ip_allowed(&self, ip: Option<IpAddr>) -> bool {
        if self.allowed_cidrs.is_empty() {
            return true;
        }
        match ip {
            Some(ip) => self.allowed_cidrs.iter().any(|n| n.contains(&ip)),
            None => false,
        }
    }
}

/// Key records by digest, plus the negative cache.
#[derive(Default)]
pub struct KeyCache {
    by_digest: DashMap<KeyDigest, Arc<CachedKey>>,
    /// Digests cached for each key id (current and, during a grace period, previous).
    by_id: DashMap<Arc<str>, Vec<KeyDigest>>,
    unknown: DashMap<KeyDigest, i64>,
}

impl KeyCache {
    /// A cached record.
    pub fn get(&self, digest: &KeyDigest) -> Option<Arc<CachedKey>> {
        self.by_digest.get(digest).map(|e| e.value().clone())
    }

    /// Whether the digest is known to match no key at `now_ms`.
    pub fn known_unknown(&self, digest: &KeyDigest, now_ms: i64) -> bool {
        self.unknown
            .get(digest)
            .is_some_and(|until| *until > now_ms)
    }

    /// Remembers a record.
    pub fn insert(&self, digest: KeyDigest, key: Arc<CachedKey>) {
        self.unknown.remove(&digest);
        let mut ids = self.by_id.entry(key.key_id.clone()).or_default();
        if !ids.contains(&digest) {
            ids.push(digest);
        }
        drop(ids);
        self.by_digest.insert(digest, key);
    }

    /// Remembers that no key has this digest.
    pub fn insert_unknown(&self, digest: KeyDigest, now_ms: i64) {
        if self.unknown.len() >= NEGATIVE_CAPACITY {
            self.unknown.clear();
        }
        self.unknown.insert(digest, now_ms + NEGATIVE_TTL_MS);
    }

    /// Drops every record of a key.
    pub fn invalidate_key(&self, key_id: &str) {
        if let Some((_, digests)) = self.by_id.remove(key_id) {
            for d in digests {
                self.by_digest.remove(&d);
            }
        }
    }

    /// Drops every record owned by a user or service account.
    pub fn invalidate_owner(&self, owner_id: &str) {
        self.by_digest
            .retain(|_, v| v.owner_id.as_ref() != owner_id);
        self.by_id.retain(|_, ds| {
            ds.retain(|d| self.by_digest.contains_key(d));
            !ds.is_empty()
        });
    }

    /// Drops every record of an organization.
    pub fn invalidate_org(&self, org_id: &str) {
        self.by_digest.retain(|_, v| v.org_id.as_ref() != org_id);
        self.by_id.retain(|_, ds| {
            ds.retain(|d| self.by_digest.contains_key(d));
            !ds.is_empty()
        });
    }

    /// Drops everything (after losing track of changes).
    pub fn clear(&self) {
        self.by_digest.clear();
        self.by_id.clear();
        self.unknown.clear();
    }

    /// Number of cached records.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}
