//! OAuth 2.0 client-credentials tokens for service-account credentials: the use case
//! behind `POST /oauth/token` (the HTTP edge parses the form and renders RFC 6749 errors).
//!
//! A credential's client id and secret are exchanged for a 15-minute RS256 JWT (RFC 9068:
//! `typ: at+jwt`, claims `iss`, `sub` = service account id, `aud`, `client_id`, `org_id`,
//! `scope`, `iat`, `exp`, `jti`). The signing key ([`signing_key`]) is an RSA-2048 key
//! generated once per installation, stored encrypted with the master key and shared by
//! every node. Issuing a token notes the credential's use in memory; the node's
//! background work writes `last_used_at` at most every second ([`last_used`]).
//!
//! Refusals for a known client are audited as `oauth.token` with outcome `denied` (actor:
//! the service account; target: the credential; the reason, never the secret).
//! Successful issuance is not audited per request — a busy integration would drown the
//! log; the credential's `last_used_at` records use instead.

pub mod last_used;
pub mod signing_key;

use std::collections::BTreeSet;
use std::sync::Arc;

use keyhaven_core::audit::Action;
use keyhaven_core::credential::Credential;
use keyhaven_core::key_format;
use keyhaven_core::permission::PermissionSet;
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::service_account::{ServiceAccount, ServiceAccountStatus};
use serde::Serialize;
use serde_json::json;
use subtle::ConstantTimeEq;

pub use signing_key::{load_or_create, signing_key, SigningKey};

use crate::service_accounts::sa_principal;
use crate::{Caller, RequestContext, Service, ServiceError};

/// Lifetime of an access token, seconds.
pub const TOKEN_LIFETIME_SECS: i64 = 900;

/// Longest client id looked up.
const MAX_CLIENT_ID: usize = 200;

/// The description of `invalid_client` when nothing more may be said.
pub const AUTHENTICATION_FAILED: &str = "client authentication failed";

/// What the OAuth use cases keep per node (one per [`Service::new`], shared by its clones).
#[derive(Default)]
pub struct NodeState {
    pub(crate) key: tokio::sync::OnceCell<Arc<SigningKey>>,
    pub(crate) last_used: last_used::LastUsed,
}

/// Why no token was issued; the edge renders each as its RFC 6749 §5.2 error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// `invalid_client` (401) with this description.
    InvalidClient(String),
    /// `invalid_scope` (400) with this description.
    InvalidScope(String),
    /// `server_error` (500): storage or the signing key failed (logged here).
    ServerError,
}

impl From<ServiceError> for TokenRefusal {
    fn from(e: ServiceError) -> Self {
        tracing::error!(error = %e, "error at the token endpoint");
        TokenRefusal::ServerError
    }
}

impl From<keyhaven_store::StoreError> for TokenRefusal {
    fn from(e: keyhaven_store::StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

/// A token request, once the edge has parsed it.
#[derive(Debug)]
pub struct TokenRequest<'a> {
    /// The credential's client id.
    pub client_id: &'a str,
    /// The credential's client secret.
    pub client_secret: &'a str,
    /// The scope tokens asked for; `None` asks for every permission of the account.
    pub scope: Option<BTreeSet<String>>,
    /// `iss` and `aud` of the token: Keyhaven's public URL.
    pub issuer: &'a str,
}

/// An issued token (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct IssuedToken {
    /// The JWT (RFC 9068).
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires: 900.
    pub expires_in: i64,
    /// The permissions it carries, space-separated.
    pub scope: String,
}

/// The claims of an access token (RFC 9068 §2.2, plus `org_id`).
#[derive(Debug, Clone, Serialize)]
pub struct AccessTokenClaims {
    /// Keyhaven's public URL.
    pub iss: String,
    /// The service account's id.
    pub sub: String,
    /// The audience: Keyhaven's public URL.
    pub aud: String,
    /// The credential's client id.
    pub client_id: String,
    /// The organization's id.
    pub org_id: String,
    /// Granted permissions, space-separated.
    pub scope: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds (`iat` + 900).
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
}

/// An authenticated client.
struct Client {
    credential: Credential,
    account: ServiceAccount,
    permissions: PermissionSet,
}

