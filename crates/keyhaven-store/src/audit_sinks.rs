//! Audit sinks: where an organization's audit log is streamed, and how far each got.
//!
//! A sink's cursor (`cursor_seq`, the last entry delivered, 0 for none) lives in its row,
//! so it survives restarts. One node at a time delivers a sink: it claims the row with a
//! lease (`claimed_until`) and a random token, the same way webhook deliveries are claimed
//! (see `deliveries.rs`): the claim is an `UPDATE` whose `WHERE` repeats "not claimed", and
//! only the holder of the current token may move the cursor, renew or release. A node
//! whose lease lapsed may have sent a batch again (delivery is at least once), but can
//! never move the cursor of the node that took over.

use async_trait::async_trait;
use keyhaven_core::audit::AuditEntry;
use keyhaven_core::audit_sink::SinkTarget;
use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;
use sqlx::any::AnyRow;

use crate::error::{StoreError, StoreResult};
use crate::row::{bind_all, id, int, listing, ms, opt_text, opt_time, text, time, Arg, Where};
use crate::sql::SqlTx;
use crate::{Listing, Page};

/// A sink and its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSink {
    /// Its id.
    pub id: Id,
    /// Its organization.
    pub org_id: Id,
    /// Where events go.
    pub target: SinkTarget,
    /// Free text.
    pub description: String,
    /// Whether it delivers.
    pub enabled: bool,
    /// `seq` of the last entry delivered (0: none yet).
    pub cursor_seq: i64,
    /// `hash` of that entry.
    pub cursor_hash: Option<String>,
    /// When a batch was last delivered.
    pub last_delivered_at: Option<Timestamp>,
    /// Why the last failed attempt failed.
    pub last_error: Option<String>,
    /// When it failed.
    pub last_error_at: Option<Timestamp>,
    /// Failed attempts since the last success.
    pub failures: i64,
    /// No attempt before this time (backoff after failures).
    pub next_attempt_at: Timestamp,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change of its settings.
    pub updated_at: Timestamp,
}

