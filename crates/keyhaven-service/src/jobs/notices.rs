//! Expiry notices: a key's author is told 30, 7 and 1 day(s) before it expires, and when
//! it has expired — each at most once per key and expiry date. The same path sends the
//! mail of a key whose credits ran out (queued by [`super::credits`]).
//!
//! Every round, each node looks for keys that crossed a threshold and inserts a notice
//! row per (key, expiry, threshold); the primary key makes the insert succeed on exactly
//! one node. When a key is first seen already past several thresholds (created inside a
//! window, or after downtime) only the nearest is sent; the others are recorded as
//! skipped. Only keys whose nearest crossed threshold has no notice yet are read, so a
//! round with nothing new writes nothing.
//!
//! Pending notices are then claimed a few at a time with a lease and a claim token.
//! Before each send the node renews its lease, which fails when the lease lapsed and
//! another node took the notice over; a send is bounded by [`SEND_TIMEOUT_SECONDS`],
//! far below the lease, so no two nodes can be sending the same notice. A failed send is
//! retried with backoff and never dropped; a notice the mail server accepted is marked
//! sent at once (retrying the write if the database hiccups), and only the claim holder
//! may record an outcome.

use chrono::Duration as Span;
use keyhaven_core::time::{rfc3339, Timestamp};
use keyhaven_core::webhook_event::WebhookEvent;
use keyhaven_store::{ExpiringKey, Notice, NoticeStatus, NoticeThreshold};
use serde_json::json;

use super::mail::{Mail, Mailer};
use crate::{Service, ServiceResult};

/// The thresholds, farthest first: (name, time before expiry).
pub const THRESHOLDS: [(NoticeThreshold, i64); 4] = [
    (NoticeThreshold::ThirtyDays, 30),
    (NoticeThreshold::SevenDays, 7),
    (NoticeThreshold::OneDay, 1),
    (NoticeThreshold::Expired, 0),
];
/// A claim (renewed before each send) lasts this long.
const LEASE_SECONDS: i64 = 120;
/// Notices claimed at once.
const CLAIM: i64 = 5;
/// A send that takes longer is abandoned (and retried later); well below the lease.
pub const SEND_TIMEOUT_SECONDS: u64 = 60;
/// Attempts at recording that a notice was sent.
const FINISH_TRIES: u32 = 5;
/// Keys that expired longer ago than this get no "expired" notice any more.
const LOOKBACK_DAYS: i64 = 7;

/// The thresholds `key` has crossed at `now`, farthest first.
pub fn crossed(expires_at: Timestamp, now: Timestamp) -> Vec<NoticeThreshold> {
    THRESHOLDS
        .iter()
        .filter(|(_, days)| expires_at - Span::days(*days) <= now)
        .map(|(name, _)| *name)
        .collect()
}

/// Inserts the notices that became due. Returns how many are new and to be sent.
pub async fn schedule(service: &Service) -> ServiceResult<usize> {
    let now = service.now();
    let cutoffs: Vec<(NoticeThreshold, Timestamp)> = THRESHOLDS
        .iter()
        .rev()
        .map(|(name, days)| (*name, now + Span::days(*days)))
        .collect();
    let keys = {
        let mut tx = service.store.read().await?;
        tx.keys_expiring(
            now - Span::days(LOOKBACK_DAYS),
            now + Span::days(30),
            &cutoffs,
        )
        .await?
    };
    let mut scheduled = 0;
    for k in keys {
        let due = crossed(k.expires_at, now);
        let Some(nearest) = due.last().copied() else {
            continue;
        };
        let mut tx = service.store.begin().await?;
        for t in &due {
            let send = *t == nearest;
            let status = match (&k.author_email, send) {
                (_, false) => NoticeStatus::Skipped,
                (Some(_), true) => NoticeStatus::Pending,
                (None, true) => NoticeStatus::NoRecipient,
            };
            let added = tx
                .insert_notice(&Notice {
                    key_id: k.id.clone(),
                    expires_at: k.expires_at,
                    threshold: *t,
                    org_id: k.org_id.clone(),
                    recipient: k.author_email.clone().unwrap_or_default(),
                    status,
                    attempts: 0,
                    next_attempt_at: now,
                    last_error: None,
                    created_at: now,
                    sent_at: None,
                })
                .await?;
            if added && send {
                scheduled += 1;
                let (event, data) = event_for(&k, *t);
                service.emit(tx.as_mut(), &k.org_id, event, data).await?;
            }
        }
        tx.commit().await?;
    }
    if scheduled > 0 {
        service.wake_jobs(); // the expiry events' webhook deliveries
    }
    Ok(scheduled)
}

