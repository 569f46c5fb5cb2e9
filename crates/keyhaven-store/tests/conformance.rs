//! The storage conformance suite: one set of tests, run against every backend.
//!
//! Each test is an `async fn` taking the store (or, for the few that need to reach
//! around the store with raw SQL, the whole [`TestDb`]). The `conformance!` macro at the
//! bottom turns each into two `#[tokio::test]`s — `sqlite::<name>` and
//! `postgres::<name>` — each on a fresh, migrated database. PostgreSQL tests skip (with a
//! loud message) when no server is reachable outside CI. Each test closes its pool on its
//! own runtime before the database is dropped.
//!
//! Times are built with millisecond precision, which is what the store keeps; ids are
//! generated with increasing time parts, so "newest first" is "highest id first".

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use keyhaven_core::api_key::{ApiKey, KeyStatus, RateLimit};
use keyhaven_core::audit::{verify_chain, AuditDraft, AuditEntry, Outcome, GENESIS_HASH};
use keyhaven_core::credential::Credential;
use keyhaven_core::id::Id;
use keyhaven_core::organization::Organization;
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::role::{built_in_roles, Role};
use keyhaven_core::service_account::{ServiceAccount, ServiceAccountStatus};
use keyhaven_core::time::Timestamp;
use keyhaven_core::usage_control::{CreditOp, Credits, NamedLimit, Refill, RefillInterval};
use keyhaven_core::user::{User, UserStatus};
use keyhaven_store::testing::TestDb;
// The per-resource traits need no import: their methods are reached through `dyn Tx`.
use keyhaven_store::{
    ApiKeyFilter, AuditFilter, Change, ChangeKind, CreditNotice, KeyCounts, Listing, Page,
    ServiceAccountFilter, Session, SharedSecretRecord, SqlStore, Store, StoreError, UsageCount,
    UserFilter,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

// ---------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------

/// 2023-11-14T22:13:20Z; every test's clock starts here.
const T0: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// An instant from Unix milliseconds.
fn at(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().expect("valid ms")
}

/// Deterministic ids, digests and times. Every id is later than the one before.
struct Gen {
    rng: StdRng,
    clock: i64,
}

impl Gen {
    fn new(seed: u64) -> Self {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            clock: T0,
        }
    }

    /// A fresh id, newer than every id made before.
    fn id(&mut self) -> Id {
        self.clock += 1_000;
        Id::generate(self.clock, &mut self.rng)
    }

    /// "Now" for the last id made, with a millisecond part.
    fn now(&self) -> Timestamp {
        at(self.clock + 123)
    }

    /// A random SHA-256-like hex digest.
    fn digest(&mut self) -> String {
        let bytes: [u8; 32] = self.rng.gen();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn ids<T>(items: &[T], id_of: impl Fn(&T) -> &Id) -> Vec<Id> {
    items.iter().map(id_of).cloned().collect()
}

/// Owned copies of ids, for comparing with listings.
fn v(ids: &[&Id]) -> Vec<Id> {
    ids.iter().map(|i| (*i).clone()).collect()
}

fn sorted(mut v: Vec<Id>) -> Vec<Id> {
    v.sort();
    v
}

fn page(limit: i64) -> Page {
    Page {
        limit,
        cursor: None,
    }
}

fn new_org(g: &mut Gen, name: &str) -> Organization {
    let id = g.id();
    Organization {
        id,
        name: name.to_string(),
        key_prefix: "kh".to_string(),
        created_at: g.now(),
        updated_at: g.now(),
    }
}

fn new_user(g: &mut Gen, org: &Id, email: &str, display_name: &str, roles: &[&str]) -> User {
    let id = g.id();
    User {
        id,
        org_id: org.clone(),
        email: email.to_string(),
        display_name: display_name.to_string(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_string(),
        roles: strings(roles),
        status: UserStatus::Active,
        last_login_at: None,
        created_at: g.now(),
        updated_at: g.now(),
    }
}

fn creator() -> Principal {
    Principal {
        kind: PrincipalKind::User,
        id: "01hf0000000000000000000000".to_string(),
        name: "Ana Admin".to_string(),
    }
}

fn new_sa(g: &mut Gen, org: &Id, name: &str, roles: &[&str]) -> ServiceAccount {
    let id = g.id();
    ServiceAccount {
        id,
        org_id: org.clone(),
        name: name.to_string(),
        description: String::new(),
        roles: strings(roles),
        status: ServiceAccountStatus::Active,
        ratelimits: Vec::new(),
        external_id: None,
        created_by: creator(),
        created_at: g.now(),
        updated_at: g.now(),
    }
}

/// The owner reference of a service account's key (the store fills the name from the
/// account itself).
fn sa_owner(sa: &ServiceAccount) -> Principal {
    Principal {
        kind: PrincipalKind::ServiceAccount,
        id: sa.id.to_string(),
        name: sa.name.clone(),
    }
}

/// The owner reference of a personal key.
fn user_owner(u: &User) -> Principal {
    Principal {
        kind: PrincipalKind::User,
        id: u.id.to_string(),
        name: u.display_name.clone(),
    }
}

fn new_key(g: &mut Gen, org: &Id, name: &str, owner: Principal) -> ApiKey {
    let id = g.id();
    let digest = g.digest();
    ApiKey {
        id,
        org_id: org.clone(),
        name: name.to_string(),
        description: String::new(),
        tags: Vec::new(),
        owner,
        roles: Vec::new(),
        scopes: Vec::new(),
        masked_key: format!("kh_…{}", &digest[..4]),
        digest,
        expires_at: None,
        created_by: creator(),
        created_at: g.now(),
        updated_at: g.now(),
        last_used_at: None,
        revoked_at: None,
        ratelimits: Vec::new(),
        credits: None,
        credits_epoch: 0,
        allowed_cidrs: Vec::new(),
        metadata: json!({}),
        previous_digest: None,
        previous_valid_until: None,
        external_id: None,
        enabled: true,
        imported_at: None,
    }
}

fn new_credential(g: &mut Gen, sa: &ServiceAccount, name: &str) -> Credential {
    let id = g.id();
    Credential {
        client_id: format!("khci_{id}"),
        id,
        org_id: sa.org_id.clone(),
        service_account_id: sa.id.clone(),
        name: name.to_string(),
        description: String::new(),
        secret_digest: g.digest(),
        created_at: g.now(),
        updated_at: g.now(),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
    }
}

fn draft(actor_id: &str, action: &str, target_id: Option<&str>, outcome: Outcome) -> AuditDraft {
    AuditDraft {
        actor: Principal {
            kind: PrincipalKind::User,
            id: actor_id.to_string(),
            name: format!("Actor {actor_id}"),
        },
        action: action.to_string(),
        target: target_id.map(|t| Principal {
            kind: PrincipalKind::ApiKey,
            id: t.to_string(),
            name: format!("key {t}"),
        }),
        outcome,
        ip: Some("203.0.113.7".to_string()),
        user_agent: Some("curl/8.5.0".to_string()),
        request_id: Some(format!("req-{action}")),
        changes: json!({"name": {"from": "old", "to": "new"}, "tags": ["a", "b"]}),
    }
}

fn key_filter(now: Timestamp) -> ApiKeyFilter {
    ApiKeyFilter {
        status: None,
        role: None,
        tag: None,
        owner_id: None,
        q: None,
        external_id: None,
        now,
    }
}

// ---------------------------------------------------------------------------------------
// Set-up helpers (each runs and commits its own transaction)
// ---------------------------------------------------------------------------------------

/// Inserts an organization with the built-in roles.
async fn add_org(store: &Arc<dyn Store>, g: &mut Gen, name: &str) -> Organization {
    let org = new_org(g, name);
    let mut tx = store.begin().await.expect("begin");
    tx.insert_organization(&org).await.expect("insert org");
    for role in built_in_roles(org.created_at) {
        tx.insert_role(&org.id, &role).await.expect("insert role");
    }
    tx.commit().await.expect("commit");
    org
}

async fn add_sa(store: &Arc<dyn Store>, sa: &ServiceAccount) {
    let mut tx = store.begin().await.expect("begin");
    tx.insert_service_account(sa).await.expect("insert sa");
    tx.commit().await.expect("commit");
}

async fn add_user(store: &Arc<dyn Store>, u: &User) {
    let mut tx = store.begin().await.expect("begin");
    tx.insert_user(u).await.expect("insert user");
    tx.commit().await.expect("commit");
}

async fn add_keys(store: &Arc<dyn Store>, keys: &[&ApiKey]) {
    let mut tx = store.begin().await.expect("begin");
    for k in keys {
        tx.insert_api_key(k).await.expect("insert key");
    }
    tx.commit().await.expect("commit");
}

async fn list_users(store: &Arc<dyn Store>, org: &Id, f: &UserFilter) -> Vec<Id> {
    let mut tx = store.read().await.expect("read");
    let l = tx.list_users(org, f, &page(100)).await.expect("list");
    assert!(!l.has_more);
    assert_eq!(l.next_cursor, None);
    ids(&l.items, |u| &u.id)
}

async fn list_keys(store: &Arc<dyn Store>, org: &Id, f: &ApiKeyFilter) -> Vec<Id> {
    let mut tx = store.read().await.expect("read");
    let l = tx.list_api_keys(org, f, &page(100)).await.expect("list");
    assert!(!l.has_more);
    assert_eq!(l.next_cursor, None);
    ids(&l.items, |k| &k.id)
}

async fn list_sas(store: &Arc<dyn Store>, org: &Id, f: &ServiceAccountFilter) -> Vec<Id> {
    let mut tx = store.read().await.expect("read");
    let l = tx
        .list_service_accounts(org, f, &page(100))
        .await
        .expect("list");
    assert!(!l.has_more);
    ids(&l.items, |s| &s.id)
}

async fn list_audit(store: &Arc<dyn Store>, org: &Id, f: &AuditFilter) -> Vec<Id> {
    let mut tx = store.read().await.expect("read");
    let l = tx.list_audit(org, f, &page(100)).await.expect("list");
    assert!(!l.has_more);
    ids(&l.items, |e| &e.id)
}

/// Checks a sequence of pages: each full page but the last says `has_more` with the
/// last id as cursor; the last one says neither; together they are `expected`.
fn check_pages<T>(pages: &[Listing<T>], limit: usize, expected: &[Id], id_of: impl Fn(&T) -> &Id) {
    let mut seen = Vec::new();
    for (i, p) in pages.iter().enumerate() {
        let last = i + 1 == pages.len();
        if last {
            assert!(!p.has_more, "last page has_more");
            assert_eq!(p.next_cursor, None, "last page cursor");
            assert!(p.items.len() <= limit);
        } else {
            assert!(p.has_more, "page {i} has_more");
            assert_eq!(p.items.len(), limit, "page {i} is full");
            assert_eq!(
                p.next_cursor.as_deref(),
                p.items.last().map(|x| id_of(x).as_str()),
                "page {i} cursor is its last id"
            );
        }
        seen.extend(p.items.iter().map(|x| id_of(x).clone()));
    }
    let unique: HashSet<&Id> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no item twice");
    assert_eq!(seen, expected, "pages cover every item, newest first");
}

/// The newest-first order of ids.
fn newest_first(v: &[Id]) -> Vec<Id> {
    let mut v = v.to_vec();
    v.sort();
    v.reverse();
    v
}

// ---------------------------------------------------------------------------------------
// Migrations and transactions
// ---------------------------------------------------------------------------------------

async fn migrations_rerun_idempotently(store: Arc<dyn Store>) {
    store.migrate().await.expect("second migrate");
    store.migrate().await.expect("third migrate");
    store.ping().await.expect("ping");
    let mut g = Gen::new(1);
    let org = add_org(&store, &mut g, "Acme").await;
    store.migrate().await.expect("migrate with data");
    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.roles(&org.id).await.expect("roles").len(), 3);
    assert_eq!(tx.organization(&org.id).await.expect("get"), Some(org));
}

async fn dropped_transaction_leaves_nothing(store: Arc<dyn Store>) {
    let mut g = Gen::new(2);
    let org = new_org(&mut g, "Ghost");
    let user = new_user(
        &mut g,
        &org.id,
        "ghost@example.com",
        "Ghost",
        &["super-admin"],
    );
    let sa = new_sa(&mut g, &org.id, "ghost-sa", &[]);
    let key = new_key(&mut g, &org.id, "ghost-key", sa_owner(&sa));
    {
        let mut tx = store.begin().await.expect("begin");
        tx.insert_organization(&org).await.expect("org");
        tx.insert_user(&user).await.expect("user");
        tx.insert_service_account(&sa).await.expect("sa");
        tx.insert_api_key(&key).await.expect("key");
        tx.append_audit(
            &org.id,
            g.id(),
            g.now(),
            draft("u", "api_key.create", None, Outcome::Success),
        )
        .await
        .expect("audit");
        // Visible inside the transaction itself.
        assert_eq!(
            tx.organization(&org.id).await.expect("get"),
            Some(org.clone())
        );
        // Dropped here without commit.
    }
    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.organization(&org.id).await.expect("org"), None);
    assert!(tx.organizations().await.expect("orgs").is_empty());
    assert_eq!(tx.user_any_org(&user.id).await.expect("user"), None);
    assert!(tx
        .user_by_email("ghost@example.com")
        .await
        .expect("by email")
        .is_none());
    assert!(tx
        .api_key_by_digest(&key.digest)
        .await
        .expect("key")
        .is_none());
    assert_eq!(tx.audit_head(&org.id).await.expect("head"), None);
    assert!(tx.audit_chain(&org.id).await.expect("chain").is_empty());
    drop(tx);

    // The same values can be written afterwards: nothing half-written blocks them.
    let mut tx = store.begin().await.expect("begin");
    tx.insert_organization(&org).await.expect("org again");
    tx.insert_user(&user).await.expect("user again");
    tx.commit().await.expect("commit");
}

async fn committed_transaction_is_visible(store: Arc<dyn Store>) {
    let mut g = Gen::new(3);
    let org = new_org(&mut g, "Visible");
    let mut tx = store.begin().await.expect("begin");
    tx.insert_organization(&org).await.expect("insert");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.organization(&org.id).await.expect("get"), Some(org));
}

// ---------------------------------------------------------------------------------------
// Organizations and roles
// ---------------------------------------------------------------------------------------

