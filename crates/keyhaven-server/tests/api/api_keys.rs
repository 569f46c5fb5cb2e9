//! API.md's `/api-keys` resource and the dashboard metrics, over HTTP, on SQLite and
//! PostgreSQL: the object, creation rules, the secret shown once, list filters and
//! pagination, changes, regeneration with grace, revocation, deletion, usage.

use crate::support::*;
use chrono::Duration;
use serde_json::{json, Value};

fn without_key(v: &Value) -> Value {
    let mut v = v.clone();
    v.as_object_mut().unwrap().remove("key");
    v
}

fn kid(k: &Value) -> String {
    k["id"].as_str().unwrap().to_string()
}

fn last4(secret: &str) -> &str {
    &secret[secret.len() - 4..]
}

async fn admin_user_id(c: &Client) -> String {
    let users = c.get(&format!("/users?q={ADMIN_EMAIL}")).await.ok(200);
    users["data"][0]["id"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------

async fn create_returns_the_documented_object(app: TestApp) {
    let sa = super_admin(&app).await;
    let admin_id = admin_user_id(&sa).await;
    let res = sa
        .post(
            "/api-keys",
            json!({"name": "orders-prod", "description": "Orders service",
                   "tags": ["prod", "orders"], "roles": ["read-only"],
                   "scopes": ["orders:read", "orders:write"]}),
        )
        .await;
    let k = res.ok(201);
    let mut fields = KEY_FIELDS.to_vec();
    fields.push("key");
    assert_keys(&k, &fields);
    let secret = k["key"].as_str().unwrap().to_string();
    assert_key_shape(&secret, "kh");
    assert_id(&k["id"]);
    assert_eq!(k["name"], "orders-prod");
    assert_eq!(k["description"], "Orders service");
    assert_eq!(k["tags"], json!(["prod", "orders"]));
    assert_eq!(k["type"], "api_key");
    assert_keys(&k["owner"], &["type", "id", "name"]);
    assert_eq!(
        k["owner"]["type"], "user",
        "a key-created key gets the creating key's owner (the admin)"
    );
    assert_eq!(k["owner"]["id"], admin_id.as_str());
    assert_eq!(k["roles"], json!(["read-only"]));
    assert_eq!(set(&k["scopes"]), strs(&["orders:read", "orders:write"]));
    let mut perms = strs(READ_ONLY);
    perms.extend(strs(&["orders:read", "orders:write"]));
    assert_eq!(set(&k["permissions"]), perms);
    assert_eq!(k["masked_key"], format!("kh_…{}", last4(&secret)));
    assert_eq!(k["status"], "active");
    assert_eq!(k["expires_at"], Value::Null);
    assert_eq!(k["created_by"], sa.principal);
    assert_eq!(k["created_at"], "2026-11-22T12:00:00Z");
    assert_eq!(k["updated_at"], "2026-11-22T12:00:00Z");
    assert_eq!(k["last_used_at"], Value::Null);
    assert_eq!(k["revoked_at"], Value::Null);
    assert_eq!(k["ratelimit"], Value::Null);
    assert_eq!(k["remaining"], Value::Null);
    assert_eq!(k["allowed_cidrs"], json!([]));
    assert_eq!(k["metadata"], json!({}));
    sa.assert_audited(&res, &sa, "api_key.create", &kid(&k))
        .await;
    assert_eq!(
        sa.get(&format!("/api-keys/{}", kid(&k))).await.ok(200),
        without_key(&k),
        "GET answers the same object, without the secret"
    );
    assert_eq!(me_status(&app, &secret).await, 200);

    // Every optional field, owned by a service account.
    let acct = sa.create_sa("orders", &[]).await;
    let res = sa
        .post(
            "/api-keys",
            json!({"name": "orders-sa", "owner": {"type": "service_account", "id": acct["id"]},
                   "ratelimit": {"limit": 100, "duration_ms": 60000}, "remaining": 1000,
                   "allowed_cidrs": ["10.0.0.0/8", "2001:db8::/32"],
                   "metadata": {"team": "orders", "tier": 2}, "expires_in_days": 30}),
        )
        .await;
    let k2 = res.ok(201);
    assert_keys(&k2, &fields);
    assert_eq!(
        k2["owner"],
        json!({"type": "service_account", "id": acct["id"], "name": "orders"})
    );
    assert_eq!(k2["ratelimit"], json!({"limit": 100, "duration_ms": 60000}));
    assert_eq!(k2["remaining"], 1000);
    assert_eq!(k2["allowed_cidrs"], json!(["10.0.0.0/8", "2001:db8::/32"]));
    assert_eq!(k2["metadata"], json!({"team": "orders", "tier": 2}));
    assert_eq!(k2["expires_at"], "2026-12-22T12:00:00Z");
    assert_eq!(k2["roles"], json!([]));
    assert_eq!(k2["scopes"], json!([]));
    assert_eq!(k2["permissions"], json!([]));
    assert_eq!(
        sa.get(&format!("/api-keys/{}", kid(&k2))).await.ok(200),
        without_key(&k2)
    );

    // A key created with a service account's key belongs to that service account.
    let robot = sa.create_sa("robot", &[]).await;
    let (_, robot_secret) = sa
        .create_key(json!({"name": "robot-admin", "roles": ["super-admin"],
                           "owner": {"type": "service_account", "id": robot["id"]}}))
        .await;
    let robot_client = Client::bearer(&app, &robot_secret).await;
    let (child, _) = robot_client
        .create_key(json!({"name": "robot-child"}))
        .await;
    assert_eq!(
        child["owner"],
        json!({"type": "service_account", "id": robot["id"], "name": "robot"})
    );
    assert_eq!(child["created_by"], robot_client.principal);
}
both_backends!(create_returns_the_documented_object);

/// A signed-in user's key is personal; the user is owner and creator, and the create
/// response is the same object GET answers.
async fn personal_keys_of_signed_in_users(app: TestApp) {
    let sa = super_admin(&app).await;
    let admin_id = admin_user_id(&sa).await;
    // A signed-in user's key is personal; the user is owner and creator.
    let me = Client::session(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (p, psecret) = me.create_key(json!({"name": "personal"})).await;
    assert_eq!(p["owner"]["type"], "user");
    assert_eq!(p["owner"]["id"], admin_id.as_str());
    assert_eq!(p["created_by"]["type"], "user");
    assert_eq!(p["created_by"]["id"], admin_id.as_str());
    assert_eq!(
        me.get(&format!("/api-keys/{}", kid(&p))).await.ok(200),
        without_key(&p),
        "GET answers the same object as create"
    );
    let v = verify(&app, json!({"key": psecret})).await;
    assert_eq!(v["code"], "VALID");
    assert_eq!(v["key_id"], p["id"]);
}
both_backends!(personal_keys_of_signed_in_users);

async fn create_validates_its_input(app: TestApp) {
    let sa = super_admin(&app).await;
    let ok = sa
        .post(
            "/api-keys",
            json!({"name": "dated", "expires_at": "2027-01-01T00:00:00Z"}),
        )
        .await
        .ok(201);
    assert_eq!(ok["expires_at"], "2027-01-01T00:00:00Z");
    sa.post(
        "/api-keys",
        json!({"name": "past", "expires_at": "2026-11-22T11:59:59Z"}),
    )
    .await
    .bad("expires_at");
    sa.post(
        "/api-keys",
        json!({"name": "bad-time", "expires_at": "next tuesday"}),
    )
    .await
    .bad("expires_at");
    let e = sa
        .post(
            "/api-keys",
            json!({"name": "both", "expires_at": "2027-01-01T00:00:00Z", "expires_in_days": 3}),
        )
        .await
        .err(400);
    assert!(
        ["expires_at", "expires_in_days"].contains(&e["param"].as_str().unwrap_or_default()),
        "{e}"
    );
    sa.post("/api-keys", json!({"name": "zero", "expires_in_days": 0}))
        .await
        .bad("expires_in_days");

    // Unknown fields and wrong types name the parameter.
    let e = sa
        .post("/api-keys", json!({"name": "typo", "descripton": "x"}))
        .await
        .bad("descripton");
    assert_eq!(e["code"], "unknown_field");
    let e = sa
        .post(
            "/api-keys",
            json!({"name": "typo", "ratelimit": {"limit": 1, "duration_ms": 1000, "burst": 2}}),
        )
        .await
        .err(400);
    assert_eq!(e["code"], "unknown_field");
    sa.post("/api-keys", json!({"name": 5})).await.bad("name");
    sa.post("/api-keys", json!({"name": "x", "tags": "prod"}))
        .await
        .bad("tags");
    sa.post("/api-keys", json!({"name": "x", "remaining": "five"}))
        .await
        .bad("remaining");
    sa.post("/api-keys", json!({"name": "x", "expires_in_days": "30"}))
        .await
        .bad("expires_in_days");
    sa.post("/api-keys", json!({"name": "x", "roles": "admin"}))
        .await
        .bad("roles");
    sa.post("/api-keys", json!({})).await.bad("name");
    sa.post("/api-keys", json!({"name": ""})).await.bad("name");
    sa.post("/api-keys", json!({"name": "n".repeat(101)}))
        .await
        .bad("name");
    sa.post("/api-keys", json!({"name": "n".repeat(100)}))
        .await
        .ok(201);

    // Tags: at most 20, each 1–64 characters.
    let tags: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    sa.post("/api-keys", json!({"name": "tags21", "tags": tags}))
        .await
        .bad("tags");
    let e = sa
        .post(
            "/api-keys",
            json!({"name": "longtag", "tags": ["x".repeat(65)]}),
        )
        .await
        .err(400);
    assert!(e["param"].as_str().unwrap_or_default().starts_with("tags"));
    let e = sa
        .post("/api-keys", json!({"name": "emptytag", "tags": [""]}))
        .await
        .err(400);
    assert!(e["param"].as_str().unwrap_or_default().starts_with("tags"));
    sa.post(
        "/api-keys",
        json!({"name": "tags20", "tags": tags[..20].to_vec()}),
    )
    .await
    .ok(201);

    // Metadata: a JSON object of at most 4 KiB.
    for m in [json!([1]), json!("str"), json!(3)] {
        sa.post("/api-keys", json!({"name": "meta", "metadata": m}))
            .await
            .bad("metadata");
    }
    sa.post(
        "/api-keys",
        json!({"name": "meta", "metadata": {"blob": "x".repeat(5000)}}),
    )
    .await
    .bad("metadata");
    sa.post(
        "/api-keys",
        json!({"name": "meta-ok", "metadata": {"blob": "x".repeat(4000)}}),
    )
    .await
    .ok(201);

    // CIDRs name the offending entry.
    sa.post(
        "/api-keys",
        json!({"name": "cidr", "allowed_cidrs": ["10.0.0.0/8", "nope"]}),
    )
    .await
    .bad("allowed_cidrs[1]");
    sa.post(
        "/api-keys",
        json!({"name": "cidr", "allowed_cidrs": ["10.0.0.0/33"]}),
    )
    .await
    .bad("allowed_cidrs[0]");

    // Roles and scopes.
    let e = sa
        .post("/api-keys", json!({"name": "role", "roles": ["nope"]}))
        .await
        .err(400);
    assert!(e["param"].as_str().unwrap_or_default().starts_with("roles"));
    let e = sa
        .post(
            "/api-keys",
            json!({"name": "scope", "scopes": ["Bad Scope"]}),
        )
        .await
        .err(400);
    assert!(e["param"]
        .as_str()
        .unwrap_or_default()
        .starts_with("scopes"));
    sa.post(
        "/api-keys",
        json!({"name": "rl", "ratelimit": {"limit": 0, "duration_ms": 1000}}),
    )
    .await
    .err(400);

    // Names are unique among the organization's keys.
    sa.post("/api-keys", json!({"name": "dated"}))
        .await
        .err(409);

    // Not JSON, or not declared as JSON.
    let raw = app
        .http
        .post(app.url(&format!("{}/api-keys", sa.org_path)))
        .bearer_auth(match &sa.cred {
            Cred::Bearer(k) => k.clone(),
            Cred::Session(_) => unreachable!(),
        })
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let raw = app
        .http
        .post(app.url(&format!("{}/api-keys", sa.org_path)))
        .bearer_auth(match &sa.cred {
            Cred::Bearer(k) => k.clone(),
            Cred::Session(_) => unreachable!(),
        })
        .body(r#"{"name":"no-ct"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 415);

    // None of the refused requests created a key.
    let mut names = field(&sa.all("/api-keys").await, "name");
    names.sort();
    let mut want = vec![
        "dated".to_string(),
        "n".repeat(100),
        "tags20".into(),
        "meta-ok".into(),
        sa.principal["name"].as_str().unwrap().to_string(),
    ];
    want.sort();
    assert_eq!(names, want);
}
both_backends!(create_validates_its_input);

async fn the_secret_is_shown_once(app: TestApp) {
    let sa = super_admin(&app).await;
    let (k, secret) = sa
        .create_key(json!({"name": "once", "tags": ["t"], "scopes": ["read"]}))
        .await;
    let id = kid(&k);
    let body = &secret[3..];
    let check = |label: &str, text: &str| {
        assert!(!text.contains(body), "the secret appears in {label}");
    };
    check("GET", &sa.get(&format!("/api-keys/{id}")).await.text);
    check("list", &sa.get("/api-keys").await.text);
    check("list ?q", &sa.get("/api-keys?q=once").await.text);
    let patched = sa
        .patch(
            &format!("/api-keys/{id}"),
            json!({"description": "changed"}),
        )
        .await;
    assert!(patched.ok(200).get("key").is_none(), "PATCH has no key");
    check("PATCH", &patched.text);
    let regen = sa
        .post(
            &format!("/api-keys/{id}/regenerate"),
            json!({"expires_at": null, "grace_period_seconds": 60}),
        )
        .await;
    let new_secret = regen.ok(200)["key"].as_str().unwrap().to_string();
    assert_key_shape(&new_secret, "kh");
    check("regenerate", &regen.text);
    let revoked = sa.act(&format!("/api-keys/{id}/revoke")).await;
    assert!(revoked.ok(200).get("key").is_none(), "revoke has no key");
    check("revoke", &revoked.text);
    let audit = sa.all("/audit-events").await;
    let text = serde_json::to_string(&audit).unwrap();
    check("the audit log", &text);
    assert!(
        !text.contains(&new_secret[3..]),
        "the regenerated secret appears in the audit log"
    );
    assert!(audit.iter().any(|e| e["action"] == "api_key.create"));
    let list = sa.get("/api-keys").await.text;
    assert!(!list.contains(&new_secret[3..]));
    assert!(!sa
        .get(&format!("/api-keys/{id}"))
        .await
        .text
        .contains(&new_secret[3..]));
}
both_backends!(the_secret_is_shown_once);

async fn list_filters(app: TestApp) {
    let sa = super_admin(&app).await;
    let admin_key_name = sa.principal["name"].as_str().unwrap().to_string();
    let sa1 = sa.create_sa("one", &[]).await;
    let sa2 = sa.create_sa("two", &[]).await;
    let own = |a: &Value| json!({"type": "service_account", "id": a["id"]});
    sa.create_key(
        json!({"name": "alpha", "description": "Payment gateway", "tags": ["prod"],
                         "roles": ["read-only"], "owner": own(&sa1)}),
    )
    .await;
    sa.create_key(json!({"name": "beta", "tags": ["staging"], "owner": own(&sa2)}))
        .await;
    let (_, gamma_secret) = sa
        .create_key(
            json!({"name": "gamma-PAYMENTS", "tags": ["prod", "eu"], "roles": ["admin"],
                         "owner": own(&sa1), "expires_in_days": 1}),
        )
        .await;
    assert_eq!(me_status(&app, &gamma_secret).await, 200);
    let (delta, _) = sa
        .create_key(json!({"name": "delta", "tags": ["prod"], "owner": own(&sa2)}))
        .await;
    sa.act(&format!("/api-keys/{}/revoke", kid(&delta)))
        .await
        .ok(200);
    // Gamma expires.
    app.clock.advance(Duration::days(2));
    assert_eq!(me_status(&app, &gamma_secret).await, 401, "expired key");

    let names = |items: Vec<Value>| {
        let mut n = field(&items, "name");
        n.sort();
        n
    };
    let s = |v: &[&str]| {
        let mut n: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        n.sort();
        n
    };
    assert_eq!(
        names(sa.all("/api-keys").await),
        s(&["alpha", "beta", "gamma-PAYMENTS", "delta", &admin_key_name])
    );
    let active = sa.all("/api-keys?status=active").await;
    assert!(active.iter().all(|k| k["status"] == "active"));
    assert_eq!(names(active), s(&["alpha", "beta", &admin_key_name]));
    let revoked = sa.all("/api-keys?status=revoked").await;
    assert!(revoked.iter().all(|k| k["status"] == "revoked"));
    assert_eq!(names(revoked), s(&["delta"]));
    let expired = sa.all("/api-keys?status=expired").await;
    assert!(expired.iter().all(|k| k["status"] == "expired"));
    assert_eq!(names(expired), s(&["gamma-PAYMENTS"]));
    assert_eq!(
        names(sa.all("/api-keys?role=read-only").await),
        s(&["alpha"])
    );
    assert_eq!(
        names(sa.all("/api-keys?role=admin").await),
        s(&["gamma-PAYMENTS"])
    );
    assert_eq!(
        names(sa.all("/api-keys?role=super-admin").await),
        s(&[&admin_key_name])
    );
    assert_eq!(
        names(sa.all("/api-keys?tag=prod").await),
        s(&["alpha", "gamma-PAYMENTS", "delta"])
    );
    assert_eq!(
        names(sa.all("/api-keys?tag=eu").await),
        s(&["gamma-PAYMENTS"])
    );
    assert!(
        sa.all("/api-keys?tag=pro").await.is_empty(),
        "tags match exactly"
    );
    assert_eq!(
        names(sa.all(&format!("/api-keys?owner_id={}", kid(&sa1))).await),
        s(&["alpha", "gamma-PAYMENTS"])
    );
    assert_eq!(
        names(sa.all("/api-keys?q=payment").await),
        s(&["alpha", "gamma-PAYMENTS"]),
        "q: case-insensitive substring of name or description"
    );
    assert_eq!(names(sa.all("/api-keys?q=GATEWAY").await), s(&["alpha"]));
    assert_eq!(
        names(sa.all("/api-keys?tag=prod&status=active").await),
        s(&["alpha"])
    );
    assert_eq!(
        names(
            sa.all(&format!(
                "/api-keys?owner_id={}&q=pay&status=expired",
                kid(&sa1)
            ))
            .await
        ),
        s(&["gamma-PAYMENTS"])
    );
    assert!(sa
        .all(&format!("/api-keys?owner_id={}&tag=staging", kid(&sa1)))
        .await
        .is_empty());
    assert!(sa.all("/api-keys?q=nothing-matches").await.is_empty());
    sa.get("/api-keys?status=bogus").await.bad("status");
    sa.get("/api-keys?status=all").await.bad("status");
    for k in sa.all("/api-keys").await {
        assert_keys(&k, KEY_FIELDS);
    }
}
both_backends!(list_filters);

async fn list_pagination(app: TestApp) {
    let sa = super_admin(&app).await;
    let mut created = Vec::new();
    for i in 0..25 {
        app.clock.advance(Duration::seconds(1));
        let (k, _) = sa.create_key(json!({"name": format!("page-{i:02}")})).await;
        created.push(kid(&k));
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let p = match &cursor {
            Some(c) => sa.get(&format!("/api-keys?limit=10&cursor={c}")).await,
            None => sa.get("/api-keys?limit=10").await,
        }
        .ok(200);
        assert_keys(&p, &["data", "has_more", "next_cursor"]);
        let data = p["data"].as_array().unwrap();
        pages.push(data.len());
        seen.extend(field(data, "id"));
        if p["has_more"] == true {
            cursor = Some(p["next_cursor"].as_str().unwrap().to_string());
        } else {
            assert_eq!(p["next_cursor"], Value::Null);
            break;
        }
    }
    assert_eq!(pages, [10, 10, 6], "25 keys and the admin's");
    let unique: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 26, "no duplicates");
    let mut newest_first = created.clone();
    newest_first.reverse();
    assert_eq!(seen[..25], newest_first[..], "newest first");

    let d = sa.get("/api-keys").await.ok(200);
    assert_eq!(d["data"].as_array().unwrap().len(), 20, "default limit 20");
    assert_eq!(d["has_more"], true);
    let p = sa.get("/api-keys?limit=100").await.ok(200);
    assert_eq!(p["data"].as_array().unwrap().len(), 26);
    assert_eq!(p["has_more"], false);
    // Filters and pages combine.
    let p = sa.get("/api-keys?q=page-0&limit=5").await.ok(200);
    assert_eq!(p["data"].as_array().unwrap().len(), 5);
    let p2 = sa
        .get(&format!(
            "/api-keys?q=page-0&limit=5&cursor={}",
            p["next_cursor"].as_str().unwrap()
        ))
        .await
        .ok(200);
    assert_eq!(p2["data"].as_array().unwrap().len(), 5);
    assert_eq!(p2["has_more"], false);
    for bad in ["0", "101", "abc", "-5"] {
        sa.get(&format!("/api-keys?limit={bad}")).await.bad("limit");
    }
    for bad in ["garbage", "bm90LWFuLWlk"] {
        sa.get(&format!("/api-keys?cursor={bad}"))
            .await
            .bad("cursor");
    }
}
both_backends!(list_pagination);

async fn patch_changes_fields(app: TestApp) {
    let sa = super_admin(&app).await;
    let (k, secret) = sa
        .create_key(
            json!({"name": "patchme", "description": "d1", "tags": ["a"],
                           "roles": ["read-only"], "scopes": ["x:read"],
                           "ratelimit": {"limit": 10, "duration_ms": 1000}, "remaining": 5,
                           "allowed_cidrs": ["10.0.0.0/8"], "metadata": {"v": 1}}),
        )
        .await;
    let id = kid(&k);
    let path = format!("/api-keys/{id}");

    app.clock.advance(Duration::minutes(3));
    let res = sa
        .patch(
            &path,
            json!({"name": "patched", "description": "d2", "tags": ["b", "c"],
                   "roles": [], "scopes": ["x:write"], "allowed_cidrs": ["192.168.0.0/16"],
                   "metadata": {"v": 2}}),
        )
        .await;
    let p = res.ok(200);
    assert_keys(&p, KEY_FIELDS);
    assert_eq!(p["name"], "patched");
    assert_eq!(p["description"], "d2");
    assert_eq!(p["tags"], json!(["b", "c"]));
    assert_eq!(p["roles"], json!([]));
    assert_eq!(p["scopes"], json!(["x:write"]));
    assert_eq!(p["permissions"], json!(["x:write"]));
    assert_eq!(p["allowed_cidrs"], json!(["192.168.0.0/16"]));
    assert_eq!(p["metadata"], json!({"v": 2}));
    assert_eq!(
        p["ratelimit"],
        json!({"limit": 10, "duration_ms": 1000}),
        "absent fields stay"
    );
    assert_eq!(p["remaining"], 5);
    assert_eq!(p["updated_at"], "2026-11-22T12:03:00Z");
    assert_eq!(p["created_at"], "2026-11-22T12:00:00Z");
    assert_eq!(p["masked_key"], k["masked_key"]);
    assert_eq!(p["id"], k["id"]);
    sa.assert_audited(&res, &sa, "api_key.update", &id).await;
    assert_eq!(sa.get(&path).await.ok(200), p);

    // null clears ratelimit and remaining.
    let p = sa
        .patch(&path, json!({"ratelimit": null, "remaining": null}))
        .await
        .ok(200);
    assert_eq!(p["ratelimit"], Value::Null);
    assert_eq!(p["remaining"], Value::Null);
    assert_eq!(p["name"], "patched");
    let p = sa
        .patch(
            &path,
            json!({"ratelimit": {"limit": 7, "duration_ms": 60000}, "remaining": 3}),
        )
        .await
        .ok(200);
    assert_eq!(p["ratelimit"], json!({"limit": 7, "duration_ms": 60000}));
    assert_eq!(p["remaining"], 3);
    // An empty patch changes nothing.
    assert_eq!(sa.patch(&path, json!({})).await.ok(200), p);
    // The key still works with its secret — from its allowed networks only (the test
    // client is 127.0.0.1).
    assert_eq!(me_status(&app, &secret).await, 401);
    sa.patch(
        &path,
        json!({"allowed_cidrs": ["192.168.0.0/16", "127.0.0.0/8"]}),
    )
    .await
    .ok(200);
    assert_eq!(me_status(&app, &secret).await, 200);
    let p = sa
        .patch(&path, json!({"allowed_cidrs": ["192.168.0.0/16"]}))
        .await
        .ok(200);

    // Validation.
    let e = sa
        .patch(&path, json!({"expires_at": "2030-01-01T00:00:00Z"}))
        .await
        .bad("expires_at");
    assert_eq!(e["code"], "unknown_field");
    let e = sa
        .patch(
            &path,
            json!({"owner": {"type": "service_account", "id": FAKE_ID}}),
        )
        .await
        .bad("owner");
    assert_eq!(e["code"], "unknown_field");
    sa.patch(&path, json!({"name": ""})).await.bad("name");
    sa.patch(&path, json!({"tags": "x"})).await.bad("tags");
    sa.patch(&path, json!({"metadata": [1]}))
        .await
        .bad("metadata");
    sa.patch(&path, json!({"allowed_cidrs": ["x"]}))
        .await
        .bad("allowed_cidrs[0]");
    sa.create_key(json!({"name": "taken"})).await;
    sa.patch(&path, json!({"name": "taken"})).await.err(409);
    sa.patch(&format!("/api-keys/{FAKE_ID}"), json!({"name": "x"}))
        .await
        .err(404);
    assert_eq!(
        sa.get(&path).await.ok(200),
        p,
        "refused patches change nothing"
    );

    // A revoked key can't be changed.
    sa.act(&format!("{path}/revoke")).await.ok(200);
    sa.patch(&path, json!({"description": "too late"}))
        .await
        .err(409);
    sa.patch(&path, json!({"remaining": null})).await.err(409);
}
both_backends!(patch_changes_fields);

async fn regenerate_with_and_without_grace(app: TestApp) {
    let sa = super_admin(&app).await;
    let acct = sa.create_sa("rotating", &["read-only"]).await;
    let (k, s0) = sa
        .create_key(
            json!({"name": "rot", "owner": {"type": "service_account", "id": acct["id"]},
                           "expires_in_days": 10}),
        )
        .await;
    let id = kid(&k);
    let path = format!("/api-keys/{id}/regenerate");
    assert_eq!(me_status(&app, &s0).await, 200);

    // expires_at is required (null = never).
    sa.post(&path, json!({})).await.bad("expires_at");
    sa.post(&path, json!({"grace_period_seconds": 60}))
        .await
        .bad("expires_at");
    sa.post(&path, json!({"expires_at": "2020-01-01T00:00:00Z"}))
        .await
        .bad("expires_at");
    sa.post(
        &path,
        json!({"expires_at": null, "grace_period_seconds": 604801}),
    )
    .await
    .bad("grace_period_seconds");
    sa.post(
        &path,
        json!({"expires_at": null, "grace_period_seconds": -1}),
    )
    .await
    .bad("grace_period_seconds");
    let e = sa
        .post(&path, json!({"expires_at": null, "grace": 5}))
        .await
        .bad("grace");
    assert_eq!(e["code"], "unknown_field");
    assert_eq!(
        me_status(&app, &s0).await,
        200,
        "refused requests changed nothing"
    );

    // Without grace: the old secret stops at once.
    app.clock.advance(Duration::minutes(1));
    let res = sa.post(&path, json!({"expires_at": null})).await;
    let r1 = res.ok(200);
    let mut fields = KEY_FIELDS.to_vec();
    fields.push("key");
    assert_keys(&r1, &fields);
    let s1 = r1["key"].as_str().unwrap().to_string();
    assert_key_shape(&s1, "kh");
    assert_ne!(s1, s0);
    assert_eq!(r1["id"], id.as_str());
    assert_eq!(r1["name"], "rot");
    assert_eq!(r1["expires_at"], Value::Null);
    assert_eq!(r1["masked_key"], format!("kh_…{}", last4(&s1)));
    assert_eq!(r1["status"], "active");
    assert_eq!(r1["updated_at"], "2026-11-22T12:01:00Z");
    sa.assert_audited(&res, &sa, "api_key.regenerate", &id)
        .await;
    assert_eq!(
        me_status(&app, &s0).await,
        401,
        "no grace: old secret refused"
    );
    assert_eq!(verify(&app, json!({"key": s0})).await["valid"], false);
    assert_eq!(me_status(&app, &s1).await, 200);
    assert_eq!(
        sa.get(&format!("/api-keys/{id}")).await.ok(200),
        without_key(&r1)
    );

    // With grace: both secrets work until the grace ends.
    let r2 = sa
        .post(
            &path,
            json!({"expires_at": "2027-01-01T00:00:00Z", "grace_period_seconds": 3600}),
        )
        .await
        .ok(200);
    let s2 = r2["key"].as_str().unwrap().to_string();
    assert_eq!(r2["expires_at"], "2027-01-01T00:00:00Z");
    assert_eq!(r2["id"], id.as_str());
    assert_eq!(me_status(&app, &s2).await, 200);
    assert_eq!(
        me_status(&app, &s1).await,
        200,
        "old secret during the grace"
    );
    let v = verify(&app, json!({"key": s1})).await;
    assert_eq!(v["code"], "VALID");
    assert_eq!(v["rotating"], true);
    assert_eq!(v["key_id"], id.as_str());
    app.clock.advance(Duration::seconds(3599));
    assert_eq!(me_status(&app, &s1).await, 200);
    app.clock.advance(Duration::seconds(2));
    assert_eq!(me_status(&app, &s1).await, 401, "grace is over");
    assert_eq!(me_status(&app, &s2).await, 200);
    assert_eq!(verify(&app, json!({"key": s2})).await["rotating"], false);

    // The longest grace is accepted.
    sa.post(
        &path,
        json!({"expires_at": null, "grace_period_seconds": 604800}),
    )
    .await
    .ok(200);
    sa.post(
        &format!("/api-keys/{FAKE_ID}/regenerate"),
        json!({"expires_at": null}),
    )
    .await
    .err(404);
    // A revoked key stays revoked.
    sa.act(&format!("/api-keys/{id}/revoke")).await.ok(200);
    sa.post(&path, json!({"expires_at": null})).await.err(409);
}
both_backends!(regenerate_with_and_without_grace);

async fn revoke_delete_and_batch_delete(app: TestApp) {
    let sa = super_admin(&app).await;
    let (k, secret) = sa.create_key(json!({"name": "to-revoke"})).await;
    let id = kid(&k);
    assert_eq!(me_status(&app, &secret).await, 200);

    app.clock.advance(Duration::minutes(1));
    let res = sa.act(&format!("/api-keys/{id}/revoke")).await;
    let r = res.ok(200);
    assert_keys(&r, KEY_FIELDS);
    assert_eq!(r["status"], "revoked");
    assert_eq!(r["revoked_at"], "2026-11-22T12:01:00Z");
    sa.assert_audited(&res, &sa, "api_key.revoke", &id).await;
    assert_eq!(me_status(&app, &secret).await, 401);
    assert_eq!(
        verify(&app, json!({"key": secret})).await["code"],
        "REVOKED"
    );

    app.clock.advance(Duration::minutes(1));
    let again = sa.act(&format!("/api-keys/{id}/revoke")).await.ok(200);
    assert_eq!(again["status"], "revoked");
    assert_eq!(again["revoked_at"], "2026-11-22T12:01:00Z", "a no-op");
    assert_eq!(again, r);
    assert_eq!(sa.get(&format!("/api-keys/{id}")).await.ok(200), r);
    sa.act(&format!("/api-keys/{FAKE_ID}/revoke"))
        .await
        .err(404);

    // Revoking or deleting during a regeneration grace stops both secrets.
    for action in ["revoke", "delete"] {
        let (g, old) = sa
            .create_key(json!({"name": format!("grace-{action}")}))
            .await;
        let gid = kid(&g);
        let new = sa
            .post(
                &format!("/api-keys/{gid}/regenerate"),
                json!({"expires_at": null, "grace_period_seconds": 3600}),
            )
            .await
            .ok(200)["key"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(me_status(&app, &old).await, 200);
        assert_eq!(me_status(&app, &new).await, 200);
        if action == "revoke" {
            sa.act(&format!("/api-keys/{gid}/revoke")).await.ok(200);
        } else {
            sa.delete(&format!("/api-keys/{gid}")).await.ok(204);
        }
        assert_eq!(me_status(&app, &old).await, 401, "{action}: old secret");
        assert_eq!(me_status(&app, &new).await, 401, "{action}: new secret");
    }

    // Delete.
    let (d, dsecret) = sa.create_key(json!({"name": "to-delete"})).await;
    let did = kid(&d);
    let res = sa.delete(&format!("/api-keys/{did}")).await;
    res.ok(204);
    assert!(res.text.is_empty());
    sa.assert_audited(&res, &sa, "api_key.delete", &did).await;
    sa.get(&format!("/api-keys/{did}")).await.err(404);
    sa.delete(&format!("/api-keys/{did}")).await.err(404);
    assert_eq!(me_status(&app, &dsecret).await, 401);
    // Its name is free again.
    sa.create_key(json!({"name": "to-delete"})).await;

    // Batch delete.
    let (a, asecret) = sa.create_key(json!({"name": "batch-a"})).await;
    let (b, _) = sa.create_key(json!({"name": "batch-b"})).await;
    let res = sa
        .post(
            "/api-keys/batch-delete",
            json!({"ids": [a["id"], b["id"], FAKE_ID, did]}),
        )
        .await;
    let out = res.ok(200);
    assert_keys(&out, &["deleted", "not_found"]);
    assert_eq!(set(&out["deleted"]), strs(&[&kid(&a), &kid(&b)]));
    assert_eq!(set(&out["not_found"]), strs(&[FAKE_ID, &did]));
    sa.assert_audited(&res, &sa, "api_key.delete", &kid(&a))
        .await;
    sa.assert_audited(&res, &sa, "api_key.delete", &kid(&b))
        .await;
    sa.get(&format!("/api-keys/{}", kid(&a))).await.err(404);
    sa.get(&format!("/api-keys/{}", kid(&b))).await.err(404);
    assert_eq!(me_status(&app, &asecret).await, 401);
    let ids: Vec<String> = (0..101).map(|_| FAKE_ID.to_string()).collect();
    sa.post("/api-keys/batch-delete", json!({"ids": ids}))
        .await
        .bad("ids");
    let ids: Vec<String> = (0..100).map(|i| format!("01k{i:023}")).collect();
    let out = sa
        .post("/api-keys/batch-delete", json!({"ids": ids}))
        .await
        .ok(200);
    assert_eq!(out["not_found"].as_array().unwrap().len(), 100);
    let e = sa
        .post("/api-keys/batch-delete", json!({"ids": [], "force": true}))
        .await
        .bad("force");
    assert_eq!(e["code"], "unknown_field");
    sa.post("/api-keys/batch-delete", json!({}))
        .await
        .bad("ids");
}
both_backends!(revoke_delete_and_batch_delete);

async fn usage_and_metrics(app: TestApp) {
    let sa = super_admin(&app).await;
    let (k, secret) = sa
        .create_key(json!({"name": "used", "scopes": ["read"]}))
        .await;
    let id = kid(&k);
    let u = sa
        .get(&format!("/api-keys/{id}/usage?days=7"))
        .await
        .ok(200);
    assert_keys(&u, &["data"]);
    let rows = u["data"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    let dates: Vec<String> = field(rows, "date");
    assert_eq!(
        dates,
        [
            "2026-11-16",
            "2026-11-17",
            "2026-11-18",
            "2026-11-19",
            "2026-11-20",
            "2026-11-21",
            "2026-11-22"
        ],
        "oldest first, ending today (UTC)"
    );
    for r in rows {
        assert_keys(r, &["date", "valid", "invalid"]);
        assert_eq!(r["valid"], 0);
        assert_eq!(r["invalid"], 0);
    }
    let d = sa.get(&format!("/api-keys/{id}/usage")).await.ok(200);
    assert_eq!(d["data"].as_array().unwrap().len(), 30, "default 30 days");
    for bad in ["0", "abc", "-1"] {
        sa.get(&format!("/api-keys/{id}/usage?days={bad}"))
            .await
            .bad("days");
    }
    sa.get(&format!("/api-keys/{FAKE_ID}/usage?days=7"))
        .await
        .err(404);

    // Verifications are counted per day.
    for _ in 0..3 {
        assert_eq!(verify(&app, json!({"key": secret})).await["code"], "VALID");
    }
    assert_eq!(
        verify(&app, json!({"key": secret, "permissions": ["write"]})).await["code"],
        "FORBIDDEN"
    );
    app.state.service.verifier().flush_usage().await.unwrap();
    let rows = sa
        .get(&format!("/api-keys/{id}/usage?days=7"))
        .await
        .ok(200)["data"]
        .clone();
    assert_eq!(
        rows[6],
        json!({"date": "2026-11-22", "valid": 3, "invalid": 1})
    );
    assert_eq!(rows[5]["valid"], 0);
    app.clock.advance(Duration::days(1));
    let rows = sa
        .get(&format!("/api-keys/{id}/usage?days=2"))
        .await
        .ok(200)["data"]
        .clone();
    assert_eq!(
        rows,
        json!([{"date": "2026-11-22", "valid": 3, "invalid": 1},
               {"date": "2026-11-23", "valid": 0, "invalid": 0}])
    );

    // Dashboard metrics.
    let m = sa.get("/metrics").await.ok(200);
    assert_keys(
        &m,
        &[
            "total_keys",
            "active_keys",
            "expired_keys",
            "revoked_keys",
            "api_calls_today",
        ],
    );
    assert_eq!(
        m,
        json!({"total_keys": 2, "active_keys": 2, "expired_keys": 0, "revoked_keys": 0,
               "api_calls_today": 0}),
        "yesterday's calls are not today's"
    );
    sa.create_key(json!({"name": "short-lived", "expires_in_days": 1}))
        .await;
    let (r, _) = sa.create_key(json!({"name": "revoked"})).await;
    sa.act(&format!("/api-keys/{}/revoke", kid(&r)))
        .await
        .ok(200);
    let (gone, _) = sa.create_key(json!({"name": "deleted"})).await;
    sa.delete(&format!("/api-keys/{}", kid(&gone)))
        .await
        .ok(204);
    app.clock.advance(Duration::days(2));
    for _ in 0..2 {
        verify(&app, json!({"key": secret})).await;
    }
    app.state.service.verifier().flush_usage().await.unwrap();
    let me = Client::session(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        me.get("/metrics").await.ok(200),
        json!({"total_keys": 4, "active_keys": 2, "expired_keys": 1, "revoked_keys": 1,
               "api_calls_today": 2})
    );
    let k = sa.get(&format!("/api-keys/{id}")).await.ok(200);
    assert_timestamp(&k["last_used_at"]);
}
both_backends!(usage_and_metrics);

/// Names and tags refuse bidi controls and invisible characters (U+202E makes
/// `ci-\u{202E}gpj.exe` read as `ci-exe.jpg`; U+200B makes two names look alike).
async fn names_and_tags_refuse_invisible_characters(app: TestApp) {
    let sa = super_admin(&app).await;
    for bad in [
        "ci-\u{202E}gpj.exe",
        "prod\u{200B}",
        "a\u{2066}b\u{2069}",
        "\u{FEFF}key",
    ] {
        sa.post("/api-keys", json!({ "name": bad }))
            .await
            .bad("name");
        sa.post("/api-keys", json!({ "name": "fine", "tags": [bad] }))
            .await
            .bad("tags[0]");
        sa.post("/service-accounts", json!({ "name": bad }))
            .await
            .bad("name");
    }
    let (k, _) = sa
        .create_key(json!({ "name": "ok-name", "tags": ["café"] }))
        .await;
    let id = k["id"].as_str().unwrap();
    sa.patch(&format!("/api-keys/{id}"), json!({ "name": "x\u{202E}y" }))
        .await
        .bad("name");
}
both_backends!(names_and_tags_refuse_invisible_characters);
