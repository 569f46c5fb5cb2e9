//! The server under hostile or broken conditions: forged keys with valid checksums
//! answered from memory, a cached key's maximum age, a panicking handler on the
//! verification hot path, and a database outage.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{CountingStore, TestApp};
use keyhaven_store::testing::TestDb;
use serde_json::{json, Value};

/// The app on `db`, with every transaction it opens counted.
async fn counted(mut db: TestDb) -> (TestApp, Arc<CountingStore>, Arc<dyn keyhaven_store::Store>) {
    let inner = db.store.clone();
    let counting = CountingStore::new(inner.clone());
    db.store = counting.clone();
    (TestApp::spawn(db).await, counting, inner)
}

fn forged() -> String {
    // Well formed, with a valid checksum — and no such key.
    keyhaven_core::key_format::generate("kh", &mut rand::rngs::OsRng)
        .expose()
        .to_string()
}

/// Sends `n` requests, 16 at a time, each with a distinct forged key, through `send`;
/// returns their statuses.
async fn flood<F, Fut>(n: usize, send: F) -> Vec<u16>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = u16> + Send + 'static,
{
    let mut out = Vec::with_capacity(n);
    let mut pending = Vec::new();
    for _ in 0..n {
        pending.push(tokio::spawn(send(forged())));
        if pending.len() == 16 {
            for p in pending.drain(..) {
                out.push(p.await.unwrap());
            }
        }
    }
    for p in pending {
        out.push(p.await.unwrap());
    }
    out
}

