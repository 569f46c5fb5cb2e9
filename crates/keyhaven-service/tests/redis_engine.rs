//! The Redis counter engine against a real Redis and a real PostgreSQL.
//!
//! The shared Redis is `KEYHAVEN_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`);
//! every test uses bucket ids of its own (random), so parallel runs never meet. The
//! outage tests start (and kill) a `redis-server` of their own on a free port: the
//! shared one is never stopped. A missing Redis, PostgreSQL or `redis-server` binary
//! skips loudly (and fails under `CI=true`).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use keyhaven_core::usage_control::{Bucket, Grant, MAX_COST, MAX_DURATION_MS, MICRO};
use keyhaven_service::meter::database::DatabaseEngine;
use keyhaven_service::meter::redis::{RedisEngine, EXPIRY_MARGIN_MS};
use keyhaven_service::meter::{BucketSpec, CounterEngine, Meter};
use keyhaven_store::testing::{skip, TestDb};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The deadline of each Redis call in these tests: the engine's 250 ms would send a
/// node to the database whenever this (busy, debug-built) machine is slow for a moment,
/// and these tests check what was counted where. A refused connection (the outage
/// tests) fails at once all the same.
const PATIENT: Duration = Duration::from_secs(10);

fn redis_url() -> String {
    std::env::var("KEYHAVEN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A direct connection to the Redis at `url`, or `None` when it does not answer.
async fn raw(url: &str) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).ok()?;
    let mut c = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()?;
    redis::cmd("PING")
        .query_async::<String>(&mut c)
        .await
        .ok()?;
    Some(c)
}

/// The shared Redis and a fresh PostgreSQL database, or `None` (skipped) without them.
async fn services(test: &str) -> Option<(redis::aio::MultiplexedConnection, TestDb)> {
    let Some(c) = raw(&redis_url()).await else {
        skip(
            "Redis",
            test,
            &format!("cannot reach {}", redis_url()),
            "start redis-server or set KEYHAVEN_TEST_REDIS_URL",
        );
        return None;
    };
    let db = TestDb::postgres(test).await?;
    Some((c, db))
}

