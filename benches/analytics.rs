//! Analytics queries over a seeded dataset (ANALYTICS.md: "one query over 90 days of
//! hourly counts for 10,000 keys answers in under a second on both databases").
//!
//! Seeds one organization with 10,000 keys and 90 days of hourly rows (each key active
//! in one hour of every `KEYHAVEN_BENCH_DENSITY` hours, default 4, with VALID counts, and
//! every tenth active hour also RATE_LIMITED ones), the matching daily and
//! per-organization rows, plus a second organization of the same size (so each query
//! has to pick its tenant's rows out of twice as many). Then times each query the API
//! makes, through the store, several times, and prints the median and the slowest.
//!
//! ```sh
//! cargo bench -p keyhaven-benches --bench analytics              # SQLite and PostgreSQL
//! KEYHAVEN_BENCH_DENSITY=1 cargo bench -p keyhaven-benches --bench analytics   # every key every hour
//! ```
//!
//! PostgreSQL is `KEYHAVEN_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); a database is made and dropped for
//! the run. Not a test: nothing here asserts a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyhaven_core::id::Id;
use keyhaven_store::testing::TestDb;
use keyhaven_store::{AnalyticsQuery, CodeFilter, Dimension, Granularity, Store, DAY_MS, HOUR_MS};

const KEYS: i64 = 10_000;
const HOURS: i64 = 90 * 24;
/// 2026-08-24T00:00:00Z: the first hour seeded.
const START: i64 = 1_787_529_600_000;
const ORG: &str = "01kbenchorg000000000000000";
const OTHER: &str = "01kbenchother0000000000000";

fn key_id(j: i64) -> String {
    format!("01kbenchkey{j:015}")
}

/// The seeding SQL for one organization: hourly rows from a series of hours × keys,
/// then daily and per-organization rows summed from them.
fn seed_sql(postgres: bool, org: &str, density: i64) -> Vec<String> {
    let series = |n: i64, name: &str| {
        if postgres {
            format!(
                "generate_series(CAST(0 AS BIGINT), CAST({} AS BIGINT)) AS {name}(v)",
                n - 1
            )
        } else {
            format!(
                "(WITH RECURSIVE s(v) AS (SELECT 0 UNION ALL SELECT v + 1 FROM s WHERE v < {}) SELECT v FROM s) AS {name}",
                n - 1
            )
        }
    };
    let pad = if postgres {
        "lpad(k.v::text, 15, '0')".to_string()
    } else {
        "substr('000000000000000' || k.v, -15, 15)".to_string()
    };
    let owner = if postgres {
        "'01kbenchowner' || lpad((k.v % 100)::text, 13, '0')".to_string()
    } else {
        "'01kbenchowner' || substr('0000000000000' || (k.v % 100), -13, 13)".to_string()
    };
    let hours = series(HOURS, "h");
    let keys = series(KEYS, "k");
    let active = format!("(h.v + k.v) % {density} = 0");
    vec![
        format!(
            "INSERT INTO analytics_hourly (org_id, bucket, key_id, code, tag, owner_id, count) \
             SELECT '{org}', {START} + h.v * {HOUR_MS}, '01kbenchkey' || {pad}, 'VALID', '', {owner}, 1 + (h.v * 7 + k.v) % 50 \
             FROM {hours} CROSS JOIN {keys} WHERE {active}"
        ),
        format!(
            "INSERT INTO analytics_hourly (org_id, bucket, key_id, code, tag, owner_id, count) \
             SELECT '{org}', {START} + h.v * {HOUR_MS}, '01kbenchkey' || {pad}, 'RATE_LIMITED', '', {owner}, 1 + k.v % 3 \
             FROM {hours} CROSS JOIN {keys} WHERE {active} AND (h.v + k.v) % ({density} * 10) = 0"
        ),
        format!(
            "INSERT INTO analytics_daily (org_id, bucket, key_id, code, tag, owner_id, count) \
             SELECT org_id, bucket - (bucket % {DAY_MS}), key_id, code, tag, MAX(owner_id), SUM(count) \
             FROM analytics_hourly WHERE org_id = '{org}' GROUP BY org_id, bucket - (bucket % {DAY_MS}), key_id, code, tag"
        ),
        format!(
            "INSERT INTO analytics_org_hourly (org_id, bucket, code, tag, count) \
             SELECT org_id, bucket, code, tag, SUM(count) FROM analytics_hourly WHERE org_id = '{org}' \
             GROUP BY org_id, bucket, code, tag"
        ),
        format!(
            "INSERT INTO analytics_org_daily (org_id, bucket, code, tag, count) \
             SELECT org_id, bucket, code, tag, SUM(count) FROM analytics_daily WHERE org_id = '{org}' \
             GROUP BY org_id, bucket, code, tag"
        ),
    ]
}

