//! Usage control on the hot path: rate limits and credits that hold on every node.
//!
//! A [`CounterEngine`] keeps the shared counters — token buckets and credit balances —
//! somewhere every node sees: in this process ([`memory::MemoryEngine`], SQLite: one
//! node), in the database ([`database::DatabaseEngine`], PostgreSQL row locks) or in
//! Redis ([`redis::RedisEngine`], atomic scripts). The [`Meter`] of a node leases from
//! the engine in batches and spends from memory, so a key far from its limit makes no
//! network call; a lease is an eighth of what is left (at least the cost, at most
//! [`MAX_LEASE`]), so leases shrink to one at a time near exhaustion and the limit is
//! never exceeded cluster-wide: a token is spent only after the engine handed it out.
//!
//! Leased tokens a node does not spend within [`TOKEN_LEASE_MS`] go back to the bucket;
//! leased credits go back after [`CREDIT_IDLE_MS`] without use; everything goes back
//! on a graceful stop ([`Meter::release_all`]). A node that crashes loses what it held
//! (at most one lease per bucket and per balance), and that is never handed out again.

pub mod database;
pub mod memory;
pub mod redis;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dashmap::DashMap;
use keyhaven_core::usage_control::Grant;
use keyhaven_store::{CreditLease, StoreError};

/// Most tokens or credits one lease hands to a node.
pub const MAX_LEASE: i64 = 10_000;
/// Leased tokens not spent within this go back to their bucket, ms.
pub const TOKEN_LEASE_MS: i64 = 1_000;
/// Leased credits not spent for this long go back to the balance, ms.
pub const CREDIT_IDLE_MS: i64 = 1_000;
/// Most credit notices a meter keeps until they are taken (see [`Meter::take_signals`]).
pub const MAX_SIGNALS: usize = 10_000;

/// A counter engine failed (the database or Redis is unreachable).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        EngineError(e.to_string())
    }
}

impl From<EngineError> for StoreError {
    fn from(e: EngineError) -> Self {
        StoreError::Unavailable(format!("usage counters: {}", e.0))
    }
}

/// One token bucket: its id (scope, owner, name and window: a changed window is a new
/// bucket, starting full) and its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSpec {
    /// Unique across the cluster.
    pub id: Box<str>,
    /// Tokens in a full bucket.
    pub limit: i64,
    /// Time to refill an empty bucket, ms.
    pub duration_ms: i64,
}

/// The balance of a key as the cached key record knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditKey<'a> {
    /// The key id.
    pub key_id: &'a str,
    /// Its organization.
    pub org_id: &'a str,
    /// The balance's epoch when the record was read.
    pub epoch: i64,
    /// The stored balance when the record was read (the in-memory engine starts there).
    pub stored: i64,
    /// The key's `low_threshold`.
    pub low_threshold: Option<i64>,
}

/// Where shared counters live.
#[async_trait]
pub trait CounterEngine: Send + Sync + 'static {
    /// `memory`, `postgres` or `redis`, for logs and `/metrics`.
    fn name(&self) -> &'static str;
    /// Whether nodes should lease in batches: false for the in-process engine, whose
    /// counters are as cheap to reach as a lease would be.
    fn batches(&self) -> bool;
    /// Leases tokens from `bucket` for a request of `cost` that would like `want`.
    async fn lease_tokens(
        &self,
        bucket: &BucketSpec,
        cost: i64,
        want: i64,
        now_ms: i64,
    ) -> Result<Grant, EngineError>;
    /// Puts back tokens leased and not used.
    async fn return_tokens(
        &self,
        bucket: &BucketSpec,
        tokens: i64,
        now_ms: i64,
    ) -> Result<(), EngineError>;
    /// Leases credits of a key; `None` when the key has no balance (any more).
    async fn lease_credits(
        &self,
        key: CreditKey<'_>,
        cost: i64,
        want: i64,
    ) -> Result<Option<CreditLease>, EngineError>;
    /// Puts back credits leased under `epoch` and not used.
    async fn return_credits(
        &self,
        key_id: &str,
        epoch: i64,
        credits: i64,
    ) -> Result<(), EngineError>;
    /// A balance was adjusted in the database (committed): `before`/`after` as stored,
    /// `op` and `value` as asked. Returns the balance as this engine now counts it.
    fn credits_adjusted(
        &self,
        key_id: &str,
        change: keyhaven_store::CreditChange,
        op: keyhaven_core::usage_control::CreditOp,
        value: i64,
    ) -> i64;
    /// The balance as counted right now, when the engine knows better than the
    /// database (the in-memory engine, whose spending is written behind).
    fn live_balance(&self, _key_id: &str, _epoch: i64) -> Option<i64> {
        None
    }
    /// Writes whatever the engine keeps behind (the in-memory engine's spent credits);
    /// runs at least every second and on a graceful stop.
    async fn flush(&self) -> Result<(), EngineError>;
    /// Forgets state no longer needed (full buckets) at `now_ms`.
    async fn prune(&self, now_ms: i64) -> Result<(), EngineError>;
}

