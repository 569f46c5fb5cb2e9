//! The Redis counter engine (PostgreSQL with `KEYHAVEN_REDIS_URL`, several nodes).
//!
//! **Token buckets live in Redis**, one hash `keyhaven:bucket:{id}` = `{micro,
//! updated_ms}` per bucket. Every lease is one Lua script run atomically by Redis
//! (`EVALSHA`, loaded again by itself after a Redis restart) that repeats
//! [`Bucket::lease`] exactly: the same micro-token integer arithmetic, done in Lua's
//! doubles without ever leaving the range where they are exact (below 2^53: a bucket
//! holds at most 10^9 × 10^6 micro-tokens, and products such as elapsed × capacity,
//! which do not fit, go through an exact shift-and-add multiply-divide). Giving tokens
//! back ([`Bucket::give_back`], never above full) is a second script. Each write sets
//! the key to expire when the bucket is full again ([`Bucket::full_at_ms`]) plus
//! [`EXPIRY_MARGIN_MS`] (for clocks a little apart): a missing key is a full bucket, so
//! Redis forgets idle buckets by itself and [`CounterEngine::prune`] has nothing to do
//! there.
//!
//! **Credit balances stay in the database.** Leases, returns, adjustments and the
//! flush go to an inner [`DatabaseEngine`]: the database stays the one source of truth
//! for balances, so a Redis restart (or a flushed Redis, or one without persistence) can
//! never hand out credits that were already spent. Nodes lease credits in batches
//! ([`CounterEngine::batches`] is true), so this costs a database statement per
//! thousand credits, not per verification.
//!
//! **A Redis outage.** Every Redis call has a short deadline ([`REDIS_TIMEOUT`]), so a
//! dead or hung Redis does not stall verifications. When a call fails, the node counts
//! tokens in the database instead (the [`DatabaseEngine`]'s `rate_buckets`), logs it as a
//! warning at most once every [`LOG_EVERY`] (with how many calls failed meanwhile), and
//! leaves Redis alone for [`RETRY_AFTER`]; then one request tries Redis again, and the
//! node goes back to it as soon as it answers. If the database fails as well, the
//! engine's error is returned and the verifier answers 503 for keys with limits (keys
//! without limits keep verifying). A node whose Redis does not answer when it starts
//! starts on the database the same way.
//!
//! **Carrying a bucket across the switch.** Each node remembers, per bucket it used,
//! what the engine in use last answered (the whole tokens left after its last lease,
//! plus what it gave back since). The first time the node uses a bucket on the other
//! engine — the database when Redis stopped answering, Redis when it answers again — it
//! first lowers that engine's bucket to what it last saw (refilled to now); it never
//! raises one. So a bucket served by one node grants no more than its limit across a
//! switch, whether Redis lost its data meanwhile (a restart without persistence: every
//! key gone, every bucket full) or kept it, and a Redis that flaps does not compound:
//! lowering a bucket to the same view twice takes nothing more. (The database's bucket
//! is lowered in whole tokens, so it may keep a fraction of a token more than seen.)
//!
//! The bound, stated honestly: a node carries over what *it* saw. Tokens handed out by
//! the old engine after the last look of every node that carries the bucket over (in
//! practice: the leases in flight when the outage began, about one per node) are not
//! carried, and a bucket that none of the nodes now using it had used before starts
//! from the new engine's own state (the database's: full, or what an earlier outage
//! left there). So across one switch a limit grants at most one extra window's worth
//! (`limit` tokens more), typically at most about a lease per node more, and exactly
//! its limit when one node serves the bucket (`tests/redis_engine.rs` measures that).
//! Several nodes lowering the same bucket to their own views leave the lowest, so
//! tokens other nodes gave back after a node's last look can make the new engine
//! refuse early (never grant more). One call past the deadline is enough to switch:
//! a Redis that stalls for a moment sends the node to the database for [`RETRY_AFTER`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dashmap::DashMap;
use keyhaven_core::usage_control::{
    Bucket, CreditOp, Grant, MAX_COST, MAX_DURATION_MS, MAX_LIMIT, MICRO,
};
use keyhaven_store::{CreditChange, CreditLease, Store};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::database::DatabaseEngine;
use super::{lock, BucketSpec, CounterEngine, CreditKey, EngineError};

