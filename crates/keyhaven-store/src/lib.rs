//! Keyhaven's persistence.
//!
//! The server talks to storage through the [`Store`] trait: it opens a transaction
//! ([`Store::begin`] for changes, [`Store::read`] for queries) and calls the per-resource
//! traits that [`Tx`] gathers — [`Organizations`], [`Users`], [`Roles`], … — then commits.
//! Every mutation and its audit entry go through the same transaction, so a crash can't
//! leave an action unaudited.
//!
//! Two backends implement it: SQLite (the embedded default: one file, WAL, foreign keys
//! on, writers serialized with `BEGIN IMMEDIATE`) and PostgreSQL (several stateless nodes
//! on one database). Both run the same portable SQL through sqlx's `Any` driver — times
//! are Unix milliseconds, lists are JSON text — and differ only where the databases do:
//! connection settings, the statement that opens a write transaction, and their own
//! versioned migrations (`migrations/sqlite`, `migrations/postgres`). One conformance
//! suite (`tests/conformance.rs`) runs against both.

mod analytics;
mod api_keys;
mod audit;
mod audit_sinks;
mod backend;
mod changes;
mod counters;
mod credentials;
mod deliveries;
mod error;
mod notices;
mod oauth;
mod organizations;
mod recent;
mod roles;
mod row;
mod service_accounts;
mod sessions;
mod shared_secrets;
mod sort;
mod sql;
mod usage;
mod users;
mod webhooks;

#[cfg(feature = "testing")]
pub mod testing;

pub use analytics::{
    Analytics, AnalyticsPage, AnalyticsQuery, AnalyticsRow, CodeFilter, Dimension, Granularity,
    TopKey, VerificationCount, DAY_MS, HOUR_MS,
};
pub use api_keys::{
    pending_digest, ApiKeyFilter, ApiKeys, KeyCounts, KeyDigests, KeyMatch, PendingHash,
};
pub use audit::{Audit, AuditFilter};
pub use audit_sinks::{AuditSink, AuditSinks};
pub use backend::Backend;
pub use changes::{Change, ChangeKind, Changes, CHANNEL};
pub use counters::{Counters, CreditChange, CreditLease, CreditNotice, DueRefill};
pub use credentials::Credentials;
pub use deliveries::{Deliveries, Delivery, DeliveryStatus};
pub use error::{StoreError, StoreResult};
pub use notices::{ExpiringKey, Notice, NoticeStatus, NoticeThreshold, Notices};
pub use oauth::{OAuth, SigningKeyRecord};
pub use organizations::Organizations;
pub use recent::{RecentVerification, RecentVerifications};
pub use roles::Roles;
pub use service_accounts::{ServiceAccountFilter, ServiceAccounts};
pub use sessions::{Session, Sessions};
pub use shared_secrets::{SharedSecretRecord, SharedSecrets};
pub use sort::{Sort, SortDir, SortKey};
pub use sql::{connect, SqlStore};
pub use usage::{Usage, UsageCount};
pub use users::{UserFilter, Users};
pub use webhooks::{WebhookEndpoint, Webhooks};

use async_trait::async_trait;

/// A page request: at most `limit` items after `cursor` (the last id of the page before).
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// 1..=100.
    pub limit: i64,
    /// The id the previous page ended with.
    pub cursor: Option<String>,
}

/// One page of results, newest first.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    /// The items.
    pub items: Vec<T>,
    /// Whether another page follows.
    pub has_more: bool,
    /// The cursor for the next page (the last item's id) when there is one.
    pub next_cursor: Option<String>,
}

/// A database transaction offering every storage operation. Dropping it without
/// [`Tx::commit`] rolls it back.
#[async_trait]
pub trait Tx:
    Organizations
    + Users
    + Roles
    + Sessions
    + ServiceAccounts
    + ApiKeys
    + Credentials
    + Audit
    + AuditSinks
    + SharedSecrets
    + Usage
    + Analytics
    + RecentVerifications
    + Changes
    + Webhooks
    + Deliveries
    + Notices
    + OAuth
    + Counters
    + Send
{
    /// Makes the transaction's changes durable.
    async fn commit(self: Box<Self>) -> StoreResult<()>;

    /// The union of the permissions of the roles named `roles` in `org_id` (unknown
    /// names grant nothing).
    async fn role_permissions(
        &mut self,
        org_id: &keyhaven_core::id::Id,
        roles: &[String],
    ) -> StoreResult<keyhaven_core::permission::PermissionSet> {
        let mut out = keyhaven_core::permission::PermissionSet::new();
        for name in roles {
            if let Some(r) = self.role(org_id, name).await? {
                out.extend(r.permissions);
            }
        }
        Ok(out)
    }

    /// A key's effective access ([`keyhaven_core::api_key::effective_access`]) from
    /// its roles and its owner as stored now.
    async fn key_access(
        &mut self,
        key: &keyhaven_core::api_key::ApiKey,
    ) -> StoreResult<keyhaven_core::api_key::KeyAccess> {
        use keyhaven_core::api_key::OwnerState;
        use keyhaven_core::principal::PrincipalKind;
        let roles = self.role_permissions(&key.org_id, &key.roles).await?;
        let owner_id = keyhaven_core::id::Id::from_trusted(key.owner.id.clone());
        let owner = match key.owner.kind {
            PrincipalKind::User => match self.user(&key.org_id, &owner_id).await? {
                Some(u) => {
                    let held = self.role_permissions(&key.org_id, &u.roles).await?;
                    OwnerState::User(Some((
                        u.status == keyhaven_core::user::UserStatus::Active,
                        held,
                    )))
                }
                None => OwnerState::User(None),
            },
            PrincipalKind::ServiceAccount => {
                OwnerState::ServiceAccount(self.service_account(&key.org_id, &owner_id).await?.map(
                    |a| a.status == keyhaven_core::service_account::ServiceAccountStatus::Active,
                ))
            }
            _ => OwnerState::Other,
        };
        Ok(keyhaven_core::api_key::effective_access(key, roles, &owner))
    }
}

/// A database: opens transactions, answers health checks.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which database this is.
    fn backend(&self) -> Backend;
    /// Opens a transaction that may write. On SQLite it holds the write lock from the
    /// start, so read-then-write sequences never fail to upgrade.
    async fn begin(&self) -> StoreResult<Box<dyn Tx>>;
    /// Opens a transaction for reading only (a consistent snapshot).
    async fn read(&self) -> StoreResult<Box<dyn Tx>>;
    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// Closes the connection pool.
    async fn close(&self);
    /// Never returns: wakes `wake` whenever another node records a change (PostgreSQL
    /// `LISTEN`, reconnecting after errors, with a wake after each reconnect so nothing
    /// missed waits for the next poll). On SQLite there are no other nodes, so it only waits.
    async fn watch_changes(&self, wake: std::sync::Arc<tokio::sync::Notify>);
}
