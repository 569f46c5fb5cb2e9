//! Audit streaming in the console (ANALYTICS.md, "Audit streaming"): the API Activity
//! tab lists the sinks with kind, target, lag and last error; a sink is added (a bad
//! path answered next to the field) and removed in the browser; without audit.manage the
//! section is not shown. On SQLite and PostgreSQL.

use super::{browser, console_client, make_user};
use crate::support::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use fantoccini::Locator;
use keyhaven_service::jobs::audit_sinks::{deliver_due, SinkRunner};
use keyhaven_service::jobs::webhooks;

const ACTIVITY: &str = "/settings/api-access?tab=activity";

async fn audit_sinks_on_the_activity_tab(app: TestApp) {
    // Without audit.manage (admin): no section, and the add page is refused.
    make_user(&app, "ops@example.com", &["admin"]).await;
    let (http, _) = console_client(&app, "ops@example.com", "user password 1234").await;
    let html = http
        .get(app.url(ACTIVITY))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("activity-table") || html.contains("No activity"));
    assert!(!html.contains("Audit streaming"), "{html}");
    let res = http
        .get(app.url("/settings/audit-sinks/new"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    let Some(b) = browser(&app, "audit-sinks").await else {
        return;
    };
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go(ACTIVITY).await;
    b.wait_xpath("//h2[normalize-space()='Audit streaming']")
        .await;
    b.button("Add sink").await.click().await.unwrap();
    b.wait_css("select[name='kind']")
        .await
        .select_by_value("file")
        .await
        .unwrap();
    b.fill("path", "../escape.jsonl").await;
    b.button("Add sink").await.click().await.unwrap();
    let err = b.wait_css("#e-path").await.text().await.unwrap();
    assert!(err.contains(".."), "{err}");
    b.wait_css("select[name='kind']")
        .await
        .select_by_value("file")
        .await
        .unwrap();
    b.fill("path", "siem/audit.jsonl").await;
    b.button("Add sink").await.click().await.unwrap();
    let row = b.wait_css("#audit-sinks-table tr[data-id]").await;
    let text = row.text().await.unwrap();
    for want in ["file", "siem/audit.jsonl", "Active", "entries", "never"] {
        assert!(text.contains(want), "{want} in {text}");
    }

    // Delivered: the lag drops and the time shows.
    let runner = SinkRunner::new(webhooks::client(), app.state.config.data_dir.join("audit"));
    assert!(deliver_due(&app.state.service, &runner).await.unwrap() > 0);
    b.go(ACTIVITY).await;
    let text = b
        .wait_css("#audit-sinks-table tr[data-id]")
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("never"), "{text}");
    assert!(text.contains("0 entries"), "{text}");
    b.client
        .execute(
            "document.getElementById('audit-sinks').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    // docs/screenshots/audit-sinks.png is copied from this one by hand when the page
    // changes (tests don't write tracked files).
    b.shot_named(&format!(
        "audit-sinks-{}",
        format!("{:?}", app.db.store.backend()).to_lowercase()
    ))
    .await;

    b.wait_css("#audit-sinks-table button")
        .await
        .click()
        .await
        .unwrap();
    let msg = b.confirm().await;
    assert!(msg.contains("siem/audit.jsonl"), "{msg}");
    b.wait_xpath("//*[contains(normalize-space(), 'No sinks')]")
        .await;
    assert!(b
        .client
        .find_all(Locator::Css("#audit-sinks-table"))
        .await
        .unwrap()
        .is_empty());
}
both_backends!(audit_sinks_on_the_activity_tab);
