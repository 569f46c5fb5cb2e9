//! The audit log, hash-chained per organization.
//!
//! `audit_heads` holds each organization's last (seq, hash). Appending first bumps that
//! row, which locks it (PostgreSQL) or holds the write lock (SQLite), so concurrent
//! appends from several nodes queue up instead of forking the chain.

use async_trait::async_trait;
use keyhaven_core::audit::{AuditDraft, AuditEntry, Outcome, GENESIS_HASH};
use keyhaven_core::id::Id;
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::time::Timestamp;
use sqlx::any::AnyRow;

use crate::error::{StoreError, StoreResult};
use crate::row::{bind_all, id, int, json, listing, ms, opt_text, text, time, to_json, Arg, Where};
use crate::sql::SqlTx;
use crate::{Listing, Page};

/// Filters of `GET /audit-events`, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries by this actor.
    pub actor_id: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only entries about this target.
    pub target_id: Option<String>,
    /// Only this outcome.
    pub outcome: Option<Outcome>,
    /// At or after.
    pub since: Option<Timestamp>,
    /// Before.
    pub until: Option<Timestamp>,
}

/// Storage of the audit log. Entries are only ever appended.
#[async_trait]
pub trait Audit {
    /// Appends `draft` to the organization's chain.
    async fn append_audit(
        &mut self,
        org_id: &Id,
        id: Id,
        at: Timestamp,
        draft: AuditDraft,
    ) -> StoreResult<AuditEntry>;
    /// A page of entries, newest first.
    async fn list_audit(
        &mut self,
        org_id: &Id,
        filter: &AuditFilter,
        page: &Page,
    ) -> StoreResult<Listing<AuditEntry>>;
    /// The whole chain of an organization, oldest first.
    async fn audit_chain(&mut self, org_id: &Id) -> StoreResult<Vec<AuditEntry>>;
    /// The recorded end of the chain: (seq, hash).
    async fn audit_head(&mut self, org_id: &Id) -> StoreResult<Option<(i64, String)>>;
    /// The MAC stored with the head (`None` when there is no head or no MAC yet).
    async fn audit_head_mac(&mut self, org_id: &Id) -> StoreResult<Option<String>>;
    /// Stores the head's MAC, if the head is still at `seq`; returns whether it was.
    async fn seal_audit_head(&mut self, org_id: &Id, seq: i64, mac: &str) -> StoreResult<bool>;
}

fn principal(r: &AnyRow, prefix: &str) -> StoreResult<Option<Principal>> {
    let kind = opt_text(r, &format!("{prefix}_type"))?;
    match kind {
        None => Ok(None),
        Some(k) => Ok(Some(Principal {
            kind: PrincipalKind::parse(&k)
                .ok_or_else(|| StoreError::Corrupt(format!("{prefix} type {k}")))?,
            id: opt_text(r, &format!("{prefix}_id"))?.unwrap_or_default(),
            name: opt_text(r, &format!("{prefix}_name"))?.unwrap_or_default(),
        })),
    }
}

pub(crate) fn from_row(r: &AnyRow) -> StoreResult<AuditEntry> {
    let outcome = text(r, "outcome")?;
    Ok(AuditEntry {
        id: id(r, "id")?,
        org_id: id(r, "org_id")?,
        seq: int(r, "seq")?,
        at: time(r, "at")?,
        draft: AuditDraft {
            actor: principal(r, "actor")?.ok_or_else(|| StoreError::Corrupt("actor".into()))?,
            action: text(r, "action")?,
            target: principal(r, "target")?,
            outcome: Outcome::parse(&outcome)
                .ok_or_else(|| StoreError::Corrupt(format!("outcome {outcome}")))?,
            ip: opt_text(r, "ip")?,
            user_agent: opt_text(r, "user_agent")?,
            request_id: opt_text(r, "request_id")?,
            changes: json(r, "changes")?,
        },
        prev_hash: text(r, "prev_hash")?,
        hash: text(r, "hash")?,
    })
}

