//! `POST /v1/ratelimit`: limits on things that are not keys (an end user, an address, a
//! tenant), on the same engine and with the same cluster-wide promise as key limits.

use keyhaven_core::audit::Action;
use keyhaven_core::permission::Permission;
use keyhaven_core::usage_control;
use keyhaven_core::DomainError;
use sha2::{Digest, Sha256};

use crate::meter::{bucket_id, BucketSpec, LimitState};
use crate::{Caller, Service, ServiceResult};

/// Longest namespace or identifier, in bytes.
pub const MAX_PART_BYTES: usize = 255;

/// One check: spend `cost` of `limit` per `duration_ms` for `identifier` in `namespace`.
#[derive(Debug, Clone)]
pub struct RatelimitCheck {
    /// What is limited (`api-calls`, `login`…), 1..=255 bytes, no control characters.
    pub namespace: String,
    /// Who is limited (a user id, an address…), 1..=255 bytes, no control characters.
    pub identifier: String,
    /// Tokens in a full bucket.
    pub limit: i64,
    /// Time to refill an empty bucket, ms.
    pub duration_ms: i64,
    /// Tokens to spend (default 1; 0 reports without spending).
    pub cost: i64,
}

fn part(s: &str, param: &str) -> Result<(), DomainError> {
    if s.is_empty() || s.len() > MAX_PART_BYTES || s.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "invalid_parameter",
            param,
            format!("{param} must be 1 to {MAX_PART_BYTES} bytes without control characters"),
        ));
    }
    Ok(())
}

impl RatelimitCheck {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), DomainError> {
        part(&self.namespace, "namespace")?;
        part(&self.identifier, "identifier")?;
        usage_control::validate_window(self.limit, self.duration_ms, "ratelimit").map_err(
            |_| {
                DomainError::invalid(
                    "invalid_ratelimit",
                    "limit",
                    format!(
                        "limit must be 1..={} and duration_ms {}..={}",
                        usage_control::MAX_LIMIT,
                        usage_control::MIN_DURATION_MS,
                        usage_control::MAX_DURATION_MS
                    ),
                )
            },
        )?;
        usage_control::validate_cost(self.cost, "cost")
    }

    fn bucket(&self, org_id: &str) -> BucketSpec {
        // Namespace and identifier may hold any character: the id carries their digest.
        let mut h = Sha256::new();
        h.update(self.namespace.as_bytes());
        h.update([0]);
        h.update(self.identifier.as_bytes());
        let digest = hex::encode(h.finalize());
        BucketSpec {
            id: bucket_id("r", org_id, &digest, self.limit, self.duration_ms),
            limit: self.limit,
            duration_ms: self.duration_ms,
        }
    }
}

impl Service {
    /// Checks and spends a limit for `caller` [ratelimits.use].
    pub async fn check_ratelimit(
        &self,
        caller: &Caller,
        check: &RatelimitCheck,
    ) -> ServiceResult<LimitState> {
        self.authorize(caller, Permission::RatelimitsUse, Action::RatelimitCheck)
            .await?;
        self.ratelimit_in(caller.org_id.as_str(), check).await
    }

    /// Checks and spends a limit in organization `org_id`, for a caller already
    /// authenticated and authorized (by the verification cache, on the hot path).
    pub async fn ratelimit_in(
        &self,
        org_id: &str,
        check: &RatelimitCheck,
    ) -> ServiceResult<LimitState> {
        check.validate()?;
        let bucket = check.bucket(org_id);
        let now = self.now().timestamp_millis();
        let spent = self
            .verifier
            .meter
            .spend(&[(&bucket, check.cost)], None, now)
            .await
            .map_err(keyhaven_store::StoreError::from)?;
        Ok(spent.limits.first().copied().unwrap_or(LimitState {
            limit: check.limit,
            remaining: 0,
            reset_at_ms: now,
            exceeded: true,
        }))
    }
}
