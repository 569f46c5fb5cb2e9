//! Usage-control counters kept in the database: credit balances (always: the database
//! is their source of truth) and, for the PostgreSQL counter engine, the token buckets
//! every node leases from. Each statement locks the row it rewrites (PostgreSQL
//! `FOR UPDATE`; SQLite's write transactions are serialized), so concurrent leases from
//! several nodes never hand out the same token or credit twice.

use async_trait::async_trait;
use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;
use keyhaven_core::usage_control::{
    lease_size_above, Bucket, CreditOp, Grant, Refill, CREDIT_RESERVE, MAX_CREDITS,
};

use crate::error::{StoreError, StoreResult};
use crate::row::{id, int, ms, opt_int, opt_text};
use crate::sql::SqlTx;

/// Credits handed to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditLease {
    /// Credits handed out (0 = refused: fewer than the cost were left).
    pub granted: i64,
    /// The stored balance after the lease.
    pub remaining: i64,
    /// The balance's epoch: leases of an older epoch are void.
    pub epoch: i64,
    /// The key's `low_threshold`.
    pub low_threshold: Option<i64>,
}

/// A balance before and after an adjustment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditChange {
    /// Before.
    pub before: i64,
    /// After.
    pub after: i64,
    /// The epoch after (bumped when the balance was replaced).
    pub epoch: i64,
}

/// A key whose refill is due.
#[derive(Debug, Clone)]
pub struct DueRefill {
    /// Its organization.
    pub org_id: Id,
    /// The key.
    pub key_id: Id,
    /// Its refill rule.
    pub refill: Refill,
}

/// Which one-time credit notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditNotice {
    /// The balance fell below `low_threshold`.
    Low,
    /// The balance reached 0.
    Exhausted,
}

/// Storage of credit balances and shared token buckets.
#[async_trait]
pub trait Counters {
    /// Leases credits of `key_id` for a request of `cost` that would like `want` (see
    /// [`lease_size_above`]: the last [`CREDIT_RESERVE`] go one request at a time);
    /// `None` when the key is gone or has no balance.
    async fn lease_credits(
        &mut self,
        key_id: &str,
        cost: i64,
        want: i64,
    ) -> StoreResult<Option<CreditLease>>;
    /// Puts back credits leased under `epoch` and not spent (nothing if the epoch moved on).
    async fn return_credits(&mut self, key_id: &str, epoch: i64, credits: i64) -> StoreResult<()>;
    /// Takes `credits` spent under `epoch` from the balance (down to 0; nothing if the
    /// epoch moved on): the write-behind of the in-memory engine.
    async fn spend_credits(&mut self, key_id: &str, epoch: i64, credits: i64) -> StoreResult<()>;
    /// Applies an adjustment to a key's balance; `set` starts a new epoch. `None` when
    /// the key is not in `org_id` or has no balance.
    async fn adjust_credits(
        &mut self,
        org_id: &Id,
        key_id: &Id,
        op: CreditOp,
        value: i64,
    ) -> StoreResult<Option<CreditChange>>;
    /// Marks a one-time notice as sent, if the stored balance still calls for it (below
    /// `low_threshold` for [`CreditNotice::Low`], 0 for [`CreditNotice::Exhausted`]: a
    /// notice seen before the balance was raised again is not claimed); true for the one
    /// caller that marked it. Raising the balance re-arms it ([`Counters::adjust_credits`]).
    async fn claim_credit_notice(&mut self, key_id: &str, which: CreditNotice)
        -> StoreResult<bool>;
    /// When the key's next refill is due (`None`: never).
    async fn schedule_refill(&mut self, key_id: &Id, at: Option<Timestamp>) -> StoreResult<()>;
    /// Moves the key's refill, if it is due at `now` (and the key not revoked), to
    /// `next`; true for the one caller that moved it — the one that refills. Several
    /// nodes running the refill job at once refill a key once.
    async fn claim_due_refill(
        &mut self,
        key_id: &Id,
        now: Timestamp,
        next: Timestamp,
    ) -> StoreResult<bool>;
    /// Up to `limit` keys whose refill is due at `now`.
    async fn due_refills(&mut self, now: Timestamp, limit: i64) -> StoreResult<Vec<DueRefill>>;
    /// Leases tokens from the shared bucket `bucket` (created full), see [`Bucket::lease`].
    #[allow(clippy::too_many_arguments)]
    async fn lease_tokens(
        &mut self,
        bucket: &str,
        limit: i64,
        duration_ms: i64,
        cost: i64,
        want: i64,
        now_ms: i64,
    ) -> StoreResult<Grant>;
    /// Puts back leased tokens not used.
    async fn return_tokens(
        &mut self,
        bucket: &str,
        limit: i64,
        duration_ms: i64,
        tokens: i64,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Forgets buckets that are full again at `now_ms`; returns how many.
    async fn prune_buckets(&mut self, now_ms: i64) -> StoreResult<u64>;
}

impl SqlTx {
    async fn bucket_row(&mut self, bucket: &str) -> StoreResult<Option<Bucket>> {
        let lock = self.lock_for_update("b");
        let row = sqlx::query(&format!(
            "SELECT micro, updated_ms FROM rate_buckets b WHERE id = $1{lock}"
        ))
        .bind(bucket)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|r| {
            Ok(Bucket {
                micro: int(&r, "micro")?,
                updated_ms: int(&r, "updated_ms")?,
            })
        })
        .transpose()
    }