fn event_for(k: &ExpiringKey, threshold: NoticeThreshold) -> (WebhookEvent, serde_json::Value) {
    let data = json!({
        "id": k.id,
        "organization_id": k.org_id,
        "name": k.name,
        "masked_key": k.masked_key,
        "expires_at": rfc3339(&k.expires_at),
        "threshold": threshold.as_str(),
    });
    if threshold == NoticeThreshold::Expired {
        (WebhookEvent::ApiKeyExpired, data)
    } else {
        (WebhookEvent::ApiKeyExpiring, data)
    }
}

/// "in 30 days", "in 1 day", "in 5 hours": the time left at `now`, rounded to the
/// nearest day (hours under half a day), whatever threshold the notice was scheduled for
/// — a late first notice says how long is really left.
pub fn time_left(expires_at: Timestamp, now: Timestamp) -> String {
    let left = expires_at - now;
    let days = (left.num_hours() + 12) / 24;
    if days >= 1 {
        format!("in {days} day{}", if days == 1 { "" } else { "s" })
    } else {
        let hours = left.num_hours().max(1);
        format!("in {hours} hour{}", if hours == 1 { "" } else { "s" })
    }
}

/// The mail for a notice, composed at `now`.
pub fn compose(n: &Notice, key_name: &str, public_url: &str, from: &str, now: Timestamp) -> Mail {
    let when = rfc3339(&n.expires_at);
    let link = format!("{public_url}/api-keys/{}", n.key_id);
    let (subject, lead) = if n.threshold == NoticeThreshold::Expired || n.expires_at <= now {
        (
            format!("API key \"{key_name}\" has expired"),
            format!("The API key \"{key_name}\" expired at {when} (UTC). Requests using it are refused."),
        )
    } else {
        let left = time_left(n.expires_at, now);
        (
            format!("API key \"{key_name}\" expires {left}"),
            format!("The API key \"{key_name}\" expires at {when} (UTC), {left}."),
        )
    };
    Mail {
        from: from.to_string(),
        to: n.recipient.clone(),
        subject,
        body: format!(
            "{lead}\n\nTo keep the integration working, regenerate the key with a new expiry date \
             and hand the new secret to the program that uses it:\n\n{link}\n\n— Keyhaven\n"
        ),
    }
}

/// A random claim token.
pub fn claim_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Sends the pending notices that are due, a few claimed at a time. Returns how many the
/// mail server accepted.
pub async fn send_due(
    service: &Service,
    mailer: &Mailer,
    public_url: &str,
    from: &str,
) -> ServiceResult<usize> {
    let mut sent = 0;
    loop {
        let token = claim_token();
        let now = service.now();
        let claimed = {
            let mut tx = service.store.begin().await?;
            let c = tx
                .claim_notices(now, now + Span::seconds(LEASE_SECONDS), CLAIM, &token)
                .await?;
            tx.commit().await?;
            c
        };
        let full = claimed.len() as i64 >= CLAIM;
        if claimed.is_empty() {
            return Ok(sent);
        }
        sent += send_claimed(service, mailer, public_url, from, &token, claimed).await?;
        if !full {
            return Ok(sent);
        }
    }
}