#[async_trait]
impl Audit for SqlTx {
    async fn append_audit(
        &mut self,
        org_id: &Id,
        entry_id: Id,
        at: Timestamp,
        draft: AuditDraft,
    ) -> StoreResult<AuditEntry> {
        sqlx::query("INSERT INTO audit_heads (org_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (org_id) DO NOTHING")
            .bind(org_id.as_str())
            .bind(GENESIS_HASH)
            .execute(&mut *self.tx)
            .await?;
        let head = sqlx::query(
            "UPDATE audit_heads SET seq = seq + 1 WHERE org_id = $1 RETURNING seq, hash",
        )
        .bind(org_id.as_str())
        .fetch_one(&mut *self.tx)
        .await?;
        let seq = int(&head, "seq")?;
        let prev = text(&head, "hash")?;
        let e = AuditEntry::chain(entry_id, org_id.clone(), seq, at, draft, prev);
        let d = &e.draft;
        sqlx::query(
            "INSERT INTO audit_events (id, org_id, seq, at, actor_type, actor_id, actor_name, action, target_type, \
             target_id, target_name, outcome, ip, user_agent, request_id, changes, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(e.id.as_str())
        .bind(org_id.as_str())
        .bind(seq)
        .bind(ms(&e.at))
        .bind(d.actor.kind.as_str())
        .bind(&d.actor.id)
        .bind(&d.actor.name)
        .bind(&d.action)
        .bind(d.target.as_ref().map(|t| t.kind.as_str().to_string()))
        .bind(d.target.as_ref().map(|t| t.id.clone()))
        .bind(d.target.as_ref().map(|t| t.name.clone()))
        .bind(d.outcome.as_str())
        .bind(d.ip.clone())
        .bind(d.user_agent.clone())
        .bind(d.request_id.clone())
        .bind(to_json(&d.changes))
        .bind(&e.prev_hash)
        .bind(&e.hash)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("UPDATE audit_heads SET hash = $2 WHERE org_id = $1")
            .bind(org_id.as_str())
            .bind(&e.hash)
            .execute(&mut *self.tx)
            .await?;
        Ok(e)
    }

    async fn list_audit(
        &mut self,
        org_id: &Id,
        f: &AuditFilter,
        page: &Page,
    ) -> StoreResult<Listing<AuditEntry>> {
        let mut w = Where::new();
        w.push("org_id = ?", Arg::Text(org_id.to_string()));
        if let Some(v) = &f.actor_id {
            w.push("actor_id = ?", Arg::Text(v.clone()));
        }
        if let Some(v) = &f.action {
            w.push("action = ?", Arg::Text(v.clone()));
        }
        if let Some(v) = &f.target_id {
            w.push("target_id = ?", Arg::Text(v.clone()));
        }
        if let Some(v) = f.outcome {
            w.push("outcome = ?", Arg::Text(v.as_str().into()));
        }
        if let Some(v) = &f.since {
            w.push("at >= ?", Arg::Int(ms(v)));
        }
        if let Some(v) = &f.until {
            w.push("at < ?", Arg::Int(ms(v)));
        }
        // The log's own order is `seq` (ids made in the same millisecond don't sort
        // in chain order); the cursor is the last entry's id, looked up in this
        // organization only (another organization's id gives an empty page).
        if let Some(c) = &page.cursor {
            w.args.push(Arg::Text(c.clone()));
            w.args.push(Arg::Text(org_id.to_string()));
            let n = w.args.len();
            w.clauses.push(format!(
                "seq < (SELECT a.seq FROM audit_events a WHERE a.id = ${} AND a.org_id = ${n})",
                n - 1
            ));
        }
        let limit = page.limit.clamp(1, 1000) + 1;
        w.args.push(Arg::Int(limit));
        let n = w.args.len();
        let sql = format!(
            "SELECT * FROM audit_events WHERE {} ORDER BY seq DESC LIMIT ${n}",
            w.clauses.join(" AND ")
        );
        let rows = bind_all(sqlx::query(&sql), w.args)
            .fetch_all(&mut *self.tx)
            .await?;
        let items = rows.iter().map(from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(listing(items, page, |e| e.id.to_string()))
    }

    async fn audit_chain(&mut self, org_id: &Id) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query("SELECT * FROM audit_events WHERE org_id = $1 ORDER BY seq")
            .bind(org_id.as_str())
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(from_row).collect()
    }

    async fn audit_head(&mut self, org_id: &Id) -> StoreResult<Option<(i64, String)>> {
        let row = sqlx::query("SELECT seq, hash FROM audit_heads WHERE org_id = $1")
            .bind(org_id.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| Ok((int(&r, "seq")?, text(&r, "hash")?)))
            .transpose()
    }

    async fn audit_head_mac(&mut self, org_id: &Id) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT mac FROM audit_heads WHERE org_id = $1")
            .bind(org_id.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(match row {
            Some(r) => opt_text(&r, "mac")?,
            None => None,
        })
    }

    async fn seal_audit_head(&mut self, org_id: &Id, seq: i64, mac: &str) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE audit_heads SET mac = $3 WHERE org_id = $1 AND seq = $2")
            .bind(org_id.as_str())
            .bind(seq)
            .bind(mac)
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}
