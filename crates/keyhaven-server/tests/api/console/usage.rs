//! Named rate limits and credits in the console (USAGE-CONTROL.md, "Console"): the key
//! forms' limits and credits sections, the key details page with "Adjust credits", and
//! a service account's shared limits — in the browser, and the form posts over plain
//! HTTP, on SQLite and PostgreSQL.

use std::path::PathBuf;

use super::{browser, console_client, make_account, make_key_secret, make_user, system, Browser};
use crate::support::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use fantoccini::Locator;
use keyhaven_core::id::Id;
use keyhaven_core::principal::PrincipalKind;
use keyhaven_core::usage_control::{CreditOp, Credits, NamedLimit};
use keyhaven_service::api_keys::{CreateApiKey, OwnerRef};
use serde_json::Value;

const DESKTOP: (u32, u32) = (1400, 900);
const PHONE: (u32, u32) = (390, 844);

impl Browser {
    /// Empties the field named `name`.
    async fn clear(&self, name: &str) {
        self.wait_css(&format!("[name='{name}']"))
            .await
            .clear()
            .await
            .unwrap();
    }

    async fn select(&self, name: &str, value: &str) {
        self.wait_css(&format!("select[name='{name}']"))
            .await
            .select_by_value(value)
            .await
            .unwrap();
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Sets the window to `size`, scrolls `css` to the top, checks that nothing on the
    /// page is wider than the window, and saves `target/shots/{name}.png` (for a person
    /// to look at; not committed).
    async fn shot_at(&self, name: &str, size: (u32, u32), css: &str) {
        self.client.set_window_size(size.0, size.1).await.unwrap();
        self.wait_css(css).await;
        let widths = self
            .js(&format!(
                "document.querySelector({css:?}).scrollIntoView({{block: 'start'}}); \
                 window.scrollBy(0, -16); \
                 return [document.documentElement.scrollWidth, window.innerWidth];"
            ))
            .await;
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

    /// What `css` shows, as text.
    async fn text_of(&self, css: &str) -> String {
        self.wait_css(css).await.text().await.unwrap()
    }
}

/// A key as the REST API shows it.
async fn api_key_json(app: &TestApp, id: &str) -> Value {
    let admin = app.admin_key(&["admin"]).await;
    app.http
        .get(app.url(&format!("/v1/organizations/{}/api-keys/{id}", app.org_id)))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn limit(name: &str, limit: i64, duration_ms: i64, auto_apply: bool) -> NamedLimit {
    NamedLimit {
        name: name.into(),
        limit,
        duration_ms,
        auto_apply,
    }
}

async fn key_limits_and_credits(app: TestApp) {
    let Some(b) = browser(&app, "key-limits-credits").await else {
        return;
    };
    let backend = format!("{:?}", app.db.store.backend()).to_lowercase();
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go("/api-keys/new").await;
    b.wait_xpath("//h1[normalize-space()='Create API key']")
        .await;
    // A new form offers two empty limit rows; "Add another limit" keeps what was typed.
    assert_eq!(b.count(".limit-row").await, 2);
    b.fill("name", "metered-search").await;
    b.fill("ratelimits[0].name", "requests").await;
    b.fill("ratelimits[0].limit", "100").await;
    // A new row reads "per 1 minute" until changed.
    let per = b
        .wait_css("[name='ratelimits[0].per']")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(per.as_deref(), Some("1"));
    b.button("Add another limit").await.click().await.unwrap();
    b.wait_css("[name='ratelimits[2].name']").await;
    assert_eq!(b.count(".limit-row").await, 3);
    let kept = b.wait_css("[name=name]").await.prop("value").await.unwrap();
    assert_eq!(kept.as_deref(), Some("metered-search"));
    let kept = b
        .wait_css("[name='ratelimits[0].name']")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("requests"));
    // A mistake comes back next to its field, with everything else kept.
    b.fill("ratelimits[1].name", "Tokens Used").await;
    b.fill("ratelimits[1].limit", "0").await;
    b.clear("ratelimits[1].per").await;
    b.button("Create API key").await.click().await.unwrap();
    let err = b.text_of(".has-error #e-ratelimits-1-name").await;
    assert!(err.contains("lower-case letters"), "{err}");
    b.wait_css("#e-ratelimits-1-limit").await;
    assert_eq!(b.count(".limit-row").await, 3);
    b.shot_at(
        &format!("key-create-errors-desktop-{backend}"),
        DESKTOP,
        "#f-ratelimits",
    )
    .await;
    b.shot_at(
        &format!("key-create-errors-phone-{backend}"),
        PHONE,
        "[data-row='1']",
    )
    .await;
    b.client.set_window_size(1366, 900).await.unwrap();
    // A second limit that applies only when a request names it.
    b.fill("ratelimits[1].name", "tokens").await;
    b.fill("ratelimits[1].limit", "5,000").await;
    b.fill("ratelimits[1].per", "1").await;
    b.select("ratelimits[1].unit", "hours").await;
    b.wait_css("[name='ratelimits[1].auto_apply']")
        .await
        .click()
        .await
        .unwrap();
    // Credits with a monthly refill; the fields wake up once a balance is chosen.
    let balance = b.wait_css("[name='credits.remaining']").await;
    assert_eq!(
        balance.prop("disabled").await.unwrap().as_deref(),
        Some("true")
    );
    b.wait_css("input[name=credits][value=limited]")
        .await
        .click()
        .await
        .unwrap();
    b.fill("credits.remaining", "1000").await;
    b.select("credits.refill.interval", "monthly").await;
    b.fill("credits.refill.amount", "5000").await;
    b.fill("credits.refill.day_of_month", "1").await;
    b.fill("credits.low_threshold", "100").await;
    b.shot_at(
        &format!("key-create-desktop-{backend}"),
        DESKTOP,
        "#f-ratelimits",
    )
    .await;
    b.shot_at(
        &format!("key-create-phone-{backend}"),
        PHONE,
        "#f-ratelimits",
    )
    .await;
    b.shot_at(
        &format!("key-create-phone-credits-{backend}"),
        PHONE,
        "#f-credits",
    )
    .await;
    b.client.set_window_size(1366, 900).await.unwrap();
    b.button("Create API key").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='API key created']")
        .await;
    b.button("View key details").await.click().await.unwrap();

    // The details page: each limit in words, the balance with its refill.
    b.wait_css("#limits-table").await;
    let id = b.path().await.trim_start_matches("/api-keys/").to_string();
    let row = b.text_of("#limits-table tr[data-name='requests']").await;
    assert!(row.contains("100 per minute"), "{row}");
    assert!(
        row.contains("To every call") && row.contains("This key"),
        "{row}"
    );
    let row = b.text_of("#limits-table tr[data-name='tokens']").await;
    assert!(row.contains("5,000 per hour"), "{row}");
    assert!(row.contains("Only when a request names it"), "{row}");
    assert_eq!(b.text_of("#credits-balance").await, "1,000 credits");
    let refill = b.text_of("#credits-refill").await;
    assert!(
        refill.contains("Refills to 5,000 on day 1 of each month"),
        "{refill}"
    );
    assert!(b.text_of("#credits-low").await.contains("below 100"));
    b.shot_at(
        &format!("key-details-desktop-{backend}"),
        DESKTOP,
        "#key-limits",
    )
    .await;
    b.shot_at(&format!("key-details-phone-top-{backend}"), PHONE, "body")
        .await;
    b.shot_at(
        &format!("key-details-phone-{backend}"),
        PHONE,
        "#key-limits",
    )
    .await;
    b.shot_at(
        &format!("key-details-phone-credits-{backend}"),
        PHONE,
        "#key-credits",
    )
    .await;
    b.client.set_window_size(1366, 900).await.unwrap();

    // Adjust credits: +100, no confirmation needed.
    b.fill("value", "100").await;
    b.button("Adjust credits").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Credits adjusted. The balance is now 1,100.']")
        .await;
    assert_eq!(b.text_of("#credits-balance").await, "1,100 credits");
    let k = api_key_json(&app, &id).await;
    assert_eq!(k["credits"]["remaining"], 1100, "{k}");
    assert_eq!(k["remaining"], 1100, "{k}");
    assert_eq!(k["credits"]["refill"]["interval"], "monthly", "{k}");
    assert_eq!(k["credits"]["refill"]["amount"], 5000, "{k}");
    assert_eq!(k["credits"]["low_threshold"], 100, "{k}");
    let limits = k["ratelimits"].as_array().unwrap();
    assert_eq!(limits.len(), 2, "{k}");
    assert_eq!(limits[0]["name"], "requests");
    assert_eq!(limits[0]["duration_ms"], 60_000);
    assert_eq!(limits[0]["auto_apply"], true);
    assert_eq!(limits[1]["name"], "tokens");
    assert_eq!(limits[1]["limit"], 5000);
    assert_eq!(limits[1]["duration_ms"], 3_600_000);
    assert_eq!(limits[1]["auto_apply"], false);

    // Setting the balance asks first.
    b.select("op", "set").await;
    b.fill("value", "250").await;
    b.button("Adjust credits").await.click().await.unwrap();
    let msg = b.confirm().await;
    assert!(msg.contains("250") && msg.contains("1,100"), "{msg}");
    b.wait_xpath("//*[normalize-space()='Credits adjusted. The balance is now 250.']")
        .await;
    assert_eq!(api_key_json(&app, &id).await["credits"]["remaining"], 250);

    // The edit form shows the limits and credits as they are.
    b.go(&format!("/api-keys/{id}/edit")).await;
    let v = b
        .wait_css("[name='ratelimits[1].unit']")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("hours"));
    let v = b
        .wait_css("[name='credits.remaining']")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("250"));
    assert!(b
        .body_text()
        .await
        .contains("Saving a different number here sets the balance"));
    b.screenshot().await;
}
both_backends!(key_limits_and_credits);