async fn organizations_insert_get_list_update(store: Arc<dyn Store>) {
    let mut g = Gen::new(10);
    let a = new_org(&mut g, "Acme");
    let mut b = new_org(&mut g, "Globex");
    b.key_prefix = "glx".to_string();
    let mut tx = store.begin().await.expect("begin");
    // Inserted newest first: the listing still comes back oldest first.
    tx.insert_organization(&b).await.expect("insert b");
    tx.insert_organization(&a).await.expect("insert a");
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.organization(&a.id).await.expect("a"), Some(a.clone()));
    assert_eq!(tx.organization(&b.id).await.expect("b"), Some(b.clone()));
    assert_eq!(tx.organization(&g.id()).await.expect("unknown"), None);
    assert_eq!(
        tx.organizations().await.expect("list"),
        vec![a.clone(), b.clone()]
    );
    drop(tx);

    let mut changed = a.clone();
    changed.name = "Acme Corp".to_string();
    changed.key_prefix = "acme2024".to_string();
    changed.updated_at = at(T0 + DAY + 789);
    // created_at is not a mutable field.
    changed.created_at = at(T0 + 5 * DAY);
    let mut tx = store.begin().await.expect("begin");
    tx.update_organization(&changed).await.expect("update");
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("read");
    let got = tx.organization(&a.id).await.expect("a").expect("exists");
    assert_eq!(got.name, "Acme Corp");
    assert_eq!(got.key_prefix, "acme2024");
    assert_eq!(got.updated_at, at(T0 + DAY + 789));
    assert_eq!(got.created_at, a.created_at);
    assert_eq!(tx.organization(&b.id).await.expect("b"), Some(b));
}

/// A unique violation says what was duplicated, read from the constraint (not guessed
/// from the message's wording): a role's name (the primary key of `roles`), a user's
/// email, an OAuth client id (neither).
async fn duplicates_are_named_by_their_constraint(store: Arc<dyn Store>) {
    let mut g = Gen::new(21);
    let org = add_org(&store, &mut g, "Acme").await;
    let role = built_in_roles(org.created_at).remove(0);
    let mut tx = store.begin().await.expect("begin");
    match tx.insert_role(&org.id, &role).await {
        Err(StoreError::Duplicate(what)) => assert_eq!(what, "name"),
        other => panic!("expected Duplicate(name), got {other:?}"),
    }
}

async fn roles_crud_and_order(store: Arc<dyn Store>) {
    let mut g = Gen::new(20);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;

    // Custom roles: two created at the same instant (ordered by name), one earlier
    // than the built-ins (still after them), one later.
    let early = at(T0 - DAY + 1);
    let same = at(T0 + DAY + 5);
    let role = |name: &str, created: Timestamp, pattern: Option<&str>| Role {
        name: name.to_string(),
        description: format!("{name} role"),
        permissions: strings(&["api_keys.view", "billing:read"]),
        key_name_pattern: pattern.map(str::to_string),
        built_in: false,
        created_at: created,
        updated_at: created,
    };
    let zebra = role("zebra", same, Some("svc-[a-z]+"));
    let alpha = role("alpha", same, None);
    let ancient = role("ancient", early, None);
    let late = role("late", at(T0 + 2 * DAY + 999), None);
    let mut tx = store.begin().await.expect("begin");
    for r in [&zebra, &late, &alpha, &ancient] {
        tx.insert_role(&org.id, r).await.expect("insert role");
    }
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("read");
    let all = tx.roles(&org.id).await.expect("roles");
    let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(all.len(), 7);
    assert!(all[..3].iter().all(|r| r.built_in), "built-ins first");
    let mut builtins: Vec<&str> = names[..3].to_vec();
    builtins.sort();
    assert_eq!(builtins, vec!["admin", "read-only", "super-admin"]);
    assert_eq!(&names[3..], &["ancient", "alpha", "zebra", "late"]);
    assert_eq!(
        tx.role(&org.id, "zebra").await.expect("zebra"),
        Some(zebra.clone())
    );
    let sa_role = tx
        .role(&org.id, "super-admin")
        .await
        .expect("super-admin")
        .expect("exists");
    assert!(sa_role.built_in);
    assert_eq!(
        Some(&sa_role),
        built_in_roles(org.created_at)
            .iter()
            .find(|r| r.name == "super-admin")
    );
    assert_eq!(tx.role(&org.id, "missing").await.expect("missing"), None);
    // Another organization's roles are its own.
    assert_eq!(tx.role(&other.id, "zebra").await.expect("other"), None);
    assert_eq!(tx.roles(&other.id).await.expect("other roles").len(), 3);
    drop(tx);

    // Update every mutable field; name, built_in and created_at stay.
    let mut changed = zebra.clone();
    changed.description = "Zebra, changed".to_string();
    changed.permissions = strings(&["write", "audit.view"]);
    changed.key_name_pattern = None;
    changed.updated_at = at(T0 + 3 * DAY + 1);
    let mut tx = store.begin().await.expect("begin");
    tx.update_role(&org.id, &changed).await.expect("update");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.role(&org.id, "zebra").await.expect("zebra"),
        Some(changed.clone())
    );
    drop(tx);
    let mut back = changed.clone();
    back.key_name_pattern = Some("^team-.*$".to_string());
    let mut tx = store.begin().await.expect("begin");
    tx.update_role(&org.id, &back).await.expect("update");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.role(&org.id, "zebra").await.expect("zebra"), Some(back));
    drop(tx);

    // A role of the same name in another organization is independent.
    let mut tx = store.begin().await.expect("begin");
    tx.insert_role(&other.id, &alpha)
        .await
        .expect("same name, other org");
    assert!(tx.delete_role(&org.id, "zebra").await.expect("delete"));
    assert!(!tx
        .delete_role(&org.id, "zebra")
        .await
        .expect("delete again"));
    assert!(!tx
        .delete_role(&org.id, "missing")
        .await
        .expect("delete missing"));
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.role(&org.id, "zebra").await.expect("zebra"), None);
    assert_eq!(tx.roles(&org.id).await.expect("roles").len(), 6);
    assert_eq!(
        tx.role(&other.id, "alpha").await.expect("other alpha"),
        Some(alpha)
    );
}

async fn role_in_use_by_users_service_accounts_and_keys(store: Arc<dyn Store>) {
    let mut g = Gen::new(30);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let in_use = |store: Arc<dyn Store>, org: Id, name: &'static str| async move {
        let mut tx = store.read().await.expect("read");
        tx.role_in_use(&org, name).await.expect("role_in_use")
    };
    assert!(!in_use(store.clone(), org.id.clone(), "billing").await);

    // Someone in another organization, and a role whose name contains "billing", don't count.
    add_user(
        &store,
        &new_user(&mut g, &other.id, "x@other.com", "X", &["billing"]),
    )
    .await;
    let reader = new_user(&mut g, &org.id, "r@acme.com", "R", &["billing-reader", "x"]);
    add_user(&store, &reader).await;
    assert!(!in_use(store.clone(), org.id.clone(), "billing").await);
    assert!(in_use(store.clone(), org.id.clone(), "billing-reader").await);
    assert!(!in_use(store.clone(), org.id.clone(), "reader").await);

    // A user.
    let u = new_user(
        &mut g,
        &org.id,
        "u@acme.com",
        "U",
        &["read-only", "billing"],
    );
    add_user(&store, &u).await;
    assert!(in_use(store.clone(), org.id.clone(), "billing").await);
    let mut tx = store.begin().await.expect("begin");
    assert!(tx.delete_user(&org.id, &u.id).await.expect("delete"));
    tx.commit().await.expect("commit");
    assert!(!in_use(store.clone(), org.id.clone(), "billing").await);

    // A service account.
    let sa = new_sa(&mut g, &org.id, "svc", &["billing"]);
    add_sa(&store, &sa).await;
    assert!(in_use(store.clone(), org.id.clone(), "billing").await);
    let mut plain = sa.clone();
    plain.roles = strings(&["read-only"]);
    let mut tx = store.begin().await.expect("begin");
    tx.update_service_account(&plain).await.expect("update");
    tx.commit().await.expect("commit");
    assert!(!in_use(store.clone(), org.id.clone(), "billing").await);

    // An API key.
    let mut k = new_key(&mut g, &org.id, "k", sa_owner(&sa));
    k.roles = strings(&["billing"]);
    add_keys(&store, &[&k]).await;
    assert!(in_use(store.clone(), org.id.clone(), "billing").await);
    assert!(!in_use(store.clone(), other.id.clone(), "billing-reader").await);
    let mut tx = store.begin().await.expect("begin");
    assert!(tx.delete_api_key(&org.id, &k.id).await.expect("delete"));
    tx.commit().await.expect("commit");
    assert!(!in_use(store.clone(), org.id.clone(), "billing").await);
    assert!(in_use(store.clone(), other.id.clone(), "billing").await);
}

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

async fn users_insert_get_by_email_duplicate(store: Arc<dyn Store>) {
    let mut g = Gen::new(40);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let mut ana = new_user(
        &mut g,
        &org.id,
        "ana@example.com",
        "Ana Lima",
        &["super-admin", "billing"],
    );
    ana.last_login_at = Some(at(T0 + 42));
    ana.status = UserStatus::Inactive;
    add_user(&store, &ana).await;

    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.user(&org.id, &ana.id).await.expect("get"),
        Some(ana.clone())
    );
    // Another organization's view: not found.
    assert_eq!(tx.user(&other.id, &ana.id).await.expect("other org"), None);
    assert_eq!(tx.user(&org.id, &g.id()).await.expect("unknown"), None);
    assert_eq!(
        tx.user_any_org(&ana.id).await.expect("any org"),
        Some(ana.clone())
    );
    assert_eq!(
        tx.user_by_email("ana@example.com").await.expect("by email"),
        Some(ana.clone())
    );
    assert_eq!(
        tx.user_by_email("ANA@Example.COM")
            .await
            .expect("by email, case"),
        Some(ana.clone())
    );
    assert_eq!(
        tx.user_by_email("nobody@example.com")
            .await
            .expect("unknown"),
        None
    );
    assert_eq!(tx.user_by_email("ana@example").await.expect("prefix"), None);
    drop(tx);

    // The email is taken installation-wide: same org or another org.
    for org_id in [&org.id, &other.id] {
        let dup = new_user(&mut g, org_id, "ana@example.com", "Other Ana", &[]);
        let mut tx = store.begin().await.expect("begin");
        match tx.insert_user(&dup).await {
            Err(StoreError::Duplicate(what)) => assert_eq!(what, "email"),
            other => panic!("expected Duplicate(email), got {other:?}"),
        }
    }
    // Nothing of the refused inserts remains, and a different email is fine.
    let bob = new_user(&mut g, &other.id, "bob@example.com", "Bob", &[]);
    add_user(&store, &bob).await;
    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.user_by_email("ana@example.com").await.expect("by email"),
        Some(ana)
    );
    assert_eq!(tx.user_any_org(&bob.id).await.expect("bob"), Some(bob));
}

async fn users_list_filters(store: Arc<dyn Store>) {
    let mut g = Gen::new(50);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let ana = new_user(
        &mut g,
        &org.id,
        "ana@example.com",
        "Ana Lima",
        &["super-admin"],
    );
    let mut bob = new_user(
        &mut g,
        &org.id,
        "bob@example.com",
        "Bob 100% Real",
        &["admin"],
    );
    bob.status = UserStatus::Inactive;
    let carl = new_user(
        &mut g,
        &org.id,
        "carl_x@example.com",
        "Carl",
        &["read-only", "admin"],
    );
    let dora = new_user(
        &mut g,
        &org.id,
        "dora@example.org",
        "Dora ANALYST",
        &["read-only"],
    );
    let stranger = new_user(&mut g, &other.id, "ana2@example.com", "Ana", &["admin"]);
    for u in [&ana, &bob, &carl, &dora, &stranger] {
        add_user(&store, u).await;
    }
    let f = |status: Option<UserStatus>, role: Option<&str>, q: Option<&str>| UserFilter {
        status,
        role: role.map(str::to_string),
        q: q.map(str::to_string),
    };
    let (a, b, c, d) = (&ana.id, &bob.id, &carl.id, &dora.id);
    let l = |f: UserFilter| {
        let (store, org) = (store.clone(), org.id.clone());
        async move { list_users(&store, &org, &f).await }
    };

    assert_eq!(l(f(None, None, None)).await, v(&[d, c, b, a]));
    assert_eq!(
        list_users(&store, &other.id, &f(None, None, None)).await,
        vec![stranger.id.clone()]
    );
    assert_eq!(
        l(f(Some(UserStatus::Active), None, None)).await,
        v(&[d, c, a])
    );
    assert_eq!(l(f(Some(UserStatus::Inactive), None, None)).await, v(&[b]));
    // "admin" is not "super-admin".
    assert_eq!(l(f(None, Some("admin"), None)).await, v(&[c, b]));
    assert_eq!(l(f(None, Some("super-admin"), None)).await, v(&[a]));
    assert_eq!(l(f(None, Some("read-only"), None)).await, v(&[d, c]));
    assert!(l(f(None, Some("read"), None)).await.is_empty());
    // q: case-insensitive substring of email or display name.
    assert_eq!(l(f(None, None, Some("ANA"))).await, v(&[d, a]));
    assert_eq!(l(f(None, None, Some("analyst"))).await, v(&[d]));
    assert_eq!(l(f(None, None, Some("EXAMPLE.ORG"))).await, v(&[d]));
    assert_eq!(l(f(None, None, Some("Example"))).await, v(&[d, c, b, a]));
    // LIKE wildcards in q are literal.
    assert_eq!(l(f(None, None, Some("%"))).await, v(&[b]));
    assert_eq!(l(f(None, None, Some("0% r"))).await, v(&[b]));
    assert_eq!(l(f(None, None, Some("_"))).await, v(&[c]));
    assert!(l(f(None, None, Some("a_a"))).await.is_empty());
    assert!(l(f(None, None, Some("\\"))).await.is_empty());
    assert!(l(f(None, None, Some("zzz"))).await.is_empty());
    // Combined with AND.
    assert_eq!(
        l(f(Some(UserStatus::Active), Some("read-only"), Some("DORA"))).await,
        v(&[d])
    );
    assert_eq!(
        l(f(Some(UserStatus::Active), Some("admin"), None)).await,
        v(&[c])
    );
    assert!(l(f(Some(UserStatus::Inactive), Some("read-only"), None))
        .await
        .is_empty());
}

