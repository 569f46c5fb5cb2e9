//! What every use-case test stands on: a fresh database on one backend, a service with
//! a clock the test moves by hand, the organization "Acme" with its first super-admin,
//! and helpers to make callers, keys and read the audit log through the use cases.

use std::sync::{Arc, Mutex};

use chrono::{Duration, TimeZone, Utc};
use keyhaven_core::api_key::ApiKey;
use keyhaven_core::audit::{AuditEntry, Outcome};
use keyhaven_core::key_format::Secret;
use keyhaven_core::organization::Organization;
use keyhaven_core::principal::PrincipalKind;
use keyhaven_core::service_account::ServiceAccount;
use keyhaven_core::time::{Clock, Timestamp};
use keyhaven_core::user::User;
use keyhaven_core::DomainError;
use keyhaven_service::api_keys::{CreateApiKey, OwnerRef};
use keyhaven_service::secrets::MasterKey;
use keyhaven_service::service_accounts::CreateServiceAccount;
use keyhaven_service::users::CreateUser;
use keyhaven_service::verify::Code;
use keyhaven_service::{Caller, RequestContext, Service, ServiceError, ServiceResult};
use keyhaven_store::testing::TestDb;
use keyhaven_store::{AuditFilter, Page};

pub const ADMIN_EMAIL: &str = "admin@example.com";
/// Every user's password in these tests.
pub const PASSWORD: &str = "correct horse battery staple";
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A clock that stands still until the test moves it.
pub struct TestClock(Mutex<Timestamp>);

impl TestClock {
    pub fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

/// One test's world.
pub struct Env {
    pub db: TestDb,
    pub service: Service,
    pub clock: Arc<TestClock>,
    pub org: Organization,
    /// The organization's first (and, until a test adds one, only) super-admin.
    pub admin: User,
    /// Keyhaven itself acting in the organization, with every permission.
    pub system: Caller,
}

impl Env {
    pub async fn sqlite() -> Env {
        Env::on(TestDb::sqlite().await).await
    }

    /// `None` (after the store's loud SKIPPED line) when PostgreSQL is unreachable
    /// outside CI; under `CI=true` the store's helper fails the test instead.
    pub async fn postgres(test: &str) -> Option<Env> {
        Some(Env::on(TestDb::postgres(test).await?).await)
    }

    async fn on(db: TestDb) -> Env {
        let clock = Arc::new(TestClock(Mutex::new(
            Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap(),
        )));
        let master_key = MasterKey::from_base64(MASTER_KEY).unwrap();
        let service = Service::new(db.store.clone(), clock.clone(), master_key);
        let (org, admin) = service
            .create_organization("Acme", ADMIN_EMAIL, PASSWORD)
            .await
            .unwrap();
        let system = Caller::system(org.id.clone(), "test");
        Env {
            db,
            service,
            clock,
            org,
            admin,
            system,
        }
    }