fn base(granularity: Granularity, group_by: &[Dimension]) -> AnalyticsQuery {
    AnalyticsQuery {
        org_id: Id::from_trusted(ORG.to_string()),
        since_ms: START,
        until_ms: START + HOURS * HOUR_MS,
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

async fn time<F, Fut>(runs: usize, mut f: F) -> (Duration, Duration, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut times = Vec::with_capacity(runs);
    let mut rows = 0;
    for _ in 0..runs {
        let t = Instant::now();
        rows = f().await;
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], times[times.len() - 1], rows)
}

async fn bench(name: &str, store: Arc<dyn Store>, sql: &keyhaven_store::SqlStore, density: i64) {
    let postgres = name == "postgres";
    let t = Instant::now();
    for org in [ORG, OTHER] {
        for s in seed_sql(postgres, org, density) {
            sqlx::query(&s)
                .execute(sql.pool())
                .await
                .unwrap_or_else(|e| panic!("seed: {e}\n{s}"));
        }
    }
    // Fresh statistics, as a database that has been running would have.
    sqlx::query("ANALYZE")
        .execute(sql.pool())
        .await
        .expect("analyze");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM analytics_hourly")
        .fetch_one(sql.pool())
        .await
        .expect("count");
    println!(
        "{name}: seeded {rows} hourly rows (2 organizations × {KEYS} keys × 90 days, density 1/{density}) in {:.0?}",
        t.elapsed()
    );

    let run = |q: AnalyticsQuery| {
        let store = store.clone();
        async move {
            let mut tx = store.read().await.expect("read");
            tx.verification_counts(&q).await.expect("query").rows.len()
        }
    };
    let mut cases: Vec<(&str, AnalyticsQuery)> = vec![
        (
            "90 d hourly, group_by=code (the console chart, all pages' first)",
            base(Granularity::Hour, &[Dimension::Code]),
        ),
        (
            "90 d daily, group_by=code",
            base(Granularity::Day, &[Dimension::Code]),
        ),
        (
            "90 d hourly, group_by=key, first page of 1,000",
            base(Granularity::Hour, &[Dimension::Key]),
        ),
        (
            "90 d daily, group_by=key&group_by=code, first page",
            base(Granularity::Day, &[Dimension::Key, Dimension::Code]),
        ),
    ];
    let mut one_key = base(Granularity::Hour, &[Dimension::Code]);
    one_key.key_id = Some(key_id(4242));
    cases.push(("90 d hourly, key_id=…, group_by=code", one_key));
    let mut owner = base(Granularity::Day, &[Dimension::Code]);
    owner.owner_id = Some("01kbenchowner0000000000042".into());
    cases.push(("90 d daily, owner_id=… (100 keys)", owner));
    let mut failing = base(Granularity::Hour, &[Dimension::Key]);
    failing.code = Some("RATE_LIMITED".into());
    cases.push((
        "90 d hourly, code=RATE_LIMITED, group_by=key, first page",
        failing,
    ));
    let mut last_page = base(Granularity::Hour, &[Dimension::Key]);
    last_page.after = Some(keyhaven_store::AnalyticsRow {
        time: START + (HOURS - 2) * HOUR_MS,
        key_id: Some(key_id(0)),
        code: None,
        tag: None,
        owner_id: None,
        count: 0,
    });
    cases.push((
        "90 d hourly, group_by=key, a page near the end (cursor)",
        last_page,
    ));
    for (label, q) in cases {
        let (median, worst, n) = time(5, || run(q.clone())).await;
        println!("{name}: {label}: median {median:.1?}, slowest {worst:.1?} ({n} rows)");
    }
    for (label, codes) in [
        ("top-keys 90 d (limit 10)", CodeFilter::All),
        ("top-keys 90 d, failing (limit 10)", CodeFilter::Failing),
    ] {
        let store = store.clone();
        let (median, worst, n) = time(5, || {
            let store = store.clone();
            async move {
                let mut tx = store.read().await.expect("read");
                // Not day-aligned: whole days from daily rows, the edges from hourly rows.
                tx.top_keys(
                    &Id::from_trusted(ORG.to_string()),
                    START + 5 * HOUR_MS,
                    START + (HOURS - 3) * HOUR_MS,
                    codes,
                    10,
                )
                .await
                .expect("top")
                .len()
            }
        })
        .await;
        println!("{name}: {label}: median {median:.1?}, slowest {worst:.1?} ({n} keys)");
    }
}

fn main() {
    let density: i64 = std::env::var("KEYHAVEN_BENCH_DENSITY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(4);
    let only = std::env::var("KEYHAVEN_BENCH_ONLY").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if only.is_empty() || only == "sqlite" {
            let db = TestDb::sqlite().await;
            let sql = keyhaven_store::SqlStore::connect(&db.url)
                .await
                .expect("connect");
            bench("sqlite", db.store.clone(), &sql, density).await;
            sql.close().await;
            db.store.close().await;
        }
        if only.is_empty() || only == "postgres" {
            match TestDb::postgres("analytics_bench").await {
                Some(db) => {
                    let sql = keyhaven_store::SqlStore::connect(&db.url)
                        .await
                        .expect("connect");
                    bench("postgres", db.store.clone(), &sql, density).await;
                    sql.close().await;
                    db.store.close().await;
                }
                None => println!("postgres: skipped (no server)"),
            }
        }
    });
}
