//! Conformance of the audit-sink storage (cursor and lease), run by the same code on
//! SQLite and PostgreSQL like `conformance.rs` (a file of its own so the suites of
//! different features don't all edit one list).

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use keyhaven_core::audit::{AuditDraft, Outcome};
use keyhaven_core::audit_sink::{SinkTarget, Transport};
use keyhaven_core::id::Id;
use keyhaven_core::organization::Organization;
use keyhaven_core::principal::Principal;
use keyhaven_core::time::Timestamp;
use keyhaven_store::{AuditSink, Page, Store};
use rand::rngs::StdRng;
use rand::SeedableRng;

const T0: i64 = 1_700_000_000_000;

fn at(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().expect("valid ms")
}

struct Gen {
    rng: StdRng,
    clock: i64,
}

impl Gen {
    fn id(&mut self) -> Id {
        self.clock += 1_000;
        Id::generate(self.clock, &mut self.rng)
    }
}

async fn add_org(store: &Arc<dyn Store>, g: &mut Gen, name: &str) -> Id {
    let id = g.id();
    let org = Organization {
        id: id.clone(),
        name: name.into(),
        key_prefix: "kh".into(),
        created_at: at(T0),
        updated_at: at(T0),
    };
    let mut tx = store.begin().await.unwrap();
    tx.insert_organization(&org).await.unwrap();
    tx.commit().await.unwrap();
    id
}

