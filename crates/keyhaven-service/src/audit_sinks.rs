//! Audit sinks (ANALYTICS.md, "Audit streaming"): their configuration [audit.manage],
//! and the plain reads `keyhaven audit export` uses. Delivery is
//! [`crate::jobs::audit_sinks`].

use std::net::IpAddr;

use keyhaven_core::audit::{Action, AuditEntry};
use keyhaven_core::audit_sink::{self, SinkTarget, Start, Transport};
use keyhaven_core::id::Id;
use keyhaven_core::permission::Permission;
use keyhaven_core::principal::{Principal, PrincipalKind};
use keyhaven_core::value::Description;
use keyhaven_core::DomainError;
use keyhaven_store::{AuditSink, Listing, Page};
use serde_json::json;

use crate::changes::Changes;
use crate::{Caller, Service, ServiceError, ServiceResult};

/// Settings of a sink as given to create or change it; which fields apply depends on
/// the kind (`url` for `http`; `host`, `port`, `transport` for `syslog`; `path`,
/// `max_bytes`, `max_files` for `file`). A field of another kind is refused.
#[derive(Debug, Clone, Default)]
pub struct SinkFields {
    /// `http`: where batches are POSTed.
    pub url: Option<String>,
    /// `syslog`: host name or IP address.
    pub host: Option<String>,
    /// `syslog`: port (default 514).
    pub port: Option<i64>,
    /// `syslog`: `tcp` (default) or `udp`.
    pub transport: Option<String>,
    /// `file`: relative path under the organization's audit directory.
    pub path: Option<String>,
    /// `file`: rotate at this size (default 10 MiB).
    pub max_bytes: Option<i64>,
    /// `file`: rotated files kept (default 5).
    pub max_files: Option<i64>,
}

/// What `POST /audit-sinks` carries, as sent: a draft [`NewAuditSink`] parses.
#[derive(Debug, Clone, Default)]
pub struct CreateAuditSink {
    /// `http`, `syslog` or `file`.
    pub kind: String,
    /// The kind's settings.
    pub fields: SinkFields,
    /// Free text.
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// `beginning` (default) or `now`.
    pub start: Option<String>,
}

/// What `PATCH /audit-sinks/{id}` carries, as sent (the kind cannot change): a draft
/// [`AuditSinkPatch`] parses.
#[derive(Debug, Clone, Default)]
pub struct UpdateAuditSink {
    /// The kind's settings to change.
    pub fields: SinkFields,
    /// New description.
    pub description: Option<String>,
    /// Turn delivery on or off.
    pub enabled: Option<bool>,
}

/// A sink's settings parsed for its kind (`kind` and the fields of [`SinkFields`]):
/// the target a create asks for, before the use case checks its address against the
/// outbound policy (which needs this server's settings and DNS).
fn parse_target(kind: &str, f: &SinkFields) -> Result<SinkTarget, DomainError> {
    if !matches!(kind, "http" | "syslog" | "file") {
        return Err(bad_kind());
    }
    only(kind, f)?;
    Ok(match kind {
        "http" => SinkTarget::Http {
            url: f.url.clone().ok_or_else(|| required("url", kind))?,
        },
        "syslog" => SinkTarget::Syslog {
            host: audit_sink::validate_host(
                f.host.as_deref().ok_or_else(|| required("host", kind))?,
            )?,
            port: audit_sink::validate_port(f.port.unwrap_or(514))?,
            transport: transport(f.transport.as_deref().unwrap_or("tcp"))?,
        },
        _ => SinkTarget::File {
            path: audit_sink::validate_file_path(
                f.path.as_deref().ok_or_else(|| required("path", kind))?,
            )?,
            max_bytes: audit_sink::validate_max_bytes(
                f.max_bytes.unwrap_or(audit_sink::DEFAULT_MAX_BYTES),
            )?,
            max_files: audit_sink::validate_max_files(
                f.max_files.unwrap_or(audit_sink::DEFAULT_MAX_FILES),
            )?,
        },
    })
}

