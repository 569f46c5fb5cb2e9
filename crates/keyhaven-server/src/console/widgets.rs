//! Small pieces of markup the pages share: times and dates, status badges, chips,
//! banners, empty states, the shown-once secret, pagination, numbers, rate limits and
//! credit balances.

use keyhaven_core::time::Timestamp;
use keyhaven_core::usage_control::{Credits, NamedLimit, RefillInterval};
use keyhaven_service::api_keys::OwnerHold;
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
        "disabled" => "Disabled",
        "ready" => "Ready",
        "imported" => "Imported",
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

/// Why an otherwise live key or credential does not verify: its owner stops it.
pub fn hold_reason(hold: OwnerHold) -> &'static str {
    match hold {
        OwnerHold::UserInactive => {
            "Its owner's user account is inactive, so it is refused until the user is made active again."
        }
        OwnerHold::UserGone => "Its owner's user account no longer exists, so it is refused.",
        OwnerHold::AccountSuspended => {
            "Its service account is suspended, so it is refused until the account is reactivated."
        }
        OwnerHold::AccountArchived => "Its service account is archived, so it is refused.",
        OwnerHold::AccountGone => "Its service account no longer exists, so it is refused.",
    }
}

/// The status badge of a key or credential: `status` as computed from its own dates,
/// except that a live one whose owner stops it reads "Disabled", with the reason in
/// its title.
pub fn key_badge(status: &str, hold: Option<OwnerHold>) -> Markup {
    match hold {
        Some(h) if status == "active" => {
            let reason = hold_reason(h);
            html! {
                span class="badge badge-disabled" title=(reason) data-reason=(reason) {
                    "Disabled" span class="sr-only" { " — " (reason) }
                }
            }
        }
        _ => badge(status),
    }
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

/// A whole number with thousands separators: `5000` → `5,000`.
pub fn number(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A window in words: `60000` → `minute`, `300000` → `5 minutes`, `1500` → `1.5 seconds`.
pub fn window(duration_ms: i64) -> String {
    let (count, unit) = super::forms::window_parts(duration_ms);
    let singular = unit.trim_end_matches('s');
    if count == "1" {
        singular.to_string()
    } else {
        let count = count
            .parse::<i64>()
            .map(number)
            .unwrap_or_else(|_| count.clone());
        format!("{count} {unit}")
    }
}

/// A limit in words: `100 per minute`.
pub fn rate(l: &NamedLimit) -> String {
    format!("{} per {}", number(l.limit), window(l.duration_ms))
}

/// Where a limit comes from: the key's own, or shared by its service account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// The key's own limit (`scope: "key"` in a verification's answer).
    Key,
    /// A limit of the key's service account, shared by all its keys
    /// (`scope: "service_account"`).
    ServiceAccount,
}

impl LimitScope {
    fn as_str(self) -> &'static str {
        match self {
            LimitScope::Key => "key",
            LimitScope::ServiceAccount => "service_account",
        }
    }
}

/// A table of rate limits: name, rate, when it applies, and scope.
pub fn limits_table(id: &str, limits: &[(&NamedLimit, LimitScope)]) -> Markup {
    html! {
        div class="table-wrap limits-wrap" {
            table class="table limits-table" id=(id) {
                thead { tr { th { "Name" } th { "Limit" } th { "Applies" } th { "Scope" } } }
                tbody {
                    @for (l, scope) in limits {
                        tr data-name=(l.name) data-scope=(scope.as_str()) {
                            td class="limit-name" { code { (l.name) } }
                            td class="nowrap" data-label="Limit" { (rate(l)) }
                            td data-label="Applies" {
                                @if l.auto_apply { "To every call" }
                                @else { "Only when a request names it" }
                            }
                            td class="nowrap" data-label="Scope" {
                                @match scope {
                                    LimitScope::Key => "This key",
                                    LimitScope::ServiceAccount => "Service account (shared)",
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How a refill reads: `Refills to 5,000 on day 1 of each month`.
pub fn refill_text(c: &Credits) -> Option<String> {
    let r = c.refill?;
    Some(match r.interval {
        RefillInterval::Daily => {
            format!("Refills to {} every day at 00:00 UTC", number(r.amount))
        }
        RefillInterval::Monthly => {
            let day = r.day_of_month.unwrap_or(1);
            let short = if day > 28 {
                " (the last day in shorter months)"
            } else {
                ""
            };
            format!(
                "Refills to {} on day {day} of each month{short}",
                number(r.amount)
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_windows_read_as_words() {
        assert_eq!(number(0), "0");
        assert_eq!(number(999), "999");
        assert_eq!(number(5_000), "5,000");
        assert_eq!(number(1_000_000_000_000), "1,000,000,000,000");
        assert_eq!(number(-1_234), "-1,234");
        assert_eq!(window(60_000), "minute");
        assert_eq!(window(300_000), "5 minutes");
        assert_eq!(window(90_000), "90 seconds");
        assert_eq!(window(86_400_000), "day");
        assert_eq!(window(30 * 86_400_000), "30 days");
        assert_eq!(window(1_500), "1.5 seconds");
        let l = NamedLimit {
            name: "requests".into(),
            limit: 100,
            duration_ms: 60_000,
            auto_apply: true,
        };
        assert_eq!(rate(&l), "100 per minute");
    }

    #[test]
    fn refills_read_as_words() {
        use keyhaven_core::usage_control::Refill;
        let mut c = Credits {
            remaining: 10,
            refill: Some(Refill {
                interval: RefillInterval::Monthly,
                amount: 5_000,
                day_of_month: Some(1),
            }),
            low_threshold: None,
        };
        assert_eq!(
            refill_text(&c).unwrap(),
            "Refills to 5,000 on day 1 of each month"
        );
        c.refill = None;
        assert!(refill_text(&c).is_none());
    }
}
