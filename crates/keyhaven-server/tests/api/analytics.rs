//! Verification analytics (ANALYTICS.md) over HTTP, on SQLite and PostgreSQL: what is
//! counted (codes, tags, keys, owners, verifications without a key), the queries'
//! grouping, filters and paging, bad parameters, tenancy, the key pages reading the
//! same counts, and retention.

use std::collections::BTreeMap;

use crate::support::{super_admin, Client, TestApp};
use chrono::Duration;
use keyhaven_core::id::Id;
use keyhaven_service::api_keys::CreateApiKey;
use keyhaven_service::Caller;
use serde_json::{json, Value};

async fn verify(app: &TestApp, body: Value) -> Value {
    let res = app
        .http
        .post(app.url("/v1/keys/verify"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

async fn flush(app: &TestApp) {
    app.state.service.verifier().flush_usage().await.unwrap();
}

/// The rows of one query (one page, asserted to be the last).
async fn rows(api: &Client, query: &str) -> Vec<Value> {
    let page = api
        .get(&format!("/analytics/verifications?{query}"))
        .await
        .ok(200);
    assert_eq!(page["has_more"], false, "{page}");
    assert!(page["next_cursor"].is_null());
    page["data"].as_array().unwrap().clone()
}

/// `field value → count` of rows (a missing or null field is "-").
fn by(rows: &[Value], field: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for r in rows {
        let k = r[field].as_str().unwrap_or("-").to_string();
        *out.entry(k).or_insert(0) += r["count"].as_i64().unwrap();
    }
    out
}

fn total(rows: &[Value]) -> i64 {
    rows.iter().map(|r| r["count"].as_i64().unwrap()).sum()
}

fn map(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// A key that is well formed but does not exist (created, then deleted).
async fn gone_key(api: &Client) -> String {
    let (k, secret) = api.create_key(json!({"name": "gone"})).await;
    api.delete(&format!("/api-keys/{}", k["id"].as_str().unwrap()))
        .await
        .ok(204);
    secret
}

async fn counts_by_code_key_tag_and_owner(app: TestApp) {
    let api = super_admin(&app).await;
    let org = app.org_id.clone();
    let (k1, s1) = api
        .create_key(json!({"name": "one", "scopes": ["read"]}))
        .await;
    let sa = api.create_sa("billing", &[]).await;
    let (k2, s2) = api
        .create_key(json!({"name": "two", "owner": {"type": "service_account", "id": sa["id"]}}))
        .await;
    let (id1, id2) = (
        k1["id"].as_str().unwrap().to_string(),
        k2["id"].as_str().unwrap().to_string(),
    );
    let owner1 = k1["owner"]["id"].as_str().unwrap().to_string();
    let owner2 = sa["id"].as_str().unwrap().to_string();
    let missing = gone_key(&api).await;

    // k1: 3 VALID (tagged twice), 1 FORBIDDEN.
    let tagged = json!({"key": s1, "tags": ["path:/orders", "region:eu"]});
    assert_eq!(verify(&app, tagged).await["code"], "VALID");
    assert_eq!(
        verify(&app, json!({"key": s1, "tags": ["path:/orders"]})).await["code"],
        "VALID"
    );
    assert_eq!(verify(&app, json!({"key": s1})).await["code"], "VALID");
    assert_eq!(
        verify(&app, json!({"key": s1, "permissions": ["write"]})).await["code"],
        "FORBIDDEN"
    );
    // k2: 1 VALID by JSON, 1 by forward auth with tags in the header.
    assert_eq!(verify(&app, json!({"key": s2})).await["code"], "VALID");
    let res = app
        .http
        .get(app.url("/v1/auth"))
        .bearer_auth(&s2)
        .header("X-Keyhaven-Tags", "path:/billing, region:us,")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Without a key, in the organization's scope: counted for it (no key id).
    for _ in 0..2 {
        let v = verify(
            &app,
            json!({"key": "kh_not-a-key", "organization_id": org, "tags": ["path:/orders"]}),
        )
        .await;
        assert_eq!(v["code"], "MALFORMED");
    }
    let v = verify(&app, json!({"key": missing, "organization_id": org})).await;
    assert_eq!(v["code"], "NOT_FOUND");
    // Without a key and without a scope: no organization to count it for.
    assert_eq!(
        verify(&app, json!({"key": "kh_not-a-key"})).await["code"],
        "MALFORMED"
    );
    assert_eq!(
        verify(&app, json!({"key": missing})).await["code"],
        "NOT_FOUND"
    );
    flush(&app).await;

    let all = rows(&api, "").await;
    assert_eq!(all.len(), 1, "one hour, nothing grouped: {all:?}");
    assert_eq!(all[0]["count"], 9);
    assert_eq!(all[0]["time"], "2026-11-22T12:00:00Z");
    assert!(all[0].get("key_id").is_none() && all[0].get("code").is_none());

    let codes = rows(&api, "group_by=code").await;
    assert_eq!(
        by(&codes, "code"),
        map(&[
            ("VALID", 5),
            ("FORBIDDEN", 1),
            ("MALFORMED", 2),
            ("NOT_FOUND", 1)
        ])
    );
    let keys = rows(&api, "group_by=key").await;
    assert_eq!(
        by(&keys, "key_id"),
        map(&[(&id1, 4), (&id2, 2), ("-", 3)]),
        "verifications without a key have key_id null"
    );
    assert!(keys.iter().any(|r| r.get("key_id") == Some(&Value::Null)));
    let both = rows(&api, "group_by=key&group_by=code").await;
    assert_eq!(both.len(), 5, "{both:?}");
    let comma = rows(&api, "group_by=key,code").await;
    assert_eq!(comma, both, "comma-separated group_by is the same");
    let owners = rows(&api, "group_by=owner").await;
    assert_eq!(
        by(&owners, "owner_id"),
        map(&[(&owner1, 4), (&owner2, 2), ("-", 3)])
    );
    let tags = rows(&api, "group_by=tag").await;
    assert_eq!(
        by(&tags, "tag"),
        map(&[
            ("path:/orders", 4),
            ("region:eu", 1),
            ("path:/billing", 1),
            ("region:us", 1)
        ])
    );
    // Filters.
    assert_eq!(
        total(&rows(&api, &format!("key_id={id1}")).await),
        4,
        "key_id"
    );
    assert_eq!(
        by(
            &rows(&api, &format!("key_id={id1}&group_by=code")).await,
            "code"
        ),
        map(&[("VALID", 3), ("FORBIDDEN", 1)])
    );
    assert_eq!(total(&rows(&api, &format!("owner_id={owner2}")).await), 2);
    assert_eq!(total(&rows(&api, "code=MALFORMED").await), 2);
    assert_eq!(
        by(&rows(&api, "tag=path:/orders&group_by=key").await, "key_id"),
        map(&[(&id1, 2), ("-", 2)])
    );
    assert!(
        rows(&api, "code=EXPIRED").await.is_empty(),
        "zero rows left out"
    );
    assert!(rows(&api, "tag=nobody").await.is_empty());
    // Daily buckets hold the same.
    let days = rows(&api, "granularity=day&group_by=code").await;
    assert_eq!(days.len(), 4);
    assert!(days.iter().all(|r| r["time"] == "2026-11-22T00:00:00Z"));
    assert_eq!(total(&days), 9);

    // The API Keys page numbers read the same counts.
    let m = api.get("/metrics").await.ok(200);
    assert_eq!(m["api_calls_today"], 9);
    let u = api
        .get(&format!("/api-keys/{id1}/usage?days=7"))
        .await
        .ok(200);
    assert_eq!(u["data"][6]["valid"], 3);
    assert_eq!(u["data"][6]["invalid"], 1);

    // The busiest keys, with their counts per code.
    let top = api.get("/analytics/top-keys").await.ok(200);
    let data = top["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{top}");
    assert_eq!(data[0]["key_id"], id1.as_str());
    assert_eq!(data[0]["name"], "one");
    assert_eq!(data[0]["owner_id"], owner1.as_str());
    assert_eq!(data[0]["total"], 4);
    assert_eq!(data[0]["by_code"], json!({"VALID": 3, "FORBIDDEN": 1}));
    assert_eq!(data[1]["key_id"], id2.as_str());
    assert_eq!(data[1]["by_code"], json!({"VALID": 2}));
    let failing = api
        .get("/analytics/top-keys?code=FORBIDDEN&limit=5")
        .await
        .ok(200);
    assert_eq!(failing["data"].as_array().unwrap().len(), 1);
    assert_eq!(failing["data"][0]["key_id"], id1.as_str());
    assert_eq!(failing["data"][0]["total"], 1);
    let one = api.get("/analytics/top-keys?limit=1").await.ok(200);
    assert_eq!(one["data"].as_array().unwrap().len(), 1);

    // A later flush adds to the same rows; nothing is counted twice.
    assert_eq!(verify(&app, json!({"key": s2})).await["code"], "VALID");
    flush(&app).await;
    flush(&app).await;
    assert_eq!(
        by(&rows(&api, "group_by=key").await, "key_id"),
        map(&[(&id1, 4), (&id2, 3), ("-", 3)])
    );
}
both_backends!(counts_by_code_key_tag_and_owner);

async fn hours_days_and_paging(app: TestApp) {
    let api = super_admin(&app).await;
    let (k1, s1) = api.create_key(json!({"name": "a"})).await;
    let (_, s2) = api.create_key(json!({"name": "b"})).await;
    // Five hours, a few verifications each, flushed as they go.
    for h in 0..5 {
        for _ in 0..=h {
            verify(&app, json!({"key": s1})).await;
        }
        verify(&app, json!({"key": s2, "tags": [format!("hour:{h}")]})).await;
        flush(&app).await;
        app.clock.advance(Duration::hours(1));
    }
    // Now 17:00; the rows are 12:00..16:00.
    let hourly = rows(&api, "group_by=key&limit=1000").await;
    assert_eq!(hourly.len(), 10, "{hourly:?}");
    let times: Vec<&str> = hourly.iter().map(|r| r["time"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "ordered by time");
    assert_eq!(times[0], "2026-11-22T12:00:00Z");
    assert_eq!(times[9], "2026-11-22T16:00:00Z");
    assert_eq!(total(&hourly), 15 + 5);

    // Paging by 3 walks the same rows, in the same order.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let q = match &cursor {
            Some(c) => format!("group_by=key&limit=3&cursor={c}"),
            None => "group_by=key&limit=3".to_string(),
        };
        let page = api
            .get(&format!("/analytics/verifications?{q}"))
            .await
            .ok(200);
        walked.extend(page["data"].as_array().unwrap().iter().cloned());
        if page["has_more"] == true {
            cursor = Some(page["next_cursor"].as_str().unwrap().to_string());
        } else {
            assert!(page["next_cursor"].is_null());
            break;
        }
    }
    assert_eq!(walked, hourly);
    // Paging over tags too.
    let mut tags = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("group_by=tag&group_by=code&limit=2&cursor={c}"),
            None => "group_by=tag&group_by=code&limit=2".to_string(),
        };
        let page = api
            .get(&format!("/analytics/verifications?{q}"))
            .await
            .ok(200);
        tags.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(tags.len(), 5);
    assert_eq!(by(&tags, "tag").len(), 5);

    // since/until select buckets: [start of since's hour, until).
    let mid = rows(
        &api,
        "since=2026-11-22T13:30:00Z&until=2026-11-22T15:00:00Z&group_by=key",
    )
    .await;
    assert_eq!(
        mid.iter()
            .map(|r| r["time"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec![
            "2026-11-22T13:00:00Z",
            "2026-11-22T13:00:00Z",
            "2026-11-22T14:00:00Z",
            "2026-11-22T14:00:00Z"
        ]
    );
    assert_eq!(
        total(
            &rows(
                &api,
                &format!("key_id={}&granularity=day", k1["id"].as_str().unwrap())
            )
            .await
        ),
        15
    );
    // The default range is the last 24 hours: a day later, nothing.
    app.clock.advance(Duration::hours(24));
    assert!(rows(&api, "").await.is_empty());
    assert_eq!(
        total(&rows(&api, "since=2026-11-22T00:00:00Z&granularity=day").await),
        20
    );
}
both_backends!(hours_days_and_paging);

async fn bad_parameters_are_400(app: TestApp) {
    let api = super_admin(&app).await;
    let (_, s1) = api.create_key(json!({"name": "a"})).await;
    let post = |body: Value| {
        let app = &app;
        async move {
            let res = app
                .http
                .post(app.url("/v1/keys/verify"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let eleven: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
    let long = "x".repeat(129);
    let max = "é".repeat(64); // 128 bytes
    for bad in [
        json!(eleven),
        json!([long]),
        json!(["a\u{7}b"]),
        json!(["line\nbreak"]),
        json!([""]),
        json!(["same", "same"]),
    ] {
        let (status, v) = post(json!({"key": s1, "tags": bad})).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["error"]["param"], "tags", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request");
    }
    let ten: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let (status, v) = post(json!({"key": s1, "tags": ten})).await;
    assert_eq!((status, v["code"].as_str()), (200, Some("VALID")));
    let (status, v) = post(json!({"key": s1, "tags": [max]})).await;
    assert_eq!((status, v["code"].as_str()), (200, Some("VALID")));
    let (status, _) = post(json!({"key": s1, "tags": "not-a-list"})).await;
    assert_eq!(status, 400);
    // Forward auth: the same rules on the header, and the code header says so.
    let eleven = eleven.join(",");
    for bad in [eleven.as_str(), "a,a", "a\tb"] {
        let res = app
            .http
            .get(app.url("/v1/auth"))
            .bearer_auth(&s1)
            .header("X-Keyhaven-Tags", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad:?}");
        assert_eq!(res.headers()["x-keyhaven-code"], "BAD_REQUEST");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["param"], "tags");
    }

    for (query, param) in [
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        (
            "since=2026-11-22T12:00:00Z&until=2026-11-22T11:00:00Z",
            "since",
        ),
        (
            "since=2026-11-22T12:00:00Z&until=2026-11-22T12:00:00Z",
            "since",
        ),
        (
            "since=2026-08-01T00:00:00Z&until=2026-11-22T00:00:00Z",
            "since",
        ),
        ("granularity=week", "granularity"),
        ("group_by=key&group_by=colour", "group_by"),
        ("key_id=nope", "key_id"),
        ("owner_id=01", "owner_id"),
        ("code=NOPE", "code"),
        ("code=valid", "code"),
        ("tag=a%07b", "tag"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=!!!", "cursor"),
        ("cursor=e30", "cursor"),
        ("colour=red", "colour"),
        ("granularity=hour&granularity=day", "granularity"),
    ] {
        api.get(&format!("/analytics/verifications?{query}"))
            .await
            .bad(param);
    }
    for (query, param) in [
        ("limit=101", "limit"),
        ("limit=0", "limit"),
        ("code=SOMETIMES", "code"),
        ("since=2026-01-01T00:00:00Z", "since"),
        ("group_by=key", "group_by"),
    ] {
        api.get(&format!("/analytics/top-keys?{query}"))
            .await
            .bad(param);
    }
    // Exactly 90 days is allowed.
    api.get("/analytics/verifications?since=2026-08-24T12:00:00Z&until=2026-11-22T12:00:00Z&granularity=day")
        .await
        .ok(200);
}
both_backends!(bad_parameters_are_400);

async fn other_organizations_never_show(app: TestApp) {
    let api = super_admin(&app).await;
    let (k1, s1) = api.create_key(json!({"name": "ours"})).await;
    let (other, _) = app
        .state
        .service
        .create_organization(
            "Globex",
            "owner@globex.example",
            "correct horse battery staple",
        )
        .await
        .unwrap();
    let owner = {
        let mut tx = app.db.store.read().await.unwrap();
        tx.user_by_email("owner@globex.example")
            .await
            .unwrap()
            .unwrap()
            .id
    };
    let (theirs, _, secret) = app
        .state
        .service
        .create_api_key(
            &Caller::system(other.id.clone(), "test"),
            CreateApiKey {
                name: "theirs".into(),
                owner: Some(keyhaven_service::api_keys::OwnerRef {
                    kind: keyhaven_core::principal::PrincipalKind::User,
                    id: owner.to_string(),
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let their_key = secret.expose().to_string();
    verify(&app, json!({"key": s1})).await;
    for _ in 0..3 {
        verify(&app, json!({"key": their_key, "tags": ["secret-tag"]})).await;
    }
    // Their key asked in our scope: NOT_FOUND, counted for us without their key id.
    let v = verify(
        &app,
        json!({"key": their_key, "organization_id": app.org_id}),
    )
    .await;
    assert_eq!(v["code"], "NOT_FOUND");
    // An organization id that does not exist: nothing stored, and the flush still works.
    let ghost = Id::generate(1_790_000_000_000, &mut rand::thread_rng());
    let v = verify(&app, json!({"key": "kh_garbage", "organization_id": ghost})).await;
    assert_eq!(v["code"], "MALFORMED");
    flush(&app).await;

    let keys = rows(&api, "group_by=key&group_by=code&group_by=tag").await;
    assert!(keys.is_empty(), "no tags of ours: {keys:?}");
    let keys = rows(&api, "group_by=key&group_by=code").await;
    assert_eq!(
        keys,
        vec![
            json!({"time": "2026-11-22T12:00:00Z", "key_id": null, "code": "NOT_FOUND", "count": 1}),
            json!({"time": "2026-11-22T12:00:00Z", "key_id": k1["id"], "code": "VALID", "count": 1}),
        ]
    );
    assert!(rows(&api, &format!("key_id={}", theirs.id))
        .await
        .is_empty());
    assert!(rows(&api, "tag=secret-tag").await.is_empty());
    let top = api.get("/analytics/top-keys").await.ok(200);
    assert_eq!(top["data"].as_array().unwrap().len(), 1);
    assert_eq!(top["data"][0]["key_id"], k1["id"]);
    // Their path with our credential: refused, like every other resource.
    let status = api
        .in_org(other.id.as_str())
        .get("/analytics/verifications")
        .await
        .status;
    assert!(status == 403 || status == 404, "{status}");
    // They see their own, with their tag.
    let mut tx = app.db.store.read().await.unwrap();
    let page = tx
        .verification_counts(&keyhaven_store::AnalyticsQuery {
            org_id: other.id.clone(),
            since_ms: 0,
            until_ms: i64::MAX,
            granularity: keyhaven_store::Granularity::Hour,
            group_by: vec![keyhaven_store::Dimension::Tag],
            key_id: None,
            owner_id: None,
            code: None,
            tag: None,
            limit: 100,
            after: None,
        })
        .await
        .unwrap();
    assert_eq!(page.rows.len(), 1);
    assert_eq!(page.rows[0].count, 3);
    let ghost_rows = tx
        .verification_counts(&keyhaven_store::AnalyticsQuery {
            org_id: ghost,
            since_ms: 0,
            until_ms: i64::MAX,
            granularity: keyhaven_store::Granularity::Hour,
            group_by: vec![],
            key_id: None,
            owner_id: None,
            code: None,
            tag: None,
            limit: 100,
            after: None,
        })
        .await
        .unwrap();
    assert!(ghost_rows.rows.is_empty());
}
both_backends!(other_organizations_never_show);

async fn viewing_needs_api_keys_view(app: TestApp) {
    let api = super_admin(&app).await;
    let role = api
        .post(
            "/roles",
            json!({"name": "no-keys", "permissions": ["organization.view"]}),
        )
        .await
        .ok(201);
    let (_, weak) = api
        .create_key(json!({"name": "weak", "roles": [role["name"]]}))
        .await;
    let weak = Client::bearer(&app, &weak).await;
    weak.get("/analytics/verifications").await.err(403);
    weak.get("/analytics/top-keys").await.err(403);
    let reader = app.admin_key(&["read-only"]).await;
    let reader = Client::bearer(&app, &reader).await;
    reader.get("/analytics/verifications").await.ok(200);
    reader.get("/analytics/top-keys").await.ok(200);
}
both_backends!(viewing_needs_api_keys_view);

async fn retention_prunes_hourly_rows_and_keeps_daily_ones(app: TestApp) {
    let api = super_admin(&app).await;
    let (_, s1) = api.create_key(json!({"name": "a"})).await;
    verify(&app, json!({"key": s1})).await;
    flush(&app).await;
    app.clock.advance(Duration::days(10));
    verify(&app, json!({"key": s1})).await;
    flush(&app).await;
    let service = &app.state.service;
    // Nothing is older than 30 days yet.
    assert_eq!(
        service
            .prune_analytics(std::time::Duration::from_secs(30 * 86_400))
            .await
            .unwrap(),
        0
    );
    // With a 5-day retention the first hour goes (per key and per organization);
    // its day stays.
    let gone = service
        .prune_analytics(std::time::Duration::from_secs(5 * 86_400))
        .await
        .unwrap();
    assert_eq!(gone, 2, "one per-key and one per-organization hourly row");
    let range = "since=2026-11-22T00:00:00Z&until=2026-12-02T13:00:00Z";
    assert_eq!(total(&rows(&api, range).await), 1, "hourly: the recent one");
    assert_eq!(
        total(&rows(&api, &format!("{range}&group_by=key")).await),
        1
    );
    assert_eq!(
        total(&rows(&api, &format!("{range}&granularity=day")).await),
        2,
        "daily rows are kept"
    );
    // Two years on, the daily rows go too.
    app.clock.advance(Duration::days(731));
    let gone = service
        .prune_analytics(std::time::Duration::from_secs(90 * 86_400))
        .await
        .unwrap();
    assert_eq!(gone, 2 + 4);
}
both_backends!(retention_prunes_hourly_rows_and_keeps_daily_ones);

async fn counts_reach_the_database_on_a_graceful_stop(app: TestApp) {
    let api = super_admin(&app).await;
    let (k1, s1) = api.create_key(json!({"name": "a"})).await;
    for _ in 0..3 {
        verify(&app, json!({"key": s1, "tags": ["path:/x"]})).await;
    }
    verify(
        &app,
        json!({"key": "kh_bad", "organization_id": app.org_id}),
    )
    .await;
    assert!(!app.state.service.verifier().usage.is_empty());
    // No flush: what a graceful stop does last writes them (and closes the pool).
    app.state.service.finish().await;
    let store = keyhaven_store::connect(&app.db.url, false).await.unwrap();
    let mut tx = store.read().await.unwrap();
    let q = |group_by: Vec<keyhaven_store::Dimension>| keyhaven_store::AnalyticsQuery {
        org_id: Id::from_trusted(app.org_id.clone()),
        since_ms: 0,
        until_ms: i64::MAX,
        granularity: keyhaven_store::Granularity::Hour,
        group_by,
        key_id: None,
        owner_id: None,
        code: None,
        tag: None,
        limit: 100,
        after: None,
    };
    let rows = tx
        .verification_counts(&q(vec![keyhaven_store::Dimension::Key]))
        .await
        .unwrap()
        .rows;
    let by: BTreeMap<Option<String>, i64> =
        rows.iter().map(|r| (r.key_id.clone(), r.count)).collect();
    assert_eq!(
        by,
        BTreeMap::from([(None, 1), (Some(k1["id"].as_str().unwrap().to_string()), 3)])
    );
    let tags = tx
        .verification_counts(&q(vec![keyhaven_store::Dimension::Tag]))
        .await
        .unwrap()
        .rows;
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].count, 3);
    drop(tx);
    store.close().await;
}
both_backends!(counts_reach_the_database_on_a_graceful_stop);
