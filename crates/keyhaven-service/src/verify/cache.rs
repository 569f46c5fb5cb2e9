//! The in-memory key cache: key records by digest, populated on first use, with a
//! bounded negative cache for digests that match no key.
//!
//! A hit is a sharded-map read: no database access and no global lock.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use ipnet::IpNet;
use keyhaven_core::key_format::KeyDigest;
use keyhaven_core::principal::PrincipalKind;

/// The most a cached record may age before it is read again from the database — off
/// the request path, by [`crate::verify::Verifier::recheck_stale`] — so a change the
/// change-log follower missed cannot last longer than this.
pub const MAX_AGE_MS: i64 = 5 * 60_000;

/// How long "no such key" is remembered.
pub const NEGATIVE_TTL_MS: i64 = 60_000;
/// Most digests remembered as unknown; beyond this the negative cache starts over.
pub const NEGATIVE_CAPACITY: usize = 100_000;

/// Who owns a key; shared by all cached keys of the same owner.
#[derive(Debug, PartialEq, Eq)]
pub struct Owner {
    /// User or service account.
    pub kind: PrincipalKind,
    /// Owner id.
    pub id: Box<str>,
    /// Owner name.
    pub name: Box<str>,
}

/// What verification needs to know about a key, precomputed at load. Kept small (it is
/// cached for every key in use): the id inline, organization, owner and permission set
/// shared between keys.
#[derive(Debug)]
pub struct CachedKey {
    /// Key id (26 ASCII characters).
    pub key_id: [u8; 26],
    /// Revoked (final).
    pub revoked: bool,
    /// The owner is active (user active / service account active).
    pub owner_active: bool,
    /// The key itself is turned on (`enabled`).
    pub enabled: bool,
    /// The key's `external_id`.
    pub external_id: Option<Box<str>>,
    /// The key's `metadata` as JSON text; `None` for the empty object.
    pub metadata: Option<Box<serde_json::value::RawValue>>,
    /// Expiry, ms.
    pub expires_at_ms: Option<i64>,
    /// Set when this entry is for the secret replaced by a regeneration: the end of
    /// its grace period, ms.
    pub previous_until_ms: Option<i64>,
    /// Organization id (shared).
    pub org_id: Arc<str>,
    /// Key name.
    pub name: Box<str>,
    /// Owner (shared).
    pub owner: Arc<Owner>,
    /// Effective permissions, sorted (shared between keys with the same set).
    pub permissions: Arc<[Box<str>]>,
    /// The key's named limits and its service account's shared ones.
    pub limits: Box<[KeyLimit]>,
    /// The key's balance, when it has one.
    pub credits: Option<CachedCredits>,
    /// Allowed client networks; empty = any.
    pub allowed_cidrs: Box<[IpNet]>,
    /// When the record was read from the database (ms): records older than
    /// [`MAX_AGE_MS`] are read again in the background.
    pub loaded_at_ms: i64,
}

/// Whose limit it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// The key's own.
    Key,
    /// Shared by every key of the service account.
    ServiceAccount,
}

impl LimitScope {
    /// As the verify answer writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Key => "key",
            LimitScope::ServiceAccount => "service_account",
        }
    }
}

/// A named limit as verification applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLimit {
    /// Its name.
    pub name: Box<str>,
    /// Key or service account.
    pub scope: LimitScope,
    /// Applied to every verification.
    pub auto_apply: bool,
    /// Its bucket.
    pub bucket: crate::meter::BucketSpec,
}

/// A key's balance as read with the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedCredits {
    /// The balance's epoch.
    pub epoch: i64,
    /// The stored balance then.
    pub stored: i64,
    /// `low_threshold`.
    pub low_threshold: Option<i64>,
}

/// A key id as the 26 bytes [`CachedKey`] keeps.
pub fn id_bytes(id: &str) -> [u8; 26] {
    let mut out = [b'0'; 26];
    let b = id.as_bytes();
    let n = b.len().min(26);
    out[..n].copy_from_slice(&b[..n]);
    out
}

impl CachedKey {
    /// The key id as text.
    pub fn id(&self) -> &str {
        std::str::from_utf8(&self.key_id).unwrap_or_default()
    }

    /// Whether the key holds every permission in `required`.
    pub fn has_all<S: AsRef<str>>(&self, required: &[S]) -> bool {
        required.iter().all(|r| self.holds(r.as_ref()))
    }

    /// Whether the key holds `permission`.
    pub fn holds(&self, permission: &str) -> bool {
        self.permissions
            .binary_search_by(|p| p.as_ref().cmp(permission))
            .is_ok()
    }

    /// Whether `ip` may use the key.
    pub fn ip_allowed(&self, ip: Option<IpAddr>) -> bool {
        if self.allowed_cidrs.is_empty() {
            return true;
        }
        // An IPv4 client seen through an IPv6 socket arrives as `::ffff:a.b.c.d`.
        match ip.map(|ip| ip.to_canonical()) {
            Some(ip) => self.allowed_cidrs.iter().any(|n| n.contains(&ip)),
            None => false,
        }
    }
}

/// Key records by digest, plus the negative cache.
///
/// A record loaded from the database may already be stale when it arrives: the change
/// can commit, and be applied to the cache, while the load is in flight. Every
/// invalidation therefore bumps a generation counter first; a load notes the generation
/// before reading and [`KeyCache::insert_loaded`] keeps its record only if no
/// invalidation started in between.
#[derive(Default)]
pub struct KeyCache {
    by_digest: DashMap<KeyDigest, Arc<CachedKey>>,
    unknown: DashMap<KeyDigest, i64>,
    generation: AtomicU64,
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