/// Changes to a sink's settings, each parsed; which apply depends on the sink's kind
/// (checked against the sink by the use case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkChanges {
    /// New receiver (`http`).
    pub url: Option<String>,
    /// New host (`syslog`).
    pub host: Option<String>,
    /// New port (`syslog`).
    pub port: Option<u16>,
    /// New transport (`syslog`).
    pub transport: Option<Transport>,
    /// New path (`file`).
    pub path: Option<String>,
    /// New rotation size (`file`).
    pub max_bytes: Option<i64>,
    /// New number of rotated files (`file`).
    pub max_files: Option<i64>,
}

impl SinkChanges {
    /// Parses each given field.
    pub fn parse(f: &SinkFields) -> Result<Self, DomainError> {
        Ok(Self {
            url: f.url.clone(),
            host: f
                .host
                .as_deref()
                .map(audit_sink::validate_host)
                .transpose()?,
            port: f.port.map(audit_sink::validate_port).transpose()?,
            transport: f.transport.as_deref().map(transport).transpose()?,
            path: f
                .path
                .as_deref()
                .map(audit_sink::validate_file_path)
                .transpose()?,
            max_bytes: f
                .max_bytes
                .map(audit_sink::validate_max_bytes)
                .transpose()?,
            max_files: f
                .max_files
                .map(audit_sink::validate_max_files)
                .transpose()?,
        })
    }

    /// The fields as given, to check them against a kind.
    fn given(&self) -> SinkFields {
        SinkFields {
            url: self.url.clone(),
            host: self.host.clone(),
            port: self.port.map(i64::from),
            transport: self.transport.map(|t| t.as_str().to_string()),
            path: self.path.clone(),
            max_bytes: self.max_bytes,
            max_files: self.max_files,
        }
    }
}

/// A new sink, parsed.
#[derive(Debug, Clone)]
pub struct NewAuditSink {
    /// Its kind and settings (the address not checked yet).
    pub target: SinkTarget,
    /// Free text.
    pub description: Description,
    /// Whether delivery is on.
    pub enabled: bool,
    /// Where in the chain it starts.
    pub start: Start,
}

impl TryFrom<CreateAuditSink> for NewAuditSink {
    type Error = DomainError;

    fn try_from(d: CreateAuditSink) -> Result<Self, DomainError> {
        Ok(Self {
            target: parse_target(d.kind.trim(), &d.fields)?,
            start: Start::parse(d.start.as_deref().unwrap_or("beginning"))?,
            description: Description::parse(d.description.as_deref().unwrap_or(""), "description")?,
            enabled: d.enabled.unwrap_or(true),
        })
    }
}

/// A change to a sink, parsed.
#[derive(Debug, Clone, Default)]
pub struct AuditSinkPatch {
    /// Its settings to change.
    pub changes: SinkChanges,
    /// New description.
    pub description: Option<Description>,
    /// Delivery on or off.
    pub enabled: Option<bool>,
}

impl TryFrom<UpdateAuditSink> for AuditSinkPatch {
    type Error = DomainError;

    fn try_from(d: UpdateAuditSink) -> Result<Self, DomainError> {
        Ok(Self {
            changes: SinkChanges::parse(&d.fields)?,
            description: d
                .description
                .as_deref()
                .map(|x| Description::parse(x, "description"))
                .transpose()?,
            enabled: d.enabled,
        })
    }
}

/// A sink with how far behind it is.
#[derive(Debug, Clone)]
pub struct AuditSinkStatus {
    /// The sink.
    pub sink: AuditSink,
    /// Entries of the chain not delivered yet.
    pub lag: i64,
}

fn target_of(s: &AuditSink) -> Principal {
    Principal {
        kind: PrincipalKind::System,
        id: s.id.to_string(),
        name: format!("audit sink {}", s.target.describe()),
    }
}

fn not_for(kind: &str, field: &str) -> DomainError {
    DomainError::invalid(
        "field_not_allowed",
        field,
        format!("{field} does not apply to a sink of kind {kind}"),
    )
}

