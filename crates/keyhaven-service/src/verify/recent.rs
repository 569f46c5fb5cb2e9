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
        self.record_for(key.key_id, &key.org_id, code, ip, tags, now_ms);
    }

    fn record_for(
        &self,
        key_id: [u8; 26],
        org: &Arc<str>,
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
        if let Some(m) = self.keys.get(&key_id) {
            push(&m, entry);
            return;
        }
        if self.keys.len() >= MAX_RECENT_KEYS {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let m = self.keys.entry(key_id).or_insert_with(|| {
            Mutex::new(Ring {
                org: org.clone(),
                entries: VecDeque::with_capacity(4),
            })
        });
        push(&m, entry);
    }

    /// Takes everything kept so far, oldest first per key. A key's ring stays (with its
    /// room) while the key is verified between flushes, and goes once a flush finds it
    /// empty, so idle keys do not hold places under [`MAX_RECENT_KEYS`].
    pub fn drain(&self) -> Vec<RecentVerification> {
        let mut out = Vec::new();
        let mut idle = Vec::new();
        for e in self.keys.iter() {
            let mut r = lock(e.value());
            if r.entries.is_empty() {
                idle.push(*e.key());
                continue;
            }
            let key_id = Id::from_trusted(String::from_utf8_lossy(e.key()).into_owned());
            let org_id = Id::from_trusted(r.org.to_string());
            for x in r.entries.drain(..) {
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
        for k in idle {
            self.keys.remove_if(&k, |_, m| lock(m).entries.is_empty());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> [u8; 26] {
        id_bytes(&format!("01kkey{n:020}"))
    }

    #[test]
    fn keeps_the_newest_per_key_and_puts_back_after_a_failed_flush() {
        let log = RecentLog::default();
        let org: Arc<str> = Arc::from("01korg00000000000000000001");
        let ip: IpAddr = "203.0.113.7".parse().expect("ip");
        for i in 0..30 {
            log.record_for(key(1), &org, Code::Valid, Some(ip), &["path:/a"], i);
        }
        log.record_for(key(2), &org, Code::RateLimited, None, &[], 5);
        assert!(!log.is_empty());
        let rows = log.drain();
        assert!(log.is_empty());
        let of_1 = |rows: &[RecentVerification]| -> Vec<RecentVerification> {
            rows.iter()
                .filter(|r| r.key_id.as_str().ends_with('1'))
                .cloned()
                .collect()
        };
        let k1 = of_1(&rows);
        assert_eq!(k1.len(), RECENT_PER_KEY);
        assert_eq!(k1[0].at.timestamp_millis(), 30 - RECENT_PER_KEY as i64);
        assert_eq!(k1[0].ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(k1[0].tags, vec!["path:/a".to_string()]);
        assert_eq!(rows.len(), RECENT_PER_KEY + 1);

        // A verification after the drain; then the failed flush's rows come back
        // before it, and the key still keeps only its newest.
        log.record_for(key(1), &org, Code::Expired, None, &[], 100);
        log.put_back(rows);
        let again = log.drain();
        let k1 = of_1(&again);
        assert_eq!(k1.len(), RECENT_PER_KEY);
        assert_eq!(k1.last().map(|r| r.code.as_str()), Some("EXPIRED"));
        assert!(again.iter().any(|r| r.code == "RATE_LIMITED"));
    }

    #[test]
    fn stops_taking_new_keys_at_the_bound() {
        let log = RecentLog::default();
        let org: Arc<str> = Arc::from("01korg00000000000000000001");
        for n in 0..MAX_RECENT_KEYS + 3 {
            log.record_for(key(n), &org, Code::Valid, None, &[], 1);
        }
        assert_eq!(log.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(log.drain().len(), MAX_RECENT_KEYS);
        // Still full until a flush finds the rings idle; then new keys fit again.
        log.record_for(key(MAX_RECENT_KEYS + 5), &org, Code::Valid, None, &[], 2);
        assert_eq!(log.dropped.load(Ordering::Relaxed), 4);
        assert!(log.drain().is_empty());
        log.record_for(key(MAX_RECENT_KEYS + 5), &org, Code::Valid, None, &[], 3);
        assert_eq!(log.drain().len(), 1);
    }
}
