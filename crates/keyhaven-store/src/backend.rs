//! What differs between the two databases: connection settings, the statement that
//! opens a write transaction, and the migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

use crate::error::{StoreError, StoreResult};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// How long a PostgreSQL request waits for a connection before the database counts as
/// unavailable.
pub const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The database behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default.
    Sqlite,
    /// For several nodes on one database.
    Postgres,
}

impl Backend {
    /// Recognises the backend from a database URL.
    pub fn from_url(url: &str) -> StoreResult<Self> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Config(
                "database URL must start with sqlite:// or postgres://".into(),
            ))
        }
    }

    /// The statement that opens a transaction that may write.
    pub(crate) fn begin_write(self) -> &'static str {
        match self {
            // Take the write lock up front: a deferred transaction that reads first can
            // fail to upgrade when another connection wrote in between.
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// The statement that opens a read-only transaction.
    pub(crate) fn begin_read(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN READ ONLY",
        }
    }

    pub(crate) fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Opens a connection pool with this backend's settings.
    pub(crate) async fn connect(self, url: &str) -> StoreResult<AnyPool> {
        sqlx::any::install_default_drivers();
        let url = match self {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let opts = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Config(format!("database URL is not valid: {e}")))?;
        if self == Backend::Postgres {
            // One direct attempt first, so an unreachable server is reported with its
            // real cause rather than as a pool timeout.
            use sqlx::Connection;
            match tokio::time::timeout(
                Duration::from_secs(10),
                sqlx::AnyConnection::connect_with(&opts),
            )
            .await
            {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                }
                Ok(Err(e)) => {
                    return Err(StoreError::Config(format!(
                        "cannot connect to PostgreSQL at {}: {e}",
                        redact(&url)
                    )))
                }
                Err(_) => {
                    return Err(StoreError::Config(format!(
                        "cannot connect to PostgreSQL at {}: no answer within 10 seconds",
                        redact(&url)
                    )))
                }
            }
        }
        let pool = match self {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    // Short, so that in an outage a request is answered 503 within
                    // seconds instead of queueing (see `StoreError::Unavailable`).
                    .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
                    .connect_with(opts)
                    .await
            }
        };
        pool.map_err(|e| StoreError::Config(format!("cannot open the database: {e}")))
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}://{}@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