impl Service {
    /// The client-credentials grant: authenticates the client (unknown id, wrong secret
    /// — digests compared in constant time —, revoked or expired credential, suspended or
    /// archived account → `invalid_client`; the description says why only once the secret
    /// was right), checks that the scope asked for is granted, and signs the token.
    pub async fn issue_access_token(
        &self,
        req: TokenRequest<'_>,
        ctx: &RequestContext,
    ) -> Result<IssuedToken, TokenRefusal> {
        let client = self
            .authenticate_client(req.client_id, req.client_secret, ctx)
            .await?;
        let granted: BTreeSet<String> = match req.scope {
            None => client.permissions.iter().cloned().collect(),
            Some(requested) => {
                let missing: Vec<&str> = requested
                    .iter()
                    .filter(|s| !client.permissions.contains(*s))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    self.record_token_denied(
                        &client,
                        ctx,
                        json!({ "client_id": client.credential.client_id, "reason": "scope_not_granted", "scope": missing }),
                    )
                    .await;
                    return Err(TokenRefusal::InvalidScope(format!(
                        "not granted to this client: {}",
                        missing.join(" ")
                    )));
                }
                requested
            }
        };
        let scope = granted.into_iter().collect::<Vec<_>>().join(" ");
        let key = signing_key(self).await.map_err(|e| {
            tracing::error!(error = %e, "no OAuth signing key");
            TokenRefusal::ServerError
        })?;
        let now = self.now();
        let iat = now.timestamp();
        let claims = AccessTokenClaims {
            iss: req.issuer.to_string(),
            sub: client.account.id.to_string(),
            aud: req.issuer.to_string(),
            client_id: client.credential.client_id.clone(),
            org_id: client.credential.org_id.to_string(),
            scope: scope.clone(),
            iat,
            exp: iat + TOKEN_LIFETIME_SECS,
            jti: self.new_id().to_string(),
        };
        let access_token = key.sign(&claims).map_err(|e| {
            tracing::error!(error = %e, "cannot sign an access token");
            TokenRefusal::ServerError
        })?;
        self.oauth.last_used.record(&client.credential.id, now);
        Ok(IssuedToken {
            access_token,
            token_type: "Bearer",
            expires_in: TOKEN_LIFETIME_SECS,
            scope,
        })
    }

    /// Writes the credential uses noted since the last flush (`last_used_at`); returns
    /// how many credentials were touched. On failure they are kept for the next flush.
    pub async fn flush_credential_uses(&self) -> Result<usize, keyhaven_store::StoreError> {
        self.oauth.last_used.flush(self.store.as_ref()).await
    }

    async fn authenticate_client(
        &self,
        client_id: &str,
        secret: &str,
        ctx: &RequestContext,
    ) -> Result<Client, TokenRefusal> {
        let now = self.now();
        let presented = key_format::digest_hex(secret);
        let mut tx = self.store.read().await?;
        // A NUL or other control character can't be in a client id (and PostgreSQL
        // refuses NUL in text): such a request is an unknown client, without a lookup.
        let found = if client_id.len() <= MAX_CLIENT_ID && !client_id.chars().any(char::is_control)
        {
            match tx.credential_by_client_id(client_id).await? {
                Some(c) => tx
                    .service_account(&c.org_id, &c.service_account_id)
                    .await?
                    .map(|a| (c, a)),
                None => None,
            }
        } else {
            None
        };
        let Some((credential, account)) = found else {
            tracing::info!(request_id = ?ctx.request_id, "token request for an unknown client id");
            return Err(TokenRefusal::InvalidClient(AUTHENTICATION_FAILED.into()));
        };
        let secret_ok: bool = presented
            .as_bytes()
            .ct_eq(credential.secret_digest.as_bytes())
            .into();
        let refusal = if !secret_ok {
            Some(("wrong_secret", AUTHENTICATION_FAILED))
        } else if credential.expires_at.is_some_and(|t| t <= now) {
            Some(("expired", "this client credential has expired"))
        } else if credential.revoked_at.is_some() {
            Some(("revoked", "this client credential has been revoked"))
        } else {
            match account.status {
                ServiceAccountStatus::Active => None,
                ServiceAccountStatus::Suspended => Some((
                    "service_account_suspended",
                    "the service account of this client is suspended",
                )),
                ServiceAccountStatus::Archived => Some((
                    "service_account_archived",
                    "the service account of this client is archived",
                )),
            }
        };
        if let Some((reason, description)) = refusal {
            drop(tx);
            let client = Client {
                credential,
                account,
                permissions: PermissionSet::new(),
            };
            self.record_token_denied(
                &client,
                ctx,
                json!({ "client_id": client.credential.client_id, "reason": reason }),
            )
            .await;
            return Err(TokenRefusal::InvalidClient(description.into()));
        }
        let permissions =
            crate::sessions::role_permissions(tx.as_mut(), &credential.org_id, &account.roles)
                .await?;
        Ok(Client {
            credential,
            account,
            permissions,
        })
    }

    /// Audits a refused token request of a known client (`oauth.token`, denied).
    async fn record_token_denied(
        &self,
        client: &Client,
        ctx: &RequestContext,
        changes: serde_json::Value,
    ) {
        let caller = Caller {
            principal: sa_principal(&client.account),
            org_id: client.credential.org_id.clone(),
            permissions: PermissionSet::new(),
            key_owner: None,
            ctx: ctx.clone(),
        };
        let target = Principal {
            kind: PrincipalKind::Credential,
            id: client.credential.id.to_string(),
            name: client.credential.name.clone(),
        };
        self.record_denied_with(&caller, Action::OauthToken, Some(target), changes)
            .await;
    }
}
