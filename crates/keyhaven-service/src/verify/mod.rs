//! The hot path: is this key valid, and what may it do?
//!
//! [`Verifier::verify`] reads like PRODUCT.md's sequence: parse and checksum
//! (`MALFORMED`, before any lookup) → cache, or — when the index of existing digests
//! says the key may exist — the database once (`NOT_FOUND`) →
//! `EXPIRED` → `REVOKED` → owner (`DISABLED`) → permissions (`FORBIDDEN`) → rate limits
//! (`RATE_LIMITED`) → credits (`USAGE_EXCEEDED`) → client IP (`IP_NOT_ALLOWED`) →
//! `VALID`, counting the verification in memory on the way out.
//!
//! A string that is not in Keyhaven's format but could be a key imported from another
//! system (printable ASCII, 16…256 characters) takes the same path by its SHA-256
//! digest; on a miss it is looked for among the keys imported with another hash —
//! by its SHA-512 digest, or by its clear prefix for slow hashes — each behind the same
//! index of existing digests, so a flood of such strings costs no database read. A key
//! found that way is moved to its SHA-256 digest at once ([`Verifier::settle`]).
//!
//! Once a key is cached, a verification touches no database and takes no global lock:
//! limits and credits are spent from this node's leases ([`crate::meter`]), which go
//! back to the shared counters only in batches.

pub mod cache;
pub mod changes;
pub mod index;
pub mod recent;
pub mod usage;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use keyhaven_core::id::Id;
use keyhaven_core::import::{self, Lookup};
use keyhaven_core::key_format::{self, KeyDigest, MalformedKey};
use keyhaven_core::permission_expr::Requirement;
use keyhaven_core::time::Clock;
use keyhaven_store::{ChangeKind, PendingHash, Store, StoreError};

use self::cache::{id_bytes, CachedCredits, CachedKey, KeyCache, KeyLimit, LimitScope, Owner};
use self::index::DigestIndex;
use self::usage::UsageCounter;
use crate::meter::{bucket_id, BucketSpec, CounterEngine, CreditKey, LimitState, Meter};

/// A verification's answer code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The key is valid.
    Valid,
    /// Not a well-formed key (shape or checksum).
    Malformed,
    /// No such key.
    NotFound,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
    /// Its owner is suspended, archived or inactive.
    Disabled,
    /// It lacks a required permission.
    Forbidden,
    /// Its rate limit is exhausted.
    RateLimited,
    /// No uses left.
    UsageExceeded,
    /// The client IP is not allowed.
    IpNotAllowed,
}

impl Code {
    /// Every code, in check order.
    pub const ALL: [Code; 10] = [
        Code::Valid,
        Code::Malformed,
        Code::NotFound,
        Code::Expired,
        Code::Revoked,
        Code::Disabled,
        Code::Forbidden,
        Code::RateLimited,
        Code::UsageExceeded,
        Code::IpNotAllowed,
    ];

    /// The code as the API writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Valid => "VALID",
            Code::Malformed => "MALFORMED",
            Code::NotFound => "NOT_FOUND",
            Code::Expired => "EXPIRED",
            Code::Revoked => "REVOKED",
            Code::Disabled => "DISABLED",
            Code::Forbidden => "FORBIDDEN",
            Code::RateLimited => "RATE_LIMITED",
            Code::UsageExceeded => "USAGE_EXCEEDED",
            Code::IpNotAllowed => "IP_NOT_ALLOWED",
        }
    }

    fn index(self) -> usize {
        Code::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The code.
    pub code: Code,
    /// The key, when one was found.
    pub key: Option<Arc<CachedKey>>,
    /// Every limit that applied, for keys that got that far: its index in the key's
    /// `limits` and its state.
    pub limits: Vec<(usize, LimitState)>,
    /// Credits left after this one, for keys with a balance.
    pub remaining: Option<i64>,
    /// True when the secret used is the one replaced by a regeneration, in its grace period.
    pub rotating: bool,
}

impl Verdict {
    /// The applied limit that refused, if one did.
    pub fn refused_by(&self) -> Option<&LimitState> {
        self.limits.iter().map(|(_, s)| s).find(|s| s.exceeded)
    }

    fn code(code: Code, key: Option<Arc<CachedKey>>) -> Self {
        Verdict {
            code,
            key,
            limits: Vec::new(),
            remaining: None,
            rotating: false,
        }
    }
}

