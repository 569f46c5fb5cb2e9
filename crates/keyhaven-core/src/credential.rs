//! Client credentials of service accounts, exchanged for JWTs at `/oauth/token`.

use crate::id::Id;
use crate::time::Timestamp;

/// A client credential (its secret is stored only as a digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Its id.
    pub id: Id,
    /// The organization it belongs to.
    pub org_id: Id,
    /// The service account that owns it.
    pub service_account_id: Id,
    /// Public client id: `<prefix>ci_` + 26-char id.
    pub client_id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// SHA-256 of the client secret, hex.
    pub secret_digest: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Last token issued.
    pub last_used_at: Option<Timestamp>,
    /// `None` = never expires.
    pub expires_at: Option<Timestamp>,
    /// Set when its service account was archived.
    pub revoked_at: Option<Timestamp>,
}

/// The client id for a credential: `<prefix>ci_<id>`.
pub fn client_id(prefix: &str, id: &Id) -> String {
    format!("{prefix}ci_{id}")
}

/// The prefix of client secrets: `<prefix>cs`.
pub fn secret_prefix(prefix: &str) -> String {
    format!("{prefix}cs")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn client_ids_and_secrets_have_the_documented_shape() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let id = Id::generate(1, &mut rng);
        assert_eq!(client_id("kh", &id), format!("khci_{id}"));
        let secret = crate::key_format::generate(&secret_prefix("kh"), &mut rng);
        assert!(secret.expose().starts_with("khcs_"));
        assert!(crate::key_format::parse(secret.expose()).is_ok());
    }
}