async fn users_pagination(store: Arc<dyn Store>) {
    let mut g = Gen::new(60);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let mut all = Vec::new();
    let mut active = Vec::new();
    // Inserted in shuffled order; ids carry the time.
    let mut users: Vec<User> = (0..7)
        .map(|i| {
            let mut u = new_user(
                &mut g,
                &org.id,
                &format!("user{i}@example.com"),
                &format!("User {i}"),
                &["read-only"],
            );
            if i % 3 == 0 {
                u.status = UserStatus::Inactive;
            }
            u
        })
        .collect();
    users.swap(0, 5);
    users.swap(2, 6);
    for u in &users {
        add_user(&store, u).await;
        all.push(u.id.clone());
        if u.status == UserStatus::Active {
            active.push(u.id.clone());
        }
    }
    add_user(
        &store,
        &new_user(&mut g, &other.id, "o@example.com", "O", &[]),
    )
    .await;

    for (filter, expected) in [
        (UserFilter::default(), newest_first(&all)),
        (
            UserFilter {
                status: Some(UserStatus::Active),
                ..UserFilter::default()
            },
            newest_first(&active),
        ),
    ] {
        for limit in [1usize, 2, 3, 4, 7, 100] {
            let mut pages = Vec::new();
            let mut cursor = None;
            loop {
                let mut tx = store.read().await.expect("read");
                let p = tx
                    .list_users(
                        &org.id,
                        &filter,
                        &Page {
                            limit: limit as i64,
                            cursor: cursor.clone(),
                        },
                    )
                    .await
                    .expect("list");
                cursor = p.next_cursor.clone();
                let more = p.has_more;
                pages.push(p);
                if !more {
                    break;
                }
                assert!(pages.len() <= expected.len(), "pagination terminates");
            }
            check_pages(&pages, limit, &expected, |u| &u.id);
            let full = expected.len().div_ceil(limit).max(1);
            assert_eq!(pages.len(), full, "limit {limit}: page count");
        }
    }
}

async fn users_update_delete_count_and_login(store: Arc<dyn Store>) {
    let mut g = Gen::new(70);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let a = new_user(&mut g, &org.id, "a@example.com", "A", &["super-admin"]);
    let b = new_user(
        &mut g,
        &org.id,
        "b@example.com",
        "B",
        &["read-only", "super-admin"],
    );
    let mut c = new_user(&mut g, &org.id, "c@example.com", "C", &["super-admin"]);
    c.status = UserStatus::Inactive;
    let d = new_user(&mut g, &org.id, "d@example.com", "D", &["admin"]);
    let o = new_user(&mut g, &other.id, "o@example.com", "O", &["super-admin"]);
    for u in [&a, &b, &c, &d, &o] {
        add_user(&store, u).await;
    }
    let count = |role: &'static str, org_id: Id| {
        let store = store.clone();
        async move {
            let mut tx = store.read().await.expect("read");
            tx.count_active_with_role(&org_id, role)
                .await
                .expect("count")
        }
    };
    assert_eq!(count("super-admin", org.id.clone()).await, 2);
    assert_eq!(count("admin", org.id.clone()).await, 1);
    assert_eq!(count("read-only", org.id.clone()).await, 1);
    assert_eq!(count("billing", org.id.clone()).await, 0);
    assert_eq!(count("super-admin", other.id.clone()).await, 1);

    // Update every mutable field.
    let mut changed = b.clone();
    changed.display_name = "Beatriz".to_string();
    changed.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA".to_string();
    changed.roles = strings(&["admin"]);
    changed.status = UserStatus::Inactive;
    changed.updated_at = at(T0 + DAY + 321);
    let mut tx = store.begin().await.expect("begin");
    tx.update_user(&changed).await.expect("update");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.user(&org.id, &b.id).await.expect("get"),
        Some(changed.clone())
    );
    drop(tx);
    assert_eq!(count("super-admin", org.id.clone()).await, 1);
    assert_eq!(count("admin", org.id.clone()).await, 1);

    // An update aimed at the wrong organization changes nothing.
    let mut hijack = o.clone();
    hijack.org_id = org.id.clone();
    hijack.display_name = "Hijacked".to_string();
    let mut tx = store.begin().await.expect("begin");
    tx.update_user(&hijack).await.expect("update");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.user_any_org(&o.id).await.expect("o"), Some(o.clone()));
    drop(tx);

    // Sign-in stamp.
    let login = at(T0 + 2 * DAY + 7);
    let mut tx = store.begin().await.expect("begin");
    tx.record_login(&a.id, login).await.expect("login");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    let got = tx.user(&org.id, &a.id).await.expect("get").expect("a");
    assert_eq!(got.last_login_at, Some(login));
    assert_eq!(
        got,
        User {
            last_login_at: Some(login),
            ..a.clone()
        }
    );
    drop(tx);

    // Delete.
    let mut tx = store.begin().await.expect("begin");
    assert!(!tx.delete_user(&other.id, &a.id).await.expect("wrong org"));
    assert!(tx.delete_user(&org.id, &a.id).await.expect("delete"));
    assert!(!tx.delete_user(&org.id, &a.id).await.expect("again"));
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.user(&org.id, &a.id).await.expect("get"), None);
    assert_eq!(tx.user_any_org(&a.id).await.expect("any"), None);
    assert_eq!(
        tx.user_by_email("a@example.com").await.expect("email"),
        None
    );
    drop(tx);
    assert_eq!(count("super-admin", org.id.clone()).await, 0);
    // The email is free again.
    add_user(
        &store,
        &new_user(&mut g, &org.id, "a@example.com", "A2", &[]),
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Sessions and sign-in failures
// ---------------------------------------------------------------------------------------

async fn sessions_lifecycle(store: Arc<dyn Store>) {
    let mut g = Gen::new(80);
    let org = add_org(&store, &mut g, "Acme").await;
    let ana = new_user(&mut g, &org.id, "ana@example.com", "Ana", &["super-admin"]);
    let bob = new_user(&mut g, &org.id, "bob@example.com", "Bob", &["admin"]);
    add_user(&store, &ana).await;
    add_user(&store, &bob).await;
    let session = |g: &mut Gen, user: &User| Session {
        token_digest: g.digest(),
        user_id: user.id.clone(),
        csrf_token: g.digest(),
        created_at: at(T0 + 11),
        last_seen_at: at(T0 + 12),
    };
    let s1 = session(&mut g, &ana);
    let s2 = session(&mut g, &ana);
    let s3 = session(&mut g, &bob);
    let mut tx = store.begin().await.expect("begin");
    for s in [&s1, &s2, &s3] {
        tx.insert_session(s).await.expect("insert");
    }
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.session(&s1.token_digest).await.expect("get"),
        Some(s1.clone())
    );
    assert_eq!(tx.session(&g.digest()).await.expect("unknown"), None);
    drop(tx);

    let seen = at(T0 + HOUR + 999);
    let mut tx = store.begin().await.expect("begin");
    tx.touch_session(&s1.token_digest, seen)
        .await
        .expect("touch");
    tx.touch_session(&g.digest(), seen)
        .await
        .expect("touch unknown");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.session(&s1.token_digest).await.expect("get"),
        Some(Session {
            last_seen_at: seen,
            ..s1.clone()
        })
    );
    assert_eq!(
        tx.session(&s2.token_digest).await.expect("s2"),
        Some(s2.clone())
    );
    drop(tx);

    let mut tx = store.begin().await.expect("begin");
    tx.delete_session(&s2.token_digest).await.expect("delete");
    tx.delete_session(&s2.token_digest)
        .await
        .expect("delete again");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.session(&s2.token_digest).await.expect("s2"), None);
    assert!(tx.session(&s1.token_digest).await.expect("s1").is_some());
    drop(tx);

    let s4 = session(&mut g, &ana);
    let mut tx = store.begin().await.expect("begin");
    tx.insert_session(&s4).await.expect("insert");
    tx.delete_sessions_of_user(&ana.id)
        .await
        .expect("delete all");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.session(&s1.token_digest).await.expect("s1"), None);
    assert_eq!(tx.session(&s4.token_digest).await.expect("s4"), None);
    assert_eq!(
        tx.session(&s3.token_digest).await.expect("s3"),
        Some(s3.clone())
    );
    drop(tx);

    // Deleting a user ends its sessions.
    let mut tx = store.begin().await.expect("begin");
    assert!(tx.delete_user(&org.id, &bob.id).await.expect("delete user"));
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.session(&s3.token_digest).await.expect("s3"), None);
}

async fn login_failures_count_oldest_clear(store: Arc<dyn Store>) {
    let mut g = Gen::new(90);
    let mut tx = store.begin().await.expect("begin");
    for (email, ms) in [
        ("ana@example.com", T0 + 1_000),
        ("ana@example.com", T0 + 3_000),
        ("ana@example.com", T0 + 2_000),
        ("bob@example.com", T0 + 1_500),
        ("bob@example.com", T0 + 5_000),
    ] {
        let id = g.id();
        tx.record_login_failure(&id, email, at(ms))
            .await
            .expect("record");
    }
    tx.commit().await.expect("commit");

    let since = |email: &'static str, ms: i64| {
        let store = store.clone();
        async move {
            let mut tx = store.read().await.expect("read");
            tx.login_failures_since(email, at(ms)).await.expect("since")
        }
    };
    assert_eq!(since("ana@example.com", T0).await, (3, Some(T0 + 1_000)));
    assert_eq!(
        since("ana@example.com", T0 + 1_500).await,
        (2, Some(T0 + 2_000))
    );
    assert_eq!(since("ana@example.com", T0 + 9_000).await, (0, None));
    assert_eq!(since("bob@example.com", T0).await, (2, Some(T0 + 1_500)));
    assert_eq!(since("nobody@example.com", T0).await, (0, None));

    // Clearing forgets that email's failures and everyone's older than `before`.
    let mut tx = store.begin().await.expect("begin");
    tx.clear_login_failures("ana@example.com", at(T0 + 1_600))
        .await
        .expect("clear");
    tx.commit().await.expect("commit");
    assert_eq!(since("ana@example.com", T0).await, (0, None));
    assert_eq!(since("bob@example.com", T0).await, (1, Some(T0 + 5_000)));

    let mut tx = store.begin().await.expect("begin");
    tx.clear_login_failures("carl@example.com", at(T0))
        .await
        .expect("clear nothing");
    tx.commit().await.expect("commit");
    assert_eq!(since("bob@example.com", T0).await, (1, Some(T0 + 5_000)));
}

// ---------------------------------------------------------------------------------------
// Service accounts
// ---------------------------------------------------------------------------------------

async fn service_accounts_crud_filters_pagination(store: Arc<dyn Store>) {
    let mut g = Gen::new(100);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let mut billing = new_sa(&mut g, &org.id, "billing-service", &["admin", "billing"]);
    billing.description = "Charges CUSTOMERS monthly".to_string();
    let mut search = new_sa(&mut g, &org.id, "search_indexer", &[]);
    search.status = ServiceAccountStatus::Suspended;
    search.description = "Indexes 100% of documents".to_string();
    let mut legacy = new_sa(&mut g, &org.id, "Legacy Sync", &["read-only"]);
    legacy.status = ServiceAccountStatus::Archived;
    let foreign = new_sa(&mut g, &other.id, "billing-service", &[]);
    for sa in [&billing, &search, &legacy, &foreign] {
        add_sa(&store, sa).await;
    }

    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.service_account(&org.id, &billing.id).await.expect("get"),
        Some(billing.clone())
    );
    assert_eq!(
        tx.service_account(&other.id, &billing.id)
            .await
            .expect("other org"),
        None
    );
    assert_eq!(
        tx.service_account(&org.id, &g.id()).await.expect("unknown"),
        None
    );
    drop(tx);

    let f = |statuses: &[ServiceAccountStatus], q: Option<&str>| ServiceAccountFilter {
        statuses: statuses.to_vec(),
        q: q.map(str::to_string),
        external_id: None,
    };
    use ServiceAccountStatus::{Active, Archived, Suspended};
    let (b, s, l) = (billing.id.clone(), search.id.clone(), legacy.id.clone());
    let list = |f: ServiceAccountFilter| {
        let (store, org) = (store.clone(), org.id.clone());
        async move { list_sas(&store, &org, &f).await }
    };
    assert_eq!(
        list(f(&[], None)).await,
        vec![l.clone(), s.clone(), b.clone()]
    );
    assert_eq!(list(f(&[Active], None)).await, vec![b.clone()]);
    assert_eq!(
        list(f(&[Active, Suspended], None)).await,
        vec![s.clone(), b.clone()]
    );
    assert_eq!(list(f(&[Archived], None)).await, vec![l.clone()]);
    assert_eq!(list(f(&[], Some("BILLING"))).await, vec![b.clone()]);
    assert_eq!(list(f(&[], Some("customers"))).await, vec![b.clone()]);
    assert_eq!(list(f(&[], Some("legacy sync"))).await, vec![l.clone()]);
    assert_eq!(list(f(&[], Some("%"))).await, vec![s.clone()]);
    assert_eq!(list(f(&[], Some("_"))).await, vec![s.clone()]);
    assert!(list(f(&[], Some("g_s"))).await.is_empty());
    assert!(list(f(&[Archived], Some("billing"))).await.is_empty());
    assert_eq!(
        list_sas(&store, &other.id, &f(&[], None)).await,
        vec![foreign.id.clone()]
    );

    // Pagination.
    let expected = vec![l.clone(), s.clone(), b.clone()];
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let mut tx = store.read().await.expect("read");
        let p = tx
            .list_service_accounts(
                &org.id,
                &f(&[], None),
                &Page {
                    limit: 2,
                    cursor: cursor.clone(),
                },
            )
            .await
            .expect("list");
        cursor = p.next_cursor.clone();
        let more = p.has_more;
        pages.push(p);
        if !more {
            break;
        }
    }
    assert_eq!(pages.len(), 2);
    check_pages(&pages, 2, &expected, |s| &s.id);

    // Update every mutable field.
    let mut changed = billing.clone();
    changed.name = "billing-v2".to_string();
    changed.description = "Now with invoices".to_string();
    changed.roles = strings(&["read-only"]);
    changed.status = ServiceAccountStatus::Suspended;
    changed.updated_at = at(T0 + DAY + 17);
    let mut tx = store.begin().await.expect("begin");
    tx.update_service_account(&changed).await.expect("update");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.service_account(&org.id, &billing.id).await.expect("get"),
        Some(changed)
    );
    assert_eq!(
        tx.service_account(&other.id, &foreign.id)
            .await
            .expect("foreign"),
        Some(foreign)
    );
}