    /// The invalidation generation; note it before reading a record from the database.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers a record.
    pub fn insert(&self, digest: KeyDigest, key: Arc<CachedKey>) {
        self.unknown.remove(&digest);
        self.by_digest.insert(digest, key);
    }

    /// Remembers a record read from the database after [`KeyCache::generation`] returned
    /// `generation`, unless an invalidation started since (the record may predate it).
    /// Returns whether the record was kept.
    ///
    /// An invalidation bumps the generation before it sweeps the map, so either this
    /// check sees the new generation and takes the record back out, or the sweep runs
    /// after the insert and removes it.
    pub fn insert_loaded(&self, generation: u64, digest: KeyDigest, key: Arc<CachedKey>) -> bool {
        if self.generation() != generation {
            return false;
        }
        self.insert(digest, key.clone());
        if self.generation() != generation {
            self.by_digest
                .remove_if(&digest, |_, cached| Arc::ptr_eq(cached, &key));
            return false;
        }
        true
    }

    /// Remembers that no key has this digest (unless an invalidation started since
    /// `generation`: the key may have been created meanwhile).
    pub fn insert_unknown_loaded(&self, generation: u64, digest: KeyDigest, now_ms: i64) {
        if self.generation() != generation {
            return;
        }
        self.insert_unknown(digest, now_ms);
        if self.generation() != generation {
            self.unknown.remove(&digest);
        }
    }

    /// Forgets that no key had this digest (given in its stored, hex form): a key with
    /// it exists now — imported with a secret someone tried before.
    pub fn forget_unknown_hex(&self, hex_digest: &str) {
        if self.unknown.is_empty() {
            return;
        }
        let mut d = [0u8; 32];
        if hex::decode_to_slice(hex_digest, &mut d).is_ok() {
            self.unknown.remove(&d);
        }
    }

    /// Remembers that no key has this digest.
    pub fn insert_unknown(&self, digest: KeyDigest, now_ms: i64) {
        if self.unknown.len() >= NEGATIVE_CAPACITY {
            self.unknown.clear();
        }
        self.unknown.insert(digest, now_ms + NEGATIVE_TTL_MS);
    }

    /// Drops every record of the given keys, owners and organizations in one pass
    /// (changes are rare; the cache keeps no extra index for them).
    pub fn invalidate(
        &self,
        keys: &HashSet<[u8; 26]>,
        owners: &HashSet<&str>,
        orgs: &HashSet<&str>,
    ) {
        if keys.is_empty() && owners.is_empty() && orgs.is_empty() {
            return;
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.by_digest.retain(|_, v| {
            !(keys.contains(&v.key_id)
                || owners.contains(v.owner.id.as_ref())
                || orgs.contains(v.org_id.as_ref()))
        });
    }

    /// Records read from the database at or before `before_ms`, with their digests.
    pub fn loaded_before(&self, before_ms: i64) -> Vec<(KeyDigest, Arc<CachedKey>)> {
        self.by_digest
            .iter()
            .filter(|e| e.value().loaded_at_ms <= before_ms)
            .map(|e| (*e.key(), e.value().clone()))
            .collect()
    }

    /// Drops the record of `digest` if it is still `key` (not replaced meanwhile).
    pub fn remove_if_same(&self, digest: &KeyDigest, key: &Arc<CachedKey>) {
        self.by_digest
            .remove_if(digest, |_, cached| Arc::ptr_eq(cached, key));
    }

    /// Drops everything (after losing track of changes).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.by_digest.clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Arc<CachedKey> {
        Arc::new(CachedKey {
            key_id: id_bytes(id),
            revoked: false,
            owner_active: true,
            enabled: true,
            external_id: None,
            metadata: None,
            expires_at_ms: None,
            previous_until_ms: None,
            org_id: Arc::from("org"),
            name: "k".into(),
            owner: Arc::new(Owner {
                kind: PrincipalKind::ServiceAccount,
                id: "sa".into(),
                name: "sa".into(),
            }),
            permissions: Arc::from(Vec::<Box<str>>::new()),
            limits: Box::new([]),
            credits: None,
            allowed_cidrs: Box::new([]),
            loaded_at_ms: 0,
        })
    }

    #[test]
    fn a_load_that_raced_an_invalidation_is_not_kept() {
        let cache = KeyCache::default();
        let g = cache.generation();
        // The change commits and is applied while the load is in flight.
        cache.invalidate(
            &HashSet::from([id_bytes("a")]),
            &HashSet::new(),
            &HashSet::new(),
        );
        assert!(!cache.insert_loaded(g, [1; 32], record("a")));
        assert!(cache.get(&[1; 32]).is_none());
        // A later load is kept.
        let g = cache.generation();
        assert!(cache.insert_loaded(g, [1; 32], record("a")));
        assert!(cache.get(&[1; 32]).is_some());
    }

    #[test]
    fn an_unknown_digest_that_raced_an_invalidation_is_not_remembered() {
        let cache = KeyCache::default();
        let g = cache.generation();
        cache.clear();
        cache.insert_unknown_loaded(g, [2; 32], 0);
        assert!(!cache.known_unknown(&[2; 32], 0));
        let g = cache.generation();
        cache.insert_unknown_loaded(g, [2; 32], 0);
        assert!(cache.known_unknown(&[2; 32], 0));
    }

    #[test]
    fn invalidation_of_nothing_keeps_loads() {
        let cache = KeyCache::default();
        let g = cache.generation();
        cache.invalidate(&HashSet::new(), &HashSet::new(), &HashSet::new());
        assert!(cache.insert_loaded(g, [3; 32], record("c")));
    }
}