fn spec(limit: i64, duration_ms: i64) -> BucketSpec {
    let tag: u64 = rand::thread_rng().gen();
    BucketSpec {
        id: keyhaven_service::meter::bucket_id(
            "test",
            &format!("{tag:016x}"),
            "n",
            limit,
            duration_ms,
        ),
        limit,
        duration_ms,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn stored(c: &mut redis::aio::MultiplexedConnection, b: &BucketSpec) -> Option<Bucket> {
    let (micro, updated): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
        .arg(RedisEngine::key(&b.id))
        .arg("micro")
        .arg("updated_ms")
        .query_async(c)
        .await
        .expect("HMGET");
    Some(Bucket {
        micro: micro?,
        updated_ms: updated?,
    })
}

/// Deletes the test's buckets from the shared Redis (a long window's would stay there
/// for up to that window).
async fn forget(c: &mut redis::aio::MultiplexedConnection, ids: &[&str]) {
    let keys: Vec<String> = ids.iter().map(|id| RedisEngine::key(id)).collect();
    redis::cmd("DEL")
        .arg(&keys)
        .query_async::<i64>(c)
        .await
        .expect("DEL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_leasing_at_once_grant_exactly_the_limit() {
    let Some((mut c, db)) = services("nodes_leasing_at_once_grant_exactly_the_limit").await else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..4 {
        let e = RedisEngine::connect_with_timeout(&redis_url(), db.store.clone(), PATIENT)
            .await
            .expect("connect");
        assert!(!e.degraded());
        e.ping().await.expect("ping");
        nodes.push(Arc::new(e));
    }
    let now = now_ms();

    // Engines straight: eight tasks on four nodes, leases of up to three.
    let b = Arc::new(spec(10, 3_600_000));
    let first = b.id.clone();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (e, b) = (nodes[i % nodes.len()].clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            loop {
                let g = e.lease_tokens(&b, 1, 3, now).await.expect("lease");
                if g.granted == 0 {
                    return got;
                }
                assert!(g.granted <= 3);
                got += g.granted;
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    assert_eq!(total, 10);
    let left = stored(&mut c, &b).await.expect("the bucket is in Redis");
    assert_eq!(left.micro, 0);

    // Through each node's meter (leases in batches), 40 verifications at once.
    let b = Arc::new(spec(10, 3_600_000));
    let meters: Vec<Arc<Meter>> = nodes
        .iter()
        .map(|e| Arc::new(Meter::new(e.clone() as Arc<dyn CounterEngine>)))
        .collect();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (m, b) = (meters[i % meters.len()].clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let spent = m.spend(&[(&*b, 1)], None, now).await.expect("spend");
            spent.refused_by.is_none()
        }));
    }
    let mut passed = 0;
    for t in tasks {
        if t.await.expect("task") {
            passed += 1;
        }
    }
    assert_eq!(passed, 10);
    assert!(nodes.iter().all(|e| !e.degraded()));
    forget(&mut c, &[&first, &b.id]).await;
}

/// One random step of the comparison: how far the clock moves.
fn step_ms(rng: &mut StdRng, limit: i64, duration_ms: i64) -> i64 {
    let per_token = (duration_ms / limit).max(1);
    match rng.gen_range(0..12) {
        0 | 1 => 0,
        2 => rng.gen_range(0..100),
        3 => rng.gen_range(0..=per_token * 3),
        // Part of a window: a bucket low after a burst refills by a large, uneven amount
        // (elapsed × capacity is far beyond 2^53 here).
        4 | 5 => rng.gen_range(0..=duration_ms / 8),
        6 => duration_ms - rng.gen_range(1..=duration_ms.min(1_000)),
        7 => rng.gen_range(0..=duration_ms * 2),
        // A node whose clock is behind the bucket's.
        8 => -rng.gen_range(0..=5_000),
        _ => rng.gen_range(0..=1_000),
    }
}

/// One bucket in Redis beside the same bucket in memory ([`Bucket`], the arithmetic
/// every engine must apply): each operation runs on both and the answers and the
/// stored state must be equal.
struct Twin<'a> {
    e: &'a RedisEngine,
    c: &'a mut redis::aio::MultiplexedConnection,
    b: BucketSpec,
    model: Option<Bucket>,
    leases: usize,
    /// Refills that plain doubles get wrong (elapsed × capacity beyond 2^53) and that
    /// are not cut off at full: what the script's exact multiply-divide is for.
    hard: usize,
}

impl Twin<'_> {
    fn note_refill(&mut self, now: i64) {
        let Some(m) = self.model else { return };
        let (limit, duration_ms) = (self.b.limit, self.b.duration_ms);
        let elapsed = (now - m.updated_ms).max(0);
        let cap = limit * MICRO;
        let exact = i128::from(elapsed) * i128::from(cap) / i128::from(duration_ms);
        let doubles = (elapsed as f64 * cap as f64 / duration_ms as f64).floor();
        if elapsed < duration_ms
            && i128::from(m.micro) + exact < i128::from(cap)
            && doubles != exact as f64
        {
            self.hard += 1;
        }
    }

    async fn lease(&mut self, cost: i64, want: i64, now: i64, what: &str) -> Grant {
        self.note_refill(now);
        let (limit, duration_ms) = (self.b.limit, self.b.duration_ms);
        let before = self.model;
        let got = self
            .e
            .lease_tokens(&self.b, cost, want, now)
            .await
            .expect("lease");
        let m = self.model.get_or_insert_with(|| Bucket::full(limit, now));
        let expected = m.lease(limit, duration_ms, cost, want, now);
        assert_eq!(got, expected, "lease {cost}/{want} on {before:?}: {what}");
        self.leases += 1;
        self.compare(what).await;
        got
    }

    async fn give_back(&mut self, tokens: i64, now: i64, what: &str) {
        self.note_refill(now);
        self.e
            .return_tokens(&self.b, tokens, now)
            .await
            .expect("return");
        if let Some(m) = self.model.as_mut() {
            m.give_back(self.b.limit, self.b.duration_ms, tokens, now);
        }
        self.compare(what).await;
    }

    async fn compare(&mut self, what: &str) {
        assert!(!self.e.degraded(), "the engine left Redis: {what}");
        assert_eq!(stored(self.c, &self.b).await, self.model, "state: {what}");
        if let Some(m) = self.model {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(RedisEngine::key(&self.b.id))
                .query_async(self.c)
                .await
                .expect("PTTL");
            let full_in = m.full_at_ms(self.b.limit, self.b.duration_ms) - m.updated_ms;
            assert!(
                ttl > 0 && ttl <= full_in + EXPIRY_MARGIN_MS,
                "ttl {ttl}: {what}"
            );
        }
    }
}

