//! IMPORT.md through the API, on SQLite and PostgreSQL: keys imported as plain strings
//! and as other systems' hashes verify unchanged (and slow hashes are replaced by a
//! SHA-256 digest on first use), per-item errors and dry runs, `external_id`,
//! `enabled`, `metadata` in the verify answer, permission expressions and whoami.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use keyhaven_core::import::Lookup;
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};

use crate::support::{super_admin, verify, Client, TestApp};

const PLAIN: &str = "sk_live_51PlainKeyFromAnotherSystem";
const B64URL: &str = "ba_KeyWhoseSha256IsBase64urlEncoded01";
const B64: &str = "unkey_3ZSha256StoredAsStandardBase64x";
const DRF: &str = "Ab12Cd34.DrfSha512KeyMadeByThePackage";
const PBKDF2: &str = "Zz98Yy76.DjangoPbkdf2HashedKeyValue01";
const BCRYPT: &str = "bc1234ab.BcryptHashedKeyFromLegacyApp";
const ARGON: &str = "ar1234ab.Argon2idHashedKeyFromLegacyX";
const REVOKED: &str = "sk_live_51RevokedKeyCarriedOverToo";
const EXPIRED: &str = "sk_live_51ExpiredKeyCarriedOverToo";

fn pbkdf2_django(key: &str, salt: &str, iterations: u32) -> String {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(key.as_bytes(), salt.as_bytes(), iterations, &mut out);
    format!("pbkdf2_sha256${iterations}${salt}${}", STANDARD.encode(out))
}