/// Forged keys with valid checksums cost no database transaction on `/v1/keys/verify`,
/// `/v1/auth` and Bearer management calls, once the change-log follower has loaded the
/// index of existing digests; real keys keep working on all three.
async fn forged_keys_are_refused_without_the_database(db: TestDb) {
    let (app, counting, inner) = counted(db).await;
    let admin = app.admin_key(&["super-admin"]).await;
    let service = &app.state.service;
    let verifier = service.verifier().clone();
    // The follower loads the index (through the uncounted store: only the requests'
    // transactions are counted).
    let follower = tokio::spawn(keyhaven_service::verify::changes::follow(
        verifier.clone(),
        inner.clone(),
        service.clock().clone(),
        Arc::new(tokio::sync::Notify::new()),
    ));
    for _ in 0..600 {
        if verifier.index.is_loaded() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(verifier.index.is_loaded(), "the follower loads the index");
    // Stop it so the test alone decides when the log was "read" (each read allows a
    // few database confirmations for keys made elsewhere).
    follower.abort();
    let _ = follower.await;
    verifier.index.log_read();

    let http = app.http.clone();
    let base = app.base.clone();
    let n = 400;
    let before = counting.transactions();
    let verify = flood(n, |key| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let res = http
                .post(format!("{base}/v1/keys/verify"))
                .json(&json!({ "key": key }))
                .send()
                .await
                .unwrap();
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["code"], "NOT_FOUND", "{v}");
            200
        }
    })
    .await;
    assert!(verify.iter().all(|s| *s == 200));
    let auth = flood(n, |key| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.get(format!("{base}/v1/auth"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    })
    .await;
    assert!(auth.iter().all(|s| *s == 401), "{auth:?}");
    let bearer = flood(n, |key| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.get(format!("{base}/v1/me"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    })
    .await;
    assert!(bearer.iter().all(|s| *s == 401), "{bearer:?}");
    let spent = counting.transactions() - before;
    let per_key = spent as f64 / (3 * n) as f64;
    eprintln!(
        "{spent} transactions for {} forged keys ({per_key:.4} each)",
        3 * n
    );
    assert!(
        per_key <= 0.01,
        "{spent} transactions for {} forged keys",
        3 * n
    );

    // Real keys still work: the admin's (made before the index was loaded) and one
    // made now.
    let me = http
        .get(format!("{base}/v1/me"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let created: Value = http
        .post(format!("{base}/v1/organizations/{}/api-keys", app.org_id))
        .bearer_auth(&admin)
        .json(&json!({"name": "fresh"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fresh = created["key"].as_str().unwrap();
    let v: Value = http
        .post(format!("{base}/v1/keys/verify"))
        .json(&json!({ "key": fresh }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["code"], "VALID", "{v}");
}

/// A key made by another node moments ago — not yet in this node's index — is still
/// found (a few such lookups are allowed between two reads of the change log).
async fn a_key_from_another_node_verifies_at_once(db: TestDb) {
    let (app, _, inner) = counted(db).await;
    let verifier = app.state.service.verifier().clone();
    verifier.load_index(&inner).await.unwrap();
    verifier.index.log_read();
    let other = keyhaven_service::Service::new(
        inner.clone(),
        app.clock.clone(),
        app.state.config.master_key.clone(),
    );
    let caller = keyhaven_service::Caller::system(
        keyhaven_core::id::Id::from_trusted(app.org_id.clone()),
        "test",
    );
    let mut tx = inner.read().await.unwrap();
    let admin = tx
        .user_by_email(crate::support::ADMIN_EMAIL)
        .await
        .unwrap()
        .unwrap();
    drop(tx);
    let (_, _, secret) = other
        .create_api_key(
            &caller,
            keyhaven_service::api_keys::CreateApiKey {
                name: "elsewhere".into(),
                owner: Some(keyhaven_service::api_keys::OwnerRef {
                    kind: keyhaven_core::principal::PrincipalKind::User,
                    id: admin.id.to_string(),
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let v: Value = app
        .http
        .post(app.url("/v1/keys/verify"))
        .json(&json!({ "key": secret.expose() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["code"], "VALID", "{v}");
}

/// A cached record is read again once past its maximum age, in the background: a
/// revocation the change log never carried (a missed row) ends within that age.
async fn cached_keys_are_rechecked_after_their_maximum_age(db: TestDb) {
    let (app, _, inner) = counted(db).await;
    let admin = app.admin_key(&["super-admin"]).await;
    let code = |key: String| {
        let http = app.http.clone();
        let url = app.url("/v1/keys/verify");
        async move {
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
        }
    };
    assert_eq!(code(admin.clone()).await, "VALID");
    // Revoked behind the cache's back: no change-log row.
    let digest = keyhaven_core::key_format::digest_hex(&admin);
    let mut tx = inner.begin().await.unwrap();
    let mut k = tx.api_key_by_digest(&digest).await.unwrap().unwrap().key;
    k.revoked_at = Some(keyhaven_core::time::Clock::now(app.clock.as_ref()));
    tx.update_api_key(&k).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(code(admin.clone()).await, "VALID", "cached");
    let verifier = app.state.service.verifier();
    // Younger than the maximum age: left alone.
    assert_eq!(verifier.recheck_stale().await.unwrap(), 0);
    app.clock.advance(chrono::Duration::milliseconds(
        keyhaven_service::verify::cache::MAX_AGE_MS,
    ));
    // Not re-read on the request path…
    assert_eq!(code(admin.clone()).await, "VALID");
    // …but by the background re-check.
    assert_eq!(verifier.recheck_stale().await.unwrap(), 1);
    assert_eq!(code(admin.clone()).await, "REVOKED");
}

/// A panic on the verification hot path answers the 500 error object (with the request
/// id) instead of dropping the connection, on both hot routes.
async fn a_panic_on_the_hot_path_answers_the_error_object(db: TestDb) {
    let (app, counting, _) = counted(db).await;
    counting.panic_on_open(true);
    let res = app
        .http
        .post(app.url("/v1/keys/verify"))
        .header("x-request-id", "hot-panic-1")
        .json(&json!({ "key": forged() }))
        .send()
        .await
        .expect("an answer, not a dropped connection");
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["x-request-id"], "hot-panic-1");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "internal");
    assert_eq!(v["error"]["request_id"], "hot-panic-1");
    assert!(!v.to_string().contains("told to panic"), "{v}");
    let res = app
        .http
        .get(app.url("/v1/auth"))
        .bearer_auth(forged())
        .send()
        .await
        .expect("an answer, not a dropped connection");
    assert_eq!(res.status(), 500);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "internal");
    counting.panic_on_open(false);
    // The server goes on serving.
    let v: Value = app
        .http
        .post(app.url("/v1/keys/verify"))
        .json(&json!({ "key": forged() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["code"], "NOT_FOUND");
}

/// Strings shaped like keys of other systems cost no database transaction once the
/// index is loaded — those matching no imported key, and guesses behind the clear
/// prefix of a key imported with a slow hash (its candidates are read once) — while the
/// imported keys themselves verify.
async fn foreign_strings_are_refused_without_the_database(db: TestDb) {
    let (app, counting, inner) = counted(db).await;
    let admin = crate::support::Client::bearer(&app, &app.admin_key(&["super-admin"]).await).await;
    let pbkdf2 = {
        use base64::Engine;
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
            b"Pf00Pf00.TheImportedSecretPart",
            b"salt",
            1000,
            &mut out,
        );
        format!(
            "pbkdf2_sha256$1000$salt${}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    };
    admin
        .post(
            "/api-keys/import",
            json!({"keys": [
                {"name": "plain", "key": "legacy_PlainImportedKeyNumberOne"},
                {"name": "slow", "hash": {"algorithm": "pbkdf2_sha256", "value": pbkdf2,
                    "lookup": {"prefix": "Pf00Pf00"}}},
            ]}),
        )
        .await
        .ok(200);
    let verifier = app.state.service.verifier().clone();
    verifier.load_index(&inner).await.unwrap();
    verifier.index.log_read();
    let http = app.http.clone();
    let base = app.base.clone();
    let n = 300;
    let send = |forged: String| {
        let (http, base) = (http.clone(), base.clone());
        // Two shapes: an unknown system's key, and a guess behind the real prefix.
        let tail = forged[3..].to_string();
        let guess = if tail.as_bytes()[0] % 2 == 0 {
            format!("sk_test_{tail}")
        } else {
            format!("Pf00Pf00.{tail}")
        };
        async move {
            let v: Value = http
                .post(format!("{base}/v1/keys/verify"))
                .json(&json!({ "key": guess }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(v["code"], "NOT_FOUND", "{guess}: {v}");
            200
        }
    };
    // The first flood may spend the few confirmations allowed between two reads of the
    // change log, and read the prefix's candidates once per request in flight; a bound
    // that does not grow with the flood.
    let before = counting.transactions();
    assert!(flood(n, send).await.iter().all(|c| *c == 200));
    let first = counting.transactions() - before;
    eprintln!("{first} transactions for the first {n} foreign strings");
    let bound = keyhaven_service::verify::index::CONFIRMATIONS_PER_READ as u64 + 16;
    assert!(
        first <= bound,
        "{first} transactions for {n} foreign strings"
    );
    // After that, none at all.
    let before = counting.transactions();
    assert!(flood(n, send).await.iter().all(|c| *c == 200));
    let second = counting.transactions() - before;
    assert_eq!(
        second, 0,
        "{second} transactions for {n} more foreign strings"
    );
    // The real ones verify (the slow one is then settled by its SHA-256 digest).
    for key in [
        "legacy_PlainImportedKeyNumberOne",
        "Pf00Pf00.TheImportedSecretPart",
    ] {
        let v = crate::support::verify(&app, json!({ "key": key })).await;
        assert_eq!(v["code"], "VALID", "{key}: {v}");
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(keyhaven_store::testing::TestDb::sqlite().await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(db) =
                        keyhaven_store::testing::TestDb::postgres(stringify!($name)).await
                    {
                        super::$name(db).await;
                    }
                }
            }
        )*
    };
}

on_both!(
    forged_keys_are_refused_without_the_database,
    a_key_from_another_node_verifies_at_once,
    cached_keys_are_rechecked_after_their_maximum_age,
    a_panic_on_the_hot_path_answers_the_error_object,
    foreign_strings_are_refused_without_the_database,
);

/// A PostgreSQL cluster of the test's own (`pg_createcluster`), on a free port, so it
/// can be stopped without touching the shared server; dropped with this value.
struct Cluster {
    name: String,
    port: u16,
}

impl Cluster {
    fn run(args: &[&str]) -> std::process::Output {
        std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// A new, started cluster, or `None` (after a loud message) where the PostgreSQL
    /// cluster tools are missing, outside CI.
    fn start() -> Option<Cluster> {
        if which("pg_createcluster").is_none() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but pg_createcluster is missing");
            }
            eprintln!("\n*** SKIPPED outage test: no pg_createcluster ***\n");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let name = format!("kh_outage_{port}");
        let out = Self::run(&[
            "pg_createcluster",
            "15",
            &name,
            "--port",
            &port.to_string(),
            "--",
            "--auth-host=trust",
        ]);
        assert!(out.status.success(), "pg_createcluster: {out:?}");
        let cluster = Cluster { name, port };
        cluster.ctl("start");
        Some(cluster)
    }

    fn ctl(&self, action: &str) {
        let out = Self::run(&["pg_ctlcluster", "15", &self.name, action]);
        assert!(out.status.success(), "pg_ctlcluster {action}: {out:?}");
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Self::run(&["pg_dropcluster", "15", &self.name, "--stop"]);
    }
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

/// In a PostgreSQL outage, management calls answer 503 `unavailable` with
/// `Retry-After` (after the pool's short acquire timeout, not 500 after five seconds),
/// keys already cached keep verifying, and the server recovers without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_recovers() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let db = TestDb::postgres_at(&cluster.admin_url(), "outage")
        .await
        .expect("the test's own cluster");
    let app = TestApp::spawn(db).await;
    let admin = app.admin_key(&["super-admin"]).await;
    let list = || {
        app.http
            .get(app.url(&format!("/v1/organizations/{}/api-keys", app.org_id)))
            .bearer_auth(&admin)
            .send()
    };
    let verify = |key: String| {
        let http = app.http.clone();
        let url = app.url("/v1/keys/verify");
        async move {
            http.post(url)
                .json(&json!({ "key": key }))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(list().await.unwrap().status(), 200);
    let code = |res: reqwest::Response| async move {
        let v: Value = res.json().await.unwrap();
        v["code"].as_str().unwrap_or_default().to_string()
    };
    // Cached by its first verification.
    assert_eq!(code(verify(admin.clone()).await).await, "VALID");
    // A key with a small balance: inside the last 1,000 credits every call leases from
    // the database, so in an outage its calls cannot be metered.
    let created: Value = app
        .http
        .post(app.url(&format!("/v1/organizations/{}/api-keys", app.org_id)))
        .bearer_auth(&admin)
        .json(&json!({"name": "metered", "credits": {"remaining": 5}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let metered = created["key"].as_str().unwrap().to_string();
    assert_eq!(code(verify(metered.clone()).await).await, "VALID");

    cluster.ctl("stop");
    let res = list().await.unwrap();
    assert_eq!(res.status(), 503);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "unavailable", "{v}");
    assert_eq!(v["error"]["code"], "database_unavailable", "{v}");
    // The cached key keeps verifying; an unknown one cannot be checked now.
    assert_eq!(code(verify(admin.clone()).await).await, "VALID");
    let res = verify(forged()).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    // A limited key is never let through unmetered: the documented 503.
    let res = verify(metered.clone()).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "unavailable", "{v}");

    cluster.ctl("start");
    let mut status = 0;
    for _ in 0..120 {
        status = list().await.unwrap().status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, 200, "recovered without a restart");
    assert_eq!(code(verify(metered).await).await, "VALID", "metered again");
    drop(app);
}
