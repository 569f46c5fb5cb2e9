//! USAGE-CONTROL.md through the API, on SQLite and PostgreSQL: named limits with costs,
//! service accounts' shared limits, credits with cost and adjustments, `POST
//! /v1/ratelimit`, forward auth's `?cost=` and `Retry-After`, and that a refused call
//! spends nothing.

use crate::support::TestApp;
use crate::support::{super_admin, verify, Client};
use serde_json::{json, Value};

/// A key with the `admin` role in a second organization.
async fn other_org_admin_key(app: &TestApp) -> String {
    app.other_org_key("Globex", &["admin"]).await.1
}

fn limit<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["ratelimits"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == name))
        .unwrap_or_else(|| panic!("no limit {name} in {v}"))
}

async fn named_limits_apply_with_their_costs(app: TestApp) {
    let sa = super_admin(&app).await;
    let (k, key) = sa
        .create_key(json!({"name": "metered", "ratelimits": [
            {"name": "default", "limit": 3, "duration_ms": 3_600_000},
            {"name": "tokens", "limit": 100, "duration_ms": 3_600_000, "auto_apply": false},
        ]}))
        .await;
    assert_eq!(
        k["ratelimit"],
        json!({"limit": 3, "duration_ms": 3_600_000})
    );
    assert_eq!(k["ratelimits"][1]["auto_apply"], false);

    let v = verify(&app, json!({"key": key})).await;
    assert_eq!(v["code"], "VALID");
    assert_eq!(v["ratelimits"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(limit(&v, "default")["remaining"], 2);
    assert_eq!(limit(&v, "default")["scope"], "key");
    assert_eq!(v["ratelimit"]["remaining"], 2);

    // Named with a cost: both apply; the second call lacks tokens and spends nothing.
    let named = json!({"key": key, "ratelimits": [{"name": "tokens", "cost": 60}]});
    let v = verify(&app, named.clone()).await;
    assert_eq!(v["code"], "VALID");
    assert_eq!(limit(&v, "tokens")["remaining"], 40);
    assert_eq!(limit(&v, "default")["remaining"], 1);
    let v = verify(&app, named).await;
    assert_eq!(v["code"], "RATE_LIMITED");
    assert_eq!(limit(&v, "tokens")["exceeded"], true);
    assert_eq!(limit(&v, "default")["exceeded"], false);
    // The default limit's token was given back: one call left.
    let v = verify(
        &app,
        json!({"key": key, "ratelimits": [{"name": "tokens", "cost": 0}]}),
    )
    .await;
    assert_eq!(v["code"], "VALID", "cost 0 reports without spending: {v}");
    assert_eq!(limit(&v, "tokens")["remaining"], 40);
    assert_eq!(
        verify(&app, json!({"key": key})).await["code"],
        "RATE_LIMITED"
    );

    // A name the key lacks, a bad name or cost: 400 with the contract's error.
    for (body, param) in [
        (
            json!({"key": key, "ratelimits": [{"name": "nope"}]}),
            "ratelimits",
        ),
        (
            json!({"key": key, "ratelimits": [{"name": "Bad Name"}]}),
            "ratelimits[0].name",
        ),
        (
            json!({"key": key, "ratelimits": [{"name": "tokens", "cost": -1}]}),
            "ratelimits[0].cost",
        ),
        (json!({"key": key, "cost": 1_000_001}), "cost"),
    ] {
        let res = app
            .http
            .post(app.url("/v1/keys/verify"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{body}");
        let e: Value = res.json().await.unwrap();
        assert_eq!(e["error"]["param"], param, "{e}");
    }

    // The old single field still edits the default limit.
    let path = format!("/api-keys/{}", k["id"].as_str().unwrap());
    let p = sa
        .patch(
            &path,
            json!({"ratelimit": {"limit": 50, "duration_ms": 60_000}}),
        )
        .await
        .ok(200);
    assert_eq!(p["ratelimits"].as_array().unwrap().len(), 2);
    assert_eq!(limit(&p, "default")["limit"], 50);
    let p = sa.patch(&path, json!({"ratelimit": null})).await.ok(200);
    assert_eq!(p["ratelimit"], Value::Null);
    assert_eq!(p["ratelimits"].as_array().unwrap().len(), 1);
    // Bad lists are refused whole.
    sa.patch(
        &path,
        json!({"ratelimits": [
            {"name": "a", "limit": 1, "duration_ms": 1000},
            {"name": "a", "limit": 1, "duration_ms": 1000}]}),
    )
    .await
    .bad("ratelimits[1].name");
    sa.patch(
        &path,
        json!({"ratelimits": [{"name": "a", "limit": 1, "duration_ms": 2_592_000_001_i64}]}),
    )
    .await
    .bad("ratelimits[0].duration_ms");
    let many: Vec<Value> = (0..11)
        .map(|i| json!({"name": format!("l{i}"), "limit": 1, "duration_ms": 1000}))
        .collect();
    sa.patch(&path, json!({ "ratelimits": many }))
        .await
        .bad("ratelimits");
}
both_backends!(named_limits_apply_with_their_costs);

async fn service_account_limits_are_shared_by_its_keys(app: TestApp) {
    let sa = super_admin(&app).await;
    let acct = sa
        .post(
            "/service-accounts",
            json!({"name": "integration", "ratelimits": [
                {"name": "shared", "limit": 5, "duration_ms": 3_600_000}]}),
        )
        .await
        .ok(201);
    assert_eq!(acct["ratelimits"][0]["name"], "shared");
    let owner = json!({"type": "service_account", "id": acct["id"]});
    let (_, a) = sa.create_key(json!({"name": "one", "owner": owner})).await;
    let (_, b) = sa.create_key(json!({"name": "two", "owner": owner})).await;
    let mut valid = 0;
    for i in 0..12 {
        let v = verify(&app, json!({"key": if i % 2 == 0 { &a } else { &b }})).await;
        if v["code"] == "VALID" {
            valid += 1;
            assert_eq!(limit(&v, "shared")["scope"], "service_account");
        } else {
            assert_eq!(v["code"], "RATE_LIMITED");
        }
    }
    assert_eq!(valid, 5, "five calls for the account, not five per key");
    // Changing the account's limits reaches its keys' next verification.
    let path = format!("/service-accounts/{}", acct["id"].as_str().unwrap());
    sa.patch(&path, json!({"ratelimits": null})).await.ok(200);
    assert_eq!(verify(&app, json!({"key": a})).await["code"], "VALID");
}
both_backends!(service_account_limits_are_shared_by_its_keys);

async fn credits_are_spent_by_cost_and_adjusted(app: TestApp) {
    let sa = super_admin(&app).await;
    let (k, key) = sa
        .create_key(
            json!({"name": "paid", "credits": {"remaining": 10, "low_threshold": 3,
            "refill": {"interval": "monthly", "amount": 10, "day_of_month": 31}}}),
        )
        .await;
    assert_eq!(k["remaining"], 10);
    assert_eq!(k["credits"]["refill"]["day_of_month"], 31);
    let id = k["id"].as_str().unwrap().to_string();
    let v = verify(&app, json!({"key": key, "cost": 4})).await;
    assert_eq!(
        (v["code"].as_str(), v["remaining"].as_i64()),
        (Some("VALID"), Some(6))
    );
    let v = verify(&app, json!({"key": key, "cost": 7})).await;
    assert_eq!(v["code"], "USAGE_EXCEEDED", "7 > 6: nothing spent");
    let v = verify(&app, json!({"key": key, "cost": 6})).await;
    assert_eq!(
        (v["code"].as_str(), v["remaining"].as_i64()),
        (Some("VALID"), Some(0))
    );
    assert_eq!(
        verify(&app, json!({"key": key, "cost": 0})).await["code"],
        "VALID",
        "cost 0 needs no credit"
    );
    assert_eq!(
        verify(&app, json!({"key": key})).await["code"],
        "USAGE_EXCEEDED"
    );
    let got = sa.get(&format!("/api-keys/{id}")).await.ok(200);
    assert_eq!(
        (
            got["remaining"].as_i64(),
            got["credits"]["remaining"].as_i64()
        ),
        (Some(0), Some(0))
    );

    // Adjustments: audited with the balance before and after, seen by the next call.
    let credits = format!("/api-keys/{id}/credits");
    let r = sa
        .post(&credits, json!({"op": "increment", "value": 5}))
        .await
        .ok(200);
    assert_eq!(r, json!({"remaining": 5}));
    assert_eq!(
        verify(&app, json!({"key": key, "cost": 5})).await["code"],
        "VALID"
    );
    let r = sa
        .post(&credits, json!({"op": "set", "value": 100}))
        .await
        .ok(200);
    assert_eq!(r["remaining"], 100);
    let r = sa
        .post(&credits, json!({"op": "decrement", "value": 1_000}))
        .await
        .ok(200);
    assert_eq!(r["remaining"], 0);
    assert_eq!(
        verify(&app, json!({"key": key})).await["code"],
        "USAGE_EXCEEDED"
    );
    let events = sa.all("/audit-events?action=api_key.credits").await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events
        .iter()
        .any(|e| e["changes"]["remaining"] == json!({"from": 0, "to": 100})));
    // Bad adjustments.
    sa.post(&credits, json!({"op": "double", "value": 1}))
        .await
        .err(400);
    sa.post(&credits, json!({"op": "set", "value": -1}))
        .await
        .bad("value");
    let (plain, _) = sa.create_key(json!({"name": "free"})).await;
    sa.post(
        &format!("/api-keys/{}/credits", plain["id"].as_str().unwrap()),
        json!({"op": "set", "value": 1}),
    )
    .await
    .err(409);
    // `remaining` and `credits.remaining` are the same number.
    sa.post(
        "/api-keys",
        json!({"name": "both", "remaining": 1, "credits": {"remaining": 2}}),
    )
    .await
    .bad("remaining");
    // A read-only key cannot adjust.
    let ro = Client::bearer(&app, &app.admin_key(&["read-only"]).await).await;
    ro.post(&credits, json!({"op": "set", "value": 1}))
        .await
        .err(403);
}
both_backends!(credits_are_spent_by_cost_and_adjusted);

async fn a_refused_call_spends_nothing(app: TestApp) {
    let sa = super_admin(&app).await;
    let (_, key) = sa
        .create_key(json!({"name": "guarded", "remaining": 5,
            "ratelimit": {"limit": 2, "duration_ms": 3_600_000},
            "allowed_cidrs": ["10.0.0.0/8"]}))
        .await;
    let from = |ip: &str| json!({"key": key, "ip": ip});
    assert_eq!(
        verify(&app, from("192.0.2.1")).await["code"],
        "IP_NOT_ALLOWED"
    );
    let v = verify(&app, from("10.1.1.1")).await;
    assert_eq!(v["code"], "VALID");
    assert_eq!(
        (
            v["remaining"].as_i64(),
            v["ratelimit"]["remaining"].as_i64()
        ),
        (Some(4), Some(1))
    );
    assert_eq!(verify(&app, from("10.1.1.1")).await["code"], "VALID");
    let v = verify(&app, from("10.1.1.1")).await;
    assert_eq!(v["code"], "RATE_LIMITED");
    assert_eq!(v["remaining"], Value::Null, "credits not reached");
    let got = sa.all("/api-keys?q=guarded").await;
    assert_eq!(got[0]["remaining"], 3, "the refused calls took no credit");
}
both_backends!(a_refused_call_spends_nothing);

async fn ratelimit_anything(app: TestApp) {
    let admin = app.admin_key(&["admin"]).await;
    let call = |key: Option<String>, body: Value| {
        let app = &app;
        async move {
            let mut r = app.http.post(app.url("/v1/ratelimit")).json(&body);
            if let Some(k) = key {
                r = r.bearer_auth(k);
            }
            let res = r.send().await.unwrap();
            let s = res.status().as_u16();
            (s, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let body = |id: &str, cost: i64| {
        json!({"namespace": "logins", "identifier": id, "limit": 3,
               "duration_ms": 3_600_000, "cost": cost})
    };
    let mut ok = 0;
    for _ in 0..5 {
        let (s, v) = call(Some(admin.clone()), body("user-1", 1)).await;
        assert_eq!(s, 200);
        assert_eq!(v["limit"], 3);
        assert!(v["reset_at"].is_string());
        if v["success"] == true {
            ok += 1;
        }
    }
    assert_eq!(ok, 3);
    let (_, v) = call(Some(admin.clone()), body("user-2", 2)).await;
    assert_eq!(
        (v["success"].as_bool(), v["remaining"].as_i64()),
        (Some(true), Some(1))
    );
    let (_, v) = call(Some(admin.clone()), body("user-2", 0)).await;
    assert_eq!(
        (v["success"].as_bool(), v["remaining"].as_i64()),
        (Some(true), Some(1))
    );

    // Another organization's identical namespace and identifier is its own bucket.
    let other = other_org_admin_key(&app).await;
    let (_, v) = call(Some(other), body("user-1", 1)).await;
    assert_eq!(v["success"], true);

    // No credential, the wrong permission, bad bodies.
    assert_eq!(call(None, body("user-1", 1)).await.0, 401);
    let ro = app.admin_key(&["read-only"]).await;
    let (s, v) = call(Some(ro), body("user-1", 1)).await;
    assert_eq!(s, 403);
    assert_eq!(v["error"]["type"], "permission_denied", "{v}");
    for (b, status) in [
        (
            json!({"namespace": "", "identifier": "x", "limit": 1, "duration_ms": 1000}),
            400,
        ),
        (
            json!({"namespace": "n", "identifier": "a\u{7}b", "limit": 1, "duration_ms": 1000}),
            400,
        ),
        (
            json!({"namespace": "n", "identifier": "x".repeat(256), "limit": 1, "duration_ms": 1000}),
            400,
        ),
        (
            json!({"namespace": "n", "identifier": "x", "limit": 0, "duration_ms": 1000}),
            400,
        ),
        (
            json!({"namespace": "n", "identifier": "x", "limit": 1, "duration_ms": 1000, "cost": -2}),
            400,
        ),
        (
            json!({"namespace": "n", "identifier": "x", "limit": "1", "duration_ms": 1000}),
            400,
        ),
        (
            json!({"namespace": "n", "identifier": "x", "limit": 1, "duration_ms": 1000, "x": 1}),
            400,
        ),
    ] {
        let (s, v) = call(Some(admin.clone()), b.clone()).await;
        assert_eq!(s, status, "{b}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    // Over 8 KiB: 413 with the error object.
    let big =
        json!({"namespace": "n", "identifier": "x".repeat(9_000), "limit": 1, "duration_ms": 1000});
    let (s, v) = call(Some(admin.clone()), big).await;
    assert_eq!(s, 413);
    assert!(v["error"]["message"].is_string(), "{v}");
    // A session with the permission may call it too.
    let session = Client::session(
        &app,
        crate::support::ADMIN_EMAIL,
        crate::support::ADMIN_PASSWORD,
    )
    .await;
    let r = session
        .post("/v1/ratelimit", body("user-9", 1))
        .await
        .ok(200);
    assert_eq!(r["success"], true);
}
both_backends!(ratelimit_anything);

async fn forward_auth_costs_and_retry_after(app: TestApp) {
    let sa = super_admin(&app).await;
    let (_, key) = sa
        .create_key(json!({"name": "proxied", "remaining": 10,
            "ratelimit": {"limit": 2, "duration_ms": 60_000}}))
        .await;
    let auth = |q: &str| {
        let req = app
            .http
            .get(app.url(&format!("/v1/auth{q}")))
            .bearer_auth(&key);
        async move { req.send().await.unwrap() }
    };
    let r = auth("?cost=4").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["remaining"], 6);
    assert_eq!(auth("?cost=abc").await.status(), 400);
    assert_eq!(auth("?cost=-1").await.status(), 400);
    assert_eq!(auth("?cost=7").await.status(), 429, "7 > 6 credits");
    assert_eq!(auth("").await.status(), 200);
    let r = auth("").await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-keyhaven-code"], "RATE_LIMITED");
    let secs: i64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=60).contains(&secs),
        "from the limit that refused: {secs}"
    );
}
both_backends!(forward_auth_costs_and_retry_after);
