//! Usage control across real `keyhaven serve` processes on one PostgreSQL database
//! (USAGE-CONTROL.md, "What a limit promises"): a limit spread across nodes grants
//! exactly its limit, credits spent from three nodes at once are spent exactly, a node
//! killed mid-lease loses at most its lease and the cluster never grants more than the
//! limit — each on PostgreSQL alone and on PostgreSQL + Redis (`KEYHAVEN_REDIS_URL`);
//! and a Redis outage in the middle of load falls back to PostgreSQL without granting
//! more than the limit. No timed assertions: every check counts answers.

use crate::support::{client, Env, Server};
use serde_json::{json, Value};

const PASSWORD: &str = "cluster password";

/// Where the nodes keep their buckets: PostgreSQL, or the Redis at this URL.
#[derive(Clone)]
pub struct Engine(Option<String>);

impl Engine {
    fn envs(&self) -> Vec<(&str, &str)> {
        let mut v = vec![("KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD", PASSWORD)];
        if let Some(url) = &self.0 {
            v.push(("KEYHAVEN_REDIS_URL", url.as_str()));
        }
        v
    }
}

/// The shared Redis (`KEYHAVEN_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`) with a
/// database number of its own, or `None` (skipped; under `CI=true` a failure) when it
/// does not answer `PING`.
pub async fn shared_redis(test: &str) -> Option<String> {
    let url = std::env::var("KEYHAVEN_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_string();
    if !redis_answers(&addr).await {
        keyhaven_store::testing::skip(
            "Redis",
            test,
            &format!("cannot reach {url}"),
            "start redis-server or set KEYHAVEN_TEST_REDIS_URL",
        );
        return None;
    }
    Some(format!("redis://{addr}/14"))
}

async fn redis_answers(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(Ok(mut s)) = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut buf)).await,
        Ok(Ok(n)) if buf[..n].starts_with(b"+PONG")
    )
}

async fn admin_key(env: &Env) -> String {
    env.run(&[
        "admin",
        "create-key",
        "--name",
        "boot",
        "--role",
        "super-admin",
    ])
    .await
    .ok()
    .trim()
    .to_string()
}

/// Creates a key through `node` and returns (id, secret).
async fn create_key(
    http: &reqwest::Client,
    node: &Server,
    admin: &str,
    body: Value,
) -> (String, String) {
    let me: Value = http
        .get(format!("{}/v1/me", node.base))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org = me["organization_id"].as_str().unwrap().to_string();
    let res = http
        .post(format!("{}/v1/organizations/{org}/api-keys", node.base))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let k: Value = res.json().await.unwrap();
    (
        k["id"].as_str().unwrap().to_string(),
        k["key"].as_str().unwrap().to_string(),
    )
}

async fn code(http: &reqwest::Client, base: &str, key: &str) -> String {
    let v: Value = http
        .post(format!("{base}/v1/keys/verify"))
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["code"].as_str().unwrap().to_string()
}

/// Sends `n` verifications of `key`, `concurrency` at a time, spread round-robin over
/// `bases`; returns how many were VALID (every other answer must be `refused`).
async fn spread(bases: &[String], key: &str, n: usize, concurrency: usize, refused: &str) -> usize {
    let http = client();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, next, bases, key, refused) = (
            http.clone(),
            next.clone(),
            bases.to_vec(),
            key.to_string(),
            refused.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut valid = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return valid;
                }
                let got = code(&http, &bases[i % bases.len()], &key).await;
                if got == "VALID" {
                    valid += 1;
                } else {
                    assert_eq!(got, refused, "call {i}");
                }
            }
        }));
    }
    let mut valid = 0;
    for t in tasks {
        valid += t.await.unwrap();
    }
    valid
}

async fn balance(env: &Env, key_id: &str) -> i64 {
    env.sql_text(&format!(
        "SELECT CAST(remaining AS TEXT) FROM api_keys WHERE id = '{key_id}'"
    ))
    .await
    .parse()
    .unwrap()
}

async fn nodes(env: &Env, engine: &Engine, n: usize) -> Vec<Server> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(env.serve(&engine.envs()).await);
    }
    out
}

async fn a_limit_spread_across_nodes_grants_exactly_its_limit(env: Env, engine: Engine) {
    let mut admin = None;
    for count in [2, 3] {
        let servers = nodes(&env, &engine, count).await;
        let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
        if admin.is_none() {
            admin = Some(admin_key(&env).await);
        }
        let admin = admin.clone().unwrap_or_default();
        let http = client();
        let (_, key) = create_key(
            &http,
            &servers[0],
            &admin,
            json!({"name": format!("ten-a-minute-{count}"),
                   "ratelimit": {"limit": 10, "duration_ms": 60_000}}),
        )
        .await;
        let valid = spread(&bases, &key, 40, 8, "RATE_LIMITED").await;
        assert_eq!(
            valid, 10,
            "{count} nodes: the cluster grants the limit, not N × it"
        );
        for s in servers {
            assert!(s.stop().await.status.success());
        }
    }
}

async fn credits_spent_from_three_nodes_are_spent_exactly(env: Env, engine: Engine) {
    let servers = nodes(&env, &engine, 3).await;
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let admin = admin_key(&env).await;
    let http = client();
    let (id, key) = create_key(
        &http,
        &servers[0],
        &admin,
        json!({"name": "thousand", "credits": {"remaining": 1000}}),
    )
    .await;
    let valid = spread(&bases, &key, 1_300, 24, "USAGE_EXCEEDED").await;
    assert_eq!(valid, 1000, "exactly the balance, from three nodes at once");
    assert_eq!(balance(&env, &id).await, 0);
    // A graceful stop gives back what a node still holds: nothing is left to give here,
    // and nothing is created.
    for s in servers {
        assert!(s.stop().await.status.success());
    }
    assert_eq!(balance(&env, &id).await, 0);
}

