//! Signing in and out, resolving sessions and bearer keys into callers, and changing
//! one's own password.

use chrono::Duration;
use keyhaven_core::api_key::KeyStatus;
use keyhaven_core::audit::Action;
use keyhaven_core::id::Id;
use keyhaven_core::key_format;
use keyhaven_core::organization::Organization;
use keyhaven_core::permission::PermissionSet;
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::role;
use keyhaven_core::user::{User, UserStatus};
use keyhaven_core::validate;
use keyhaven_store::{Session, Tx};
use rand::RngCore;
use serde_json::json;

use crate::password;
use crate::{Caller, RequestContext, Service, ServiceError, ServiceResult};

/// Sessions end after this long without a request.
pub const IDLE_TIMEOUT_HOURS: i64 = 12;
/// Failed sign-ins for one email from one client address allowed within
/// [`FAILURE_WINDOW_MINUTES`]: one attacker failing for an email locks out their
/// address, not the email's owner.
pub const MAX_FAILURES: i64 = 5;
/// Failed sign-ins from one client address, whatever the email, allowed within the
/// window (one address trying many emails).
pub const MAX_ADDRESS_FAILURES: i64 = 20;
/// Failed sign-ins for one email from all addresses together allowed within the window
/// (many addresses trying one email).
pub const MAX_EMAIL_FAILURES: i64 = 100;
/// The window in which failures count.
pub const FAILURE_WINDOW_MINUTES: i64 = 15;

const BAD_CREDENTIALS: &str = "invalid email or password";