async fn service_account_shared_limits(app: TestApp) {
    let Some(b) = browser(&app, "shared-limits").await else {
        return;
    };
    let sa = make_account(&app, "search-partner").await;
    let (key, _) = make_key_secret(
        &app,
        CreateApiKey {
            name: "partner-key".into(),
            owner: Some(OwnerRef {
                kind: PrincipalKind::ServiceAccount,
                id: sa.clone(),
            }),
            ratelimits: Some(vec![limit("requests", 10, 1_000, true)]),
            ..Default::default()
        },
    )
    .await;
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go(&format!("/settings/api-access/{sa}")).await;
    b.wait_css("#shared-limits #limits-empty").await;
    b.button("Edit limits").await.click().await.unwrap();
    b.wait_xpath("//h1[normalize-space()='Edit service account']")
        .await;
    b.fill("ratelimits[0].name", "partner-total").await;
    b.fill("ratelimits[0].limit", "50").await;
    b.fill("ratelimits[0].per", "1").await;
    b.select("ratelimits[0].unit", "seconds").await;
    b.button("Save changes").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Service account updated.']")
        .await;
    let row = b
        .text_of("#shared-limits tr[data-name='partner-total']")
        .await;
    assert!(row.contains("50 per second"), "{row}");
    assert!(row.contains("Service account (shared)"), "{row}");
    let got = app
        .state
        .service
        .get_service_account(&system(&app), &Id::from_trusted(sa.clone()))
        .await
        .unwrap();
    assert_eq!(
        got.ratelimits,
        vec![limit("partner-total", 50, 1_000, true)]
    );

    // The key's page shows its own limit and the account's shared one.
    b.go(&format!("/api-keys/{key}")).await;
    b.wait_css("#limits-table tr[data-name='requests'][data-scope='key']")
        .await;
    let row = b
        .text_of("#limits-table tr[data-name='partner-total'][data-scope='service_account']")
        .await;
    assert!(row.contains("Service account (shared)"), "{row}");
    assert!(b.text_of("#key-limits").await.contains("search-partner"));

    // Clearing the row removes the limit.
    b.go(&format!("/settings/api-access/{sa}/edit")).await;
    b.clear("ratelimits[0].name").await;
    b.clear("ratelimits[0].limit").await;
    b.button("Save changes").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Service account updated.']")
        .await;
    b.wait_css("#shared-limits #limits-empty").await;
    let got = app
        .state
        .service
        .get_service_account(&system(&app), &Id::from_trusted(sa.clone()))
        .await
        .unwrap();
    assert!(got.ratelimits.is_empty());
    assert_eq!(
        b.client
            .find_all(Locator::Css("#shared-limits tr[data-name]"))
            .await
            .unwrap()
            .len(),
        0
    );
    b.screenshot().await;
}
both_backends!(service_account_shared_limits);

