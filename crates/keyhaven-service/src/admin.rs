//! Use cases of the operator's command line (`keyhaven admin …`, `keyhaven audit …`):
//! they act as Keyhaven itself (see [`crate::Caller::system`]) and need no sign-in, so
//! they are only reachable from the machine that holds the database settings.

use keyhaven_core::audit::{verify_chain, verify_head_mac, ChainBreak};
use keyhaven_core::id::Id;
use keyhaven_core::principal::PrincipalKind;
use keyhaven_core::role::SUPER_ADMIN;
use keyhaven_core::user::{User, UserStatus};
use keyhaven_core::DomainError;
use keyhaven_store::{Page, UserFilter};

use crate::api_keys::OwnerRef;
use crate::{Service, ServiceError, ServiceResult};

/// What `keyhaven audit verify` found for one organization.
#[derive(Debug, Clone)]
pub struct ChainReport {
    /// The organization.
    pub org_id: Id,
    /// How many entries its chain has.
    pub entries: usize,
    /// The first break, if any (its `kind` says which).
    pub broken: Option<ChainBreak>,
    /// Whether the head's MAC authenticated the chain (false, without a break, when the
    /// head has no MAC yet: no audited action since the upgrade that added them).
    pub authenticated: bool,
}

impl Service {
    /// The organization a command acts in: `given` (which must exist), else the only
    /// one there is.
    pub async fn resolve_organization(&self, given: Option<&str>) -> ServiceResult<Id> {
        let mut tx = self.store.read().await?;
        if let Some(g) = given {
            let id = Id::parse(g, "--org")?;
            return match tx.organization(&id).await? {
                Some(o) => Ok(o.id),
                None => Err(invalid_org(format!("there is no organization {g}"))),
            };
        }
        let orgs = tx.organizations().await?;
        match orgs.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(invalid_org(
                "there is no organization yet; run `keyhaven serve` once or `keyhaven admin create-org`".into(),
            )),
            _ => Err(invalid_org(
                "there are several organizations; choose one with --org".into(),
            )),
        }
    }

    /// The owner of a key made on the command line: the user with `email` in `org`, or
    /// without one the organization's oldest active super-admin.
    pub async fn default_key_owner(
        &self,
        org: &Id,
        email: Option<&str>,
    ) -> ServiceResult<OwnerRef> {
        let mut tx = self.store.read().await?;
        let user = match email {
            Some(e) => tx
                .user_by_email(e)
                .await?
                .filter(|u| u.org_id == *org)
                .ok_or_else(|| {
                    invalid_user(format!("there is no user {e} in this organization"))
                })?,
            None => oldest_super_admin(tx.as_mut(), org).await?.ok_or_else(|| {
                invalid_user("the organization has no active super-admin; pass --user".into())
            })?,
        };
        Ok(OwnerRef {
            kind: PrincipalKind::User,
            id: user.id.to_string(),
        })
    }

    /// Checks the audit hash chain of `org`, or of every organization.
    pub async fn verify_audit_chains(&self, org: Option<&Id>) -> ServiceResult<Vec<ChainReport>> {
        let mut tx = self.store.read().await?;
        let orgs: Vec<Id> = match org {
            Some(o) => vec![o.clone()],
            None => tx
                .organizations()
                .await?
                .into_iter()
                .map(|o| o.id)
                .collect(),
        };
        let mut out = Vec::with_capacity(orgs.len());
        for o in orgs {
            let chain = tx.audit_chain(&o).await?;
            let head = tx.audit_head(&o).await?;
            let mac = tx.audit_head_mac(&o).await?;
            let checked = verify_chain(&chain, head.as_ref().map(|(s, h)| (*s, h.as_str())))
                .and_then(|()| {
                    verify_head_mac(&self.master_key.audit_key(), &chain, mac.as_deref())
                });
            let (broken, authenticated) = match checked {
                Ok(auth) => (None, auth || chain.is_empty()),
                Err(b) => (Some(b), false),
            };
            out.push(ChainReport {
                org_id: o,
                entries: chain.len(),
                broken,
                authenticated,
            });
        }
        Ok(out)
    }
}

fn invalid_org(message: String) -> ServiceError {
    DomainError::invalid("invalid_organization", "--org", message).into()
}

fn invalid_user(message: String) -> ServiceError {
    DomainError::invalid("invalid_user", "--user", message).into()
}

/// The organization's oldest active super-admin.
async fn oldest_super_admin(
    tx: &mut dyn keyhaven_store::Tx,
    org: &Id,
) -> ServiceResult<Option<User>> {
    let filter = UserFilter {
        role: Some(SUPER_ADMIN.into()),
        status: Some(UserStatus::Active),
        q: None,
    };
    let mut page = Page {
        limit: 100,
        cursor: None,
    };
    let mut oldest: Option<User> = None;
    loop {
        let l = tx.list_users(org, &filter, &page).await?;
        for u in l.items {
            if oldest
                .as_ref()
                .is_none_or(|o| (u.created_at, u.id.as_str()) < (o.created_at, o.id.as_str()))
            {
                oldest = Some(u);
            }
        }
        match l.next_cursor {
            Some(c) if l.has_more => page.cursor = Some(c),
            _ => return Ok(oldest),
        }
    }
}

impl Service {
    /// Sets the password of the user with `email` (in whichever organization), as
    /// Keyhaven itself: the way back in for an operator who lost the printed password.
    /// Audited as `user.reset_password` by `keyhaven admin`; the user's sessions end.
    pub async fn reset_password_by_email(&self, email: &str, new: &str) -> ServiceResult<User> {
        let email = keyhaven_core::validate::email(email, "--email")?;
        let user = {
            let mut tx = self.store.read().await?;
            tx.user_by_email(&email).await?
        }
        .ok_or_else(|| invalid_user(format!("there is no user {email}")))?;
        let caller = crate::Caller::system(user.org_id.clone(), "keyhaven admin");
        self.reset_password(&caller, &user.id, new).await?;
        Ok(user)
    }
}
