//! Verification analytics (ANALYTICS.md): counts by organization, hour or day, key,
//! code and tag, and the queries over them.
//!
//! Four tables (migration 0011): per-key rows hourly and daily, and the same counts
//! without the key (per organization) hourly and daily. [`Analytics::add_verifications`]
//! adds each batch into all four in one transaction, so they always agree; a query
//! reads the per-organization tables unless it groups or filters by key or owner.
//! `key_id`/`owner_id` are stored as `''` for a verification without a key, and `tag`
//! as `''` in the rows that count each verification once (tag rows count it once per tag).

use std::collections::BTreeMap;

use async_trait::async_trait;
use keyhaven_core::id::Id;

use crate::backend::Backend;
use crate::error::StoreResult;
use crate::row::{bind_all, int, text, Arg};
use crate::sql::SqlTx;

/// One hour in Unix milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
/// One day in Unix milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// Verifications counted by one node: of one organization, in one hour, with one code,
/// of one key (or none) and under one tag (or none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationCount {
    /// The organization.
    pub org_id: Id,
    /// Start of the hour, Unix ms.
    pub hour: i64,
    /// The key, when one was found.
    pub key_id: Option<Id>,
    /// The key's owner (user or service account id), when there is a key.
    pub owner_id: Option<String>,
    /// The answer code, e.g. `VALID`.
    pub code: String,
    /// `None` for the row counting each verification once; `Some(tag)` for the row
    /// counting the verifications that carried `tag`.
    pub tag: Option<String>,
    /// How many.
    pub count: i64,
}

/// The size of a time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// Hours (UTC).
    Hour,
    /// Days (UTC).
    Day,
}

impl Granularity {
    /// The bucket length in ms.
    pub fn ms(self) -> i64 {
        match self {
            Granularity::Hour => HOUR_MS,
            Granularity::Day => DAY_MS,
        }
    }

    /// The start of the bucket holding `t` (Unix ms).
    pub fn floor(self, t: i64) -> i64 {
        t - t.rem_euclid(self.ms())
    }
}

/// What rows may be grouped by, besides time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dimension {
    /// The key (`null` for verifications without one).
    Key,
    /// The answer code.
    Code,
    /// The caller-supplied tag.
    Tag,
    /// The key's owner.
    Owner,
}

impl Dimension {
    fn column(self) -> &'static str {
        match self {
            Dimension::Key => "key_id",
            Dimension::Code => "code",
            Dimension::Tag => "tag",
            Dimension::Owner => "owner_id",
        }
    }
}

/// A query of verification counts.
#[derive(Debug, Clone)]
pub struct AnalyticsQuery {
    /// The organization.
    pub org_id: Id,
    /// Buckets starting at or after this bucket-aligned instant (Unix ms)…
    pub since_ms: i64,
    /// …and before this one.
    pub until_ms: i64,
    /// Hourly or daily rows.
    pub granularity: Granularity,
    /// Dimensions to group by (each at most once, any order).
    pub group_by: Vec<Dimension>,
    /// Only this key.
    pub key_id: Option<String>,
    /// Only keys of this owner.
    pub owner_id: Option<String>,
    /// Only this code.
    pub code: Option<String>,
    /// Only verifications carrying this tag.
    pub tag: Option<String>,
    /// At most this many rows (1..=1000).
    pub limit: i64,
    /// Rows after this one (the last row of the page before).
    pub after: Option<AnalyticsRow>,
}

/// One row of an answer: a bucket, the grouped dimensions and the count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnalyticsRow {
    /// Start of the bucket, Unix ms.
    pub time: i64,
    /// When grouped by key: the key, `None` for verifications without one.
    pub key_id: Option<String>,
    /// When grouped by code.
    pub code: Option<String>,
    /// When grouped by tag.
    pub tag: Option<String>,
    /// When grouped by owner: the owner, `None` for verifications without a key.
    pub owner_id: Option<String>,
    /// Verifications (never 0).
    pub count: i64,
}