async fn append(store: &Arc<dyn Store>, g: &mut Gen, org: &Id, n: usize) {
    let mut tx = store.begin().await.unwrap();
    for i in 0..n {
        let id = g.id();
        tx.append_audit(
            org,
            id,
            at(g.clock),
            AuditDraft {
                actor: Principal::system("test"),
                action: "api_key.create".into(),
                target: None,
                outcome: Outcome::Success,
                ip: None,
                user_agent: None,
                request_id: Some(format!("r{i}")),
                changes: serde_json::json!({ "i": i }),
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

fn sink(g: &mut Gen, org: &Id, target: SinkTarget) -> AuditSink {
    AuditSink {
        id: g.id(),
        org_id: org.clone(),
        target,
        description: "siem".into(),
        enabled: true,
        cursor_seq: 0,
        cursor_hash: None,
        last_delivered_at: None,
        last_error: None,
        last_error_at: None,
        failures: 0,
        next_attempt_at: at(0),
        created_at: at(T0),
        updated_at: at(T0),
    }
}

async fn claim(store: &Arc<dyn Store>, now: i64, token: &str) -> Vec<Id> {
    let due = store
        .read()
        .await
        .unwrap()
        .audit_sinks_due(at(now))
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    let c = tx
        .claim_audit_sinks(at(now), at(now + 60_000), 10, token)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Nothing was due, or something was (and this claim may have lost the race for it).
    assert!(due || c.is_empty(), "claimed what was not due");
    c.into_iter().map(|s| s.id).collect()
}

async fn audit_sinks_crud_and_tenancy(store: Arc<dyn Store>) {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(11),
        clock: T0,
    };
    let org = add_org(&store, &mut g, "A").await;
    let other = add_org(&store, &mut g, "B").await;
    let a = sink(
        &mut g,
        &org,
        SinkTarget::Http {
            url: "https://siem.example.com/in".into(),
        },
    );
    let mut b = sink(
        &mut g,
        &org,
        SinkTarget::Syslog {
            host: "10.0.0.1".into(),
            port: 514,
            transport: Transport::Tcp,
        },
    );
    let mut tx = store.begin().await.unwrap();
    tx.insert_audit_sink(&a).await.unwrap();
    tx.insert_audit_sink(&b).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.audit_sink(&org, &a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(tx.audit_sink(&other, &a.id).await.unwrap(), None);
    let l = tx
        .list_audit_sinks(
            &org,
            &Page {
                limit: 1,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(l.items, vec![b.clone()], "newest first");
    assert!(l.has_more);
    let l2 = tx
        .list_audit_sinks(
            &org,
            &Page {
                limit: 1,
                cursor: l.next_cursor.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(l2.items, vec![a.clone()]);
    assert!(!l2.has_more);
    assert!(tx
        .list_audit_sinks(
            &other,
            &Page {
                limit: 10,
                cursor: None
            }
        )
        .await
        .unwrap()
        .items
        .is_empty());
    drop(tx);

    b.target = SinkTarget::File {
        path: "x/audit.jsonl".into(),
        max_bytes: 4096,
        max_files: 2,
    };
    b.enabled = false;
    b.description = "changed".into();
    b.failures = 3;
    b.next_attempt_at = at(T0 + 5);
    b.updated_at = at(T0 + 9);
    let mut tx = store.begin().await.unwrap();
    tx.update_audit_sink(&b).await.unwrap();
    assert!(!tx.delete_audit_sink(&other, &a.id).await.unwrap());
    assert!(tx.delete_audit_sink(&org, &a.id).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.audit_sink(&org, &b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(tx.audit_sink(&org, &a.id).await.unwrap(), None);
}

async fn audit_sink_cursor_and_lease(store: Arc<dyn Store>) {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(12),
        clock: T0,
    };
    let org = add_org(&store, &mut g, "A").await;
    let s = sink(
        &mut g,
        &org,
        SinkTarget::Http {
            url: "https://siem.example.com/in".into(),
        },
    );
    let mut off = sink(
        &mut g,
        &org,
        SinkTarget::Http {
            url: "https://off.example.com/in".into(),
        },
    );
    off.enabled = false;
    let mut tx = store.begin().await.unwrap();
    tx.insert_audit_sink(&s).await.unwrap();
    tx.insert_audit_sink(&off).await.unwrap();
    tx.commit().await.unwrap();
    let now = T0 + 100_000_000;

    // Nothing to deliver before the chain has entries.
    assert!(claim(&store, now, "t0").await.is_empty());
    append(&store, &mut g, &org, 5).await;

    // Only the enabled sink is claimed, once.
    assert_eq!(claim(&store, now, "t1").await, vec![s.id.clone()]);
    assert!(claim(&store, now, "t2").await.is_empty(), "leased");

    let mut tx = store.read().await.unwrap();
    let events = tx.audit_after(&org, 0, 3).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let rest = tx.audit_after(&org, 3, 100).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
    drop(tx);

    // Only the holder moves the cursor, never backwards.
    let mut tx = store.begin().await.unwrap();
    assert!(!tx
        .advance_audit_sink(&s.id, "t2", 3, &events[2].hash, at(now), at(now + 60_000))
        .await
        .unwrap());
    assert!(tx
        .advance_audit_sink(&s.id, "t1", 3, &events[2].hash, at(now), at(now + 60_000))
        .await
        .unwrap());
    assert!(!tx
        .advance_audit_sink(&s.id, "t1", 2, &events[1].hash, at(now), at(now + 60_000))
        .await
        .unwrap());
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    let got = tx.audit_sink(&org, &s.id).await.unwrap().unwrap();
    assert_eq!(got.cursor_seq, 3);
    assert_eq!(got.cursor_hash.as_deref(), Some(events[2].hash.as_str()));
    assert_eq!(got.last_delivered_at, Some(at(now)));
    drop(tx);

    // A failure releases the claim and backs off.
    let mut tx = store.begin().await.unwrap();
    assert!(!tx
        .fail_audit_sink(&s.id, "t2", "nope", at(now), at(now + 30_000))
        .await
        .unwrap());
    assert!(tx
        .fail_audit_sink(&s.id, "t1", "connection failed", at(now), at(now + 30_000))
        .await
        .unwrap());
    tx.commit().await.unwrap();
    assert!(claim(&store, now + 1, "t3").await.is_empty(), "backing off");
    assert_eq!(claim(&store, now + 30_000, "t3").await, vec![s.id.clone()]);
    let mut tx = store.read().await.unwrap();
    let got = tx.audit_sink(&org, &s.id).await.unwrap().unwrap();
    assert_eq!(got.failures, 1);
    assert_eq!(got.last_error.as_deref(), Some("connection failed"));
    assert_eq!(got.last_error_at, Some(at(now)));
    assert_eq!(got.cursor_seq, 3, "a failure keeps the cursor");
    drop(tx);

    // The lease lapses: another node takes over, the old holder can no longer advance.
    let later = now + 30_000 + 60_001;
    assert_eq!(claim(&store, later, "t4").await, vec![s.id.clone()]);
    let mut tx = store.begin().await.unwrap();
    assert!(!tx
        .advance_audit_sink(&s.id, "t3", 5, "h", at(later), at(later))
        .await
        .unwrap());
    let last = tx.audit_after(&org, 4, 1).await.unwrap();
    assert!(tx
        .advance_audit_sink(&s.id, "t4", 5, &last[0].hash, at(later), at(later + 60_000))
        .await
        .unwrap());
    assert!(tx.release_audit_sink(&s.id, "t4").await.unwrap());
    assert!(!tx.release_audit_sink(&s.id, "t4").await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    let got = tx.audit_sink(&org, &s.id).await.unwrap().unwrap();
    assert_eq!((got.cursor_seq, got.failures), (5, 0));
    drop(tx);

    // Caught up: nothing to claim until the chain grows.
    assert!(claim(&store, later + 1, "t5").await.is_empty());
    append(&store, &mut g, &org, 1).await;
    assert_eq!(claim(&store, later + 1, "t5").await, vec![s.id.clone()]);
}

async fn audit_sink_concurrent_claims_have_one_winner(store: Arc<dyn Store>) {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(13),
        clock: T0,
    };
    let org = add_org(&store, &mut g, "A").await;
    let s = sink(
        &mut g,
        &org,
        SinkTarget::Http {
            url: "https://siem.example.com/in".into(),
        },
    );
    let mut tx = store.begin().await.unwrap();
    tx.insert_audit_sink(&s).await.unwrap();
    tx.commit().await.unwrap();
    append(&store, &mut g, &org, 2).await;
    let now = T0 + 100_000_000;
    for round in 0..5 {
        let t = now + round * 61_000;
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { claim(&store, t, &format!("r{round}n{i}")).await.len() })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            won += task.await.unwrap();
        }
        assert_eq!(won, 1, "round {round}: exactly one claim wins");
    }
}

macro_rules! both {
    ($($s:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $s() {
                    let db = keyhaven_store::testing::TestDb::sqlite().await;
                    super::$s(db.store.clone()).await;
                    db.store.close().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $s() {
                    let Some(db) = keyhaven_store::testing::TestDb::postgres(stringify!($s)).await
                    else {
                        return;
                    };
                    super::$s(db.store.clone()).await;
                    db.store.close().await;
                }
            )*
        }
    };
}

both![
    audit_sinks_crud_and_tenancy,
    audit_sink_cursor_and_lease,
    audit_sink_concurrent_claims_have_one_winner,
];
