//! Issue 10's authorization and sign-in findings, over HTTP on SQLite and PostgreSQL:
//! renames bound by `key_name_pattern` (1), changing a user needs every permission the
//! user holds (2), one grant rule and pattern edits (3), search semantics of patterns
//! (4), `/login?next=` (14) and `/v1/me/password` attempts (15).

use crate::support::*;
use serde_json::{json, Value};

/// The denied audit events for `action` on `target_id`.
async fn denials(sa: &Client, action: &str, target_id: &str) -> Vec<Value> {
    sa.all(&format!(
        "/audit-events?action={action}&target_id={target_id}"
    ))
    .await
    .into_iter()
    .filter(|e| e["outcome"] == "denied")
    .collect()
}

/// The CSRF token of a console form in `html`.
fn form_csrf(html: &str) -> String {
    let pat = "name=\"csrf_token\" value=\"";
    let at = html.find(pat).expect("a csrf_token field") + pat.len();
    html[at..].split('"').next().unwrap().to_string()
}

// ---------------------------------------------------------------------------------
// 1. A rename is bound by the same rule as the create.
// ---------------------------------------------------------------------------------

async fn renames_are_bound_by_the_creators_pattern(app: TestApp) {
    let sa = super_admin(&app).await;
    sa.post(
        "/roles",
        json!({"name": "ci-keeper",
               "permissions": ["api_keys.view", "api_keys.create", "api_keys.manage",
                               "service_accounts.view", "service_accounts.manage"],
               "key_name_pattern": "^ci-.*"}),
    )
    .await
    .ok(201);
    // A user holding the role, and an API key holding it (owned by a service account).
    sa.create_user("ci@example.com", "CI person", &["ci-keeper"])
        .await;
    let person = Client::session(&app, "ci@example.com", PASSWORD).await;
    let owner = sa.create_sa("ci-owner", &[]).await;
    let (_, secret) = sa
        .create_key(json!({"name": "ci-bot", "roles": ["ci-keeper"],
                           "owner": {"type": "service_account", "id": owner["id"]}}))
        .await;
    let bot = Client::bearer(&app, &secret).await;

    for (n, who) in [("p", &person), ("b", &bot)] {
        // Keys (for the bot: keys created by a key).
        let (k, _) = who
            .create_key(json!({"name": format!("ci-good-{n}")}))
            .await;
        let path = format!("/api-keys/{}", k["id"].as_str().unwrap());
        let e = who
            .patch(&path, json!({"name": format!("prod-renamed-{n}")}))
            .await
            .bad("name");
        assert_eq!(e["code"], "name_pattern_mismatch", "{e}");
        who.patch(&path, json!({"name": format!("ci-better-{n}")}))
            .await
            .ok(200);
        // Other fields of the key still change; so does the name, within the pattern.
        who.patch(&path, json!({"description": "still mine"}))
            .await
            .ok(200);
        // Service accounts.
        let acct = who
            .post(
                "/service-accounts",
                json!({"name": format!("ci-robot-{n}")}),
            )
            .await
            .ok(201);
        let path = format!("/service-accounts/{}", acct["id"].as_str().unwrap());
        let e = who
            .patch(&path, json!({"name": format!("prod-robot-{n}")}))
            .await
            .bad("name");
        assert_eq!(e["code"], "name_pattern_mismatch", "{e}");
        who.patch(&path, json!({"name": format!("ci-robot-two-{n}")}))
            .await
            .ok(200);
    }
    // A super-admin holds the permissions through no pattern: free to rename.
    let (k, _) = sa.create_key(json!({"name": "ci-admin"})).await;
    sa.patch(
        &format!("/api-keys/{}", k["id"].as_str().unwrap()),
        json!({"name": "prod-admin"}),
    )
    .await
    .ok(200);

    // The console's edit forms are bound too.
    let (console, csrf) = app.sign_in("ci@example.com", PASSWORD).await;
    let (k, _) = person.create_key(json!({"name": "ci-console"})).await;
    let kid = k["id"].as_str().unwrap().to_string();
    let res = console
        .post(app.url(&format!("/api-keys/{kid}/edit")))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "prod-console"),
            ("description", ""),
            ("tags", ""),
            ("scopes", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("id=\"e-name\""), "{html}");
    let acct = person
        .post("/service-accounts", json!({"name": "ci-console-robot"}))
        .await
        .ok(201);
    let sid = acct["id"].as_str().unwrap().to_string();
    let res = console
        .post(app.url(&format!("/settings/api-access/{sid}/edit")))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "prod-console-robot"),
            ("description", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("id=\"e-name\""), "{html}");

    // Nothing outside the pattern exists.
    let keys = field(&sa.all("/api-keys").await, "name");
    assert!(
        keys.iter()
            .all(|n| n.starts_with("ci-") || n == "prod-admin" || n.starts_with("key-")),
        "{keys:?}"
    );
    let accts = field(&sa.all("/service-accounts?status=all").await, "name");
    assert!(accts.iter().all(|n| n.starts_with("ci-")), "{accts:?}");
}
both_backends!(renames_are_bound_by_the_creators_pattern);

