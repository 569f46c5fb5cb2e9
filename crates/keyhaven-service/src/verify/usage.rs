//! Verification counts per key per hour, kept in memory and flushed in batches.
//! Counting on the hot path is an atomic add under a shard's read lock; the flusher
//! swaps the counters out at most every second (and once more on shutdown).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use keyhaven_core::id::Id;
use keyhaven_store::{Store, UsageCount};

const HOUR_MS: i64 = 3_600_000;

#[derive(Default)]
struct Counters {
    valid: AtomicI64,
    invalid: AtomicI64,
    last_used_ms: AtomicI64,
}

/// In-memory usage counters.
#[derive(Default)]
pub struct UsageCounter {
    counts: DashMap<([u8; 26], Arc<str>, i64), Counters>,
    /// When the last flush succeeded, Unix ms (0 = never).
    pub last_flush_ms: AtomicI64,
}

impl UsageCounter {
    /// Counts one verification of `key_id` (of `org_id`) at `now_ms`.
    pub fn record(&self, key_id: &[u8; 26], org_id: &Arc<str>, valid: bool, now_ms: i64) {
        let hour = now_ms - now_ms.rem_euclid(HOUR_MS);
        let bump = |c: &Counters| {
            if valid {
                c.valid.fetch_add(1, Ordering::Relaxed);
            } else {
                c.invalid.fetch_add(1, Ordering::Relaxed);
            }
            c.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
        };
        let k = (*key_id, org_id.clone(), hour);
        if let Some(c) = self.counts.get(&k) {
            bump(&c);
            return;
        }
        bump(&self.counts.entry(k).or_default());
    }

    /// Takes everything counted so far (resetting the counters) as rows to store and
    /// the latest use per key.
    fn drain(&self) -> (Vec<UsageCount>, Vec<(Id, i64)>) {
        let mut rows = Vec::new();
        let mut touched: Vec<(Id, i64)> = Vec::new();
        let mut empty = Vec::new();
        for e in self.counts.iter() {
            let (key_id, org_id, hour) = e.key();
            let valid = e.valid.swap(0, Ordering::Relaxed);
            let invalid = e.invalid.swap(0, Ordering::Relaxed);
            let last = e.last_used_ms.swap(0, Ordering::Relaxed);
            if valid == 0 && invalid == 0 {
                empty.push(e.key().clone());
                continue;
            }
            let key_id = std::str::from_utf8(key_id).unwrap_or_default();
            rows.push(UsageCount {
                key_id: Id::from_trusted(key_id.to_string()),
                org_id: Id::from_trusted(org_id.to_string()),
                hour: *hour,
                valid,
                invalid,
            });
            // Every verification of a found key is a use (PRODUCT.md: "updates last_used_at").
            if last > 0 {
                touched.push((Id::from_trusted(key_id.to_string()), last));
            }
        }
        for k in empty {
            self.counts.remove_if(&k, |_, c| {
                c.valid.load(Ordering::Relaxed) == 0 && c.invalid.load(Ordering::Relaxed) == 0
            });
        }
        (rows, touched)
    }

    /// Writes the counts to the store in one transaction. On failure the counts are
    /// put back, so nothing is lost; they go out with the next flush.
    pub async fn flush(&self, store: &Arc<dyn Store>) -> Result<usize, keyhaven_store::StoreError> {
        let (rows, touched) = self.drain();
        if rows.is_empty() {
            self.mark_flushed();
            return Ok(0);
        }
        let result = async {
            let mut tx = store.begin().await?;
            tx.add_usage(&rows).await?;
            for (id, ms) in &touched {
                tx.touch_key(id, keyhaven_core::time::from_millis(*ms))
                    .await?;
            }
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) => {
                self.mark_flushed();
                Ok(rows.len())
            }
            Err(e) => {
                for r in &rows {
                    let c = self
                        .counts
                        .entry((
                            super::cache::id_bytes(r.key_id.as_str()),
                            Arc::from(r.org_id.as_str()),
                            r.hour,
                        ))
                        .or_default();
                    c.valid.fetch_add(r.valid, Ordering::Relaxed);
                    c.invalid.fetch_add(r.invalid, Ordering::Relaxed);
                }
                for (id, ms) in &touched {
                    let idb = super::cache::id_bytes(id.as_str());
                    if let Some(c) = self.counts.iter().find(|e| e.key().0 == idb) {
                        c.last_used_ms.fetch_max(*ms, Ordering::Relaxed);
                    }
                }
                Err(e)
            }
        }
    }

    fn mark_flushed(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.last_flush_ms.store(now, Ordering::Relaxed);
    }

    /// Whether nothing waits to be flushed.
    pub fn is_empty(&self) -> bool {
        self.counts
            .iter()
            .all(|e| e.valid.load(Ordering::Relaxed) == 0 && e.invalid.load(Ordering::Relaxed) == 0)
    }
}
