//! Every successful mutation writes exactly one audit entry, with its action, actor and
//! target; mutations that change nothing write none.

use keyhaven_core::audit::Outcome;
use keyhaven_core::role::{ADMIN, READ_ONLY};
use keyhaven_core::service_account::Transition;
use keyhaven_service::api_keys::{CreateApiKey, RegenerateApiKey, UpdateApiKey};
use keyhaven_service::credentials::{CreateCredential, UpdateCredential};
use keyhaven_service::organizations::UpdateOrganization;
use keyhaven_service::roles::{CreateRole, UpdateRole};
use keyhaven_service::service_accounts::{CreateServiceAccount, UpdateServiceAccount};
use keyhaven_service::users::{CreateUser, UpdateUser};
use keyhaven_service::webhooks::{CreateWebhook, UpdateWebhook};
use keyhaven_service::RequestContext;

use crate::support::{named, owner, strings, Env, PASSWORD};

/// Roles, users, organization and shared secret, acted on by a signed-in super-admin.
async fn account_mutations_write_one_entry_each(env: &Env) {
    let me = env.admin_caller().await;

    let mark = env.mark().await;
    env.service
        .create_role(
            &me,
            CreateRole {
                name: "support".into(),
                description: Some("Helpdesk".into()),
                permissions: strings(&["users.view", "api_keys.view"]),
                key_name_pattern: None,
            },
        )
        .await
        .unwrap();
    env.audited_one(mark, "role.create", &me, "support").await;

    let mark = env.mark().await;
    env.service
        .update_role(
            &me,
            "support",
            UpdateRole {
                description: Some("Helpdesk staff".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    env.audited_one(mark, "role.update", &me, "support").await;

    let mark = env.mark().await;
    let u = env
        .service
        .create_user(
            &me,
            CreateUser {
                email: "helper@example.com".into(),
                display_name: "Helper".into(),
                password: PASSWORD.into(),
                roles: strings(&["support"]),
            },
        )
        .await
        .unwrap();
    let e = env
        .audited_one(mark, "user.create", &me, u.id.as_str())
        .await;
    assert_eq!(e.draft.changes["roles"], serde_json::json!(["support"]));
    assert!(
        !e.draft.changes.to_string().contains(PASSWORD),
        "no password in the audit log"
    );

    let mark = env.mark().await;
    env.service
        .update_user(
            &me,
            &u.id,
            UpdateUser {
                roles: Some(strings(&["support", READ_ONLY])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let e = env
        .audited_one(mark, "user.update", &me, u.id.as_str())
        .await;
    assert!(e.draft.changes.get("roles").is_some());

    // Changing nothing records nothing.
    let mark = env.mark().await;
    env.service
        .update_user(
            &me,
            &u.id,
            UpdateUser {
                roles: Some(strings(&["support", READ_ONLY])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    env.service
        .update_role(
            &me,
            "support",
            UpdateRole {
                description: Some("Helpdesk staff".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    env.audited(mark, &[]).await;

    let mark = env.mark().await;
    env.service
        .reset_password(&me, &u.id, "another long password")
        .await
        .unwrap();
    env.audited_one(mark, "user.reset_password", &me, u.id.as_str())
        .await;

    let helper = {
        let s = env
            .service
            .sign_in(
                "helper@example.com",
                "another long password",
                RequestContext::default(),
            )
            .await
            .unwrap();
        let (c, _) = env
            .service
            .authenticate_session(&s.token, RequestContext::default())
            .await
            .unwrap();
        (c, s.token)
    };
    let mark = env.mark().await;
    env.service
        .change_own_password(&helper.0, "another long password", PASSWORD)
        .await
        .unwrap();
    env.audited_one(mark, "user.password_change", &helper.0, u.id.as_str())
        .await;
    // The session that made the change stays; signing out is recorded.
    let mark = env.mark().await;
    env.service.sign_out(&helper.0, &helper.1).await.unwrap();
    env.audited_one(mark, "session.sign_out", &helper.0, u.id.as_str())
        .await;

    let mark = env.mark().await;
    env.service.delete_user(&me, &u.id).await.unwrap();
    env.audited_one(mark, "user.delete", &me, u.id.as_str())
        .await;

    let mark = env.mark().await;
    env.service.delete_role(&me, "support").await.unwrap();
    env.audited_one(mark, "role.delete", &me, "support").await;

    let mark = env.mark().await;
    env.service
        .update_organization(
            &me,
            UpdateOrganization {
                name: Some("Acme Corp".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    env.audited_one(mark, "organization.update", &me, env.org.id.as_str())
        .await;

    let mark = env.mark().await;
    env.service.rotate_shared_secret(&me).await.unwrap();
    env.audited(mark, &[("shared_secret.rotate", Outcome::Success)])
        .await;
}

/// Service accounts, credentials, keys and webhooks, acted on by a signed-in admin.
async fn key_mutations_write_one_entry_each(env: &Env) {
    let (_, me) = env.user("ops@example.com", &[ADMIN]).await;

    let mark = env.mark().await;
    let sa = env
        .service
        .create_service_account(
            &me,
            CreateServiceAccount {
                ratelimits: None,
                name: "deployer".into(),
                description: None,
                roles: Some(strings(&[READ_ONLY])),
                external_id: None,
            },
        )
        .await
        .unwrap();
    env.audited_one(mark, "service_account.create", &me, sa.id.as_str())
        .await;

    let mark = env.mark().await;
    env.service
        .update_service_account(
            &me,
            &sa.id,
            UpdateServiceAccount {
                description: Some("Deploys things".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    env.audited_one(mark, "service_account.update", &me, sa.id.as_str())
        .await;

    let mark = env.mark().await;
    let (cred, _) = env
        .service
        .create_credential(
            &me,
            &sa.id,
            CreateCredential {
                name: "ci".into(),
                description: None,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    env.audited_one(mark, "credential.create", &me, cred.id.as_str())
        .await;

    let mark = env.mark().await;
    env.service
        .update_credential(
            &me,
            &sa.id,
            &cred.id,
            UpdateCredential {
                name: Some("ci-main".into()),
                description: None,
            },
        )
        .await
        .unwrap();
    env.audited_one(mark, "credential.update", &me, cred.id.as_str())
        .await;

    let mark = env.mark().await;
    env.service
        .delete_credential(&me, &sa.id, &cred.id)
        .await
        .unwrap();
    env.audited_one(mark, "credential.delete", &me, cred.id.as_str())
        .await;

    let mark = env.mark().await;
    let (k, _, _) = env
        .service
        .create_api_key(
            &me,
            CreateApiKey {
                owner: Some(owner(&sa)),
                tags: Some(strings(&["prod"])),
                ..named("deploy")
            },
        )
        .await
        .unwrap();
    let e = env
        .audited_one(mark, "api_key.create", &me, k.id.as_str())
        .await;
    assert_eq!(e.draft.changes["name"], "deploy");

    let mark = env.mark().await;
    env.service
        .update_api_key(
            &me,
            &k.id,
            UpdateApiKey {
                tags: Some(strings(&["prod", "eu"])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    env.audited_one(mark, "api_key.update", &me, k.id.as_str())
        .await;

    let mark = env.mark().await;
    env.service
        .update_api_key(
            &me,
            &k.id,
            UpdateApiKey {
                tags: Some(strings(&["prod", "eu"])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    env.audited(mark, &[]).await;

    let mark = env.mark().await;
    env.service
        .regenerate_api_key(
            &me,
            &k.id,
            RegenerateApiKey {
                expires_at: Some(None),
                grace_period_seconds: Some(60),
            },
        )
        .await
        .unwrap();
    env.audited_one(mark, "api_key.regenerate", &me, k.id.as_str())
        .await;

    let mark = env.mark().await;
    env.service.revoke_api_key(&me, &k.id).await.unwrap();
    env.audited_one(mark, "api_key.revoke", &me, k.id.as_str())
        .await;

    let mark = env.mark().await;
    env.service.delete_api_key(&me, &k.id).await.unwrap();
    env.audited_one(mark, "api_key.delete", &me, k.id.as_str())
        .await;

    // A batch writes one entry per key deleted, none for ids not found.
    let (a, _) = env.sa_key(&sa, named("a")).await;
    let (b, _) = env.sa_key(&sa, named("b")).await;
    let mark = env.mark().await;
    let out = env
        .service
        .batch_delete_api_keys(&me, &[a.id.to_string(), b.id.to_string(), k.id.to_string()])
        .await
        .unwrap();
    assert_eq!(out.not_found, vec![k.id.to_string()]);
    env.audited(
        mark,
        &[
            ("api_key.delete", Outcome::Success),
            ("api_key.delete", Outcome::Success),
        ],
    )
    .await;

    for (t, action) in [
        (Transition::Suspend, "service_account.suspend"),
        (Transition::Reactivate, "service_account.reactivate"),
        (Transition::Archive, "service_account.archive"),
    ] {
        let mark = env.mark().await;
        env.service
            .transition_service_account(&me, &sa.id, t)
            .await
            .unwrap();
        env.audited_one(mark, action, &me, sa.id.as_str()).await;
    }
    // Archiving again is a no-op.
    let mark = env.mark().await;
    env.service
        .transition_service_account(&me, &sa.id, Transition::Archive)
        .await
        .unwrap();
    env.audited(mark, &[]).await;

    let mark = env.mark().await;
    env.service
        .delete_service_account(&me, &sa.id)
        .await
        .unwrap();
    env.audited_one(mark, "service_account.delete", &me, sa.id.as_str())
        .await;

    // The first webhook also creates the organization's shared secret (so every
    // delivery is signed), recorded as its own entry first; later ones write one each.
    let mark = env.mark().await;
    let w = env
        .service
        .create_webhook(
            &me,
            CreateWebhook {
                url: "https://hooks.example.com/keyhaven".into(),
                events: strings(&["api_key.created"]),
                description: None,
                enabled: None,
            },
        )
        .await
        .unwrap();
    env.audited(
        mark,
        &[
            ("shared_secret.create", Outcome::Success),
            ("webhook.create", Outcome::Success),
        ],
    )
    .await;
    let mark = env.mark().await;
    let w2 = env
        .service
        .create_webhook(
            &me,
            CreateWebhook {
                url: "https://hooks.example.com/other".into(),
                events: strings(&["api_key.revoked"]),
                description: None,
                enabled: Some(false),
            },
        )
        .await
        .unwrap();
    env.audited_one(mark, "webhook.create", &me, w2.id.as_str())
        .await;

    let mark = env.mark().await;
    env.service
        .update_webhook(
            &me,
            &w.id,
            UpdateWebhook {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    env.audited_one(mark, "webhook.update", &me, w.id.as_str())
        .await;

    let mark = env.mark().await;
    env.service.delete_webhook(&me, &w.id).await.unwrap();
    env.audited_one(mark, "webhook.delete", &me, w.id.as_str())
        .await;
}

/// Denials are recorded for every protected action, by who tried; the organization's
/// log keeps them in its chain (checked by `Env::finish`).
async fn denials_are_recorded_for_each_action(env: &Env) {
    let (_, reader) = env.user("reader@example.com", &[READ_ONLY]).await;
    let (k, _) = env.simple_key("target").await;

    let mark = env.mark().await;
    assert!(env.service.delete_api_key(&reader, &k.id).await.is_err());
    assert!(env
        .service
        .create_role(
            &reader,
            CreateRole {
                name: "x".into(),
                description: None,
                permissions: vec![],
                key_name_pattern: None,
            },
        )
        .await
        .is_err());
    assert!(env
        .service
        .delete_user(&reader, &env.admin.id)
        .await
        .is_err());
    assert!(env.service.rotate_shared_secret(&reader).await.is_err());
    assert!(env
        .service
        .update_organization(&reader, UpdateOrganization::default())
        .await
        .is_err());
    let entries = env
        .audited(
            mark,
            &[
                ("api_key.delete", Outcome::Denied),
                ("role.create", Outcome::Denied),
                ("user.delete", Outcome::Denied),
                ("shared_secret.rotate", Outcome::Denied),
                ("organization.update", Outcome::Denied),
            ],
        )
        .await;
    let missing: Vec<String> = entries
        .iter()
        .map(|e| {
            e.draft.changes["missing_permission"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        missing,
        strings(&[
            "api_keys.manage",
            "roles.manage",
            "users.delete",
            "shared_secret.manage",
            "organization.manage",
        ])
    );
    assert!(entries.iter().all(|e| e.draft.actor == reader.principal));
    // Nothing happened: the key and the user are still there.
    env.service.get_api_key(&env.system, &k.id).await.unwrap();
    env.service
        .get_user(&env.system, &env.admin.id)
        .await
        .unwrap();
}

on_both_backends! {
    account_mutations_write_one_entry_each,
    key_mutations_write_one_entry_each,
    denials_are_recorded_for_each_action,
}
