//! Usage control (USAGE-CONTROL.md): named rate limits and credit balances, parsed into
//! values that can only hold what the contract allows.
//!
//! A [`NamedLimit`] is a token bucket: `limit` tokens, refilled evenly over
//! `duration_ms`. A key carries up to [`MAX_LIMITS`] of them (the old single `ratelimit`
//! is the one named [`DEFAULT_LIMIT`]); a service account's are shared by all its keys.
//! [`Credits`] is a balance spent by a verification's `cost`, optionally set back to an
//! amount every day or month ([`Refill`]).

use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::api_key::RateLimit;
use crate::error::DomainError;
use crate::time::Timestamp;

/// The name the old single `ratelimit` field stands for.
pub const DEFAULT_LIMIT: &str = "default";
/// Most named limits on one key or service account.
pub const MAX_LIMITS: usize = 10;
/// Largest `limit`.
pub const MAX_LIMIT: i64 = 1_000_000_000;
/// Shortest window: one second.
pub const MIN_DURATION_MS: i64 = 1_000;
/// Longest window: thirty days.
pub const MAX_DURATION_MS: i64 = 30 * 24 * 3_600_000;
/// Largest credit balance.
pub const MAX_CREDITS: i64 = 1_000_000_000_000;
/// Largest `cost` of one verification or `/v1/ratelimit` call.
pub const MAX_COST: i64 = 1_000_000;
/// The pattern a limit name matches.
pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_.:-]{0,63}$";

/// One named token bucket on a key or service account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedLimit {
    /// Unique per key (or service account); matches [`NAME_PATTERN`].
    pub name: String,
    /// Tokens in a full bucket, 1..=[`MAX_LIMIT`].
    pub limit: i64,
    /// Time to refill an empty bucket, [`MIN_DURATION_MS`]..=[`MAX_DURATION_MS`].
    pub duration_ms: i64,
    /// Applied to every verification (true), or only when the request names it.
    pub auto_apply: bool,
}

impl NamedLimit {
    /// The limit the old `ratelimit: {limit, duration_ms}` means.
    pub fn default_from(rl: RateLimit) -> Self {
        NamedLimit {
            name: DEFAULT_LIMIT.to_string(),
            limit: rl.limit,
            duration_ms: rl.duration_ms,
            auto_apply: true,
        }
    }

    /// The `{limit, duration_ms}` pair.
    pub fn rate(&self) -> RateLimit {
        RateLimit {
            limit: self.limit,
            duration_ms: self.duration_ms,
        }
    }
}

/// Whether `name` is a valid limit name.
pub fn is_limit_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b[1..].iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b':' | b'-')
        })
}

fn invalid(param: &str, message: String) -> DomainError {
    DomainError::invalid("invalid_ratelimit", param, message)
}

/// Checks a window: `limit` tokens over `duration_ms`; `param` names the field.
pub fn validate_window(limit: i64, duration_ms: i64, param: &str) -> Result<(), DomainError> {
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid(
            &format!("{param}.limit"),
            format!("{param}.limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    if !(MIN_DURATION_MS..=MAX_DURATION_MS).contains(&duration_ms) {
        return Err(invalid(
            &format!("{param}.duration_ms"),
            format!(
                "{param}.duration_ms must be between {MIN_DURATION_MS} (1 second) and \
                 {MAX_DURATION_MS} (30 days)"
            ),
        ));
    }
    Ok(())
}

/// Checks a list of named limits (at most [`MAX_LIMITS`], valid names, unique, valid
/// windows); `param` names the field (`ratelimits`).
pub fn validate_limits(limits: &[NamedLimit], param: &str) -> Result<(), DomainError> {
    if limits.len() > MAX_LIMITS {
        return Err(invalid(
            param,
            format!("{param} may hold at most {MAX_LIMITS} limits"),
        ));
    }
    for (i, l) in limits.iter().enumerate() {
        let at = format!("{param}[{i}]");
        if !is_limit_name(&l.name) {
            return Err(invalid(
                &format!("{at}.name"),
                format!("{at}.name must match {NAME_PATTERN}"),
            ));
        }
        if limits[..i].iter().any(|o| o.name == l.name) {
            return Err(invalid(
                &format!("{at}.name"),
                format!("{at}.name {:?} is used twice", l.name),
            ));
        }
        validate_window(l.limit, l.duration_ms, &at)?;
    }
    Ok(())
}

/// The limits a key is given from the old `ratelimit` and the new `ratelimits` fields:
/// `ratelimit` is the limit named `default` (it replaces one of that name in
/// `ratelimits`). `None` for both means no limits.
pub fn merge_default(
    ratelimit: Option<RateLimit>,
    ratelimits: Option<Vec<NamedLimit>>,
) -> Vec<NamedLimit> {
    let mut out = ratelimits.unwrap_or_default();
    if let Some(rl) = ratelimit {
        out.retain(|l| l.name != DEFAULT_LIMIT);
        out.insert(0, NamedLimit::default_from(rl));
    }
    out
}

/// The limit named `default`, if any.
pub fn default_limit(limits: &[NamedLimit]) -> Option<&NamedLimit> {
    limits.iter().find(|l| l.name == DEFAULT_LIMIT)
}

/// How often a balance is set back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefillInterval {
    /// At 00:00 UTC every day.
    Daily,
    /// At 00:00 UTC on `day_of_month` (the last day in shorter months).
    Monthly,
}

