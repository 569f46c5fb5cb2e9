//! Audit sinks against real receivers, on SQLite and PostgreSQL: an HTTP receiver that
//! checks Standard Webhooks signatures and chain continuity, a syslog receiver (TCP with
//! octet counting and UDP) that parses RFC 5424, the file sink with rotation, backoff
//! after failures, disabled sinks, batches of at most 1,000, and the API's validation.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::{super_admin, Client, TestApp};
use axum::http::HeaderMap;
use base64::Engine;
use chrono::Duration;
use hmac::{Hmac, Mac};
use keyhaven_core::audit_export::entry_from_json;
use keyhaven_service::jobs::audit_sinks::{deliver_due, SinkRunner};
use keyhaven_service::jobs::webhooks;
use serde_json::{json, Value};
use sha2::Sha256;

#[derive(Clone, Debug)]
struct Batch {
    id: String,
    timestamp: String,
    signatures: Vec<String>,
    body: String,
    answered: u16,
}

struct HttpReceiver {
    url: String,
    got: Arc<Mutex<Vec<Batch>>>,
    answer: Arc<AtomicU16>,
}

async fn http_receiver() -> HttpReceiver {
    let got = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(AtomicU16::new(200));
    let (g, a) = (got.clone(), answer.clone());
    let app = axum::Router::new().route(
        "/audit",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (g, a) = (g.clone(), a.clone());
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let answered = a.load(Ordering::SeqCst);
                g.lock().unwrap().push(Batch {
                    id: h("webhook-id"),
                    timestamp: h("webhook-timestamp"),
                    signatures: h("webhook-signature")
                        .split(' ')
                        .map(str::to_string)
                        .collect(),
                    body,
                    answered,
                });
                axum::http::StatusCode::from_u16(answered).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    HttpReceiver {
        url: format!("http://{addr}/audit"),
        got,
        answer,
    }
}

fn signed_with(b: &Batch, secret: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", b.id, b.timestamp, b.body).as_bytes());
    let expect = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    b.signatures.contains(&expect)
}

/// Checks that `events` (in arrival order, duplicates allowed when `dups`) are the chain
/// from entry 1 on, unbroken: every hash recomputes, every link holds, nothing skipped.
/// Returns the last seq.
#[track_caller]
fn check_chain(events: &[Value], dups: bool) -> i64 {
    let mut last_seq = 0;
    let mut last_hash = keyhaven_core::audit::GENESIS_HASH.to_string();
    for v in events {
        let e = entry_from_json(v).unwrap_or_else(|err| panic!("{err}: {v}"));
        assert_eq!(e.recompute_hash(), e.hash, "hash of entry {}", e.seq);
        if e.seq <= last_seq {
            assert!(dups, "entry {} delivered twice", e.seq);
            continue;
        }
        assert_eq!(e.seq, last_seq + 1, "entry {} skipped", last_seq + 1);
        assert_eq!(e.prev_hash, last_hash, "link of entry {}", e.seq);
        last_seq = e.seq;
        last_hash = e.hash;
    }
    last_seq
}

fn runner(app: &TestApp) -> SinkRunner {
    SinkRunner::new(webhooks::client(), app.state.config.data_dir.join("audit"))
}

async fn http_sink_delivers_signed_batches_in_chain_order(app: TestApp) {
    let sa = super_admin(&app).await;
    let rx = http_receiver().await;
    let runner = runner(&app);
    for i in 0..3 {
        sa.create_key(json!({ "name": format!("k{i}") })).await;
    }
    let s = sa
        .post(
            "/audit-sinks",
            json!({"kind": "http", "url": rx.url, "description": "siem"}),
        )
        .await
        .ok(201);
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["kind"], "http");
    assert_eq!(s["url"], rx.url.as_str());
    assert_eq!(s["target"], rx.url.as_str());
    assert_eq!(s["enabled"], true);
    assert_eq!(s["cursor"], Value::Null);
    assert!(s["lag"].as_i64().unwrap() >= 5, "{s}");
    for f in [
        "host",
        "port",
        "transport",
        "path",
        "max_bytes",
        "max_files",
    ] {
        assert_eq!(s[f], Value::Null, "{f}");
    }
    let secret = sa.post("/shared-secret/reveal", json!({})).await.ok(200)["secret"]
        .as_str()
        .unwrap()
        .to_string();

    let n = deliver_due(&app.state.service, &runner).await.unwrap();
    assert!(n >= 5, "{n}");
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one batch");
    assert!(
        signed_with(&got[0], &secret),
        "signed with the shared secret"
    );
    let events: Vec<Value> = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(check_chain(&events, false), events.len() as i64);
    assert!(got[0].id.starts_with(&format!("{id}-1-")), "{}", got[0].id);
    let s = sa.get(&format!("/audit-sinks/{id}")).await.ok(200);
    let last = events.last().unwrap();
    assert_eq!(s["cursor"]["seq"], last["seq"]);
    assert_eq!(s["cursor"]["hash"], last["hash"]);
    // The deliveries' own audit entries (reveal, view) came after: lag counts them.
    assert!(s["last_delivered_at"].is_string());
    assert_eq!(s["failures"], 0);
    assert_eq!(s["last_error"], Value::Null);

    // The receiver fails: the cursor stays, the error shows, the batch waits for backoff.
    rx.answer.store(500, Ordering::SeqCst);
    sa.create_key(json!({"name": "during-outage"})).await;
    deliver_due(&app.state.service, &runner).await.unwrap();
    let s = sa.get(&format!("/audit-sinks/{id}")).await.ok(200);
    assert_eq!(s["cursor"]["seq"], last["seq"], "{s}");
    assert_eq!(s["last_error"], "the receiver answered 500");
    assert!(s["last_error_at"].is_string() && s["next_attempt_at"].is_string());
    assert_eq!(s["failures"], 1);
    assert!(s["lag"].as_i64().unwrap() > 0);
    let tries = rx.got.lock().unwrap().len();
    deliver_due(&app.state.service, &runner).await.unwrap();
    assert_eq!(
        rx.got.lock().unwrap().len(),
        tries,
        "no attempt before the backoff"
    );

    rx.answer.store(200, Ordering::SeqCst);
    app.clock.advance(Duration::seconds(31));
    deliver_due(&app.state.service, &runner).await.unwrap();
    let s = sa.get(&format!("/audit-sinks/{id}")).await.ok(200);
    assert_eq!(s["failures"], 0, "{s}");
    assert_eq!(s["next_attempt_at"], Value::Null);
    assert_eq!(
        s["last_error"], "the receiver answered 500",
        "the last error stays"
    );

    // Disabled: nothing is sent and the lag grows; enabled again, it catches up.
    sa.patch(&format!("/audit-sinks/{id}"), json!({"enabled": false}))
        .await
        .ok(200);
    for i in 0..3 {
        sa.create_key(json!({ "name": format!("off{i}") })).await;
    }
    let before = rx.got.lock().unwrap().len();
    deliver_due(&app.state.service, &runner).await.unwrap();
    assert_eq!(
        rx.got.lock().unwrap().len(),
        before,
        "a disabled sink delivers nothing"
    );
    let s = sa.get(&format!("/audit-sinks/{id}")).await.ok(200);
    assert!(s["lag"].as_i64().unwrap() >= 3, "{s}");
    sa.patch(&format!("/audit-sinks/{id}"), json!({"enabled": true}))
        .await
        .ok(200);
    deliver_due(&app.state.service, &runner).await.unwrap();

    // Everything accepted is the chain, unbroken, each entry once; the failed batch was
    // sent again in full (at least once).
    let got = rx.got.lock().unwrap().clone();
    let accepted: Vec<Value> = got
        .iter()
        .filter(|b| b.answered == 200)
        .flat_map(|b| serde_json::from_str::<Vec<Value>>(&b.body).unwrap())
        .collect();
    let delivered = check_chain(&accepted, false);
    let all: Vec<Value> = got
        .iter()
        .flat_map(|b| serde_json::from_str::<Vec<Value>>(&b.body).unwrap())
        .collect();
    check_chain(&all, true);
    for b in &got {
        assert!(signed_with(b, &secret));
    }
    let s = sa.get(&format!("/audit-sinks/{id}")).await.ok(200);
    assert_eq!(s["cursor"]["seq"].as_i64(), Some(delivered));
    // Only the entries recorded since the last delivery (the PATCH and these reads) lag.
    assert!(s["lag"].as_i64().unwrap() <= 3, "{s}");

    // The sink's own changes are audited.
    let actions: Vec<String> = sa
        .all(&format!("/audit-events?target_id={id}"))
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        [
            "audit_sink.update",
            "audit_sink.update",
            "audit_sink.create"
        ]
    );
}
both_backends!(
    http_sink_delivers_signed_batches_in_chain_order,
    crate::support::local_receivers
);

