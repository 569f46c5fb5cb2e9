//! Delivering webhook events with Standard Webhooks signatures, retried with
//! exponential backoff for 24 hours.

use std::time::Duration;

use base64::Engine;
use chrono::Duration as Span;
use hmac::{Hmac, Mac};
use keyhaven_store::Delivery;
use sha2::Sha256;

use crate::service::{Service, ServiceResult};

/// How long a delivery keeps being retried.
pub const RETRY_FOR_HOURS: i64 = 24;
/// Deliveries attempted per round.
const BATCH: i64 = 50;
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
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Keyhaven-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// One round: claims due deliveries and attempts them concurrently. Returns how many
/// were attempted.
pub async fn deliver_due(service: &Service, http: &reqwest::Client) -> ServiceResult<usize> {
    let now = service.now();
    let claimed = {
        let mut tx = service.store.begin().await?;
        let c = tx
            .claim_deliveries(now, now + Span::seconds(LEASE_SECONDS), BATCH)
            .await?;
        tx.commit().await?;
        c
    };
    let n = claimed.len();
    let mut set = tokio::task::JoinSet::new();
    for d in claimed {
        let service = service.clone();
        let http = http.clone();
        set.spawn(async move { attempt(&service, &http, d).await });
    }
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot record a webhook attempt"),
            Err(e) => tracing::warn!(error = %e, "webhook attempt task failed"),
            Ok(Ok(())) => {}
        }
    }
    Ok(n)
}

async fn attempt(service: &Service, http: &reqwest::Client, mut d: Delivery) -> ServiceResult<()> {
    let url = {
        let mut tx = service.store.read().await?;
        tx.webhook(&d.org_id, &d.endpoint_id).await?.map(|w| w.url)
    };
    let Some(url) = url else {
        return Ok(()); // the endpoint was deleted (its deliveries went with it)
    };
    let secrets = service.signing_secrets(&d.org_id).await?;
    let ts = service.now().timestamp();
    let mut req = http
        .post(&url)
        .header("content-type", "application/json")
        .header("webhook-id", d.id.as_str())
        .header("webhook-timestamp", ts.to_string());
    if !secrets.is_empty() {
        req = req.header(
            "webhook-signature",
            sign(&secrets, d.id.as_str(), ts, &d.payload),
        );
    }
    let outcome = req.body(d.payload.clone()).send().await;
    let now = service.now();
    d.attempts += 1;
    match outcome {
        Ok(res) if res.status().is_success() => {
            d.status = "succeeded".into();
            d.last_status = Some(i64::from(res.status().as_u16()));
            d.last_error = None;
            d.delivered_at = Some(now);
        }
        other => {
            let (status, error) = match other {
                Ok(res) => (
                    Some(i64::from(res.status().as_u16())),
                    format!("the receiver answered {}", res.status()),
                ),
                Err(e) if e.is_timeout() => (
                    None,
                    "the receiver did not answer within 10 seconds".to_string(),
                ),
                Err(e) => (
                    None,
                    format!("cannot reach the receiver: {}", without_url(&e)),
                ),
            };
            d.last_status = status;
            d.last_error = Some(error);
            let give_up_at = d.created_at + Span::hours(RETRY_FOR_HOURS);
            let next = now + backoff(d.attempts);
            if now >= give_up_at {
                d.status = "failed".into();
            } else {
                d.next_attempt_at = next.min(give_up_at);
            }
        }
    }
    let mut tx = service.store.begin().await?;
    tx.finish_delivery(&d).await?;
    tx.commit().await?;
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
