//! Console sessions and the sign-in failure log.

use async_trait::async_trait;
use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;
use sqlx::any::AnyRow;

use crate::error::StoreResult;
use crate::row::{id, ms, opt_int, text, time};
use crate::sql::SqlTx;

/// A signed-in console session. The cookie holds a random token; only its digest is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the cookie token, hex.
    pub token_digest: String,
    /// The signed-in user.
    pub user_id: Id,
    /// The token state-changing requests must echo in `X-CSRF-Token`.
    pub csrf_token: String,
    /// Sign-in time.
    pub created_at: Timestamp,
    /// Last request; sessions expire 12 h after it.
    pub last_seen_at: Timestamp,
}

/// Storage of sessions and sign-in failures.
#[async_trait]
pub trait Sessions {
    /// Adds a session.
    async fn insert_session(&mut self, s: &Session) -> StoreResult<()>;
    /// A session by token digest.
    async fn session(&mut self, token_digest: &str) -> StoreResult<Option<Session>>;
    /// Moves `last_seen_at` forward.
    async fn touch_session(&mut self, token_digest: &str, at: Timestamp) -> StoreResult<()>;
    /// Ends a session.
    async fn delete_session(&mut self, token_digest: &str) -> StoreResult<()>;
    /// Ends every session of a user (password change, deactivation).
    async fn delete_sessions_of_user(&mut self, user_id: &Id) -> StoreResult<()>;
    /// Ends every session of a user but the one with digest `keep` (own password change).
    async fn delete_other_sessions_of_user(&mut self, user_id: &Id, keep: &str) -> StoreResult<()>;
    /// Records a failed sign-in for `email` from no known address.
    async fn record_login_failure(
        &mut self,
        id: &Id,
        email: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        self.record_login_failure_from(id, email, "", at).await
    }
    /// Records a failed sign-in for `email` from client address `ip` (`""` when unknown).
    async fn record_login_failure_from(
        &mut self,
        id: &Id,
        email: &str,
        ip: &str,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Failures from client address `ip` since `since` — for any email, or for `email`
    /// only when given: (count, oldest time in ms).
    async fn login_failures_from(
        &mut self,
        ip: &str,
        email: Option<&str>,
        since: Timestamp,
    ) -> StoreResult<(i64, Option<i64>)>;
    /// Failures for `email` since `since`: (count, oldest time in ms).
    async fn login_failures_since(
        &mut self,
        email: &str,
        since: Timestamp,
    ) -> StoreResult<(i64, Option<i64>)>;
    /// Forgets the failures of `email` (after a successful sign-in) and all older than `before`.
    async fn clear_login_failures(&mut self, email: &str, before: Timestamp) -> StoreResult<()>;
    /// Serializes sign-in attempts for `email` until the transaction ends, so that
    /// counting and recording failures cannot interleave. On SQLite the write
    /// transaction already holds the database's write lock; on PostgreSQL this takes a
    /// transaction-scoped advisory lock on the email.
    async fn lock_sign_in(&mut self, email: &str) -> StoreResult<()>;
}

/// First key of the PostgreSQL advisory locks that serialize sign-ins per email.
const SIGN_IN_LOCK_CLASS: i32 = 0x6b68_0001;

fn from_row(r: &AnyRow) -> StoreResult<Session> {
    Ok(Session {
        token_digest: text(r, "token_digest")?,
        user_id: id(r, "user_id")?,
        csrf_token: text(r, "csrf_token")?,
        created_at: time(r, "created_at")?,
        last_seen_at: time(r, "last_seen_at")?,
    })
}

#[async_trait]
impl Sessions for SqlTx {
    async fn insert_session(&mut self, s: &Session) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (token_digest, user_id, csrf_token, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.token_digest)
        .bind(s.user_id.as_str())
        .bind(&s.csrf_token)
        .bind(ms(&s.created_at))
        .bind(ms(&s.last_seen_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn session(&mut self, token_digest: &str) -> StoreResult<Option<Session>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE token_digest = $1")
            .bind(token_digest)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn touch_session(&mut self, token_digest: &str, at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE token_digest = $1")
            .bind(token_digest)
            .bind(ms(&at))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn delete_session(&mut self, token_digest: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_digest = $1")
            .bind(token_digest)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn delete_sessions_of_user(&mut self, user_id: &Id) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn delete_other_sessions_of_user(&mut self, user_id: &Id, keep: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_digest <> $2")
            .bind(user_id.as_str())
            .bind(keep)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn record_login_failure_from(
        &mut self,
        fid: &Id,
        email: &str,
        ip: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO login_failures (id, email, ip, at) VALUES ($1, $2, $3, $4)")
            .bind(fid.as_str())
            .bind(email)
            .bind(ip)
            .bind(ms(&at))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn login_failures_from(
        &mut self,
        ip: &str,
        email: Option<&str>,
        since: Timestamp,
    ) -> StoreResult<(i64, Option<i64>)> {
        let row = match email {
            Some(email) => sqlx::query(
                "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM login_failures \
                 WHERE ip = $1 AND email = $2 AND at > $3",
            )
            .bind(ip)
            .bind(email)
            .bind(ms(&since)),
            None => sqlx::query(
                "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM login_failures WHERE ip = $1 AND at > $2",
            )
            .bind(ip)
            .bind(ms(&since)),
        }
        .fetch_one(&mut *self.tx)
        .await?;
        Ok((crate::row::int(&row, "n")?, opt_int(&row, "oldest")?))
    }

    async fn login_failures_since(
        &mut self,
        email: &str,
        since: Timestamp,
    ) -> StoreResult<(i64, Option<i64>)> {
        let row = sqlx::query("SELECT COUNT(*) AS n, MIN(at) AS oldest FROM login_failures WHERE email = $1 AND at > $2")
            .bind(email)
            .bind(ms(&since))
            .fetch_one(&mut *self.tx)
            .await?;
        Ok((crate::row::int(&row, "n")?, opt_int(&row, "oldest")?))
    }

    async fn clear_login_failures(&mut self, email: &str, before: Timestamp) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_failures WHERE email = $1 OR at < $2")
            .bind(email)
            .bind(ms(&before))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn lock_sign_in(&mut self, email: &str) -> StoreResult<()> {
        if self.backend == crate::Backend::Postgres {
            // Wrapped so the statement returns a plain integer (the lock function
            // returns `void`, a type the `Any` driver cannot decode).
            sqlx::query(
                "SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock($1, hashtext($2))) AS l",
            )
            .bind(SIGN_IN_LOCK_CLASS)
            .bind(email)
            .fetch_one(&mut *self.tx)
            .await?;
        }
        Ok(())
    }
}
