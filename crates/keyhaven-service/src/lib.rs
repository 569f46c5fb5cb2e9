//! Keyhaven's use cases: one method of [`Service`] per action, the only place that
//! combines permission checks, domain rules, storage and audit. The REST API, the
//! console and the CLI all call these, so the three can never disagree about a rule.
//! This crate knows nothing of HTTP (no axum, utoipa, maud or tower).
//!
//! Parse, don't validate: a use case works on typed commands (`NewApiKey`,
//! `ApiKeyPatch`, `Regenerate`, `NewServiceAccount`, `NewUser`, `NewRole`, …) whose
//! fields are the typed values of [`keyhaven_core::value`] (`KeyName`, `Tags`,
//! `RoleNames`, `Email`, `Limits`, `Expiry`…), which can only hold what is valid. The
//! edges fill in a draft as sent (`CreateApiKey`, `UpdateUser`, …: the JSON body, the
//! form, the flags) and each command has one parser for it (`parse_all`, which reports
//! every mistake for a form, and `TryFrom`, which reports the first for an answer). A use
//! case takes anything that converts into its command and converts it right after the
//! permission check, so a caller who may not act is refused before their input is
//! judged; the console parses first itself, to show every mistake at once.
//!
//! Every mutation runs in one store transaction together with its audit entry, its
//! webhook events and its change-log rows, ending in `Service::commit_mutation`.
//! Denied requests are audited too, in a transaction of their own
//! ([`Service::record_denied_with`]).
//!
//! Beside the use cases: [`verify`] (the verification engine), [`jobs`] (expiry notices,
//! webhook deliveries, mail), [`oauth`] (access tokens), [`node`] (a node's background
//! work and graceful stop), [`config`], [`secrets`] and [`password`].

/// `TryFrom<draft>` for a typed command through its `parse_all`, naming the first
/// mistake.
macro_rules! parsed_from {
    ($draft:ty => $cmd:ty) => {
        impl TryFrom<$draft> for $cmd {
            type Error = keyhaven_core::DomainError;

            fn try_from(d: $draft) -> Result<Self, keyhaven_core::DomainError> {
                Self::parse_all(d).map_err(crate::first_error)
            }
        }
    };
}

pub mod admin;
pub mod analytics;
pub mod api_keys;
pub mod audit_log;
pub mod audit_sinks;
pub mod changes;
pub mod config;
pub mod credentials;
pub mod import;
pub mod jobs;
pub mod lists;
pub mod meter;
pub mod node;
pub mod oauth;
pub mod organizations;
pub mod outbound;
pub mod password;
pub mod ratelimits;
pub mod roles;
pub mod secrets;
pub mod service_accounts;
pub mod sessions;
pub mod shared_secret;
pub mod users;
pub mod verify;
pub mod webhooks;

use std::sync::Arc;

use keyhaven_core::audit::{Action, AuditDraft, Outcome};
use keyhaven_core::id::Id;
use keyhaven_core::permission::{Permission, PermissionSet};
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::time::{Clock, Timestamp};
use keyhaven_core::webhook_event::WebhookEvent;
use keyhaven_core::DomainError;
use keyhaven_store::{ChangeKind, Store, StoreError, Tx};
use rand::rngs::OsRng;

use crate::secrets::MasterKey;
use crate::verify::Verifier;

/// Why a use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A domain rule refused it (validation, conflict, missing permission).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// No such resource in the caller's organization.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// No valid credential.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Too many failed sign-ins; retry after this many seconds.
    #[error("too many failed sign-ins")]
    RateLimited(u64),
    /// Too busy to take this request now (password hashing is at capacity); retry
    /// after this many seconds.
    #[error("too busy; try again shortly")]
    Busy(u64),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something that should not happen.
    #[error("{0}")]
    Internal(String),
}

/// The first of a list of parse errors (an API answer names one).
pub fn first_error(errors: Vec<DomainError>) -> DomainError {
    errors.into_iter().next().unwrap_or_else(|| {
        DomainError::invalid("invalid_request", "body", "the request is not valid")
    })
}

