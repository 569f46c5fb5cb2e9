//! Small pieces of markup the pages share: times and dates, status badges, chips,
//! banners, empty states, the shown-once secret, pagination.

use keyhaven_core::time::Timestamp;
use maud::{html, Markup, PreEscaped};

use super::forms::query_string;

/// A timestamp: UTC in the markup, converted to the browser's zone by app.js.
pub fn time(t: &Timestamp) -> Markup {
    let iso = keyhaven_core::time::rfc3339(t);
    let utc = t.format("%Y-%m-%d %H:%M UTC").to_string();
    html! { time datetime=(iso) title=(utc) data-local="datetime" { (utc) } }
}

/// A date only (expiry columns).
pub fn date(t: &Timestamp) -> Markup {
    let iso = keyhaven_core::time::rfc3339(t);
    let utc = t.format("%Y-%m-%d %H:%M UTC").to_string();
    html! { time datetime=(iso) title=(utc) data-local="date" { (t.format("%Y-%m-%d")) } }
}

/// "3 minutes ago", or "Never".
pub fn relative(now: Timestamp, t: Option<Timestamp>) -> Markup {
    let Some(t) = t else {
        return html! { span class="muted" { "Never" } };
    };
    let secs = (now - t).num_seconds().max(0);
    let text = match secs {
        0..=59 => "just now".to_string(),
        60..=3599 => plural(secs / 60, "minute"),
        3600..=86_399 => plural(secs / 3600, "hour"),
        86_400..=2_591_999 => plural(secs / 86_400, "day"),
        _ => plural(secs / 2_592_000, "month"),
    };
    let iso = keyhaven_core::time::rfc3339(&t);
    let utc = t.format("%Y-%m-%d %H:%M UTC").to_string();
    html! { time datetime=(iso) title=(utc) { (text) } }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

/// A coloured status badge.
pub fn badge(status: &str) -> Markup {
    let label = match status {
        "active" => "Active",
        "revoked" => "Revoked",
        "expired" => "Expired",
        "suspended" => "Suspended",
        "archived" => "Archived",
        "inactive" => "Inactive",
        "success" => "Success",
        "denied" => "Denied",
        "error" => "Error",
        "delivered" => "Delivered",
        "pending" => "Pending",
        "failed" => "Failed",
        other => other,
    };
    html! { span class={ "badge badge-" (status) } { (label) } }
}

/// Small grey chips for tags, roles and scopes.
pub fn chips(items: &[String], class: &str) -> Markup {
    html! {
        @if items.is_empty() { span class="muted" { "—" } }
        @for i in items { span class={ "chip " (class) } { (i) } " " }
    }
}

/// A success or information banner.
pub fn notice(text: &str) -> Markup {
    html! { div class="banner banner-info" role="status" { (text) } }
}

/// An empty state.
pub fn empty(title: &str, text: &str, action: Markup) -> Markup {
    html! {
        div class="empty" {
            h3 { (title) }
            p class="muted" { (text) }
            (action)
        }
    }
}

/// The secret shown once: a read-only field with Copy and Show / Hide.
pub fn secret_box(label: &str, id: &str, secret: &str) -> Markup {
    html! {
        div class="secret-field" {
            label for=(id) { (label) }
            div class="secret-row" {
                input id=(id) type="password" readonly data-secret="once" value=(secret) autocomplete="off" spellcheck="false";
                button type="button" class="btn" data-copy=(id) { "Copy" }
                button type="button" class="btn" data-toggle-secret=(id) aria-controls=(id) { "Show" }
            }
        }
    }
}

/// "First page" / "Next page" links for a cursor-paged list at `path` with the filter
/// pairs `base`.
pub fn pager(path: &str, base: &[(&str, &str)], paged: bool, next: Option<&str>) -> Markup {
    html! {
        @if paged || next.is_some() {
            nav class="pager" aria-label="Pagination" {
                @if paged { a class="btn" href={ (path) "?" (query_string(base)) } { "First page" } }
                @if let Some(h) = next { a class="btn" rel="next" href=(h) { "Next page" } }
            }
        }
    }
}

/// Inline SVG markup that was built by the server.
pub fn raw(s: String) -> Markup {
    PreEscaped(s)
}
