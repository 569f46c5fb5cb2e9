//! Webhooks against a local receiver that checks Standard Webhooks signatures, on
//! SQLite and PostgreSQL: events from changes, signatures with the shared secret (both
//! secrets during a rotation), retries with backoff while the receiver is down, and
//! URL validation.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::{rand_suffix, TestApp};
use axum::http::HeaderMap;
use base64::Engine;
use chrono::Duration;
use hmac::{Hmac, Mac};
use keyhaven_service::jobs::{mail::Mailer, webhooks, Jobs};
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
        let dir = std::env::temp_dir().join(format!("kh-outbox-{}", rand_suffix()));
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
both_backends!(
    events_are_signed_and_delivered,
    crate::support::local_receivers
);

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
both_backends!(
    a_receiver_that_is_down_loses_nothing,
    crate::support::local_receivers
);

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
    let svc = app
        .state
        .service
        .clone()
        .with_self_origins(vec![("127.0.0.1".into(), app.addr.port())]);
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
both_backends!(webhook_input_is_validated, crate::support::local_receivers);

async fn deliveries_of(c: &Ctx<'_>, wid: &str) -> Vec<Value> {
    let (s, d) = c
        .call(
            reqwest::Method::GET,
            &format!("/webhooks/{wid}/deliveries?limit=100"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{d}");
    d["data"].as_array().unwrap().clone()
}

async fn the_first_endpoint_creates_the_shared_secret(app: TestApp) {
    let c = Ctx::new(&app).await;
    let (_, st) = c.call(reqwest::Method::GET, "/shared-secret", None).await;
    assert_eq!(st["exists"], false, "{st}");
    let rx = receiver().await;
    let (s, w) = c
        .call(
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({"url": rx.url, "events": ["api_key.created"]})),
        )
        .await;
    assert_eq!(s, 201, "{w}");
    let (_, st) = c.call(reqwest::Method::GET, "/shared-secret", None).await;
    assert_eq!(st["exists"], true, "{st}");
    let (_, audit) = c
        .call(
            reqwest::Method::GET,
            "/audit-events?action=shared_secret.create",
            None,
        )
        .await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");
    assert!(
        !audit.to_string().contains("whsec_"),
        "the secret is never audited: {audit}"
    );
    // A second endpoint keeps the secret.
    let (_, secret) = c
        .call(reqwest::Method::POST, "/shared-secret/reveal", None)
        .await;
    let secret = secret["secret"].as_str().unwrap().to_string();
    c.call(
        reqwest::Method::POST,
        "/webhooks",
        Some(json!({"url": rx.url, "events": ["api_key.revoked"]})),
    )
    .await;
    c.call(
        reqwest::Method::POST,
        "/api-keys",
        Some(json!({"name": "signed"})),
    )
    .await;
    c.jobs.run_once().await.unwrap();
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(signed_with(&got[0], &secret), "{got:?}");
}
both_backends!(
    the_first_endpoint_creates_the_shared_secret,
    crate::support::local_receivers
);

async fn urls_reaching_keyhaven_itself_are_refused(app: TestApp) {
    let port = app.addr.port();
    let svc = app
        .state
        .service
        .clone()
        .with_self_origins(vec![("127.0.0.1".into(), port)]);
    for url in [
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        format!("http://[::1]:{port}/x"),
        format!("http://localhost.:{port}/x"),
        format!("http://api.localhost:{port}/x"),
        format!("http://LOCALHOST:{port}/x"),
        format!("http://127.1:{port}/x"),
        format!("http://0x7f000001:{port}/x"),
        "http://0.0.0.0/x".to_string(),
        "http://0.0.0.0:8443/x".to_string(),
        "http://[::]/x".to_string(),
        "http://[::ffff:0.0.0.0]:9000/x".to_string(),
    ] {
        let r = svc.validate_webhook_url(&url);
        assert!(r.is_err(), "{url} must be refused, got {r:?}");
    }
    // Other ports of this machine are fine (a local receiver), and so are other hosts.
    assert!(svc
        .validate_webhook_url(&format!("http://[::ffff:127.0.0.1]:{}/x", port ^ 1))
        .is_ok());
    assert!(svc
        .validate_webhook_url("https://hooks.example.com/x")
        .is_ok());
    // The same goes through the API (its server answers on 127.0.0.1:port too).
    let c = Ctx::new(&app).await;
    let (s, e) = c
        .call(
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({"url": "http://0.0.0.0:1234/x", "events": ["api_key.created"]})),
        )
        .await;
    assert_eq!((s, e["error"]["param"].as_str()), (400, Some("url")), "{e}");

    // At delivery time a name that now resolves to this server is not sent to.
    assert!(
        svc.resolves_to_self(&format!("http://localhost:{port}/x"))
            .await
    );
    assert!(
        !svc.resolves_to_self(&format!("http://localhost:{}/x", port ^ 1))
            .await
    );
    assert!(!svc.resolves_to_self("not a url").await);
}
both_backends!(
    urls_reaching_keyhaven_itself_are_refused,
    crate::support::local_receivers
);

