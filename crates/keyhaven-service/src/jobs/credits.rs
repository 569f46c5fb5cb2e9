//! Credits in the background (USAGE-CONTROL.md, "Credits"): refills on schedule, and the
//! one-time notices of a balance running low or out.
//!
//! **Refills** run with every job round ([`super::Jobs::run_once`]): keys whose refill is
//! due are read a page at a time, and each is refilled in a write transaction of its own
//! that first claims the refill — moves it to the next one
//! ([`keyhaven_store::Counters::claim_due_refill`], one statement, so of several nodes
//! running the job at once exactly one wins and the others find it no longer due) — then
//! sets the balance to the refill's amount (a new epoch: credits nodes leased before are
//! void), and audits it as the system (`api_key.credits`, `op: "refill"`) through the
//! same commit as the use cases. After the commit this node's meter is told; other nodes
//! see the new epoch in the change log.
//!
//! **Notices**: a lease that saw a balance below its key's `low_threshold`, or at 0,
//! notes it in the node's meter ([`crate::meter::Meter::take_signals`]). Every second
//! each node takes what its meter noted (see [`notify_signals`]), writes what its counter
//! engine keeps behind (so the stored balance includes the spending the notes saw), and
//! claims each notice in the database, which succeeds once per fall (the balance raised
//! again re-arms it) and only while the stored balance still calls for it. The node
//! that won a claim queues `api_key.credits_low` or `api_key.credits_exhausted` for the
//! subscribed webhooks and, for exhaustion, a mail to the key's author through the
//! expiry-notice path (a [`NoticeThreshold::CreditsExhausted`] notice, sent by
//! [`super::notices::send_due`]), all in the claim's transaction.

use std::collections::HashMap;

use keyhaven_core::api_key::ApiKey;
use keyhaven_core::audit::Action;
use keyhaven_core::id::Id;
use keyhaven_core::principal::PrincipalKind;
use keyhaven_core::time::{rfc3339, Timestamp};
use keyhaven_core::usage_control::CreditOp;
use keyhaven_core::user::UserStatus;
use keyhaven_core::webhook_event::WebhookEvent;
use keyhaven_store::{
    ChangeKind, CreditNotice, DueRefill, Notice, NoticeStatus, NoticeThreshold, StoreError, Tx,
};
use serde_json::json;

use super::mail::Mail;
use crate::meter::CreditSignal;
use crate::{Caller, Service, ServiceResult};

/// Keys read per page of due refills.
pub const REFILL_PAGE: i64 = 500;
/// Most pages of due refills one round works through (the rest wait for the next).
const REFILL_PAGES: usize = 100;
/// Keys whose notices are claimed in one transaction.
const NOTICE_CHUNK: usize = 200;
/// Who refills, in the audit log.
pub const REFILL_ACTOR: &str = "keyhaven refill";

/// Refills every key whose refill is due (see the module documentation). Returns how
/// many this node refilled. A key that fails is logged and left due for the next round;
/// the first error is returned after the others were tried.
pub async fn refill_due(service: &Service) -> ServiceResult<usize> {
    // The balance before a refill, in its audit entry, is the stored one: write what
    // the counter engine keeps behind first.
    service
        .verifier
        .meter
        .engine()
        .flush()
        .await
        .map_err(StoreError::from)?;
    let mut refilled = 0;
    let mut first_err = None;
    for _ in 0..REFILL_PAGES {
        let now = service.now();
        let due = {
            let mut tx = service.store.read().await?;
            tx.due_refills(now, REFILL_PAGE).await?
        };
        let full = due.len() as i64 >= REFILL_PAGE;
        let mut failed = false;
        for d in &due {
            match refill(service, d, now).await {
                Ok(true) => refilled += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, key_id = %d.key_id,
                        "cannot refill a key's credits; retrying next round");
                    failed = true;
                    first_err.get_or_insert(e);
                }
            }
        }
        // A failed key is still due: reading on would read it again.
        if !full || failed {
            break;
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(refilled),
    }
}

