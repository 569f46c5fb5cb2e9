//! Service accounts: reading their key counts needs the permission the list needs.

use keyhaven_service::roles::CreateRole;

use crate::support::{denied, strings, Env};

async fn key_counts_need_service_accounts_view(env: &Env) {
    let sa = env.service_account("billing", &[]).await;
    env.service
        .create_role(
            &env.system,
            CreateRole {
                name: "keys-only".into(),
                description: None,
                permissions: strings(&["api_keys.view"]),
                key_name_pattern: None,
            },
        )
        .await
        .unwrap();
    let (_, keys_only) = env.user("keys@example.com", &["keys-only"]).await;
    let ids = vec![sa.id.clone()];
    let mark = env.mark().await;
    let r = env
        .service
        .service_account_key_counts(&keys_only, &ids)
        .await;
    assert_eq!(denied(r), "service_accounts.view");
    env.audited_denial(
        mark,
        "service_account.list",
        &keys_only,
        "service_accounts.view",
    )
    .await;
    let admin = env.admin_caller().await;
    let counts = env
        .service
        .service_account_key_counts(&admin, &ids)
        .await
        .unwrap();
    assert!(counts.iter().all(|(id, _)| *id == sa.id), "{counts:?}");
}

on_both_backends! {
    key_counts_need_service_accounts_view,
}