/// One page of an answer, ordered by time then by the grouped dimensions.
#[derive(Debug, Clone)]
pub struct AnalyticsPage {
    /// The rows.
    pub rows: Vec<AnalyticsRow>,
    /// Whether more rows follow the last one.
    pub has_more: bool,
}

/// A key and its verifications by code in a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopKey {
    /// The key.
    pub key_id: String,
    /// Its owner.
    pub owner_id: Option<String>,
    /// Every counted verification.
    pub total: i64,
    /// Counts per code, largest first (codes with no verification left out).
    pub by_code: Vec<(String, i64)>,
}

/// Which verifications a ranking counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeFilter<'a> {
    /// Every one.
    All,
    /// Those answered with this code.
    Only(&'a str),
    /// The refused ones (every code but `VALID`).
    Failing,
}

/// Storage of verification analytics.
#[async_trait]
pub trait Analytics {
    /// Adds counts (summing into existing rows) to the hourly and daily tables.
    async fn add_verifications(&mut self, counts: &[VerificationCount]) -> StoreResult<()>;
    /// The counts a query asks for, one page.
    async fn verification_counts(&mut self, q: &AnalyticsQuery) -> StoreResult<AnalyticsPage>;
    /// The `limit` keys of `org_id` with the most verifications (those `codes` selects)
    /// in `[since_ms, until_ms)` (hour-aligned), busiest first (ties by key id).
    /// Whole days in the range are read from the daily rows, the hours at either end
    /// from the hourly ones.
    async fn top_keys(
        &mut self,
        org_id: &Id,
        since_ms: i64,
        until_ms: i64,
        codes: CodeFilter<'_>,
        limit: i64,
    ) -> StoreResult<Vec<TopKey>>;
    /// Deletes at most `batch` hourly rows older than `hourly_before` and at most
    /// `batch` daily rows older than `daily_before` (Unix ms); returns how many went.
    async fn prune_analytics(
        &mut self,
        hourly_before: i64,
        daily_before: i64,
        batch: i64,
    ) -> StoreResult<u64>;
}

/// Rows per `INSERT` statement (7 values each, well under SQLite's bound-parameter limit).
const ROWS_PER_STATEMENT: usize = 500;

type KeyRow = (String, i64, String, String, String);

async fn upsert_keyed(
    tx: &mut SqlTx,
    table: &str,
    rows: &BTreeMap<KeyRow, (String, i64)>,
) -> StoreResult<()> {
    let rows: Vec<_> = rows.iter().collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut sql = format!(
            "INSERT INTO {table} (org_id, bucket, key_id, code, tag, owner_id, count) VALUES "
        );
        let mut args = Vec::with_capacity(chunk.len() * 7);
        for (i, ((org, bucket, key, code, tag), (owner, n))) in chunk.iter().enumerate() {
            let b = i * 7;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7
            ));
            args.extend([
                Arg::Text(org.clone()),
                Arg::Int(*bucket),
                Arg::Text(key.clone()),
                Arg::Text(code.clone()),
                Arg::Text(tag.clone()),
                Arg::Text(owner.clone()),
                Arg::Int(*n),
            ]);
        }
        sql.push_str(&format!(
            " ON CONFLICT (org_id, bucket, key_id, code, tag) DO UPDATE SET count = {table}.count + excluded.count"
        ));
        bind_all(sqlx::query(&sql), args)
            .execute(&mut *tx.tx)
            .await?;
    }
    Ok(())
}

type OrgRow = (String, i64, String, String);

async fn upsert_org(tx: &mut SqlTx, table: &str, rows: &BTreeMap<OrgRow, i64>) -> StoreResult<()> {
    let rows: Vec<_> = rows.iter().collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut sql = format!("INSERT INTO {table} (org_id, bucket, code, tag, count) VALUES ");
        let mut args = Vec::with_capacity(chunk.len() * 5);
        for (i, ((org, bucket, code, tag), n)) in chunk.iter().enumerate() {
            let b = i * 5;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            ));
            args.extend([
                Arg::Text(org.clone()),
                Arg::Int(*bucket),
                Arg::Text(code.clone()),
                Arg::Text(tag.clone()),
                Arg::Int(**n),
            ]);
        }
        sql.push_str(&format!(
            " ON CONFLICT (org_id, bucket, code, tag) DO UPDATE SET count = {table}.count + excluded.count"
        ));
        bind_all(sqlx::query(&sql), args)
            .execute(&mut *tx.tx)
            .await?;
    }
    Ok(())
}

