//! Webhook endpoints, and the events that changes put in their outbox.

use keyhaven_core::audit::Action;
use keyhaven_core::audit::Outcome;
use keyhaven_core::id::Id;
use keyhaven_core::permission::Permission;
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::value::{Description, WebhookEventList};
use keyhaven_core::webhook_event::WebhookEvent;
use keyhaven_core::DomainError;
use keyhaven_store::{Delivery, DeliveryStatus, Listing, Page, Tx, WebhookEndpoint};
use serde_json::{json, Value};
use std::net::IpAddr;

use crate::changes::Changes;
use crate::{Caller, Service, ServiceError, ServiceResult};

/// Input of `POST /webhooks`.
#[derive(Debug, Clone)]
pub struct CreateWebhook {
    /// An http(s) URL that is not Keyhaven itself.
    pub url: String,
    /// Event types to receive.
    pub events: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// Input of `PATCH /webhooks/{id}`.
#[derive(Debug, Clone, Default)]
pub struct UpdateWebhook {
    /// New URL.
    pub url: Option<String>,
    /// New event types (replaces the list).
    pub events: Option<Vec<String>>,
    /// New description.
    pub description: Option<String>,
    /// Turn deliveries on or off.
    pub enabled: Option<bool>,
}

/// A new webhook endpoint, its fields parsed; its URL is checked against the outbound
/// policy by the use case (that needs this server's settings and DNS).
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// The receiver, as sent.
    pub url: String,
    /// The events it receives.
    pub events: WebhookEventList,
    /// What it is for.
    pub description: Description,
    /// Whether deliveries are on.
    pub enabled: bool,
}

impl TryFrom<CreateWebhook> for NewWebhook {
    type Error = DomainError;

    fn try_from(d: CreateWebhook) -> Result<Self, DomainError> {
        Ok(Self {
            events: WebhookEventList::parse(&d.events)?,
            description: Description::parse(d.description.as_deref().unwrap_or(""), "description")?,
            url: d.url,
            enabled: d.enabled.unwrap_or(true),
        })
    }
}

/// A change to a webhook endpoint, its fields parsed: absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    /// New receiver, as sent (checked by the use case).
    pub url: Option<String>,
    /// New events.
    pub events: Option<WebhookEventList>,
    /// New description.
    pub description: Option<Description>,
    /// Deliveries on or off.
    pub enabled: Option<bool>,
}

impl TryFrom<UpdateWebhook> for WebhookPatch {
    type Error = DomainError;

    fn try_from(d: UpdateWebhook) -> Result<Self, DomainError> {
        Ok(Self {
            events: d
                .events
                .as_deref()
                .map(WebhookEventList::parse)
                .transpose()?,
            description: d
                .description
                .as_deref()
                .map(|x| Description::parse(x, "description"))
                .transpose()?,
            url: d.url,
            enabled: d.enabled,
        })
    }
}

fn target(w: &WebhookEndpoint) -> Principal {
    Principal {
        kind: PrincipalKind::System,
        id: w.id.to_string(),
        name: w.url.clone(),
    }
}

fn bad_url(m: &str) -> DomainError {
    DomainError::invalid("invalid_url", "url", m)
}

fn internal_url() -> DomainError {
    bad_url(
        "url must not point at a loopback, private, link-local or other internal address \
         (an operator can allow internal ranges with KEYHAVEN_OUTBOUND_ALLOWED_CIDRS)",
    )
}

/// The address as IPv4 when it is an IPv4-mapped (or -compatible loopback) IPv6 one.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Loopback or unspecified (`0.0.0.0`, `::`), in any notation.
fn is_local_ip(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    ip.is_loopback() || ip.is_unspecified()
}

/// `localhost`, `localhost.` and any name under `.localhost` (RFC 6761: all loopback).
fn is_localhost_name(host: &str) -> bool {
    let h = host.trim_end_matches('.');
    h == "localhost" || h.ends_with(".localhost")
}

/// A URL host as an IP address, when it is one (`[…]` stripped).
fn host_ip(host: &str) -> Option<IpAddr> {
    host.trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
        .ok()
        .map(canonical)
}

