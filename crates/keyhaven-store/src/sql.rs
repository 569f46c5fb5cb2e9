//! The SQL implementation of [`Store`], shared by SQLite and PostgreSQL.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Any, AnyPool, Transaction};

use crate::backend::Backend;
use crate::error::StoreResult;
use crate::{Store, Tx};

/// A store on SQLite or PostgreSQL.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// Kept for PostgreSQL's `LISTEN`, which needs a connection of its own.
    url: Arc<str>,
}

/// Opens the database at `url` (`sqlite://…` or `postgres://…`) and applies pending
/// migrations when `migrate` is set.
pub async fn connect(url: &str, migrate: bool) -> StoreResult<Arc<dyn Store>> {
    let store = SqlStore::connect(url).await?;
    if migrate {
        store.migrate().await?;
    }
    Ok(Arc::new(store))
}

impl SqlStore {
    /// Opens a pool without migrating.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let backend = Backend::from_url(url)?;
        let pool = backend.connect(url).await?;
        Ok(SqlStore {
            pool,
            backend,
            url: Arc::from(url),
        })
    }

    /// The underlying pool, for backend-specific features.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// A transaction on a [`SqlStore`].
pub(crate) struct SqlTx {
    pub(crate) tx: Transaction<'static, Any>,
    pub(crate) backend: Backend,
    /// Opened with [`Store::begin`]: rows read to be rewritten are locked on PostgreSQL
    /// (SQLite's `BEGIN IMMEDIATE` already serialises writers).
    pub(crate) write: bool,
}

impl SqlTx {
    /// `FOR UPDATE OF <alias>` when this transaction writes on PostgreSQL, else nothing:
    /// a row read in order to be rewritten must not change underneath (read committed
    /// would let a concurrent update, e.g. a key's `remaining` decrement, be overwritten).
    pub(crate) fn lock_for_update(&self, alias: &str) -> String {
        if self.write && self.backend == Backend::Postgres {
            format!(" FOR UPDATE OF {alias}")
        } else {
            String::new()
        }
    }
}

#[async_trait]
impl Tx for SqlTx {
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        let tx = self.pool.begin_with(self.backend.begin_write()).await?;
        Ok(Box::new(SqlTx {
            tx,
            backend: self.backend,
            write: true,
        }))
    }

    async fn read(&self) -> StoreResult<Box<dyn Tx>> {
        let tx = self.pool.begin_with(self.backend.begin_read()).await?;
        Ok(Box::new(SqlTx {
            tx,
            backend: self.backend,
            write: false,
        }))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self) -> StoreResult<()> {
        self.backend.migrator().run(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn watch_changes(&self, wake: Arc<tokio::sync::Notify>) {
        if self.backend != Backend::Postgres {
            // One node per SQLite database: every change is applied where it is made.
            return std::future::pending().await;
        }
        loop {
            match sqlx::postgres::PgListener::connect(&self.url).await {
                Ok(mut l) => {
                    if let Err(e) = l.listen(crate::CHANNEL).await {
                        tracing::warn!(error = %e, "cannot LISTEN for changes");
                    } else {
                        loop {
                            match l.recv().await {
                                Ok(_) => wake.notify_one(),
                                Err(e) => {
                                    tracing::warn!(error = %e, "change notifications interrupted");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot connect for change notifications"),
            }
            // Missed notifications are caught by the follower's periodic poll.
            wake.notify_one();
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}
