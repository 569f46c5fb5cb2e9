//! Credits in the background: refills on schedule (once, however many nodes run the
//! job), and the one-time `api_key.credits_low` / `api_key.credits_exhausted` notices —
//! webhook events and the author's mail — re-armed when the balance is raised.

use chrono::{Duration, TimeZone, Utc};
use keyhaven_core::api_key::ApiKey;
use keyhaven_core::audit::Outcome;
use keyhaven_core::key_format::Secret;
use keyhaven_core::time::Timestamp;
use keyhaven_core::usage_control::{CreditOp, Credits, Refill, RefillInterval};
use keyhaven_service::api_keys::CreateApiKey;
use keyhaven_service::jobs::credits::{notify_signals, refill_due, REFILL_ACTOR};
use keyhaven_service::jobs::mail::Mailer;
use keyhaven_service::jobs::notices::send_due;
use keyhaven_service::verify::{Code, Usage};
use keyhaven_service::webhooks::CreateWebhook;
use keyhaven_service::{Caller, Service};
use keyhaven_store::{Notice, NoticeStatus, NoticeThreshold, Page};
use serde_json::Value;

use crate::support::{named, owner, strings, Env, ADMIN_EMAIL};

fn daily(amount: i64) -> Refill {
    Refill {
        interval: RefillInterval::Daily,
        amount,
        day_of_month: None,
    }
}

fn credits(remaining: i64, refill: Option<Refill>, low_threshold: Option<i64>) -> Credits {
    Credits {
        remaining,
        refill,
        low_threshold,
    }
}

/// A key called `name` with `credits`, made by `by` (its owner a fresh service account).
async fn key_with(env: &Env, by: &Caller, name: &str, c: Credits) -> (ApiKey, Secret) {
    let sa = env.service_account(&format!("{name}-owner"), &[]).await;
    let (k, _, secret) = env
        .service
        .create_api_key(
            by,
            CreateApiKey {
                owner: Some(owner(&sa)),
                credits: Some(c),
                ..named(name)
            },
        )
        .await
        .unwrap();
    (k, secret)
}

/// One verification of `secret` spending `cost` credits: its code and the credits left.
async fn spend(service: &Service, secret: &Secret, cost: i64) -> (Code, Option<i64>) {
    let v = service
        .verifier()
        .verify_in(
            None,
            secret.expose(),
            &[] as &[&str],
            None,
            Usage {
                cost,
                ..Usage::DEFAULT
            },
        )
        .await
        .unwrap();
    (v.code, v.remaining)
}

/// The stored balance, read through the use case.
async fn balance(env: &Env, k: &ApiKey) -> i64 {
    let (k, _) = env.service.get_api_key(&env.system, &k.id).await.unwrap();
    k.credits.expect("a balance").remaining
}

/// Keys whose refill is due at `t`.
async fn due_at(env: &Env, t: Timestamp) -> usize {
    let mut tx = env.db.store.read().await.unwrap();
    tx.due_refills(t, 100).await.unwrap().len()
}

