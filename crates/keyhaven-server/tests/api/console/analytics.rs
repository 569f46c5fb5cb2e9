//! The Analytics page (ANALYTICS.md, "Console") in the browser, on SQLite and
//! PostgreSQL: the navigation entry, calls over time by code with its table, top keys,
//! top failing keys, the tag breakdown, the range links — and the page without
//! JavaScript over plain HTTP; screenshots at desktop and phone width.

use std::path::PathBuf;

use super::{admin_id, browser, console_client, make_key_secret, Browser};
use crate::support::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use chrono::Duration;
use keyhaven_core::principal::PrincipalKind;
use keyhaven_service::api_keys::{CreateApiKey, OwnerRef};
use serde_json::{json, Value};

const DESKTOP: (u32, u32) = (1400, 900);
const PHONE: (u32, u32) = (390, 844);

impl Browser {
    /// Sets the window to `size`, scrolls `css` to the top, checks that nothing is wider
    /// than the window, and saves `target/shots/{name}.png` (not committed).
    async fn analytics_shot(&self, name: &str, size: (u32, u32), css: &str) {
        self.client.set_window_size(size.0, size.1).await.unwrap();
        self.wait_css(css).await;
        let widths = self
            .client
            .execute(
                &format!(
                    "document.querySelector({css:?}).scrollIntoView({{block: 'start'}}); \
                     window.scrollBy(0, -16); \
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
        let png = self.client.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/shots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn analytics_text(&self, css: &str) -> String {
        self.wait_css(css).await.text().await.unwrap()
    }
}

async fn verify(app: &TestApp, body: Value) -> String {
    let v: Value = app
        .http
        .post(app.url("/v1/keys/verify"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["code"].as_str().unwrap().to_string()
}

/// Two keys: "checkout" (busy, tagged) and "reports" (mostly refused), used over
/// three hours and, for "reports", three days ago.
async fn seed(app: &TestApp) -> (String, String) {
    let owner = admin_id(app).await;
    let key = |name: &str, scopes: &[&str]| CreateApiKey {
        name: name.into(),
        scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
        owner: Some(OwnerRef {
            kind: PrincipalKind::User,
            id: owner.clone(),
        }),
        ..Default::default()
    };
    let (checkout, s1) = make_key_secret(app, key("checkout", &["read"])).await;
    let (reports, s2) = make_key_secret(app, key("reports", &[])).await;
    for _ in 0..3 {
        assert_eq!(verify(app, json!({"key": s2})).await, "VALID");
    }
    app.state.service.verifier().flush_usage().await.unwrap();
    app.clock.advance(Duration::days(3));
    for h in 0..3 {
        for i in 0..(4 + 2 * h) {
            let tag = if i % 2 == 0 {
                "path:/orders"
            } else {
                "path:/cart"
            };
            assert_eq!(
                verify(app, json!({"key": s1, "tags": [tag, "region:eu"]})).await,
                "VALID"
            );
        }
        assert_eq!(
            verify(app, json!({"key": s2, "permissions": ["admin"]})).await,
            "FORBIDDEN"
        );
        assert_eq!(
            verify(app, json!({"key": s2, "permissions": ["admin"]})).await,
            "FORBIDDEN"
        );
        assert_eq!(
            verify(
                app,
                json!({"key": "kh_nonsense", "organization_id": app.org_id})
            )
            .await,
            "MALFORMED"
        );
        app.state.service.verifier().flush_usage().await.unwrap();
        app.clock.advance(Duration::hours(1));
    }
    (checkout, reports)
}

async fn analytics_page(app: TestApp) {
    // Nothing counted yet: every section says so.
    let (http, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let empty = http
        .get(app.url("/analytics?range=30d"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(empty.contains("No verifications in the last 30 days"));
    for id in ["calls-empty", "top-empty", "failing-empty", "tags-empty"] {
        assert!(empty.contains(&format!("id=\"{id}\"")), "{id}");
    }
    let (checkout, reports) = seed(&app).await;
    // Without JavaScript: the page is plain HTML with its SVG and tables.
    let (http, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let html = http
        .get(app.url("/analytics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("id=\"calls-chart\" viewBox"),
        "the chart is in the HTML"
    );
    assert!(html.contains("id=\"calls-table\""));
    assert!(
        html.contains("href=\"/analytics\" aria-current=\"page\""),
        "nav entry is current"
    );
    assert!(html.contains("href=\"/analytics?range=90d\""));
    // 18 checkout + 6 reports refused + 3 malformed, in the last 24 hours.
    assert!(
        html.contains("id=\"metric-total\">27<"),
        "27 in the last 24 hours"
    );
    let seven = http
        .get(app.url("/analytics?range=7d"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        seven.contains("id=\"metric-total\">30<"),
        "7 days include the first uses"
    );

    let Some(b) = browser(&app, "analytics").await else {
        return;
    };
    let backend = format!("{:?}", app.db.store.backend()).to_lowercase();
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go("/api-keys").await;
    b.wait_xpath("//nav[@aria-label='Main']//a[normalize-space()='Analytics']")
        .await
        .click()
        .await
        .unwrap();
    b.wait_xpath("//h1[normalize-space()='Analytics']").await;
    assert_eq!(b.analytics_text("#metric-total").await, "27");
    assert_eq!(b.analytics_text("#metric-valid").await, "18");
    assert_eq!(b.analytics_text("#metric-refused").await, "9");
    // The calls chart has its axes and one group per hour; the table lists the hours.
    assert_eq!(b.count("#calls-chart g.bucket").await, 24);
    assert!(b.count("#calls-chart line.axis").await >= 2);
    assert_eq!(b.count("#calls-table tbody tr").await, 24);
    // (Column heads are shown in capitals.)
    let head = b.analytics_text("#calls-table thead").await.to_lowercase();
    for col in ["total", "valid", "forbidden", "malformed"] {
        assert!(head.contains(col), "{head}");
    }
    // Top keys: checkout first; top failing: reports, with its refusals.
    let top = b.analytics_text("#top-table tbody tr:first-child").await;
    assert!(top.contains("checkout") && top.contains("18"), "{top}");
    let failing = b.analytics_text("#failing-table tbody").await;
    assert!(
        failing.contains("reports") && failing.contains("Forbidden 6"),
        "{failing}"
    );
    assert!(!failing.contains("checkout"), "{failing}");
    b.wait_css(&format!("#top-table a[href='/api-keys/{checkout}']"))
        .await;
    b.wait_css(&format!("#failing-table a[href='/api-keys/{reports}']"))
        .await;
    // Tags.
    let tags = b.analytics_text("#tags-table tbody").await;
    assert!(
        tags.contains("region:eu") && tags.contains("path:/orders"),
        "{tags}"
    );
    let first = b.analytics_text("#tags-table tbody tr:first-child").await;
    assert!(
        first.contains("region:eu") && first.contains("18"),
        "{first}"
    );
    b.analytics_shot(&format!("analytics-desktop-{backend}"), DESKTOP, "main h1")
        .await;
    b.analytics_shot(
        &format!("analytics-keys-desktop-{backend}"),
        DESKTOP,
        "#top-heading",
    )
    .await;
    b.analytics_shot(&format!("analytics-phone-{backend}"), PHONE, "main h1")
        .await;
    b.analytics_shot(
        &format!("analytics-phone-table-{backend}"),
        PHONE,
        "#calls-table",
    )
    .await;
    b.analytics_shot(
        &format!("analytics-phone-tags-{backend}"),
        PHONE,
        "#tags-heading",
    )
    .await;
    // The range links: 7 days, daily.
    b.client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .unwrap();
    b.wait_xpath("//nav[@aria-label='Time range']//a[normalize-space()='7 days']")
        .await
        .click()
        .await
        .unwrap();
    b.wait_css("nav[aria-label='Time range'] a[aria-current='page'][href='/analytics?range=7d']")
        .await;
    assert_eq!(b.analytics_text("#metric-total").await, "30");
    assert_eq!(b.count("#calls-chart g.bucket").await, 7);
    assert_eq!(b.count("#calls-table tbody tr").await, 7);
    b.analytics_shot(
        &format!("analytics-7d-desktop-{backend}"),
        DESKTOP,
        "main h1",
    )
    .await;
    b.screenshot().await;
}
both_backends!(analytics_page);
