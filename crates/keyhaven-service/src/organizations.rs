//! Organizations: creation (CLI and first start) with built-in roles and a first
//! super-admin.

use keyhaven_core::audit::Action;
use keyhaven_core::audit::Outcome;
use keyhaven_core::organization::{Organization, DEFAULT_KEY_PREFIX};
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::role::SUPER_ADMIN;
use keyhaven_core::user::{User, UserStatus};
use serde_json::json;

use crate::password;
use crate::sessions::user_principal;
use crate::{duplicate_as_conflict, Caller, Service, ServiceResult};

/// What first start did.
pub enum Bootstrap {
    /// The database already had an organization.
    AlreadyInitialized,
    /// Created organization "Default" and its super-admin; `password` is set when it
    /// was generated (and must be shown once).
    Created {
        /// The organization.
        organization: Box<Organization>,
        /// The super-admin.
        admin: Box<User>,
        /// The generated password, if none was configured.
        generated_password: Option<String>,
    },
}

fn org_principal(o: &Organization) -> Principal {
    Principal {
        kind: PrincipalKind::Organization,
        id: o.id.to_string(),
        name: o.name.clone(),
    }
}

impl Service {
    /// Creates an organization with the built-in roles and its first super-admin, all
    /// in one transaction.
    pub async fn create_organization(
        &self,
        name: &str,
        admin_email: &str,
        admin_password: &str,
    ) -> ServiceResult<(Organization, User)> {
        let (org, admin) = self
            .new_organization(name, admin_email, admin_password)
            .await?;
        let mut tx = self.store.begin().await?;
        self.insert_organization(tx.as_mut(), &org, &admin).await?;
        tx.commit().await?;
        Ok((org, admin))
    }

    /// Validates the input and builds (without storing) an organization and its first
    /// super-admin, the password hashed.
    async fn new_organization(
        &self,
        name: &str,
        admin_email: &str,
        admin_password: &str,
    ) -> ServiceResult<(Organization, User)> {
        let name = keyhaven_core::value::OrganizationName::parse(name, "name")?.into_inner();
        let email = keyhaven_core::value::Email::parse(admin_email, "admin_email")?.into_inner();
        keyhaven_core::value::NewPassword::parse(admin_password, "admin_password")?;
        let hash = password::hash(admin_password).await?;
        let now = self.now();
        let org = Organization {
            id: self.new_id(),
            name,
            key_prefix: DEFAULT_KEY_PREFIX.to_string(),
            created_at: now,
            updated_at: now,
        };
        let admin = User {
            id: self.new_id(),
            org_id: org.id.clone(),
            display_name: email.split('@').next().unwrap_or("admin").to_string(),
            email,
            password_hash: hash,
            roles: vec![SUPER_ADMIN.to_string()],
            status: UserStatus::Active,
            last_login_at: None,
            created_at: now,
            updated_at: now,
        };
        Ok((org, admin))
    }

    /// Stores an organization with the built-in roles and its first super-admin, with
    /// their audit entries, in `tx`.
    async fn insert_organization(
        &self,
        tx: &mut dyn keyhaven_store::Tx,
        org: &Organization,
        admin: &User,
    ) -> ServiceResult<()> {
        tx.insert_organization(org).await?;
        for r in self.built_in_roles() {
            tx.insert_role(&org.id, &r).await?;
        }
        tx.insert_user(admin).await.map_err(|e| {
            duplicate_as_conflict(e, "email_taken", "a user with this email already exists")
        })?;
        let caller = Caller::system(org.id.clone(), "keyhaven");
        self.audit(
            tx,
            &caller,
            Action::OrganizationCreate,
            Some(org_principal(org)),
            Outcome::Success,
            json!({ "name": org.name, "key_prefix": org.key_prefix }),
        )
        .await?;
        self.audit(
            tx,
            &caller,
            Action::UserCreate,
            Some(user_principal(admin)),
            Outcome::Success,
            json!({ "email": admin.email, "roles": admin.roles }),
        )
        .await?;
        Ok(())
    }

