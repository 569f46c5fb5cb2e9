//! Sign-in, sessions, bearer keys, `/v1/me` and the conventions every endpoint follows,
//! on SQLite and PostgreSQL.

use crate::support::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use chrono::Duration;
use serde_json::{json, Value};

async fn error_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let rid = res
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = res.json().await.unwrap();
    assert!(rid.is_some(), "X-Request-Id on every response");
    assert_eq!(
        body["error"]["request_id"].as_str(),
        rid.as_deref(),
        "error carries the request id"
    );
    (status, body["error"].clone())
}

async fn sign_in_and_me(app: TestApp) {
    let (client, csrf) = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(csrf.len(), 64);
    let me: Value = client
        .get(app.url("/v1/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["principal"]["type"], "user");
    assert_eq!(me["principal"]["name"], ADMIN_EMAIL);
    assert_eq!(me["organization_id"], app.org_id.as_str());
    assert_eq!(me["permissions"].as_array().unwrap().len(), 21);

    // Email is compared case-insensitively.
    app.sign_in("Admin@Example.COM", ADMIN_PASSWORD).await;

    // The sign-in response has the contract's shape and the cookie attributes.
    let res = app
        .http
        .post(app.url("/v1/session"))
        .json(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    let cookie = res
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    // The server's sliding idle timeout decides when a session ends, not a fixed
    // lifetime in the browser.
    assert!(!cookie.to_ascii_lowercase().contains("max-age"), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("expires"), "{cookie}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"]["email"], ADMIN_EMAIL);
    assert!(body["user"]["last_login_at"].is_string());
    assert_eq!(body["organization"]["key_prefix"], "kh");
}
both_backends!(sign_in_and_me);

async fn wrong_password_and_unknown_email_look_the_same(app: TestApp) {
    let send = |email: &str, pw: &str| {
        app.http
            .post(app.url("/v1/session"))
            .json(&json!({ "email": email, "password": pw }))
            .send()
    };
    let (s1, e1) = error_of(send(ADMIN_EMAIL, "wrong password!!").await.unwrap()).await;
    let (s2, e2) = error_of(
        send("nobody@example.com", "wrong password!!")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(e1["code"], e2["code"]);
    assert_eq!(e1["message"], e2["message"]);
    assert_eq!(e1["type"], "authentication_required");
}
both_backends!(wrong_password_and_unknown_email_look_the_same);

async fn five_failures_lock_the_email_for_the_window(app: TestApp) {
    let send = |pw: &'static str| {
        app.http
            .post(app.url("/v1/session"))
            .json(&json!({ "email": ADMIN_EMAIL, "password": pw }))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(send("not the password").await.unwrap().status(), 401);
    }
    let res = send(ADMIN_PASSWORD).await.unwrap();
    assert_eq!(
        res.status(),
        429,
        "even the right password waits for the window"
    );
    let retry: i64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 15 * 60);
    let (_, e) = error_of(res).await;
    assert_eq!(e["type"], "rate_limited");

    app.clock.advance(Duration::minutes(16));
    assert_eq!(send(ADMIN_PASSWORD).await.unwrap().status(), 200);

    // Failures are audited against the user's organization.
    let mut tx = app.db.store.read().await.unwrap();
    let chain = tx
        .audit_chain(&keyhaven_core::id::Id::from_trusted(app.org_id.clone()))
        .await
        .unwrap();
    let denied = chain
        .iter()
        .filter(|e| {
            e.draft.action == "session.sign_in"
                && e.draft.outcome == keyhaven_core::audit::Outcome::Denied
        })
        .count();
    assert_eq!(denied, 5);
    assert!(chain.iter().any(|e| e.draft.action == "session.sign_in"
        && e.draft.outcome == keyhaven_core::audit::Outcome::Success));
}
both_backends!(five_failures_lock_the_email_for_the_window);

/// Parallel wrong attempts cannot slip past the limit while their passwords are checked.
async fn parallel_failures_cannot_exceed_the_limit(app: TestApp) {
    let attempts = (0..20).map(|_| {
        app.http
            .post(app.url("/v1/session"))
            .json(&json!({ "email": ADMIN_EMAIL, "password": "not the password" }))
            .send()
    });
    let statuses: Vec<u16> = futures_join_all(attempts).await;
    let wrong = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(wrong + limited, 20, "{statuses:?}");
    assert!(wrong <= 5, "at most 5 passwords were checked: {statuses:?}");
    let res = app
        .http
        .post(app.url("/v1/session"))
        .json(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
}
both_backends!(parallel_failures_cannot_exceed_the_limit);

/// Runs the requests concurrently and returns their statuses.
async fn futures_join_all<F>(reqs: impl Iterator<Item = F>) -> Vec<u16>
where
    F: std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
{
    let handles: Vec<_> = reqs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap().unwrap().status().as_u16());
    }
    out
}