fn utc(y: i32, m: u32, d: u32, h: u32) -> Timestamp {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

/// Moves the test clock to `t` (forward only).
fn set_clock(env: &Env, t: Timestamp) {
    let now = env.now();
    assert!(t >= now, "the test clock only moves forward");
    env.advance(t - now);
}

async fn a_due_daily_refill_sets_the_balance_and_reschedules(env: &Env) {
    // Created at 2026-11-22 12:00 UTC: the first refill is at midnight.
    let (k, secret) = key_with(
        env,
        &env.system,
        "daily",
        credits(5, Some(daily(100)), None),
    )
    .await;
    assert_eq!(
        spend(&env.service, &secret, 2).await,
        (Code::Valid, Some(3))
    );
    assert_eq!(refill_due(&env.service).await.unwrap(), 0, "not due yet");
    assert_eq!(balance(env, &k).await, 3);

    env.advance(Duration::hours(12) - Duration::seconds(1));
    assert_eq!(
        refill_due(&env.service).await.unwrap(),
        0,
        "one second early"
    );
    env.advance(Duration::seconds(1));
    let mark = env.mark().await;
    assert_eq!(refill_due(&env.service).await.unwrap(), 1);
    assert_eq!(balance(env, &k).await, 100);
    let e = env
        .audited(mark, &[("api_key.credits", Outcome::Success)])
        .await;
    assert_eq!(e[0].draft.actor.name, REFILL_ACTOR);
    assert_eq!(
        e[0].draft.target.as_ref().map(|t| t.id.as_str()),
        Some(k.id.as_str())
    );
    assert_eq!(
        e[0].draft.changes,
        serde_json::json!({"op": "refill", "remaining": {"from": 3, "to": 100}})
    );
    // The verifier spends from the new balance at once.
    assert_eq!(
        spend(&env.service, &secret, 1).await,
        (Code::Valid, Some(99))
    );

    // Rescheduled for the next midnight: nothing more today.
    assert_eq!(refill_due(&env.service).await.unwrap(), 0);
    assert_eq!(
        due_at(env, utc(2026, 11, 23, 23) + Duration::minutes(59)).await,
        0
    );
    assert_eq!(due_at(env, utc(2026, 11, 24, 0)).await, 1);
    // After two missed midnights (downtime), one refill, then the next midnight.
    env.advance(Duration::days(2) + Duration::hours(3));
    assert_eq!(refill_due(&env.service).await.unwrap(), 1);
    assert_eq!(balance(env, &k).await, 100);
    assert_eq!(due_at(env, utc(2026, 11, 25, 23)).await, 0);
    assert_eq!(due_at(env, utc(2026, 11, 26, 0)).await, 1);
}

async fn a_monthly_refill_on_the_31st_comes_on_the_last_day_of_february(env: &Env) {
    set_clock(env, utc(2027, 2, 10, 12));
    let monthly = Refill {
        interval: RefillInterval::Monthly,
        amount: 1_000,
        day_of_month: Some(31),
    };
    let (k, secret) = key_with(
        env,
        &env.system,
        "monthly",
        credits(10, Some(monthly), None),
    )
    .await;
    assert_eq!(
        spend(&env.service, &secret, 4).await,
        (Code::Valid, Some(6))
    );

    set_clock(env, utc(2027, 2, 27, 23) + Duration::minutes(59));
    assert_eq!(refill_due(&env.service).await.unwrap(), 0);
    assert_eq!(balance(env, &k).await, 6);
    set_clock(env, utc(2027, 2, 28, 0));
    assert_eq!(refill_due(&env.service).await.unwrap(), 1);
    assert_eq!(balance(env, &k).await, 1_000);
    // Then on the 31st of March.
    assert_eq!(due_at(env, utc(2027, 3, 30, 23)).await, 0);
    assert_eq!(due_at(env, utc(2027, 3, 31, 0)).await, 1);
}

async fn two_nodes_running_the_job_at_once_refill_each_key_once(env: &Env) {
    let mut keys = Vec::new();
    for i in 0..5 {
        let (k, secret) = key_with(
            env,
            &env.system,
            &format!("shared-{i}"),
            credits(10, Some(daily(50)), None),
        )
        .await;
        assert_eq!(spend(&env.service, &secret, 3).await.0, Code::Valid);
        keys.push(k);
    }
    let other = env.second_node();
    env.advance(Duration::hours(12));
    let mark = env.mark().await;
    let (a, b) = tokio::join!(refill_due(&env.service), refill_due(&other));
    assert_eq!(a.unwrap() + b.unwrap(), 5, "each key refilled by one node");
    env.audited(mark, &[("api_key.credits", Outcome::Success); 5])
        .await;
    for k in &keys {
        assert_eq!(balance(env, k).await, 50);
    }
    // And again, one after the other: nothing is due any more.
    assert_eq!(refill_due(&other).await.unwrap(), 0);
    assert_eq!(refill_due(&env.service).await.unwrap(), 0);
}

/// An endpoint receiving both credit events.
async fn credit_webhook(env: &Env) -> keyhaven_store::WebhookEndpoint {
    env.service
        .create_webhook(
            &env.system,
            CreateWebhook {
                url: "https://hooks.example.com/credits".into(),
                events: strings(&["api_key.credits_low", "api_key.credits_exhausted"]),
                description: None,
                enabled: None,
            },
        )
        .await
        .unwrap()
}

/// The endpoint's deliveries, oldest first: (type, data).
async fn events(env: &Env, w: &keyhaven_store::WebhookEndpoint) -> Vec<(String, Value)> {
    let l = env
        .service
        .list_deliveries(
            &env.system,
            &w.id,
            &Page {
                limit: 100,
                cursor: None,
            },
        )
        .await
        .unwrap();
    let mut out: Vec<(String, Value)> = l
        .items
        .iter()
        .map(|d| {
            let body: Value = serde_json::from_str(&d.payload).unwrap();
            (d.event_type.clone(), body["data"].clone())
        })
        .collect();
    out.reverse();
    out
}

/// How many `api_key.credits_low` and `api_key.credits_exhausted` events (deliveries
/// queued in the same millisecond have no order).
fn counts(ev: &[(String, Value)]) -> (usize, usize) {
    let n = |t: &str| ev.iter().filter(|(x, _)| x == t).count();
    let (low, out) = (n("api_key.credits_low"), n("api_key.credits_exhausted"));
    assert_eq!(low + out, ev.len(), "only credit events: {ev:?}");
    (low, out)
}

/// The data of the `api_key.credits_exhausted` event about `k`.
fn exhausted_data<'a>(ev: &'a [(String, Value)], k: &ApiKey) -> &'a Value {
    &ev.iter()
        .find(|(t, d)| t == "api_key.credits_exhausted" && d["id"] == k.id.as_str())
        .expect("an exhaustion event")
        .1
}