async fn service_account_key_counts_and_delete_cascade(store: Arc<dyn Store>) {
    let mut g = Gen::new(110);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let sa1 = new_sa(&mut g, &org.id, "one", &[]);
    let sa2 = new_sa(&mut g, &org.id, "two", &[]);
    let sa3 = new_sa(&mut g, &org.id, "three", &[]);
    let foreign = new_sa(&mut g, &other.id, "foreign", &[]);
    for sa in [&sa1, &sa2, &sa3, &foreign] {
        add_sa(&store, sa).await;
    }
    let k1 = new_key(&mut g, &org.id, "k1", sa_owner(&sa1));
    let mut k2 = new_key(&mut g, &org.id, "k2", sa_owner(&sa1));
    k2.revoked_at = Some(at(T0 + 5));
    let k3 = new_key(&mut g, &org.id, "k3", sa_owner(&sa2));
    let kf = new_key(&mut g, &other.id, "kf", sa_owner(&foreign));
    add_keys(&store, &[&k1, &k2, &k3, &kf]).await;
    let c1 = new_credential(&mut g, &sa1, "c1");
    let c2 = new_credential(&mut g, &sa1, "c2");
    let c3 = new_credential(&mut g, &sa2, "c3");
    let mut tx = store.begin().await.expect("begin");
    for c in [&c1, &c2, &c3] {
        tx.insert_credential(c).await.expect("credential");
    }
    tx.commit().await.expect("commit");

    let unknown = g.id();
    let mut tx = store.read().await.expect("read");
    let counts = tx
        .owned_key_counts(
            &org.id,
            &[
                sa1.id.clone(),
                sa2.id.clone(),
                sa3.id.clone(),
                unknown.clone(),
            ],
        )
        .await
        .expect("counts");
    assert_eq!(
        counts,
        vec![
            (sa1.id.clone(), 2),
            (sa2.id.clone(), 1),
            (sa3.id.clone(), 0),
            (unknown.clone(), 0)
        ]
    );
    // Another organization's accounts are not counted through this one.
    let counts = tx
        .owned_key_counts(&org.id, std::slice::from_ref(&foreign.id))
        .await
        .expect("counts");
    assert_eq!(counts, vec![(foreign.id.clone(), 0)]);
    assert!(tx
        .owned_key_counts(&org.id, &[])
        .await
        .expect("empty")
        .is_empty());
    drop(tx);

    let mut tx = store.begin().await.expect("begin");
    assert!(!tx
        .delete_service_account(&other.id, &sa1.id)
        .await
        .expect("wrong org"));
    assert!(tx
        .delete_service_account(&org.id, &sa1.id)
        .await
        .expect("delete"));
    assert!(!tx
        .delete_service_account(&org.id, &sa1.id)
        .await
        .expect("again"));
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.service_account(&org.id, &sa1.id).await.expect("sa1"),
        None
    );
    for k in [&k1, &k2] {
        assert_eq!(tx.api_key(&org.id, &k.id).await.expect("key"), None);
        assert!(tx
            .api_key_by_digest(&k.digest)
            .await
            .expect("digest")
            .is_none());
    }
    assert!(tx
        .key_ids_of_owner(&org.id, &sa1.id)
        .await
        .expect("ids")
        .is_empty());
    for c in [&c1, &c2] {
        assert_eq!(
            tx.credential(&org.id, &sa1.id, &c.id)
                .await
                .expect("credential"),
            None
        );
        assert_eq!(
            tx.credential_by_client_id(&c.client_id)
                .await
                .expect("client id"),
            None
        );
    }
    assert!(tx
        .credentials(&org.id, &sa1.id)
        .await
        .expect("list")
        .is_empty());
    // The other accounts keep theirs.
    assert!(tx.api_key(&org.id, &k3.id).await.expect("k3").is_some());
    assert!(tx.api_key(&other.id, &kf.id).await.expect("kf").is_some());
    assert_eq!(
        tx.credential(&org.id, &sa2.id, &c3.id).await.expect("c3"),
        Some(c3.clone())
    );
    let counts = tx
        .owned_key_counts(&org.id, &[sa1.id.clone(), sa2.id.clone()])
        .await
        .expect("counts");
    assert_eq!(counts, vec![(sa1.id.clone(), 0), (sa2.id.clone(), 1)]);
}

// ---------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------

/// A key with every optional field set.
fn full_key(g: &mut Gen, org: &Id, name: &str, owner: Principal) -> ApiKey {
    let mut k = new_key(g, org, name, owner);
    k.description = "Charges customers — «prod»".to_string();
    k.tags = strings(&["prod", "team:billing", "say \"hi\"", "50% off"]);
    k.roles = strings(&["admin", "billing"]);
    k.scopes = strings(&["billing:read", "write"]);
    k.expires_at = Some(at(T0 + 30 * DAY + 457));
    k.last_used_at = Some(at(T0 + 2 * HOUR + 1));
    k.ratelimits = vec![
        NamedLimit::default_from(RateLimit {
            limit: 100,
            duration_ms: 60_000,
        }),
        NamedLimit {
            name: "tokens:v1".into(),
            limit: 1_000_000_000,
            duration_ms: 2_592_000_000,
            auto_apply: false,
        },
    ];
    k.credits = Some(Credits {
        remaining: 1_000,
        refill: Some(Refill {
            interval: RefillInterval::Monthly,
            amount: 5_000,
            day_of_month: Some(31),
        }),
        low_threshold: Some(100),
    });
    k.credits_epoch = 3;
    k.allowed_cidrs = vec![
        "10.0.0.0/8".parse().expect("cidr"),
        "192.168.1.7/32".parse().expect("cidr"),
        "2001:db8::/32".parse().expect("cidr"),
    ];
    k.metadata = json!({
        "team": "billing",
        "tier": 3,
        "ratio": 0.5,
        "flags": [true, false, null],
        "nested": {"a": [1, 2, "x"], "quote": "he said \"hi\"", "pct": "100%"},
        "unicode": "café ✓"
    });
    k.previous_digest = Some(g.digest());
    k.previous_valid_until = Some(at(T0 + DAY + 333));
    k
}

async fn api_keys_insert_get_duplicates(store: Arc<dyn Store>) {
    let mut g = Gen::new(120);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let sa = new_sa(&mut g, &org.id, "billing-service", &[]);
    add_sa(&store, &sa).await;
    let ana = new_user(&mut g, &org.id, "ana@example.com", "Ana Lima", &["admin"]);
    add_user(&store, &ana).await;

    let mut full = full_key(&mut g, &org.id, "billing-prod", sa_owner(&sa));
    full.revoked_at = Some(at(T0 + 3 * DAY + 3));
    let personal = new_key(&mut g, &org.id, "ana-laptop", user_owner(&ana));
    let bare = new_key(&mut g, &org.id, "bare", sa_owner(&sa));
    add_keys(&store, &[&full, &personal, &bare]).await;

    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.api_key(&org.id, &full.id).await.expect("full"),
        Some(full.clone())
    );
    assert_eq!(
        tx.api_key(&org.id, &personal.id).await.expect("personal"),
        Some(personal.clone())
    );
    assert_eq!(
        tx.api_key(&org.id, &bare.id).await.expect("bare"),
        Some(bare.clone())
    );
    assert_eq!(
        tx.api_key(&other.id, &full.id).await.expect("other org"),
        None
    );
    assert_eq!(tx.api_key(&org.id, &g.id()).await.expect("unknown"), None);
    drop(tx);

    // The owner's name is the owner's current name.
    let mut renamed = sa.clone();
    renamed.name = "billing-v2".to_string();
    let mut tx = store.begin().await.expect("begin");
    tx.update_service_account(&renamed).await.expect("rename");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    let got = tx
        .api_key(&org.id, &bare.id)
        .await
        .expect("bare")
        .expect("exists");
    assert_eq!(got.owner, sa_owner(&renamed));
    drop(tx);

    // Names are unique per organization.
    let dup = new_key(&mut g, &org.id, "billing-prod", sa_owner(&sa));
    let mut tx = store.begin().await.expect("begin");
    match tx.insert_api_key(&dup).await {
        Err(StoreError::Duplicate(what)) => assert_eq!(what, "name"),
        other => panic!("expected Duplicate(name), got {other:?}"),
    }
    drop(tx);
    // … but not across organizations.
    let elsewhere = new_key(&mut g, &other.id, "billing-prod", sa_owner(&sa));
    add_keys(&store, &[&elsewhere]).await;
    // A digest is never stored twice.
    let mut same_digest = new_key(&mut g, &other.id, "copy", sa_owner(&sa));
    same_digest.digest = full.digest.clone();
    let mut tx = store.begin().await.expect("begin");
    assert!(matches!(
        tx.insert_api_key(&same_digest).await,
        Err(StoreError::Duplicate(_))
    ));
    drop(tx);

    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.api_key(&org.id, &dup.id).await.expect("dup"), None);
    assert_eq!(
        tx.api_key(&other.id, &same_digest.id).await.expect("copy"),
        None
    );
    assert_eq!(
        tx.api_key(&other.id, &elsewhere.id)
            .await
            .expect("elsewhere")
            .map(|k| k.name),
        Some("billing-prod".to_string())
    );
    drop(tx);

    // Deleting a key frees its name.
    let mut tx = store.begin().await.expect("begin");
    assert!(tx.delete_api_key(&org.id, &full.id).await.expect("delete"));
    tx.insert_api_key(&dup).await.expect("name free again");
    tx.commit().await.expect("commit");
}

async fn api_key_by_current_and_previous_digest(store: Arc<dyn Store>) {
    let mut g = Gen::new(130);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let sa = new_sa(&mut g, &org.id, "svc", &[]);
    add_sa(&store, &sa).await;
    let key = new_key(&mut g, &org.id, "k", sa_owner(&sa));
    let foreign = new_key(&mut g, &other.id, "k", sa_owner(&sa));
    add_keys(&store, &[&key, &foreign]).await;

    let mut tx = store.read().await.expect("read");
    let m = tx
        .api_key_by_digest(&key.digest)
        .await
        .expect("by digest")
        .expect("found");
    assert_eq!(m.key, key);
    assert!(!m.previous);
    // Keys of every organization are found.
    let m = tx
        .api_key_by_digest(&foreign.digest)
        .await
        .expect("foreign")
        .expect("found");
    assert_eq!(m.key.id, foreign.id);
    assert!(tx
        .api_key_by_digest(&g.digest())
        .await
        .expect("unknown")
        .is_none());
    drop(tx);

    // Regenerate: the old digest becomes the previous one.
    let old = key.digest.clone();
    let mut rotated = key.clone();
    rotated.digest = g.digest();
    rotated.masked_key = "kh_…zzzz".to_string();
    rotated.previous_digest = Some(old.clone());
    rotated.previous_valid_until = Some(at(T0 + HOUR + 1));
    rotated.updated_at = at(T0 + 77);
    let mut tx = store.begin().await.expect("begin");
    tx.update_api_key(&rotated).await.expect("update");
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("read");
    let m = tx
        .api_key_by_digest(&rotated.digest)
        .await
        .expect("new")
        .expect("found");
    assert_eq!(m.key, rotated);
    assert!(!m.previous);
    let m = tx
        .api_key_by_digest(&old)
        .await
        .expect("old")
        .expect("found by previous");
    assert_eq!(m.key, rotated);
    assert!(m.previous);
    drop(tx);

    // Grace over: the previous digest no longer finds it.
    let mut done = rotated.clone();
    done.previous_digest = None;
    done.previous_valid_until = None;
    let mut tx = store.begin().await.expect("begin");
    tx.update_api_key(&done).await.expect("update");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert!(tx.api_key_by_digest(&old).await.expect("old").is_none());
    assert!(tx
        .api_key_by_digest(&done.digest)
        .await
        .expect("new")
        .is_some());
}

