//! OAuth 2.0 client credentials over HTTP, on SQLite and PostgreSQL: `POST /oauth/token`
//! (Basic and body authentication, scope narrowing, every RFC 6749 §5.2 refusal), the
//! JWT checked against the published JWKS by an independent library — Python's PyJWT,
//! as a downstream API would (signature, `typ: at+jwt`, `exp`, `iss`, `aud`) — and by
//! hand with the `rsa` crate, the signing key shared across restarts and stored
//! encrypted, and credentials' `last_used_at`.
//!
//! The PyJWT test runs `python3` (or `KEYHAVEN_TEST_PYTHON`); without PyJWT it prints a
//! loud SKIPPED line and passes — except under `CI=true`, where it fails.

use crate::support::{rand_suffix, TestApp};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::Duration;
use keyhaven_core::audit::Outcome;
use keyhaven_core::credential::Credential;
use keyhaven_core::id::Id;
use keyhaven_core::service_account::Transition;
use keyhaven_server::app::AppState;
use keyhaven_service::credentials::CreateCredential;
use keyhaven_service::roles::CreateRole;
use keyhaven_service::service_accounts::CreateServiceAccount;
use keyhaven_service::{Caller, Service};
use keyhaven_store::{AuditFilter, Page};
use rsa::{BigUint, Pkcs1v15Sign, RsaPublicKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::Row;

const FORM: &str = "application/x-www-form-urlencoded";

/// DER prefix of a PKCS#1 v1.5 DigestInfo for SHA-256 (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

fn caller(app: &TestApp) -> Caller {
    Caller::system(Id::from_trusted(app.org_id.clone()), "test")
}

/// A service account (role "integration": read, write, billing:read) and one credential.
struct Client {
    sa_id: Id,
    cred: Credential,
    secret: String,
}

async fn client(app: &TestApp, expires_in: Option<Duration>) -> Client {
    let c = caller(app);
    let service = &app.state.service;
    if service
        .store()
        .read()
        .await
        .unwrap()
        .role(&c.org_id, "integration")
        .await
        .unwrap()
        .is_none()
    {
        service
            .create_role(
                &c,
                CreateRole {
                    name: "integration".into(),
                    description: None,
                    permissions: vec!["read".into(), "write".into(), "billing:read".into()],
                    key_name_pattern: None,
                },
            )
            .await
            .unwrap();
    }
    let sa = service
        .create_service_account(
            &c,
            CreateServiceAccount {
                ratelimits: None,
                name: format!("ci-{}", rand_suffix()),
                description: None,
                roles: Some(vec!["integration".into()]),
                external_id: None,
            },
        )
        .await
        .unwrap();
    let (cred, secret) = service
        .create_credential(
            &c,
            &sa.id,
            CreateCredential {
                name: "deploy".into(),
                description: None,
                expires_at: expires_in.map(|d| service.now() + d),
            },
        )
        .await
        .unwrap();
    Client {
        sa_id: sa.id,
        cred,
        secret: secret.expose().to_string(),
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// RFC 6749 §2.3.1: each part form-urlencoded, then `id:secret` in base64.
fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

/// An answer: status, headers and JSON body.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 6749 §5.2 error and returns its description.
    fn oauth_error(&self, status: u16, error: &str) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["error"], error, "{}", self.body);
        let mut keys: Vec<&String> = self.body.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["error", "error_description"],
            "RFC error object: {}",
            self.body
        );
        assert_eq!(self.header("cache-control"), Some("no-store"));
        if status == 401 {
            assert_eq!(
                self.header("www-authenticate"),
                Some(r#"Basic realm="keyhaven""#)
            );
        }
        self.body["error_description"].as_str().unwrap().to_string()
    }

    /// Asserts a token answer and returns the JWT.
    fn token(&self) -> String {
        assert_eq!(self.status, 200, "{}", self.body);
        assert_eq!(self.header("cache-control"), Some("no-store"));
        assert_eq!(self.body["token_type"], "Bearer");
        assert_eq!(self.body["expires_in"], 900);
        let mut keys: Vec<&String> = self.body.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["access_token", "expires_in", "scope", "token_type"]);
        self.body["access_token"].as_str().unwrap().to_string()
    }
}

