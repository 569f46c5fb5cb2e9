//! The analytics storage (ANALYTICS.md, migration 0011) on both backends, by the same
//! code: batches from several nodes summing into hourly, daily and per-organization
//! rows; grouping, filters and keyset paging; the busiest keys over ranges that mix
//! whole days and hours; and pruning in batches.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyhaven_core::id::Id;
use keyhaven_store::testing::TestDb;
use keyhaven_store::{
    AnalyticsQuery, AnalyticsRow, CodeFilter, Dimension, Granularity, Store, VerificationCount,
    DAY_MS, HOUR_MS,
};

/// 2026-11-22T00:00:00Z.
const D0: i64 = 1_795_305_600_000;

fn org(n: u8) -> Id {
    Id::from_trusted(format!("01korg{n:020}"))
}

fn key(n: u8) -> Id {
    Id::from_trusted(format!("01kkey{n:020}"))
}

fn count(
    o: u8,
    hour: i64,
    k: Option<u8>,
    code: &str,
    tag: Option<&str>,
    n: i64,
) -> VerificationCount {
    VerificationCount {
        org_id: org(o),
        hour,
        key_id: k.map(key),
        owner_id: k.map(|k| format!("owner{}", k % 2)),
        code: code.to_string(),
        tag: tag.map(str::to_string),
        count: n,
    }
}

fn query(o: u8, granularity: Granularity, group_by: &[Dimension]) -> AnalyticsQuery {
    AnalyticsQuery {
        org_id: org(o),
        since_ms: D0 - 10 * DAY_MS,
        until_ms: D0 + 10 * DAY_MS,
        granularity,
        group_by: group_by.to_vec(),
        key_id: None,
        owner_id: None,
        code: None,
        tag: None,
        limit: 1000,
        after: None,
    }
}

async fn add(store: &Arc<dyn Store>, rows: &[VerificationCount]) {
    let mut tx = store.begin().await.expect("begin");
    tx.add_verifications(rows).await.expect("add");
    tx.commit().await.expect("commit");
}

async fn run(store: &Arc<dyn Store>, q: &AnalyticsQuery) -> Vec<AnalyticsRow> {
    let mut tx = store.read().await.expect("read");
    let page = tx.verification_counts(q).await.expect("query");
    assert!(!page.has_more);
    page.rows
}

fn sum(rows: &[AnalyticsRow]) -> i64 {
    rows.iter().map(|r| r.count).sum()
}