async fn api_keys_list_filters(store: Arc<dyn Store>) {
    let mut g = Gen::new(140);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let sa1 = new_sa(&mut g, &org.id, "billing-service", &[]);
    let sa2 = new_sa(&mut g, &org.id, "search-service", &[]);
    add_sa(&store, &sa1).await;
    add_sa(&store, &sa2).await;
    let ana = new_user(&mut g, &org.id, "ana@example.com", "Ana", &["admin"]);
    add_user(&store, &ana).await;
    let now = at(T0 + 10 * DAY + 500);

    let mut k1 = new_key(&mut g, &org.id, "billing-prod", sa_owner(&sa1));
    k1.description = "Charges CUSTOMERS".to_string();
    k1.tags = strings(&["prod", "team:billing"]);
    k1.roles = strings(&["admin"]);
    let mut k2 = new_key(&mut g, &org.id, "billing-staging", sa_owner(&sa1));
    k2.tags = strings(&["staging"]);
    k2.roles = strings(&["read-only"]);
    k2.expires_at = Some(at(T0 + 10 * DAY + 499)); // 1 ms before now: expired
    let mut k3 = new_key(&mut g, &org.id, "reports 100%", user_owner(&ana));
    k3.tags = strings(&["say \"hi\"", "50%"]);
    k3.roles = strings(&["super-admin"]);
    k3.revoked_at = Some(at(T0 + 1));
    let mut k4 = new_key(&mut g, &org.id, "search_api", sa_owner(&sa2));
    k4.tags = strings(&["prod"]);
    k4.roles = strings(&["read-only", "admin"]);
    k4.expires_at = Some(at(T0 + 10 * DAY + 501)); // 1 ms after now: active
    let mut k5 = new_key(&mut g, &org.id, "legacy", sa_owner(&sa2));
    k5.tags = strings(&["quoted \"prod", "prod\""]);
    k5.expires_at = Some(at(T0 + DAY));
    k5.revoked_at = Some(at(T0 + 2)); // revoked wins over expired
    let mut k6 = new_key(&mut g, &org.id, "edge", sa_owner(&sa1));
    k6.tags = strings(&["a,b", "[x]"]);
    k6.expires_at = Some(now); // expires exactly now: expired
    let mut foreign = new_key(&mut g, &other.id, "billing-prod", sa_owner(&sa1));
    foreign.tags = strings(&["prod"]);
    foreign.roles = strings(&["admin"]);
    add_keys(&store, &[&k1, &k2, &k3, &k4, &k5, &k6, &foreign]).await;

    let (i1, i2, i3, i4, i5, i6) = (&k1.id, &k2.id, &k3.id, &k4.id, &k5.id, &k6.id);
    let l = |f: ApiKeyFilter| {
        let (store, org) = (store.clone(), org.id.clone());
        async move { list_keys(&store, &org, &f).await }
    };
    let base = || key_filter(now);
    let status = |s| ApiKeyFilter {
        status: Some(s),
        ..base()
    };
    let role = |r: &str| ApiKeyFilter {
        role: Some(r.to_string()),
        ..base()
    };
    let tag = |t: &str| ApiKeyFilter {
        tag: Some(t.to_string()),
        ..base()
    };
    let q = |t: &str| ApiKeyFilter {
        q: Some(t.to_string()),
        ..base()
    };
    let owner = |o: &Id| ApiKeyFilter {
        owner_id: Some(o.to_string()),
        ..base()
    };

    assert_eq!(l(base()).await, v(&[i6, i5, i4, i3, i2, i1]));
    assert_eq!(
        list_keys(&store, &other.id, &base()).await,
        vec![foreign.id.clone()]
    );
    // Status at `now`.
    assert_eq!(l(status(KeyStatus::Active)).await, v(&[i4, i1]));
    assert_eq!(l(status(KeyStatus::Expired)).await, v(&[i6, i2]));
    assert_eq!(l(status(KeyStatus::Revoked)).await, v(&[i5, i3]));
    // Judged at another instant, statuses move.
    let earlier = ApiKeyFilter {
        status: Some(KeyStatus::Active),
        ..key_filter(at(T0))
    };
    assert_eq!(l(earlier).await, v(&[i6, i4, i2, i1]));
    // Roles: whole names only.
    assert_eq!(l(role("admin")).await, v(&[i4, i1]));
    assert_eq!(l(role("super-admin")).await, v(&[i3]));
    assert_eq!(l(role("read-only")).await, v(&[i4, i2]));
    assert!(l(role("admi")).await.is_empty());
    // Tags: whole tags only; quotes, %, commas and brackets are literal.
    assert_eq!(l(tag("prod")).await, v(&[i4, i1]));
    assert_eq!(l(tag("team:billing")).await, v(&[i1]));
    assert!(l(tag("team")).await.is_empty());
    assert_eq!(l(tag("say \"hi\"")).await, v(&[i3]));
    assert!(l(tag("hi")).await.is_empty());
    assert!(l(tag("say")).await.is_empty());
    assert_eq!(l(tag("50%")).await, v(&[i3]));
    assert!(l(tag("5%")).await.is_empty());
    assert!(l(tag("%")).await.is_empty());
    assert!(l(tag("_")).await.is_empty());
    assert_eq!(l(tag("quoted \"prod")).await, v(&[i5]));
    assert_eq!(l(tag("prod\"")).await, v(&[i5]));
    assert_eq!(l(tag("a,b")).await, v(&[i6]));
    assert!(l(tag("b")).await.is_empty());
    assert_eq!(l(tag("[x]")).await, v(&[i6]));
    assert!(l(tag("x")).await.is_empty());
    // Owner.
    assert_eq!(l(owner(&sa1.id)).await, v(&[i6, i2, i1]));
    assert_eq!(l(owner(&sa2.id)).await, v(&[i5, i4]));
    assert_eq!(l(owner(&ana.id)).await, v(&[i3]));
    assert!(l(owner(&g.id())).await.is_empty());
    // q: name or description, case-insensitive, wildcards literal.
    assert_eq!(l(q("BILLING")).await, v(&[i2, i1]));
    assert_eq!(l(q("customers")).await, v(&[i1]));
    assert_eq!(l(q("%")).await, v(&[i3]));
    assert_eq!(l(q("_")).await, v(&[i4]));
    assert!(l(q("billing_prod")).await.is_empty());
    // Combined with AND.
    assert_eq!(
        l(ApiKeyFilter {
            status: Some(KeyStatus::Active),
            tag: Some("prod".into()),
            owner_id: Some(sa1.id.to_string()),
            ..base()
        })
        .await,
        v(&[i1])
    );
    assert_eq!(
        l(ApiKeyFilter {
            status: Some(KeyStatus::Active),
            role: Some("read-only".into()),
            ..base()
        })
        .await,
        v(&[i4])
    );
    assert_eq!(
        l(ApiKeyFilter {
            status: Some(KeyStatus::Expired),
            owner_id: Some(sa1.id.to_string()),
            q: Some("STAGING".into()),
            ..base()
        })
        .await,
        v(&[i2])
    );
    assert!(l(ApiKeyFilter {
        status: Some(KeyStatus::Revoked),
        tag: Some("prod".into()),
        ..base()
    })
    .await
    .is_empty());
}

async fn api_keys_pagination(store: Arc<dyn Store>) {
    let mut g = Gen::new(150);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let sa = new_sa(&mut g, &org.id, "svc", &[]);
    add_sa(&store, &sa).await;
    let mut keys: Vec<ApiKey> = (0..9)
        .map(|i| {
            let mut k = new_key(&mut g, &org.id, &format!("key-{i}"), sa_owner(&sa));
            if i % 2 == 0 {
                k.tags = strings(&["even"]);
            }
            k
        })
        .collect();
    keys.reverse();
    let refs: Vec<&ApiKey> = keys.iter().collect();
    add_keys(&store, &refs).await;
    add_keys(
        &store,
        &[&new_key(&mut g, &other.id, "key-x", sa_owner(&sa))],
    )
    .await;
    let all = newest_first(&ids(&keys, |k| &k.id));
    let even = newest_first(
        &keys
            .iter()
            .filter(|k| !k.tags.is_empty())
            .map(|k| k.id.clone())
            .collect::<Vec<_>>(),
    );
    for (filter, expected) in [
        (key_filter(g.now()), all),
        (
            ApiKeyFilter {
                tag: Some("even".into()),
                ..key_filter(g.now())
            },
            even,
        ),
    ] {
        for limit in [1usize, 2, 3, 5, 9, 10] {
            let mut pages = Vec::new();
            let mut cursor = None;
            loop {
                let mut tx = store.read().await.expect("read");
                let p = tx
                    .list_api_keys(
                        &org.id,
                        &filter,
                        &Page {
                            limit: limit as i64,
                            cursor: cursor.clone(),
                        },
                    )
                    .await
                    .expect("list");
                cursor = p.next_cursor.clone();
                let more = p.has_more;
                pages.push(p);
                if !more {
                    break;
                }
                assert!(pages.len() <= expected.len(), "pagination terminates");
            }
            check_pages(&pages, limit, &expected, |k| &k.id);
            assert_eq!(pages.len(), expected.len().div_ceil(limit).max(1));
        }
    }
}

async fn api_key_update_round_trips_every_field(store: Arc<dyn Store>) {
    let mut g = Gen::new(160);
    let org = add_org(&store, &mut g, "Acme").await;
    let sa = new_sa(&mut g, &org.id, "svc", &[]);
    add_sa(&store, &sa).await;
    let plain = new_key(&mut g, &org.id, "plain", sa_owner(&sa));
    add_keys(&store, &[&plain]).await;

    // Plain → everything set.
    let mut rich = full_key(&mut g, &org.id, "renamed", sa_owner(&sa));
    rich.id = plain.id.clone();
    rich.created_at = plain.created_at;
    rich.created_by = plain.created_by.clone();
    rich.last_used_at = plain.last_used_at;
    rich.revoked_at = Some(at(T0 + 4 * DAY + 4));
    rich.updated_at = at(T0 + 4 * DAY + 4);
    let mut tx = store.begin().await.expect("begin");
    tx.update_api_key(&rich).await.expect("update");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.api_key(&org.id, &plain.id).await.expect("get"),
        Some(rich.clone())
    );
    drop(tx);

    // Each field changed alone.
    let mut step = rich.clone();
    let edits: Vec<fn(&mut ApiKey)> = vec![
        |k| {
            k.ratelimits = vec![NamedLimit::default_from(RateLimit {
                limit: 1,
                duration_ms: 86_400_000,
            })]
        },
        |k| {
            k.credits = Some(Credits {
                remaining: 0,
                refill: None,
                low_threshold: None,
            })
        },
        |k| {
            k.credits = Some(Credits {
                remaining: i64::from(i32::MAX) + 10,
                refill: Some(Refill {
                    interval: RefillInterval::Daily,
                    amount: 7,
                    day_of_month: None,
                }),
                low_threshold: Some(0),
            })
        },
        |k| k.credits_epoch = 4,
        |k| k.allowed_cidrs = vec!["::1/128".parse().expect("cidr")],
        |k| k.metadata = json!({"only": "this", "n": -1}),
        |k| k.tags = strings(&["one"]),
        |k| k.scopes = Vec::new(),
        |k| k.roles = strings(&["read-only"]),
        |k| k.expires_at = Some(at(T0 + 99 * DAY + 9)),
        |k| k.description = "changed".to_string(),
        |k| k.masked_key = "kh_…0000".to_string(),
        |k| k.previous_valid_until = Some(at(T0 + 5 * DAY + 5)),
    ];
    for (i, edit) in edits.iter().enumerate() {
        edit(&mut step);
        step.updated_at = at(T0 + 5 * DAY + i as i64);
        let mut tx = store.begin().await.expect("begin");
        tx.update_api_key(&step).await.expect("update");
        tx.commit().await.expect("commit");
        let mut tx = store.read().await.expect("read");
        assert_eq!(
            tx.api_key(&org.id, &plain.id).await.expect("get"),
            Some(step.clone()),
            "edit {i}"
        );
    }

    // Everything set → everything cleared.
    let mut cleared = step.clone();
    cleared.name = "plain".to_string();
    cleared.description = String::new();
    cleared.tags = Vec::new();
    cleared.roles = Vec::new();
    cleared.scopes = Vec::new();
    cleared.digest = g.digest();
    cleared.expires_at = None;
    cleared.revoked_at = None;
    cleared.ratelimits = Vec::new();
    cleared.credits = None;
    cleared.allowed_cidrs = Vec::new();
    cleared.metadata = json!({});
    cleared.previous_digest = None;
    cleared.previous_valid_until = None;
    cleared.updated_at = at(T0 + 6 * DAY + 6);
    let mut tx = store.begin().await.expect("begin");
    tx.update_api_key(&cleared).await.expect("update");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.api_key(&org.id, &plain.id).await.expect("get"),
        Some(cleared.clone())
    );
    assert!(tx
        .api_key_by_digest(&rich.digest)
        .await
        .expect("old")
        .is_none());
}

async fn api_keys_delete_revoke_and_ids_of_owner(store: Arc<dyn Store>) {
    let mut g = Gen::new(170);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let sa1 = new_sa(&mut g, &org.id, "one", &[]);
    let sa2 = new_sa(&mut g, &org.id, "two", &[]);
    add_sa(&store, &sa1).await;
    add_sa(&store, &sa2).await;
    let k1 = new_key(&mut g, &org.id, "k1", sa_owner(&sa1));
    let mut k2 = full_key(&mut g, &org.id, "k2", sa_owner(&sa1));
    k2.revoked_at = None;
    let mut k3 = new_key(&mut g, &org.id, "k3", sa_owner(&sa1));
    k3.revoked_at = Some(at(T0 + 33));
    let k4 = new_key(&mut g, &org.id, "k4", sa_owner(&sa2));
    let kf = new_key(&mut g, &other.id, "kf", sa_owner(&sa1));
    add_keys(&store, &[&k1, &k2, &k3, &k4, &kf]).await;

    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.key_ids_of_owner(&org.id, &sa1.id).await.expect("ids"),
        vec![k1.id.clone(), k2.id.clone(), k3.id.clone()]
    );
    assert_eq!(
        tx.key_ids_of_owner(&org.id, &sa2.id).await.expect("ids"),
        vec![k4.id.clone()]
    );
    assert!(tx
        .key_ids_of_owner(&org.id, &g.id())
        .await
        .expect("ids")
        .is_empty());
    drop(tx);

    let when = at(T0 + 7 * DAY + 77);
    let mut tx = store.begin().await.expect("begin");
    let revoked = tx
        .revoke_keys_of_owner(&org.id, &sa1.id, when)
        .await
        .expect("revoke");
    assert_eq!(sorted(revoked), vec![k1.id.clone(), k2.id.clone()]);
    // A second pass finds nothing live.
    assert!(tx
        .revoke_keys_of_owner(&org.id, &sa1.id, at(T0 + 8 * DAY))
        .await
        .expect("again")
        .is_empty());
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("read");
    let got1 = tx.api_key(&org.id, &k1.id).await.expect("k1").expect("k1");
    assert_eq!(
        got1,
        ApiKey {
            revoked_at: Some(when),
            updated_at: when,
            ..k1.clone()
        }
    );
    let got2 = tx.api_key(&org.id, &k2.id).await.expect("k2").expect("k2");
    assert_eq!(
        got2,
        ApiKey {
            revoked_at: Some(when),
            updated_at: when,
            previous_digest: None,
            previous_valid_until: None,
            ..k2.clone()
        }
    );
    // Already revoked: untouched.
    assert_eq!(
        tx.api_key(&org.id, &k3.id).await.expect("k3"),
        Some(k3.clone())
    );
    // Other owners and organizations: untouched.
    assert_eq!(
        tx.api_key(&org.id, &k4.id).await.expect("k4"),
        Some(k4.clone())
    );
    assert_eq!(
        tx.api_key(&other.id, &kf.id).await.expect("kf"),
        Some(kf.clone())
    );
    // The grace-period secret no longer finds the revoked key.
    if let Some(prev) = &k2.previous_digest {
        assert!(tx.api_key_by_digest(prev).await.expect("prev").is_none());
    }
    drop(tx);

    let mut tx = store.begin().await.expect("begin");
    assert!(!tx
        .delete_api_key(&other.id, &k1.id)
        .await
        .expect("wrong org"));
    assert!(tx.delete_api_key(&org.id, &k1.id).await.expect("delete"));
    assert!(!tx.delete_api_key(&org.id, &k1.id).await.expect("again"));
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.api_key(&org.id, &k1.id).await.expect("k1"), None);
    assert!(tx
        .api_key_by_digest(&k1.digest)
        .await
        .expect("digest")
        .is_none());
    assert_eq!(
        tx.key_ids_of_owner(&org.id, &sa1.id).await.expect("ids"),
        vec![k2.id.clone(), k3.id.clone()]
    );
    assert_eq!(
        tx.key_ids_of_owner(&other.id, &sa1.id).await.expect("ids"),
        vec![kf.id.clone()]
    );
}

