//! Audit sinks: where an organization's audit log is streamed (ANALYTICS.md, "Audit
//! streaming"). This module holds what needs no I/O: the kinds and their settings, their
//! validation, and the RFC 5424 syslog message of an entry.

use serde::{Deserialize, Serialize};

use crate::audit::{AuditEntry, Outcome};
use crate::error::DomainError;

/// Default size at which a file sink's file is rotated: 10 MiB.
pub const DEFAULT_MAX_BYTES: i64 = 10 * 1024 * 1024;
/// Smallest `max_bytes` accepted.
pub const MIN_MAX_BYTES: i64 = 4096;
/// Largest `max_bytes` accepted: 1 GiB.
pub const MAX_MAX_BYTES: i64 = 1024 * 1024 * 1024;
/// Default number of rotated files kept beside the current one.
pub const DEFAULT_MAX_FILES: i64 = 5;
/// Largest `max_files`.
pub const MAX_MAX_FILES: i64 = 100;
/// Most events in one HTTP batch.
pub const MAX_BATCH: i64 = 1000;

/// How syslog messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// TCP with octet-counting framing (RFC 6587 §3.4.1).
    Tcp,
    /// One UDP datagram per message (RFC 5426).
    Udp,
}

impl Transport {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }

    /// Parses `tcp` / `udp`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(Self::Tcp),
            "udp" => Some(Self::Udp),
            _ => None,
        }
    }
}

/// Where a sink sends, by kind; stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SinkTarget {
    /// POST of JSON-array batches to a URL, signed like webhooks.
    Http {
        /// The URL (checked like a webhook's).
        url: String,
    },
    /// RFC 5424 messages to a syslog server.
    Syslog {
        /// Host name or IP address.
        host: String,
        /// Port.
        port: u16,
        /// TCP or UDP.
        transport: Transport,
    },
    /// JSON Lines appended to a file under the data directory, rotated by size.
    File {
        /// Relative path under `<data dir>/audit/<organization id>/`.
        path: String,
        /// Rotate before the file would grow past this many bytes.
        max_bytes: i64,
        /// Rotated files kept (`path.1` … `path.N`).
        max_files: i64,
    },
}

impl SinkTarget {
    /// `http`, `syslog` or `file`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http { .. } => "http",
            Self::Syslog { .. } => "syslog",
            Self::File { .. } => "file",
        }
    }

    /// One line saying where events go, for lists and the console.
    pub fn describe(&self) -> String {
        match self {
            Self::Http { url } => url.clone(),
            Self::Syslog {
                host,
                port,
                transport,
            } => {
                if host.contains(':') {
                    format!("{}://[{host}]:{port}", transport.as_str())
                } else {
                    format!("{}://{host}:{port}", transport.as_str())
                }
            }
            Self::File { path, .. } => path.clone(),
        }
    }
}

/// Where a new sink starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From the organization's first entry (the default).
    Beginning,
    /// From the entry that records the sink's creation.
    Now,
}

impl Start {
    /// Parses `beginning` / `now`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "beginning" => Ok(Self::Beginning),
            "now" => Ok(Self::Now),
            _ => Err(DomainError::invalid(
                "invalid_start",
                "start",
                "start must be beginning or now",
            )),
        }
    }
}

/// Checks a file sink's path: relative, 1–200 characters of letters, digits, `.`, `_`,
/// `-` and `/`, no empty, `.` or `..` segment, no hidden (dot-leading) segment.
pub fn validate_file_path(input: &str) -> Result<String, DomainError> {
    let bad = |m: &str| DomainError::invalid("invalid_path", "path", m);
    let s = input.trim();
    if s.is_empty() || s.len() > 200 {
        return Err(bad("path must be 1 to 200 characters"));
    }
    if s.starts_with('/') || s.contains('\\') {
        return Err(bad(
            "path must be relative (it is placed under the data directory)",
        ));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    {
        return Err(bad(
            "path may hold only letters, digits, '.', '_', '-' and '/'",
        ));
    }
    for seg in s.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(bad("path must not contain empty, '.' or '..' segments"));
        }
        if seg.starts_with('.') {
            return Err(bad("path segments must not start with '.'"));
        }
    }
    Ok(s.to_string())
}

/// Checks a syslog host: a DNS name or an IP address (IPv6 with or without brackets).
pub fn validate_host(input: &str) -> Result<String, DomainError> {
    let bad = || {
        DomainError::invalid(
            "invalid_host",
            "host",
            "host must be a host name or an IP address",
        )
    };
    let s = input.trim().trim_start_matches('[').trim_end_matches(']');
    if s.is_empty() || s.len() > 253 {
        return Err(bad());
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(ip.to_string());
    }
    let ok = s.trim_end_matches('.').split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    });
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(bad())
    }
}

