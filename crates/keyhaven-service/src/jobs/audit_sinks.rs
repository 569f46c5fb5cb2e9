//! Streaming the audit log to its sinks: at least once, in chain order per organization.
//!
//! Every second a node looks for sinks that are enabled, due (not backing off), not
//! leased by another node and behind their organization's chain head, and claims them
//! (a lease of [`LEASE_SECONDS`] under a random token, see `keyhaven_store::AuditSinks`).
//! For each it reads the entries after the sink's cursor, in `seq` order, sends one batch,
//! and only then moves the cursor (which also renews the lease), so a crash between the
//! two sends the batch again: at least once. A failed batch is retried with the webhook
//! backoff (30 s doubling to 4 h), never skipped, so order is kept.
//!
//! - `http`: a POST of a JSON array (≤ 1,000 entries) signed with the organization's
//!   shared secret (Standard Webhooks headers; `webhook-id` is `<sink>-<first>-<last>`
//!   seq), sent only to addresses the outbound rules allow; a 2xx answer is success.
//! - `syslog`: one RFC 5424 message per entry; TCP with octet counting (RFC 6587), UDP
//!   one datagram each. Syslog has no acknowledgements: TCP counts as delivered once
//!   written, UDP once sent.
//! - `file`: JSON Lines appended to `<data dir>/audit/<organization id>/<path>`, synced
//!   to disk before the cursor moves, rotated to `path.1` … `path.N` by size.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Duration as Span;
use keyhaven_core::audit::AuditEntry;
use keyhaven_core::audit_export::entry_json;
use keyhaven_core::audit_sink::{octet_counted, syslog_message, SinkTarget, Transport, MAX_BATCH};
use keyhaven_store::AuditSink;
use tokio::io::AsyncWriteExt;

use super::webhooks::{backoff, sign, Http, CONNECTION_FAILED};
use crate::{Service, ServiceResult};

/// A claim lasts this long; every delivered batch renews it.
pub const LEASE_SECONDS: i64 = 60;
/// Entries per syslog or file batch.
pub const STREAM_BATCH: i64 = 500;
/// Batches one claim delivers before the sink is released for the next round (so one
/// sink's backlog doesn't keep a node from the others).
pub const BATCHES_PER_CLAIM: usize = 20;
/// Sinks claimed at once by a node.
pub const CLAIM_LIMIT: i64 = 8;
/// A connection or write taking longer is a failed attempt.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest syslog datagram sent over UDP; a longer message has its `changes` cut.
const MAX_DATAGRAM: usize = 60_000;

/// What delivery needs besides the service.
#[derive(Clone)]
pub struct SinkRunner {
    /// For `http` sinks.
    pub http: Http,
    /// `<data dir>/audit`: file sinks write under `<dir>/<organization id>/`.
    pub dir: PathBuf,
    /// HOSTNAME of syslog messages.
    pub hostname: String,
}

impl SinkRunner {
    /// A runner writing file sinks under `dir` (`<data dir>/audit`).
    pub fn new(http: Http, dir: PathBuf) -> Self {
        let hostname = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".to_string());
        SinkRunner {
            http,
            dir,
            hostname,
        }
    }
}

/// One round: claims the sinks that are due and delivers each until it is caught up,
/// fails, or has had [`BATCHES_PER_CLAIM`] batches. Returns how many entries were
/// delivered.
pub async fn deliver_due(service: &Service, runner: &SinkRunner) -> ServiceResult<usize> {
    let now = service.now();
    {
        let mut tx = service.store.read().await?;
        if !tx.audit_sinks_due(now).await? {
            return Ok(0);
        }
    }
    let token = super::notices::claim_token();
    let claimed = {
        let mut tx = service.store.begin().await?;
        let c = tx
            .claim_audit_sinks(now, now + Span::seconds(LEASE_SECONDS), CLAIM_LIMIT, &token)
            .await?;
        tx.commit().await?;
        c
    };
    let mut set = tokio::task::JoinSet::new();
    for sink in claimed {
        let (service, runner, token) = (service.clone(), runner.clone(), token.clone());
        set.spawn(async move { deliver_sink(&service, &runner, sink, &token).await });
    }
    let mut delivered = 0;
    let mut first_err = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(n)) => delivered += n,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot record an audit sink's progress");
                first_err.get_or_insert(e);
            }
            Err(e) => tracing::warn!(error = %e, "an audit sink task failed"),
        }
    }
    match first_err {
        Some(e) if delivered == 0 => Err(e),
        _ => Ok(delivered),
    }
}

/// Delivers every second until `stopped` turns true.
pub async fn run(
    service: Service,
    runner: SinkRunner,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if *stopped.borrow() {
            return;
        }
        match deliver_due(&service, &runner).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "an audit-sink round failed; retrying shortly"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            _ = stopped.changed() => return,
        }
    }
}

