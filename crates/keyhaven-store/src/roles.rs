//! Roles, built-in and custom.

use async_trait::async_trait;
use keyhaven_core::id::Id;
use keyhaven_core::role::Role;
use sqlx::any::AnyRow;

use crate::error::StoreResult;
use crate::row::{int, json, json_element_pattern, ms, opt_text, text, time, to_json};
use crate::sql::SqlTx;

/// Storage of roles; names are the identifiers within an organization.
#[async_trait]
pub trait Roles {
    /// Adds a role.
    async fn insert_role(&mut self, org_id: &Id, role: &Role) -> StoreResult<()>;
    /// One role by name.
    async fn role(&mut self, org_id: &Id, name: &str) -> StoreResult<Option<Role>>;
    /// Every role of the organization, built-ins first, then by name.
    async fn roles(&mut self, org_id: &Id) -> StoreResult<Vec<Role>>;
    /// Saves a role's description, permissions, pattern and updated_at.
    async fn update_role(&mut self, org_id: &Id, role: &Role) -> StoreResult<()>;
    /// Removes a role; false when there was none.
    async fn delete_role(&mut self, org_id: &Id, name: &str) -> StoreResult<bool>;
    /// Whether any user, service account or API key still has the role.
    async fn role_in_use(&mut self, org_id: &Id, name: &str) -> StoreResult<bool>;
}

fn from_row(r: &AnyRow) -> StoreResult<Role> {
    Ok(Role {
        name: text(r, "name")?,
        description: text(r, "description")?,
        permissions: json(r, "permissions")?,
        key_name_pattern: opt_text(r, "key_name_pattern")?,
        built_in: int(r, "built_in")? != 0,
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
    })
}

#[async_trait]
impl Roles for SqlTx {
    async fn insert_role(&mut self, org_id: &Id, role: &Role) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO roles (org_id, name, description, permissions, key_name_pattern, built_in, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(org_id.as_str())
        .bind(&role.name)
        .bind(&role.description)
        .bind(to_json(&role.permissions))
        .bind(role.key_name_pattern.clone())
        .bind(i64::from(role.built_in))
        .bind(ms(&role.created_at))
        .bind(ms(&role.updated_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn role(&mut self, org_id: &Id, name: &str) -> StoreResult<Option<Role>> {
        let row = sqlx::query("SELECT * FROM roles WHERE org_id = $1 AND name = $2")
            .bind(org_id.as_str())
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn roles(&mut self, org_id: &Id) -> StoreResult<Vec<Role>> {
        let rows = sqlx::query(
            "SELECT * FROM roles WHERE org_id = $1 ORDER BY built_in DESC, created_at, name",
        )
        .bind(org_id.as_str())
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(from_row).collect()
    }

    async fn update_role(&mut self, org_id: &Id, role: &Role) -> StoreResult<()> {
        sqlx::query(
            "UPDATE roles SET description = $3, permissions = $4, key_name_pattern = $5, updated_at = $6 \
             WHERE org_id = $1 AND name = $2",
        )
        .bind(org_id.as_str())
        .bind(&role.name)
        .bind(&role.description)
        .bind(to_json(&role.permissions))
        .bind(role.key_name_pattern.clone())
        .bind(ms(&role.updated_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_role(&mut self, org_id: &Id, name: &str) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM roles WHERE org_id = $1 AND name = $2")
            .bind(org_id.as_str())
            .bind(name)
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn role_in_use(&mut self, org_id: &Id, name: &str) -> StoreResult<bool> {
        let pat = json_element_pattern(name);
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM users WHERE org_id = $1 AND roles LIKE $2 ESCAPE '\\') \
                  + (SELECT COUNT(*) FROM service_accounts WHERE org_id = $1 AND roles LIKE $2 ESCAPE '\\') \
                  + (SELECT COUNT(*) FROM api_keys WHERE org_id = $1 AND roles LIKE $2 ESCAPE '\\')",
        )
        .bind(org_id.as_str())
        .bind(pat)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(n > 0)
    }
}