async fn post_raw(
    base: &str,
    content_type: Option<&str>,
    authorization: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/oauth/token"))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    Answer {
        status,
        headers,
        body,
    }
}

async fn post_form(app: &TestApp, pairs: &[(&str, &str)], authorization: Option<&str>) -> Answer {
    post_raw(&app.base, Some(FORM), authorization, form(pairs)).await
}

/// Token request with HTTP Basic.
async fn by_basic(app: &TestApp, c: &Client, scope: Option<&str>) -> Answer {
    let mut pairs = vec![("grant_type", "client_credentials")];
    if let Some(s) = scope {
        pairs.push(("scope", s));
    }
    post_form(app, &pairs, Some(&basic(&c.cred.client_id, &c.secret))).await
}

/// Token request with the credentials in the body.
async fn by_body(app: &TestApp, c: &Client) -> Answer {
    post_form(
        app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &c.cred.client_id),
            ("client_secret", &c.secret),
        ],
        None,
    )
    .await
}

async fn get_json(base: &str, path: &str) -> (reqwest::header::HeaderMap, Value) {
    let res = reqwest::get(format!("{base}{path}")).await.unwrap();
    assert_eq!(res.status(), 200, "GET {path}");
    let headers = res.headers().clone();
    (headers, res.json().await.unwrap())
}

fn b64url(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

/// Checks a JWT against a JWKS without `jsonwebtoken`: splits it by hand, builds the RSA
/// public key from the JWK's `n` and `e`, verifies the PKCS#1 v1.5 SHA-256 signature
/// over `header.payload`. Returns (header, claims).
fn verify_jwt(token: &str, jwks: &Value) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS in compact form");
    let header: Value = serde_json::from_slice(&b64url(parts[0])).unwrap();
    let claims: Value = serde_json::from_slice(&b64url(parts[1])).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    let kid = header["kid"].as_str().expect("kid in the header");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("the header's kid is in the JWKS");
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["alg"], "RS256");
    assert_eq!(jwk["use"], "sig");
    let n = BigUint::from_bytes_be(&b64url(jwk["n"].as_str().unwrap()));
    let e = BigUint::from_bytes_be(&b64url(jwk["e"].as_str().unwrap()));
    let key = RsaPublicKey::new(n, e).expect("a valid RSA public key");
    assert_eq!(
        rsa::traits::PublicKeyParts::size(&key),
        256,
        "a 2048-bit modulus"
    );
    let padding = || Pkcs1v15Sign {
        hash_len: Some(32),
        prefix: SHA256_DIGEST_INFO.to_vec().into_boxed_slice(),
    };
    let signed = format!("{}.{}", parts[0], parts[1]);
    let signature = b64url(parts[2]);
    key.verify(padding(), &Sha256::digest(signed.as_bytes()), &signature)
        .expect("the signature verifies with the published key");
    // The check is real: a changed payload does not verify.
    let forged = format!(
        "{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(b"{\"sub\":\"x\"}")
    );
    assert!(key
        .verify(padding(), &Sha256::digest(forged.as_bytes()), &signature)
        .is_err());
    (header, claims)
}

async fn jwks(app: &TestApp) -> Value {
    let (headers, body) = get_json(&app.base, "/.well-known/jwks.json").await;
    assert!(headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(body["keys"].as_array().unwrap().len(), 1);
    body
}

fn assert_claims(app: &TestApp, claims: &Value, c: &Client, scope: &str) {
    let mut keys: Vec<&String> = claims.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "aud",
            "client_id",
            "exp",
            "iat",
            "iss",
            "jti",
            "org_id",
            "scope",
            "sub"
        ]
    );
    let public_url = &app.state.config.public_url;
    assert_eq!(claims["iss"], public_url.as_str());
    assert_eq!(claims["aud"], public_url.as_str());
    assert_eq!(claims["sub"], c.sa_id.as_str());
    assert_eq!(claims["client_id"], c.cred.client_id.as_str());
    assert_eq!(claims["org_id"], app.org_id.as_str());
    assert_eq!(claims["scope"], scope);
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(
        iat,
        app.state.service.now().timestamp(),
        "iat from the injected clock"
    );
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 900);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 26);
}