// ---------------------------------------------------------------------------------
// 2. Changing, deactivating or deleting a user needs every permission they hold.
// ---------------------------------------------------------------------------------

async fn changing_a_user_needs_every_permission_they_hold(app: TestApp) {
    let sa = super_admin(&app).await;
    let boss = sa
        .create_user("boss@example.com", "Boss", &["super-admin"])
        .await;
    let boss_id = boss["id"].as_str().unwrap().to_string();
    let boss_path = format!("/users/{boss_id}");

    // The case: an admin deactivates or demotes a super-admin.
    sa.create_user("ops@example.com", "Ops", &["admin"]).await;
    let ops = Client::session(&app, "ops@example.com", PASSWORD).await;
    ops.patch(&boss_path, json!({"status": "inactive"}))
        .await
        .err(403);
    ops.patch(&boss_path, json!({"roles": ["read-only"]}))
        .await
        .err(403);
    ops.patch(&boss_path, json!({"display_name": "Bossy"}))
        .await
        .err(403);

    // Someone who may delete users, but holds less than the super-admin.
    sa.post(
        "/roles",
        json!({"name": "people",
               "permissions": ["users.view", "users.update", "users.delete",
                               "organization.view", "roles.view", "service_accounts.view",
                               "api_keys.view", "api_keys.create"]}),
    )
    .await
    .ok(201);
    sa.post(
        "/roles",
        json!({"name": "people-lite", "permissions": ["users.view", "users.update"]}),
    )
    .await
    .ok(201);
    let hr = sa.create_user("hr@example.com", "HR", &["people"]).await;
    let hr_id = hr["id"].as_str().unwrap().to_string();
    let hr_client = Client::session(&app, "hr@example.com", PASSWORD).await;
    let res = hr_client.delete(&boss_path).await;
    res.err(403);
    hr_client
        .patch(&boss_path, json!({"status": "inactive"}))
        .await
        .err(403);
    // Each refusal is audited as denied, naming the target.
    assert_eq!(denials(&sa, "user.delete", &boss_id).await.len(), 1);
    assert_eq!(denials(&sa, "user.update", &boss_id).await.len(), 4);
    let b = sa.get(&boss_path).await.ok(200);
    assert_eq!(b["status"], "active");
    assert_eq!(b["roles"], json!(["super-admin"]));
    assert_eq!(b["display_name"], "Boss");

    // Users whose permissions the caller holds: changed, deactivated, deleted.
    let dev = sa
        .create_user("dev@example.com", "Dev", &["read-only"])
        .await;
    let dev_path = format!("/users/{}", dev["id"].as_str().unwrap());
    hr_client
        .patch(
            &dev_path,
            json!({"status": "inactive", "display_name": "Dev 2"}),
        )
        .await
        .ok(200);
    hr_client.delete(&dev_path).await.ok(204);

    // The caller's own display name is the exception: a personal key holding less than
    // its user may rename the user, but not change anything else of them.
    let (_, personal) = hr_client
        .create_key(json!({"name": "hr-personal", "roles": ["people-lite"]}))
        .await;
    let key = Client::bearer(&app, &personal).await;
    let own = format!("/users/{hr_id}");
    let me = key
        .patch(&own, json!({"display_name": "Human Resources"}))
        .await
        .ok(200);
    assert_eq!(me["display_name"], "Human Resources");
    key.patch(&own, json!({"status": "inactive"}))
        .await
        .err(403);
    key.patch(&own, json!({"roles": ["people-lite"]}))
        .await
        .err(403);
    let me = sa.get(&own).await.ok(200);
    assert_eq!(me["status"], "active");
    assert_eq!(me["roles"], json!(["people"]));
}
both_backends!(changing_a_user_needs_every_permission_they_hold);

