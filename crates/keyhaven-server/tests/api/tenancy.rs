//! Verification scoped to one organization: every organization's keys share the `kh_`
//! prefix, so an API that serves organization A must be able to refuse B's keys.

use crate::support::TestApp;
use keyhaven_core::id::Id;
use keyhaven_service::api_keys::CreateApiKey;
use keyhaven_service::Caller;
use serde_json::{json, Value};

/// A second organization with one key (`remaining` uses when given); returns its id
/// and the key.
async fn other_org_key(app: &TestApp, remaining: Option<i64>) -> (String, String) {
    let (org, _) = app
        .state
        .service
        .create_organization(
            "Globex",
            "owner@globex.example",
            "correct horse battery staple",
        )
        .await
        .unwrap();
    let (_, _, secret) = app
        .state
        .service
        .create_api_key(
            &Caller::system(org.id.clone(), "test"),
            CreateApiKey {
                name: "globex-key".into(),
                owner: Some(keyhaven_service::api_keys::OwnerRef {
                    kind: keyhaven_core::principal::PrincipalKind::User,
                    id: first_user(app, &org.id).await,
                }),
                remaining,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (org.id.to_string(), secret.expose().to_string())
}

async fn first_user(app: &TestApp, org: &Id) -> String {
    let mut tx = app.db.store.read().await.unwrap();
    let u = tx
        .user_by_email("owner@globex.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&u.org_id, org);
    u.id.to_string()
}

async fn verify(app: &TestApp, body: Value) -> (u16, Value) {
    let res = app
        .http
        .post(app.url("/v1/keys/verify"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = res.status().as_u16();
    (s, res.json().await.unwrap())
}

async fn verification_is_scoped_to_the_asking_organization(app: TestApp) {
    let (globex, key) = other_org_key(&app, Some(1)).await;
    // Asked by the other organization's API: not found, nothing about the key shown,
    // and its single use not spent.
    let (s, v) = verify(&app, json!({"key": key, "organization_id": app.org_id})).await;
    assert_eq!(s, 200);
    assert_eq!(v["code"], "NOT_FOUND", "{v}");
    assert_eq!(v["valid"], false);
    assert!(v["id"].is_null() && v["organization_id"].is_null(), "{v}");
    // Asked by its own organization: valid, and the one use is still there.
    let (_, v) = verify(&app, json!({"key": key, "organization_id": globex})).await;
    assert_eq!(v["code"], "VALID", "{v}");
    assert_eq!(v["organization_id"], globex.as_str());
    // The use is spent now.
    let (_, v) = verify(&app, json!({"key": key, "organization_id": globex})).await;
    assert_eq!(v["code"], "USAGE_EXCEEDED", "{v}");
    // A malformed organization id is the caller's mistake.
    let (s, v) = verify(&app, json!({"key": key, "organization_id": "not-an-id"})).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["param"], "organization_id", "{v}");
}
both_backends!(verification_is_scoped_to_the_asking_organization);

async fn unscoped_verification_still_answers_for_every_organization(app: TestApp) {
    let (globex, key) = other_org_key(&app, None).await;
    let (_, v) = verify(&app, json!({"key": key})).await;
    assert_eq!(v["code"], "VALID", "{v}");
    assert_eq!(v["organization_id"], globex.as_str());
}
both_backends!(unscoped_verification_still_answers_for_every_organization);

async fn forward_auth_is_scoped_by_query_or_header(app: TestApp) {
    let (globex, key) = other_org_key(&app, None).await;
    let get = |q: String, header: Option<String>| {
        let mut r = app
            .http
            .get(app.url(&format!("/v1/auth{q}")))
            .bearer_auth(&key);
        if let Some(h) = header {
            r = r.header("x-keyhaven-organization-id", h);
        }
        r.send()
    };
    let res = get(format!("?organization_id={}", app.org_id), None)
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["x-keyhaven-code"], "NOT_FOUND");
    assert!(res.headers().get("x-keyhaven-key-id").is_none());
    let res = get(String::new(), Some(app.org_id.clone())).await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["x-keyhaven-code"], "NOT_FOUND");
    let res = get(format!("?organization_id={globex}"), None)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-keyhaven-organization-id"], globex.as_str());
    // The query wins over the header.
    let res = get(
        format!("?organization_id={globex}"),
        Some(app.org_id.clone()),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let res = get("?organization_id=nope".into(), None).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["x-keyhaven-code"], "BAD_REQUEST");
}
both_backends!(forward_auth_is_scoped_by_query_or_header);
