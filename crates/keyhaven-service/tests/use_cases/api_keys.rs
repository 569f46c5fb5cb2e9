//! API keys: permission, no-escalation, name patterns, expiry, regeneration, revocation.

use chrono::Duration;
use keyhaven_core::audit::Outcome;
use keyhaven_core::role::{ADMIN, READ_ONLY, SUPER_ADMIN};
use keyhaven_service::api_keys::{CreateApiKey, RegenerateApiKey, UpdateApiKey};
use keyhaven_service::roles::CreateRole;
use keyhaven_service::verify::Code;
use keyhaven_service::ServiceError;

use crate::support::{conflict, denied, err, invalid, named, strings, Env};

fn regenerate(grace_seconds: i64) -> RegenerateApiKey {
    RegenerateApiKey {
        expires_at: Some(None),
        grace_period_seconds: Some(grace_seconds),
    }
}

async fn key_count(env: &Env) -> i64 {
    env.service.metrics(&env.system).await.unwrap().total_keys
}

/// Without `api_keys.create` the use case refuses, records the denial, stores nothing.
async fn create_without_permission_is_denied_and_audited(env: &Env) {
    let (_, reader) = env.user("reader@example.com", &[READ_ONLY]).await;
    let mark = env.mark().await;
    let r = env.service.create_api_key(&reader, named("ci")).await;
    assert_eq!(denied(r), "api_keys.create");
    env.audited_denial(mark, "api_key.create", &reader, "api_keys.create")
        .await;
    assert_eq!(key_count(env).await, 0);

    // The same for the other key actions a read-only user may not take.
    let (k, _) = env.simple_key("target").await;
    let mark = env.mark().await;
    let r = env.service.revoke_api_key(&reader, &k.id).await;
    assert_eq!(denied(r), "api_keys.manage");
    env.audited_denial(mark, "api_key.revoke", &reader, "api_keys.manage")
        .await;
}

/// An admin cannot put super-admin-only permissions on a key, by role or by scope;
/// application scopes and permissions the admin holds are free to grant.
async fn create_cannot_grant_more_than_the_caller_holds(env: &Env) {
    let (_, admin) = env.user("ops@example.com", &[ADMIN]).await;

    let mark = env.mark().await;
    let r = env
        .service
        .create_api_key(
            &admin,
            CreateApiKey {
                roles: Some(strings(&[SUPER_ADMIN])),
                ..named("too-strong")
            },
        )
        .await;
    // The first super-admin permission an admin lacks (in name order).
    assert_eq!(denied(r), "audit.manage");
    env.audited_denial(mark, "api_key.create", &admin, "audit.manage")
        .await;

    let mark = env.mark().await;
    let r = env
        .service
        .create_api_key(
            &admin,
            CreateApiKey {
                scopes: Some(strings(&["users.delete"])),
                ..named("sneaky")
            },
        )
        .await;
    assert_eq!(denied(r), "users.delete");
    env.audited_denial(mark, "api_key.create", &admin, "users.delete")
        .await;
    assert_eq!(key_count(env).await, 0);

    let mark = env.mark().await;
    let (k, perms, _) = env
        .service
        .create_api_key(
            &admin,
            CreateApiKey {
                roles: Some(strings(&[ADMIN])),
                scopes: Some(strings(&["billing:read"])),
                ..named("fine")
            },
        )
        .await
        .unwrap();
    env.audited_one(mark, "api_key.create", &admin, k.id.as_str())
        .await;
    assert!(perms.contains(&"billing:read".to_string()));
    assert!(perms.contains(&"api_keys.manage".to_string()));
    assert!(!perms.contains(&"users.delete".to_string()));
}