async fn denied_entries(app: &TestApp) -> Vec<keyhaven_core::audit::AuditEntry> {
    let mut tx = app.db.store.read().await.unwrap();
    tx.list_audit(
        &Id::from_trusted(app.org_id.clone()),
        &AuditFilter {
            action: Some("oauth.token".into()),
            outcome: Some(Outcome::Denied),
            ..Default::default()
        },
        &Page {
            limit: 100,
            cursor: None,
        },
    )
    .await
    .unwrap()
    .items
}

// ---------------------------------------------------------------------------------

async fn tokens_by_basic_and_body_verify_with_the_jwks(app: TestApp) {
    let c = client(&app, None).await;
    let keys = jwks(&app).await;

    let first = by_basic(&app, &c, None).await;
    assert_eq!(first.header("pragma"), Some("no-cache"));
    assert_eq!(first.body["scope"], "billing:read read write");
    let (header, claims) = verify_jwt(&first.token(), &keys);
    assert_eq!(header["kid"], keys["keys"][0]["kid"]);
    assert_claims(&app, &claims, &c, "billing:read read write");

    app.clock.advance(Duration::seconds(42));
    let second = by_body(&app, &c).await;
    let (_, claims2) = verify_jwt(&second.token(), &keys);
    assert_claims(&app, &claims2, &c, "billing:read read write");
    assert_ne!(claims["jti"], claims2["jti"], "every token has its own jti");
    assert_eq!(
        claims2["iat"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        42
    );

    // Charset parameter on the media type, and a client_id in the body equal to the
    // Basic one, are accepted.
    let res = post_raw(
        &app.base,
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        Some(&basic(&c.cred.client_id, &c.secret)),
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.cred.client_id),
        ]),
    )
    .await;
    verify_jwt(&res.token(), &keys);

    // RFC 8414 metadata.
    let (headers, meta) = get_json(&app.base, "/.well-known/oauth-authorization-server").await;
    assert!(headers.get("cache-control").is_some());
    let issuer = app.state.config.public_url.clone();
    assert_eq!(
        meta,
        serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/oauth/token"),
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": [],
        })
    );

    // The endpoints are in the OpenAPI document.
    let (_, doc) = get_json(&app.base, "/v1/openapi.json").await;
    let token_op = &doc["paths"]["/oauth/token"]["post"];
    assert!(
        token_op["requestBody"]["content"][FORM].is_object(),
        "{token_op}"
    );
    assert!(doc["paths"]["/.well-known/jwks.json"]["get"].is_object());
    assert!(doc["paths"]["/.well-known/oauth-authorization-server"]["get"].is_object());
    assert!(doc["components"]["securitySchemes"]["client_secret_basic"].is_object());
}
both_backends!(tokens_by_basic_and_body_verify_with_the_jwks);

