//! Hourly verification counts per key.

use async_trait::async_trait;
use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;

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
    /// All verifications of an organization's keys since `since` (hour-aligned).
    async fn calls_since(&mut self, org_id: &Id, since: Timestamp) -> StoreResult<i64>;
}

#[async_trait]
impl Usage for SqlTx {
    async fn add_usage(&mut self, counts: &[UsageCount]) -> StoreResult<()> {
        for c in counts {
            sqlx::query(
                "INSERT INTO usage_hourly (key_id, org_id, hour, valid, invalid) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (key_id, hour) DO UPDATE SET valid = usage_hourly.valid + excluded.valid, \
                 invalid = usage_hourly.invalid + excluded.invalid",
            )
            .bind(c.key_id.as_str())
            .bind(c.org_id.as_str())
            .bind(c.hour)
            .bind(c.valid)
            .bind(c.invalid)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
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
        let rows = sqlx::query("SELECT * FROM usage_hourly WHERE key_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour")
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
                    hour: int(r, "hour")?,
                    valid: int(r, "valid")?,
                    invalid: int(r, "invalid")?,
                })
            })
            .collect()
    }

    async fn calls_since(&mut self, org_id: &Id, since: Timestamp) -> StoreResult<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(valid + invalid), 0) AS BIGINT) FROM usage_hourly WHERE org_id = $1 AND hour >= $2",
        )
        .bind(org_id.as_str())
        .bind(ms(&since))
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(n)
    }
}