async fn notices(env: &Env, k: &ApiKey) -> Vec<Notice> {
    let mut tx = env.db.store.read().await.unwrap();
    tx.notices_of(&k.id).await.unwrap()
}

/// Spends one credit and then sends the notices it noted; returns the code.
async fn spend_and_notify(env: &Env, secret: &Secret) -> Code {
    let (code, _) = spend(&env.service, secret, 1).await;
    notify_signals(&env.service).await.unwrap();
    code
}

async fn low_and_exhausted_balances_notify_once_each_until_raised(env: &Env) {
    let w = credit_webhook(env).await;
    let admin = env.admin_caller().await;
    let (k, secret) = key_with(env, &admin, "metered", credits(3, None, Some(2))).await;

    assert_eq!(spend_and_notify(env, &secret).await, Code::Valid);
    assert!(events(env, &w).await.is_empty(), "2 is not below 2");
    assert_eq!(spend_and_notify(env, &secret).await, Code::Valid);
    let ev = events(env, &w).await;
    assert_eq!(counts(&ev), (1, 0));
    let data = &ev[0].1;
    assert_eq!(data["id"], k.id.as_str());
    assert_eq!(data["name"], "metered");
    assert_eq!(data["masked_key"], k.masked_key.as_str());
    assert_eq!(
        (data["remaining"].clone(), data["low_threshold"].clone()),
        (1.into(), 2.into())
    );
    assert!(
        !data.to_string().contains(secret.expose()),
        "never the secret"
    );
    assert!(
        notices(env, &k).await.is_empty(),
        "no mail for a low balance"
    );

    assert_eq!(spend_and_notify(env, &secret).await, Code::Valid);
    // Refused verifications see 0 again and again: still one notice.
    for _ in 0..3 {
        assert_eq!(spend_and_notify(env, &secret).await, Code::UsageExceeded);
    }
    let ev = events(env, &w).await;
    assert_eq!(counts(&ev), (1, 1));
    let data = exhausted_data(&ev, &k);
    assert_eq!(
        (data["remaining"].clone(), data["low_threshold"].clone()),
        (0.into(), 2.into())
    );
    assert_eq!(data["masked_key"], k.masked_key.as_str());
    let n = notices(env, &k).await;
    assert_eq!(n.len(), 1);
    assert_eq!(
        (n[0].threshold, n[0].status, n[0].recipient.as_str()),
        (
            NoticeThreshold::CreditsExhausted,
            NoticeStatus::Pending,
            ADMIN_EMAIL
        )
    );

    // Raising the balance above the threshold re-arms both.
    env.advance(Duration::minutes(5));
    env.service
        .adjust_credits(&env.system, &k.id, CreditOp::Set, 4)
        .await
        .unwrap();
    notify_signals(&env.service).await.unwrap();
    assert_eq!(events(env, &w).await.len(), 2);
    while spend_and_notify(env, &secret).await == Code::Valid {}
    assert_eq!(counts(&events(env, &w).await), (2, 2));
    assert_eq!(notices(env, &k).await.len(), 2, "one mail per exhaustion");

    // Raised, but not above the threshold: the low notice stays spent, exhaustion re-arms.
    env.service
        .adjust_credits(&env.system, &k.id, CreditOp::Increment, 1)
        .await
        .unwrap();
    while spend_and_notify(env, &secret).await == Code::Valid {}
    assert_eq!(counts(&events(env, &w).await), (2, 3));
}

