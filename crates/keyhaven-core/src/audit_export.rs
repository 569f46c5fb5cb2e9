//! The audit log outside the database: the JSON form of an entry that audit sinks stream
//! and `keyhaven audit export` writes, its CSV form, the chain-head line that ends an
//! export, and [`verify_export`], which checks an exported file on its own (no database,
//! no key): every entry's hash is recomputed from its fields, every link to the entry
//! before it is checked, and the last entry must be the one the head line names.
//!
//! An export of the whole chain starts at entry 1 (whose `prev_hash` is
//! [`GENESIS_HASH`]); one cut by time (`--since`) starts later, and its first entry's
//! `prev_hash` is taken as given (the report says where the file starts).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::audit::{AuditDraft, AuditEntry, Outcome, GENESIS_HASH};
use crate::id::Id;
use crate::principal::{Principal, PrincipalKind};
use crate::time::Timestamp;

/// A time as exported: RFC 3339 in UTC with milliseconds (the chain hashes milliseconds).
pub fn time_ms(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The JSON object of an entry, as sinks deliver it and exports hold it: the API's audit
/// event (`id, at, actor, action, target, outcome, ip, user_agent, request_id, changes,
/// prev_hash, hash`) plus `organization_id` and `seq`, with `at` in milliseconds, so a
/// receiver can recompute `hash` (see [`entry_from_json`]).
pub fn entry_json(e: &AuditEntry) -> Value {
    let d = &e.draft;
    json!({
        "id": e.id.as_str(),
        "organization_id": e.org_id.as_str(),
        "seq": e.seq,
        "at": time_ms(&e.at),
        "actor": d.actor,
        "action": d.action,
        "target": d.target,
        "outcome": d.outcome.as_str(),
        "ip": d.ip,
        "user_agent": d.user_agent,
        "request_id": d.request_id,
        "changes": d.changes,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, String> {
    v.get(name)
        .ok_or_else(|| format!("field {name} is missing"))
}

fn string(v: &Value, name: &str) -> Result<String, String> {
    field(v, name)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("field {name} must be a string"))
}

fn opt_string(v: &Value, name: &str) -> Result<Option<String>, String> {
    match field(v, name)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(format!("field {name} must be a string or null")),
    }
}

fn parse_time(s: &str, name: &str) -> Result<Timestamp, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("field {name} must be an RFC 3339 time"))
}

fn parse_outcome(s: &str) -> Result<Outcome, String> {
    Outcome::parse(s).ok_or_else(|| format!("outcome {s:?} is not success, denied or error"))
}

/// Reads an entry back from its [`entry_json`] form.
pub fn entry_from_json(v: &Value) -> Result<AuditEntry, String> {
    let principal = |name: &str| -> Result<Option<Principal>, String> {
        match field(v, name)? {
            Value::Null => Ok(None),
            p => serde_json::from_value(p.clone())
                .map(Some)
                .map_err(|_| format!("field {name} must be {{type, id, name}}")),
        }
    };
    Ok(AuditEntry {
        id: Id::from_trusted(string(v, "id")?),
        org_id: Id::from_trusted(string(v, "organization_id")?),
        seq: field(v, "seq")?
            .as_i64()
            .ok_or_else(|| "field seq must be an integer".to_string())?,
        at: parse_time(&string(v, "at")?, "at")?,
        draft: AuditDraft {
            actor: principal("actor")?.ok_or_else(|| "field actor must not be null".to_string())?,
            action: string(v, "action")?,
            target: principal("target")?,
            outcome: parse_outcome(&string(v, "outcome")?)?,
            ip: opt_string(v, "ip")?,
            user_agent: opt_string(v, "user_agent")?,
            request_id: opt_string(v, "request_id")?,
            changes: field(v, "changes")?.clone(),
        },
        prev_hash: string(v, "prev_hash")?,
        hash: string(v, "hash")?,
    })
}

/// The columns of a CSV export, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "organization_id",
    "seq",
    "at",
    "actor_type",
    "actor_id",
    "actor_name",
    "action",
    "target_type",
    "target_id",
    "target_name",
    "outcome",
    "ip",
    "user_agent",
    "request_id",
    "changes",
    "prev_hash",
    "hash",
];

/// The first field of the CSV line holding the chain head.
pub const CSV_HEAD_MARK: &str = "chain_head";

