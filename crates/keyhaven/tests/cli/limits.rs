//! Bounds under hostile load, measured on a real `keyhaven serve` process: concurrent
//! sign-ins for unknown emails (each one an Argon2id check of 19 MiB) keep the server's
//! peak memory small, answering those past the hashing queue with 503 and `Retry-After`.

use std::net::{IpAddr, Ipv4Addr};

use crate::support::{client, Env, GOOD_PASSWORD};
use serde_json::{json, Value};

/// The server's peak resident memory so far, in KiB (`VmHWM` in `/proc/<pid>/status`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

async fn concurrent_unknown_email_sign_ins_stay_under_300_mb(env: Env) {
    let server = env
        .serve(&[("KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD", GOOD_PASSWORD)])
        .await;
    let pid = server.pid().expect("server pid");
    let before = peak_rss_kib(pid);
    // 64 clients at once, each from its own loopback address, so the per-address
    // failure limit plays no part: what bounds memory here is the hashing bound.
    let attempts: Vec<_> = (0..64u8)
        .map(|i| {
            let http = reqwest::Client::builder()
                .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 2 + i)))
                .build()
                .unwrap();
            let url = format!("{}/v1/session", server.base);
            tokio::spawn(async move {
                let res = http
                    .post(url)
                    .json(&json!({
                        "email": format!("nobody-{i}@example.com"),
                        "password": "not anybody's password",
                    }))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                let retry = res.headers().get("retry-after").is_some();
                let body: Value = res.json().await.unwrap();
                (status, retry, body)
            })
        })
        .collect();
    let mut checked = 0;
    let mut busy = 0;
    for a in attempts {
        let (status, retry, body) = a.await.unwrap();
        match status {
            401 => checked += 1,
            503 => {
                assert!(retry, "503 says when to come back: {body}");
                assert_eq!(body["error"]["type"], "unavailable", "{body}");
                busy += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let peak = peak_rss_kib(pid);
    eprintln!(
        "{checked} checked, {busy} refused as busy; peak RSS {before} KiB before, {peak} KiB after"
    );
    assert!(checked > 0, "some passwords were checked");
    assert!(
        peak < 300 * 1024,
        "peak RSS {} MiB after 64 concurrent sign-ins",
        peak / 1024
    );
    // The server still signs its admin in.
    let res = client()
        .post(format!("{}/v1/session", server.base))
        .json(&json!({"email": "admin@localhost", "password": GOOD_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    server.stop().await;
}

on_both_backends!(concurrent_unknown_email_sign_ins_stay_under_300_mb);
