//! The verification endpoint and forward auth, on SQLite and PostgreSQL: every code in
//! PRODUCT.md's order, the cache and its invalidation, rate limits, exact remaining
//! uses, usage counting and bad input.

use crate::support::TestApp;
use chrono::Duration;
use serde_json::{json, Value};

struct Api<'a> {
    app: &'a TestApp,
    admin: String,
    org: String,
}

impl<'a> Api<'a> {
    async fn new(app: &'a TestApp) -> Api<'a> {
        let admin = app.admin_key(&["super-admin"]).await;
        Api {
            app,
            admin,
            org: format!("/v1/organizations/{}", app.org_id),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .app
            .http
            .request(method, self.app.url(&format!("{}{}", self.org, path)))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let s = res.status().as_u16();
        (s, res.json().await.unwrap_or(Value::Null))
    }

    async fn create_key(&self, body: Value) -> (String, String) {
        let (s, v) = self
            .call(reqwest::Method::POST, "/api-keys", Some(body))
            .await;
        assert_eq!(s, 201, "{v}");
        (
            v["key"].as_str().unwrap().to_string(),
            v["id"].as_str().unwrap().to_string(),
        )
    }

    async fn verify(&self, body: Value) -> Value {
        let res = self
            .app
            .http
            .post(self.app.url("/v1/keys/verify"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    async fn code(&self, key: &str) -> String {
        self.verify(json!({ "key": key })).await["code"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

async fn valid_answer_has_the_contract_shape(app: TestApp) {
    let api = Api::new(&app).await;
    let (_, sa) = api
        .call(
            reqwest::Method::POST,
            "/service-accounts",
            Some(json!({"name": "billing"})),
        )
        .await;
    let (key, id) = api
        .create_key(json!({
            "name": "svc", "scopes": ["read", "write"], "roles": ["read-only"],
            "owner": {"type": "service_account", "id": sa["id"]},
            "ratelimit": {"limit": 100, "duration_ms": 60000}, "expires_in_days": 30
        }))
        .await;
    let v = api
        .verify(json!({ "key": key, "permissions": ["read"] }))
        .await;
    assert_eq!(v["valid"], true);
    assert_eq!(v["code"], "VALID");
    assert_eq!(v["key_id"], id.as_str());
    assert_eq!(v["organization_id"], app.org_id.as_str());
    assert_eq!(v["name"], "svc");
    assert_eq!(
        v["owner"],
        json!({"type": "service_account", "id": sa["id"], "name": "billing"})
    );
    let perms: Vec<&str> = v["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for p in ["read", "write", "api_keys.view", "roles.view"] {
        assert!(perms.contains(&p), "{p} in {perms:?}");
    }
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["ratelimit"]["limit"], 100);
    assert_eq!(v["ratelimit"]["remaining"], 99);
    assert!(v["ratelimit"]["reset_at"].is_string());
    assert_eq!(v["remaining"], Value::Null);
    assert_eq!(v["rotating"], false);
}
both_backends!(valid_answer_has_the_contract_shape);

async fn every_code_in_order(app: TestApp) {
    let api = Api::new(&app).await;
    // MALFORMED: garbage, a wrong checksum — and any bytes at all, without a panic.
    assert_eq!(api.code("nope").await, "MALFORMED");
    let (good, _) = api.create_key(json!({"name": "a"})).await;
    let mut typo = good.clone().into_bytes();
    typo[10] = if typo[10] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        api.code(&String::from_utf8(typo).unwrap()).await,
        "MALFORMED"
    );
    assert_eq!(api.code(&"x".repeat(5000)).await, "MALFORMED");
    assert_eq!(api.code("kh_\u{0}\u{ffff}é").await, "MALFORMED");
    // NOT_FOUND: well formed, unknown (twice: the second from the negative cache).
    let invented = keyhaven_core::key_format::generate("kh", &mut rand::rngs::OsRng);
    assert_eq!(api.code(invented.expose()).await, "NOT_FOUND");
    assert_eq!(api.code(invented.expose()).await, "NOT_FOUND");
    // EXPIRED (and EXPIRED wins over REVOKED, as the order says).
    let (exp, exp_id) = api
        .create_key(json!({"name": "b", "expires_in_days": 1}))
        .await;
    assert_eq!(api.code(&exp).await, "VALID");
    app.clock.advance(Duration::days(1));
    assert_eq!(api.code(&exp).await, "EXPIRED");
    api.call(
        reqwest::Method::POST,
        &format!("/api-keys/{exp_id}/revoke"),
        None,
    )
    .await;
    assert_eq!(api.code(&exp).await, "EXPIRED");
    // REVOKED.
    let (rev, rev_id) = api.create_key(json!({"name": "c"})).await;
    assert_eq!(api.code(&rev).await, "VALID");
    let (s, _) = api
        .call(
            reqwest::Method::POST,
            &format!("/api-keys/{rev_id}/revoke"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        api.code(&rev).await,
        "REVOKED",
        "revocation is visible to the next verify"
    );
    // DISABLED: a suspended service account's key.
    let (_, sa) = api
        .call(
            reqwest::Method::POST,
            "/service-accounts",
            Some(json!({"name": "s"})),
        )
        .await;
    let sa_id = sa["id"].as_str().unwrap();
    let (sk, _) = api
        .create_key(json!({"name": "d", "owner": {"type": "service_account", "id": sa_id}}))
        .await;
    assert_eq!(api.code(&sk).await, "VALID");
    api.call(
        reqwest::Method::POST,
        &format!("/service-accounts/{sa_id}/suspend"),
        None,
    )
    .await;
    assert_eq!(api.code(&sk).await, "DISABLED");
    api.call(
        reqwest::Method::POST,
        &format!("/service-accounts/{sa_id}/reactivate"),
        None,
    )
    .await;
    assert_eq!(api.code(&sk).await, "VALID");
    // FORBIDDEN: lacks a required permission.
    let (fk, _) = api
        .create_key(json!({"name": "e", "scopes": ["read"]}))
        .await;
    let v = api
        .verify(json!({"key": fk, "permissions": ["read", "write"]}))
        .await;
    assert_eq!(
        (v["valid"].as_bool(), v["code"].as_str()),
        (Some(false), Some("FORBIDDEN"))
    );
    assert!(v["key_id"].is_string() && v["organization_id"].is_string());
    // RATE_LIMITED.
    let (rk, _) = api
        .create_key(json!({"name": "f", "ratelimit": {"limit": 2, "duration_ms": 60000}}))
        .await;
    assert_eq!(api.code(&rk).await, "VALID");
    assert_eq!(api.code(&rk).await, "VALID");
    let v = api.verify(json!({"key": rk})).await;
    assert_eq!(v["code"], "RATE_LIMITED");
    assert_eq!(v["ratelimit"]["remaining"], 0);
    app.clock.advance(Duration::seconds(30));
    assert_eq!(
        api.code(&rk).await,
        "VALID",
        "one token refilled after half the window"
    );
    // USAGE_EXCEEDED.
    let (uk, _) = api.create_key(json!({"name": "g", "remaining": 2})).await;
    let v = api.verify(json!({"key": uk})).await;
    assert_eq!(
        (v["code"].as_str(), v["remaining"].as_i64()),
        (Some("VALID"), Some(1))
    );
    let v = api.verify(json!({"key": uk})).await;
    assert_eq!(
        (v["code"].as_str(), v["remaining"].as_i64()),
        (Some("VALID"), Some(0))
    );
    assert_eq!(api.code(&uk).await, "USAGE_EXCEEDED");
    // IP_NOT_ALLOWED, by the body's ip or the caller's address.
    let (ik, _) = api
        .create_key(json!({"name": "h", "allowed_cidrs": ["10.0.0.0/8"]}))
        .await;
    assert_eq!(
        api.verify(json!({"key": ik, "ip": "10.1.2.3"})).await["code"],
        "VALID"
    );
    assert_eq!(
        api.verify(json!({"key": ik, "ip": "192.168.0.1"})).await["code"],
        "IP_NOT_ALLOWED"
    );
    assert_eq!(
        api.code(&ik).await,
        "IP_NOT_ALLOWED",
        "the test client is 127.0.0.1"
    );
    // FORBIDDEN comes before RATE_LIMITED and IP_NOT_ALLOWED.
    let (ok, _) = api
        .create_key(json!({"name": "i", "allowed_cidrs": ["10.0.0.0/8"], "ratelimit": {"limit": 1, "duration_ms": 60000}}))
        .await;
    assert_eq!(
        api.verify(json!({"key": ok, "permissions": ["x"]})).await["code"],
        "FORBIDDEN"
    );
}
both_backends!(every_code_in_order);

async fn changes_reach_the_next_verify(app: TestApp) {
    let api = Api::new(&app).await;
    let (key, id) = api
        .create_key(json!({"name": "k", "scopes": ["read"]}))
        .await;
    let need_write = json!({"key": key, "permissions": ["write"]});
    assert_eq!(api.verify(need_write.clone()).await["code"], "FORBIDDEN");
    api.call(
        reqwest::Method::PATCH,
        &format!("/api-keys/{id}"),
        Some(json!({"scopes": ["read", "write"]})),
    )
    .await;
    assert_eq!(
        api.verify(need_write.clone()).await["code"],
        "VALID",
        "scope edit visible at once"
    );
    // A role edit changes every key holding the role.
    api.call(
        reqwest::Method::POST,
        "/roles",
        Some(json!({"name": "billing", "permissions": ["billing:read"]})),
    )
    .await;
    let (rk, _) = api
        .create_key(json!({"name": "r", "roles": ["billing"]}))
        .await;
    assert_eq!(
        api.verify(json!({"key": rk, "permissions": ["billing:write"]}))
            .await["code"],
        "FORBIDDEN"
    );
    api.call(
        reqwest::Method::PATCH,
        "/roles/billing",
        Some(json!({"permissions": ["billing:read", "billing:write"]})),
    )
    .await;
    assert_eq!(
        api.verify(json!({"key": rk, "permissions": ["billing:write"]}))
            .await["code"],
        "VALID"
    );
    // Delete → NOT_FOUND.
    api.call(reqwest::Method::DELETE, &format!("/api-keys/{id}"), None)
        .await;
    assert_eq!(api.code(&key).await, "NOT_FOUND");
    // Regenerate: the old secret is refused at once without grace…
    let (old, rid) = api.create_key(json!({"name": "rot"})).await;
    assert_eq!(api.code(&old).await, "VALID");
    let (_, v) = api
        .call(
            reqwest::Method::POST,
            &format!("/api-keys/{rid}/regenerate"),
            Some(json!({"expires_at": null})),
        )
        .await;
    let new = v["key"].as_str().unwrap().to_string();
    assert_eq!(api.code(&old).await, "NOT_FOUND");
    assert_eq!(api.code(&new).await, "VALID");
    // …and accepted with `rotating: true` during a grace period, until it ends.
    let (_, v) = api
        .call(
            reqwest::Method::POST,
            &format!("/api-keys/{rid}/regenerate"),
            Some(json!({"expires_at": null, "grace_period_seconds": 3600})),
        )
        .await;
    let newer = v["key"].as_str().unwrap().to_string();
    let o = api.verify(json!({"key": new})).await;
    assert_eq!(
        (o["code"].as_str(), o["rotating"].as_bool()),
        (Some("VALID"), Some(true))
    );
    let n = api.verify(json!({"key": newer})).await;
    assert_eq!(
        (n["code"].as_str(), n["rotating"].as_bool()),
        (Some("VALID"), Some(false))
    );
    app.clock.advance(Duration::seconds(3601));
    assert_eq!(api.code(&new).await, "NOT_FOUND");
    // A personal key stops when its user is deactivated.
    let (_, user) = api
        .call(
            reqwest::Method::POST,
            "/users",
            Some(json!({"email": "dev@example.com", "display_name": "Dev", "password": "a long enough password", "roles": ["admin"]})),
        )
        .await;
    let (client, csrf) = app
        .sign_in("dev@example.com", "a long enough password")
        .await;
    let res = client
        .post(app.url(&format!("{}/api-keys", api.org)))
        .header("x-csrf-token", csrf)
        .json(&json!({"name": "personal"}))
        .send()
        .await
        .unwrap();
    let pk = res.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(api.code(&pk).await, "VALID");
    api.call(
        reqwest::Method::PATCH,
        &format!("/users/{}", user["id"].as_str().unwrap()),
        Some(json!({"status": "inactive"})),
    )
    .await;
    assert_eq!(api.code(&pk).await, "DISABLED");
}
both_backends!(changes_reach_the_next_verify);

async fn cached_keys_need_no_database(app: TestApp) {
    let api = Api::new(&app).await;
    let (key, _) = api
        .create_key(json!({"name": "hot", "scopes": ["read"]}))
        .await;
    assert_eq!(api.code(&key).await, "VALID");
    let invented = keyhaven_core::key_format::generate("kh", &mut rand::rngs::OsRng);
    assert_eq!(api.code(invented.expose()).await, "NOT_FOUND");
    // With the database gone, cached answers (positive and negative) still come back.
    app.db.store.close().await;
    for _ in 0..3 {
        assert_eq!(api.code(&key).await, "VALID");
        assert_eq!(api.code(invented.expose()).await, "NOT_FOUND");
        assert_eq!(api.code("garbage").await, "MALFORMED");
    }
}
both_backends!(cached_keys_need_no_database);

/// Verifies `key` in a task of its own; resolves to the answer's code.
fn spawn_verify(app: &TestApp, key: &str) -> tokio::task::JoinHandle<String> {
    let http = app.http.clone();
    let url = app.url("/v1/keys/verify");
    let key = key.to_string();
    tokio::spawn(async move {
        let v: Value = http
            .post(url)
            .json(&json!({ "key": key }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["code"].as_str().unwrap().to_string()
    })
}

async fn remaining_uses_are_exact_under_concurrency(app: TestApp) {
    let api = Api::new(&app).await;
    let (key, id) = api
        .create_key(json!({"name": "budget", "remaining": 10}))
        .await;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        tasks.push(spawn_verify(&app, &key));
    }
    let mut valid = 0;
    for t in tasks {
        match t.await.unwrap().as_str() {
            "VALID" => valid += 1,
            "USAGE_EXCEEDED" => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(valid, 10);
    let (_, k) = api
        .call(reqwest::Method::GET, &format!("/api-keys/{id}"), None)
        .await;
    assert_eq!(
        k["remaining"], 0,
        "persisted, so a restart doesn't refill it"
    );
}
both_backends!(remaining_uses_are_exact_under_concurrency);

async fn usage_is_counted_and_flushed(app: TestApp) {
    let api = Api::new(&app).await;
    let (key, id) = api
        .create_key(json!({"name": "counted", "scopes": ["read"]}))
        .await;
    for _ in 0..3 {
        assert_eq!(api.code(&key).await, "VALID");
    }
    assert_eq!(
        api.verify(json!({"key": key, "permissions": ["nope"]}))
            .await["code"],
        "FORBIDDEN"
    );
    app.state.service.verifier().flush_usage().await.unwrap();
    let (_, m) = api.call(reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(m["api_calls_today"], 4);
    let (_, u) = api
        .call(
            reqwest::Method::GET,
            &format!("/api-keys/{id}/usage?days=7"),
            None,
        )
        .await;
    let rows = u["data"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    assert_eq!(rows[6]["valid"], 3);
    assert_eq!(rows[6]["invalid"], 1);
    assert_eq!(rows[0]["valid"], 0);
    let (_, k) = api
        .call(reqwest::Method::GET, &format!("/api-keys/{id}"), None)
        .await;
    assert!(k["last_used_at"].is_string());
    // Nothing left to flush; a second flush adds nothing.
    assert_eq!(app.state.service.verifier().flush_usage().await.unwrap(), 0);
    let (_, m) = api.call(reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(m["api_calls_today"], 4);
}
both_backends!(usage_is_counted_and_flushed);

async fn forward_auth(app: TestApp) {
    let api = Api::new(&app).await;
    let (key, id) = api
        .create_key(json!({"name": "fa", "scopes": ["read"]}))
        .await;
    let get = |headers: Vec<(&'static str, String)>, q: &str| {
        let mut r = app.http.get(app.url(&format!("/v1/auth{q}")));
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.send()
    };
    let res = get(
        vec![("authorization", format!("Bearer {key}"))],
        "?permissions=read",
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers();
    assert_eq!(h["x-keyhaven-code"], "VALID");
    assert_eq!(h["x-keyhaven-key-id"], id.as_str());
    assert_eq!(h["x-keyhaven-organization-id"], app.org_id.as_str());
    assert!(h.contains_key("x-keyhaven-owner-id"));
    assert_eq!(h["x-keyhaven-permissions"], "read");
    let res = get(vec![("x-api-key", key.clone())], "").await.unwrap();
    assert_eq!(res.status(), 200);
    let res = get(vec![], "").await.unwrap();
    assert_eq!(
        (
            res.status().as_u16(),
            res.headers()["x-keyhaven-code"].to_str().unwrap()
        ),
        (401, "MALFORMED")
    );
    let res = get(vec![("x-api-key", "kh_garbage".into())], "")
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = get(vec![("x-api-key", key.clone())], "?permissions=read,write")
        .await
        .unwrap();
    assert_eq!(
        (
            res.status().as_u16(),
            res.headers()["x-keyhaven-code"].to_str().unwrap()
        ),
        (403, "FORBIDDEN")
    );
    let (rk, _) = api
        .create_key(json!({"name": "fr", "ratelimit": {"limit": 1, "duration_ms": 60000}}))
        .await;
    assert_eq!(
        get(vec![("x-api-key", rk.clone())], "")
            .await
            .unwrap()
            .status(),
        200
    );
    let res = get(vec![("x-api-key", rk.clone())], "").await.unwrap();
    assert_eq!(res.status(), 429);
    let retry: i64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let (ik, _) = api
        .create_key(json!({"name": "fi", "allowed_cidrs": ["10.0.0.0/8"]}))
        .await;
    let res = get(
        vec![
            ("x-api-key", ik.clone()),
            ("x-forwarded-for", "10.0.0.1".into()),
        ],
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        res.status(),
        403,
        "X-Forwarded-For is ignored from an untrusted peer"
    );
}
both_backends!(forward_auth);

async fn bad_verify_input(app: TestApp) {
    let post = |body: String, ct: &'static str| {
        app.http
            .post(app.url("/v1/keys/verify"))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let check = |res: reqwest::Response, status: u16| async move {
        assert_eq!(res.status().as_u16(), status);
        let v: Value = res.json().await.unwrap();
        assert!(v["error"]["type"].is_string(), "{v}");
        v
    };
    let v = check(post("{}".into(), "application/json").await.unwrap(), 400).await;
    assert_eq!(v["error"]["param"], "key");
    let v = check(
        post(r#"{"key": 5}"#.into(), "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(v["error"]["param"], "key");
    check(
        post(r#"{"key": null}"#.into(), "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    check(
        post("not json".into(), "application/json").await.unwrap(),
        400,
    )
    .await;
    check(
        post(r#"{"key": "kh_x"}"#.into(), "text/plain")
            .await
            .unwrap(),
        415,
    )
    .await;
    let big = format!(r#"{{"key": "{}"}}"#, "a".repeat(9 * 1024));
    check(post(big, "application/json").await.unwrap(), 413).await;
    let v = check(
        post(
            r#"{"key": "kh_x", "ip": "not an ip"}"#.into(),
            "application/json",
        )
        .await
        .unwrap(),
        400,
    )
    .await;
    assert_eq!(v["error"]["param"], "ip");
    // Just under the limit is fine and answers MALFORMED.
    let ok = format!(r#"{{"key": "{}"}}"#, "a".repeat(8000));
    let res = post(ok, "application/json").await.unwrap();
    assert_eq!(res.status(), 200);
}
both_backends!(bad_verify_input);

async fn edits_during_verification_do_not_refill_remaining_uses(app: TestApp) {
    let api = Api::new(&app).await;
    let (key, id) = api
        .create_key(json!({"name": "budget", "remaining": 20}))
        .await;
    let mut verifies = Vec::new();
    for _ in 0..50 {
        verifies.push(spawn_verify(&app, &key));
    }
    // Edits of other fields read and rewrite the key while verifications take uses.
    let mut edits = Vec::new();
    for i in 0..30 {
        let http = app.http.clone();
        let url = app.url(&format!("{}/api-keys/{id}", api.org));
        let admin = api.admin.clone();
        edits.push(tokio::spawn(async move {
            http.patch(url)
                .bearer_auth(admin)
                .json(&json!({"description": format!("edit {i}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut valid = 0;
    for t in verifies {
        match t.await.unwrap().as_str() {
            "VALID" => valid += 1,
            "USAGE_EXCEEDED" => {}
            other => panic!("unexpected {other}"),
        }
    }
    for e in edits {
        assert_eq!(e.await.unwrap(), 200);
    }
    assert_eq!(valid, 20, "never more successes than the budget");
    let (_, k) = api
        .call(reqwest::Method::GET, &format!("/api-keys/{id}"), None)
        .await;
    assert_eq!(k["remaining"], 0);
    assert_eq!(api.code(&key).await, "USAGE_EXCEEDED");
}
both_backends!(edits_during_verification_do_not_refill_remaining_uses);

async fn more_changes_reach_the_next_verify(app: TestApp) {
    let api = Api::new(&app).await;
    // Limits and networks edited on a cached key.
    let (key, id) = api.create_key(json!({"name": "k"})).await;
    assert_eq!(api.code(&key).await, "VALID");
    let path = format!("/api-keys/{id}");
    let patch = |body: Value| api.call(reqwest::Method::PATCH, &path, Some(body));
    assert_eq!(patch(json!({"allowed_cidrs": ["10.0.0.0/8"]})).await.0, 200);
    assert_eq!(api.code(&key).await, "IP_NOT_ALLOWED");
    assert_eq!(patch(json!({"allowed_cidrs": []})).await.0, 200);
    assert_eq!(api.code(&key).await, "VALID");
    assert_eq!(
        patch(json!({"ratelimit": {"limit": 1, "duration_ms": 60000}}))
            .await
            .0,
        200
    );
    assert_eq!(api.code(&key).await, "VALID");
    assert_eq!(api.code(&key).await, "RATE_LIMITED");
    assert_eq!(
        patch(json!({"ratelimit": null, "remaining": 1})).await.0,
        200
    );
    assert_eq!(api.code(&key).await, "VALID");
    assert_eq!(api.code(&key).await, "USAGE_EXCEEDED");
    // A key's roles.
    let (rk, rid) = api.create_key(json!({"name": "r"})).await;
    let audit = json!({"key": rk, "permissions": ["audit.view"]});
    assert_eq!(api.verify(audit.clone()).await["code"], "FORBIDDEN");
    let (s, _) = api
        .call(
            reqwest::Method::PATCH,
            &format!("/api-keys/{rid}"),
            Some(json!({"roles": ["admin"]})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(api.verify(audit).await["code"], "VALID");
    // Archiving a service account revokes its keys: REVOKED, which comes before DISABLED.
    let (_, sa) = api
        .call(
            reqwest::Method::POST,
            "/service-accounts",
            Some(json!({"name": "s"})),
        )
        .await;
    let sa_id = sa["id"].as_str().unwrap();
    let (sk, _) = api
        .create_key(json!({"name": "d", "owner": {"type": "service_account", "id": sa_id}}))
        .await;
    assert_eq!(api.code(&sk).await, "VALID");
    api.call(
        reqwest::Method::POST,
        &format!("/service-accounts/{sa_id}/archive"),
        None,
    )
    .await;
    assert_eq!(api.code(&sk).await, "REVOKED");
    // A user's role change narrows the management permissions of their personal key.
    let (_, user) = api
        .call(
            reqwest::Method::POST,
            "/users",
            Some(json!({"email": "ops@example.com", "display_name": "Ops", "password": "a long enough password", "roles": ["admin"]})),
        )
        .await;
    let (client, csrf) = app
        .sign_in("ops@example.com", "a long enough password")
        .await;
    let res = client
        .post(app.url(&format!("{}/api-keys", api.org)))
        .header("x-csrf-token", csrf)
        .json(&json!({"name": "personal", "roles": ["admin"], "scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    let pk = res.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let need = json!({"key": pk, "permissions": ["api_keys.create", "read"]});
    assert_eq!(api.verify(need.clone()).await["code"], "VALID");
    let (s, _) = api
        .call(
            reqwest::Method::PATCH,
            &format!("/users/{}", user["id"].as_str().unwrap()),
            Some(json!({"roles": ["read-only"]})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        api.verify(need).await["code"],
        "FORBIDDEN",
        "the key's management permissions follow its user's"
    );
    assert_eq!(
        api.verify(json!({"key": pk, "permissions": ["read"]}))
            .await["code"],
        "VALID",
        "application scopes stay"
    );
}
both_backends!(more_changes_reach_the_next_verify);

async fn checks_run_in_order_on_one_key(app: TestApp) {
    let api = Api::new(&app).await;
    // One key that fails every late check: each answer names the earliest failing one.
    let (_, sa) = api
        .call(
            reqwest::Method::POST,
            "/service-accounts",
            Some(json!({"name": "s"})),
        )
        .await;
    let sa_id = sa["id"].as_str().unwrap().to_string();
    let (key, id) = api
        .create_key(json!({
            "name": "all", "scopes": ["read"], "owner": {"type": "service_account", "id": sa_id},
            "ratelimit": {"limit": 1, "duration_ms": 60000}, "remaining": 1,
            "allowed_cidrs": ["10.0.0.0/8"]
        }))
        .await;
    let ask = |perms: Value, ip: &str| json!({"key": key, "permissions": perms, "ip": ip});
    // Uses the one token and the one use.
    assert_eq!(
        api.verify(ask(json!(["read"]), "10.0.0.1")).await["code"],
        "VALID"
    );
    // RATE_LIMITED before USAGE_EXCEEDED before IP_NOT_ALLOWED.
    assert_eq!(
        api.verify(ask(json!(["read"]), "192.168.0.1")).await["code"],
        "RATE_LIMITED"
    );
    app.clock.advance(Duration::seconds(61));
    assert_eq!(
        api.verify(ask(json!(["read"]), "192.168.0.1")).await["code"],
        "USAGE_EXCEEDED"
    );
    // FORBIDDEN before RATE_LIMITED.
    assert_eq!(
        api.verify(ask(json!(["write"]), "192.168.0.1")).await["code"],
        "FORBIDDEN"
    );
    // DISABLED before FORBIDDEN.
    api.call(
        reqwest::Method::POST,
        &format!("/service-accounts/{sa_id}/suspend"),
        None,
    )
    .await;
    assert_eq!(
        api.verify(ask(json!(["write"]), "192.168.0.1")).await["code"],
        "DISABLED"
    );
    // REVOKED before DISABLED.
    api.call(
        reqwest::Method::POST,
        &format!("/api-keys/{id}/revoke"),
        None,
    )
    .await;
    assert_eq!(
        api.verify(ask(json!(["write"]), "192.168.0.1")).await["code"],
        "REVOKED"
    );
}
both_backends!(checks_run_in_order_on_one_key);
