//! Client credentials of service accounts.

use keyhaven_core::audit::Action;
use keyhaven_core::credential::{self, Credential};
use keyhaven_core::id::Id;
use keyhaven_core::key_format::{self, Secret};
use keyhaven_core::permission::Permission;
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::service_account::ServiceAccountStatus;
use keyhaven_core::time::{self, Timestamp};
use keyhaven_core::value::{CredentialName, Description, Errors, Expiry};
use keyhaven_core::DomainError;
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

/// A new credential, every field parsed.
#[derive(Debug, Clone)]
pub struct NewCredential {
    /// Its name.
    pub name: CredentialName,
    /// What it is for.
    pub description: Description,
    /// When it expires, if ever (in the future).
    pub expires_at: Option<Timestamp>,
}

impl NewCredential {
    /// Parses a draft; every mistake is returned, in field order.
    pub fn parse_all(d: CreateCredential) -> Result<Self, Vec<DomainError>> {
        let mut e = Errors::default();
        let name = e.take(CredentialName::parse(&d.name, "name"));
        let description = e.take(Description::parse(
            d.description.as_deref().unwrap_or(""),
            "description",
        ));
        match (name, description) {
            (Some(name), Some(description)) => Ok(Self {
                name,
                description,
                expires_at: d.expires_at,
            }),
            _ => Err(e.into_vec()),
        }
    }
}

parsed_from!(CreateCredential => NewCredential);

/// A change to a credential, every field parsed: absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct CredentialPatch {
    /// New name.
    pub name: Option<CredentialName>,
    /// New description.
    pub description: Option<Description>,
}

impl TryFrom<UpdateCredential> for CredentialPatch {
    type Error = DomainError;

    fn try_from(d: UpdateCredential) -> Result<Self, DomainError> {
        Ok(Self {
            name: d
                .name
                .as_deref()
                .map(|n| CredentialName::parse(n, "name"))
                .transpose()?,
            description: d
                .description
                .as_deref()
                .map(|x| Description::parse(x, "description"))
                .transpose()?,
        })
    }
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
        input: impl TryInto<NewCredential, Error: Into<ServiceError>>,
    ) -> ServiceResult<(Credential, Secret)> {
        self.authorize(
            caller,
            Permission::ServiceAccountsManage,
            Action::CredentialCreate,
        )
        .await?;
        // Authorized first: a caller who may not act learns nothing about the input.
        let input: NewCredential = input.try_into().map_err(Into::into)?;
        let name = input.name.into_inner();
        let description = input.description.into_inner();
        let now = self.now();
        let expires_at = match input.expires_at {
            Some(t) => Expiry::At(t).resolve(now, false)?,
            None => None,
        };
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
        input: impl TryInto<CredentialPatch, Error: Into<ServiceError>>,
    ) -> ServiceResult<Credential> {
        self.authorize(
            caller,
            Permission::ServiceAccountsManage,
            Action::CredentialUpdate,
        )
        .await?;
        let input: CredentialPatch = input.try_into().map_err(Into::into)?;
        let name = input.name.map(CredentialName::into_inner);
        let description = input.description.map(Description::into_inner);
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
