//! Storage for the credential lifecycle: webhook endpoints, their deliveries (the
//! outbox, written in the same transaction as the change that causes them) and expiry
//! notices.
//!
//! Work is claimed with a lease (`claimed_until`): a claim is an `UPDATE` whose `WHERE`
//! repeats the "not claimed" condition, so when two nodes race for the same row the
//! database lets only one of them change it (PostgreSQL re-checks the condition on the
//! locked row; SQLite has a single writer). Each claim also stores a random token, and
//! only the holder of the current token may renew or finish the row: a node whose lease
//! lapsed (and whose work another node took over) can neither send again nor overwrite
//! the outcome the other node recorded.

use async_trait::async_trait;
use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;
use sqlx::any::AnyRow;

use crate::error::StoreResult;
use crate::row::{
    bind_all, id, int, json, listing, ms, opt_int, opt_text, opt_time, text, time, to_json, Arg,
    Where,
};
use crate::sql::SqlTx;
use crate::{Listing, Page};

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// Its id.
    pub id: Id,
    /// Its organization.
    pub org_id: Id,
    /// Where events are POSTed.
    pub url: String,
    /// Event types it receives.
    pub events: Vec<String>,
    /// Free text.
    pub description: String,
    /// Whether it receives events.
    pub enabled: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// One event for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its id (also the `webhook-id` header).
    pub id: Id,
    /// Its organization.
    pub org_id: Id,
    /// The endpoint.
    pub endpoint_id: Id,
    /// e.g. `api_key.revoked`.
    pub event_type: String,
    /// The JSON body.
    pub payload: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// When the next attempt is due.
    pub next_attempt_at: Timestamp,
    /// HTTP status of the last attempt.
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the event happened.
    pub created_at: Timestamp,
    /// When it was delivered.
    pub delivered_at: Option<Timestamp>,
}

/// An expiry notice (one per key, expiry date and threshold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The key.
    pub key_id: Id,
    /// The expiry it is about (a regenerated key with a new date gets a new series).
    pub expires_at: Timestamp,
    /// `30d`, `7d`, `1d` or `expired`.
    pub threshold: String,
    /// The key's organization.
    pub org_id: Id,
    /// Email address; empty when the key has no human author.
    pub recipient: String,
    /// `pending`, `sent`, `skipped` or `no_recipient`.
    pub status: String,
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

/// Storage of webhooks, deliveries and expiry notices.
#[async_trait]
pub trait Lifecycle {
    /// Adds an endpoint.
    async fn insert_webhook(&mut self, w: &WebhookEndpoint) -> StoreResult<()>;
    /// One endpoint.
    async fn webhook(&mut self, org_id: &Id, id: &Id) -> StoreResult<Option<WebhookEndpoint>>;
    /// A page of endpoints.
    async fn list_webhooks(
        &mut self,
        org_id: &Id,
        page: &Page,
    ) -> StoreResult<Listing<WebhookEndpoint>>;
    /// Enabled endpoints of an organization.
    async fn enabled_webhooks(&mut self, org_id: &Id) -> StoreResult<Vec<WebhookEndpoint>>;
    /// Saves url, events, description, enabled and updated_at.
    async fn update_webhook(&mut self, w: &WebhookEndpoint) -> StoreResult<()>;
    /// Removes an endpoint (and its deliveries).
    async fn delete_webhook(&mut self, org_id: &Id, id: &Id) -> StoreResult<bool>;
    /// Queues a delivery.
    async fn insert_delivery(&mut self, d: &Delivery) -> StoreResult<()>;
    /// A page of an endpoint's deliveries, newest first.
    async fn list_deliveries(
        &mut self,
        endpoint_id: &Id,
        page: &Page,
    ) -> StoreResult<Listing<Delivery>>;
    /// Claims up to `limit` due deliveries until `lease_until` under `token`, taking
    /// endpoints in turn (each endpoint's oldest first) and leaving an endpoint alone
    /// once `per_endpoint` of its deliveries are claimed (in flight), so one slow
    /// receiver's backlog cannot fill every claim.
    async fn claim_deliveries(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
        per_endpoint: i64,
        token: &str,
    ) -> StoreResult<Vec<Delivery>>;
    /// Records an attempt's outcome (status, attempts, next time, error) and releases the
    /// claim, if `token` still holds it; false (and nothing changed) when it does not.
    async fn finish_delivery(&mut self, d: &Delivery, token: &str) -> StoreResult<bool>;
    /// Keys that may need a notice: not revoked, expiring before `until`, expired after
    /// `since`, and without a notice yet for the nearest threshold they crossed.
    /// `thresholds` are `(name, cutoff)` pairs, nearest first: a key has crossed `name`
    /// when it expires at or before `cutoff`; the last pair must be crossed by every key
    /// expiring before `until`.
    async fn keys_expiring(
        &mut self,
        since: Timestamp,
        until: Timestamp,
        thresholds: &[(String, Timestamp)],
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

fn webhook_row(r: &AnyRow) -> StoreResult<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: id(r, "id")?,
        org_id: id(r, "org_id")?,
        url: text(r, "url")?,
        events: json(r, "events")?,
        description: text(r, "description")?,
        enabled: int(r, "enabled")? != 0,
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
    })
}