async fn batches_from_several_nodes_sum_everywhere(store: Arc<dyn Store>) {
    let h = D0 + 12 * HOUR_MS;
    // Node A's batch: the same row twice sums, a zero is ignored.
    add(
        &store,
        &[
            count(1, h, Some(1), "VALID", None, 3),
            count(1, h, Some(1), "VALID", None, 2),
            count(1, h, Some(1), "VALID", Some("path:/a"), 4),
            count(1, h, Some(2), "FORBIDDEN", None, 1),
            count(1, h, None, "MALFORMED", None, 7),
            count(1, h, Some(1), "EXPIRED", None, 0),
            count(2, h, Some(9), "VALID", None, 100),
        ],
    )
    .await;
    // Node B's, for the same hour and the next one.
    add(
        &store,
        &[
            count(1, h, Some(1), "VALID", None, 10),
            count(1, h + HOUR_MS, Some(1), "VALID", None, 1),
            count(1, h + HOUR_MS, Some(1), "VALID", Some("path:/a"), 1),
        ],
    )
    .await;
    add(&store, &[]).await;

    let hourly = run(
        &store,
        &query(1, Granularity::Hour, &[Dimension::Key, Dimension::Code]),
    )
    .await;
    let expect = vec![
        (h, None, "MALFORMED", 7),
        (h, Some(key(1)), "VALID", 15),
        (h, Some(key(2)), "FORBIDDEN", 1),
        (h + HOUR_MS, Some(key(1)), "VALID", 1),
    ];
    assert_eq!(
        hourly
            .iter()
            .map(|r| (
                r.time,
                r.key_id.clone().map(Id::from_trusted),
                r.code.as_deref().unwrap(),
                r.count
            ))
            .collect::<Vec<_>>(),
        expect
    );
    // Daily rows are the sums of the hourly ones; the organization-wide rows too.
    let daily = run(
        &store,
        &query(1, Granularity::Day, &[Dimension::Key, Dimension::Code]),
    )
    .await;
    assert_eq!(daily.len(), 3);
    assert!(daily.iter().all(|r| r.time == D0));
    assert_eq!(sum(&daily), 24);
    for g in [Granularity::Hour, Granularity::Day] {
        assert_eq!(sum(&run(&store, &query(1, g, &[])).await), 24, "{g:?}");
        assert_eq!(
            sum(&run(&store, &query(1, g, &[Dimension::Code])).await),
            24
        );
        assert_eq!(sum(&run(&store, &query(2, g, &[])).await), 100);
    }
    // Tags are counted beside the totals, not in them.
    let tags = run(&store, &query(1, Granularity::Hour, &[Dimension::Tag])).await;
    assert_eq!(tags.len(), 2);
    assert!(tags.iter().all(|r| r.tag.as_deref() == Some("path:/a")));
    assert_eq!(sum(&tags), 5);
    // Owners.
    let owners = run(&store, &query(1, Granularity::Day, &[Dimension::Owner])).await;
    let by: BTreeMap<Option<String>, i64> = owners
        .iter()
        .map(|r| (r.owner_id.clone(), r.count))
        .collect();
    assert_eq!(
        by,
        BTreeMap::from([
            (None, 7),
            (Some("owner0".to_string()), 1),
            (Some("owner1".to_string()), 16)
        ])
    );
    // Filters.
    let mut q = query(1, Granularity::Hour, &[]);
    q.key_id = Some(key(1).to_string());
    assert_eq!(sum(&run(&store, &q).await), 16);
    q.tag = Some("path:/a".into());
    assert_eq!(sum(&run(&store, &q).await), 5);
    let mut q = query(1, Granularity::Day, &[]);
    q.owner_id = Some("owner0".into());
    assert_eq!(sum(&run(&store, &q).await), 1);
    let mut q = query(1, Granularity::Hour, &[Dimension::Key]);
    q.code = Some("MALFORMED".into());
    let r = run(&store, &q).await;
    assert_eq!((r.len(), r[0].key_id.clone(), r[0].count), (1, None, 7));
    // [since, until) on bucket starts.
    let mut q = query(1, Granularity::Hour, &[]);
    q.since_ms = h + HOUR_MS;
    assert_eq!(sum(&run(&store, &q).await), 1);
    q.since_ms = h;
    q.until_ms = h + HOUR_MS;
    assert_eq!(sum(&run(&store, &q).await), 23);
    q.until_ms = h;
    assert!(run(&store, &q).await.is_empty());
    // Another organization sees nothing of these.
    assert!(run(&store, &query(3, Granularity::Hour, &[Dimension::Key]))
        .await
        .is_empty());
}

async fn keyset_paging_walks_every_row_once(store: Arc<dyn Store>) {
    let mut rows = Vec::new();
    for h in 0..6 {
        for k in [None, Some(1), Some(2), Some(3)] {
            for code in ["VALID", "RATE_LIMITED"] {
                rows.push(count(1, D0 + h * HOUR_MS, k, code, None, h + 1));
                rows.push(count(1, D0 + h * HOUR_MS, k, code, Some("t:x"), 1));
                rows.push(count(1, D0 + h * HOUR_MS, k, code, Some("t:y"), 1));
            }
        }
    }
    add(&store, &rows).await;
    for dims in [
        vec![Dimension::Key, Dimension::Code],
        vec![Dimension::Code, Dimension::Tag, Dimension::Key],
        vec![Dimension::Owner],
        vec![],
    ] {
        let all = run(&store, &query(1, Granularity::Hour, &dims)).await;
        let mut walked = Vec::new();
        let mut q = query(1, Granularity::Hour, &dims);
        q.limit = 5;
        for _ in 0..100 {
            let mut tx = store.read().await.expect("read");
            let page = tx.verification_counts(&q).await.expect("page");
            assert!(page.rows.len() <= 5);
            walked.extend(page.rows.iter().cloned());
            if !page.has_more {
                break;
            }
            q.after = page.rows.last().cloned();
        }
        assert_eq!(walked, all, "{dims:?}");
        let mut times: Vec<i64> = walked.iter().map(|r| r.time).collect();
        let sorted = {
            let mut t = times.clone();
            t.sort();
            t
        };
        assert_eq!(times, sorted, "ordered by time");
        times.dedup();
        assert_eq!(times.len(), 6);
    }
}