async fn a_killed_node_loses_at_most_its_lease(env: Env, engine: Engine) {
    let servers = nodes(&env, &engine, 2).await;
    let admin = admin_key(&env).await;
    let http = client();
    let (id, key) = create_key(
        &http,
        &servers[0],
        &admin,
        json!({"name": "killed", "credits": {"remaining": 100_000},
               "ratelimits": [{"name": "hourly", "limit": 10, "duration_ms": 3_600_000}]}),
    )
    .await;
    let mut servers = servers.into_iter();
    let (a, b) = (servers.next().unwrap(), servers.next().unwrap());
    // Node A takes leases (credits in a batch, the small limit one token at a time) and
    // is killed without giving anything back.
    for _ in 0..3 {
        assert_eq!(code(&http, &a.base, &key).await, "VALID");
    }
    let held = balance(&env, &id).await;
    drop(a); // SIGKILL
    let lost_at_most = 1000 - 3 - held;
    assert!(
        lost_at_most <= keyhaven_service::meter::MAX_LEASE,
        "one lease: {lost_at_most}"
    );
    // Node B: the limit's remaining 7 tokens, never more; credits from what is left.
    let b_bases = [b.base.clone()];
    let valid = spread(&b_bases, &key, 20, 4, "RATE_LIMITED").await;
    assert_eq!(valid, 7, "never more than the limit across a crash");
    let left = balance(&env, &id).await;
    assert!(
        left <= held - 7,
        "B spent from the balance: {left} of {held}"
    );
    eprintln!(
        "killed node: {lost_at_most} credits lost with its lease (at most {} a lease)",
        keyhaven_service::meter::MAX_LEASE
    );
    assert!(b.stop().await.status.success());
    // B gave back its own lease on the way out; A's stays lost, never re-granted.
    let after = balance(&env, &id).await;
    assert_eq!(
        after,
        1000 - 3 - 7 - lost_at_most,
        "exactly A's lease is lost"
    );
}

/// A Redis outage in the middle of load: the node keeps answering (counting in
/// PostgreSQL, and saying so in its log), never grants more than the limit, and goes
/// back to Redis when it answers again. Its own `redis-server` on a free port, so the
/// shared one is never stopped.
async fn a_redis_outage_falls_back_to_postgres(env: Env, _: Engine) {
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        keyhaven_store::testing::skip(
            "Redis",
            "a_redis_outage_falls_back_to_postgres",
            "redis-server is not installed",
            "apt-get install redis-server",
        );
        return;
    }
    let port = crate::support::free_port();
    let start = || {
        std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server")
    };
    let mut redis = start();
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if redis_answers(&addr).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let engine = Engine(Some(format!("redis://{addr}/0")));
    let node = env.serve(&engine.envs()).await;
    let admin = admin_key(&env).await;
    let http = client();
    let (_, key) = create_key(
        &http,
        &node,
        &admin,
        json!({"name": "through-an-outage",
               "ratelimits": [{"name": "hourly", "limit": 10, "duration_ms": 3_600_000}]}),
    )
    .await;
    let (plain_id, plain) = create_key(&http, &node, &admin, json!({"name": "plain"})).await;
    let _ = plain_id;
    let base = [node.base.clone()];
    let mut valid = spread(&base, &key, 4, 2, "RATE_LIMITED").await;
    assert_eq!(valid, 4);
    let _ = redis.kill();
    let _ = redis.wait();
    // During the outage: limited calls are counted in PostgreSQL, plain keys unaffected.
    valid += spread(&base, &key, 4, 2, "RATE_LIMITED").await;
    assert_eq!(code(&http, &node.base, &plain).await, "VALID");
    assert_eq!(valid, 8, "counted through the outage");
    redis = start();
    for _ in 0..100 {
        if redis_answers(&addr).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await; // the retry back-off
    valid += spread(&base, &key, 10, 2, "RATE_LIMITED").await;
    assert_eq!(valid, 10, "never more than the limit, across both switches");
    let stopped = node.stop().await;
    let _ = redis.kill();
    let _ = redis.wait();
    assert!(stopped.status.success());
    assert!(
        stopped.stderr.to_lowercase().contains("redis"),
        "the fallback is logged: {}",
        stopped.stderr
    );
}

/// Generates, for each `async fn name(env: Env, engine: Engine)`, a test on PostgreSQL
/// alone and one on PostgreSQL + Redis (several nodes need a shared database; SQLite
/// serves one node).
macro_rules! on_postgres {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(env) = $crate::support::Env::new(
                        $crate::support::Kind::Postgres,
                        stringify!($name),
                    )
                    .await
                    {
                        super::$name(env, super::Engine(None)).await;
                    }
                }
            )*
        }
        mod postgres_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(redis) = super::shared_redis(stringify!($name)).await else {
                        return;
                    };
                    if let Some(env) = $crate::support::Env::new(
                        $crate::support::Kind::Postgres,
                        stringify!($name),
                    )
                    .await
                    {
                        super::$name(env, super::Engine(Some(redis))).await;
                    }
                }
            )*
        }
    };
}

on_postgres!(
    a_limit_spread_across_nodes_grants_exactly_its_limit,
    credits_spent_from_three_nodes_are_spent_exactly,
    a_killed_node_loses_at_most_its_lease,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_falls_back_to_postgres_in_the_middle_of_load() {
    if let Some(env) = crate::support::Env::new(
        crate::support::Kind::Postgres,
        "a_redis_outage_falls_back_to_postgres",
    )
    .await
    {
        a_redis_outage_falls_back_to_postgres(env, Engine(None)).await;
    }
}
