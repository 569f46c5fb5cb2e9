//! Client credentials of service accounts.

use async_trait::async_trait;
use keyhaven_core::credential::Credential;
use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;
use sqlx::any::AnyRow;

use crate::error::StoreResult;
use crate::row::{id, ms, opt_ms, opt_time, text, time};
use crate::sql::SqlTx;

/// Storage of client credentials.
#[async_trait]
pub trait Credentials {
    /// Adds a credential.
    async fn insert_credential(&mut self, c: &Credential) -> StoreResult<()>;
    /// One credential of a service account.
    async fn credential(
        &mut self,
        org_id: &Id,
        sa_id: &Id,
        id: &Id,
    ) -> StoreResult<Option<Credential>>;
    /// A credential by its client id, in whatever organization.
    async fn credential_by_client_id(&mut self, client_id: &str)
        -> StoreResult<Option<Credential>>;
    /// Every credential of a service account, newest first.
    async fn credentials(&mut self, org_id: &Id, sa_id: &Id) -> StoreResult<Vec<Credential>>;
    /// Saves name, description and updated_at.
    async fn update_credential(&mut self, c: &Credential) -> StoreResult<()>;
    /// Removes a credential; false when there was none.
    async fn delete_credential(&mut self, org_id: &Id, sa_id: &Id, id: &Id) -> StoreResult<bool>;
    /// Revokes every live credential of a service account.
    async fn revoke_credentials_of(
        &mut self,
        org_id: &Id,
        sa_id: &Id,
        at: Timestamp,
    ) -> StoreResult<u64>;
}

fn from_row(r: &AnyRow) -> StoreResult<Credential> {
    Ok(Credential {
        id: id(r, "id")?,
        org_id: id(r, "org_id")?,
        service_account_id: id(r, "service_account_id")?,
        client_id: text(r, "client_id")?,
        name: text(r, "name")?,
        description: text(r, "description")?,
        secret_digest: text(r, "secret_digest")?,
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
        last_used_at: opt_time(r, "last_used_at")?,
        expires_at: opt_time(r, "expires_at")?,
        revoked_at: opt_time(r, "revoked_at")?,
    })
}

#[async_trait]
impl Credentials for SqlTx {
    async fn insert_credential(&mut self, c: &Credential) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO credentials (id, org_id, service_account_id, client_id, name, description, secret_digest, \
             created_at, updated_at, last_used_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(c.id.as_str())
        .bind(c.org_id.as_str())
        .bind(c.service_account_id.as_str())
        .bind(&c.client_id)
        .bind(&c.name)
        .bind(&c.description)
        .bind(&c.secret_digest)
        .bind(ms(&c.created_at))
        .bind(ms(&c.updated_at))
        .bind(opt_ms(&c.last_used_at))
        .bind(opt_ms(&c.expires_at))
        .bind(opt_ms(&c.revoked_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn credential(
        &mut self,
        org_id: &Id,
        sa_id: &Id,
        cid: &Id,
    ) -> StoreResult<Option<Credential>> {
        let row = sqlx::query(
            "SELECT * FROM credentials WHERE org_id = $1 AND service_account_id = $2 AND id = $3",
        )
        .bind(org_id.as_str())
        .bind(sa_id.as_str())
        .bind(cid.as_str())
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn credential_by_client_id(
        &mut self,
        client_id: &str,
    ) -> StoreResult<Option<Credential>> {
        let row = sqlx::query("SELECT * FROM credentials WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn credentials(&mut self, org_id: &Id, sa_id: &Id) -> StoreResult<Vec<Credential>> {
        let rows = sqlx::query("SELECT * FROM credentials WHERE org_id = $1 AND service_account_id = $2 ORDER BY id DESC")
            .bind(org_id.as_str())
            .bind(sa_id.as_str())
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(from_row).collect()
    }

    async fn update_credential(&mut self, c: &Credential) -> StoreResult<()> {
        sqlx::query("UPDATE credentials SET name = $3, description = $4, updated_at = $5 WHERE org_id = $1 AND id = $2")
            .bind(c.org_id.as_str())
            .bind(c.id.as_str())
            .bind(&c.name)
            .bind(&c.description)
            .bind(ms(&c.updated_at))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn delete_credential(&mut self, org_id: &Id, sa_id: &Id, cid: &Id) -> StoreResult<bool> {
        let r = sqlx::query(
            "DELETE FROM credentials WHERE org_id = $1 AND service_account_id = $2 AND id = $3",
        )
        .bind(org_id.as_str())
        .bind(sa_id.as_str())
        .bind(cid.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn revoke_credentials_of(
        &mut self,
        org_id: &Id,
        sa_id: &Id,
        at: Timestamp,
    ) -> StoreResult<u64> {
        let r = sqlx::query(
            "UPDATE credentials SET revoked_at = $3, updated_at = $3 \
             WHERE org_id = $1 AND service_account_id = $2 AND revoked_at IS NULL",
        )
        .bind(org_id.as_str())
        .bind(sa_id.as_str())
        .bind(ms(&at))
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected())
    }
}