    /// After a test that passed: the audit chain it wrote is intact; then the pool
    /// closes on the test's own runtime.
    pub async fn finish(self) {
        let reports = self
            .service
            .verify_audit_chains(Some(&self.org.id))
            .await
            .unwrap();
        assert_eq!(reports.len(), 1);
        assert!(
            reports[0].broken.is_none(),
            "audit chain broken: {:?}",
            reports[0].broken
        );
        self.db.store.close().await;
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Another node on the same database and clock: a service with its own cache,
    /// meter and job state, as a second server process would have.
    pub fn second_node(&self) -> Service {
        Service::new(
            self.db.store.clone(),
            self.clock.clone(),
            MasterKey::from_base64(MASTER_KEY).unwrap(),
        )
    }

    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    // ----- callers -------------------------------------------------------------------

    /// Signs `email` in and resolves the session, as the console does: a caller holding
    /// exactly the permissions of the user's roles.
    pub async fn sign_in(&self, email: &str) -> Caller {
        let signed = self
            .service
            .sign_in(email, PASSWORD, RequestContext::default())
            .await
            .unwrap();
        let (caller, _) = self
            .service
            .authenticate_session(&signed.token, RequestContext::default())
            .await
            .unwrap();
        caller
    }

    /// A new user with `roles` (created by the system), signed in.
    pub async fn user(&self, email: &str, roles: &[&str]) -> (User, Caller) {
        let u = self
            .service
            .create_user(
                &self.system,
                CreateUser {
                    email: email.to_string(),
                    display_name: email.split('@').next().unwrap().to_string(),
                    password: PASSWORD.into(),
                    roles: strings(roles),
                },
            )
            .await
            .unwrap();
        let caller = self.sign_in(email).await;
        assert_eq!(caller.user_id(), Some(u.id.clone()));
        (u, caller)
    }

    /// The signed-in first super-admin.
    pub async fn admin_caller(&self) -> Caller {
        self.sign_in(ADMIN_EMAIL).await
    }

    // ----- service accounts and keys -------------------------------------------------

    pub async fn service_account(&self, name: &str, roles: &[&str]) -> ServiceAccount {
        self.service
            .create_service_account(
                &self.system,
                CreateServiceAccount {
                    ratelimits: None,
                    name: name.to_string(),
                    description: None,
                    roles: Some(strings(roles)),
                    external_id: None,
                },
            )
            .await
            .unwrap()
    }

    /// A key owned by service account `sa`, made by the system with `input` (its
    /// owner filled in).
    pub async fn sa_key(&self, sa: &ServiceAccount, input: CreateApiKey) -> (ApiKey, Secret) {
        let (k, _, secret) = self
            .service
            .create_api_key(
                &self.system,
                CreateApiKey {
                    owner: Some(owner(sa)),
                    ..input
                },
            )
            .await
            .unwrap();
        (k, secret)
    }

    /// A plain key called `name` of a fresh service account.
    pub async fn simple_key(&self, name: &str) -> (ApiKey, Secret) {
        let sa = self.service_account(&format!("{name}-owner"), &[]).await;
        self.sa_key(&sa, named(name)).await
    }

    /// The verification answer for `secret`, requiring `required`.
    pub async fn verify_with(&self, secret: &Secret, required: &[&str]) -> Code {
        self.service
            .verifier()
            .verify(secret.expose(), required, None)
            .await
            .unwrap()
            .code
    }

    /// The verification answer for `secret`, requiring nothing.
    pub async fn verify(&self, secret: &Secret) -> Code {
        self.verify_with(secret, &[]).await
    }

    // ----- audit ---------------------------------------------------------------------

    /// The whole audit log, oldest first (read through the `audit_log` use case).
    pub async fn audit(&self) -> Vec<AuditEntry> {
        let l = self
            .service
            .list_audit_events(
                &self.system,
                &AuditFilter::default(),
                &Page {
                    limit: 1000,
                    cursor: None,
                },
            )
            .await
            .unwrap();
        assert!(!l.has_more, "more audit entries than a test should write");
        let mut items = l.items;
        items.reverse();
        items
    }

    /// How long the audit log is now; pass to [`Env::audited`] after the action.
    pub async fn mark(&self) -> usize {
        self.audit().await.len()
    }

    /// Asserts that exactly the entries `expected` (action, outcome), in that order,
    /// were appended since `mark`, and returns them.
    pub async fn audited(&self, mark: usize, expected: &[(&str, Outcome)]) -> Vec<AuditEntry> {
        let log = self.audit().await;
        let new: Vec<AuditEntry> = log.into_iter().skip(mark).collect();
        let got: Vec<(String, Outcome)> = new
            .iter()
            .map(|e| (e.draft.action.clone(), e.draft.outcome))
            .collect();
        let want: Vec<(String, Outcome)> =
            expected.iter().map(|(a, o)| (a.to_string(), *o)).collect();
        assert_eq!(got, want, "audit entries written since the mark");
        new
    }

    /// Asserts that exactly one successful `action` about `target_id` was appended
    /// since `mark`, by `by`, and returns it.
    pub async fn audited_one(
        &self,
        mark: usize,
        action: &str,
        by: &Caller,
        target_id: &str,
    ) -> AuditEntry {
        let e = self
            .audited(mark, &[(action, Outcome::Success)])
            .await
            .remove(0);
        assert_eq!(e.draft.actor, by.principal, "actor of {action}");
        assert_eq!(
            e.draft.target.as_ref().map(|t| t.id.as_str()),
            Some(target_id),
            "target of {action}"
        );
        e
    }

    /// Asserts that exactly one denied `action` by `by` was appended since `mark`,
    /// naming `missing` as the missing permission.
    pub async fn audited_denial(&self, mark: usize, action: &str, by: &Caller, missing: &str) {
        let e = self
            .audited(mark, &[(action, Outcome::Denied)])
            .await
            .remove(0);
        assert_eq!(e.draft.actor, by.principal, "actor of the denied {action}");
        assert_eq!(
            e.draft.changes["missing_permission"], missing,
            "missing permission recorded for {action}"
        );
    }
}

// ----- small values ----------------------------------------------------------------------

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub fn owner(sa: &ServiceAccount) -> OwnerRef {
    OwnerRef {
        kind: PrincipalKind::ServiceAccount,
        id: sa.id.to_string(),
    }
}

/// Key input with just a name.
pub fn named(name: &str) -> CreateApiKey {
    CreateApiKey {
        name: name.to_string(),
        ..Default::default()
    }
}

// ----- errors ----------------------------------------------------------------------------

/// The error of a result expected to fail.
pub fn err<T>(r: ServiceResult<T>) -> ServiceError {
    match r {
        Ok(_) => panic!("expected an error, the use case succeeded"),
        Err(e) => e,
    }
}

/// The missing permission of a `PermissionDenied`.
pub fn denied<T>(r: ServiceResult<T>) -> String {
    match err(r) {
        ServiceError::Domain(DomainError::PermissionDenied { permission }) => permission,
        other => panic!("expected permission denied, got {other:?}"),
    }
}

/// The code of a `Conflict`.
pub fn conflict<T>(r: ServiceResult<T>) -> &'static str {
    match err(r) {
        ServiceError::Domain(DomainError::Conflict { code, .. }) => code,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// The code and parameter of an `Invalid`.
pub fn invalid<T>(r: ServiceResult<T>) -> (&'static str, String) {
    match err(r) {
        ServiceError::Domain(DomainError::Invalid { code, param, .. }) => {
            (code, param.unwrap_or_default())
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
}
