//! Expiry notices: one per key, expiry date and threshold, claimed by the notice job
//! with a lease and a claim token as [`crate::Deliveries`] are. The same rows carry the
//! credit-exhaustion mail ([`NoticeThreshold::CreditsExhausted`]), whose `expires_at`
//! column holds the time the balance ran out: one notice per exhaustion.

use async_trait::async_trait;
use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;
use sqlx::any::AnyRow;

use crate::error::{StoreError, StoreResult};
use crate::row::{id, int, json, ms, opt_text, opt_time, text, time};
use crate::sql::SqlTx;

/// Which threshold a notice is for; stored as its [`NoticeThreshold::as_str`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeThreshold {
    /// 30 days before expiry.
    ThirtyDays,
    /// 7 days before expiry.
    SevenDays,
    /// 1 day before expiry.
    OneDay,
    /// The key has expired.
    Expired,
    /// Not about expiry: the key's credit balance reached 0 (the notice's `expires_at`
    /// is when).
    CreditsExhausted,
}

impl NoticeThreshold {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ThirtyDays => "30d",
            Self::SevenDays => "7d",
            Self::OneDay => "1d",
            Self::Expired => "expired",
            Self::CreditsExhausted => "credits_exhausted",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "30d" => Some(Self::ThirtyDays),
            "7d" => Some(Self::SevenDays),
            "1d" => Some(Self::OneDay),
            "expired" => Some(Self::Expired),
            "credits_exhausted" => Some(Self::CreditsExhausted),
            _ => None,
        }
    }
}

impl std::fmt::Display for NoticeThreshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a notice stands; stored as its [`NoticeStatus::as_str`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeStatus {
    /// Waiting to be sent.
    Pending,
    /// The mail server accepted it.
    Sent,
    /// Not sent: a nearer threshold was crossed too, or the key changed meanwhile.
    Skipped,
    /// Not sent: the key has no human author with an email address.
    NoRecipient,
}

impl NoticeStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Skipped => "skipped",
            Self::NoRecipient => "no_recipient",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "sent" => Some(Self::Sent),
            "skipped" => Some(Self::Skipped),
            "no_recipient" => Some(Self::NoRecipient),
            _ => None,
        }
    }
}

impl std::fmt::Display for NoticeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An expiry notice (one per key, expiry date and threshold), or a credit-exhaustion
/// notice (one per key and exhaustion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The key.
    pub key_id: Id,
    /// The expiry it is about (a regenerated key with a new date gets a new series); for
    /// [`NoticeThreshold::CreditsExhausted`], when the balance ran out.
    pub expires_at: Timestamp,
    /// Which threshold it is for.
    pub threshold: NoticeThreshold,
    /// The key's organization.
    pub org_id: Id,
    /// Email address; empty when the key has no human author.
    pub recipient: String,
    /// Where it stands.
    pub status: NoticeStatus,
    /// Send attempts so far.
    pub attempts: i64,
    /// When the next attempt is due.
    pub next_attempt_at: Timestamp,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When the mail server accepted it.
    pub sent_at: Option<Timestamp>,
}

/// What the notice job needs to know about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringKey {
    /// Key id.
    pub id: Id,
    /// Organization.
    pub org_id: Id,
    /// Key name.
    pub name: String,
    /// Masked key.
    pub masked_key: String,
    /// Expiry.
    pub expires_at: Timestamp,
    /// `created_by` as stored (`{type, id, name}`).
    pub created_by: keyhaven_core::principal::Principal,
    /// The author's current email, when the author is a user who still exists.
    pub author_email: Option<String>,
}

