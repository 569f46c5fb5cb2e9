//! Storage errors.

/// Result alias for storage operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// What went wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write; the string names the constraint's column(s).
    #[error("duplicate value for {0}")]
    Duplicate(String),
    /// The database URL or settings are unusable.
    #[error("{0}")]
    Config(String),
    /// A stored value could not be read back (schema drift or manual edits).
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database cannot be reached: no connection within the pool's short acquire
    /// timeout, a connection lost, or the server shutting down. An outage, not a fault
    /// in the data: worth retrying shortly.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Any other database error (lock timeout, …).
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

/// Whether `e` says the database is out of reach (rather than that a statement failed).
fn is_outage(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception) and PostgreSQL's shutdown codes:
        // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_outage(&e) {
            return StoreError::Unavailable(e.to_string());
        }
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                let msg = db.message().to_string();
                let what = if msg.contains("email") {
                    "email"
                } else if msg.contains("name") {
                    "name"
                } else {
                    "key"
                };
                return StoreError::Duplicate(what.to_string());
            }
        }
        StoreError::Database(e)
    }
}
