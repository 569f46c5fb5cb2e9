//! The change log: every change that affects verification (a key, its owner, or an
//! organization's roles) is recorded in the same transaction as the change itself.
//! Each node's verification cache reads the log's recent rows about once a second and
//! drops what changed; on PostgreSQL a `NOTIFY` on [`CHANNEL`] wakes it at once.

use async_trait::async_trait;
use keyhaven_core::time::Timestamp;

use crate::backend::Backend;
use crate::error::StoreResult;
use crate::row::{int, ms, text};
use crate::sql::SqlTx;

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "keyhaven_changes";

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// One API key (ref: key id).
    Key,
    /// Everything owned by a user or service account (ref: owner id).
    Owner,
    /// Every key of an organization, e.g. after a role edit (ref: organization id).
    Organization,
}

impl ChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Key => "key",
            ChangeKind::Owner => "owner",
            ChangeKind::Organization => "org",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "key" => Some(ChangeKind::Key),
            "owner" => Some(ChangeKind::Owner),
            "org" => Some(ChangeKind::Organization),
            _ => None,
        }
    }
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Position in the log.
    pub seq: i64,
    /// What changed.
    pub kind: ChangeKind,
    /// The id of what changed.
    pub ref_id: String,
}

/// Storage of the change log.
#[async_trait]
pub trait Changes {
    /// Records a change (and notifies listeners on PostgreSQL when the transaction commits).
    async fn record_change(
        &mut self,
        kind: ChangeKind,
        ref_id: &str,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Changes recorded at or after `since` (by the writer's clock), and every change
    /// after sequence number `after_seq` whatever its time, so a writer whose clock is
    /// behind the reader's is still seen.
    async fn changes_since(&mut self, since: Timestamp, after_seq: i64)
        -> StoreResult<Vec<Change>>;
    /// Forgets changes older than `before`.
    async fn prune_changes(&mut self, before: Timestamp) -> StoreResult<()>;
}

#[async_trait]
impl Changes for SqlTx {
    async fn record_change(
        &mut self,
        kind: ChangeKind,
        ref_id: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO changes (kind, ref_id, at) VALUES ($1, $2, $3)")
            .bind(kind.as_str())
            .bind(ref_id)
            .bind(ms(&at))
            .execute(&mut *self.tx)
            .await?;
        if self.backend == Backend::Postgres {
            sqlx::query(&format!("NOTIFY {CHANNEL}"))
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn changes_since(
        &mut self,
        since: Timestamp,
        after_seq: i64,
    ) -> StoreResult<Vec<Change>> {
        let rows = sqlx::query(
            "SELECT seq, kind, ref_id FROM changes WHERE at >= $1 OR seq > $2 ORDER BY seq",
        )
        .bind(ms(&since))
        .bind(after_seq)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if let Some(kind) = ChangeKind::parse(&text(&r, "kind")?) {
                out.push(Change {
                    seq: int(&r, "seq")?,
                    kind,
                    ref_id: text(&r, "ref_id")?,
                });
            }
        }
        Ok(out)
    }

    async fn prune_changes(&mut self, before: Timestamp) -> StoreResult<()> {
        sqlx::query("DELETE FROM changes WHERE at < $1")
            .bind(ms(&before))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}