/// A typed command passed as itself converts without error.
impl From<std::convert::Infallible> for ServiceError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

/// What a successful mutation records: its audit entry and, when subscribers care,
/// its webhook event (see [`Service::commit_mutation`]).
pub(crate) struct Success {
    /// The audit action, e.g. `api_key.create`.
    pub action: Action,
    /// What was acted on.
    pub target: Option<Principal>,
    /// The audit entry's `changes`.
    pub changes: serde_json::Value,
    /// The webhook event type and its `data`.
    pub event: Option<(WebhookEvent, serde_json::Value)>,
}

/// Result alias for use cases.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// Where a request came from, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Client IP.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Digest of the session token the request came with, once authenticated by a
    /// session (never audited; lets a password change keep this session only).
    pub session_digest: Option<String>,
}

/// An authenticated principal acting in one organization.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who acts.
    pub principal: Principal,
    /// Their organization.
    pub org_id: Id,
    /// Effective permissions (management and scopes).
    pub permissions: PermissionSet,
    /// For a key: its owner (a new key created with it gets the same owner).
    pub key_owner: Option<Principal>,
    /// Request metadata for audit entries.
    pub ctx: RequestContext,
}

impl Caller {
    /// Keyhaven itself acting in `org_id` with every permission (CLI, bootstrap).
    pub fn system(org_id: Id, what: &str) -> Self {
        Caller {
            principal: Principal::system(what),
            org_id,
            permissions: keyhaven_core::permission::all_management(),
            key_owner: None,
            ctx: RequestContext::default(),
        }
    }

    /// Whether the caller holds `p`.
    pub fn has(&self, p: Permission) -> bool {
        self.permissions.contains(p.as_str())
    }

    /// The caller's user id when the caller is a portal user.
    pub fn user_id(&self) -> Option<Id> {
        (self.principal.kind == PrincipalKind::User)
            .then(|| Id::from_trusted(self.principal.id.clone()))
    }

    /// The user on whose behalf the caller acts: a portal user, or the owner of the
    /// personal API key the caller authenticated with. Rules about "oneself" use this,
    /// so a personal key cannot do what its user may not do to themself.
    pub fn acting_user_id(&self) -> Option<Id> {
        self.user_id()
            .or_else(|| match (&self.principal.kind, &self.key_owner) {
                (PrincipalKind::ApiKey, Some(o)) if o.kind == PrincipalKind::User => {
                    Some(Id::from_trusted(o.id.clone()))
                }
                _ => None,
            })
    }
}

/// What the use cases need: storage, time, randomness, the master key, and the
/// verification cache to keep current. The fields are private: the HTTP edge, the
/// console and the CLI reach storage only through the use cases.
#[derive(Clone)]
pub struct Service {
    /// The database.
    pub(crate) store: Arc<dyn Store>,
    /// The clock (injected in tests).
    pub(crate) clock: Arc<dyn Clock>,
    /// Encrypts recoverable secrets.
    pub(crate) master_key: MasterKey,
    /// This node's verification engine.
    pub(crate) verifier: Arc<Verifier>,
    /// This node's OAuth state: the signing key once loaded, credential uses not yet written.
    pub(crate) oauth: Arc<oauth::NodeState>,
    /// Wakes the background jobs (webhook deliveries) early.
    pub(crate) jobs_wake: Arc<tokio::sync::Notify>,
    /// `(host, port)` pairs this server answers on; webhooks may not point there.
    /// (Shared, like every field: the service is cloned several times per request.)
    pub(crate) self_origins: Arc<[(String, u16)]>,
    /// Which addresses webhooks may reach (public ones and the operator's
    /// `KEYHAVEN_OUTBOUND_ALLOWED_CIDRS`).
    pub(crate) outbound: outbound::OutboundPolicy,
}