async fn api_key_counts(store: Arc<dyn Store>) {
    let mut g = Gen::new(180);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let empty = add_org(&store, &mut g, "Empty").await;
    let sa = new_sa(&mut g, &org.id, "svc", &[]);
    add_sa(&store, &sa).await;
    let now = at(T0 + 10 * DAY);
    let mut keys = Vec::new();
    // 3 active (no expiry, future expiry ×2), 2 expired (past, exactly now),
    // 2 revoked (one also expired).
    for (i, (expires, revoked)) in [
        (None, None),
        (Some(T0 + 10 * DAY + 1), None),
        (Some(T0 + 20 * DAY), None),
        (Some(T0 + DAY), None),
        (Some(T0 + 10 * DAY), None),
        (None, Some(T0 + 5)),
        (Some(T0 + DAY), Some(T0 + 6)),
    ]
    .into_iter()
    .enumerate()
    {
        let mut k = new_key(&mut g, &org.id, &format!("k{i}"), sa_owner(&sa));
        k.expires_at = expires.map(at);
        k.revoked_at = revoked.map(at);
        keys.push(k);
    }
    keys.push(new_key(&mut g, &other.id, "foreign", sa_owner(&sa)));
    let refs: Vec<&ApiKey> = keys.iter().collect();
    add_keys(&store, &refs).await;

    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.key_counts(&org.id, now).await.expect("counts"),
        KeyCounts {
            total: 7,
            active: 3,
            expired: 2,
            revoked: 2
        }
    );
    // Earlier, nothing had expired yet.
    assert_eq!(
        tx.key_counts(&org.id, at(T0)).await.expect("counts"),
        KeyCounts {
            total: 7,
            active: 5,
            expired: 0,
            revoked: 2
        }
    );
    assert_eq!(
        tx.key_counts(&other.id, now).await.expect("counts"),
        KeyCounts {
            total: 1,
            active: 1,
            expired: 0,
            revoked: 0
        }
    );
    assert_eq!(
        tx.key_counts(&empty.id, now).await.expect("counts"),
        KeyCounts::default()
    );
    // The counts agree with the status filter.
    for (s, n) in [
        (KeyStatus::Active, 3),
        (KeyStatus::Expired, 2),
        (KeyStatus::Revoked, 2),
    ] {
        let l = tx
            .list_api_keys(
                &org.id,
                &ApiKeyFilter {
                    status: Some(s),
                    ..key_filter(now)
                },
                &page(100),
            )
            .await
            .expect("list");
        assert_eq!(l.items.len(), n, "{s:?}");
        assert!(l.items.iter().all(|k| k.status(now) == s));
    }
}

fn balance(n: i64) -> Option<Credits> {
    Some(Credits {
        remaining: n,
        refill: None,
        low_threshold: Some(10),
    })
}

async fn stored_balance(store: &Arc<dyn Store>, org: &Id, key: &Id) -> Option<i64> {
    let mut tx = store.read().await.expect("read");
    tx.api_key(org, key)
        .await
        .expect("get")
        .expect("key")
        .credits
        .map(|c| c.remaining)
}

async fn credit_leases_never_hand_out_more_than_the_balance(store: Arc<dyn Store>) {
    let mut g = Gen::new(190);
    let org = add_org(&store, &mut g, "Acme").await;
    let sa = new_sa(&mut g, &org.id, "svc", &[]);
    add_sa(&store, &sa).await;
    let mut limited = new_key(&mut g, &org.id, "limited", sa_owner(&sa));
    limited.credits = balance(10_000);
    let unlimited = new_key(&mut g, &org.id, "unlimited", sa_owner(&sa));
    add_keys(&store, &[&limited, &unlimited]).await;
    let shared = store.clone();
    let lease = move |id: Id, cost: i64, want: i64| {
        let store = shared.clone();
        async move {
            let mut tx = store.begin().await.expect("begin");
            let r = tx
                .lease_credits(id.as_str(), cost, want)
                .await
                .expect("lease");
            tx.commit().await.expect("commit");
            r
        }
    };
    // An eighth of what is left above the reserve, at most what was asked, at least the
    // cost; inside the last 1,000 (the reserve), exactly the cost.
    let first = lease(limited.id.clone(), 1, 100)
        .await
        .expect("has credits");
    assert_eq!(
        (first.granted, first.remaining, first.epoch),
        (100, 9_900, 0)
    );
    assert_eq!(first.low_threshold, Some(10));
    assert!(lease(unlimited.id.clone(), 1, 100).await.is_none());
    assert!(lease(g.id(), 1, 100).await.is_none());

    // Concurrent leases from "nodes" hand out the balance exactly once.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let lease = lease.clone();
        let id = limited.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            loop {
                let l = lease(id.clone(), 1, 50).await.expect("lease");
                if l.granted == 0 {
                    return got;
                }
                got += l.granted;
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    assert_eq!(total, 9_900);
    assert_eq!(stored_balance(&store, &org.id, &limited.id).await, Some(0));
    let refused = lease(limited.id.clone(), 1, 50).await.expect("lease");
    assert_eq!((refused.granted, refused.remaining), (0, 0));

    // Returned and spent credits count only in the epoch they were leased in.
    let mut tx = store.begin().await.expect("begin");
    tx.return_credits(limited.id.as_str(), 0, 30)
        .await
        .expect("return");
    tx.spend_credits(limited.id.as_str(), 0, 5)
        .await
        .expect("spend");
    tx.commit().await.expect("commit");
    assert_eq!(stored_balance(&store, &org.id, &limited.id).await, Some(25));
    let mut tx = store.begin().await.expect("begin");
    let set = tx
        .adjust_credits(&org.id, &limited.id, CreditOp::Set, 500)
        .await
        .expect("adjust")
        .expect("found");
    assert_eq!((set.before, set.after, set.epoch), (25, 500, 1));
    tx.return_credits(limited.id.as_str(), 0, 30)
        .await
        .expect("return");
    tx.spend_credits(limited.id.as_str(), 0, 30)
        .await
        .expect("spend");
    tx.commit().await.expect("commit");
    assert_eq!(
        stored_balance(&store, &org.id, &limited.id).await,
        Some(500)
    );
    let other = add_org(&store, &mut g, "Other").await;
    let mut tx = store.begin().await.expect("begin");
    let inc = tx
        .adjust_credits(&org.id, &limited.id, CreditOp::Increment, 20)
        .await
        .expect("adjust")
        .expect("found");
    assert_eq!((inc.before, inc.after, inc.epoch), (500, 520, 1));
    let dec = tx
        .adjust_credits(&org.id, &limited.id, CreditOp::Decrement, 9_999)
        .await
        .expect("adjust")
        .expect("found");
    assert_eq!((dec.after, dec.epoch), (0, 1));
    // Another organization's key, and a key without a balance, are not adjusted.
    assert!(tx
        .adjust_credits(&other.id, &limited.id, CreditOp::Set, 1)
        .await
        .expect("adjust")
        .is_none());
    assert!(tx
        .adjust_credits(&org.id, &unlimited.id, CreditOp::Set, 1)
        .await
        .expect("adjust")
        .is_none());
    tx.commit().await.expect("commit");

    // One-time notices are claimed once, while the balance calls for them, and re-armed
    // when the balance is raised.
    let claim = |which| {
        let store = store.clone();
        let id = limited.id.clone();
        async move {
            let mut tx = store.begin().await.expect("begin");
            let won = tx
                .claim_credit_notice(id.as_str(), which)
                .await
                .expect("claim");
            tx.commit().await.expect("commit");
            won
        }
    };
    assert!(claim(CreditNotice::Exhausted).await);
    assert!(!claim(CreditNotice::Exhausted).await);
    assert!(claim(CreditNotice::Low).await);
    let mut tx = store.begin().await.expect("begin");
    tx.adjust_credits(&org.id, &limited.id, CreditOp::Set, 5)
        .await
        .expect("adjust");
    tx.commit().await.expect("commit");
    assert!(
        !claim(CreditNotice::Exhausted).await,
        "re-armed above 0, but 5 is not exhausted"
    );
    assert!(!claim(CreditNotice::Low).await, "5 is still below 10");
    let adjust = |op, value| {
        let store = store.clone();
        let (org, id) = (org.id.clone(), limited.id.clone());
        async move {
            let mut tx = store.begin().await.expect("begin");
            tx.adjust_credits(&org, &id, op, value)
                .await
                .expect("adjust");
            tx.commit().await.expect("commit");
        }
    };
    adjust(CreditOp::Decrement, 5).await;
    assert!(claim(CreditNotice::Exhausted).await, "re-armed, now at 0");
    adjust(CreditOp::Set, 20).await;
    assert!(
        !claim(CreditNotice::Low).await,
        "re-armed, but 20 is not below 10"
    );
    adjust(CreditOp::Decrement, 15).await;
    assert!(claim(CreditNotice::Low).await, "5 is below 10 again");
    assert!(!claim(CreditNotice::Exhausted).await, "5 is not exhausted");

    // A lease in a transaction that is dropped is given back.
    {
        let mut tx = store.begin().await.expect("begin");
        let l = tx
            .lease_credits(limited.id.as_str(), 1, 5)
            .await
            .expect("lease");
        assert!(l.is_some_and(|l| l.granted > 0));
    }
    assert_eq!(stored_balance(&store, &org.id, &limited.id).await, Some(5));
}

async fn tx_claim_plain(store: &Arc<dyn Store>, id: &Id, now: Timestamp) -> bool {
    let mut tx = store.begin().await.expect("begin");
    let won = tx
        .claim_due_refill(id, now, now + chrono::Duration::days(1))
        .await
        .expect("claim");
    tx.commit().await.expect("commit");
    won
}

async fn refills_come_due_on_schedule(store: Arc<dyn Store>) {
    let mut g = Gen::new(191);
    let org = add_org(&store, &mut g, "Acme").await;
    let sa = new_sa(&mut g, &org.id, "svc", &[]);
    add_sa(&store, &sa).await;
    let refill = Refill {
        interval: RefillInterval::Daily,
        amount: 50,
        day_of_month: None,
    };
    let mut daily = new_key(&mut g, &org.id, "daily", sa_owner(&sa));
    daily.credits = Some(Credits {
        remaining: 3,
        refill: Some(refill),
        low_threshold: None,
    });
    let plain = new_key(&mut g, &org.id, "plain", sa_owner(&sa));
    add_keys(&store, &[&daily, &plain]).await;
    let mut tx = store.begin().await.expect("begin");
    tx.schedule_refill(&daily.id, Some(at(T0 + DAY)))
        .await
        .expect("schedule");
    tx.commit().await.expect("commit");
    let due = |t: i64| {
        let store = store.clone();
        async move {
            let mut tx = store.read().await.expect("read");
            tx.due_refills(at(t), 100).await.expect("due")
        }
    };
    assert!(due(T0 + DAY - 1).await.is_empty());
    let d = due(T0 + DAY).await;
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].key_id.clone(), d[0].org_id.clone()),
        (daily.id.clone(), org.id.clone())
    );
    assert_eq!(d[0].refill, refill);
    // A due refill is claimed once (moved to the next one), and not before it is due.
    let claim = |now: i64, next: i64| {
        let store = store.clone();
        let id = daily.id.clone();
        async move {
            let mut tx = store.begin().await.expect("begin");
            let won = tx
                .claim_due_refill(&id, at(now), at(next))
                .await
                .expect("claim");
            tx.commit().await.expect("commit");
            won
        }
    };
    assert!(!claim(T0 + DAY - 1, T0 + DAY).await, "not due yet");
    let (a, b) = tokio::join!(claim(T0 + DAY, T0 + 2 * DAY), claim(T0 + DAY, T0 + 2 * DAY));
    assert!(a ^ b, "exactly one of two concurrent claims wins");
    assert!(due(T0 + 2 * DAY - 1).await.is_empty());
    assert_eq!(due(T0 + 2 * DAY).await.len(), 1);
    assert!(!claim(T0 + DAY, T0 + 3 * DAY).await, "moved on already");
    assert!(
        !tx_claim_plain(&store, &plain.id, at(T0 + 9 * DAY)).await,
        "a key without a refill has none to claim"
    );
    let mut tx = store.begin().await.expect("begin");
    tx.schedule_refill(&daily.id, None)
        .await
        .expect("unschedule");
    tx.commit().await.expect("commit");
    assert!(due(T0 + 9 * DAY).await.is_empty());
}

async fn token_buckets_hand_out_each_token_once(store: Arc<dyn Store>) {
    let shared = store.clone();
    let lease = move |bucket: &'static str, cost: i64, want: i64, now: i64| {
        let store = shared.clone();
        async move {
            let mut tx = store.begin().await.expect("begin");
            let g = tx
                .lease_tokens(bucket, 10, 60_000, cost, want, now)
                .await
                .expect("lease");
            tx.commit().await.expect("commit");
            g
        }
    };
    // Eight "nodes" creating and draining the same bucket at once get 10 in all.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let lease = lease.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            loop {
                let g = lease("k:one:default:10:60000", 1, 1, T0).await;
                if g.granted == 0 {
                    return got;
                }
                got += g.granted;
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    assert_eq!(total, 10);
    let refused = lease("k:one:default:10:60000", 1, 1, T0).await;
    assert_eq!((refused.granted, refused.remaining), (0, 0));
    assert_eq!(refused.reset_at_ms, T0 + 6_000);
    // One token every 6 s; tokens given back are there again.
    assert_eq!(
        lease("k:one:default:10:60000", 1, 5, T0 + 6_000)
            .await
            .granted,
        1
    );
    let mut tx = store.begin().await.expect("begin");
    tx.return_tokens("k:one:default:10:60000", 10, 60_000, 4, T0 + 6_000)
        .await
        .expect("return");
    tx.commit().await.expect("commit");
    assert_eq!(
        lease("k:one:default:10:60000", 4, 4, T0 + 6_000)
            .await
            .granted,
        4
    );
    // Cost 0 reports without spending; other buckets are their own.
    let report = lease("k:one:default:10:60000", 0, 0, T0 + 6_000).await;
    assert_eq!((report.granted, report.remaining), (0, 0));
    assert_eq!(lease("k:two:default:10:60000", 1, 10, T0).await.granted, 1);
    // Buckets full again are pruned.
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(tx.prune_buckets(T0 + 120_000).await.expect("prune"), 2);
    tx.commit().await.expect("commit");
}