async fn deliveries_that_cannot_be_prepared_are_retried_or_closed(app: TestApp) {
    let c = Ctx::new(&app).await;
    let rx = receiver().await;
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
        Some(json!({"name": "a"})),
    )
    .await;
    // A node with the wrong master key cannot sign: the attempt is recorded as failed
    // with a backoff (so the 24-hour limit applies), and nothing is sent unsigned.
    let wrong = keyhaven_service::secrets::MasterKey::from_base64(
        &base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
    )
    .unwrap();
    let store = keyhaven_store::connect(&app.db.url, false).await.unwrap();
    let broken = keyhaven_service::Service::new(store, app.clock.clone(), wrong)
        .with_outbound_allowed(app.state.config.outbound_allowed_cidrs.clone());
    webhooks::deliver_due(&broken, &webhooks::client())
        .await
        .unwrap();
    assert!(rx.got.lock().unwrap().is_empty());
    let d = deliveries_of(&c, &wid).await;
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0]["status"].as_str(), d[0]["attempts"].as_i64()),
        (Some("pending"), Some(1)),
        "{d:?}"
    );
    assert!(d[0]["last_error"].as_str().is_some(), "{d:?}");
    // Not due again at once…
    webhooks::deliver_due(&broken, &webhooks::client())
        .await
        .unwrap();
    assert_eq!(deliveries_of(&c, &wid).await[0]["attempts"], 1);
    // …and given up after 24 hours like any failure.
    for _ in 0..30 {
        app.clock.advance(Duration::hours(1));
        webhooks::deliver_due(&broken, &webhooks::client())
            .await
            .unwrap();
    }
    let d = deliveries_of(&c, &wid).await;
    assert_eq!(d[0]["status"], "failed", "{d:?}");
    assert!(rx.got.lock().unwrap().is_empty());

    // A delivery queued while its endpoint was enabled is closed, unsent, once the
    // endpoint is disabled.
    c.call(
        reqwest::Method::POST,
        "/api-keys",
        Some(json!({"name": "b"})),
    )
    .await;
    c.call(
        reqwest::Method::PATCH,
        &format!("/webhooks/{wid}"),
        Some(json!({"enabled": false})),
    )
    .await;
    c.jobs.run_once().await.unwrap();
    assert!(rx.got.lock().unwrap().is_empty());
    let d = deliveries_of(&c, &wid).await;
    let newest = d
        .iter()
        .find(|d| d["status"] != "failed" || d["last_error"].as_str().unwrap().contains("disabled"))
        .unwrap();
    assert_eq!(newest["status"], "failed", "{d:?}");
    assert!(
        newest["last_error"].as_str().unwrap().contains("disabled"),
        "{d:?}"
    );
    c.jobs.run_once().await.unwrap();
    assert!(rx.got.lock().unwrap().is_empty());
}
both_backends!(
    deliveries_that_cannot_be_prepared_are_retried_or_closed,
    crate::support::local_receivers
);