async fn scope_narrows_and_never_widens(app: TestApp) {
    let c = client(&app, None).await;
    let keys = jwks(&app).await;

    let res = by_basic(&app, &c, Some("read")).await;
    assert_eq!(res.body["scope"], "read");
    let (_, claims) = verify_jwt(&res.token(), &keys);
    assert_claims(&app, &claims, &c, "read");

    let res = by_basic(&app, &c, Some("write  read write")).await;
    assert_eq!(res.body["scope"], "read write");

    // An empty scope parameter counts as absent (RFC 6749 §3.1): every permission.
    let res = by_basic(&app, &c, Some("")).await;
    assert_eq!(res.body["scope"], "billing:read read write");

    let d = by_basic(&app, &c, Some("read api_keys.manage"))
        .await
        .oauth_error(400, "invalid_scope");
    assert!(d.contains("api_keys.manage"), "{d}");
    by_basic(&app, &c, Some("admin"))
        .await
        .oauth_error(400, "invalid_scope");
    by_basic(&app, &c, Some("bad\"token"))
        .await
        .oauth_error(400, "invalid_scope");
    by_basic(&app, &c, Some("   "))
        .await
        .oauth_error(400, "invalid_scope");

    // A refused scope is audited for the known client, without the secret.
    let denied = denied_entries(&app).await;
    assert_eq!(denied.len(), 2, "the two refused subsets");
    let e = &denied[1];
    assert_eq!(e.draft.actor.id, c.sa_id.as_str());
    assert_eq!(e.draft.target.as_ref().unwrap().id, c.cred.id.as_str());
    assert_eq!(e.draft.changes["reason"], "scope_not_granted");
    assert_eq!(
        e.draft.changes["scope"],
        serde_json::json!(["api_keys.manage"])
    );
    assert!(!e.draft.changes.to_string().contains(&c.secret));
}
both_backends!(scope_narrows_and_never_widens);

