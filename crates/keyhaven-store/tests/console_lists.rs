//! The console's list reads on both backends: keys, users and service accounts sorted
//! by a column and paged by cursor (every row once, in order, with ties and NULLs,
//! combined with filters); the recent verifications of a key (migration 0012: newest
//! first, trimmed per key, tenancy, pruning); the scopes in use in an organization.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use keyhaven_core::api_key::ApiKey;
use keyhaven_core::id::Id;
use keyhaven_core::organization::Organization;
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::role::Role;
use keyhaven_core::service_account::{ServiceAccount, ServiceAccountStatus};
use keyhaven_core::time::Timestamp;
use keyhaven_core::user::{User, UserStatus};
use keyhaven_store::{
    ApiKeyFilter, Page, RecentVerification, ServiceAccountFilter, Sort, SortDir, SortKey, Store,
    UserFilter,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const T0: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

fn at(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().expect("valid ms")
}

struct Gen {
    rng: StdRng,
    clock: i64,
}

impl Gen {
    fn new() -> Self {
        Gen {
            rng: StdRng::seed_from_u64(14),
            clock: T0,
        }
    }
    fn id(&mut self) -> Id {
        self.clock += 1_000;
        Id::generate(self.clock, &mut self.rng)
    }
    fn now(&self) -> Timestamp {
        at(self.clock)
    }
    fn digest(&mut self) -> String {
        let bytes: [u8; 32] = self.rng.gen();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn creator() -> Principal {
    Principal {
        kind: PrincipalKind::User,
        id: "01hf0000000000000000000000".to_string(),
        name: "Ana Admin".to_string(),
    }
}

async fn add_org(store: &Arc<dyn Store>, g: &mut Gen) -> Organization {
    let org = Organization {
        id: g.id(),
        name: format!("Org {}", g.clock),
        key_prefix: "kh".to_string(),
        created_at: g.now(),
        updated_at: g.now(),
    };
    let mut tx = store.begin().await.expect("begin");
    tx.insert_organization(&org).await.expect("org");
    tx.commit().await.expect("commit");
    org
}

fn new_sa(g: &mut Gen, org: &Id, name: &str) -> ServiceAccount {
    ServiceAccount {
        id: g.id(),
        org_id: org.clone(),
        name: name.to_string(),
        description: String::new(),
        roles: Vec::new(),
        status: ServiceAccountStatus::Active,
        ratelimits: Vec::new(),
        external_id: None,
        created_by: creator(),
        created_at: g.now(),
        updated_at: g.now(),
    }
}

fn new_key(g: &mut Gen, org: &Id, name: &str, owner: &ServiceAccount) -> ApiKey {
    let digest = g.digest();
    ApiKey {
        id: g.id(),
        org_id: org.clone(),
        name: name.to_string(),
        description: String::new(),
        tags: Vec::new(),
        owner: Principal {
            kind: PrincipalKind::ServiceAccount,
            id: owner.id.to_string(),
            name: owner.name.clone(),
        },
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

fn new_user(g: &mut Gen, org: &Id, email: &str, name: &str, last: Option<i64>) -> User {
    User {
        id: g.id(),
        org_id: org.clone(),
        email: email.to_string(),
        display_name: name.to_string(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_string(),
        roles: vec!["viewer".to_string()],
        status: UserStatus::Active,
        last_login_at: last.map(at),
        created_at: g.now(),
        updated_at: g.now(),
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

fn sort(key: SortKey, dir: SortDir) -> Option<Sort> {
    Some(Sort { key, dir })
}

/// Every page of a sorted listing, `limit` at a time; checks the cursors on the way.
macro_rules! walk {
    ($store:expr, $method:ident, $org:expr, $filter:expr, $sort:expr, $limit:expr) => {{
        let mut out: Vec<String> = Vec::new();
        let mut cursor = None;
        for _ in 0..100 {
            let mut tx = $store.read().await.expect("read");
            let l = tx
                .$method(
                    $org,
                    $filter,
                    $sort,
                    &Page {
                        limit: $limit,
                        cursor: cursor.clone(),
                    },
                )
                .await
                .expect("list");
            assert!(l.items.len() as i64 <= $limit);
            out.extend(l.items.iter().map(|x| x.id.to_string()));
            assert_eq!(l.has_more, l.next_cursor.is_some());
            match l.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        out
    }};
}

fn ids_by<T>(
    items: &[T],
    id: fn(&T) -> &Id,
    mut cmp: impl FnMut(&T, &T) -> std::cmp::Ordering,
) -> Vec<String> {
    let mut v: Vec<&T> = items.iter().collect();
    v.sort_by(|a, b| cmp(a, b).then_with(|| id(a).as_str().cmp(id(b).as_str())));
    v.into_iter().map(|x| id(x).to_string()).collect()
}

fn reversed(mut v: Vec<String>) -> Vec<String> {
    v.reverse();
    v
}

async fn keys_sort_and_page_by_every_column(store: Arc<dyn Store>) {
    let mut g = Gen::new();
    let org = add_org(&store, &mut g).await;
    let other = add_org(&store, &mut g).await;
    let sa = new_sa(&mut g, &org.id, "Billing");
    let sa2 = new_sa(&mut g, &other.id, "Elsewhere");
    let mut tx = store.begin().await.expect("begin");
    tx.insert_service_account(&sa).await.expect("sa");
    tx.insert_service_account(&sa2).await.expect("sa");
    tx.commit().await.expect("commit");
    // Names in mixed case; last uses with ties and NULLs; expiries with ties and NULLs.
    let spec: [(&str, Option<i64>, Option<i64>, bool); 9] = [
        ("delta", Some(5), None, true),
        ("Alpha", None, Some(30), false),
        ("charlie", Some(5), Some(10), true),
        ("Echo", Some(1), None, true),
        ("bravo", None, Some(10), false),
        ("golf", Some(9), Some(20), true),
        ("Foxtrot", Some(5), Some(10), true),
        ("hotel", None, None, true),
        ("india", Some(2), Some(40), false),
    ];
    let mut keys = Vec::new();
    let mut tx = store.begin().await.expect("begin");
    for (name, used, expires, tagged) in spec {
        let mut k = new_key(&mut g, &org.id, name, &sa);
        k.last_used_at = used.map(|h| at(T0 + h * HOUR));
        k.expires_at = expires.map(|d| at(T0 + 1_000 * HOUR + d * HOUR));
        if tagged {
            k.tags = vec!["prod".to_string()];
        }
        tx.insert_api_key(&k).await.expect("key");
        keys.push(k);
    }
    // Another organization's key sorts nowhere here.
    let foreign = new_key(&mut g, &other.id, "aaa", &sa2);
    tx.insert_api_key(&foreign).await.expect("key");
    tx.commit().await.expect("commit");
    let now = g.now();
    let f = key_filter(now);
    let id: fn(&ApiKey) -> &Id = |k| &k.id;
    let by_name = ids_by(&keys, id, |a, b| {
        a.name.to_lowercase().cmp(&b.name.to_lowercase())
    });
    let by_used = ids_by(&keys, id, |a, b| {
        a.last_used_at
            .map_or(-1, |t| t.timestamp_millis())
            .cmp(&b.last_used_at.map_or(-1, |t| t.timestamp_millis()))
    });
    let by_expiry = ids_by(&keys, id, |a, b| {
        a.expires_at
            .map_or(i64::MAX, |t| t.timestamp_millis())
            .cmp(&b.expires_at.map_or(i64::MAX, |t| t.timestamp_millis()))
    });
    let by_created = ids_by(&keys, id, |a, b| a.created_at.cmp(&b.created_at));
    for limit in [1, 2, 4, 100] {
        for (key, expected) in [
            (SortKey::Name, &by_name),
            (SortKey::LastUsed, &by_used),
            (SortKey::Expires, &by_expiry),
            (SortKey::Created, &by_created),
        ] {
            let asc = walk!(
                store,
                list_api_keys_sorted,
                &org.id,
                &f,
                sort(key, SortDir::Asc),
                limit
            );
            assert_eq!(&asc, expected, "{key:?} ascending, {limit} per page");
            let desc = walk!(
                store,
                list_api_keys_sorted,
                &org.id,
                &f,
                sort(key, SortDir::Desc),
                limit
            );
            assert_eq!(
                desc,
                reversed(expected.clone()),
                "{key:?} descending, {limit} per page"
            );
        }
        // No sort: newest first by id, as the API lists.
        let plain = walk!(store, list_api_keys_sorted, &org.id, &f, None, limit);
        assert_eq!(plain, reversed(by_created.clone()));
    }
    // A filter and a sort together.
    let tagged = ApiKeyFilter {
        tag: Some("prod".to_string()),
        ..key_filter(now)
    };
    let expected: Vec<String> = by_used
        .iter()
        .filter(|i| {
            keys.iter()
                .any(|k| k.id.as_str() == i.as_str() && !k.tags.is_empty())
        })
        .cloned()
        .collect();
    let got = walk!(
        store,
        list_api_keys_sorted,
        &org.id,
        &tagged,
        sort(SortKey::LastUsed, SortDir::Asc),
        2
    );
    assert_eq!(got, expected);
    // A cursor of another sort, or of nothing, is not an error: nothing follows it.
    for bad in ["nonsense", "01hf0000000000000000000000.notanumber"] {
        let mut tx = store.read().await.expect("read");
        let l = tx
            .list_api_keys_sorted(
                &org.id,
                &f,
                sort(SortKey::LastUsed, SortDir::Asc),
                &Page {
                    limit: 10,
                    cursor: Some(bad.to_string()),
                },
            )
            .await
            .expect("list");
        assert!(l.items.is_empty() && !l.has_more, "{bad}");
    }
}

async fn users_and_service_accounts_sort_and_page(store: Arc<dyn Store>) {
    let mut g = Gen::new();
    let org = add_org(&store, &mut g).await;
    let users = vec![
        new_user(&mut g, &org.id, "zed@example.com", "ann", Some(T0 + HOUR)),
        new_user(&mut g, &org.id, "amy@example.com", "Bob", None),
        new_user(
            &mut g,
            &org.id,
            "kim@example.com",
            "ann",
            Some(T0 + 3 * HOUR),
        ),
        new_user(&mut g, &org.id, "bea@example.com", "Cy", Some(T0 + HOUR)),
        new_user(&mut g, &org.id, "lou@example.com", "dee", None),
    ];
    let sas = vec![
        new_sa(&mut g, &org.id, "payments"),
        new_sa(&mut g, &org.id, "Audit"),
        new_sa(&mut g, &org.id, "crm"),
        new_sa(&mut g, &org.id, "Billing"),
    ];
    let mut tx = store.begin().await.expect("begin");
    for u in &users {
        tx.insert_user(u).await.expect("user");
    }
    for s in &sas {
        tx.insert_service_account(s).await.expect("sa");
    }
    tx.commit().await.expect("commit");
    let uid: fn(&User) -> &Id = |u| &u.id;
    let uf = UserFilter::default();
    for (key, expected) in [
        (
            SortKey::Name,
            ids_by(&users, uid, |a, b| {
                a.display_name
                    .to_lowercase()
                    .cmp(&b.display_name.to_lowercase())
            }),
        ),
        (
            SortKey::Email,
            ids_by(&users, uid, |a, b| a.email.cmp(&b.email)),
        ),
        (
            SortKey::LastUsed,
            ids_by(&users, uid, |a, b| {
                a.last_login_at
                    .map_or(-1, |t| t.timestamp_millis())
                    .cmp(&b.last_login_at.map_or(-1, |t| t.timestamp_millis()))
            }),
        ),
        (
            SortKey::Created,
            ids_by(&users, uid, |a, b| a.created_at.cmp(&b.created_at)),
        ),
    ] {
        for limit in [1, 2, 3] {
            let asc = walk!(
                store,
                list_users_sorted,
                &org.id,
                &uf,
                sort(key, SortDir::Asc),
                limit
            );
            assert_eq!(asc, expected, "users by {key:?}");
            let desc = walk!(
                store,
                list_users_sorted,
                &org.id,
                &uf,
                sort(key, SortDir::Desc),
                limit
            );
            assert_eq!(
                desc,
                reversed(expected.clone()),
                "users by {key:?} descending"
            );
        }
    }
    let sid: fn(&ServiceAccount) -> &Id = |s| &s.id;
    let sf = ServiceAccountFilter::default();
    for (key, expected) in [
        (
            SortKey::Name,
            ids_by(&sas, sid, |a, b| {
                a.name.to_lowercase().cmp(&b.name.to_lowercase())
            }),
        ),
        (
            SortKey::Created,
            ids_by(&sas, sid, |a, b| a.created_at.cmp(&b.created_at)),
        ),
    ] {
        for limit in [1, 3] {
            let asc = walk!(
                store,
                list_service_accounts_sorted,
                &org.id,
                &sf,
                sort(key, SortDir::Asc),
                limit
            );
            assert_eq!(asc, expected, "accounts by {key:?}");
            let desc = walk!(
                store,
                list_service_accounts_sorted,
                &org.id,
                &sf,
                sort(key, SortDir::Desc),
                limit
            );
            assert_eq!(
                desc,
                reversed(expected.clone()),
                "accounts by {key:?} descending"
            );
        }
    }
}

fn verification(
    org: &Id,
    key: &Id,
    ms: i64,
    code: &str,
    ip: Option<&str>,
    tags: &[&str],
) -> RecentVerification {
    RecentVerification {
        org_id: org.clone(),
        key_id: key.clone(),
        at: at(ms),
        code: code.to_string(),
        ip: ip.map(str::to_string),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

async fn recent_verifications_keep_the_newest_per_key(store: Arc<dyn Store>) {
    let mut g = Gen::new();
    let org = add_org(&store, &mut g).await;
    let other = add_org(&store, &mut g).await;
    let (k1, k2, k3) = (g.id(), g.id(), g.id());
    // Two flushes (two nodes, say), interleaved in time; five of k1 at one instant.
    let first: Vec<_> = (0..6)
        .map(|i| verification(&org.id, &k1, T0 + i * 10, "VALID", Some("203.0.113.7"), &[]))
        .chain([verification(
            &org.id,
            &k2,
            T0 + 5,
            "RATE_LIMITED",
            None,
            &["path:/orders", "region:eu"],
        )])
        .collect();
    let mut tx = store.begin().await.expect("begin");
    tx.add_recent_verifications(&first).await.expect("add");
    tx.trim_recent_verifications(&[k1.clone(), k2.clone()], 4)
        .await
        .expect("trim");
    tx.commit().await.expect("commit");
    let second: Vec<_> = [
        verification(
            &org.id,
            &k1,
            T0 + 25,
            "FORBIDDEN",
            Some("2001:db8::1"),
            &["a"],
        ),
        verification(&other.id, &k3, T0 + 1, "VALID", None, &[]),
    ]
    .into_iter()
    .chain((0..5).map(|_| verification(&org.id, &k1, T0 + 100, "EXPIRED", None, &[])))
    .collect();
    let mut tx = store.begin().await.expect("begin");
    tx.add_recent_verifications(&second).await.expect("add");
    // Trimming is per key named: k3's one row and keys without rows are left alone.
    tx.trim_recent_verifications(&[k1.clone(), k3.clone(), g.id()], 4)
        .await
        .expect("trim");
    tx.commit().await.expect("commit");

    let mut tx = store.read().await.expect("read");
    let got = tx
        .recent_verifications(&org.id, &k1, 20)
        .await
        .expect("recent");
    assert_eq!(got.len(), 4, "trimmed to the newest four");
    assert!(got
        .iter()
        .all(|r| r.code == "EXPIRED" && r.at == at(T0 + 100)));
    let got = tx
        .recent_verifications(&org.id, &k2, 20)
        .await
        .expect("recent");
    assert_eq!(
        got,
        vec![verification(
            &org.id,
            &k2,
            T0 + 5,
            "RATE_LIMITED",
            None,
            &["path:/orders", "region:eu"]
        )]
    );
    // Another organization's key is not found through this one.
    assert!(tx
        .recent_verifications(&org.id, &k3, 20)
        .await
        .expect("recent")
        .is_empty());
    assert_eq!(
        tx.recent_verifications(&other.id, &k3, 20)
            .await
            .expect("recent")
            .len(),
        1
    );
    drop(tx);

    // Newest first, ties by arrival; the limit reads fewer.
    let third: Vec<_> = [
        verification(&org.id, &k2, T0 + 50, "VALID", Some("198.51.100.2"), &[]),
        verification(
            &org.id,
            &k2,
            T0 + 40,
            "FORBIDDEN",
            Some("2001:db8::1"),
            &["a"],
        ),
    ]
    .into();
    let mut tx = store.begin().await.expect("begin");
    tx.add_recent_verifications(&third).await.expect("add");
    tx.trim_recent_verifications(std::slice::from_ref(&k2), 20)
        .await
        .expect("trim");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    let got = tx
        .recent_verifications(&org.id, &k2, 2)
        .await
        .expect("recent");
    let codes: Vec<_> = got
        .iter()
        .map(|r| (r.code.as_str(), r.ip.as_deref()))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("VALID", Some("198.51.100.2")),
            ("FORBIDDEN", Some("2001:db8::1"))
        ]
    );
    drop(tx);

    // Pruning in batches: everything older than T0 + 30.
    let mut gone = 0;
    loop {
        let mut tx = store.begin().await.expect("begin");
        let n = tx
            .prune_recent_verifications(T0 + 30, 1)
            .await
            .expect("prune");
        tx.commit().await.expect("commit");
        assert!(n <= 1);
        if n == 0 {
            break;
        }
        gone += n;
    }
    assert_eq!(gone, 2, "k2's first and k3's");
    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.recent_verifications(&org.id, &k2, 20)
            .await
            .expect("recent")
            .len(),
        2
    );
    assert_eq!(
        tx.recent_verifications(&org.id, &k1, 20)
            .await
            .expect("recent")
            .len(),
        4
    );
    assert!(tx
        .recent_verifications(&other.id, &k3, 20)
        .await
        .expect("recent")
        .is_empty());
}

async fn scopes_in_use_come_from_keys_and_custom_roles(store: Arc<dyn Store>) {
    let mut g = Gen::new();
    let org = add_org(&store, &mut g).await;
    let other = add_org(&store, &mut g).await;
    let sa = new_sa(&mut g, &org.id, "svc");
    let sa2 = new_sa(&mut g, &other.id, "svc");
    let mut tx = store.begin().await.expect("begin");
    tx.insert_service_account(&sa).await.expect("sa");
    tx.insert_service_account(&sa2).await.expect("sa");
    let mut k1 = new_key(&mut g, &org.id, "one", &sa);
    k1.scopes = vec!["orders.read".into(), "orders.write".into()];
    let mut k2 = new_key(&mut g, &org.id, "two", &sa);
    k2.scopes = vec!["orders.read".into()];
    let k3 = new_key(&mut g, &org.id, "three", &sa);
    let mut k4 = new_key(&mut g, &other.id, "four", &sa2);
    k4.scopes = vec!["secret.other-org".into()];
    for k in [&k1, &k2, &k3, &k4] {
        tx.insert_api_key(k).await.expect("key");
    }
    let role = Role {
        name: "reporting".into(),
        description: String::new(),
        permissions: ["reports:export".to_string(), "orders.read".to_string()]
            .into_iter()
            .collect(),
        key_name_pattern: None,
        built_in: false,
        created_at: g.now(),
        updated_at: g.now(),
    };
    tx.insert_role(&org.id, &role).await.expect("role");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("read");
    assert_eq!(
        tx.scopes_in_use(&org.id, 100).await.expect("scopes"),
        vec!["orders.read", "orders.write", "reports:export"]
    );
    assert_eq!(
        tx.scopes_in_use(&org.id, 2).await.expect("scopes"),
        vec!["orders.read", "orders.write"]
    );
    assert_eq!(
        tx.scopes_in_use(&other.id, 100).await.expect("scopes"),
        vec!["secret.other-org"]
    );
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = keyhaven_store::testing::TestDb::sqlite().await;
                    super::$name(db.store.clone()).await;
                    db.store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = keyhaven_store::testing::TestDb::postgres(stringify!($name)).await
                    else {
                        return;
                    };
                    super::$name(db.store.clone()).await;
                    db.store.close().await;
                }
            )*
        }
    };
}

both! {
    keys_sort_and_page_by_every_column,
    users_and_service_accounts_sort_and_page,
    recent_verifications_keep_the_newest_per_key,
    scopes_in_use_come_from_keys_and_custom_roles,
}