async fn top_keys_read_whole_days_and_edge_hours(store: Arc<dyn Store>) {
    // Three days of hourly counts: key n gets n per hour, VALID, and key 1 also 5
    // RATE_LIMITED per hour; one key-less row each hour (never ranked).
    let mut rows = Vec::new();
    for h in 0..72 {
        let t = D0 + h * HOUR_MS;
        for k in 1..=3u8 {
            rows.push(count(1, t, Some(k), "VALID", None, i64::from(k)));
        }
        rows.push(count(1, t, Some(1), "RATE_LIMITED", None, 5));
        rows.push(count(1, t, None, "NOT_FOUND", None, 1000));
    }
    add(&store, &rows).await;
    let top = |since: i64, until: i64, codes: CodeFilter<'static>, limit: i64| {
        let store = store.clone();
        async move {
            let mut tx = store.read().await.expect("read");
            tx.top_keys(&org(1), since, until, codes, limit)
                .await
                .expect("top")
        }
    };
    // 06:00 on day 0 to 18:00 on day 2: 18 + 24 + 18 = 60 hours.
    let (since, until) = (D0 + 6 * HOUR_MS, D0 + 2 * DAY_MS + 18 * HOUR_MS);
    let t = top(since, until, CodeFilter::All, 10).await;
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].key_id, key(1).to_string());
    assert_eq!(t[0].total, 60 * 6);
    assert_eq!(
        t[0].by_code,
        vec![("RATE_LIMITED".to_string(), 300), ("VALID".to_string(), 60)]
    );
    assert_eq!(t[0].owner_id.as_deref(), Some("owner1"));
    assert_eq!((t[1].key_id.clone(), t[1].total), (key(3).to_string(), 180));
    assert_eq!((t[2].key_id.clone(), t[2].total), (key(2).to_string(), 120));
    // Inside one day: hourly rows only.
    let t = top(D0 + HOUR_MS, D0 + 3 * HOUR_MS, CodeFilter::All, 10).await;
    assert_eq!(t[0].total, 12);
    // Exactly whole days: daily rows only.
    let t = top(D0, D0 + 2 * DAY_MS, CodeFilter::All, 10).await;
    assert_eq!(t[0].total, 48 * 6);
    // By code, failing, limit.
    let t = top(since, until, CodeFilter::Only("VALID"), 2).await;
    assert_eq!(
        t.iter()
            .map(|k| (k.key_id.clone(), k.total))
            .collect::<Vec<_>>(),
        vec![(key(3).to_string(), 180), (key(2).to_string(), 120)]
    );
    let t = top(since, until, CodeFilter::Failing, 10).await;
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].by_code, vec![("RATE_LIMITED".to_string(), 300)]);
    assert!(top(since, until, CodeFilter::Only("EXPIRED"), 10)
        .await
        .is_empty());
    // Another organization, or an empty range: nothing.
    let mut tx = store.read().await.expect("read");
    assert!(tx
        .top_keys(&org(2), since, until, CodeFilter::All, 10)
        .await
        .expect("top")
        .is_empty());
    assert!(tx
        .top_keys(&org(1), since, since, CodeFilter::All, 10)
        .await
        .expect("top")
        .is_empty());
}

async fn pruning_goes_in_batches_and_keeps_daily_rows(store: Arc<dyn Store>) {
    let mut rows = Vec::new();
    for h in 0..10 {
        rows.push(count(1, D0 + h * HOUR_MS, Some(1), "VALID", None, 1));
    }
    rows.push(count(1, D0 + 40 * DAY_MS, Some(1), "VALID", None, 1));
    add(&store, &rows).await;
    // Hourly before D0 + 5 h: 5 per-key rows and 5 per-organization rows, 3 a batch.
    let mut gone = Vec::new();
    loop {
        let mut tx = store.begin().await.expect("begin");
        let n = tx
            .prune_analytics(D0 + 5 * HOUR_MS, D0 - DAY_MS, 3)
            .await
            .expect("prune");
        tx.commit().await.expect("commit");
        if n == 0 {
            break;
        }
        gone.push(n);
    }
    assert_eq!(gone, vec![6, 4]);
    let mut q = query(1, Granularity::Hour, &[Dimension::Key]);
    q.until_ms = D0 + 50 * DAY_MS;
    q.since_ms = D0 - DAY_MS;
    assert_eq!(sum(&run(&store, &q).await), 6);
    q.group_by = vec![];
    assert_eq!(sum(&run(&store, &q).await), 6);
    q.granularity = Granularity::Day;
    assert_eq!(sum(&run(&store, &q).await), 11, "daily rows untouched");
    // Daily rows before day 40 go too (2 tables × 1 row).
    let mut tx = store.begin().await.expect("begin");
    let n = tx
        .prune_analytics(0, D0 + 40 * DAY_MS, 100)
        .await
        .expect("prune");
    tx.commit().await.expect("commit");
    assert_eq!(n, 2);
    assert_eq!(sum(&run(&store, &q).await), 1);
}