/// Editing a key may not add management permissions the editor lacks, but editing
/// anything else of a more powerful key needs only `api_keys.manage`.
async fn update_cannot_escalate_but_may_edit_a_stronger_key(env: &Env) {
    let (_, admin) = env.user("ops@example.com", &[ADMIN]).await;
    let sa = env.service_account("deployer", &[]).await;
    let (plain, _) = env.sa_key(&sa, named("plain")).await;
    let (strong, _) = env
        .sa_key(
            &sa,
            CreateApiKey {
                roles: Some(strings(&[SUPER_ADMIN])),
                ..named("strong")
            },
        )
        .await;

    let mark = env.mark().await;
    let r = env
        .service
        .update_api_key(
            &admin,
            &plain.id,
            UpdateApiKey {
                roles: Some(strings(&[SUPER_ADMIN])),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(denied(r), "audit.manage");
    env.audited_denial(mark, "api_key.update", &admin, "audit.manage")
        .await;
    let (still, _) = env
        .service
        .get_api_key(&env.system, &plain.id)
        .await
        .unwrap();
    assert!(still.roles.is_empty());

    let mark = env.mark().await;
    let (k, _) = env
        .service
        .update_api_key(
            &admin,
            &strong.id,
            UpdateApiKey {
                description: Some("deploys production".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(k.description, "deploys production");
    assert_eq!(k.roles, strings(&[SUPER_ADMIN]));
    env.audited_one(mark, "api_key.update", &admin, strong.id.as_str())
        .await;
}

/// Regenerating hands over a secret with the key's permissions: only to a caller
/// holding all of them.
async fn regenerate_requires_holding_the_keys_permissions(env: &Env) {
    let (_, admin) = env.user("ops@example.com", &[ADMIN]).await;
    let sa = env.service_account("deployer", &[]).await;
    let (strong, secret) = env
        .sa_key(
            &sa,
            CreateApiKey {
                roles: Some(strings(&[SUPER_ADMIN])),
                ..named("strong")
            },
        )
        .await;
    let mark = env.mark().await;
    let r = env
        .service
        .regenerate_api_key(&admin, &strong.id, regenerate(0))
        .await;
    assert_eq!(denied(r), "audit.manage");
    let e = env
        .audited(mark, &[("api_key.regenerate", Outcome::Denied)])
        .await
        .remove(0);
    assert_eq!(
        e.draft.target.map(|t| t.id),
        Some(strong.id.to_string()),
        "the denial names the key"
    );
    assert_eq!(env.verify(&secret).await, Code::Valid);
}

/// A role's `key_name_pattern` binds the names of keys its holder creates, and the
/// names of keys that carry the role.
async fn role_key_name_pattern_binds_key_names(env: &Env) {
    env.service
        .create_role(
            &env.system,
            CreateRole {
                name: "ci-keys".into(),
                description: None,
                permissions: strings(&["api_keys.create", "api_keys.view"]),
                // Anchored at both ends: patterns are searched for as written.
                key_name_pattern: Some("^ci-[a-z]+$".into()),
            },
        )
        .await
        .unwrap();
    let (_, ci) = env.user("ci@example.com", &["ci-keys"]).await;

    for bad in ["prod-deploy", "xci-build", "ci-build-2"] {
        let mark = env.mark().await;
        let r = env.service.create_api_key(&ci, named(bad)).await;
        assert_eq!(
            invalid(r),
            ("name_pattern_mismatch", "name".to_string()),
            "{bad}"
        );
        env.audited(mark, &[]).await;
    }
    assert_eq!(key_count(env).await, 0);

    let mark = env.mark().await;
    let (k, _, _) = env
        .service
        .create_api_key(&ci, named("ci-build"))
        .await
        .unwrap();
    assert_eq!(k.owner.id, ci.principal.id, "a personal key of the creator");
    env.audited_one(mark, "api_key.create", &ci, k.id.as_str())
        .await;

    // A key carrying the role must be named by it too, whoever makes or renames it.
    let sa = env.service_account("builder", &[]).await;
    let r = env
        .service
        .create_api_key(
            &env.system,
            CreateApiKey {
                roles: Some(strings(&["ci-keys"])),
                owner: Some(crate::support::owner(&sa)),
                ..named("nightly")
            },
        )
        .await;
    assert_eq!(invalid(r).0, "name_pattern_mismatch");
    let (carrier, _) = env
        .sa_key(
            &sa,
            CreateApiKey {
                roles: Some(strings(&["ci-keys"])),
                ..named("ci-nightly")
            },
        )
        .await;
    let r = env
        .service
        .update_api_key(
            &env.system,
            &carrier.id,
            UpdateApiKey {
                name: Some("nightly".into()),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(invalid(r).0, "name_pattern_mismatch");
}

/// `expires_in_days` sets the expiry from the clock; verification answers EXPIRED from
/// that instant on (not a moment before).
async fn expires_in_days_expires_the_key(env: &Env) {
    let sa = env.service_account("batch", &[]).await;
    let created = env.now();
    let (k, secret) = env
        .sa_key(
            &sa,
            CreateApiKey {
                expires_in_days: Some(30),
                ..named("monthly")
            },
        )
        .await;
    assert_eq!(k.expires_at, Some(created + Duration::days(30)));
    assert_eq!(env.verify(&secret).await, Code::Valid);

    env.advance(Duration::days(30) - Duration::seconds(1));
    assert_eq!(env.verify(&secret).await, Code::Valid);
    env.advance(Duration::seconds(1));
    assert_eq!(env.verify(&secret).await, Code::Expired);
    assert!(matches!(
        err(env
            .service
            .authenticate_key(secret.expose(), Default::default())
            .await),
        ServiceError::Unauthenticated(_)
    ));
    let m = env.service.metrics(&env.system).await.unwrap();
    assert_eq!((m.total_keys, m.expired_keys, m.active_keys), (1, 1, 0));

    let r = env
        .service
        .create_api_key(
            &env.system,
            CreateApiKey {
                expires_in_days: Some(0),
                owner: Some(crate::support::owner(&sa)),
                ..named("never-valid")
            },
        )
        .await;
    assert_eq!(invalid(r).0, "invalid_expires_in_days");
}

/// With a grace period the replaced secret keeps verifying (flagged as rotating) until
/// the grace ends, then not; the new secret verifies throughout.
async fn regenerate_with_grace_keeps_the_old_secret_until_the_grace_ends(env: &Env) {
    let (k, old) = env.simple_key("rotating").await;
    assert_eq!(env.verify(&old).await, Code::Valid);

    let mark = env.mark().await;
    let (k2, _, new) = env
        .service
        .regenerate_api_key(&env.system, &k.id, regenerate(3600))
        .await
        .unwrap();
    let e = env
        .audited_one(mark, "api_key.regenerate", &env.system, k.id.as_str())
        .await;
    assert_eq!(e.draft.changes["grace_period_seconds"], 3600);
    assert_eq!(
        k2.previous_valid_until,
        Some(env.now() + Duration::hours(1))
    );
    assert_ne!(new.expose(), old.expose());

    let v = env
        .service
        .verifier()
        .verify(old.expose(), &[] as &[&str], None)
        .await
        .unwrap();
    assert_eq!((v.code, v.rotating), (Code::Valid, true));
    assert_eq!(env.verify(&new).await, Code::Valid);

    env.advance(Duration::seconds(3599));
    assert_eq!(env.verify(&old).await, Code::Valid);
    env.advance(Duration::seconds(1));
    assert_eq!(env.verify(&old).await, Code::NotFound);
    assert_eq!(env.verify(&new).await, Code::Valid);
}

/// Without a grace period the old secret stops at once; a new expiry applies to the
/// new secret; `expires_at` must be given.
async fn regenerate_without_grace_replaces_the_secret_at_once(env: &Env) {
    let (k, old) = env.simple_key("hard-rotate").await;
    assert_eq!(env.verify(&old).await, Code::Valid);
    let expiry = env.now() + Duration::days(1);
    let (k2, _, new) = env
        .service
        .regenerate_api_key(
            &env.system,
            &k.id,
            RegenerateApiKey {
                expires_at: Some(Some(expiry)),
                grace_period_seconds: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(k2.expires_at, Some(expiry));
    assert_eq!(k2.previous_digest, None);
    assert_eq!(env.verify(&old).await, Code::NotFound);
    assert_eq!(env.verify(&new).await, Code::Valid);
    env.advance(Duration::days(1));
    assert_eq!(env.verify(&new).await, Code::Expired);

    let r = env
        .service
        .regenerate_api_key(
            &env.system,
            &k.id,
            RegenerateApiKey {
                expires_at: None,
                grace_period_seconds: None,
            },
        )
        .await;
    assert_eq!(invalid(r), ("parameter_missing", "expires_at".to_string()));
}

/// Revocation: verification answers REVOKED (even for a secret in its grace period),
/// revoking again changes and records nothing, and the key can no longer be changed.
async fn revocation_is_final(env: &Env) {
    let (k, old) = env.simple_key("doomed").await;
    let (_, _, secret) = env
        .service
        .regenerate_api_key(&env.system, &k.id, regenerate(3600))
        .await
        .unwrap();
    assert_eq!(env.verify(&secret).await, Code::Valid);
    assert_eq!(env.verify(&old).await, Code::Valid);

    let mark = env.mark().await;
    let (revoked, _) = env
        .service
        .revoke_api_key(&env.system, &k.id)
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(env.now()));
    env.audited_one(mark, "api_key.revoke", &env.system, k.id.as_str())
        .await;
    assert_eq!(env.verify(&secret).await, Code::Revoked);
    assert_eq!(env.verify(&old).await, Code::NotFound);

    let mark = env.mark().await;
    env.advance(Duration::minutes(5));
    let (again, _) = env
        .service
        .revoke_api_key(&env.system, &k.id)
        .await
        .unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    env.audited(mark, &[]).await;

    let r = env
        .service
        .update_api_key(
            &env.system,
            &k.id,
            UpdateApiKey {
                description: Some("back from the dead".into()),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(conflict(r), "key_revoked");
    let r = env
        .service
        .regenerate_api_key(&env.system, &k.id, regenerate(0))
        .await;
    assert_eq!(conflict(r), "key_revoked");
    env.audited(mark, &[]).await;
    assert_eq!(env.verify(&secret).await, Code::Revoked);
}

/// A personal key can do no more than its user can now: when the user loses a
/// management permission, so does the key.
async fn personal_key_is_capped_by_its_user(env: &Env) {
    let (user, caller) = env.user("boss@example.com", &[SUPER_ADMIN]).await;
    let (_, _, secret) = env
        .service
        .create_api_key(
            &caller,
            CreateApiKey {
                roles: Some(strings(&[SUPER_ADMIN])),
                ..named("boss-cli")
            },
        )
        .await
        .unwrap();
    let key_caller = env
        .service
        .authenticate_key(secret.expose(), Default::default())
        .await
        .unwrap();
    assert!(key_caller.has(keyhaven_core::Permission::UsersDelete));
    assert_eq!(
        env.verify_with(&secret, &["users.delete"]).await,
        Code::Valid
    );

    env.service
        .update_user(
            &env.system,
            &user.id,
            keyhaven_service::users::UpdateUser {
                roles: Some(strings(&[ADMIN])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let key_caller = env
        .service
        .authenticate_key(secret.expose(), Default::default())
        .await
        .unwrap();
    assert!(!key_caller.has(keyhaven_core::Permission::UsersDelete));
    assert!(key_caller.has(keyhaven_core::Permission::ApiKeysManage));
    assert_eq!(
        env.verify_with(&secret, &["users.delete"]).await,
        Code::Forbidden
    );
    let mark = env.mark().await;
    let r = env.service.delete_user(&key_caller, &env.admin.id).await;
    assert_eq!(denied(r), "users.delete");
    env.audited_denial(mark, "user.delete", &key_caller, "users.delete")
        .await;
}

on_both_backends! {
    create_without_permission_is_denied_and_audited,
    create_cannot_grant_more_than_the_caller_holds,
    update_cannot_escalate_but_may_edit_a_stronger_key,
    regenerate_requires_holding_the_keys_permissions,
    role_key_name_pattern_binds_key_names,
    expires_in_days_expires_the_key,
    regenerate_with_grace_keeps_the_old_secret_until_the_grace_ends,
    regenerate_without_grace_replaces_the_secret_at_once,
    revocation_is_final,
    personal_key_is_capped_by_its_user,
}
