//! The organization's webhook shared secret: `whsec_` + base64 of 32 random bytes,
//! stored encrypted with the master key. Rotation keeps the previous secret signing
//! for 24 hours.

use base64::Engine;
use chrono::Duration;
use keyhaven_core::audit::Action;
use keyhaven_core::id::Id;
use keyhaven_core::permission::Permission;
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::time::Timestamp;
use keyhaven_store::SharedSecretRecord;

use rand::RngCore;
use serde_json::json;

use crate::{Caller, Service, ServiceError, ServiceResult};

/// How long a rotated-out secret keeps signing.
pub const ROTATION_OVERLAP_HOURS: i64 = 24;

/// What `GET /shared-secret` shows (never the secret).
#[derive(Debug, Clone)]
pub struct SharedSecretStatus {
    /// Whether a secret exists.
    pub exists: bool,
    /// When the current secret was created.
    pub created_at: Option<Timestamp>,
    /// Until when the previous secret still signs.
    pub previous_valid_until: Option<Timestamp>,
}

fn target(caller: &Caller) -> Principal {
    Principal {
        kind: PrincipalKind::SharedSecret,
        id: caller.org_id.to_string(),
        name: "shared secret".into(),
    }
}

/// A new `whsec_` secret.
pub fn generate() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b)
    )
}

impl Service {
    /// `secret` encrypted for `org_id`'s shared-secret row.
    pub(crate) fn encrypt_shared_secret(&self, org_id: &Id, secret: &str) -> ServiceResult<String> {
        self.master_key
            .encrypt(
                secret.as_bytes(),
                &crate::secrets::context::shared_secret(org_id.as_str()),
            )
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    fn decrypt_secret(&self, org_id: &Id, ciphertext: &str) -> ServiceResult<String> {
        self.master_key
            .decrypt(
                ciphertext,
                &crate::secrets::context::shared_secret(org_id.as_str()),
            )
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ServiceError::Internal(
                    "the shared secret cannot be decrypted with this master key".into(),
                )
            })
    }

    /// Whether a secret exists and when it was made.
    pub async fn shared_secret_status(&self, caller: &Caller) -> ServiceResult<SharedSecretStatus> {
        self.authorize(
            caller,
            Permission::SharedSecretView,
            Action::SharedSecretView,
        )
        .await?;
        let now = self.now();
        let mut tx = self.store.read().await?;
        let rec = tx.shared_secret(&caller.org_id).await?;
        Ok(SharedSecretStatus {
            exists: rec.is_some(),
            created_at: rec.as_ref().map(|r| r.created_at),
            previous_valid_until: rec.and_then(|r| r.previous_valid_until.filter(|t| *t > now)),
        })
    }

    /// Reveals the secret (audited). Creating one is a rotation (`shared_secret.manage`).
    pub async fn reveal_shared_secret(&self, caller: &Caller) -> ServiceResult<String> {
        self.authorize(
            caller,
            Permission::SharedSecretView,
            Action::SharedSecretReveal,
        )
        .await?;
        let mut tx = self.store.begin().await?;
        let rec = tx
            .shared_secret(&caller.org_id)
            .await?
            .ok_or(ServiceError::NotFound(
                "shared secret (create one with rotate)",
            ))?;
        let secret = self.decrypt_secret(&caller.org_id, &rec.ciphertext)?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::SharedSecretReveal,
                target: Some(target(caller)),
                changes: json!({}),
                event: None,
            }),
            &[],
        )
        .await?;
        Ok(secret)
    }

    /// Creates or rotates the secret; the previous one keeps signing for 24 hours.
    pub async fn rotate_shared_secret(
        &self,
        caller: &Caller,
    ) -> ServiceResult<(String, Option<Timestamp>)> {
        self.authorize(
            caller,
            Permission::SharedSecretManage,
            Action::SharedSecretRotate,
        )
        .await?;
        let now = self.now();
        let secret = generate();
        let mut tx = self.store.begin().await?;
        let old = tx.shared_secret(&caller.org_id).await?;
        let (previous_ciphertext, previous_valid_until) = match old {
            Some(o) => (
                Some(o.ciphertext),
                Some(now + Duration::hours(ROTATION_OVERLAP_HOURS)),
            ),
            None => (None, None),
        };
        tx.put_shared_secret(
            &caller.org_id,
            &SharedSecretRecord {
                ciphertext: self.encrypt_shared_secret(&caller.org_id, &secret)?,
                created_at: now,
                previous_ciphertext,
                previous_valid_until,
            },
        )
        .await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::SharedSecretRotate,
                target: Some(target(caller)),
                changes: json!({ "previous_valid_until": previous_valid_until.as_ref().map(keyhaven_core::time::rfc3339) }),
                event: None,
            }),
            &[],
        )
        .await?;
        Ok((secret, previous_valid_until))
    }

    /// The secrets that sign webhooks now: the current one, and the previous one during
    /// a rotation's overlap.
    pub async fn signing_secrets(&self, org_id: &keyhaven_core::Id) -> ServiceResult<Vec<String>> {
        let now = self.now();
        let mut tx = self.store.read().await?;
        let Some(rec) = tx.shared_secret(org_id).await? else {
            return Ok(Vec::new());
        };
        let mut out = vec![self.decrypt_secret(org_id, &rec.ciphertext)?];
        if let (Some(c), Some(until)) = (&rec.previous_ciphertext, rec.previous_valid_until) {
            if until > now {
                out.push(self.decrypt_secret(org_id, c)?);
            }
        }
        Ok(out)
    }
}
