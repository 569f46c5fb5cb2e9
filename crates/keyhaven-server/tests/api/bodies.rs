//! Request bodies and addresses the contract refuses: a JSON array where an object is
//! expected, text after the first JSON value, and a path or query too long to serve.

use crate::support::TestApp;

async fn post_raw(app: &TestApp, key: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let res = app
        .http
        .post(app.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let s = res.status().as_u16();
    (s, res.json().await.unwrap_or(serde_json::Value::Null))
}

async fn arrays_and_trailing_text_are_not_bodies(app: TestApp) {
    let key = app.admin_key(&["super-admin"]).await;
    let keys = format!("/v1/organizations/{}/api-keys", app.org_id);
    for (body, code) in [
        (r#"["array-named"]"#, "invalid_parameter"),
        (r#"  ["array-named", "desc"]"#, "invalid_parameter"),
        (r#"{"name":"t"} garbage"#, "invalid_json"),
        (r#"{"name":"t"}{"name":"u"}"#, "invalid_json"),
    ] {
        let (s, v) = post_raw(&app, &key, &keys, body).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
    }
    // The same key name as an object still works.
    let (s, v) = post_raw(&app, &key, &keys, r#" {"name":"t"} "#).await;
    assert_eq!(s, 201, "{v}");
    let secret = v["key"].as_str().unwrap().to_string();
    // Verification: two objects are not one request.
    for (body, code) in [
        (
            format!(r#"{{"key":"{secret}"}}{{"key":"{secret}"}}"#),
            "invalid_json",
        ),
        (format!(r#"["{secret}"]"#), "invalid_parameter"),
    ] {
        let (s, v) = post_raw(&app, &key, "/v1/keys/verify", &body).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{v}");
    }
    // A PATCH body that is an array.
    let res = app
        .http
        .patch(app.url(&format!("{keys}/{}", "01k00000000000000000000000")))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("[\"x\"]")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}
both_backends!(arrays_and_trailing_text_are_not_bodies);

async fn a_long_address_gets_the_error_object(app: TestApp) {
    let key = app.admin_key(&["super-admin"]).await;
    let long = "a".repeat(20 * 1024);
    for path in [
        format!("/v1/organizations/{}/api-keys?q={long}", app.org_id),
        format!("/v1/{long}"),
        format!("/v1/auth?permissions={long}"),
    ] {
        let res = app
            .http
            .get(app.url(&path))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 414, "{}", &path[..40]);
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], "uri_too_long", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request", "{v}");
    }
}
both_backends!(a_long_address_gets_the_error_object);