fn required(field: &str, kind: &str) -> DomainError {
    DomainError::invalid(
        "field_required",
        field,
        format!("a sink of kind {kind} needs {field}"),
    )
}

/// Refuses the fields that don't belong to `kind`.
fn only(kind: &str, f: &SinkFields) -> Result<(), DomainError> {
    let given = [
        ("url", f.url.is_some(), "http"),
        ("host", f.host.is_some(), "syslog"),
        ("port", f.port.is_some(), "syslog"),
        ("transport", f.transport.is_some(), "syslog"),
        ("path", f.path.is_some(), "file"),
        ("max_bytes", f.max_bytes.is_some(), "file"),
        ("max_files", f.max_files.is_some(), "file"),
    ];
    for (name, set, owner) in given {
        if set && owner != kind {
            return Err(not_for(kind, name));
        }
    }
    Ok(())
}

fn bad_kind() -> DomainError {
    DomainError::invalid("invalid_kind", "kind", "kind must be http, syslog or file")
}

fn transport(s: &str) -> Result<Transport, DomainError> {
    Transport::parse(s).ok_or_else(|| {
        DomainError::invalid(
            "invalid_transport",
            "transport",
            "transport must be tcp or udp",
        )
    })
}

impl Service {
    /// Checks a syslog host against the outbound address rules (like a webhook URL): an
    /// IP address must be allowed and not this server; a name whose every address is
    /// refused is refused now (every delivery resolves and checks it again).
    async fn check_syslog_host(&self, host: &str, port: u16) -> Result<(), DomainError> {
        let refused = || {
            DomainError::invalid(
                "invalid_host",
                "host",
                "host must not be a loopback, private, link-local or other internal address, nor \
                 Keyhaven itself (an operator can allow internal ranges with \
                 KEYHAVEN_OUTBOUND_ALLOWED_CIDRS)",
            )
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !self.may_send_to(std::net::SocketAddr::new(ip, port)) {
                return Err(refused());
            }
            return Ok(());
        }
        let h = host.trim_end_matches('.');
        if h == "localhost" || h.ends_with(".localhost") {
            let lo = std::net::SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
            if !self.may_send_to(lo) {
                return Err(refused());
            }
            return Ok(());
        }
        if let Err(crate::outbound::TargetError::Refused) =
            crate::outbound::resolve_checked(host, port, |a| self.may_send_to(a)).await
        {
            return Err(refused());
        }
        Ok(())
    }

    /// The target a create asks for, its address checked against the outbound policy.
    async fn new_target(&self, target: SinkTarget) -> ServiceResult<SinkTarget> {
        Ok(match target {
            SinkTarget::Http { url } => SinkTarget::Http {
                url: self.check_webhook_url(&url).await?,
            },
            SinkTarget::Syslog { ref host, port, .. } => {
                self.check_syslog_host(host, port).await?;
                target
            }
            file @ SinkTarget::File { .. } => file,
        })
    }

    /// `old` with the changes `c` asks for (fields of another kind are refused).
    async fn changed_target(&self, old: &SinkTarget, c: SinkChanges) -> ServiceResult<SinkTarget> {
        only(old.kind(), &c.given())?;
        Ok(match old.clone() {
            SinkTarget::Http { url } => SinkTarget::Http {
                url: match c.url.as_deref() {
                    Some(u) => self.check_webhook_url(u).await?,
                    None => url,
                },
            },
            SinkTarget::Syslog {
                host,
                port,
                transport: tr,
            } => {
                let moved = c.host.is_some() || c.port.is_some();
                let host = c.host.unwrap_or(host);
                let port = c.port.unwrap_or(port);
                if moved {
                    self.check_syslog_host(&host, port).await?;
                }
                SinkTarget::Syslog {
                    host,
                    port,
                    transport: c.transport.unwrap_or(tr),
                }
            }
            SinkTarget::File {
                path,
                max_bytes,
                max_files,
            } => SinkTarget::File {
                path: c.path.unwrap_or(path),
                max_bytes: c.max_bytes.unwrap_or(max_bytes),
                max_files: c.max_files.unwrap_or(max_files),
            },
        })
    }

