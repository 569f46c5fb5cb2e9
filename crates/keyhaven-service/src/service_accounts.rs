//! Service accounts and their lifecycle.

use keyhaven_core::audit::Action;
use keyhaven_core::id::Id;
use keyhaven_core::permission::Permission;
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::role;
use keyhaven_core::service_account::{self, ServiceAccount, ServiceAccountStatus, Transition};
use keyhaven_core::value::{
    Description, Errors, ExternalId, Limits, RoleNames, ServiceAccountName,
};
use keyhaven_core::webhook_event::WebhookEvent;
use keyhaven_core::DomainError;
use keyhaven_store::{Listing, Page, ServiceAccountFilter};
use serde_json::json;

use crate::changes::Changes;
use crate::{Caller, Service, ServiceError, ServiceResult};

/// What `POST /service-accounts` carries, as sent: a draft [`NewServiceAccount`]
/// parses.
#[derive(Debug, Clone)]
pub struct CreateServiceAccount {
    /// 1–100 characters.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Role names.
    pub roles: Option<Vec<String>>,
    /// Rate limits shared by all of its keys.
    pub ratelimits: Option<Vec<keyhaven_core::usage_control::NamedLimit>>,
    /// The id of the customer or system in the caller's world.
    pub external_id: Option<String>,
}

/// What `PATCH /service-accounts/{id}` carries, as sent: a draft
/// [`ServiceAccountPatch`] parses.
#[derive(Debug, Clone, Default)]
pub struct UpdateServiceAccount {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New role names (replaces the list).
    pub roles: Option<Vec<String>>,
    /// New shared rate limits (replaces the list; `null` = none).
    pub ratelimits: Option<Option<Vec<keyhaven_core::usage_control::NamedLimit>>>,
    /// New `external_id`, or `null` to clear it.
    pub external_id: Option<Option<String>>,
}

/// A new service account, every field parsed.
#[derive(Debug, Clone)]
pub struct NewServiceAccount {
    /// Its name.
    pub name: ServiceAccountName,
    /// What it is for.
    pub description: Description,
    /// Role names.
    pub roles: RoleNames,
    /// Rate limits shared by all of its keys.
    pub ratelimits: Limits,
    /// The id of the customer or system in the caller's world.
    pub external_id: Option<ExternalId>,
}

impl NewServiceAccount {
    /// Parses a draft; every mistake is returned, in field order.
    pub fn parse_all(d: CreateServiceAccount) -> Result<Self, Vec<DomainError>> {
        let mut e = Errors::default();
        let name = e.take(ServiceAccountName::parse(&d.name, "name"));
        let description = e.take(Description::parse(
            d.description.as_deref().unwrap_or(""),
            "description",
        ));
        let roles = e.take(RoleNames::parse(d.roles.as_deref().unwrap_or(&[]), "roles"));
        let ratelimits = e.take(Limits::parse(None, d.ratelimits));
        let external_id = e.take(
            d.external_id
                .as_deref()
                .map(|x| ExternalId::parse(x, "external_id"))
                .transpose(),
        );
        match (name, description, roles, ratelimits, external_id) {
            (Some(name), Some(description), Some(roles), Some(ratelimits), Some(external_id)) => {
                Ok(Self {
                    name,
                    description,
                    roles,
                    ratelimits,
                    external_id,
                })
            }
            _ => Err(e.into_vec()),
        }
    }
}

parsed_from!(CreateServiceAccount => NewServiceAccount);

/// A change to a service account, every field parsed: absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct ServiceAccountPatch {
    /// New name.
    pub name: Option<ServiceAccountName>,
    /// New description.
    pub description: Option<Description>,
    /// New roles.
    pub roles: Option<RoleNames>,
    /// New shared limits (an empty list for none).
    pub ratelimits: Option<Limits>,
    /// New `external_id`, or `None` inside to clear it.
    pub external_id: Option<Option<ExternalId>>,
}