// ---------------------------------------------------------------------------------
// 3. One grant rule on PATCH; editing a role's pattern needs the role's permissions.
// ---------------------------------------------------------------------------------

async fn one_grant_rule_and_pattern_edits(app: TestApp) {
    let sa = super_admin(&app).await;
    sa.post(
        "/roles",
        json!({"name": "offboarding", "permissions": ["users.view", "users.delete"],
               "key_name_pattern": "^off-"}),
    )
    .await
    .ok(201);
    sa.post(
        "/roles",
        json!({"name": "billing", "permissions": ["billing:read"], "key_name_pattern": "^bill-"}),
    )
    .await
    .ok(201);
    sa.post(
        "/roles",
        json!({"name": "reader", "permissions": ["billing:read"]}),
    )
    .await
    .ok(201);
    sa.post(
        "/roles",
        json!({"name": "keeper",
               "permissions": ["organization.view", "roles.view", "roles.manage",
                               "users.view", "users.update",
                               "api_keys.view", "api_keys.manage",
                               "service_accounts.view", "service_accounts.manage"]}),
    )
    .await
    .ok(201);
    sa.create_user("keeper@example.com", "Keeper", &["keeper"])
        .await;
    let keeper = Client::session(&app, "keeper@example.com", PASSWORD).await;

    // The pattern of a role granting users.delete (which the keeper lacks) stays.
    for p in [json!(".*"), json!(null), json!("")] {
        keeper
            .patch("/roles/offboarding", json!({"key_name_pattern": p}))
            .await
            .err(403);
    }
    assert_eq!(denials(&sa, "role.update", "offboarding").await.len(), 3);
    let r = sa.get("/roles/offboarding").await.ok(200);
    assert_eq!(r["key_name_pattern"], "^off-");
    // Its description, and its pattern sent unchanged, are fine.
    keeper
        .patch(
            "/roles/offboarding",
            json!({"description": "leavers", "key_name_pattern": "^off-"}),
        )
        .await
        .ok(200);
    // A role whose permissions the keeper holds (scopes are free): the pattern changes.
    let r = keeper
        .patch("/roles/billing", json!({"key_name_pattern": "^billing-"}))
        .await
        .ok(200);
    assert_eq!(r["key_name_pattern"], "^billing-");

    // One grant rule for users, keys and service accounts: re-sending a role the
    // holder already has is no grant; adding a permission the caller lacks is refused.
    let acct = sa.create_sa("off-robot", &["offboarding"]).await;
    let (k, _) = sa
        .create_key(json!({"name": "off-key", "roles": ["offboarding"],
                           "owner": {"type": "service_account", "id": acct["id"]}}))
        .await;
    let kpath = format!("/api-keys/{}", k["id"].as_str().unwrap());
    let spath = format!("/service-accounts/{}", acct["id"].as_str().unwrap());
    keeper
        .patch(&kpath, json!({"roles": ["offboarding", "reader"]}))
        .await
        .ok(200);
    keeper
        .patch(&spath, json!({"roles": ["offboarding", "reader"]}))
        .await
        .ok(200);
    let (fresh, _) = sa
        .create_key(json!({"name": "off-fresh",
                           "owner": {"type": "service_account", "id": acct["id"]}}))
        .await;
    let fresh_path = format!("/api-keys/{}", fresh["id"].as_str().unwrap());
    let plain = sa.create_sa("plain", &[]).await;
    let plain_path = format!("/service-accounts/{}", plain["id"].as_str().unwrap());
    let dev = sa
        .create_user("dev@example.com", "Dev", &["read-only"])
        .await;
    let dev_path = format!("/users/{}", dev["id"].as_str().unwrap());
    for path in [&fresh_path, &plain_path, &dev_path] {
        let e = keeper
            .patch(path, json!({"roles": ["offboarding"]}))
            .await
            .err(403);
        assert!(
            e["message"].as_str().unwrap().contains("users.delete"),
            "{e}"
        );
    }
    keeper
        .patch(&dev_path, json!({"roles": ["read-only", "reader"]}))
        .await
        .ok(200);
}
both_backends!(one_grant_rule_and_pattern_edits);