    /// On an empty database, creates organization "Default" and its super-admin — once,
    /// even when several nodes start on the same empty database at the same time.
    pub async fn bootstrap(
        &self,
        admin_email: &str,
        admin_password: Option<&str>,
    ) -> ServiceResult<Bootstrap> {
        let existing = {
            let mut tx = self.store.read().await?;
            tx.organizations().await?
        };
        if !existing.is_empty() {
            return Ok(Bootstrap::AlreadyInitialized);
        }
        let generated = match admin_password {
            Some(_) => None,
            None => Some(generate_password()),
        };
        let pw = admin_password.or(generated.as_deref()).unwrap_or_default();
        let (organization, admin) = self.new_organization("Default", admin_email, pw).await?;
        // Several nodes may start on the same empty database at once: under the
        // bootstrap lock, look again and create only if still nobody has.
        let mut tx = self.store.begin().await?;
        tx.lock_bootstrap().await?;
        if !tx.organizations().await?.is_empty() {
            return Ok(Bootstrap::AlreadyInitialized);
        }
        self.insert_organization(tx.as_mut(), &organization, &admin)
            .await?;
        tx.commit().await?;
        Ok(Bootstrap::Created {
            organization: Box::new(organization),
            admin: Box::new(admin),
            generated_password: generated,
        })
    }
}

/// A random 24-character password from an unambiguous alphabet.
pub fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..24)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// Input of `PATCH /organizations/{org}`.
#[derive(Debug, Clone, Default)]
pub struct UpdateOrganization {
    /// New name.
    pub name: Option<String>,
    /// New key prefix for keys created from now on.
    pub key_prefix: Option<String>,
}

/// A change to the organization, every field parsed.
#[derive(Debug, Clone, Default)]
pub struct OrganizationPatch {
    /// New name.
    pub name: Option<keyhaven_core::value::OrganizationName>,
    /// New key prefix.
    pub key_prefix: Option<keyhaven_core::value::KeyPrefix>,
}

impl TryFrom<UpdateOrganization> for OrganizationPatch {
    type Error = keyhaven_core::DomainError;

    fn try_from(d: UpdateOrganization) -> Result<Self, keyhaven_core::DomainError> {
        Ok(Self {
            name: d
                .name
                .as_deref()
                .map(|n| keyhaven_core::value::OrganizationName::parse(n, "name"))
                .transpose()?,
            key_prefix: d
                .key_prefix
                .as_deref()
                .map(|p| keyhaven_core::value::KeyPrefix::parse(p, "key_prefix"))
                .transpose()?,
        })
    }
}

impl Service {
    /// The caller's organization.
    pub async fn get_organization(&self, caller: &Caller) -> ServiceResult<Organization> {
        self.authorize(
            caller,
            keyhaven_core::Permission::OrganizationView,
            Action::OrganizationView,
        )
        .await?;
        let mut tx = self.store.read().await?;
        tx.organization(&caller.org_id)
            .await?
            .ok_or(crate::ServiceError::NotFound("organization"))
    }

    /// Renames the organization or changes its key prefix.
    pub async fn update_organization(
        &self,
        caller: &Caller,
        input: impl TryInto<OrganizationPatch, Error: Into<crate::ServiceError>>,
    ) -> ServiceResult<Organization> {
        self.authorize(
            caller,
            keyhaven_core::Permission::OrganizationManage,
            Action::OrganizationUpdate,
        )
        .await?;
        // Authorized first: a caller who may not act learns nothing about the input.
        let input: OrganizationPatch = input.try_into().map_err(Into::into)?;
        let name = input
            .name
            .map(keyhaven_core::value::OrganizationName::into_inner);
        let mut tx = self.store.begin().await?;
        let mut org = tx
            .organization(&caller.org_id)
            .await?
            .ok_or(crate::ServiceError::NotFound("organization"))?;
        let mut changes = crate::changes::Changes::default();
        if let Some(n) = name {
            changes.field("name", &org.name, &n);
            org.name = n;
        }
        if let Some(p) = input
            .key_prefix
            .map(keyhaven_core::value::KeyPrefix::into_inner)
        {
            changes.field("key_prefix", &org.key_prefix, &p);
            org.key_prefix = p;
        }
        if !changes.is_empty() {
            org.updated_at = self.now();
            tx.update_organization(&org).await?;
            self.commit_mutation(
                tx,
                caller,
                Some(crate::Success {
                    action: Action::OrganizationUpdate,
                    target: Some(org_principal(&org)),
                    changes: changes.into_value(),
                    event: None,
                }),
                &[],
            )
            .await?;
        }
        Ok(org)
    }
}