async fn sign_out_needs_csrf_and_ends_the_session(app: TestApp) {
    let (client, csrf) = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (s, e) = error_of(client.delete(app.url("/v1/session")).send().await.unwrap()).await;
    assert_eq!(s, 403);
    assert_eq!(e["code"], "csrf_token_invalid");
    let res = client
        .delete(app.url("/v1/session"))
        .header("x-csrf-token", "0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = client
        .delete(app.url("/v1/session"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (s, _) = error_of(client.get(app.url("/v1/me")).send().await.unwrap()).await;
    assert_eq!(s, 401);
}
both_backends!(sign_out_needs_csrf_and_ends_the_session);

async fn sessions_expire_after_twelve_idle_hours(app: TestApp) {
    let (client, _) = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    app.clock.advance(Duration::hours(11));
    assert_eq!(
        client.get(app.url("/v1/me")).send().await.unwrap().status(),
        200
    );
    // Activity moved the idle timer: 11 more hours are still fine.
    app.clock.advance(Duration::hours(11));
    assert_eq!(
        client.get(app.url("/v1/me")).send().await.unwrap().status(),
        200
    );
    app.clock.advance(Duration::hours(12));
    assert_eq!(
        client.get(app.url("/v1/me")).send().await.unwrap().status(),
        401
    );
}
both_backends!(sessions_expire_after_twelve_idle_hours);

async fn bearer_keys_authenticate(app: TestApp) {
    let key = app.admin_key(&["read-only"]).await;
    let me: Value = app
        .http
        .get(app.url("/v1/me"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["principal"]["type"], "api_key");
    assert_eq!(me["organization_id"], app.org_id.as_str());
    let perms: Vec<&str> = me["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        perms,
        [
            "api_keys.view",
            "organization.view",
            "roles.view",
            "service_accounts.view"
        ]
    );

    // A mistyped key, an invented key and garbage are all 401 with the error object.
    let mut typo = key.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let invented = keyhaven_core::key_format::generate("kh", &mut rand::rngs::OsRng);
    for bad in [
        typo.as_str(),
        invented.expose(),
        "garbage",
        "kh_",
        &"x".repeat(5000),
    ] {
        let (s, e) = error_of(
            app.http
                .get(app.url("/v1/me"))
                .bearer_auth(bad)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 401, "{bad:.20}");
        assert_eq!(e["type"], "authentication_required");
    }
}
both_backends!(bearer_keys_authenticate);

async fn password_change(app: TestApp) {
    let (client, csrf) = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let change = |cur: &str, new: &str| {
        client
            .post(app.url("/v1/me/password"))
            .header("x-csrf-token", &csrf)
            .json(&json!({ "current_password": cur, "new_password": new }))
            .send()
    };
    let (s, e) = error_of(change(ADMIN_PASSWORD, "short").await.unwrap()).await;
    assert_eq!((s, e["param"].as_str()), (400, Some("new_password")));
    let (s, e) = error_of(
        change("wrong current pw", "a much longer password")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e["param"].as_str()), (400, Some("current_password")));
    assert_eq!(
        change(ADMIN_PASSWORD, "a much longer password")
            .await
            .unwrap()
            .status(),
        204
    );
    app.sign_in(ADMIN_EMAIL, "a much longer password").await;

    // A password change signs out the user's other sessions, not the one making it.
    let (other, _) = app.sign_in(ADMIN_EMAIL, "a much longer password").await;
    assert_eq!(
        other.get(app.url("/v1/me")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        change("a much longer password", "yet another long password")
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        other.get(app.url("/v1/me")).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        client.get(app.url("/v1/me")).send().await.unwrap().status(),
        200
    );

    // Keys have no password.
    let key = app.admin_key(&[]).await;
    let res = app
        .http
        .post(app.url("/v1/me/password"))
        .bearer_auth(key)
        .json(&json!({ "current_password": "x", "new_password": "a much longer password" }))
        .send()
        .await
        .unwrap();
    let (s, e) = error_of(res).await;
    assert_eq!(s, 403);
    assert_eq!(e["type"], "permission_denied");
}
both_backends!(password_change);

async fn bad_input_gets_the_error_object(app: TestApp) {
    let post = |body: &'static [u8], ct: Option<&'static str>| {
        let mut r = app.http.post(app.url("/v1/session")).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    let json = Some("application/json");
    let (s, e) = error_of(post(b"{not json", json).await.unwrap()).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_json")));
    let (s, e) = error_of(
        post(br#"{"email":"a@b.c","password":"x","remember":true}"#, json)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, e["code"].as_str(), e["param"].as_str()),
        (400, Some("unknown_field"), Some("remember"))
    );
    let (s, e) = error_of(post(br#"{"email":1,"password":"x"}"#, json).await.unwrap()).await;
    assert_eq!((s, e["param"].as_str()), (400, Some("email")));
    let (s, e) = error_of(post(br#"{"email":"a@b.c"}"#, json).await.unwrap()).await;
    assert_eq!((s, e["param"].as_str()), (400, Some("password")));
    let (s, _) = error_of(
        post(br#"{"email":"a@b.c","password":"x"}"#, None)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 415);
    let (s, _) = error_of(
        post(br#"{"email":"a@b.c","password":"x"}"#, Some("text/plain"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 415);
    let big = format!(
        r#"{{"email":"a@b.c","password":"{}"}}"#,
        "x".repeat(1024 * 1024 + 10)
    );
    let res = app
        .http
        .post(app.url("/v1/session"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let (s, _) = error_of(res).await;
    assert_eq!(s, 413);
    let (s, e) = error_of(
        app.http
            .get(app.url("/v1/nothing-here"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e["type"].as_str()), (404, Some("not_found")));
    let (s, _) = error_of(app.http.put(app.url("/v1/session")).send().await.unwrap()).await;
    assert_eq!(s, 405);
}
both_backends!(bad_input_gets_the_error_object);

async fn request_ids_are_echoed(app: TestApp) {
    let res = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let rid = res.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(rid.len(), 26);
}
both_backends!(request_ids_are_echoed);

async fn readiness_follows_the_database(app: TestApp) {
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.db.store.close().await;
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
both_backends!(readiness_follows_the_database);

/// A key limited to some networks is refused for management calls from elsewhere.
async fn management_calls_honour_allowed_cidrs(app: TestApp) {
    let (client, csrf) = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let o = format!("/v1/organizations/{}", app.org_id);
    let mut keys = Vec::new();
    for (name, cidrs) in [
        ("elsewhere", json!(["10.0.0.0/8", "2001:db8::/32"])),
        ("loopback", json!(["10.0.0.0/8", "127.0.0.1"])),
        ("anywhere", json!([])),
    ] {
        let body: Value = client
            .post(app.url(&format!("{o}/api-keys")))
            .header("x-csrf-token", &csrf)
            .json(&json!({"name": name, "roles": ["admin"], "allowed_cidrs": cidrs}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        keys.push(body["key"].as_str().unwrap().to_string());
    }
    for path in ["/v1/me".to_string(), format!("{o}/api-keys")] {
        let res = app
            .http
            .get(app.url(&path))
            .bearer_auth(&keys[0])
            .send()
            .await
            .unwrap();
        let (s, e) = error_of(res).await;
        assert_eq!(s, 401, "{path}: {e}");
        assert_eq!(e["type"], "authentication_required");
        for k in &keys[1..] {
            let res = app
                .http
                .get(app.url(&path))
                .bearer_auth(k)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{path}");
        }
    }
}
both_backends!(management_calls_honour_allowed_cidrs);

/// Several nodes starting on one empty database create one organization between them.
async fn concurrent_first_starts_bootstrap_once(db: keyhaven_store::testing::TestDb) {
    use keyhaven_service::organizations::Bootstrap;
    use keyhaven_service::{Service, SystemClock};
    let key = keyhaven_service::secrets::MasterKey::from_base64(
        "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
    )
    .unwrap();
    let nodes: Vec<_> = (0..4)
        .map(|_| {
            let svc = Service::new(
                db.store.clone(),
                std::sync::Arc::new(SystemClock),
                key.clone(),
            );
            tokio::spawn(async move {
                svc.bootstrap("admin@localhost", Some("a long enough password"))
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for n in nodes {
        match n.await.unwrap() {
            Ok(Bootstrap::Created { .. }) => created += 1,
            Ok(Bootstrap::AlreadyInitialized) => {}
            Err(e) => panic!("a first start failed: {e}"),
        }
    }
    assert_eq!(created, 1);
    let mut tx = db.store.read().await.unwrap();
    assert_eq!(tx.organizations().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_starts_bootstrap_once_sqlite() {
    concurrent_first_starts_bootstrap_once(keyhaven_store::testing::TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_starts_bootstrap_once_postgres() {
    if let Some(db) =
        keyhaven_store::testing::TestDb::postgres("concurrent_first_starts_bootstrap_once").await
    {
        concurrent_first_starts_bootstrap_once(db).await;
    }
}

/// A client from its own loopback address (`127.0.0.<n>`): the server sees each as a
/// different client.
fn client_from(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, n)))
        .build()
        .unwrap()
}

/// Failures count per client address: an attacker failing five times for the owner's
/// email locks out their own address, not the owner; one address failing for many
/// emails is stopped too.
async fn failures_from_one_address_do_not_lock_out_the_owner(app: TestApp) {
    use keyhaven_service::sessions::MAX_ADDRESS_FAILURES;
    let send = |client: &reqwest::Client, email: &str, pw: &str| {
        client
            .post(app.url("/v1/session"))
            .json(&json!({ "email": email, "password": pw }))
            .send()
    };
    let attacker = client_from(2);
    for _ in 0..5 {
        let res = send(&attacker, ADMIN_EMAIL, "not the password")
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    let res = send(&attacker, ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(res.status(), 429, "the attacker's address waits");
    assert!(res.headers().contains_key("retry-after"));
    // The owner, from another address, is not locked out.
    let owner = client_from(3);
    let res = send(&owner, ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(
        res.status(),
        200,
        "the owner signs in from their own address"
    );

    // One address trying many emails is limited as a whole.
    let sprayer = client_from(4);
    for i in 0..MAX_ADDRESS_FAILURES {
        let res = send(
            &sprayer,
            &format!("nobody{i}@example.com"),
            "not the password",
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 401, "attempt {i}");
    }
    let res = send(&sprayer, "someone-else@example.com", "not the password")
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let (_, e) = error_of(res).await;
    assert_eq!(e["type"], "rate_limited");
    // Other addresses are not affected.
    let res = send(&owner, ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(res.status(), 200);
}
both_backends!(failures_from_one_address_do_not_lock_out_the_owner);