async fn every_invalid_client_case(app: TestApp) {
    let c = client(&app, Some(Duration::hours(1))).await;
    by_basic(&app, &c, None).await.token();

    // Unknown client id, by Basic and in the body.
    let unknown = Client {
        sa_id: c.sa_id.clone(),
        cred: Credential {
            client_id: format!("khci_{}", app.state.service.new_id()),
            ..c.cred.clone()
        },
        secret: c.secret.clone(),
    };
    by_basic(&app, &unknown, None)
        .await
        .oauth_error(401, "invalid_client");
    by_body(&app, &unknown)
        .await
        .oauth_error(401, "invalid_client");
    // Absurdly long client ids are unknown too.
    post_form(
        &app,
        &[("grant_type", "client_credentials")],
        Some(&basic(&"x".repeat(5000), "s")),
    )
    .await
    .oauth_error(401, "invalid_client");
    assert!(
        denied_entries(&app).await.is_empty(),
        "nothing to audit for unknown clients"
    );

    // Wrong secret, either way; the description does not say which part was wrong.
    let wrong = Client {
        sa_id: c.sa_id.clone(),
        cred: c.cred.clone(),
        secret: format!("{}x", c.secret),
    };
    let d1 = by_basic(&app, &wrong, None)
        .await
        .oauth_error(401, "invalid_client");
    let d2 = by_body(&app, &wrong)
        .await
        .oauth_error(401, "invalid_client");
    let d3 = by_body(&app, &unknown)
        .await
        .oauth_error(401, "invalid_client");
    assert_eq!(d1, d3);
    assert_eq!(d2, d3);
    let denied = denied_entries(&app).await;
    assert_eq!(denied.len(), 2);
    assert_eq!(denied[0].draft.changes["reason"], "wrong_secret");
    assert_eq!(denied[0].draft.actor.id, c.sa_id.as_str());
    assert_eq!(
        denied[0].draft.changes["client_id"],
        c.cred.client_id.as_str()
    );

    // No client authentication at all.
    post_form(&app, &[("grant_type", "client_credentials")], None)
        .await
        .oauth_error(401, "invalid_client");
    // An Authorization header that is not Basic, or not decodable.
    for auth in ["Bearer abc", "Basic !!!not-base64", "Basic Zm9v", "Basic "] {
        post_form(&app, &[("grant_type", "client_credentials")], Some(auth))
            .await
            .oauth_error(401, "invalid_client");
    }

    // Suspended service account; reactivated it works again.
    let caller = caller(&app);
    let service = &app.state.service;
    service
        .transition_service_account(&caller, &c.sa_id, Transition::Suspend)
        .await
        .unwrap();
    let d = by_basic(&app, &c, None)
        .await
        .oauth_error(401, "invalid_client");
    assert!(d.contains("suspended"), "{d}");
    service
        .transition_service_account(&caller, &c.sa_id, Transition::Reactivate)
        .await
        .unwrap();
    by_basic(&app, &c, None).await.token();

    // Expired credential: the injected clock passes expires_at.
    app.clock.advance(Duration::hours(1));
    let d = by_basic(&app, &c, None)
        .await
        .oauth_error(401, "invalid_client");
    assert!(d.contains("expired"), "{d}");

    // Archived service account (its credentials are revoked with it).
    let other = client(&app, None).await;
    by_body(&app, &other).await.token();
    service
        .transition_service_account(&caller, &other.sa_id, Transition::Archive)
        .await
        .unwrap();
    by_body(&app, &other)
        .await
        .oauth_error(401, "invalid_client");
    // An archived account whose credential somehow escaped revocation is refused too.
    sqlx::query("UPDATE credentials SET revoked_at = NULL WHERE id = $1")
        .bind(other.cred.id.as_str())
        .execute(&pool(&app).await)
        .await
        .unwrap();
    let d = by_body(&app, &other)
        .await
        .oauth_error(401, "invalid_client");
    assert!(d.contains("archived"), "{d}");

    // Deleted credential.
    let third = client(&app, None).await;
    by_basic(&app, &third, None).await.token();
    service
        .delete_credential(&caller, &third.sa_id, &third.cred.id)
        .await
        .unwrap();
    by_basic(&app, &third, None)
        .await
        .oauth_error(401, "invalid_client");

    let reasons: Vec<String> = denied_entries(&app)
        .await
        .iter()
        .map(|e| e.draft.changes["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons,
        [
            "service_account_archived",
            "revoked",
            "expired",
            "service_account_suspended",
            "wrong_secret",
            "wrong_secret"
        ]
    );
}
both_backends!(every_invalid_client_case);

async fn malformed_requests_get_rfc_errors(app: TestApp) {
    let c = client(&app, None).await;
    let basic_header = basic(&c.cred.client_id, &c.secret);
    let auth = Some(basic_header.as_str());

    for grant in [
        "password",
        "authorization_code",
        "refresh_token",
        "CLIENT_CREDENTIALS",
    ] {
        post_form(&app, &[("grant_type", grant)], auth)
            .await
            .oauth_error(400, "unsupported_grant_type");
    }
    // Missing grant_type, or given without a value.
    post_form(&app, &[("scope", "read")], auth)
        .await
        .oauth_error(400, "invalid_request");
    post_form(&app, &[("grant_type", "")], auth)
        .await
        .oauth_error(400, "invalid_request");
    // A JSON body.
    post_raw(
        &app.base,
        Some("application/json"),
        auth,
        r#"{"grant_type":"client_credentials"}"#,
    )
    .await
    .oauth_error(400, "invalid_request");
    // JSON sent as if it were a form: no grant_type parameter.
    post_raw(
        &app.base,
        Some(FORM),
        auth,
        r#"{"grant_type":"client_credentials"}"#,
    )
    .await
    .oauth_error(400, "invalid_request");
    // No content type, multipart, empty body.
    post_raw(&app.base, None, auth, "grant_type=client_credentials")
        .await
        .oauth_error(400, "invalid_request");
    post_raw(
        &app.base,
        Some("multipart/form-data; boundary=x"),
        auth,
        "--x--",
    )
    .await
    .oauth_error(400, "invalid_request");
    post_raw(&app.base, Some(FORM), auth, "")
        .await
        .oauth_error(400, "invalid_request");
    // Both authentication methods at once.
    post_form(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &c.cred.client_id),
            ("client_secret", &c.secret),
        ],
        auth,
    )
    .await
    .oauth_error(400, "invalid_request");
    // A body client_id that contradicts the Basic one.
    post_form(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "khci_someoneelse"),
        ],
        auth,
    )
    .await
    .oauth_error(400, "invalid_request");
    // Half of the body credentials.
    post_form(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &c.cred.client_id),
        ],
        None,
    )
    .await
    .oauth_error(400, "invalid_request");
    post_form(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_secret", &c.secret),
        ],
        None,
    )
    .await
    .oauth_error(400, "invalid_request");
    // A parameter twice.
    post_raw(
        &app.base,
        Some(FORM),
        auth,
        "grant_type=client_credentials&grant_type=client_credentials",
    )
    .await
    .oauth_error(400, "invalid_request");
    post_raw(
        &app.base,
        Some(FORM),
        auth,
        "grant_type=client_credentials&scope=read&scope=write",
    )
    .await
    .oauth_error(400, "invalid_request");
    // Two Authorization headers.
    let res = reqwest::Client::new()
        .post(app.url("/oauth/token"))
        .header("content-type", FORM)
        .header("authorization", &basic_header)
        .header("authorization", &basic_header)
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // Not UTF-8, broken percent-encoding, an oversized body.
    post_raw(
        &app.base,
        Some(FORM),
        auth,
        b"grant_type=client_credentials&scope=\xff".to_vec(),
    )
    .await
    .oauth_error(400, "invalid_request");
    post_raw(
        &app.base,
        Some(FORM),
        auth,
        "grant_type=client_credentials&scope=%ff%fe",
    )
    .await
    .oauth_error(400, "invalid_request");
    let huge = format!(
        "grant_type=client_credentials&pad={}",
        "a".repeat(64 * 1024)
    );
    post_raw(&app.base, Some(FORM), auth, huge)
        .await
        .oauth_error(400, "invalid_request");
    // Unknown parameters are ignored (RFC 6749 §3.2), and the request still works.
    post_raw(
        &app.base,
        Some(FORM),
        auth,
        "grant_type=client_credentials&audience=x&audience=y&&=&novalue",
    )
    .await
    .token();
    // Other methods get the API's 405, not a 500.
    let res = reqwest::get(app.url("/oauth/token")).await.unwrap();
    assert_eq!(res.status(), 405);
}
both_backends!(malformed_requests_get_rfc_errors);

