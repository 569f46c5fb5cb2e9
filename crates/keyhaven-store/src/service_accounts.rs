//! Service accounts.

use async_trait::async_trait;
use keyhaven_core::id::Id;
use keyhaven_core::service_account::{ServiceAccount, ServiceAccountStatus};
use sqlx::any::AnyRow;

use crate::error::{StoreError, StoreResult};
use crate::row::{
    bind_all, id, json, like_pattern, listing, ms, opt_text, text, time, to_json, Arg, Where,
};
use crate::sort::{self, Column, Sort, SortDir, SortKey, Value};
use crate::sql::SqlTx;
use crate::{Listing, Page};

/// Filters of `GET /service-accounts`.
#[derive(Debug, Clone, Default)]
pub struct ServiceAccountFilter {
    /// Only these statuses; empty = every status.
    pub statuses: Vec<ServiceAccountStatus>,
    /// Case-insensitive substring of name or description.
    pub q: Option<String>,
    /// Only the accounts with this `external_id`.
    pub external_id: Option<String>,
}

/// Storage of service accounts.
#[async_trait]
pub trait ServiceAccounts {
    /// Adds a service account.
    async fn insert_service_account(&mut self, sa: &ServiceAccount) -> StoreResult<()>;
    /// One service account.
    async fn service_account(
        &mut self,
        org_id: &Id,
        id: &Id,
    ) -> StoreResult<Option<ServiceAccount>>;
    /// A page of service accounts, newest first.
    async fn list_service_accounts(
        &mut self,
        org_id: &Id,
        filter: &ServiceAccountFilter,
        page: &Page,
    ) -> StoreResult<Listing<ServiceAccount>>;
    /// A page of service accounts in the order `sort` asks (`None`: newest first, as
    /// [`ServiceAccounts::list_service_accounts`]): by creation or name.
    async fn list_service_accounts_sorted(
        &mut self,
        org_id: &Id,
        filter: &ServiceAccountFilter,
        sort: Option<Sort>,
        page: &Page,
    ) -> StoreResult<Listing<ServiceAccount>>;
    /// Saves name, description, roles, status, rate limits and updated_at.
    async fn update_service_account(&mut self, sa: &ServiceAccount) -> StoreResult<()>;
    /// Removes a service account with its keys and credentials; false when there was none.
    async fn delete_service_account(&mut self, org_id: &Id, id: &Id) -> StoreResult<bool>;
    /// Number of API keys each of `ids` owns.
    async fn owned_key_counts(&mut self, org_id: &Id, ids: &[Id]) -> StoreResult<Vec<(Id, i64)>>;
}

fn from_row(r: &AnyRow) -> StoreResult<ServiceAccount> {
    let status = text(r, "status")?;
    Ok(ServiceAccount {
        id: id(r, "id")?,
        org_id: id(r, "org_id")?,
        name: text(r, "name")?,
        description: text(r, "description")?,
        roles: json(r, "roles")?,
        status: ServiceAccountStatus::parse(&status, "status")
            .map_err(|_| StoreError::Corrupt(format!("service account status {status}")))?,
        ratelimits: json(r, "ratelimits")?,
        external_id: opt_text(r, "external_id")?,
        created_by: json(r, "created_by")?,
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
    })
}

/// The `WHERE` clauses of a service account listing.
fn account_where(org_id: &Id, f: &ServiceAccountFilter) -> Where {
    let mut w = Where::new();
    w.push("org_id = ?", Arg::Text(org_id.to_string()));
    if !f.statuses.is_empty() {
        let parts: Vec<String> = f
            .statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        w.clauses.push(format!("status IN ({})", parts.join(", ")));
    }
    if let Some(q) = &f.q {
        w.push(
            "(lower(name) LIKE ? ESCAPE '\\' OR lower(description) LIKE ? ESCAPE '\\')",
            Arg::Text(like_pattern(q)),
        );
    }
    if let Some(e) = &f.external_id {
        w.push("external_id = ?", Arg::Text(e.clone()));
    }
    w
}