/// Storage of expiry notices.
#[async_trait]
pub trait Notices {
    /// Keys that may need a notice: not revoked, expiring before `until`, expired after
    /// `since`, and without a notice yet for the nearest threshold they crossed.
    /// `thresholds` are `(name, cutoff)` pairs, nearest first: a key has crossed `name`
    /// when it expires at or before `cutoff`; the last pair must be crossed by every key
    /// expiring before `until`.
    async fn keys_expiring(
        &mut self,
        since: Timestamp,
        until: Timestamp,
        thresholds: &[(NoticeThreshold, Timestamp)],
    ) -> StoreResult<Vec<ExpiringKey>>;
    /// Adds a notice unless one exists for the same key, expiry and threshold; true when added.
    async fn insert_notice(&mut self, n: &Notice) -> StoreResult<bool>;
    /// Claims up to `limit` due notices until `lease_until` under `token`.
    async fn claim_notices(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
        token: &str,
    ) -> StoreResult<Vec<Notice>>;
    /// Extends the claim on a pending notice to `lease_until` if `token` still holds it;
    /// false when another node took it over or it is no longer pending.
    async fn renew_notice(
        &mut self,
        n: &Notice,
        token: &str,
        lease_until: Timestamp,
    ) -> StoreResult<bool>;
    /// Records a send attempt's outcome and releases the claim, if `token` still holds
    /// it; false (and nothing changed) when it does not.
    async fn finish_notice(&mut self, n: &Notice, token: &str) -> StoreResult<bool>;
    /// Every notice of a key (for tests and the console).
    async fn notices_of(&mut self, key_id: &Id) -> StoreResult<Vec<Notice>>;
}

fn notice_row(r: &AnyRow) -> StoreResult<Notice> {
    let threshold = text(r, "threshold")?;
    let status = text(r, "status")?;
    Ok(Notice {
        key_id: id(r, "key_id")?,
        expires_at: time(r, "expires_at")?,
        threshold: NoticeThreshold::parse(&threshold)
            .ok_or_else(|| StoreError::Corrupt(format!("notice threshold {threshold}")))?,
        org_id: id(r, "org_id")?,
        recipient: text(r, "recipient")?,
        status: NoticeStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("notice status {status}")))?,
        attempts: int(r, "attempts")?,
        next_attempt_at: time(r, "next_attempt_at")?,
        last_error: opt_text(r, "last_error")?,
        created_at: time(r, "created_at")?,
        sent_at: opt_time(r, "sent_at")?,
    })
}

