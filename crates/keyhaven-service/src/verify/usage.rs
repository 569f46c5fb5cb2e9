//! Verification counts (ANALYTICS.md), kept in memory and flushed in batches: per key,
//! hour and code, plus — for requests with tags, and for verifications without a key
//! asked in an organization's scope — per tag and per organization.
//!
//! Counting a verification of a cached key without tags is an atomic add under a
//! shard's read lock, with no allocation once the key's slot for the hour exists; the
//! flusher swaps the counters out at most every second (and once more on shutdown).
//! Each node counts only its own verifications and adds them to the stored rows, so
//! the totals are exact across nodes.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use keyhaven_core::id::Id;
use keyhaven_store::{Store, VerificationCount};

use super::cache::{CachedKey, Owner};
use super::recent::{RecentLog, RECENT_PER_KEY};
use super::Code;

const HOUR_MS: i64 = 3_600_000;

/// Most rows (tagged or without a key) held between two flushes; past it new ones are
/// dropped (counted in [`UsageCounter::dropped`]) so a flood of requests naming
/// made-up tags or organizations cannot exhaust the memory.
pub const MAX_EXTRA_ROWS: usize = 200_000;

struct KeyCounters {
    by_code: [AtomicI64; 10],
    last_used_ms: AtomicI64,
    owner: Arc<Owner>,
}

impl KeyCounters {
    fn new(owner: Arc<Owner>) -> Self {
        KeyCounters {
            by_code: Default::default(),
            last_used_ms: AtomicI64::new(0),
            owner,
        }
    }

    fn total(&self) -> i64 {
        self.by_code.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// A row other than a key's own count: a tag row, or a count without a key.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ExtraRow {
    org: Arc<str>,
    key: Option<[u8; 26]>,
    hour: i64,
    code: Code,
    tag: Option<Box<str>>,
}

struct ExtraCount {
    n: AtomicI64,
    owner: Option<Box<str>>,
}

/// In-memory verification counters.
#[derive(Default)]
pub struct UsageCounter {
    counts: DashMap<([u8; 26], Arc<str>, i64), KeyCounters>,
    extra: DashMap<ExtraRow, ExtraCount>,
    /// When the last flush succeeded, Unix ms (0 = never).
    pub last_flush_ms: AtomicI64,
    /// Verifications not counted in a tag or organization row because
    /// [`MAX_EXTRA_ROWS`] were already waiting.
    pub dropped: AtomicU64,
    /// The last verifications of each key, written with the counts.
    pub recent: RecentLog,
}

fn code_of(i: usize) -> Code {
    Code::ALL.get(i).copied().unwrap_or(Code::Valid)
}

impl UsageCounter {
    /// Counts one verification of `key` answered `code` at `now_ms`, under each of `tags`.
    pub fn record(&self, key: &CachedKey, code: Code, tags: &[&str], now_ms: i64) {
        let hour = now_ms - now_ms.rem_euclid(HOUR_MS);
        let bump = |c: &KeyCounters| {
            c.by_code[code.index()].fetch_add(1, Ordering::Relaxed);
            c.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
        };
        let k = (key.key_id, key.org_id.clone(), hour);
        match self.counts.get(&k) {
            Some(c) => bump(&c),
            None => bump(
                &self
                    .counts
                    .entry(k)
                    .or_insert_with(|| KeyCounters::new(key.owner.clone())),
            ),
        }
        for tag in tags {
            self.add_extra(
                ExtraRow {
                    org: key.org_id.clone(),
                    key: Some(key.key_id),
                    hour,
                    code,
                    tag: Some((*tag).into()),
                },
                Some(&key.owner.id),
                1,
            );
        }
    }

    /// Counts one verification without a key (`MALFORMED`, `NOT_FOUND`) asked in the
    /// scope of organization `org`, under each of `tags`. The organization is the
    /// caller's word: rows of one that does not exist are dropped when flushed.
    pub fn record_keyless(&self, org: &str, code: Code, tags: &[&str], now_ms: i64) {
        let hour = now_ms - now_ms.rem_euclid(HOUR_MS);
        let org: Arc<str> = Arc::from(org);
        let row = |tag: Option<Box<str>>| ExtraRow {
            org: org.clone(),
            key: None,
            hour,
            code,
            tag,
        };
        self.add_extra(row(None), None, 1);
        for tag in tags {
            self.add_extra(row(Some((*tag).into())), None, 1);
        }
    }