/// The column a service accounts listing sorts by, and each account's value in it.
fn account_column(key: SortKey) -> (Column, fn(&ServiceAccount) -> Value) {
    match key {
        SortKey::Name | SortKey::Email => (Column::Lower("name"), |a| Value::Text(a.name.clone())),
        SortKey::Created | SortKey::LastUsed | SortKey::Expires => {
            (Column::Int("created_at", 0), |a| {
                Value::Int(ms(&a.created_at))
            })
        }
    }
}

#[async_trait]
impl ServiceAccounts for SqlTx {
    async fn insert_service_account(&mut self, sa: &ServiceAccount) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO service_accounts (id, org_id, name, description, roles, status, created_by, created_at, updated_at, \
             ratelimits, external_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(sa.id.as_str())
        .bind(sa.org_id.as_str())
        .bind(&sa.name)
        .bind(&sa.description)
        .bind(to_json(&sa.roles))
        .bind(sa.status.as_str())
        .bind(to_json(&sa.created_by))
        .bind(ms(&sa.created_at))
        .bind(ms(&sa.updated_at))
        .bind(to_json(&sa.ratelimits))
        .bind(sa.external_id.clone())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn service_account(
        &mut self,
        org_id: &Id,
        sa_id: &Id,
    ) -> StoreResult<Option<ServiceAccount>> {
        let row = sqlx::query("SELECT * FROM service_accounts WHERE org_id = $1 AND id = $2")
            .bind(org_id.as_str())
            .bind(sa_id.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn list_service_accounts(
        &mut self,
        org_id: &Id,
        f: &ServiceAccountFilter,
        page: &Page,
    ) -> StoreResult<Listing<ServiceAccount>> {
        self.list_service_accounts_sorted(org_id, f, None, page)
            .await
    }

    async fn list_service_accounts_sorted(
        &mut self,
        org_id: &Id,
        f: &ServiceAccountFilter,
        sort: Option<Sort>,
        page: &Page,
    ) -> StoreResult<Listing<ServiceAccount>> {
        let w = account_where(org_id, f);
        let column = sort.map(|s| account_column(s.key));
        let dir = sort.map_or(SortDir::Desc, |s| s.dir);
        let (sql, args) = w.finish_sorted(page, "id", column.map(|(c, _)| c), dir);
        let rows = bind_all(
            sqlx::query(&format!("SELECT * FROM service_accounts WHERE {sql}")),
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

    async fn update_service_account(&mut self, sa: &ServiceAccount) -> StoreResult<()> {
        sqlx::query(
            "UPDATE service_accounts SET name = $3, description = $4, roles = $5, status = $6, updated_at = $7, \
             ratelimits = $8, external_id = $9 WHERE org_id = $1 AND id = $2",
        )
        .bind(sa.org_id.as_str())
        .bind(sa.id.as_str())
        .bind(&sa.name)
        .bind(&sa.description)
        .bind(to_json(&sa.roles))
        .bind(sa.status.as_str())
        .bind(ms(&sa.updated_at))
        .bind(to_json(&sa.ratelimits))
        .bind(sa.external_id.clone())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_service_account(&mut self, org_id: &Id, sa_id: &Id) -> StoreResult<bool> {
        sqlx::query("DELETE FROM api_keys WHERE org_id = $1 AND owner_type = 'service_account' AND owner_id = $2")
            .bind(org_id.as_str())
            .bind(sa_id.as_str())
            .execute(&mut *self.tx)
            .await?;
        let r = sqlx::query("DELETE FROM service_accounts WHERE org_id = $1 AND id = $2")
            .bind(org_id.as_str())
            .bind(sa_id.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn owned_key_counts(&mut self, org_id: &Id, ids: &[Id]) -> StoreResult<Vec<(Id, i64)>> {
        let mut out = Vec::with_capacity(ids.len());
        for sa_id in ids {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM api_keys WHERE org_id = $1 AND owner_id = $2",
            )
            .bind(org_id.as_str())
            .bind(sa_id.as_str())
            .fetch_one(&mut *self.tx)
            .await?;
            out.push((sa_id.clone(), n));
        }
        Ok(out)
    }
}