/// Sends notices this node claimed under `token`, one by one, renewing the claim before
/// each send and skipping those it no longer holds. Returns how many were accepted.
pub async fn send_claimed(
    service: &Service,
    mailer: &Mailer,
    public_url: &str,
    from: &str,
    token: &str,
    claimed: Vec<Notice>,
) -> ServiceResult<usize> {
    let mut sent = 0;
    for mut n in claimed {
        let held = {
            let mut tx = service.store.begin().await?;
            let held = tx
                .renew_notice(&n, token, service.now() + Span::seconds(LEASE_SECONDS))
                .await?;
            tx.commit().await?;
            held
        };
        if !held {
            tracing::info!(key_id = %n.key_id, threshold = %n.threshold,
                "an expiry notice's claim lapsed and another node took it over; not sending it here");
            continue;
        }
        let key = {
            let mut tx = service.store.read().await?;
            tx.api_key(&n.org_id, &n.key_id).await?
        };
        // The key may have changed while the notice waited (e.g. for the mail server):
        // a deleted or revoked key, or one regenerated with another date, is not notified;
        // nor is a key that no longer has a balance about its credits running out.
        let credits = n.threshold == NoticeThreshold::CreditsExhausted;
        let stale = match &key {
            None => Some("the key was deleted"),
            Some(k) if k.revoked_at.is_some() => Some("the key was revoked"),
            Some(k) if credits && k.credits.is_none() => {
                Some("the key no longer has a credit balance")
            }
            Some(k) if !credits && k.expires_at != Some(n.expires_at) => {
                Some("the key's expiry date changed")
            }
            Some(_) => None,
        };
        let (Some(k), None) = (key, stale) else {
            n.status = NoticeStatus::Skipped;
            n.last_error = stale.map(str::to_string);
            finish(service, &n, token).await?;
            continue;
        };
        n.attempts += 1;
        let mail = if credits {
            super::credits::compose_exhausted(&n, &k, public_url, from)
        } else {
            compose(&n, &k.name, public_url, from, service.now())
        };
        let outcome = match tokio::time::timeout(
            std::time::Duration::from_secs(SEND_TIMEOUT_SECONDS),
            mailer.send(&mail),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the mail server did not finish within {SEND_TIMEOUT_SECONDS} seconds"
            )),
        };
        match outcome {
            Ok(()) => {
                n.status = NoticeStatus::Sent;
                n.sent_at = Some(service.now());
                n.last_error = None;
                sent += 1;
                finish_sent(service, &n, token).await?;
            }
            Err(e) => {
                tracing::warn!(error = %e, key_id = %n.key_id, "cannot send an expiry notice; will retry");
                n.last_error = Some(e);
                let delay = Span::minutes(1i64 << (n.attempts - 1).clamp(0, 6));
                n.next_attempt_at = service.now() + delay;
                finish(service, &n, token).await?;
            }
        }
    }
    Ok(sent)
}

/// Records an outcome; a claim lost meanwhile is logged (the other node's outcome stands).
async fn finish(service: &Service, n: &Notice, token: &str) -> ServiceResult<()> {
    let mut tx = service.store.begin().await?;
    let held = tx.finish_notice(n, token).await?;
    tx.commit().await?;
    if !held {
        tracing::warn!(key_id = %n.key_id, threshold = %n.threshold,
            "an expiry notice's claim was lost before its outcome was recorded");
    }
    Ok(())
}

/// Records that the mail server accepted a notice, retrying a failing database a few
/// times: left pending, the notice would be sent again.
async fn finish_sent(service: &Service, n: &Notice, token: &str) -> ServiceResult<()> {
    let mut tries = 0;
    loop {
        tries += 1;
        match finish(service, n, token).await {
            Ok(()) => return Ok(()),
            Err(e) if tries < FINISH_TRIES => {
                tracing::warn!(error = %e, key_id = %n.key_id,
                    "cannot record a sent expiry notice; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200 << tries)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn time_left_is_rounded_to_days() {
        let exp = Utc.with_ymd_and_hms(2026, 12, 31, 0, 0, 0).unwrap();
        assert_eq!(time_left(exp, exp - Span::days(30)), "in 30 days");
        assert_eq!(
            time_left(exp, exp - Span::days(30) + Span::minutes(5)),
            "in 30 days"
        );
        assert_eq!(time_left(exp, exp - Span::days(10)), "in 10 days");
        assert_eq!(time_left(exp, exp - Span::hours(20)), "in 1 day");
        assert_eq!(time_left(exp, exp - Span::hours(5)), "in 5 hours");
    }

    #[test]
    fn thresholds_crossed() {
        let exp = Utc.with_ymd_and_hms(2026, 12, 31, 0, 0, 0).unwrap();
        let crossed = |exp, now| -> Vec<&str> {
            crossed(exp, now)
                .into_iter()
                .map(NoticeThreshold::as_str)
                .collect()
        };
        assert!(crossed(exp, exp - Span::days(31)).is_empty());
        assert_eq!(crossed(exp, exp - Span::days(30)), vec!["30d"]);
        assert_eq!(crossed(exp, exp - Span::hours(20)), vec!["30d", "7d", "1d"]);
        assert_eq!(crossed(exp, exp), vec!["30d", "7d", "1d", "expired"]);
    }
}
