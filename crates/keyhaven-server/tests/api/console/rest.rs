//! The rest of the console issue: lists sorted by their column headers (the sort in
//! the address, kept with the filters and the pager; `aria-sort` on the sorting
//! column), a key's recent verifications on its page (written only by the analytics
//! flush, with the client address the verification judged, tenancy), and the scopes in
//! use suggested in the key forms — over plain HTTP and in the browser, on SQLite and
//! PostgreSQL.

use std::path::PathBuf;

use super::{browser, console_client, make_account, make_key_secret, make_role, make_user, system};
use crate::support::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use fantoccini::key::Key;
use fantoccini::Locator;
use keyhaven_core::id::Id;
use keyhaven_core::principal::PrincipalKind;
use keyhaven_service::api_keys::{CreateApiKey, OwnerRef};
use keyhaven_service::{Caller, ServiceError};
use serde_json::json;

const DESKTOP: (u32, u32) = (1400, 900);
const PHONE: (u32, u32) = (390, 844);

/// The `data-id`s of the body rows of the table `id="{table}"`, in order.
fn row_ids(html: &str, table: &str) -> Vec<String> {
    let start = html
        .find(&format!("id=\"{table}\""))
        .unwrap_or_else(|| panic!("no table {table}: {html}"));
    let rest = &html[start..];
    let rest = &rest[rest.find("<tbody>").expect("tbody")..];
    let rest = &rest[..rest.find("</tbody>").expect("end of tbody")];
    rest.split("<tr data-id=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap_or_default().to_string())
        .collect()
}

/// The `href` of the first link after `marker` (HTML-unescaped).
fn href_after(html: &str, marker: &str) -> String {
    let at = html.find(marker).unwrap_or_else(|| panic!("no {marker}"));
    let rest = &html[at..];
    let h = rest.find("href=\"").expect("href") + 6;
    rest[h..]
        .split('"')
        .next()
        .unwrap_or_default()
        .replace("&amp;", "&")
}

/// The `href` of the sort link of the column `name` (HTML-unescaped).
fn sort_link(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("data-sort=\"{name}\""))
        .unwrap_or_else(|| panic!("no header {name}"));
    let h = html[..at].rfind("href=\"").expect("href") + 6;
    html[h..]
        .split('"')
        .next()
        .unwrap_or_default()
        .replace("&amp;", "&")
}

/// The opening tag of the header cell whose sort link is `data-sort="{name}"`.
fn header_of(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("data-sort=\"{name}\""))
        .unwrap_or_else(|| panic!("no header {name}"));
    let th = html[..at].rfind("<th").expect("th");
    html[th..at].to_string()
}

/// A personal key of the admin: `(id, secret)`.
async fn admin_key(app: &TestApp, input: CreateApiKey) -> (String, String) {
    let owner = Some(OwnerRef {
        kind: PrincipalKind::User,
        id: super::admin_id(app).await,
    });
    make_key_secret(app, CreateApiKey { owner, ..input }).await
}

async fn key_named(app: &TestApp, name: &str, tags: &[&str], scopes: &[&str]) -> String {
    admin_key(
        app,
        CreateApiKey {
            name: name.into(),
            tags: Some(tags.iter().map(|t| t.to_string()).collect()),
            scopes: Some(scopes.iter().map(|t| t.to_string()).collect()),
            ..Default::default()
        },
    )
    .await
    .0
}