async fn pool(app: &TestApp) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::pool::PoolOptions::<sqlx::Any>::new()
        .max_connections(1)
        .connect(&app.db.url)
        .await
        .unwrap()
}

/// A second node on the same database: its own store, service and HTTP server.
async fn second_node(app: &TestApp) -> (String, AppState) {
    let store = keyhaven_store::connect(&app.db.url, true).await.unwrap();
    let service = Service::new(
        store,
        app.clock.clone(),
        app.state.config.master_key.clone(),
    );
    let state = AppState {
        service,
        config: app.state.config.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Served the way `keyhaven serve` serves: the verification hot path included.
    let serving = state.clone();
    tokio::spawn(async move {
        keyhaven_server::app::serve_on(listener, serving, std::future::pending())
            .await
            .unwrap();
    });
    (format!("http://{addr}"), state)
}

async fn signing_key_is_shared_and_encrypted(app: TestApp) {
    // Several nodes that start at once on an empty table agree on one key.
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(second_node(&app).await);
    }
    let loads = nodes.iter().map(|(_, s)| {
        let service = s.service.clone();
        tokio::spawn(async move {
            keyhaven_server::oauth::signing_key(&service)
                .await
                .unwrap()
                .kid
                .clone()
        })
    });
    let kids: Vec<String> = join_all(loads).await;
    assert!(kids.iter().all(|k| *k == kids[0]), "{kids:?}");

    let db = pool(&app).await;
    let rows = sqlx::query("SELECT * FROM oauth_signing_keys")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "exactly one key won");
    let stored: String = rows[0].try_get("private_key").unwrap();
    let kid: String = rows[0].try_get("kid").unwrap();
    assert_eq!(kid, kids[0]);
    assert!(stored.starts_with("v1:"), "encrypted with the master key");
    assert!(!stored.contains("PRIVATE KEY"));
    assert!(!stored.contains("MII"), "no DER in base64 either");
    let plain = app
        .state
        .config
        .master_key
        .decrypt(
            &stored,
            &keyhaven_service::secrets::context::signing_key(&kid),
        )
        .unwrap();
    assert!(String::from_utf8(plain)
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));

    // This node (its first use) publishes the same key; a token from another node
    // verifies with it.
    let keys = jwks(&app).await;
    assert_eq!(keys["keys"][0]["kid"], kid.as_str());
    let c = client(&app, None).await;
    let (base2, _) = &nodes[1];
    let res = post_raw(
        base2,
        Some(FORM),
        Some(&basic(&c.cred.client_id, &c.secret)),
        form(&[("grant_type", "client_credentials")]),
    )
    .await;
    let (header, _) = verify_jwt(&res.token(), &keys);
    assert_eq!(header["kid"], kid.as_str());

    // After a restart (a fresh node on the same database) the key is the same.
    drop(nodes);
    let (base3, state3) = second_node(&app).await;
    let (_, keys3) = get_json(&base3, "/.well-known/jwks.json").await;
    assert_eq!(keys3, keys);
    let reloaded = keyhaven_server::oauth::load_or_create(&state3.service)
        .await
        .unwrap();
    assert_eq!(reloaded.kid, kid);

    // A node with another master key cannot use the stored key: the JWKS answers 500
    // (an operator error, logged), never a fresh key that would split the nodes.
    let wrong = Service::new(
        app.db.store.clone(),
        app.clock.clone(),
        keyhaven_service::secrets::MasterKey::from_base64(&STANDARD.encode([9u8; 32])).unwrap(),
    );
    assert!(keyhaven_server::oauth::load_or_create(&wrong)
        .await
        .is_err());
    let rows = sqlx::query("SELECT kid FROM oauth_signing_keys")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
}
both_backends!(signing_key_is_shared_and_encrypted);