/// One CSV field (RFC 4180): `None` is an empty unquoted field, every string is quoted
/// (so an empty string stays distinguishable from null), quotes doubled.
fn csv_field(v: Option<&str>) -> String {
    match v {
        None => String::new(),
        Some(s) => format!("\"{}\"", s.replace('"', "\"\"")),
    }
}

/// The CSV header line (no line break).
pub fn csv_header() -> String {
    CSV_COLUMNS.join(",")
}

/// An entry as one CSV line (no line break); `changes` is its JSON text.
pub fn entry_csv(e: &AuditEntry) -> String {
    let d = &e.draft;
    let seq = e.seq.to_string();
    let at = time_ms(&e.at);
    let changes = d.changes.to_string();
    let t = d.target.as_ref();
    [
        Some(e.id.as_str()),
        Some(e.org_id.as_str()),
        Some(seq.as_str()),
        Some(at.as_str()),
        Some(d.actor.kind.as_str()),
        Some(d.actor.id.as_str()),
        Some(d.actor.name.as_str()),
        Some(d.action.as_str()),
        t.map(|t| t.kind.as_str()),
        t.map(|t| t.id.as_str()),
        t.map(|t| t.name.as_str()),
        Some(d.outcome.as_str()),
        d.ip.as_deref(),
        d.user_agent.as_deref(),
        d.request_id.as_deref(),
        Some(changes.as_str()),
        Some(e.prev_hash.as_str()),
        Some(e.hash.as_str()),
    ]
    .into_iter()
    .map(csv_field)
    .collect::<Vec<_>>()
    .join(",")
}

/// Reads an entry back from the fields of its [`entry_csv`] line.
pub fn entry_from_csv(f: &[Option<String>]) -> Result<AuditEntry, String> {
    if f.len() != CSV_COLUMNS.len() {
        return Err(format!(
            "{} fields where {} were expected",
            f.len(),
            CSV_COLUMNS.len()
        ));
    }
    let req = |i: usize| -> Result<String, String> {
        f[i].clone()
            .ok_or_else(|| format!("column {} must not be empty", CSV_COLUMNS[i]))
    };
    let kind = |s: &str| -> Result<PrincipalKind, String> {
        PrincipalKind::parse(s).ok_or_else(|| format!("{s:?} is not a principal type"))
    };
    let target = match (&f[8], &f[9], &f[10]) {
        (Some(k), Some(id), Some(name)) => Some(Principal {
            kind: kind(k)?,
            id: id.clone(),
            name: name.clone(),
        }),
        (None, None, None) => None,
        _ => return Err("target_type, target_id and target_name must be set together".into()),
    };
    Ok(AuditEntry {
        id: Id::from_trusted(req(0)?),
        org_id: Id::from_trusted(req(1)?),
        seq: req(2)?
            .parse()
            .map_err(|_| "column seq must be an integer".to_string())?,
        at: parse_time(&req(3)?, "at")?,
        draft: AuditDraft {
            actor: Principal {
                kind: kind(&req(4)?)?,
                id: req(5)?,
                name: req(6)?,
            },
            action: req(7)?,
            target,
            outcome: parse_outcome(&req(11)?)?,
            ip: f[12].clone(),
            user_agent: f[13].clone(),
            request_id: f[14].clone(),
            changes: serde_json::from_str(&req(15)?)
                .map_err(|_| "column changes must be JSON".to_string())?,
        },
        prev_hash: req(16)?,
        hash: req(17)?,
    })
}

/// A CSV record: the line it starts on and its fields (`None`: empty and unquoted).
pub type CsvRecord = (usize, Vec<Option<String>>);

