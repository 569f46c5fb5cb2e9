//! The audit log: entries and their per-organization hash chain.
//!
//! Each entry stores the hash of the previous entry of its organization (`prev_hash`,
//! 64 zeros for the first) and its own `hash`: the SHA-256 of its canonical form, which
//! covers every field, `prev_hash` included. Editing any field, deleting or reordering
//! entries breaks a link that [`verify_chain`] reports.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::id::Id;
use crate::principal::Principal;
use crate::time::{to_millis, Timestamp};

/// `prev_hash` of an organization's first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How an audited request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action happened.
    Success,
    /// Refused for lack of permission or bad credentials.
    Denied,
    /// Failed for another reason.
    Error,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }

    /// Parses a stored or filter value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Self::Success),
            "denied" => Some(Self::Denied),
            "error" => Some(Self::Error),
            _ => None,
        }
    }
}

/// What an audit entry says, before it is placed in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    /// Who acted.
    pub actor: Principal,
    /// What they did, e.g. `api_key.create`.
    pub action: String,
    /// What they acted on, if anything.
    pub target: Option<Principal>,
    /// How it ended.
    pub outcome: Outcome,
    /// Client IP.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Changed fields (never a secret).
    pub changes: serde_json::Value,
}

/// An entry of the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Its id.
    pub id: Id,
    /// Its organization.
    pub org_id: Id,
    /// Position in the organization's chain, from 1.
    pub seq: i64,
    /// When it happened.
    pub at: Timestamp,
    /// What it records.
    pub draft: AuditDraft,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// Hash of this entry's canonical form.
    pub hash: String,
}

/// The canonical form hashed into the chain: JSON with sorted keys, times in ms.
pub fn canonical(
    id: &Id,
    org_id: &Id,
    seq: i64,
    at: &Timestamp,
    d: &AuditDraft,
    prev_hash: &str,
) -> String {
    json!({
        "id": id.as_str(),
        "org_id": org_id.as_str(),
        "seq": seq,
        "at_ms": to_millis(at),
        "actor": d.actor,
        "action": d.action,
        "target": d.target,
        "outcome": d.outcome.as_str(),
        "ip": d.ip,
        "user_agent": d.user_agent,
        "request_id": d.request_id,
        "changes": d.changes,
        "prev_hash": prev_hash,
    })
    .to_string()
}

/// SHA-256 of a canonical form, hex.
pub fn hash(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

impl AuditEntry {
    /// Places `draft` after the entry whose hash is `prev_hash`, at position `seq`.
    pub fn chain(
        id: Id,
        org_id: Id,
        seq: i64,
        at: Timestamp,
        draft: AuditDraft,
        prev_hash: String,
    ) -> Self {
        let h = hash(&canonical(&id, &org_id, seq, &at, &draft, &prev_hash));
        AuditEntry {
            id,
            org_id,
            seq,
            at,
            draft,
            prev_hash,
            hash: h,
        }
    }

    /// Recomputes this entry's hash from its fields.
    pub fn recompute_hash(&self) -> String {
        hash(&canonical(
            &self.id,
            &self.org_id,
            self.seq,
            &self.at,
            &self.draft,
            &self.prev_hash,
        ))
    }
}

/// The first broken link of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at entry {seq} ({id}): {reason}")]
pub struct ChainBreak {
    /// Position of the first bad entry (or where one is missing).
    pub seq: i64,
    /// Id of the first bad entry (empty when the chain's end is missing).
    pub id: String,
    /// What is wrong.
    pub reason: String,
}

/// Checks a whole organization's chain, in `seq` order. `head` is the (seq, hash) the
/// store recorded as the chain's end, so deleting the newest entries is detected too.
pub fn verify_chain(entries: &[AuditEntry], head: Option<(i64, &str)>) -> Result<(), ChainBreak> {
    let mut prev = GENESIS_HASH.to_string();
    let mut expected_seq = 1;
    for e in entries {
        let brk = |reason: &str| ChainBreak {
            seq: e.seq,
            id: e.id.to_string(),
            reason: reason.to_string(),
        };
        if e.seq != expected_seq {
            return Err(ChainBreak {
                seq: expected_seq,
                id: String::new(),
                reason: format!(
                    "entry {expected_seq} is missing (the next entry present is {} with id {})",
                    e.seq, e.id
                ),
            });
        }
        if e.prev_hash != prev {
            return Err(brk("prev_hash does not match the previous entry"));
        }
        if e.recompute_hash() != e.hash {
            return Err(brk("content does not match its hash (edited)"));
        }
        prev = e.hash.clone();
        expected_seq += 1;
    }
    if let Some((seq, h)) = head {
        if seq != expected_seq - 1 || h != prev {
            return Err(ChainBreak {
                seq: expected_seq,
                id: String::new(),
                reason: format!(
                    "the chain ends at {} but the recorded head is entry {seq}",
                    expected_seq - 1
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::PrincipalKind;
    use chrono::{TimeZone, Utc};
    use rand::SeedableRng;

    fn chain(n: usize) -> Vec<AuditEntry> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let org = Id::generate(0, &mut rng);
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|i| {
                let d = AuditDraft {
                    actor: Principal {
                        kind: PrincipalKind::User,
                        id: "u".into(),
                        name: "Ana".into(),
                    },
                    action: "api_key.create".into(),
                    target: None,
                    outcome: Outcome::Success,
                    ip: Some("127.0.0.1".into()),
                    user_agent: None,
                    request_id: None,
                    changes: json!({"name": format!("k{i}")}),
                };
                let at = Utc.timestamp_millis_opt(1_000 * i as i64).unwrap();
                let e = AuditEntry::chain(
                    Id::generate(i as i64, &mut rng),
                    org.clone(),
                    i as i64,
                    at,
                    d,
                    prev.clone(),
                );
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let head = c.last().map(|e| (e.seq, e.hash.as_str()));
        assert_eq!(verify_chain(&c, head), Ok(()));
    }

    #[test]
    fn edit_delete_and_truncation_are_detected() {
        let mut c = chain(5);
        c[2].draft.action = "api_key.delete".into();
        assert_eq!(verify_chain(&c, None).unwrap_err().seq, 3);

        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify_chain(&c, None).unwrap_err().seq, 2);

        let c = chain(5);
        let head = (5, c[4].hash.clone());
        assert!(verify_chain(&c[..4], Some((head.0, &head.1))).is_err());
    }
}
