//! Per-key token buckets: `limit` tokens, refilled evenly over `duration_ms`.
//! Buckets live per node, outside the key cache, so a cache refresh doesn't refill them.

use std::sync::Mutex;

use dashmap::DashMap;
use keyhaven_core::api_key::RateLimit;

/// The outcome of taking a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether a token was available.
    pub allowed: bool,
    /// Whole tokens left.
    pub remaining: i64,
    /// When the bucket is full again (allowed) or the next token arrives (refused), ms.
    pub reset_at_ms: i64,
}

struct Bucket {
    tokens: f64,
    last_ms: i64,
    limit: RateLimit,
}

/// Every key's bucket.
#[derive(Default)]
pub struct RateLimiter {
    buckets: DashMap<String, Mutex<Bucket>>,
}

impl RateLimiter {
    /// Takes one token from the bucket of `key_id` at `now_ms`.
    pub fn take(&self, key_id: &str, limit: RateLimit, now_ms: i64) -> RateDecision {
        let cap = limit.limit as f64;
        let per_ms = cap / limit.duration_ms as f64;
        if let Some(b) = self.buckets.get(key_id) {
            if let Ok(mut b) = b.lock() {
                return step(&mut b, limit, cap, per_ms, now_ms);
            }
        }
        let entry = self.buckets.entry(key_id.to_string()).or_insert_with(|| {
            Mutex::new(Bucket {
                tokens: cap,
                last_ms: now_ms,
                limit,
            })
        });
        let mut b = match entry.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        step(&mut b, limit, cap, per_ms, now_ms)
    }

    /// Forgets every bucket (for tests and key deletion).
    pub fn forget(&self, key_id: &str) {
        self.buckets.remove(key_id);
    }
}

fn step(b: &mut Bucket, limit: RateLimit, cap: f64, per_ms: f64, now_ms: i64) -> RateDecision {
    if b.limit != limit {
        // The limit was edited: start over with a full bucket of the new size.
        b.limit = limit;
        b.tokens = cap;
        b.last_ms = now_ms;
    }
    let elapsed = (now_ms - b.last_ms).max(0) as f64;
    b.tokens = (b.tokens + elapsed * per_ms).min(cap);
    b.last_ms = now_ms;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        let to_full = ((cap - b.tokens) / per_ms).ceil() as i64;
        RateDecision {
            allowed: true,
            remaining: b.tokens.floor() as i64,
            reset_at_ms: now_ms + to_full,
        }
    } else {
        let to_next = ((1.0 - b.tokens) / per_ms).ceil() as i64;
        RateDecision {
            allowed: false,
            remaining: 0,
            reset_at_ms: now_ms + to_next.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_limit_then_refills() {
        let rl = RateLimiter::default();
        let limit = RateLimit {
            limit: 3,
            duration_ms: 3000,
        };
        for left in [2, 1, 0] {
            let d = rl.take("k", limit, 1_000);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
        }
        let d = rl.take("k", limit, 1_000);
        assert!(!d.allowed);
        assert_eq!(d.reset_at_ms, 2_000);
        assert!(rl.take("k", limit, 2_000).allowed);
        assert!(!rl.take("k", limit, 2_000).allowed);
        // Other keys have their own bucket.
        assert!(rl.take("other", limit, 2_000).allowed);
    }
}
