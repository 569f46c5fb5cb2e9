//! The OpenAPI document says what the server enforces (issue 10, item 23): its
//! constraints come from the same typed values the server parses with, empty query
//! values are refused, whole numbers written as floats are integers, and what the
//! document calls malformed is refused.

use keyhaven_core::value::{self, Described, Shape};

use crate::support::TestApp;

async fn document(app: &TestApp) -> serde_json::Value {
    app.http
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn text_limits(s: Shape) -> (usize, usize, Option<String>) {
    match s {
        Shape::Text {
            min_length,
            max_length,
            pattern,
            ..
        } => (min_length, max_length, pattern),
        other => panic!("not text: {other:?}"),
    }
}

async fn the_document_states_the_parsers_limits(app: TestApp) {
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    let (min, max, pattern) = text_limits(value::KeyName::shape());
    let name = &schemas["CreateApiKey"]["properties"]["name"];
    assert_eq!(name["minLength"], min);
    assert_eq!(name["maxLength"], max);
    assert_eq!(name["pattern"].as_str(), pattern.as_deref());
    let tags = &schemas["CreateApiKey"]["properties"]["tags"];
    assert_eq!(tags["maxItems"], value::Tags::MAX_ITEMS);
    assert_eq!(tags["items"]["maxLength"], value::Tag::MAX_LENGTH);
    let roles = &schemas["CreateUser"]["properties"]["roles"];
    assert_eq!(roles["maxItems"], value::RoleNames::MAX_ITEMS);
    assert_eq!(roles["items"]["pattern"], value::RoleName::PATTERN);
    assert_eq!(
        schemas["CreateRole"]["properties"]["permissions"]["maxItems"],
        value::RolePermissions::MAX_ITEMS
    );
    assert_eq!(
        schemas["UpdateOrganization"]["properties"]["key_prefix"]["pattern"],
        value::KeyPrefix::PATTERN
    );
    assert_eq!(
        schemas["CreateWebhook"]["properties"]["events"]["items"]["enum"]
            .as_array()
            .unwrap()
            .len(),
        keyhaven_core::webhook_event::WebhookEvent::ALL.len()
    );
    // Request bodies are closed: unknown fields are refused.
    for body in ["CreateApiKey", "UpdateApiKey", "OwnerInput", "CreateUser"] {
        assert_eq!(schemas[body]["additionalProperties"], false, "{body}");
    }
    // Parameters: ids, enums, never empty.
    let list = &doc["paths"]["/v1/organizations/{org}/api-keys"]["get"]["parameters"];
    let param = |n: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap()["schema"]
            .clone()
    };
    assert_eq!(
        param("status")["enum"],
        serde_json::json!(["active", "revoked", "expired"])
    );
    assert_eq!(param("owner_id")["minLength"], 26);
    assert_eq!(param("q")["minLength"], 1);
}
both_backends!(the_document_states_the_parsers_limits);

async fn what_the_document_refuses_the_server_refuses(app: TestApp) {
    let key = app.admin_key(&["super-admin"]).await;
    let org = &app.org_id;
    // An empty query value is a mistake, not "no filter".
    for q in ["status=", "q=", "cursor=", "role=", "limit="] {
        let res = app
            .http
            .get(app.url(&format!("/v1/organizations/{org}/api-keys?{q}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{q}");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request", "{q}: {v}");
    }
    let res = app
        .http
        .get(app.url(&format!("/v1/organizations/{org}/api-keys?tag=ok")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A filter holds what the field it filters on may hold.
    let res = app
        .http
        .get(app.url(&format!(
            "/v1/organizations/{org}/api-keys?role=Not%20A%20Role"
        )))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // A name longer than the limit is refused even when spaces around it would be trimmed.
    let padded = format!("{}x", " ".repeat(value::KeyName::MAX_LENGTH));
    let res = app
        .http
        .post(app.url(&format!("/v1/organizations/{org}/api-keys")))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "name": padded }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // Whole numbers written as floats are integers (JSON Schema counts them so).
    let res = app
        .http
        .post(app.url(&format!("/v1/organizations/{org}/api-keys")))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(r#"{"name":"float-days","expires_in_days":30.0,"ratelimit":{"limit":1e2,"duration_ms":60000.0}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["ratelimit"]["limit"], 100, "{v}");
    let res = app
        .http
        .post(app.url(&format!("/v1/organizations/{org}/api-keys")))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(r#"{"name":"half-day","expires_in_days":1.5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // Batch deletion takes ids: anything else is refused, not reported as not found.
    let res = app
        .http
        .post(app.url(&format!("/v1/organizations/{org}/api-keys/batch-delete")))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "ids": ["not an id"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["error"]["param"], "ids[0]", "{v}");
    // Forward auth: a malformed organization header is refused even beside the query
    // parameter that wins, and an empty parameter is refused.
    for (path, header) in [
        (format!("/v1/auth?organization_id={org}"), Some("nope")),
        ("/v1/auth?permissions=".to_string(), None),
    ] {
        let mut req = app.http.get(app.url(&path)).header("x-api-key", &key);
        if let Some(h) = header {
            req = req.header("x-keyhaven-organization-id", h);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 400, "{path}");
        assert_eq!(res.headers()["x-keyhaven-code"], "BAD_REQUEST");
    }
}
both_backends!(what_the_document_refuses_the_server_refuses);