async fn deliver_sink(
    service: &Service,
    runner: &SinkRunner,
    mut sink: AuditSink,
    token: &str,
) -> ServiceResult<usize> {
    let mut delivered = 0;
    for _ in 0..BATCHES_PER_CLAIM {
        let limit = match sink.target {
            SinkTarget::Http { .. } => MAX_BATCH,
            _ => STREAM_BATCH,
        };
        let events = {
            let mut tx = service.store.read().await?;
            // Settings may have changed (or the sink been turned off) since the claim.
            match tx.audit_sink(&sink.org_id, &sink.id).await? {
                Some(s) if s.enabled => sink = s,
                _ => break,
            }
            tx.audit_after(&sink.org_id, sink.cursor_seq, limit).await?
        };
        let Some(last) = events.last() else {
            break;
        };
        let (last_seq, last_hash) = (last.seq, last.hash.clone());
        let sent = send(service, runner, &sink, &events).await;
        let now = service.now();
        let mut tx = service.store.begin().await?;
        match sent {
            Ok(()) => {
                let held = tx
                    .advance_audit_sink(
                        &sink.id,
                        token,
                        last_seq,
                        &last_hash,
                        now,
                        now + Span::seconds(LEASE_SECONDS),
                    )
                    .await?;
                tx.commit().await?;
                if !held {
                    tracing::warn!(sink = %sink.id, "an audit sink's lease lapsed mid-delivery; another node continues");
                    return Ok(delivered);
                }
                delivered += events.len();
                sink.cursor_seq = last_seq;
            }
            Err(e) => {
                tracing::warn!(sink = %sink.id, error = %e, "an audit sink batch failed; retrying with backoff");
                let next = now + backoff(sink.failures + 1);
                tx.fail_audit_sink(&sink.id, token, &e, now, next).await?;
                tx.commit().await?;
                return Ok(delivered);
            }
        }
    }
    let mut tx = service.store.begin().await?;
    tx.release_audit_sink(&sink.id, token).await?;
    tx.commit().await?;
    Ok(delivered)
}

async fn send(
    service: &Service,
    runner: &SinkRunner,
    sink: &AuditSink,
    events: &[AuditEntry],
) -> Result<(), String> {
    match &sink.target {
        SinkTarget::Http { url } => send_http(service, runner, sink, url, events).await,
        SinkTarget::Syslog {
            host,
            port,
            transport,
        } => send_syslog(service, runner, host, *port, *transport, events).await,
        SinkTarget::File {
            path,
            max_bytes,
            max_files,
        } => {
            let file = runner.dir.join(sink.org_id.as_str()).join(path);
            let lines: Vec<String> = events
                .iter()
                .map(|e| format!("{}\n", entry_json(e)))
                .collect();
            let (max_bytes, max_files) = (*max_bytes, *max_files);
            tokio::task::spawn_blocking(move || {
                append_rotating(&file, &lines, max_bytes, max_files)
            })
            .await
            .map_err(|_| "the file writer stopped".to_string())?
        }
    }
}

async fn send_http(
    service: &Service,
    runner: &SinkRunner,
    sink: &AuditSink,
    url: &str,
    events: &[AuditEntry],
) -> Result<(), String> {
    let client = super::webhooks::target_client(service, &runner.http, url).await?;
    let secrets = service
        .signing_secrets(&sink.org_id)
        .await
        .map_err(|e| e.to_string())?;
    if secrets.is_empty() {
        return Err("the organization has no shared secret to sign with; not sent".into());
    }
    let body = serde_json::Value::Array(events.iter().map(entry_json).collect()).to_string();
    let first = events.first().map_or(0, |e| e.seq);
    let last = events.last().map_or(0, |e| e.seq);
    let id = format!("{}-{first}-{last}", sink.id);
    let ts = service.now().timestamp();
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sign(&secrets, &id, ts, &body))
        .body(body)
        .send()
        .await;
    match res {
        Ok(r) if r.status().is_success() => Ok(()),
        // The status only: the receiver's answer is never read or recorded.
        Ok(r) => Err(format!("the receiver answered {}", r.status().as_u16())),
        Err(_) => Err(CONNECTION_FAILED.to_string()),
    }
}

/// Why a syslog target was not sent to because of where it points.
const REFUSED_HOST: &str = "the host resolves to no allowed address (internal addresses need \
     KEYHAVEN_OUTBOUND_ALLOWED_CIDRS, and Keyhaven itself is never one); not sent";

async fn syslog_addrs(service: &Service, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        let a = SocketAddr::new(ip, port);
        return if service.may_send_to(a) {
            Ok(vec![a])
        } else {
            Err(REFUSED_HOST.into())
        };
    }
    match crate::outbound::resolve_checked(host, port, |a| service.may_send_to(a)).await {
        Ok(a) => Ok(a),
        Err(crate::outbound::TargetError::Refused) => Err(REFUSED_HOST.into()),
        Err(crate::outbound::TargetError::Lookup) => Err(CONNECTION_FAILED.into()),
    }
}

