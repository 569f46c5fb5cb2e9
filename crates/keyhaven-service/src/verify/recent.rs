//! The last verifications of each key on this node since its last analytics flush
//! (the key page's "Recent verifications"), kept in memory and written with the usage
//! counts: the verification path never writes to the database for them.
//!
//! Each key keeps at most [`RECENT_PER_KEY`] entries, the newest; the flush writes them
//! and has the store trim each key to as many across nodes, so the table holds the
//! last few verifications of every key whatever node answered them.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;
use keyhaven_core::id::Id;
use keyhaven_core::time::from_millis;
use keyhaven_store::RecentVerification;

use super::cache::{id_bytes, CachedKey};
use super::Code;

/// Verifications kept per key (in memory between flushes, and in the database).
pub const RECENT_PER_KEY: usize = 20;
/// Most keys with recent verifications held between two flushes; past it the
/// verifications of further keys are not kept (counted in [`RecentLog::dropped`]),
/// which bounds the memory at about this many times [`RECENT_PER_KEY`] entries.
pub const MAX_RECENT_KEYS: usize = 20_000;

struct Entry {
    at_ms: i64,
    code: Code,
    ip: Option<IpAddr>,
    tags: Box<[Box<str>]>,
}

struct Ring {
    org: Arc<str>,
    entries: VecDeque<Entry>,
}

fn lock(m: &Mutex<Ring>) -> MutexGuard<'_, Ring> {
    // A panic while holding the lock leaves a ring that is still well formed.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The recent verifications of every key, since the last flush.
#[derive(Default)]
pub struct RecentLog {
    keys: DashMap<[u8; 26], Mutex<Ring>>,
    /// Verifications not kept because [`MAX_RECENT_KEYS`] keys were already waiting.
    pub dropped: AtomicU64,
}

impl RecentLog {
    /// Keeps one verification of `key`, answered `code` at `now_ms` for a client at
    /// `ip` (as the verification judged it), with the request's tags.
    pub fn record(
        &self,
        key: &CachedKey,
        code: Code,
        ip: Option<IpAddr>,
        tags: &[&str],
        now_ms: i64,
    ) {
        let entry = Entry {
            at_ms: now_ms,
            code,
            ip,
            tags: tags.iter().map(|t| Box::<str>::from(*t)).collect(),
        };
        let push = |m: &Mutex<Ring>, e: Entry| {
            let mut r = lock(m);
            if r.entries.len() >= RECENT_PER_KEY {
                r.entries.pop_front();
            }
            r.entries.push_back(e);
        };
        if let Some(m) = self.keys.get(&key.key_id) {
            push(&m, entry);
            return;
        }
        if self.keys.len() >= MAX_RECENT_KEYS {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let m = self.keys.entry(key.key_id).or_insert_with(|| {
            Mutex::new(Ring {
                org: key.org_id.clone(),
                entries: VecDeque::with_capacity(4),
            })
        });
        push(&m, entry);
    }

    /// Takes everything kept so far, oldest first per key.
    pub fn drain(&self) -> Vec<RecentVerification> {
        let mut out = Vec::new();
        for e in self.keys.iter() {
            let key_id = Id::from_trusted(String::from_utf8_lossy(e.key()).into_owned());
            let mut r = lock(e.value());
            let org_id = Id::from_trusted(r.org.to_string());
            for x in std::mem::take(&mut r.entries) {
                out.push(RecentVerification {
                    org_id: org_id.clone(),
                    key_id: key_id.clone(),
                    at: from_millis(x.at_ms),
                    code: x.code.as_str().to_string(),
                    ip: x.ip.map(|i| i.to_string()),
                    tags: x.tags.iter().map(|t| t.to_string()).collect(),
                });
            }
        }
        self.keys.retain(|_, m| !lock(m).entries.is_empty());
        out
    }

    /// Puts drained rows back after a failed flush, before anything kept since, so
    /// the next flush writes them; each key still keeps only its newest
    /// [`RECENT_PER_KEY`].
    pub fn put_back(&self, rows: Vec<RecentVerification>) {
        for r in rows.into_iter().rev() {
            let code = Code::ALL
                .iter()
                .copied()
                .find(|c| c.as_str() == r.code)
                .unwrap_or(Code::Valid);
            let entry = Entry {
                at_ms: r.at.timestamp_millis(),
                code,
                ip: r.ip.as_deref().and_then(|i| i.parse().ok()),
                tags: r.tags.into_iter().map(String::into_boxed_str).collect(),
            };
            let m = self
                .keys
                .entry(id_bytes(r.key_id.as_str()))
                .or_insert_with(|| {
                    Mutex::new(Ring {
                        org: Arc::from(r.org_id.as_str()),
                        entries: VecDeque::new(),
                    })
                });
            let mut ring = lock(&m);
            if ring.entries.len() < RECENT_PER_KEY {
                ring.entries.push_front(entry);
            }
        }
    }

    /// Whether nothing waits to be flushed.
    pub fn is_empty(&self) -> bool {
        self.keys.iter().all(|e| lock(e.value()).entries.is_empty())
    }
}