/// How long one Redis call may take before the node counts in the database instead.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failed Redis call, how long the node counts in the database before one
/// request tries Redis again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// At most one warning about an unreachable Redis this often.
pub const LOG_EVERY: Duration = Duration::from_secs(5);
/// A bucket's key outlives the moment the bucket is full again by this much, ms.
pub const EXPIRY_MARGIN_MS: i64 = 60_000;
/// The prefix of every key this engine writes.
pub const KEY_PREFIX: &str = "keyhaven:bucket:";

/// Exact integer helpers shared by the scripts. Every value stays a whole number below
/// 2^53, where Lua's doubles are exact.
const LUA_COMMON: &str = r#"
local M = 1000000
-- floor(a / c) and a mod c, for whole 0 <= a < 2^53 and 1 <= c < 2^53.
local function divmod(a, c)
  local q = math.floor(a / c)
  local r = a - q * c
  if r < 0 then
    q = q - 1
    r = r + c
  elseif r >= c then
    q = q + 1
    r = r - c
  end
  return q, r
end
-- floor(a * b / c) and (a * b) mod c, for whole 0 <= a <= 2^50, 0 <= b < 2^32,
-- 1 <= c <= 2^50 and a quotient below 2^53: a = aq * c + ar, then ar * b by shift and add
-- (each partial remainder stays below 2c).
local function muldiv(a, b, c)
  local aq, ar = divmod(a, c)
  local q, r = 0, 0
  local rest = b
  local p = 2147483648
  while p >= 1 do
    q = q * 2
    r = r * 2
    if r >= c then
      r = r - c
      q = q + 1
    end
    if rest >= p then
      rest = rest - p
      r = r + ar
      if r >= c then
        r = r - c
        q = q + 1
      end
    end
    p = p / 2
  end
  return aq * b + q, r
end
-- The bucket's micro-tokens at `now` (>= updated): refilled evenly, never above cap.
local function refilled(micro, updated, now, cap, d)
  local elapsed = now - updated
  if elapsed >= d then
    return cap
  end
  local added = muldiv(cap, elapsed, d)
  local m = micro + added
  if m > cap then
    m = cap
  end
  return m
end
-- ceil(m * d / cap) for m >= 0 (0 for m <= 0).
local function per(m, d, cap)
  if m <= 0 then
    return 0
  end
  local q, r = muldiv(m, d, cap)
  if r > 0 then
    q = q + 1
  end
  return q
end
local function int(x)
  return string.format('%.0f', x)
end
-- Writes the bucket and lets it expire when full again (plus the margin).
local function save(key, micro, now, cap, d, margin)
  local q = muldiv(cap - micro, d, cap)
  redis.call('HSET', key, 'micro', int(micro), 'updated_ms', int(now))
  redis.call('PEXPIRE', key, int(q + 1 + margin))
end
-- The stored bucket, or nil when there is none (a full bucket).
local function load(key)
  local h = redis.call('HMGET', key, 'micro', 'updated_ms')
  local micro, updated = tonumber(h[1]), tonumber(h[2])
  if micro and updated then
    return micro, updated
  end
  return nil, nil
end
"#;

/// `Bucket::lease`. KEYS[1] = bucket; ARGV = limit, duration_ms, cost, want, now_ms,
/// margin. Returns {granted, remaining, reset_at_ms}.
const LUA_LEASE: &str = r#"
local key = KEYS[1]
local limit, d, cost, want, now, margin =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5]), tonumber(ARGV[6])
local cap = limit * M
local micro, updated = load(key)
if micro == nil then
  micro, updated = cap, now
end
if now < updated then
  now = updated
end
micro = refilled(micro, updated, now, cap, d)
local avail = divmod(micro, M)
local granted = 0
if avail >= cost and avail > 0 then
  local hi = want
  if cost > hi then
    hi = cost
  end
  local x = divmod(avail, 8)
  if x < cost then
    x = cost
  end
  if x > hi then
    x = hi
  end
  if x > avail then
    x = avail
  end
  granted = x
end
micro = micro - granted * M
local reset
if granted > 0 or cost == 0 then
  reset = now + per(cap - micro, d, cap)
else
  local p = per(cost * M - micro, d, cap)
  if p < 1 then
    p = 1
  end
  reset = now + p
end
save(key, micro, now, cap, d, margin)
local remaining = divmod(micro, M)
return {granted, remaining, reset}
"#;

