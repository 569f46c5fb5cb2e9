//! An HTTP client that acts as one principal (bearer key or console session), response
//! checks for the contract's conventions (error object, request ids, timestamps, ids),
//! and audit look-ups; used mostly by `api_resources.rs` and `api_keys.rs`.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use super::app::TestApp;

/// The user agent every helper request sends, so audit entries can be checked.
pub const UA: &str = "keyhaven-resource-tests/1.0";

/// A syntactically valid id that exists nowhere.
pub const FAKE_ID: &str = "01k00000000000000000000000";

/// How a client authenticates.
#[derive(Clone)]
pub enum Cred {
    /// `Authorization: Bearer <key>`.
    Bearer(String),
    /// A cookie session (the client's cookie jar) and its CSRF token.
    Session(String),
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Res {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub rid: String,
}

impl Res {
    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "{} {} answered {} {}",
            self.method, self.path, self.status, self.text
        );
        self.body.clone()
    }

    /// Asserts an error answer with the contract's shape; returns the error object.
    #[track_caller]
    pub fn err(&self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "{} {} answered {} {}",
            self.method, self.path, self.status, self.text
        );
        let e = &self.body["error"];
        assert!(
            e.is_object(),
            "{} {}: no error object in {}",
            self.method,
            self.path,
            self.text
        );
        let want_type = match status {
            400 | 413 | 415 => "invalid_request",
            401 => "authentication_required",
            403 => "permission_denied",
            404 => "not_found",
            409 => "conflict",
            429 => "rate_limited",
            _ => "internal",
        };
        assert_eq!(
            e["type"], want_type,
            "{} {}: {}",
            self.method, self.path, self.text
        );
        assert!(
            e["code"].is_string() && e["message"].is_string(),
            "{}",
            self.text
        );
        assert!(
            e.get("param").is_some(),
            "param present (maybe null): {}",
            self.text
        );
        assert_eq!(
            e["request_id"].as_str(),
            Some(self.rid.as_str()),
            "error carries the request id"
        );
        e.clone()
    }

    /// Asserts a 400 naming `param`.
    #[track_caller]
    pub fn bad(&self, param: &str) -> Value {
        let e = self.err(400);
        assert_eq!(
            e["param"].as_str(),
            Some(param),
            "{} {}: expected param {param}: {}",
            self.method,
            self.path,
            self.text
        );
        e
    }
}

/// A principal talking to one organization.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub cred: Cred,
    pub base: String,
    /// `/v1/organizations/{org}`.
    pub org_path: String,
    /// `{type, id, name}` from `/v1/me`.
    pub principal: Value,
}

impl Client {
    /// Acts with an API key on `app`'s organization.
    pub async fn bearer(app: &TestApp, key: &str) -> Client {
        Self::bearer_in(app, key, &app.org_id).await
    }

    /// Acts with an API key, addressing organization `org`.
    pub async fn bearer_in(app: &TestApp, key: &str, org: &str) -> Client {
        let mut c = Client {
            http: app.http.clone(),
            cred: Cred::Bearer(key.to_string()),
            base: app.base.clone(),
            org_path: format!("/v1/organizations/{org}"),
            principal: Value::Null,
        };
        let me = c.get("/v1/me").await.ok(200);
        c.principal = me["principal"].clone();
        c
    }

    /// Signs in as a portal user of `app`'s organization.
    pub async fn session(app: &TestApp, email: &str, password: &str) -> Client {
        let (http, csrf) = app.sign_in(email, password).await;
        let mut c = Client {
            http,
            cred: Cred::Session(csrf),
            base: app.base.clone(),
            org_path: format!("/v1/organizations/{}", app.org_id),
            principal: Value::Null,
        };
        let me = c.get("/v1/me").await.ok(200);
        c.principal = me["principal"].clone();
        c.org_path = format!(
            "/v1/organizations/{}",
            me["organization_id"].as_str().unwrap()
        );
        c
    }

    /// The same credential, addressing another organization's path.
    pub fn in_org(&self, org: &str) -> Client {
        Client {
            org_path: format!("/v1/organizations/{org}"),
            ..self.clone()
        }
    }

    /// The principal's id.
    pub fn id(&self) -> String {
        self.principal["id"].as_str().unwrap().to_string()
    }

    fn full(&self, path: &str) -> String {
        if path.starts_with("/v1/") || path.starts_with("/.well-known") || path == "/healthz" {
            path.to_string()
        } else {
            format!("{}{}", self.org_path, path)
        }
    }

