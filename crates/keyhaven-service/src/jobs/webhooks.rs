//! Delivering webhook events with Standard Webhooks signatures, retried with
//! exponential backoff for 24 hours.
//!
//! Deliveries are processed continuously: up to [`CONCURRENCY`] are in flight at once,
//! and a new one is claimed as soon as one finishes, so a slow receiver holds only its
//! own slots. The claim takes endpoints in turn and at most [`PER_ENDPOINT`] deliveries
//! of one endpoint at a time, so a dead endpoint's backlog cannot crowd out the others.
//! Each request has a timeout and at most [`MAX_BODY_READ`] bytes of an answer are read.

use std::time::Duration;

use base64::Engine;
use chrono::Duration as Span;
use hmac::{Hmac, Mac};
use keyhaven_store::{Delivery, DeliveryStatus};
use sha2::Sha256;
use tokio::task::JoinSet;

use crate::{Service, ServiceResult};

/// How long a delivery keeps being retried.
pub const RETRY_FOR_HOURS: i64 = 24;
/// Deliveries in flight at once on a node.
pub const CONCURRENCY: usize = 16;
/// Deliveries of one endpoint in flight at once (per node claim).
pub const PER_ENDPOINT: i64 = 2;
/// A request (connect, send, answer) taking longer is a failed attempt.
pub const REQUEST_TIMEOUT_SECONDS: u64 = 10;
/// Bytes of a receiver's answer read at most (the rest is discarded unread).
pub const MAX_BODY_READ: usize = 1024;
/// A claim lasts this long; a node that dies mid-delivery releases its work after it.
const LEASE_SECONDS: i64 = 60;

/// `v1,<base64 HMAC-SHA256>` of `id.timestamp.body` under each secret, space-separated.
pub fn sign(secrets: &[String], id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .filter_map(|s| {
            let raw = s.strip_prefix("whsec_").unwrap_or(s);
            let key = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
            Some(format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Delay before attempt `attempts + 1`: 30 s, 1 min, 2 min, … at most 4 h.
pub fn backoff(attempts: i64) -> Span {
    let secs = 30i64.saturating_mul(1i64 << attempts.clamp(0, 20).saturating_sub(1).max(0));
    Span::seconds(secs.min(4 * 3600))
}

/// The HTTP client for deliveries: short timeouts, no redirects.
pub fn client() -> reqwest::Client {
    client_with_timeout(Duration::from_secs(REQUEST_TIMEOUT_SECONDS))
}

/// The HTTP client for deliveries with another request timeout.
pub fn client_with_timeout(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Keyhaven-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// Claims up to `free` due deliveries and starts them in `set`; returns how many.
async fn claim_into(
    service: &Service,
    http: &reqwest::Client,
    set: &mut JoinSet<ServiceResult<()>>,
    free: usize,
) -> ServiceResult<usize> {
    if free == 0 {
        return Ok(0);
    }
    let token = super::notices::claim_token();
    let now = service.now();
    let claimed = {
        let mut tx = service.store.begin().await?;
        let c = tx
            .claim_deliveries(
                now,
                now + Span::seconds(LEASE_SECONDS),
                i64::try_from(free).unwrap_or(1),
                PER_ENDPOINT,
                &token,
            )
            .await?;
        tx.commit().await?;
        c
    };
    let n = claimed.len();
    for d in claimed {
        let service = service.clone();
        let http = http.clone();
        let token = token.clone();
        set.spawn(async move { attempt(&service, &http, d, &token).await });
    }
    Ok(n)
}

fn log_joined(r: Result<ServiceResult<()>, tokio::task::JoinError>) {
    match r {
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot record a webhook attempt"),
        Err(e) if !e.is_cancelled() => tracing::warn!(error = %e, "webhook attempt task failed"),
        _ => {}
    }
}

/// Delivers until nothing is due and nothing is in flight, keeping up to
/// [`CONCURRENCY`] deliveries going. Returns how many were attempted.
pub async fn deliver_due(service: &Service, http: &reqwest::Client) -> ServiceResult<usize> {
    let mut set = JoinSet::new();
    let mut attempted = 0;
    loop {
        let free = CONCURRENCY - set.len();
        let claimed = match claim_into(service, http, &mut set, free).await {
            Ok(n) => n,
            Err(e) if set.is_empty() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim webhook deliveries");
                0
            }
        };
        attempted += claimed;
        if claimed > 0 && set.len() < CONCURRENCY {
            continue; // more may be due
        }
        match set.join_next().await {
            Some(r) => log_joined(r),
            None => return Ok(attempted),
        }
    }
}

/// Delivers continuously until `stopped` turns true: claims whatever is due whenever a
/// slot frees up, when woken (a change queued deliveries) and every `interval` (retries).
/// At the stop, deliveries in flight get up to [`REQUEST_TIMEOUT_SECONDS`] (+2 s) to
/// finish and be recorded; any still running then are abandoned, their claims lapse and
/// they are attempted again later (with the same `webhook-id`).
pub async fn run(
    service: Service,
    http: reqwest::Client,
    interval: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut set: JoinSet<ServiceResult<()>> = JoinSet::new();
    loop {
        let free = CONCURRENCY - set.len();
        let claimed = match claim_into(&service, &http, &mut set, free).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim webhook deliveries; retrying later");
                0
            }
        };
        if claimed > 0 && set.len() < CONCURRENCY {
            continue;
        }
        tokio::select! {
            Some(r) = set.join_next(), if !set.is_empty() => log_joined(r),
            _ = tokio::time::sleep(interval) => {},
            _ = service.jobs_wake.notified() => {},
            _ = stopped.changed() => break,
        }
    }
    let drain = async {
        while let Some(r) = set.join_next().await {
            log_joined(r);
        }
    };
    let grace = Duration::from_secs(REQUEST_TIMEOUT_SECONDS + 2);
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!("webhook deliveries still in flight at shutdown are left to retry");
    }
}

/// Records a failed attempt: retried after the backoff, or failed after 24 hours.
fn failed(
    d: &mut Delivery,
    now: keyhaven_core::time::Timestamp,
    status: Option<i64>,
    error: String,
) {
    d.last_status = status;
    d.last_error = Some(error);
    let give_up_at = d.created_at + Span::hours(RETRY_FOR_HOURS);
    if now >= give_up_at {
        d.status = DeliveryStatus::Failed;
    } else {
        d.next_attempt_at = (now + backoff(d.attempts)).min(give_up_at);
    }
}

/// A delivery ready to go, or one that must not be sent at all (its endpoint is gone
/// or disabled). `prepare`'s `Err` is a failure to retry with backoff.
enum Prepared {
    Send(Box<reqwest::RequestBuilder>),
    Cancel(&'static str),
}

async fn prepare(
    service: &Service,
    http: &reqwest::Client,
    d: &Delivery,
) -> Result<Prepared, String> {
    let endpoint = {
        let mut tx = service.store.read().await.map_err(|e| e.to_string())?;
        tx.webhook(&d.org_id, &d.endpoint_id)
            .await
            .map_err(|e| e.to_string())?
    };
    let Some(endpoint) = endpoint else {
        return Ok(Prepared::Cancel("the endpoint was deleted"));
    };
    if !endpoint.enabled {
        return Ok(Prepared::Cancel("the endpoint is disabled"));
    }
    if service.resolves_to_self(&endpoint.url).await {
        return Err("the URL resolves to Keyhaven itself; not sent".into());
    }
    let secrets = service
        .signing_secrets(&d.org_id)
        .await
        .map_err(|e| e.to_string())?;
    if secrets.is_empty() {
        return Err("the organization has no shared secret to sign with; not sent".into());
    }
    let ts = service.now().timestamp();
    Ok(Prepared::Send(Box::new(
        http.post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", d.id.as_str())
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                sign(&secrets, d.id.as_str(), ts, &d.payload),
            )
            .body(d.payload.clone()),
    )))
}

/// Reads at most [`MAX_BODY_READ`] bytes of an answer, as text.
async fn bounded_body(mut res: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < MAX_BODY_READ {
        match res.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c[..c.len().min(MAX_BODY_READ - buf.len())]),
            _ => break,
        }
    }
    let s = String::from_utf8_lossy(&buf);
    s.chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
        .trim()
        .to_string()
}