impl ServiceAccountPatch {
    /// Parses a draft; every mistake is returned, in field order.
    pub fn parse_all(d: UpdateServiceAccount) -> Result<Self, Vec<DomainError>> {
        let mut e = Errors::default();
        let name = e.take(
            d.name
                .as_deref()
                .map(|n| ServiceAccountName::parse(n, "name"))
                .transpose(),
        );
        let description = e.take(
            d.description
                .as_deref()
                .map(|x| Description::parse(x, "description"))
                .transpose(),
        );
        let roles = e.take(
            d.roles
                .as_deref()
                .map(|r| RoleNames::parse(r, "roles"))
                .transpose(),
        );
        let ratelimits = e.take(
            d.ratelimits
                .map(|l| Limits::parse(None, Some(l.unwrap_or_default())))
                .transpose(),
        );
        let external_id = e.take(
            d.external_id
                .map(|x| {
                    x.as_deref()
                        .map(|x| ExternalId::parse(x, "external_id"))
                        .transpose()
                })
                .transpose(),
        );
        match (name, description, roles, ratelimits, external_id) {
            (Some(name), Some(description), Some(roles), Some(ratelimits), Some(external_id)) => {
                Ok(Self {
                    name,
                    description,
                    roles,
                    ratelimits,
                    external_id,
                })
            }
            _ => Err(e.into_vec()),
        }
    }
}

parsed_from!(UpdateServiceAccount => ServiceAccountPatch);

/// The audit target for a service account.
pub fn sa_principal(s: &ServiceAccount) -> Principal {
    Principal {
        kind: PrincipalKind::ServiceAccount,
        id: s.id.to_string(),
        name: s.name.clone(),
    }
}