async fn credentials_crud_and_revoke(store: Arc<dyn Store>) {
    let mut g = Gen::new(200);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let sa1 = new_sa(&mut g, &org.id, "one", &[]);
    let sa2 = new_sa(&mut g, &org.id, "two", &[]);
    add_sa(&store, &sa1).await;
    add_sa(&store, &sa2).await;
    let mut c1 = new_credential(&mut g, &sa1, "ci-runner");
    c1.description = "Used by CI".to_string();
    c1.expires_at = Some(at(T0 + 90 * DAY + 9));
    c1.last_used_at = Some(at(T0 + 3));
    let c2 = new_credential(&mut g, &sa1, "deploy");
    let c3 = new_credential(&mut g, &sa2, "other");
    let mut tx = store.begin().await.expect("begin");
    for c in [&c1, &c3, &c2] {
        tx.insert_credential(c).await.expect("insert");
    }
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.credential(&org.id, &sa1.id, &c1.id).await.expect("get"),
        Some(c1.clone())
    );
    assert_eq!(
        tx.credential(&org.id, &sa2.id, &c1.id)
            .await
            .expect("wrong sa"),
        None
    );
    assert_eq!(
        tx.credential(&other.id, &sa1.id, &c1.id)
            .await
            .expect("wrong org"),
        None
    );
    assert_eq!(
        tx.credential_by_client_id(&c2.client_id)
            .await
            .expect("client id"),
        Some(c2.clone())
    );
    assert_eq!(
        tx.credential_by_client_id("khci_nope")
            .await
            .expect("unknown"),
        None
    );
    assert_eq!(
        tx.credentials(&org.id, &sa1.id).await.expect("list"),
        vec![c2.clone(), c1.clone()]
    );
    assert_eq!(
        tx.credentials(&org.id, &sa2.id).await.expect("list"),
        vec![c3.clone()]
    );
    assert!(tx
        .credentials(&other.id, &sa1.id)
        .await
        .expect("list")
        .is_empty());
    drop(tx);

    // Update: name, description, updated_at.
    let mut changed = c1.clone();
    changed.name = "ci-runner-2".to_string();
    changed.description = "Used by CI, v2".to_string();
    changed.updated_at = at(T0 + DAY + 1);
    let mut tx = store.begin().await.expect("begin");
    tx.update_credential(&changed).await.expect("update");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.credential(&org.id, &sa1.id, &c1.id).await.expect("get"),
        Some(changed.clone())
    );
    drop(tx);

    // Delete.
    let mut tx = store.begin().await.expect("begin");
    assert!(!tx
        .delete_credential(&org.id, &sa2.id, &c1.id)
        .await
        .expect("wrong sa"));
    assert!(tx
        .delete_credential(&org.id, &sa1.id, &c1.id)
        .await
        .expect("delete"));
    assert!(!tx
        .delete_credential(&org.id, &sa1.id, &c1.id)
        .await
        .expect("again"));
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.credential_by_client_id(&c1.client_id)
            .await
            .expect("gone"),
        None
    );
    assert_eq!(
        tx.credentials(&org.id, &sa1.id).await.expect("list"),
        vec![c2.clone()]
    );
    drop(tx);

    // Revoke every live credential of an account.
    let c4 = new_credential(&mut g, &sa1, "fresh");
    let mut c5 = new_credential(&mut g, &sa1, "old");
    c5.revoked_at = Some(at(T0 + 50));
    let when = at(T0 + 2 * DAY + 2);
    let mut tx = store.begin().await.expect("begin");
    tx.insert_credential(&c4).await.expect("c4");
    tx.insert_credential(&c5).await.expect("c5");
    assert_eq!(
        tx.revoke_credentials_of(&org.id, &sa1.id, when)
            .await
            .expect("revoke"),
        2
    );
    assert_eq!(
        tx.revoke_credentials_of(&org.id, &sa1.id, at(T0 + 3 * DAY))
            .await
            .expect("again"),
        0
    );
    assert_eq!(
        tx.revoke_credentials_of(&other.id, &sa2.id, when)
            .await
            .expect("wrong org"),
        0
    );
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    let revoked = |c: &Credential| Credential {
        revoked_at: Some(when),
        updated_at: when,
        ..c.clone()
    };
    assert_eq!(
        tx.credentials(&org.id, &sa1.id).await.expect("list"),
        vec![c5.clone(), revoked(&c4), revoked(&c2)]
    );
    assert_eq!(
        tx.credential(&org.id, &sa2.id, &c3.id).await.expect("c3"),
        Some(c3)
    );
}

// ---------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------

async fn read_chain(store: &Arc<dyn Store>, org: &Id) -> (Vec<AuditEntry>, Option<(i64, String)>) {
    let mut tx = store.read().await.expect("read");
    let chain = tx.audit_chain(org).await.expect("chain");
    let head = tx.audit_head(org).await.expect("head");
    (chain, head)
}

fn verify(
    chain: &[AuditEntry],
    head: &Option<(i64, String)>,
) -> Result<(), keyhaven_core::audit::ChainBreak> {
    verify_chain(chain, head.as_ref().map(|(s, h)| (*s, h.as_str())))
}

/// Appends `drafts` to `org`'s chain, one transaction for all, times increasing.
async fn append(
    store: &Arc<dyn Store>,
    g: &mut Gen,
    org: &Id,
    drafts: Vec<AuditDraft>,
) -> Vec<AuditEntry> {
    let mut tx = store.begin().await.expect("begin");
    let mut out = Vec::new();
    for d in drafts {
        let id = g.id();
        let e = tx.append_audit(org, id, g.now(), d).await.expect("append");
        out.push(e);
    }
    tx.commit().await.expect("commit");
    out
}

async fn audit_append_builds_a_verifiable_chain(store: Arc<dyn Store>) {
    let mut g = Gen::new(210);
    let org = add_org(&store, &mut g, "Acme").await;

    let (chain, head) = read_chain(&store, &org.id).await;
    assert!(chain.is_empty());
    assert_eq!(head, None);
    assert_eq!(verify(&chain, &head), Ok(()));

    let mut bare = draft("", "system.bootstrap", None, Outcome::Success);
    bare.actor = Principal::system("keyhaven");
    bare.ip = None;
    bare.user_agent = None;
    bare.request_id = None;
    bare.changes = json!(null);
    let mut first = append(
        &store,
        &mut g,
        &org.id,
        vec![
            bare,
            draft("u1", "api_key.create", Some("k1"), Outcome::Success),
            draft("u2", "user.sign_in", None, Outcome::Denied),
        ],
    )
    .await;
    let second = append(
        &store,
        &mut g,
        &org.id,
        vec![
            draft("u1", "api_key.revoke", Some("k1"), Outcome::Error),
            draft("u1", "role.update", Some("r"), Outcome::Success),
        ],
    )
    .await;
    first.extend(second);
    let appended = first;

    let mut prev = GENESIS_HASH.to_string();
    for (i, e) in appended.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
        assert_eq!(e.org_id, org.id);
        assert_eq!(e.prev_hash, prev);
        assert_eq!(e.hash, e.recompute_hash());
        prev = e.hash.clone();
    }

    let (chain, head) = read_chain(&store, &org.id).await;
    // Every field reads back exactly as appended.
    assert_eq!(chain, appended);
    assert_eq!(head, Some((5, prev)));
    assert_eq!(verify(&chain, &head), Ok(()));
}

async fn audit_chains_of_organizations_are_independent(store: Arc<dyn Store>) {
    let mut g = Gen::new(220);
    let a = add_org(&store, &mut g, "A").await;
    let b = add_org(&store, &mut g, "B").await;
    // Interleaved appends, some in shared transactions.
    let mut tx = store.begin().await.expect("begin");
    for i in 0..3 {
        for org in [&a.id, &b.id] {
            let id = g.id();
            tx.append_audit(
                org,
                id,
                g.now(),
                draft(&format!("u{i}"), "api_key.create", None, Outcome::Success),
            )
            .await
            .expect("append");
        }
    }
    tx.commit().await.expect("commit");
    append(
        &store,
        &mut g,
        &a.id,
        vec![draft("u", "api_key.delete", None, Outcome::Success)],
    )
    .await;

    let (chain_a, head_a) = read_chain(&store, &a.id).await;
    let (chain_b, head_b) = read_chain(&store, &b.id).await;
    assert_eq!(chain_a.len(), 4);
    assert_eq!(chain_b.len(), 3);
    assert!(chain_a.iter().all(|e| e.org_id == a.id));
    assert!(chain_b.iter().all(|e| e.org_id == b.id));
    assert_eq!(chain_a[0].prev_hash, GENESIS_HASH);
    assert_eq!(chain_b[0].prev_hash, GENESIS_HASH);
    assert_eq!(
        chain_a.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        chain_b.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(head_a.as_ref().map(|h| h.0), Some(4));
    assert_eq!(head_b.as_ref().map(|h| h.0), Some(3));
    assert_eq!(verify(&chain_a, &head_a), Ok(()));
    assert_eq!(verify(&chain_b, &head_b), Ok(()));
    // One organization's chain does not verify against the other's head.
    assert!(verify(&chain_b, &head_a).is_err());
    // Listing is per organization too.
    assert_eq!(
        list_audit(&store, &b.id, &AuditFilter::default())
            .await
            .len(),
        3
    );
}

async fn audit_list_filters_and_pagination(store: Arc<dyn Store>) {
    let mut g = Gen::new(230);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let mut tx = store.begin().await.expect("begin");
    let mut e = Vec::new();
    // (actor, action, target, outcome, at)
    for (actor, action, target, outcome, ms) in [
        (
            "u1",
            "api_key.create",
            Some("k1"),
            Outcome::Success,
            T0 + 1_000,
        ),
        (
            "u2",
            "api_key.create",
            Some("k2"),
            Outcome::Success,
            T0 + 2_000,
        ),
        (
            "u1",
            "api_key.revoke",
            Some("k1"),
            Outcome::Denied,
            T0 + 3_000,
        ),
        ("k9", "user.sign_in", None, Outcome::Error, T0 + 4_000),
        (
            "u2",
            "api_key.revoke",
            Some("k1"),
            Outcome::Success,
            T0 + 5_000,
        ),
    ] {
        let id = g.id();
        e.push(
            tx.append_audit(&org.id, id, at(ms), draft(actor, action, target, outcome))
                .await
                .expect("append")
                .id,
        );
    }
    let id = g.id();
    tx.append_audit(
        &other.id,
        id,
        at(T0 + 3_000),
        draft("u1", "api_key.create", Some("k1"), Outcome::Success),
    )
    .await
    .expect("append other");
    tx.commit().await.expect("commit");

    let l = |f: AuditFilter| {
        let (store, org) = (store.clone(), org.id.clone());
        async move { list_audit(&store, &org, &f).await }
    };
    let s = |v: &str| Some(v.to_string());
    let r = |idx: &[usize]| idx.iter().map(|&i| e[i].clone()).collect::<Vec<_>>();
    assert_eq!(l(AuditFilter::default()).await, r(&[4, 3, 2, 1, 0]));
    assert_eq!(
        l(AuditFilter {
            actor_id: s("u1"),
            ..Default::default()
        })
        .await,
        r(&[2, 0])
    );
    assert_eq!(
        l(AuditFilter {
            action: s("api_key.revoke"),
            ..Default::default()
        })
        .await,
        r(&[4, 2])
    );
    assert!(l(AuditFilter {
        action: s("api_key"),
        ..Default::default()
    })
    .await
    .is_empty());
    assert_eq!(
        l(AuditFilter {
            target_id: s("k1"),
            ..Default::default()
        })
        .await,
        r(&[4, 2, 0])
    );
    assert_eq!(
        l(AuditFilter {
            outcome: Some(Outcome::Success),
            ..Default::default()
        })
        .await,
        r(&[4, 1, 0])
    );
    assert_eq!(
        l(AuditFilter {
            outcome: Some(Outcome::Denied),
            ..Default::default()
        })
        .await,
        r(&[2])
    );
    assert_eq!(
        l(AuditFilter {
            outcome: Some(Outcome::Error),
            ..Default::default()
        })
        .await,
        r(&[3])
    );
    // since is inclusive, until exclusive.
    assert_eq!(
        l(AuditFilter {
            since: Some(at(T0 + 2_000)),
            ..Default::default()
        })
        .await,
        r(&[4, 3, 2, 1])
    );
    assert_eq!(
        l(AuditFilter {
            until: Some(at(T0 + 4_000)),
            ..Default::default()
        })
        .await,
        r(&[2, 1, 0])
    );
    assert_eq!(
        l(AuditFilter {
            since: Some(at(T0 + 2_000)),
            until: Some(at(T0 + 4_000)),
            ..Default::default()
        })
        .await,
        r(&[2, 1])
    );
    assert!(l(AuditFilter {
        since: Some(at(T0 + 5_001)),
        ..Default::default()
    })
    .await
    .is_empty());
    // Combined.
    assert_eq!(
        l(AuditFilter {
            actor_id: s("u2"),
            action: s("api_key.revoke"),
            target_id: s("k1"),
            outcome: Some(Outcome::Success),
            since: Some(at(T0)),
            until: Some(at(T0 + 6_000)),
        })
        .await,
        r(&[4])
    );
    assert!(l(AuditFilter {
        actor_id: s("u2"),
        outcome: Some(Outcome::Denied),
        ..Default::default()
    })
    .await
    .is_empty());

    // Pagination, unfiltered and filtered.
    for (filter, expected) in [
        (AuditFilter::default(), r(&[4, 3, 2, 1, 0])),
        (
            AuditFilter {
                target_id: s("k1"),
                ..Default::default()
            },
            r(&[4, 2, 0]),
        ),
    ] {
        for limit in [1usize, 2, 3, 5] {
            let mut pages = Vec::new();
            let mut cursor = None;
            loop {
                let mut tx = store.read().await.expect("read");
                let p = tx
                    .list_audit(
                        &org.id,
                        &filter,
                        &Page {
                            limit: limit as i64,
                            cursor: cursor.clone(),
                        },
                    )
                    .await
                    .expect("list");
                cursor = p.next_cursor.clone();
                let more = p.has_more;
                pages.push(p);
                if !more {
                    break;
                }
                assert!(pages.len() <= expected.len(), "pagination terminates");
            }
            check_pages(&pages, limit, &expected, |e| &e.id);
        }
    }
}

/// Makes an organization with a five-entry chain; returns it and the entries.
async fn audited_org(db: &TestDb, seed: u64) -> (Organization, Vec<AuditEntry>) {
    let mut g = Gen::new(seed);
    let org = add_org(&db.store, &mut g, "Acme").await;
    let entries = append(
        &db.store,
        &mut g,
        &org.id,
        (0..5)
            .map(|i| {
                draft(
                    &format!("u{i}"),
                    "api_key.create",
                    Some("k"),
                    Outcome::Success,
                )
            })
            .collect(),
    )
    .await;
    let (chain, head) = read_chain(&db.store, &org.id).await;
    assert_eq!(verify(&chain, &head), Ok(()));
    (org, entries)
}

/// Runs one statement on the database behind the store's back.
async fn raw_sql(db: &TestDb, sql: &str, id: &Id) {
    let raw = SqlStore::connect(&db.url).await.expect("raw connect");
    let r = sqlx::query(sql)
        .bind(id.as_str())
        .execute(raw.pool())
        .await
        .expect("raw sql");
    assert_eq!(r.rows_affected(), 1);
    raw.pool().close().await;
}

async fn audit_edit_is_detected(db: &TestDb) {
    let (org, entries) = audited_org(db, 240).await;
    raw_sql(
        db,
        "UPDATE audit_events SET action = 'api_key.delete' WHERE id = $1",
        &entries[2].id,
    )
    .await;
    let (chain, head) = read_chain(&db.store, &org.id).await;
    assert_eq!(chain[2].draft.action, "api_key.delete");
    let brk = verify(&chain, &head).expect_err("edit detected");
    assert_eq!(brk.seq, 3);
    assert_eq!(brk.id, entries[2].id.to_string());
}

async fn audit_deletion_is_detected(db: &TestDb) {
    let (org, entries) = audited_org(db, 250).await;
    raw_sql(db, "DELETE FROM audit_events WHERE id = $1", &entries[1].id).await;
    let (chain, head) = read_chain(&db.store, &org.id).await;
    assert_eq!(chain.len(), 4);
    let brk = verify(&chain, &head).expect_err("deletion detected");
    assert_eq!(brk.seq, 2);

    // Deleting the newest entry is caught by the recorded head.
    raw_sql(db, "DELETE FROM audit_events WHERE id = $1", &entries[4].id).await;
    let (chain, head) = read_chain(&db.store, &org.id).await;
    assert!(verify(&chain, &head).is_err());
    let intact: Vec<AuditEntry> = entries[..4].to_vec();
    assert_eq!(verify(&intact, &head).map_err(|b| b.seq), Err(5));
}

// ---------------------------------------------------------------------------------------
// Shared secrets and usage
// ---------------------------------------------------------------------------------------

async fn shared_secrets_put_get_replace(store: Arc<dyn Store>) {
    let mut g = Gen::new(260);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.shared_secret(&org.id).await.expect("none"), None);
    drop(tx);

    let first = SharedSecretRecord {
        ciphertext: "v1:bm9uY2U=:Y2lwaGVydGV4dA==".to_string(),
        created_at: at(T0 + 101),
        previous_ciphertext: None,
        previous_valid_until: None,
    };
    let mut tx = store.begin().await.expect("begin");
    tx.put_shared_secret(&org.id, &first).await.expect("put");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.shared_secret(&org.id).await.expect("get"),
        Some(first.clone())
    );
    assert_eq!(tx.shared_secret(&other.id).await.expect("other"), None);
    drop(tx);

    let rotated = SharedSecretRecord {
        ciphertext: "v1:bmV3:bmV3Y2lwaGVy".to_string(),
        created_at: at(T0 + DAY + 202),
        previous_ciphertext: Some(first.ciphertext.clone()),
        previous_valid_until: Some(at(T0 + 2 * DAY + 202)),
    };
    let mut tx = store.begin().await.expect("begin");
    tx.put_shared_secret(&org.id, &rotated)
        .await
        .expect("replace");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.shared_secret(&org.id).await.expect("get"), Some(rotated));
    drop(tx);

    // Replacing again clears the previous secret.
    let third = SharedSecretRecord {
        ciphertext: "v1:dGhpcmQ=:dGhpcmQ=".to_string(),
        created_at: at(T0 + 3 * DAY + 303),
        previous_ciphertext: None,
        previous_valid_until: None,
    };
    let mut tx = store.begin().await.expect("begin");
    tx.put_shared_secret(&org.id, &third)
        .await
        .expect("replace");
    tx.put_shared_secret(&other.id, &first)
        .await
        .expect("other");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(tx.shared_secret(&org.id).await.expect("get"), Some(third));
    assert_eq!(
        tx.shared_secret(&other.id).await.expect("other"),
        Some(first)
    );
}