async fn lists_sort_by_their_headers(app: TestApp) {
    // 23 keys created in an order unlike their names' (page size 20).
    let mut names: Vec<String> = (0..23)
        .map(|i| format!("key-{:02}", (i * 7) % 23))
        .collect();
    let mut ids = std::collections::HashMap::new();
    for (i, n) in names.iter().enumerate() {
        let tags: &[&str] = if i % 2 == 0 { &["even"] } else { &[] };
        ids.insert(n.clone(), key_named(&app, n, tags, &[]).await);
    }
    names.sort();
    let by_name: Vec<String> = names.iter().map(|n| ids[n].clone()).collect();
    let (client, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let get = |path: String| {
        let client = client.clone();
        let url = app.url(&path);
        async move {
            let res = client.get(url).send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            res.text().await.unwrap()
        }
    };

    // Unsorted: newest first, and no header claims to sort the list.
    let html = get("/api-keys".into()).await;
    assert!(!html.contains("aria-sort"), "default order marks no column");
    assert_eq!(sort_link(&html, "name"), "/api-keys?sort=name&dir=asc");
    assert_eq!(
        sort_link(&html, "last_used"),
        "/api-keys?sort=last_used&dir=desc"
    );
    let name_header = header_of(&html, "name");
    assert!(name_header.contains("scope=\"col\""), "{name_header}");

    // Name, A to Z: two pages that follow each other, the pager keeping the sort.
    let html = get("/api-keys?sort=name&dir=asc".into()).await;
    let first = row_ids(&html, "keys-table");
    assert_eq!(first, by_name[..20].to_vec());
    assert!(header_of(&html, "name").contains("aria-sort=\"ascending\""));
    assert!(!header_of(&html, "last_used").contains("aria-sort"));
    // The active header turns the order round; the others start their own way.
    assert_eq!(sort_link(&html, "name"), "/api-keys?sort=name&dir=desc");
    assert_eq!(
        sort_link(&html, "last_used"),
        "/api-keys?sort=last_used&dir=desc"
    );
    assert_eq!(
        sort_link(&html, "expires"),
        "/api-keys?sort=expires&dir=asc"
    );
    let next = href_after(&html, "rel=\"next\"");
    assert!(
        next.contains("sort=name") && next.contains("dir=asc") && next.contains("cursor="),
        "{next}"
    );
    let html = get(next).await;
    assert_eq!(row_ids(&html, "keys-table"), by_name[20..].to_vec());
    assert!(!html.contains("rel=\"next\""));
    let first_page = href_after(&html, "aria-label=\"Pagination\"");
    assert_eq!(first_page, "/api-keys?sort=name&dir=asc");

    // Z to A, with a filter: the filter stays in the header links and the order holds.
    let html = get("/api-keys?tag=even&sort=name&dir=desc".into()).await;
    let mut even: Vec<String> = names
        .iter()
        .filter(|n| {
            let i = (0..23)
                .find(|i| format!("key-{:02}", (i * 7) % 23) == **n)
                .unwrap();
            i % 2 == 0
        })
        .map(|n| ids[n].clone())
        .collect();
    even.reverse();
    assert_eq!(row_ids(&html, "keys-table"), even);
    assert!(header_of(&html, "name").contains("aria-sort=\"descending\""));
    assert_eq!(
        sort_link(&html, "expires"),
        "/api-keys?tag=even&sort=expires&dir=asc"
    );
    assert!(
        html.contains("name=\"sort\" value=\"name\""),
        "the filter form keeps the sort"
    );
    // A made-up column or direction is the default order, not an error.
    let html = get("/api-keys?sort=secret&dir=sideways".into()).await;
    assert_eq!(row_ids(&html, "keys-table").len(), 20);
    assert!(!html.contains("aria-sort"));
    let html = get("/api-keys?sort=name&dir=sideways".into()).await;
    assert_eq!(row_ids(&html, "keys-table"), by_name[..20].to_vec());

    // Users by email, Z to A; by last sign-in.
    let bea = make_user(&app, "bea@example.com", &["read-only"]).await;
    let zoe = make_user(&app, "zoe@example.com", &["read-only"]).await;
    let html = get("/users?sort=email&dir=desc".into()).await;
    let admin = super::admin_id(&app).await;
    assert_eq!(row_ids(&html, "users-table"), vec![zoe, bea, admin.clone()]);
    assert!(header_of(&html, "email").contains("aria-sort=\"descending\""));
    let html = get("/users?sort=last_login&dir=desc".into()).await;
    assert_eq!(
        row_ids(&html, "users-table")[0],
        admin,
        "only the admin signed in"
    );

    // Service accounts by name, with the status filter kept.
    let mut made = Vec::new();
    for n in ["crm", "Audit", "billing"] {
        made.push(make_account(&app, n).await);
        app.clock.advance(chrono::Duration::seconds(1));
    }
    let (c, a, b) = (made[0].clone(), made[1].clone(), made[2].clone());
    let html = get("/settings/api-access?status=all&sort=name&dir=asc".into()).await;
    assert_eq!(
        row_ids(&html, "accounts-table"),
        vec![a.clone(), b.clone(), c.clone()]
    );
    assert_eq!(
        sort_link(&html, "created"),
        "/settings/api-access?status=all&sort=created&dir=desc"
    );
    let html = get("/settings/api-access?sort=created&dir=asc".into()).await;
    assert_eq!(row_ids(&html, "accounts-table"), vec![c, a, b]);
}
both_backends!(lists_sort_by_their_headers);

async fn verify_from(
    app: &TestApp,
    secret: &str,
    forwarded: &str,
    body: serde_json::Value,
) -> String {
    let mut body = body;
    body["key"] = json!(secret);
    let v: serde_json::Value = app
        .http
        .post(app.url("/v1/keys/verify"))
        .header("x-forwarded-for", forwarded)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["code"].as_str().unwrap_or_default().to_string()
}

/// A console page: its status and HTML.
async fn page(app: &TestApp, client: &reqwest::Client, path: &str) -> (u16, String) {
    let res = client.get(app.url(path)).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The `data-code`s of the recent verifications card, in order.
fn recent_codes(html: &str) -> Vec<String> {
    let at = html
        .find("id=\"recent-verifications\"")
        .expect("recent card");
    html[at..]
        .split("<tr data-code=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap_or_default().to_string())
        .collect()
}

async fn recent_verifications_on_the_key_page(app: TestApp) {
    let (id, secret) = admin_key(
        &app,
        CreateApiKey {
            name: "orders-api".into(),
            scopes: Some(vec!["orders.read".into()]),
            ..Default::default()
        },
    )
    .await;
    let (client, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, html) = page(&app, &client, &format!("/api-keys/{id}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"recent-empty\""), "no verifications yet");

    // The loopback peer is a trusted proxy here: its X-Forwarded-For is the client.
    assert_eq!(
        verify_from(
            &app,
            &secret,
            "198.51.100.23",
            json!({"tags": ["path:/orders", "region:eu"]})
        )
        .await,
        "VALID"
    );
    app.clock.advance(chrono::Duration::seconds(2));
    // The `ip` of the body wins over the connection's.
    assert_eq!(
        verify_from(
            &app,
            &secret,
            "198.51.100.23",
            json!({"ip": "2001:db8::7", "permissions": ["orders.write"]})
        )
        .await,
        "FORBIDDEN"
    );
    app.clock.advance(chrono::Duration::seconds(2));
    let res = app
        .http
        .get(app.url("/v1/auth"))
        .header("x-api-key", &secret)
        .header("x-forwarded-for", "203.0.113.5")
        .header("x-keyhaven-tags", "via:nginx")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Nothing reached the database on the way: only the flush writes.
    let org = Id::from_trusted(app.org_id.clone());
    let key = Id::from_trusted(id.clone());
    {
        let mut tx = app.db.store.read().await.unwrap();
        assert!(tx
            .recent_verifications(&org, &key, 20)
            .await
            .unwrap()
            .is_empty());
    }
    app.state.service.verifier().flush_usage().await.unwrap();

    let (status, html) = page(&app, &client, &format!("/api-keys/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        recent_codes(&html),
        vec!["VALID", "FORBIDDEN", "VALID"],
        "newest first"
    );
    let card = &html[html.find("id=\"recent-verifications\"").unwrap()..];
    let (first, rest) = card.split_at(card.find("FORBIDDEN").unwrap());
    assert!(
        first.contains("203.0.113.5") && first.contains("via:nginx"),
        "{first}"
    );
    let (second, third) = rest.split_at(rest.find("198.51.100.23").unwrap());
    assert!(
        second.contains("2001:db8::7") && second.contains("Forbidden"),
        "{second}"
    );
    assert!(third.contains("path:/orders") && third.contains("region:eu"));
    assert!(card.contains("2026-11-22 12:00 UTC"));

    // Another organization: its admin cannot reach the key, nor its verifications.
    let (other_org, other_key) = app.other_org_key("Globex", &["super-admin"]).await;
    let other = Caller::system(Id::from_trusted(other_org.clone()), "test");
    match app.state.service.recent_verifications(&other, &key).await {
        Err(ServiceError::NotFound(_)) => {}
        other => panic!("another organization's key: {other:?}"),
    }
    let (other_client, _) =
        console_client(&app, "owner@globex.example", "correct horse battery staple").await;
    let (status, html) = page(&app, &other_client, &format!("/api-keys/{id}")).await;
    assert_eq!(status, 404);
    assert!(!html.contains("203.0.113.5"));
    // The REST API: the same rows, a limit, and tenancy.
    let admin = app.admin_key(&["read-only"]).await;
    let api = |key: String, org: String, query: &'static str| {
        let url = app.url(&format!(
            "/v1/organizations/{org}/api-keys/{id}/verifications{query}"
        ));
        async move {
            let res = reqwest::Client::new()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, v) = api(admin.clone(), app.org_id.clone(), "").await;
    assert_eq!(status, 200, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["code"], "VALID");
    assert_eq!(data[0]["ip"], "203.0.113.5");
    assert_eq!(data[0]["tags"], json!(["via:nginx"]));
    assert_eq!(data[1]["ip"], "2001:db8::7");
    assert_eq!(data[2]["at"], "2026-11-22T12:00:00Z");
    assert_eq!(data[2]["tags"], json!(["path:/orders", "region:eu"]));
    let (status, v) = api(admin.clone(), app.org_id.clone(), "?limit=1").await;
    assert_eq!((status, v["data"].as_array().unwrap().len()), (200, 1));
    for bad in ["?limit=0", "?limit=21", "?limit=x", "?cursor=abc"] {
        let (status, v) = api(admin.clone(), app.org_id.clone(), bad).await;
        assert_eq!(status, 400, "{bad}: {v}");
    }
    let (status, v) = api(other_key.clone(), other_org.clone(), "").await;
    assert_eq!(status, 404, "another organization's key: {v}");
    assert_eq!(v["error"]["type"], "not_found");
    let nobody = app.admin_key(&[]).await;
    let (status, _) = api(nobody, app.org_id.clone(), "").await;
    assert_eq!(status, 403);
    // Documented like the others.
    let doc: serde_json::Value = app
        .http
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op = &doc["paths"]["/v1/organizations/{org}/api-keys/{id}/verifications"]["get"];
    assert!(op["responses"]["200"].is_object(), "{op}");
    let schema = &doc["components"]["schemas"]["RecentVerificationView"]["properties"];
    for field in ["at", "code", "ip", "tags"] {
        assert!(schema[field].is_object(), "{field}: {schema}");
    }

    // A reader of keys sees them too; the same service call the page makes.
    let rows = app
        .state
        .service
        .recent_verifications(&system(&app), &key)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].ip.as_deref(), Some("198.51.100.23"));

    // They follow the analytics retention.
    let service = &app.state.service;
    let five_days = std::time::Duration::from_secs(5 * 86_400);
    service.prune_analytics(five_days).await.unwrap();
    let kept = service
        .recent_verifications(&system(&app), &key)
        .await
        .unwrap();
    assert_eq!(kept.len(), 3);
    app.clock.advance(chrono::Duration::days(6));
    service.prune_analytics(five_days).await.unwrap();
    let kept = service
        .recent_verifications(&system(&app), &key)
        .await
        .unwrap();
    assert!(kept.is_empty(), "{kept:?}");
}

/// The test client connects from loopback, here a trusted proxy.
fn trust_loopback(s: &mut keyhaven_service::config::Settings) {
    s.serve.trusted_proxies = Some("127.0.0.1/32".into());
}
both_backends!(recent_verifications_on_the_key_page, super::trust_loopback);

async fn key_forms_suggest_the_scopes_in_use(app: TestApp) {
    let id = key_named(&app, "orders", &[], &["orders.read", "orders.write"]).await;
    make_role(&app, "reporting", &["reports:export", "users.view"]).await;
    let (client, csrf) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let html = client
        .get(app.url("/api-keys/new"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = html.find("id=\"scope-suggestions\"").expect("suggestions");
    let box_ = &html[at..at + html[at..].find("</fieldset>").unwrap()];
    for s in ["orders.read", "orders.write", "reports:export"] {
        assert!(
            box_.contains(&format!("type=\"checkbox\" name=\"scopes\" value=\"{s}\"")),
            "{s}: {box_}"
        );
    }
    assert!(
        !box_.contains("users.view"),
        "management permissions are not scopes"
    );
    assert!(!html.contains("<script>"), "no inline script");

    // A ticked suggestion and a typed scope make one list (no JavaScript involved).
    let res = client
        .post(app.url("/api-keys/new"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "reports"),
            ("scopes", "billing:write, orders.read"),
            ("scopes", "orders.read"),
            ("scopes", "reports:export"),
            ("expiration", "never"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let mut tx = app.db.store.read().await.unwrap();
    let org = Id::from_trusted(app.org_id.clone());
    let keys = tx
        .list_api_keys(
            &org,
            &keyhaven_store::ApiKeyFilter {
                status: None,
                role: None,
                tag: None,
                owner_id: None,
                q: Some("reports".into()),
                external_id: None,
                now: chrono::Utc::now(),
            },
            &keyhaven_store::Page {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .unwrap();
    drop(tx);
    assert_eq!(keys.items.len(), 1);
    assert_eq!(
        keys.items[0].scopes,
        vec!["billing:write", "orders.read", "reports:export"]
    );

    // The edit form offers what the key does not hold yet.
    let html = client
        .get(app.url(&format!("/api-keys/{id}/edit")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = html.find("id=\"scope-suggestions\"").expect("suggestions");
    let box_ = &html[at..at + html[at..].find("</fieldset>").unwrap()];
    assert!(box_.contains("value=\"reports:export\"") && box_.contains("value=\"billing:write\""));
    assert!(!box_.contains("value=\"orders.read\""), "{box_}");

    // Someone who can only read keys gets no form, so no suggestions to leak.
    make_user(&app, "reader@example.com", &["read-only"]).await;
    let (reader, _) = console_client(&app, "reader@example.com", "user password 1234").await;
    let res = reader.get(app.url("/api-keys/new")).send().await.unwrap();
    assert_eq!(res.status(), 403);
}
both_backends!(key_forms_suggest_the_scopes_in_use);

async fn shot(b: &super::Browser, name: &str, size: (u32, u32), css: &str) {
    b.client.set_window_size(size.0, size.1).await.unwrap();
    b.wait_css(css).await;
    let widths = b
        .client
        .execute(
            &format!(
                "document.querySelector({css:?}).scrollIntoView({{block: 'start'}}); window.scrollBy(0, -16); \
                 return [document.documentElement.scrollWidth, window.innerWidth];"
            ),
            vec![],
        )
        .await
        .unwrap();
    let (scroll, inner) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
    assert!(
        scroll <= inner,
        "{name}: the page is {scroll} px wide in a {inner} px window"
    );
    let png = b.client.screenshot().await.unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn sort_recent_and_suggestions_in_the_browser(app: TestApp) {
    let Some(b) = browser(&app, "console-rest").await else {
        return;
    };
    let backend = format!("{:?}", app.db.store.backend()).to_lowercase();
    for (n, tags) in [
        ("zulu-export", &["batch"][..]),
        ("alpha-orders", &[][..]),
        ("mike-billing", &["batch"][..]),
    ] {
        key_named(&app, n, tags, &["orders.read"]).await;
    }
    let (id, secret) = admin_key(
        &app,
        CreateApiKey {
            name: "checkout".into(),
            scopes: Some(vec!["checkout:write".into()]),
            ..Default::default()
        },
    )
    .await;
    for (i, (ip, tags, perms)) in [
        (
            "198.51.100.23",
            json!(["path:/orders", "region:eu"]),
            json!([]),
        ),
        ("198.51.100.23", json!([]), json!(["admin:all"])),
        (
            "203.0.113.5",
            json!(["path:/cart"]),
            json!(["checkout:write"]),
        ),
        ("2001:db8::7", json!([]), json!([])),
    ]
    .into_iter()
    .enumerate()
    {
        app.clock
            .advance(chrono::Duration::seconds(37 * (i as i64 + 1)));
        verify_from(
            &app,
            &secret,
            ip,
            json!({"tags": tags, "permissions": perms}),
        )
        .await;
    }
    app.state.service.verifier().flush_usage().await.unwrap();

    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .unwrap();
    b.go("/api-keys").await;
    // The Name header is a link: reached and followed with the keyboard.
    let link = b.wait_css("th a.sort-link[data-sort='name']").await;
    link.send_keys(&Key::Enter.to_string()).await.unwrap();
    b.wait_css("th[aria-sort='ascending'] a[data-sort='name']")
        .await;
    assert!(
        b.path().await.ends_with("sort=name&dir=asc"),
        "{}",
        b.path().await
    );
    let first = b
        .wait_css("#keys-table tbody tr:first-child a.strong")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(first, "alpha-orders");
    b.wait_css("th a.sort-link[data-sort='name']")
        .await
        .click()
        .await
        .unwrap();
    b.wait_css("th[aria-sort='descending'] a[data-sort='name']")
        .await;
    let first = b
        .wait_css("#keys-table tbody tr:first-child a.strong")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(first, "zulu-export");
    // A filter applied keeps the sort (the filter form carries it).
    b.go("/api-keys?sort=name&dir=desc&tag=batch").await;
    let names: Vec<String> = {
        let mut v = Vec::new();
        for el in b
            .client
            .find_all(Locator::Css("#keys-table tbody tr a.strong"))
            .await
            .unwrap()
        {
            v.push(el.text().await.unwrap());
        }
        v
    };
    assert_eq!(names, vec!["zulu-export", "mike-billing"]);
    shot(
        &b,
        &format!("sorted-keys-desktop-{backend}"),
        DESKTOP,
        "#keys-table",
    )
    .await;
    shot(
        &b,
        &format!("sorted-keys-phone-{backend}"),
        PHONE,
        "#keys-table",
    )
    .await;

    // The users and service accounts lists sort the same way.
    make_account(&app, "billing-sync").await;
    make_account(&app, "Audit-export").await;
    make_user(&app, "zoe@example.com", &["read-only"]).await;
    b.client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .unwrap();
    b.go("/users").await;
    b.wait_css("th a.sort-link[data-sort='email']")
        .await
        .click()
        .await
        .unwrap();
    b.wait_css("th[aria-sort='ascending'] a[data-sort='email']")
        .await;
    let first = b
        .wait_css("#users-table tbody tr:first-child td")
        .await
        .text()
        .await
        .unwrap();
    assert!(first.starts_with("admin@example.com"), "{first}");
    shot(
        &b,
        &format!("sorted-users-desktop-{backend}"),
        DESKTOP,
        "#users-table",
    )
    .await;
    b.go("/settings/api-access").await;
    b.wait_css("th a.sort-link[data-sort='name']")
        .await
        .click()
        .await
        .unwrap();
    b.wait_css("th[aria-sort='ascending'] a[data-sort='name']")
        .await;
    let first = b
        .wait_css("#accounts-table tbody tr:first-child a.strong")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(first, "Audit-export");
    shot(
        &b,
        &format!("sorted-accounts-desktop-{backend}"),
        DESKTOP,
        "#accounts-table",
    )
    .await;

    // The key page's recent verifications.
    b.client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .unwrap();
    b.go(&format!("/api-keys/{id}")).await;
    let rows = b
        .client
        .find_all(Locator::Css("#recent-verifications tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    let text = b
        .wait_css("#recent-verifications")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("Forbidden") && text.contains("203.0.113.5") && text.contains("region:eu"),
        "{text}"
    );
    shot(
        &b,
        &format!("recent-verifications-desktop-{backend}"),
        DESKTOP,
        "#recent-verifications",
    )
    .await;
    shot(
        &b,
        &format!("recent-verifications-phone-{backend}"),
        PHONE,
        "#recent-verifications",
    )
    .await;

    // A suggested scope ticked in the create form ends up on the key.
    b.client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .unwrap();
    b.go("/api-keys/new").await;
    b.fill("name", "suggested").await;
    b.fill("scopes", "reports:export").await;
    b.wait_css("#scope-suggestions input[value='checkout:write']")
        .await
        .click()
        .await
        .unwrap();
    shot(
        &b,
        &format!("scope-suggestions-desktop-{backend}"),
        DESKTOP,
        "#f-scopes",
    )
    .await;
    shot(
        &b,
        &format!("scope-suggestions-phone-{backend}"),
        PHONE,
        "#f-scopes",
    )
    .await;
    b.client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .unwrap();
    b.wait_css("input[name=expiration][value='never']")
        .await
        .click()
        .await
        .unwrap();
    b.button("Create API key").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='API key created']")
        .await;
    b.screenshot().await;
    let mut tx = app.db.store.read().await.unwrap();
    let org = Id::from_trusted(app.org_id.clone());
    let l = tx
        .list_api_keys(
            &org,
            &keyhaven_store::ApiKeyFilter {
                status: None,
                role: None,
                tag: None,
                owner_id: None,
                q: Some("suggested".into()),
                external_id: None,
                now: chrono::Utc::now(),
            },
            &keyhaven_store::Page {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(l.items[0].scopes, vec!["reports:export", "checkout:write"]);
}
both_backends!(
    sort_recent_and_suggestions_in_the_browser,
    super::trust_loopback
);
