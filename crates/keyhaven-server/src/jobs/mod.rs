//! Background jobs of a node: webhook deliveries and expiry notices, every
//! `KEYHAVEN_JOB_INTERVAL` (and deliveries at once when a change queues some).

pub mod mail;
pub mod notices;
pub mod webhooks;

use std::time::Duration;

use crate::service::{Service, ServiceResult};

/// What the jobs need besides the service.
#[derive(Clone)]
pub struct Jobs {
    /// The use cases and storage.
    pub service: Service,
    /// Where mail goes.
    pub mailer: mail::Mailer,
    /// For webhook deliveries.
    pub http: reqwest::Client,
    /// Base of links in mails.
    pub public_url: String,
    /// Sender of mails.
    pub mail_from: String,
}

impl Jobs {
    /// One round of every job.
    pub async fn run_once(&self) -> ServiceResult<()> {
        notices::schedule(&self.service).await?;
        notices::send_due(
            &self.service,
            &self.mailer,
            &self.public_url,
            &self.mail_from,
        )
        .await?;
        while webhooks::deliver_due(&self.service, &self.http).await? > 0 {}
        Ok(())
    }

    /// Runs rounds every `interval` (or when woken) until `stopped` turns true.
    pub async fn run(self, interval: Duration, mut stopped: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %e, "a background job round failed; retrying next round");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {},
                _ = self.service.jobs_wake.notified() => {},
                _ = stopped.changed() => return,
            }
        }
    }
}