/// A new session: the cookie token (shown only to the browser), its CSRF token, and who.
pub struct SignedIn {
    /// Random token for the cookie; only its digest is stored.
    pub token: String,
    /// Token for `X-CSRF-Token`.
    pub csrf_token: String,
    /// The user.
    pub user: User,
    /// Their organization.
    pub organization: Organization,
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Digest under which a session token is stored.
pub fn token_digest(token: &str) -> String {
    key_format::digest_hex(token)
}

/// A user's principal reference.
pub fn user_principal(u: &User) -> Principal {
    Principal {
        kind: PrincipalKind::User,
        id: u.id.to_string(),
        name: u.email.clone(),
    }
}

/// Permissions from a list of role names in an organization (unknown names add nothing).
pub async fn role_permissions(
    tx: &mut dyn Tx,
    org_id: &Id,
    roles: &[String],
) -> ServiceResult<PermissionSet> {
    Ok(tx.role_permissions(org_id, roles).await?)
}

impl Service {
    /// Signs a user in with email and password.
    ///
    /// Every attempt is first recorded as a failure, under per-email and per-address
    /// locks, after the failures so far were counted: parallel attempts therefore cannot
    /// all pass the limits while their passwords are being checked. The limits count
    /// failures for this email from this client address ([`MAX_FAILURES`]), from this
    /// address for any email ([`MAX_ADDRESS_FAILURES`]) and for this email from any
    /// address ([`MAX_EMAIL_FAILURES`]). A correct password then clears the email's
    /// failures.
    ///
    /// The password check itself waits for one of the process's hashing slots; when too
    /// many sign-ins are already waiting the attempt is refused with
    /// [`ServiceError::Busy`] (see [`password::admit`]). An unknown email is checked
    /// against a fixed dummy hash, so it takes as long as a known one.
    pub async fn sign_in(
        &self,
        email: &str,
        password_text: &str,
        ctx: RequestContext,
    ) -> ServiceResult<SignedIn> {
        let now = self.now();
        let email = email.trim().to_lowercase();
        validate::no_control_chars(&email, "email")?;
        if email.chars().count() > validate::MAX_EMAIL {
            return Err(keyhaven_core::DomainError::invalid(
                "invalid_email",
                "email",
                format!("email must be at most {} characters", validate::MAX_EMAIL),
            )
            .into());
        }
        let address = ctx.ip.as_deref().unwrap_or("");
        let window_start = now - Duration::minutes(FAILURE_WINDOW_MINUTES);
        {
            let mut tx = self.store.begin().await?;
            // Always in this order (email, then address), so two attempts never wait
            // for each other's second lock. The address's lock name starts with a
            // space, which a trimmed email cannot.
            tx.lock_sign_in(&email).await?;
            tx.lock_sign_in(&format!(" {address}")).await?;
            let counts = [
                (
                    tx.login_failures_from(address, Some(&email), window_start)
                        .await?,
                    MAX_FAILURES,
                ),
                (
                    tx.login_failures_from(address, None, window_start).await?,
                    MAX_ADDRESS_FAILURES,
                ),
                (
                    tx.login_failures_since(&email, window_start).await?,
                    MAX_EMAIL_FAILURES,
                ),
            ];
            let wait_ms = counts
                .iter()
                .filter(|((failures, _), max)| failures >= max)
                .map(|((_, oldest), _)| {
                    let oldest = oldest.unwrap_or(now.timestamp_millis());
                    oldest + FAILURE_WINDOW_MINUTES * 60_000 - now.timestamp_millis()
                })
                .max();
            if let Some(wait_ms) = wait_ms {
                drop(tx);
                return Err(ServiceError::RateLimited((wait_ms / 1000).max(1) as u64));
            }
            tx.record_login_failure_from(&self.new_id(), &email, address, now)
                .await?;
            tx.commit().await?;
        }
        // Only so many attempts wait for a hashing slot; past that, answer at once.
        let _admission = password::admit()?;
        let user = if validate::email(&email, "email").is_ok() {
            let mut tx = self.store.read().await?;
            tx.user_by_email(&email).await?
        } else {
            None
        };
        let ok = password::verify(
            password_text,
            user.as_ref().map(|u| u.password_hash.as_str()),
        )
        .await;
        let user = match user {
            Some(u) if ok && u.status == UserStatus::Active => u,
            Some(u) => {
                // The failure is already counted; record who it was.
                let caller = Caller {
                    principal: user_principal(&u),
                    org_id: u.org_id.clone(),
                    permissions: PermissionSet::new(),
                    key_owner: None,
                    ctx: ctx.clone(),
                };
                let reason = if ok {
                    "user inactive"
                } else {
                    "wrong password"
                };
                self.record_denied_with(
                    &caller,
                    Action::SessionSignIn,
                    Some(user_principal(&u)),
                    json!({ "reason": reason }),
                )
                .await;
                return Err(ServiceError::Unauthenticated(BAD_CREDENTIALS));
            }
            None => {
                // Emails are unique across the installation, so an unknown one belongs
                // to no organization whose audit log could hold the attempt.
                tracing::info!(request_id = ?ctx.request_id, "sign-in failed for an unknown email");
                return Err(ServiceError::Unauthenticated(BAD_CREDENTIALS));
            }
        };
        let token = random_token();
        let csrf_token = random_token();
        let mut tx = self.store.begin().await?;
        tx.insert_session(&Session {
            token_digest: token_digest(&token),
            user_id: user.id.clone(),
            csrf_token: csrf_token.clone(),
            created_at: now,
            last_seen_at: now,
        })
        .await?;
        tx.record_login(&user.id, now).await?;
        tx.clear_login_failures(&email, window_start).await?;
        let organization = tx
            .organization(&user.org_id)
            .await?
            .ok_or(ServiceError::Internal("user without organization".into()))?;
        let caller = Caller {
            principal: user_principal(&user),
            org_id: user.org_id.clone(),
            permissions: PermissionSet::new(),
            key_owner: None,
            ctx,
        };
        self.commit_mutation(
            tx,
            &caller,
            Some(crate::Success {
                action: Action::SessionSignIn,
                target: Some(user_principal(&user)),
                changes: json!({}),
                event: None,
            }),
            &[],
        )
        .await?;
        let mut user = user;
        user.last_login_at = Some(now);
        Ok(SignedIn {
            token,
            csrf_token,
            user,
            organization,
        })
    }

