//! Issue 14, "Broken or unsafe": keys held by their owner read "Disabled", Suspend asks
//! first, confirm dialogs open on Cancel, the regenerate form's defaults and the
//! webhook URL hint — over plain HTTP and in the browser, on SQLite and PostgreSQL.

use super::{
    browser, console_client, csrf_of, make_account, make_key_secret, make_user, system, verify,
};
use crate::support::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use chrono::Duration;
use keyhaven_core::id::Id;
use keyhaven_core::principal::PrincipalKind;
use keyhaven_core::service_account::Transition;
use keyhaven_core::user::UserStatus;
use keyhaven_service::api_keys::{CreateApiKey, OwnerRef};
use keyhaven_service::credentials::CreateCredential;
use keyhaven_service::users::UpdateUser;

async fn page(client: &reqwest::Client, app: &TestApp, path: &str) -> String {
    let res = client.get(app.url(path)).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.text().await.unwrap()
}

/// The markup of the table row `<tr data-id="{id}" …>…</tr>` in `html`.
fn row<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("<tr data-id=\"{id}\""))
        .unwrap_or_else(|| panic!("no row {id}"));
    let end = html[at..].find("</tr>").unwrap() + at;
    &html[at..end]
}

/// The markup of the key details' "Status" entry.
fn details_status(html: &str) -> &str {
    let at = html.find("<dt>Status</dt>").expect("a Status entry");
    let end = html[at..].find("</dd>").unwrap() + at;
    &html[at..end]
}

fn key_for(name: &str, kind: PrincipalKind, owner: &str) -> CreateApiKey {
    CreateApiKey {
        name: name.into(),
        roles: Some(vec!["read-only".into()]),
        owner: Some(OwnerRef {
            kind,
            id: owner.into(),
        }),
        ..Default::default()
    }
}

