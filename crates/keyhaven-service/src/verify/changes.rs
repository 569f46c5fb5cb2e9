//! Keeping every node's cache current.
//!
//! Changes that affect verification are written to the store's change log in the same
//! transaction as the change. The node that made the change applies it to its own cache
//! right after commit; every node also reads the log's recent rows once a second (and
//! at once when PostgreSQL's `NOTIFY` says something changed), so a change made on
//! another node — or by the CLI — is seen within a second, and a dropped notification
//! connection can't leave a node stale.
//!
//! The follower also keeps the index of existing key digests ([`super::index`]): it
//! loads every digest after its first read of the log, and adds the digests of every
//! key the log names.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keyhaven_core::time::Clock;
use keyhaven_store::{ChangeKind, Store, StoreError};
use tokio::sync::Notify;

use super::Verifier;

/// How far back each poll looks (rows are applied once, by sequence number).
const WINDOW_MS: i64 = 15_000;
/// How often the log is read without a notification.
const POLL: Duration = Duration::from_secs(1);

/// Follows the change log until the task is dropped.
pub async fn follow(
    verifier: Arc<Verifier>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
) {
    let mut seen: HashMap<i64, i64> = HashMap::new();
    // The highest sequence number applied: rows above it are new whatever their time
    // says (a writer's clock may be behind ours). Rows below it that commit late are
    // caught by the time window. The first read returns the whole (pruned) log, which
    // an empty cache shrugs off.
    let mut max_seq = 0;
    let mut last_ok = clock.now().timestamp_millis();
    let mut polls: u64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {},
            _ = wake.notified() => {},
        }
        let now = clock.now().timestamp_millis();
        let since = keyhaven_core::time::from_millis(last_ok.min(now) - WINDOW_MS);
        let result = async {
            let mut tx = store.read().await?;
            let changes = tx.changes_since(since, max_seq).await?;
            // The digests of the keys that changed (a new key, a new secret), for the
            // index of existing digests; read before the cache drops the old records.
            let keys: Vec<String> = changes
                .iter()
                .filter(|c| c.kind == ChangeKind::Key && !seen.contains_key(&c.seq))
                .map(|c| c.ref_id.clone())
                .collect();
            let digests = if keys.is_empty() {
                Vec::new()
            } else {
                tx.api_key_digests_of(&keys).await?
            };
            Ok::<_, StoreError>((changes, digests))
        }
        .await;
        match result {
            Ok((changes, digests)) => {
                if now - last_ok > WINDOW_MS - 2_000 {
                    // We were cut off for longer than the window: start over.
                    tracing::warn!("lost track of changes for a while; clearing the key cache");
                    verifier.cache.clear();
                    verifier.index.mark_incomplete();
                }
                for k in &digests {
                    verifier.index_digests(k);
                }
                if let Some(top) = changes.iter().map(|c| c.seq).max() {
                    max_seq = max_seq.max(top);
                }
                let fresh: Vec<_> = changes
                    .into_iter()
                    .filter(|c| seen.insert(c.seq, now).is_none())
                    .map(|c| (c.kind, c.ref_id))
                    .collect();
                verifier.apply(&fresh);
                seen.retain(|_, at| now - *at < 2 * WINDOW_MS);
                last_ok = now;
                // After this read: what changed from now on is in the next one.
                if !verifier.index.is_loaded() {
                    if let Err(e) = verifier.load_index(&store).await {
                        tracing::warn!(error = %e, "cannot load the index of key digests");
                    }
                }
                if verifier.index.is_loaded() {
                    verifier.index.log_read();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the change log"),
        }
        polls += 1;
        if polls.is_multiple_of(600) {
            let prune = async {
                let mut tx = store.begin().await?;
                tx.prune_changes(keyhaven_core::time::from_millis(now - 3_600_000))
                    .await?;
                tx.commit().await
            }
            .await;
            if let Err(e) = prune {
                tracing::warn!(error = %e, "cannot prune the change log");
            }
        }
    }
}
