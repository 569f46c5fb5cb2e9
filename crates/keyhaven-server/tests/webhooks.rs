//! Webhooks against a local receiver that checks Standard Webhooks signatures, on
//! SQLite and PostgreSQL: events from changes, signatures with the shared secret (both
//! secrets during a rotation), retries with backoff while the receiver is down, and
//! URL validation.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use base64::Engine;
use chrono::Duration;
use common::TestApp;
use hmac::{Hmac, Mac};
use keyhaven_server::jobs::{mail::Mailer, webhooks, Jobs};
use serde_json::{json, Value};
use sha2::Sha256;

#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: String,
    signatures: Vec<String>,
    body: String,
}

struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    answer: Arc<AtomicU16>,
}

async fn receiver() -> Receiver {
    let got = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(AtomicU16::new(200));
    let (g, a) = (got.clone(), answer.clone());
    let app = axum::Router::new().route(
        "/hook",
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
                g.lock().unwrap().push(Received {
                    id: h("webhook-id"),
                    timestamp: h("webhook-timestamp"),
                    signatures: h("webhook-signature")
                        .split(' ')
                        .map(str::to_string)
                        .collect(),
                    body,
                });
                axum::http::StatusCode::from_u16(a.load(Ordering::SeqCst)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url: format!("http://{addr}/hook"),
        got,
        answer,
    }
}

/// Whether one of the signatures is `v1,<b64 HMAC-SHA256(secret, id.ts.body)>`.
fn signed_with(r: &Received, secret: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", r.id, r.timestamp, r.body).as_bytes());
    let expect = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    r.signatures.contains(&expect)
}

struct Ctx<'a> {
    app: &'a TestApp,
    key: String,
    org: String,
    jobs: Jobs,
}

impl<'a> Ctx<'a> {
    async fn new(app: &'a TestApp) -> Ctx<'a> {
        let key = app.admin_key(&["super-admin"]).await;
        let dir = std::env::temp_dir().join(format!("kh-outbox-{}", common::rand_suffix()));
        Ctx {
            app,
            key,
            org: format!("/v1/organizations/{}", app.org_id),
            jobs: Jobs {
                service: app.state.service.clone(),
                mailer: Mailer::Files(dir),
                http: webhooks::client(),
                public_url: "http://keyhaven.test".into(),
                mail_from: "keyhaven@example.com".into(),
            },
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .app
            .http
            .request(method, self.app.url(&format!("{}{}", self.org, path)))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }
}

async fn events_are_signed_and_delivered(app: TestApp) {
    let c = Ctx::new(&app).await;
    let rx = receiver().await;
    let (_, secret) = c
        .call(reqwest::Method::POST, "/shared-secret/rotate", None)
        .await;
    let secret = secret["secret"].as_str().unwrap().to_string();
    let (s, w) = c
        .call(
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({"url": rx.url, "events": ["api_key.created", "api_key.revoked", "service_account.suspended"], "description": "ops"})),
        )
        .await;
    assert_eq!(s, 201, "{w}");
    assert_eq!(w["enabled"], true);
    let wid = w["id"].as_str().unwrap().to_string();
    let (_, k) = c
        .call(
            reqwest::Method::POST,
            "/api-keys",
            Some(json!({"name": "hooked"})),
        )
        .await;
    let kid = k["id"].as_str().unwrap().to_string();
    c.call(
        reqwest::Method::PATCH,
        &format!("/api-keys/{kid}"),
        Some(json!({"description": "x"})),
    )
    .await; // not subscribed
    c.call(
        reqwest::Method::POST,
        &format!("/api-keys/{kid}/revoke"),
        None,
    )
    .await;
    let (_, sa) = c
        .call(
            reqwest::Method::POST,
            "/service-accounts",
            Some(json!({"name": "svc"})),
        )
        .await;
    c.call(
        reqwest::Method::POST,
        &format!("/service-accounts/{}/suspend", sa["id"].as_str().unwrap()),
        None,
    )
    .await;
    c.jobs.run_once().await.unwrap();

    let got = rx.got.lock().unwrap().clone();
    let types: Vec<String> = got
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut sorted = types.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "api_key.created",
            "api_key.revoked",
            "service_account.suspended"
        ]
    );
    for r in &got {
        assert!(signed_with(r, &secret), "signature must verify: {r:?}");
        assert_eq!(r.id.len(), 26);
        assert!(r.timestamp.parse::<i64>().is_ok());
        assert!(
            !r.body.contains("kh_") || !r.body.contains(&k["key"].as_str().unwrap()[3..]),
            "no secret in events"
        );
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert!(v["timestamp"].is_string() && v["data"]["id"].is_string());
    }
    let (_, d) = c
        .call(
            reqwest::Method::GET,
            &format!("/webhooks/{wid}/deliveries"),
            None,
        )
        .await;
    let rows = d["data"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows
        .iter()
        .all(|r| r["status"] == "succeeded" && r["attempts"] == 1 && r["last_status"] == 200));

    // During a rotation both secrets sign.
    let (_, rot) = c
        .call(reqwest::Method::POST, "/shared-secret/rotate", None)
        .await;
    let new_secret = rot["secret"].as_str().unwrap().to_string();
    c.call(
        reqwest::Method::POST,
        "/api-keys",
        Some(json!({"name": "after-rotation"})),
    )
    .await;
    c.jobs.run_once().await.unwrap();
    let last = rx.got.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.signatures.len(), 2);
    assert!(signed_with(&last, &secret) && signed_with(&last, &new_secret));
    // After the overlap only the new one.
    app.clock.advance(Duration::hours(25));
    c.call(
        reqwest::Method::POST,
        "/api-keys",
        Some(json!({"name": "later"})),
    )
    .await;
    c.jobs.run_once().await.unwrap();
    let last = rx.got.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.signatures.len(), 1);
    assert!(signed_with(&last, &new_secret));

    // Disabled endpoints get nothing; deleted ones disappear.
    c.call(
        reqwest::Method::PATCH,
        &format!("/webhooks/{wid}"),
        Some(json!({"enabled": false})),
    )
    .await;
    let before = rx.got.lock().unwrap().len();
    c.call(
        reqwest::Method::POST,
        "/api-keys",
        Some(json!({"name": "quiet"})),
    )
    .await;
    c.jobs.run_once().await.unwrap();
    assert_eq!(rx.got.lock().unwrap().len(), before);
    let (s, _) = c
        .call(reqwest::Method::DELETE, &format!("/webhooks/{wid}"), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = c
        .call(reqwest::Method::GET, &format!("/webhooks/{wid}"), None)
        .await;
    assert_eq!(s, 404);
}
both_backends!(events_are_signed_and_delivered);

