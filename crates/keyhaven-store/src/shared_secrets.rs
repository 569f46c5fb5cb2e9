//! The organization's webhook shared secret, stored encrypted.

use async_trait::async_trait;
use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;

use crate::error::StoreResult;
use crate::row::{ms, opt_ms, opt_text, opt_time, text, time};
use crate::sql::SqlTx;

/// The stored form: ciphertexts only (the server encrypts with the master key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSecretRecord {
    /// The current secret, encrypted.
    pub ciphertext: String,
    /// When the current secret was created.
    pub created_at: Timestamp,
    /// The secret it replaced, encrypted, while it still signs.
    pub previous_ciphertext: Option<String>,
    /// Until when the previous secret signs alongside.
    pub previous_valid_until: Option<Timestamp>,
}

/// Storage of shared secrets.
#[async_trait]
pub trait SharedSecrets {
    /// The organization's secret, if it has one.
    async fn shared_secret(&mut self, org_id: &Id) -> StoreResult<Option<SharedSecretRecord>>;
    /// Creates or replaces the organization's secret.
    async fn put_shared_secret(&mut self, org_id: &Id, rec: &SharedSecretRecord)
        -> StoreResult<()>;
}

#[async_trait]
impl SharedSecrets for SqlTx {
    async fn shared_secret(&mut self, org_id: &Id) -> StoreResult<Option<SharedSecretRecord>> {
        let row = sqlx::query("SELECT * FROM shared_secrets WHERE org_id = $1")
            .bind(org_id.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| {
            Ok(SharedSecretRecord {
                ciphertext: text(&r, "ciphertext")?,
                created_at: time(&r, "created_at")?,
                previous_ciphertext: opt_text(&r, "previous_ciphertext")?,
                previous_valid_until: opt_time(&r, "previous_valid_until")?,
            })
        })
        .transpose()
    }

    async fn put_shared_secret(
        &mut self,
        org_id: &Id,
        rec: &SharedSecretRecord,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO shared_secrets (org_id, ciphertext, created_at, previous_ciphertext, previous_valid_until) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id) DO UPDATE SET ciphertext = excluded.ciphertext, \
             created_at = excluded.created_at, previous_ciphertext = excluded.previous_ciphertext, \
             previous_valid_until = excluded.previous_valid_until",
        )
        .bind(org_id.as_str())
        .bind(&rec.ciphertext)
        .bind(ms(&rec.created_at))
        .bind(rec.previous_ciphertext.clone())
        .bind(opt_ms(&rec.previous_valid_until))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