#[tokio::test]
async fn the_script_counts_exactly_like_bucket_lease() {
    let Some((mut c, db)) = services("the_script_counts_exactly_like_bucket_lease").await else {
        return;
    };
    let e = RedisEngine::connect_with_timeout(&redis_url(), db.store.clone(), PATIENT)
        .await
        .expect("connect");
    let mut rng = StdRng::seed_from_u64(0x6b65_7968_6176_656e);
    let mut windows = vec![
        (10, 60_000),
        (1_000_000_000, MAX_DURATION_MS),
        (1_000_000_000, 1_000),
        (1, 1_000),
        (1, MAX_DURATION_MS),
        (7, MAX_DURATION_MS),
        (999_999_937, 86_400_000),
        (3, 3_600_000),
    ];
    for _ in 0..8 {
        windows.push((
            rng.gen_range(1..=1_000_000_000),
            rng.gen_range(1_000..=MAX_DURATION_MS),
        ));
    }
    let (mut leases, mut hard) = (0, 0);
    let mut used = Vec::new();
    // Random steps: leases and returns of any size, clocks moving by any amount (and
    // back).
    for (limit, duration_ms) in windows {
        let mut t = Twin {
            e: &e,
            c: &mut c,
            b: spec(limit, duration_ms),
            model: None,
            leases: 0,
            hard: 0,
        };
        let mut now = 1_800_000_000_000 + rng.gen_range(0..1_000_000);
        for step in 0..250 {
            now += step_ms(&mut rng, limit, duration_ms);
            let what = format!("{limit} per {duration_ms} ms, step {step}, now {now}");
            if rng.gen_range(0..4) == 0 {
                let tokens = match rng.gen_range(0..3) {
                    0 => rng.gen_range(0..=10),
                    1 => rng.gen_range(0..=limit),
                    _ => limit.saturating_mul(3),
                };
                t.give_back(tokens, now, &what).await;
            } else {
                let cost = match rng.gen_range(0..5) {
                    0 => 0,
                    1 => 1,
                    2 => rng.gen_range(0..=limit.min(MAX_COST)),
                    3 => rng.gen_range(0..=MAX_COST),
                    _ => rng.gen_range(0..=limit.min(1_000)),
                };
                let want = match rng.gen_range(0..6) {
                    0 => 0,
                    1 => rng.gen_range(0..=1_000),
                    2 => rng.gen_range(0..=i64::from(u32::MAX)),
                    _ => limit,
                };
                t.lease(cost, want, now, &what).await;
            }
        }
        leases += t.leases;
        hard += t.hard;
        used.push(t.b.id);
    }
    // Large limits on long windows, brought low (a lease asking for a whole bucket
    // takes an eighth of what is left) and then refilled by part of a window: where
    // elapsed × capacity is far beyond what doubles hold exactly.
    for (limit, duration_ms) in [
        (1_000_000_000, MAX_DURATION_MS),
        (999_999_937, 86_400_000),
        (987_654_321, MAX_DURATION_MS - 1),
    ] {
        let mut t = Twin {
            e: &e,
            c: &mut c,
            b: spec(limit, duration_ms),
            model: None,
            leases: 0,
            hard: 0,
        };
        let mut now = 1_800_000_000_000 + rng.gen_range(0..1_000_000);
        for round in 0..200 {
            let what = format!("{limit} per {duration_ms} ms, round {round}, now {now}");
            for _ in 0..6 {
                t.lease(rng.gen_range(0..=MAX_COST), limit, now, &what)
                    .await;
            }
            now += rng.gen_range(0..=duration_ms / 2);
            t.lease(rng.gen_range(0..=1), rng.gen_range(0..=1_000), now, &what)
                .await;
        }
        leases += t.leases;
        hard += t.hard;
        used.push(t.b.id);
    }
    eprintln!("{leases} leases compared, {hard} refills that plain doubles get wrong");
    assert!(leases > 4_000);
    assert!(
        hard >= 5,
        "only {hard} refills that plain doubles get wrong"
    );
    assert!(!e.degraded());
    let used: Vec<&str> = used.iter().map(|id| &**id).collect();
    forget(&mut c, &used).await;
}