/// `Bucket::give_back`. KEYS[1] = bucket; ARGV = limit, duration_ms, tokens, now_ms,
/// margin. A missing bucket is full: nothing to put back. Returns the tokens left.
const LUA_GIVE_BACK: &str = r#"
local key = KEYS[1]
local limit, d, tokens, now, margin =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5])
local cap = limit * M
local micro, updated = load(key)
if micro == nil then
  return limit
end
if now < updated then
  now = updated
end
micro = refilled(micro, updated, now, cap, d) + tokens * M
if micro > cap then
  micro = cap
end
save(key, micro, now, cap, d, margin)
local remaining = divmod(micro, M)
return remaining
"#;

/// Lowers a bucket (refilled to now) to at most `target` micro-tokens, never raising
/// it: what a node carries over to Redis after an outage. KEYS[1] = bucket; ARGV =
/// limit, duration_ms, target_micro, now_ms, margin. Returns the tokens left.
const LUA_LOWER: &str = r#"
local key = KEYS[1]
local limit, d, target, now, margin =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5])
local cap = limit * M
local micro, updated = load(key)
if micro == nil then
  micro, updated = cap, now
end
if now < updated then
  now = updated
end
micro = refilled(micro, updated, now, cap, d)
if micro > target then
  micro = target
end
save(key, micro, now, cap, d, margin)
local remaining = divmod(micro, M)
return remaining
"#;

/// Which engine counted a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Redis,
    Database,
}

/// What this node last saw of a bucket, on which side.
#[derive(Debug, Clone, Copy)]
struct Seen {
    side: Side,
    /// At least this many micro-tokens were left at `updated_ms` (whole tokens).
    bucket: Bucket,
    limit: i64,
    duration_ms: i64,
}

impl Seen {
    /// The micro-tokens seen, refilled to `now_ms`.
    fn at(&self, now_ms: i64) -> i64 {
        let mut b = self.bucket;
        b.give_back(self.limit, self.duration_ms, 0, now_ms);
        b.micro
    }
}

/// Whether Redis answers, and when to try it again.
struct Health {
    started: Instant,
    down: AtomicBool,
    /// Ms since `started` before which a Redis that did not answer is left alone; the
    /// one call that tries it again moves this on first, so the others keep using the
    /// database meanwhile (and a try that is abandoned still ends).
    retry_at_ms: AtomicU64,
    /// Failed calls since the last warning.
    failures: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
    last_recovery: Mutex<Option<Instant>>,
}