fn delivery_row(r: &AnyRow) -> StoreResult<Delivery> {
    Ok(Delivery {
        id: id(r, "id")?,
        org_id: id(r, "org_id")?,
        endpoint_id: id(r, "endpoint_id")?,
        event_type: text(r, "event_type")?,
        payload: text(r, "payload")?,
        status: text(r, "status")?,
        attempts: int(r, "attempts")?,
        next_attempt_at: time(r, "next_attempt_at")?,
        last_status: opt_int(r, "last_status")?,
        last_error: opt_text(r, "last_error")?,
        created_at: time(r, "created_at")?,
        delivered_at: opt_time(r, "delivered_at")?,
    })
}

fn notice_row(r: &AnyRow) -> StoreResult<Notice> {
    Ok(Notice {
        key_id: id(r, "key_id")?,
        expires_at: time(r, "expires_at")?,
        threshold: text(r, "threshold")?,
        org_id: id(r, "org_id")?,
        recipient: text(r, "recipient")?,
        status: text(r, "status")?,
        attempts: int(r, "attempts")?,
        next_attempt_at: time(r, "next_attempt_at")?,
        last_error: opt_text(r, "last_error")?,
        created_at: time(r, "created_at")?,
        sent_at: opt_time(r, "sent_at")?,
    })
}