/// The state of one limit after a verification, for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitState {
    /// Tokens in a full bucket.
    pub limit: i64,
    /// Tokens left (cluster-wide, as far as this node knows).
    pub remaining: i64,
    /// When the bucket is full again, or when the cost will be there (refused), ms.
    pub reset_at_ms: i64,
    /// Refused by this limit.
    pub exceeded: bool,
}

#[derive(Default)]
struct LocalBucket {
    /// Leased tokens not spent yet.
    tokens: i64,
    /// When the lease ends (unspent tokens then go back).
    expires_ms: i64,
    /// The bucket's tokens left at the last lease.
    remaining: i64,
    /// Its reset time at the last lease.
    reset_at_ms: i64,
    /// Tokens of ended leases, to give back.
    stale: i64,
    /// Held while this node leases for the bucket: one lease in flight at a time, the
    /// requests that find the lease empty meanwhile wait for it instead of each asking.
    refill: Arc<tokio::sync::Mutex<()>>,
    /// The last lease was as large as asked (the bucket is far from empty): worth
    /// leasing the next one ahead, before this one runs out.
    full: bool,
    /// A lease ahead is in flight.
    prefetching: bool,
}

#[derive(Default)]
struct LocalCredits {
    /// One lease in flight at a time (see [`LocalBucket`]).
    refill: Arc<tokio::sync::Mutex<()>>,
    /// The last lease was as large as asked (see [`LocalBucket`]).
    full: bool,
    /// A lease ahead is in flight.
    prefetching: bool,
    epoch: i64,
    /// Leased credits not spent yet.
    leased: i64,
    /// The balance at the last lease (without what nodes hold).
    remaining: i64,
    last_used_ms: i64,
}

/// A one-time credit notice a lease made due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditSignal {
    /// The key.
    pub key_id: String,
    /// Its organization.
    pub org_id: String,
    /// The balance seen.
    pub remaining: i64,
    /// Below `low_threshold` (else: exhausted).
    pub low: bool,
}