/// A balance refill: the balance is set to `amount` on schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refill {
    /// Daily or monthly.
    pub interval: RefillInterval,
    /// The balance after a refill, 0..=[`MAX_CREDITS`].
    pub amount: i64,
    /// Monthly only: 1..=31 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_of_month: Option<u32>,
}

impl Refill {
    /// The latest scheduled refill instant at or before `now`.
    pub fn last_due(&self, now: Timestamp) -> Timestamp {
        let today = now.date_naive();
        let midnight =
            |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default());
        match self.interval {
            RefillInterval::Daily => midnight(today),
            RefillInterval::Monthly => {
                let want = self.day_of_month.unwrap_or(1);
                let this = refill_day(today.year(), today.month(), want);
                if this <= today {
                    midnight(this)
                } else {
                    let (y, m) = if today.month() == 1 {
                        (today.year() - 1, 12)
                    } else {
                        (today.year(), today.month() - 1)
                    };
                    midnight(refill_day(y, m, want))
                }
            }
        }
    }

    /// The first scheduled refill instant after `now`.
    pub fn next_due(&self, now: Timestamp) -> Timestamp {
        let last = self.last_due(now);
        match self.interval {
            RefillInterval::Daily => last + Duration::days(1),
            RefillInterval::Monthly => {
                let d = last.date_naive();
                let (y, m) = if d.month() == 12 {
                    (d.year() + 1, 1)
                } else {
                    (d.year(), d.month() + 1)
                };
                let day = refill_day(y, m, self.day_of_month.unwrap_or(1));
                Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
            }
        }
    }
}

/// `want` in month `m` of `y`, or the month's last day when it is shorter.
fn refill_day(y: i32, m: u32, want: u32) -> NaiveDate {
    let mut day = want.clamp(1, 31);
    loop {
        if let Some(d) = NaiveDate::from_ymd_opt(y, m, day) {
            return d;
        }
        day -= 1;
    }
}

/// A key's credit balance and its rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credits {
    /// Credits left, 0..=[`MAX_CREDITS`].
    pub remaining: i64,
    /// When the balance is set back, if ever.
    #[serde(default)]
    pub refill: Option<Refill>,
    /// `api_key.credits_low` fires once each time the balance falls below this.
    #[serde(default)]
    pub low_threshold: Option<i64>,
}

fn invalid_credits(param: &str, message: String) -> DomainError {
    DomainError::invalid("invalid_credits", param, message)
}

/// Checks a balance; `param` names the field.
pub fn validate_balance(n: i64, param: &str) -> Result<(), DomainError> {
    if (0..=MAX_CREDITS).contains(&n) {
        Ok(())
    } else {
        Err(invalid_credits(
            param,
            format!("{param} must be between 0 and {MAX_CREDITS}"),
        ))
    }
}