async fn a_receiver_that_is_down_loses_nothing(app: TestApp) {
    let c = Ctx::new(&app).await;
    let rx = receiver().await;
    rx.answer.store(503, Ordering::SeqCst);
    let (_, w) = c
        .call(
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({"url": rx.url, "events": ["api_key.created"]})),
        )
        .await;
    let wid = w["id"].as_str().unwrap().to_string();
    c.call(
        reqwest::Method::POST,
        "/api-keys",
        Some(json!({"name": "k"})),
    )
    .await;
    c.jobs.run_once().await.unwrap();
    let (_, d) = c
        .call(
            reqwest::Method::GET,
            &format!("/webhooks/{wid}/deliveries"),
            None,
        )
        .await;
    let row = &d["data"][0];
    assert_eq!(
        (
            row["status"].as_str(),
            row["attempts"].as_i64(),
            row["last_status"].as_i64()
        ),
        (Some("pending"), Some(1), Some(503))
    );
    // Not due again before the backoff has passed.
    c.jobs.run_once().await.unwrap();
    assert_eq!(rx.got.lock().unwrap().len(), 1);
    app.clock.advance(Duration::seconds(31));
    c.jobs.run_once().await.unwrap();
    assert_eq!(rx.got.lock().unwrap().len(), 2);
    // Back up: the next attempt succeeds, with the same message id.
    rx.answer.store(204, Ordering::SeqCst);
    app.clock.advance(Duration::minutes(2));
    c.jobs.run_once().await.unwrap();
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|r| r.id == got[0].id),
        "retries keep the webhook-id"
    );
    let (_, d) = c
        .call(
            reqwest::Method::GET,
            &format!("/webhooks/{wid}/deliveries"),
            None,
        )
        .await;
    assert_eq!(d["data"][0]["status"], "succeeded");
    assert_eq!(d["data"][0]["attempts"], 3);

    // A receiver that never comes back is given up after 24 hours.
    rx.answer.store(500, Ordering::SeqCst);
    c.call(
        reqwest::Method::POST,
        "/api-keys",
        Some(json!({"name": "k2"})),
    )
    .await;
    for _ in 0..40 {
        c.jobs.run_once().await.unwrap();
        app.clock.advance(Duration::hours(1));
    }
    let (_, d) = c
        .call(
            reqwest::Method::GET,
            &format!("/webhooks/{wid}/deliveries"),
            None,
        )
        .await;
    let row = &d["data"][0];
    assert_eq!(row["status"], "failed");
    assert!(row["attempts"].as_i64().unwrap() > 3);
    assert!(row["last_error"].as_str().unwrap().contains("500"));
}
both_backends!(a_receiver_that_is_down_loses_nothing);

async fn webhook_input_is_validated(app: TestApp) {
    let c = Ctx::new(&app).await;
    for (body, param) in [
        (
            json!({"url": "not a url", "events": ["api_key.created"]}),
            "url",
        ),
        (
            json!({"url": "ftp://example.com/x", "events": ["api_key.created"]}),
            "url",
        ),
        (
            json!({"url": "https://user:pw@example.com/x", "events": ["api_key.created"]}),
            "url",
        ),
        (
            json!({"url": "https://example.com/x", "events": []}),
            "events",
        ),
        (
            json!({"url": "https://example.com/x", "events": ["api_key.exploded"]}),
            "events[0]",
        ),
        (json!({"url": "https://example.com/x"}), "events"),
    ] {
        let (s, e) = c
            .call(reqwest::Method::POST, "/webhooks", Some(body.clone()))
            .await;
        assert_eq!(s, 400, "{body}");
        assert_eq!(e["error"]["param"], param, "{body} → {e}");
    }
    // Keyhaven itself is refused.
    let mut svc = app.state.service.clone();
    svc.self_origins = vec![("127.0.0.1".into(), app.addr.port())];
    assert!(svc
        .validate_webhook_url(&format!("http://127.0.0.1:{}/x", app.addr.port()))
        .is_err());
    assert!(svc
        .validate_webhook_url(&format!("http://localhost:{}/x", app.addr.port()))
        .is_err());
    assert!(svc.validate_webhook_url("http://127.0.0.1:1/x").is_ok());
    // Read-only users can't see or change webhooks.
    let ro = app.admin_key(&["read-only"]).await;
    let res = app
        .http
        .get(app.url(&format!("{}/webhooks", c.org)))
        .bearer_auth(ro)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}
both_backends!(webhook_input_is_validated);