async fn archiving_or_deleting_a_service_account_announces_its_keys(app: TestApp) {
    let c = Ctx::new(&app).await;
    let rx = receiver().await;
    c.call(
        reqwest::Method::POST,
        "/webhooks",
        Some(json!({"url": rx.url, "events": ["api_key.revoked", "api_key.deleted"]})),
    )
    .await;
    let mut keys_of = Vec::new();
    for name in ["archived-sa", "deleted-sa"] {
        let (_, sa) = c
            .call(
                reqwest::Method::POST,
                "/service-accounts",
                Some(json!({"name": name})),
            )
            .await;
        let sid = sa["id"].as_str().unwrap().to_string();
        let mut ids = Vec::new();
        for i in 0..2 {
            let (s, k) = c
                .call(
                    reqwest::Method::POST,
                    "/api-keys",
                    Some(json!({"name": format!("{name}-{i}"),
                                "owner": {"type": "service_account", "id": sid}})),
                )
                .await;
            assert_eq!(s, 201, "{k}");
            ids.push(k["id"].as_str().unwrap().to_string());
        }
        ids.sort();
        keys_of.push((sid, ids));
    }
    let (s, _) = c
        .call(
            reqwest::Method::POST,
            &format!("/service-accounts/{}/archive", keys_of[0].0),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = c
        .call(
            reqwest::Method::DELETE,
            &format!("/service-accounts/{}", keys_of[1].0),
            None,
        )
        .await;
    assert_eq!(s, 204);
    c.jobs.run_once().await.unwrap();
    let events = |t: &str| {
        let mut ids: Vec<String> = rx
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
            .filter(|v| v["type"] == t)
            .map(|v| v["data"]["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(events("api_key.revoked"), keys_of[0].1);
    assert_eq!(events("api_key.deleted"), keys_of[1].1);
    for r in rx.got.lock().unwrap().iter() {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert!(v["data"]["masked_key"].is_string(), "{v}");
        if v["type"] == "api_key.revoked" {
            assert_eq!(v["data"]["status"], "revoked", "{v}");
        }
    }
}
both_backends!(
    archiving_or_deleting_a_service_account_announces_its_keys,
    crate::support::local_receivers
);

async fn a_hanging_receiver_does_not_hold_up_the_others(app: TestApp) {
    let c = Ctx::new(&app).await;
    // One receiver that records each request and never answers…
    let hung = Arc::new(Mutex::new(0usize));
    let h = hung.clone();
    let app_hung = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let h = h.clone();
            async move {
                *h.lock().unwrap() += 1;
                std::future::pending::<()>().await;
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app_hung).await.unwrap() });
    // …and a healthy one.
    let rx = receiver().await;
    let (_, w) = c
        .call(
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({"url": hung_url, "events": ["api_key.created"]})),
        )
        .await;
    let hung_id = w["id"].as_str().unwrap().to_string();
    c.call(
        reqwest::Method::POST,
        "/webhooks",
        Some(json!({"url": rx.url, "events": ["api_key.revoked"]})),
    )
    .await;
    // A backlog for the hanging receiver larger than any batch, queued first.
    let service = &app.state.service;
    let mut tx = service.store().begin().await.unwrap();
    for i in 0..(webhooks::CONCURRENCY * 4) {
        service
            .emit(
                tx.as_mut(),
                &keyhaven_core::id::Id::from_trusted(app.org_id.clone()),
                keyhaven_core::webhook_event::WebhookEvent::ApiKeyCreated,
                json!({ "n": i }),
            )
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    app.clock.advance(Duration::seconds(1));
    let (_, k) = c
        .call(
            reqwest::Method::POST,
            "/api-keys",
            Some(json!({"name": "to-revoke"})),
        )
        .await;
    c.call(
        reqwest::Method::POST,
        &format!("/api-keys/{}/revoke", k["id"].as_str().unwrap()),
        None,
    )
    .await;

    // The worker, with requests that would hang for as long as the test runs.
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(webhooks::run(
        app.state.service.clone(),
        webhooks::client_with_timeout(std::time::Duration::from_secs(3600)),
        std::time::Duration::from_secs(3600),
        stopped,
    ));
    let mut waited = 0;
    while rx.got.lock().unwrap().is_empty() {
        assert!(waited < 1200, "the healthy receiver never got its event");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(got[0].body.contains("api_key.revoked"));
    // The hanging receiver holds no more than its share of the slots, and its
    // deliveries are all still pending (none was given up or sent twice).
    let in_flight = *hung.lock().unwrap();
    assert!(
        in_flight as i64 <= webhooks::PER_ENDPOINT,
        "{in_flight} requests to the hanging receiver"
    );
    let d = deliveries_of(&c, &hung_id).await;
    assert_eq!(
        d.len(),
        webhooks::CONCURRENCY * 4 + 1,
        "the backlog and to-revoke's creation"
    );
    assert!(d.iter().all(|d| d["status"] == "pending"), "{d:?}");
    // The hung requests would outlast a graceful stop's grace period: end the worker.
    worker.abort();
    assert!(worker.await.unwrap_err().is_cancelled());
}
both_backends!(
    a_hanging_receiver_does_not_hold_up_the_others,
    crate::support::local_receivers
);

/// Every internal target, in the notations probing used, is refused by `POST` and
/// `PATCH /webhooks` on a server that allows no internal range (the default).
async fn internal_targets_are_refused_at_create_and_update(app: TestApp) {
    let c = Ctx::new(&app).await;
    let internal = [
        "http://127.0.0.1:9/x",
        "http://127.0.0.1/x",
        "http://[::1]:9/x",
        "http://localhost:9/x",
        "http://localhost.:9/x",
        "http://api.localhost/x",
        "http://2130706433/x",
        "http://0x7f000001/x",
        "http://0177.0.0.1/x",
        "http://127.1/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://[::ffff:7f00:1]/x",
        "http://10.0.0.1/x",
        "http://10.255.255.255/x",
        "http://172.16.0.1/x",
        "http://172.31.9.9/x",
        "http://192.168.1.1/x",
        "http://100.64.0.1/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/x",
        "http://[fd00::1]/x",
        "http://[fc00::1]/x",
        "http://[fe80::1]/x",
        "http://224.0.0.1/x",
        "http://[ff02::1]/x",
        "http://0.0.0.0/x",
        "http://[::]/x",
        "https://0/x",
    ];
    for url in internal {
        let (s, e) = c
            .call(
                reqwest::Method::POST,
                "/webhooks",
                Some(json!({"url": url, "events": ["api_key.created"]})),
            )
            .await;
        assert_eq!(s, 400, "{url} must be refused: {e}");
        assert_eq!(e["error"]["param"], "url", "{url}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request", "{url}: {e}");
    }
    let (s, w) = c
        .call(
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({"url": "https://hooks.example.com/x", "events": ["api_key.created"]})),
        )
        .await;
    assert_eq!(s, 201, "a public host is fine: {w}");
    let wid = w["id"].as_str().unwrap();
    for url in internal {
        let (s, e) = c
            .call(
                reqwest::Method::PATCH,
                &format!("/webhooks/{wid}"),
                Some(json!({"url": url})),
            )
            .await;
        assert_eq!(
            (s, e["error"]["param"].as_str()),
            (400, Some("url")),
            "{url}: {e}"
        );
    }
    let (_, w) = c
        .call(reqwest::Method::GET, &format!("/webhooks/{wid}"), None)
        .await;
    assert_eq!(w["url"], "https://hooks.example.com/x");
    // Nothing internal was stored.
    let (_, all) = c.call(reqwest::Method::GET, "/webhooks", None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 1, "{all}");
}
both_backends!(internal_targets_are_refused_at_create_and_update);

fn outbound_10_8(s: &mut keyhaven_service::config::Settings) {
    s.serve.outbound_allowed_cidrs = Some("10.0.0.0/8".into());
}

/// `KEYHAVEN_OUTBOUND_ALLOWED_CIDRS` opens the ranges it names, and only those.
async fn allowed_ranges_open_only_themselves(app: TestApp) {
    let c = Ctx::new(&app).await;
    for (url, status) in [
        ("http://10.1.2.3:8080/x", 201),
        ("http://[::ffff:10.1.2.3]/x", 201),
        ("http://127.0.0.1:9/x", 400),
        ("http://192.168.0.1/x", 400),
        ("http://169.254.169.254/x", 400),
        ("http://0.0.0.0/x", 400),
    ] {
        let (s, e) = c
            .call(
                reqwest::Method::POST,
                "/webhooks",
                Some(json!({"url": url, "events": ["api_key.created"]})),
            )
            .await;
        assert_eq!(s, status, "{url}: {e}");
    }
}
both_backends!(allowed_ranges_open_only_themselves, super::outbound_10_8);

/// An endpoint saved while its target was allowed (or that resolves differently now) is
/// checked again at every attempt: a node whose policy refuses the address sends
/// nothing, for an IP address and for a name (`localhost` resolves to loopback).
async fn internal_targets_are_refused_at_delivery(app: TestApp) {
    let c = Ctx::new(&app).await;
    let rx = receiver().await;
    let by_name = rx.url.replace("127.0.0.1", "localhost");
    let mut ids = Vec::new();
    for url in [&rx.url, &by_name] {
        let (s, w) = c
            .call(
                reqwest::Method::POST,
                "/webhooks",
                Some(json!({"url": url, "events": ["api_key.created"]})),
            )
            .await;
        assert_eq!(s, 201, "{w}");
        ids.push(w["id"].as_str().unwrap().to_string());
    }
    c.call(
        reqwest::Method::POST,
        "/api-keys",
        Some(json!({"name": "not-for-internal"})),
    )
    .await;
    // The same database, served by a node that allows no internal range.
    let strict = app.state.service.clone().with_outbound_allowed(Vec::new());
    webhooks::deliver_due(&strict, &webhooks::client())
        .await
        .unwrap();
    assert!(
        rx.got.lock().unwrap().is_empty(),
        "nothing reaches loopback"
    );
    for wid in &ids {
        let d = deliveries_of(&c, wid).await;
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0]["status"].as_str(), d[0]["attempts"].as_i64()),
            (Some("pending"), Some(1)),
            "{d:?}"
        );
        let why = d[0]["last_error"].as_str().unwrap();
        assert!(why.contains("no allowed address"), "{why}");
        assert!(!why.contains("127.0.0.1"), "{why}");
    }
    // The node that allows loopback delivers both, the name through its checked address.
    app.clock.advance(Duration::minutes(1));
    c.jobs.run_once().await.unwrap();
    assert_eq!(rx.got.lock().unwrap().len(), 2);
    for wid in &ids {
        assert_eq!(deliveries_of(&c, wid).await[0]["status"], "succeeded");
    }
}
both_backends!(
    internal_targets_are_refused_at_delivery,
    crate::support::local_receivers
);

