//! Reading rows: typed getters, JSON text columns and millisecond timestamps.

use keyhaven_core::id::Id;
use keyhaven_core::time::{from_millis, to_millis, Timestamp};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::error::{StoreError, StoreResult};
use crate::sort::{Column, SortDir};
use crate::{Listing, Page};

pub(crate) fn text(row: &AnyRow, col: &str) -> StoreResult<String> {
    row.try_get::<String, _>(col)
        .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn opt_text(row: &AnyRow, col: &str) -> StoreResult<Option<String>> {
    row.try_get::<Option<String>, _>(col)
        .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn int(row: &AnyRow, col: &str) -> StoreResult<i64> {
    row.try_get::<i64, _>(col)
        .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn opt_int(row: &AnyRow, col: &str) -> StoreResult<Option<i64>> {
    row.try_get::<Option<i64>, _>(col)
        .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn id(row: &AnyRow, col: &str) -> StoreResult<Id> {
    text(row, col).map(Id::from_trusted)
}

pub(crate) fn time(row: &AnyRow, col: &str) -> StoreResult<Timestamp> {
    int(row, col).map(from_millis)
}

pub(crate) fn opt_time(row: &AnyRow, col: &str) -> StoreResult<Option<Timestamp>> {
    opt_int(row, col).map(|v| v.map(from_millis))
}

pub(crate) fn json<T: DeserializeOwned>(row: &AnyRow, col: &str) -> StoreResult<T> {
    let s = text(row, col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn to_json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_string())
}

pub(crate) fn ms(t: &Timestamp) -> i64 {
    to_millis(t)
}

pub(crate) fn opt_ms(t: &Option<Timestamp>) -> Option<i64> {
    t.as_ref().map(to_millis)
}

/// `%…%` pattern for a case-insensitive substring search with `LIKE … ESCAPE '\'`.
pub(crate) fn like_pattern(q: &str) -> String {
    let mut s = String::with_capacity(q.len() + 2);
    s.push('%');
    for c in q.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

/// Pattern that finds `value` as an element of a JSON string array column.
pub(crate) fn json_element_pattern(value: &str) -> String {
    let quoted = to_json(value);
    let mut s = String::with_capacity(quoted.len() + 2);
    s.push('%');
    for c in quoted.chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

/// Like [`json_element_pattern`], but anchored at the start of an element: it is matched
/// against `',' || substr(col, 2)` (the array's `[` turned into `,`), so `"prod"` must
/// follow a `,` and cannot match the tail of another element such as `"x \"prod"`.
/// Needed for free-text values (tags) that may contain quotes.
pub(crate) fn json_element_start_pattern(value: &str) -> String {
    format!("%,{}", &json_element_pattern(value)[1..])
}

/// Builds a listing from `limit + 1` fetched rows.
pub(crate) fn listing<T>(
    mut items: Vec<T>,
    page: &Page,
    id_of: impl Fn(&T) -> String,
) -> Listing<T> {
    let limit = page.limit.clamp(1, 1000) as usize;
    let has_more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = if has_more {
        items.last().map(&id_of)
    } else {
        None
    };
    Listing {
        items,
        has_more,
        next_cursor,
    }
}

/// A tiny builder for `WHERE` clauses with numbered placeholders (`$1`, `$2`, …),
/// which both SQLite and PostgreSQL accept.
pub(crate) struct Where {
    pub(crate) clauses: Vec<String>,
    pub(crate) args: Vec<Arg>,
}

/// A bound value.
#[derive(Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
    OptText(Option<String>),
}

impl Where {
    pub(crate) fn new() -> Self {
        Where {
            clauses: Vec::new(),
            args: Vec::new(),
        }
    }

    /// Adds a clause; every `?` in it becomes the placeholder of `arg`.
    pub(crate) fn push(&mut self, clause: &str, arg: Arg) {
        self.args.push(arg);
        let n = self.args.len();
        self.clauses.push(clause.replace('?', &format!("${n}")));
    }

    /// Adds the pagination clause and returns `(where, limit placeholder)`.
    pub(crate) fn finish(mut self, page: &Page, id_col: &str) -> (String, Vec<Arg>) {
        if let Some(c) = &page.cursor {
            self.push(&format!("{id_col} < ?"), Arg::Text(c.clone()));
        }
        let limit = page.limit.clamp(1, 1000) + 1;
        let w = if self.clauses.is_empty() {
            "1 = 1".to_string()
        } else {
            self.clauses.join(" AND ")
        };
        self.args.push(Arg::Int(limit));
        let n = self.args.len();
        (format!("{w} ORDER BY {id_col} DESC LIMIT ${n}"), self.args)
    }
}

impl Where {
    /// Adds a clause with two arguments: `?1` and `?2` in it become their placeholders.
    pub(crate) fn push2(&mut self, clause: &str, a: Arg, b: Arg) {
        self.args.push(a);
        let n1 = self.args.len();
        self.args.push(b);
        let n2 = self.args.len();
        self.clauses.push(
            clause
                .replace("?1", &format!("${n1}"))
                .replace("?2", &format!("${n2}")),
        );
    }

    /// Like [`Where::finish`], in the order `sort` asks: by `id_col` alone when no
    /// column is given (the cursor is an id), else by the column and then `id_col`
    /// (the cursor is [`crate::sort::cursor`]'s).
    pub(crate) fn finish_sorted(
        mut self,
        page: &Page,
        id_col: &str,
        column: Option<Column>,
        dir: SortDir,
    ) -> (String, Vec<Arg>) {
        let (op, word) = match dir {
            SortDir::Asc => (">", "ASC"),
            SortDir::Desc => ("<", "DESC"),
        };
        let order = match column {
            None => {
                if let Some(c) = &page.cursor {
                    self.push(&format!("{id_col} {op} ?"), Arg::Text(c.clone()));
                }
                format!("{id_col} {word}")
            }
            Some(col) => {
                if let Some(c) = &page.cursor {
                    match crate::sort::after(col, id_col, dir, c) {
                        Some((clause, a, b)) => self.push2(&clause, a, b),
                        None => self.clauses.push("1 = 0".into()),
                    }
                }
                format!("{} {word}, {id_col} {word}", crate::sort::expr(col))
            }
        };
        let limit = page.limit.clamp(1, 1000) + 1;
        let w = if self.clauses.is_empty() {
            "1 = 1".to_string()
        } else {
            self.clauses.join(" AND ")
        };
        self.args.push(Arg::Int(limit));
        let n = self.args.len();
        (format!("{w} ORDER BY {order} LIMIT ${n}"), self.args)
    }
}

pub(crate) fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s),
            Arg::Int(i) => q.bind(i),
            Arg::OptText(s) => q.bind(s),
        };
    }
    q
}
