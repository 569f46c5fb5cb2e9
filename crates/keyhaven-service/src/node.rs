//! A node's life outside requests: what runs in the background while it serves, and
//! what it writes on the way out so that a graceful stop loses nothing acknowledged.
//!
//! Every node runs the same tasks: the usage flusher (verification counts, every
//! second), the credit notices its meter noted (every second, see
//! [`crate::jobs::credits::notify_signals`]), the change-log follower (woken at once by PostgreSQL notifications; it also
//! keeps the index of existing key digests), the re-check of cached keys past their
//! maximum age (every half minute), the analytics retention job (hourly), the
//! OAuth signing-key warm-up and credential-use flusher, the jobs (expiry notices,
//! webhook deliveries), and audit-sink delivery (every second, [`crate::jobs::audit_sinks`]). They stop when the `stopped` channel turns true; then
//! [`Service::finish`] writes the last counts and closes the pool.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::Service;

impl Service {
    /// Starts the node's background tasks; they end when `stopped` turns true.
    pub fn spawn_background(
        &self,
        config: &Config,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(every_second(
            self.clone(),
            stopped.clone(),
            "usage counts",
            |s| async move { s.verifier.flush_usage().await.map(|_| ()) },
        )));
        tasks.push(tokio::spawn(every_second(
            self.clone(),
            stopped.clone(),
            "usage counters",
            |s| async move { s.maintain_counters().await },
        )));
        // Credit notices every second rather than with the jobs: the notes live in this
        // node's memory (a bounded list), the events are due when the balance falls —
        // not a job interval (a minute by default) later — and a round with no notes
        // costs nothing.
        tasks.push(tokio::spawn(every_second(
            self.clone(),
            stopped.clone(),
            "credit notices",
            |s| async move { s.credit_notices().await },
        )));
        tasks.push(tokio::spawn(recheck_cached_keys(
            self.clone(),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(warm_signing_key(
            self.clone(),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(crate::analytics::prune_loop(
            self.clone(),
            config.analytics_retention,
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(every_second(
            self.clone(),
            stopped.clone(),
            "credentials' last use",
            |s| async move { s.flush_credential_uses().await.map(|_| ()) },
        )));
        match crate::jobs::mail::Mailer::new(
            config.smtp_url.as_deref(),
            config.data_dir.join("outbox"),
        ) {
            Ok(mailer) => {
                let jobs = crate::jobs::Jobs {
                    service: self.clone(),
                    mailer,
                    http: crate::jobs::webhooks::client(),
                    public_url: config.public_url.clone(),
                    mail_from: config.mail_from.clone(),
                };
                tasks.push(tokio::spawn(jobs.run(config.job_interval, stopped.clone())));
            }
            Err(e) => {
                tracing::error!(error = %e, "expiry notices and webhooks are off: the mail settings are unusable")
            }
        }
        tasks.push(tokio::spawn(crate::jobs::audit_sinks::run(
            self.clone(),
            crate::jobs::audit_sinks::SinkRunner::new(
                crate::jobs::webhooks::client(),
                config.data_dir.join("audit"),
            ),
            stopped.clone(),
        )));
        let wake = Arc::new(tokio::sync::Notify::new());
        let follow = crate::verify::changes::follow(
            self.verifier.clone(),
            self.store.clone(),
            self.clock.clone(),
            wake.clone(),
        );
        let store = self.store.clone();
        let mut stop_follow = stopped;
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = follow => {},
                _ = store.watch_changes(wake) => {},
                _ = stop_follow.changed() => {},
            }
        }));
        tasks
    }

    /// Returns this node's expired leases of limits and credits, writes what the
    /// counter engine keeps behind, and (every minute or so) forgets full buckets.
    async fn maintain_counters(&self) -> Result<(), keyhaven_store::StoreError> {
        let now = self.now().timestamp_millis();
        let meter = &self.verifier.meter;
        meter.maintain(now).await?;
        meter.engine().flush().await?;
        if now.rem_euclid(60_000) < 1_000 {
            meter.engine().prune(now).await?;
        }
        Ok(())
    }

    /// Claims and queues the credit notices this node's meter noted; a failure other
    /// than the database's is logged here (the notes are kept for the next round).
    async fn credit_notices(&self) -> Result<(), keyhaven_store::StoreError> {
        match crate::jobs::credits::notify_signals(self).await {
            Ok(_) => Ok(()),
            Err(crate::ServiceError::Store(e)) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "cannot send credit notices; retrying next round");
                Ok(())
            }
        }
    }

    /// What a graceful stop must do after the background tasks ended: give back this
    /// node's leases of limits and credits, write the last usage counts (retrying a few
    /// times) and close the database pool.
    pub async fn finish(&self) {
        for attempt in 1..=5u64 {
            let now = self.now().timestamp_millis();
            match self.verifier.meter.release_all(now).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, attempt, "cannot give back the leased limits and credits");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        }
        for attempt in 1..=5u64 {
            match self.verifier.flush_usage().await {
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, attempt, "cannot write the last usage counts");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        }
        self.store.close().await;
    }
}

/// Runs `flush` every second until `stopped`, then once more (with retries), so what
/// was counted in memory reaches the database on a graceful stop.
async fn every_second<F, Fut>(
    service: Service,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    what: &'static str,
    flush: F,
) where
    F: Fn(Service) -> Fut,
    Fut: std::future::Future<Output = Result<(), keyhaven_store::StoreError>>,
{
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stopped.borrow() {
            break;
        }
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = flush(service.clone()).await {
                    tracing::warn!(error = %e, what, "cannot write to the database; keeping it for the next flush");
                }
            }
            changed = stopped.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    for attempt in 1..=5u64 {
        match flush(service.clone()).await {
            Ok(()) => break,
            Err(e) => {
                tracing::error!(error = %e, attempt, what, "cannot write to the database on the way out");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
    }
}

/// Reads again, every half minute, the cached key records older than their maximum age
/// (see [`crate::verify::Verifier::recheck_stale`]), until `stopped`.
async fn recheck_cached_keys(service: Service, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stopped.borrow() {
            break;
        }
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = service.verifier.recheck_stale().await {
                    tracing::warn!(error = %e, "cannot re-check cached keys; keeping them for the next round");
                }
            }
            changed = stopped.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
}

/// Loads or generates the OAuth signing key at start, so the first token request does
/// not wait for it.
async fn warm_signing_key(service: Service, mut stopped: tokio::sync::watch::Receiver<bool>) {
    tokio::select! {
        r = crate::oauth::signing_key(&service) => {
            if let Err(e) = r {
                tracing::error!(error = %e, "cannot load the OAuth signing key; token requests will retry");
            }
        }
        _ = stopped.wait_for(|s| *s) => {}
    }
}