/// A node's leases, spent from memory.
pub struct Meter {
    engine: Arc<dyn CounterEngine>,
    buckets: Arc<DashMap<Box<str>, Mutex<LocalBucket>>>,
    credits: Arc<DashMap<Box<str>, Mutex<LocalCredits>>>,
    signals: Arc<Mutex<Vec<CreditSignal>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Meter {
    /// A meter on `engine`.
    pub fn new(engine: Arc<dyn CounterEngine>) -> Self {
        Meter {
            engine,
            buckets: Arc::default(),
            credits: Arc::default(),
            signals: Arc::default(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<dyn CounterEngine> {
        &self.engine
    }

    fn want(&self, limit: i64, cost: i64) -> i64 {
        if self.engine.batches() {
            (limit / 10).clamp(1, MAX_LEASE).max(cost)
        } else {
            cost
        }
    }

    /// The local state of bucket `id`, created on first use (a read of the shard after).
    fn bucket(&self, id: &str) -> dashmap::mapref::one::Ref<'_, Box<str>, Mutex<LocalBucket>> {
        match self.buckets.get(id) {
            Some(e) => e,
            None => self.buckets.entry(id.into()).or_default().downgrade(),
        }
    }

    fn local_view(&self, b: &BucketSpec) -> LimitState {
        let (remaining, reset_at_ms) = match self.buckets.get(&b.id) {
            Some(l) => {
                let l = lock(&l);
                (l.remaining + l.tokens, l.reset_at_ms)
            }
            None => (b.limit, 0),
        };
        LimitState {
            limit: b.limit,
            remaining,
            reset_at_ms,
            exceeded: false,
        }
    }

    fn take_local(&self, b: &BucketSpec, cost: i64, now_ms: i64) -> Option<LimitState> {
        let l = self.buckets.get(&b.id)?;
        let mut l = lock(&l);
        if l.expires_ms > now_ms && l.tokens >= cost {
            l.tokens -= cost;
            let want = self.want(b.limit, 1);
            let ahead = (self.engine.batches() && l.full && !l.prefetching && l.tokens * 2 < want)
                .then(|| {
                    l.prefetching = true;
                    l.refill.clone()
                });
            let state = LimitState {
                limit: b.limit,
                remaining: l.remaining + l.tokens,
                reset_at_ms: l.reset_at_ms,
                exceeded: false,
            };
            drop(l);
            if let Some(gate) = ahead {
                self.lease_tokens_ahead(b, want, now_ms, gate);
            }
            return Some(state);
        }
        None
    }

    /// Leases the next batch of `b` in the background while the current one lasts, so
    /// requests don't wait for the shared counter.
    fn lease_tokens_ahead(
        &self,
        b: &BucketSpec,
        want: i64,
        now_ms: i64,
        gate: Arc<tokio::sync::Mutex<()>>,
    ) {
        let (engine, buckets, spec) = (self.engine.clone(), self.buckets.clone(), b.clone());
        tokio::spawn(async move {
            let _one = gate.lock_owned().await;
            let got = engine.lease_tokens(&spec, 1, want, now_ms).await;
            let unused = match buckets.get(&spec.id) {
                Some(e) => {
                    let mut l = lock(&e);
                    l.prefetching = false;
                    match got {
                        Ok(g) if g.granted > 0 => {
                            if l.expires_ms <= now_ms {
                                l.stale += std::mem::take(&mut l.tokens);
                            }
                            l.tokens += g.granted;
                            l.expires_ms = now_ms + TOKEN_LEASE_MS;
                            l.remaining = g.remaining;
                            l.reset_at_ms = g.reset_at_ms;
                            l.full = g.granted >= want;
                            0
                        }
                        Ok(g) => {
                            l.full = false;
                            l.remaining = g.remaining;
                            0
                        }
                        Err(e) => {
                            tracing::warn!(error = %e.0, "cannot lease rate-limit tokens ahead");
                            0
                        }
                    }
                }
                // Forgotten meanwhile: what was leased goes back.
                None => got.map(|g| g.granted).unwrap_or(0),
            };
            if unused > 0 {
                let _ = engine.return_tokens(&spec, unused, now_ms).await;
            }
        });
    }

    /// Takes `cost` tokens from bucket `b`: `Ok` with the state after, or `Err` with the
    /// state of a refusal (nothing taken).
    async fn take_tokens(
        &self,
        b: &BucketSpec,
        cost: i64,
        now_ms: i64,
    ) -> Result<Result<LimitState, LimitState>, EngineError> {
        if cost == 0 {
            // Reports without spending.
            if self.buckets.contains_key(&b.id) {
                return Ok(Ok(self.local_view(b)));
            }
            let g = self.engine.lease_tokens(b, 0, 0, now_ms).await?;
            return Ok(Ok(LimitState {
                limit: b.limit,
                remaining: g.remaining,
                reset_at_ms: g.reset_at_ms,
                exceeded: false,
            }));
        }
        // Several tries only when other requests took what this one counted on.
        for _ in 0..3 {
            if let Some(s) = self.take_local(b, cost, now_ms) {
                return Ok(Ok(s));
            }
            let gate = {
                let entry = self.bucket(&b.id);
                let g = lock(&entry).refill.clone();
                g
            };
            let _one = gate.lock().await;
            // Another request may have leased while this one waited.
            if let Some(s) = self.take_local(b, cost, now_ms) {
                return Ok(Ok(s));
            }
            // What this node holds counts toward the cost: lease only the rest.
            let have = self
                .buckets
                .get(&b.id)
                .map(|l| {
                    let l = lock(&l);
                    if l.expires_ms > now_ms {
                        l.tokens.min(cost)
                    } else {
                        0
                    }
                })
                .unwrap_or(0);
            let need = cost - have;
            let g = self
                .engine
                .lease_tokens(b, need, self.want(b.limit, cost).max(need), now_ms)
                .await?;
            let entry = self.bucket(&b.id);
            let mut l = lock(&entry);
            if l.expires_ms <= now_ms {
                // Tokens of an ended lease are not spent any more; the maintenance task
                // gives them back. (They stay counted until then: never spent twice.)
                l.stale += std::mem::take(&mut l.tokens);
            }
            l.remaining = g.remaining;
            l.reset_at_ms = g.reset_at_ms;
            if g.granted > 0 {
                l.tokens += g.granted;
                l.expires_ms = now_ms + TOKEN_LEASE_MS;
            }
            l.full = g.granted >= self.want(b.limit, cost).max(need);
            if l.tokens >= cost {
                l.tokens -= cost;
                return Ok(Ok(LimitState {
                    limit: b.limit,
                    remaining: l.remaining + l.tokens,
                    reset_at_ms: l.reset_at_ms,
                    exceeded: false,
                }));
            }
            if g.granted == 0 {
                return Ok(Err(LimitState {
                    limit: b.limit,
                    remaining: g.remaining + l.tokens,
                    reset_at_ms: g.reset_at_ms,
                    exceeded: true,
                }));
            }
        }
        Ok(Err(LimitState {
            exceeded: true,
            ..self.local_view(b)
        }))
    }

    /// Gives back `cost` tokens taken by [`Meter::take_tokens`] for a request that was
    /// then refused by something else.
    async fn untake_tokens(
        &self,
        b: &BucketSpec,
        cost: i64,
        now_ms: i64,
    ) -> Result<(), EngineError> {
        if cost == 0 {
            return Ok(());
        }
        if self.engine.batches() {
            if let Some(l) = self.buckets.get(&b.id) {
                lock(&l).tokens += cost;
                return Ok(());
            }
        }
        self.engine.return_tokens(b, cost, now_ms).await
    }

    /// Takes `cost` credits of `key`: `Ok(Some(left))` after taking, `Ok(None)` when
    /// fewer than the cost are left (nothing taken), or — when the key turned out to
    /// have no balance any more — `Ok(Some(i64::MAX))`.
    async fn take_credits(
        &self,
        key: CreditKey<'_>,
        cost: i64,
        now_ms: i64,
    ) -> Result<Option<i64>, EngineError> {
        let fresh = || {
            Mutex::new(LocalCredits {
                refill: Arc::default(),
                full: false,
                prefetching: false,
                epoch: key.epoch,
                leased: 0,
                remaining: key.stored,
                last_used_ms: now_ms,
            })
        };
        // This node's share: taken when it covers the cost, else what it holds (which
        // counts toward the cost) and the gate that keeps one lease in flight.
        let local = || {
            // A read of the shard when the entry exists (every call but the first).
            let entry = match self.credits.get(key.key_id) {
                Some(e) => e,
                None => self
                    .credits
                    .entry(key.key_id.into())
                    .or_insert_with(fresh)
                    .downgrade(),
            };
            let mut c = lock(&entry);
            if c.epoch < key.epoch {
                // The balance was replaced: what this node held is void.
                c.epoch = key.epoch;
                c.leased = 0;
                c.remaining = key.stored;
            }
            if self.engine.batches() && c.leased >= cost {
                c.leased -= cost;
                c.last_used_ms = now_ms;
                let left = c.remaining + c.leased;
                if c.full && !c.prefetching && c.leased * 2 < MAX_LEASE {
                    c.prefetching = true;
                    let gate = c.refill.clone();
                    drop(c);
                    self.lease_credits_ahead(key, gate);
                }
                return Ok(left);
            }
            Err((c.leased.min(cost), c.refill.clone()))
        };
        let gate = match local() {
            Ok(left) => return Ok(Some(left)),
            Err((_, gate)) => gate,
        };
        // Held until this request's lease is in: one lease in flight per key and node.
        let (have, _one) = if self.engine.batches() {
            let guard = gate.lock_owned().await;
            // Another request may have leased while this one waited.
            match local() {
                Ok(left) => return Ok(Some(left)),
                Err((have, _)) => (have, Some(guard)),
            }
        } else {
            (0, None)
        };
        let (need, want) = if self.engine.batches() {
            (cost - have, MAX_LEASE.max(cost))
        } else {
            (cost, cost)
        };
        let Some(lease) = self.engine.lease_credits(key, need, want.max(need)).await? else {
            return Ok(Some(i64::MAX));
        };
        self.signal(key, lease.remaining, lease.low_threshold);
        let entry = self.credits.entry(key.key_id.into()).or_insert_with(fresh);
        let mut c = lock(&entry);
        if lease.epoch > c.epoch {
            // The balance was replaced meanwhile: what this node held is void.
            c.epoch = lease.epoch;
            c.leased = 0;
        }
        c.remaining = lease.remaining;
        c.last_used_ms = now_ms;
        if !self.engine.batches() {
            // Exact engine: the grant is this request's, or nothing is.
            return Ok((lease.granted >= cost).then_some(lease.remaining));
        }
        if lease.epoch == c.epoch {
            c.leased += lease.granted;
        }
        c.full = lease.granted >= want.max(need);
        if c.leased >= cost {
            c.leased -= cost;
            return Ok(Some(c.remaining + c.leased));
        }
        // Refused (what is left here and there is below the cost); anything leased
        // stays here for the next requests.
        Ok(None)
    }

    /// Leases the next batch of credits in the background (see
    /// [`Meter::lease_tokens_ahead`]).
    fn lease_credits_ahead(&self, key: CreditKey<'_>, gate: Arc<tokio::sync::Mutex<()>>) {
        let (engine, credits, signals) = (
            self.engine.clone(),
            self.credits.clone(),
            self.signals.clone(),
        );
        let (key_id, org_id) = (key.key_id.to_string(), key.org_id.to_string());
        let (epoch, stored, low_threshold) = (key.epoch, key.stored, key.low_threshold);
        tokio::spawn(async move {
            let _one = gate.lock_owned().await;
            let key = CreditKey {
                key_id: &key_id,
                org_id: &org_id,
                epoch,
                stored,
                low_threshold,
            };
            let got = engine.lease_credits(key, 1, MAX_LEASE).await;
            let lease = match got {
                Ok(Some(l)) => l,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e.0, "cannot lease credits ahead");
                    if let Some(c) = credits.get(key_id.as_str()) {
                        lock(&c).prefetching = false;
                    }
                    return;
                }
            };
            signal_into(&signals, key, lease.remaining, lease.low_threshold);
            let unused = match credits.get(key_id.as_str()) {
                Some(c) => {
                    let mut c = lock(&c);
                    c.prefetching = false;
                    if lease.epoch > c.epoch {
                        c.epoch = lease.epoch;
                        c.leased = 0;
                    }
                    c.remaining = lease.remaining;
                    c.full = lease.granted >= MAX_LEASE;
                    if lease.epoch == c.epoch {
                        c.leased += lease.granted;
                        0
                    } else {
                        0 // leased under an epoch this node already left: void
                    }
                }
                None => lease.granted,
            };
            if unused > 0 {
                let _ = engine.return_credits(&key_id, lease.epoch, unused).await;
            }
        });
    }

    async fn untake_credits(&self, key: CreditKey<'_>, cost: i64) -> Result<(), EngineError> {
        if cost == 0 {
            return Ok(());
        }
        if self.engine.batches() {
            if let Some(c) = self.credits.get(key.key_id) {
                let mut c = lock(&c);
                if c.epoch == key.epoch {
                    c.leased += cost;
                    return Ok(());
                }
            }
        }
        self.engine
            .return_credits(key.key_id, key.epoch, cost)
            .await
    }

    fn signal(&self, key: CreditKey<'_>, remaining: i64, low_threshold: Option<i64>) {
        signal_into(&self.signals, key, remaining, low_threshold);
    }

    /// Takes the credit notices leases made due since the last call.
    pub fn take_signals(&self) -> Vec<CreditSignal> {
        std::mem::take(&mut *lock(&self.signals))
    }

    /// Puts back notices taken by [`Meter::take_signals`] that could not be handled (the
    /// database failed), for the next call; as many as fit the bound of what is kept.
    pub fn requeue_signals(&self, signals: Vec<CreditSignal>) {
        let mut s = lock(&self.signals);
        let room = MAX_SIGNALS.saturating_sub(s.len());
        s.extend(signals.into_iter().take(room));
    }

    /// Applies every limit (each with its cost) and then the credits, all or nothing:
    /// on a refusal nothing stays spent. `credits` is checked only when the limits pass.
    pub async fn spend(
        &self,
        limits: &[(&BucketSpec, i64)],
        credits: Option<(CreditKey<'_>, i64)>,
        now_ms: i64,
    ) -> Result<Spent, EngineError> {
        let mut states = Vec::with_capacity(limits.len());
        let mut refused = None;
        for (i, (b, cost)) in limits.iter().enumerate() {
            if refused.is_some() {
                states.push(self.local_view(b));
                continue;
            }
            match self.take_tokens(b, *cost, now_ms).await? {
                Ok(s) => states.push(s),
                Err(s) => {
                    states.push(s);
                    refused = Some(i);
                }
            }
        }
        if let Some(i) = refused {
            for (b, cost) in &limits[..i] {
                self.untake_tokens(b, *cost, now_ms).await?;
            }
            return Ok(Spent {
                limits: states,
                refused_by: Some(i),
                credits: None,
                credits_refused: false,
            });
        }
        let mut left = None;
        if let Some((key, cost)) = credits {
            match self.take_credits(key, cost, now_ms).await? {
                Some(n) => left = Some(n).filter(|n| *n != i64::MAX),
                None => {
                    for (b, cost) in limits {
                        self.untake_tokens(b, *cost, now_ms).await?;
                    }
                    return Ok(Spent {
                        limits: states,
                        refused_by: None,
                        credits: Some(0),
                        credits_refused: true,
                    });
                }
            }
        }
        Ok(Spent {
            limits: states,
            refused_by: None,
            credits: left,
            credits_refused: false,
        })
    }

    /// Undoes a [`Meter::spend`] that succeeded, for a request refused afterwards.
    pub async fn refund(
        &self,
        limits: &[(&BucketSpec, i64)],
        credits: Option<(CreditKey<'_>, i64)>,
        now_ms: i64,
    ) -> Result<(), EngineError> {
        for (b, cost) in limits {
            self.untake_tokens(b, *cost, now_ms).await?;
        }
        if let Some((key, cost)) = credits {
            self.untake_credits(key, cost).await?;
        }
        Ok(())
    }

    /// A balance was adjusted (committed): what this node holds of an older epoch is
    /// void. Returns the balance as the engine counts it now.
    pub fn credits_adjusted(
        &self,
        key_id: &str,
        change: keyhaven_store::CreditChange,
        op: keyhaven_core::usage_control::CreditOp,
        value: i64,
    ) -> i64 {
        if let Some(c) = self.credits.get(key_id) {
            let mut c = lock(&c);
            if change.epoch > c.epoch {
                c.epoch = change.epoch;
                c.leased = 0;
            }
            c.remaining = change.after;
        }
        self.engine.credits_adjusted(key_id, change, op, value)
    }

    /// The balance of `key_id` as counted now, if the engine knows it better than the
    /// database does.
    pub fn live_balance(&self, key_id: &str, epoch: i64) -> Option<i64> {
        self.engine.live_balance(key_id, epoch)
    }

    /// Returns expired token leases and idle credit leases; forgets idle entries.
    pub async fn maintain(&self, now_ms: i64) -> Result<(), EngineError> {
        self.give_back(now_ms, false).await
    }

    /// Returns every lease this node holds (graceful stop), then flushes the engine.
    pub async fn release_all(&self, now_ms: i64) -> Result<(), EngineError> {
        self.give_back(now_ms, true).await?;
        self.engine.flush().await
    }

    async fn give_back(&self, now_ms: i64, all: bool) -> Result<(), EngineError> {
        let mut tokens = Vec::new();
        self.buckets.retain(|id, l| {
            let mut l = lock(l);
            let mut back = std::mem::take(&mut l.stale);
            if all || l.expires_ms <= now_ms {
                back += std::mem::take(&mut l.tokens);
            }
            if back > 0 {
                tokens.push((id.clone(), back));
            }
            // Keep an entry while its lease runs or its bucket is refilling.
            !all && (l.expires_ms > now_ms || l.reset_at_ms > now_ms)
        });
        let mut first_err = None;
        for (id, n) in tokens {
            // The window is part of the id (`…:{limit}:{duration_ms}`).
            let mut parts = id.rsplitn(3, ':');
            let duration_ms = parts.next().and_then(|d| d.parse().ok()).unwrap_or(1000);
            let limit = parts.next().and_then(|d| d.parse().ok()).unwrap_or(1);
            let spec = BucketSpec {
                id,
                limit,
                duration_ms,
            };
            if let Err(e) = self.engine.return_tokens(&spec, n, now_ms).await {
                first_err.get_or_insert(e);
            }
        }
        let mut credits = Vec::new();
        self.credits.retain(|id, c| {
            let mut c = lock(c);
            let idle = now_ms - c.last_used_ms >= CREDIT_IDLE_MS;
            if (all || idle) && c.leased > 0 {
                credits.push((id.to_string(), c.epoch, std::mem::take(&mut c.leased)));
            }
            !(all || idle)
        });
        for (id, epoch, n) in credits {
            if let Err(e) = self.engine.return_credits(&id, epoch, n).await {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Notes a credit notice a lease made due (below `low_threshold`, or at 0).
fn signal_into(
    signals: &Mutex<Vec<CreditSignal>>,
    key: CreditKey<'_>,
    remaining: i64,
    low_threshold: Option<i64>,
) {
    let low = low_threshold.is_some_and(|t| remaining < t);
    if remaining == 0 || low {
        let mut s = lock(signals);
        if s.len() < MAX_SIGNALS {
            s.push(CreditSignal {
                key_id: key.key_id.to_string(),
                org_id: key.org_id.to_string(),
                remaining,
                low: remaining > 0,
            });
        }
    }
}

/// What [`Meter::spend`] did.
#[derive(Debug, Clone)]
pub struct Spent {
    /// Each limit's state, in the order given.
    pub limits: Vec<LimitState>,
    /// The limit that refused, if one did.
    pub refused_by: Option<usize>,
    /// Credits left after this request (when the key has a balance).
    pub credits: Option<i64>,
    /// The balance was below the cost.
    pub credits_refused: bool,
}

/// The id of a bucket: `{scope}:{owner}:{name}:{limit}:{duration_ms}`.
pub fn bucket_id(scope: &str, owner: &str, name: &str, limit: i64, duration_ms: i64) -> Box<str> {
    format!("{scope}:{owner}:{name}:{limit}:{duration_ms}").into_boxed_str()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use keyhaven_core::usage_control::{lease_size, Bucket, CreditOp};
    use keyhaven_store::CreditChange;

    use super::*;

    /// A shared counter in memory that batches like a remote one and counts its calls.
    #[derive(Default)]
    struct Remote {
        buckets: DashMap<Box<str>, Mutex<Bucket>>,
        credits: Mutex<i64>,
        calls: AtomicU64,
    }

    #[async_trait]
    impl CounterEngine for Remote {
        fn name(&self) -> &'static str {
            "test"
        }
        fn batches(&self) -> bool {
            true
        }
        async fn lease_tokens(
            &self,
            b: &BucketSpec,
            cost: i64,
            want: i64,
            now_ms: i64,
        ) -> Result<Grant, EngineError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let e = self
                .buckets
                .entry(b.id.clone())
                .or_insert_with(|| Mutex::new(Bucket::full(b.limit, now_ms)));
            let g = lock(&e).lease(b.limit, b.duration_ms, cost, want, now_ms);
            Ok(g)
        }
        async fn return_tokens(
            &self,
            b: &BucketSpec,
            n: i64,
            now_ms: i64,
        ) -> Result<(), EngineError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if let Some(e) = self.buckets.get(&b.id) {
                lock(&e).give_back(b.limit, b.duration_ms, n, now_ms);
            }
            Ok(())
        }
        async fn lease_credits(
            &self,
            _: CreditKey<'_>,
            cost: i64,
            want: i64,
        ) -> Result<Option<CreditLease>, EngineError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut c = lock(&self.credits);
            let granted = lease_size(*c, cost, want);
            *c -= granted;
            Ok(Some(CreditLease {
                granted,
                remaining: *c,
                epoch: 0,
                low_threshold: None,
            }))
        }
        async fn return_credits(&self, _: &str, _: i64, n: i64) -> Result<(), EngineError> {
            *lock(&self.credits) += n;
            Ok(())
        }
        fn credits_adjusted(&self, _: &str, c: CreditChange, _: CreditOp, _: i64) -> i64 {
            c.after
        }
        async fn flush(&self) -> Result<(), EngineError> {
            Ok(())
        }
        async fn prune(&self, _: i64) -> Result<(), EngineError> {
            Ok(())
        }
    }

    fn key() -> CreditKey<'static> {
        CreditKey {
            key_id: "k",
            org_id: "o",
            epoch: 0,
            stored: 0,
            low_threshold: None,
        }
    }

    #[tokio::test]
    async fn a_key_far_from_its_limits_rarely_reaches_the_shared_counter() {
        let remote = Arc::new(Remote::default());
        *lock(&remote.credits) = 1_000_000_000;
        let meter = Meter::new(remote.clone());
        let b = BucketSpec {
            id: bucket_id("k", "k", "default", 1_000_000_000, 60_000),
            limit: 1_000_000_000,
            duration_ms: 60_000,
        };
        for _ in 0..10_000 {
            let s = meter.spend(&[(&b, 1)], Some((key(), 1)), 0).await.unwrap();
            assert_eq!(s.refused_by, None);
            assert!(!s.credits_refused);
        }
        let calls = remote.calls.load(Ordering::Relaxed);
        assert!(
            calls <= 25,
            "10,000 verifications, {calls} calls: batches of up to 1,000"
        );
        // A graceful stop gives back what this node still holds.
        meter.release_all(0).await.unwrap();
        assert_eq!(*lock(&remote.credits), 1_000_000_000 - 10_000);
    }

    #[tokio::test]
    async fn a_refusal_spends_nothing_and_nothing_is_granted_twice() {
        let remote = Arc::new(Remote::default());
        *lock(&remote.credits) = 5;
        let meter = Meter::new(remote.clone());
        let small = BucketSpec {
            id: bucket_id("k", "k", "small", 3, 3_600_000),
            limit: 3,
            duration_ms: 3_600_000,
        };
        let big = BucketSpec {
            id: bucket_id("k", "k", "big", 100, 3_600_000),
            limit: 100,
            duration_ms: 3_600_000,
        };
        let mut valid = 0;
        for _ in 0..10 {
            let s = meter
                .spend(&[(&big, 10), (&small, 1)], Some((key(), 1)), 0)
                .await
                .unwrap();
            if s.refused_by.is_none() && !s.credits_refused {
                valid += 1;
            } else {
                assert_eq!(s.refused_by, Some(1), "the small limit refuses");
                assert!(s.limits[1].exceeded && !s.limits[0].exceeded);
            }
        }
        assert_eq!(valid, 3);
        // The big limit's tokens of the seven refusals were given back: 70 left.
        let s = meter.spend(&[(&big, 70)], None, 0).await.unwrap();
        assert_eq!(s.refused_by, None);
        let s = meter.spend(&[(&big, 1)], None, 0).await.unwrap();
        assert_eq!(s.refused_by, Some(0));
        // Credits: 5, three spent; a cost of 3 is refused and spends nothing.
        let s = meter.spend(&[], Some((key(), 3)), 0).await.unwrap();
        assert!(s.credits_refused);
        let s = meter.spend(&[], Some((key(), 2)), 0).await.unwrap();
        assert_eq!(s.credits, Some(0));
    }
}