/// Splits CSV text (RFC 4180, quoted fields may hold line breaks) into records, each with
/// the line number it starts on. An unquoted empty field is `None`, a quoted one `Some("")`.
pub fn parse_csv(text: &str) -> Result<Vec<CsvRecord>, (usize, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    loop {
        // Skip blank lines between records.
        while let Some(&c) = chars.peek() {
            if c == '\n' {
                line += 1;
                chars.next();
            } else if c == '\r' {
                chars.next();
            } else {
                break;
            }
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let start = line;
        let mut record = Vec::new();
        loop {
            let mut value = String::new();
            let quoted = chars.peek() == Some(&'"');
            if quoted {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err((start, "a quoted field is not closed".into())),
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            value.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            value.push(c);
                        }
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' || c == '\n' || c == '\r' {
                        break;
                    }
                    if c == '"' {
                        return Err((line, "a quote inside an unquoted field".into()));
                    }
                    value.push(c);
                    chars.next();
                }
            }
            record.push(if quoted || !value.is_empty() {
                Some(value)
            } else {
                None
            });
            match chars.next() {
                Some(',') => continue,
                Some('\r') => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    line += 1;
                    break;
                }
                Some('\n') => {
                    line += 1;
                    break;
                }
                None => break,
                Some(_) => return Err((line, "text after a closing quote".into())),
            }
        }
        out.push((start, record));
    }
}

/// The last line of an export: where the chain stood when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportHead {
    /// The organization.
    pub org_id: String,
    /// How many entries the file holds.
    pub events: i64,
    /// `seq` of the file's last entry (0 when it holds none).
    pub last_seq: i64,
    /// `hash` of the file's last entry (the starting `prev_hash` when it holds none).
    pub last_hash: String,
    /// The organization's chain head in the database at export time: (seq, hash).
    pub head_seq: i64,
    /// See `head_seq`.
    pub head_hash: String,
    /// When the export was written.
    pub exported_at: Timestamp,
}

impl ExportHead {
    /// The JSON Lines form: `{"chain_head": {...}}`.
    pub fn to_json(&self) -> Value {
        json!({ "chain_head": {
            "organization_id": self.org_id,
            "events": self.events,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "exported_at": time_ms(&self.exported_at),
        }})
    }

