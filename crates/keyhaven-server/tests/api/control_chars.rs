//! Control characters (a NUL byte above all, which PostgreSQL refuses in text) are
//! refused where values are parsed, as the caller's mistake — never a 500.

use crate::support::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use base64::Engine;
use serde_json::json;

async fn a_nul_in_a_role_pattern_is_a_bad_request(app: TestApp) {
    let key = app.admin_key(&["super-admin"]).await;
    let res = app
        .http
        .post(app.url(&format!("/v1/organizations/{}/roles", app.org_id)))
        .bearer_auth(&key)
        .json(&json!({"name": "ci", "permissions": ["api_keys.view"], "key_name_pattern": "ci-\u{0}x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["error"]["param"], "key_name_pattern", "{v}");
}
both_backends!(a_nul_in_a_role_pattern_is_a_bad_request);

async fn a_nul_in_a_client_id_is_an_unknown_client(app: TestApp) {
    let form = app
        .http
        .post(app.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=ab%00cd&client_secret=s")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 401);
    let v: serde_json::Value = form.json().await.unwrap();
    assert_eq!(v["error"], "invalid_client", "{v}");
    let basic = base64::engine::general_purpose::STANDARD.encode("ab%00cd:secret");
    let res = app
        .http
        .post(app.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {basic}"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}
both_backends!(a_nul_in_a_client_id_is_an_unknown_client);

async fn a_nul_in_a_console_filter_is_a_bad_request(app: TestApp) {
    let (client, _) = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    for path in [
        "/api-keys?q=%00",
        "/users?q=%00",
        "/settings/api-access?q=%00",
        "/settings/api-access?tab=activity&action=%00",
        "/roles?notice=%01",
    ] {
        let res = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 400, "{path}");
        let body = res.text().await.unwrap();
        assert!(body.contains("control characters"), "{path}: {body}");
    }
    // The same pages without them still work.
    let res = client.get(app.url("/api-keys?q=abc")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}
both_backends!(a_nul_in_a_console_filter_is_a_bad_request);
