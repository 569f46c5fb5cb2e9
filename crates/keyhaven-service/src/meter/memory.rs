//! The in-process counter engine (SQLite: one node). Buckets live only in memory (a
//! restart starts them full); balances start from the database and are written behind:
//! what was spent goes to the database at least every second and on a graceful stop.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dashmap::DashMap;
use keyhaven_core::usage_control::{lease_size, Bucket, CreditOp, Grant};
use keyhaven_store::{CreditChange, CreditLease, Store};

use super::{lock, BucketSpec, CounterEngine, CreditKey, EngineError};

struct Balance {
    epoch: i64,
    remaining: i64,
    /// Spent and not yet written.
    unwritten: i64,
    low_threshold: Option<i64>,
}

/// Counters in this process.
pub struct MemoryEngine {
    store: Arc<dyn Store>,
    buckets: DashMap<Box<str>, Mutex<(Bucket, i64, i64)>>,
    balances: DashMap<Box<str>, Mutex<Balance>>,
    /// Serializes the write-behind.
    flushing: tokio::sync::Mutex<()>,
}

impl MemoryEngine {
    /// An engine writing balances behind to `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        MemoryEngine {
            store,
            buckets: DashMap::new(),
            balances: DashMap::new(),
            flushing: tokio::sync::Mutex::new(()),
        }
    }
}

#[async_trait]
impl CounterEngine for MemoryEngine {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn batches(&self) -> bool {
        false
    }

    async fn lease_tokens(
        &self,
        b: &BucketSpec,
        cost: i64,
        want: i64,
        now_ms: i64,
    ) -> Result<Grant, EngineError> {
        let entry = match self.buckets.get(&b.id) {
            Some(e) => e,
            None => self
                .buckets
                .entry(b.id.clone())
                .or_insert_with(|| {
                    Mutex::new((Bucket::full(b.limit, now_ms), b.limit, b.duration_ms))
                })
                .downgrade(),
        };
        let mut e = lock(&entry);
        Ok(e.0.lease(b.limit, b.duration_ms, cost, want, now_ms))
    }

    async fn return_tokens(
        &self,
        b: &BucketSpec,
        tokens: i64,
        now_ms: i64,
    ) -> Result<(), EngineError> {
        if let Some(e) = self.buckets.get(&b.id) {
            lock(&e).0.give_back(b.limit, b.duration_ms, tokens, now_ms);
        }
        Ok(())
    }

    async fn lease_credits(
        &self,
        key: CreditKey<'_>,
        cost: i64,
        want: i64,
    ) -> Result<Option<CreditLease>, EngineError> {
        let entry = match self.balances.get(key.key_id) {
            Some(e) => e,
            None => self
                .balances
                .entry(key.key_id.into())
                .or_insert_with(|| {
                    Mutex::new(Balance {
                        epoch: key.epoch,
                        remaining: key.stored,
                        unwritten: 0,
                        low_threshold: key.low_threshold,
                    })
                })
                .downgrade(),
        };
        let mut b = lock(&entry);
        if key.epoch > b.epoch {
            // Replaced in the database (set, refill): start from there.
            *b = Balance {
                epoch: key.epoch,
                remaining: key.stored,
                unwritten: 0,
                low_threshold: key.low_threshold,
            };
        }
        b.low_threshold = key.low_threshold;
        let granted = lease_size(b.remaining, cost, want);
        b.remaining -= granted;
        b.unwritten += granted;
        Ok(Some(CreditLease {
            granted,
            remaining: b.remaining,
            epoch: b.epoch,
            low_threshold: b.low_threshold,
        }))
    }

    async fn return_credits(
        &self,
        key_id: &str,
        epoch: i64,
        credits: i64,
    ) -> Result<(), EngineError> {
        if let Some(e) = self.balances.get(key_id) {
            let mut b = lock(&e);
            if b.epoch == epoch {
                b.remaining += credits;
                b.unwritten -= credits;
            }
        }
        Ok(())
    }

    fn credits_adjusted(
        &self,
        key_id: &str,
        change: CreditChange,
        op: CreditOp,
        value: i64,
    ) -> i64 {
        let Some(e) = self.balances.get(key_id) else {
            return change.after;
        };
        let mut b = lock(&e);
        if change.epoch > b.epoch {
            *b = Balance {
                epoch: change.epoch,
                remaining: change.after,
                unwritten: 0,
                low_threshold: b.low_threshold,
            };
        } else {
            // The database saw the same operation on a balance missing what is not
            // written yet; that is still to be taken from it.
            b.remaining = op.apply(b.remaining, value);
        }
        b.remaining
    }

    fn live_balance(&self, key_id: &str, epoch: i64) -> Option<i64> {
        let e = self.balances.get(key_id)?;
        let b = lock(&e);
        (b.epoch == epoch).then_some(b.remaining)
    }

    async fn flush(&self) -> Result<(), EngineError> {
        let _one = self.flushing.lock().await;
        let mut spent = Vec::new();
        for e in self.balances.iter() {
            let mut b = lock(e.value());
            if b.unwritten != 0 {
                spent.push((
                    e.key().to_string(),
                    b.epoch,
                    std::mem::take(&mut b.unwritten),
                ));
            }
        }
        if spent.is_empty() {
            return Ok(());
        }
        let result = async {
            let mut tx = self.store.begin().await?;
            for (id, epoch, n) in &spent {
                if *n > 0 {
                    tx.spend_credits(id, *epoch, *n).await?;
                } else {
                    tx.return_credits(id, *epoch, -*n).await?;
                }
            }
            tx.commit().await
        }
        .await;
        if let Err(e) = result {
            // Nothing is lost: the amounts go out with the next flush.
            for (id, epoch, n) in spent {
                if let Some(e) = self.balances.get(id.as_str()) {
                    let mut b = lock(&e);
                    if b.epoch == epoch {
                        b.unwritten += n;
                    }
                }
            }
            return Err(e.into());
        }
        Ok(())
    }

    async fn prune(&self, now_ms: i64) -> Result<(), EngineError> {
        self.buckets.retain(|_, e| {
            let e = lock(e);
            e.0.full_at_ms(e.1, e.2) > now_ms
        });
        Ok(())
    }
}
