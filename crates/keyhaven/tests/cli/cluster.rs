//! Usage control across real `keyhaven serve` processes on one PostgreSQL database
//! (USAGE-CONTROL.md, "What a limit promises"): a limit spread across nodes grants
//! exactly its limit, credits spent from three nodes at once are spent exactly, a node
//! killed mid-lease loses at most its lease and the cluster never grants more than the
//! limit. No timed assertions: every check counts answers.

use crate::support::{client, Env, Server};
use serde_json::{json, Value};

const PASSWORD: [(&str, &str); 1] = [("KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD", "cluster password")];

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

async fn nodes(env: &Env, n: usize) -> Vec<Server> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(env.serve(&PASSWORD).await);
    }
    out
}

async fn a_limit_spread_across_nodes_grants_exactly_its_limit(env: Env) {
    let mut admin = None;
    for count in [2, 3] {
        let servers = nodes(&env, count).await;
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

async fn credits_spent_from_three_nodes_are_spent_exactly(env: Env) {
    let servers = nodes(&env, 3).await;
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

async fn a_killed_node_loses_at_most_its_lease(env: Env) {
    let servers = nodes(&env, 2).await;
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

/// Generates a PostgreSQL test for each `async fn name(env: Env)` (several nodes need a
/// shared database; SQLite serves one node).
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
                        super::$name(env).await;
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