/// Checks a credits object.
pub fn validate_credits(c: &Credits) -> Result<(), DomainError> {
    validate_balance(c.remaining, "credits.remaining")?;
    if let Some(t) = c.low_threshold {
        validate_balance(t, "credits.low_threshold")?;
    }
    if let Some(r) = &c.refill {
        validate_balance(r.amount, "credits.refill.amount")?;
        match (r.interval, r.day_of_month) {
            (RefillInterval::Daily, Some(_)) => {
                return Err(invalid_credits(
                    "credits.refill.day_of_month",
                    "credits.refill.day_of_month applies to monthly refills only".into(),
                ))
            }
            (RefillInterval::Monthly, Some(d)) if !(1..=31).contains(&d) => {
                return Err(invalid_credits(
                    "credits.refill.day_of_month",
                    "credits.refill.day_of_month must be between 1 and 31".into(),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a cost; `param` names the field.
pub fn validate_cost(n: i64, param: &str) -> Result<(), DomainError> {
    if (0..=MAX_COST).contains(&n) {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "invalid_cost",
            param,
            format!("{param} must be between 0 and {MAX_COST}"),
        ))
    }
}

/// An adjustment of a balance (`POST /api-keys/{id}/credits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditOp {
    /// The balance becomes the value.
    Set,
    /// The value is added (up to [`MAX_CREDITS`]).
    Increment,
    /// The value is taken away (down to 0).
    Decrement,
}

impl CreditOp {
    /// The balance after applying the operation with `value` to `balance`.
    pub fn apply(self, balance: i64, value: i64) -> i64 {
        match self {
            CreditOp::Set => value,
            CreditOp::Increment => balance.saturating_add(value).min(MAX_CREDITS),
            CreditOp::Decrement => (balance - value).max(0),
        }
    }

    /// Parses `set`, `increment` or `decrement`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "set" => Some(CreditOp::Set),
            "increment" => Some(CreditOp::Increment),
            "decrement" => Some(CreditOp::Decrement),
            _ => None,
        }
    }

    /// The operation as written in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CreditOp::Set => "set",
            CreditOp::Increment => "increment",
            CreditOp::Decrement => "decrement",
        }
    }
}

/// Micro-tokens per token: buckets count in millionths so an even refill over a long
/// window loses nothing to rounding.
pub const MICRO: i64 = 1_000_000;

/// A token bucket's shared state: micro-tokens left at `updated_ms`. Every counter
/// engine (memory, PostgreSQL, Redis) applies [`Bucket::lease`]'s arithmetic; the Redis
/// script repeats it in Lua.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Micro-tokens left at `updated_ms`.
    pub micro: i64,
    /// When `micro` was last computed, Unix ms.
    pub updated_ms: i64,
}

/// What a lease from a bucket (or a balance) handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Tokens handed out (0 = refused: fewer than the cost were left).
    pub granted: i64,
    /// Whole tokens left after the grant.
    pub remaining: i64,
    /// Granted: when the bucket is full again. Refused: when `cost` tokens will be there. Ms.
    pub reset_at_ms: i64,
}

/// How many to hand out of `available` for a request of `cost` that would like `want`:
/// nothing when fewer than `cost` are left, else an eighth of what is left — at least
/// the cost, at most `want` — so leases shrink to one at a time near exhaustion and the
/// nodes together can never hold more than is there.
pub fn lease_size(available: i64, cost: i64, want: i64) -> i64 {
    lease_size_above(available, cost, want, 0)
}

/// Credits kept back from batches: the last this many of a balance are handed out one
/// request at a time, so when a balance runs out no node is left holding a batch that
/// another node's callers are refused for.
pub const CREDIT_RESERVE: i64 = 1_000;

/// Like [`lease_size`], but batches come only from what is above `reserve`; inside it
/// each lease is exactly the cost.
pub fn lease_size_above(available: i64, cost: i64, want: i64, reserve: i64) -> i64 {
    if available < cost || available <= 0 {
        return 0;
    }
    let spare = available - reserve;
    if spare / 8 <= cost {
        return cost;
    }
    (spare / 8).clamp(cost, want.max(cost)).min(available)
}

impl Bucket {
    /// A full bucket at `now_ms`.
    pub fn full(limit: i64, now_ms: i64) -> Self {
        Bucket {
            micro: limit.saturating_mul(MICRO),
            updated_ms: now_ms,
        }
    }

