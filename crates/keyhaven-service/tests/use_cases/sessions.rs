//! Signing in: the failure limit, what is audited, the idle timeout.

use chrono::Duration;
use keyhaven_core::audit::Outcome;
use keyhaven_core::role::READ_ONLY;
use keyhaven_service::sessions::{FAILURE_WINDOW_MINUTES, IDLE_TIMEOUT_HOURS, MAX_FAILURES};
use keyhaven_service::{RequestContext, ServiceError, ServiceResult};

use crate::support::{err, Env, PASSWORD};

async fn sign_in(env: &Env, email: &str, password: &str) -> ServiceResult<String> {
    env.service
        .sign_in(email, password, RequestContext::default())
        .await
        .map(|s| s.token)
}

fn unauthenticated(r: ServiceResult<String>) {
    assert!(
        matches!(err(r), ServiceError::Unauthenticated(_)),
        "expected bad credentials"
    );
}

fn rate_limited(r: ServiceResult<String>) -> u64 {
    match err(r) {
        ServiceError::RateLimited(secs) => secs,
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

/// Five wrong passwords within the window, then even the right one is refused with
/// RateLimited until the oldest failure leaves the window.
async fn five_failures_then_rate_limited(env: &Env) {
    let (u, _) = env.user("dev@example.com", &[READ_ONLY]).await;
    assert_eq!((MAX_FAILURES, FAILURE_WINDOW_MINUTES), (5, 15));

    let mark = env.mark().await;
    for _ in 0..5 {
        unauthenticated(sign_in(env, "dev@example.com", "wrong password!!").await);
    }
    let denied = env
        .audited(mark, &[("session.sign_in", Outcome::Denied); 5])
        .await;
    for e in &denied {
        assert_eq!(e.draft.changes["reason"], "wrong password");
        assert_eq!(e.draft.target.as_ref().unwrap().id, u.id.to_string());
    }

    let mark = env.mark().await;
    // Emails are matched case-insensitively, so this is the same account.
    let r = sign_in(env, "Dev@Example.com", PASSWORD).await;
    assert_eq!(rate_limited(r), 15 * 60);
    env.advance(Duration::minutes(15) - Duration::seconds(1));
    assert_eq!(
        rate_limited(sign_in(env, "dev@example.com", PASSWORD).await),
        1
    );
    // Refusals for the limit are not audited (nothing was checked).
    env.audited(mark, &[]).await;

    env.advance(Duration::seconds(1));
    let mark = env.mark().await;
    sign_in(env, "dev@example.com", PASSWORD).await.unwrap();
    env.audited(mark, &[("session.sign_in", Outcome::Success)])
        .await;
}

/// A successful sign-in clears the failures counted so far.
async fn success_clears_the_failures(env: &Env) {
    env.user("dev@example.com", &[READ_ONLY]).await;
    for _ in 0..4 {
        unauthenticated(sign_in(env, "dev@example.com", "wrong password!!").await);
    }
    sign_in(env, "dev@example.com", PASSWORD).await.unwrap();
    for _ in 0..4 {
        unauthenticated(sign_in(env, "dev@example.com", "wrong password!!").await);
    }
    sign_in(env, "dev@example.com", PASSWORD).await.unwrap();
}

/// Unknown emails are limited the same way, and leave no audit entry (they belong to
/// no organization).
async fn unknown_emails_are_limited_too(env: &Env) {
    let mark = env.mark().await;
    for _ in 0..5 {
        unauthenticated(sign_in(env, "nobody@example.com", PASSWORD).await);
    }
    assert_eq!(
        rate_limited(sign_in(env, "nobody@example.com", PASSWORD).await),
        15 * 60
    );
    env.audited(mark, &[]).await;
    // Other emails are not affected.
    sign_in(env, crate::support::ADMIN_EMAIL, PASSWORD)
        .await
        .unwrap();
}

/// A session ends after the idle timeout; a request before it keeps it alive.
async fn sessions_end_after_the_idle_timeout(env: &Env) {
    env.user("dev@example.com", &[READ_ONLY]).await;
    let token = sign_in(env, "dev@example.com", PASSWORD).await.unwrap();
    let ctx = RequestContext::default;

    env.advance(Duration::hours(IDLE_TIMEOUT_HOURS) - Duration::minutes(1));
    env.service
        .authenticate_session(&token, ctx())
        .await
        .unwrap();
    env.advance(Duration::hours(IDLE_TIMEOUT_HOURS) - Duration::minutes(1));
    env.service
        .authenticate_session(&token, ctx())
        .await
        .unwrap();
    env.advance(Duration::hours(IDLE_TIMEOUT_HOURS));
    assert!(matches!(
        err(env.service.authenticate_session(&token, ctx()).await),
        ServiceError::Unauthenticated(_)
    ));
    // Ended for good, even if time ran backwards.
    env.advance(-Duration::hours(IDLE_TIMEOUT_HOURS));
    assert!(matches!(
        err(env.service.authenticate_session(&token, ctx()).await),
        ServiceError::Unauthenticated(_)
    ));
}

on_both_backends! {
    five_failures_then_rate_limited,
    success_clears_the_failures,
    unknown_emails_are_limited_too,
    sessions_end_after_the_idle_timeout,
}