impl Service {
    /// Creates a service account.
    pub async fn create_service_account(
        &self,
        caller: &Caller,
        input: impl TryInto<NewServiceAccount, Error: Into<ServiceError>>,
    ) -> ServiceResult<ServiceAccount> {
        self.authorize(
            caller,
            Permission::ServiceAccountsManage,
            Action::ServiceAccountCreate,
        )
        .await?;
        // Authorized first: a caller who may not act learns nothing about the input.
        let input: NewServiceAccount = input.try_into().map_err(Into::into)?;
        let name = input.name.into_inner();
        let description = input.description.into_inner();
        let roles = input.roles.into_strings();
        let ratelimits = input.ratelimits.into_inner();
        let external_id = input.external_id.map(ExternalId::into_inner);
        let tx = self.store.begin().await?;
        let (mut tx, found) = self
            .grant_or_deny(
                tx,
                caller,
                Action::ServiceAccountCreate,
                crate::GrantChange::new(&roles, &[]),
            )
            .await?;
        role::check_name_patterns(&found, &name)?;
        let creator_roles = self
            .creator_roles(tx.as_mut(), caller, Permission::ServiceAccountsManage)
            .await?;
        role::check_name_patterns(&creator_roles, &name)?;
        let now = self.now();
        let sa = ServiceAccount {
            id: self.new_id(),
            org_id: caller.org_id.clone(),
            name,
            description,
            roles,
            status: ServiceAccountStatus::Active,
            ratelimits,
            external_id,
            created_by: caller.principal.clone(),
            created_at: now,
            updated_at: now,
        };
        tx.insert_service_account(&sa).await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::ServiceAccountCreate,
                target: Some(sa_principal(&sa)),
                changes: json!({ "name": sa.name, "description": sa.description, "roles": sa.roles, "ratelimits": sa.ratelimits }),
                event: Some((WebhookEvent::ServiceAccountCreated, crate::webhooks::service_account_event(&sa))),
            }),
            &[],
        )
        .await?;
        Ok(sa)
    }

    /// A page of service accounts.
    pub async fn list_service_accounts(
        &self,
        caller: &Caller,
        filter: &ServiceAccountFilter,
        page: &Page,
    ) -> ServiceResult<Listing<ServiceAccount>> {
        self.authorize(
            caller,
            Permission::ServiceAccountsView,
            Action::ServiceAccountList,
        )
        .await?;
        let mut tx = self.store.read().await?;
        Ok(tx
            .list_service_accounts(&caller.org_id, filter, page)
            .await?)
    }

    /// One service account.
    pub async fn get_service_account(
        &self,
        caller: &Caller,
        id: &Id,
    ) -> ServiceResult<ServiceAccount> {
        self.authorize(
            caller,
            Permission::ServiceAccountsView,
            Action::ServiceAccountView,
        )
        .await?;
        let mut tx = self.store.read().await?;
        tx.service_account(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("service account"))
    }

    /// Changes name, description or roles.
    pub async fn update_service_account(
        &self,
        caller: &Caller,
        id: &Id,
        input: impl TryInto<ServiceAccountPatch, Error: Into<ServiceError>>,
    ) -> ServiceResult<ServiceAccount> {
        self.authorize(
            caller,
            Permission::ServiceAccountsManage,
            Action::ServiceAccountUpdate,
        )
        .await?;
        // Authorized first: a caller who may not act learns nothing about the input.
        let input: ServiceAccountPatch = input.try_into().map_err(Into::into)?;
        let name = input.name.map(ServiceAccountName::into_inner);
        let description = input.description.map(Description::into_inner);
        let roles = input.roles.map(RoleNames::into_strings);
        let mut tx = self.store.begin().await?;
        let mut sa = tx
            .service_account(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("service account"))?;
        let new_roles = roles.unwrap_or_else(|| sa.roles.clone());
        let (mut tx, found) = self
            .grant_or_deny(
                tx,
                caller,
                Action::ServiceAccountUpdate,
                crate::GrantChange {
                    old_roles: &sa.roles,
                    old_scopes: &[],
                    roles: &new_roles,
                    scopes: &[],
                },
            )
            .await?;
        let new_name = name.unwrap_or_else(|| sa.name.clone());
        role::check_name_patterns(&found, &new_name)?;
        if new_name != sa.name {
            // A rename is bound like a create (see `check_creator_patterns`).
            self.check_creator_patterns(
                tx.as_mut(),
                caller,
                &[Permission::ServiceAccountsManage],
                &new_name,
            )
            .await?;
        }
        let mut changes = Changes::default();
        changes.field("name", &sa.name, &new_name);
        sa.name = new_name;
        if let Some(d) = description {
            changes.field("description", &sa.description, &d);
            sa.description = d;
        }
        changes.field("roles", &sa.roles, &new_roles);
        sa.roles = new_roles;
        if let Some(l) = input.ratelimits.map(Limits::into_inner) {
            changes.field("ratelimits", &sa.ratelimits, &l);
            sa.ratelimits = l;
        }
        if let Some(e) = input.external_id.map(|e| e.map(ExternalId::into_inner)) {
            changes.field("external_id", &sa.external_id, &e);
            sa.external_id = e;
        }
        if !changes.is_empty() {
            sa.updated_at = self.now();
            tx.update_service_account(&sa).await?;
            self.commit_mutation(
                tx,
                caller,
                Some(crate::Success {
                    action: Action::ServiceAccountUpdate,
                    target: Some(sa_principal(&sa)),
                    changes: changes.into_value(),
                    event: Some((
                        WebhookEvent::ServiceAccountUpdated,
                        crate::webhooks::service_account_event(&sa),
                    )),
                }),
                &[(keyhaven_store::ChangeKind::Owner, sa.id.to_string())],
            )
            .await?;
        }
        Ok(sa)
    }

    /// Suspends, reactivates or archives; archiving revokes every key and credential.
    pub async fn transition_service_account(
        &self,
        caller: &Caller,
        id: &Id,
        t: Transition,
    ) -> ServiceResult<ServiceAccount> {
        let action = match t {
            Transition::Suspend => Action::ServiceAccountSuspend,
            Transition::Reactivate => Action::ServiceAccountReactivate,
            Transition::Archive => Action::ServiceAccountArchive,
        };
        self.authorize(caller, Permission::ServiceAccountsManage, action)
            .await?;
        let mut tx = self.store.begin().await?;
        let mut sa = tx
            .service_account(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("service account"))?;
        let next = service_account::transition(sa.status, t)?;
        if next == sa.status {
            return Ok(sa);
        }
        let now = self.now();
        let mut changes = json!({ "status": { "from": sa.status.as_str(), "to": next.as_str() } });
        if t == Transition::Archive {
            let keys = tx.revoke_keys_of_owner(&caller.org_id, &sa.id, now).await?;
            for kid in &keys {
                if let Some(k) = tx.api_key(&caller.org_id, kid).await? {
                    self.emit(
                        tx.as_mut(),
                        &caller.org_id,
                        WebhookEvent::ApiKeyRevoked,
                        crate::webhooks::key_event(&k, now),
                    )
                    .await?;
                }
            }
            let creds = tx
                .revoke_credentials_of(&caller.org_id, &sa.id, now)
                .await?;
            changes["revoked_keys"] = json!(keys);
            changes["revoked_credentials"] = json!(creds);
        }
        sa.status = next;
        sa.updated_at = now;
        tx.update_service_account(&sa).await?;
        let event = match t {
            Transition::Suspend => WebhookEvent::ServiceAccountSuspended,
            Transition::Reactivate => WebhookEvent::ServiceAccountReactivated,
            Transition::Archive => WebhookEvent::ServiceAccountArchived,
        };
        self.emit(
            tx.as_mut(),
            &caller.org_id,
            event,
            crate::webhooks::service_account_event(&sa),
        )
        .await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action,
                target: Some(sa_principal(&sa)),
                changes,
                event: None,
            }),
            &[(keyhaven_store::ChangeKind::Owner, sa.id.to_string())],
        )
        .await?;
        Ok(sa)
    }

    /// Deletes a service account with its keys and credentials.
    pub async fn delete_service_account(&self, caller: &Caller, id: &Id) -> ServiceResult<()> {
        self.authorize(
            caller,
            Permission::ServiceAccountsManage,
            Action::ServiceAccountDelete,
        )
        .await?;
        let mut tx = self.store.begin().await?;
        let sa = tx
            .service_account(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("service account"))?;
        let keys = tx.key_ids_of_owner(&caller.org_id, &sa.id).await?;
        let mut deleted = Vec::with_capacity(keys.len());
        for kid in &keys {
            if let Some(k) = tx.api_key(&caller.org_id, kid).await? {
                deleted.push(k);
            }
        }
        tx.delete_service_account(&caller.org_id, &sa.id).await?;
        let now = self.now();
        for k in &deleted {
            self.emit(
                tx.as_mut(),
                &caller.org_id,
                WebhookEvent::ApiKeyDeleted,
                crate::webhooks::key_event(k, now),
            )
            .await?;
        }
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::ServiceAccountDelete,
                target: Some(sa_principal(&sa)),
                changes: json!({ "deleted_keys": keys }),
                event: Some((
                    WebhookEvent::ServiceAccountDeleted,
                    crate::webhooks::service_account_event(&sa),
                )),
            }),
            &[(keyhaven_store::ChangeKind::Owner, sa.id.to_string())],
        )
        .await?;
        Ok(())
    }

    /// How many keys each service account owns (for the console's table); needs
    /// `service_accounts.view` like the list it belongs to.
    pub async fn service_account_key_counts(
        &self,
        caller: &Caller,
        ids: &[Id],
    ) -> ServiceResult<Vec<(Id, i64)>> {
        self.authorize(
            caller,
            Permission::ServiceAccountsView,
            Action::ServiceAccountList,
        )
        .await?;
        let mut tx = self.store.read().await?;
        Ok(tx.owned_key_counts(&caller.org_id, ids).await?)
    }
}