    /// Ends a session.
    pub async fn sign_out(&self, caller: &Caller, token: &str) -> ServiceResult<()> {
        let mut tx = self.store.begin().await?;
        tx.delete_session(&token_digest(token)).await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::SessionSignOut,
                target: Some(caller.principal.clone()),
                changes: json!({}),
                event: None,
            }),
            &[],
        )
        .await?;
        Ok(())
    }

    /// Resolves a session cookie into its caller and session.
    pub async fn authenticate_session(
        &self,
        token: &str,
        mut ctx: RequestContext,
    ) -> ServiceResult<(Caller, Session)> {
        let now = self.now();
        let digest = token_digest(token);
        ctx.session_digest = Some(digest.clone());
        let mut tx = self.store.read().await?;
        let session = tx
            .session(&digest)
            .await?
            .ok_or(ServiceError::Unauthenticated(
                "the session has ended; sign in again",
            ))?;
        if session.last_seen_at + Duration::hours(IDLE_TIMEOUT_HOURS) <= now {
            drop(tx);
            let mut w = self.store.begin().await?;
            w.delete_session(&digest).await?;
            w.commit().await?;
            return Err(ServiceError::Unauthenticated(
                "the session has expired; sign in again",
            ));
        }
        let user = tx
            .user_any_org(&session.user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or(ServiceError::Unauthenticated(
                "the session has ended; sign in again",
            ))?;
        let permissions = role_permissions(tx.as_mut(), &user.org_id, &user.roles).await?;
        drop(tx);
        // Refresh the idle timer at most once a minute, not on every request.
        if now - session.last_seen_at > Duration::minutes(1) {
            let mut w = self.store.begin().await?;
            w.touch_session(&digest, now).await?;
            w.commit().await?;
        }
        Ok((
            Caller {
                principal: user_principal(&user),
                org_id: user.org_id.clone(),
                permissions,
                key_owner: None,
                ctx,
            },
            session,
        ))
    }

    /// Resolves a bearer API key into its caller: the key must be well formed, known,
    /// active (or in its regeneration grace), used from one of its `allowed_cidrs`
    /// (when it has any; `ctx.ip` is the client address after trusted proxies) and
    /// its owner enabled.
    pub async fn authenticate_key(&self, key: &str, ctx: RequestContext) -> ServiceResult<Caller> {
        const INVALID: &str = "the API key is not valid";
        key_format::parse(key).map_err(|_| ServiceError::Unauthenticated(INVALID))?;
        // A key that does not exist is refused from memory, as verification does.
        let digest = key_format::digest(key);
        if !self.verifier.index.must_look_up(&digest) {
            return Err(ServiceError::Unauthenticated(INVALID));
        }
        let now = self.now();
        let mut tx = self.store.read().await?;
        let found = tx
            .api_key_by_digest(&hex::encode(digest))
            .await?
            .ok_or(ServiceError::Unauthenticated(INVALID))?;
        self.verifier.index.insert(&digest);
        let k = found.key;
        if k.status(now) != KeyStatus::Active {
            return Err(ServiceError::Unauthenticated(
                "the API key is expired or revoked",
            ));
        }
        if found.previous && k.previous_valid_until.is_none_or(|t| t <= now) {
            return Err(ServiceError::Unauthenticated(INVALID));
        }
        if !k.enabled {
            return Err(ServiceError::Unauthenticated("the API key is turned off"));
        }
        // A key limited to some networks is limited there for management calls too.
        if !k.allowed_cidrs.is_empty() {
            let from = ctx
                .ip
                .as_deref()
                .and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
            if !from.is_some_and(|ip| k.allowed_cidrs.iter().any(|n| n.contains(&ip))) {
                return Err(ServiceError::Unauthenticated(
                    "the API key is not allowed from this address",
                ));
            }
        }
        let access = tx.key_access(&k).await?;
        if !access.owner_active {
            return Err(ServiceError::Unauthenticated(match k.owner.kind {
                PrincipalKind::User => "the API key's user is inactive",
                _ => "the API key's service account is disabled",
            }));
        }
        let permissions = access.permissions;
        Ok(Caller {
            principal: Principal {
                kind: PrincipalKind::ApiKey,
                id: k.id.to_string(),
                name: k.name.clone(),
            },
            org_id: k.org_id.clone(),
            permissions,
            key_owner: Some(k.owner.clone()),
            ctx,
        })
    }

    /// Changes the signed-in user's own password, given the current one, and ends the
    /// user's other sessions (the one making the change stays signed in).
    pub async fn change_own_password(
        &self,
        caller: &Caller,
        current: &str,
        new: &str,
    ) -> ServiceResult<()> {
        let user_id = caller
            .user_id()
            .ok_or(keyhaven_core::DomainError::conflict(
                "users_only",
                "only portal users have a password",
            ))?;
        let new = keyhaven_core::value::NewPassword::parse(new, "new_password")?;
        let new = new.expose();
        let user = {
            let mut tx = self.store.read().await?;
            tx.user(&caller.org_id, &user_id)
                .await?
                .ok_or(ServiceError::NotFound("user"))?
        };
        // Guessing the current password is limited like signing in, on the same count
        // of the email's failures from the caller's address: each attempt is counted
        // first (under the email's lock) and a correct password clears the count.
        let window_start = self.now() - Duration::minutes(FAILURE_WINDOW_MINUTES);
        let address = caller.ctx.ip.as_deref().unwrap_or("");
        self.count_password_attempt(&user.email, address, window_start)
            .await?;
        if !password::verify(current, Some(&user.password_hash)).await {
            return Err(keyhaven_core::DomainError::invalid(
                "wrong_password",
                "current_password",
                "current_password is not correct",
            )
            .into());
        }
        let hash = password::hash(new).await?;
        let mut tx = self.store.begin().await?;
        let mut user = tx
            .user(&caller.org_id, &user_id)
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        user.password_hash = hash;
        user.updated_at = self.now();
        tx.update_user(&user).await?;
        tx.clear_login_failures(&user.email, window_start).await?;
        // Whoever else held a session (a stolen cookie, another browser) is signed out.
        match &caller.ctx.session_digest {
            Some(keep) => tx.delete_other_sessions_of_user(&user.id, keep).await?,
            None => tx.delete_sessions_of_user(&user.id).await?,
        }
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::UserPasswordChange,
                target: Some(user_principal(&user)),
                changes: json!({}),
                event: None,
            }),
            &[],
        )
        .await?;
        Ok(())
    }

    /// Counts one password attempt for `email` as a failure (a correct password clears
    /// it afterwards), refusing with [`ServiceError::RateLimited`] once
    /// [`MAX_FAILURES`] were counted since `window_start`.
    async fn count_password_attempt(
        &self,
        email: &str,
        address: &str,
        window_start: keyhaven_core::time::Timestamp,
    ) -> ServiceResult<()> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        tx.lock_sign_in(email).await?;
        let (failures, oldest) = tx
            .login_failures_from(address, Some(email), window_start)
            .await?;
        if failures >= MAX_FAILURES {
            drop(tx);
            let oldest = oldest.unwrap_or(now.timestamp_millis());
            let until = oldest + FAILURE_WINDOW_MINUTES * 60_000;
            let secs = ((until - now.timestamp_millis()) / 1000).max(1);
            return Err(ServiceError::RateLimited(secs as u64));
        }
        tx.record_login_failure_from(&self.new_id(), email, address, now)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The built-in roles for a new organization, stamped now.
    pub fn built_in_roles(&self) -> Vec<role::Role> {
        role::built_in_roles(self.now())
    }
}
