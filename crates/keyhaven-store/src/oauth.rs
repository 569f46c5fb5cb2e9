//! Storage for OAuth 2.0: the JWT signing key (encrypted by the server) and credential use.

use async_trait::async_trait;
use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;

use crate::error::StoreResult;
use crate::row::{ms, text, time};
use crate::sql::SqlTx;

/// The slot of the key that signs access tokens. A fixed primary key, so that when
/// several nodes start at once and each generates a key, exactly one insert wins.
const CURRENT: &str = "current";

/// The stored form of the token signing key. The private key is a ciphertext only (the
/// server encrypts it with the master key); the public half is stored in clear for the
/// JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id, as written in the JWT header and the JWKS.
    pub kid: String,
    /// The private key (PEM), encrypted with the master key.
    pub private_key: String,
    /// RSA modulus, base64url without padding (the JWK's `n`).
    pub public_n: String,
    /// RSA public exponent, base64url without padding (the JWK's `e`).
    pub public_e: String,
    /// When it was generated.
    pub created_at: Timestamp,
}

/// Storage for the OAuth token endpoint.
#[async_trait]
pub trait OAuth {
    /// The key that signs access tokens, if one was generated.
    async fn signing_key(&mut self) -> StoreResult<Option<SigningKeyRecord>>;
    /// Stores `key` as the signing key unless there already is one; true when this
    /// insert won. Read [`OAuth::signing_key`] afterwards (in a new transaction) to get
    /// the key every node uses.
    async fn insert_signing_key(&mut self, key: &SigningKeyRecord) -> StoreResult<bool>;
    /// Moves each credential's `last_used_at` forward to the given time (never back;
    /// credentials that no longer exist are skipped).
    async fn touch_credentials(&mut self, uses: &[(Id, Timestamp)]) -> StoreResult<()>;
}

#[async_trait]
impl OAuth for SqlTx {
    async fn signing_key(&mut self) -> StoreResult<Option<SigningKeyRecord>> {
        let row = sqlx::query("SELECT * FROM oauth_signing_keys WHERE slot = $1")
            .bind(CURRENT)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| {
            Ok(SigningKeyRecord {
                kid: text(&r, "kid")?,
                private_key: text(&r, "private_key")?,
                public_n: text(&r, "public_n")?,
                public_e: text(&r, "public_e")?,
                created_at: time(&r, "created_at")?,
            })
        })
        .transpose()
    }

    async fn insert_signing_key(&mut self, key: &SigningKeyRecord) -> StoreResult<bool> {
        let r = sqlx::query(
            "INSERT INTO oauth_signing_keys (slot, kid, private_key, public_n, public_e, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(CURRENT)
        .bind(&key.kid)
        .bind(&key.private_key)
        .bind(&key.public_n)
        .bind(&key.public_e)
        .bind(ms(&key.created_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn touch_credentials(&mut self, uses: &[(Id, Timestamp)]) -> StoreResult<()> {
        for (cid, at) in uses {
            sqlx::query(
                "UPDATE credentials SET last_used_at = $2 \
                 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
            )
            .bind(cid.as_str())
            .bind(ms(at))
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }
}