/// Refills one key if this node claims its refill; false when another node did (or the
/// key changed meanwhile and is no longer due).
async fn refill(service: &Service, d: &DueRefill, now: Timestamp) -> ServiceResult<bool> {
    let mut tx = service.store.begin().await?;
    if !tx
        .claim_due_refill(&d.key_id, now, d.refill.next_due(now))
        .await?
    {
        return Ok(false);
    }
    // Read again under the claim: the rule as it is now.
    let Some(k) = tx.api_key(&d.org_id, &d.key_id).await? else {
        return Ok(false);
    };
    let Some(refill) = k.credits.and_then(|c| c.refill) else {
        // No rule any more: nothing to refill, and nothing scheduled.
        tx.schedule_refill(&k.id, None).await?;
        tx.commit().await?;
        return Ok(false);
    };
    if refill != d.refill {
        tx.schedule_refill(&k.id, Some(refill.next_due(now)))
            .await?;
    }
    let Some(change) = tx
        .adjust_credits(&k.org_id, &k.id, CreditOp::Set, refill.amount)
        .await?
    else {
        tx.commit().await?;
        return Ok(false);
    };
    let caller = Caller::system(k.org_id.clone(), REFILL_ACTOR);
    service
        .commit_mutation(
            tx,
            &caller,
            Some(crate::Success {
                action: Action::ApiKeyCredits,
                target: Some(crate::api_keys::key_principal(&k)),
                changes: json!({
                    "op": "refill",
                    "remaining": {"from": change.before, "to": change.after},
                }),
                event: None,
            }),
            &[(ChangeKind::Key, k.id.to_string())],
        )
        .await?;
    service
        .verifier
        .meter
        .credits_adjusted(k.id.as_str(), change, CreditOp::Set, refill.amount);
    Ok(true)
}

/// What the notes of one key ask for.
struct Due {
    key_id: String,
    org_id: String,
    /// The lowest balance noted.
    remaining: i64,
    /// Some note saw 0.
    exhausted: bool,
}

impl Due {
    fn signal(&self) -> CreditSignal {
        CreditSignal {
            key_id: self.key_id.clone(),
            org_id: self.org_id.clone(),
            remaining: self.remaining,
            low: !self.exhausted,
        }
    }
}

/// One entry per key, in the order first noted.
fn merge(signals: Vec<CreditSignal>) -> Vec<Due> {
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Due> = Vec::new();
    for s in signals {
        match at.get(&s.key_id) {
            Some(&i) => {
                let d = &mut out[i];
                d.remaining = d.remaining.min(s.remaining);
                d.exhausted |= !s.low;
            }
            None => {
                at.insert(s.key_id.clone(), out.len());
                out.push(Due {
                    exhausted: !s.low,
                    key_id: s.key_id,
                    org_id: s.org_id,
                    remaining: s.remaining,
                });
            }
        }
    }
    out
}

/// Takes the notes of this node's meter and sends the notices they call for (see the
/// module documentation): returns how many notices this node claimed. When the database
/// fails, the notes not handled yet are put back for the next round.
pub async fn notify_signals(service: &Service) -> ServiceResult<usize> {
    let meter = &service.verifier.meter;
    let signals = meter.take_signals();
    if signals.is_empty() {
        return Ok(0);
    }
    // Taken before the flush, so every spending they saw is stored when claimed.
    if let Err(e) = meter.engine().flush().await {
        meter.requeue_signals(signals);
        return Err(StoreError::from(e).into());
    }
    let due = merge(signals);
    let mut claimed = 0;
    let mut result = Ok(());
    for (i, chunk) in due.chunks(NOTICE_CHUNK).enumerate() {
        match notify_chunk(service, chunk).await {
            Ok(n) => claimed += n,
            Err(e) => {
                meter.requeue_signals(due[i * NOTICE_CHUNK..].iter().map(Due::signal).collect());
                result = Err(e);
                break;
            }
        }
    }
    if claimed > 0 {
        service.wake_jobs(); // the events' webhook deliveries
    }
    result.map(|()| claimed)
}