    fn refilled(&self, limit: i64, duration_ms: i64, now_ms: i64) -> i64 {
        let cap = limit as i128 * MICRO as i128;
        let elapsed = (now_ms - self.updated_ms).max(0) as i128;
        let added = elapsed * cap / duration_ms.max(1) as i128;
        (self.micro as i128 + added).min(cap) as i64
    }

    /// Refills to `now_ms` and takes a lease for a request of `cost` (see [`lease_size`]).
    /// A clock behind the bucket's (another node's) counts as no time passed.
    pub fn lease(
        &mut self,
        limit: i64,
        duration_ms: i64,
        cost: i64,
        want: i64,
        now_ms: i64,
    ) -> Grant {
        let now_ms = now_ms.max(self.updated_ms);
        let micro = self.refilled(limit, duration_ms, now_ms);
        let granted = lease_size(micro / MICRO, cost, want);
        self.micro = micro - granted * MICRO;
        self.updated_ms = now_ms;
        let cap = limit.saturating_mul(MICRO);
        let per = |m: i64| {
            ((m.max(0) as i128 * duration_ms as i128 + cap as i128 - 1) / cap.max(1) as i128) as i64
        };
        let reset_at_ms = if granted > 0 || cost == 0 {
            now_ms + per(cap - self.micro)
        } else {
            now_ms + per(cost * MICRO - self.micro).max(1)
        };
        Grant {
            granted,
            remaining: self.micro / MICRO,
            reset_at_ms,
        }
    }

    /// Puts back `tokens` a node leased and did not use (never above a full bucket).
    pub fn give_back(&mut self, limit: i64, duration_ms: i64, tokens: i64, now_ms: i64) {
        let now_ms = now_ms.max(self.updated_ms);
        let micro = self.refilled(limit, duration_ms, now_ms);
        self.micro = micro
            .saturating_add(tokens.saturating_mul(MICRO))
            .min(limit.saturating_mul(MICRO));
        self.updated_ms = now_ms;
    }

    /// When the bucket is full again, Unix ms (its row may be forgotten after that).
    pub fn full_at_ms(&self, limit: i64, duration_ms: i64) -> i64 {
        let cap = limit.saturating_mul(MICRO);
        let missing = (cap - self.micro).max(0) as i128;
        self.updated_ms + (missing * duration_ms as i128 / cap.max(1) as i128) as i64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        crate::time::parse_rfc3339(s, "t").unwrap()
    }

    fn lim(name: &str) -> NamedLimit {
        NamedLimit {
            name: name.into(),
            limit: 10,
            duration_ms: 60_000,
            auto_apply: true,
        }
    }

    #[test]
    fn a_bucket_grants_its_limit_then_refills_evenly() {
        let mut b = Bucket::full(10, 0);
        let mut total = 0;
        for _ in 0..20 {
            total += b.lease(10, 60_000, 1, 1, 0).granted;
        }
        assert_eq!(total, 10);
        let g = b.lease(10, 60_000, 1, 1, 0);
        assert_eq!((g.granted, g.reset_at_ms), (0, 6_000));
        assert_eq!(b.lease(10, 60_000, 1, 1, 6_000).granted, 1);
        assert_eq!(b.lease(10, 60_000, 1, 1, 6_000).granted, 0);
        // A clock behind the bucket's adds nothing.
        assert_eq!(b.lease(10, 60_000, 1, 1, 0).granted, 0);
        b.give_back(10, 60_000, 3, 6_000);
        assert_eq!(b.lease(10, 60_000, 3, 3, 6_000).granted, 3);
    }

    #[test]
    fn leases_shrink_near_exhaustion_and_never_exceed_what_is_left() {
        assert_eq!(lease_size(1_000_000, 1, 1000), 1000);
        assert_eq!(lease_size(800, 1, 1000), 100);
        assert_eq!(lease_size(7, 1, 1000), 1);
        assert_eq!(lease_size(7, 5, 1000), 5);
        assert_eq!(lease_size(4, 5, 1000), 0);
        assert_eq!(lease_size(0, 0, 1000), 0);
        // Inside the reserve, one request at a time; above it, batches of what is above.
        assert_eq!(lease_size_above(1_000, 1, 1000, CREDIT_RESERVE), 1);
        assert_eq!(lease_size_above(1_000, 0, 1000, CREDIT_RESERVE), 0);
        assert_eq!(lease_size_above(1_800, 3, 1000, CREDIT_RESERVE), 100);
        assert_eq!(lease_size_above(2, 3, 1000, CREDIT_RESERVE), 0);
        let mut b = Bucket::full(1_000, 0);
        let mut total = 0;
        loop {
            let g = b.lease(1_000, 3_600_000, 1, 250, 0);
            if g.granted == 0 {
                break;
            }
            total += g.granted;
        }
        assert_eq!(total, 1_000);
    }

