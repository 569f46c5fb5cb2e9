//! Client credentials of service accounts.

use keyhaven_core::api_key;
use keyhaven_core::audit::Action;
use keyhaven_core::credential::{self, Credential};
use keyhaven_core::id::Id;
use keyhaven_core::key_format::{self, Secret};
use keyhaven_core::permission::Permission;
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::service_account::ServiceAccountStatus;
use keyhaven_core::time::{self, Timestamp};
use keyhaven_core::{validate, DomainError};
use serde_json::json;

use crate::changes::Changes;
use crate::{Caller, Service, ServiceError, ServiceResult};

/// Input of `POST /service-accounts/{id}/credentials`.
#[derive(Debug, Clone)]
pub struct CreateCredential {
    /// 1–100 characters.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Expiry (future); none = never.
    pub expires_at: Option<Timestamp>,
}

/// Input of `PATCH /service-accounts/{id}/credentials/{cred}`.
#[derive(Debug, Clone, Default)]
pub struct UpdateCredential {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
}

fn cred_principal(c: &Credential) -> Principal {
    Principal {
        kind: PrincipalKind::Credential,
        id: c.id.to_string(),
        name: c.name.clone(),
    }
}

impl Service {
    async fn service_account_for(
        &self,
        tx: &mut dyn keyhaven_store::Tx,
        caller: &Caller,
        sa_id: &Id,
    ) -> ServiceResult<keyhaven_core::service_account::ServiceAccount> {
        tx.service_account(&caller.org_id, sa_id)
            .await?
            .ok_or(ServiceError::NotFound("service account"))
    }

    /// Creates a credential; returns it with its client secret (shown once).
    pub async fn create_credential(
        &self,
        caller: &Caller,
        sa_id: &Id,
        input: CreateCredential,
    ) -> ServiceResult<(Credential, Secret)> {
        self.authorize(
            caller,
            Permission::ServiceAccountsManage,
            Action::CredentialCreate,
        )
        .await?;
        let name = validate::name(&input.name, "name", 100)?;
        let description =
            validate::description(input.description.as_deref().unwrap_or(""), "description")?;
        let now = self.now();
        let expires_at = input
            .expires_at
            .map(|t| api_key::validate_future(t, now, "expires_at"))
            .transpose()?;
        let mut tx = self.store.begin().await?;
        let sa = self.service_account_for(tx.as_mut(), caller, sa_id).await?;
        if sa.status == ServiceAccountStatus::Archived {
            return Err(DomainError::conflict(
                "service_account_archived",
                "an archived service account cannot get new credentials",
            )
            .into());
        }
        let org = tx
            .organization(&caller.org_id)
            .await?
            .ok_or(ServiceError::NotFound("organization"))?;
        let id = self.new_id();
        let secret = key_format::generate(
            &credential::secret_prefix(&org.key_prefix),
            &mut rand::rngs::OsRng,
        );
        let c = Credential {
            client_id: credential::client_id(&org.key_prefix, &id),
            id,
            org_id: caller.org_id.clone(),
            service_account_id: sa.id.clone(),
            name,
            description,
            secret_digest: key_format::digest_hex(secret.expose()),
            created_at: now,
            updated_at: now,
            last_used_at: None,
            expires_at,
            revoked_at: None,
        };
        tx.insert_credential(&c).await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::CredentialCreate,
                target: Some(cred_principal(&c)),
                changes: json!({ "service_account_id": sa.id, "client_id": c.client_id, "name": c.name, "expires_at": c.expires_at.as_ref().map(time::rfc3339) }),
                event: None,
            }),
            &[],
        )
        .await?;
        Ok((c, secret))
    }

    /// Every credential of a service account.
    pub async fn list_credentials(
        &self,
        caller: &Caller,
        sa_id: &Id,
    ) -> ServiceResult<Vec<Credential>> {
        self.authorize(
            caller,
            Permission::ServiceAccountsView,
            Action::CredentialList,
        )
        .await?;
        let mut tx = self.store.read().await?;
        self.service_account_for(tx.as_mut(), caller, sa_id).await?;
        Ok(tx.credentials(&caller.org_id, sa_id).await?)
    }

    /// A page of a service account's credentials, newest first (cursor: the last id).
    pub async fn list_credentials_page(
        &self,
        caller: &Caller,
        sa_id: &Id,
        page: &keyhaven_store::Page,
    ) -> ServiceResult<keyhaven_store::Listing<Credential>> {
        let mut creds = self.list_credentials(caller, sa_id).await?;
        creds.sort_by(|a, b| b.id.as_str().cmp(a.id.as_str()));
        Ok(crate::page_in_memory(
            creds,
            page,
            |c| c.id.to_string(),
            |c, cursor| c.id.as_str() < cursor,
        ))
    }

    /// One credential.
    pub async fn get_credential(
        &self,
        caller: &Caller,
        sa_id: &Id,
        id: &Id,
    ) -> ServiceResult<Credential> {
        self.authorize(
            caller,
            Permission::ServiceAccountsView,
            Action::CredentialView,
        )
        .await?;
        let mut tx = self.store.read().await?;
        tx.credential(&caller.org_id, sa_id, id)
            .await?
            .ok_or(ServiceError::NotFound("credential"))
    }

    /// Changes name or description.
    pub async fn update_credential(
        &self,
        caller: &Caller,
        sa_id: &Id,
        id: &Id,
        input: UpdateCredential,
    ) -> ServiceResult<Credential> {
        self.authorize(
            caller,
            Permission::ServiceAccountsManage,
            Action::CredentialUpdate,
        )
        .await?;
        let name = input
            .name
            .as_deref()
            .map(|n| validate::name(n, "name", 100))
            .transpose()?;
        let description = input
            .description
            .as_deref()
            .map(|d| validate::description(d, "description"))
            .transpose()?;
        let mut tx = self.store.begin().await?;
        let mut c = tx
            .credential(&caller.org_id, sa_id, id)
            .await?
            .ok_or(ServiceError::NotFound("credential"))?;
        let mut changes = Changes::default();
        if let Some(n) = name {
            changes.field("name", &c.name, &n);
            c.name = n;
        }
        if let Some(d) = description {
            changes.field("description", &c.description, &d);
            c.description = d;
        }
        if !changes.is_empty() {
            c.updated_at = self.now();
            tx.update_credential(&c).await?;
            let success = crate::Success {
                action: Action::CredentialUpdate,
                target: Some(cred_principal(&c)),
                changes: changes.into_value(),
                event: None,
            };
            self.commit_mutation(tx, caller, Some(success), &[]).await?;
        }
        Ok(c)
    }

    /// Deletes a credential.
    pub async fn delete_credential(
        &self,
        caller: &Caller,
        sa_id: &Id,
        id: &Id,
    ) -> ServiceResult<()> {
        self.authorize(
            caller,
            Permission::ServiceAccountsManage,
            Action::CredentialDelete,
        )
        .await?;
        let mut tx = self.store.begin().await?;
        let c = tx
            .credential(&caller.org_id, sa_id, id)
            .await?
            .ok_or(ServiceError::NotFound("credential"))?;
        tx.delete_credential(&caller.org_id, sa_id, id).await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::CredentialDelete,
                target: Some(cred_principal(&c)),
                changes: json!({ "client_id": c.client_id }),
                event: None,
            }),
            &[],
        )
        .await?;
        Ok(())
    }
}
