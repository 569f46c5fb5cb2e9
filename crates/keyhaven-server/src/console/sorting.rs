//! Sortable list columns: `?sort=<column>&dir=asc|desc` in the address (kept with the
//! filters, dropped from pagination's cursor when the sort changes), column headers
//! that are links (so the keyboard reaches them) and say which column sorts the list
//! with `aria-sort` and an arrow. The database sorts; see `keyhaven_store::Sort`.

use keyhaven_store::{Sort, SortDir, SortKey};
use maud::{html, Markup};

use super::forms::{query_string, FormData};

/// A column a list can be sorted by: its name in the address, the store's key, and the
/// direction its header starts with.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// `sort=` value.
    pub name: &'static str,
    /// What the store sorts by.
    pub key: SortKey,
    /// The first click's direction (A to Z for names, newest first for times).
    pub first: SortDir,
}

/// The sort a list page was asked for.
#[derive(Debug, Clone)]
pub struct Sorting {
    columns: &'static [Column],
    active: Option<(Column, SortDir)>,
}

impl Sorting {
    /// The sort in the query `q`, among `columns`; an unknown column or direction is
    /// the list's default order (newest first).
    pub fn from_query(q: &FormData, columns: &'static [Column]) -> Sorting {
        let active = columns.iter().find(|c| c.name == q.get("sort")).map(|c| {
            let dir = SortDir::parse(q.get("dir")).unwrap_or(c.first);
            (*c, dir)
        });
        Sorting { columns, active }
    }

    /// What the store is asked for (`None`: the default order).
    pub fn sort(&self) -> Option<Sort> {
        self.active.map(|(c, dir)| Sort { key: c.key, dir })
    }

    /// The `sort` and `dir` pairs to keep in links (none for the default order).
    pub fn pairs(&self) -> Vec<(&'static str, &'static str)> {
        match self.active {
            Some((c, dir)) => vec![("sort", c.name), ("dir", dir.as_str())],
            None => Vec::new(),
        }
    }

    /// Hidden fields that keep the sort when a filter form is sent.
    pub fn hidden_fields(&self) -> Markup {
        html! {
            @for (k, v) in self.pairs() {
                input type="hidden" name=(k) value=(v);
            }
        }
    }

    /// The header cell of the column named `name`: a link that sorts by it (the other
    /// way round when it already sorts the list), back to the first page of `path`
    /// with the filters `base`. A column this list does not sort by is a plain header.
    pub fn header(&self, label: &str, name: &str, path: &str, base: &[(&str, &str)]) -> Markup {
        let Some(col) = self.columns.iter().find(|c| c.name == name) else {
            return html! { th scope="col" { (label) } };
        };
        let current = self
            .active
            .and_then(|(c, d)| (c.name == col.name).then_some(d));
        let next = current.map_or(col.first, SortDir::flip);
        let mut pairs = base.to_vec();
        pairs.push(("sort", col.name));
        pairs.push(("dir", next.as_str()));
        let href = format!("{path}?{}", query_string(&pairs));
        let (aria, arrow) = match current {
            Some(SortDir::Asc) => (Some("ascending"), "\u{25b2}"),
            Some(SortDir::Desc) => (Some("descending"), "\u{25bc}"),
            None => (None, "\u{2195}"),
        };
        let hint = match (col.key, next) {
            (SortKey::Name | SortKey::Email, SortDir::Asc) => "A to Z",
            (SortKey::Name | SortKey::Email, SortDir::Desc) => "Z to A",
            (SortKey::Expires, SortDir::Asc) => "soonest first",
            (SortKey::Expires, SortDir::Desc) => "latest first",
            (_, SortDir::Asc) => "oldest first",
            (_, SortDir::Desc) => "newest first",
        };
        html! {
            th scope="col" aria-sort=[aria] class={ "sortable" @if current.is_some() { " sorted" } } {
                a class="sort-link" href=(href) title={ "Sort by " (label.to_lowercase()) ", " (hint) } data-sort=(col.name) {
                    (label)
                    span class="sort-arrow" aria-hidden="true" { (arrow) }
                }
            }
        }
    }
}

/// The API keys list's sortable columns.
pub const KEY_COLUMNS: &[Column] = &[
    Column {
        name: "name",
        key: SortKey::Name,
        first: SortDir::Asc,
    },
    Column {
        name: "last_used",
        key: SortKey::LastUsed,
        first: SortDir::Desc,
    },
    Column {
        name: "expires",
        key: SortKey::Expires,
        first: SortDir::Asc,
    },
    Column {
        name: "created",
        key: SortKey::Created,
        first: SortDir::Desc,
    },
];

/// The users list's sortable columns.
pub const USER_COLUMNS: &[Column] = &[
    Column {
        name: "email",
        key: SortKey::Email,
        first: SortDir::Asc,
    },
    Column {
        name: "name",
        key: SortKey::Name,
        first: SortDir::Asc,
    },
    Column {
        name: "last_login",
        key: SortKey::LastUsed,
        first: SortDir::Desc,
    },
    Column {
        name: "created",
        key: SortKey::Created,
        first: SortDir::Desc,
    },
];

/// The service accounts list's sortable columns.
pub const ACCOUNT_COLUMNS: &[Column] = &[
    Column {
        name: "name",
        key: SortKey::Name,
        first: SortDir::Asc,
    },
    Column {
        name: "created",
        key: SortKey::Created,
        first: SortDir::Desc,
    },
];
