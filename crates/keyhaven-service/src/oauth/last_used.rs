//! `last_used_at` of credentials, batched like key usage: the token endpoint notes the
//! latest use per credential in memory; a background task writes them at most every
//! second, and once more on shutdown. Issuing a token adds no database write.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;
use keyhaven_store::{Store, StoreError};

/// The latest use per credential since the last flush.
#[derive(Default)]
pub struct LastUsed {
    pending: Mutex<HashMap<Id, Timestamp>>,
}

impl LastUsed {
    /// Notes that credential `id` was used at `at`.
    pub fn record(&self, id: &Id, at: Timestamp) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        match pending.get_mut(id) {
            Some(t) if *t >= at => {}
            Some(t) => *t = at,
            None => {
                pending.insert(id.clone(), at);
            }
        }
    }

    fn take(&self) -> HashMap<Id, Timestamp> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn put_back(&self, uses: Vec<(Id, Timestamp)>) {
        for (id, at) in uses {
            self.record(&id, at);
        }
    }

    /// Whether nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Writes the noted uses in one transaction; returns how many credentials. On
    /// failure they are kept for the next flush.
    pub async fn flush(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let uses: Vec<(Id, Timestamp)> = self.take().into_iter().collect();
        if uses.is_empty() {
            return Ok(0);
        }
        let result = async {
            let mut tx = store.begin().await?;
            tx.touch_credentials(&uses).await?;
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) => Ok(uses.len()),
            Err(e) => {
                self.put_back(uses);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyhaven_core::time::from_millis;

    #[test]
    fn keeps_the_latest_use() {
        let l = LastUsed::default();
        let a = Id::from_trusted("a".into());
        l.record(&a, from_millis(5));
        l.record(&a, from_millis(3));
        l.record(&a, from_millis(9));
        l.record(&Id::from_trusted("b".into()), from_millis(1));
        let taken = l.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[&a], from_millis(9));
        assert!(l.is_empty());
        l.put_back(vec![(a.clone(), from_millis(4))]);
        l.record(&a, from_millis(2));
        assert_eq!(l.take()[&a], from_millis(4));
    }
}
