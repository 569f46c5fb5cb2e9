//! The recent verifications a node holds in memory reach the database when it stops
//! gracefully (SIGTERM), with the client address the verification judged and the
//! request's tags, like its usage counts.

use crate::support::{client, Env};
use serde_json::{json, Value};

async fn recent_verifications_survive_a_graceful_stop(env: Env) {
    let server = env
        .serve(&[
            (
                "KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD",
                "recent verifications password",
            ),
            ("KEYHAVEN_TRUSTED_PROXIES", "127.0.0.1/32"),
        ])
        .await;
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
        .get(format!("{}/v1/me", server.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org = me["organization_id"].as_str().unwrap().to_string();
    let created: Value = http
        .post(format!("{}/v1/organizations/{org}/api-keys", server.base))
        .bearer_auth(&admin)
        .json(&json!({"name": "orders"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    for (forwarded, tags) in [
        ("198.51.100.23", json!(["path:/orders"])),
        ("198.51.100.24", json!([])),
        ("198.51.100.25", json!(["path:/orders", "region:eu"])),
    ] {
        let v: Value = http
            .post(format!("{}/v1/keys/verify", server.base))
            .header("x-forwarded-for", forwarded)
            .json(&json!({"key": key, "tags": tags}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["code"], "VALID", "{v}");
    }
    let stopped = server.stop().await;
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let kept = env
        .sql_text(&format!(
            "SELECT CAST(COUNT(*) AS TEXT) FROM recent_verifications WHERE key_id = '{id}' AND code = 'VALID'"
        ))
        .await;
    assert_eq!(kept, "3", "no recent verification lost on SIGTERM");
    let newest = env
        .sql_text(&format!(
            "SELECT ip || ' ' || tags FROM recent_verifications WHERE key_id = '{id}' ORDER BY at DESC, id DESC LIMIT 1"
        ))
        .await;
    assert_eq!(newest, r#"198.51.100.25 ["path:/orders","region:eu"]"#);
}

on_both_backends!(recent_verifications_survive_a_graceful_stop);
