//! Roles: no-escalation, built-in roles, roles in use, changes reaching keys.

use keyhaven_core::role::{ADMIN, READ_ONLY, SUPER_ADMIN};
use keyhaven_service::api_keys::CreateApiKey;
use keyhaven_service::roles::{CreateRole, UpdateRole};
use keyhaven_service::users::UpdateUser;
use keyhaven_service::verify::Code;

use crate::support::{conflict, denied, named, strings, Env};

fn role(name: &str, permissions: &[&str]) -> CreateRole {
    CreateRole {
        name: name.into(),
        description: None,
        permissions: strings(permissions),
        key_name_pattern: None,
    }
}

fn permissions(p: &[&str]) -> UpdateRole {
    UpdateRole {
        permissions: Some(strings(p)),
        ..Default::default()
    }
}

/// A role manager can only put into roles the management permissions it holds;
/// application scopes are free.
async fn roles_grant_no_more_than_their_author_holds(env: &Env) {
    env.service
        .create_role(
            &env.system,
            role(
                "role-admin",
                &["roles.manage", "roles.view", "api_keys.view"],
            ),
        )
        .await
        .unwrap();
    let (_, author) = env.user("roles@example.com", &["role-admin"]).await;

    let mark = env.mark().await;
    let r = env
        .service
        .create_role(
            &author,
            role("keymaker", &["api_keys.view", "api_keys.create"]),
        )
        .await;
    assert_eq!(denied(r), "api_keys.create");
    env.audited_denial(mark, "role.create", &author, "api_keys.create")
        .await;

    let mark = env.mark().await;
    let r = env
        .service
        .create_role(&author, role("billing", &["api_keys.view", "billing:read"]))
        .await
        .unwrap();
    env.audited_one(mark, "role.create", &author, &r.name).await;

    let mark = env.mark().await;
    let r = env
        .service
        .update_role(
            &author,
            "billing",
            permissions(&["api_keys.view", "billing:read", "users.delete"]),
        )
        .await;
    assert_eq!(denied(r), "users.delete");
    env.audited_denial(mark, "role.update", &author, "users.delete")
        .await;
    let r = env.service.get_role(&env.system, "billing").await.unwrap();
    assert_eq!(r.permissions, strings(&["api_keys.view", "billing:read"]));

    // Without roles.manage there is no role editing at all.
    let (_, admin) = env.user("ops@example.com", &[ADMIN]).await;
    let mark = env.mark().await;
    let r = env
        .service
        .update_role(&admin, "billing", permissions(&["billing:read"]))
        .await;
    assert_eq!(denied(r), "roles.manage");
    env.audited_denial(mark, "role.update", &admin, "roles.manage")
        .await;
}

/// Built-in roles can be neither changed, deleted nor shadowed.
async fn built_in_roles_are_fixed(env: &Env) {
    let mark = env.mark().await;
    let r = env
        .service
        .update_role(&env.system, ADMIN, permissions(&["api_keys.view"]))
        .await;
    assert_eq!(conflict(r), "built_in_role");
    let r = env.service.delete_role(&env.system, SUPER_ADMIN).await;
    assert_eq!(conflict(r), "built_in_role");
    let r = env
        .service
        .create_role(&env.system, role(READ_ONLY, &["api_keys.view"]))
        .await;
    assert_eq!(conflict(r), "name_taken");
    env.audited(mark, &[]).await;
}

/// A role still held by a user or a key cannot be deleted.
async fn roles_in_use_cannot_be_deleted(env: &Env) {
    env.service
        .create_role(&env.system, role("auditor", &["audit.view"]))
        .await
        .unwrap();
    let (u, _) = env.user("audit@example.com", &["auditor"]).await;
    let r = env.service.delete_role(&env.system, "auditor").await;
    assert_eq!(conflict(r), "role_in_use");

    env.service
        .update_user(
            &env.system,
            &u.id,
            UpdateUser {
                roles: Some(vec![]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let sa = env.service_account("reporter", &[]).await;
    let (k, _) = env
        .sa_key(
            &sa,
            CreateApiKey {
                roles: Some(strings(&["auditor"])),
                ..named("reports")
            },
        )
        .await;
    let r = env.service.delete_role(&env.system, "auditor").await;
    assert_eq!(conflict(r), "role_in_use");

    env.service
        .delete_api_key(&env.system, &k.id)
        .await
        .unwrap();
    let mark = env.mark().await;
    env.service
        .delete_role(&env.system, "auditor")
        .await
        .unwrap();
    env.audited_one(mark, "role.delete", &env.system, "auditor")
        .await;
}

/// Changing a role's permissions changes what keys holding it verify for, at once.
async fn role_changes_reach_verification(env: &Env) {
    env.service
        .create_role(&env.system, role("billing", &["billing:read"]))
        .await
        .unwrap();
    let sa = env.service_account("invoicer", &[]).await;
    let (_, secret) = env
        .sa_key(
            &sa,
            CreateApiKey {
                roles: Some(strings(&["billing"])),
                ..named("invoices")
            },
        )
        .await;
    assert_eq!(
        env.verify_with(&secret, &["billing:read"]).await,
        Code::Valid
    );
    assert_eq!(
        env.verify_with(&secret, &["billing:write"]).await,
        Code::Forbidden
    );

    let mark = env.mark().await;
    env.service
        .update_role(
            &env.system,
            "billing",
            permissions(&["billing:read", "billing:write"]),
        )
        .await
        .unwrap();
    env.audited_one(mark, "role.update", &env.system, "billing")
        .await;
    assert_eq!(
        env.verify_with(&secret, &["billing:write"]).await,
        Code::Valid
    );

    env.service
        .update_role(&env.system, "billing", permissions(&["billing:write"]))
        .await
        .unwrap();
    assert_eq!(
        env.verify_with(&secret, &["billing:read"]).await,
        Code::Forbidden
    );
}

on_both_backends! {
    roles_grant_no_more_than_their_author_holds,
    built_in_roles_are_fixed,
    roles_in_use_cannot_be_deleted,
    role_changes_reach_verification,
}
