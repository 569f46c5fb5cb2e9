//! `/v1/organizations/{org}/audit-sinks` [audit.manage]: where the audit log is streamed
//! (ANALYTICS.md, "Audit streaming"; docs/audit-streaming.md).

use axum::extract::State;
use axum::http::StatusCode;
use keyhaven_core::audit_sink::SinkTarget;
use keyhaven_service::audit_sinks::{
    AuditSinkStatus, CreateAuditSink, SinkFields, UpdateAuditSink,
};
use serde::Serialize;

use super::error::{ApiError, CommonErrors, Json};
use super::params::{path_id, PathParams, QueryParams};
use super::views::ListView;
use crate::app::AppState;
use crate::auth::extract::Auth;

/// The last entry a sink delivered.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SinkCursorView {
    /// Its position in the organization's chain.
    pub seq: i64,
    /// Its hash.
    pub hash: Option<String>,
}

/// An audit sink and how far its delivery got.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditSinkView {
    pub id: String,
    /// `http`, `syslog` or `file`.
    pub kind: String,
    /// Where events go, in one line (URL, `tcp://host:port`, or the file's path).
    pub target: String,
    pub description: String,
    pub enabled: bool,
    /// `http`: the URL batches are POSTed to.
    pub url: Option<String>,
    /// `syslog`: host name or IP address.
    pub host: Option<String>,
    /// `syslog`: port.
    pub port: Option<u16>,
    /// `syslog`: `tcp` or `udp`.
    pub transport: Option<String>,
    /// `file`: path under `<data dir>/audit/<organization id>/`.
    pub path: Option<String>,
    /// `file`: rotation size.
    pub max_bytes: Option<i64>,
    /// `file`: rotated files kept.
    pub max_files: Option<i64>,
    /// The last entry delivered; null before the first.
    pub cursor: Option<SinkCursorView>,
    /// Entries of the chain not delivered yet.
    pub lag: i64,
    #[schema(format = DateTime)]
    pub last_delivered_at: Option<String>,
    /// Why the last failed attempt failed (never the receiver's answer body).
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub last_error_at: Option<String>,
    /// Failed attempts since the last success (0: healthy).
    pub failures: i64,
    /// While backing off after failures: when the next attempt is due.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&AuditSinkStatus> for AuditSinkView {
    fn from(st: &AuditSinkStatus) -> Self {
        let s = &st.sink;
        let t = |x: &keyhaven_core::time::Timestamp| keyhaven_core::time::rfc3339(x);
        let mut v = AuditSinkView {
            id: s.id.to_string(),
            kind: s.target.kind().to_string(),
            target: s.target.describe(),
            description: s.description.clone(),
            enabled: s.enabled,
            url: None,
            host: None,
            port: None,
            transport: None,
            path: None,
            max_bytes: None,
            max_files: None,
            cursor: (s.cursor_seq > 0).then(|| SinkCursorView {
                seq: s.cursor_seq,
                hash: s.cursor_hash.clone(),
            }),
            lag: st.lag,
            last_delivered_at: s.last_delivered_at.as_ref().map(t),
            last_error: s.last_error.clone(),
            last_error_at: s.last_error_at.as_ref().map(t),
            failures: s.failures,
            next_attempt_at: (s.failures > 0).then(|| t(&s.next_attempt_at)),
            created_at: t(&s.created_at),
            updated_at: t(&s.updated_at),
        };
        match &s.target {
            SinkTarget::Http { url } => v.url = Some(url.clone()),
            SinkTarget::Syslog {
                host,
                port,
                transport,
            } => {
                v.host = Some(host.clone());
                v.port = Some(*port);
                v.transport = Some(transport.as_str().to_string());
            }
            SinkTarget::File {
                path,
                max_bytes,
                max_files,
            } => {
                v.path = Some(path.clone());
                v.max_bytes = Some(*max_bytes);
                v.max_files = Some(*max_files);
            }
        }
        v
    }
}

/// Lists the organization's audit sinks, newest first [audit.manage].
#[utoipa::path(get, path = "/v1/organizations/{org}/audit-sinks", tag = "audit",
    params(("org" = String, Path), ("limit" = Option<i64>, Query, minimum = 1, maximum = 100), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ListView<AuditSinkView>), CommonErrors), security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    q: QueryParams,
) -> Result<axum::Json<ListView<AuditSinkView>>, ApiError> {
    q.only(&["limit", "cursor"])?;
    let l = s.service.list_audit_sinks(&auth.caller, &q.page()?).await?;
    Ok(axum::Json(ListView::from_listing(l, |x| {
        AuditSinkView::from(x)
    })))
}

/// Creates an audit sink [audit.manage]. It delivers from the chain's first entry, or
/// with `start: "now"` from the entry recording its creation.
#[utoipa::path(post, path = "/v1/organizations/{org}/audit-sinks", tag = "audit", params(("org" = String, Path)),
    request_body = CreateAuditSinkBody, responses((status = 201, body = AuditSinkView), CommonErrors), security(("bearer" = [])))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    Json(body): Json<CreateAuditSinkBody>,
) -> Result<(StatusCode, axum::Json<AuditSinkView>), ApiError> {
    let st = s
        .service
        .create_audit_sink(&auth.caller, CreateAuditSink::from(body))
        .await?;
    Ok((StatusCode::CREATED, axum::Json((&st).into())))
}