    async fn with_lag(
        &self,
        tx: &mut dyn keyhaven_store::Tx,
        org: &Id,
        sinks: Vec<AuditSink>,
    ) -> ServiceResult<Vec<AuditSinkStatus>> {
        let head = tx.audit_head(org).await?.map_or(0, |(s, _)| s);
        Ok(sinks
            .into_iter()
            .map(|sink| AuditSinkStatus {
                lag: (head - sink.cursor_seq).max(0),
                sink,
            })
            .collect())
    }

    /// Creates a sink [audit.manage]. It starts at the chain's first entry, or with
    /// `start: now` at the entry recording its own creation.
    pub async fn create_audit_sink(
        &self,
        caller: &Caller,
        input: impl TryInto<NewAuditSink, Error: Into<ServiceError>>,
    ) -> ServiceResult<AuditSinkStatus> {
        self.authorize(caller, Permission::AuditManage, Action::AuditSinkCreate)
            .await?;
        // Authorized first: a caller who may not act learns nothing about the input.
        let input: NewAuditSink = input.try_into().map_err(Into::into)?;
        let start = input.start;
        let description = input.description.into_inner();
        let target = self.new_target(input.target).await?;
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let (cursor_seq, cursor_hash) = match start {
            Start::Beginning => (0, None),
            Start::Now => match tx.audit_head(&caller.org_id).await? {
                Some((seq, hash)) => (seq, Some(hash)),
                None => (0, None),
            },
        };
        let sink = AuditSink {
            id: self.new_id(),
            org_id: caller.org_id.clone(),
            target,
            description,
            enabled: input.enabled,
            cursor_seq,
            cursor_hash,
            last_delivered_at: None,
            last_error: None,
            last_error_at: None,
            failures: 0,
            next_attempt_at: now,
            created_at: now,
            updated_at: now,
        };
        tx.insert_audit_sink(&sink).await?;
        if matches!(sink.target, SinkTarget::Http { .. }) {
            self.ensure_shared_secret(tx.as_mut(), caller).await?;
        }
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::AuditSinkCreate,
                target: Some(target_of(&sink)),
                changes: json!({
                    "kind": sink.target.kind(),
                    "target": sink.target.describe(),
                    "enabled": sink.enabled,
                    "start": if start == Start::Now { "now" } else { "beginning" },
                }),
                event: None,
            }),
            &[],
        )
        .await?;
        self.get_sink_status(&caller.org_id, &sink.id).await
    }

    async fn get_sink_status(&self, org: &Id, id: &Id) -> ServiceResult<AuditSinkStatus> {
        let mut tx = self.store.read().await?;
        let sink = tx
            .audit_sink(org, id)
            .await?
            .ok_or(ServiceError::NotFound("audit sink"))?;
        let mut v = self.with_lag(tx.as_mut(), org, vec![sink]).await?;
        v.pop().ok_or(ServiceError::NotFound("audit sink"))
    }

    /// A page of the organization's sinks, newest first [audit.manage].
    pub async fn list_audit_sinks(
        &self,
        caller: &Caller,
        page: &Page,
    ) -> ServiceResult<Listing<AuditSinkStatus>> {
        self.authorize(caller, Permission::AuditManage, Action::AuditSinkList)
            .await?;
        let mut tx = self.store.read().await?;
        let l = tx.list_audit_sinks(&caller.org_id, page).await?;
        let items = self.with_lag(tx.as_mut(), &caller.org_id, l.items).await?;
        Ok(Listing {
            items,
            has_more: l.has_more,
            next_cursor: l.next_cursor,
        })
    }

    /// One sink with its cursor, lag and last error [audit.manage].
    pub async fn get_audit_sink(&self, caller: &Caller, id: &Id) -> ServiceResult<AuditSinkStatus> {
        self.authorize(caller, Permission::AuditManage, Action::AuditSinkView)
            .await?;
        self.get_sink_status(&caller.org_id, id).await
    }

    /// Changes a sink [audit.manage]. A changed target or a sink turned on is tried again
    /// at once (its backoff is cleared); the cursor stays.
    pub async fn update_audit_sink(
        &self,
        caller: &Caller,
        id: &Id,
        input: impl TryInto<AuditSinkPatch, Error: Into<ServiceError>>,
    ) -> ServiceResult<AuditSinkStatus> {
        self.authorize(caller, Permission::AuditManage, Action::AuditSinkUpdate)
            .await?;
        let input: AuditSinkPatch = input.try_into().map_err(Into::into)?;
        let description = input.description.map(Description::into_inner);
        let old = {
            let mut tx = self.store.read().await?;
            tx.audit_sink(&caller.org_id, id)
                .await?
                .ok_or(ServiceError::NotFound("audit sink"))?
        };
        let target = self.changed_target(&old.target, input.changes).await?;
        let mut tx = self.store.begin().await?;
        let mut s = tx
            .audit_sink(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("audit sink"))?;
        let mut ch = Changes::default();
        let retarget = target != s.target;
        if retarget {
            ch.field("target", &s.target.describe(), &target.describe());
            s.target = target;
        }
        if let Some(d) = description {
            ch.field("description", &s.description, &d);
            s.description = d;
        }
        let mut turned_on = false;
        if let Some(en) = input.enabled {
            ch.field("enabled", &s.enabled, &en);
            turned_on = en && !s.enabled;
            s.enabled = en;
        }
        if !ch.is_empty() {
            let now = self.now();
            if retarget || turned_on {
                s.failures = 0;
                s.next_attempt_at = now;
            }
            s.updated_at = now;
            tx.update_audit_sink(&s).await?;
            if matches!(s.target, SinkTarget::Http { .. }) {
                self.ensure_shared_secret(tx.as_mut(), caller).await?;
            }
            self.commit_mutation(
                tx,
                caller,
                Some(crate::Success {
                    action: Action::AuditSinkUpdate,
                    target: Some(target_of(&s)),
                    changes: ch.into_value(),
                    event: None,
                }),
                &[],
            )
            .await?;
        } else {
            drop(tx);
        }
        self.get_sink_status(&caller.org_id, id).await
    }

    /// Deletes a sink [audit.manage] (what it delivered stays where it went).
    pub async fn delete_audit_sink(&self, caller: &Caller, id: &Id) -> ServiceResult<()> {
        self.authorize(caller, Permission::AuditManage, Action::AuditSinkDelete)
            .await?;
        let mut tx = self.store.begin().await?;
        let s = tx
            .audit_sink(&caller.org_id, id)
            .await?
            .ok_or(ServiceError::NotFound("audit sink"))?;
        tx.delete_audit_sink(&caller.org_id, id).await?;
        self.commit_mutation(
            tx,
            caller,
            Some(crate::Success {
                action: Action::AuditSinkDelete,
                target: Some(target_of(&s)),
                changes: json!({ "kind": s.target.kind(), "target": s.target.describe() }),
                event: None,
            }),
            &[],
        )
        .await
    }

    /// The recorded end of an organization's chain, `(seq, hash)` (for
    /// `keyhaven audit export`; the shell is trusted like `audit verify`).
    pub async fn audit_chain_head(&self, org: &Id) -> ServiceResult<Option<(i64, String)>> {
        let mut tx = self.store.read().await?;
        Ok(tx.audit_head(org).await?)
    }

    /// Up to `limit` entries of an organization's chain after `after_seq`, in order (for
    /// `keyhaven audit export`).
    pub async fn audit_entries_after(
        &self,
        org: &Id,
        after_seq: i64,
        limit: i64,
    ) -> ServiceResult<Vec<AuditEntry>> {
        let mut tx = self.store.read().await?;
        Ok(tx.audit_after(org, after_seq, limit).await?)
    }
}