/// A limit a verification request names, with its cost.
#[derive(Debug, Clone, Copy)]
pub struct LimitUse<'a> {
    /// The limit's name (the key's or its service account's).
    pub name: &'a str,
    /// Tokens to spend, 0..=1,000,000 (0 reports without spending).
    pub cost: i64,
}

/// What a verification spends: `cost` credits and, besides the key's `auto_apply`
/// limits (cost 1 each), the named limits with their costs.
#[derive(Debug, Clone, Copy)]
pub struct Usage<'a> {
    /// Credits to spend.
    pub cost: i64,
    /// Limits named by the request.
    pub limits: &'a [LimitUse<'a>],
    /// False to check the key alone, spending from no limit or balance (a key that
    /// authenticates a call of `/v1/ratelimit`).
    pub meter: bool,
    /// The request's analytics tags (at most 10, validated by the caller): the
    /// verification is counted once more under each.
    pub tags: &'a [&'a str],
}

impl Usage<'static> {
    /// One credit, the `auto_apply` limits.
    pub const DEFAULT: Usage<'static> = Usage {
        cost: 1,
        limits: &[],
        meter: true,
        tags: &[],
    };
    /// Nothing metered.
    pub const UNMETERED: Usage<'static> = Usage {
        cost: 0,
        limits: &[],
        meter: false,
        tags: &[],
    };
}

/// Why a verification has no verdict.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Storage (or the usage counters) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request named a limit the key does not have (HTTP 400).
    #[error("the key has no rate limit named {0:?}")]
    UnknownLimit(String),
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct VerifyStats {
    by_code: [AtomicU64; 10],
    /// Cache hits.
    pub hits: AtomicU64,
    /// Cache misses (database loads).
    pub misses: AtomicU64,
    /// Digests answered `NOT_FOUND` by the index, without the database.
    pub index_refusals: AtomicU64,
}

impl VerifyStats {
    /// Verifications answered with `code`.
    pub fn count(&self, code: Code) -> u64 {
        self.by_code[code.index()].load(Ordering::Relaxed)
    }
}

/// The verification engine of one node.
pub struct Verifier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Key records.
    pub cache: KeyCache,
    /// Which digests exist.
    pub index: DigestIndex,
    /// This node's leases of limits and credits.
    pub meter: Meter,
    /// Usage counters.
    pub usage: UsageCounter,
    /// Counters for `/metrics`.
    pub stats: VerifyStats,
    orgs: DashMap<Box<str>, Arc<str>>,
    owners: DashMap<Box<str>, Arc<Owner>>,
    permission_sets: DashMap<Box<str>, Arc<[Box<str>]>>,
    /// Keys imported with a slow hash, by clear prefix, as last read (dropped whenever
    /// a key changes): repeated guesses at one prefix read the database once.
    prefix_candidates: DashMap<Box<str>, Arc<[PendingHash]>>,
    /// Bounds the slow-hash checks running at once, so a flood of guesses can't take
    /// every core.
    slow_checks: tokio::sync::Semaphore,
}

/// Most cached clear prefixes before the map starts over.
const MAX_PREFIXES: usize = 10_000;

