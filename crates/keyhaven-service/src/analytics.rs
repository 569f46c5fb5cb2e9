//! Verification analytics (ANALYTICS.md): the rules of request tags, the queries of
//! `GET …/analytics/verifications` and `…/analytics/top-keys` (and the console's
//! Analytics page), and the retention job.
//!
//! Counting itself happens on the hot path, in memory ([`crate::verify::usage`]), and
//! reaches the database with the usage flush every second.

use std::time::Duration;

use keyhaven_core::audit::Action;
use keyhaven_core::id::Id;
use keyhaven_core::permission::Permission;
use keyhaven_core::time::Timestamp;
use keyhaven_core::DomainError;
use keyhaven_store::{
    AnalyticsPage, AnalyticsQuery, AnalyticsRow, CodeFilter, Dimension, Granularity,
};

use crate::verify::Code;
use crate::{Caller, Service, ServiceResult};

/// Most tags on one verification request.
pub const MAX_TAGS: usize = 10;
/// Longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 128;
/// Longest range of one query.
pub const MAX_RANGE: chrono::Duration = chrono::Duration::days(90);
/// How long daily rows are kept.
pub const DAILY_RETENTION: Duration = Duration::from_secs(730 * 86_400);
/// How long hourly rows are kept unless `KEYHAVEN_ANALYTICS_RETENTION` says otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86_400);
/// Rows deleted per table and transaction by the retention job.
pub const PRUNE_BATCH: i64 = 5_000;
/// The code the counts from before per-code analytics carry (refused verifications
/// whose code was not kept).
pub const LEGACY_INVALID: &str = "INVALID";

/// Checks one tag (`param` names it in errors): 1–128 bytes, no control characters.
pub fn validate_tag(tag: &str, param: &str) -> Result<(), DomainError> {
    if tag.is_empty() {
        return Err(DomainError::invalid(
            "invalid_tag",
            param,
            format!("{param} must not be empty"),
        ));
    }
    if tag.len() > MAX_TAG_BYTES {
        return Err(DomainError::invalid(
            "invalid_tag",
            param,
            format!("{param} must be at most {MAX_TAG_BYTES} bytes"),
        ));
    }
    if tag.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "invalid_tag",
            param,
            format!("{param} must not contain control characters"),
        ));
    }
    Ok(())
}

/// Checks a verification's tags: at most 10, each valid and none twice. Errors name
/// `tags`.
pub fn validate_tags(tags: &[&str]) -> Result<(), DomainError> {
    if tags.len() > MAX_TAGS {
        return Err(DomainError::invalid(
            "too_many_tags",
            "tags",
            format!("tags may hold at most {MAX_TAGS} entries"),
        ));
    }
    for (i, t) in tags.iter().enumerate() {
        validate_tag(t, "tags")?;
        if tags[..i].contains(t) {
            return Err(DomainError::invalid(
                "duplicate_tag",
                "tags",
                format!("tag {t:?} is given twice"),
            ));
        }
    }
    Ok(())
}

/// Whether `code` is one analytics may hold: a verification code, or the legacy
/// `INVALID`.
pub fn is_code(code: &str) -> bool {
    code == LEGACY_INVALID || Code::ALL.iter().any(|c| c.as_str() == code)
}

/// A query of verification counts, as the API and the console ask it.
#[derive(Debug, Clone)]
pub struct VerificationQuery {
    /// Start (default: 24 hours before `until`).
    pub since: Option<Timestamp>,
    /// End, exclusive (default: now, inclusive).
    pub until: Option<Timestamp>,
    /// Hourly or daily buckets.
    pub granularity: Granularity,
    /// Dimensions to group by.
    pub group_by: Vec<Dimension>,
    /// Only this key.
    pub key_id: Option<Id>,
    /// Only this owner's keys.
    pub owner_id: Option<Id>,
    /// Only this code.
    pub code: Option<String>,
    /// Only verifications with this tag.
    pub tag: Option<String>,
    /// Page size, 1–1000.
    pub limit: i64,
    /// The last row of the page before.
    pub after: Option<AnalyticsRow>,
}

