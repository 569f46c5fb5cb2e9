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

/// What a unique violation is about, from the constraint it names: PostgreSQL gives the
/// constraint's name (`users_email_key`, `roles_pkey`, `api_keys_org_id_name_key`…),
/// SQLite its columns in the fixed form `UNIQUE constraint failed: users.email` (it
/// reports no name). `email`, `name`, or `key` for any other (ids, digests).
fn duplicate_of(db: &dyn sqlx::error::DatabaseError) -> &'static str {
    let columns: Vec<String> = match db.constraint() {
        Some(name) => {
            // The primary key of `roles` is (org_id, name).
            if name == "roles_pkey" {
                return "name";
            }
            let base = name
                .strip_suffix("_key")
                .or_else(|| name.strip_suffix("_pkey"))
                .unwrap_or(name);
            vec![base.rsplit('_').next().unwrap_or_default().to_string()]
        }
        None => db
            .message()
            .split_once("constraint failed: ")
            .map(|(_, cols)| {
                cols.split(',')
                    .filter_map(|c| c.trim().rsplit('.').next().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    };
    match columns.last().map(String::as_str) {
        Some("email") => "email",
        Some("name") => "name",
        _ => "key",
    }
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
            // SQLSTATE 23505 on PostgreSQL, SQLITE_CONSTRAINT_UNIQUE / _PRIMARYKEY on SQLite.
            if db.is_unique_violation() {
                return StoreError::Duplicate(duplicate_of(db.as_ref()).to_string());
            }
        }
        StoreError::Database(e)
    }
}
