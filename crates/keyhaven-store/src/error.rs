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
    /// Any other database error (connection lost, lock timeout, …).
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
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