/// Storage of audit sinks.
#[async_trait]
pub trait AuditSinks {
    /// Adds a sink.
    async fn insert_audit_sink(&mut self, s: &AuditSink) -> StoreResult<()>;
    /// One sink.
    async fn audit_sink(&mut self, org_id: &Id, id: &Id) -> StoreResult<Option<AuditSink>>;
    /// A page of an organization's sinks, newest first.
    async fn list_audit_sinks(
        &mut self,
        org_id: &Id,
        page: &Page,
    ) -> StoreResult<Listing<AuditSink>>;
    /// Saves target, description, enabled, failures, next_attempt_at and updated_at.
    async fn update_audit_sink(&mut self, s: &AuditSink) -> StoreResult<()>;
    /// Removes a sink; whether it existed.
    async fn delete_audit_sink(&mut self, org_id: &Id, id: &Id) -> StoreResult<bool>;
    /// Whether [`AuditSinks::claim_audit_sinks`] would find something now (a read, so an
    /// idle poll takes no write lock).
    async fn audit_sinks_due(&mut self, now: Timestamp) -> StoreResult<bool>;
    /// Claims up to `limit` enabled sinks that are due (`next_attempt_at` passed), not
    /// claimed by anyone, and behind their organization's chain head, until
    /// `lease_until` under `token`.
    async fn claim_audit_sinks(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
        token: &str,
    ) -> StoreResult<Vec<AuditSink>>;
    /// Moves the cursor to the entry (`seq`, `hash`) delivered at `at`, clears the
    /// failure count and renews the lease to `lease_until` — if `token` still holds the
    /// sink and the cursor does not move back. Whether it did.
    async fn advance_audit_sink(
        &mut self,
        id: &Id,
        token: &str,
        seq: i64,
        hash: &str,
        at: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<bool>;
    /// Records a failed attempt (error, when, the next attempt's time) and releases the
    /// claim, if `token` holds it.
    async fn fail_audit_sink(
        &mut self,
        id: &Id,
        token: &str,
        error: &str,
        at: Timestamp,
        next_attempt_at: Timestamp,
    ) -> StoreResult<bool>;
    /// Releases the claim, if `token` holds it.
    async fn release_audit_sink(&mut self, id: &Id, token: &str) -> StoreResult<bool>;
    /// Up to `limit` entries of the organization's chain after `after_seq`, in order.
    async fn audit_after(
        &mut self,
        org_id: &Id,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>>;
}

fn sink_row(r: &AnyRow) -> StoreResult<AuditSink> {
    let raw = text(r, "target")?;
    let target: SinkTarget = serde_json::from_str(&raw)
        .map_err(|e| StoreError::Corrupt(format!("audit sink target: {e}")))?;
    Ok(AuditSink {
        id: id(r, "id")?,
        org_id: id(r, "org_id")?,
        target,
        description: text(r, "description")?,
        enabled: int(r, "enabled")? != 0,
        cursor_seq: int(r, "cursor_seq")?,
        cursor_hash: opt_text(r, "cursor_hash")?,
        last_delivered_at: opt_time(r, "last_delivered_at")?,
        last_error: opt_text(r, "last_error")?,
        last_error_at: opt_time(r, "last_error_at")?,
        failures: int(r, "failures")?,
        next_attempt_at: time(r, "next_attempt_at")?,
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
    })
}

fn target_json(t: &SinkTarget) -> String {
    serde_json::to_string(t).unwrap_or_default()
}

#[async_trait]
impl AuditSinks for SqlTx {
    async fn insert_audit_sink(&mut self, s: &AuditSink) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_sinks (id, org_id, kind, target, description, enabled, cursor_seq, cursor_hash, \
             last_delivered_at, last_error, last_error_at, failures, next_attempt_at, claimed_until, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0, $14, $15)",
        )
        .bind(s.id.as_str())
        .bind(s.org_id.as_str())
        .bind(s.target.kind())
        .bind(target_json(&s.target))
        .bind(&s.description)
        .bind(i64::from(s.enabled))
        .bind(s.cursor_seq)
        .bind(s.cursor_hash.clone())
        .bind(s.last_delivered_at.as_ref().map(ms))
        .bind(s.last_error.clone())
        .bind(s.last_error_at.as_ref().map(ms))
        .bind(s.failures)
        .bind(ms(&s.next_attempt_at))
        .bind(ms(&s.created_at))
        .bind(ms(&s.updated_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn audit_sink(&mut self, org_id: &Id, sid: &Id) -> StoreResult<Option<AuditSink>> {
        let row = sqlx::query("SELECT * FROM audit_sinks WHERE org_id = $1 AND id = $2")
            .bind(org_id.as_str())
            .bind(sid.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(sink_row).transpose()
    }

    async fn list_audit_sinks(
        &mut self,
        org_id: &Id,
        page: &Page,
    ) -> StoreResult<Listing<AuditSink>> {
        let mut w = Where::new();
        w.push("org_id = ?", Arg::Text(org_id.to_string()));
        let (sql, args) = w.finish(page, "id");
        let rows = bind_all(
            sqlx::query(&format!("SELECT * FROM audit_sinks WHERE {sql}")),
            args,
        )
        .fetch_all(&mut *self.tx)
        .await?;
        let items = rows.iter().map(sink_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(listing(items, page, |s| s.id.to_string()))
    }

    async fn update_audit_sink(&mut self, s: &AuditSink) -> StoreResult<()> {
        sqlx::query(
            "UPDATE audit_sinks SET target = $3, description = $4, enabled = $5, failures = $6, \
             next_attempt_at = $7, updated_at = $8 WHERE org_id = $1 AND id = $2",
        )
        .bind(s.org_id.as_str())
        .bind(s.id.as_str())
        .bind(target_json(&s.target))
        .bind(&s.description)
        .bind(i64::from(s.enabled))
        .bind(s.failures)
        .bind(ms(&s.next_attempt_at))
        .bind(ms(&s.updated_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_audit_sink(&mut self, org_id: &Id, sid: &Id) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM audit_sinks WHERE org_id = $1 AND id = $2")
            .bind(org_id.as_str())
            .bind(sid.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn audit_sinks_due(&mut self, now: Timestamp) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM audit_sinks s JOIN audit_heads h ON h.org_id = s.org_id \
             WHERE s.enabled = 1 AND s.next_attempt_at <= $1 AND s.claimed_until <= $1 \
               AND h.seq > s.cursor_seq",
        )
        .bind(ms(&now))
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(int(&row, "n")? > 0)
    }

    async fn claim_audit_sinks(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
        token: &str,
    ) -> StoreResult<Vec<AuditSink>> {
        let rows = sqlx::query(
            "UPDATE audit_sinks SET claimed_until = $2, claim_token = $4 \
             WHERE id IN (SELECT s.id FROM audit_sinks s JOIN audit_heads h ON h.org_id = s.org_id \
                 WHERE s.enabled = 1 AND s.next_attempt_at <= $1 AND s.claimed_until <= $1 \
                   AND h.seq > s.cursor_seq \
                 ORDER BY s.next_attempt_at, s.id LIMIT $3) \
             AND enabled = 1 AND claimed_until <= $1 RETURNING *",
        )
        .bind(ms(&now))
        .bind(ms(&lease_until))
        .bind(limit)
        .bind(token)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(sink_row).collect()
    }

    async fn advance_audit_sink(
        &mut self,
        sid: &Id,
        token: &str,
        seq: i64,
        hash: &str,
        at: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE audit_sinks SET cursor_seq = $3, cursor_hash = $4, last_delivered_at = $5, \
             failures = 0, claimed_until = $6 WHERE id = $1 AND claim_token = $2 AND cursor_seq <= $3",
        )
        .bind(sid.as_str())
        .bind(token)
        .bind(seq)
        .bind(hash)
        .bind(ms(&at))
        .bind(ms(&lease_until))
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn fail_audit_sink(
        &mut self,
        sid: &Id,
        token: &str,
        error: &str,
        at: Timestamp,
        next_attempt_at: Timestamp,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE audit_sinks SET failures = failures + 1, last_error = $3, last_error_at = $4, \
             next_attempt_at = $5, claimed_until = 0, claim_token = NULL WHERE id = $1 AND claim_token = $2",
        )
        .bind(sid.as_str())
        .bind(token)
        .bind(error)
        .bind(ms(&at))
        .bind(ms(&next_attempt_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn release_audit_sink(&mut self, sid: &Id, token: &str) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE audit_sinks SET claimed_until = 0, claim_token = NULL WHERE id = $1 AND claim_token = $2",
        )
        .bind(sid.as_str())
        .bind(token)
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn audit_after(
        &mut self,
        org_id: &Id,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_events WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(org_id.as_str())
        .bind(after_seq)
        .bind(limit.max(1))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(crate::audit::from_row).collect()
    }
}