#[async_trait]
impl Analytics for SqlTx {
    async fn add_verifications(&mut self, counts: &[VerificationCount]) -> StoreResult<()> {
        // Summed per row first: one statement may not touch a row twice (PostgreSQL),
        // and several hours of a batch fall into one day.
        let mut hourly: BTreeMap<KeyRow, (String, i64)> = BTreeMap::new();
        let mut daily: BTreeMap<KeyRow, (String, i64)> = BTreeMap::new();
        let mut org_hourly: BTreeMap<OrgRow, i64> = BTreeMap::new();
        let mut org_daily: BTreeMap<OrgRow, i64> = BTreeMap::new();
        for c in counts.iter().filter(|c| c.count != 0) {
            let hour = Granularity::Hour.floor(c.hour);
            let day = Granularity::Day.floor(c.hour);
            let key = c.key_id.as_ref().map(Id::to_string).unwrap_or_default();
            let owner = c.owner_id.clone().unwrap_or_default();
            let tag = c.tag.clone().unwrap_or_default();
            let org = c.org_id.to_string();
            for (map, bucket) in [(&mut hourly, hour), (&mut daily, day)] {
                let e = map
                    .entry((
                        org.clone(),
                        bucket,
                        key.clone(),
                        c.code.clone(),
                        tag.clone(),
                    ))
                    .or_insert_with(|| (owner.clone(), 0));
                e.1 += c.count;
            }
            for (map, bucket) in [(&mut org_hourly, hour), (&mut org_daily, day)] {
                *map.entry((org.clone(), bucket, c.code.clone(), tag.clone()))
                    .or_insert(0) += c.count;
            }
        }
        upsert_keyed(self, "analytics_hourly", &hourly).await?;
        upsert_keyed(self, "analytics_daily", &daily).await?;
        upsert_org(self, "analytics_org_hourly", &org_hourly).await?;
        upsert_org(self, "analytics_org_daily", &org_daily).await?;
        Ok(())
    }