async fn attempt(
    service: &Service,
    http: &reqwest::Client,
    mut d: Delivery,
    token: &str,
) -> ServiceResult<()> {
    let prepared = prepare(service, http, &d).await;
    if !matches!(prepared, Ok(Prepared::Cancel(_))) {
        d.attempts += 1;
    }
    match prepared {
        Ok(Prepared::Cancel(why)) => {
            d.status = DeliveryStatus::Failed;
            d.last_status = None;
            d.last_error = Some(format!("{why}; not sent"));
        }
        Err(e) => {
            tracing::warn!(error = %e, delivery = %d.id, "cannot prepare a webhook delivery");
            failed(&mut d, service.now(), None, e);
        }
        Ok(Prepared::Send(req)) => {
            let outcome = req.send().await;
            let now = service.now();
            match outcome {
                Ok(res) if res.status().is_success() => {
                    d.status = DeliveryStatus::Succeeded;
                    d.last_status = Some(i64::from(res.status().as_u16()));
                    d.last_error = None;
                    d.delivered_at = Some(now);
                    drop(res);
                }
                Ok(res) => {
                    let status = res.status();
                    let body = bounded_body(res).await;
                    let mut error = format!("the receiver answered {status}");
                    if !body.is_empty() {
                        error.push_str(&format!(": {body}"));
                    }
                    failed(&mut d, now, Some(i64::from(status.as_u16())), error);
                }
                Err(e) if e.is_timeout() => failed(
                    &mut d,
                    now,
                    None,
                    "the receiver did not answer in time".to_string(),
                ),
                Err(e) => failed(
                    &mut d,
                    now,
                    None,
                    format!("cannot reach the receiver: {}", without_url(&e)),
                ),
            }
        }
    }
    let mut tx = service.store.begin().await?;
    let held = tx.finish_delivery(&d, token).await?;
    tx.commit().await?;
    if !held {
        tracing::warn!(delivery = %d.id, "a webhook delivery's claim lapsed before its outcome was recorded");
    }
    Ok(())
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "");
    }
    s.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_follows_standard_webhooks() {
        // HMAC-SHA256 over "id.ts.body" with the base64-decoded secret.
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(b"0123456789abcdef0123456789abcdef")
        );
        let sig = sign(
            std::slice::from_ref(&secret),
            "msg_1",
            1_700_000_000,
            "{\"a\":1}",
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
        mac.update(b"msg_1.1700000000.{\"a\":1}");
        let expect = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("v1,{expect}"));
        let two = sign(&[secret.clone(), secret], "m", 1, "b");
        assert_eq!(two.split(' ').count(), 2);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Span::seconds(30));
        assert_eq!(backoff(2), Span::seconds(60));
        assert_eq!(backoff(3), Span::seconds(120));
        assert_eq!(backoff(30), Span::hours(4));
    }
}
