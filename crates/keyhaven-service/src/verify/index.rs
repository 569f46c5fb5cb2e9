//! Which key digests exist: a set of 4-byte digest prefixes for every key in the
//! database (current and previous secrets), so a well-formed key that matches no key —
//! anyone can compute a valid checksum — is `NOT_FOUND` without a database transaction.
//!
//! The index answers only "maybe" (the prefix is there: look the key up) or "no". A
//! prefix shared by two digests, or one left behind by a deleted key, only costs a
//! lookup; with a million keys about one forged key in 4,000 is looked up.
//!
//! It is kept current through the change log ([`super::changes::follow`]): the follower
//! loads every digest once, then adds the digests of every key the log says changed.
//! The node that creates or regenerates a key adds its digest before committing. Until
//! the follower has loaded it — on a node that runs no follower, or while the follower
//! cannot read the log — the index answers "maybe" to everything, as if it were not
//! there.
//!
//! A key created on another node is in the index once this node has read the change log
//! (at once on PostgreSQL, which notifies; within a second otherwise). So that it also
//! works on this node at once, a digest missing from the index is still looked up in
//! the database a few times ([`CONFIRMATIONS_PER_READ`]) between two reads of the log;
//! past that, until the next read, it is `NOT_FOUND` from memory.
//!
//! A lookup is a read of one shard of a sharded set: no global lock. The verification
//! hot path consults it only on a cache miss.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use dashmap::DashSet;
use keyhaven_core::key_format::KeyDigest;

/// Digests missing from the index that are still looked up in the database between
/// two reads of the change log (for keys just created on another node).
pub const CONFIRMATIONS_PER_READ: i64 = 8;
/// The index is trusted only while the change log was read this recently (a follower
/// cut off for longer than its window starts over anyway: it reloads the index).
pub const MAX_STALENESS: Duration = Duration::from_secs(60);

/// A hasher for values that are already uniformly random (digest prefixes): one
/// multiplication spreads them over the hash's high bits too.
#[derive(Default)]
pub struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn monotonic_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

/// The index of existing key digests (see the module docs).
pub struct DigestIndex {
    prefixes: DashSet<u32, BuildHasherDefault<PrefixHasher>>,
    /// Every digest in the database was added (by the follower).
    ready: AtomicBool,
    /// When the follower last read the change log (monotonic ms, 0 = never).
    read_at_ms: AtomicU64,
    /// Confirmations left until the next read of the change log.
    confirmations: AtomicI64,
}

impl Default for DigestIndex {
    fn default() -> Self {
        DigestIndex {
            prefixes: DashSet::with_hasher(BuildHasherDefault::default()),
            ready: AtomicBool::new(false),
            read_at_ms: AtomicU64::new(0),
            confirmations: AtomicI64::new(0),
        }
    }
}

fn prefix(d: &KeyDigest) -> u32 {
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

impl DigestIndex {
    /// Adds a digest.
    pub fn insert(&self, d: &KeyDigest) {
        self.prefixes.insert(prefix(d));
    }

    /// Adds a digest in its stored (hex) form; ignores text that is not one.
    pub fn insert_hex(&self, hex_digest: &str) {
        let mut d = [0u8; 4];
        if let Some(head) = hex_digest.get(..8) {
            if hex::decode_to_slice(head, &mut d).is_ok() {
                self.prefixes.insert(u32::from_le_bytes(d));
            }
        }
    }

    /// Whether the digest may belong to a key (false positives possible).
    pub fn contains(&self, d: &KeyDigest) -> bool {
        self.prefixes.contains(&prefix(d))
    }

    /// Whether the index answers for the database now: loaded, and the change log
    /// read recently.
    pub fn is_current(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && monotonic_ms().saturating_sub(self.read_at_ms.load(Ordering::Acquire))
                <= MAX_STALENESS.as_millis() as u64
    }

    /// Whether a digest must be looked up in the database: the index is not current,
    /// the digest is in it, or it is missing but one of the confirmations left until the
    /// next read of the change log is spent on it. `false` means `NOT_FOUND`.
    pub fn must_look_up(&self, d: &KeyDigest) -> bool {
        if !self.is_current() || self.contains(d) {
            return true;
        }
        self.confirmations.fetch_sub(1, Ordering::AcqRel) > 0
    }

    /// The follower read the change log (and added what it found): trust the index for
    /// a while, and allow a few confirmations again.
    pub fn log_read(&self) {
        self.read_at_ms.store(monotonic_ms(), Ordering::Release);
        self.confirmations
            .store(CONFIRMATIONS_PER_READ, Ordering::Release);
    }

    /// Every digest in the database was added.
    pub fn mark_loaded(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Forgets that the index was complete (the follower lost track of changes); it
    /// answers "maybe" until loaded again. Nothing is removed: an extra prefix only
    /// costs a lookup.
    pub fn mark_incomplete(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// Whether the index was loaded.
    pub fn is_loaded(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Number of prefixes held.
    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    /// Whether no prefix is held.
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_maybe_until_loaded_then_no_for_missing_digests() {
        let index = DigestIndex::default();
        let known = [7u8; 32];
        let forged = [9u8; 32];
        index.insert(&known);
        // Not loaded: everything is looked up.
        assert!(index.must_look_up(&forged));
        index.mark_loaded();
        index.log_read();
        assert!(index.must_look_up(&known));
        // A few confirmations, then no more until the next read of the log.
        for _ in 0..CONFIRMATIONS_PER_READ {
            assert!(index.must_look_up(&forged));
        }
        assert!(!index.must_look_up(&forged));
        assert!(!index.must_look_up(&[10u8; 32]));
        index.log_read();
        assert!(index.must_look_up(&forged));
        index.mark_incomplete();
        assert!(index.must_look_up(&[11u8; 32]));
    }

    #[test]
    fn hex_digests_match_their_bytes() {
        let index = DigestIndex::default();
        let d = [0xab; 32];
        index.insert_hex(&hex::encode(d));
        assert!(index.contains(&d));
        index.insert_hex("not hex at all");
        assert_eq!(index.len(), 1);
    }
}
