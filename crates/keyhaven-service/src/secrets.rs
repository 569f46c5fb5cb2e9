//! The master key and the encryption of recoverable secrets (shared secrets, signing
//! keys) with XChaCha20-Poly1305. Ciphertexts are `v1:` + base64(nonce ‖ ciphertext).

use std::path::Path;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
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

    /// Encrypts `plain` with a fresh random nonce.
    pub fn encrypt(&self, plain: &[u8]) -> String {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        let ct = cipher
            .encrypt(XNonce::from_slice(&nonce), plain)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!(
            "v1:{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    /// Decrypts what [`MasterKey::encrypt`] produced; `None` if it was made with another
    /// key or altered.
    pub fn decrypt(&self, stored: &str) -> Option<Vec<u8>> {
        let b64 = stored.strip_prefix("v1:")?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, ct) = bytes.split_at(24);
        XChaCha20Poly1305::new((&self.0).into())
            .decrypt(XNonce::from_slice(nonce), ct)
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
        let ct = k.encrypt(b"whsec_abc");
        assert!(!ct.contains("whsec"));
        assert_eq!(again.decrypt(&ct).unwrap(), b"whsec_abc");
        let other = MasterKey([7; 32]);
        assert!(other.decrypt(&ct).is_none());
        assert!(k.decrypt("v1:AAAA").is_none());
        assert!(k.decrypt("garbage").is_none());
    }
}
