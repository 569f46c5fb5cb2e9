//! Two `keyhaven serve` processes on one database: a change made through one node is
//! refused by the other within about a second, and a stopped node loses no usage count.

use std::time::{Duration, Instant};

use crate::support::{client, Env};
use serde_json::{json, Value};

async fn verify(http: &reqwest::Client, base: &str, key: &str) -> String {
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

/// Polls `base` until `key` answers `want`; returns how long it took.
async fn until_code(http: &reqwest::Client, base: &str, key: &str, want: &str) -> Duration {
    let start = Instant::now();
    loop {
        let got = verify(http, base, key).await;
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "node never answered {want} (still {got})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn changes_reach_the_other_node(env: Env) {
    let pw = [("KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD", "two nodes password")];
    let a = env.serve(&pw).await;
    let b = env.serve(&pw).await;
    let http = client();
    let boot = env
        .run(&[
            "admin",
            "create-key",
            "--name",
            "boot",
            "--role",
            "super-admin",
        ])
        .await;
    let admin = boot.ok().trim().to_string();
    let me: Value = http
        .get(format!("{}/v1/me", a.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org = format!(
        "/v1/organizations/{}",
        me["organization_id"].as_str().unwrap()
    );
    let post = |base: String, path: String, body: Value| {
        http.post(format!("{base}{org}{path}"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    let created: Value = post(a.base.clone(), "/api-keys".into(), json!({"name": "k"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    // Both nodes cache it.
    assert_eq!(verify(&http, &a.base, &key).await, "VALID");
    assert_eq!(verify(&http, &b.base, &key).await, "VALID");
    // Revoked through A: A refuses at once, B shortly after.
    post(a.base.clone(), format!("/api-keys/{id}/revoke"), json!({}))
        .await
        .unwrap();
    assert_eq!(verify(&http, &a.base, &key).await, "REVOKED");
    let took = until_code(&http, &b.base, &key, "REVOKED").await;
    eprintln!("revocation reached the other node after {took:?}");

    // A service account suspended through B stops its key on A.
    let sa: Value = post(
        b.base.clone(),
        "/service-accounts".into(),
        json!({"name": "svc"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let sa_id = sa["id"].as_str().unwrap().to_string();
    let sk: Value = post(
        b.base.clone(),
        "/api-keys".into(),
        json!({"name": "s", "owner": {"type": "service_account", "id": sa_id}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let sk = sk["key"].as_str().unwrap().to_string();
    assert_eq!(verify(&http, &a.base, &sk).await, "VALID");
    post(
        b.base.clone(),
        format!("/service-accounts/{sa_id}/suspend"),
        json!({}),
    )
    .await
    .unwrap();
    let took = until_code(&http, &a.base, &sk, "DISABLED").await;
    eprintln!("suspension reached the other node after {took:?}");

    // A key deleted through A is unknown to B.
    let k2: Value = post(a.base.clone(), "/api-keys".into(), json!({"name": "k2"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let k2_key = k2["key"].as_str().unwrap().to_string();
    assert_eq!(verify(&http, &b.base, &k2_key).await, "VALID");
    http.delete(format!(
        "{}{org}/api-keys/{}",
        a.base,
        k2["id"].as_str().unwrap()
    ))
    .bearer_auth(&admin)
    .send()
    .await
    .unwrap();
    until_code(&http, &b.base, &k2_key, "NOT_FOUND").await;

    // Regenerated through A (no grace): B refuses the old secret and accepts the new.
    let rk: Value = post(a.base.clone(), "/api-keys".into(), json!({"name": "rk"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let old_secret = rk["key"].as_str().unwrap().to_string();
    assert_eq!(verify(&http, &b.base, &old_secret).await, "VALID");
    let regen: Value = post(
        a.base.clone(),
        format!("/api-keys/{}/regenerate", rk["id"].as_str().unwrap()),
        json!({"expires_at": null}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let new_secret = regen["key"].as_str().unwrap().to_string();
    until_code(&http, &b.base, &old_secret, "NOT_FOUND").await;
    assert_eq!(verify(&http, &b.base, &new_secret).await, "VALID");

    // A role edited through B changes what a key cached on A may do.
    post(
        b.base.clone(),
        "/roles".into(),
        json!({"name": "billing", "permissions": ["billing:read"]}),
    )
    .await
    .unwrap();
    let bk: Value = post(
        a.base.clone(),
        "/api-keys".into(),
        json!({"name": "bk", "roles": ["billing"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let bk = bk["key"].as_str().unwrap().to_string();
    let needs_write = |base: String| {
        let http = http.clone();
        let bk = bk.clone();
        async move {
            let v: Value = http
                .post(format!("{base}/v1/keys/verify"))
                .json(&json!({"key": bk, "permissions": ["billing:write"]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["code"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(needs_write(a.base.clone()).await, "FORBIDDEN");
    http.patch(format!("{}{org}/roles/billing", b.base))
        .bearer_auth(&admin)
        .json(&json!({"permissions": ["billing:read", "billing:write"]}))
        .send()
        .await
        .unwrap();
    let start = Instant::now();
    while needs_write(a.base.clone()).await != "VALID" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "role edit never reached A"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "role edit reached the other node after {:?}",
        start.elapsed()
    );

    // A user deactivated through B: their personal key (made by the CLI) stops on A.
    let user: Value = post(
        b.base.clone(),
        "/users".into(),
        json!({"email": "dev@example.com", "display_name": "Dev",
               "password": "a long enough password", "roles": ["admin"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let pk = env
        .run(&[
            "admin",
            "create-key",
            "--name",
            "personal",
            "--user",
            "dev@example.com",
        ])
        .await;
    let pk = pk.ok().trim().to_string();
    assert_eq!(verify(&http, &a.base, &pk).await, "VALID");
    http.patch(format!(
        "{}{org}/users/{}",
        b.base,
        user["id"].as_str().unwrap()
    ))
    .bearer_auth(&admin)
    .json(&json!({"status": "inactive"}))
    .send()
    .await
    .unwrap();
    let took = until_code(&http, &a.base, &pk, "DISABLED").await;
    eprintln!("user deactivation reached the other node after {took:?}");

    // Usage counted on B survives B's graceful stop.
    let k3: Value = post(a.base.clone(), "/api-keys".into(), json!({"name": "k3"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let k3_key = k3["key"].as_str().unwrap().to_string();
    for _ in 0..7 {
        assert_eq!(verify(&http, &b.base, &k3_key).await, "VALID");
    }
    let stopped = b.stop().await;
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let counted = env
        .sql_text(&format!(
            "SELECT CAST(COALESCE(SUM(count), 0) AS TEXT) FROM analytics_hourly WHERE key_id = '{}' AND code = 'VALID' AND tag = ''",
            k3["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(counted, "7", "no count lost on SIGTERM");
    a.stop().await;
}

on_both_backends!(changes_reach_the_other_node);