async fn http_batches_hold_at_most_a_thousand(app: TestApp) {
    let sa = super_admin(&app).await;
    let rx = http_receiver().await;
    // 1,100 entries written straight into the chain.
    let org = keyhaven_core::id::Id::from_trusted(app.org_id.clone());
    let mut tx = app.db.store.begin().await.unwrap();
    let mut rng = rand::thread_rng();
    for i in 0..1100 {
        let now = keyhaven_core::time::Clock::now(&*app.clock);
        tx.append_audit(
            &org,
            keyhaven_core::id::Id::generate(now.timestamp_millis(), &mut rng),
            now,
            keyhaven_core::audit::AuditDraft {
                actor: keyhaven_core::principal::Principal::system("load"),
                action: "api_key.view".into(),
                target: None,
                outcome: keyhaven_core::audit::Outcome::Success,
                ip: None,
                user_agent: None,
                request_id: None,
                changes: json!({ "i": i }),
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    sa.post("/audit-sinks", json!({"kind": "http", "url": rx.url}))
        .await
        .ok(201);
    deliver_due(&app.state.service, &runner(&app))
        .await
        .unwrap();
    let got = rx.got.lock().unwrap().clone();
    let sizes: Vec<usize> = got
        .iter()
        .map(|b| serde_json::from_str::<Vec<Value>>(&b.body).unwrap().len())
        .collect();
    assert_eq!(sizes[0], 1000, "{sizes:?}");
    assert!(sizes.iter().all(|n| *n <= 1000), "{sizes:?}");
    let all: Vec<Value> = got
        .iter()
        .flat_map(|b| serde_json::from_str::<Vec<Value>>(&b.body).unwrap())
        .collect();
    assert!(check_chain(&all, false) > 1100);
}
both_backends!(
    http_batches_hold_at_most_a_thousand,
    crate::support::local_receivers
);

/// One RFC 5424 message: (PRI, TIMESTAMP, HOSTNAME, APP-NAME, PROCID, MSGID, SD, MSG).
fn parse_5424(m: &str) -> (u16, String, String, String, String, String, String, String) {
    let (pri, rest) = m
        .strip_prefix('<')
        .and_then(|r| r.split_once('>'))
        .unwrap_or_else(|| panic!("no PRI: {m}"));
    let rest = rest
        .strip_prefix("1 ")
        .unwrap_or_else(|| panic!("not version 1: {m}"));
    let f: Vec<&str> = rest.splitn(7, ' ').collect();
    assert_eq!(f.len(), 7, "{m}");
    let msg = f[6]
        .strip_prefix("\u{feff}")
        .unwrap_or_else(|| panic!("MSG starts with a BOM: {m}"));
    (
        pri.parse().unwrap(),
        f[0].into(),
        f[1].into(),
        f[2].into(),
        f[3].into(),
        f[4].into(),
        f[5].into(),
        msg.into(),
    )
}

/// Parses octet-counted frames (RFC 6587 §3.4.1) from a TCP stream's bytes.
fn frames(mut b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let sp = b.iter().position(|c| *c == b' ').expect("MSG-LEN SP");
        let len: usize = std::str::from_utf8(&b[..sp]).unwrap().parse().unwrap();
        let msg = &b[sp + 1..sp + 1 + len];
        out.push(String::from_utf8(msg.to_vec()).unwrap());
        b = &b[sp + 1 + len..];
    }
    out
}

fn check_syslog(messages: &[String]) -> Vec<Value> {
    let mut events = Vec::new();
    for m in messages {
        let (pri, ts, host, app, procid, msgid, sd, msg) = parse_5424(m);
        let v: Value = serde_json::from_str(&msg).unwrap();
        let sev = match v["outcome"].as_str().unwrap() {
            "success" => 6,
            "denied" => 4,
            _ => 3,
        };
        assert_eq!(pri, 13 * 8 + sev, "facility log audit: {m}");
        assert_eq!(ts, v["at"].as_str().unwrap());
        assert!(!host.is_empty() && !host.contains(' '));
        assert_eq!((app.as_str(), procid.as_str()), ("keyhaven", "-"));
        assert_eq!(msgid, v["action"].as_str().unwrap());
        assert_eq!(sd, "-");
        events.push(v);
    }
    events
}

async fn syslog_sinks_send_rfc5424_over_tcp_and_udp(app: TestApp) {
    let sa = super_admin(&app).await;
    let runner = runner(&app);
    // TCP: one connection per batch, octet-counted frames.
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let tcp_got = Arc::new(Mutex::new(Vec::<String>::new()));
    let g = tcp_got.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = tcp.accept().await.unwrap();
            let g = g.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).await.unwrap();
                g.lock().unwrap().extend(frames(&buf));
            });
        }
    });
    // UDP: one datagram per message.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let udp_got = Arc::new(Mutex::new(Vec::<String>::new()));
    let g = udp_got.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, _) = udp.recv_from(&mut buf).await.unwrap();
            g.lock()
                .unwrap()
                .push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
    });
    let t = sa
        .post(
            "/audit-sinks",
            json!({"kind": "syslog", "host": "127.0.0.1", "port": tcp_port}),
        )
        .await
        .ok(201);
    assert_eq!(t["transport"], "tcp", "TCP is the default");
    assert_eq!(t["target"], format!("tcp://127.0.0.1:{tcp_port}"));
    let u = sa
        .post(
            "/audit-sinks",
            json!({"kind": "syslog", "host": "127.0.0.1", "port": udp_port, "transport": "udp", "start": "now"}),
        )
        .await
        .ok(201);
    // A denied request puts a warning in the log.
    let ro = app.admin_key(&["read-only"]).await;
    Client::bearer(&app, &ro).await.get("/users").await.err(403);
    deliver_due(&app.state.service, &runner).await.unwrap();

    // Waits until the message of entry `seq` has arrived.
    let wait = |got: Arc<Mutex<Vec<String>>>, seq: i64| async move {
        for _ in 0..200 {
            let has = got.lock().unwrap().iter().any(|m| {
                let (.., msg) = parse_5424(m);
                serde_json::from_str::<Value>(&msg).unwrap()["seq"].as_i64() == Some(seq)
            });
            if has {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        got.lock().unwrap().clone()
    };
    let t = sa
        .get(&format!("/audit-sinks/{}", t["id"].as_str().unwrap()))
        .await
        .ok(200);
    let delivered = t["cursor"]["seq"].as_i64().unwrap();
    let tcp_msgs = wait(tcp_got, delivered).await;
    assert_eq!(tcp_msgs.len() as i64, delivered);
    let events = check_syslog(&tcp_msgs);
    assert_eq!(check_chain(&events, false), delivered);
    assert!(events.iter().any(|e| e["outcome"] == "denied"));

    // The UDP sink started "now": its first message is its own creation.
    let u = sa
        .get(&format!("/audit-sinks/{}", u["id"].as_str().unwrap()))
        .await
        .ok(200);
    let udp_msgs = wait(udp_got, u["cursor"]["seq"].as_i64().unwrap()).await;
    let events = check_syslog(&udp_msgs);
    assert_eq!(events[0]["action"], "audit_sink.create");
    assert_eq!(events[0]["target"]["id"], u["id"]);
    assert_eq!(
        events.last().unwrap()["seq"].as_i64(),
        u["cursor"]["seq"].as_i64()
    );
    for w in events.windows(2) {
        assert_eq!(w[1]["prev_hash"], w[0]["hash"]);
    }
}
both_backends!(
    syslog_sinks_send_rfc5424_over_tcp_and_udp,
    crate::support::local_receivers
);

async fn file_sink_appends_json_lines_and_rotates(app: TestApp) {
    let sa = super_admin(&app).await;
    let s = sa
        .post(
            "/audit-sinks",
            json!({"kind": "file", "path": "siem/audit.jsonl", "max_bytes": 4096, "max_files": 3}),
        )
        .await
        .ok(201);
    assert_eq!(
        (
            s["path"].as_str(),
            s["max_bytes"].as_i64(),
            s["max_files"].as_i64()
        ),
        (Some("siem/audit.jsonl"), Some(4096), Some(3))
    );
    for i in 0..12 {
        sa.create_key(json!({ "name": format!("f{i}") })).await;
    }
    deliver_due(&app.state.service, &runner(&app))
        .await
        .unwrap();
    let file = app
        .state
        .config
        .data_dir
        .join("audit")
        .join(&app.org_id)
        .join("siem/audit.jsonl");
    let mut events = Vec::new();
    for p in (1..=3)
        .rev()
        .map(|n| file.with_extension(format!("jsonl.{n}")))
    {
        if let Ok(t) = std::fs::read_to_string(&p) {
            assert!(t.len() <= 4096, "{} is {} bytes", p.display(), t.len());
            events.extend(t.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
        }
    }
    let current = std::fs::read_to_string(&file).unwrap();
    assert!(current.len() <= 4096);
    events.extend(
        current
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()),
    );
    assert!(file.with_extension("jsonl.1").exists(), "rotated at 4 KiB");
    // Rotation kept the last files only; what is kept is an unbroken piece of the chain.
    let first = events[0]["seq"].as_i64().unwrap();
    for w in events.windows(2) {
        assert_eq!(
            w[1]["seq"].as_i64().unwrap(),
            w[0]["seq"].as_i64().unwrap() + 1
        );
        assert_eq!(w[1]["prev_hash"], w[0]["hash"]);
    }
    let s = sa
        .get(&format!("/audit-sinks/{}", s["id"].as_str().unwrap()))
        .await
        .ok(200);
    assert_eq!(events.last().unwrap()["seq"], s["cursor"]["seq"]);
    assert!(first >= 1);
}
both_backends!(file_sink_appends_json_lines_and_rotates);

async fn audit_sink_requests_are_validated(app: TestApp) {
    let sa = super_admin(&app).await;
    let bad = |body: Value, param: &'static str| {
        let sa = sa.clone();
        async move {
            sa.post("/audit-sinks", body).await.bad(param);
        }
    };
    bad(json!({"kind": "kafka"}), "kind").await;
    bad(
        json!({"kind": "kafka", "url": "https://x.example.com"}),
        "kind",
    )
    .await;
    bad(json!({"kind": "http"}), "url").await;
    bad(json!({"kind": "http", "url": "ftp://x.example.com"}), "url").await;
    // Internal addresses are refused unless the operator allowed them.
    bad(
        json!({"kind": "http", "url": "http://127.0.0.1:9/x"}),
        "url",
    )
    .await;
    bad(
        json!({"kind": "http", "url": "http://169.254.169.254/"}),
        "url",
    )
    .await;
    bad(json!({"kind": "syslog", "host": "10.0.0.1"}), "host").await;
    bad(json!({"kind": "syslog", "host": "localhost"}), "host").await;
    bad(json!({"kind": "syslog", "host": "a b"}), "host").await;
    bad(
        json!({"kind": "syslog", "host": "8.8.8.8", "port": 0}),
        "port",
    )
    .await;
    bad(
        json!({"kind": "syslog", "host": "8.8.8.8", "port": 70000}),
        "port",
    )
    .await;
    bad(
        json!({"kind": "syslog", "host": "8.8.8.8", "transport": "tls"}),
        "transport",
    )
    .await;
    bad(json!({"kind": "file", "path": "../escape.jsonl"}), "path").await;
    bad(json!({"kind": "file", "path": "/etc/passwd"}), "path").await;
    bad(json!({"kind": "file", "path": "a/../../b"}), "path").await;
    bad(
        json!({"kind": "file", "path": "ok.jsonl", "max_bytes": 10}),
        "max_bytes",
    )
    .await;
    bad(
        json!({"kind": "file", "path": "ok.jsonl", "max_files": 0}),
        "max_files",
    )
    .await;
    bad(
        json!({"kind": "file", "path": "ok.jsonl", "url": "https://x.example.com"}),
        "url",
    )
    .await;
    bad(
        json!({"kind": "file", "path": "ok.jsonl", "start": "yesterday"}),
        "start",
    )
    .await;
    let e = sa
        .post(
            "/audit-sinks",
            json!({"kind": "file", "path": "a", "colour": "red"}),
        )
        .await
        .err(400);
    assert_eq!(e["code"], "unknown_field");
    sa.post("/audit-sinks", json!({"kind": 5})).await.err(400);

    let s = sa
        .post(
            "/audit-sinks",
            json!({"kind": "file", "path": "a.jsonl", "start": "now"}),
        )
        .await
        .ok(201);
    let id = s["id"].as_str().unwrap();
    assert_eq!(
        s["lag"], 1,
        "starting now: only its own creation entry is due"
    );
    sa.patch(
        &format!("/audit-sinks/{id}"),
        json!({"url": "https://x.example.com"}),
    )
    .await
    .bad("url");
    sa.patch(&format!("/audit-sinks/{id}"), json!({"kind": "http"}))
        .await
        .err(400);
    sa.patch(&format!("/audit-sinks/{id}"), json!({"path": "../x"}))
        .await
        .bad("path");
    let p = sa
        .patch(
            &format!("/audit-sinks/{id}"),
            json!({"path": "b.jsonl", "max_files": 2}),
        )
        .await
        .ok(200);
    assert_eq!(
        (p["path"].as_str(), p["max_files"].as_i64()),
        (Some("b.jsonl"), Some(2))
    );

    // Unknown ids, other organizations' ids and malformed ids are 404.
    let fake = "01jzzzzzzzzzzzzzzzzzzzzzzz";
    sa.get(&format!("/audit-sinks/{fake}")).await.err(404);
    sa.get("/audit-sinks/not-an-id").await.err(404);
    sa.patch(&format!("/audit-sinks/{fake}"), json!({}))
        .await
        .err(404);
    sa.delete(&format!("/audit-sinks/{fake}")).await.err(404);
    let list = sa.get("/audit-sinks?limit=1").await.ok(200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    sa.get("/audit-sinks?limit=0").await.bad("limit");
    sa.get("/audit-sinks?colour=red").await.err(400);

    // audit.manage is super-admin's only: admin and read-only are refused (and audited).
    for role in ["admin", "read-only"] {
        let key = app.admin_key(&[role]).await;
        let c = Client::bearer(&app, &key).await;
        let e = c.get("/audit-sinks").await.err(403);
        assert!(
            e["message"].as_str().unwrap().contains("audit.manage"),
            "{e}"
        );
        c.post("/audit-sinks", json!({"kind": "file", "path": "x"}))
            .await
            .err(403);
        c.delete(&format!("/audit-sinks/{id}")).await.err(403);
    }
    let denied = sa
        .all("/audit-events?action=audit_sink.list&outcome=denied")
        .await;
    assert_eq!(denied.len(), 2);

    let res = sa.delete(&format!("/audit-sinks/{id}")).await;
    assert_eq!(res.status, 204);
    sa.assert_audited(&res, &sa, "audit_sink.delete", id).await;
    sa.get(&format!("/audit-sinks/{id}")).await.err(404);

    // In the OpenAPI document, with its constraints.
    let doc: Value = app
        .http
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/organizations/{org}/audit-sinks/{id}"]["patch"].is_object());
    let create = &doc["components"]["schemas"]["CreateAuditSink"]["properties"];
    assert_eq!(create["port"]["maximum"], 65535);
    assert_eq!(create["max_files"]["minimum"], 1);
}
both_backends!(audit_sink_requests_are_validated);