#[tokio::test]
async fn tokens_given_back_never_overfill_a_bucket() {
    let Some((mut c, db)) = services("tokens_given_back_never_overfill_a_bucket").await else {
        return;
    };
    let e = RedisEngine::connect_with_timeout(&redis_url(), db.store.clone(), PATIENT)
        .await
        .expect("connect");
    let now = now_ms();
    let b = spec(10, 3_600_000);
    // A bucket Redis does not have is full: giving back to it writes nothing.
    e.return_tokens(&b, 4, now).await.expect("return");
    assert_eq!(stored(&mut c, &b).await, None);

    assert_eq!(
        e.lease_tokens(&b, 3, 3, now).await.expect("lease").granted,
        3
    );
    e.return_tokens(&b, 5, now).await.expect("return");
    let report = e.lease_tokens(&b, 0, 0, now).await.expect("report");
    assert_eq!((report.granted, report.remaining), (0, 10));
    assert_eq!(stored(&mut c, &b).await.map(|s| s.micro), Some(10 * MICRO));
    let mut total = 0;
    loop {
        let g = e.lease_tokens(&b, 1, 1, now).await.expect("lease");
        if g.granted == 0 {
            break;
        }
        total += g.granted;
    }
    assert_eq!(total, 10);
    forget(&mut c, &[&b.id]).await;
}

/// A `redis-server` of the test's own (the shared one is never stopped), killed when
/// dropped.
struct OwnRedis {
    child: Child,
    _dir: tempfile::TempDir,
}

