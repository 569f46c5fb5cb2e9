//! The admin console in a real headless Chromium, driven over WebDriver (chromedriver)
//! against a server started by the test, on SQLite and PostgreSQL.
//!
//! Without `chromium` and `chromedriver` on the machine the tests print a loud SKIPPED
//! line and pass — except under `CI=true`, where they fail.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use keyhaven_core::id::Id;
use keyhaven_core::principal::PrincipalKind;
use keyhaven_server::service::api_keys::{CreateApiKey, OwnerRef};
use keyhaven_server::service::users::CreateUser;
use keyhaven_server::service::Caller;

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
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("chromium and chromedriver are required under CI=true (apt-get install chromium chromium-driver)");
        }
        eprintln!("\n!!!!! SKIPPED console browser test {test}: chromium and/or chromedriver not installed !!!!!\n");
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
    let backend = format!("{:?}", app.state.service.store.backend()).to_lowercase();
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
    let mut tx = app.state.service.store.read().await.unwrap();
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
    let (k, _) = app
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
    b.wait_css("svg.chart").await;
    assert_eq!(b.count("svg.chart g.day").await, 30);
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
