//! Organizations.

use async_trait::async_trait;
use keyhaven_core::id::Id;
use keyhaven_core::organization::Organization;
use sqlx::any::AnyRow;

use crate::error::StoreResult;
use crate::row::{id, ms, text, time};
use crate::sql::SqlTx;

/// Storage of organizations.
#[async_trait]
pub trait Organizations {
    /// Adds an organization.
    async fn insert_organization(&mut self, org: &Organization) -> StoreResult<()>;
    /// One organization.
    async fn organization(&mut self, id: &Id) -> StoreResult<Option<Organization>>;
    /// Every organization, oldest first.
    async fn organizations(&mut self) -> StoreResult<Vec<Organization>>;
    /// Saves name, key prefix and updated_at.
    async fn update_organization(&mut self, org: &Organization) -> StoreResult<()>;
}

fn from_row(r: &AnyRow) -> StoreResult<Organization> {
    Ok(Organization {
        id: id(r, "id")?,
        name: text(r, "name")?,
        key_prefix: text(r, "key_prefix")?,
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
    })
}

#[async_trait]
impl Organizations for SqlTx {
    async fn insert_organization(&mut self, org: &Organization) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO organizations (id, name, key_prefix, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(org.id.as_str())
        .bind(&org.name)
        .bind(&org.key_prefix)
        .bind(ms(&org.created_at))
        .bind(ms(&org.updated_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn organization(&mut self, org_id: &Id) -> StoreResult<Option<Organization>> {
        let row = sqlx::query("SELECT * FROM organizations WHERE id = $1")
            .bind(org_id.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn organizations(&mut self) -> StoreResult<Vec<Organization>> {
        let rows = sqlx::query("SELECT * FROM organizations ORDER BY id")
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(from_row).collect()
    }

    async fn update_organization(&mut self, org: &Organization) -> StoreResult<()> {
        sqlx::query(
            "UPDATE organizations SET name = $2, key_prefix = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(org.id.as_str())
        .bind(&org.name)
        .bind(&org.key_prefix)
        .bind(ms(&org.updated_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
