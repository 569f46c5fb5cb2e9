//! Hourly verification counts per key: valid and refused, as the key pages show them.
//! Since migration 0011 they are read from (and written to) the analytics tables
//! ([`crate::Analytics`]), so the key pages and analytics always show the same counts.

use async_trait::async_trait;
use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;

use crate::analytics::{Analytics, VerificationCount};
use crate::error::StoreResult;
use crate::row::{id, int, ms};
use crate::sql::SqlTx;

/// Verifications of one key in one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCount {
    /// The key.
    pub key_id: Id,
    /// Its organization.
    pub org_id: Id,
    /// Start of the hour, Unix ms.
    pub hour: i64,
    /// Successful verifications.
    pub valid: i64,
    /// Refused verifications.
    pub invalid: i64,
}

/// Storage of usage counts.
#[async_trait]
pub trait Usage {
    /// Adds counts (summing into existing hours).
    async fn add_usage(&mut self, counts: &[UsageCount]) -> StoreResult<()>;
    /// Moves a key's `last_used_at` forward to `at`.
    async fn touch_key(&mut self, key_id: &Id, at: Timestamp) -> StoreResult<()>;
    /// Hourly counts of a key in `[from, to)`, oldest first.
    async fn usage(
        &mut self,
        key_id: &Id,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<UsageCount>>;
    /// All verifications counted for an organization since `since` (hour-aligned): its
    /// keys' and, when asked in its scope, those without a key (analytics totals).
    async fn calls_since(&mut self, org_id: &Id, since: Timestamp) -> StoreResult<i64>;
}

#[async_trait]
impl Usage for SqlTx {
    async fn add_usage(&mut self, counts: &[UsageCount]) -> StoreResult<()> {
        // Without codes: valid ones as VALID, refused ones as INVALID (the code the
        // migrated history has too).
        let mut rows = Vec::with_capacity(counts.len() * 2);
        for c in counts {
            for (code, n) in [("VALID", c.valid), ("INVALID", c.invalid)] {
                if n != 0 {
                    rows.push(VerificationCount {
                        org_id: c.org_id.clone(),
                        hour: c.hour,
                        key_id: Some(c.key_id.clone()),
                        owner_id: None,
                        code: code.to_string(),
                        tag: None,
                        count: n,
                    });
                }
            }
        }
        self.add_verifications(&rows).await
    }

    async fn touch_key(&mut self, key_id: &Id, at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)")
            .bind(key_id.as_str())
            .bind(ms(&at))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn usage(
        &mut self,
        key_id: &Id,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<UsageCount>> {
        let rows = sqlx::query(
            "SELECT key_id, MAX(org_id) AS org_id, bucket, \
             CAST(SUM(CASE WHEN code = 'VALID' THEN count ELSE 0 END) AS BIGINT) AS valid, \
             CAST(SUM(CASE WHEN code = 'VALID' THEN 0 ELSE count END) AS BIGINT) AS invalid \
             FROM analytics_hourly WHERE key_id = $1 AND tag = '' AND bucket >= $2 AND bucket < $3 \
             GROUP BY key_id, bucket ORDER BY bucket",
        )
        .bind(key_id.as_str())
        .bind(ms(&from))
        .bind(ms(&to))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageCount {
                    key_id: id(r, "key_id")?,
                    org_id: id(r, "org_id")?,
                    hour: int(r, "bucket")?,
                    valid: int(r, "valid")?,
                    invalid: int(r, "invalid")?,
                })
            })
            .collect()
    }

    async fn calls_since(&mut self, org_id: &Id, since: Timestamp) -> StoreResult<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM analytics_org_hourly \
             WHERE org_id = $1 AND tag = '' AND bucket >= $2",
        )
        .bind(org_id.as_str())
        .bind(ms(&since))
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(n)
    }
}
