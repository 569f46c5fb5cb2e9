//! The database counter engine (PostgreSQL, several nodes): buckets in `rate_buckets`,
//! balances in `api_keys.remaining`, each lease one short transaction that locks its
//! row. Nodes lease in batches, so most verifications never reach it.

use std::sync::Arc;

use async_trait::async_trait;
use keyhaven_core::usage_control::{CreditOp, Grant};
use keyhaven_store::{CreditChange, CreditLease, Store};

use super::{BucketSpec, CounterEngine, CreditKey, EngineError};

/// Counters in the database.
pub struct DatabaseEngine {
    store: Arc<dyn Store>,
}

impl DatabaseEngine {
    /// An engine on `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        DatabaseEngine { store }
    }
}

#[async_trait]
impl CounterEngine for DatabaseEngine {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn batches(&self) -> bool {
        true
    }

    async fn lease_tokens(
        &self,
        b: &BucketSpec,
        cost: i64,
        want: i64,
        now_ms: i64,
    ) -> Result<Grant, EngineError> {
        let mut tx = self.store.begin().await?;
        let g = tx
            .lease_tokens(&b.id, b.limit, b.duration_ms, cost, want, now_ms)
            .await?;
        tx.commit().await?;
        Ok(g)
    }

    async fn return_tokens(
        &self,
        b: &BucketSpec,
        tokens: i64,
        now_ms: i64,
    ) -> Result<(), EngineError> {
        let mut tx = self.store.begin().await?;
        tx.return_tokens(&b.id, b.limit, b.duration_ms, tokens, now_ms)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn lease_credits(
        &self,
        key: CreditKey<'_>,
        cost: i64,
        want: i64,
    ) -> Result<Option<CreditLease>, EngineError> {
        let mut tx = self.store.begin().await?;
        let lease = tx.lease_credits(key.key_id, cost, want).await?;
        tx.commit().await?;
        Ok(lease)
    }

    async fn return_credits(
        &self,
        key_id: &str,
        epoch: i64,
        credits: i64,
    ) -> Result<(), EngineError> {
        let mut tx = self.store.begin().await?;
        tx.return_credits(key_id, epoch, credits).await?;
        tx.commit().await?;
        Ok(())
    }

    fn credits_adjusted(&self, _: &str, change: CreditChange, _: CreditOp, _: i64) -> i64 {
        change.after
    }

    async fn flush(&self) -> Result<(), EngineError> {
        Ok(())
    }

    async fn prune(&self, now_ms: i64) -> Result<(), EngineError> {
        let mut tx = self.store.begin().await?;
        tx.prune_buckets(now_ms).await?;
        tx.commit().await?;
        Ok(())
    }
}