async fn held_keys_read_disabled(app: TestApp) {
    let sa = make_account(&app, "nightly-export").await;
    let (sa_key, sa_secret) = make_key_secret(
        &app,
        key_for("nightly-export-key", PrincipalKind::ServiceAccount, &sa),
    )
    .await;
    let user = make_user(&app, "leaver@example.com", &["admin"]).await;
    let (user_key, user_secret) =
        make_key_secret(&app, key_for("leaver-laptop", PrincipalKind::User, &user)).await;
    let other = make_account(&app, "still-running").await;
    let (ok_key, _) = make_key_secret(
        &app,
        key_for("still-running-key", PrincipalKind::ServiceAccount, &other),
    )
    .await;
    app.state
        .service
        .create_credential(
            &system(&app),
            &Id::from_trusted(sa.clone()),
            CreateCredential {
                name: "export-runner".into(),
                description: None,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    app.state
        .service
        .transition_service_account(
            &system(&app),
            &Id::from_trusted(sa.clone()),
            Transition::Suspend,
        )
        .await
        .unwrap();
    app.state
        .service
        .update_user(
            &system(&app),
            &Id::from_trusted(user.clone()),
            UpdateUser {
                status: Some(UserStatus::Inactive),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(verify(&app, &sa_secret).await["code"], "DISABLED");
    assert_eq!(verify(&app, &user_secret).await["code"], "DISABLED");

    let (client, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    // The key list: both held keys read Disabled with their reason; the other stays Active.
    let html = page(&client, &app, "/api-keys").await;
    let r = row(&html, &sa_key);
    assert!(
        r.contains("badge-disabled") && r.contains(">Disabled<"),
        "{r}"
    );
    assert!(
        r.contains("suspended") && !r.contains("badge-active"),
        "{r}"
    );
    let r = row(&html, &user_key);
    assert!(
        r.contains("badge-disabled") && r.contains("inactive"),
        "{r}"
    );
    assert!(!r.contains("badge-active"), "{r}");
    assert!(row(&html, &ok_key).contains("badge-active"));

    // The key details.
    let html = page(&client, &app, &format!("/api-keys/{sa_key}")).await;
    let s = details_status(&html);
    assert!(
        s.contains("badge-disabled") && s.contains("reactivated"),
        "{s}"
    );
    let html = page(&client, &app, &format!("/api-keys/{user_key}")).await;
    let s = details_status(&html);
    assert!(
        s.contains("badge-disabled") && s.contains("inactive"),
        "{s}"
    );
    let html = page(&client, &app, &format!("/api-keys/{ok_key}")).await;
    assert!(details_status(&html).contains("badge-active"));

    // The service account page: its keys and its credential.
    let html = page(&client, &app, &format!("/settings/api-access/{sa}")).await;
    assert!(row(&html, &sa_key).contains("badge-disabled"));
    let at = html.find("id=\"credentials-table\"").unwrap();
    let creds = &html[at..];
    assert!(creds.contains("badge-disabled") && !creds.contains("badge-active"));

    // Reactivated: Active again everywhere.
    app.state
        .service
        .transition_service_account(
            &system(&app),
            &Id::from_trusted(sa.clone()),
            Transition::Reactivate,
        )
        .await
        .unwrap();
    let html = page(&client, &app, "/api-keys").await;
    assert!(row(&html, &sa_key).contains("badge-active"));
    let html = page(&client, &app, &format!("/settings/api-access/{sa}")).await;
    assert!(!html.contains("badge-disabled"));
}
both_backends!(held_keys_read_disabled);

async fn suspend_asks_first_and_works_without_script(app: TestApp) {
    let sa = make_account(&app, "card-settlement").await;
    let (client, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let html = page(&client, &app, &format!("/settings/api-access/{sa}")).await;
    let at = html.find("value=\"suspend\"").expect("a Suspend form");
    let form = &html[html[..at].rfind("<form").unwrap()..at];
    assert!(form.contains("data-confirm-label=\"Suspend\""), "{form}");
    assert!(
        form.contains("card-settlement") && form.contains("until you reactivate"),
        "{form}"
    );
    // Without script the form still posts straight through.
    let csrf = csrf_of(&html);
    let res = client
        .post(app.url(&format!("/settings/api-access/{sa}/transition")))
        .form(&[("csrf_token", csrf.as_str()), ("action", "suspend")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Service account suspended"), "{html}");
}
both_backends!(suspend_asks_first_and_works_without_script);

async fn confirm_dialog_focuses_cancel(app: TestApp) {
    let Some(b) = browser(&app, "confirm-focus").await else {
        return;
    };
    let owner = super::admin_id(&app).await;
    let (id, secret) =
        make_key_secret(&app, key_for("search-indexer", PrincipalKind::User, &owner)).await;
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go(&format!("/api-keys/{id}")).await;
    for action in ["Revoke", "Delete"] {
        b.button(action).await.click().await.unwrap();
        b.wait_css("#confirm-dialog[open]").await;
        let focused = b
            .client
            .execute(
                "var a = document.activeElement; return a ? a.textContent.trim() + '|' + a.matches('#confirm-dialog [data-close]') : '';",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(focused, "Cancel|true", "{action}");
        // Enter on the focused button cancels: nothing happens to the key.
        b.client
            .active_element()
            .await
            .unwrap()
            .send_keys("\u{E007}")
            .await
            .unwrap();
        b.client
            .wait()
            .at_most(super::WAIT)
            .for_element(fantoccini::Locator::Css("#confirm-dialog:not([open])"))
            .await
            .unwrap();
        assert_eq!(verify(&app, &secret).await["valid"], true, "{action}");
    }
    // The suspend button of a service account asks through the same dialog.
    let sa = make_account(&app, "edge-cache").await;
    b.go(&format!("/settings/api-access/{sa}")).await;
    b.button("Suspend").await.click().await.unwrap();
    let msg = b
        .wait_css("#confirm-dialog[open] #confirm-message")
        .await
        .text()
        .await
        .unwrap();
    assert!(msg.contains("edge-cache"), "{msg}");
    b.screenshot().await;
}
both_backends!(confirm_dialog_focuses_cancel);

async fn regenerate_form_defaults(app: TestApp) {
    let owner = super::admin_id(&app).await;
    let mut month = key_for("billing-export", PrincipalKind::User, &owner);
    month.expires_in_days = Some(30);
    let (month, _) = make_key_secret(&app, month).await;
    let (never, _) =
        make_key_secret(&app, key_for("forever-job", PrincipalKind::User, &owner)).await;
    let mut odd = key_for("odd-length", PrincipalKind::User, &owner);
    odd.expires_in_days = Some(45);
    let (odd, _) = make_key_secret(&app, odd).await;
    let (client, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;

    let checked =
        |html: &str, v: &str| html.contains(&format!("name=\"expiration\" value=\"{v}\" checked"));
    let html = page(&client, &app, &format!("/api-keys/{month}/regenerate")).await;
    assert!(html.contains("<option value=\"3600\" selected>"), "{html}");
    assert!(!html.contains("<option value=\"0\" selected>"));
    assert!(checked(&html, "30") && !checked(&html, "90"), "{html}");
    let html = page(&client, &app, &format!("/api-keys/{never}/regenerate")).await;
    assert!(checked(&html, "never"), "{html}");
    assert!(html.contains("<option value=\"3600\" selected>"));
    let html = page(&client, &app, &format!("/api-keys/{odd}/regenerate")).await;
    assert!(checked(&html, "custom"), "{html}");
    use keyhaven_core::time::Clock;
    let day = (app.clock.now() + Duration::days(45))
        .format("%Y-%m-%d")
        .to_string();
    assert!(
        html.contains(&format!(
            "type=\"date\" name=\"expires_at\" value=\"{day}\""
        )),
        "{html}"
    );

    // Regenerated ten days on with a 60-day preset, it offers 60 days next time.
    app.clock.advance(Duration::days(10));
    let (client, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let html = page(&client, &app, &format!("/api-keys/{month}/regenerate")).await;
    let csrf = csrf_of(&html);
    let res = client
        .post(app.url(&format!("/api-keys/{month}/regenerate")))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("expiration", "60"),
            ("grace_period_seconds", "0"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("API key regenerated"), "{html}");
    let html = page(&client, &app, &format!("/api-keys/{month}/regenerate")).await;
    assert!(checked(&html, "60"), "{html}");
}
both_backends!(regenerate_form_defaults);

async fn webhook_hint_names_both_schemes(app: TestApp) {
    let (client, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let html = page(&client, &app, "/settings/webhooks").await;
    let at = html.find("id=\"h-url\"").expect("a URL hint");
    let hint = &html[at..at + html[at..].find("</div>").unwrap()];
    assert!(
        hint.contains("http://") && hint.contains("https://"),
        "{hint}"
    );
}
both_backends!(webhook_hint_names_both_schemes);

/// Issue 14: the user and role forms report every field's mistake at once.
async fn forms_report_every_error_at_once(app: TestApp) {
    let (client, csrf) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let res = client
        .post(app.url("/users/new"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", "not-an-email"),
            ("display_name", ""),
            ("password", "short"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    for id in ["e-email", "e-display_name", "e-password"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id} in {html}");
    }
    let res = client
        .post(app.url("/roles/new"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "Bad Name!"),
            ("key_name_pattern", "([unclosed"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    for id in ["e-name", "e-key_name_pattern"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id} in {html}");
    }
}
both_backends!(forms_report_every_error_at_once);

/// Issue 14, tables: a key expiring within 7 days stands out, tags link to their
/// filter, and a key without roles shows no stray dash above its scopes.
async fn keys_table_highlights_and_links(app: TestApp) {
    let sa = make_account(&app, "table-owner").await;
    let owner = || {
        Some(OwnerRef {
            kind: PrincipalKind::ServiceAccount,
            id: sa.clone(),
        })
    };
    let soon = app.state.service.now() + Duration::days(3);
    let later = app.state.service.now() + Duration::days(30);
    let (soon_id, _) = make_key_secret(
        &app,
        CreateApiKey {
            name: "expires-soon".into(),
            tags: Some(vec!["billing".into()]),
            scopes: Some(vec!["orders:read".into()]),
            expires_at: Some(soon),
            owner: owner(),
            ..Default::default()
        },
    )
    .await;
    let (later_id, _) = make_key_secret(
        &app,
        CreateApiKey {
            name: "expires-later".into(),
            expires_at: Some(later),
            owner: owner(),
            ..Default::default()
        },
    )
    .await;
    let (client, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let html = page(&client, &app, "/api-keys").await;
    let r = row(&html, &soon_id);
    assert!(r.contains("class=\"expiring\""), "{r}");
    assert!(r.contains("href=\"/api-keys?tag=billing\""), "{r}");
    assert!(
        !r.contains("<span class=\"muted\">—</span><div><span class=\"chip chip-scope"),
        "{r}"
    );
    let r = row(&html, &later_id);
    assert!(!r.contains("class=\"expiring\""), "{r}");
    // How many are listed.
    assert!(html.contains("id=\"result-count\""), "{html}");
    assert!(
        html.contains(">2 keys<") || html.contains("2 keys"),
        "{html}"
    );
    let html = page(&client, &app, "/api-keys?tag=billing").await;
    assert!(html.contains("1 matching key"), "{html}");
}
both_backends!(keys_table_highlights_and_links);

/// Issue 14: the page that shows a new secret is a GET after a redirect, so a reload
/// neither creates another key nor shows the secret again.
async fn secret_pages_survive_a_reload(app: TestApp) {
    let (client, csrf) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let res = client
        .post(app.url("/api-keys/new"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "once"),
            ("expiration", "never"),
            ("credits", "unlimited"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let shown_at = res.url().path().to_string();
    assert!(shown_at.ends_with("/created"), "{shown_at}");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    let pat = "id=\"new-secret\" type=\"password\" readonly data-secret=\"once\" value=\"";
    let at = html.find(pat).expect("the secret is shown") + pat.len();
    let secret = html[at..].split('"').next().unwrap().to_string();
    assert_eq!(verify(&app, &secret).await["code"], "VALID");
    // With its id to copy and a ready-to-paste check that leaves the secret out.
    assert!(html.contains("id=\"new-key-id\""), "{html}");
    let snippet_at = html.find("id=\"verify-snippet\">").expect("a snippet");
    let snippet = &html[snippet_at..html[snippet_at..].find("</pre>").unwrap() + snippet_at];
    assert!(
        snippet.contains("/v1/keys/verify") && snippet.contains("$KEYHAVEN_KEY"),
        "{snippet}"
    );
    assert!(
        snippet.contains(&app.org_id) && !snippet.contains(&secret),
        "{snippet}"
    );
    // A reload: the key's page, with word that the secret was shown once.
    let again = client.get(app.url(&shown_at)).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert!(!again.url().path().ends_with("/created"));
    let html = again.text().await.unwrap();
    assert!(!html.contains(&secret));
    assert!(html.contains("shown once"), "{html}");
    // Still one key of that name.
    let keys = app
        .state
        .service
        .list_api_keys(
            &system(&app),
            &keyhaven_store::ApiKeyFilter {
                status: None,
                role: None,
                tag: None,
                owner_id: None,
                q: Some("once".into()),
                external_id: None,
                now: app.state.service.now(),
            },
            &keyhaven_store::Page {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(keys.items.len(), 1);
    // Another session can't read a secret meant for this one.
    let (other, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let id = shown_at.split('/').nth(2).unwrap();
    let res = other
        .get(app.url(&format!("/api-keys/{id}/regenerated")))
        .send()
        .await
        .unwrap();
    assert!(!res.text().await.unwrap().contains("data-secret=\"once\""));
}
both_backends!(secret_pages_survive_a_reload);

/// Issue 14: the same for a credential's client secret.
async fn credential_secret_survives_a_reload(app: TestApp) {
    let sa = make_account(&app, "reload-account").await;
    let (client, csrf) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let res = client
        .post(app.url(&format!("/settings/api-access/{sa}/credentials")))
        .form(&[("csrf_token", csrf.as_str()), ("name", "runner")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let shown_at = res.url().path().to_string();
    assert!(shown_at.ends_with("/created"), "{shown_at}");
    let html = res.text().await.unwrap();
    assert!(html.contains("Credential created") && html.contains("data-secret=\"once\""));
    let again = client.get(app.url(&shown_at)).send().await.unwrap();
    let html = again.text().await.unwrap();
    assert!(!html.contains("data-secret=\"once\""));
    assert!(html.contains("shown once"), "{html}");
    let creds = app
        .state
        .service
        .list_credentials(&system(&app), &Id::from_trusted(sa.clone()))
        .await
        .unwrap();
    assert_eq!(creds.len(), 1, "a reload creates no second credential");
}
both_backends!(credential_secret_survives_a_reload);

/// Issue 14: bulk actions are a bar that appears once rows are selected, with Revoke
/// beside Delete, each confirmed with the number of keys.
async fn bulk_bar_revokes_the_selected_keys(app: TestApp) {
    let Some(b) = browser(&app, "bulk-revoke").await else {
        return;
    };
    let sa = make_account(&app, "bulk-owner").await;
    let key = |name: &str| CreateApiKey {
        name: name.into(),
        owner: Some(OwnerRef {
            kind: PrincipalKind::ServiceAccount,
            id: sa.clone(),
        }),
        ..Default::default()
    };
    let (a, a_secret) = make_key_secret(&app, key("batch-a")).await;
    let (c2, c_secret) = make_key_secret(&app, key("batch-c")).await;
    let (_, keep_secret) = make_key_secret(&app, key("batch-keep")).await;
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go("/api-keys").await;
    let bar = b.wait_css("#bulk-form").await;
    assert!(
        !bar.is_displayed().await.unwrap(),
        "no bar before a selection"
    );
    for id in [&a, &c2] {
        b.wait_css(&format!("tr[data-id='{id}'] input.row-select"))
            .await
            .click()
            .await
            .unwrap();
    }
    assert!(bar.is_displayed().await.unwrap());
    let count = b
        .wait_css("#bulk-form [data-selected-count]")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(count, "2 selected");
    b.client.set_window_size(390, 844).await.unwrap();
    // No horizontal scroll at phone width (the bar wraps; table cells scroll inside
    // their box, hidden labels included).
    let widths = b
        .client
        .execute(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
            vec![],
        )
        .await
        .unwrap();
    let (scroll, client) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
    assert!(
        scroll <= client,
        "the page scrolls sideways: {scroll} > {client}"
    );
    b.shot_named(&format!(
        "bulk-bar-phone-{}",
        format!("{:?}", app.db.store.backend()).to_lowercase()
    ))
    .await;
    b.client.set_window_size(1366, 900).await.unwrap();
    b.button("Revoke selected").await.click().await.unwrap();
    let msg = b.confirm().await;
    assert!(msg.contains("Revoke 2 API keys"), "{msg}");
    b.wait_xpath("//*[normalize-space()='Revoked 2 API keys. They no longer verify.']")
        .await;
    // The notice is shown once: the address drops it, so a reload doesn't repeat it.
    let path = b.path().await;
    assert!(!path.contains("notice"), "{path}");
    b.client.refresh().await.unwrap();
    b.wait_css("#keys-table").await;
    assert!(!b.body_text().await.contains("Revoked 2 API keys"));
    assert_eq!(verify(&app, &a_secret).await["code"], "REVOKED");
    assert_eq!(verify(&app, &c_secret).await["code"], "REVOKED");
    assert_eq!(verify(&app, &keep_secret).await["code"], "VALID");
    b.screenshot().await;
}
both_backends!(bulk_bar_revokes_the_selected_keys);

/// Issue 14: an organization without keys sees how to start (with a verification
/// snippet), not four zero figures and a filter bar; its first key brings them back.
async fn an_empty_organization_gets_started(app: TestApp) {
    let (client, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let html = page(&client, &app, "/api-keys").await;
    assert!(html.contains("id=\"getting-started\""), "{html}");
    assert!(html.contains("/v1/keys/verify") && html.contains(&app.org_id));
    assert!(!html.contains("id=\"metric-total\"") && !html.contains("Apply filters"));
    let sa = make_account(&app, "first-owner").await;
    make_key_secret(
        &app,
        CreateApiKey {
            name: "first".into(),
            owner: Some(OwnerRef {
                kind: PrincipalKind::ServiceAccount,
                id: sa,
            }),
            ..Default::default()
        },
    )
    .await;
    let html = page(&client, &app, "/api-keys").await;
    assert!(!html.contains("id=\"getting-started\""));
    assert!(html.contains("id=\"metric-total\""));
}
both_backends!(an_empty_organization_gets_started);

/// Issue 14: the shared secret is shown as what it is — the webhooks' signing secret,
/// reached from the Webhooks page — not as a top-level entry and a button on API Keys.
async fn the_signing_secret_lives_with_the_webhooks(app: TestApp) {
    let (client, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let keys = page(&client, &app, "/api-keys").await;
    assert!(!keys.contains("API shared secret"));
    assert!(
        !keys.contains(">Signing secret<"),
        "no menu entry for who sees webhooks"
    );
    let hooks = page(&client, &app, "/settings/webhooks").await;
    assert!(
        hooks.contains("href=\"/settings/shared-secret\""),
        "{hooks}"
    );
    let secret = page(&client, &app, "/settings/shared-secret").await;
    assert!(
        secret.contains("<h1>Webhook signing secret</h1>"),
        "{secret}"
    );
    assert!(secret.contains("href=\"/settings/webhooks\""));
    // Someone who manages the secret but can't see webhooks keeps a way there.
    super::make_role(&app, "rotator", &["shared_secret.manage"]).await;
    make_user(&app, "rotator@example.com", &["rotator"]).await;
    let (client, _) = console_client(&app, "rotator@example.com", "user password 1234").await;
    let secret = page(&client, &app, "/settings/shared-secret").await;
    assert!(secret.contains(">Signing secret<"), "{secret}");
}
both_backends!(the_signing_secret_lives_with_the_webhooks);
