//! Audit streaming with real `keyhaven serve` processes: a file sink across a server
//! restart (no entry lost, none sent twice: the cursor is kept), two nodes on one
//! PostgreSQL delivering one HTTP sink without duplicates, and `audit export` checked
//! offline with `audit verify --file`, a tampered file failing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{client, Env, Server};
use keyhaven_core::audit_export::entry_from_json;
use serde_json::{json, Value};

const PASSWORD: &str = "audit stream password";

/// An admin key made with the CLI, and the organization's API path.
async fn admin(env: &Env, server: &Server) -> (String, String) {
    let key = env
        .run(&[
            "admin",
            "create-key",
            "--name",
            &format!("boot-{}", server.port),
            "--role",
            "super-admin",
        ])
        .await
        .ok()
        .trim()
        .to_string();
    let me: Value = client()
        .get(format!("{}/v1/me", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org = me["organization_id"].as_str().unwrap().to_string();
    (key, org)
}

async fn call(
    base: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut r = client()
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let res = r.send().await.unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// Polls the sink until it has no lag; returns it.
async fn caught_up(base: &str, key: &str, path: &str) -> Value {
    let start = Instant::now();
    loop {
        let s = call(base, key, reqwest::Method::GET, path, None).await;
        if s["lag"] == 0 && s["cursor"].is_object() {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the sink never caught up: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that `lines` are the chain from entry 1 to `last`, each entry once.
#[track_caller]
fn unbroken_once(events: &[Value], last: i64) {
    let mut prev = keyhaven_core::audit::GENESIS_HASH.to_string();
    for (i, v) in events.iter().enumerate() {
        let e = entry_from_json(v).unwrap();
        assert_eq!(e.seq, i as i64 + 1, "entry {} lost or sent twice", i + 1);
        assert_eq!(e.prev_hash, prev);
        assert_eq!(e.recompute_hash(), e.hash);
        prev = e.hash;
    }
    assert_eq!(events.len() as i64, last);
}

async fn file_sink_keeps_its_cursor_across_a_restart(env: Env) {
    let pw = [("KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD", PASSWORD)];
    let a = env.serve(&pw).await;
    let (key, org) = admin(&env, &a).await;
    let o = format!("/v1/organizations/{org}");
    let s = call(
        &a.base,
        &key,
        reqwest::Method::POST,
        &format!("{o}/audit-sinks"),
        Some(json!({"kind": "file", "path": "stream/audit.jsonl"})),
    )
    .await;
    let sink = format!("{o}/audit-sinks/{}", s["id"].as_str().unwrap());
    for i in 0..3 {
        call(
            &a.base,
            &key,
            reqwest::Method::POST,
            &format!("{o}/api-keys"),
            Some(json!({ "name": format!("before-{i}") })),
        )
        .await;
    }
    let before = caught_up(&a.base, &key, &sink).await;
    let stopped = a.stop().await;
    assert!(stopped.status.success(), "{}", stopped.stderr);

    // Entries recorded while no server runs (the CLI writes to the same chain).
    for i in 0..2 {
        env.run(&[
            "admin",
            "create-user",
            "--email",
            &format!("offline{i}@example.com"),
            "--password",
            PASSWORD,
        ])
        .await
        .ok();
    }
    let b = env.serve(&pw).await;
    let after = caught_up(&b.base, &key, &sink).await;
    assert!(
        after["cursor"]["seq"].as_i64() > before["cursor"]["seq"].as_i64(),
        "{before} {after}"
    );
    let file = env
        .data_dir
        .join("audit")
        .join(&org)
        .join("stream/audit.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    unbroken_once(&events, after["cursor"]["seq"].as_i64().unwrap());
    assert!(events
        .iter()
        .any(|e| e["changes"]["email"] == "offline1@example.com"));
    drop(b);

    // The export holds the same entries, and verifies offline; tampering is found.
    let out = env.run(&["audit", "export"]).await;
    let export = out.ok().to_string();
    let lines: Vec<&str> = export.lines().collect();
    assert_eq!(
        &lines[..events.len()],
        &text.lines().collect::<Vec<_>>()[..]
    );
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(
        last["chain_head"]["head_seq"],
        last["chain_head"]["last_seq"]
    );
    let dir = tempfile::tempdir().unwrap();
    let verify = |name: &str, body: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    // No database: run from an empty directory with no settings.
    let offline = |file: String| {
        let mut c = crate::support::keyhaven(dir.path());
        c.args(["audit", "verify", "--file", &file]);
        crate::support::run(c)
    };
    let good = offline(verify("good.jsonl", export.clone())).await;
    assert!(good.ok().contains(": ok ("), "{}", good.ok());
    let edited = export.replacen("offline1@example.com", "someone@example.com", 1);
    let line = export
        .lines()
        .position(|l| l.contains("offline1@example.com"))
        .unwrap()
        + 1;
    let out = offline(verify("edited.jsonl", edited)).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stdout.contains(&format!("BROKEN at line {line}:")),
        "{}",
        out.stdout
    );
    let mut cut: Vec<&str> = lines.clone();
    cut.remove(2);
    let out = offline(verify("cut.jsonl", cut.join("\n"))).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.contains("BROKEN at line 3:"), "{}", out.stdout);

    let csv = env.run(&["audit", "export", "--format", "csv"]).await;
    let csv = csv.ok().to_string();
    assert!(csv.starts_with("id,organization_id,seq,"));
    let out = offline(verify("good.csv", csv.clone())).await;
    assert!(out.ok().contains(": ok ("));
    let out = offline(verify(
        "bad.csv",
        csv.replacen("\"before-1\"", "\"before-9\"", 1),
    ))
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

on_both_backends!(file_sink_keeps_its_cursor_across_a_restart);

#[derive(Clone, Debug)]
struct Batch {
    id: String,
    events: Vec<Value>,
}

async fn two_nodes_deliver_one_sink_once(env: Env) {
    let got = Arc::new(Mutex::new(Vec::<Batch>::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/audit",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let g = g.clone();
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let events: Vec<Value> = serde_json::from_str(&body).unwrap();
                g.lock().unwrap().push(Batch { id, events });
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/audit", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let envs = [
        ("KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD", PASSWORD),
        ("KEYHAVEN_OUTBOUND_ALLOWED_CIDRS", "127.0.0.0/8"),
    ];
    let a = env.serve(&envs).await;
    let b = env.serve(&envs).await;
    let (key, org) = admin(&env, &a).await;
    let o = format!("/v1/organizations/{org}");
    let s = call(
        &a.base,
        &key,
        reqwest::Method::POST,
        &format!("{o}/audit-sinks"),
        Some(json!({"kind": "http", "url": url})),
    )
    .await;
    let sink = format!("{o}/audit-sinks/{}", s["id"].as_str().unwrap());
    // Entries appended through both nodes while both deliver.
    for i in 0..30 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        call(
            base,
            &key,
            reqwest::Method::POST,
            &format!("{o}/api-keys"),
            Some(json!({ "name": format!("k{i}") })),
        )
        .await;
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let done = caught_up(&b.base, &key, &sink).await;
    let batches = got.lock().unwrap().clone();
    let events: Vec<Value> = batches.iter().flat_map(|b| b.events.clone()).collect();
    // Each entry exactly once, in chain order (the receiver always accepted, so no
    // at-least-once retry was needed).
    unbroken_once(&events, done["cursor"]["seq"].as_i64().unwrap());
    let mut ids: Vec<&str> = batches.iter().map(|b| b.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), batches.len(), "a batch sent twice");
    assert!(batches.len() > 1, "delivered while entries were appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgres_deliver_one_sink_once() {
    if let Some(env) = crate::support::Env::new(
        crate::support::Kind::Postgres,
        "two_nodes_deliver_one_sink_once",
    )
    .await
    {
        two_nodes_deliver_one_sink_once(env).await;
    }
}