    async fn verification_counts(&mut self, q: &AnalyticsQuery) -> StoreResult<AnalyticsPage> {
        let mut dims = q.group_by.clone();
        dims.sort();
        dims.dedup();
        let per_key = dims.contains(&Dimension::Key)
            || dims.contains(&Dimension::Owner)
            || q.key_id.is_some()
            || q.owner_id.is_some();
        let table = match (per_key, q.granularity) {
            (true, Granularity::Hour) => "analytics_hourly",
            (true, Granularity::Day) => "analytics_daily",
            (false, Granularity::Hour) => "analytics_org_hourly",
            (false, Granularity::Day) => "analytics_org_daily",
        };
        let mut args: Vec<Arg> = Vec::new();
        let mut clauses: Vec<String> = Vec::new();
        let bind = |args: &mut Vec<Arg>, a: Arg| {
            args.push(a);
            format!("${}", args.len())
        };
        let p = bind(&mut args, Arg::Text(q.org_id.to_string()));
        clauses.push(format!("org_id = {p}"));
        let p = bind(&mut args, Arg::Int(q.since_ms));
        clauses.push(format!("bucket >= {p}"));
        let p = bind(&mut args, Arg::Int(q.until_ms));
        clauses.push(format!("bucket < {p}"));
        match &q.tag {
            Some(t) => {
                let p = bind(&mut args, Arg::Text(t.clone()));
                clauses.push(format!("tag = {p}"));
            }
            None if dims.contains(&Dimension::Tag) => clauses.push("tag <> ''".into()),
            None => clauses.push("tag = ''".into()),
        }
        if let Some(k) = &q.key_id {
            let p = bind(&mut args, Arg::Text(k.clone()));
            clauses.push(format!("key_id = {p}"));
        }
        if let Some(o) = &q.owner_id {
            let p = bind(&mut args, Arg::Text(o.clone()));
            clauses.push(format!("owner_id = {p}"));
        }
        if let Some(c) = &q.code {
            let p = bind(&mut args, Arg::Text(c.clone()));
            clauses.push(format!("code = {p}"));
        }
        let mut cols = vec!["bucket"];
        cols.extend(dims.iter().map(|d| d.column()));
        if let Some(after) = &q.after {
            // Keyset paging over the grouping columns: a row comes after the cursor
            // when its (bucket, dims…) tuple sorts after the cursor's.
            let mut ps = vec![bind(&mut args, Arg::Int(after.time))];
            for d in &dims {
                let v = match d {
                    Dimension::Key => after.key_id.clone(),
                    Dimension::Code => after.code.clone(),
                    Dimension::Tag => after.tag.clone(),
                    Dimension::Owner => after.owner_id.clone(),
                };
                ps.push(bind(&mut args, Arg::Text(v.unwrap_or_default())));
            }
            clauses.push(format!("({}) > ({})", cols.join(", "), ps.join(", ")));
        }
        let limit = q.limit.clamp(1, 1000);
        let p = bind(&mut args, Arg::Int(limit + 1));
        let group = cols.join(", ");
        let sql = format!(
            "SELECT {group}, CAST(SUM(count) AS BIGINT) AS n FROM {table} WHERE {} \
             GROUP BY {group} HAVING SUM(count) > 0 ORDER BY {group} LIMIT {p}",
            clauses.join(" AND ")
        );
        let found = bind_all(sqlx::query(&sql), args)
            .fetch_all(&mut *self.tx)
            .await?;
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        let mut rows = Vec::with_capacity(found.len());
        for r in &found {
            let mut row = AnalyticsRow {
                time: int(r, "bucket")?,
                key_id: None,
                code: None,
                tag: None,
                owner_id: None,
                count: int(r, "n")?,
            };
            for d in &dims {
                let v = text(r, d.column())?;
                match d {
                    Dimension::Key => row.key_id = nonempty(v),
                    Dimension::Code => row.code = Some(v),
                    Dimension::Tag => row.tag = Some(v),
                    Dimension::Owner => row.owner_id = nonempty(v),
                }
            }
            rows.push(row);
        }
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok(AnalyticsPage { rows, has_more })
    }