#[async_trait]
impl Notices for SqlTx {
    async fn keys_expiring(
        &mut self,
        since: Timestamp,
        until: Timestamp,
        thresholds: &[(NoticeThreshold, Timestamp)],
    ) -> StoreResult<Vec<ExpiringKey>> {
        // The nearest crossed threshold, as a CASE over the cutoffs ($3, $4 = first pair…).
        let Some((last, rest)) = thresholds.split_last() else {
            return Ok(Vec::new());
        };
        let mut nearest = String::from("CASE");
        for i in 0..rest.len() {
            let p = 3 + 2 * i;
            nearest.push_str(&format!(
                " WHEN k.expires_at <= ${p} THEN CAST(${} AS TEXT)",
                p + 1
            ));
        }
        nearest.push_str(&format!(" ELSE CAST(${} AS TEXT) END", 3 + 2 * rest.len()));
        let sql = format!(
            "SELECT k.id, k.org_id, k.name, k.masked_key, k.expires_at, k.created_by FROM api_keys k \
             WHERE k.revoked_at IS NULL AND k.expires_at IS NOT NULL AND k.expires_at > $1 AND k.expires_at <= $2 \
             AND NOT EXISTS (SELECT 1 FROM expiry_notices n WHERE n.key_id = k.id \
                 AND n.expires_at = k.expires_at AND n.threshold = {nearest}) \
             ORDER BY k.id"
        );
        let mut q = sqlx::query(&sql).bind(ms(&since)).bind(ms(&until));
        for (name, cutoff) in rest {
            q = q.bind(ms(cutoff)).bind(name.as_str());
        }
        let rows = q.bind(last.0.as_str()).fetch_all(&mut *self.tx).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let created_by: keyhaven_core::principal::Principal = json(&r, "created_by")?;
            let author_email = if created_by.kind == keyhaven_core::principal::PrincipalKind::User {
                sqlx::query_scalar::<_, String>(
                    "SELECT email FROM users WHERE id = $1 AND status = 'active'",
                )
                .bind(&created_by.id)
                .fetch_optional(&mut *self.tx)
                .await?
            } else {
                None
            };
            out.push(ExpiringKey {
                id: id(&r, "id")?,
                org_id: id(&r, "org_id")?,
                name: text(&r, "name")?,
                masked_key: text(&r, "masked_key")?,
                expires_at: time(&r, "expires_at")?,
                created_by,
                author_email,
            });
        }
        Ok(out)
    }

    async fn insert_notice(&mut self, n: &Notice) -> StoreResult<bool> {
        let r = sqlx::query(
            "INSERT INTO expiry_notices (key_id, expires_at, threshold, org_id, recipient, status, attempts, \
             next_attempt_at, claimed_until, last_error, created_at, sent_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11) \
             ON CONFLICT (key_id, expires_at, threshold) DO NOTHING",
        )
        .bind(n.key_id.as_str())
        .bind(ms(&n.expires_at))
        .bind(n.threshold.as_str())
        .bind(n.org_id.as_str())
        .bind(&n.recipient)
        .bind(n.status.as_str())
        .bind(n.attempts)
        .bind(ms(&n.next_attempt_at))
        .bind(n.last_error.clone())
        .bind(ms(&n.created_at))
        .bind(n.sent_at.as_ref().map(ms))
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn claim_notices(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
        token: &str,
    ) -> StoreResult<Vec<Notice>> {
        let rows = sqlx::query(
            "UPDATE expiry_notices SET claimed_until = $2, claim_token = $4 \
             WHERE (key_id, expires_at, threshold) IN (SELECT key_id, expires_at, threshold FROM expiry_notices \
                 WHERE status = 'pending' AND next_attempt_at <= $1 AND claimed_until <= $1 \
                 ORDER BY next_attempt_at LIMIT $3) \
             AND status = 'pending' AND claimed_until <= $1 RETURNING *",
        )
        .bind(ms(&now))
        .bind(ms(&lease_until))
        .bind(limit)
        .bind(token)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(notice_row).collect()
    }

    async fn renew_notice(
        &mut self,
        n: &Notice,
        token: &str,
        lease_until: Timestamp,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE expiry_notices SET claimed_until = $5 \
             WHERE key_id = $1 AND expires_at = $2 AND threshold = $3 AND claim_token = $4 \
             AND status = 'pending'",
        )
        .bind(n.key_id.as_str())
        .bind(ms(&n.expires_at))
        .bind(n.threshold.as_str())
        .bind(token)
        .bind(ms(&lease_until))
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn finish_notice(&mut self, n: &Notice, token: &str) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE expiry_notices SET status = $4, attempts = $5, next_attempt_at = $6, claimed_until = 0, \
             claim_token = NULL, last_error = $7, sent_at = $8 \
             WHERE key_id = $1 AND expires_at = $2 AND threshold = $3 AND claim_token = $9",
        )
        .bind(n.key_id.as_str())
        .bind(ms(&n.expires_at))
        .bind(n.threshold.as_str())
        .bind(n.status.as_str())
        .bind(n.attempts)
        .bind(ms(&n.next_attempt_at))
        .bind(n.last_error.clone())
        .bind(n.sent_at.as_ref().map(ms))
        .bind(token)
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn notices_of(&mut self, key_id: &Id) -> StoreResult<Vec<Notice>> {
        let rows = sqlx::query(
            "SELECT * FROM expiry_notices WHERE key_id = $1 ORDER BY created_at, threshold",
        )
        .bind(key_id.as_str())
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(notice_row).collect()
    }
}
