//! Background jobs of a node: credit refills, expiry notices (and credit-exhaustion
//! mails) and webhook deliveries, every `KEYHAVEN_JOB_INTERVAL` (and deliveries at once
//! when a change queues some). The credit notices of the node's meter are taken every
//! second by a task of their own (see [`crate::node`] and [`credits::notify_signals`]).

pub mod audit_sinks;
pub mod credits;
pub mod mail;
pub mod notices;
pub mod webhooks;

use std::time::Duration;

use crate::{Service, ServiceResult};

/// What the jobs need besides the service.
#[derive(Clone)]
pub struct Jobs {
    /// The use cases and storage.
    pub service: Service,
    /// Where mail goes.
    pub mailer: mail::Mailer,
    /// For webhook deliveries.
    pub http: webhooks::Http,
    /// Base of links in mails.
    pub public_url: String,
    /// Sender of mails.
    pub mail_from: String,
}

impl Jobs {
    /// One round of every job: credit refills, expiry notices, then webhook deliveries
    /// until none is due. A failing part does not keep the others from running; the
    /// first error is returned after all ran.
    pub async fn run_once(&self) -> ServiceResult<()> {
        let refills = credits::refill_due(&self.service).await;
        let notices = self.notices_once().await;
        let hooks = webhooks::deliver_due(&self.service, &self.http).await;
        refills?;
        notices?;
        hooks.map(|_| ())
    }

    /// Schedules the notices that became due and sends the pending ones (also when
    /// scheduling failed: earlier notices may be waiting).
    async fn notices_once(&self) -> ServiceResult<()> {
        let scheduled = notices::schedule(&self.service).await;
        if let Err(e) = &scheduled {
            tracing::warn!(error = %e, "cannot schedule expiry notices; retrying next round");
        }
        notices::send_due(
            &self.service,
            &self.mailer,
            &self.public_url,
            &self.mail_from,
        )
        .await?;
        scheduled.map(|_| ())
    }

    /// Runs the jobs until `stopped` turns true, as three independent tasks — credit
    /// refills every `interval`, expiry notices every `interval`, and webhook deliveries
    /// continuously (woken by changes, and every `interval` for retries) — so a stalled
    /// mail server never delays a webhook or a refill, and an error in one never skips
    /// another.
    pub async fn run(self, interval: Duration, stopped: tokio::sync::watch::Receiver<bool>) {
        let hooks = tokio::spawn(webhooks::run(
            self.service.clone(),
            self.http.clone(),
            interval,
            stopped.clone(),
        ));
        let service = self.service.clone();
        let mut stop = stopped.clone();
        let refills = tokio::spawn(async move {
            loop {
                if let Err(e) = credits::refill_due(&service).await {
                    tracing::warn!(error = %e, "a credit-refill round failed; retrying next round");
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {},
                    _ = stop.changed() => return,
                }
            }
        });
        let mut stop = stopped;
        let notices = tokio::spawn(async move {
            loop {
                if let Err(e) = self.notices_once().await {
                    tracing::warn!(error = %e, "an expiry-notice round failed; retrying next round");
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {},
                    _ = stop.changed() => return,
                }
            }
        });
        for (name, t) in [
            ("webhook", hooks),
            ("credit-refill", refills),
            ("expiry-notice", notices),
        ] {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "the {name} job stopped unexpectedly");
            }
        }
    }
}
