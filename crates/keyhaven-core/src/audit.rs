//! The audit log: entries and their per-organization hash chain.
//!
//! Each entry stores the hash of the previous entry of its organization (`prev_hash`,
//! 64 zeros for the first) and its own `hash`: the SHA-256 of its canonical form, which
//! covers every field, `prev_hash` included. Editing any field, deleting or reordering
//! entries breaks a link that [`verify_chain`] reports.
//!
//! The hashes alone are unkeyed: whoever can write the database could delete the newest
//! entries and rewrite the recorded head to match. So the head is also authenticated: a
//! MAC chained over every entry, `mac_n = HMAC(key, mac_{n-1} | seq_n | hash_n)` with
//! `mac_0` empty, keyed by a key derived from the master key ([`head_mac`]). Only the
//! newest MAC is stored (with the head), so no earlier MAC exists to roll back to, and
//! [`verify_head_mac`] recomputes it from the entries.

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

/// Which kind of break [`verify_chain`] / [`verify_head_mac`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// An entry is missing from the sequence (deleted in the middle or at the end).
    Missing,
    /// An entry's `prev_hash` does not match the entry before it (deleted or reordered).
    Link,
    /// An entry's content does not match its hash (edited).
    Edited,
    /// The recorded head does not match the chain's end (entries deleted from the end).
    Head,
    /// The head's MAC does not authenticate the chain: entries were deleted from the end
    /// and the recorded head rewritten to match, or the chain was rewritten without the
    /// master key.
    HeadMac,
}

impl BreakKind {
    /// A short name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing entry",
            Self::Link => "broken link",
            Self::Edited => "edited entry",
            Self::Head => "truncated",
            Self::HeadMac => "head not authenticated",
        }
    }
}