async fn join_all<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

async fn last_used(app: &TestApp, c: &Client) -> Option<keyhaven_core::time::Timestamp> {
    let mut tx = app.db.store.read().await.unwrap();
    tx.credential(&c.cred.org_id, &c.sa_id, &c.cred.id)
        .await
        .unwrap()
        .unwrap()
        .last_used_at
}

async fn last_used_at_is_written_by_the_flush(app: TestApp) {
    let c = client(&app, None).await;
    let service = &app.state.service;
    let caller = caller(&app);
    assert_eq!(service.flush_credential_uses().await.unwrap(), 0);

    let issued_at = service.now();
    by_basic(&app, &c, None).await.token();
    assert_eq!(
        last_used(&app, &c).await,
        None,
        "issuing a token writes nothing"
    );
    assert_eq!(service.flush_credential_uses().await.unwrap(), 1);
    assert_eq!(last_used(&app, &c).await, Some(issued_at));

    // Several uses between flushes: the latest wins; a refused request is no use.
    app.clock.advance(Duration::minutes(3));
    by_body(&app, &c).await.token();
    app.clock.advance(Duration::minutes(2));
    let latest = service.now();
    by_body(&app, &c).await.token();
    app.clock.advance(Duration::minutes(2));
    let wrong = Client {
        sa_id: c.sa_id.clone(),
        cred: c.cred.clone(),
        secret: "nope".into(),
    };
    by_body(&app, &wrong)
        .await
        .oauth_error(401, "invalid_client");
    assert_eq!(service.flush_credential_uses().await.unwrap(), 1);
    assert_eq!(last_used(&app, &c).await, Some(latest));
    assert_eq!(service.flush_credential_uses().await.unwrap(), 0);

    // A use of a credential deleted before the flush is skipped, not an error.
    by_body(&app, &c).await.token();
    service
        .delete_credential(&caller, &c.sa_id, &c.cred.id)
        .await
        .unwrap();
    assert_eq!(service.flush_credential_uses().await.unwrap(), 1);
}
both_backends!(last_used_at_is_written_by_the_flush);

/// Validates a token the way a downstream API using PyJWT would: the key picked by the
/// header's `kid` from the JWKS, RS256 only, `exp`/`iat`/`iss`/`aud`/`sub` required and
/// checked, and the header's `typ` must be `at+jwt` (RFC 9068). Prints
/// `{"ok": true, "header", "claims"}` or `{"ok": false, "error": <exception class>}`.
const PYJWT_VALIDATE: &str = r#"
import json, sys
import jwt