    #[test]
    fn names_follow_the_pattern() {
        for ok in [
            "default",
            "tokens",
            "a",
            "0",
            "per-user:v1.x_y",
            &"a".repeat(64),
        ] {
            assert!(is_limit_name(ok), "{ok}");
        }
        for bad in ["", "Tokens", "-x", "_x", "a b", "é", &"a".repeat(65), "a/b"] {
            assert!(!is_limit_name(bad), "{bad}");
        }
    }

    #[test]
    fn limits_are_checked_as_a_list() {
        assert!(validate_limits(&[lim("a"), lim("b")], "ratelimits").is_ok());
        let e = validate_limits(&[lim("a"), lim("a")], "ratelimits").unwrap_err();
        assert!(
            matches!(e, DomainError::Invalid { param: Some(ref p), .. } if p == "ratelimits[1].name")
        );
        let many: Vec<_> = (0..11).map(|i| lim(&format!("l{i}"))).collect();
        assert!(validate_limits(&many, "ratelimits").is_err());
        let mut long = lim("a");
        long.duration_ms = MAX_DURATION_MS + 1;
        assert!(validate_limits(&[long.clone()], "ratelimits").is_err());
        long.duration_ms = MAX_DURATION_MS;
        assert!(validate_limits(&[long], "ratelimits").is_ok());
    }

    #[test]
    fn the_old_field_is_the_default_limit() {
        let rl = RateLimit {
            limit: 5,
            duration_ms: 1000,
        };
        let merged = merge_default(Some(rl), Some(vec![lim("default"), lim("x")]));
        assert_eq!(merged.len(), 2);
        assert_eq!(default_limit(&merged).unwrap().limit, 5);
        assert!(merge_default(None, None).is_empty());
    }

    #[test]
    fn daily_refills_are_at_midnight_utc() {
        let r = Refill {
            interval: RefillInterval::Daily,
            amount: 5,
            day_of_month: None,
        };
        let now = at("2026-12-01T15:04:05Z");
        assert_eq!(r.last_due(now), at("2026-12-01T00:00:00Z"));
        assert_eq!(r.next_due(now), at("2026-12-02T00:00:00Z"));
    }

    #[test]
    fn monthly_refills_use_the_last_day_of_short_months() {
        let r = Refill {
            interval: RefillInterval::Monthly,
            amount: 5,
            day_of_month: Some(31),
        };
        assert_eq!(
            r.last_due(at("2026-03-15T00:00:00Z")),
            at("2026-02-28T00:00:00Z")
        );
        assert_eq!(
            r.next_due(at("2026-03-15T00:00:00Z")),
            at("2026-03-31T00:00:00Z")
        );
        assert_eq!(
            r.last_due(at("2026-01-01T10:00:00Z")),
            at("2025-12-31T00:00:00Z")
        );
        let first = Refill {
            day_of_month: None,
            ..r
        };
        assert_eq!(
            first.last_due(at("2026-12-01T00:00:00Z")),
            at("2026-12-01T00:00:00Z")
        );
    }

    #[test]
    fn credit_ops_stay_in_range() {
        assert_eq!(CreditOp::Set.apply(5, 9), 9);
        assert_eq!(CreditOp::Increment.apply(MAX_CREDITS - 1, 9), MAX_CREDITS);
        assert_eq!(CreditOp::Decrement.apply(5, 9), 0);
        let bad = Credits {
            remaining: 1,
            refill: Some(Refill {
                interval: RefillInterval::Daily,
                amount: 1,
                day_of_month: Some(3),
            }),
            low_threshold: None,
        };
        assert!(validate_credits(&bad).is_err());
        assert!(validate_cost(MAX_COST + 1, "cost").is_err());
        assert!(validate_cost(0, "cost").is_ok());
    }
}