#[async_trait]
impl Lifecycle for SqlTx {
    async fn insert_webhook(&mut self, w: &WebhookEndpoint) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, org_id, url, events, description, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(w.id.as_str())
        .bind(w.org_id.as_str())
        .bind(&w.url)
        .bind(to_json(&w.events))
        .bind(&w.description)
        .bind(i64::from(w.enabled))
        .bind(ms(&w.created_at))
        .bind(ms(&w.updated_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn webhook(&mut self, org_id: &Id, wid: &Id) -> StoreResult<Option<WebhookEndpoint>> {
        let row = sqlx::query("SELECT * FROM webhook_endpoints WHERE org_id = $1 AND id = $2")
            .bind(org_id.as_str())
            .bind(wid.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(webhook_row).transpose()
    }

    async fn list_webhooks(
        &mut self,
        org_id: &Id,
        page: &Page,
    ) -> StoreResult<Listing<WebhookEndpoint>> {
        let mut w = Where::new();
        w.push("org_id = ?", Arg::Text(org_id.to_string()));
        let (sql, args) = w.finish(page, "id");
        let rows = bind_all(
            sqlx::query(&format!("SELECT * FROM webhook_endpoints WHERE {sql}")),
            args,
        )
        .fetch_all(&mut *self.tx)
        .await?;
        let items = rows
            .iter()
            .map(webhook_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(listing(items, page, |w| w.id.to_string()))
    }

    async fn enabled_webhooks(&mut self, org_id: &Id) -> StoreResult<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(
            "SELECT * FROM webhook_endpoints WHERE org_id = $1 AND enabled = 1 ORDER BY id",
        )
        .bind(org_id.as_str())
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(webhook_row).collect()
    }

    async fn update_webhook(&mut self, w: &WebhookEndpoint) -> StoreResult<()> {
        sqlx::query(
            "UPDATE webhook_endpoints SET url = $3, events = $4, description = $5, enabled = $6, updated_at = $7 \
             WHERE org_id = $1 AND id = $2",
        )
        .bind(w.org_id.as_str())
        .bind(w.id.as_str())
        .bind(&w.url)
        .bind(to_json(&w.events))
        .bind(&w.description)
        .bind(i64::from(w.enabled))
        .bind(ms(&w.updated_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_webhook(&mut self, org_id: &Id, wid: &Id) -> StoreResult<bool> {
        sqlx::query("DELETE FROM webhook_deliveries WHERE org_id = $1 AND endpoint_id = $2")
            .bind(org_id.as_str())
            .bind(wid.as_str())
            .execute(&mut *self.tx)
            .await?;
        let r = sqlx::query("DELETE FROM webhook_endpoints WHERE org_id = $1 AND id = $2")
            .bind(org_id.as_str())
            .bind(wid.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn insert_delivery(&mut self, d: &Delivery) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, org_id, endpoint_id, event_type, payload, status, attempts, \
             next_attempt_at, claimed_until, last_status, last_error, created_at, delivered_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11, $12)",
        )
        .bind(d.id.as_str())
        .bind(d.org_id.as_str())
        .bind(d.endpoint_id.as_str())
        .bind(&d.event_type)
        .bind(&d.payload)
        .bind(&d.status)
        .bind(d.attempts)
        .bind(ms(&d.next_attempt_at))
        .bind(d.last_status)
        .bind(d.last_error.clone())
        .bind(ms(&d.created_at))
        .bind(d.delivered_at.as_ref().map(ms))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn list_deliveries(
        &mut self,
        endpoint_id: &Id,
        page: &Page,
    ) -> StoreResult<Listing<Delivery>> {
        let mut w = Where::new();
        w.push("endpoint_id = ?", Arg::Text(endpoint_id.to_string()));
        let (sql, args) = w.finish(page, "id");
        let rows = bind_all(
            sqlx::query(&format!("SELECT * FROM webhook_deliveries WHERE {sql}")),
            args,
        )
        .fetch_all(&mut *self.tx)
        .await?;
        let items = rows
            .iter()
            .map(delivery_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(listing(items, page, |d| d.id.to_string()))
    }

    async fn claim_deliveries(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
        per_endpoint: i64,
        token: &str,
    ) -> StoreResult<Vec<Delivery>> {
        // `rn`: the delivery's place in its endpoint's queue; `busy`: the endpoint's
        // deliveries claimed right now. Ordering by `rn` first takes endpoints in turn.
        let rows = sqlx::query(
            "UPDATE webhook_deliveries SET claimed_until = $2, claim_token = $5 \
             WHERE id IN (SELECT c.id FROM ( \
                 SELECT d.id, d.next_attempt_at, \
                        ROW_NUMBER() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.id) AS rn, \
                        (SELECT COUNT(*) FROM webhook_deliveries f WHERE f.endpoint_id = d.endpoint_id \
                            AND f.status = 'pending' AND f.claimed_until > $1) AS busy \
                 FROM webhook_deliveries d \
                 WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND d.claimed_until <= $1) c \
               WHERE c.rn + c.busy <= $4 ORDER BY c.rn, c.next_attempt_at, c.id LIMIT $3) \
             AND status = 'pending' AND claimed_until <= $1 RETURNING *",
        )
        .bind(ms(&now))
        .bind(ms(&lease_until))
        .bind(limit)
        .bind(per_endpoint)
        .bind(token)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(delivery_row).collect()
    }

    async fn finish_delivery(&mut self, d: &Delivery, token: &str) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE webhook_deliveries SET status = $2, attempts = $3, next_attempt_at = $4, claimed_until = 0, \
             claim_token = NULL, last_status = $5, last_error = $6, delivered_at = $7 \
             WHERE id = $1 AND claim_token = $8",
        )
        .bind(d.id.as_str())
        .bind(&d.status)
        .bind(d.attempts)
        .bind(ms(&d.next_attempt_at))
        .bind(d.last_status)
        .bind(d.last_error.clone())
        .bind(d.delivered_at.as_ref().map(ms))
        .bind(token)
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn keys_expiring(
        &mut self,
        since: Timestamp,
        until: Timestamp,
        thresholds: &[(String, Timestamp)],
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
            q = q.bind(ms(cutoff)).bind(name.clone());
        }
        let rows = q.bind(last.0.clone()).fetch_all(&mut *self.tx).await?;
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
        .bind(&n.threshold)
        .bind(n.org_id.as_str())
        .bind(&n.recipient)
        .bind(&n.status)
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
        .bind(&n.threshold)
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
        .bind(&n.threshold)
        .bind(&n.status)
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
