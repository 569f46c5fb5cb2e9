//! The authorization matrix: every management endpoint × each built-in role, as a
//! signed-in user and as a key with that role, plus a principal of another
//! organization — on SQLite and PostgreSQL.

use crate::support::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use keyhaven_core::id::Id;
use keyhaven_core::role::Role;
use keyhaven_service::api_keys::{CreateApiKey, OwnerRef};
use keyhaven_service::service_accounts::CreateServiceAccount;
use keyhaven_service::users::CreateUser;
use keyhaven_service::Caller;
use reqwest::Method;
use serde_json::{json, Value};

const FAKE: &str = "01k00000000000000000000000";

/// How a request authenticates.
enum Cred {
    Session(reqwest::Client, String),
    Key(String),
}

struct Principal {
    label: String,
    /// The built-in role whose permissions it holds; None = another organization.
    role: Option<&'static str>,
    cred: Cred,
}

impl Principal {
    async fn send(
        &self,
        app: &TestApp,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let url = app.url(path);
        let req = match &self.cred {
            Cred::Session(c, csrf) => c.request(method, url).header("x-csrf-token", csrf),
            Cred::Key(k) => app.http.request(method, url).bearer_auth(k),
        };
        let req = match body {
            Some(b) => req.json(b),
            None => req,
        };
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

async fn principals(app: &TestApp) -> Vec<Principal> {
    let org = Id::from_trusted(app.org_id.clone());
    let system = Caller::system(org, "test");
    let svc = &app.state.service;
    let mut out = Vec::new();
    for role in ["super-admin", "admin", "read-only"] {
        let (email, password) = if role == "super-admin" {
            (ADMIN_EMAIL.to_string(), ADMIN_PASSWORD.to_string())
        } else {
            let email = format!("{role}-user@example.com");
            svc.create_user(
                &system,
                CreateUser {
                    email: email.clone(),
                    display_name: role.into(),
                    password: "a long enough password".into(),
                    roles: vec![role.into()],
                },
            )
            .await
            .unwrap();
            (email, "a long enough password".to_string())
        };
        let (client, csrf) = app.sign_in(&email, &password).await;
        out.push(Principal {
            label: format!("{role} user"),
            role: Some(role),
            cred: Cred::Session(client, csrf),
        });
        let sa = svc
            .create_service_account(
                &system,
                CreateServiceAccount {
                    ratelimits: None,
                    name: format!("{role} automation"),
                    description: None,
                    roles: None,
                    external_id: None,
                },
            )
            .await
            .unwrap();
        let (_, _, secret) = svc
            .create_api_key(
                &system,
                CreateApiKey {
                    name: format!("{role} key"),
                    roles: Some(vec![role.into()]),
                    owner: Some(OwnerRef {
                        kind: keyhaven_core::principal::PrincipalKind::ServiceAccount,
                        id: sa.id.to_string(),
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        out.push(Principal {
            label: format!("{role} key"),
            role: Some(role),
            cred: Cred::Key(secret.expose().to_string()),
        });
    }
    // A super-admin of another organization.
    svc.create_organization("Other", "other@example.com", "another long password")
        .await
        .unwrap();
    let (client, csrf) = app
        .sign_in("other@example.com", "another long password")
        .await;
    out.push(Principal {
        label: "other organization's super-admin".into(),
        role: None,
        cred: Cred::Session(client, csrf),
    });
    out
}

struct Fixture {
    admin_id: String,
    sa: String,
    cred: String,
    key: String,
}

async fn fixture(app: &TestApp) -> Fixture {
    let org = Id::from_trusted(app.org_id.clone());
    let system = Caller::system(org, "test");
    let svc = &app.state.service;
    let sa = svc
        .create_service_account(
            &system,
            CreateServiceAccount {
                ratelimits: None,
                name: "fixture".into(),
                description: None,
                roles: None,
                external_id: None,
            },
        )
        .await
        .unwrap();
    let (cred, _) = svc
        .create_credential(
            &system,
            &sa.id,
            keyhaven_service::credentials::CreateCredential {
                name: "fixture".into(),
                description: None,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    let (key, _, _) = svc
        .create_api_key(
            &system,
            CreateApiKey {
                name: "fixture".into(),
                owner: Some(OwnerRef {
                    kind: keyhaven_core::principal::PrincipalKind::ServiceAccount,
                    id: sa.id.to_string(),
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut tx = svc.store().read().await.unwrap();
    let admin = tx.user_by_email(ADMIN_EMAIL).await.unwrap().unwrap();
    Fixture {
        admin_id: admin.id.to_string(),
        sa: sa.id.to_string(),
        cred: cred.id.to_string(),
        key: key.id.to_string(),
    }
}

fn role_permissions(role: &str) -> Vec<String> {
    keyhaven_core::role::built_in_roles(chrono::Utc::now())
        .into_iter()
        .find(|r: &Role| r.name == role)
        .map(|r| r.permissions)
        .unwrap_or_default()
}

async fn matrix(app: TestApp) {
    let f = fixture(&app).await;
    let who = principals(&app).await;
    let o = format!("/v1/organizations/{}", app.org_id);
    let sa = format!("{o}/service-accounts/{}", f.sa);
    // (method, path, body, permission). Bodies pass authorization and then fail
    // validation or hit an unknown id, so the matrix never destroys its fixtures.
    let table: Vec<(Method, String, Option<Value>, &str)> = vec![
        (Method::GET, o.clone(), None, "organization.view"),
        (
            Method::PATCH,
            o.clone(),
            Some(json!({})),
            "organization.manage",
        ),
        (Method::GET, format!("{o}/users"), None, "users.view"),
        (
            Method::POST,
            format!("{o}/users"),
            Some(
                json!({"email": "bad", "display_name": "x", "password": "a long enough password", "roles": []}),
            ),
            "users.create",
        ),
        (
            Method::GET,
            format!("{o}/users/{}", f.admin_id),
            None,
            "users.view",
        ),
        (
            Method::PATCH,
            format!("{o}/users/{FAKE}"),
            Some(json!({})),
            "users.update",
        ),
        (
            Method::DELETE,
            format!("{o}/users/{FAKE}"),
            None,
            "users.delete",
        ),
        (
            Method::POST,
            format!("{o}/users/{FAKE}/reset-password"),
            Some(json!({"password": "a long enough password"})),
            "users.reset_password",
        ),
        (Method::GET, format!("{o}/roles"), None, "roles.view"),
        (
            Method::GET,
            format!("{o}/roles/read-only"),
            None,
            "roles.view",
        ),
        (
            Method::POST,
            format!("{o}/roles"),
            Some(json!({"name": "", "permissions": []})),
            "roles.manage",
        ),
        (
            Method::PATCH,
            format!("{o}/roles/nope"),
            Some(json!({})),
            "roles.manage",
        ),
        (
            Method::DELETE,
            format!("{o}/roles/nope"),
            None,
            "roles.manage",
        ),
        (
            Method::GET,
            format!("{o}/service-accounts"),
            None,
            "service_accounts.view",
        ),
        (
            Method::POST,
            format!("{o}/service-accounts"),
            Some(json!({"name": ""})),
            "service_accounts.manage",
        ),
        (Method::GET, sa.clone(), None, "service_accounts.view"),
        (
            Method::PATCH,
            format!("{o}/service-accounts/{FAKE}"),
            Some(json!({})),
            "service_accounts.manage",
        ),
        (
            Method::DELETE,
            format!("{o}/service-accounts/{FAKE}"),
            None,
            "service_accounts.manage",
        ),
        (
            Method::POST,
            format!("{o}/service-accounts/{FAKE}/suspend"),
            None,
            "service_accounts.manage",
        ),
        (
            Method::POST,
            format!("{o}/service-accounts/{FAKE}/reactivate"),
            None,
            "service_accounts.manage",
        ),
        (
            Method::POST,
            format!("{o}/service-accounts/{FAKE}/archive"),
            None,
            "service_accounts.manage",
        ),
        (
            Method::GET,
            format!("{sa}/credentials"),
            None,
            "service_accounts.view",
        ),
        (
            Method::POST,
            format!("{o}/service-accounts/{FAKE}/credentials"),
            Some(json!({"name": "x"})),
            "service_accounts.manage",
        ),
        (
            Method::GET,
            format!("{sa}/credentials/{}", f.cred),
            None,
            "service_accounts.view",
        ),
        (
            Method::PATCH,
            format!("{sa}/credentials/{FAKE}"),
            Some(json!({})),
            "service_accounts.manage",
        ),
        (
            Method::DELETE,
            format!("{sa}/credentials/{FAKE}"),
            None,
            "service_accounts.manage",
        ),
        (Method::GET, format!("{o}/api-keys"), None, "api_keys.view"),
        (
            Method::POST,
            format!("{o}/api-keys"),
            Some(json!({"name": ""})),
            "api_keys.create",
        ),
        (
            Method::GET,
            format!("{o}/api-keys/{}", f.key),
            None,
            "api_keys.view",
        ),
        (
            Method::PATCH,
            format!("{o}/api-keys/{FAKE}"),
            Some(json!({})),
            "api_keys.manage",
        ),
        (
            Method::POST,
            format!("{o}/api-keys/{FAKE}/regenerate"),
            Some(json!({"expires_at": null})),
            "api_keys.manage",
        ),
        (
            Method::POST,
            format!("{o}/api-keys/{FAKE}/revoke"),
            None,
            "api_keys.manage",
        ),
        (
            Method::DELETE,
            format!("{o}/api-keys/{FAKE}"),
            None,
            "api_keys.manage",
        ),
        (
            Method::POST,
            format!("{o}/api-keys/batch-delete"),
            Some(json!({"ids": [FAKE]})),
            "api_keys.manage",
        ),
        (
            Method::GET,
            format!("{o}/api-keys/{}/usage", f.key),
            None,
            "api_keys.view",
        ),
        (Method::GET, format!("{o}/metrics"), None, "api_keys.view"),
        (
            Method::GET,
            format!("{o}/shared-secret"),
            None,
            "shared_secret.view",
        ),
        (
            Method::POST,
            format!("{o}/shared-secret/reveal"),
            None,
            "shared_secret.view",
        ),
        (Method::GET, format!("{o}/audit-events"), None, "audit.view"),
        (
            Method::GET,
            format!("{o}/audit-sinks"),
            None,
            "audit.manage",
        ),
        (
            Method::POST,
            format!("{o}/audit-sinks"),
            Some(json!({"kind": "file", "path": "a.jsonl"})),
            "audit.manage",
        ),
        (
            Method::GET,
            format!("{o}/audit-sinks/{FAKE}"),
            None,
            "audit.manage",
        ),
        (
            Method::PATCH,
            format!("{o}/audit-sinks/{FAKE}"),
            Some(json!({})),
            "audit.manage",
        ),
        (
            Method::DELETE,
            format!("{o}/audit-sinks/{FAKE}"),
            None,
            "audit.manage",
        ),
        (Method::GET, format!("{o}/webhooks"), None, "webhooks.view"),
        (
            Method::POST,
            format!("{o}/webhooks"),
            Some(json!({"url": "not a url", "events": []})),
            "webhooks.manage",
        ),
        (
            Method::GET,
            format!("{o}/webhooks/{FAKE}"),
            None,
            "webhooks.view",
        ),
        (
            Method::PATCH,
            format!("{o}/webhooks/{FAKE}"),
            Some(json!({})),
            "webhooks.manage",
        ),
        (
            Method::DELETE,
            format!("{o}/webhooks/{FAKE}"),
            None,
            "webhooks.manage",
        ),
        (
            Method::GET,
            format!("{o}/webhooks/{FAKE}/deliveries"),
            None,
            "webhooks.view",
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body, perm) in &table {
        for p in &who {
            let (status, body_out) = p.send(&app, method.clone(), path, body.as_ref()).await;
            let expected_ok = p
                .role
                .map(|r| role_permissions(r).iter().any(|x| x == perm));
            let verdict = match expected_ok {
                None => status == 404,
                Some(true) => {
                    ![401, 403, 404].contains(&status)
                        || (status == 404 && path.contains(FAKE))
                        || (status == 404 && path.contains("/roles/nope"))
                        || (status == 404 && path.ends_with("/reveal"))
                }
                Some(false) => status == 403 && body_out["error"]["type"] == "permission_denied",
            };
            if status >= 500 || !verdict {
                failures.push(format!(
                    "{method} {path} as {}: got {status} {body_out}",
                    p.label
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authorization matrix failures:\n{}",
        failures.join("\n")
    );

    // Every denial was audited, in the caller's organization, with the permission named.
    let mut tx = app.db.store.read().await.unwrap();
    let chain = tx
        .audit_chain(&Id::from_trusted(app.org_id.clone()))
        .await
        .unwrap();
    let denied: Vec<_> = chain
        .iter()
        .filter(|e| e.draft.outcome == keyhaven_core::audit::Outcome::Denied)
        .collect();
    assert!(denied.len() >= 40, "only {} denials audited", denied.len());
    assert!(denied
        .iter()
        .all(|e| e.draft.changes["missing_permission"].is_string()));
}
both_backends!(matrix);

async fn no_escalation(app: TestApp) {
    let org = Id::from_trusted(app.org_id.clone());
    let system = Caller::system(org.clone(), "test");
    app.state
        .service
        .create_user(
            &system,
            CreateUser {
                email: "admin2@example.com".into(),
                display_name: "Admin".into(),
                password: "a long enough password".into(),
                roles: vec!["admin".into()],
            },
        )
        .await
        .unwrap();
    let (client, csrf) = app
        .sign_in("admin2@example.com", "a long enough password")
        .await;
    let o = format!("/v1/organizations/{}", app.org_id);
    let post = |path: String, body: Value| {
        client
            .post(app.url(&path))
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
    };
    // An admin may create keys, but not one that carries super-admin's extra permissions.
    let res = post(
        format!("{o}/api-keys"),
        json!({"name": "sneaky", "roles": ["super-admin"]}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403);
    let res = post(
        format!("{o}/api-keys"),
        json!({"name": "sneaky", "scopes": ["users.delete"]}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403);
    // Application scopes are free to grant.
    let res = post(
        format!("{o}/api-keys"),
        json!({"name": "fine", "roles": ["admin"], "scopes": ["billing:read"]}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    let res = post(
        format!("{o}/service-accounts"),
        json!({"name": "sa", "roles": ["super-admin"]}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403);

    // A personal key is limited by its user's current permissions.
    let body: Value = post(
        format!("{o}/api-keys"),
        json!({"name": "mine", "roles": ["admin"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key = body["key"].as_str().unwrap().to_string();
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
    assert!(me["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "api_keys.manage"));
    let (admin_client, admin_csrf) = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let users: Value = admin_client
        .get(app.url(&format!("{o}/users?q=admin2")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uid = users["data"][0]["id"].as_str().unwrap().to_string();
    let res = admin_client
        .patch(app.url(&format!("{o}/users/{uid}")))
        .header("x-csrf-token", &admin_csrf)
        .json(&json!({"roles": ["read-only"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
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
    let perms: Vec<&str> = me["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(!perms.contains(&"api_keys.manage"), "{perms:?}");
    assert!(perms.contains(&"api_keys.view"));
    // Deactivating the user stops the personal key.
    admin_client
        .patch(app.url(&format!("{o}/users/{uid}")))
        .header("x-csrf-token", &admin_csrf)
        .json(&json!({"status": "inactive"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.http
            .get(app.url("/v1/me"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}
both_backends!(no_escalation);

/// Sends `method path` with a session (cookie + CSRF) and returns status and body.
async fn session_call(
    app: &TestApp,
    (client, csrf): &(reqwest::Client, String),
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = client
        .request(method, app.url(path))
        .header("x-csrf-token", csrf);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Sends `method path` with a bearer key and returns status and body.
async fn key_call(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = app.http.request(method, app.url(path)).bearer_auth(key);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Denied audit entries for `action` on `target_id`.
async fn denied_entries(
    app: &TestApp,
    sa: &(reqwest::Client, String),
    action: &str,
    target_id: &str,
) -> usize {
    let o = format!("/v1/organizations/{}", app.org_id);
    let (status, body) = session_call(
        app,
        sa,
        Method::GET,
        &format!("{o}/audit-events?action={action}&target_id={target_id}&outcome=denied"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().len()
}

/// Existing credentials carry permissions too: an admin may not take over a more
/// powerful key's secret (regenerate) or a more powerful user's password (reset),
/// while editing a powerful key's other fields needs only api_keys.manage. A personal
/// key counts as its user for the "not yourself" rules.
async fn no_escalation_through_existing_credentials(app: TestApp) {
    let org = Id::from_trusted(app.org_id.clone());
    let system = Caller::system(org.clone(), "test");
    let svc = &app.state.service;
    let o = format!("/v1/organizations/{}", app.org_id);
    // Help desk: may reset passwords, and holds what read-only holds.
    svc.create_role(
        &system,
        keyhaven_service::roles::CreateRole {
            name: "helpdesk".into(),
            description: None,
            permissions: [
                "users.view",
                "users.reset_password",
                "organization.view",
                "roles.view",
                "service_accounts.view",
                "api_keys.view",
            ]
            .map(String::from)
            .to_vec(),
            key_name_pattern: None,
        },
    )
    .await
    .unwrap();
    for (email, role) in [
        ("admin2@example.com", "admin"),
        ("viewer@example.com", "read-only"),
        ("root2@example.com", "super-admin"),
        ("helpdesk@example.com", "helpdesk"),
    ] {
        svc.create_user(
            &system,
            CreateUser {
                email: email.into(),
                display_name: role.into(),
                password: "a long enough password".into(),
                roles: vec![role.into()],
            },
        )
        .await
        .unwrap();
    }
    let admin = app
        .sign_in("admin2@example.com", "a long enough password")
        .await;
    let root = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let sa = svc
        .create_service_account(
            &system,
            CreateServiceAccount {
                ratelimits: None,
                name: "deployer".into(),
                description: None,
                roles: Some(vec!["super-admin".into()]),
                external_id: None,
            },
        )
        .await
        .unwrap();
    let mut ids = std::collections::HashMap::new();
    for (name, role) in [("root-key", "super-admin"), ("admin-key", "admin")] {
        let (k, _, _) = svc
            .create_api_key(
                &system,
                CreateApiKey {
                    name: name.into(),
                    roles: Some(vec![role.into()]),
                    owner: Some(OwnerRef {
                        kind: keyhaven_core::principal::PrincipalKind::ServiceAccount,
                        id: sa.id.to_string(),
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        ids.insert(name, k.id.to_string());
    }
    // The super-admin's personal key holding super-admin.
    let personal = app.admin_key(&["super-admin"]).await;
    let (_, me) = key_call(&app, &personal, Method::GET, "/v1/me", None).await;
    let personal_id = me["principal"]["id"].as_str().unwrap().to_string();

    // 1. Regenerate: refused for keys with permissions the admin lacks, audited.
    for id in [&ids["root-key"], &personal_id] {
        let (status, body) = session_call(
            &app,
            &admin,
            Method::POST,
            &format!("{o}/api-keys/{id}/regenerate"),
            Some(json!({"expires_at": null})),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["type"], "permission_denied", "{body}");
        assert!(body.get("key").is_none() && body["error"].get("key").is_none());
        assert_eq!(
            denied_entries(&app, &root, "api_key.regenerate", id).await,
            1
        );
    }
    // …but fine for a key within the admin's own permissions, and for a super-admin.
    let (status, body) = session_call(
        &app,
        &admin,
        Method::POST,
        &format!("{o}/api-keys/{}/regenerate", ids["admin-key"]),
        Some(json!({"expires_at": null})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = session_call(
        &app,
        &root,
        Method::POST,
        &format!("{o}/api-keys/{}/regenerate", ids["root-key"]),
        Some(json!({"expires_at": null})),
    )
    .await;
    assert_eq!(status, 200);

    // 2. PATCH checks only what is newly granted.
    let (status, body) = session_call(
        &app,
        &admin,
        Method::PATCH,
        &format!("{o}/api-keys/{}", ids["root-key"]),
        Some(json!({"description": "x", "tags": ["prod"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["description"], "x");
    // Re-sending the roles it has, or adding one it already covers, grants nothing new.
    let (status, body) = session_call(
        &app,
        &admin,
        Method::PATCH,
        &format!("{o}/api-keys/{}", ids["root-key"]),
        Some(json!({"roles": ["super-admin", "read-only"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Adding super-admin to an admin key is still refused.
    let (status, body) = session_call(
        &app,
        &admin,
        Method::PATCH,
        &format!("{o}/api-keys/{}", ids["admin-key"]),
        Some(json!({"roles": ["admin", "super-admin"]})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = session_call(
        &app,
        &admin,
        Method::PATCH,
        &format!("{o}/api-keys/{}", ids["admin-key"]),
        Some(json!({"scopes": ["users.delete"]})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = session_call(
        &app,
        &admin,
        Method::PATCH,
        &format!("{o}/service-accounts/{}", sa.id),
        Some(json!({"description": "deploys"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // 1b. Resetting the password of a user with more permissions is refused, audited.
    let users: Value = session_call(&app, &root, Method::GET, &format!("{o}/users"), None)
        .await
        .1;
    let uid = |email: &str| {
        users["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == email)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (root_id, root2_id, viewer_id) = (
        uid(ADMIN_EMAIL),
        uid("root2@example.com"),
        uid("viewer@example.com"),
    );
    let admin2_id = uid("admin2@example.com");
    let helpdesk = app
        .sign_in("helpdesk@example.com", "a long enough password")
        .await;
    let reset = json!({"password": "a brand new password"});
    for target in [&root2_id, &admin2_id] {
        let (status, body) = session_call(
            &app,
            &helpdesk,
            Method::POST,
            &format!("{o}/users/{target}/reset-password"),
            Some(reset.clone()),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["type"], "permission_denied", "{body}");
        assert_eq!(
            denied_entries(&app, &root, "user.reset_password", target).await,
            1
        );
    }
    // The refused resets changed nothing.
    app.sign_in("root2@example.com", "a long enough password")
        .await;
    app.sign_in("admin2@example.com", "a long enough password")
        .await;
    let (status, body) = session_call(
        &app,
        &helpdesk,
        Method::POST,
        &format!("{o}/users/{viewer_id}/reset-password"),
        Some(reset.clone()),
    )
    .await;
    assert_eq!(status, 204, "{body}");

    // 3. A personal key cannot delete or reset its own user (another super-admin exists,
    // so this is about "yourself", not about the last super-admin).
    let (status, body) = key_call(
        &app,
        &personal,
        Method::POST,
        &format!("{o}/users/{root_id}/reset-password"),
        Some(reset.clone()),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "self_action", "{body}");
    let (status, body) = key_call(
        &app,
        &personal,
        Method::DELETE,
        &format!("{o}/users/{root_id}"),
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "self_action", "{body}");
    // The same key may act on another user.
    let (status, body) = key_call(
        &app,
        &personal,
        Method::POST,
        &format!("{o}/users/{root2_id}/reset-password"),
        Some(reset),
    )
    .await;
    assert_eq!(status, 204, "{body}");
}
both_backends!(no_escalation_through_existing_credentials);