// ---------------------------------------------------------------------------------
// 4. Patterns are searched for as written.
// ---------------------------------------------------------------------------------

async fn patterns_are_searched_as_written(app: TestApp) {
    let sa = super_admin(&app).await;
    for (role, pattern) in [("starts", "^ci-"), ("contains", "ci-"), ("ends", "-prod$")] {
        sa.post(
            "/roles",
            json!({"name": role, "permissions": ["read"], "key_name_pattern": pattern}),
        )
        .await
        .ok(201);
    }
    let cases = [
        ("starts", "ci-build", true),
        ("starts", "ci-", true),
        ("starts", "xci-build", false),
        ("contains", "my-ci-build", true),
        ("contains", "prod", false),
        ("ends", "orders-prod", true),
        ("ends", "orders-prod-2", false),
    ];
    for (role, name, ok) in cases {
        let res = sa
            .post("/api-keys", json!({"name": name, "roles": [role]}))
            .await;
        if ok {
            res.ok(201);
        } else {
            let e = res.bad("name");
            assert_eq!(e["code"], "name_pattern_mismatch", "{role} {name}: {e}");
        }
    }
}
both_backends!(patterns_are_searched_as_written);

// ---------------------------------------------------------------------------------
// 14. `/login?next=` follows only same-origin paths.
// ---------------------------------------------------------------------------------

async fn login_next_is_a_same_origin_path(app: TestApp) {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The form does not carry a dangerous `next` on.
    let html = client
        .get(app.url("/login?next=%2F%09%2Fevil.example%2F"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("name=\"next\" value=\"\""), "{html}");
    for next in [
        "/\t/evil.example/",
        "/\n/evil.example/",
        "/ /evil.example/",
        "/\\evil.example/",
        "/\\/evil.example/",
        "//evil.example/",
        "/x//evil.example/",
        "https://evil.example/",
    ] {
        let html = client
            .get(app.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = form_csrf(&html);
        let res = client
            .post(app.url("/login"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("next", next),
                ("email", ADMIN_EMAIL),
                ("password", ADMIN_PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{next:?}");
        assert_eq!(
            res.headers()["location"].to_str().unwrap(),
            "/api-keys",
            "{next:?}"
        );
    }
    // A same-origin path is followed.
    let html = client
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = client
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", form_csrf(&html).as_str()),
            ("next", "/users?status=active"),
            ("email", ADMIN_EMAIL),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"].to_str().unwrap(),
        "/users?status=active"
    );
}
both_backends!(login_next_is_a_same_origin_path);

// ---------------------------------------------------------------------------------
// 15. Wrong `current_password` attempts are limited like sign-in.
// ---------------------------------------------------------------------------------

async fn own_password_attempts_are_limited(app: TestApp) {
    let sa = super_admin(&app).await;
    sa.create_user("pw@example.com", "Pw", &["read-only"]).await;
    let (client, csrf) = app.sign_in("pw@example.com", PASSWORD).await;
    let change = |current: &'static str| {
        let client = client.clone();
        let csrf = csrf.clone();
        let url = app.url("/v1/me/password");
        async move {
            client
                .post(url)
                .header("x-csrf-token", csrf)
                .json(&json!({"current_password": current,
                              "new_password": "a brand new long password"}))
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..5 {
        let res = change("not my password").await;
        assert_eq!(res.status(), 400);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "wrong_password");
    }
    for current in ["not my password", PASSWORD] {
        let res = change(current).await;
        assert_eq!(res.status(), 429, "{current}");
        let retry: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=15 * 60).contains(&retry), "{retry}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["type"], "rate_limited");
    }
    // The password did not change.
    assert_eq!(
        app.http
            .post(app.url("/v1/session"))
            .json(&json!({"email": "pw@example.com", "password": "a brand new long password"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        429,
        "the same per-email count as sign-in"
    );
}
both_backends!(own_password_attempts_are_limited);