    async fn save_bucket(&mut self, bucket: &str, b: &Bucket, full_at_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE rate_buckets SET micro = $2, updated_ms = $3, full_at_ms = $4 WHERE id = $1",
        )
        .bind(bucket)
        .bind(b.micro)
        .bind(b.updated_ms)
        .bind(full_at_ms)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Counters for SqlTx {
    async fn lease_credits(
        &mut self,
        key_id: &str,
        cost: i64,
        want: i64,
    ) -> StoreResult<Option<CreditLease>> {
        let lock = self.lock_for_update("k");
        let Some(row) = sqlx::query(&format!(
            "SELECT remaining, credits_epoch, credits_low_threshold FROM api_keys k WHERE id = $1{lock}"
        ))
        .bind(key_id)
        .fetch_optional(&mut *self.tx)
        .await?
        else {
            return Ok(None);
        };
        let Some(remaining) = opt_int(&row, "remaining")? else {
            return Ok(None);
        };
        let epoch = int(&row, "credits_epoch")?;
        let low_threshold = opt_int(&row, "credits_low_threshold")?;
        let granted = lease_size_above(remaining, cost, want, CREDIT_RESERVE);
        if granted > 0 {
            sqlx::query("UPDATE api_keys SET remaining = remaining - $2 WHERE id = $1")
                .bind(key_id)
                .bind(granted)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(Some(CreditLease {
            granted,
            remaining: remaining - granted,
            epoch,
            low_threshold,
        }))
    }

    async fn return_credits(&mut self, key_id: &str, epoch: i64, credits: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE api_keys SET remaining = CASE WHEN remaining + $3 > $4 THEN $4 ELSE remaining + $3 END \
             WHERE id = $1 AND credits_epoch = $2 AND remaining IS NOT NULL",
        )
        .bind(key_id)
        .bind(epoch)
        .bind(credits)
        .bind(MAX_CREDITS)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn spend_credits(&mut self, key_id: &str, epoch: i64, credits: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE api_keys SET remaining = CASE WHEN remaining > $3 THEN remaining - $3 ELSE 0 END \
             WHERE id = $1 AND credits_epoch = $2 AND remaining IS NOT NULL",
        )
        .bind(key_id)
        .bind(epoch)
        .bind(credits)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn adjust_credits(
        &mut self,
        org_id: &Id,
        key_id: &Id,
        op: CreditOp,
        value: i64,
    ) -> StoreResult<Option<CreditChange>> {
        let lock = self.lock_for_update("k");
        let Some(row) = sqlx::query(&format!(
            "SELECT remaining, credits_epoch FROM api_keys k WHERE org_id = $1 AND id = $2{lock}"
        ))
        .bind(org_id.as_str())
        .bind(key_id.as_str())
        .fetch_optional(&mut *self.tx)
        .await?
        else {
            return Ok(None);
        };
        let Some(before) = opt_int(&row, "remaining")? else {
            return Ok(None);
        };
        let mut epoch = int(&row, "credits_epoch")?;
        if op == CreditOp::Set {
            epoch += 1;
        }
        let after = op.apply(before, value);
        sqlx::query(
            "UPDATE api_keys SET remaining = $2, credits_epoch = $3, \
             credits_low_notified = CASE WHEN credits_low_threshold IS NULL OR $2 >= credits_low_threshold \
             THEN 0 ELSE credits_low_notified END, \
             credits_exhausted_notified = CASE WHEN $2 > 0 THEN 0 ELSE credits_exhausted_notified END \
             WHERE id = $1",
        )
        .bind(key_id.as_str())
        .bind(after)
        .bind(epoch)
        .execute(&mut *self.tx)
        .await?;
        Ok(Some(CreditChange {
            before,
            after,
            epoch,
        }))
    }

    async fn claim_credit_notice(
        &mut self,
        key_id: &str,
        which: CreditNotice,
    ) -> StoreResult<bool> {
        let (col, still) = match which {
            CreditNotice::Low => ("credits_low_notified", "remaining < credits_low_threshold"),
            CreditNotice::Exhausted => ("credits_exhausted_notified", "remaining = 0"),
        };
        // One statement: the condition is checked on the row as it is when locked, so
        // a concurrent adjustment that re-armed the notice is never overtaken.
        let r = sqlx::query(&format!(
            "UPDATE api_keys SET {col} = 1 WHERE id = $1 AND {col} = 0 AND {still}"
        ))
        .bind(key_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn schedule_refill(&mut self, key_id: &Id, at: Option<Timestamp>) -> StoreResult<()> {
        sqlx::query("UPDATE api_keys SET credits_next_refill_at = $2 WHERE id = $1")
            .bind(key_id.as_str())
            .bind(at.map(|t| ms(&t)))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn claim_due_refill(
        &mut self,
        key_id: &Id,
        now: Timestamp,
        next: Timestamp,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE api_keys SET credits_next_refill_at = $3 WHERE id = $1 \
             AND credits_refill IS NOT NULL AND credits_next_refill_at IS NOT NULL \
             AND credits_next_refill_at <= $2 AND revoked_at IS NULL",
        )
        .bind(key_id.as_str())
        .bind(ms(&now))
        .bind(ms(&next))
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn due_refills(&mut self, now: Timestamp, limit: i64) -> StoreResult<Vec<DueRefill>> {
        let rows = sqlx::query(
            "SELECT org_id, id, credits_refill FROM api_keys WHERE credits_refill IS NOT NULL \
             AND credits_next_refill_at IS NOT NULL AND credits_next_refill_at <= $1 \
             AND revoked_at IS NULL ORDER BY credits_next_refill_at LIMIT $2",
        )
        .bind(ms(&now))
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                let refill = opt_text(r, "credits_refill")?.unwrap_or_default();
                Ok(DueRefill {
                    org_id: id(r, "org_id")?,
                    key_id: id(r, "id")?,
                    refill: serde_json::from_str(&refill)
                        .map_err(|e| StoreError::Corrupt(format!("credits_refill: {e}")))?,
                })
            })
            .collect()
    }

    async fn lease_tokens(
        &mut self,
        bucket: &str,
        limit: i64,
        duration_ms: i64,
        cost: i64,
        want: i64,
        now_ms: i64,
    ) -> StoreResult<Grant> {
        // The row exists before it is locked, so two nodes creating the same bucket at
        // once are serialized like any other two leases.
        let full = Bucket::full(limit, now_ms);
        sqlx::query(
            "INSERT INTO rate_buckets (id, micro, updated_ms, full_at_ms) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(bucket)
        .bind(full.micro)
        .bind(now_ms)
        .execute(&mut *self.tx)
        .await?;
        let mut b = self.bucket_row(bucket).await?.unwrap_or(full);
        let grant = b.lease(limit, duration_ms, cost, want, now_ms);
        let full_at = b.full_at_ms(limit, duration_ms);
        self.save_bucket(bucket, &b, full_at).await?;
        Ok(grant)
    }

    async fn return_tokens(
        &mut self,
        bucket: &str,
        limit: i64,
        duration_ms: i64,
        tokens: i64,
        now_ms: i64,
    ) -> StoreResult<()> {
        // A bucket that is gone is full: nothing to put back.
        if let Some(mut b) = self.bucket_row(bucket).await? {
            b.give_back(limit, duration_ms, tokens, now_ms);
            let full_at = b.full_at_ms(limit, duration_ms);
            self.save_bucket(bucket, &b, full_at).await?;
        }
        Ok(())
    }

    async fn prune_buckets(&mut self, now_ms: i64) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM rate_buckets WHERE full_at_ms < $1")
            .bind(now_ms)
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected())
    }
}
