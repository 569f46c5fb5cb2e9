//! OAuth 2.0 client-credentials tokens for service-account credentials.
//!
//! A credential's client id and secret are exchanged at `POST /oauth/token`
//! ([`token`]) for a 15-minute RS256 JWT (RFC 9068: `typ: at+jwt`, claims `iss`, `sub`
//! = service account id, `aud`, `client_id`, `org_id`, `scope`, `iat`, `exp`, `jti`).
//! `iss` and `aud` are both `KEYHAVEN_PUBLIC_URL`. The signing key ([`keys`]) is an
//! RSA-2048 key generated once per installation, stored encrypted with the master key
//! and shared by every node; its public half is at `/.well-known/jwks.json`, next to
//! the RFC 8414 metadata ([`well_known`]). Issuing a token notes the credential's use in
//! memory; [`spawn_background`] writes `last_used_at` at most every second
//! ([`last_used`]).

pub mod keys;
pub mod last_used;
pub mod token;
pub mod well_known;

use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::app::AppState;
use keyhaven_service::verify::Verifier;
use keyhaven_service::Service;

pub use keys::{load_or_create, signing_key, SigningKey};
pub use token::TOKEN_LIFETIME_SECS;

/// The OAuth routes (`/oauth/token`, `/.well-known/…`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth/token", post(token::token))
        .route("/.well-known/jwks.json", get(well_known::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(well_known::metadata),
        )
}

struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "client_secret_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "OAuth client authentication: the credential's client id and secret, each form-urlencoded",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OAuth part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    modifiers(&BasicAuth),
    paths(token::token, well_known::jwks, well_known::metadata),
    tags((name = "oauth", description = "OAuth 2.0 client-credentials tokens for service-account credentials"))
)]
pub struct OAuthDoc;

/// What the OAuth module keeps per node: the signing key once loaded, and the
/// credential uses not yet written.
struct Node {
    /// The node's verifier identifies the node (every `Service::new` makes one; clones
    /// of a service share it).
    verifier: Weak<Verifier>,
    key: tokio::sync::OnceCell<Arc<SigningKey>>,
    last_used: last_used::LastUsed,
}

/// The nodes of this process (one in production; tests start several).
static NODES: LazyLock<Mutex<Vec<Arc<Node>>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// This node's OAuth state. It lives beside the application state rather than in it so
/// that the module stays self-contained; it is dropped with the node's last service.
fn node(service: &Service) -> Arc<Node> {
    let mut nodes = NODES.lock().unwrap_or_else(PoisonError::into_inner);
    nodes.retain(|n| n.verifier.strong_count() > 0);
    let me = Arc::as_ptr(&service.verifier);
    if let Some(n) = nodes.iter().find(|n| std::ptr::eq(n.verifier.as_ptr(), me)) {
        return n.clone();
    }
    let n = Arc::new(Node {
        verifier: Arc::downgrade(&service.verifier),
        key: tokio::sync::OnceCell::new(),
        last_used: last_used::LastUsed::default(),
    });
    nodes.push(n.clone());
    n
}

/// Writes the credential uses noted since the last flush (`last_used_at`); returns how
/// many credentials were touched. On failure they are kept for the next flush.
pub async fn flush_last_used(service: &Service) -> Result<usize, keyhaven_store::StoreError> {
    node(service).last_used.flush(service.store.as_ref()).await
}

/// Background work of the OAuth module (stops when `stopped` turns true): loads or
/// generates the signing key at start, so the first token request does not wait for
/// it, and writes credentials' `last_used_at` every second — once more on the way out.
pub fn spawn_background(
    state: &AppState,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let warm = state.service.clone();
    let mut stop_warm = stopped.clone();
    let warm_up = tokio::spawn(async move {
        tokio::select! {
            r = signing_key(&warm) => {
                if let Err(e) = r {
                    tracing::error!(error = %e, "cannot load the OAuth signing key; token requests will retry");
                }
            }
            _ = stop_warm.wait_for(|s| *s) => {}
        }
    });
    let service = state.service.clone();
    let flusher = tokio::spawn(flush_loop(service, stopped));
    vec![warm_up, flusher]
}

async fn flush_loop(service: Service, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stopped.borrow() {
            break;
        }
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = flush_last_used(&service).await {
                    tracing::warn!(error = %e, "cannot write credentials' last use; keeping it for the next flush");
                }
            }
            changed = stopped.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    for attempt in 1..=5u64 {
        match flush_last_used(&service).await {
            Ok(_) => break,
            Err(e) => {
                tracing::error!(error = %e, attempt, "cannot write credentials' last use");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
    }
}
