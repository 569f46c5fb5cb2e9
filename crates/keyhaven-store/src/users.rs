//! Portal users.

use async_trait::async_trait;
use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;
use keyhaven_core::user::{User, UserStatus};
use sqlx::any::AnyRow;

use crate::error::{StoreError, StoreResult};
use crate::row::{
    bind_all, id, json, json_element_pattern, like_pattern, listing, ms, opt_ms, opt_time, text,
    time, to_json, Arg, Where,
};
use crate::sort::{self, Column, Sort, SortDir, SortKey, Value};
use crate::sql::SqlTx;
use crate::{Listing, Page};

/// Filters of `GET /users`, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Only this status.
    pub status: Option<UserStatus>,
    /// Only users holding this role.
    pub role: Option<String>,
    /// Case-insensitive substring of email or display name.
    pub q: Option<String>,
}

/// Storage of portal users.
#[async_trait]
pub trait Users {
    /// Adds a user; a taken email is [`StoreError::Duplicate`].
    async fn insert_user(&mut self, user: &User) -> StoreResult<()>;
    /// One user of an organization.
    async fn user(&mut self, org_id: &Id, id: &Id) -> StoreResult<Option<User>>;
    /// A user by id in whatever organization (sessions resolve users this way).
    async fn user_any_org(&mut self, id: &Id) -> StoreResult<Option<User>>;
    /// A user by (lowercased) email, across the installation.
    async fn user_by_email(&mut self, email: &str) -> StoreResult<Option<User>>;
    /// A page of users, newest first.
    async fn list_users(
        &mut self,
        org_id: &Id,
        filter: &UserFilter,
        page: &Page,
    ) -> StoreResult<Listing<User>>;
    /// A page of users in the order `sort` asks (`None`: newest first, as
    /// [`Users::list_users`]): by creation, display name, email or last sign-in.
    async fn list_users_sorted(
        &mut self,
        org_id: &Id,
        filter: &UserFilter,
        sort: Option<Sort>,
        page: &Page,
    ) -> StoreResult<Listing<User>>;
    /// Saves display name, roles, status, password hash and updated_at.
    async fn update_user(&mut self, user: &User) -> StoreResult<()>;
    /// Removes a user; false when there was none.
    async fn delete_user(&mut self, org_id: &Id, id: &Id) -> StoreResult<bool>;
    /// Active users holding `role`.
    async fn count_active_with_role(&mut self, org_id: &Id, role: &str) -> StoreResult<i64>;
    /// Like [`Users::count_active_with_role`], but the counted users stay locked until
    /// the transaction ends (`SELECT … FOR UPDATE` on PostgreSQL; SQLite's write
    /// transaction holds the database lock anyway), so two concurrent changes cannot
    /// both count the same users — e.g. both demote "one of two" super-admins.
    async fn lock_active_with_role(&mut self, org_id: &Id, role: &str) -> StoreResult<i64>;
    /// Serializes first-start bootstrap across nodes until the transaction ends, so
    /// that "no organization yet → create the first one and its super-admin" happens
    /// once: a transaction-scoped advisory lock on PostgreSQL; on SQLite the write
    /// transaction already holds the database lock.
    async fn lock_bootstrap(&mut self) -> StoreResult<()>;
    /// Stamps a successful sign-in.
    async fn record_login(&mut self, id: &Id, at: Timestamp) -> StoreResult<()>;
}

/// Key of the PostgreSQL advisory lock that serializes first-start bootstrap.
const BOOTSTRAP_LOCK: i64 = 0x6b68_0000_0000_0002;

fn from_row(r: &AnyRow) -> StoreResult<User> {
    let status = text(r, "status")?;
    Ok(User {
        id: id(r, "id")?,
        org_id: id(r, "org_id")?,
        email: text(r, "email")?,
        display_name: text(r, "display_name")?,
        password_hash: text(r, "password_hash")?,
        roles: json(r, "roles")?,
        status: UserStatus::parse(&status, "status")
            .map_err(|_| StoreError::Corrupt(format!("user status {status}")))?,
        last_login_at: opt_time(r, "last_login_at")?,
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
    })
}

/// The `WHERE` clauses of a users listing.
fn user_where(org_id: &Id, f: &UserFilter) -> Where {
    let mut w = Where::new();
    w.push("org_id = ?", Arg::Text(org_id.to_string()));
    if let Some(s) = f.status {
        w.push("status = ?", Arg::Text(s.as_str().into()));
    }
    if let Some(r) = &f.role {
        w.push(
            "roles LIKE ? ESCAPE '\\'",
            Arg::Text(json_element_pattern(r)),
        );
    }
    if let Some(q) = &f.q {
        w.push(
            "(lower(email) LIKE ? ESCAPE '\\' OR lower(display_name) LIKE ? ESCAPE '\\')",
            Arg::Text(like_pattern(q)),
        );
    }
    w
}