fn redis_server_binary() -> Option<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("redis-server"))
            .find(|f| f.is_file())
    });
    on_path.or_else(|| {
        let f = std::path::PathBuf::from("/usr/bin/redis-server");
        f.is_file().then_some(f)
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl OwnRedis {
    async fn start(binary: &std::path::Path, port: u16) -> OwnRedis {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let own = OwnRedis { child, _dir: dir };
        for _ in 0..100 {
            if raw(&own_url(port)).await.is_some() {
                return own;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {port} does not answer");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn own_url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/0")
}

/// PostgreSQL and a `redis-server` binary, or `None` (skipped).
async fn outage_needs(test: &str) -> Option<(std::path::PathBuf, TestDb)> {
    let Some(bin) = redis_server_binary() else {
        skip(
            "redis-server",
            test,
            "no redis-server binary on PATH or at /usr/bin/redis-server",
            "apt-get install redis-server",
        );
        return None;
    };
    let db = TestDb::postgres(test).await?;
    Some((bin, db))
}

/// Leases one token at a time until refused; returns how many were granted.
async fn drain(e: &RedisEngine, b: &BucketSpec, now: i64) -> i64 {
    let mut total = 0;
    for _ in 0..=b.limit * 2 {
        let g = e.lease_tokens(b, 1, 1, now).await.expect("lease");
        if g.granted == 0 {
            return total;
        }
        total += g.granted;
    }
    panic!("the bucket never ran out: {total} granted");
}

/// Leases until the engine is back on Redis (a back-off or two); every lease meanwhile
/// must be refused (`b` is exhausted on both sides).
async fn until_back_on_redis(e: &RedisEngine, b: &BucketSpec, now: i64) {
    for _ in 0..100 {
        let g = e.lease_tokens(b, 1, 1, now).await.expect("lease");
        assert_eq!(g.granted, 0, "an exhausted bucket granted a token");
        if !e.degraded() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the engine did not go back to Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_falls_back_to_the_database_without_granting_more_than_the_limit() {
    let test = "an_outage_falls_back_to_the_database_without_granting_more_than_the_limit";
    let Some((bin, db)) = outage_needs(test).await else {
        return;
    };
    let port = free_port();
    let redis = OwnRedis::start(&bin, port).await;
    let e = RedisEngine::connect_with_timeout(&own_url(port), db.store.clone(), PATIENT)
        .await
        .expect("connect");
    assert!(!e.degraded());
    // A one-hour window of 10: nothing refills while the test runs (the clock is fixed).
    let now = now_ms();
    let b = spec(10, 3_600_000);
    let mut outstanding = 0;
    for _ in 0..4 {
        outstanding += e.lease_tokens(&b, 1, 1, now).await.expect("lease").granted;
    }
    assert_eq!(outstanding, 4);

    // Redis goes away: leases keep working, from the database, which starts this bucket
    // from what the node last saw in Redis (6 left), not full.
    drop(redis);
    outstanding += drain(&e, &b, now).await;
    assert!(e.degraded());
    assert_eq!(
        outstanding, 10,
        "never more than the limit across the switch"
    );
    let db_engine = DatabaseEngine::new(db.store.clone());
    let in_db = db_engine
        .lease_tokens(&b, 0, 0, now)
        .await
        .expect("database");
    assert_eq!(in_db.remaining, 0, "the fallback counted in the database");
    // Giving back during the outage goes to the database too.
    e.return_tokens(&b, 2, now).await.expect("return");
    outstanding -= 2;
    outstanding += drain(&e, &b, now).await;
    assert_eq!(outstanding, 10);

    // Redis comes back empty (no persistence): the node goes back to it, carrying the
    // bucket over as it last saw it in the database (exhausted), not full.
    let redis = OwnRedis::start(&bin, port).await;
    until_back_on_redis(&e, &b, now).await;
    let mut c = raw(&own_url(port)).await.expect("own redis");
    assert_eq!(stored(&mut c, &b).await.map(|s| s.micro), Some(0));
    // Now it counts in Redis: what is given back is there, and the database is left alone.
    e.return_tokens(&b, 3, now).await.expect("return");
    outstanding -= 3;
    assert_eq!(stored(&mut c, &b).await.map(|s| s.micro), Some(3 * MICRO));
    outstanding += drain(&e, &b, now).await;
    assert_eq!(outstanding, 10);
    let in_db = db_engine
        .lease_tokens(&b, 0, 0, now)
        .await
        .expect("database");
    assert_eq!(in_db.remaining, 0);
    assert!(!e.degraded());
    drop(redis);
}

#[tokio::test]
async fn a_node_starts_while_redis_is_down_and_moves_to_it_when_it_answers() {
    let test = "a_node_starts_while_redis_is_down_and_moves_to_it_when_it_answers";
    let Some((bin, db)) = outage_needs(test).await else {
        return;
    };
    // A URL that is not one fails at once.
    for bad in [
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:6379/notadb",
        "redis://:hunter2@[::1",
    ] {
        let err = RedisEngine::connect(bad, db.store.clone())
            .await
            .err()
            .unwrap_or_else(|| panic!("{bad} was accepted"));
        assert!(err.0.contains("Redis URL"), "{bad}: {}", err.0);
        assert!(!err.0.contains("hunter2"), "{}", err.0);
    }

    let port = free_port();
    let e = RedisEngine::connect_with_timeout(&own_url(port), db.store.clone(), PATIENT)
        .await
        .expect("a Redis that does not answer yet is no error");
    assert!(e.degraded());
    assert!(e.ping().await.is_err());
    let now = now_ms();
    let b = spec(5, 3_600_000);
    assert_eq!(
        e.lease_tokens(&b, 2, 2, now).await.expect("lease").granted,
        2
    );

    let _redis = OwnRedis::start(&bin, port).await;
    e.ping().await.expect("ping");
    assert!(!e.degraded());
    let g = e.lease_tokens(&b, 1, 1, now).await.expect("lease");
    assert_eq!((g.granted, g.remaining), (1, 2));
    let mut c = raw(&own_url(port)).await.expect("own redis");
    assert_eq!(stored(&mut c, &b).await.map(|s| s.micro), Some(2 * MICRO));
}
