//! Users: the last-super-admin rule, no-escalation when granting roles, self-actions,
//! deactivation.

use keyhaven_core::audit::Outcome;
use keyhaven_core::role::{ADMIN, READ_ONLY, SUPER_ADMIN};
use keyhaven_core::user::UserStatus;
use keyhaven_service::api_keys::CreateApiKey;
use keyhaven_service::roles::CreateRole;
use keyhaven_service::users::{CreateUser, UpdateUser};
use keyhaven_service::verify::Code;
use keyhaven_service::{RequestContext, ServiceError};

use crate::support::{conflict, denied, err, named, strings, Env, PASSWORD};

fn roles(r: &[&str]) -> UpdateUser {
    UpdateUser {
        roles: Some(strings(r)),
        ..Default::default()
    }
}

fn status(s: UserStatus) -> UpdateUser {
    UpdateUser {
        status: Some(s),
        ..Default::default()
    }
}

fn new_user(email: &str, r: &[&str]) -> CreateUser {
    CreateUser {
        email: email.into(),
        display_name: "Someone".into(),
        password: PASSWORD.into(),
        roles: strings(r),
    }
}

/// The last active super-admin cannot be demoted, deactivated or deleted; once there
/// is a second one, the first can go — and then the second is the last.
async fn last_super_admin_cannot_be_demoted_deactivated_or_deleted(env: &Env) {
    let first = env.admin.id.clone();
    let mark = env.mark().await;
    let r = env
        .service
        .update_user(&env.system, &first, roles(&[ADMIN]))
        .await;
    assert_eq!(conflict(r), "last_super_admin");
    let r = env
        .service
        .update_user(&env.system, &first, status(UserStatus::Inactive))
        .await;
    assert_eq!(conflict(r), "last_super_admin");
    let r = env.service.delete_user(&env.system, &first).await;
    assert_eq!(conflict(r), "last_super_admin");
    env.audited(mark, &[]).await;
    let u = env.service.get_user(&env.system, &first).await.unwrap();
    assert_eq!(
        (u.roles, u.status),
        (strings(&[SUPER_ADMIN]), UserStatus::Active)
    );

    // Adding roles next to super-admin keeps them one.
    env.service
        .update_user(&env.system, &first, roles(&[SUPER_ADMIN, ADMIN]))
        .await
        .unwrap();

    let (second, _) = env.user("second@example.com", &[SUPER_ADMIN]).await;
    let mark = env.mark().await;
    let u = env
        .service
        .update_user(&env.system, &first, roles(&[ADMIN]))
        .await
        .unwrap();
    assert_eq!(u.roles, strings(&[ADMIN]));
    env.audited_one(mark, "user.update", &env.system, first.as_str())
        .await;

    let r = env
        .service
        .update_user(&env.system, &second.id, status(UserStatus::Inactive))
        .await;
    assert_eq!(conflict(r), "last_super_admin");
    let r = env.service.delete_user(&env.system, &second.id).await;
    assert_eq!(conflict(r), "last_super_admin");

    // An inactive super-admin does not count: a third one, deactivated, leaves the
    // second the last.
    let (third, _) = env.user("third@example.com", &[SUPER_ADMIN]).await;
    env.service
        .update_user(&env.system, &third.id, status(UserStatus::Inactive))
        .await
        .unwrap();
    let r = env.service.delete_user(&env.system, &second.id).await;
    assert_eq!(conflict(r), "last_super_admin");
    // Deleting the inactive one is fine.
    env.service
        .delete_user(&env.system, &third.id)
        .await
        .unwrap();
}