    async fn top_keys(
        &mut self,
        org_id: &Id,
        since_ms: i64,
        until_ms: i64,
        codes: CodeFilter<'_>,
        limit: i64,
    ) -> StoreResult<Vec<TopKey>> {
        // Whole days from the daily rows, the hours around them from the hourly rows.
        let first_day = Granularity::Day.floor(since_ms + DAY_MS - 1);
        let last_day = Granularity::Day.floor(until_ms);
        let (days, hours) = if first_day < last_day {
            (
                Some((first_day, last_day)),
                vec![(since_ms, first_day), (last_day, until_ms)],
            )
        } else {
            (None, vec![(since_ms, until_ms)])
        };
        let mut args = vec![Arg::Text(org_id.to_string())];
        let code_clause = match codes {
            CodeFilter::Only(c) => {
                args.push(Arg::Text(c.to_string()));
                format!(" AND code = ${}", args.len())
            }
            CodeFilter::Failing => " AND code <> 'VALID'".to_string(),
            CodeFilter::All => String::new(),
        };
        // `{keys}` is where the second query narrows the parts to the ranked keys.
        let mut parts = Vec::new();
        let mut ranges: Vec<(&str, i64, i64)> = Vec::new();
        if let Some((a, b)) = days {
            ranges.push(("analytics_daily", a, b));
        }
        for (a, b) in hours.into_iter().filter(|(a, b)| a < b) {
            ranges.push(("analytics_hourly", a, b));
        }
        for (table, a, b) in ranges {
            args.push(Arg::Int(a));
            args.push(Arg::Int(b));
            let n = args.len();
            parts.push(format!(
                "SELECT key_id, owner_id, code, count FROM {table} WHERE org_id = $1 \
                 AND tag = '' AND key_id <> ''{code_clause} AND bucket >= ${} AND bucket < ${n}{{keys}}",
                n - 1
            ));
        }
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        let union = parts.join(" UNION ALL ");
        // First the ranking, in the database: one total per key, the busiest `limit`.
        let limit = limit.clamp(1, 1000);
        let mut rank_args = args.clone();
        rank_args.push(Arg::Int(limit));
        let sql = format!(
            "SELECT key_id, CAST(SUM(count) AS BIGINT) AS n FROM ({}) AS r \
             GROUP BY key_id HAVING SUM(count) > 0 ORDER BY n DESC, key_id LIMIT ${}",
            union.replace("{keys}", ""),
            rank_args.len()
        );
        let ranked = bind_all(sqlx::query(&sql), rank_args)
            .fetch_all(&mut *self.tx)
            .await?;
        let mut out = Vec::with_capacity(ranked.len());
        for r in &ranked {
            out.push(TopKey {
                key_id: text(r, "key_id")?,
                owner_id: None,
                total: int(r, "n")?,
                by_code: Vec::new(),
            });
        }
        if out.is_empty() {
            return Ok(out);
        }
        // Then their counts per code, reading only those keys' rows.
        let first = args.len() + 1;
        let marks: Vec<String> = (0..out.len()).map(|i| format!("${}", first + i)).collect();
        for k in &out {
            args.push(Arg::Text(k.key_id.clone()));
        }
        let sql = format!(
            "SELECT key_id, MAX(owner_id) AS owner_id, code, CAST(SUM(count) AS BIGINT) AS n \
             FROM ({}) AS r GROUP BY key_id, code",
            union.replace("{keys}", &format!(" AND key_id IN ({})", marks.join(", ")))
        );
        let found = bind_all(sqlx::query(&sql), args)
            .fetch_all(&mut *self.tx)
            .await?;
        for r in &found {
            let key_id = text(r, "key_id")?;
            let n = int(r, "n")?;
            let Some(k) = out.iter_mut().find(|k| k.key_id == key_id) else {
                continue;
            };
            let owner = text(r, "owner_id")?;
            if !owner.is_empty() {
                k.owner_id = Some(owner);
            }
            if n != 0 {
                k.by_code.push((text(r, "code")?, n));
            }
        }
        for k in &mut out {
            k.by_code.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        }
        Ok(out)
    }

    async fn prune_analytics(
        &mut self,
        hourly_before: i64,
        daily_before: i64,
        batch: i64,
    ) -> StoreResult<u64> {
        let mut gone = 0;
        for (table, before, pk) in [
            (
                "analytics_hourly",
                hourly_before,
                "org_id, bucket, key_id, code, tag",
            ),
            (
                "analytics_org_hourly",
                hourly_before,
                "org_id, bucket, code, tag",
            ),
            (
                "analytics_daily",
                daily_before,
                "org_id, bucket, key_id, code, tag",
            ),
            (
                "analytics_org_daily",
                daily_before,
                "org_id, bucket, code, tag",
            ),
        ] {
            // PostgreSQL by physical row; SQLite's tables are WITHOUT ROWID, so by key.
            let row = match self.backend {
                Backend::Sqlite => format!("({pk})"),
                Backend::Postgres => "ctid".to_string(),
            };
            let sql = format!(
                "DELETE FROM {table} WHERE {row} IN \
                 (SELECT {} FROM {table} WHERE bucket < $1 LIMIT $2)",
                if row == "ctid" { "ctid" } else { pk }
            );
            let r = sqlx::query(&sql)
                .bind(before)
                .bind(batch.max(1))
                .execute(&mut *self.tx)
                .await?;
            gone += r.rows_affected();
        }
        Ok(gone)
    }
}