/// One audit sink with its cursor, lag and last error [audit.manage].
#[utoipa::path(get, path = "/v1/organizations/{org}/audit-sinks/{id}", tag = "audit",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = AuditSinkView), CommonErrors), security(("bearer" = [])))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
) -> Result<axum::Json<AuditSinkView>, ApiError> {
    let st = s
        .service
        .get_audit_sink(&auth.caller, &path_id(&id, "audit sink")?)
        .await?;
    Ok(axum::Json((&st).into()))
}

/// Changes an audit sink [audit.manage]; its kind cannot change, its cursor stays.
#[utoipa::path(patch, path = "/v1/organizations/{org}/audit-sinks/{id}", tag = "audit",
    params(("org" = String, Path), ("id" = String, Path)), request_body = UpdateAuditSinkBody,
    responses((status = 200, body = AuditSinkView), CommonErrors), security(("bearer" = [])))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
    Json(body): Json<UpdateAuditSinkBody>,
) -> Result<axum::Json<AuditSinkView>, ApiError> {
    let st = s
        .service
        .update_audit_sink(
            &auth.caller,
            &path_id(&id, "audit sink")?,
            UpdateAuditSink::from(body),
        )
        .await?;
    Ok(axum::Json((&st).into()))
}

/// Deletes an audit sink [audit.manage].
#[utoipa::path(delete, path = "/v1/organizations/{org}/audit-sinks/{id}", tag = "audit",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "deleted"), CommonErrors), security(("bearer" = [])))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    PathParams((_org, id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.service
        .delete_audit_sink(&auth.caller, &path_id(&id, "audit sink")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /audit-sinks`: `kind` and that kind's settings (`url` for `http`;
/// `host`, `port`, `transport` for `syslog`; `path`, `max_bytes`, `max_files` for
/// `file`); a setting of another kind is refused.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateAuditSink)]
pub struct CreateAuditSinkBody {
    /// `http`, `syslog` or `file`.
    #[schema(pattern = "^(http|syslog|file)$")]
    pub kind: String,
    /// `http`: an http(s) URL allowed by the outbound address rules, not Keyhaven itself.
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    /// `syslog`: host name or IP address, allowed by the outbound address rules.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 253)]
    pub host: Option<String>,
    /// `syslog`: port (default 514).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<i64>,
    /// `syslog`: `tcp` (default; octet-counted framing) or `udp`.
    #[serde(default)]
    #[schema(pattern = "^(tcp|udp)$")]
    pub transport: Option<String>,
    /// `file`: relative path (letters, digits, `.`, `_`, `-`, `/`; no `..`) under
    /// `<data dir>/audit/<organization id>/`.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$"
    )]
    pub path: Option<String>,
    /// `file`: rotate before the file grows past this size (default 10 MiB).
    #[serde(default)]
    #[schema(minimum = 4096, maximum = 1073741824)]
    pub max_bytes: Option<i64>,
    /// `file`: rotated files kept (default 5).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub max_files: Option<i64>,
    /// Free text.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `beginning` (default: the whole chain is delivered) or `now` (from this sink's
    /// own creation entry on).
    #[serde(default)]
    #[schema(pattern = "^(beginning|now)$")]
    pub start: Option<String>,
}

impl From<CreateAuditSinkBody> for CreateAuditSink {
    fn from(b: CreateAuditSinkBody) -> Self {
        CreateAuditSink {
            kind: b.kind,
            fields: SinkFields {
                url: b.url,
                host: b.host,
                port: b.port,
                transport: b.transport,
                path: b.path,
                max_bytes: b.max_bytes,
                max_files: b.max_files,
            },
            description: b.description,
            enabled: b.enabled,
            start: b.start,
        }
    }
}

/// Body of `PATCH /audit-sinks/{id}`: any setting of the sink's kind, `description`,
/// `enabled`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateAuditSink)]
pub struct UpdateAuditSinkBody {
    /// `http` only.
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    /// `syslog` only.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 253)]
    pub host: Option<String>,
    /// `syslog` only.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<i64>,
    /// `syslog` only: `tcp` or `udp`.
    #[serde(default)]
    #[schema(pattern = "^(tcp|udp)$")]
    pub transport: Option<String>,
    /// `file` only.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$"
    )]
    pub path: Option<String>,
    /// `file` only.
    #[serde(default)]
    #[schema(minimum = 4096, maximum = 1073741824)]
    pub max_bytes: Option<i64>,
    /// `file` only.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub max_files: Option<i64>,
    /// New description.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// Turn delivery on or off (a disabled sink keeps its cursor and delivers nothing).
    #[serde(default)]
    pub enabled: Option<bool>,
}

impl From<UpdateAuditSinkBody> for UpdateAuditSink {
    fn from(b: UpdateAuditSinkBody) -> Self {
        UpdateAuditSink {
            fields: SinkFields {
                url: b.url,
                host: b.host,
                port: b.port,
                transport: b.transport,
                path: b.path,
                max_bytes: b.max_bytes,
                max_files: b.max_files,
            },
            description: b.description,
            enabled: b.enabled,
        }
    }
}