    /// Sends a request; `path` is relative to the organization unless it starts with `/v1/`.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Res {
        self.send_with(method, path, body, &[]).await
    }

    /// Like [`send`], with extra headers.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Res {
        let full = self.full(path);
        let url = format!("{}{}", self.base, full);
        let mut req = match &self.cred {
            Cred::Bearer(k) => self.http.request(method.clone(), url).bearer_auth(k),
            Cred::Session(csrf) => self
                .http
                .request(method.clone(), url)
                .header("x-csrf-token", csrf),
        };
        req = req.header("user-agent", UA);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let rid = res
            .headers()
            .get("x-request-id")
            .unwrap_or_else(|| panic!("{method} {full}: no X-Request-Id"))
            .to_str()
            .unwrap()
            .to_string();
        let text = res.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        Res {
            method: method.to_string(),
            path: full,
            status,
            body,
            text,
            rid,
        }
    }

    pub async fn get(&self, path: &str) -> Res {
        self.send(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Res {
        self.send(Method::POST, path, Some(&body)).await
    }
    /// POST without a body (actions such as revoke or suspend).
    pub async fn act(&self, path: &str) -> Res {
        self.send(Method::POST, path, None).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Res {
        self.send(Method::PATCH, path, Some(&body)).await
    }
    pub async fn delete(&self, path: &str) -> Res {
        self.send(Method::DELETE, path, None).await
    }

    /// Every item of a list endpoint, following cursors (`query` without `limit`).
    pub async fn all(&self, path: &str) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let p = match &cursor {
                Some(c) => format!("{path}{sep}limit=100&cursor={c}"),
                None => format!("{path}{sep}limit=100"),
            };
            let page = self.get(&p).await.ok(200);
            out.extend(page["data"].as_array().unwrap().iter().cloned());
            if page["has_more"] == true {
                cursor = Some(page["next_cursor"].as_str().unwrap().to_string());
            } else {
                assert!(page["next_cursor"].is_null());
                return out;
            }
        }
    }

    /// Creates an API key; returns (object, secret).
    pub async fn create_key(&self, body: Value) -> (Value, String) {
        let k = self.post("/api-keys", body).await.ok(201);
        let secret = k["key"].as_str().unwrap().to_string();
        (k, secret)
    }

    /// Creates a service account; returns its object.
    pub async fn create_sa(&self, name: &str, roles: &[&str]) -> Value {
        self.post(
            "/service-accounts",
            json!({"name": name, "description": format!("{name} account"), "roles": roles}),
        )
        .await
        .ok(201)
    }

    /// Creates a user; returns its object.
    pub async fn create_user(&self, email: &str, name: &str, roles: &[&str]) -> Value {
        self.post(
            "/users",
            json!({"email": email, "display_name": name, "password": PASSWORD, "roles": roles}),
        )
        .await
        .ok(201)
    }

    /// The audit event recorded for `res` (matched by request id), with `action` and
    /// `target_id`; checks actor, outcome, source and request id.
    pub async fn assert_audited(
        &self,
        res: &Res,
        actor: &Client,
        action: &str,
        target_id: &str,
    ) -> Value {
        let events = self
            .all(&format!(
                "/audit-events?action={action}&target_id={target_id}"
            ))
            .await;
        let found: Vec<&Value> = events
            .iter()
            .filter(|e| e["request_id"].as_str() == Some(res.rid.as_str()))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {action} event on {target_id} with request id {} for {} {}; got {events:#?}",
            res.rid,
            res.method,
            res.path
        );
        let e = found[0].clone();
        assert_eq!(e["action"], action);
        assert_eq!(e["outcome"], "success");
        assert_eq!(e["actor"]["type"], actor.principal["type"], "{e}");
        assert_eq!(e["actor"]["id"], actor.principal["id"], "{e}");
        assert!(
            e["actor"]["name"].as_str().is_some_and(|n| !n.is_empty()),
            "{e}"
        );
        assert_eq!(e["target"]["id"], target_id, "{e}");
        assert!(e["target"]["type"].is_string(), "{e}");
        assert!(e["target"]["name"].is_string(), "{e}");
        assert_eq!(e["ip"], "127.0.0.1", "{e}");
        assert_eq!(e["user_agent"], UA, "{e}");
        assert_timestamp(&e["at"]);
        e
    }
}

/// The password helpers give new users.
pub const PASSWORD: &str = "a long enough password";

/// Asserts an RFC 3339 UTC timestamp ending in `Z`.
#[track_caller]
pub fn assert_timestamp(v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp expected, got {v}"));
    assert!(s.ends_with('Z'), "{s} ends with Z");
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|_| panic!("{s} is RFC 3339"));
}