/// A message short enough for one datagram: the entry's `changes` are replaced by
/// `{"truncated": true}` when the whole would not fit (the hash then can't be checked
/// by the receiver; prefer TCP for large entries).
fn datagram(e: &AuditEntry, hostname: &str) -> String {
    let m = syslog_message(e, hostname);
    if m.len() <= MAX_DATAGRAM {
        return m;
    }
    let mut cut = e.clone();
    cut.draft.changes = serde_json::json!({ "truncated": true });
    syslog_message(&cut, hostname)
}

async fn send_syslog(
    service: &Service,
    runner: &SinkRunner,
    host: &str,
    port: u16,
    transport: Transport,
    events: &[AuditEntry],
) -> Result<(), String> {
    let addrs = syslog_addrs(service, host, port).await?;
    match transport {
        Transport::Tcp => {
            let mut stream = None;
            for a in &addrs {
                if let Ok(Ok(s)) =
                    tokio::time::timeout(IO_TIMEOUT, tokio::net::TcpStream::connect(a)).await
                {
                    stream = Some(s);
                    break;
                }
            }
            let mut s = stream.ok_or_else(|| CONNECTION_FAILED.to_string())?;
            let mut buf = Vec::new();
            for e in events {
                buf.extend_from_slice(&octet_counted(&syslog_message(e, &runner.hostname)));
            }
            let write = async {
                s.write_all(&buf).await?;
                s.flush().await?;
                s.shutdown().await
            };
            match tokio::time::timeout(IO_TIMEOUT, write).await {
                Ok(Ok(())) => Ok(()),
                _ => Err(CONNECTION_FAILED.to_string()),
            }
        }
        Transport::Udp => {
            let a = addrs[0];
            let local: SocketAddr = if a.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = tokio::net::UdpSocket::bind(local)
                .await
                .map_err(|_| CONNECTION_FAILED.to_string())?;
            for e in events {
                let m = datagram(e, &runner.hostname);
                match tokio::time::timeout(IO_TIMEOUT, sock.send_to(m.as_bytes(), a)).await {
                    Ok(Ok(_)) => {}
                    _ => return Err(CONNECTION_FAILED.to_string()),
                }
            }
            Ok(())
        }
    }
}

/// The `n`th rotated file of `file`: `file.n`.
fn rotated(file: &Path, n: i64) -> PathBuf {
    let mut s = file.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Shifts `file.1` … to `file.2` …, dropping the oldest beyond `max_files`, and moves
/// `file` to `file.1`.
fn rotate(file: &Path, max_files: i64) -> std::io::Result<()> {
    let oldest = rotated(file, max_files);
    if oldest.exists() {
        std::fs::remove_file(&oldest)?;
    }
    for n in (1..max_files).rev() {
        let from = rotated(file, n);
        if from.exists() {
            std::fs::rename(&from, rotated(file, n + 1))?;
        }
    }
    std::fs::rename(file, rotated(file, 1))
}

/// Appends `lines` to `file`, rotating first whenever a line would take it past
/// `max_bytes` (a file always takes at least one line), then syncs to disk.
pub fn append_rotating(
    file: &Path,
    lines: &[String],
    max_bytes: i64,
    max_files: i64,
) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} the audit file: {e}");
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail("create the directory of", e))?;
    }
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
    };
    let mut f = open().map_err(|e| fail("open", e))?;
    let mut size = f.metadata().map_err(|e| fail("read", e))?.len();
    let max = u64::try_from(max_bytes).unwrap_or(u64::MAX);
    for l in lines {
        let n = l.len() as u64;
        if size > 0 && size + n > max {
            f.sync_data().map_err(|e| fail("sync", e))?;
            drop(f);
            rotate(file, max_files).map_err(|e| fail("rotate", e))?;
            f = open().map_err(|e| fail("open", e))?;
            size = 0;
        }
        f.write_all(l.as_bytes()).map_err(|e| fail("write", e))?;
        size += n;
    }
    f.sync_data().map_err(|e| fail("sync", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_by_size_and_keep_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a/b.jsonl");
        let line = |i: usize| format!("{{\"n\":{i:04}}}\n"); // 11 bytes
        for i in 0..10 {
            append_rotating(&file, &[line(i)], 25, 2).unwrap();
        }
        // 2 lines per file: the current one holds 8, 9; .1 holds 6, 7; .2 holds 4, 5.
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&file), format!("{}{}", line(8), line(9)));
        assert_eq!(read(&rotated(&file, 1)), format!("{}{}", line(6), line(7)));
        assert_eq!(read(&rotated(&file, 2)), format!("{}{}", line(4), line(5)));
        assert!(!rotated(&file, 3).exists());
        // A batch crossing the limit rotates in the middle.
        append_rotating(&file, &[line(10), line(11), line(12)], 25, 2).unwrap();
        assert_eq!(read(&file), line(12));
        assert_eq!(
            read(&rotated(&file, 1)),
            format!("{}{}", line(10), line(11))
        );
    }
}