    /// The CSV form: a line whose first field is [`CSV_HEAD_MARK`].
    pub fn to_csv(&self) -> String {
        let f = [
            CSV_HEAD_MARK.to_string(),
            self.org_id.clone(),
            self.events.to_string(),
            self.last_seq.to_string(),
            self.last_hash.clone(),
            self.head_seq.to_string(),
            self.head_hash.clone(),
            time_ms(&self.exported_at),
        ];
        f.iter()
            .map(|s| csv_field(Some(s)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn from_json(v: &Value) -> Result<Self, String> {
        let h = field(v, "chain_head")?;
        let int = |n: &str| {
            field(h, n)?
                .as_i64()
                .ok_or_else(|| format!("chain_head.{n} must be an integer"))
        };
        Ok(ExportHead {
            org_id: string(h, "organization_id")?,
            events: int("events")?,
            last_seq: int("last_seq")?,
            last_hash: string(h, "last_hash")?,
            head_seq: int("head_seq")?,
            head_hash: string(h, "head_hash")?,
            exported_at: parse_time(&string(h, "exported_at")?, "chain_head.exported_at")?,
        })
    }

    fn from_csv(f: &[Option<String>]) -> Result<Self, String> {
        if f.len() != 8 {
            return Err("the chain_head line must have 8 fields".into());
        }
        let s = |i: usize| f[i].clone().unwrap_or_default();
        let int = |i: usize| {
            s(i).parse::<i64>()
                .map_err(|_| "the chain_head line holds a bad number".to_string())
        };
        Ok(ExportHead {
            org_id: s(1),
            events: int(2)?,
            last_seq: int(3)?,
            last_hash: s(4),
            head_seq: int(5)?,
            head_hash: s(6),
            exported_at: parse_time(&s(7), "exported_at")?,
        })
    }
}

/// What a successful [`verify_export`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// Entries checked.
    pub events: i64,
    /// `seq` of the first entry (1 when the file starts at the chain's beginning).
    pub first_seq: i64,
    /// The head line.
    pub head: ExportHead,
}

/// Where and why an exported file does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ExportBreak {
    /// 1-based line of the file (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

fn brk(line: usize, reason: impl Into<String>) -> ExportBreak {
    ExportBreak {
        line,
        reason: reason.into(),
    }
}

/// Checks an exported file (JSON Lines or CSV, told apart by its first line): hashes,
/// links, sequence numbers, one organization, and the final head line. Returns the first
/// broken line.
pub fn verify_export(text: &str) -> Result<ExportReport, ExportBreak> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut records: Vec<(usize, Result<AuditEntry, String>)> = Vec::new();
    let mut head: Option<(usize, ExportHead)> = None;
    if first.trim_start().starts_with('{') {
        for (i, l) in text.lines().enumerate() {
            let n = i + 1;
            if l.trim().is_empty() {
                continue;
            }
            if let Some((hl, _)) = head {
                return Err(brk(n, format!("text after the chain head of line {hl}")));
            }
            let v: Value = serde_json::from_str(l).map_err(|_| brk(n, "not a JSON object"))?;
            if v.get("chain_head").is_some() {
                head = Some((n, ExportHead::from_json(&v).map_err(|e| brk(n, e))?));
            } else {
                records.push((n, entry_from_json(&v)));
            }
        }
    } else {
        let rows = parse_csv(text).map_err(|(l, e)| brk(l, e))?;
        let mut rows = rows.into_iter();
        match rows.next() {
            Some((_, h))
                if h.iter()
                    .map(|f| f.as_deref().unwrap_or(""))
                    .eq(CSV_COLUMNS.iter().copied()) => {}
            Some((l, _)) => {
                return Err(brk(
                    l,
                    "not an audit export: the CSV header is not the expected one",
                ))
            }
            None => return Err(brk(0, "the file is empty")),
        }
        for (n, r) in rows {
            if let Some((hl, _)) = head {
                return Err(brk(n, format!("text after the chain head of line {hl}")));
            }
            if r.first().and_then(|f| f.as_deref()) == Some(CSV_HEAD_MARK) {
                head = Some((n, ExportHead::from_csv(&r).map_err(|e| brk(n, e))?));
            } else {
                records.push((n, entry_from_csv(&r)));
            }
        }
    }
    let mut prev: Option<AuditEntry> = None;
    let mut first_seq = 0;
    let mut count = 0i64;
    for (n, r) in records {
        let e = r.map_err(|e| brk(n, e))?;
        match &prev {
            None => {
                first_seq = e.seq;
                if e.seq == 1 && e.prev_hash != GENESIS_HASH {
                    return Err(brk(
                        n,
                        "entry 1 does not start the chain (prev_hash is not the genesis hash)",
                    ));
                }
                if e.seq < 1 {
                    return Err(brk(n, "seq must be at least 1"));
                }
            }
            Some(p) => {
                if e.org_id != p.org_id {
                    return Err(brk(n, "an entry of another organization"));
                }
                if e.seq != p.seq + 1 {
                    return Err(brk(
                        n,
                        format!(
                            "entry {} is missing (this line holds entry {})",
                            p.seq + 1,
                            e.seq
                        ),
                    ));
                }
                if e.prev_hash != p.hash {
                    return Err(brk(
                        n,
                        format!(
                            "entry {}: prev_hash does not match the entry before it",
                            e.seq
                        ),
                    ));
                }
            }
        }
        if e.recompute_hash() != e.hash {
            return Err(brk(
                n,
                format!("entry {}: content does not match its hash (edited)", e.seq),
            ));
        }
        count += 1;
        prev = Some(e);
    }
    let Some((hl, head)) = head else {
        return Err(brk(
            0,
            "no chain_head line at the end: the file is truncated",
        ));
    };
    if head.events != count {
        return Err(brk(
            hl,
            format!(
                "the head says {} entries but the file holds {count}",
                head.events
            ),
        ));
    }
    if let Some(p) = &prev {
        if p.org_id.as_str() != head.org_id {
            return Err(brk(hl, "the head names another organization"));
        }
        if p.seq != head.last_seq || p.hash != head.last_hash {
            return Err(brk(
                hl,
                format!(
                    "the head says the file ends at entry {} but it ends at entry {}",
                    head.last_seq, p.seq
                ),
            ));
        }
    }
    if head.last_seq > head.head_seq
        || (head.last_seq == head.head_seq && head.last_hash != head.head_hash)
    {
        return Err(brk(
            hl,
            "the file's last entry does not match the chain head it names",
        ));
    }
    Ok(ExportReport {
        events: count,
        first_seq,
        head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn chain(n: i64) -> Vec<AuditEntry> {
        let org = Id::from_trusted("01jorg0000000000000000000a".into());
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|i| {
                let d = AuditDraft {
                    actor: Principal {
                        kind: PrincipalKind::User,
                        id: "u1".into(),
                        name: "Ana \"the admin\", ops".into(),
                    },
                    action: "api_key.create".into(),
                    target: (i % 2 == 0).then(|| Principal {
                        kind: PrincipalKind::ApiKey,
                        id: format!("k{i}"),
                        name: "line\nbreak".into(),
                    }),
                    outcome: Outcome::Success,
                    ip: Some("127.0.0.1".into()),
                    user_agent: (i % 3 == 0).then(String::new),
                    request_id: None,
                    changes: json!({"name": format!("k{i}"), "n": 1.5, "tags": ["a", "b"]}),
                };
                let at = Utc.timestamp_millis_opt(1_700_000_000_123 + i).unwrap();
                let e = AuditEntry::chain(
                    Id::from_trusted(format!("01jent00000000000000000{i:03}")),
                    org.clone(),
                    i,
                    at,
                    d,
                    prev.clone(),
                );
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn head(c: &[AuditEntry]) -> ExportHead {
        let last = c.last().unwrap();
        ExportHead {
            org_id: last.org_id.to_string(),
            events: c.len() as i64,
            last_seq: last.seq,
            last_hash: last.hash.clone(),
            head_seq: last.seq,
            head_hash: last.hash.clone(),
            exported_at: Utc.timestamp_millis_opt(1_800_000_000_000).unwrap(),
        }
    }

    fn jsonl(c: &[AuditEntry], h: &ExportHead) -> String {
        let mut s: String = c.iter().map(|e| format!("{}\n", entry_json(e))).collect();
        s.push_str(&format!("{}\n", h.to_json()));
        s
    }

    fn csv(c: &[AuditEntry], h: &ExportHead) -> String {
        let mut s = format!("{}\r\n", csv_header());
        for e in c {
            s.push_str(&format!("{}\r\n", entry_csv(e)));
        }
        s.push_str(&format!("{}\r\n", h.to_csv()));
        s
    }

    #[test]
    fn both_formats_round_trip_and_verify() {
        let c = chain(6);
        let h = head(&c);
        for text in [jsonl(&c, &h), csv(&c, &h)] {
            let r = verify_export(&text).unwrap();
            assert_eq!((r.events, r.first_seq), (6, 1));
            assert_eq!(r.head, h);
        }
        for e in &c {
            assert_eq!(&entry_from_json(&entry_json(e)).unwrap(), e);
        }
        let rows = parse_csv(&csv(&c, &h)).unwrap();
        assert_eq!(&entry_from_csv(&rows[1].1).unwrap(), &c[0]);
        assert_eq!(&entry_from_csv(&rows[3].1).unwrap(), &c[2]);
    }

    #[test]
    fn a_slice_verifies_from_where_it_starts() {
        let c = chain(6);
        let mut h = head(&c[2..]);
        h.head_seq = 9;
        h.head_hash = "f".repeat(64);
        let r = verify_export(&jsonl(&c[2..], &h)).unwrap();
        assert_eq!(r.first_seq, 3);
    }

    #[test]
    fn tampering_names_the_first_bad_line() {
        let c = chain(5);
        let h = head(&c);
        // An edited field.
        let text = jsonl(&c, &h).replacen("k3", "k9", 1);
        assert_eq!(verify_export(&text).unwrap_err().line, 3);
        // A deleted line.
        let full = jsonl(&c, &h);
        let lines: Vec<&str> = full.lines().collect();
        let cut = [&lines[..1], &lines[2..]].concat().join("\n");
        let e = verify_export(&cut).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        // The tail cut off, head line included.
        let e = verify_export(&lines[..3].join("\n")).unwrap_err();
        assert!(e.reason.contains("truncated"), "{e}");
        // The tail cut off, head line kept.
        let kept = [&lines[..3], &lines[5..]].concat().join("\n");
        assert_eq!(verify_export(&kept).unwrap_err().line, 4);
        // Reordered lines.
        let swapped = [lines[1], lines[0], lines[2], lines[3], lines[4], lines[5]].join("\n");
        assert_eq!(verify_export(&swapped).unwrap_err().line, 2);
        // CSV: an edited name.
        let text = csv(&c, &h).replacen("Ana", "Bob", 1);
        assert_eq!(verify_export(&text).unwrap_err().line, 2);
    }
}