impl Health {
    fn new() -> Self {
        Health {
            started: Instant::now(),
            down: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_warning: Mutex::new(None),
            last_recovery: Mutex::new(None),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn back_off_ms(&self) -> u64 {
        self.elapsed_ms()
            .saturating_add(u64::try_from(RETRY_AFTER.as_millis()).unwrap_or(u64::MAX))
    }

    /// Whether this call should go to Redis: always while it answers; while it does
    /// not, one call per back-off.
    fn use_redis(&self) -> bool {
        if !self.down.load(Ordering::Acquire) {
            return true;
        }
        let retry_at = self.retry_at_ms.load(Ordering::Acquire);
        self.elapsed_ms() >= retry_at
            && self
                .retry_at_ms
                .compare_exchange(
                    retry_at,
                    self.back_off_ms(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn succeeded(&self) {
        if self.down.swap(false, Ordering::AcqRel) && due(&self.last_recovery) {
            tracing::info!("Redis answers again: rate limits are counted there again");
        }
    }

    fn failed(&self, error: &str) {
        self.retry_at_ms
            .store(self.back_off_ms(), Ordering::Release);
        self.down.store(true, Ordering::Release);
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if due(&self.last_warning) {
            self.failures.store(0, Ordering::Release);
            tracing::warn!(
                error,
                failed_calls = failures,
                "Redis does not answer: counting rate limits in the database until it does"
            );
        }
    }
}

/// Whether at least [`LOG_EVERY`] passed since `last` (and then it is now).
fn due(last: &Mutex<Option<Instant>>) -> bool {
    let mut last = lock(last);
    match *last {
        Some(t) if t.elapsed() < LOG_EVERY => false,
        _ => {
            *last = Some(Instant::now());
            true
        }
    }
}

/// A token operation, run on Redis or on the database.
#[derive(Debug, Clone, Copy)]
enum TokenOp {
    Lease { cost: i64, want: i64 },
    GiveBack { tokens: i64 },
}

/// Counters in Redis (token buckets) and the database (credit balances); see the
/// module documentation.
pub struct RedisEngine {
    client: redis::Client,
    /// The deadline of each Redis call.
    timeout: Duration,
    conn: Mutex<Option<ConnectionManager>>,
    inner: DatabaseEngine,
    health: Health,
    /// What this node last saw of each bucket it used.
    seen: DashMap<Box<str>, Seen>,
    /// Serializes switching one bucket to the other engine (striped by bucket id).
    switching: Box<[tokio::sync::Mutex<()>]>,
    lease: redis::Script,
    give_back: redis::Script,
    lower: redis::Script,
}

fn redis_error(e: impl std::fmt::Display) -> EngineError {
    EngineError(format!("Redis: {e}"))
}

impl RedisEngine {
    /// An engine on the Redis at `url` (`redis://host:port/db`, `rediss://…` for TLS),
    /// with credit balances (and the fallback for tokens) in `store`. Fails at once on
    /// a URL that is not one; a Redis that does not answer yet is not an error (the node
    /// counts in the database until it does, see the module documentation).
    pub async fn connect(url: &str, store: Arc<dyn Store>) -> Result<RedisEngine, EngineError> {
        Self::connect_with_timeout(url, store, REDIS_TIMEOUT).await
    }

    /// [`RedisEngine::connect`] with another deadline for each Redis call than
    /// [`REDIS_TIMEOUT`] (tests on a busy machine, where a call past 250 ms would send
    /// the node to the database).
    pub async fn connect_with_timeout(
        url: &str,
        store: Arc<dyn Store>,
        timeout: Duration,
    ) -> Result<RedisEngine, EngineError> {
        let redacted = |m: String| EngineError(crate::config::redact_userinfo(&m, url));
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(redacted(format!(
                "Redis URL {url:?} must start with redis:// or rediss://"
            )));
        }
        let client = redis::Client::open(url)
            .map_err(|e| redacted(format!("Redis URL {url:?} is not usable: {e}")))?;
        let engine = RedisEngine {
            client,
            timeout,
            conn: Mutex::new(None),
            inner: DatabaseEngine::new(store),
            health: Health::new(),
            seen: DashMap::new(),
            switching: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            lease: redis::Script::new(&format!("{LUA_COMMON}{LUA_LEASE}")),
            give_back: redis::Script::new(&format!("{LUA_COMMON}{LUA_GIVE_BACK}")),
            lower: redis::Script::new(&format!("{LUA_COMMON}{LUA_LOWER}")),
        };
        // A failure is logged (as a warning) by the health check itself.
        if engine.ping().await.is_ok() {
            tracing::info!("rate limits are counted in Redis");
        }
        Ok(engine)
    }

    /// Whether Redis answers (one `PING`, within the deadline). A success also
    /// brings the node back to Redis at once, a failure sends it to the database.
    pub async fn ping(&self) -> Result<(), EngineError> {
        let result = self
            .call(|mut c| async move {
                redis::cmd("PING").query_async::<String>(&mut c).await?;
                Ok(())
            })
            .await;
        match &result {
            Ok(()) => self.health.succeeded(),
            Err(e) => self.health.failed(&e.0),
        }
        result
    }

    /// Whether the node counts tokens in the database because Redis did not answer.
    pub fn degraded(&self) -> bool {
        self.health.down.load(Ordering::Acquire)
    }

    /// The Redis key of a bucket.
    pub fn key(bucket_id: &str) -> String {
        format!("{KEY_PREFIX}{bucket_id}")
    }

    /// A connection (made now if there is none yet).
    async fn connection(&self) -> Result<ConnectionManager, EngineError> {
        if let Some(c) = lock(&self.conn).clone() {
            return Ok(c);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(0);
        let c = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(redis_error)?;
        Ok(lock(&self.conn).get_or_insert(c).clone())
    }

    /// Runs `f` on a connection within the deadline (connecting included).
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, EngineError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        // A little more than the connection's own deadlines, which normally end it first.
        let deadline = self.timeout + Duration::from_millis(50);
        match tokio::time::timeout(deadline, async {
            let c = self.connection().await?;
            f(c).await.map_err(redis_error)
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(EngineError(format!(
                "Redis: no answer within {} ms",
                deadline.as_millis()
            ))),
        }
    }

    fn switch_lock(&self, id: &str) -> &tokio::sync::Mutex<()> {
        let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        &self.switching[(h % self.switching.len() as u64) as usize]
    }

    /// Runs a token operation: on Redis while it answers, else on the database.
    async fn tokens(&self, b: &BucketSpec, op: TokenOp, now_ms: i64) -> Result<Grant, EngineError> {
        check(b, op)?;
        if self.health.use_redis() {
            match self.on_redis(b, op, now_ms).await {
                Ok(g) => {
                    self.health.succeeded();
                    return Ok(g);
                }
                Err(e) => self.health.failed(&e.0),
            }
        }
        self.on_database(b, op, now_ms).await.map_err(|e| {
            EngineError(format!(
                "Redis does not answer and the database fallback failed: {}",
                e.0
            ))
        })
    }

    async fn on_redis(
        &self,
        b: &BucketSpec,
        op: TokenOp,
        now_ms: i64,
    ) -> Result<Grant, EngineError> {
        self.carry_over(b, Side::Redis, now_ms).await?;
        let key = Self::key(&b.id);
        let g = match op {
            TokenOp::Lease { cost, want } => {
                let (granted, remaining, reset_at_ms) = self
                    .call(|mut c| async move {
                        self.lease
                            .key(&key)
                            .arg(b.limit)
                            .arg(b.duration_ms)
                            .arg(cost)
                            .arg(want)
                            .arg(now_ms)
                            .arg(EXPIRY_MARGIN_MS)
                            .invoke_async::<(i64, i64, i64)>(&mut c)
                            .await
                    })
                    .await?;
                Grant {
                    granted,
                    remaining,
                    reset_at_ms,
                }
            }
            TokenOp::GiveBack { tokens } => {
                let remaining = self
                    .call(|mut c| async move {
                        self.give_back
                            .key(&key)
                            .arg(b.limit)
                            .arg(b.duration_ms)
                            .arg(tokens)
                            .arg(now_ms)
                            .arg(EXPIRY_MARGIN_MS)
                            .invoke_async::<i64>(&mut c)
                            .await
                    })
                    .await?;
                Grant {
                    granted: 0,
                    remaining,
                    reset_at_ms: now_ms,
                }
            }
        };
        self.observe(b, Side::Redis, op, &g, now_ms);
        Ok(g)
    }

    async fn on_database(
        &self,
        b: &BucketSpec,
        op: TokenOp,
        now_ms: i64,
    ) -> Result<Grant, EngineError> {
        self.carry_over(b, Side::Database, now_ms).await?;
        let g = match op {
            TokenOp::Lease { cost, want } => self.inner.lease_tokens(b, cost, want, now_ms).await?,
            TokenOp::GiveBack { tokens } => {
                self.inner.return_tokens(b, tokens, now_ms).await?;
                Grant {
                    granted: 0,
                    remaining: 0,
                    reset_at_ms: now_ms,
                }
            }
        };
        self.observe(b, Side::Database, op, &g, now_ms);
        Ok(g)
    }

    /// Notes what `side` answered for `b`.
    fn observe(&self, b: &BucketSpec, side: Side, op: TokenOp, g: &Grant, now_ms: i64) {
        match op {
            TokenOp::Lease { .. } => {
                let bucket = Bucket {
                    micro: g.remaining.saturating_mul(MICRO),
                    updated_ms: now_ms,
                };
                match self.seen.get_mut(&b.id) {
                    // A lease that ended after another request of this node moved the
                    // bucket to the other side tells nothing about that side.
                    Some(mut s) => {
                        if s.side == side {
                            s.bucket = bucket;
                        }
                    }
                    None => {
                        self.seen.insert(
                            b.id.clone(),
                            Seen {
                                side,
                                bucket,
                                limit: b.limit,
                                duration_ms: b.duration_ms,
                            },
                        );
                    }
                }
            }
            TokenOp::GiveBack { tokens } => {
                if let Some(mut s) = self.seen.get_mut(&b.id) {
                    if s.side == side {
                        s.bucket.give_back(b.limit, b.duration_ms, tokens, now_ms);
                    }
                }
            }
        }
    }

    /// Before this node's first use of `b` on `side` after it used it on the other
    /// side: lowers the bucket on `side` to what the node last saw on the other one.
    async fn carry_over(&self, b: &BucketSpec, side: Side, now_ms: i64) -> Result<(), EngineError> {
        let pending = |e: &Self| {
            e.seen
                .get(&b.id)
                .filter(|s| s.side != side)
                .map(|s| s.at(now_ms))
        };
        if pending(self).is_none() {
            return Ok(());
        }
        let _one = self.switch_lock(&b.id).lock().await;
        let Some(target) = pending(self) else {
            // Another request of this node carried it over meanwhile.
            return Ok(());
        };
        let cap = b.limit.saturating_mul(MICRO);
        if target < cap {
            match side {
                Side::Redis => {
                    let key = Self::key(&b.id);
                    self.call(|mut c| async move {
                        self.lower
                            .key(&key)
                            .arg(b.limit)
                            .arg(b.duration_ms)
                            .arg(target)
                            .arg(now_ms)
                            .arg(EXPIRY_MARGIN_MS)
                            .invoke_async::<i64>(&mut c)
                            .await
                    })
                    .await?;
                }
                Side::Database => self.lower_in_database(b, target / MICRO, now_ms).await?,
            }
        }
        if let Some(mut s) = self.seen.get_mut(&b.id) {
            s.side = side;
            s.bucket = Bucket {
                micro: target,
                updated_ms: now_ms,
            };
        }
        Ok(())
    }

    /// Takes tokens from the database's bucket until at most `target` whole tokens are
    /// left (it has no "lower to" statement: a report lease reads it, a lease of the
    /// difference takes it).
    async fn lower_in_database(
        &self,
        b: &BucketSpec,
        target: i64,
        now_ms: i64,
    ) -> Result<(), EngineError> {
        for _ in 0..3 {
            let seen = self.inner.lease_tokens(b, 0, 0, now_ms).await?;
            let excess = seen.remaining - target;
            if excess <= 0 {
                return Ok(());
            }
            if self
                .inner
                .lease_tokens(b, excess, excess, now_ms)
                .await?
                .granted
                > 0
            {
                return Ok(());
            }
            // Another node took some meanwhile: look again.
        }
        Ok(())
    }
}

/// Refuses what the scripts cannot count exactly (never reached through the API,
/// which validates limits, windows and costs).
fn check(b: &BucketSpec, op: TokenOp) -> Result<(), EngineError> {
    let ok = (1..=MAX_LIMIT).contains(&b.limit)
        && (1..=MAX_DURATION_MS).contains(&b.duration_ms)
        && match op {
            TokenOp::Lease { cost, want } => (0..=MAX_COST).contains(&cost) && want >= 0,
            TokenOp::GiveBack { tokens } => tokens >= 0,
        };
    if ok {
        Ok(())
    } else {
        Err(EngineError(format!(
            "bucket {} ({} per {} ms, {op:?}) is outside what Redis counts",
            b.id, b.limit, b.duration_ms
        )))
    }
}

#[async_trait]
impl CounterEngine for RedisEngine {
    fn name(&self) -> &'static str {
        "redis"
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
        // A lease never exceeds what a full bucket holds, so asking for more is the same
        // as asking for a full bucket (and keeps the script's numbers small).
        let want = want.min(b.limit).max(0);
        self.tokens(b, TokenOp::Lease { cost, want }, now_ms).await
    }

    async fn return_tokens(
        &self,
        b: &BucketSpec,
        tokens: i64,
        now_ms: i64,
    ) -> Result<(), EngineError> {
        // More than a full bucket fills it all the same.
        let tokens = tokens.min(b.limit);
        self.tokens(b, TokenOp::GiveBack { tokens }, now_ms)
            .await
            .map(|_| ())
    }

    async fn lease_credits(
        &self,
        key: CreditKey<'_>,
        cost: i64,
        want: i64,
    ) -> Result<Option<CreditLease>, EngineError> {
        self.inner.lease_credits(key, cost, want).await
    }

    async fn return_credits(
        &self,
        key_id: &str,
        epoch: i64,
        credits: i64,
    ) -> Result<(), EngineError> {
        self.inner.return_credits(key_id, epoch, credits).await
    }

    fn credits_adjusted(
        &self,
        key_id: &str,
        change: CreditChange,
        op: CreditOp,
        value: i64,
    ) -> i64 {
        self.inner.credits_adjusted(key_id, change, op, value)
    }

    async fn flush(&self) -> Result<(), EngineError> {
        self.inner.flush().await
    }

    /// Redis forgets full buckets by itself (their keys expire). This forgets what the
    /// node saw of buckets that are full again, and the database's rows of buckets an
    /// outage counted there that are full again.
    async fn prune(&self, now_ms: i64) -> Result<(), EngineError> {
        self.seen
            .retain(|_, s| s.at(now_ms) < s.limit.saturating_mul(MICRO));
        self.inner.prune(now_ms).await
    }
}