async fn usage_sums_ranges_and_calls_since(store: Arc<dyn Store>) {
    let mut g = Gen::new(270);
    let org = add_org(&store, &mut g, "Acme").await;
    let other = add_org(&store, &mut g, "Other").await;
    let h0 = (T0 / HOUR) * HOUR;
    let (k1, k2, kf) = (g.id(), g.id(), g.id());
    let count = |key: &Id, org: &Id, hour: i64, valid: i64, invalid: i64| UsageCount {
        key_id: key.clone(),
        org_id: org.clone(),
        hour,
        valid,
        invalid,
    };
    let mut tx = store.begin().await.expect("begin");
    tx.add_usage(&[
        count(&k1, &org.id, h0, 3, 1),
        count(&k1, &org.id, h0 + HOUR, 2, 0),
        count(&k2, &org.id, h0, 5, 0),
        count(&kf, &other.id, h0, 100, 100),
    ])
    .await
    .expect("add");
    // The same hour twice in one batch sums too.
    tx.add_usage(&[count(&k1, &org.id, h0, 1, 0), count(&k1, &org.id, h0, 0, 1)])
        .await
        .expect("add again");
    tx.add_usage(&[]).await.expect("add nothing");
    tx.commit().await.expect("commit");
    // A later flush sums into the same hour.
    let mut tx = store.begin().await.expect("begin");
    tx.add_usage(&[count(&k1, &org.id, h0 + HOUR, 10, 7)])
        .await
        .expect("add later");
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.usage(&k1, at(h0), at(h0 + 2 * HOUR))
            .await
            .expect("usage"),
        vec![
            count(&k1, &org.id, h0, 4, 2),
            count(&k1, &org.id, h0 + HOUR, 12, 7)
        ]
    );
    // [from, to)
    assert_eq!(
        tx.usage(&k1, at(h0), at(h0 + HOUR)).await.expect("usage"),
        vec![count(&k1, &org.id, h0, 4, 2)]
    );
    assert_eq!(
        tx.usage(&k1, at(h0 + HOUR), at(h0 + 5 * HOUR))
            .await
            .expect("usage"),
        vec![count(&k1, &org.id, h0 + HOUR, 12, 7)]
    );
    assert!(tx
        .usage(&k1, at(h0 + 2 * HOUR), at(h0 + 3 * HOUR))
        .await
        .expect("usage")
        .is_empty());
    assert_eq!(
        tx.usage(&k2, at(h0 - DAY), at(h0 + DAY))
            .await
            .expect("usage"),
        vec![count(&k2, &org.id, h0, 5, 0)]
    );
    assert!(tx
        .usage(&g.id(), at(h0 - DAY), at(h0 + DAY))
        .await
        .expect("usage")
        .is_empty());

    assert_eq!(
        tx.calls_since(&org.id, at(h0)).await.expect("calls"),
        4 + 2 + 12 + 7 + 5
    );
    assert_eq!(
        tx.calls_since(&org.id, at(h0 - DAY)).await.expect("calls"),
        30
    );
    assert_eq!(
        tx.calls_since(&org.id, at(h0 + HOUR)).await.expect("calls"),
        19
    );
    assert_eq!(
        tx.calls_since(&org.id, at(h0 + 2 * HOUR))
            .await
            .expect("calls"),
        0
    );
    assert_eq!(tx.calls_since(&other.id, at(h0)).await.expect("calls"), 200);
    let empty = new_org(&mut g, "Empty").id;
    assert_eq!(tx.calls_since(&empty, at(h0)).await.expect("calls"), 0);
}

async fn touch_key_only_moves_forward(store: Arc<dyn Store>) {
    let mut g = Gen::new(280);
    let org = add_org(&store, &mut g, "Acme").await;
    let sa = new_sa(&mut g, &org.id, "svc", &[]);
    add_sa(&store, &sa).await;
    let key = new_key(&mut g, &org.id, "k", sa_owner(&sa));
    let other = new_key(&mut g, &org.id, "other", sa_owner(&sa));
    add_keys(&store, &[&key, &other]).await;

    let touch_and_read = |ms: i64| {
        let store = store.clone();
        let (org_id, key_id) = (org.id.clone(), key.id.clone());
        async move {
            let mut tx = store.begin().await.expect("begin");
            tx.touch_key(&key_id, at(ms)).await.expect("touch");
            tx.commit().await.expect("commit");
            let mut tx = store.read().await.expect("read");
            tx.api_key(&org_id, &key_id)
                .await
                .expect("get")
                .expect("key")
                .last_used_at
        }
    };
    assert_eq!(touch_and_read(T0 + 2_222).await, Some(at(T0 + 2_222)));
    assert_eq!(touch_and_read(T0 + 1_111).await, Some(at(T0 + 2_222)));
    assert_eq!(touch_and_read(T0 + 2_222).await, Some(at(T0 + 2_222)));
    assert_eq!(touch_and_read(T0 + 3_333).await, Some(at(T0 + 3_333)));

    let mut tx = store.begin().await.expect("begin");
    tx.touch_key(&g.id(), at(T0)).await.expect("unknown key");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    let untouched = tx.api_key(&org.id, &other.id).await.expect("get");
    assert_eq!(untouched, Some(other.clone()));
    // Touching changes nothing else.
    let touched = tx.api_key(&org.id, &key.id).await.expect("get");
    assert_eq!(
        touched,
        Some(ApiKey {
            last_used_at: Some(at(T0 + 3_333)),
            ..key.clone()
        })
    );
}

// ---------------------------------------------------------------------------------------
// Change log
// ---------------------------------------------------------------------------------------

async fn change_log_record_since_prune(store: Arc<dyn Store>) {
    let kinds = |changes: &[Change]| {
        changes
            .iter()
            .map(|c| (c.kind, c.ref_id.clone()))
            .collect::<Vec<_>>()
    };
    let since = |ms: i64| {
        let store = store.clone();
        async move {
            let mut tx = store.read().await.expect("read");
            tx.changes_since(at(ms), i64::MAX).await.expect("changes")
        }
    };
    assert!(since(T0).await.is_empty());

    let mut tx = store.begin().await.expect("begin");
    tx.record_change(ChangeKind::Key, "k1", at(T0 + 1_000))
        .await
        .expect("key");
    tx.record_change(ChangeKind::Owner, "sa1", at(T0 + 2_000))
        .await
        .expect("owner");
    tx.record_change(ChangeKind::Organization, "org1", at(T0 + 3_000))
        .await
        .expect("org");
    tx.commit().await.expect("commit");
    {
        // Recorded in a transaction that is dropped: never happened.
        let mut tx = store.begin().await.expect("begin");
        tx.record_change(ChangeKind::Key, "ghost", at(T0 + 2_500))
            .await
            .expect("ghost");
    }

    let all = since(T0).await;
    assert_eq!(
        kinds(&all),
        vec![
            (ChangeKind::Key, "k1".to_string()),
            (ChangeKind::Owner, "sa1".to_string()),
            (ChangeKind::Organization, "org1".to_string()),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "seq increases");
    // `since` is inclusive.
    assert_eq!(
        kinds(&since(T0 + 2_000).await),
        vec![
            (ChangeKind::Owner, "sa1".to_string()),
            (ChangeKind::Organization, "org1".to_string()),
        ]
    );
    assert!(since(T0 + 3_001).await.is_empty());

    // Pruning forgets what is older than `before`; later rows keep counting up.
    let mut tx = store.begin().await.expect("begin");
    tx.prune_changes(at(T0 + 2_000)).await.expect("prune");
    tx.record_change(ChangeKind::Key, "k2", at(T0 + 500))
        .await
        .expect("late row");
    tx.commit().await.expect("commit");
    let left = since(T0).await;
    assert_eq!(
        kinds(&left),
        vec![
            (ChangeKind::Owner, "sa1".to_string()),
            (ChangeKind::Organization, "org1".to_string()),
            (ChangeKind::Key, "k2".to_string()),
        ]
    );
    assert_eq!(left[0].seq, all[1].seq);
    assert!(left[2].seq > all[2].seq);

    // A row written by a node whose clock is behind is still returned after the
    // highest sequence number the reader has seen.
    let mut tx = store.read().await.expect("read");
    let after = tx
        .changes_since(at(T0 + 10_000), left[1].seq)
        .await
        .expect("after seq");
    assert_eq!(kinds(&after), vec![(ChangeKind::Key, "k2".to_string())]);
}

// ---------------------------------------------------------------------------------------
// One test per backend for each function above
// ---------------------------------------------------------------------------------------

macro_rules! conformance {
    (store: [$($s:ident),* $(,)?], db: [$($d:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $s() {
                    let db = keyhaven_store::testing::TestDb::sqlite().await;
                    super::$s(db.store.clone()).await;
                    db.store.close().await;
                }
            )*
            $(
                #[tokio::test]
                async fn $d() {
                    let db = keyhaven_store::testing::TestDb::sqlite().await;
                    super::$d(&db).await;
                    db.store.close().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $s() {
                    let Some(db) = keyhaven_store::testing::TestDb::postgres(stringify!($s)).await
                    else {
                        return;
                    };
                    super::$s(db.store.clone()).await;
                    db.store.close().await;
                }
            )*
            $(
                #[tokio::test]
                async fn $d() {
                    let Some(db) = keyhaven_store::testing::TestDb::postgres(stringify!($d)).await
                    else {
                        return;
                    };
                    super::$d(&db).await;
                    db.store.close().await;
                }
            )*
        }
    };
}

conformance! {
    store: [
        migrations_rerun_idempotently,
        dropped_transaction_leaves_nothing,
        committed_transaction_is_visible,
        organizations_insert_get_list_update,
        roles_crud_and_order,
        duplicates_are_named_by_their_constraint,
        role_in_use_by_users_service_accounts_and_keys,
        users_insert_get_by_email_duplicate,
        users_list_filters,
        users_pagination,
        users_update_delete_count_and_login,
        sessions_lifecycle,
        login_failures_count_oldest_clear,
        service_accounts_crud_filters_pagination,
        service_account_key_counts_and_delete_cascade,
        api_keys_insert_get_duplicates,
        api_key_by_current_and_previous_digest,
        api_keys_list_filters,
        api_keys_pagination,
        api_key_update_round_trips_every_field,
        api_keys_delete_revoke_and_ids_of_owner,
        api_key_counts,
        credit_leases_never_hand_out_more_than_the_balance,
        refills_come_due_on_schedule,
        token_buckets_hand_out_each_token_once,
        credentials_crud_and_revoke,
        audit_append_builds_a_verifiable_chain,
        audit_chains_of_organizations_are_independent,
        audit_list_filters_and_pagination,
        shared_secrets_put_get_replace,
        usage_sums_ranges_and_calls_since,
        touch_key_only_moves_forward,
        change_log_record_since_prune,
    ],
    db: [
        audit_edit_is_detected,
        audit_deletion_is_detected,
    ],
}