/// Checks `max_bytes`.
pub fn validate_max_bytes(v: i64) -> Result<i64, DomainError> {
    if (MIN_MAX_BYTES..=MAX_MAX_BYTES).contains(&v) {
        Ok(v)
    } else {
        Err(DomainError::invalid(
            "invalid_max_bytes",
            "max_bytes",
            format!("max_bytes must be between {MIN_MAX_BYTES} and {MAX_MAX_BYTES}"),
        ))
    }
}

/// Checks `max_files`.
pub fn validate_max_files(v: i64) -> Result<i64, DomainError> {
    if (1..=MAX_MAX_FILES).contains(&v) {
        Ok(v)
    } else {
        Err(DomainError::invalid(
            "invalid_max_files",
            "max_files",
            format!("max_files must be between 1 and {MAX_MAX_FILES}"),
        ))
    }
}

/// Checks a syslog port.
pub fn validate_port(v: i64) -> Result<u16, DomainError> {
    u16::try_from(v).ok().filter(|p| *p > 0).ok_or_else(|| {
        DomainError::invalid("invalid_port", "port", "port must be between 1 and 65535")
    })
}

/// Facility of every message: 13, "log audit" (RFC 5424 §6.2.1).
pub const SYSLOG_FACILITY: u8 = 13;

/// Severity of an entry: informational for a success, warning for a denial, error for
/// an error.
pub fn syslog_severity(o: Outcome) -> u8 {
    match o {
        Outcome::Success => 6,
        Outcome::Denied => 4,
        Outcome::Error => 3,
    }
}

/// `s` as an RFC 5424 header field: printable US-ASCII only (others become `_`), at
/// most `max` characters, `-` when empty.
fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if f.is_empty() {
        "-".into()
    } else {
        f
    }
}

/// The RFC 5424 message of an entry: `<PRI>1 TIMESTAMP HOSTNAME keyhaven - MSGID
/// [keyhaven seq="…" org="…"] BOM JSON`, with the entry's action as MSGID and its
/// [`crate::audit_export::entry_json`] form as MSG. (The structured-data id carries no
/// enterprise number, so it is sent as the nil value `-` instead; the JSON holds all.)
pub fn syslog_message(e: &AuditEntry, hostname: &str) -> String {
    let pri = u16::from(SYSLOG_FACILITY) * 8 + u16::from(syslog_severity(e.draft.outcome));
    format!(
        "<{pri}>1 {} {} keyhaven - {} - \u{feff}{}",
        crate::audit_export::time_ms(&e.at),
        header_field(hostname, 255),
        header_field(&e.draft.action, 32),
        crate::audit_export::entry_json(e),
    )
}

/// A message framed for TCP by octet counting (RFC 6587 §3.4.1): `LEN SP MSG`.
pub fn octet_counted(msg: &str) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditDraft, GENESIS_HASH};
    use crate::id::Id;
    use crate::principal::Principal;
    use chrono::TimeZone;

    #[test]
    fn file_paths_stay_under_the_directory() {
        for ok in ["audit.jsonl", "siem/keyhaven.log", "a-b_c.1"] {
            assert_eq!(validate_file_path(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            ".hidden",
            "a\\b",
            "a b",
            "ä",
            &"a".repeat(201),
        ] {
            assert!(validate_file_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hosts_ports_and_sizes() {
        assert_eq!(
            validate_host("Syslog.Example.com").unwrap(),
            "syslog.example.com"
        );
        assert_eq!(validate_host("[::1]").unwrap(), "::1");
        assert_eq!(validate_host("10.0.0.1").unwrap(), "10.0.0.1");
        for bad in ["", "a b", "-x.com", "x..y", "http://x"] {
            assert!(validate_host(bad).is_err(), "{bad:?}");
        }
        assert!(validate_port(0).is_err() && validate_port(65536).is_err());
        assert_eq!(validate_port(514).unwrap(), 514);
        assert!(validate_max_bytes(100).is_err() && validate_max_bytes(4096).is_ok());
        assert!(validate_max_files(0).is_err() && validate_max_files(5).is_ok());
    }

    #[test]
    fn syslog_message_follows_rfc_5424() {
        let e = AuditEntry::chain(
            Id::from_trusted("01jent0000000000000000000a".into()),
            Id::from_trusted("01jorg0000000000000000000a".into()),
            1,
            chrono::Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
            AuditDraft {
                actor: Principal::system("test"),
                action: "api_key.create".into(),
                target: None,
                outcome: Outcome::Denied,
                ip: None,
                user_agent: None,
                request_id: None,
                changes: serde_json::json!({}),
            },
            GENESIS_HASH.into(),
        );
        let m = syslog_message(&e, "node 1");
        assert!(
            m.starts_with(
                "<108>1 2023-11-14T22:13:20.123Z node_1 keyhaven - api_key.create - \u{feff}{"
            ),
            "{m}"
        );
        let framed = octet_counted(&m);
        let sp = framed.iter().position(|b| *b == b' ').unwrap();
        let len: usize = std::str::from_utf8(&framed[..sp]).unwrap().parse().unwrap();
        assert_eq!(len, framed.len() - sp - 1);
    }
}