/// Claims and queues the notices of `chunk` in one transaction; returns how many.
async fn notify_chunk(service: &Service, chunk: &[Due]) -> ServiceResult<usize> {
    let now = service.now();
    let mut tx = service.store.begin().await?;
    let mut claimed = 0;
    for d in chunk {
        // A balance that fell straight to 0 also fell below the threshold: both notices,
        // the low one first (the claim fails without a threshold above 0).
        let low = tx.claim_credit_notice(&d.key_id, CreditNotice::Low).await?;
        let exhausted = d.exhausted
            && tx
                .claim_credit_notice(&d.key_id, CreditNotice::Exhausted)
                .await?;
        if !low && !exhausted {
            continue;
        }
        let org_id = Id::from_trusted(d.org_id.clone());
        let Some(k) = tx
            .api_key(&org_id, &Id::from_trusted(d.key_id.clone()))
            .await?
        else {
            continue;
        };
        let remaining = if exhausted { 0 } else { d.remaining };
        let mut data = crate::webhooks::key_event(&k, now);
        data["remaining"] = json!(remaining);
        data["low_threshold"] = json!(k.credits.and_then(|c| c.low_threshold));
        if low {
            claimed += 1;
            service
                .emit(
                    tx.as_mut(),
                    &k.org_id,
                    WebhookEvent::ApiKeyCreditsLow,
                    data.clone(),
                )
                .await?;
        }
        if exhausted {
            claimed += 1;
            service
                .emit(
                    tx.as_mut(),
                    &k.org_id,
                    WebhookEvent::ApiKeyCreditsExhausted,
                    data,
                )
                .await?;
            let email = author_email(tx.as_mut(), &k).await?;
            tx.insert_notice(&Notice {
                key_id: k.id.clone(),
                // One notice per exhaustion: when it happened.
                expires_at: now,
                threshold: NoticeThreshold::CreditsExhausted,
                org_id: k.org_id.clone(),
                status: if email.is_some() {
                    NoticeStatus::Pending
                } else {
                    NoticeStatus::NoRecipient
                },
                recipient: email.unwrap_or_default(),
                attempts: 0,
                next_attempt_at: now,
                last_error: None,
                created_at: now,
                sent_at: None,
            })
            .await?;
        }
    }
    tx.commit().await?;
    Ok(claimed)
}

/// The current email of the key's author, when that is a user who is still active.
async fn author_email(tx: &mut dyn Tx, k: &ApiKey) -> ServiceResult<Option<String>> {
    if k.created_by.kind != PrincipalKind::User {
        return Ok(None);
    }
    Ok(tx
        .user(&k.org_id, &Id::from_trusted(k.created_by.id.clone()))
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .map(|u| u.email))
}

/// The mail of a [`NoticeThreshold::CreditsExhausted`] notice for key `k` (its name,
/// masked key and console link; never a secret).
pub fn compose_exhausted(n: &Notice, k: &ApiKey, public_url: &str, from: &str) -> Mail {
    let link = format!("{public_url}/api-keys/{}", n.key_id);
    let when = rfc3339(&n.expires_at);
    let refill = match k.credits.and_then(|c| c.refill) {
        Some(r) => format!(
            " Its balance is set back to {} at its next refill, {} (UTC).",
            r.amount,
            rfc3339(&r.next_due(n.expires_at)),
        ),
        None => String::new(),
    };
    Mail {
        from: from.to_string(),
        to: n.recipient.clone(),
        subject: format!("API key \"{}\" has run out of credits", k.name),
        body: format!(
            "The API key \"{name}\" ({masked}) ran out of credits at {when} (UTC). \
             Verifications that spend credits are refused until its balance is raised.\
             {refill}\n\nTo keep the integration working, add credits to the key \
             (\"Adjust credits\" on its page):\n\n{link}\n\n— Keyhaven\n",
            name = k.name,
            masked = k.masked_key,
        ),
    }
}
