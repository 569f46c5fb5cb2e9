//! Sorting of the lists of keys, users and service accounts by one column, paged by a
//! cursor that holds the last item's sort value and id (keyset pagination), so a page
//! follows the one before it exactly however the column's values repeat.

use crate::row::Arg;

/// The column a list is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Creation time (the default, newest first).
    #[default]
    Created,
    /// Name, case-insensitively (a user's display name).
    Name,
    /// A user's email.
    Email,
    /// Last use (a user's last sign-in); never used sorts as the oldest.
    LastUsed,
    /// Expiry; never expiring sorts as the latest.
    Expires,
}

impl SortKey {
    /// The key named `s` in a query (`created`, `name`, `email`, `last_used`, `expires`).
    pub fn parse(s: &str) -> Option<SortKey> {
        Some(match s {
            "created" => SortKey::Created,
            "name" => SortKey::Name,
            "email" => SortKey::Email,
            "last_used" => SortKey::LastUsed,
            "expires" => SortKey::Expires,
            _ => return None,
        })
    }

    /// The name [`SortKey::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Created => "created",
            SortKey::Name => "name",
            SortKey::Email => "email",
            SortKey::LastUsed => "last_used",
            SortKey::Expires => "expires",
        }
    }
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortDir {
    /// Smallest first (A to Z, oldest first).
    Asc,
    /// Largest first (Z to A, newest first).
    #[default]
    Desc,
}

impl SortDir {
    /// `asc` or `desc`.
    pub fn parse(s: &str) -> Option<SortDir> {
        match s {
            "asc" => Some(SortDir::Asc),
            "desc" => Some(SortDir::Desc),
            _ => None,
        }
    }

    /// The name [`SortDir::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            SortDir::Asc => "asc",
            SortDir::Desc => "desc",
        }
    }

    /// The other direction.
    pub fn flip(self) -> SortDir {
        match self {
            SortDir::Asc => SortDir::Desc,
            SortDir::Desc => SortDir::Asc,
        }
    }
}

/// A list's order: one column and a direction; ties are broken by id in the same
/// direction. `Sort::default()` is newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sort {
    /// The column.
    pub key: SortKey,
    /// The direction.
    pub dir: SortDir,
}

/// How a list sorts by one of its columns, in SQL.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Column {
    /// An integer column (Unix ms); NULL sorts as the given value.
    Int(&'static str, i64),
    /// A text column compared case-insensitively (`lower()` on both sides).
    Lower(&'static str),
    /// A text column compared as stored.
    Text(&'static str),
}

/// The value a row has in a sort column, for its cursor.
pub(crate) enum Value {
    /// Of [`Column::Int`] (NULL already replaced).
    Int(i64),
    /// Of [`Column::Lower`] or [`Column::Text`], as stored.
    Text(String),
}

impl Value {
    fn render(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Text(s) => s.clone(),
        }
    }
}

/// The cursor of a row in a list sorted by a column: `<id>.<value>` (ids never hold a
/// dot).
pub(crate) fn cursor(id: &str, value: &Value) -> String {
    format!("{id}.{}", value.render())
}

/// The SQL expression a column sorts by.
pub(crate) fn expr(c: Column) -> String {
    match c {
        Column::Int(col, null_as) => format!("COALESCE({col}, {null_as})"),
        Column::Lower(col) => format!("lower({col})"),
        Column::Text(col) => col.to_string(),
    }
}

/// The clause that keeps the rows after `cursor` in the order `(expr(c), id_col)`
/// going `dir`, with its arguments (placeholders `?1`, `?2` for the [`crate::row::Where`]
/// builder to number); `None` for a cursor that is not one of this sort's (no row
/// follows it).
pub(crate) fn after(
    c: Column,
    id_col: &str,
    dir: SortDir,
    cursor: &str,
) -> Option<(String, Arg, Arg)> {
    let (id, value) = cursor.split_once('.')?;
    let op = match dir {
        SortDir::Asc => ">",
        SortDir::Desc => "<",
    };
    let e = expr(c);
    let (v, arg) = match c {
        Column::Int(..) => ("?1".to_string(), Arg::Int(value.parse().ok()?)),
        Column::Lower(_) => (
            "lower(CAST(?1 AS TEXT))".to_string(),
            Arg::Text(value.into()),
        ),
        Column::Text(_) => ("CAST(?1 AS TEXT)".to_string(), Arg::Text(value.into())),
    };
    Some((
        format!("({e} {op} {v} OR ({e} = {v} AND {id_col} {op} ?2))"),
        arg,
        Arg::Text(id.to_string()),
    ))
}
