//! IMPORT.md in the console: the import screen (check first, then import, the result of
//! every line), turning a key off and on, and `external_id` on the key screens — in
//! Chromium at desktop and phone width, on SQLite and PostgreSQL.

use super::{browser, verify};
use crate::support::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};

const GOOD: &str = "sk_live_51ImportedThroughTheConsole";

async fn import_screen_checks_then_imports(app: TestApp) {
    let Some(b) = browser(&app, "import-keys").await else {
        return;
    };
    let backend = format!("{:?}", app.db.store.backend()).to_lowercase();
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go("/api-keys").await;
    b.button("Import keys").await.click().await.unwrap();
    b.wait_xpath("//h1[normalize-space()='Import API keys']")
        .await;
    // Nothing pasted: a message at the box.
    b.button("Check keys").await.click().await.unwrap();
    let err = b.wait_css("#e-lines").await.text().await.unwrap();
    assert!(err.contains("at least one line"), "{err}");

    let lines = [
        format!(r#"{{"name": "console-import", "key": "{GOOD}", "external_id": "cus_77"}}"#),
        r#"{"name": "broken", "hash": {"algorithm": "md5", "value": "x"}}"#.to_string(),
        r#"not json at all"#.to_string(),
    ]
    .join("\n");
    b.fill("lines", &lines).await;
    b.button("Check keys").await.click().await.unwrap();
    let summary = b.wait_css("#import-summary").await.text().await.unwrap();
    assert!(
        summary.contains("1 line is ready") && summary.contains("2 lines have errors"),
        "{summary}"
    );
    let row = b
        .wait_css("#import-results tr[data-line='2']")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        row.contains("algorithm") && row.contains("hash.algorithm"),
        "{row}"
    );
    let row = b
        .wait_css("#import-results tr[data-line='3']")
        .await
        .text()
        .await
        .unwrap();
    assert!(row.contains("not valid JSON"), "{row}");
    // Checked, not written.
    assert_eq!(verify(&app, GOOD).await["code"], "NOT_FOUND");
    b.client.set_window_size(390, 844).await.unwrap();
    b.wait_css("#import-results").await;
    b.shot_named(&format!("import-check-phone-{backend}")).await;
    b.client.set_window_size(1366, 900).await.unwrap();

    b.button("Import keys").await.click().await.unwrap();
    // The check page has a summary too: wait for the import's own.
    let summary = b
        .wait_xpath("//*[@id='import-summary'][contains(., 'Imported')]")
        .await
        .text()
        .await
        .unwrap();
    assert!(summary.contains("Imported 1 key"), "{summary}");
    assert_eq!(verify(&app, GOOD).await["code"], "VALID");
    b.shot_named(&format!("import-done-{backend}")).await;

    // The imported key's page: its external id, turned off and on again.
    b.wait_xpath("//table[@id='import-results']//a[normalize-space()='console-import']")
        .await
        .click()
        .await
        .unwrap();
    let details = b.wait_css("#key-details").await.text().await.unwrap();
    assert!(
        details.contains("cus_77") && details.contains("Imported"),
        "{details}"
    );
    b.button("Turn off").await.click().await.unwrap();
    b.wait_xpath("//*[contains(normalize-space(), 'API key turned off.')]")
        .await;
    let status = b.wait_css("#key-details dd").await.text().await.unwrap();
    assert!(status.contains("Disabled"), "{status}");
    assert_eq!(verify(&app, GOOD).await["code"], "DISABLED");
    b.client.set_window_size(390, 844).await.unwrap();
    b.shot_named(&format!("key-turned-off-phone-{backend}"))
        .await;
    b.client.set_window_size(1366, 900).await.unwrap();
    b.button("Turn on").await.click().await.unwrap();
    b.wait_xpath("//*[contains(normalize-space(), 'API key turned on.')]")
        .await;
    assert_eq!(verify(&app, GOOD).await["code"], "VALID");

    // external_id on the edit form: shown, changed, cleared.
    b.button("Edit").await.click().await.unwrap();
    let v = b
        .wait_css("[name=external_id]")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("cus_77"));
    b.fill("external_id", "cus_78").await;
    b.button("Save changes").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='API key updated.']")
        .await;
    let details = b.wait_css("#key-details").await.text().await.unwrap();
    assert!(details.contains("cus_78"), "{details}");
    assert_eq!(
        verify(&app, GOOD).await["external_id"],
        "cus_78",
        "every node sees the change"
    );
    b.screenshot().await;
}
both_backends!(import_screen_checks_then_imports);

/// Allowed networks and metadata on the create and edit forms, and the key id with a
/// Copy button on the key's page (plain HTTP: the forms as a browser posts them).
async fn networks_and_metadata_on_the_key_forms(app: TestApp) {
    use super::{console_client, csrf_of};
    let (client, csrf) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let res = client
        .post(app.url("/api-keys/new"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "fenced"),
            ("expiration", "never"),
            ("allowed_cidrs", "10.0.0.0/8, 203.0.113.7/32"),
            ("metadata", r#"{"plan": "pro"}"#),
            ("credits", "unlimited"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let mut tx = app.db.store.read().await.unwrap();
    let org = keyhaven_core::id::Id::from_trusted(app.org_id.clone());
    let keys = tx
        .list_api_keys(
            &org,
            &keyhaven_store::ApiKeyFilter {
                status: None,
                role: None,
                tag: None,
                owner_id: None,
                q: Some("fenced".into()),
                external_id: None,
                now: app.state.service.now(),
            },
            &keyhaven_store::Page {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items;
    drop(tx);
    let k = &keys[0];
    assert_eq!(k.allowed_cidrs.len(), 2);
    assert_eq!(k.metadata, serde_json::json!({"plan": "pro"}));
    let id = k.id.to_string();

    // The page shows them, and the id to copy.
    let html = client
        .get(app.url(&format!("/api-keys/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("203.0.113.7/32") && html.contains("&quot;plan&quot;"),
        "{html}"
    );
    assert!(html.contains(&format!("<code id=\"key-id\">{id}</code>")));
    assert!(html.contains("data-copy=\"key-id\""));

    // The edit form starts from them; a bad object and a bad network come back at
    // their fields; then both change.
    let edit = client
        .get(app.url(&format!("/api-keys/{id}/edit")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(edit.contains("10.0.0.0/8, 203.0.113.7/32"), "{edit}");
    let post = |cidrs: &'static str, meta: &'static str| {
        let (client, csrf, url) = (
            client.clone(),
            csrf_of(&edit),
            app.url(&format!("/api-keys/{id}/edit")),
        );
        async move {
            client
                .post(url)
                .form(&[
                    ("csrf_token", csrf.as_str()),
                    ("name", "fenced"),
                    ("allowed_cidrs", cidrs),
                    ("metadata", meta),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let res = post("10.0.0.0/8", "[1, 2]").await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("id=\"e-metadata\""), "{html}");
    let res = post("not-a-network", "").await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("not-a-network"), "the typed value is kept");
    let res = post("192.168.0.0/16", r#"{"plan": "team", "seats": 5}"#).await;
    assert!(
        res.status().is_success() || res.status().is_redirection(),
        "{}",
        res.status()
    );
    let (k, _) = app
        .state
        .service
        .get_api_key(&super::system(&app), &k.id)
        .await
        .unwrap();
    assert_eq!(
        k.allowed_cidrs
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        vec!["192.168.0.0/16".to_string()]
    );
    assert_eq!(k.metadata, serde_json::json!({"plan": "team", "seats": 5}));
}
both_backends!(networks_and_metadata_on_the_key_forms);