fn argon2id(key: &str) -> String {
    use argon2::PasswordHasher;
    let salt = argon2::password_hash::SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
    argon2::Argon2::default()
        .hash_password(key.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

fn items() -> Value {
    json!([
        {"name": "plain", "key": PLAIN, "external_id": "cus_1", "metadata": {"plan": "pro"}},
        {"name": "b64url", "hash": {"algorithm": "sha256",
            "value": URL_SAFE_NO_PAD.encode(Sha256::digest(B64URL.as_bytes()))}},
        {"name": "b64", "hash": {"algorithm": "sha256",
            "value": STANDARD.encode(Sha256::digest(B64.as_bytes()))}},
        {"name": "drf", "hash": {"algorithm": "sha512",
            "value": format!("sha512$${}", hex::encode(Sha512::digest(DRF.as_bytes())))}},
        {"name": "pbkdf2", "hash": {"algorithm": "pbkdf2_sha256",
            "value": pbkdf2_django(PBKDF2, "NaClNaCl", 1000), "lookup": {"prefix": "Zz98Yy76"}},
            "created_at": "2024-01-02T03:04:05Z"},
        {"name": "bcrypt", "hash": {"algorithm": "bcrypt",
            "value": bcrypt::hash(BCRYPT, 4).unwrap(), "lookup": {"prefix": "bc1234ab"}}},
        {"name": "argon", "hash": {"algorithm": "argon2id",
            "value": argon2id(ARGON), "lookup": {"prefix": "ar1234ab"}}},
        {"name": "revoked", "key": REVOKED, "revoked": true},
        {"name": "expired", "key": EXPIRED, "expires_at": "2025-01-01T00:00:00Z"},
    ])
}

async fn auth_status(app: &TestApp, key: &str) -> (u16, reqwest::header::HeaderMap) {
    let r = app
        .http
        .get(app.url("/v1/auth"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.headers().clone())
}

async fn code(app: &TestApp, key: &str) -> String {
    verify(app, json!({ "key": key })).await["code"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn imported_keys_verify_with_their_original_strings(app: TestApp) {
    let sa = super_admin(&app).await;
    let r = sa
        .post("/api-keys/import", json!({"keys": items()}))
        .await
        .ok(200);
    assert_eq!(r["errors"], json!([]), "{r}");
    let imported = r["imported"].as_array().unwrap();
    assert_eq!(imported.len(), 9);
    let id_of = |name: &str| -> String {
        let i = items()
            .as_array()
            .unwrap()
            .iter()
            .position(|it| it["name"] == name)
            .unwrap();
        imported.iter().find(|x| x["index"] == i).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    for key in [PLAIN, B64URL, B64, DRF, PBKDF2, BCRYPT, ARGON] {
        assert_eq!(code(&app, key).await, "VALID", "{key}");
        // Again: now from the cache (and, for the hashed ones, by SHA-256).
        assert_eq!(code(&app, key).await, "VALID", "{key}");
        let (status, _) = auth_status(&app, key).await;
        assert_eq!(status, 200, "{key}");
    }
    assert_eq!(code(&app, REVOKED).await, "REVOKED");
    assert_eq!(code(&app, EXPIRED).await, "EXPIRED");
    assert_eq!(auth_status(&app, REVOKED).await.0, 401);
    // Wrong secrets behind a known prefix, and strings no key has.
    assert_eq!(
        code(&app, "Zz98Yy76.NotTheRightSecretAtAll1").await,
        "NOT_FOUND"
    );
    assert_eq!(
        code(&app, "bc1234ab.NotTheRightSecretAtAll1").await,
        "NOT_FOUND"
    );
    assert_eq!(
        code(&app, "sk_live_51NoSuchKeyExistsAnywhere").await,
        "NOT_FOUND"
    );
    assert_eq!(code(&app, "short").await, "MALFORMED");
    assert_eq!(
        code(&app, "has spaces in it, so it is no key").await,
        "MALFORMED"
    );

    // The verify answer carries what integrations read back.
    let v = verify(&app, json!({"key": PLAIN})).await;
    assert_eq!(v["external_id"], "cus_1");
    assert_eq!(v["metadata"], json!({"plan": "pro"}));
    assert_eq!(v["enabled"], true);
    let (_, h) = auth_status(&app, PLAIN).await;
    assert_eq!(h["x-keyhaven-external-id"], "cus_1");

    // The slow hashes are gone: each key is now stored by its SHA-256 digest.
    let mut tx = app.db.store.read().await.unwrap();
    for prefix in ["Zz98Yy76", "bc1234ab", "ar1234ab"] {
        let left = tx
            .pending_hashes(&Lookup::Prefix(prefix.into()))
            .await
            .unwrap();
        assert!(left.is_empty(), "{prefix}: {left:?}");
    }
    let drf = Lookup::Sha512(hex::encode(Sha512::digest(DRF.as_bytes())));
    assert!(tx.pending_hashes(&drf).await.unwrap().is_empty());
    for key in [PBKDF2, BCRYPT, ARGON, DRF] {
        let found = tx
            .api_key_by_digest(&keyhaven_core::key_format::digest_hex(key))
            .await
            .unwrap();
        assert!(found.is_some(), "{key} is found by its SHA-256 digest");
    }
    drop(tx);

    // The key's view: masked, imported, its history carried over.
    let k = sa
        .get(&format!("/api-keys/{}", id_of("pbkdf2")))
        .await
        .ok(200);
    assert_eq!(k["created_at"], "2024-01-02T03:04:05Z");
    assert!(k["imported_at"].is_string());
    assert_eq!(k["masked_key"], "Zz98…ue01", "the mask is set on first use");
    assert!(!k.to_string().contains("pbkdf2_sha256$"), "{k}");
    let k = sa
        .get(&format!("/api-keys/{}", id_of("revoked")))
        .await
        .ok(200);
    assert_eq!(k["status"], "revoked");

    // Audited, one entry per key, without any secret or hash.
    let events = sa.all("/audit-events?action=api_key.import").await;
    assert_eq!(events.len(), 9);
    let text = serde_json::to_string(&events).unwrap();
    for secret in [PLAIN, "sha512$$", "pbkdf2_sha256$", "$2b$", "$argon2id$"] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }
    let e = events
        .iter()
        .find(|e| e["target"]["name"] == "pbkdf2")
        .unwrap();
    assert_eq!(e["changes"]["algorithm"], "pbkdf2_sha256");

    // Regenerating an imported key gives it a secret in Keyhaven's format.
    let r = sa
        .post(
            &format!("/api-keys/{}/regenerate", id_of("bcrypt")),
            json!({"expires_at": null}),
        )
        .await
        .ok(200);
    let new = r["key"].as_str().unwrap();
    assert!(keyhaven_core::key_format::parse(new).is_ok(), "{new}");
    assert_eq!(code(&app, new).await, "VALID");
    assert_eq!(code(&app, BCRYPT).await, "NOT_FOUND");
}
both_backends!(imported_keys_verify_with_their_original_strings);

async fn a_bad_item_never_stops_the_others(app: TestApp) {
    let sa = super_admin(&app).await;
    let body = json!({"keys": [
        {"name": "good", "key": "goodkey_0123456789abcdef"},
        {"name": "both", "key": "bothkey_0123456789abcdef", "hash": {"algorithm": "sha256", "value": "00"}},
        {"name": "neither"},
        {"name": "algo", "hash": {"algorithm": "md5", "value": "abc"}},
        {"name": "slow", "hash": {"algorithm": "bcrypt", "value": bcrypt::hash("slowkey_0123456789", 4).unwrap()}},
        {"name": "short", "key": "tooshort"},
        {"name": 7, "key": "typedkey_0123456789abcdef"},
        "not an object",
        {"name": "good", "key": "dupname_0123456789abcdef"},
        {"name": "again", "key": "goodkey_0123456789abcdef"},
        {"name": "unknown", "key": "unknown_0123456789abcdef", "colour": "blue"},
        {"name": "future", "key": "futurekey_0123456789abcdef", "created_at": "2999-01-01T00:00:00Z"},
    ]});
    let dry = sa
        .post(
            "/api-keys/import",
            json!({"keys": body["keys"], "dry_run": true}),
        )
        .await
        .ok(200);
    assert_eq!(dry["dry_run"], true);
    let check = |r: &Value| {
        let imported: Vec<u64> = r["imported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["index"].as_u64().unwrap())
            .collect();
        assert_eq!(imported, vec![0], "{r}");
        let errors = r["errors"].as_array().unwrap();
        let param = |i: u64| {
            errors
                .iter()
                .find(|e| e["index"] == i)
                .unwrap_or_else(|| panic!("no error for item {i}: {r}"))["param"]
                .clone()
        };
        assert_eq!(errors.len(), 11, "{r}");
        assert_eq!(param(1), "hash");
        assert_eq!(param(2), "key");
        assert_eq!(param(3), "hash.algorithm");
        assert_eq!(param(4), "hash.lookup.prefix");
        assert_eq!(param(5), "key");
        assert_eq!(param(6), "name");
        assert_eq!(param(10), "colour");
        assert_eq!(param(11), "created_at");
        for i in [8, 9] {
            let e = errors.iter().find(|e| e["index"] == i).unwrap();
            assert!(
                ["name_taken", "key_exists"].contains(&e["code"].as_str().unwrap()),
                "{e}"
            );
        }
        for e in errors {
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
        }
    };
    check(&dry);
    // The dry run wrote nothing.
    assert!(sa.all("/api-keys?q=good").await.is_empty());
    assert_eq!(code(&app, "goodkey_0123456789abcdef").await, "NOT_FOUND");
    let real = sa.post("/api-keys/import", body).await.ok(200);
    check(&real);
    assert_eq!(code(&app, "goodkey_0123456789abcdef").await, "VALID");

    // Whole-request errors are the contract's 400s.
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"name": format!("k{i}"), "key": format!("manykey_{i:016}")}))
        .collect();
    sa.post("/api-keys/import", json!({"keys": many}))
        .await
        .bad("keys");
    sa.post("/api-keys/import", json!({"keys": "nope"}))
        .await
        .bad("keys");
    sa.post("/api-keys/import", json!({})).await.bad("keys");
    // Without api_keys.create: 403.
    let viewer_key = app.admin_key(&["read-only"]).await;
    let viewer = Client::bearer(&app, &viewer_key).await;
    viewer
        .post("/api-keys/import", json!({"keys": []}))
        .await
        .err(403);
}
both_backends!(a_bad_item_never_stops_the_others);

async fn enabled_external_id_and_permission_expressions(app: TestApp) {
    let sa = super_admin(&app).await;
    let owner = sa.create_sa("orders-service", &[]).await;
    let owner_id = owner["id"].as_str().unwrap();
    let r = sa
        .patch(
            &format!("/service-accounts/{owner_id}"),
            json!({"external_id": "tenant-42"}),
        )
        .await
        .ok(200);
    assert_eq!(r["external_id"], "tenant-42");
    let found = sa.all("/service-accounts?external_id=tenant-42").await;
    assert_eq!(found.len(), 1);
    assert!(sa
        .all("/service-accounts?external_id=other")
        .await
        .is_empty());

    let (k, key) = sa
        .create_key(
            json!({"name": "orders", "owner": {"type": "service_account", "id": owner_id},
            "scopes": ["orders:read", "orders:write"], "external_id": "cus_9",
            "metadata": {"tier": "gold", "n": 3}}),
        )
        .await;
    let id = k["id"].as_str().unwrap();
    assert_eq!(k["external_id"], "cus_9");
    assert_eq!(k["enabled"], true);
    assert_eq!(sa.all("/api-keys?external_id=cus_9").await.len(), 1);
    assert!(sa.all("/api-keys?external_id=cus_0").await.is_empty());
    sa.post("/api-keys", json!({"name": "x", "external_id": ""}))
        .await
        .bad("external_id");
    sa.post(
        "/api-keys",
        json!({"name": "x", "external_id": "a".repeat(256)}),
    )
    .await
    .bad("external_id");

    let v = verify(&app, json!({"key": key})).await;
    assert_eq!(v["metadata"], json!({"tier": "gold", "n": 3}));
    assert_eq!(v["external_id"], "cus_9");

    // Expressions: AND binds tighter than OR, parentheses group.
    let with = |p: Value| verify(&app, json!({"key": key, "permissions": p}));
    assert_eq!(
        with(json!("orders:read AND (orders:write OR admin)")).await["code"],
        "VALID"
    );
    assert_eq!(
        with(json!("orders:read AND admin")).await["code"],
        "FORBIDDEN"
    );
    assert_eq!(with(json!("admin OR orders:write")).await["code"], "VALID");
    assert_eq!(
        with(json!(["orders:read", "orders:write"])).await["code"],
        "VALID"
    );
    assert_eq!(
        with(json!(["orders:read", "admin"])).await["code"],
        "FORBIDDEN"
    );
    for bad in ["orders:read AND", "(orders:read", "a b", ""] {
        let r = app
            .http
            .post(app.url("/v1/keys/verify"))
            .json(&json!({"key": key, "permissions": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["param"], "permissions", "{bad}: {e}");
    }
    let long = format!("{}orders:read", "admin OR ".repeat(120));
    let r = app
        .http
        .post(app.url("/v1/keys/verify"))
        .json(&json!({"key": key, "permissions": long}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "over 1,000 characters");
    let r = app
        .http
        .post(app.url("/v1/keys/verify"))
        .json(&json!({"key": key, "permissions": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Forward auth takes the same expressions.
    let fa = |q: &str| {
        let req = app
            .http
            .get(app.url("/v1/auth"))
            .query(&[("permissions", q)])
            .bearer_auth(&key);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(fa("orders:read AND (orders:write OR admin)").await, 200);
    assert_eq!(fa("orders:read AND admin").await, 403);
    assert_eq!(fa("orders:read,orders:write").await, 200);
    assert_eq!(fa("orders:read AND (").await, 400);

    // enabled: off without revoking, audited, back on.
    let r = sa
        .patch(&format!("/api-keys/{id}"), json!({"enabled": false}))
        .await;
    let off = r.ok(200);
    assert_eq!(off["enabled"], false);
    assert_eq!(off["status"], "active");
    sa.assert_audited(&r, &sa, "api_key.update", id).await;
    let v = verify(&app, json!({"key": key})).await;
    assert_eq!(v["code"], "DISABLED");
    assert_eq!(v["enabled"], false);
    let r = app
        .http
        .get(app.url("/v1/auth"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A management key turned off no longer authenticates either.
    let (admin_k, admin_secret) = sa
        .create_key(json!({"name": "ops", "roles": ["read-only"]}))
        .await;
    assert_eq!(crate::support::me_status(&app, &admin_secret).await, 200);
    sa.patch(
        &format!("/api-keys/{}", admin_k["id"].as_str().unwrap()),
        json!({"enabled": false}),
    )
    .await
    .ok(200);
    assert_eq!(crate::support::me_status(&app, &admin_secret).await, 401);
    sa.patch(&format!("/api-keys/{id}"), json!({"enabled": true}))
        .await
        .ok(200);
    assert_eq!(verify(&app, json!({"key": key})).await["code"], "VALID");
    sa.patch(&format!("/api-keys/{id}"), json!({"enabled": "no"}))
        .await
        .bad("enabled");
    // Cleared.
    let r = sa
        .patch(&format!("/api-keys/{id}"), json!({"external_id": null}))
        .await
        .ok(200);
    assert_eq!(r["external_id"], Value::Null);
}
both_backends!(enabled_external_id_and_permission_expressions);

async fn whoami_finds_a_key_by_its_secret(app: TestApp) {
    let sa = super_admin(&app).await;
    let (k, key) = sa.create_key(json!({"name": "customer-key"})).await;
    let r = sa.post("/v1/keys/whoami", json!({"key": key})).await;
    let found = r.ok(200);
    assert_eq!(found["id"], k["id"]);
    assert!(found.get("key").is_none(), "never the secret");
    sa.assert_audited(&r, &sa, "api_key.whoami", k["id"].as_str().unwrap())
        .await;
    // An imported key, by its original string.
    sa.post(
        "/api-keys/import",
        json!({"keys": [{"name": "legacy", "key": PLAIN}]}),
    )
    .await
    .ok(200);
    let found = sa
        .post("/v1/keys/whoami", json!({"key": PLAIN}))
        .await
        .ok(200);
    assert_eq!(found["name"], "legacy");
    // Unknown, malformed, another organization's: 404.
    for s in ["sk_live_51NoSuchKeyExistsAnywhere", "nope"] {
        sa.post("/v1/keys/whoami", json!({"key": s})).await.err(404);
    }
    let (other_org, other_key) = app.other_org_key("Other", &["super-admin"]).await;
    let other_client = Client::bearer_in(&app, &other_key, &other_org).await;
    other_client
        .post("/v1/keys/whoami", json!({"key": key}))
        .await
        .err(404);
    // Needs api_keys.view; a wrong body is 400.
    let none = app.admin_key(&[]).await;
    Client::bearer(&app, &none)
        .await
        .post("/v1/keys/whoami", json!({"key": key}))
        .await
        .err(403);
    sa.post("/v1/keys/whoami", json!({"key": 5}))
        .await
        .bad("key");
    sa.post("/v1/keys/whoami", json!({})).await.bad("key");
}
both_backends!(whoami_finds_a_key_by_its_secret);
