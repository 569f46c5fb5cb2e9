//! Organizations: the tenant boundary.

use crate::error::DomainError;
use crate::id::Id;
use crate::time::Timestamp;

/// The prefix keys get when an organization has not chosen one.
pub const DEFAULT_KEY_PREFIX: &str = "kh";

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// Its id.
    pub id: Id,
    /// Display name, 1–100 characters.
    pub name: String,
    /// Prefix of keys created from now on, `^[a-z][a-z0-9]{1,15}$`.
    pub key_prefix: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Validates a key prefix: `^[a-z][a-z0-9]{1,15}$`.
pub fn validate_key_prefix(prefix: &str) -> Result<(), DomainError> {
    let b = prefix.as_bytes();
    let ok = (2..=16).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "invalid_key_prefix",
            "key_prefix",
            "key_prefix must be 2-16 lowercase letters or digits, starting with a letter",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(validate_key_prefix("kh").is_ok());
        assert!(validate_key_prefix("acme2024").is_ok());
        for bad in ["k", "1kh", "Kh", "k_h", "abcdefghijklmnopq"] {
            assert!(validate_key_prefix(bad).is_err(), "{bad}");
        }
    }
}