async fn a_balance_falling_straight_to_zero_sends_both_and_a_keyless_author_gets_no_mail(
    env: &Env,
) {
    let w = credit_webhook(env).await;
    // Made by the system: no human author to mail.
    let (k, secret) = key_with(env, &env.system, "bulk", credits(5, None, Some(3))).await;
    assert_eq!(
        spend(&env.service, &secret, 5).await,
        (Code::Valid, Some(0))
    );
    assert_eq!(notify_signals(&env.service).await.unwrap(), 2);
    assert_eq!(counts(&events(env, &w).await), (1, 1));
    let n = notices(env, &k).await;
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].status, NoticeStatus::NoRecipient);
    // A key without a threshold gets only the exhaustion event.
    let (_, plain) = key_with(env, &env.system, "plain", credits(1, None, None)).await;
    assert_eq!(spend(&env.service, &plain, 1).await.0, Code::Valid);
    assert_eq!(notify_signals(&env.service).await.unwrap(), 1);
    assert_eq!(counts(&events(env, &w).await), (1, 2));
}

async fn a_notice_noted_before_the_balance_was_raised_is_not_sent(env: &Env) {
    let w = credit_webhook(env).await;
    let (k, secret) = key_with(env, &env.system, "topped-up", credits(2, None, Some(5))).await;
    assert_eq!(
        spend(&env.service, &secret, 2).await,
        (Code::Valid, Some(0))
    );
    // Topped up before this node got round to its notes.
    env.service
        .adjust_credits(&env.system, &k.id, CreditOp::Increment, 100)
        .await
        .unwrap();
    assert_eq!(notify_signals(&env.service).await.unwrap(), 0);
    assert!(events(env, &w).await.is_empty());
    assert!(notices(env, &k).await.is_empty());
}

async fn the_exhaustion_mail_names_the_key_and_links_to_it(env: &Env) {
    let admin = env.admin_caller().await;
    let (k, secret) = key_with(env, &admin, "mailed", credits(1, Some(daily(25)), None)).await;
    assert_eq!(spend(&env.service, &secret, 1).await.0, Code::Valid);
    notify_signals(&env.service).await.unwrap();
    let outbox = tempfile::tempdir().unwrap();
    let mailer = Mailer::Files(outbox.path().to_path_buf());
    let sent = send_due(
        &env.service,
        &mailer,
        "https://keys.example.com",
        "keyhaven@example.com",
    )
    .await
    .unwrap();
    assert_eq!(sent, 1);
    let files: Vec<_> = std::fs::read_dir(outbox.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let mail = quoted_printable(&std::fs::read_to_string(&files[0]).unwrap());
    assert!(mail.contains(&format!("To: {ADMIN_EMAIL}")), "{mail}");
    assert!(mail.contains("has run out of credits"), "{mail}");
    assert!(mail.contains("\"mailed\""), "{mail}");
    assert!(mail.contains(&k.masked_key), "{mail}");
    assert!(
        mail.contains(&format!("https://keys.example.com/api-keys/{}", k.id)),
        "{mail}"
    );
    assert!(mail.contains("set back to 25"), "{mail}");
    assert!(!mail.contains(secret.expose()), "never the secret");
    let n = notices(env, &k).await;
    assert_eq!(n[0].status, NoticeStatus::Sent);
    // Sent once.
    assert_eq!(
        send_due(
            &env.service,
            &mailer,
            "https://keys.example.com",
            "k@example.com"
        )
        .await
        .unwrap(),
        0
    );
}

/// A mail as written to the outbox with its quoted-printable body decoded.
fn quoted_printable(raw: &str) -> String {
    let unfolded = raw.replace("=\r\n", "").replace("=\n", "");
    let b = unfolded.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

on_both_backends! {
    a_due_daily_refill_sets_the_balance_and_reschedules,
    a_monthly_refill_on_the_31st_comes_on_the_last_day_of_february,
    two_nodes_running_the_job_at_once_refill_each_key_once,
    low_and_exhausted_balances_notify_once_each_until_raised,
    a_balance_falling_straight_to_zero_sends_both_and_a_keyless_author_gets_no_mail,
    a_notice_noted_before_the_balance_was_raised_is_not_sent,
    the_exhaustion_mail_names_the_key_and_links_to_it,
}