/// Posts `pairs` (and the CSRF token) to `path`; the status and the page.
async fn post(
    client: &reqwest::Client,
    app: &TestApp,
    csrf: &str,
    path: &str,
    pairs: &[(&str, &str)],
) -> (u16, String) {
    let mut form: Vec<(&str, &str)> = vec![("csrf_token", csrf)];
    form.extend_from_slice(pairs);
    let res = client.post(app.url(path)).form(&form).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn key_count(app: &TestApp) -> usize {
    let mut tx = app.db.store.read().await.unwrap();
    tx.list_api_keys(
        &Id::from_trusted(app.org_id.clone()),
        &keyhaven_store::ApiKeyFilter {
            status: None,
            role: None,
            tag: None,
            owner_id: None,
            q: None,
            now: app.state.service.now(),
            external_id: None,
        },
        &keyhaven_store::Page {
            limit: 100,
            cursor: None,
        },
    )
    .await
    .unwrap()
    .items
    .len()
}

async fn limit_and_credit_form_errors(app: TestApp) {
    let (client, csrf) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let row = |i: usize, part: &str| format!("ratelimits[{i}].{part}");

    // A bad limit name, a negative balance and a missing key name: all shown at once,
    // each next to its field, and nothing is created.
    let (n0, l0, p0, u0) = (
        row(0, "name"),
        row(0, "limit"),
        row(0, "per"),
        row(0, "unit"),
    );
    let (status, html) = post(
        &client,
        &app,
        &csrf,
        "/api-keys/new",
        &[
            ("name", ""),
            ("expiration", "30"),
            (&n0, "Per User!"),
            (&l0, "10"),
            (&p0, "1"),
            (&u0, "minutes"),
            ("credits", "limited"),
            ("credits.remaining", "-5"),
        ],
    )
    .await;
    assert_eq!(status, 422, "{html}");
    for id in [
        "id=\"e-name\"",
        "id=\"e-ratelimits-0-name\"",
        "id=\"e-credits.remaining\"",
    ] {
        assert!(html.contains(id), "{id} missing: {html}");
    }
    assert!(html.contains("lower-case letters"), "{html}");
    assert!(html.contains("from 0 to 1,000,000,000,000"), "{html}");
    assert!(html.contains("aria-invalid=\"true\""));
    // What was typed comes back.
    assert!(html.contains("value=\"Per User!\""));
    assert!(html.contains("value=\"-5\""));
    assert_eq!(key_count(&app).await, 0);

    // A limit too large, a window too long, a refill without an amount.
    let (status, html) = post(
        &client,
        &app,
        &csrf,
        "/api-keys/new",
        &[
            ("name", "k1"),
            ("expiration", "30"),
            (&n0, "requests"),
            (&l0, "1000000001"),
            (&p0, "31"),
            (&u0, "days"),
            ("credits", "limited"),
            ("credits.remaining", "10"),
            ("credits.refill.interval", "monthly"),
            ("credits.refill.day_of_month", "32"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    for id in [
        "id=\"e-ratelimits-0-limit\"",
        "id=\"e-ratelimits-0-per\"",
        "id=\"e-credits.refill.amount\"",
        "id=\"e-credits.refill.day_of_month\"",
    ] {
        assert!(html.contains(id), "{id} missing: {html}");
    }
    assert_eq!(key_count(&app).await, 0);

    // Eleven limits: refused as a whole.
    let mut pairs: Vec<(String, String)> = vec![
        ("name".into(), "eleven".into()),
        ("expiration".into(), "30".into()),
    ];
    for i in 0..11 {
        pairs.push((row(i, "name"), format!("limit-{i}")));
        pairs.push((row(i, "limit"), "10".into()));
        pairs.push((row(i, "per"), "1".into()));
        pairs.push((row(i, "unit"), "seconds".into()));
    }
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, html) = post(&client, &app, &csrf, "/api-keys/new", &borrowed).await;
    assert_eq!(status, 422);
    assert!(html.contains("id=\"e-ratelimits\""), "{html}");
    assert!(html.contains("at most 10 rate limits"), "{html}");
    assert_eq!(key_count(&app).await, 0);

    // "Add another limit" comes back with one more row, unsaved.
    let (status, html) = post(
        &client,
        &app,
        &csrf,
        "/api-keys/new",
        &[("name", "later"), (&n0, "requests"), ("add_limit", "1")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("name=\"ratelimits[1].name\""));
    assert!(!html.contains("name=\"ratelimits[2].name\""));
    assert!(html.contains("value=\"requests\""));
    assert_eq!(key_count(&app).await, 0);

    // A good form creates the key with its limits and credits.
    let (status, html) = post(
        &client,
        &app,
        &csrf,
        "/api-keys/new",
        &[
            ("name", "metered"),
            ("expiration", "30"),
            (&n0, "requests"),
            (&l0, "100"),
            (&p0, "1.5"),
            (&u0, "seconds"),
            ("credits", "limited"),
            ("credits.remaining", "1,000"),
            ("credits.refill.interval", "daily"),
            ("credits.refill.amount", "500"),
            ("credits.refill.day_of_month", "9"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("API key created"));
    let (k, _) = app
        .state
        .service
        .list_api_keys(
            &system(&app),
            &keyhaven_store::ApiKeyFilter {
                status: None,
                role: None,
                tag: None,
                owner_id: None,
                q: Some("metered".into()),
                now: app.state.service.now(),
                external_id: None,
            },
            &keyhaven_store::Page {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items
        .remove(0);
    // A row whose "Apply to every call" box is not ticked applies only when named.
    assert_eq!(k.ratelimits, vec![limit("requests", 100, 1_500, false)]);
    let c = k.credits.unwrap();
    assert_eq!(c.remaining, 1_000);
    // A day of the month is for monthly refills; a daily one ignores it.
    assert_eq!(c.refill.unwrap().day_of_month, None);
    let id = k.id.to_string();

    // Adjust credits: a negative value is refused next to the field.
    let path = format!("/api-keys/{id}/credits");
    let (status, html) = post(
        &client,
        &app,
        &csrf,
        &path,
        &[("op", "increment"), ("value", "-5")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(html.contains("id=\"e-value\""), "{html}");
    // A set without confirmation asks first and changes nothing.
    let (status, html) = post(
        &client,
        &app,
        &csrf,
        &path,
        &[("op", "set"), ("value", "7")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"confirm-set\""), "{html}");
    assert!(html.contains("Set balance to 7"));
    let balance = |app: &TestApp| {
        let app_state = app.state.clone();
        let caller = system(app);
        let id = Id::from_trusted(id.clone());
        async move {
            app_state
                .service
                .get_api_key(&caller, &id)
                .await
                .unwrap()
                .0
                .credits
                .unwrap()
                .remaining
        }
    };
    assert_eq!(balance(&app).await, 1_000);
    let res = client
        .post(app.url(&path))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("op", "set"),
            ("value", "7"),
            ("confirmed", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.url().query(), Some("notice=credits&n=7"));
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Credits adjusted. The balance is now 7."));
    assert_eq!(balance(&app).await, 7);
    // Without the CSRF token: refused.
    let res = client
        .post(app.url(&path))
        .form(&[("op", "increment"), ("value", "5")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(balance(&app).await, 7);

    // Saving the edit form with the balance as shown is not a "set": credits spent in
    // the meantime stay spent.
    let edit = client
        .get(app.url(&format!("/api-keys/{id}/edit")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(edit.contains("name=\"credits.remaining_shown\" value=\"7\""));
    app.state
        .service
        .adjust_credits(
            &system(&app),
            &Id::from_trusted(id.clone()),
            CreditOp::Decrement,
            2,
        )
        .await
        .unwrap();
    let edit_path = format!("/api-keys/{id}/edit");
    let form = [
        ("name", "metered"),
        (n0.as_str(), "requests"),
        (l0.as_str(), "200"),
        (p0.as_str(), "1"),
        (u0.as_str(), "minutes"),
        ("credits", "limited"),
        ("credits.remaining", "7"),
        ("credits.remaining_shown", "7"),
        ("credits.low_threshold", "3"),
    ];
    let (status, _) = post(&client, &app, &csrf, &edit_path, &form).await;
    assert_eq!(status, 200);
    let (k, _) = app
        .state
        .service
        .get_api_key(&system(&app), &Id::from_trusted(id.clone()))
        .await
        .unwrap();
    assert_eq!(k.ratelimits, vec![limit("requests", 200, 60_000, false)]);
    assert_eq!(
        k.credits,
        Some(Credits {
            remaining: 5,
            refill: None,
            low_threshold: Some(3),
        })
    );
    // A post without the limits and credits sections leaves them as they are.
    let (status, _) = post(
        &client,
        &app,
        &csrf,
        &edit_path,
        &[("name", "metered"), ("description", "no sections")],
    )
    .await;
    assert_eq!(status, 200);
    let (k, _) = app
        .state
        .service
        .get_api_key(&system(&app), &Id::from_trusted(id.clone()))
        .await
        .unwrap();
    assert_eq!(k.description, "no sections");
    assert_eq!(k.ratelimits.len(), 1);
    assert_eq!(k.credits.map(|c| c.remaining), Some(5));
    // A different number is a set; Unlimited removes the balance.
    let mut form = form.to_vec();
    form[6] = ("credits.remaining", "40");
    post(&client, &app, &csrf, &edit_path, &form).await;
    assert_eq!(balance(&app).await, 40);
    form[5] = ("credits", "unlimited");
    post(&client, &app, &csrf, &edit_path, &form).await;
    let (k, _) = app
        .state
        .service
        .get_api_key(&system(&app), &Id::from_trusted(id.clone()))
        .await
        .unwrap();
    assert_eq!(k.credits, None);
    // No balance to adjust: the message says so.
    let (status, html) = post(
        &client,
        &app,
        &csrf,
        &path,
        &[("op", "increment"), ("value", "5")],
    )
    .await;
    assert_eq!(status, 422, "{html}");
    assert!(
        html.contains("Give it one on its Edit page first."),
        "{html}"
    );

    // A service account's shared limits: the same widget, the same messages.
    let sa = make_account(&app, "shared-errors").await;
    let (status, html) = post(
        &client,
        &app,
        &csrf,
        &format!("/settings/api-access/{sa}/edit"),
        &[
            ("name", "shared-errors"),
            (&n0, "a b"),
            (&l0, "10"),
            (&p0, "1"),
            (&u0, "minutes"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(html.contains("id=\"e-ratelimits-0-name\""), "{html}");
    app.state
        .service
        .update_service_account(
            &system(&app),
            &Id::from_trusted(sa.clone()),
            keyhaven_service::service_accounts::UpdateServiceAccount {
                ratelimits: Some(Some(vec![limit("all-keys", 5, 1_000, true)])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (status, _) = post(
        &client,
        &app,
        &csrf,
        &format!("/settings/api-access/{sa}/edit"),
        &[("name", "shared-errors-2"), ("description", "")],
    )
    .await;
    assert_eq!(status, 200);
    let got = app
        .state
        .service
        .get_service_account(&system(&app), &Id::from_trusted(sa.clone()))
        .await
        .unwrap();
    assert_eq!(got.name, "shared-errors-2");
    assert_eq!(got.ratelimits, vec![limit("all-keys", 5, 1_000, true)]);

    // A read-only user sees the limits and balance but no way to change them.
    make_user(&app, "viewer@example.com", &["read-only"]).await;
    let (viewer, viewer_csrf) =
        console_client(&app, "viewer@example.com", "user password 1234").await;
    let html = viewer
        .get(app.url(&format!("/api-keys/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"key-limits\"") && html.contains("id=\"key-credits\""));
    assert!(!html.contains("Adjust credits") && !html.contains("Edit limits"));
    let res = viewer
        .post(app.url(&path))
        .form(&[
            ("csrf_token", viewer_csrf.as_str()),
            ("op", "increment"),
            ("value", "5"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}
both_backends!(limit_and_credit_form_errors);