impl Service {
    /// Whether `(host, port)` is one of the addresses this server answers on:
    /// `self_origins` are `host:port` pairs Keyhaven answers on, and any loopback or
    /// unspecified address (or localhost name) stands for this machine.
    fn is_self_origin(&self, host: &str, port: u16) -> bool {
        let ip = host_ip(host);
        let local = is_localhost_name(host) || ip.is_some_and(is_local_ip);
        self.self_origins.iter().any(|(h, p)| {
            if *p != port {
                return false;
            }
            let hip = host_ip(h);
            let same = h
                .trim_end_matches('.')
                .eq_ignore_ascii_case(host.trim_end_matches('.'))
                || (ip.is_some() && ip == hip);
            // Listening on all interfaces or on loopback: every local address is us.
            let self_local = is_localhost_name(h) || hip.is_some_and(is_local_ip);
            same || (local && self_local)
        })
    }

    /// Checks a webhook URL: http(s), a host, at most 2048 characters, no credentials,
    /// no unspecified address (`0.0.0.0`, `::`, also IPv4-mapped), no internal address
    /// unless the operator allowed its range (loopback, private, link-local, CGNAT,
    /// unique-local, multicast… in any notation: `2130706433`, `0x7f000001`,
    /// `0177.0.0.1`, `127.1` and `[::ffff:127.0.0.1]` are 127.0.0.1, and `localhost`,
    /// `localhost.`, `*.localhost` are loopback), and not this server itself — its
    /// listen address or public URL, or any loopback address or localhost name on its
    /// port. Names are not resolved here (see [`Service::check_webhook_url`]).
    pub fn validate_webhook_url(&self, input: &str) -> Result<String, DomainError> {
        let s = input.trim();
        if s.len() > 2048 {
            return Err(bad_url("url must be at most 2048 characters"));
        }
        let u = url::Url::parse(s).map_err(|_| bad_url("url must be an absolute http(s) URL"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(bad_url("url must use http or https"));
        }
        let host = u
            .host_str()
            .ok_or_else(|| bad_url("url must have a host"))?
            .to_ascii_lowercase();
        if host.trim_matches('.').is_empty() {
            return Err(bad_url("url must have a host"));
        }
        let ip = match u.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        if ip.is_some_and(|ip| ip.to_canonical().is_unspecified()) {
            return Err(bad_url(
                "url must not use an unspecified address such as 0.0.0.0",
            ));
        }
        let port = u.port_or_known_default().unwrap_or(80);
        if self.is_self_origin(&host, port) {
            return Err(bad_url("url must not point at Keyhaven itself"));
        }
        let refused = match ip {
            Some(ip) => !self.outbound.permits(ip),
            // RFC 6761: every localhost name is loopback, whatever DNS says.
            None if is_localhost_name(&host) => {
                !self.outbound.permits(IpAddr::from([127, 0, 0, 1]))
                    && !self.outbound.permits(std::net::Ipv6Addr::LOCALHOST.into())
            }
            None => false,
        };
        if refused {
            return Err(internal_url());
        }
        if u.username() != "" || u.password().is_some() {
            return Err(bad_url("url must not contain credentials"));
        }
        Ok(u.to_string())
    }

    /// [`Service::validate_webhook_url`], and a host name is resolved: one whose every
    /// address is internal (and not allowed) is refused now rather than at delivery. A
    /// name that does not resolve yet is accepted; every delivery resolves it again and
    /// checks again.
    pub async fn check_webhook_url(&self, input: &str) -> Result<String, DomainError> {
        let url = self.validate_webhook_url(input)?;
        let Ok(u) = url::Url::parse(&url) else {
            return Ok(url);
        };
        if let (Some(url::Host::Domain(host)), Some(port)) = (u.host(), u.port_or_known_default()) {
            if let Err(crate::outbound::TargetError::Refused) =
                crate::outbound::resolve_checked(host, port, |a| self.may_send_to(a)).await
            {
                return Err(internal_url());
            }
        }
        Ok(url)
    }

    /// Whether a delivery may connect to `addr`: the outbound policy permits it and it
    /// is not this server itself.
    pub(crate) fn may_send_to(&self, addr: std::net::SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        self.outbound.permits(ip) && !self.is_self_origin(&ip.to_string(), addr.port())
    }

    /// Whether a webhook URL, resolved now, reaches this server (a name that pointed
    /// elsewhere when the endpoint was saved may point here later). A URL that cannot
    /// be parsed or resolved is not "self": sending it fails on its own.
    pub async fn resolves_to_self(&self, url: &str) -> bool {
        let Ok(u) = url::Url::parse(url) else {
            return false;
        };
        let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) else {
            return false;
        };
        let host = host.trim_matches(|c| c == '[' || c == ']').to_string();
        if self.is_self_origin(&host, port) {
            return true;
        }
        let resolved = tokio::net::lookup_host((host.as_str(), port)).await;
        match resolved {
            Ok(mut addrs) => {
                addrs.any(|a| self.is_self_origin(&canonical(a.ip()).to_string(), a.port()))
            }
            Err(_) => false,
        }
    }