    fn add_extra(&self, row: ExtraRow, owner: Option<&str>, n: i64) {
        if let Some(c) = self.extra.get(&row) {
            c.n.fetch_add(n, Ordering::Relaxed);
            return;
        }
        if self.extra.len() >= MAX_EXTRA_ROWS {
            self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            return;
        }
        self.extra
            .entry(row)
            .or_insert_with(|| ExtraCount {
                n: AtomicI64::new(0),
                owner: owner.map(Into::into),
            })
            .n
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Takes everything counted so far (resetting the counters) as rows to store and
    /// the latest use per key.
    fn drain(&self) -> (Vec<VerificationCount>, Vec<(Id, i64)>) {
        let mut rows = Vec::new();
        let mut touched: Vec<(Id, i64)> = Vec::new();
        let mut empty = Vec::new();
        for e in self.counts.iter() {
            let (key_id, org_id, hour) = e.key();
            let key_id = std::str::from_utf8(key_id).unwrap_or_default();
            let mut any = false;
            for (i, c) in e.by_code.iter().enumerate() {
                let n = c.swap(0, Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                any = true;
                rows.push(VerificationCount {
                    org_id: Id::from_trusted(org_id.to_string()),
                    hour: *hour,
                    key_id: Some(Id::from_trusted(key_id.to_string())),
                    owner_id: Some(e.owner.id.to_string()),
                    code: code_of(i).as_str().to_string(),
                    tag: None,
                    count: n,
                });
            }
            let last = e.last_used_ms.swap(0, Ordering::Relaxed);
            if !any {
                empty.push(e.key().clone());
                continue;
            }
            // Every verification of a found key is a use (PRODUCT.md: "updates last_used_at").
            if last > 0 {
                touched.push((Id::from_trusted(key_id.to_string()), last));
            }
        }
        for k in empty {
            self.counts.remove_if(&k, |_, c| c.total() == 0);
        }
        let mut empty = Vec::new();
        for e in self.extra.iter() {
            let n = e.n.swap(0, Ordering::Relaxed);
            if n == 0 {
                empty.push(e.key().clone());
                continue;
            }
            let r = e.key();
            rows.push(VerificationCount {
                org_id: Id::from_trusted(r.org.to_string()),
                hour: r.hour,
                key_id: r
                    .key
                    .map(|k| Id::from_trusted(std::str::from_utf8(&k).unwrap_or_default().into())),
                owner_id: e.owner.as_deref().map(str::to_string),
                code: r.code.as_str().to_string(),
                tag: r.tag.as_deref().map(str::to_string),
                count: n,
            });
        }
        for k in empty {
            self.extra
                .remove_if(&k, |_, c| c.n.load(Ordering::Relaxed) == 0);
        }
        (rows, touched)
    }

    /// Writes the counts, and the recent verifications of each key, to the store in
    /// one transaction. On failure the counts are
    /// put back, so nothing is lost; they go out with the next flush.
    pub async fn flush(&self, store: &Arc<dyn Store>) -> Result<usize, keyhaven_store::StoreError> {
        let (mut rows, touched) = self.drain();
        let recent = self.recent.drain();
        if rows.is_empty() && recent.is_empty() {
            self.mark_flushed();
            return Ok(0);
        }
        let result = async {
            let mut tx = store.begin().await?;
            // Counts without a key name the organization the caller gave: keep those
            // of organizations that exist.
            let mut orgs: Vec<&str> = rows
                .iter()
                .filter(|r| r.key_id.is_none())
                .map(|r| r.org_id.as_str())
                .collect();
            orgs.sort_unstable();
            orgs.dedup();
            let mut unknown = Vec::new();
            for o in orgs {
                let id = Id::from_trusted(o.to_string());
                if tx.organization(&id).await?.is_none() {
                    unknown.push(id);
                }
            }
            let keep: Vec<&VerificationCount> = rows
                .iter()
                .filter(|r| r.key_id.is_some() || !unknown.contains(&r.org_id))
                .collect();
            let keep: Vec<VerificationCount> = keep.into_iter().cloned().collect();
            tx.add_verifications(&keep).await?;
            if !recent.is_empty() {
                tx.add_recent_verifications(&recent).await?;
            }
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
                if !recent.is_empty() {
                    trim_recent(store, &recent).await;
                }
                Ok(rows.len())
            }
            Err(e) => {
                for r in rows.drain(..) {
                    self.put_back(r);
                }
                self.recent.put_back(recent);
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

    /// Adds a drained row back (after a failed flush), as an extra row: the next drain
    /// sends it with the rest, and the store sums rows that meet.
    fn put_back(&self, r: VerificationCount) {
        let code = Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == r.code)
            .unwrap_or(Code::Valid);
        let row = ExtraRow {
            org: Arc::from(r.org_id.as_str()),
            key: r
                .key_id
                .as_ref()
                .map(|k| super::cache::id_bytes(k.as_str())),
            hour: r.hour,
            code,
            tag: r.tag.map(String::into_boxed_str),
        };
        // Not capped: these were counted already.
        self.extra
            .entry(row)
            .or_insert_with(|| ExtraCount {
                n: AtomicI64::new(0),
                owner: r.owner_id.map(String::into_boxed_str),
            })
            .n
            .fetch_add(r.count, Ordering::Relaxed);
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
        self.counts.iter().all(|e| e.total() == 0)
            && self.extra.iter().all(|e| e.n.load(Ordering::Relaxed) == 0)
            && self.recent.is_empty()
    }
}

/// Trims each key just written to its newest [`RECENT_PER_KEY`] rows, in a transaction
/// of its own after the flush's: a failure (two nodes trimming one key at once may
/// deadlock on PostgreSQL) costs nothing but a few extra rows until that key's next
/// flush, which readers never see past their limit, and never the counts.
async fn trim_recent(store: &Arc<dyn Store>, rows: &[keyhaven_store::RecentVerification]) {
    let mut keys: Vec<Id> = rows.iter().map(|r| r.key_id.clone()).collect();
    keys.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    keys.dedup();
    let result = async {
        let mut tx = store.begin().await?;
        tx.trim_recent_verifications(&keys, RECENT_PER_KEY as i64)
            .await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot trim the recent verifications; trying with the next flush");
    }
}
