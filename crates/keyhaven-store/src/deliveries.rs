//! Webhook deliveries: the outbox, written in the same transaction as the change that
//! causes them, and claimed by the delivery job.
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

use crate::error::{StoreError, StoreResult};
use crate::row::{
    bind_all, id, int, listing, ms, opt_int, opt_text, opt_time, text, time, Arg, Where,
};
use crate::sql::SqlTx;
use crate::{Listing, Page};

/// Where a delivery stands; stored as its [`DeliveryStatus::as_str`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// The receiver accepted it.
    Succeeded,
    /// Given up on (retries exhausted, or the endpoint is gone or disabled).
    Failed,
}

impl DeliveryStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Where it stands.
    pub status: DeliveryStatus,
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

/// Storage of webhook deliveries.
#[async_trait]
pub trait Deliveries {
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
}

fn delivery_row(r: &AnyRow) -> StoreResult<Delivery> {
    let status = text(r, "status")?;
    Ok(Delivery {
        id: id(r, "id")?,
        org_id: id(r, "org_id")?,
        endpoint_id: id(r, "endpoint_id")?,
        event_type: text(r, "event_type")?,
        payload: text(r, "payload")?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status}")))?,
        attempts: int(r, "attempts")?,
        next_attempt_at: time(r, "next_attempt_at")?,
        last_status: opt_int(r, "last_status")?,
        last_error: opt_text(r, "last_error")?,
        created_at: time(r, "created_at")?,
        delivered_at: opt_time(r, "delivered_at")?,
    })
}

#[async_trait]
impl Deliveries for SqlTx {
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
        .bind(d.status.as_str())
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
        .bind(d.status.as_str())
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
}
