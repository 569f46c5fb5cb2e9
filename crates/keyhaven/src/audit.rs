//! `keyhaven audit export` and `keyhaven audit verify --file`: the audit log as a file an
//! auditor can check on their own (see docs/audit-streaming.md).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use keyhaven_core::audit::GENESIS_HASH;
use keyhaven_core::audit_export::{csv_header, entry_csv, entry_json, verify_export, ExportHead};
use keyhaven_core::id::Id;
use keyhaven_core::time::{parse_rfc3339, Timestamp};
use keyhaven_service::Service;

/// Entries read from the database at a time.
const PAGE: i64 = 1000;

/// The format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line; the last line is `{"chain_head": {...}}`.
    Jsonl,
    /// RFC 4180 CSV with a header line; the last line starts with `chain_head`.
    Csv,
}

fn time(v: Option<&str>, flag: &str) -> anyhow::Result<Option<Timestamp>> {
    v.map(|s| parse_rfc3339(s, flag).map_err(|e| anyhow::anyhow!("{e}")))
        .transpose()
}

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    keyhaven_core::time::from_millis(ms)
}

/// Writes the organization's chain to standard output, from the first entry at or after
/// `since` to the last before `until` (every entry in between, so the file stays one
/// unbroken piece of the chain), then the chain-head line. The head is read first: entries
/// appended while the export runs are left for the next one.
pub async fn export(
    service: &Service,
    org: &Id,
    since: Option<&str>,
    until: Option<&str>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let since = time(since, "--since")?;
    let until = time(until, "--until")?;
    if let (Some(s), Some(u)) = (since, until) {
        anyhow::ensure!(s < u, "--since must be before --until");
    }
    let (head_seq, head_hash) = service
        .audit_chain_head(org)
        .await?
        .unwrap_or((0, GENESIS_HASH.to_string()));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if format == Format::Csv {
        writeln!(out, "{}", csv_header())?;
    }
    let mut after = 0;
    let mut started = false;
    let mut events = 0i64;
    let mut last: Option<(i64, String)> = None;
    let mut prev_hash = GENESIS_HASH.to_string();
    'pages: while after < head_seq {
        let page = service.audit_entries_after(org, after, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for e in page {
            if e.seq > head_seq {
                break 'pages;
            }
            after = e.seq;
            if !started {
                if since.is_some_and(|s| e.at < s) {
                    prev_hash = e.hash.clone();
                    continue;
                }
                started = true;
            }
            if until.is_some_and(|u| e.at >= u) {
                break 'pages;
            }
            match format {
                Format::Jsonl => writeln!(out, "{}", entry_json(&e))?,
                Format::Csv => writeln!(out, "{}", entry_csv(&e))?,
            }
            events += 1;
            last = Some((e.seq, e.hash.clone()));
        }
    }
    let (last_seq, last_hash) = match last {
        Some(l) => l,
        // Nothing in the range: the head line names where it would have started.
        None => (0, prev_hash),
    };
    let head = ExportHead {
        org_id: org.to_string(),
        events,
        last_seq,
        last_hash,
        head_seq,
        head_hash,
        exported_at: now(),
    };
    match format {
        Format::Jsonl => writeln!(out, "{}", head.to_json())?,
        Format::Csv => writeln!(out, "{}", head.to_csv())?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Checks an exported file on its own (no database): exit 0 when every entry's hash and
/// link holds and the file ends where its head line says; else names the first broken
/// line and exits 1.
pub fn verify_file(path: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    match verify_export(&text) {
        Ok(r) => {
            let range = if r.events == 0 {
                "no entries".to_string()
            } else {
                format!(
                    "{} entries, {} to {}",
                    r.events, r.first_seq, r.head.last_seq
                )
            };
            println!(
                "{}: ok ({range} of organization {}; the chain head at export was entry {} {})",
                path.display(),
                r.head.org_id,
                r.head.head_seq,
                r.head.head_hash
            );
            if r.first_seq > 1 {
                println!(
                    "the file starts at entry {}: the link to the entries before it is taken as given",
                    r.first_seq
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            println!(
                "{}: BROKEN at line {}: {}",
                path.display(),
                b.line,
                b.reason
            );
            Ok(ExitCode::from(1))
        }
    }
}