/// An admin may change users but cannot hand out super-admin (or any management
/// permission it lacks); the refusal is audited and nothing changes.
async fn granting_roles_cannot_escalate(env: &Env) {
    let (_, admin) = env.user("ops@example.com", &[ADMIN]).await;
    let (target, _) = env.user("dev@example.com", &[READ_ONLY]).await;

    let mark = env.mark().await;
    let r = env
        .service
        .update_user(&admin, &target.id, roles(&[SUPER_ADMIN]))
        .await;
    assert_eq!(denied(r), "audit.manage");
    env.audited_denial(mark, "user.update", &admin, "audit.manage")
        .await;
    let u = env.service.get_user(&env.system, &target.id).await.unwrap();
    assert_eq!(u.roles, strings(&[READ_ONLY]));

    // Roles within the admin's own permissions are fine.
    let mark = env.mark().await;
    env.service
        .update_user(&admin, &target.id, roles(&[ADMIN]))
        .await
        .unwrap();
    env.audited_one(mark, "user.update", &admin, target.id.as_str())
        .await;

    // Admins do not create users at all.
    let mark = env.mark().await;
    let r = env
        .service
        .create_user(&admin, new_user("new@example.com", &[]))
        .await;
    assert_eq!(denied(r), "users.create");
    env.audited_denial(mark, "user.create", &admin, "users.create")
        .await;

    // A recruiter may create users, but only with roles it holds every management
    // permission of.
    env.service
        .create_role(
            &env.system,
            CreateRole {
                name: "recruiter".into(),
                description: None,
                permissions: strings(&["users.create", "users.view", "roles.view"]),
                key_name_pattern: None,
            },
        )
        .await
        .unwrap();
    let (_, recruiter) = env.user("hr@example.com", &["recruiter"]).await;
    let mark = env.mark().await;
    let r = env
        .service
        .create_user(&recruiter, new_user("new@example.com", &[READ_ONLY]))
        .await;
    assert_eq!(denied(r), "api_keys.view");
    env.audited_denial(mark, "user.create", &recruiter, "api_keys.view")
        .await;
    assert!(env
        .service
        .sign_in("new@example.com", PASSWORD, RequestContext::default())
        .await
        .is_err());

    let mark = env.mark().await;
    let u = env
        .service
        .create_user(&recruiter, new_user("new@example.com", &["recruiter"]))
        .await
        .unwrap();
    env.audited_one(mark, "user.create", &recruiter, u.id.as_str())
        .await;
}

/// Nobody deletes their own account.
async fn users_cannot_delete_themselves(env: &Env) {
    let me = env.admin_caller().await;
    let (_, other) = env.user("second@example.com", &[SUPER_ADMIN]).await;
    let mark = env.mark().await;
    let r = env.service.delete_user(&me, &env.admin.id).await;
    assert_eq!(conflict(r), "self_action");
    env.audited(mark, &[]).await;

    let mark = env.mark().await;
    env.service
        .delete_user(&other, &env.admin.id)
        .await
        .unwrap();
    env.audited_one(mark, "user.delete", &other, env.admin.id.as_str())
        .await;
}

/// Deactivating a user ends their sessions and disables their personal keys; they can
/// no longer sign in.
async fn deactivation_ends_sessions_and_personal_keys(env: &Env) {
    let (user, _) = env.user("dev@example.com", &[ADMIN]).await;
    let signed = env
        .service
        .sign_in("dev@example.com", PASSWORD, RequestContext::default())
        .await
        .unwrap();
    let (caller, _) = env
        .service
        .authenticate_session(&signed.token, RequestContext::default())
        .await
        .unwrap();
    let (_, _, secret) = env
        .service
        .create_api_key(
            &caller,
            CreateApiKey {
                roles: Some(strings(&[READ_ONLY])),
                ..named("dev-laptop")
            },
        )
        .await
        .unwrap();
    assert_eq!(env.verify(&secret).await, Code::Valid);

    env.service
        .update_user(&env.system, &user.id, status(UserStatus::Inactive))
        .await
        .unwrap();
    assert!(matches!(
        err(env
            .service
            .authenticate_session(&signed.token, RequestContext::default())
            .await),
        ServiceError::Unauthenticated(_)
    ));
    assert_eq!(env.verify(&secret).await, Code::Disabled);

    let mark = env.mark().await;
    let r = env
        .service
        .sign_in("dev@example.com", PASSWORD, RequestContext::default())
        .await;
    assert!(matches!(err(r), ServiceError::Unauthenticated(_)));
    let e = env
        .audited(mark, &[("session.sign_in", Outcome::Denied)])
        .await
        .remove(0);
    assert_eq!(e.draft.changes["reason"], "user inactive");

    env.service
        .update_user(&env.system, &user.id, status(UserStatus::Active))
        .await
        .unwrap();
    assert_eq!(env.verify(&secret).await, Code::Valid);
}

on_both_backends! {
    last_super_admin_cannot_be_demoted_deactivated_or_deleted,
    granting_roles_cannot_escalate,
    users_cannot_delete_themselves,
    deactivation_ends_sessions_and_personal_keys,
}