/// Migration 0011 moves the old hourly valid/invalid counts over (VALID and INVALID)
/// and drops `usage_hourly`: replayed here on a database put back to how 0010 left it.
async fn migration_moves_the_old_usage_counts(db: &TestDb) {
    let sql = keyhaven_store::SqlStore::connect(&db.url)
        .await
        .expect("connect");
    let pool = sql.pool();
    for t in [
        "analytics_hourly",
        "analytics_daily",
        "analytics_org_hourly",
        "analytics_org_daily",
    ] {
        sqlx::query(&format!("DROP TABLE {t}"))
            .execute(pool)
            .await
            .expect("drop");
    }
    let int = match db.backend {
        keyhaven_store::Backend::Sqlite => "INTEGER",
        keyhaven_store::Backend::Postgres => "BIGINT",
    };
    sqlx::query(&format!(
        "CREATE TABLE usage_hourly (key_id TEXT NOT NULL, org_id TEXT NOT NULL, hour {int} NOT NULL, \
         valid {int} NOT NULL, invalid {int} NOT NULL, PRIMARY KEY (key_id, hour))"
    ))
    .execute(pool)
    .await
    .expect("old table");
    let h = D0 + 12 * HOUR_MS;
    for (k, hour, valid, invalid) in [(1u8, h, 5i64, 2i64), (1, h + HOUR_MS, 3, 0), (2, h, 0, 4)] {
        sqlx::query("INSERT INTO usage_hourly VALUES ($1, $2, $3, $4, $5)")
            .bind(key(k).to_string())
            .bind(org(1).to_string())
            .bind(hour)
            .bind(valid)
            .bind(invalid)
            .execute(pool)
            .await
            .expect("old row");
    }
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 11")
        .execute(pool)
        .await
        .expect("unrecord 0011");
    sql.close().await;
    db.store.migrate().await.expect("migrate again");

    let store = db.store.clone();
    let codes = run(
        &store,
        &query(1, Granularity::Hour, &[Dimension::Key, Dimension::Code]),
    )
    .await;
    let got: Vec<(i64, Option<String>, Option<String>, i64)> = codes
        .iter()
        .map(|r| (r.time, r.key_id.clone(), r.code.clone(), r.count))
        .collect();
    let k = |n: u8| Some(key(n).to_string());
    let c = |s: &str| Some(s.to_string());
    assert_eq!(
        got,
        vec![
            (h, k(1), c("INVALID"), 2),
            (h, k(1), c("VALID"), 5),
            (h, k(2), c("INVALID"), 4),
            (h + HOUR_MS, k(1), c("VALID"), 3),
        ]
    );
    assert_eq!(
        sum(&run(&store, &query(1, Granularity::Day, &[])).await),
        14
    );
    assert_eq!(
        sum(&run(&store, &query(1, Granularity::Hour, &[])).await),
        14
    );
    let mut tx = store.read().await.expect("read");
    let usage = tx
        .usage(
            &key(1),
            keyhaven_core::time::from_millis(D0),
            keyhaven_core::time::from_millis(D0 + DAY_MS),
        )
        .await
        .expect("usage");
    assert_eq!(
        usage
            .iter()
            .map(|u| (u.valid, u.invalid))
            .collect::<Vec<_>>(),
        vec![(5, 2), (3, 0)]
    );
    assert_eq!(
        tx.calls_since(&org(1), keyhaven_core::time::from_millis(D0))
            .await
            .expect("calls"),
        14
    );
    drop(tx);
    let sql = keyhaven_store::SqlStore::connect(&db.url)
        .await
        .expect("connect");
    assert!(
        sqlx::query("SELECT 1 FROM usage_hourly")
            .fetch_all(sql.pool())
            .await
            .is_err(),
        "usage_hourly is gone"
    );
    sql.close().await;
}

macro_rules! both {
    ($($name:ident),* $(,)?; db: $($d:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $d() {
                    let db = keyhaven_store::testing::TestDb::sqlite().await;
                    super::$d(&db).await;
                    db.store.close().await;
                }
            )*
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
                async fn $d() {
                    let Some(db) = keyhaven_store::testing::TestDb::postgres(stringify!($d)).await
                    else {
                        return;
                    };
                    super::$d(&db).await;
                    db.store.close().await;
                }
            )*
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
    batches_from_several_nodes_sum_everywhere,
    keyset_paging_walks_every_row_once,
    top_keys_read_whole_days_and_edge_hours,
    pruning_goes_in_batches_and_keeps_daily_rows;
    db: migration_moves_the_old_usage_counts,
}
