//! The RSA key that signs access tokens: generated once per installation, stored
//! encrypted with the master key, shared by every node, published as a JWK.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keyhaven_core::time::Timestamp;
use keyhaven_store::{SigningKeyRecord, StoreError};
use rsa::pkcs1::der::zeroize::Zeroizing;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::secrets::MasterKey;
use crate::Service;

/// Modulus size of generated keys.
pub const RSA_BITS: usize = 2048;

/// Why the signing key is not available.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored key was encrypted with another master key, or altered.
    #[error(
        "the stored OAuth signing key cannot be decrypted: is KEYHAVEN_MASTER_KEY the same on every node?"
    )]
    Undecryptable,
    /// The stored key is not a usable RSA key.
    #[error("the stored OAuth signing key is not usable: {0}")]
    Invalid(String),
    /// Generating a key failed.
    #[error("cannot generate the OAuth signing key: {0}")]
    Generate(String),
}

/// The signing key in memory: the private half ready for `jsonwebtoken`, the public
/// half as JWK parts. Its `Debug` shows the key id only.
#[derive(Clone)]
pub struct SigningKey {
    /// Key id (the RFC 7638 JWK thumbprint of the public key).
    pub kid: String,
    /// Modulus, base64url without padding.
    pub n: String,
    /// Public exponent, base64url without padding.
    pub e: String,
    /// When it was generated.
    pub created_at: Timestamp,
    encoding: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Signs `claims` as an RS256 JWT with `typ: at+jwt` (RFC 9068) and this key's `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.typ = Some("at+jwt".to_string());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }
}

/// The JWK thumbprint (RFC 7638) of an RSA public key: base64url SHA-256 of the
/// canonical JSON `{"e":…,"kty":"RSA","n":…}`.
pub fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The signing key every node uses: this node's copy, else the stored one, else a new
/// one (generated, stored, and read back, so that when several nodes race exactly one
/// key wins). Loaded at most once per node; a failure is not cached.
pub async fn signing_key(service: &Service) -> Result<Arc<SigningKey>, KeyError> {
    service
        .oauth
        .key
        .get_or_try_init(|| async { load_or_create(service).await.map(Arc::new) })
        .await
        .cloned()
}

/// Reads the stored signing key, generating and storing one first if there is none.
/// Bypasses this node's copy (see [`signing_key`]).
pub async fn load_or_create(service: &Service) -> Result<SigningKey, KeyError> {
    let stored = {
        let mut tx = service.store.read().await?;
        tx.signing_key().await?
    };
    if let Some(rec) = stored {
        return from_record(&rec, &service.master_key);
    }
    let master_key = service.master_key.clone();
    let created_at = service.now();
    let candidate = tokio::task::spawn_blocking(move || generate(&master_key, created_at))
        .await
        .map_err(|e| KeyError::Generate(e.to_string()))??;
    let mut tx = service.store.begin().await?;
    let won = tx.insert_signing_key(&candidate).await?;
    tx.commit().await?;
    if won {
        tracing::info!(kid = %candidate.kid, "generated the OAuth token signing key");
    }
    let mut tx = service.store.read().await?;
    let rec = tx
        .signing_key()
        .await?
        .ok_or_else(|| KeyError::Invalid("it disappeared right after it was stored".into()))?;
    from_record(&rec, &service.master_key)
}

/// A new RSA key as a record to store (private key PEM encrypted with `master_key`).
fn generate(master_key: &MasterKey, created_at: Timestamp) -> Result<SigningKeyRecord, KeyError> {
    let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let pem = key
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
    let kid = thumbprint(&n, &e);
    let private_key = master_key
        .encrypt(pem.as_bytes(), &crate::secrets::context::signing_key(&kid))
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok(SigningKeyRecord {
        kid,
        private_key,
        public_n: n,
        public_e: e,
        created_at,
    })
}

/// Decrypts a stored key and checks that its private and public halves agree.
fn from_record(rec: &SigningKeyRecord, master_key: &MasterKey) -> Result<SigningKey, KeyError> {
    let pem = Zeroizing::new(
        master_key
            .decrypt(
                &rec.private_key,
                &crate::secrets::context::signing_key(&rec.kid),
            )
            .ok_or(KeyError::Undecryptable)?,
    );
    let pem = std::str::from_utf8(&pem).map_err(|_| KeyError::Invalid("not PEM text".into()))?;
    let key = RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| KeyError::Invalid(e.to_string()))?;
    let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
    if n != rec.public_n || e != rec.public_e || thumbprint(&n, &e) != rec.kid {
        return Err(KeyError::Invalid(
            "the private key does not match the stored public key".into(),
        ));
    }
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|e| KeyError::Invalid(e.to_string()))?;
    Ok(SigningKey {
        kid: rec.kid.clone(),
        n,
        e,
        created_at: rec.created_at,
        encoding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