/// A failed delivery records the status code or "connection failed", never the
/// receiver's answer, and a refused connection reads exactly like a timed-out one.
async fn deliveries_record_no_answer_and_no_failure_detail(app: TestApp) {
    let c = Ctx::new(&app).await;
    // A receiver that answers 500 with an internal service's body.
    let body_rx = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "SECRET-INTERNAL-BODY db=10.0.0.7 password=hunter2",
            )
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let body_url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, body_rx).await.unwrap() });
    // A port where nothing listens (refused)…
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    // …and one that accepts and never answers (timed out).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let mut ids = Vec::new();
    for url in [&body_url, &closed_url, &silent_url] {
        let (s, w) = c
            .call(
                reqwest::Method::POST,
                "/webhooks",
                Some(json!({"url": url, "events": ["api_key.created"]})),
            )
            .await;
        assert_eq!(s, 201, "{w}");
        ids.push(w["id"].as_str().unwrap().to_string());
    }
    c.call(
        reqwest::Method::POST,
        "/api-keys",
        Some(json!({"name": "k"})),
    )
    .await;
    webhooks::deliver_due(
        &app.state.service,
        &webhooks::client_with_timeout(std::time::Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let rows: Vec<Value> = {
        let mut rows = Vec::new();
        for wid in &ids {
            rows.push(deliveries_of(&c, wid).await[0].clone());
        }
        rows
    };
    assert_eq!(rows[0]["last_status"], 500, "{rows:?}");
    assert_eq!(
        rows[0]["last_error"], "the receiver answered 500",
        "{rows:?}"
    );
    assert!(!rows[0].to_string().contains("SECRET"), "{rows:?}");
    for r in &rows[1..] {
        assert_eq!(r["status"], "pending", "{r}");
        assert_eq!(r["last_status"], Value::Null, "{r}");
        assert_eq!(r["last_error"], "connection failed", "{r}");
    }
}
both_backends!(
    deliveries_record_no_answer_and_no_failure_detail,
    crate::support::local_receivers
);

/// A shared secret's ciphertext is bound to its organization's row: copied into
/// another organization's row (by someone who can write the database) it does not
/// decrypt there, so it cannot sign that organization's deliveries.
async fn a_shared_secret_is_bound_to_its_organization(app: TestApp) {
    let c = Ctx::new(&app).await;
    let (s, _) = c
        .call(reqwest::Method::POST, "/shared-secret/rotate", None)
        .await;
    assert_eq!(s, 200);
    let service = &app.state.service;
    let (other, _) = service
        .create_organization("Other", "other@example.com", "another long passphrase")
        .await
        .unwrap();
    let a = keyhaven_core::id::Id::from_trusted(app.org_id.clone());
    let mut tx = service.store().begin().await.unwrap();
    let rec = tx.shared_secret(&a).await.unwrap().unwrap();
    tx.put_shared_secret(&other.id, &rec).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(service.signing_secrets(&a).await.unwrap().len(), 1);
    assert!(
        service.signing_secrets(&other.id).await.is_err(),
        "a ciphertext copied from another row must not decrypt"
    );
}
both_backends!(a_shared_secret_is_bound_to_its_organization);
