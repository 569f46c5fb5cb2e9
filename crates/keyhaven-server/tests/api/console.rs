//! The admin console in a real headless Chromium, driven over WebDriver (chromedriver)
//! against a server started by the test, on SQLite and PostgreSQL.
//!
//! Without `chromium` and `chromedriver` on the machine the tests print a loud SKIPPED
//! line and pass — except under `CI=true`, where they fail.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use keyhaven_core::id::Id;
use keyhaven_core::principal::PrincipalKind;
use keyhaven_service::api_keys::{CreateApiKey, OwnerRef};
use keyhaven_service::roles::CreateRole;
use keyhaven_service::service_accounts::CreateServiceAccount;
use keyhaven_service::users::CreateUser;
use keyhaven_service::Caller;

const WAIT: Duration = Duration::from_secs(15);

struct Browser {
    client: Client,
    driver: Child,
    base: String,
    shot: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver and a headless Chromium, or explains why not.
async fn browser(app: &TestApp, test: &str) -> Option<Browser> {
    let chromium = which(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = which(&["chromedriver"]);
    let (Some(chromium), Some(driver_bin)) = (chromium, driver) else {
        keyhaven_store::testing::skip(
            "console browser (Chromium)",
            test,
            "chromium and/or chromedriver are not installed",
            "apt-get install chromium chromium-driver",
        );
        return None;
    };
    let port = free_port();
    let driver = Command::new(driver_bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium.to_string_lossy(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1366,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut client = None;
    // chromedriver takes a moment to listen: a bounded number of attempts.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let http = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(http)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(e) => eprintln!("waiting for chromedriver: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = client.expect("connect to chromedriver");
    let backend = format!("{:?}", app.db.store.backend()).to_lowercase();
    Some(Browser {
        client,
        driver,
        base: app.base.clone(),
        shot: format!("{test}-{backend}"),
        _profile: profile,
    })
}

impl Browser {
    async fn go(&self, path: &str) {
        self.client
            .goto(&format!("{}{}", self.base, path))
            .await
            .unwrap();
    }

    async fn wait_css(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    async fn wait_xpath(&self, xpath: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::XPath(xpath))
            .await
            .unwrap_or_else(|e| panic!("no element {xpath}: {e}"))
    }

    async fn button(&self, text: &str) -> Element {
        self.wait_xpath(&format!(
            "//main//*[self::button or self::a][normalize-space()='{text}']"
        ))
        .await
    }

    async fn fill(&self, name: &str, value: &str) {
        let el = self.wait_css(&format!("[name='{name}']")).await;
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    async fn body_text(&self) -> String {
        self.wait_css("body").await.text().await.unwrap()
    }

    async fn path(&self) -> String {
        let u = self.client.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// Clicks the confirm button of the confirmation dialog; returns its message.
    async fn confirm(&self) -> String {
        let msg = self
            .wait_css("#confirm-dialog[open] #confirm-message")
            .await
            .text()
            .await
            .unwrap();
        self.wait_css("#confirm-dialog[open] button.confirm")
            .await
            .click()
            .await
            .unwrap();
        msg
    }

    async fn sign_in(&self, email: &str, password: &str) {
        self.go("/login").await;
        self.fill("email", email).await;
        self.fill("password", password).await;
        self.button("Sign in").await.click().await.unwrap();
        self.wait_css("nav.sidebar").await;
    }

    /// Saves the current screen as `docs/screenshots/{name}.png`.
    async fn doc_screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Saves the current screen as `target/screenshots/{name}.png`, keeping the browser.
    async fn shot_named(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn screenshot(self) {
        let png = self.client.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}.png", self.shot)), png).unwrap();
        let _ = self.client.clone().close().await;
    }
}

fn system(app: &TestApp) -> Caller {
    Caller::system(Id::from_trusted(app.org_id.clone()), "test")
}

async fn admin_id(app: &TestApp) -> String {
    let mut tx = app.db.store.read().await.unwrap();
    tx.user_by_email(ADMIN_EMAIL)
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string()
}

/// A personal key of the admin, made through the service layer.
async fn make_key(app: &TestApp, name: &str, tags: &[&str]) -> String {
    let owner = admin_id(app).await;
    let (k, _, _) = app
        .state
        .service
        .create_api_key(
            &system(app),
            CreateApiKey {
                name: name.into(),
                tags: Some(tags.iter().map(|t| t.to_string()).collect()),
                roles: Some(vec!["read-only".into()]),
                owner: Some(OwnerRef {
                    kind: PrincipalKind::User,
                    id: owner,
                }),
                expires_in_days: Some(30),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    k.id.to_string()
}

async fn sign_in_create_copy_filter(app: TestApp) {
    let Some(b) = browser(&app, "create-key").await else {
        return;
    };
    // A page behind sign-in sends to /login and back after signing in.
    b.go("/api-keys/new").await;
    b.wait_css("input[name=email]").await;
    assert!(b.path().await.starts_with("/login?next=%2Fapi-keys%2Fnew"));
    b.fill("email", ADMIN_EMAIL).await;
    b.fill("password", "wrong password entirely").await;
    b.button("Sign in").await.click().await.unwrap();
    b.wait_xpath("//*[contains(., 'The email or password is incorrect.')]")
        .await;
    b.fill("password", ADMIN_PASSWORD).await;
    b.button("Sign in").await.click().await.unwrap();
    b.wait_xpath("//h1[normalize-space()='Create API key']")
        .await;
    assert_eq!(b.path().await, "/api-keys/new");

    // Bad input: the form comes back with the values kept and the message at the field.
    b.fill("description", "Charges cards").await;
    b.button("Create API key").await.click().await.unwrap();
    let err = b.wait_css(".has-error #e-name").await;
    assert!(!err.text().await.unwrap().is_empty());
    let kept = b
        .wait_css("[name=description]")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("Charges cards"));

    b.fill("name", "billing-service").await;
    b.fill("tags", "billing, production").await;
    b.wait_css("input[name=expiration][value='30']")
        .await
        .click()
        .await
        .unwrap();
    b.button("Create API key").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='API key created']")
        .await;
    let secret_el = b.wait_css("[data-secret]").await;
    assert_eq!(
        secret_el.attr("type").await.unwrap().as_deref(),
        Some("password")
    );
    b.button("Show").await.click().await.unwrap();
    b.button("Hide").await;
    assert_eq!(
        secret_el.attr("type").await.unwrap().as_deref(),
        Some("text")
    );
    b.button("Copy").await.click().await.unwrap();
    let secret = secret_el.prop("value").await.unwrap().unwrap();
    assert!(secret.starts_with("kh_"), "{secret}");
    assert!(b.body_text().await.contains("will not be shown again"));
    assert_eq!(b.count("[data-secret]").await, 1);
    // The key works.
    let res = app
        .http
        .post(app.url("/v1/keys/verify"))
        .json(&serde_json::json!({ "key": secret }))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["valid"], true, "{body}");

    // It is in the table; nothing on the list shows the secret.
    make_key(&app, "reporting-job", &["internal"]).await;
    b.go("/api-keys").await;
    b.wait_xpath("//table//a[normalize-space()='billing-service']")
        .await;
    assert_eq!(b.count("#keys-table tbody tr[data-id]").await, 2);
    assert_eq!(b.wait_css("#metric-total").await.text().await.unwrap(), "2");
    assert!(!b.body_text().await.contains(&secret));
    assert_eq!(b.count("[data-secret]").await, 0);

    // Filter by tag: the state lives in the URL.
    b.fill("tag", "billing").await;
    b.button("Apply filters").await.click().await.unwrap();
    b.wait_xpath("//a[normalize-space()='Clear filters']").await;
    assert!(b.path().await.contains("tag=billing"));
    assert_eq!(b.count("#keys-table tbody tr[data-id]").await, 1);
    b.wait_xpath("//table//a[normalize-space()='billing-service']")
        .await;

    // Open its details: the 30-day chart is server-drawn SVG.
    b.wait_xpath("//table//a[normalize-space()='billing-service']")
        .await
        .click()
        .await
        .unwrap();
    // A key nobody has called yet: an empty state instead of a flat chart.
    let empty = b.wait_css("#usage-empty").await.text().await.unwrap();
    assert_eq!(empty, "No calls in the last 30 days");
    // Once it is used, the 30-day chart is server-drawn SVG.
    app.state.service.verifier().flush_usage().await.unwrap();
    b.go(&b.path().await).await;
    b.wait_css("svg.chart").await;
    assert_eq!(b.count("svg.chart g.day").await, 30);
    assert_eq!(b.count("svg.chart[preserveAspectRatio]").await, 0);
    b.screenshot().await;
}
both_backends!(sign_in_create_copy_filter);

async fn regenerate_and_revoke(app: TestApp) {
    let Some(b) = browser(&app, "regenerate-revoke").await else {
        return;
    };
    let id = make_key(&app, "payments-gateway", &["payments"]).await;
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go(&format!("/api-keys/{id}")).await;
    b.button("Regenerate").await.click().await.unwrap();
    b.wait_css("input[name=expiration][value='60']")
        .await
        .click()
        .await
        .unwrap();
    b.wait_css("select[name=grace_period_seconds] option[value='3600']")
        .await
        .click()
        .await
        .unwrap();
    b.button("Regenerate key").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='API key regenerated']")
        .await;
    let secret = b
        .wait_css("[data-secret]")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(secret.starts_with("kh_"));

    b.button("View key details").await.click().await.unwrap();
    b.button("Revoke").await.click().await.unwrap();
    let msg = b.confirm().await;
    assert!(msg.contains("payments-gateway"), "{msg}");
    b.wait_xpath("//*[contains(@class,'badge') and normalize-space()='Revoked']")
        .await;
    // A revoked key offers no Edit / Regenerate / Revoke.
    assert_eq!(
        b.count("a[href$='/regenerate'], form[action$='/revoke']")
            .await,
        0
    );
    b.screenshot().await;
}
both_backends!(regenerate_and_revoke);

async fn bulk_delete(app: TestApp) {
    let Some(b) = browser(&app, "bulk-delete").await else {
        return;
    };
    let a = make_key(&app, "old-cron-1", &[]).await;
    let c = make_key(&app, "old-cron-2", &[]).await;
    let keep = make_key(&app, "keeper", &[]).await;
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go("/api-keys").await;
    for id in [&a, &c] {
        b.wait_css(&format!("tr[data-id='{id}'] input.row-select"))
            .await
            .click()
            .await
            .unwrap();
    }
    b.button("Delete selected").await.click().await.unwrap();
    let msg = b.confirm().await;
    assert!(msg.contains("Delete 2 API keys"), "{msg}");
    b.wait_xpath("//*[normalize-space()='Deleted 2 API keys.']")
        .await;
    assert_eq!(b.count("#keys-table tbody tr[data-id]").await, 1);
    b.wait_css(&format!("tr[data-id='{keep}']")).await;
    b.screenshot().await;
}
both_backends!(bulk_delete);

async fn service_account_credential_archive(app: TestApp) {
    let Some(b) = browser(&app, "service-account").await else {
        return;
    };
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go("/settings/api-access").await;
    b.button("Create Service Account")
        .await
        .click()
        .await
        .unwrap();
    b.fill("name", "ci-deployer").await;
    b.fill("description", "Deploys from CI").await;
    b.button("Create Service Account")
        .await
        .click()
        .await
        .unwrap();
    b.wait_xpath("//*[normalize-space()='Service account created.']")
        .await;
    b.fill("name", "github-actions").await;
    b.button("Create credential").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Credential created']")
        .await;
    let secret = b
        .wait_css("[data-secret]")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(secret.starts_with("khcs_"), "{secret}");
    let client_id = b
        .wait_css("#client-id")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(client_id.starts_with("khci_"), "{client_id}");
    assert_eq!(b.count("#credentials-table tbody tr[data-id]").await, 1);

    b.go("/settings/api-access").await;
    b.wait_xpath("//table//a[normalize-space()='ci-deployer']")
        .await;
    b.button("Archive").await.click().await.unwrap();
    let msg = b.confirm().await;
    assert!(
        msg.contains("revokes every API key and credential"),
        "{msg}"
    );
    b.wait_xpath("//*[contains(@class,'badge') and normalize-space()='Archived']")
        .await;
    // Archived accounts are hidden from the default list.
    b.go("/settings/api-access").await;
    b.wait_css("main h1").await;
    assert_eq!(b.count("#accounts-table tbody tr[data-id]").await, 0);
    b.go("/settings/api-access?status=archived").await;
    b.wait_xpath("//table//a[normalize-space()='ci-deployer']")
        .await;
    b.screenshot().await;
}
both_backends!(service_account_credential_archive);

async fn create_and_delete_user(app: TestApp) {
    let Some(b) = browser(&app, "users").await else {
        return;
    };
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go("/users").await;
    let me = admin_id(&app).await;
    // The own row offers neither Delete nor Reset password.
    let own = b.wait_css(&format!("tr[data-id='{me}']")).await;
    let own_text = own.text().await.unwrap();
    assert!(!own_text.contains("Delete") && !own_text.contains("Reset password"));
    b.button("Create user").await.click().await.unwrap();
    b.fill("email", "dana@example.com").await;
    b.fill("display_name", "Dana").await;
    b.fill("password", "short").await;
    b.wait_css("input[name=roles][value='read-only']")
        .await
        .click()
        .await
        .unwrap();
    b.button("Create user").await.click().await.unwrap();
    // Too short a password: message at the field, values kept.
    b.wait_css(".has-error #e-password").await;
    let kept = b
        .wait_css("[name=email]")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("dana@example.com"));
    b.fill("password", "a much longer password").await;
    b.button("Create user").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='User created.']").await;
    let row = b
        .wait_xpath("//tr[td[contains(., 'dana@example.com')]]")
        .await;
    let id = row.attr("data-id").await.unwrap().unwrap();
    b.wait_css(&format!(
        "tr[data-id='{id}'] form[action$='/delete'] button"
    ))
    .await
    .click()
    .await
    .unwrap();
    let msg = b.confirm().await;
    assert!(msg.contains("dana@example.com"), "{msg}");
    b.wait_xpath("//*[normalize-space()='User deleted.']").await;
    assert_eq!(b.count(&format!("tr[data-id='{id}']")).await, 0);
    b.screenshot().await;
}
both_backends!(create_and_delete_user);

async fn read_only_user(app: TestApp) {
    let Some(b) = browser(&app, "read-only").await else {
        return;
    };
    make_key(&app, "visible-key", &[]).await;
    app.state
        .service
        .create_user(
            &system(&app),
            CreateUser {
                email: "viewer@example.com".into(),
                display_name: "Viewer".into(),
                password: "viewer password 123".into(),
                roles: vec!["read-only".into()],
            },
        )
        .await
        .unwrap();
    b.sign_in("viewer@example.com", "viewer password 123").await;
    b.go("/api-keys").await;
    b.wait_xpath("//table//a[normalize-space()='visible-key']")
        .await;
    let text = b.body_text().await;
    assert!(!text.contains("Create API key"), "no create control");
    assert!(!text.contains("Delete selected"), "no bulk delete");
    assert_eq!(b.count("input.row-select").await, 0);
    assert_eq!(
        b.count("form[action$='/delete'], form[action$='/revoke']")
            .await,
        0
    );
    // No Users entry in the navigation, and the page itself answers 403.
    assert_eq!(b.count("nav.sidebar a[href='/users']").await, 0);
    b.go("/settings/api-access").await;
    b.wait_css("main h1").await;
    assert!(!b.body_text().await.contains("Create Service Account"));
    b.go("/users").await;
    b.wait_xpath("//h1[normalize-space()=\"You don't have access to this page\"]")
        .await;
    let res = reqwest::Client::new()
        .get(app.url("/users"))
        .send()
        .await
        .unwrap();
    // Without a session the page redirects to sign-in (reqwest follows to /login).
    assert!(res.url().path().starts_with("/login"));
    b.screenshot().await;
}
both_backends!(read_only_user);

async fn csrf_and_headers(app: TestApp) {
    // Plain HTTP: headers on console pages, and a stale CSRF token gets a clear page.
    let (client, _csrf) = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let res = client.get(app.url("/api-keys")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert!(res.headers().contains_key("referrer-policy"));
    let res = client
        .post(app.url("/api-keys/new"))
        .form(&[("csrf_token", "stale"), ("name", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("This form has expired"));
    let res = client
        .post(app.url("/api-keys/new"))
        .form(&[("name", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // An expired session goes back to sign-in, remembering where the user was.
    app.clock.advance(chrono::Duration::hours(13));
    let res = client
        .get(app.url("/settings/api-access?tab=activity"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.url().path(), "/login");
    let q = res.url().query().unwrap_or_default().to_string();
    assert!(
        q.contains("next=%2Fsettings%2Fapi-access%3Ftab%3Dactivity"),
        "{q}"
    );
    assert!(q.contains("expired=1"));
}
both_backends!(csrf_and_headers);

// ---------------------------------------------------------------------------------------
// Helpers for the tests below.

/// A user made through the service layer.
async fn make_user(app: &TestApp, email: &str, roles: &[&str]) -> String {
    app.state
        .service
        .create_user(
            &system(app),
            CreateUser {
                email: email.into(),
                display_name: email.split('@').next().unwrap_or(email).into(),
                password: "user password 1234".into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
            },
        )
        .await
        .unwrap()
        .id
        .to_string()
}

/// A custom role made through the service layer.
async fn make_role(app: &TestApp, name: &str, permissions: &[&str]) {
    app.state
        .service
        .create_role(
            &system(app),
            CreateRole {
                name: name.into(),
                description: None,
                permissions: permissions.iter().map(|p| p.to_string()).collect(),
                key_name_pattern: None,
            },
        )
        .await
        .unwrap();
}

/// A service account made through the service layer.
async fn make_account(app: &TestApp, name: &str) -> String {
    app.state
        .service
        .create_service_account(
            &system(app),
            CreateServiceAccount {
                ratelimits: None,
                name: name.into(),
                description: Some(format!("Runs the {name} integration")),
                roles: Some(vec!["read-only".into()]),
                external_id: None,
            },
        )
        .await
        .unwrap()
        .id
        .to_string()
}

/// A key with its secret, made through the service layer.
async fn make_key_secret(app: &TestApp, input: CreateApiKey) -> (String, String) {
    let (k, _, secret) = app
        .state
        .service
        .create_api_key(&system(app), input)
        .await
        .unwrap();
    (k.id.to_string(), secret.expose().to_string())
}

async fn verify(app: &TestApp, key: &str) -> serde_json::Value {
    app.http
        .post(app.url("/v1/keys/verify"))
        .json(&serde_json::json!({ "key": key }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The value of the first hidden `csrf_token` field of a page.
fn csrf_of(html: &str) -> String {
    let pat = "name=\"csrf_token\" value=\"";
    let at = html.find(pat).expect("csrf field") + pat.len();
    html[at..].split('"').next().unwrap().to_string()
}

/// A console session over plain HTTP: the client and the session's CSRF token.
async fn console_client(app: &TestApp, email: &str, password: &str) -> (reqwest::Client, String) {
    app.sign_in(email, password).await
}

// ---------------------------------------------------------------------------------------

async fn service_account_edit_credentials_delete(app: TestApp) {
    let Some(b) = browser(&app, "service-account-edit").await else {
        return;
    };
    let id = make_account(&app, "ledger-sync").await;
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go(&format!("/settings/api-access/{id}")).await;
    // Create API key from the account preselects it as the owner.
    b.button("Create API key").await.click().await.unwrap();
    let owner = b
        .wait_css("select[name=owner]")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(owner.as_deref(), Some(id.as_str()));
    b.go(&format!("/settings/api-access/{id}")).await;

    // Edit name, description and roles.
    b.button("Edit").await.click().await.unwrap();
    b.wait_xpath("//h1[normalize-space()='Edit service account']")
        .await;
    b.fill("name", "ledger-sync-v2").await;
    b.fill("description", "Syncs the ledger nightly").await;
    b.wait_css("input[name=roles][value='admin']")
        .await
        .click()
        .await
        .unwrap();
    b.button("Save changes").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Service account updated.']")
        .await;
    let props = b.wait_css("dl.props").await.text().await.unwrap();
    assert!(props.contains("Syncs the ledger nightly"), "{props}");
    assert!(props.contains("admin"), "{props}");
    b.wait_xpath("//h1[normalize-space()='ledger-sync-v2']")
        .await;

    // A credential with a description, then renamed.
    b.fill("name", "nightly-job").await;
    b.fill("description", "Cron on the ledger host").await;
    b.button("Create credential").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Credential created']")
        .await;
    b.go(&format!("/settings/api-access/{id}")).await;
    let row = b.wait_css("#credentials-table tbody tr[data-id]").await;
    assert!(row
        .text()
        .await
        .unwrap()
        .contains("Cron on the ledger host"));
    b.wait_css("#credentials-table a[href$='/edit']")
        .await
        .click()
        .await
        .unwrap();
    b.wait_xpath("//h1[normalize-space()='Edit credential']")
        .await;
    b.fill("name", "nightly-job-eu").await;
    b.button("Save changes").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Credential updated.']")
        .await;
    b.wait_xpath("//table[@id='credentials-table']//td[contains(., 'nightly-job-eu')]")
        .await;

    // Delete asks first, then the account is gone.
    b.button("Delete").await.click().await.unwrap();
    let msg = b.confirm().await;
    assert!(msg.contains("ledger-sync-v2"), "{msg}");
    b.wait_xpath("//*[starts-with(normalize-space(), 'Service account deleted')]")
        .await;
    b.go("/settings/api-access?status=all").await;
    b.wait_css("main h1").await;
    assert_eq!(b.count(&format!("tr[data-id='{id}']")).await, 0);
    b.screenshot().await;
}
both_backends!(service_account_edit_credentials_delete);

async fn role_create_and_edit(app: TestApp) {
    let Some(b) = browser(&app, "roles").await else {
        return;
    };
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go("/roles").await;
    // Built-in roles offer no Edit.
    assert_eq!(
        b.count("tr[data-id='super-admin'] a[href$='/edit']").await,
        0
    );
    b.button("Create role").await.click().await.unwrap();
    // The checklist is a fieldset with a legend.
    b.wait_xpath("//fieldset[@id='f-permissions']/legend[normalize-space()='Permissions']")
        .await;
    b.fill("name", "billing-admin").await;
    b.fill("description", "Runs billing keys").await;
    b.wait_css("input[name=permissions][value='api_keys.view']")
        .await
        .click()
        .await
        .unwrap();
    b.fill("scopes", "billing:read").await;
    b.fill("key_name_pattern", "^billing-").await;
    b.button("Create role").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Role created.']").await;
    let row = b
        .wait_css("tr[data-id='billing-admin']")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        row.contains("^billing-") && row.contains("billing:read"),
        "{row}"
    );

    // Edit: the name is fixed; description, permissions, scopes and pattern change.
    b.wait_css("tr[data-id='billing-admin'] a[href$='/edit']")
        .await
        .click()
        .await
        .unwrap();
    b.wait_xpath("//h1[normalize-space()='Edit role']").await;
    let name = b.wait_css("#f-name").await;
    assert!(name.attr("readonly").await.unwrap().is_some());
    assert_eq!(b.count("input[name=name]").await, 0);
    b.fill("description", "Runs and audits billing keys").await;
    b.wait_css("input[name=permissions][value='audit.view']")
        .await
        .click()
        .await
        .unwrap();
    b.fill("key_name_pattern", "^bill-").await;
    b.button("Save changes").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Role updated.']").await;
    let row = b
        .wait_css("tr[data-id='billing-admin']")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        row.contains("Runs and audits billing keys")
            && row.contains("audit.view")
            && row.contains("^bill-")
            && row.contains("billing:read"),
        "{row}"
    );
    // A bad pattern comes back next to the field in plain words.
    b.go("/roles/billing-admin/edit").await;
    b.fill("key_name_pattern", "([").await;
    b.button("Save changes").await.click().await.unwrap();
    let err = b
        .wait_css("#e-key_name_pattern")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(err, "That is not a valid regular expression.");
    let input = b.wait_css("#f-key_name_pattern").await;
    assert_eq!(
        input.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );
    assert!(input
        .attr("aria-describedby")
        .await
        .unwrap()
        .unwrap_or_default()
        .contains("e-key_name_pattern"));
    b.screenshot().await;
}
both_backends!(role_create_and_edit);

async fn webhook_create_and_edit(app: TestApp) {
    let Some(b) = browser(&app, "webhooks").await else {
        return;
    };
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go("/settings/webhooks").await;
    b.fill("url", "https://hooks.example.com/keyhaven").await;
    b.fill("description", "Ops channel").await;
    b.wait_css("input[name=events][value='api_key.revoked']")
        .await
        .click()
        .await
        .unwrap();
    // Created disabled: the checkbox is honoured.
    let enabled = b.wait_css("input[name=enabled]").await;
    assert_eq!(
        enabled.prop("checked").await.unwrap().as_deref(),
        Some("true")
    );
    enabled.click().await.unwrap();
    b.button("Add endpoint").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Endpoint added.']")
        .await;
    let card = b.wait_css("section[data-id]").await;
    let text = card.text().await.unwrap();
    assert!(
        text.contains("Inactive") && text.contains("api_key.revoked"),
        "{text}"
    );

    b.wait_css("section[data-id] a[href$='/edit']")
        .await
        .click()
        .await
        .unwrap();
    b.wait_xpath("//h1[normalize-space()='Edit endpoint']")
        .await;
    b.fill("url", "https://hooks.example.com/keyhaven-v2").await;
    b.fill("description", "Ops and security channel").await;
    b.wait_css("input[name=events][value='api_key.created']")
        .await
        .click()
        .await
        .unwrap();
    b.wait_css("input[name=enabled]")
        .await
        .click()
        .await
        .unwrap();
    b.button("Save changes").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Endpoint updated.']")
        .await;
    let text = b.wait_css("section[data-id]").await.text().await.unwrap();
    assert!(
        text.contains("https://hooks.example.com/keyhaven-v2")
            && text.contains("Ops and security channel")
            && text.contains("api_key.created")
            && text.contains("Active"),
        "{text}"
    );
    // Bad input: plain words at each field, every mistake at once, values kept.
    b.go("/settings/webhooks").await;
    b.fill("url", "not a url").await;
    b.button("Add endpoint").await.click().await.unwrap();
    let err = b.wait_css("#e-url").await.text().await.unwrap();
    assert!(err.starts_with("Enter an http"), "{err}");
    let err = b.wait_css("#e-events").await.text().await.unwrap();
    assert_eq!(err, "Choose at least one event.");
    b.screenshot().await;
}
both_backends!(webhook_create_and_edit);

async fn shared_secret_reveal_rotate(app: TestApp) {
    let Some(b) = browser(&app, "shared-secret").await else {
        return;
    };
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go("/settings/shared-secret").await;
    let status = b.wait_css("#secret-status").await.text().await.unwrap();
    if status.contains("No shared secret yet") {
        b.button("Create shared secret")
            .await
            .click()
            .await
            .unwrap();
        b.confirm().await;
        b.wait_xpath("//h2[normalize-space()='New shared secret']")
            .await;
        b.go("/settings/shared-secret").await;
    }
    b.button("Reveal").await.click().await.unwrap();
    b.wait_xpath("//h2[normalize-space()='Shared secret']")
        .await;
    let first = b
        .wait_css("[data-secret]")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(!first.is_empty());
    b.button("Copy").await.click().await.unwrap();
    b.button("Rotate").await.click().await.unwrap();
    let msg = b.confirm().await;
    assert!(msg.contains("24 hours"), "{msg}");
    b.wait_xpath("//h2[normalize-space()='New shared secret']")
        .await;
    let second = b
        .wait_css("[data-secret]")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(first, second);
    assert!(b.body_text().await.contains("Previous secret signs until"));
    b.screenshot().await;
}
both_backends!(shared_secret_reveal_rotate);

async fn account_profile_and_password(app: TestApp) {
    let Some(b) = browser(&app, "account").await else {
        return;
    };
    make_user(&app, "erin@example.com", &["read-only"]).await;
    b.sign_in("erin@example.com", "user password 1234").await;
    b.go("/account").await;
    b.fill("display_name", "Erin Example").await;
    b.button("Save display name").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Display name saved.']")
        .await;
    let name = b
        .wait_css("[name=display_name]")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("Erin Example"));
    // A wrong current password: plain words at the field.
    b.fill("current_password", "not my password").await;
    b.fill("new_password", "a brand new password").await;
    b.button("Change password").await.click().await.unwrap();
    let err = b
        .wait_css("#e-current_password")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(err, "Your current password is not correct.");
    b.fill("current_password", "user password 1234").await;
    b.fill("new_password", "a brand new password").await;
    b.button("Change password").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Password changed.']")
        .await;
    // The new password signs in.
    let (_client, _) = app
        .sign_in("erin@example.com", "a brand new password")
        .await;
    b.screenshot().await;
}
both_backends!(account_profile_and_password);

async fn activity_filter_and_expand(app: TestApp) {
    let Some(b) = browser(&app, "activity").await else {
        return;
    };
    let sa = make_account(&app, "warehouse-export").await;
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    // Something the admin does in the browser shows up with the browser's user agent.
    b.go(&format!("/settings/api-access/{sa}")).await;
    b.button("Suspend").await.click().await.unwrap();
    b.confirm().await;
    b.wait_xpath("//*[contains(@class,'badge') and normalize-space()='Suspended']")
        .await;
    b.go("/settings/api-access?tab=activity").await;
    b.wait_css("#activity-table").await;
    // The actor filter is a list of names, not an id box.
    let me = admin_id(&app).await;
    b.wait_css(&format!("select[name=actor_id] option[value='{me}']"))
        .await
        .click()
        .await
        .unwrap();
    // A dropdown applies itself as soon as it changes.
    b.wait_xpath("//a[normalize-space()='Clear filters']").await;
    assert!(b.path().await.contains(&format!("actor_id={me}")));
    let rows = b.count("#activity-table tbody tr[data-id]").await;
    assert!(rows >= 1);
    let actions = b
        .wait_css("#activity-table tbody")
        .await
        .text()
        .await
        .unwrap();
    assert!(actions.contains("service_account.suspend"), "{actions}");
    assert!(!actions.contains("service_account.create"), "{actions}");
    // Expand the row: the changed fields and the user agent.
    let row = b
        .wait_xpath("//tr[td[contains(., 'service_account.suspend')]]")
        .await;
    row.find(Locator::Css("summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let details = row
        .find(Locator::Css("details[open]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(details.to_lowercase().contains("suspended"), "{details}");
    let ua = row
        .find(Locator::Css("dd.user-agent"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ua.contains("Chrome"), "{ua}");
    // The actor cell links to the same filter.
    b.button("Clear filters").await.click().await.unwrap();
    b.wait_xpath("//tr[td[contains(., 'service_account.create')]]")
        .await;
    b.wait_xpath(
        "//tr[td[contains(., 'service_account.suspend')]]//a[contains(@class,'actor-link')]",
    )
    .await
    .click()
    .await
    .unwrap();
    b.wait_xpath("//a[normalize-space()='Clear filters']").await;
    assert!(b.path().await.contains(&format!("actor_id={me}")));
    let listed = b
        .wait_css("#activity-table tbody")
        .await
        .text()
        .await
        .unwrap();
    assert!(!listed.contains("service_account.create"), "{listed}");
    b.screenshot().await;
}
both_backends!(activity_filter_and_expand);

async fn key_filters(app: TestApp) {
    let Some(b) = browser(&app, "key-filters").await else {
        return;
    };
    let owner = admin_id(&app).await;
    let personal = |name: &str, roles: &[&str], tags: &[&str]| CreateApiKey {
        name: name.into(),
        description: Some(format!("{name} description")),
        tags: Some(tags.iter().map(|t| t.to_string()).collect()),
        roles: Some(roles.iter().map(|r| r.to_string()).collect()),
        owner: Some(OwnerRef {
            kind: PrincipalKind::User,
            id: owner.clone(),
        }),
        expires_in_days: Some(30),
        ..Default::default()
    };
    let (revoked, _) =
        make_key_secret(&app, personal("old-importer", &["read-only"], &["batch"])).await;
    app.state
        .service
        .revoke_api_key(&system(&app), &Id::from_trusted(revoked.clone()))
        .await
        .unwrap();
    let (adminkey, _) = make_key_secret(&app, personal("ops-console", &["admin"], &["ops"])).await;
    let (search, _) = make_key_secret(
        &app,
        personal("invoice-mailer", &["read-only"], &["billing"]),
    )
    .await;
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go("/api-keys").await;
    assert_eq!(b.count("#keys-table tbody tr[data-id]").await, 3);
    // Status.
    b.wait_css("select[name=status] option[value='revoked']")
        .await
        .click()
        .await
        .unwrap();
    // A dropdown applies itself as soon as it changes.
    b.wait_xpath("//a[normalize-space()='Clear filters']").await;
    assert!(b.path().await.contains("status=revoked"));
    assert_eq!(b.count("#keys-table tbody tr[data-id]").await, 1);
    b.wait_css(&format!("tr[data-id='{revoked}']")).await;
    // Clear.
    b.button("Clear filters").await.click().await.unwrap();
    b.wait_css("#keys-table").await;
    assert_eq!(b.path().await, "/api-keys");
    assert_eq!(b.count("#keys-table tbody tr[data-id]").await, 3);
    // Role.
    b.wait_css("select[name=role] option[value='admin']")
        .await
        .click()
        .await
        .unwrap();
    // A dropdown applies itself as soon as it changes.
    b.wait_xpath("//a[normalize-space()='Clear filters']").await;
    assert_eq!(b.count("#keys-table tbody tr[data-id]").await, 1);
    b.wait_css(&format!("tr[data-id='{adminkey}']")).await;
    // Text search (name or description), with the role filter cleared.
    b.go("/api-keys?q=invoice").await;
    b.wait_css("#keys-table").await;
    assert_eq!(b.count("#keys-table tbody tr[data-id]").await, 1);
    b.wait_css(&format!("tr[data-id='{search}']")).await;
    assert_eq!(
        b.wait_css("[name=q]")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("invoice")
    );
    // Nothing matches: an empty state with a way out.
    b.go("/api-keys?q=nothing-like-this").await;
    b.wait_xpath("//h3[normalize-space()='No API keys match these filters']")
        .await;
    b.screenshot().await;
}
both_backends!(key_filters);

async fn regenerate_verifies_and_grace(app: TestApp) {
    let Some(b) = browser(&app, "regenerate-grace").await else {
        return;
    };
    let owner = admin_id(&app).await;
    let (id, old) = make_key_secret(
        &app,
        CreateApiKey {
            name: "checkout-api".into(),
            roles: Some(vec!["read-only".into()]),
            owner: Some(OwnerRef {
                kind: PrincipalKind::User,
                id: owner,
            }),
            ..Default::default()
        },
    )
    .await;
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go(&format!("/api-keys/{id}/regenerate")).await;
    b.wait_css("input[name=expiration][value='never']")
        .await
        .click()
        .await
        .unwrap();
    b.wait_css("select[name=grace_period_seconds] option[value='86400']")
        .await
        .click()
        .await
        .unwrap();
    b.button("Regenerate key").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='API key regenerated']")
        .await;
    let new = b
        .wait_css("[data-secret]")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(new, old);
    let v = verify(&app, &new).await;
    assert_eq!(v["valid"], true, "{v}");
    let v = verify(&app, &old).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["rotating"], true, "{v}");
    b.button("View key details").await.click().await.unwrap();
    b.wait_xpath("//dt[normalize-space()='Previous key valid until']")
        .await;
    // Revoke: REVOKED, and neither secret verifies.
    b.button("Revoke").await.click().await.unwrap();
    b.confirm().await;
    b.wait_xpath("//*[contains(@class,'badge') and normalize-space()='Revoked']")
        .await;
    assert_eq!(verify(&app, &new).await["valid"], false);
    b.screenshot().await;
}
both_backends!(regenerate_verifies_and_grace);

async fn suspend_reactivate_archive(app: TestApp) {
    let Some(b) = browser(&app, "suspend-archive").await else {
        return;
    };
    let sa = make_account(&app, "fleet-telemetry").await;
    let (key_id, key) = make_key_secret(
        &app,
        CreateApiKey {
            name: "fleet-telemetry-key".into(),
            roles: Some(vec!["read-only".into()]),
            owner: Some(OwnerRef {
                kind: PrincipalKind::ServiceAccount,
                id: sa.clone(),
            }),
            ..Default::default()
        },
    )
    .await;
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go(&format!("/settings/api-access/{sa}")).await;
    b.button("Suspend").await.click().await.unwrap();
    let msg = b.confirm().await;
    assert!(msg.contains("fleet-telemetry"), "{msg}");
    b.wait_xpath("//*[starts-with(normalize-space(), 'Service account suspended')]")
        .await;
    assert_eq!(verify(&app, &key).await["valid"], false);
    b.button("Reactivate").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Service account reactivated.']")
        .await;
    assert_eq!(verify(&app, &key).await["valid"], true);
    b.fill("name", "telemetry-pusher").await;
    b.button("Create credential").await.click().await.unwrap();
    b.wait_xpath("//*[normalize-space()='Credential created']")
        .await;
    b.button("Archive").await.click().await.unwrap();
    b.confirm().await;
    b.wait_xpath("//*[starts-with(normalize-space(), 'Service account archived')]")
        .await;
    // Its key and credential show as revoked; nothing can be added any more.
    b.wait_xpath(&format!(
        "//tr[@data-id='{key_id}']//*[contains(@class,'badge') and normalize-space()='Revoked']"
    ))
    .await;
    b.wait_xpath("//table[@id='credentials-table']//*[contains(@class,'badge') and normalize-space()='Revoked']")
        .await;
    assert_eq!(verify(&app, &key).await["valid"], false);
    let text = b.body_text().await;
    assert!(!text.contains("Create credential") && !text.contains("Create API key"));
    b.screenshot().await;
}
both_backends!(suspend_reactivate_archive);

async fn grants_and_user_edit(app: TestApp) {
    let Some(b) = browser(&app, "grants").await else {
        return;
    };
    // An admin may edit users but cannot grant super-admin.
    make_user(&app, "ops@example.com", &["admin"]).await;
    let boss = make_user(&app, "boss@example.com", &["super-admin"]).await;
    b.sign_in("ops@example.com", "user password 1234").await;
    b.go("/settings/api-access/new").await;
    b.wait_css("input[name=roles][value='read-only']").await;
    assert_eq!(b.count("input[name=roles][value='super-admin']").await, 0);

    // A super-admin's role is shown locked; changing anything of a user who holds
    // permissions the admin lacks (even only the display name) is refused in words.
    b.go(&format!("/users/{boss}/edit")).await;
    let locked = b
        .wait_css("input[type=checkbox][name=roles][value='super-admin']")
        .await;
    assert_eq!(
        locked.prop("disabled").await.unwrap().as_deref(),
        Some("true")
    );
    assert_eq!(
        locked.prop("checked").await.unwrap().as_deref(),
        Some("true")
    );
    b.fill("display_name", "The Boss").await;
    b.button("Save changes").await.click().await.unwrap();
    b.wait_xpath("//*[contains(normalize-space(), \"You can't change boss@example.com\")]")
        .await;
    b.go("/users").await;
    let row = b
        .wait_css(&format!("tr[data-id='{boss}']"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !row.contains("The Boss") && row.contains("super-admin"),
        "{row}"
    );

    // A forged grant comes back as a message at the roles, values kept, not a 403 page.
    let (client, csrf) = console_client(&app, "ops@example.com", "user password 1234").await;
    let res = client
        .post(app.url("/settings/api-access/new"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "escalator"),
            ("roles", "super-admin"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("id=\"e-roles\""), "{html}");
    assert!(html.contains("You can&#39;t grant") || html.contains("You can't grant"));
    assert!(html.contains("value=\"escalator\""));
    b.screenshot().await;
}
both_backends!(grants_and_user_edit);

async fn read_only_sees_no_controls(app: TestApp) {
    let Some(b) = browser(&app, "read-only-detail").await else {
        return;
    };
    let sa = make_account(&app, "reporting-bot").await;
    let key = make_key(&app, "visible-key", &[]).await;
    make_user(&app, "viewer@example.com", &["read-only"]).await;
    b.sign_in("viewer@example.com", "user password 1234").await;
    // The service account page: nothing that changes it.
    b.go(&format!("/settings/api-access/{sa}")).await;
    b.wait_xpath("//h1[normalize-space()='reporting-bot']")
        .await;
    let text = b.wait_css("main").await.text().await.unwrap();
    for word in [
        "Suspend",
        "Archive",
        "Create credential",
        "Create API key",
        "Delete",
        "Edit",
    ] {
        assert!(!text.contains(word), "{word} shown to a read-only user");
    }
    assert_eq!(b.count("main form[method=post]").await, 0);
    // A key's details: no Edit, Regenerate, Revoke, Delete.
    b.go(&format!("/api-keys/{key}")).await;
    b.wait_css("#key-details").await;
    let text = b.wait_css("main").await.text().await.unwrap();
    for word in ["Edit", "Regenerate", "Revoke", "Delete"] {
        assert!(!text.contains(word), "{word} shown to a read-only user");
    }
    // Roles: no Create role. Service accounts: no Create; the audit log (read-only holds
    // audit.view) is its own menu entry.
    b.go("/roles").await;
    b.wait_css("#roles-table").await;
    assert!(!b.body_text().await.contains("Create role"));
    b.go("/settings/api-access").await;
    b.wait_xpath("//h1[normalize-space()='Service accounts']")
        .await;
    assert!(!b.body_text().await.contains("Create Service Account"));
    // /users: a 403 page that keeps the navigation.
    b.go("/users").await;
    b.wait_xpath("//h1[normalize-space()=\"You don't have access to this page\"]")
        .await;
    b.wait_css("nav.sidebar").await;
    b.screenshot().await;
}
both_backends!(read_only_sees_no_controls);

async fn problem_pages_and_fallbacks(app: TestApp) {
    // Signed out: an HTML 404 with the console's headers; the API keeps JSON.
    let res = app.http.get(app.url("/no-such-page")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert!(res.headers().contains_key("content-security-policy"));
    assert!(res.text().await.unwrap().contains("Page not found"));
    let res = app
        .http
        .get(app.url("/v1/no-such-thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "route_not_found", "{body}");
    let res = app.http.delete(app.url("/api-keys")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    let res = app
        .http
        .get(app.url("/v1/keys/verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("json"));

    // Signed in: 404, 403 and the expired-form page keep the navigation.
    make_user(&app, "viewer@example.com", &["read-only"]).await;
    let (client, _) = console_client(&app, "viewer@example.com", "user password 1234").await;
    for (path, status) in [("/no-such-page", 404), ("/users", 403)] {
        let res = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), status, "{path}");
        assert_eq!(res.headers()["x-frame-options"], "DENY");
        let html = res.text().await.unwrap();
        assert!(html.contains("class=\"sidebar\""), "{path}: {html}");
    }
    let res = client
        .post(app.url("/api-keys/new"))
        .form(&[("csrf_token", "stale")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let html = res.text().await.unwrap();
    assert!(html.contains("This form has expired") && html.contains("class=\"sidebar\""));
}
both_backends!(problem_pages_and_fallbacks);

async fn session_cookie_is_a_browser_session(app: TestApp) {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client.get(app.url("/login")).send().await.unwrap();
    let token = csrf_of(&page.text().await.unwrap());
    let res = client
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("email", ADMIN_EMAIL),
            ("password", ADMIN_PASSWORD),
            ("next", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| !c.starts_with("kh_login_csrf"))
        .expect("session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("max-age"), "{cookie}");
    // Active use keeps the session past 12 hours: the idle timeout slides.
    for _ in 0..3 {
        app.clock.advance(chrono::Duration::hours(6));
        let res = client.get(app.url("/api-keys")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
}
both_backends!(session_cookie_is_a_browser_session);

async fn dates_in_the_browsers_zone(app: TestApp) {
    let sa = make_account(&app, "tz-check").await;
    let (client, csrf) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    // A browser ten hours ahead of UTC (getTimezoneOffset = -600) picks 2027-01-31.
    let res = client
        .post(app.url(&format!("/settings/api-access/{sa}/credentials")))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "sydney"),
            ("expires_at", "2027-01-31"),
            ("tz_offset", "-600"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let creds = app
        .state
        .service
        .list_credentials(&system(&app), &Id::from_trusted(sa.clone()))
        .await
        .unwrap();
    let t = creds[0].expires_at.unwrap();
    assert_eq!(keyhaven_core::time::rfc3339(&t), "2027-01-31T13:59:59Z");
    // The form tells the browser to fill the offset.
    let html = client
        .get(app.url(&format!("/settings/api-access/{sa}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("name=\"tz_offset\""));
}
both_backends!(dates_in_the_browsers_zone);

async fn lists_page_and_search(app: TestApp) {
    for i in 0..52 {
        make_account(&app, &format!("worker-{i:02}")).await;
    }
    make_user(&app, "zed@example.com", &["read-only"]).await;
    let (client, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let html = client
        .get(app.url("/settings/api-access"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(html.matches("<tr data-id=").count(), 50);
    let at = html.find("rel=\"next\" href=\"").expect("a Next page link") + 17;
    let next = html[at..].split('"').next().unwrap().replace("&amp;", "&");
    let html = client
        .get(app.url(&next))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(html.matches("<tr data-id=").count(), 2);
    assert!(html.contains("First page") && !html.contains("rel=\"next\""));
    // Users: a search box filtering by email or name.
    let html = client
        .get(app.url("/users?q=zed"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("name=\"q\"") && html.contains("value=\"zed\""));
    assert_eq!(html.matches("<tr data-id=").count(), 1);
    assert!(html.contains("zed@example.com"));
}
both_backends!(lists_page_and_search);

async fn audit_only_and_manage_only(app: TestApp) {
    // Only audit.view: the menu's "Audit log" leads to the activity; no "Service accounts"
    // entry (issue 14: the audit log has its own entry, the other is named for what it is).
    make_role(&app, "auditor", &["audit.view"]).await;
    make_user(&app, "audit@example.com", &["auditor"]).await;
    let (client, _) = console_client(&app, "audit@example.com", "user password 1234").await;
    let html = client
        .get(app.url("/settings/api-access?tab=activity"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("href=\"/settings/api-access?tab=activity\""));
    assert!(html.contains("id=\"activity-table\""));
    assert!(html.contains("<h1>Audit log</h1>"), "{html}");
    assert!(!html.contains(">Service accounts<") && !html.contains("API Access"));
    let (admin, _) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let html = admin
        .get(app.url("/settings/api-access"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(">Service accounts<") && html.contains(">Audit log<"),
        "{html}"
    );
    assert!(html.contains("<h1>Service accounts</h1>"), "{html}");
    // Only shared_secret.manage: no false "no secret yet", and the button says Rotate.
    app.state
        .service
        .rotate_shared_secret(&system(&app))
        .await
        .unwrap();
    make_role(&app, "secret-rotator", &["shared_secret.manage"]).await;
    make_user(&app, "rotate@example.com", &["secret-rotator"]).await;
    let (client, _) = console_client(&app, "rotate@example.com", "user password 1234").await;
    let html = client
        .get(app.url("/settings/shared-secret"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("No shared secret yet"), "{html}");
    assert!(!html.contains("Create shared secret"));
    assert!(html.contains(">Rotate<") && !html.contains(">Reveal<"));
    // Friendly words for a taken name.
    let (client, csrf) = console_client(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    make_key(&app, "taken-name", &[]).await;
    let res = client
        .post(app.url("/api-keys/new"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "taken-name"),
            ("expiration", "30"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("That name is already used in your organization."),
        "{html}"
    );
    assert!(html.contains("aria-invalid=\"true\""));
}
both_backends!(audit_only_and_manage_only);

/// Regenerates the README's screenshots under docs/screenshots from seeded data:
/// `cargo test -p keyhaven-server --test api -- --ignored readme_screenshots`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/screenshots; run by hand when the console's look changes"]
async fn readme_screenshots() {
    let app = TestApp::spawn(keyhaven_store::testing::TestDb::sqlite().await).await;
    let Some(b) = browser(&app, "readme").await else {
        return;
    };
    let sys = Caller::system(Id::from_trusted(app.org_id.clone()), "keyhaven CLI");
    let admin = admin_id(&app).await;
    let payments = app
        .state
        .service
        .create_service_account(
            &sys,
            CreateServiceAccount {
                ratelimits: None,
                name: "payments-service".into(),
                description: Some("Charges cards and issues refunds for the web shop".into()),
                roles: Some(vec!["read-only".into()]),
                external_id: None,
            },
        )
        .await
        .unwrap();
    make_account(&app, "warehouse-sync").await;
    let key =
        |name: &str, desc: &str, tags: &[&str], scopes: &[&str], sa: Option<&str>, days: i64| {
            CreateApiKey {
                name: name.into(),
                description: Some(desc.into()),
                tags: Some(tags.iter().map(|t| t.to_string()).collect()),
                roles: Some(vec!["read-only".into()]),
                scopes: Some(scopes.iter().map(|t| t.to_string()).collect()),
                owner: Some(match sa {
                    Some(id) => OwnerRef {
                        kind: PrincipalKind::ServiceAccount,
                        id: id.into(),
                    },
                    None => OwnerRef {
                        kind: PrincipalKind::User,
                        id: admin.clone(),
                    },
                }),
                expires_in_days: Some(days),
                ..Default::default()
            }
        };
    let pid = payments.id.to_string();
    let (checkout, checkout_secret) = make_key_secret(
        &app,
        key(
            "checkout-api",
            "Takes card payments at checkout",
            &["payments", "production"],
            &["payments:write", "orders:read"],
            Some(&pid),
            90,
        ),
    )
    .await;
    let (_, refunds_secret) = make_key_secret(
        &app,
        key(
            "refunds-worker",
            "Issues refunds from the support tool",
            &["payments", "production"],
            &["payments:refund"],
            Some(&pid),
            60,
        ),
    )
    .await;
    let (_, reports_secret) = make_key_secret(
        &app,
        key(
            "finance-reports",
            "Nightly revenue export",
            &["finance"],
            &["reports:read"],
            None,
            30,
        ),
    )
    .await;
    make_key_secret(
        &app,
        key(
            "staging-smoke-tests",
            "CI smoke tests against staging",
            &["staging", "ci"],
            &["orders:read"],
            None,
            30,
        ),
    )
    .await;
    let (old, _) = make_key_secret(
        &app,
        key(
            "legacy-importer",
            "Replaced by warehouse-sync",
            &["legacy"],
            &[],
            None,
            90,
        ),
    )
    .await;
    app.state
        .service
        .revoke_api_key(&sys, &Id::from_trusted(old))
        .await
        .unwrap();
    app.state
        .service
        .create_credential(
            &sys,
            &payments.id,
            keyhaven_service::credentials::CreateCredential {
                name: "payments-worker".into(),
                description: Some("Token exchange for the payments worker".into()),
                expires_at: None,
            },
        )
        .await
        .unwrap();
    // Three weeks of traffic, a few failures among it.
    for day in 0..21i64 {
        let calls = 3 + (day * 7) % 11;
        for _ in 0..calls {
            verify(&app, &checkout_secret).await;
        }
        for _ in 0..(day % 4) {
            verify(&app, &refunds_secret).await;
        }
        if day % 5 == 0 {
            verify(&app, &reports_secret).await;
            app.http
                .post(app.url("/v1/keys/verify"))
                .json(&serde_json::json!({ "key": checkout_secret, "permissions": ["admin:everything"] }))
                .send()
                .await
                .unwrap();
        }
        app.state.service.verifier().flush_usage().await.unwrap();
        app.clock.advance(chrono::Duration::days(1));
    }
    app.clock
        .advance(chrono::Duration::minutes(-(24 * 60 - 20)));
    verify(&app, &checkout_secret).await;
    app.state.service.verifier().flush_usage().await.unwrap();

    b.client.set_window_size(1366, 1000).await.unwrap();
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.go("/api-keys").await;
    b.wait_css("#keys-table").await;
    b.doc_screenshot("api-keys").await;
    b.go(&format!("/api-keys/{checkout}")).await;
    b.wait_css("svg.chart").await;
    b.doc_screenshot("api-key-details").await;
    b.go(&format!("/settings/api-access/{pid}")).await;
    b.wait_css("#credentials-table").await;
    b.doc_screenshot("service-account").await;
    b.screenshot().await;
}

async fn role_edit_by_a_partial_manager(app: TestApp) {
    // Someone who manages roles but does not hold users.delete can still change the
    // description of a role that grants it; the permission stays.
    make_role(&app, "role-keeper", &["roles.view", "roles.manage"]).await;
    make_role(&app, "offboarding", &["users.view", "users.delete"]).await;
    make_user(&app, "keeper@example.com", &["role-keeper"]).await;
    let (client, csrf) = console_client(&app, "keeper@example.com", "user password 1234").await;
    let html = client
        .get(app.url("/roles/offboarding/edit"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<legend>Permissions</legend>"));
    // The permission it cannot grant is shown ticked and disabled, and kept.
    assert!(
        html.contains("value=\"users.delete\" checked disabled"),
        "{html}"
    );
    let mut form = vec![
        ("csrf_token", csrf.as_str()),
        ("description", "Removes leavers"),
        ("key_name_pattern", ""),
        ("scopes", ""),
    ];
    form.extend([
        ("permissions", "users.view"),
        ("permissions", "users.delete"),
    ]);
    let res = client
        .post(app.url("/roles/offboarding/edit"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let r = app
        .state
        .service
        .get_role(&system(&app), "offboarding")
        .await
        .unwrap();
    assert_eq!(r.description, "Removes leavers");
    assert!(r.permissions.contains(&"users.delete".to_string()));
    // Adding a permission it does not hold: a message at the checklist, not a 403 page.
    form.push(("permissions", "users.create"));
    let res = client
        .post(app.url("/roles/offboarding/edit"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("id=\"e-permissions\""), "{html}");
    assert!(html.contains("class=\"sidebar\""));
}
both_backends!(role_edit_by_a_partial_manager);

mod analytics;
mod audit_sinks;
mod import;
mod rest;
mod safety;
mod usage;