/// The column a users listing sorts by, and each user's value in it.
fn user_column(key: SortKey) -> (Column, fn(&User) -> Value) {
    match key {
        SortKey::Name => (Column::Lower("display_name"), |u| {
            Value::Text(u.display_name.clone())
        }),
        SortKey::Email => (Column::Text("email"), |u| Value::Text(u.email.clone())),
        SortKey::LastUsed => (Column::Int("last_login_at", -1), |u| {
            Value::Int(opt_ms(&u.last_login_at).unwrap_or(-1))
        }),
        SortKey::Created | SortKey::Expires => (Column::Int("created_at", 0), |u| {
            Value::Int(ms(&u.created_at))
        }),
    }
}

#[async_trait]
impl Users for SqlTx {
    async fn insert_user(&mut self, u: &User) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, org_id, email, display_name, password_hash, roles, status, last_login_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(u.id.as_str())
        .bind(u.org_id.as_str())
        .bind(&u.email)
        .bind(&u.display_name)
        .bind(&u.password_hash)
        .bind(to_json(&u.roles))
        .bind(u.status.as_str())
        .bind(opt_ms(&u.last_login_at))
        .bind(ms(&u.created_at))
        .bind(ms(&u.updated_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn user(&mut self, org_id: &Id, user_id: &Id) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE org_id = $1 AND id = $2")
            .bind(org_id.as_str())
            .bind(user_id.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn user_any_org(&mut self, user_id: &Id) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(user_id.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn user_by_email(&mut self, email: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email.to_lowercase())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn list_users(
        &mut self,
        org_id: &Id,
        f: &UserFilter,
        page: &Page,
    ) -> StoreResult<Listing<User>> {
        self.list_users_sorted(org_id, f, None, page).await
    }

    async fn list_users_sorted(
        &mut self,
        org_id: &Id,
        f: &UserFilter,
        sort: Option<Sort>,
        page: &Page,
    ) -> StoreResult<Listing<User>> {
        let w = user_where(org_id, f);
        let column = sort.map(|s| user_column(s.key));
        let dir = sort.map_or(SortDir::Desc, |s| s.dir);
        let (sql, args) = w.finish_sorted(page, "id", column.map(|(c, _)| c), dir);
        let rows = bind_all(
            sqlx::query(&format!("SELECT * FROM users WHERE {sql}")),
            args,
        )
        .fetch_all(&mut *self.tx)
        .await?;
        let items = rows.iter().map(from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(listing(items, page, |x| match column {
            None => x.id.to_string(),
            Some((_, value)) => sort::cursor(x.id.as_str(), &value(x)),
        }))
    }

    async fn update_user(&mut self, u: &User) -> StoreResult<()> {
        sqlx::query(
            "UPDATE users SET display_name = $3, password_hash = $4, roles = $5, status = $6, updated_at = $7 \
             WHERE org_id = $1 AND id = $2",
        )
        .bind(u.org_id.as_str())
        .bind(u.id.as_str())
        .bind(&u.display_name)
        .bind(&u.password_hash)
        .bind(to_json(&u.roles))
        .bind(u.status.as_str())
        .bind(ms(&u.updated_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_user(&mut self, org_id: &Id, user_id: &Id) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM users WHERE org_id = $1 AND id = $2")
            .bind(org_id.as_str())
            .bind(user_id.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn count_active_with_role(&mut self, org_id: &Id, role: &str) -> StoreResult<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE org_id = $1 AND status = 'active' AND roles LIKE $2 ESCAPE '\\'",
        )
        .bind(org_id.as_str())
        .bind(json_element_pattern(role))
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(n)
    }

    async fn lock_active_with_role(&mut self, org_id: &Id, role: &str) -> StoreResult<i64> {
        if self.backend != crate::Backend::Postgres {
            return self.count_active_with_role(org_id, role).await;
        }
        // Rows locked in id order, so concurrent lockers cannot deadlock; a waiter
        // re-checks each row after the holder commits and skips those that no longer
        // match.
        let rows = sqlx::query(
            "SELECT id FROM users WHERE org_id = $1 AND status = 'active' AND roles LIKE $2 ESCAPE '\\' \
             ORDER BY id FOR UPDATE",
        )
        .bind(org_id.as_str())
        .bind(json_element_pattern(role))
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows.len() as i64)
    }

    async fn lock_bootstrap(&mut self) -> StoreResult<()> {
        if self.backend == crate::Backend::Postgres {
            // Wrapped so the statement returns a plain integer (the lock function
            // returns `void`, a type the `Any` driver cannot decode).
            sqlx::query("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                .bind(BOOTSTRAP_LOCK)
                .fetch_one(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn record_login(&mut self, user_id: &Id, at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
            .bind(user_id.as_str())
            .bind(ms(&at))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}
