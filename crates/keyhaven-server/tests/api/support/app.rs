//! Start the real application on a random port, on SQLite or PostgreSQL, with an
//! injected clock, and talk to it over HTTP.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use chrono::{Duration, TimeZone, Utc};
use keyhaven_core::time::{Clock, Timestamp};
use keyhaven_server::app::AppState;
use keyhaven_service::config::Settings;
use keyhaven_service::{Caller, Service};
use keyhaven_store::testing::TestDb;
use serde_json::{json, Value};

/// A clock the test moves by hand.
pub struct TestClock(Mutex<Timestamp>);

impl TestClock {
    pub fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += d;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// A running application.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub state: AppState,
    pub clock: Arc<TestClock>,
    pub org_id: String,
    pub db: TestDb,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn(db: TestDb) -> TestApp {
        Self::spawn_with(db, |_| {}).await
    }

    /// [`TestApp::spawn`] with settings changed by `change` (e.g. `KEYHAVEN_OUTBOUND_ALLOWED_CIDRS`
    /// for webhook receivers on 127.0.0.1: see [`local_receivers`]).
    pub async fn spawn_with(db: TestDb, change: impl FnOnce(&mut Settings)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings {
            data_dir: Some(dir.path().to_path_buf()),
            database_url: Some(db.url.clone()),
            ..Default::default()
        };
        change(&mut settings);
        let config = settings.resolve().unwrap();
        let clock = Arc::new(TestClock(Mutex::new(
            Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap(),
        )));
        let service = Service::new(db.store.clone(), clock.clone(), config.master_key.clone())
            .with_outbound_allowed(config.outbound_allowed_cidrs.clone());
        let (org, _) = service
            .create_organization("Acme", ADMIN_EMAIL, ADMIN_PASSWORD)
            .await
            .unwrap();
        let state = AppState {
            service,
            config: Arc::new(config),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Served the way `keyhaven serve` serves: the verification hot path included.
        let serving = state.clone();
        tokio::spawn(async move {
            keyhaven_server::app::serve_on(listener, serving, std::future::pending())
                .await
                .unwrap();
        });
        TestApp {
            addr,
            base: format!("http://{addr}"),
            state,
            clock,
            org_id: org.id.to_string(),
            db,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A client with a cookie jar, signed in; returns it with the CSRF token.
    pub async fn sign_in(&self, email: &str, password: &str) -> (reqwest::Client, String) {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let res = client
            .post(self.url("/v1/session"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "sign in as {email}");
        let body: Value = res.json().await.unwrap();
        (client, body["csrf_token"].as_str().unwrap().to_string())
    }

    /// Creates a key for the organization's super-admin through the service layer.
    pub async fn admin_key(&self, roles: &[&str]) -> String {
        let caller = Caller::system(
            keyhaven_core::id::Id::from_trusted(self.org_id.clone()),
            "test",
        );
        let mut tx = self.db.store.read().await.unwrap();
        let admin = tx.user_by_email(ADMIN_EMAIL).await.unwrap().unwrap();
        drop(tx);
        let (_, _, secret) = self
            .state
            .service
            .create_api_key(
                &caller,
                keyhaven_service::api_keys::CreateApiKey {
                    name: format!("key-{}", rand_suffix()),
                    roles: Some(roles.iter().map(|r| r.to_string()).collect()),
                    owner: Some(keyhaven_service::api_keys::OwnerRef {
                        kind: keyhaven_core::principal::PrincipalKind::User,
                        id: admin.id.to_string(),
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        secret.expose().to_string()
    }
}

impl TestApp {
    /// A second organization named `name` and a key of its super-admin with `roles`:
    /// `(organization id, key)`.
    pub async fn other_org_key(&self, name: &str, roles: &[&str]) -> (String, String) {
        let email = format!("owner@{}.example", name.to_lowercase());
        let (org, _) = self
            .state
            .service
            .create_organization(name, &email, "correct horse battery staple")
            .await
            .unwrap();
        let mut tx = self.db.store.read().await.unwrap();
        let owner = tx.user_by_email(&email).await.unwrap().unwrap();
        drop(tx);
        let (_, _, secret) = self
            .state
            .service
            .create_api_key(
                &Caller::system(org.id.clone(), "test"),
                keyhaven_service::api_keys::CreateApiKey {
                    name: format!("{name}-admin"),
                    roles: Some(roles.iter().map(|r| r.to_string()).collect()),
                    owner: Some(keyhaven_service::api_keys::OwnerRef {
                        kind: keyhaven_core::principal::PrincipalKind::User,
                        id: owner.id.to_string(),
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        (org.id.to_string(), secret.expose().to_string())
    }
}

/// Settings for tests whose webhook receivers listen on this machine: loopback is an
/// internal range, refused unless the operator allows it.
pub fn local_receivers(s: &mut Settings) {
    s.serve.outbound_allowed_cidrs = Some("127.0.0.0/8,::1/128".into());
}

pub fn rand_suffix() -> String {
    use rand::Rng;
    format!("{:08x}", rand::thread_rng().gen::<u32>())
}

/// Runs a test body on SQLite and on PostgreSQL; `both_backends!(name, settings_fn)`
/// spawns the app with [`TestApp::spawn_with`]`(db, settings_fn)`.
macro_rules! both_backends {
    ($name:ident, $settings:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = keyhaven_store::testing::TestDb::sqlite().await;
                super::$name($crate::support::TestApp::spawn_with(db, $settings).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = keyhaven_store::testing::TestDb::postgres(stringify!($name)).await
                else {
                    return;
                };
                super::$name($crate::support::TestApp::spawn_with(db, $settings).await).await;
            }
        }
    };
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = keyhaven_store::testing::TestDb::sqlite().await;
                super::$name($crate::support::TestApp::spawn(db).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = keyhaven_store::testing::TestDb::postgres(stringify!($name)).await
                else {
                    return;
                };
                super::$name($crate::support::TestApp::spawn(db).await).await;
            }
        }
    };
}
