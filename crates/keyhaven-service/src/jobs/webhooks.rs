//! Delivering webhook events with Standard Webhooks signatures, retried with
//! exponential backoff for 24 hours.
//!
//! Deliveries are processed continuously: up to [`CONCURRENCY`] are in flight at once,
//! and a new one is claimed as soon as one finishes, so a slow receiver holds only its
//! own slots. The claim takes endpoints in turn and at most [`PER_ENDPOINT`] deliveries
//! of one endpoint at a time, so a dead endpoint's backlog cannot crowd out the others.
//! Each request has a timeout; of an answer only the status code is kept, never the body.
//! Where a delivery goes is checked at every attempt (see [`crate::outbound`]).

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

/// How deliveries are sent: short timeouts, no redirects, no proxy, and never a DNS
/// lookup of reqwest's own. A URL with an IP address goes through one shared client
/// (whose resolver answers no name); a URL with a host name is resolved once by the
/// delivery, its addresses checked against the outbound policy, and sent through a
/// client pinned to exactly those addresses.
#[derive(Clone)]
pub struct Http {
    shared: reqwest::Client,
    timeout: Duration,
}

impl Http {
    fn builder(timeout: Duration) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("Keyhaven-Webhooks/", env!("CARGO_PKG_VERSION")))
    }

    /// A client that connects to `host` at `addrs` only (and resolves nothing else).
    fn pinned(
        &self,
        host: &str,
        addrs: Vec<std::net::SocketAddr>,
    ) -> Result<reqwest::Client, String> {
        Self::builder(self.timeout)
            .dns_resolver(crate::outbound::pinned(host, addrs))
            .build()
            .map_err(|_| "cannot build the HTTP client; not sent".to_string())
    }
}

/// The HTTP client for deliveries: short timeouts, no redirects.
pub fn client() -> Http {
    client_with_timeout(Duration::from_secs(REQUEST_TIMEOUT_SECONDS))
}

/// The HTTP client for deliveries with another request timeout.
pub fn client_with_timeout(timeout: Duration) -> Http {
    Http {
        shared: Http::builder(timeout)
            .dns_resolver(std::sync::Arc::new(crate::outbound::Pinned::none()))
            .build()
            .unwrap_or_default(),
        timeout,
    }
}

/// Claims up to `free` due deliveries and starts them in `set`; returns how many.
async fn claim_into(
    service: &Service,
    http: &Http,
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
pub async fn deliver_due(service: &Service, http: &Http) -> ServiceResult<usize> {
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
    http: Http,
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

async fn prepare(service: &Service, http: &Http, d: &Delivery) -> Result<Prepared, String> {
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
    let client = target_client(service, http, &endpoint.url).await?;
    let secrets = service
        .signing_secrets(&d.org_id)
        .await
        .map_err(|e| e.to_string())?;
    if secrets.is_empty() {
        return Err("the organization has no shared secret to sign with; not sent".into());
    }
    let ts = service.now().timestamp();
    Ok(Prepared::Send(Box::new(
        client
            .post(&endpoint.url)
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

/// Why a delivery was not sent because of where it points.
const REFUSED_TARGET: &str = "the URL resolves to no allowed address (internal addresses \
     need KEYHAVEN_OUTBOUND_ALLOWED_CIDRS, and Keyhaven itself is never one); not sent";

/// What a failed connection is recorded as, whatever the cause: refused, reset, timed
/// out, TLS, or a name that does not resolve. Telling them apart would make the
/// deliveries list a port scanner of the receiver's network.
pub const CONNECTION_FAILED: &str = "connection failed";

/// The client to send to `url` with: checks the address (an IP address, or each address
/// the host name resolves to, looked up once now) against the outbound policy and this
/// server's own addresses, and pins the connection to the addresses that passed.
pub(crate) async fn target_client(
    service: &Service,
    http: &Http,
    url: &str,
) -> Result<reqwest::Client, String> {
    let u = url::Url::parse(url).map_err(|_| REFUSED_TARGET.to_string())?;
    let port = u
        .port_or_known_default()
        .ok_or_else(|| REFUSED_TARGET.to_string())?;
    let ip = match u.host() {
        Some(url::Host::Ipv4(v4)) => std::net::IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => std::net::IpAddr::V6(v6),
        Some(url::Host::Domain(host)) => {
            return match crate::outbound::resolve_checked(host, port, |a| service.may_send_to(a))
                .await
            {
                Ok(addrs) => http.pinned(host, addrs),
                Err(crate::outbound::TargetError::Refused) => Err(REFUSED_TARGET.to_string()),
                Err(crate::outbound::TargetError::Lookup) => Err(CONNECTION_FAILED.to_string()),
            };
        }
        None => return Err(REFUSED_TARGET.to_string()),
    };
    if service.may_send_to(std::net::SocketAddr::new(ip, port)) {
        Ok(http.shared.clone())
    } else {
        Err(REFUSED_TARGET.to_string())
    }
}

async fn attempt(
    service: &Service,
    http: &Http,
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
                    // The status only: the receiver's answer is never read or recorded
                    // (it may be an internal service's).
                    let status = res.status();
                    drop(res);
                    failed(
                        &mut d,
                        now,
                        Some(i64::from(status.as_u16())),
                        format!("the receiver answered {}", status.as_u16()),
                    );
                }
                Err(_) => failed(&mut d, now, None, CONNECTION_FAILED.to_string()),
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
