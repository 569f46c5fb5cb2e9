//! API.md's "Resources", over HTTP, on SQLite and PostgreSQL: organization, users,
//! roles, service accounts, credentials, shared secret, audit events, webhooks, and
//! the 404 wall between organizations. API keys, usage and metrics are in `api_keys.rs`.

use crate::support::*;
use base64::Engine;
use chrono::Duration;
use keyhaven_core::id::Id;
use serde_json::{json, Value};
use sqlx::Row;

fn without(v: &Value, key: &str) -> Value {
    let mut v = v.clone();
    v.as_object_mut().unwrap().remove(key);
    v
}

async fn sign_in_status(app: &TestApp, email: &str, password: &str) -> u16 {
    app.http
        .post(app.url("/v1/session"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

// ---------------------------------------------------------------------------------
// Organization
// ---------------------------------------------------------------------------------

async fn organization_get_and_patch(app: TestApp) {
    let sa = super_admin(&app).await;
    let o = sa.get("").await.ok(200);
    assert_keys(
        &o,
        &["id", "name", "key_prefix", "created_at", "updated_at"],
    );
    assert_eq!(o["id"], app.org_id.as_str());
    assert_eq!(o["name"], "Acme");
    assert_eq!(o["key_prefix"], "kh");
    assert_eq!(o["created_at"], "2026-11-22T12:00:00Z");
    assert_eq!(o["updated_at"], "2026-11-22T12:00:00Z");

    let (before, old_secret) = sa.create_key(json!({"name": "before-prefix-change"})).await;
    assert_key_shape(&old_secret, "kh");

    for bad in ["Acme", "a", "1abc", "ab_c", "ab-c", "abcdefghijklmnopq", ""] {
        sa.patch("", json!({"key_prefix": bad}))
            .await
            .bad("key_prefix");
    }
    sa.patch("", json!({"name": ""})).await.bad("name");
    let e = sa.patch("", json!({"nmae": "x"})).await.bad("nmae");
    assert_eq!(e["code"], "unknown_field");
    let e = sa
        .patch("", json!({"key_prefix": 7}))
        .await
        .bad("key_prefix");
    assert_eq!(e["type"], "invalid_request");
    assert_eq!(
        sa.get("").await.ok(200),
        o,
        "refused changes change nothing"
    );

    app.clock.advance(Duration::minutes(5));
    let res = sa
        .patch("", json!({"name": "Acme Corp", "key_prefix": "acme"}))
        .await;
    let o2 = res.ok(200);
    assert_keys(
        &o2,
        &["id", "name", "key_prefix", "created_at", "updated_at"],
    );
    assert_eq!(o2["name"], "Acme Corp");
    assert_eq!(o2["key_prefix"], "acme");
    assert_eq!(o2["created_at"], "2026-11-22T12:00:00Z");
    assert_eq!(o2["updated_at"], "2026-11-22T12:05:00Z");
    sa.assert_audited(&res, &sa, "organization.update", &app.org_id)
        .await;
    assert_eq!(sa.get("").await.ok(200), o2);

    // Keys created afterwards use the new prefix; earlier keys keep theirs and work.
    let (after, new_secret) = sa.create_key(json!({"name": "after-prefix-change"})).await;
    assert_key_shape(&new_secret, "acme");
    assert_eq!(
        after["masked_key"],
        format!("acme_…{}", &new_secret[new_secret.len() - 4..])
    );
    assert_eq!(me_status(&app, &new_secret).await, 200);
    assert_eq!(me_status(&app, &old_secret).await, 200);
    let b = sa
        .get(&format!("/api-keys/{}", before["id"].as_str().unwrap()))
        .await
        .ok(200);
    assert_eq!(
        b["masked_key"],
        format!("kh_…{}", &old_secret[old_secret.len() - 4..])
    );
    // Client credentials follow the prefix too.
    let acct = sa.create_sa("prefix-check", &[]).await;
    let cred = sa
        .post(
            &format!(
                "/service-accounts/{}/credentials",
                acct["id"].as_str().unwrap()
            ),
            json!({"name": "c"}),
        )
        .await
        .ok(201);
    assert_eq!(
        cred["client_id"],
        format!("acmeci_{}", cred["id"].as_str().unwrap())
    );
    assert_key_shape(cred["client_secret"].as_str().unwrap(), "acmecs");
    // The longest prefix allowed.
    sa.patch("", json!({"key_prefix": "a234567890123456"}))
        .await
        .ok(200);
}
both_backends!(organization_get_and_patch);

// ---------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------

async fn users_create(app: TestApp) {
    let sa = super_admin(&app).await;
    let res = sa
        .post(
            "/users",
            json!({"email": "Alice@Example.com", "display_name": "Alice",
                   "password": PASSWORD, "roles": ["admin"]}),
        )
        .await;
    let u = res.ok(201);
    assert_keys(&u, USER_FIELDS);
    assert_id(&u["id"]);
    let id = u["id"].as_str().unwrap().to_string();
    assert!(u["email"]
        .as_str()
        .unwrap()
        .eq_ignore_ascii_case("alice@example.com"));
    assert_eq!(u["display_name"], "Alice");
    assert_eq!(u["roles"], json!(["admin"]));
    assert_eq!(u["status"], "active");
    assert_eq!(u["last_login_at"], Value::Null);
    assert_eq!(u["created_at"], "2026-11-22T12:00:00Z");
    assert_eq!(u["updated_at"], "2026-11-22T12:00:00Z");
    sa.assert_audited(&res, &sa, "user.create", &id).await;
    assert_eq!(sa.get(&format!("/users/{id}")).await.ok(200), u);

    // Emails are unique, compared case-insensitively (also against the first admin).
    let dup = |email: &str| json!({"email": email, "display_name": "Dup", "password": PASSWORD, "roles": []});
    sa.post("/users", dup("alice@EXAMPLE.com")).await.err(409);
    sa.post("/users", dup(&ADMIN_EMAIL.to_uppercase()))
        .await
        .err(409);

    // Validation.
    let body = |email: &str, pw: &str, roles: Value| json!({"email": email, "display_name": "Someone", "password": pw, "roles": roles});
    sa.post(
        "/users",
        body("short@example.com", "elevenchars", json!([])),
    )
    .await
    .bad("password");
    let e = sa
        .post(
            "/users",
            body("role@example.com", PASSWORD, json!(["nope"])),
        )
        .await
        .err(400);
    assert!(
        e["param"].as_str().unwrap_or_default().starts_with("roles"),
        "{e}"
    );
    sa.post("/users", body("not-an-email", PASSWORD, json!([])))
        .await
        .bad("email");
    sa.post(
        "/users",
        json!({"email": "nodisplay@example.com", "password": PASSWORD, "roles": []}),
    )
    .await
    .bad("display_name");
    sa.post(
        "/users",
        json!({"email": "emptyname@example.com", "display_name": "", "password": PASSWORD,
               "roles": []}),
    )
    .await
    .bad("display_name");
    let e = sa
        .post(
            "/users",
            json!({"email": "x@example.com", "display_name": "X", "password": PASSWORD,
                   "role": ["admin"]}),
        )
        .await
        .bad("role");
    assert_eq!(e["code"], "unknown_field");
    sa.post(
        "/users",
        json!({"email": "x@example.com", "display_name": "X", "password": PASSWORD,
               "roles": "admin"}),
    )
    .await
    .bad("roles");
    // Exactly twelve characters is long enough.
    sa.post(
        "/users",
        body("twelve@example.com", "123456789012", json!(["read-only"])),
    )
    .await
    .ok(201);

    // The new user signs in; last_login_at is then set. The password never shows.
    let alice = Client::session(&app, "alice@example.com", PASSWORD).await;
    assert_eq!(alice.id(), id);
    let u = sa.get(&format!("/users/{id}")).await.ok(200);
    assert_eq!(u["last_login_at"], "2026-11-22T12:00:00Z");
    let audit = sa.get("/audit-events?limit=100").await;
    assert!(
        !audit.text.contains(PASSWORD),
        "no password in the audit log"
    );
}
both_backends!(users_create);

/// API.md marks optional body fields with `?` (`description?`, `expires_at?`, …);
/// `POST /users` lists `roles: [name…]` without one, so it is required.
async fn user_roles_are_required_on_create(app: TestApp) {
    let sa = super_admin(&app).await;
    // API.md marks optional body fields with `?`; `roles` has none, so it is required.
    sa.post(
        "/users",
        json!({"email": "noroles@example.com", "display_name": "No Roles", "password": PASSWORD}),
    )
    .await
    .bad("roles");
    assert!(sa.all("/users?q=noroles").await.is_empty());
}
both_backends!(user_roles_are_required_on_create);

async fn users_list_filters_and_pagination(app: TestApp) {
    let sa = super_admin(&app).await;
    let admin_id = sa.get("/users").await.ok(200)["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut made = Vec::new();
    for (email, name, roles) in [
        ("bob@example.com", "Bob Builder", vec!["read-only"]),
        ("carol@example.com", "Carol", vec!["admin"]),
        ("dave@example.com", "Dave", vec!["read-only"]),
        ("erin@corp.example", "Erin", vec![]),
        ("frank@corp.example", "Frank", vec!["read-only"]),
    ] {
        app.clock.advance(Duration::seconds(1));
        made.push(sa.create_user(email, name, &roles).await);
    }
    let id = |i: usize| made[i]["id"].as_str().unwrap().to_string();
    sa.patch(&format!("/users/{}", id(1)), json!({"status": "inactive"}))
        .await
        .ok(200);
    let names = |items: Vec<Value>| field(&items, "email");
    let ids_of = |items: &Vec<Value>| field(items, "id");

    assert_eq!(
        names(sa.all("/users?status=inactive").await),
        ["carol@example.com"]
    );
    assert_eq!(
        names(sa.all("/users?status=active").await),
        [
            "frank@corp.example",
            "erin@corp.example",
            "dave@example.com",
            "bob@example.com",
            ADMIN_EMAIL
        ]
    );
    assert_eq!(
        names(sa.all("/users?role=read-only").await),
        ["frank@corp.example", "dave@example.com", "bob@example.com"]
    );
    assert_eq!(
        names(sa.all("/users?role=super-admin").await),
        [ADMIN_EMAIL]
    );
    assert_eq!(
        names(sa.all("/users?q=corp.example").await),
        ["frank@corp.example", "erin@corp.example"]
    );
    assert_eq!(
        names(sa.all("/users?q=Builder").await),
        ["bob@example.com"],
        "q matches the display name"
    );
    assert_eq!(
        names(sa.all("/users?status=active&role=read-only&q=corp").await),
        ["frank@corp.example"]
    );
    assert!(sa.all("/users?role=nobody-has-this").await.is_empty());
    sa.get("/users?status=bogus").await.bad("status");

    // Pagination, newest first.
    let mut seen = Vec::new();
    let p1 = sa.get("/users?limit=2").await.ok(200);
    assert_keys(&p1, &["data", "has_more", "next_cursor"]);
    assert_eq!(p1["has_more"], true);
    let c1 = p1["next_cursor"].as_str().unwrap().to_string();
    seen.extend(ids_of(p1["data"].as_array().unwrap()));
    let p2 = sa.get(&format!("/users?limit=2&cursor={c1}")).await.ok(200);
    assert_eq!(p2["has_more"], true);
    let c2 = p2["next_cursor"].as_str().unwrap().to_string();
    seen.extend(ids_of(p2["data"].as_array().unwrap()));
    let p3 = sa.get(&format!("/users?limit=2&cursor={c2}")).await.ok(200);
    assert_eq!(p3["has_more"], false);
    assert_eq!(p3["next_cursor"], Value::Null);
    seen.extend(ids_of(p3["data"].as_array().unwrap()));
    assert_eq!(
        seen,
        [id(4), id(3), id(2), id(1), id(0), admin_id.clone()],
        "every user once, newest first"
    );
    let all = sa.get("/users").await.ok(200);
    assert_eq!(all["data"].as_array().unwrap().len(), 6);
    assert_eq!(all["has_more"], false);
    assert_eq!(all["next_cursor"], Value::Null);
    for u in all["data"].as_array().unwrap() {
        assert_keys(u, USER_FIELDS);
    }
    for bad in ["0", "101", "abc", "-1", "1.5"] {
        sa.get(&format!("/users?limit={bad}")).await.bad("limit");
    }
    for bad in ["garbage", "!!!", "AAAA"] {
        sa.get(&format!("/users?cursor={bad}")).await.bad("cursor");
    }
}
both_backends!(users_list_filters_and_pagination);

async fn users_get_patch_delete(app: TestApp) {
    let sa = super_admin(&app).await;
    let bob = sa
        .create_user("bob@example.com", "Bob", &["read-only"])
        .await;
    let id = bob["id"].as_str().unwrap().to_string();
    let path = format!("/users/{id}");
    assert_eq!(sa.get(&path).await.ok(200), bob);
    sa.get(&format!("/users/{FAKE_ID}")).await.err(404);
    sa.get("/users/not-an-id").await.err(404);

    app.clock.advance(Duration::minutes(1));
    let res = sa.patch(&path, json!({"display_name": "Robert"})).await;
    let u = res.ok(200);
    assert_keys(&u, USER_FIELDS);
    assert_eq!(u["display_name"], "Robert");
    assert_eq!(u["roles"], json!(["read-only"]), "absent fields stay");
    assert_eq!(u["updated_at"], "2026-11-22T12:01:00Z");
    assert_eq!(u["created_at"], "2026-11-22T12:00:00Z");
    sa.assert_audited(&res, &sa, "user.update", &id).await;

    let u = sa.patch(&path, json!({"roles": ["admin"]})).await.ok(200);
    assert_eq!(u["roles"], json!(["admin"]));
    assert_eq!(u["display_name"], "Robert");
    // A personal key of Bob's stops working while Bob is inactive.
    let bob_session = Client::session(&app, "bob@example.com", PASSWORD).await;
    let (_, bob_key) = bob_session
        .create_key(json!({"name": "bob-personal", "scopes": ["read"]}))
        .await;
    assert_eq!(me_status(&app, &bob_key).await, 200);
    let e = sa.patch(&path, json!({"roles": ["nope"]})).await.err(400);
    assert!(e["param"].as_str().unwrap_or_default().starts_with("roles"));
    sa.patch(&path, json!({"status": "bogus"}))
        .await
        .bad("status");
    let e = sa
        .patch(&path, json!({"email": "new@example.com"}))
        .await
        .bad("email");
    assert_eq!(e["code"], "unknown_field");

    let u = sa.patch(&path, json!({"status": "inactive"})).await.ok(200);
    assert_eq!(u["status"], "inactive");
    assert_eq!(sign_in_status(&app, "bob@example.com", PASSWORD).await, 401);
    assert_eq!(me_status(&app, &bob_key).await, 401, "inactive user's key");
    assert_eq!(
        bob_session.get("/v1/me").await.status,
        401,
        "inactive user's session"
    );
    sa.patch(&path, json!({"status": "active"})).await.ok(200);
    assert_eq!(sign_in_status(&app, "bob@example.com", PASSWORD).await, 200);
    assert_eq!(me_status(&app, &bob_key).await, 200);
    sa.patch(&format!("/users/{FAKE_ID}"), json!({"display_name": "x"}))
        .await
        .err(404);

    let res = sa.delete(&path).await;
    res.ok(204);
    assert!(res.text.is_empty(), "204 has no body");
    sa.assert_audited(&res, &sa, "user.delete", &id).await;
    sa.get(&path).await.err(404);
    sa.delete(&path).await.err(404);
    assert_eq!(sign_in_status(&app, "bob@example.com", PASSWORD).await, 401);
    assert!(!field(&sa.all("/users").await, "id").contains(&id));
}
both_backends!(users_get_patch_delete);

async fn users_self_and_last_super_admin_guards(app: TestApp) {
    let me = Client::session(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let admin_id = me.id();
    let admin = format!("/users/{admin_id}");

    // Not oneself.
    let e = me.delete(&admin).await.err(409);
    assert!(!e["message"].as_str().unwrap().is_empty());
    me.post(
        &format!("{admin}/reset-password"),
        json!({"password": "another long password"}),
    )
    .await
    .err(409);
    assert_eq!(
        sign_in_status(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await,
        200,
        "the refused reset changed nothing"
    );

    // Never without an active super-admin.
    me.patch(&admin, json!({"roles": ["admin"]})).await.err(409);
    me.patch(&admin, json!({"status": "inactive"}))
        .await
        .err(409);
    let key = super_admin(&app).await;
    key.delete(&admin).await.err(409);
    key.patch(&admin, json!({"roles": ["read-only"]}))
        .await
        .err(409);
    key.patch(&admin, json!({"status": "inactive"}))
        .await
        .err(409);

    // An inactive second super-admin does not count.
    let second = me
        .create_user("second@example.com", "Second", &["super-admin"])
        .await;
    let second = format!("/users/{}", second["id"].as_str().unwrap());
    me.patch(&second, json!({"status": "inactive"}))
        .await
        .ok(200);
    key.patch(&admin, json!({"status": "inactive"}))
        .await
        .err(409);
    key.delete(&admin).await.err(409);
    // With two active ones, one may step down; then the other is the last again.
    me.patch(&second, json!({"status": "active"})).await.ok(200);
    me.patch(&second, json!({"roles": ["admin"]})).await.ok(200);
    key.delete(&admin).await.err(409);
    let u = me.get(&admin).await.ok(200);
    assert_eq!(u["roles"], json!(["super-admin"]));
    assert_eq!(u["status"], "active");

    // Resetting another user's password.
    let bob = me
        .create_user("bob@example.com", "Bob", &["read-only"])
        .await;
    let bob_id = bob["id"].as_str().unwrap().to_string();
    let bob_client = Client::session(&app, "bob@example.com", PASSWORD).await;
    me.post(
        &format!("/users/{bob_id}/reset-password"),
        json!({"password": "short"}),
    )
    .await
    .bad("password");
    let res = me
        .post(
            &format!("/users/{bob_id}/reset-password"),
            json!({"password": "bob's brand new password"}),
        )
        .await;
    res.ok(204);
    assert!(res.text.is_empty());
    me.assert_audited(&res, &me, "user.reset_password", &bob_id)
        .await;
    assert_eq!(sign_in_status(&app, "bob@example.com", PASSWORD).await, 401);
    Client::session(&app, "bob@example.com", "bob's brand new password").await;
    let _ = bob_client;
    me.post(
        &format!("/users/{FAKE_ID}/reset-password"),
        json!({"password": "a long enough password"}),
    )
    .await
    .err(404);
    let audit = me.get("/audit-events?limit=100").await.ok(200).to_string();
    assert!(!audit.contains("bob's brand new password"));
}
both_backends!(users_self_and_last_super_admin_guards);

// ---------------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------------

async fn permissions_catalog_and_built_in_roles(app: TestApp) {
    let sa = super_admin(&app).await;
    let cat = sa.get("/v1/permissions").await.ok(200);
    let items = cat["data"].as_array().expect("a list of permissions");
    assert_eq!(items.len(), 21);
    assert_eq!(
        items
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect::<std::collections::BTreeSet<_>>(),
        strs(CATALOG)
    );
    for p in items {
        let d = p["description"].as_str().unwrap();
        assert!(!d.trim().is_empty() && !d.contains('\n'), "{p}");
    }
    // Any authenticated principal may read it; nobody else.
    let ro_key = app.admin_key(&["read-only"]).await;
    assert_eq!(
        Client::bearer(&app, &ro_key)
            .await
            .get("/v1/permissions")
            .await
            .status,
        200
    );
    assert_eq!(
        app.http
            .get(app.url("/v1/permissions"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let roles = sa.get("/roles").await.ok(200)["data"]
        .as_array()
        .unwrap()
        .clone();
    for r in &roles {
        assert_keys(r, ROLE_FIELDS);
    }
    let find = |n: &str| roles.iter().find(|r| r["name"] == n).unwrap().clone();
    let mut admin_perms = strs(CATALOG);
    for p in [
        "users.create",
        "users.reset_password",
        "users.delete",
        "roles.manage",
        "organization.manage",
        "audit.manage",
    ] {
        admin_perms.remove(p);
    }
    for (name, perms) in [
        ("super-admin", strs(CATALOG)),
        ("admin", admin_perms),
        ("read-only", strs(READ_ONLY)),
    ] {
        let r = find(name);
        assert_eq!(r["built_in"], true);
        assert_eq!(set(&r["permissions"]), perms, "{name}");
        assert_eq!(r["key_name_pattern"], Value::Null);
        assert!(r["description"].is_string());
        assert_timestamp(&r["created_at"]);
        assert_eq!(sa.get(&format!("/roles/{name}")).await.ok(200), r);
    }
    sa.get("/roles/nope").await.err(404);
}
both_backends!(permissions_catalog_and_built_in_roles);

async fn roles_create_change_delete(app: TestApp) {
    let sa = super_admin(&app).await;
    let res = sa
        .post(
            "/roles",
            json!({"name": "deployer", "description": "CI deploys",
                   "permissions": ["api_keys.view", "api_keys.create", "deploy:write"],
                   "key_name_pattern": "ci-[a-z0-9-]+"}),
        )
        .await;
    let r = res.ok(201);
    assert_keys(&r, ROLE_FIELDS);
    assert_eq!(r["name"], "deployer");
    assert_eq!(r["description"], "CI deploys");
    assert_eq!(
        set(&r["permissions"]),
        strs(&["api_keys.view", "api_keys.create", "deploy:write"])
    );
    assert_eq!(r["key_name_pattern"], "ci-[a-z0-9-]+");
    assert_eq!(r["built_in"], false);
    assert_eq!(r["created_at"], "2026-11-22T12:00:00Z");
    sa.assert_audited(&res, &sa, "role.create", "deployer")
        .await;
    assert_eq!(sa.get("/roles/deployer").await.ok(200), r);
    assert!(field(
        sa.get("/roles").await.ok(200)["data"].as_array().unwrap(),
        "name"
    )
    .contains(&"deployer".to_string()));

    // Without the optional fields.
    let r2 = sa
        .post("/roles", json!({"name": "viewer", "permissions": ["read"]}))
        .await
        .ok(201);
    assert_keys(&r2, ROLE_FIELDS);
    assert_eq!(r2["key_name_pattern"], Value::Null);

    sa.post("/roles", json!({"name": "deployer", "permissions": []}))
        .await
        .err(409);
    sa.post("/roles", json!({"name": "admin", "permissions": []}))
        .await
        .err(409);
    sa.post("/roles", json!({"name": "Bad Name", "permissions": []}))
        .await
        .bad("name");
    sa.post("/roles", json!({"name": "", "permissions": []}))
        .await
        .bad("name");
    sa.post(
        "/roles",
        json!({"name": "regex", "permissions": [], "key_name_pattern": "(["}),
    )
    .await
    .bad("key_name_pattern");
    let e = sa
        .post(
            "/roles",
            json!({"name": "perm", "permissions": ["Not A Permission"]}),
        )
        .await
        .err(400);
    assert!(e["param"]
        .as_str()
        .unwrap_or_default()
        .starts_with("permissions"));
    sa.post("/roles", json!({"name": "noperms"}))
        .await
        .bad("permissions");
    let e = sa
        .post(
            "/roles",
            json!({"name": "typo", "permissions": [], "permisions": []}),
        )
        .await
        .err(400);
    assert_eq!(e["code"], "unknown_field");

    app.clock.advance(Duration::minutes(1));
    let res = sa
        .patch(
            "/roles/deployer",
            json!({"description": "Deploys from CI",
                   "permissions": ["api_keys.view", "deploy:write", "deploy:read"]}),
        )
        .await;
    let r = res.ok(200);
    assert_keys(&r, ROLE_FIELDS);
    assert_eq!(r["description"], "Deploys from CI");
    assert_eq!(
        set(&r["permissions"]),
        strs(&["api_keys.view", "deploy:write", "deploy:read"])
    );
    assert_eq!(r["key_name_pattern"], "ci-[a-z0-9-]+");
    assert_eq!(r["updated_at"], "2026-11-22T12:01:00Z");
    sa.assert_audited(&res, &sa, "role.update", "deployer")
        .await;
    sa.patch("/roles/deployer", json!({"key_name_pattern": "(("}))
        .await
        .bad("key_name_pattern");
    sa.patch("/roles/nope", json!({"description": "x"}))
        .await
        .err(404);

    // Built-in roles can't be changed or deleted.
    let before = sa.get("/roles/admin").await.ok(200);
    sa.patch("/roles/admin", json!({"description": "mine now"}))
        .await
        .err(409);
    sa.patch("/roles/super-admin", json!({"permissions": []}))
        .await
        .err(409);
    for name in ["super-admin", "admin", "read-only"] {
        sa.delete(&format!("/roles/{name}")).await.err(409);
    }
    assert_eq!(sa.get("/roles/admin").await.ok(200), before);
    sa.delete("/roles/nope").await.err(404);

    // A role still assigned (to a key, a user or a service account) can't be deleted.
    let (k, _) = sa
        .create_key(json!({"name": "ci-web", "roles": ["deployer"]}))
        .await;
    sa.delete("/roles/deployer").await.err(409);
    sa.delete(&format!("/api-keys/{}", k["id"].as_str().unwrap()))
        .await
        .ok(204);
    let u = sa
        .create_user("dep@example.com", "Dep", &["deployer"])
        .await;
    sa.delete("/roles/deployer").await.err(409);
    sa.delete(&format!("/users/{}", u["id"].as_str().unwrap()))
        .await
        .ok(204);
    let acct = sa.create_sa("ci-robot", &["deployer"]).await;
    sa.delete("/roles/deployer").await.err(409);
    sa.delete(&format!(
        "/service-accounts/{}",
        acct["id"].as_str().unwrap()
    ))
    .await
    .ok(204);
    let res = sa.delete("/roles/deployer").await;
    res.ok(204);
    sa.assert_audited(&res, &sa, "role.delete", "deployer")
        .await;
    sa.get("/roles/deployer").await.err(404);
}
both_backends!(roles_create_change_delete);

async fn key_name_pattern_is_enforced(app: TestApp) {
    let sa = super_admin(&app).await;
    sa.post(
        "/roles",
        json!({"name": "ci", "permissions": ["deploy:write"], "key_name_pattern": "ci-[a-z]+"}),
    )
    .await
    .ok(201);
    sa.post("/api-keys", json!({"name": "build", "roles": ["ci"]}))
        .await
        .bad("name");
    let (k, _) = sa
        .create_key(json!({"name": "ci-build", "roles": ["ci"]}))
        .await;
    let kpath = format!("/api-keys/{}", k["id"].as_str().unwrap());
    sa.patch(&kpath, json!({"name": "renamed"}))
        .await
        .bad("name");
    // Without the role, any name.
    let (free, _) = sa.create_key(json!({"name": "build"})).await;
    sa.patch(
        &format!("/api-keys/{}", free["id"].as_str().unwrap()),
        json!({"roles": ["ci"]}),
    )
    .await
    .bad("name");

    sa.post(
        "/service-accounts",
        json!({"name": "robot", "roles": ["ci"]}),
    )
    .await
    .bad("name");
    let acct = sa.create_sa("ci-robot", &["ci"]).await;
    sa.patch(
        &format!("/service-accounts/{}", acct["id"].as_str().unwrap()),
        json!({"name": "robot"}),
    )
    .await
    .bad("name");
    // Refused requests created nothing.
    let names = field(&sa.all("/api-keys").await, "name");
    assert!(!names.contains(&"renamed".to_string()));
    let accts = field(&sa.all("/service-accounts?status=all").await, "name");
    assert_eq!(accts, ["ci-robot"]);
}
both_backends!(key_name_pattern_is_enforced);

// ---------------------------------------------------------------------------------
// Service accounts
// ---------------------------------------------------------------------------------

async fn service_accounts_crud_and_list(app: TestApp) {
    let sa = super_admin(&app).await;
    let res = sa
        .post(
            "/service-accounts",
            json!({"name": "billing-sync", "description": "Syncs invoices", "roles": ["read-only"]}),
        )
        .await;
    let a = res.ok(201);
    assert_keys(&a, SA_FIELDS);
    assert_id(&a["id"]);
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["name"], "billing-sync");
    assert_eq!(a["description"], "Syncs invoices");
    assert_eq!(a["roles"], json!(["read-only"]));
    assert_eq!(a["status"], "active");
    assert_keys(&a["created_by"], &["type", "id", "name"]);
    assert_eq!(
        a["created_by"], sa.principal,
        "created_by is the creating key"
    );
    assert_eq!(a["created_at"], "2026-11-22T12:00:00Z");
    assert_eq!(a["updated_at"], "2026-11-22T12:00:00Z");
    sa.assert_audited(&res, &sa, "service_account.create", &id)
        .await;
    let path = format!("/service-accounts/{id}");
    assert_eq!(sa.get(&path).await.ok(200), a);

    // Created by a person.
    let me = Client::session(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let human = me
        .post("/service-accounts", json!({"name": "minimal"}))
        .await
        .ok(201);
    assert_keys(&human, SA_FIELDS);
    assert_eq!(human["created_by"]["type"], "user");
    assert_eq!(human["created_by"]["id"], me.principal["id"]);
    assert!(human["created_by"]["name"].is_string());
    assert_eq!(human["roles"], json!([]));

    sa.post("/service-accounts", json!({})).await.bad("name");
    sa.post("/service-accounts", json!({"name": ""}))
        .await
        .bad("name");
    sa.post("/service-accounts", json!({"name": "x".repeat(101)}))
        .await
        .bad("name");
    let e = sa
        .post("/service-accounts", json!({"name": "x", "roles": ["nope"]}))
        .await
        .err(400);
    assert!(e["param"].as_str().unwrap_or_default().starts_with("roles"));
    let e = sa
        .post(
            "/service-accounts",
            json!({"name": "x", "status": "active"}),
        )
        .await
        .bad("status");
    assert_eq!(e["code"], "unknown_field");

    app.clock.advance(Duration::minutes(1));
    let res = sa
        .patch(
            &path,
            json!({"name": "billing-sync-v2", "description": "new", "roles": []}),
        )
        .await;
    let a2 = res.ok(200);
    assert_keys(&a2, SA_FIELDS);
    assert_eq!(a2["name"], "billing-sync-v2");
    assert_eq!(a2["description"], "new");
    assert_eq!(a2["roles"], json!([]));
    assert_eq!(a2["updated_at"], "2026-11-22T12:01:00Z");
    assert_eq!(a2["created_by"], a["created_by"]);
    sa.assert_audited(&res, &sa, "service_account.update", &id)
        .await;
    let e = sa
        .patch(&path, json!({"status": "archived"}))
        .await
        .bad("status");
    assert_eq!(e["code"], "unknown_field");
    sa.patch(&path, json!({"name": ""})).await.bad("name");
    sa.patch(
        &format!("/service-accounts/{FAKE_ID}"),
        json!({"name": "x"}),
    )
    .await
    .err(404);
    sa.get(&format!("/service-accounts/{FAKE_ID}"))
        .await
        .err(404);

    // Listing: archived ones are hidden unless asked for.
    let suspended = sa.create_sa("suspended-one", &[]).await;
    let archived = sa.create_sa("archived-one", &[]).await;
    sa.act(&format!(
        "/service-accounts/{}/suspend",
        suspended["id"].as_str().unwrap()
    ))
    .await
    .ok(200);
    sa.act(&format!(
        "/service-accounts/{}/archive",
        archived["id"].as_str().unwrap()
    ))
    .await
    .ok(200);
    let names = |v: Vec<Value>| {
        let mut n = field(&v, "name");
        n.sort();
        n
    };
    assert_eq!(
        names(sa.all("/service-accounts").await),
        ["billing-sync-v2", "minimal", "suspended-one"]
    );
    assert_eq!(
        names(sa.all("/service-accounts?status=archived").await),
        ["archived-one"]
    );
    assert_eq!(
        names(sa.all("/service-accounts?status=all").await),
        [
            "archived-one",
            "billing-sync-v2",
            "minimal",
            "suspended-one"
        ]
    );
    assert_eq!(
        names(sa.all("/service-accounts?status=suspended").await),
        ["suspended-one"]
    );
    assert_eq!(
        names(sa.all("/service-accounts?status=active").await),
        ["billing-sync-v2", "minimal"]
    );
    assert_eq!(
        names(sa.all("/service-accounts?q=billing").await),
        ["billing-sync-v2"]
    );
    assert_eq!(
        names(sa.all("/service-accounts?q=one&status=all").await),
        ["archived-one", "suspended-one"]
    );
    sa.get("/service-accounts?status=bogus").await.bad("status");
    let p = sa.get("/service-accounts?status=all&limit=3").await.ok(200);
    assert_eq!(p["data"].as_array().unwrap().len(), 3);
    assert_eq!(p["has_more"], true);
    let rest = sa
        .get(&format!(
            "/service-accounts?status=all&limit=3&cursor={}",
            p["next_cursor"].as_str().unwrap()
        ))
        .await
        .ok(200);
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["has_more"], false);
    sa.get("/service-accounts?limit=0").await.bad("limit");

    // Delete.
    let mpath = format!("/service-accounts/{}", human["id"].as_str().unwrap());
    let res = sa.delete(&mpath).await;
    res.ok(204);
    sa.assert_audited(
        &res,
        &sa,
        "service_account.delete",
        human["id"].as_str().unwrap(),
    )
    .await;
    sa.get(&mpath).await.err(404);
    sa.delete(&mpath).await.err(404);
}
both_backends!(service_accounts_crud_and_list);

async fn service_account_lifecycle(app: TestApp) {
    let sa = super_admin(&app).await;
    let acct = sa.create_sa("worker", &["read-only"]).await;
    let id = acct["id"].as_str().unwrap().to_string();
    let owner = json!({"type": "service_account", "id": id});
    let (k1, s1) = sa
        .create_key(json!({"name": "worker-1", "owner": owner}))
        .await;
    let (k2, s2) = sa
        .create_key(json!({"name": "worker-2", "owner": owner}))
        .await;
    assert_eq!(me_status(&app, &s1).await, 200);
    let cred = sa
        .post(
            &format!("/service-accounts/{id}/credentials"),
            json!({"name": "worker-cred"}),
        )
        .await
        .ok(201);

    app.clock.advance(Duration::minutes(1));
    let res = sa.act(&format!("/service-accounts/{id}/suspend")).await;
    let a = res.ok(200);
    assert_keys(&a, SA_FIELDS);
    assert_eq!(a["status"], "suspended");
    assert_eq!(a["updated_at"], "2026-11-22T12:01:00Z");
    sa.assert_audited(&res, &sa, "service_account.suspend", &id)
        .await;
    assert_eq!(verify(&app, json!({"key": s1})).await["code"], "DISABLED");
    assert_eq!(
        sa.get(&format!("/service-accounts/{id}")).await.ok(200)["status"],
        "suspended"
    );

    let res = sa.act(&format!("/service-accounts/{id}/reactivate")).await;
    let a = res.ok(200);
    assert_keys(&a, SA_FIELDS);
    assert_eq!(a["status"], "active");
    sa.assert_audited(&res, &sa, "service_account.reactivate", &id)
        .await;
    assert_eq!(verify(&app, json!({"key": s1})).await["code"], "VALID");

    app.clock.advance(Duration::minutes(1));
    let res = sa.act(&format!("/service-accounts/{id}/archive")).await;
    let a = res.ok(200);
    assert_keys(&a, SA_FIELDS);
    assert_eq!(a["status"], "archived");
    sa.assert_audited(&res, &sa, "service_account.archive", &id)
        .await;
    // Every key it owns is revoked.
    for k in [&k1, &k2] {
        let k = sa
            .get(&format!("/api-keys/{}", k["id"].as_str().unwrap()))
            .await
            .ok(200);
        assert_eq!(k["status"], "revoked", "{k}");
        assert_eq!(k["revoked_at"], "2026-11-22T12:02:00Z");
    }
    assert_eq!(
        field(
            &sa.all(&format!("/api-keys?owner_id={id}&status=revoked"))
                .await,
            "name"
        )
        .len(),
        2
    );
    assert_eq!(me_status(&app, &s1).await, 401);
    assert_eq!(me_status(&app, &s2).await, 401);
    // And its credentials (the credential object has no status: check the store).
    {
        let org = Id::from_trusted(app.org_id.clone());
        let mut tx = app.db.store.read().await.unwrap();
        let c = tx
            .credential(
                &org,
                &Id::from_trusted(id.clone()),
                &Id::from_trusted(cred["id"].as_str().unwrap().to_string()),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(c.revoked_at.is_some(), "archiving revokes credentials");
    }
    // Archived is final.
    sa.act(&format!("/service-accounts/{id}/reactivate"))
        .await
        .err(409);
    assert_eq!(
        sa.get(&format!("/service-accounts/{id}")).await.ok(200)["status"],
        "archived"
    );
    sa.act(&format!("/service-accounts/{FAKE_ID}/suspend"))
        .await
        .err(404);
}
both_backends!(service_account_lifecycle);

async fn service_account_expand_permissions(app: TestApp) {
    let sa = super_admin(&app).await;
    let acct = sa.create_sa("expandable", &[]).await;
    let id = acct["id"].as_str().unwrap().to_string();
    let cred = sa
        .post(
            &format!("/service-accounts/{id}/credentials"),
            json!({"name": "c"}),
        )
        .await
        .ok(201);
    let cred_id = cred["id"].as_str().unwrap().to_string();
    let full = json!({"service_accounts": {"view": true, "manage": true},
                      "api_keys": {"view": true, "create": true, "manage": true}});
    let read_only = json!({"service_accounts": {"view": true, "manage": false},
                           "api_keys": {"view": true, "create": false, "manage": false}});

    sa.create_user("ro@example.com", "RO", &["read-only"]).await;
    let ro = Client::session(&app, "ro@example.com", PASSWORD).await;
    for (who, want) in [(&sa, &full), (&ro, &read_only)] {
        for q in ["expand[]=permissions", "expand%5B%5D=permissions"] {
            let one = who
                .get(&format!("/service-accounts/{id}?{q}"))
                .await
                .ok(200);
            let mut fields = SA_FIELDS.to_vec();
            fields.push("permissions");
            assert_keys(&one, &fields);
            assert_eq!(&one["permissions"], want);
            assert_eq!(without(&one, "permissions"), acct);
            let list = who.get(&format!("/service-accounts?{q}")).await.ok(200);
            let items = list["data"].as_array().unwrap();
            assert!(!items.is_empty());
            for item in items {
                assert_eq!(&item["permissions"], want);
            }
            let c = who
                .get(&format!("/service-accounts/{id}/credentials/{cred_id}?{q}"))
                .await
                .ok(200);
            assert_eq!(&c["permissions"], want);
            let cl = who
                .get(&format!("/service-accounts/{id}/credentials?{q}"))
                .await
                .ok(200);
            for item in cl["data"].as_array().unwrap() {
                assert_eq!(&item["permissions"], want);
            }
        }
        // Without the expansion, no permissions field.
        let one = who.get(&format!("/service-accounts/{id}")).await.ok(200);
        assert_keys(&one, SA_FIELDS);
        let c = who
            .get(&format!("/service-accounts/{id}/credentials/{cred_id}"))
            .await
            .ok(200);
        assert_keys(&c, CRED_FIELDS);
    }
    let e = sa
        .get(&format!("/service-accounts/{id}?expand[]=owner"))
        .await
        .err(400);
    assert!(e["param"]
        .as_str()
        .unwrap_or_default()
        .starts_with("expand"));
}
both_backends!(service_account_expand_permissions);

async fn deleting_a_service_account_removes_its_keys(app: TestApp) {
    let sa = super_admin(&app).await;
    let acct = sa.create_sa("doomed", &["read-only"]).await;
    let id = acct["id"].as_str().unwrap().to_string();
    let (k, secret) = sa
        .create_key(json!({"name": "doomed-key", "owner": {"type": "service_account", "id": id}}))
        .await;
    let kid = k["id"].as_str().unwrap().to_string();
    let cred = sa
        .post(
            &format!("/service-accounts/{id}/credentials"),
            json!({"name": "doomed-cred"}),
        )
        .await
        .ok(201);
    assert_eq!(me_status(&app, &secret).await, 200);

    let res = sa.delete(&format!("/service-accounts/{id}")).await;
    res.ok(204);
    assert!(res.text.is_empty());
    sa.assert_audited(&res, &sa, "service_account.delete", &id)
        .await;
    sa.get(&format!("/api-keys/{kid}")).await.err(404);
    assert_eq!(me_status(&app, &secret).await, 401);
    assert_eq!(verify(&app, json!({"key": secret})).await["valid"], false);
    sa.get(&format!(
        "/service-accounts/{id}/credentials/{}",
        cred["id"].as_str().unwrap()
    ))
    .await
    .err(404);
    sa.get(&format!("/service-accounts/{id}/credentials"))
        .await
        .err(404);
    sa.get(&format!("/service-accounts/{id}")).await.err(404);
    assert!(!field(&sa.all("/service-accounts?status=all").await, "id").contains(&id));
    assert!(sa.all(&format!("/api-keys?owner_id={id}")).await.is_empty());
    // The audit trail remains, with the account's name.
    let trail = sa.all(&format!("/audit-events?target_id={id}")).await;
    let create = trail
        .iter()
        .find(|e| e["action"] == "service_account.create")
        .expect("creation still audited");
    assert_eq!(create["target"]["name"], "doomed");
}
both_backends!(deleting_a_service_account_removes_its_keys);

// ---------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------

async fn credentials_lifecycle(app: TestApp) {
    let sa = super_admin(&app).await;
    let acct = sa.create_sa("ci", &[]).await;
    let sid = acct["id"].as_str().unwrap().to_string();
    let base = format!("/service-accounts/{sid}/credentials");
    let res = sa
        .post(
            &base,
            json!({"name": "ci-runner", "description": "GitHub Actions"}),
        )
        .await;
    let c = res.ok(201);
    let mut fields = CRED_FIELDS.to_vec();
    fields.push("client_secret");
    assert_keys(&c, &fields);
    assert_id(&c["id"]);
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["client_id"], format!("khci_{id}"));
    let secret = c["client_secret"].as_str().unwrap().to_string();
    assert_key_shape(&secret, "khcs");
    assert_eq!(c["name"], "ci-runner");
    assert_eq!(c["description"], "GitHub Actions");
    assert_eq!(c["last_used_at"], Value::Null);
    assert_eq!(c["expires_at"], Value::Null);
    assert_eq!(c["created_at"], "2026-11-22T12:00:00Z");
    assert_eq!(c["updated_at"], "2026-11-22T12:00:00Z");
    sa.assert_audited(&res, &sa, "credential.create", &id).await;

    // The secret is never shown again.
    let path = format!("{base}/{id}");
    let got = sa.get(&path).await;
    assert_keys(&got.ok(200), CRED_FIELDS);
    assert_eq!(got.body, without(&c, "client_secret"));
    assert!(!got.text.contains(&secret[5..]));
    let list = sa.get(&base).await;
    let items = list.ok(200)["data"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_keys(&items[0], CRED_FIELDS);
    assert!(!list.text.contains(&secret[5..]));
    for e in sa.all("/audit-events").await {
        assert!(!e.to_string().contains(&secret[5..]), "secret in {e}");
    }

    app.clock.advance(Duration::minutes(1));
    let res = sa
        .patch(
            &path,
            json!({"name": "ci-runner-2", "description": "changed"}),
        )
        .await;
    let c2 = res.ok(200);
    assert_keys(&c2, CRED_FIELDS);
    assert_eq!(c2["name"], "ci-runner-2");
    assert_eq!(c2["description"], "changed");
    assert_eq!(c2["client_id"], c["client_id"]);
    assert_eq!(c2["updated_at"], "2026-11-22T12:01:00Z");
    sa.assert_audited(&res, &sa, "credential.update", &id).await;
    let e = sa
        .patch(&path, json!({"expires_at": "2030-01-01T00:00:00Z"}))
        .await
        .bad("expires_at");
    assert_eq!(e["code"], "unknown_field");
    sa.patch(&path, json!({"name": ""})).await.bad("name");

    // Expiry.
    sa.post(
        &base,
        json!({"name": "old", "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await
    .bad("expires_at");
    sa.post(&base, json!({"name": "bad", "expires_at": "tomorrow"}))
        .await
        .bad("expires_at");
    let exp = sa
        .post(
            &base,
            json!({"name": "expiring", "expires_at": "2027-01-01T00:00:00Z"}),
        )
        .await
        .ok(201);
    assert_eq!(exp["expires_at"], "2027-01-01T00:00:00Z");
    sa.post(&base, json!({"description": "no name"}))
        .await
        .bad("name");
    sa.post(
        &format!("/service-accounts/{FAKE_ID}/credentials"),
        json!({"name": "x"}),
    )
    .await
    .err(404);
    // A credential is reachable only under its own account.
    let other = sa.create_sa("other", &[]).await;
    sa.get(&format!(
        "/service-accounts/{}/credentials/{id}",
        other["id"].as_str().unwrap()
    ))
    .await
    .err(404);

    let res = sa.delete(&path).await;
    res.ok(204);
    sa.assert_audited(&res, &sa, "credential.delete", &id).await;
    sa.get(&path).await.err(404);
    sa.delete(&path).await.err(404);
    assert_eq!(
        field(
            sa.get(&base).await.ok(200)["data"].as_array().unwrap(),
            "name"
        ),
        ["expiring"]
    );
}
both_backends!(credentials_lifecycle);

// ---------------------------------------------------------------------------------
// Shared secret
// ---------------------------------------------------------------------------------

fn assert_whsec(s: &str) {
    let b64 = s.strip_prefix("whsec_").expect("whsec_ prefix");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert_eq!(raw.len(), 32);
}

async fn shared_secret(app: TestApp) {
    let sa = super_admin(&app).await;
    let st = sa.get("/shared-secret").await.ok(200);
    assert_keys(&st, &["exists", "created_at", "previous_valid_until"]);
    assert_eq!(
        st,
        json!({"exists": false, "created_at": null, "previous_valid_until": null})
    );
    sa.act("/shared-secret/reveal").await.err(404);

    let res = sa.act("/shared-secret/rotate").await;
    let r1 = res.ok(200);
    assert_keys(&r1, &["secret", "previous_valid_until"]);
    assert_eq!(r1["previous_valid_until"], Value::Null);
    let s1 = r1["secret"].as_str().unwrap().to_string();
    assert_whsec(&s1);
    sa.assert_audited(&res, &sa, "shared_secret.rotate", &app.org_id)
        .await;
    assert_eq!(
        sa.get("/shared-secret").await.ok(200),
        json!({"exists": true, "created_at": "2026-11-22T12:00:00Z", "previous_valid_until": null})
    );
    let res = sa.act("/shared-secret/reveal").await;
    assert_eq!(res.ok(200), json!({"secret": s1}));
    sa.assert_audited(&res, &sa, "shared_secret.reveal", &app.org_id)
        .await;

    app.clock.advance(Duration::hours(1));
    let r2 = sa.act("/shared-secret/rotate").await.ok(200);
    let s2 = r2["secret"].as_str().unwrap().to_string();
    assert_whsec(&s2);
    assert_ne!(s1, s2);
    assert_eq!(r2["previous_valid_until"], "2026-11-23T13:00:00Z");
    assert_eq!(
        sa.get("/shared-secret").await.ok(200),
        json!({"exists": true, "created_at": "2026-11-22T13:00:00Z",
               "previous_valid_until": "2026-11-23T13:00:00Z"})
    );
    let res = sa.act("/shared-secret/reveal").await;
    assert_eq!(res.ok(200), json!({"secret": s2}));
    sa.assert_audited(&res, &sa, "shared_secret.reveal", &app.org_id)
        .await;
    let reveals = sa.all("/audit-events?action=shared_secret.reveal").await;
    assert_eq!(reveals.len(), 2);

    // Neither the database nor the audit log holds the secret in plain text.
    let store = keyhaven_store::SqlStore::connect(&app.db.url)
        .await
        .unwrap();
    let rows = sqlx::query("SELECT ciphertext, previous_ciphertext FROM shared_secrets")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    for row in &rows {
        let cur: String = row.try_get("ciphertext").unwrap();
        let prev: Option<String> = row.try_get("previous_ciphertext").unwrap();
        for col in [Some(cur), prev].into_iter().flatten() {
            assert!(!col.contains("whsec_"), "plain secret stored");
            assert!(!col.contains(&s1[6..]) && !col.contains(&s2[6..]));
        }
    }
    let changes = sqlx::query("SELECT changes FROM audit_events")
        .fetch_all(store.pool())
        .await
        .unwrap();
    for row in &changes {
        let c: String = row.try_get("changes").unwrap();
        assert!(!c.contains("whsec_"), "secret in audit changes: {c}");
    }
    store.pool().close().await;
    let audit = sa.all("/audit-events").await;
    let text = serde_json::to_string(&audit).unwrap();
    assert!(!text.contains(&s1[6..]) && !text.contains(&s2[6..]));

    // Reading the secret needs shared_secret.view.
    let ro = Client::bearer(&app, &app.admin_key(&["read-only"]).await).await;
    ro.act("/shared-secret/reveal").await.err(403);
    ro.act("/shared-secret/rotate").await.err(403);
}
both_backends!(shared_secret);

// ---------------------------------------------------------------------------------
// Audit events
// ---------------------------------------------------------------------------------

async fn audit_events_filters_order_and_chain(app: TestApp) {
    let sa = super_admin(&app).await;
    let me = Client::session(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    sa.create_user("ro@example.com", "RO", &["read-only"]).await;
    let ro = Client::session(&app, "ro@example.com", PASSWORD).await;

    let acct = sa.create_sa("audited", &[]).await;
    let aid = acct["id"].as_str().unwrap().to_string();
    let res = me
        .patch(
            &format!("/service-accounts/{aid}"),
            json!({"description": "by a human"}),
        )
        .await;
    res.ok(200);
    let e = sa
        .assert_audited(&res, &me, "service_account.update", &aid)
        .await;
    assert_eq!(e["actor"]["type"], "user");
    assert_eq!(e["target"]["type"], "service_account");
    assert_eq!(e["target"]["name"], "audited");
    assert!(e["changes"].is_object(), "{e}");
    ro.post("/service-accounts", json!({"name": "not allowed"}))
        .await
        .err(403);

    // Everything before t1 happened at 12:00, everything after at 13:00, so inclusive
    // and exclusive readings of since/until agree.
    app.clock.advance(Duration::hours(1));
    let t1 = "2026-11-22T12:30:00Z";
    let (k, _) = sa.create_key(json!({"name": "after-t1"})).await;
    let kid = k["id"].as_str().unwrap().to_string();
    // Several entries in one request (and one millisecond).
    let (a, _) = sa.create_key(json!({"name": "batch-a"})).await;
    let (b, _) = sa.create_key(json!({"name": "batch-b"})).await;
    let (c, _) = sa.create_key(json!({"name": "batch-c"})).await;
    sa.post(
        "/api-keys/batch-delete",
        json!({"ids": [a["id"], b["id"], c["id"]]}),
    )
    .await
    .ok(200);

    // The caller's own request id is echoed and recorded.
    let res = sa
        .send_with(
            reqwest::Method::PATCH,
            &format!("/service-accounts/{aid}"),
            Some(&json!({"description": "with my request id"})),
            &[("x-request-id", "my-request-42")],
        )
        .await;
    res.ok(200);
    assert_eq!(res.rid, "my-request-42");
    sa.assert_audited(&res, &sa, "service_account.update", &aid)
        .await;

    let all = sa.all("/audit-events").await;
    assert!(all.len() >= 10);
    for e in &all {
        assert_keys(e, AUDIT_FIELDS);
        assert_id(&e["id"]);
        assert_timestamp(&e["at"]);
        assert_keys(&e["actor"], &["type", "id", "name"]);
        assert!(["success", "denied", "error"].contains(&e["outcome"].as_str().unwrap()));
        let h = e["hash"].as_str().unwrap();
        assert_eq!(h.len(), 64, "SHA-256 hex");
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(e["prev_hash"].as_str().unwrap().len(), 64);
    }
    for w in all.windows(2) {
        assert!(ts(&w[0]["at"]) >= ts(&w[1]["at"]), "newest first");
    }

    // Filters.
    let by_me = sa.all(&format!("/audit-events?actor_id={}", me.id())).await;
    assert!(!by_me.is_empty());
    assert!(by_me.iter().all(|e| e["actor"]["id"] == me.principal["id"]));
    assert!(by_me
        .iter()
        .any(|e| e["action"] == "service_account.update"));
    let creates = sa.all("/audit-events?action=service_account.create").await;
    assert!(creates
        .iter()
        .all(|e| e["action"] == "service_account.create"));
    assert_eq!(creates.len(), 2, "the success and ro's denied attempt");
    let creates = sa
        .all("/audit-events?action=service_account.create&outcome=success")
        .await;
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0]["target"]["id"], aid.as_str());
    let on_acct = sa.all(&format!("/audit-events?target_id={aid}")).await;
    assert!(on_acct.iter().all(|e| e["target"]["id"] == aid.as_str()));
    let mut actions = field(&on_acct, "action");
    actions.sort();
    assert_eq!(
        actions,
        [
            "service_account.create",
            "service_account.update",
            "service_account.update"
        ]
    );
    let denied = sa.all("/audit-events?outcome=denied").await;
    assert!(!denied.is_empty());
    assert!(denied.iter().all(|e| e["outcome"] == "denied"));
    assert!(denied
        .iter()
        .any(|e| e["actor"]["id"] == ro.principal["id"]));
    assert!(sa
        .all("/audit-events?outcome=success")
        .await
        .iter()
        .all(|e| e["outcome"] == "success"));
    let since = sa.all(&format!("/audit-events?since={t1}")).await;
    assert!(since.iter().all(|e| ts(&e["at"]) >= ts(&json!(t1))));
    assert!(since.iter().any(|e| e["target"]["id"] == kid.as_str()));
    assert!(!since
        .iter()
        .any(|e| e["action"] == "service_account.create"));
    let until = sa.all(&format!("/audit-events?until={t1}")).await;
    assert!(until.iter().all(|e| ts(&e["at"]) <= ts(&json!(t1))));
    assert!(until
        .iter()
        .any(|e| e["action"] == "service_account.create"));
    assert!(!until.iter().any(|e| e["target"]["id"] == kid.as_str()));
    assert_eq!(since.len() + until.len(), all.len());
    let combined = sa
        .all(&format!(
            "/audit-events?actor_id={}&action=api_key.create&since={t1}",
            sa.id()
        ))
        .await;
    assert_eq!(combined.len(), 4);
    sa.get("/audit-events?since=yesterday").await.bad("since");
    sa.get("/audit-events?until=2026-13-01T00:00:00Z")
        .await
        .bad("until");
    sa.get("/audit-events?outcome=bogus").await.bad("outcome");
    sa.get("/audit-events?limit=0").await.bad("limit");

    // Pagination without duplicates.
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = match &cursor {
            Some(c) => sa.get(&format!("/audit-events?limit=3&cursor={c}")).await,
            None => sa.get("/audit-events?limit=3").await,
        }
        .ok(200);
        ids.extend(field(p["data"].as_array().unwrap(), "id"));
        if p["has_more"] == false {
            break;
        }
        cursor = Some(p["next_cursor"].as_str().unwrap().to_string());
    }
    assert_eq!(ids, field(&all, "id"));

    // Entries are never changed or deleted through the API.
    let first = all.last().unwrap()["id"].as_str().unwrap().to_string();
    for res in [
        sa.delete("/audit-events").await,
        sa.delete(&format!("/audit-events/{first}")).await,
        sa.patch(
            &format!("/audit-events/{first}"),
            json!({"outcome": "success"}),
        )
        .await,
        sa.post("/audit-events", json!({"action": "forged"})).await,
    ] {
        assert!(
            res.status == 404 || res.status == 405,
            "{} {} answered {}",
            res.method,
            res.path,
            res.status
        );
    }
    assert_eq!(sa.all("/audit-events").await.len(), all.len());

    // Reading the log needs audit.view.
    ro.get("/audit-events").await.err(403);
}
both_backends!(audit_events_filters_order_and_chain);

/// Pairs of consecutive listed entries whose link is broken.
fn broken_links(all: &[Value]) -> Vec<String> {
    all.windows(2)
        .filter(|w| w[0]["prev_hash"] != w[1]["hash"])
        .map(|w| {
            format!(
                "{} {} (at {}) does not link to the next listed entry {} {} (at {})",
                w[0]["id"], w[0]["action"], w[0]["at"], w[1]["id"], w[1]["action"], w[1]["at"]
            )
        })
        .collect()
}

async fn audit_list_order_follows_the_hash_chain(app: TestApp) {
    let sa = super_admin(&app).await;
    // Entries made at distinct instants: listed newest first, each entry's prev_hash is
    // the hash of the entry listed after it.
    let mut ids = Vec::new();
    for i in 0..6 {
        app.clock.advance(Duration::milliseconds(1));
        let (k, _) = sa.create_key(json!({"name": format!("chain-{i}")})).await;
        ids.push(k["id"].clone());
    }
    app.clock.advance(Duration::milliseconds(1));
    let all = sa.all("/audit-events").await;
    let first = all.len();
    let recent: Vec<Value> = all.iter().take(6).cloned().collect();
    assert!(
        broken_links(&recent).is_empty(),
        "{:#?}",
        broken_links(&recent)
    );
    // Several entries written by one request, within one millisecond (a batch delete):
    // the listing must still follow the log's order.
    sa.post("/api-keys/batch-delete", json!({"ids": ids}))
        .await
        .ok(200);
    let all = sa.all("/audit-events").await;
    assert_eq!(all.len(), first + 6);
    let broken = broken_links(&all);
    assert!(broken.is_empty(), "hash chain in list order: {broken:#?}");
}
both_backends!(audit_list_order_follows_the_hash_chain);

// ---------------------------------------------------------------------------------
// Webhooks (API.md lists them among the resources)
// ---------------------------------------------------------------------------------

async fn webhooks_crud(app: TestApp) {
    let sa = super_admin(&app).await;
    let res = sa
        .post(
            "/webhooks",
            json!({"url": "https://hooks.example.com/keyhaven", "events": ["api_key.created"],
                   "description": "ops"}),
        )
        .await;
    assert!(
        res.status == 201 || res.status == 200,
        "POST /webhooks answered {} {}",
        res.status,
        res.text
    );
    let w = res.body.clone();
    let id = w["id"].as_str().expect("webhook id").to_string();
    assert_eq!(w["url"], "https://hooks.example.com/keyhaven");
    assert_eq!(w["events"], json!(["api_key.created"]));
    assert!(field(&sa.all("/webhooks").await, "id").contains(&id));
    assert_eq!(
        sa.get(&format!("/webhooks/{id}")).await.ok(200)["id"],
        id.as_str()
    );
    let w2 = sa
        .patch(&format!("/webhooks/{id}"), json!({"enabled": false}))
        .await
        .ok(200);
    assert_eq!(w2["enabled"], false);
    sa.get(&format!("/webhooks/{id}/deliveries")).await.ok(200);
    sa.delete(&format!("/webhooks/{id}")).await.ok(204);
    sa.get(&format!("/webhooks/{id}")).await.err(404);
}
both_backends!(webhooks_crud);

// ---------------------------------------------------------------------------------
// Organizations are walled off from each other
// ---------------------------------------------------------------------------------

async fn other_organizations_ids_answer_404(app: TestApp) {
    let a = super_admin(&app).await;
    let acct = a.create_sa("a-account", &[]).await;
    let sid = acct["id"].as_str().unwrap().to_string();
    let (k, secret) = a
        .create_key(json!({"name": "a-key", "owner": {"type": "service_account", "id": sid}}))
        .await;
    let kid = k["id"].as_str().unwrap().to_string();
    let cred = a
        .post(
            &format!("/service-accounts/{sid}/credentials"),
            json!({"name": "a-cred"}),
        )
        .await
        .ok(201);
    let cid = cred["id"].as_str().unwrap().to_string();
    let user = a.create_user("a-user@example.com", "A", &[]).await;
    let uid = user["id"].as_str().unwrap().to_string();
    a.post("/roles", json!({"name": "a-role", "permissions": ["read"]}))
        .await
        .ok(201);

    let (org_b, _) = app
        .state
        .service
        .create_organization("Other", "other@example.com", "another long password")
        .await
        .unwrap();
    let b_org = org_b.id.to_string();
    let b_session = Client::session(&app, "other@example.com", "another long password").await;
    assert_eq!(b_session.org_path, format!("/v1/organizations/{b_org}"));
    let (_, b_secret) = b_session
        .create_key(json!({"name": "b-admin", "roles": ["super-admin"]}))
        .await;
    let b_key = Client::bearer_in(&app, &b_secret, &b_org).await;

    let reads = [
        format!("/api-keys/{kid}"),
        format!("/api-keys/{kid}/usage?days=7"),
        format!("/service-accounts/{sid}"),
        format!("/service-accounts/{sid}/credentials"),
        format!("/service-accounts/{sid}/credentials/{cid}"),
        format!("/users/{uid}"),
        "/roles/a-role".to_string(),
    ];
    for b in [&b_session, &b_key] {
        for via in [b.clone(), b.in_org(&app.org_id)] {
            for p in &reads {
                let r = via.get(p).await;
                r.err(404);
            }
            via.patch(&format!("/api-keys/{kid}"), json!({"name": "stolen"}))
                .await
                .err(404);
            via.act(&format!("/api-keys/{kid}/revoke")).await.err(404);
            via.post(
                &format!("/api-keys/{kid}/regenerate"),
                json!({"expires_at": null}),
            )
            .await
            .err(404);
            via.delete(&format!("/api-keys/{kid}")).await.err(404);
            via.act(&format!("/service-accounts/{sid}/archive"))
                .await
                .err(404);
            via.delete(&format!("/service-accounts/{sid}"))
                .await
                .err(404);
            via.patch(&format!("/users/{uid}"), json!({"display_name": "x"}))
                .await
                .err(404);
            via.delete(&format!("/users/{uid}")).await.err(404);
            via.delete("/roles/a-role").await.err(404);
            via.post(
                &format!("/service-accounts/{sid}/credentials"),
                json!({"name": "x"}),
            )
            .await
            .err(404);
        }
        // Under A's path, A's organization itself is invisible to B.
        b.in_org(&app.org_id).get("").await.err(404);
        b.in_org(&app.org_id)
            .patch("", json!({"name": "pwned"}))
            .await
            .err(404);
        b.in_org(&app.org_id).get("/api-keys").await.err(404);
        let r = b
            .post("/api-keys/batch-delete", json!({"ids": [kid]}))
            .await
            .ok(200);
        assert_eq!(r, json!({"deleted": [], "not_found": [kid]}));
        assert!(!field(&b.all("/api-keys").await, "id").contains(&kid));
        assert!(!field(&b.all("/service-accounts?status=all").await, "id").contains(&sid));
        assert!(!field(&b.all("/users").await, "id").contains(&uid));
        assert!(b
            .all(&format!("/audit-events?target_id={kid}"))
            .await
            .is_empty());
        // Organization B can't give its key to A's service account.
        let r = b
            .post(
                "/api-keys",
                json!({"name": "sneaky", "owner": {"type": "service_account", "id": sid}}),
            )
            .await;
        assert!(
            r.status == 400 || r.status == 404,
            "owner in another organization: {} {}",
            r.status,
            r.text
        );
    }
    // Key names are unique per organization; emails across the installation.
    b_session.create_key(json!({"name": "a-key"})).await;
    b_session
        .post(
            "/users",
            json!({"email": "A-User@example.com", "display_name": "B", "password": PASSWORD,
                   "roles": []}),
        )
        .await
        .err(409);

    // Nothing of A changed.
    let k2 = a.get(&format!("/api-keys/{kid}")).await.ok(200);
    assert_eq!(k2["status"], "active");
    assert_eq!(k2["name"], "a-key");
    assert_eq!(me_status(&app, &secret).await, 200);
    assert_eq!(a.get("").await.ok(200)["name"], "Acme");
}
both_backends!(other_organizations_ids_answer_404);

// ---------------------------------------------------------------------------------
// Control characters (PostgreSQL refuses NUL in text; every backend answers 400)
// ---------------------------------------------------------------------------------

async fn control_characters_are_refused_not_500(app: TestApp) {
    let sa = super_admin(&app).await;
    let acct = sa.create_sa("nul target", &[]).await;
    let acct_id = acct["id"].as_str().unwrap().to_string();
    let (key, _) = sa.create_key(json!({"name": "nul key"})).await;
    let key_id = key["id"].as_str().unwrap().to_string();
    let filters: &[(&str, &[&str])] = &[
        ("/users", &["q", "role"]),
        ("/api-keys", &["q", "role", "tag", "owner_id"]),
        ("/service-accounts", &["q"]),
        ("/audit-events", &["actor_id", "action", "target_id"]),
    ];
    for (path, params) in filters {
        for p in *params {
            for v in ["%00", "a%00b", "%1B%5B31m"] {
                sa.get(&format!("{path}?{p}={v}")).await.bad(p);
            }
        }
    }
    for m in [reqwest::Method::GET, reqwest::Method::DELETE] {
        sa.send(m, "/roles/bad%00name", None).await.bad("name");
    }
    sa.patch("/roles/bad%00name", json!({"description": "x"}))
        .await
        .bad("name");
    let nul_roles = json!(["read-only", "x\u{0}"]);
    sa.post(
        "/api-keys",
        json!({"name": "k", "roles": nul_roles.clone()}),
    )
    .await
    .bad("roles[1]");
    sa.patch(
        &format!("/api-keys/{key_id}"),
        json!({"roles": nul_roles.clone()}),
    )
    .await
    .bad("roles[1]");
    sa.post(
        "/service-accounts",
        json!({"name": "s", "roles": nul_roles.clone()}),
    )
    .await
    .bad("roles[1]");
    sa.patch(
        &format!("/service-accounts/{acct_id}"),
        json!({"roles": nul_roles.clone()}),
    )
    .await
    .bad("roles[1]");
    sa.post(
        "/users",
        json!({"email": "n@example.com", "display_name": "N", "password": "a long enough password", "roles": nul_roles.clone()}),
    )
    .await
    .bad("roles[1]");
    let users = sa.get("/users").await.ok(200);
    let uid = users["data"][0]["id"].as_str().unwrap().to_string();
    sa.patch(&format!("/users/{uid}"), json!({"roles": nul_roles}))
        .await
        .bad("roles[1]");

    // Sign-in: control characters and over-long emails are refused before any lookup.
    let anon = Client {
        cred: Cred::Session(String::new()),
        ..sa.clone()
    };
    for email in [
        "admin\u{0}@example.com".to_string(),
        format!("{}@example.com", "a".repeat(250)),
    ] {
        anon.post(
            "/v1/session",
            json!({"email": email, "password": "whatever it is"}),
        )
        .await
        .bad("email");
    }
    // Nothing was harmed: the filters still work with ordinary text.
    sa.get("/users?q=admin&role=super-admin").await.ok(200);
    sa.get("/audit-events?action=api_key.create").await.ok(200);
}
both_backends!(control_characters_are_refused_not_500);

// ---------------------------------------------------------------------------------
// Paging of the short lists (roles by name, credentials by id)
// ---------------------------------------------------------------------------------

/// Follows `next_cursor` with `limit` through `path`; returns the names/ids in order.
async fn walk(sa: &Client, path: &str, limit: usize, field_name: &str) -> Vec<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let page = sa.get(&url).await.ok(200);
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= limit, "{page}");
        out.extend(field(data, field_name));
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(page["has_more"], true);
                assert_eq!(data.len(), limit);
                cursor = Some(c.to_string());
            }
            None => {
                assert_eq!(page["has_more"], false);
                break;
            }
        }
        assert!(out.len() < 100, "paging does not end");
    }
    out
}

async fn roles_and_credentials_are_paged(app: TestApp) {
    let sa = super_admin(&app).await;
    for name in ["zeta", "alpha", "mid.role"] {
        sa.post("/roles", json!({"name": name, "permissions": ["read"]}))
            .await
            .ok(201);
    }
    let all = sa.get("/roles").await.ok(200);
    let names = field(all["data"].as_array().unwrap(), "name");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "roles come in name order");
    assert_eq!(names.len(), 6);
    assert_eq!(all["has_more"], false);
    assert!(all["next_cursor"].is_null());
    for limit in [1, 2, 5] {
        assert_eq!(walk(&sa, "/roles", limit, "name").await, names);
    }
    sa.get("/roles?limt=2").await.bad("limt");
    sa.get("/roles?limit=0").await.bad("limit");
    sa.get("/roles?limit=101").await.bad("limit");
    sa.get("/roles?cursor=%21%21").await.bad("cursor");

    let acct = sa.create_sa("paged", &[]).await;
    let base = format!(
        "/service-accounts/{}/credentials",
        acct["id"].as_str().unwrap()
    );
    for i in 0..5 {
        sa.post(&base, json!({"name": format!("c{i}")}))
            .await
            .ok(201);
    }
    let all = sa.get(&base).await.ok(200);
    let ids = field(all["data"].as_array().unwrap(), "id");
    assert_eq!(ids.len(), 5);
    let mut newest_first = ids.clone();
    newest_first.sort();
    newest_first.reverse();
    assert_eq!(ids, newest_first);
    for limit in [1, 2, 10] {
        assert_eq!(walk(&sa, &base, limit, "id").await, ids);
    }
    assert_eq!(
        walk(&sa, &format!("{base}?expand[]=permissions"), 3, "id").await,
        ids
    );
    sa.get(&format!("{base}?limit=0")).await.bad("limit");
    sa.get(&format!("{base}?cursor=nope")).await.bad("cursor");
    sa.get(&format!("{base}?sort=name")).await.bad("sort");
}
both_backends!(roles_and_credentials_are_paged);

// ---------------------------------------------------------------------------------
// The last super-admin under concurrency
// ---------------------------------------------------------------------------------

async fn concurrent_demotions_keep_a_super_admin(app: TestApp) {
    let me = super_admin(&app).await;
    let sa = me.create_sa("root automation", &["super-admin"]).await;
    let (_, secret) = me
        .create_key(json!({
            "name": "root automation key",
            "roles": ["super-admin"],
            "owner": {"type": "service_account", "id": sa["id"]},
        }))
        .await;
    let bot = Client::bearer(&app, &secret).await;
    let a = bot.get("/users?q=admin@example.com").await.ok(200)["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = me
        .create_user("root2@example.com", "Root Two", &["super-admin"])
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let count_super_admins = || async {
        bot.get("/users?role=super-admin&status=active")
            .await
            .ok(200)["data"]
            .as_array()
            .unwrap()
            .len()
    };
    for round in 0..3 {
        let (first, second) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let demote = |id: &String| {
            let bot = bot.clone();
            let path = format!("/users/{id}");
            tokio::spawn(async move { bot.patch(&path, json!({"roles": ["admin"]})).await })
        };
        // In the last round one of them is deleted instead of demoted.
        let other = if round == 2 {
            let bot = bot.clone();
            let path = format!("/users/{second}");
            tokio::spawn(async move { bot.delete(&path).await })
        } else {
            demote(second)
        };
        let r1 = demote(first).await.unwrap();
        let r2 = other.await.unwrap();
        let mut statuses = [r1.status, r2.status];
        statuses.sort();
        assert!(
            statuses == [200, 409] || statuses == [204, 409],
            "round {round}: exactly one change may happen: {} {} / {} {}",
            r1.status,
            r1.text,
            r2.status,
            r2.text
        );
        assert_eq!(count_super_admins().await, 1, "round {round}");
        // Promote both again for the next round.
        for id in [&a, &b] {
            let res = bot
                .patch(&format!("/users/{id}"), json!({"roles": ["super-admin"]}))
                .await;
            if res.status == 404 {
                continue;
            }
            res.ok(200);
        }
    }
}
both_backends!(concurrent_demotions_keep_a_super_admin);

/// The pattern of a role through which the creator holds the create permission binds
/// the names it creates: for users and for API keys, for keys and service accounts.
async fn creator_key_name_pattern_binds_keys_and_service_accounts(app: TestApp) {
    let sa = super_admin(&app).await;
    sa.post(
        "/roles",
        json!({"name": "ci-creator",
               "permissions": ["api_keys.view", "api_keys.create", "service_accounts.view", "service_accounts.manage"],
               "key_name_pattern": "^ci-[a-z-]+$"}),
    )
    .await
    .ok(201);
    let owner = sa.create_sa("ci-owner", &[]).await;
    let (_, secret) = sa
        .create_key(json!({
            "name": "ci-creator-key",
            "roles": ["ci-creator"],
            "owner": {"type": "service_account", "id": owner["id"]},
        }))
        .await;
    let bot = Client::bearer(&app, &secret).await;
    sa.create_user("ci@example.com", "CI person", &["ci-creator"])
        .await;
    let person = Client::session(&app, "ci@example.com", PASSWORD).await;
    for who in [&bot, &person] {
        who.post("/api-keys", json!({"name": "build"}))
            .await
            .bad("name");
        who.post("/service-accounts", json!({"name": "robot"}))
            .await
            .bad("name");
    }
    bot.post("/api-keys", json!({"name": "ci-build"}))
        .await
        .ok(201);
    bot.post("/service-accounts", json!({"name": "ci-robot"}))
        .await
        .ok(201);
    person
        .post("/service-accounts", json!({"name": "ci-robot-two"}))
        .await
        .ok(201);
    // A creator without a pattern is free.
    sa.post("/service-accounts", json!({"name": "robot"}))
        .await
        .ok(201);
    let names = field(&sa.all("/api-keys").await, "name");
    assert!(!names.contains(&"build".to_string()), "{names:?}");
}
both_backends!(creator_key_name_pattern_binds_keys_and_service_accounts);

/// `null` in a PATCH clears key_name_pattern (role) and metadata (key, to `{}`).
async fn patch_null_clears_pattern_and_metadata(app: TestApp) {
    let sa = super_admin(&app).await;
    let r = sa
        .post(
            "/roles",
            json!({"name": "patterned", "permissions": ["read"], "key_name_pattern": "^ci-"}),
        )
        .await
        .ok(201);
    assert_eq!(r["key_name_pattern"], "^ci-");
    let r = sa
        .patch("/roles/patterned", json!({"description": "still"}))
        .await
        .ok(200);
    assert_eq!(r["key_name_pattern"], "^ci-", "absent stays");
    let r = sa
        .patch("/roles/patterned", json!({"key_name_pattern": null}))
        .await
        .ok(200);
    assert_eq!(r["key_name_pattern"], Value::Null);
    sa.patch("/roles/patterned", json!({"key_name_pattern": "^x-"}))
        .await
        .ok(200);
    let r = sa
        .patch("/roles/patterned", json!({"key_name_pattern": ""}))
        .await
        .ok(200);
    assert_eq!(r["key_name_pattern"], Value::Null);

    let (k, _) = sa
        .create_key(json!({"name": "meta", "metadata": {"team": "billing"}}))
        .await;
    let path = format!("/api-keys/{}", k["id"].as_str().unwrap());
    let p = sa.patch(&path, json!({"name": "meta2"})).await.ok(200);
    assert_eq!(p["metadata"], json!({"team": "billing"}), "absent stays");
    let p = sa.patch(&path, json!({"metadata": null})).await.ok(200);
    assert_eq!(p["metadata"], json!({}));
    sa.patch(&path, json!({"metadata": [1]}))
        .await
        .bad("metadata");
}
both_backends!(patch_null_clears_pattern_and_metadata);

/// An audit cursor from another organization does not position this one's listing.
async fn audit_cursor_is_scoped_to_the_organization(app: TestApp) {
    let sa = super_admin(&app).await;
    sa.create_sa("some activity", &[]).await;
    app.state
        .service
        .create_organization("Other", "other@example.com", "another long password")
        .await
        .unwrap();
    let other = Client::session(&app, "other@example.com", "another long password").await;
    other.create_sa("their activity", &[]).await;
    let page = other.get("/audit-events?limit=1").await.ok(200);
    let foreign = page["next_cursor"].as_str().unwrap().to_string();
    let mine = sa
        .get(&format!("/audit-events?cursor={foreign}"))
        .await
        .ok(200);
    assert_eq!(mine["data"], json!([]), "{mine}");
    assert_eq!(mine["has_more"], false);
    // This organization's own cursors work.
    let first = sa.get("/audit-events?limit=1").await.ok(200);
    let next = sa
        .get(&format!(
            "/audit-events?limit=1&cursor={}",
            first["next_cursor"].as_str().unwrap()
        ))
        .await
        .ok(200);
    assert_eq!(next["data"].as_array().unwrap().len(), 1);
    assert_ne!(next["data"][0]["id"], first["data"][0]["id"]);
}
both_backends!(audit_cursor_is_scoped_to_the_organization);