/// A range resolved against the defaults and checked: `(since, until)`.
pub fn resolve_range(
    now: Timestamp,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<(Timestamp, Timestamp), DomainError> {
    // By default up to and including now (a verification at this very millisecond
    // counts).
    let until = until.unwrap_or(now + chrono::Duration::milliseconds(1));
    let since = since.unwrap_or(until - chrono::Duration::hours(24));
    if since >= until {
        return Err(DomainError::invalid(
            "invalid_range",
            "since",
            "since must be before until",
        ));
    }
    if until - since > MAX_RANGE {
        return Err(DomainError::invalid(
            "range_too_long",
            "since",
            "since and until may be at most 90 days apart",
        ));
    }
    Ok((since, until))
}

/// A key among the busiest, with its counts per code.
#[derive(Debug, Clone)]
pub struct TopKeyView {
    /// The key.
    pub key_id: String,
    /// Its name, while the key exists.
    pub name: Option<String>,
    /// Its owner.
    pub owner_id: Option<String>,
    /// All its verifications in the range (with the asked code only, when given).
    pub total: i64,
    /// Counts per code, largest first.
    pub by_code: Vec<(String, i64)>,
}

impl Service {
    /// Verification counts of the caller's organization [api_keys.view]; the range
    /// is returned resolved.
    pub async fn verification_analytics(
        &self,
        caller: &Caller,
        q: &VerificationQuery,
    ) -> ServiceResult<(AnalyticsPage, Timestamp, Timestamp)> {
        self.authorize(caller, Permission::ApiKeysView, Action::ApiKeyMetrics)
            .await?;
        let (since, until) = resolve_range(self.now(), q.since, q.until)?;
        if let Some(c) = &q.code {
            if !is_code(c) {
                return Err(DomainError::invalid(
                    "invalid_code",
                    "code",
                    "code is not a verification code",
                )
                .into());
            }
        }
        if let Some(t) = &q.tag {
            validate_tag(t, "tag")?;
        }
        let query = AnalyticsQuery {
            org_id: caller.org_id.clone(),
            since_ms: q.granularity.floor(since.timestamp_millis()),
            until_ms: until.timestamp_millis(),
            granularity: q.granularity,
            group_by: q.group_by.clone(),
            key_id: q.key_id.as_ref().map(Id::to_string),
            owner_id: q.owner_id.as_ref().map(Id::to_string),
            code: q.code.clone(),
            tag: q.tag.clone(),
            limit: q.limit.clamp(1, 1000),
            after: q.after.clone(),
        };
        let mut tx = self.store.read().await?;
        let page = tx.verification_counts(&query).await?;
        Ok((page, since, until))
    }

    /// The busiest keys of the caller's organization in a range [api_keys.view],
    /// with their counts per code (of the verifications `codes` selects); `limit` 1–100.
    pub async fn top_keys(
        &self,
        caller: &Caller,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        codes: CodeFilter<'_>,
        limit: i64,
    ) -> ServiceResult<(Vec<TopKeyView>, Timestamp, Timestamp)> {
        self.authorize(caller, Permission::ApiKeysView, Action::ApiKeyMetrics)
            .await?;
        let (since, until) = resolve_range(self.now(), since, until)?;
        if let CodeFilter::Only(c) = codes {
            if !is_code(c) {
                return Err(DomainError::invalid(
                    "invalid_code",
                    "code",
                    "code is not a verification code",
                )
                .into());
            }
        }
        let hour = Granularity::Hour;
        let from = hour.floor(since.timestamp_millis());
        let to = hour.floor(until.timestamp_millis() + hour.ms() - 1);
        let mut tx = self.store.read().await?;
        let top = tx
            .top_keys(&caller.org_id, from, to, codes, limit.clamp(1, 100))
            .await?;
        let mut out = Vec::with_capacity(top.len());
        for k in top {
            let name = match Id::parse(&k.key_id, "key_id") {
                Ok(id) => tx.api_key(&caller.org_id, &id).await?.map(|k| k.name),
                Err(_) => None,
            };
            out.push(TopKeyView {
                key_id: k.key_id,
                name,
                owner_id: k.owner_id,
                total: k.total,
                by_code: k.by_code,
            });
        }
        Ok((out, since, until))
    }

    /// Deletes analytics rows past their retention — hourly ones and the keys' recent
    /// verifications older than `retention`, daily ones older than two years — in
    /// batches of [`PRUNE_BATCH`] rows per table, one transaction each, until none is left.
    /// Returns how many count rows went (the recent verifications are not counted).
    pub async fn prune_analytics(&self, retention: Duration) -> ServiceResult<u64> {
        let now = self.now().timestamp_millis();
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let hourly_before = now.saturating_sub(ms(retention));
        let daily_before = now.saturating_sub(ms(DAILY_RETENTION));
        let mut total = 0;
        loop {
            let mut tx = self.store.begin().await?;
            let gone = tx
                .prune_analytics(hourly_before, daily_before, PRUNE_BATCH)
                .await?;
            let recent = tx
                .prune_recent_verifications(hourly_before, PRUNE_BATCH)
                .await?;
            tx.commit().await?;
            total += gone;
            if gone == 0 && recent == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(total)
    }
}

/// Runs [`Service::prune_analytics`] a minute after start and then every hour, until
/// `stopped`. Every node runs it; deleting what another node deleted is harmless.
pub async fn prune_loop(
    service: Service,
    retention: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        match service.prune_analytics(retention).await {
            Ok(n) if n > 0 => tracing::info!(rows = n, "pruned analytics past retention"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot prune analytics; trying again later"),
        }
        wait = Duration::from_secs(3600);
    }
}