/// Parses a timestamp field.
#[track_caller]
pub fn ts(v: &Value) -> chrono::DateTime<chrono::Utc> {
    assert_timestamp(v);
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Asserts a 26-character lowercase, URL-safe id.
#[track_caller]
pub fn assert_id(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("id expected, got {v}"));
    assert_eq!(s.len(), 26, "{s}");
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
        "{s}"
    );
}

/// Asserts that `v` is an object with exactly these keys (absent values must be `null`,
/// never omitted).
#[track_caller]
pub fn assert_keys(v: &Value, keys: &[&str]) {
    let got: BTreeSet<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("object expected, got {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    let want: BTreeSet<&str> = keys.iter().copied().collect();
    assert_eq!(got, want, "fields of {v}");
}

/// The strings of a JSON array, as a set.
#[track_caller]
pub fn set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("array expected, got {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// A set of strings from literals.
pub fn strs(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The `field` (e.g. `id`, `name`) of each item.
pub fn field(items: &[Value], f: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| i[f].as_str().unwrap().to_string())
        .collect()
}

/// Whether `s` is `<prefix>_` + 46 base62 characters with a valid checksum.
#[track_caller]
pub fn assert_key_shape(s: &str, prefix: &str) {
    let body = s
        .strip_prefix(&format!("{prefix}_"))
        .unwrap_or_else(|| panic!("{s:.12}… starts with {prefix}_"));
    assert_eq!(body.len(), 46, "46 characters after the prefix");
    assert!(body.bytes().all(|b| b.is_ascii_alphanumeric()), "base62");
    keyhaven_core::key_format::parse(s).expect("checksum matches");
}

/// The fields of a user object.
pub const USER_FIELDS: &[&str] = &[
    "id",
    "email",
    "display_name",
    "roles",
    "status",
    "last_login_at",
    "created_at",
    "updated_at",
];

/// The fields of a service account object.
pub const SA_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "roles",
    "status",
    "ratelimits",
    "external_id",
    "created_by",
    "created_at",
    "updated_at",
];

/// The fields of a credential object.
pub const CRED_FIELDS: &[&str] = &[
    "id",
    "client_id",
    "name",
    "description",
    "created_at",
    "updated_at",
    "last_used_at",
    "expires_at",
];

/// The fields of an API key object.
pub const KEY_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "tags",
    "type",
    "owner",
    "roles",
    "scopes",
    "permissions",
    "masked_key",
    "status",
    "expires_at",
    "created_by",
    "created_at",
    "updated_at",
    "last_used_at",
    "revoked_at",
    "ratelimit",
    "ratelimits",
    "remaining",
    "credits",
    "allowed_cidrs",
    "metadata",
    "external_id",
    "enabled",
    "imported_at",
];

/// The fields of a role object.
pub const ROLE_FIELDS: &[&str] = &[
    "name",
    "description",
    "permissions",
    "key_name_pattern",
    "built_in",
    "created_at",
    "updated_at",
];

/// The fields of an audit event.
pub const AUDIT_FIELDS: &[&str] = &[
    "id",
    "at",
    "actor",
    "action",
    "target",
    "outcome",
    "ip",
    "user_agent",
    "request_id",
    "changes",
    "prev_hash",
    "hash",
];

/// The management catalog.
pub const CATALOG: &[&str] = &[
    "organization.view",
    "organization.manage",
    "users.view",
    "users.create",
    "users.update",
    "users.reset_password",
    "users.delete",
    "roles.view",
    "roles.manage",
    "service_accounts.view",
    "service_accounts.manage",
    "api_keys.view",
    "api_keys.create",
    "api_keys.manage",
    "audit.view",
    "audit.manage",
    "shared_secret.view",
    "shared_secret.manage",
    "webhooks.view",
    "webhooks.manage",
    "ratelimits.use",
];

/// `read-only`'s permissions.
pub const READ_ONLY: &[&str] = &[
    "organization.view",
    "roles.view",
    "service_accounts.view",
    "api_keys.view",
];

/// A super-admin client (bearer key) on `app`.
pub async fn super_admin(app: &TestApp) -> Client {
    let key = app.admin_key(&["super-admin"]).await;
    Client::bearer(app, &key).await
}

/// Whether a key authenticates `GET /v1/me` (200) or not (401).
pub async fn me_status(app: &TestApp, key: &str) -> u16 {
    app.http
        .get(app.url("/v1/me"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `POST /v1/keys/verify`.
pub async fn verify(app: &TestApp, body: Value) -> Value {
    let res = app
        .http
        .post(app.url("/v1/keys/verify"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}
