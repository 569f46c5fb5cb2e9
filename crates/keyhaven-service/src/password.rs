//! Argon2id password hashing with OWASP's parameters (m = 19456 KiB, t = 2, p = 1).
//! Hashing takes tens of milliseconds, so it runs on the blocking pool.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;

use crate::{ServiceError, ServiceResult};

fn argon2() -> Argon2<'static> {
    // These constants are valid parameters; the fallback is never taken.
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string.
pub async fn hash(password: &str) -> ServiceResult<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ServiceError::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("password hashing task failed: {e}")))?
}

/// Checks a password against a PHC string. `None` as the hash still spends the same
/// effort (against a fixed dummy hash) so unknown emails can't be told apart by timing.
pub async fn verify(password: &str, phc: Option<&str>) -> bool {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3O1p5L5o0vQ2P0f2mYxg3Gm6sJ2j1a7c1n5lXy0n7yU";
    let password = password.to_string();
    let known = phc.is_some();
    let phc = phc.unwrap_or(DUMMY).to_string();
    tokio::task::spawn_blocking(move || {
        let ok = match PasswordHash::new(&phc) {
            Ok(parsed) => argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        };
        ok && known
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("correct horse battery").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery", Some(&h)).await);
        assert!(!verify("wrong", Some(&h)).await);
        assert!(!verify("correct horse battery", None).await);
        assert!(!verify("x", Some("not a phc string")).await);
    }
}