/// Roles and scopes a holder has and is to have, for [`Service::grant_or_deny`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrantChange<'a> {
    /// Held before (empty for a create).
    pub old_roles: &'a [String],
    /// Held before (empty for a create, and for holders without scopes).
    pub old_scopes: &'a [String],
    /// To hold.
    pub roles: &'a [String],
    /// To hold.
    pub scopes: &'a [String],
}

impl<'a> GrantChange<'a> {
    /// A new holder of `roles` and `scopes`.
    pub(crate) fn new(roles: &'a [String], scopes: &'a [String]) -> Self {
        GrantChange {
            old_roles: &[],
            old_scopes: &[],
            roles,
            scopes,
        }
    }
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

impl Service {
    /// A service on `store`, with a fresh verification cache.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, master_key: MasterKey) -> Self {
        let verifier = Arc::new(Verifier::new(store.clone(), clock.clone()));
        Service {
            store,
            clock,
            master_key,
            verifier,
            oauth: Arc::default(),
            jobs_wake: Arc::new(tokio::sync::Notify::new()),
            self_origins: Arc::from([]),
            outbound: outbound::OutboundPolicy::default(),
        }
    }

    /// The same service, refusing webhooks that point at `origins` (this server's own
    /// `(host, port)` pairs).
    pub fn with_self_origins(mut self, origins: Vec<(String, u16)>) -> Self {
        self.self_origins = origins.into();
        self
    }

    /// The same service, letting webhooks reach `allowed` besides public addresses
    /// (`KEYHAVEN_OUTBOUND_ALLOWED_CIDRS`).
    pub fn with_outbound_allowed(mut self, allowed: Vec<ipnet::IpNet>) -> Self {
        self.outbound = outbound::OutboundPolicy::new(allowed);
        self
    }

    /// Opens (and migrates) the database the settings name and builds the service on it.
    pub async fn open(config: &config::Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        if config.database_url.starts_with("sqlite:") {
            config::prepare_data_dir(&config.data_dir)?;
        }
        let store = keyhaven_store::connect(&config.database_url, true).await?;
        let mut service = Service::new(store.clone(), clock, config.master_key.clone())
            .with_self_origins(config::self_origins(config))
            .with_outbound_allowed(config.outbound_allowed_cidrs.clone());
        if let Some(url) = &config.redis_url {
            let engine = meter::redis::RedisEngine::connect(url, store).await?;
            service = service.with_counter_engine(Arc::new(engine));
        }
        Ok(service)
    }

    /// The same service with its rate limits and credits counted in `engine` (a fresh
    /// verifier: call it at startup, before the service serves).
    pub fn with_counter_engine(mut self, engine: Arc<dyn meter::CounterEngine>) -> Self {
        self.verifier = Arc::new(Verifier::with_engine(
            self.store.clone(),
            self.clock.clone(),
            engine,
        ));
        self
    }