    /// Creates an endpoint.
    pub async fn create_webhook(
        &self,
        caller: &Caller,
        input: impl TryInto<NewWebhook, Error: Into<ServiceError>>,
    ) -> ServiceResult<WebhookEndpoint> {
        self.authorize(caller, Permission::WebhooksManage, Action::WebhookCreate)
            .await?;
        // Authorized first: a caller who may not act learns nothing about the input.
        let input: NewWebhook = input.try_into().map_err(Into::into)?;
        let url = self.check_webhook_url(&input.url).await?;
        let events = input.events.into_strings();
        let description = input.description.into_inner();
        let now = self.now();
        let w = WebhookEndpoint {
            id: self.new_id(),
            org_id: caller.org_id.clone(),
            url,
            events,
            description,
            enabled: input.enabled,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.store.begin().await?;
        tx.insert_webhook(&w).await?;
        self.ensure_shared_secret(tx.as_mut(), caller).await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::WebhookCreate,
                target: Some(target(&w)),
                changes: json!({ "url": w.url, "events": w.events }),
                event: None,
            }),
            &[],
        )
        .await?;
        Ok(w)
    }

    /// Creates the organization's shared secret inside `tx` when it has none, so every
    /// delivery is signed (audited as `shared_secret.create`; reveal it to verify).
    pub(crate) async fn ensure_shared_secret(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
    ) -> ServiceResult<()> {
        if tx.shared_secret(&caller.org_id).await?.is_some() {
            return Ok(());
        }
        let now = self.now();
        let secret = crate::shared_secret::generate();
        tx.put_shared_secret(
            &caller.org_id,
            &keyhaven_store::SharedSecretRecord {
                ciphertext: self.encrypt_shared_secret(&caller.org_id, &secret)?,
                created_at: now,
                previous_ciphertext: None,
                previous_valid_until: None,
            },
        )
        .await?;
        self.audit(
            tx,
            caller,
            Action::SharedSecretCreate,
            Some(Principal {
                kind: PrincipalKind::SharedSecret,
                id: caller.org_id.to_string(),
                name: "shared secret".into(),
            }),
            Outcome::Success,
            json!({ "reason": "first webhook endpoint" }),
        )
        .await?;
        Ok(())
    }

    /// A page of endpoints.
    pub async fn list_webhooks(
        &self,
        caller: &Caller,
        page: &Page,
    ) -> ServiceResult<Listing<WebhookEndpoint>> {
        self.authorize(caller, Permission::WebhooksView, Action::WebhookList)
            .await?;
        let mut tx = self.store.read().await?;
        Ok(tx.list_webhooks(&caller.org_id, page).await?)
    }

    /// One endpoint.
    pub async fn get_webhook(&self, caller: &Caller, id: &Id) -> ServiceResult<WebhookEndpoint> {
        self.authorize(caller, Permission::WebhooksView, Action::WebhookView)
            .await?;
        let mut tx = self.store.read().await?;
        tx.webhook(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("webhook"))
    }

    /// Changes an endpoint.
    pub async fn update_webhook(
        &self,
        caller: &Caller,
        id: &Id,
        input: impl TryInto<WebhookPatch, Error: Into<ServiceError>>,
    ) -> ServiceResult<WebhookEndpoint> {
        self.authorize(caller, Permission::WebhooksManage, Action::WebhookUpdate)
            .await?;
        let input: WebhookPatch = input.try_into().map_err(Into::into)?;
        let url = match input.url.as_deref() {
            Some(u) => Some(self.check_webhook_url(u).await?),
            None => None,
        };
        let events = input.events.map(WebhookEventList::into_strings);
        let description = input.description.map(Description::into_inner);
        let mut tx = self.store.begin().await?;
        let mut w = tx
            .webhook(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("webhook"))?;
        let mut ch = Changes::default();
        if let Some(u) = url {
            ch.field("url", &w.url, &u);
            w.url = u;
        }
        if let Some(e) = events {
            ch.field("events", &w.events, &e);
            w.events = e;
        }
        if let Some(d) = description {
            ch.field("description", &w.description, &d);
            w.description = d;
        }
        if let Some(en) = input.enabled {
            ch.field("enabled", &w.enabled, &en);
            w.enabled = en;
        }
        if !ch.is_empty() {
            w.updated_at = self.now();
            tx.update_webhook(&w).await?;
            self.commit_mutation(
                tx,
                caller,
                Some(crate::Success {
                    action: Action::WebhookUpdate,
                    target: Some(target(&w)),
                    changes: ch.into_value(),
                    event: None,
                }),
                &[],
            )
            .await?;
        }
        Ok(w)
    }

    /// Deletes an endpoint and its deliveries.
    pub async fn delete_webhook(&self, caller: &Caller, id: &Id) -> ServiceResult<()> {
        self.authorize(caller, Permission::WebhooksManage, Action::WebhookDelete)
            .await?;
        let mut tx = self.store.begin().await?;
        let w = tx
            .webhook(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("webhook"))?;
        tx.delete_webhook(&caller.org_id, id).await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::WebhookDelete,
                target: Some(target(&w)),
                changes: json!({ "url": w.url }),
                event: None,
            }),
            &[],
        )
        .await?;
        Ok(())
    }

    /// A page of an endpoint's deliveries.
    pub async fn list_deliveries(
        &self,
        caller: &Caller,
        id: &Id,
        page: &Page,
    ) -> ServiceResult<Listing<Delivery>> {
        self.authorize(caller, Permission::WebhooksView, Action::WebhookDeliveries)
            .await?;
        let mut tx = self.store.read().await?;
        tx.webhook(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("webhook"))?;
        Ok(tx.list_deliveries(id, page).await?)
    }

    /// Puts an event in the outbox of every enabled endpoint of `org_id` that
    /// subscribed to it, inside the caller's transaction. Returns how many deliveries
    /// were queued; the delivery worker is woken after commit by [`Service::wake_jobs`].
    pub async fn emit(
        &self,
        tx: &mut dyn Tx,
        org_id: &Id,
        event_type: WebhookEvent,
        data: Value,
    ) -> ServiceResult<usize> {
        let endpoints = tx.enabled_webhooks(org_id).await?;
        let now = self.now();
        let mut n = 0;
        for w in endpoints
            .iter()
            .filter(|w| w.events.iter().any(|e| e == event_type.as_str()))
        {
            let id = self.new_id();
            let body = json!({
                "type": event_type.as_str(),
                "timestamp": keyhaven_core::time::rfc3339(&now),
                "data": data,
            });
            tx.insert_delivery(&Delivery {
                id,
                org_id: org_id.clone(),
                endpoint_id: w.id.clone(),
                event_type: event_type.to_string(),
                payload: body.to_string(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                next_attempt_at: now,
                last_status: None,
                last_error: None,
                created_at: now,
                delivered_at: None,
            })
            .await?;
            n += 1;
        }
        Ok(n)
    }

    /// Wakes this node's background jobs (after queuing deliveries).
    pub fn wake_jobs(&self) {
        self.jobs_wake.notify_one();
    }
}

/// The `data` of an `api_key.*` event (never the secret).
pub fn key_event(k: &keyhaven_core::api_key::ApiKey, now: keyhaven_core::time::Timestamp) -> Value {
    json!({
        "id": k.id,
        "organization_id": k.org_id,
        "name": k.name,
        "masked_key": k.masked_key,
        "owner": k.owner,
        "status": k.status(now).as_str(),
        "expires_at": k.expires_at.as_ref().map(keyhaven_core::time::rfc3339),
    })
}

/// The `data` of a `service_account.*` event.
pub fn service_account_event(s: &keyhaven_core::service_account::ServiceAccount) -> Value {
    json!({
        "id": s.id,
        "organization_id": s.org_id,
        "name": s.name,
        "status": s.status.as_str(),
    })
}