impl Verifier {
    /// A verifier on `store`, counting limits and credits in memory on SQLite (one
    /// node) and in the database on PostgreSQL.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let engine: Arc<dyn CounterEngine> = match store.backend() {
            keyhaven_store::Backend::Sqlite => {
                Arc::new(crate::meter::memory::MemoryEngine::new(store.clone()))
            }
            keyhaven_store::Backend::Postgres => {
                Arc::new(crate::meter::database::DatabaseEngine::new(store.clone()))
            }
        };
        Self::with_engine(store, clock, engine)
    }

    /// A verifier whose limits and credits live in `engine`.
    pub fn with_engine(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        engine: Arc<dyn CounterEngine>,
    ) -> Self {
        Verifier {
            store,
            clock,
            cache: KeyCache::default(),
            index: DigestIndex::default(),
            meter: Meter::new(engine),
            usage: UsageCounter::default(),
            stats: VerifyStats::default(),
            orgs: DashMap::new(),
            owners: DashMap::new(),
            permission_sets: DashMap::new(),
            prefix_candidates: DashMap::new(),
            slow_checks: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
        }
    }

    fn intern_org(&self, id: &str) -> Arc<str> {
        if let Some(o) = self.orgs.get(id) {
            return o.clone();
        }
        self.orgs
            .entry(id.into())
            .or_insert_with(|| Arc::from(id))
            .clone()
    }

    fn intern_owner(&self, owner: Owner) -> Arc<Owner> {
        if let Some(o) = self.owners.get(owner.id.as_ref()) {
            if **o == owner {
                return o.clone();
            }
        }
        let o = Arc::new(owner);
        self.owners.insert(o.id.clone(), o.clone());
        o
    }

    fn intern_permissions(&self, perms: Vec<String>) -> Arc<[Box<str>]> {
        let joined = perms.join("\n");
        if let Some(p) = self.permission_sets.get(joined.as_str()) {
            return p.clone();
        }
        let set: Arc<[Box<str>]> = perms.into_iter().map(String::into_boxed_str).collect();
        self.permission_sets
            .insert(joined.into_boxed_str(), set.clone());
        set
    }

    /// Verifies `key`, requiring every permission in `required`, for a client at `ip`,
    /// whatever organization the key belongs to.
    pub async fn verify<R: Requirement + Sync + ?Sized>(
        &self,
        key: &str,
        required: &R,
        ip: Option<IpAddr>,
    ) -> Result<Verdict, VerifyError> {
        self.verify_in(None, key, required, ip, Usage::DEFAULT)
            .await
    }

    /// Like [`Verifier::verify`], for the API of organization `org` when given: a key
    /// of any other organization is `NOT_FOUND` — before its rate limit or uses are
    /// touched, and without counting as its usage — so one tenant's API can't be made
    /// to accept, or to probe, another tenant's keys.
    pub async fn verify_in<R: Requirement + Sync + ?Sized>(
        &self,
        org: Option<&str>,
        key: &str,
        required: &R,
        ip: Option<IpAddr>,
        usage: Usage<'_>,
    ) -> Result<Verdict, VerifyError> {
        // MALFORMED: shape and checksum, before any lookup — and before the clock, which
        // is not free on every machine; a flood of garbage costs only the parse.
        let Some(foreign) = classify(key) else {
            self.stats.by_code[Code::Malformed.index()].fetch_add(1, Ordering::Relaxed);
            if let Some(o) = org {
                let now = self.clock.now().timestamp_millis();
                self.usage
                    .record_keyless(o, Code::Malformed, usage.tags, now);
            }
            return Ok(Verdict::code(Code::Malformed, None));
        };
        // One clock read serves the checks and the usage count.
        let now = self.clock.now().timestamp_millis();
        let verdict = self
            .decide(org, key, foreign, required, ip, usage, now)
            .await?;
        self.stats.by_code[verdict.code.index()].fetch_add(1, Ordering::Relaxed);
        // Analytics: a key's verification in its organization; one without a key only
        // when asked in an organization's scope (verify/usage.rs).
        match (&verdict.key, org) {
            (Some(k), _) => {
                self.usage.record(k, verdict.code, usage.tags, now);
                self.usage
                    .recent
                    .record(k, verdict.code, ip, usage.tags, now);
            }
            (None, Some(o)) => self.usage.record_keyless(o, verdict.code, usage.tags, now),
            (None, None) => {}
        }
        Ok(verdict)
    }

    #[allow(clippy::too_many_arguments)]
    async fn decide<R: Requirement + Sync + ?Sized>(
        &self,
        org: Option<&str>,
        key: &str,
        foreign: bool,
        required: &R,
        ip: Option<IpAddr>,
        usage: Usage<'_>,
        now: i64,
    ) -> Result<Verdict, VerifyError> {
        // NOT_FOUND: cache, negative cache, then the database once.
        let Some(k) = self.find(key, foreign, now).await? else {
            return Ok(Verdict::code(Code::NotFound, None));
        };
        if org.is_some_and(|o| o != &*k.org_id) {
            return Ok(Verdict::code(Code::NotFound, None));
        }
        let rotating = match k.previous_until_ms {
            Some(until) if until <= now => return Ok(Verdict::code(Code::NotFound, None)),
            Some(_) => true,
            None => false,
        };
        let fail = |code| {
            Ok(Verdict {
                rotating,
                ..Verdict::code(code, Some(k.clone()))
            })
        };
        if k.expires_at_ms.is_some_and(|e| e <= now) {
            return fail(Code::Expired);
        }
        if k.revoked {
            return fail(Code::Revoked);
        }
        if !k.owner_active || !k.enabled {
            return fail(Code::Disabled);
        }
        if !required.satisfied_by(&|p| k.holds(p)) {
            return fail(Code::Forbidden);
        }
        // The limits that apply: every `auto_apply` one, and those the request names
        // (a name the key and its service account lack is an error, not a verdict).
        for u in usage.limits {
            if !k.limits.iter().any(|l| *l.name == *u.name) {
                return Err(VerifyError::UnknownLimit(u.name.to_string()));
            }
        }
        let mut applied: Vec<(usize, &BucketSpec, i64)> = Vec::new();
        for (i, l) in k.limits.iter().enumerate() {
            match usage.limits.iter().find(|u| *u.name == *l.name) {
                Some(u) => applied.push((i, &l.bucket, u.cost)),
                None if l.auto_apply => applied.push((i, &l.bucket, 1)),
                None => {}
            }
        }
        let credits = k.credits.map(|c| {
            (
                CreditKey {
                    key_id: k.id(),
                    org_id: &k.org_id,
                    epoch: c.epoch,
                    stored: c.stored,
                    low_threshold: c.low_threshold,
                },
                usage.cost,
            )
        });
        if !usage.meter || (applied.is_empty() && credits.is_none()) {
            let code = if k.ip_allowed(ip) {
                Code::Valid
            } else {
                Code::IpNotAllowed
            };
            return Ok(Verdict {
                rotating,
                ..Verdict::code(code, Some(k))
            });
        }
        let buckets: Vec<(&BucketSpec, i64)> = applied.iter().map(|(_, b, c)| (*b, *c)).collect();
        let spent = self
            .meter
            .spend(&buckets, credits, now)
            .await
            .map_err(StoreError::from)?;
        let limits: Vec<(usize, LimitState)> = applied
            .iter()
            .map(|(i, _, _)| *i)
            .zip(spent.limits.iter().copied())
            .collect();
        let code = if spent.refused_by.is_some() {
            Code::RateLimited
        } else if spent.credits_refused {
            Code::UsageExceeded
        } else if !k.ip_allowed(ip) {
            // Checked last in the contract's order, but nothing may stay spent for it.
            self.meter
                .refund(&buckets, credits, now)
                .await
                .map_err(StoreError::from)?;
            Code::IpNotAllowed
        } else {
            Code::Valid
        };
        Ok(Verdict {
            code,
            key: Some(k),
            limits,
            remaining: spent.credits,
            rotating,
        })
    }

    /// The key record `key` names — from the cache, or the database once — or `None`.
    /// `foreign`: the string is not in Keyhaven's format (see [`classify`]).
    async fn find(
        &self,
        key: &str,
        foreign: bool,
        now: i64,
    ) -> Result<Option<Arc<CachedKey>>, StoreError> {
        let digest = key_format::digest(key);
        if let Some(k) = self.cache.get(&digest) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(k));
        }
        if self.cache.known_unknown(&digest, now) {
            return Ok(None);
        }
        let generation = self.cache.generation();
        let mut looked_up = false;
        let mut found = None;
        if self.index.must_look_up(&digest) {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            looked_up = true;
            found = self.load(&digest, generation).await?;
        }
        if found.is_none() && foreign {
            let (f, l) = self.find_imported(key, &digest, generation).await?;
            found = f;
            looked_up |= l;
        }
        if found.is_none() {
            if looked_up {
                self.cache.insert_unknown_loaded(generation, digest, now);
            } else {
                self.stats.index_refusals.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(found)
    }

    /// Looks for a key imported with a hash other than SHA-256 that `key` matches —
    /// by SHA-512 digest, then by clear prefix — and settles the first that does. Each
    /// lookup only when the index says such a key may exist. Returns the record, and
    /// whether the database was read.
    async fn find_imported(
        &self,
        key: &str,
        digest: &KeyDigest,
        generation: u64,
    ) -> Result<(Option<Arc<CachedKey>>, bool), StoreError> {
        let mut looked_up = false;
        let sha512 = import::sha512(key);
        if self
            .index
            .must_look_up(&import::sha512_index_digest(&sha512))
        {
            looked_up = true;
            let lookup = Lookup::Sha512(hex::encode(sha512));
            let candidates = {
                let mut tx = self.store.read().await?;
                tx.pending_hashes(&lookup).await?
            };
            for c in candidates {
                if import::matches(c.algorithm, &c.value, key) {
                    return Ok((self.settle(&c, key, digest, generation).await?, true));
                }
            }
        }
        let Some(prefix) = import::clear_prefix(key) else {
            return Ok((None, looked_up));
        };
        if !self
            .index
            .must_look_up(&import::prefix_index_digest(prefix))
        {
            return Ok((None, looked_up));
        }
        let candidates = match self.prefix_candidates.get(prefix) {
            Some(c) => c.clone(),
            None => {
                looked_up = true;
                let lookup = Lookup::Prefix(prefix.to_string());
                let found: Arc<[PendingHash]> = {
                    let mut tx = self.store.read().await?;
                    tx.pending_hashes(&lookup).await?.into()
                };
                if self.prefix_candidates.len() >= MAX_PREFIXES {
                    self.prefix_candidates.clear();
                }
                self.prefix_candidates.insert(prefix.into(), found.clone());
                found
            }
        };
        for c in candidates.iter() {
            let matched = {
                let Ok(_permit) = self.slow_checks.acquire().await else {
                    break;
                };
                let (alg, value, candidate) = (c.algorithm, c.value.clone(), key.to_string());
                tokio::task::spawn_blocking(move || import::matches(alg, &value, &candidate))
                    .await
                    .unwrap_or(false)
            };
            if matched {
                return Ok((self.settle(c, key, digest, generation).await?, true));
            }
        }
        Ok((None, looked_up))
    }

    /// Replaces the pending hash of an imported key that `key` just matched by the
    /// key's SHA-256 digest (the hash is deleted in the same transaction), tells the
    /// other nodes, and loads the record by its new digest.
    async fn settle(
        &self,
        pending: &PendingHash,
        key: &str,
        digest: &KeyDigest,
        generation: u64,
    ) -> Result<Option<Arc<CachedKey>>, StoreError> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let hex_digest = hex::encode(digest);
        if tx
            .settle_pending_hash(&pending.key_id, &hex_digest, &import::mask(key))
            .await?
        {
            tx.record_change(ChangeKind::Key, pending.key_id.as_str(), now)
                .await?;
        }
        tx.commit().await?;
        self.index.insert(digest);
        self.prefix_candidates.clear();
        self.load(digest, generation).await
    }

    /// The record of the key `key` names, whatever its state, without checking or
    /// counting anything (`POST /v1/keys/whoami`).
    pub async fn identify(&self, key: &str) -> Result<Option<Arc<CachedKey>>, StoreError> {
        let Some(foreign) = classify(key) else {
            return Ok(None);
        };
        let now = self.clock.now().timestamp_millis();
        self.find(key, foreign, now).await
    }

    /// Loads a key record from the database and caches it, unless the cache was
    /// invalidated since `generation` (then the record answers this verification only).
    async fn load(
        &self,
        digest: &KeyDigest,
        generation: u64,
    ) -> Result<Option<Arc<CachedKey>>, StoreError> {
        let hex = hex::encode(digest);
        let mut tx = self.store.read().await?;
        let Some(found) = tx.api_key_by_digest(&hex).await? else {
            return Ok(None);
        };
        // Found though perhaps missing from the index (made on another node moments ago).
        self.index.insert(digest);
        let k = found.key;
        let access = tx.key_access(&k).await?;
        let (perms, owner_active) = (access.permissions, access.owner_active);
        let mut limits: Vec<KeyLimit> = k
            .ratelimits
            .iter()
            .map(|l| KeyLimit {
                name: l.name.as_str().into(),
                scope: LimitScope::Key,
                auto_apply: l.auto_apply,
                bucket: BucketSpec {
                    id: bucket_id("k", k.id.as_str(), &l.name, l.limit, l.duration_ms),
                    limit: l.limit,
                    duration_ms: l.duration_ms,
                },
            })
            .collect();
        if k.owner.kind == keyhaven_core::principal::PrincipalKind::ServiceAccount {
            let owner_id = Id::from_trusted(k.owner.id.clone());
            if let Some(sa) = tx.service_account(&k.org_id, &owner_id).await? {
                limits.extend(sa.ratelimits.iter().map(|l| KeyLimit {
                    name: l.name.as_str().into(),
                    scope: LimitScope::ServiceAccount,
                    auto_apply: l.auto_apply,
                    bucket: BucketSpec {
                        id: bucket_id("s", sa.id.as_str(), &l.name, l.limit, l.duration_ms),
                        limit: l.limit,
                        duration_ms: l.duration_ms,
                    },
                }));
            }
        }
        let metadata = match &k.metadata {
            serde_json::Value::Object(m) if m.is_empty() => None,
            v => serde_json::value::to_raw_value(v).ok(),
        };
        let cached = Arc::new(CachedKey {
            key_id: id_bytes(k.id.as_str()),
            revoked: k.revoked_at.is_some(),
            owner_active,
            enabled: k.enabled,
            external_id: k.external_id.map(String::into_boxed_str),
            metadata,
            expires_at_ms: k.expires_at.map(|t| t.timestamp_millis()),
            previous_until_ms: if found.previous {
                Some(
                    k.previous_valid_until
                        .map(|t| t.timestamp_millis())
                        .unwrap_or(0),
                )
            } else {
                None
            },
            org_id: self.intern_org(k.org_id.as_str()),
            name: k.name.into_boxed_str(),
            owner: self.intern_owner(Owner {
                kind: k.owner.kind,
                id: k.owner.id.into_boxed_str(),
                name: k.owner.name.into_boxed_str(),
            }),
            permissions: self.intern_permissions(perms.into_iter().collect()),
            limits: limits.into_boxed_slice(),
            credits: k.credits.map(|c| CachedCredits {
                epoch: k.credits_epoch,
                stored: c.remaining,
                low_threshold: c.low_threshold,
            }),
            allowed_cidrs: k.allowed_cidrs.into_boxed_slice(),
            loaded_at_ms: self.clock.now().timestamp_millis(),
        });
        self.cache
            .insert_loaded(generation, *digest, cached.clone());
        Ok(Some(cached))
    }

    /// Reads again every cached record older than [`cache::MAX_AGE_MS`], replacing it
    /// (or dropping it when its key is gone), so a change the change-log follower missed
    /// is seen within that age. Runs in the background (see `Service::spawn_background`),
    /// never on a request. A record that cannot be read now (an outage) is kept and
    /// tried again next time. Returns how many records were read again.
    pub async fn recheck_stale(&self) -> Result<usize, StoreError> {
        let now = self.clock.now().timestamp_millis();
        let stale = self.cache.loaded_before(now - cache::MAX_AGE_MS);
        let mut rechecked = 0;
        for (digest, old) in stale {
            let generation = self.cache.generation();
            match self.load(&digest, generation).await? {
                Some(_) => {}
                None => self.cache.remove_if_same(&digest, &old),
            }
            rechecked += 1;
        }
        Ok(rechecked)
    }

    /// Adds every key's digests to the index, page by page, and marks it loaded.
    pub async fn load_index(&self, store: &Arc<dyn Store>) -> Result<(), StoreError> {
        const PAGE: i64 = 10_000;
        let mut after: Option<String> = None;
        loop {
            let page = {
                let mut tx = store.read().await?;
                tx.api_key_digests(after.as_deref(), PAGE).await?
            };
            for k in &page {
                self.index_digests(k);
            }
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => after = Some(last.id.clone()),
                _ => break,
            }
        }
        self.index.mark_loaded();
        Ok(())
    }

    /// Adds a key's digests to the index (and the stand-in of how it is found, for a
    /// key imported with another hash).
    pub fn index_digests(&self, k: &keyhaven_store::KeyDigests) {
        self.index.insert_hex(&k.digest);
        // A key of another system may be imported after its secret was tried.
        self.cache.forget_unknown_hex(&k.digest);
        if let Some(p) = &k.previous_digest {
            self.index.insert_hex(p);
        }
        if let Some(l) = &k.import_lookup {
            self.index.insert(&l.index_digest());
        }
    }

    /// Writes the usage counts now.
    pub async fn flush_usage(&self) -> Result<usize, StoreError> {
        self.usage.flush(&self.store).await
    }

    /// Applies changes to this node's cache, in one pass over it.
    pub fn apply(&self, changes: &[(ChangeKind, String)]) {
        let mut keys = HashSet::new();
        let mut owners = HashSet::new();
        let mut orgs = HashSet::new();
        for (kind, id) in changes {
            match kind {
                ChangeKind::Key => {
                    keys.insert(id_bytes(id));
                    if !self.prefix_candidates.is_empty() {
                        self.prefix_candidates.clear();
                    }
                }
                ChangeKind::Owner => {
                    owners.insert(id.as_str());
                }
                ChangeKind::Organization => {
                    orgs.insert(id.as_str());
                }
            }
        }
        self.cache.invalidate(&keys, &owners, &orgs);
    }
}

/// Whether `key` can name a key at all: `Some(false)` in Keyhaven's format (checksum
/// included), `Some(true)` for a string an imported key could be (printable ASCII,
/// 16…256 characters, not Keyhaven's shape with a wrong checksum), `None` — `MALFORMED`
/// — for anything else.
pub fn classify(key: &str) -> Option<bool> {
    match key_format::parse(key) {
        Ok(_) => Some(false),
        Err(MalformedKey::BadChecksum) => None,
        Err(_) => import::is_foreign_shape(key).then_some(true),
    }
}
