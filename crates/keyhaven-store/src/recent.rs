//! The most recent verifications of each key (migration 0012) and the scopes in use in
//! an organization — small reads for the console's key page and key forms.
//!
//! Verifications reach this table only through the analytics flush, a batch per node
//! every second at most; the verification path itself never writes here.

use std::collections::BTreeSet;

use async_trait::async_trait;
use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;
use sqlx::any::AnyRow;

use crate::error::StoreResult;
use crate::row::{bind_all, id, json, ms, opt_text, text, time, to_json, Arg};
use crate::sql::SqlTx;

/// One verification of a key, as the key page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentVerification {
    /// The key's organization.
    pub org_id: Id,
    /// The key.
    pub key_id: Id,
    /// When it was answered.
    pub at: Timestamp,
    /// The verification code (`VALID`, `RATE_LIMITED`, …).
    pub code: String,
    /// The client's address as the verification judged it, when known.
    pub ip: Option<String>,
    /// The request's analytics tags.
    pub tags: Vec<String>,
}

/// Storage of recent verifications and of the scopes in use.
#[async_trait]
pub trait RecentVerifications {
    /// Adds `rows`.
    async fn add_recent_verifications(&mut self, rows: &[RecentVerification]) -> StoreResult<()>;
    /// Deletes all but the newest `keep` rows of each of `keys`.
    async fn trim_recent_verifications(&mut self, keys: &[Id], keep: i64) -> StoreResult<()>;
    /// The newest `limit` verifications of a key of `org_id`, newest first (none for a
    /// key of another organization).
    async fn recent_verifications(
        &mut self,
        org_id: &Id,
        key_id: &Id,
        limit: i64,
    ) -> StoreResult<Vec<RecentVerification>>;
    /// Deletes at most `batch` rows older than `before` (Unix ms); returns how many went.
    async fn prune_recent_verifications(&mut self, before: i64, batch: i64) -> StoreResult<u64>;
    /// The distinct scopes of `org_id`'s keys and permissions of its roles, sorted;
    /// at most `limit`.
    async fn scopes_in_use(&mut self, org_id: &Id, limit: usize) -> StoreResult<Vec<String>>;
}

/// Rows per `INSERT` (6 values each).
const ROWS_PER_STATEMENT: usize = 500;
/// Keys per trimming statement.
const KEYS_PER_TRIM: usize = 500;

fn from_row(r: &AnyRow) -> StoreResult<RecentVerification> {
    Ok(RecentVerification {
        org_id: id(r, "org_id")?,
        key_id: id(r, "key_id")?,
        at: time(r, "at")?,
        code: text(r, "code")?,
        ip: opt_text(r, "ip")?,
        tags: json(r, "tags")?,
    })
}

#[async_trait]
impl RecentVerifications for SqlTx {
    async fn add_recent_verifications(&mut self, rows: &[RecentVerification]) -> StoreResult<()> {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut sql = String::from(
                "INSERT INTO recent_verifications (org_id, key_id, at, code, ip, tags) VALUES ",
            );
            let mut args = Vec::with_capacity(chunk.len() * 6);
            for (i, r) in chunk.iter().enumerate() {
                let b = i * 6;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, CAST(${} AS TEXT), ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                ));
                args.push(Arg::Text(r.org_id.to_string()));
                args.push(Arg::Text(r.key_id.to_string()));
                args.push(Arg::Int(ms(&r.at)));
                args.push(Arg::Text(r.code.clone()));
                args.push(Arg::OptText(r.ip.clone()));
                args.push(Arg::Text(to_json(&r.tags)));
            }
            bind_all(sqlx::query(&sql), args)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn trim_recent_verifications(&mut self, keys: &[Id], keep: i64) -> StoreResult<()> {
        let keys: BTreeSet<&str> = keys.iter().map(Id::as_str).collect();
        let keys: Vec<&str> = keys.into_iter().collect();
        for chunk in keys.chunks(KEYS_PER_TRIM) {
            let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "DELETE FROM recent_verifications WHERE id IN (\
                 SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY key_id ORDER BY at DESC, id DESC) AS n \
                 FROM recent_verifications WHERE key_id IN ({})) ranked WHERE n > $1)",
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(keep);
            for k in chunk {
                q = q.bind(*k);
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    async fn recent_verifications(
        &mut self,
        org_id: &Id,
        key_id: &Id,
        limit: i64,
    ) -> StoreResult<Vec<RecentVerification>> {
        let rows = sqlx::query(
            "SELECT org_id, key_id, at, code, ip, tags FROM recent_verifications \
             WHERE key_id = $1 AND org_id = $2 ORDER BY at DESC, id DESC LIMIT $3",
        )
        .bind(key_id.as_str())
        .bind(org_id.as_str())
        .bind(limit.clamp(1, 1000))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(from_row).collect()
    }

    async fn prune_recent_verifications(&mut self, before: i64, batch: i64) -> StoreResult<u64> {
        let r = sqlx::query(
            "DELETE FROM recent_verifications WHERE id IN \
             (SELECT id FROM recent_verifications WHERE at < $1 ORDER BY at LIMIT $2)",
        )
        .bind(before)
        .bind(batch.max(1))
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected())
    }

    async fn scopes_in_use(&mut self, org_id: &Id, limit: usize) -> StoreResult<Vec<String>> {
        // Distinct lists, not distinct elements: the JSON arrays are read portably and
        // split here. Keys tend to share a few scope lists, so this reads few rows.
        let rows = sqlx::query(
            "SELECT DISTINCT scopes AS list FROM api_keys WHERE org_id = $1 AND scopes <> '[]' \
             UNION SELECT DISTINCT permissions AS list FROM roles WHERE org_id = $1 AND built_in = 0",
        )
        .bind(org_id.as_str())
        .fetch_all(&mut *self.tx)
        .await?;
        let mut out = BTreeSet::new();
        for r in &rows {
            let list: Vec<String> = json(r, "list")?;
            out.extend(list);
        }
        Ok(out.into_iter().take(limit).collect())
    }
}