/// The MAC of the chain's head after the entry (`seq`, `hash`), given the MAC after the
/// entry before it (empty for the first): HMAC-SHA256 under `key`, hex.
pub fn head_mac(key: &[u8], prev_mac: &str, seq: i64, hash: &str) -> String {
    use hmac::{Hmac, Mac};
    // HMAC accepts a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(format!("keyhaven-audit-head|{prev_mac}|{seq}|{hash}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The head MAC of `entries` (in `seq` order) computed from scratch.
pub fn chain_mac(key: &[u8], entries: &[AuditEntry]) -> String {
    entries
        .iter()
        .fold(String::new(), |m, e| head_mac(key, &m, e.seq, &e.hash))
}

/// Checks the stored head MAC against the entries (after [`verify_chain`] passed).
/// `Ok(true)`: authenticated; `Ok(false)`: no MAC stored yet (a head last written by a
/// version before MACs, sealed at the organization's next audited action).
pub fn verify_head_mac(
    key: &[u8],
    entries: &[AuditEntry],
    stored: Option<&str>,
) -> Result<bool, ChainBreak> {
    let Some(stored) = stored else {
        return Ok(false);
    };
    let expect = chain_mac(key, entries);
    let same: bool = expect.len() == stored.len()
        && expect
            .bytes()
            .zip(stored.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        return Ok(true);
    }
    let seq = entries.last().map_or(0, |e| e.seq);
    Err(ChainBreak {
        kind: BreakKind::HeadMac,
        seq,
        id: entries.last().map(|e| e.id.to_string()).unwrap_or_default(),
        reason: format!(
            "the head's MAC does not match the chain ending at entry {seq}: newer entries were \
             deleted and audit_heads rewritten, or the chain was rewritten without the master key"
        ),
    })
}

/// The first broken link of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at entry {seq} ({id}): {reason}")]
pub struct ChainBreak {
    /// Which kind of break.
    pub kind: BreakKind,
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
        let brk = |kind: BreakKind, reason: &str| ChainBreak {
            kind,
            seq: e.seq,
            id: e.id.to_string(),
            reason: reason.to_string(),
        };
        if e.seq != expected_seq {
            return Err(ChainBreak {
                kind: BreakKind::Missing,
                seq: expected_seq,
                id: String::new(),
                reason: format!(
                    "entry {expected_seq} is missing (the next entry present is {} with id {})",
                    e.seq, e.id
                ),
            });
        }
        if e.prev_hash != prev {
            return Err(brk(
                BreakKind::Link,
                "prev_hash does not match the previous entry",
            ));
        }
        if e.recompute_hash() != e.hash {
            return Err(brk(
                BreakKind::Edited,
                "content does not match its hash (edited)",
            ));
        }
        prev = e.hash.clone();
        expected_seq += 1;
    }
    if let Some((seq, h)) = head {
        if seq != expected_seq - 1 || h != prev {
            return Err(ChainBreak {
                kind: BreakKind::Head,
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

/// What an audit entry records: every action Keyhaven audits, allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `api_key.create`.
    ApiKeyCreate,
    /// `api_key.delete`.
    ApiKeyDelete,
    /// `api_key.list`.
    ApiKeyList,
    /// `api_key.metrics`.
    ApiKeyMetrics,
    /// `api_key.regenerate`.
    ApiKeyRegenerate,
    /// `api_key.revoke`.
    ApiKeyRevoke,
    /// `api_key.update`.
    ApiKeyUpdate,
    /// `api_key.credits` (a balance set, incremented, decremented or refilled).
    ApiKeyCredits,
    /// `api_key.import` (one entry per imported key, without any secret or hash).
    ApiKeyImport,
    /// `api_key.whoami` (a key looked up by its secret, for support desks).
    ApiKeyWhoami,
    /// `ratelimit.check` (refused calls of `/v1/ratelimit` only).
    RatelimitCheck,
    /// `api_key.usage`.
    ApiKeyUsage,
    /// `api_key.view`.
    ApiKeyView,
    /// `audit.list`.
    AuditList,
    /// `audit_sink.create`.
    AuditSinkCreate,
    /// `audit_sink.delete`.
    AuditSinkDelete,
    /// `audit_sink.list`.
    AuditSinkList,
    /// `audit_sink.update`.
    AuditSinkUpdate,
    /// `audit_sink.view`.
    AuditSinkView,
    /// `credential.create`.
    CredentialCreate,
    /// `credential.delete`.
    CredentialDelete,
    /// `credential.list`.
    CredentialList,
    /// `credential.update`.
    CredentialUpdate,
    /// `credential.view`.
    CredentialView,
    /// `oauth.token`.
    OauthToken,
    /// `organization.create`.
    OrganizationCreate,
    /// `organization.update`.
    OrganizationUpdate,
    /// `organization.view`.
    OrganizationView,
    /// `role.create`.
    RoleCreate,
    /// `role.delete`.
    RoleDelete,
    /// `role.list`.
    RoleList,
    /// `role.update`.
    RoleUpdate,
    /// `role.view`.
    RoleView,
    /// `service_account.archive`.
    ServiceAccountArchive,
    /// `service_account.create`.
    ServiceAccountCreate,
    /// `service_account.delete`.
    ServiceAccountDelete,
    /// `service_account.list`.
    ServiceAccountList,
    /// `service_account.reactivate`.
    ServiceAccountReactivate,
    /// `service_account.suspend`.
    ServiceAccountSuspend,
    /// `service_account.update`.
    ServiceAccountUpdate,
    /// `service_account.view`.
    ServiceAccountView,
    /// `session.sign_in`.
    SessionSignIn,
    /// `session.sign_out`.
    SessionSignOut,
    /// `shared_secret.create`.
    SharedSecretCreate,
    /// `shared_secret.reveal`.
    SharedSecretReveal,
    /// `shared_secret.rotate`.
    SharedSecretRotate,
    /// `shared_secret.view`.
    SharedSecretView,
    /// `user.create`.
    UserCreate,
    /// `user.delete`.
    UserDelete,
    /// `user.list`.
    UserList,
    /// `user.password_change`.
    UserPasswordChange,
    /// `user.reset_password`.
    UserResetPassword,
    /// `user.update`.
    UserUpdate,
    /// `user.view`.
    UserView,
    /// `webhook.create`.
    WebhookCreate,
    /// `webhook.delete`.
    WebhookDelete,
    /// `webhook.deliveries`.
    WebhookDeliveries,
    /// `webhook.list`.
    WebhookList,
    /// `webhook.update`.
    WebhookUpdate,
    /// `webhook.view`.
    WebhookView,
}

impl Action {
    /// Every value, in a stable order.
    pub const ALL: &'static [Action] = &[
        Action::ApiKeyCreate,
        Action::ApiKeyDelete,
        Action::ApiKeyList,
        Action::ApiKeyMetrics,
        Action::ApiKeyRegenerate,
        Action::ApiKeyRevoke,
        Action::ApiKeyUpdate,
        Action::ApiKeyCredits,
        Action::ApiKeyImport,
        Action::ApiKeyWhoami,
        Action::RatelimitCheck,
        Action::ApiKeyUsage,
        Action::ApiKeyView,
        Action::AuditList,
        Action::AuditSinkCreate,
        Action::AuditSinkDelete,
        Action::AuditSinkList,
        Action::AuditSinkUpdate,
        Action::AuditSinkView,
        Action::CredentialCreate,
        Action::CredentialDelete,
        Action::CredentialList,
        Action::CredentialUpdate,
        Action::CredentialView,
        Action::OauthToken,
        Action::OrganizationCreate,
        Action::OrganizationUpdate,
        Action::OrganizationView,
        Action::RoleCreate,
        Action::RoleDelete,
        Action::RoleList,
        Action::RoleUpdate,
        Action::RoleView,
        Action::ServiceAccountArchive,
        Action::ServiceAccountCreate,
        Action::ServiceAccountDelete,
        Action::ServiceAccountList,
        Action::ServiceAccountReactivate,
        Action::ServiceAccountSuspend,
        Action::ServiceAccountUpdate,
        Action::ServiceAccountView,
        Action::SessionSignIn,
        Action::SessionSignOut,
        Action::SharedSecretCreate,
        Action::SharedSecretReveal,
        Action::SharedSecretRotate,
        Action::SharedSecretView,
        Action::UserCreate,
        Action::UserDelete,
        Action::UserList,
        Action::UserPasswordChange,
        Action::UserResetPassword,
        Action::UserUpdate,
        Action::UserView,
        Action::WebhookCreate,
        Action::WebhookDelete,
        Action::WebhookDeliveries,
        Action::WebhookList,
        Action::WebhookUpdate,
        Action::WebhookView,
    ];

    /// The name as stored and shown (`changes` of an entry say what changed).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ApiKeyCreate => "api_key.create",
            Action::ApiKeyDelete => "api_key.delete",
            Action::ApiKeyList => "api_key.list",
            Action::ApiKeyMetrics => "api_key.metrics",
            Action::ApiKeyRegenerate => "api_key.regenerate",
            Action::ApiKeyRevoke => "api_key.revoke",
            Action::ApiKeyUpdate => "api_key.update",
            Action::ApiKeyCredits => "api_key.credits",
            Action::ApiKeyImport => "api_key.import",
            Action::ApiKeyWhoami => "api_key.whoami",
            Action::RatelimitCheck => "ratelimit.check",
            Action::ApiKeyUsage => "api_key.usage",
            Action::ApiKeyView => "api_key.view",
            Action::AuditList => "audit.list",
            Action::AuditSinkCreate => "audit_sink.create",
            Action::AuditSinkDelete => "audit_sink.delete",
            Action::AuditSinkList => "audit_sink.list",
            Action::AuditSinkUpdate => "audit_sink.update",
            Action::AuditSinkView => "audit_sink.view",
            Action::CredentialCreate => "credential.create",
            Action::CredentialDelete => "credential.delete",
            Action::CredentialList => "credential.list",
            Action::CredentialUpdate => "credential.update",
            Action::CredentialView => "credential.view",
            Action::OauthToken => "oauth.token",
            Action::OrganizationCreate => "organization.create",
            Action::OrganizationUpdate => "organization.update",
            Action::OrganizationView => "organization.view",
            Action::RoleCreate => "role.create",
            Action::RoleDelete => "role.delete",
            Action::RoleList => "role.list",
            Action::RoleUpdate => "role.update",
            Action::RoleView => "role.view",
            Action::ServiceAccountArchive => "service_account.archive",
            Action::ServiceAccountCreate => "service_account.create",
            Action::ServiceAccountDelete => "service_account.delete",
            Action::ServiceAccountList => "service_account.list",
            Action::ServiceAccountReactivate => "service_account.reactivate",
            Action::ServiceAccountSuspend => "service_account.suspend",
            Action::ServiceAccountUpdate => "service_account.update",
            Action::ServiceAccountView => "service_account.view",
            Action::SessionSignIn => "session.sign_in",
            Action::SessionSignOut => "session.sign_out",
            Action::SharedSecretCreate => "shared_secret.create",
            Action::SharedSecretReveal => "shared_secret.reveal",
            Action::SharedSecretRotate => "shared_secret.rotate",
            Action::SharedSecretView => "shared_secret.view",
            Action::UserCreate => "user.create",
            Action::UserDelete => "user.delete",
            Action::UserList => "user.list",
            Action::UserPasswordChange => "user.password_change",
            Action::UserResetPassword => "user.reset_password",
            Action::UserUpdate => "user.update",
            Action::UserView => "user.view",
            Action::WebhookCreate => "webhook.create",
            Action::WebhookDelete => "webhook.delete",
            Action::WebhookDeliveries => "webhook.deliveries",
            Action::WebhookList => "webhook.list",
            Action::WebhookUpdate => "webhook.update",
            Action::WebhookView => "webhook.view",
        }
    }

    /// The value named `s`, if there is one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

    #[test]
    fn truncation_with_a_rewritten_head_fails_the_mac() {
        let key = b"derived audit key";
        let c = chain(5);
        let mac = chain_mac(key, &c);
        assert_eq!(verify_head_mac(key, &c, Some(&mac)), Ok(true));
        assert_eq!(verify_head_mac(key, &c, None), Ok(false));
        // The newest entry deleted and the head rewritten to the new end: the hash
        // chain is consistent, the MAC is not.
        let cut = &c[..4];
        let head = (cut[3].seq, cut[3].hash.as_str());
        assert_eq!(verify_chain(cut, Some(head)), Ok(()));
        let e = verify_head_mac(key, cut, Some(&mac)).unwrap_err();
        assert_eq!(e.kind, BreakKind::HeadMac);
        // The MAC can't be made without the key.
        assert!(verify_head_mac(key, cut, Some(&chain_mac(b"guess", cut))).is_err());
        // Incremental and from-scratch agree.
        let step = head_mac(key, &chain_mac(key, cut), c[4].seq, &c[4].hash);
        assert_eq!(step, mac);
    }
}