req = json.load(sys.stdin)
try:
    header = jwt.get_unverified_header(req["token"])
    if header.get("typ") != "at+jwt":
        raise jwt.InvalidTokenError("typ is not at+jwt")
    keys = jwt.PyJWKSet.from_dict(req["jwks"])
    key = next(k for k in keys.keys if k.key_id == header["kid"])
    claims = jwt.decode(
        req["token"], key=key.key, algorithms=["RS256"],
        audience=req["audience"], issuer=req["issuer"],
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )
    print(json.dumps({"ok": True, "header": header, "claims": claims}))
except Exception as e:
    print(json.dumps({"ok": False, "error": type(e).__name__, "detail": str(e)}))
"#;

/// `python3` with PyJWT, or `None` after a loud message (a failure under `CI=true`).
fn pyjwt_python(test: &str) -> Option<String> {
    let python = std::env::var("KEYHAVEN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&python)
        .args(["-c", "import jwt, cryptography; jwt.PyJWKSet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    keyhaven_store::testing::skip(
        "OAuth (PyJWT)",
        test,
        &format!("PyJWT is not installed for {python}"),
        "python3 -m pip install 'pyjwt[crypto]', or set KEYHAVEN_TEST_PYTHON",
    );
    None
}

/// Runs [`PYJWT_VALIDATE`] on a token.
fn pyjwt(python: &str, token: &str, jwks: &Value, issuer: &str, audience: &str) -> Value {
    use std::io::Write;
    let mut child = std::process::Command::new(python)
        .args(["-c", PYJWT_VALIDATE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::json!({
        "token": token, "jwks": jwks, "issuer": issuer, "audience": audience,
    });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "PyJWT script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "PyJWT script printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

async fn pyjwt_validates_tokens_with_the_published_jwks(app: TestApp) {
    let Some(python) = pyjwt_python("pyjwt") else {
        return;
    };
    // PyJWT checks `exp` against the real clock: issue at the real time.
    app.clock
        .advance(chrono::Utc::now() - app.state.service.now());
    let c = client(&app, None).await;
    let keys = jwks(&app).await;
    let issuer = app.state.config.public_url.clone();
    let token = by_basic(&app, &c, Some("read")).await.token();

    let v = pyjwt(&python, &token, &keys, &issuer, &issuer);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["header"]["typ"], "at+jwt");
    assert_eq!(v["header"]["alg"], "RS256");
    assert_eq!(v["header"]["kid"], keys["keys"][0]["kid"]);
    assert_claims(&app, &v["claims"], &c, "read");

    // The checks are real: another audience or issuer, a changed payload, another
    // key set and an expired token are all refused.
    let refused = |v: Value, error: &str| {
        assert_eq!(
            (v["ok"].as_bool(), v["error"].as_str()),
            (Some(false), Some(error)),
            "{v}"
        );
    };
    refused(
        pyjwt(&python, &token, &keys, &issuer, "https://other.example"),
        "InvalidAudienceError",
    );
    refused(
        pyjwt(&python, &token, &keys, "https://other.example", &issuer),
        "InvalidIssuerError",
    );
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&b64url(parts[1])).unwrap();
    claims["scope"] = "read write admin".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    refused(
        pyjwt(&python, &forged, &keys, &issuer, &issuer),
        "InvalidSignatureError",
    );
    let mut other_keys = keys.clone();
    let mut n = b64url(other_keys["keys"][0]["n"].as_str().unwrap());
    n[10] ^= 0xff;
    other_keys["keys"][0]["n"] = URL_SAFE_NO_PAD.encode(n).into();
    refused(
        pyjwt(&python, &token, &other_keys, &issuer, &issuer),
        "InvalidSignatureError",
    );
    app.clock.advance(Duration::minutes(-20));
    let old = by_basic(&app, &c, None).await.token();
    refused(
        pyjwt(&python, &old, &keys, &issuer, &issuer),
        "ExpiredSignatureError",
    );
}
both_backends!(pyjwt_validates_tokens_with_the_published_jwks);
