//! The master key and the encryption of recoverable secrets (shared secrets, signing
//! keys) with XChaCha20-Poly1305. Ciphertexts are `v1:` + base64(nonce ‖ ciphertext).
//!
//! Each ciphertext is bound to its row: the row's identity (see [`context`]) is the
//! AEAD's associated data, so a ciphertext copied into another row (another
//! organization's shared secret, say) does not decrypt there. Rows written before the
//! binding (no associated data) still decrypt, and are bound when next written (a
//! rotation).

use std::path::Path;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::config::{decode_base64, prepare_data_dir, ConfigError};

/// The 32-byte key that encrypts stored secrets. Its `Debug` hides the value.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

/// Encryption failed (the AEAD refused the input); nothing is stored.
#[derive(Debug, thiserror::Error)]
#[error("cannot encrypt the secret")]
pub struct EncryptError;

/// The associated data that binds a ciphertext to its row.
pub mod context {
    /// An organization's shared secret (the current and the previous one).
    pub fn shared_secret(org_id: &str) -> String {
        format!("keyhaven/shared_secret/{org_id}")
    }

    /// The OAuth token signing key `kid`.
    pub fn signing_key(kid: &str) -> String {
        format!("keyhaven/oauth_signing_key/{kid}")
    }
}

/// `v1:` + base64(nonce ‖ ciphertext), or the AEAD's error.
fn frame(
    nonce: &[u8; 24],
    ct: Result<Vec<u8>, chacha20poly1305::aead::Error>,
) -> Result<String, EncryptError> {
    let ct = ct.map_err(|_| EncryptError)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(format!(
        "v1:{}",
        base64::engine::general_purpose::STANDARD.encode(out)
    ))
}

/// Name of the generated key file in the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";

impl MasterKey {
    /// Parses a base64 key of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, ConfigError> {
        let bytes =
            decode_base64(s).ok_or_else(|| ConfigError("master key is not base64".into()))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ConfigError("master key must decode to exactly 32 bytes".into()))?;
        Ok(MasterKey(arr))
    }

    /// Reads `<data dir>/master.key`, generating it (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, ConfigError> {
        if !data_dir.is_dir() {
            prepare_data_dir(data_dir)?;
        }
        let path = data_dir.join(MASTER_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_base64(&text)
                .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                let text = base64::engine::general_purpose::STANDARD.encode(key);
                write_private(&path, text.as_bytes())
                    .map_err(|e| ConfigError(format!("cannot write {}: {e}", path.display())))?;
                Ok(MasterKey(key))
            }
            Err(e) => Err(ConfigError(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// The key that authenticates the audit chain's head (HMAC-SHA256 of a fixed label
    /// under the master key: a key for that one purpose).
    pub fn audit_key(&self) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut key = [0u8; 32];
        if let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0) {
            mac.update(b"keyhaven audit head key v1");
            key.copy_from_slice(&mac.finalize().into_bytes());
        }
        key
    }

    /// Encrypts `plain` with a fresh random nonce, bound to `context` (the row's
    /// identity, from [`context`]). An AEAD failure is an error, never an empty
    /// ciphertext.
    pub fn encrypt(&self, plain: &[u8], context: &str) -> Result<String, EncryptError> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = cipher.encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: context.as_bytes(),
            },
        );
        frame(&nonce, ct)
    }

    /// Decrypts what [`MasterKey::encrypt`] produced for `context` — or a row written
    /// before ciphertexts were bound (no associated data); `None` if it was made with
    /// another key, for another row, or altered.
    pub fn decrypt(&self, stored: &str, context: &str) -> Option<Vec<u8>> {
        let b64 = stored.strip_prefix("v1:")?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, ct) = bytes.split_at(24);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let nonce = XNonce::from_slice(nonce);
        cipher
            .decrypt(
                nonce,
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .or_else(|_| cipher.decrypt(nonce, ct))
            .ok()
    }
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let k = MasterKey::load_or_create(dir.path()).unwrap();
        let again = MasterKey::load_or_create(dir.path()).unwrap();
        let ct = k.encrypt(b"whsec_abc", "row-1").unwrap();
        assert!(!ct.contains("whsec"));
        assert_eq!(again.decrypt(&ct, "row-1").unwrap(), b"whsec_abc");
        let other = MasterKey([7; 32]);
        assert!(other.decrypt(&ct, "row-1").is_none());
        assert!(k.decrypt("v1:AAAA", "row-1").is_none());
        assert!(k.decrypt("garbage", "row-1").is_none());
    }

    #[test]
    fn a_ciphertext_is_bound_to_its_row() {
        let k = MasterKey([3; 32]);
        let a = k
            .encrypt(b"whsec_a", &context::shared_secret("org_a"))
            .unwrap();
        assert_eq!(
            k.decrypt(&a, &context::shared_secret("org_a")).unwrap(),
            b"whsec_a"
        );
        assert!(k.decrypt(&a, &context::shared_secret("org_b")).is_none());
        assert!(k.decrypt(&a, &context::signing_key("org_a")).is_none());
    }

    #[test]
    fn rows_written_before_the_binding_still_decrypt() {
        // What the previous version stored: no associated data.
        let k = MasterKey([5; 32]);
        let nonce = [9u8; 24];
        let ct = XChaCha20Poly1305::new((&k.0).into())
            .encrypt(XNonce::from_slice(&nonce), b"whsec_old".as_ref())
            .unwrap();
        let legacy = frame(&nonce, Ok(ct)).unwrap();
        assert_eq!(
            k.decrypt(&legacy, &context::shared_secret("org_a"))
                .unwrap(),
            b"whsec_old"
        );
    }

    #[test]
    fn an_encryption_failure_is_an_error() {
        assert!(frame(&[0; 24], Err(chacha20poly1305::aead::Error)).is_err());
        assert!(frame(&[0; 24], Ok(Vec::new())).unwrap().starts_with("v1:"));
    }
}