    /// The database, for tests that check what was stored. Only with the `testing`
    /// feature, which no production crate enables: the edge reaches storage through
    /// use cases.
    #[cfg(feature = "testing")]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock, for tests (see [`Service::store`]).
    #[cfg(feature = "testing")]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// This node's verification engine (the hot path calls it directly).
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// Which database the service runs on.
    pub fn backend(&self) -> keyhaven_store::Backend {
        self.store.backend()
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> ServiceResult<()> {
        Ok(self.store.ping().await?)
    }

    /// Applies pending schema migrations.
    pub async fn migrate(&self) -> ServiceResult<()> {
        Ok(self.store.migrate().await?)
    }

    /// Records the changes that affect verification, commits, and drops the changed
    /// keys from this node's cache (other nodes follow the change log).
    async fn commit_changes(
        &self,
        mut tx: Box<dyn Tx>,
        changes: &[(ChangeKind, String)],
    ) -> ServiceResult<()> {
        let now = self.now();
        for (kind, id) in changes {
            tx.record_change(*kind, id, now).await?;
        }
        tx.commit().await?;
        self.verifier.apply(changes);
        self.wake_jobs();
        Ok(())
    }

    /// Ends a mutation: the success audit entry (when `success` says what happened),
    /// its webhook event, the change-log rows that keep every node's cache current, the
    /// commit, and then this node's cache and the job runner. Every use case that writes
    /// ends here, so none can forget one of them.
    pub(crate) async fn commit_mutation(
        &self,
        mut tx: Box<dyn Tx>,
        caller: &Caller,
        success: Option<Success>,
        changes: &[(ChangeKind, String)],
    ) -> ServiceResult<()> {
        if let Some(s) = success {
            self.audit(
                tx.as_mut(),
                caller,
                s.action,
                s.target,
                Outcome::Success,
                s.changes,
            )
            .await?;
            if let Some((event, data)) = s.event {
                self.emit(tx.as_mut(), &caller.org_id, event, data).await?;
            }
        }
        self.commit_changes(tx, changes).await
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A new id for now.
    pub fn new_id(&self) -> Id {
        Id::generate(self.now().timestamp_millis(), &mut OsRng)
    }

    /// Appends an audit entry inside `tx`.
    pub async fn audit(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        action: Action,
        target: Option<Principal>,
        outcome: Outcome,
        changes: serde_json::Value,
    ) -> ServiceResult<()> {
        let draft = AuditDraft {
            actor: caller.principal.clone(),
            action: action.as_str().to_string(),
            target,
            outcome,
            ip: caller.ctx.ip.clone(),
            user_agent: caller.ctx.user_agent.clone(),
            request_id: caller.ctx.request_id.clone(),
            changes,
        };
        let e = tx
            .append_audit(&caller.org_id, self.new_id(), self.now(), draft)
            .await?;
        // Authenticate the new head (see keyhaven_core::audit): the MAC after the
        // previous entry, or for a head written before MACs existed, one computed over
        // the entries before this one.
        let key = self.master_key.audit_key();
        let prev = match tx.audit_head_mac(&caller.org_id).await? {
            Some(m) => m,
            None if e.seq > 1 => {
                let chain = tx.audit_chain(&caller.org_id).await?;
                let before: Vec<_> = chain.into_iter().filter(|x| x.seq < e.seq).collect();
                keyhaven_core::audit::chain_mac(&key, &before)
            }
            None => String::new(),
        };
        let mac = keyhaven_core::audit::head_mac(&key, &prev, e.seq, &e.hash);
        tx.seal_audit_head(&caller.org_id, e.seq, &mac).await?;
        Ok(())
    }

    /// Checks that the caller holds `p`; otherwise records a denied entry for `action`
    /// and refuses.
    pub async fn authorize(
        &self,
        caller: &Caller,
        p: Permission,
        action: Action,
    ) -> ServiceResult<()> {
        if caller.has(p) {
            return Ok(());
        }
        self.record_denied(caller, action, None, p.as_str()).await;
        Err(DomainError::denied(p.as_str()).into())
    }

    /// Records a denied request for a missing permission; a failure to record is
    /// logged, never hidden behind the denial the caller gets anyway.
    pub async fn record_denied(
        &self,
        caller: &Caller,
        action: Action,
        target: Option<Principal>,
        missing: &str,
    ) {
        self.record_denied_with(
            caller,
            action,
            target,
            serde_json::json!({ "missing_permission": missing }),
        )
        .await
    }

    /// Records a denied request with `changes` saying why, in a transaction of its
    /// own. The one place denials are written: every refusal that is audited comes here.
    pub async fn record_denied_with(
        &self,
        caller: &Caller,
        action: Action,
        target: Option<Principal>,
        changes: serde_json::Value,
    ) {
        let result = async {
            let mut tx = self.store.begin().await?;
            self.audit(
                tx.as_mut(),
                caller,
                action,
                target,
                Outcome::Denied,
                changes,
            )
            .await?;
            tx.commit().await?;
            Ok::<_, ServiceError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, action = action.as_str(), "could not record a denied request in the audit log");
        }
    }

    /// The one way a refused escalation is audited: when `e` says a permission the
    /// caller lacks would be granted or taken over, records a denied entry for `action`
    /// (on `target`). The caller must have dropped its transaction first (SQLite has
    /// one writer). Any other error records nothing.
    pub(crate) async fn deny_if_escalation(
        &self,
        caller: &Caller,
        action: Action,
        target: Option<Principal>,
        e: &ServiceError,
    ) {
        if let ServiceError::Domain(DomainError::PermissionDenied { permission }) = e {
            self.record_denied(caller, action, target, permission).await;
        }
    }

    /// `result`, recording a denied `action` when it is a refusal for a missing
    /// permission (the caller gets the 403 either way). Only for checks made outside a
    /// write transaction; inside one, use [`Service::grant_or_deny`], which rolls the
    /// transaction back before recording.
    pub(crate) async fn or_deny<T>(
        &self,
        caller: &Caller,
        action: Action,
        result: ServiceResult<T>,
    ) -> ServiceResult<T> {
        if let Err(e) = &result {
            self.deny_if_escalation(caller, action, None, e).await;
        }
        result
    }

    /// The one path of every grant check (creating or changing a key, service account or
    /// user): [`Service::check_grant_change`] in `tx`; on a refusal `tx` is rolled back
    /// first, then a denied `action` is recorded (for a missing permission) and the error
    /// returned. Otherwise `tx` is handed back with the roles granted.
    pub(crate) async fn grant_or_deny(
        &self,
        mut tx: Box<dyn Tx>,
        caller: &Caller,
        action: Action,
        change: GrantChange<'_>,
    ) -> ServiceResult<(Box<dyn Tx>, Vec<keyhaven_core::role::Role>)> {
        let checked = self
            .check_grant_change(
                tx.as_mut(),
                caller,
                change.old_roles,
                change.old_scopes,
                change.roles,
                change.scopes,
                "roles",
            )
            .await;
        match checked {
            Ok(found) => Ok((tx, found)),
            Err(e) => {
                drop(tx);
                self.deny_if_escalation(caller, action, None, &e).await;
                Err(e)
            }
        }
    }

    /// Refuses an action on a target that holds management permissions the caller lacks
    /// (taking over a key's secret, setting a more powerful user's password). On refusal
    /// `tx` is rolled back first, then a denied entry for `action` on `target` is
    /// recorded and the answer is 403; otherwise `tx` is handed back.
    pub async fn check_holds_all(
        &self,
        tx: Box<dyn Tx>,
        caller: &Caller,
        target_permissions: &[String],
        action: Action,
        target: Principal,
    ) -> ServiceResult<Box<dyn Tx>> {
        match keyhaven_core::permission::check_no_escalation(
            &caller.permissions,
            target_permissions,
        ) {
            Ok(()) => Ok(tx),
            Err(e) => {
                drop(tx);
                let e = ServiceError::from(e);
                self.deny_if_escalation(caller, action, Some(target), &e)
                    .await;
                Err(e)
            }
        }
    }

    /// The roles through which the caller holds `p`, whose `key_name_pattern`s bind
    /// the names of what the caller creates with it: a user's roles; a key's roles,
    /// and for a personal key also its user's (the key can do no more than the user).
    pub async fn creator_roles(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        p: Permission,
    ) -> ServiceResult<Vec<keyhaven_core::role::Role>> {
        self.roles_granting(tx, caller, &[p]).await
    }

    /// Checks `name` against the `key_name_pattern` of every role through which the
    /// caller holds one of `perms` (see [`Service::creator_roles`]). Creating a key or
    /// service account and renaming one are bound by the same rule, so a holder limited
    /// to `^ci-` can neither create nor rename to `prod-…`.
    pub(crate) async fn check_creator_patterns(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        perms: &[Permission],
        name: &str,
    ) -> ServiceResult<()> {
        let roles = self.roles_granting(tx, caller, perms).await?;
        keyhaven_core::role::check_name_patterns(&roles, name)?;
        Ok(())
    }

    /// The caller's roles (see [`Service::creator_roles`]) that grant any of `perms`.
    async fn roles_granting(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        perms: &[Permission],
    ) -> ServiceResult<Vec<keyhaven_core::role::Role>> {
        let mut names: Vec<String> = Vec::new();
        let mut user_id = caller.user_id();
        if caller.principal.kind == PrincipalKind::ApiKey {
            if let Some(k) = tx
                .api_key(
                    &caller.org_id,
                    &Id::from_trusted(caller.principal.id.clone()),
                )
                .await?
            {
                names.extend(k.roles);
            }
            user_id = caller.acting_user_id();
        }
        if let Some(uid) = user_id {
            if let Some(u) = tx.user(&caller.org_id, &uid).await? {
                names.extend(u.roles);
            }
        }
        let mut out: Vec<keyhaven_core::role::Role> = Vec::new();
        for name in names {
            if out.iter().any(|r| r.name == name) {
                continue;
            }
            if let Some(r) = tx.role(&caller.org_id, &name).await? {
                if r.permissions
                    .iter()
                    .any(|x| perms.iter().any(|p| x == p.as_str()))
                {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Refuses to grant management permissions the caller lacks, for a change from
    /// `old_roles`/`old_scopes` to `roles`/`scopes` (both empty before for a new holder):
    /// checks every permission of `roles` (by name, in the caller's organization; an
    /// unknown name is a validation error on `param`) and `scopes`, but only management
    /// permissions the holder did not already have
    /// count as granted, so editing anything else of a powerful key or account (its
    /// description, a tag) needs no more than the edit permission. Returns the new roles.
    /// The one grant rule of every `PATCH` that sets roles: users, keys and service
    /// accounts (a user's `PATCH` also needs every permission the user holds, see
    /// `update_user`).
    #[allow(clippy::too_many_arguments)]
    async fn check_grant_change(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        old_roles: &[String],
        old_scopes: &[String],
        roles: &[String],
        scopes: &[String],
        param: &str,
    ) -> ServiceResult<Vec<keyhaven_core::role::Role>> {
        let mut found = Vec::with_capacity(roles.len());
        for (i, name) in roles.iter().enumerate() {
            match tx.role(&caller.org_id, name).await? {
                Some(r) => found.push(r),
                None => {
                    return Err(DomainError::invalid(
                        "unknown_role",
                        format!("{param}[{i}]"),
                        format!("there is no role named {name:?}"),
                    )
                    .into())
                }
            }
        }
        let before: PermissionSet = sessions::role_permissions(tx, &caller.org_id, old_roles)
            .await?
            .into_iter()
            .chain(old_scopes.iter().cloned())
            .collect();
        let granted: Vec<String> = keyhaven_core::role::union(&found)
            .into_iter()
            .chain(scopes.iter().cloned())
            .filter(|p| !before.contains(p))
            .collect();
        keyhaven_core::permission::check_no_escalation(&caller.permissions, &granted)?;
        Ok(found)
    }
}

/// One page of a short list held in memory, already in listing order: the items that
/// come after the cursor (`after(item, cursor)`), at most `page.limit`, with the next
/// cursor (`key` of the page's last item) when more follow.
pub fn page_in_memory<T>(
    items: Vec<T>,
    page: &keyhaven_store::Page,
    key: impl Fn(&T) -> String,
    after: impl Fn(&T, &str) -> bool,
) -> keyhaven_store::Listing<T> {
    let mut rest: Vec<T> = match &page.cursor {
        Some(c) => items.into_iter().filter(|t| after(t, c)).collect(),
        None => items,
    };
    let limit = page.limit.clamp(1, 100) as usize;
    let has_more = rest.len() > limit;
    rest.truncate(limit);
    let next_cursor = if has_more {
        rest.last().map(&key)
    } else {
        None
    };
    keyhaven_store::Listing {
        items: rest,
        has_more,
        next_cursor,
    }
}

/// Maps a store "duplicate" to a conflict with a message about `what`.
pub fn duplicate_as_conflict(e: StoreError, code: &'static str, message: &str) -> ServiceError {
    match e {
        StoreError::Duplicate(_) => DomainError::conflict(code, message).into(),
        other => other.into(),
    }
}
