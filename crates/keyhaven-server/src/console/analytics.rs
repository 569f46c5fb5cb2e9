//! The Analytics page (ANALYTICS.md): verifications over time stacked by code, the
//! busiest keys, the keys failing most, and the breakdown by tag, for the last 24 hours,
//! 7, 30 or 90 days. Every chart is SVG drawn here, with axes, and has its numbers in
//! a table beside it (for screen readers, and for anyone who wants the figures); the
//! range is a set of links, so the page needs no JavaScript.

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::Duration;
use keyhaven_core::permission::Permission;
use keyhaven_core::time::{from_millis, Timestamp};
use keyhaven_service::analytics::{TopKeyView, VerificationQuery};
use keyhaven_store::{CodeFilter, Dimension, Granularity};
use maud::{html, Markup};

use super::auth::Console;
use super::errors::PageResult;
use super::forms::Query;
use super::layout::{self, header, layout};
use super::widgets::{self, number};
use crate::app::AppState;

/// The ranges offered: query value, label, and how far back.
const RANGES: &[(&str, &str)] = &[
    ("24h", "24 hours"),
    ("7d", "7 days"),
    ("30d", "30 days"),
    ("90d", "90 days"),
];

/// Codes in stacking order, with their colours.
const CODES: &[(&str, &str, &str)] = &[
    ("VALID", "Valid", "#12b76a"),
    ("MALFORMED", "Malformed", "#98a2b3"),
    ("NOT_FOUND", "Not found", "#475467"),
    ("EXPIRED", "Expired", "#f79009"),
    ("REVOKED", "Revoked", "#b42318"),
    ("DISABLED", "Disabled", "#7a5af8"),
    ("FORBIDDEN", "Forbidden", "#f04438"),
    ("RATE_LIMITED", "Rate limited", "#2e90fa"),
    ("USAGE_EXCEEDED", "Usage exceeded", "#ee46bc"),
    ("IP_NOT_ALLOWED", "IP not allowed", "#0e9384"),
    ("INVALID", "Refused (before codes)", "#d92d20"),
];

pub(super) fn code_label(code: &str) -> &str {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, l, _)| *l)
        .unwrap_or(code)
}

pub(super) fn code_colour(code: &str) -> &'static str {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, _, k)| *k)
        .unwrap_or("#667085")
}

/// The range of `key`: `(since, until, granularity, buckets)`. 24 hours are hourly
/// (the current hour and the 23 before); the others are whole UTC days, today included.
fn range(key: &str, now: Timestamp) -> (Timestamp, Timestamp, Granularity, i64) {
    let until = now + Duration::milliseconds(1);
    let days = match key {
        "7d" => 7,
        "30d" => 30,
        "90d" => 90,
        _ => {
            let hour = Granularity::Hour.floor(now.timestamp_millis());
            return (
                from_millis(hour) - Duration::hours(23),
                until,
                Granularity::Hour,
                24,
            );
        }
    };
    let today = Granularity::Day.floor(now.timestamp_millis());
    // 89 whole days and today: under the 90-day bound.
    (
        from_millis(today) - Duration::days(days - 1),
        until,
        Granularity::Day,
        days,
    )
}

/// A round number at or above `n` (1, 2 or 5 times a power of ten).
fn nice_max(n: i64) -> i64 {
    let n = n.max(1);
    let mut p = 1i64;
    loop {
        for m in [1, 2, 5] {
            if let Some(v) = p.checked_mul(m) {
                if v >= n {
                    return v;
                }
            }
        }
        match p.checked_mul(10) {
            Some(next) => p = next,
            None => return n,
        }
    }
}

fn esc(s: &str) -> String {
    html! { (s) }.into_string()
}

/// Verifications per bucket, stacked by code, with a y axis (0, half, max) and the
/// first, middle and last buckets labelled on the x axis.
fn stacked_chart(buckets: &[(Timestamp, BTreeMap<String, i64>)], hourly: bool) -> Markup {
    let (w, h) = (480.0_f64, 220.0_f64);
    let (left, right, top, bottom) = (44.0, 8.0, 10.0, 28.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let peak = buckets
        .iter()
        .map(|(_, m)| m.values().sum::<i64>())
        .max()
        .unwrap_or(0);
    let max = nice_max(peak);
    let n = buckets.len().max(1) as f64;
    let slot = plot_w / n;
    let bar = (slot * 0.8).max(0.5);
    let fmt = |t: &Timestamp| {
        if hourly {
            t.format("%H:%M UTC").to_string()
        } else {
            t.format("%b %d").to_string()
        }
    };
    let total: i64 = buckets.iter().map(|(_, m)| m.values().sum::<i64>()).sum();
    let mut svg = format!(
        "<svg class=\"chart analytics-chart\" id=\"calls-chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"calls-title\" aria-describedby=\"calls-table-caption\"><title id=\"calls-title\">Verifications over time, stacked by code: {} in all, at most {} in one {}</title>",
        number(total),
        number(peak),
        if hourly { "hour" } else { "day" }
    );
    for (i, v) in [0, max / 2, max].into_iter().enumerate() {
        let y = top + plot_h - (v as f64 / max as f64) * plot_h;
        let class = if i == 0 { "axis" } else { "grid" };
        svg.push_str(&format!(
            "<line class=\"{class}\" x1=\"{left}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"/>\
             <text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - right,
            left - 6.0,
            y + 4.0,
            number(v)
        ));
    }
    svg.push_str(&format!(
        "<line class=\"axis\" x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\"/>",
        top + plot_h
    ));
    let last = buckets.len().saturating_sub(1);
    for (i, (t, counts)) in buckets.iter().enumerate() {
        let x = left + i as f64 * slot + (slot - bar) / 2.0;
        let sum: i64 = counts.values().sum();
        let mut tip = format!("{}: {}", fmt(t), number(sum));
        for (c, _, _) in CODES {
            if let Some(v) = counts.get(*c) {
                tip.push_str(&format!(", {} {}", code_label(c), number(*v)));
            }
        }
        svg.push_str(&format!("<g class=\"bucket\"><title>{}</title>", esc(&tip)));
        let mut y = top + plot_h;
        for (c, _, colour) in CODES {
            let Some(v) = counts.get(*c) else { continue };
            let bh = *v as f64 / max as f64 * plot_h;
            y -= bh;
            svg.push_str(&format!(
                "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{bar:.2}\" height=\"{bh:.2}\" fill=\"{colour}\"/>"
            ));
        }
        svg.push_str("</g>");
        if i == 0 || i == last || i == last / 2 {
            let anchor = match i {
                0 => "start",
                _ if i == last => "end",
                _ => "middle",
            };
            let tx = match anchor {
                "start" => left + i as f64 * slot,
                "end" => left + (i + 1) as f64 * slot,
                _ => left + (i as f64 + 0.5) * slot,
            };
            svg.push_str(&format!(
                "<text class=\"tick\" x=\"{tx:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
                h - 8.0,
                fmt(t)
            ));
        }
    }
    svg.push_str("</svg>");
    widgets::raw(svg)
}

/// Horizontal bars with labels on the left and an x axis (0, half, max) below.
fn bar_chart(id: &str, title: &str, items: &[(String, i64)]) -> Markup {
    let (w, row) = (420.0_f64, 28.0_f64);
    let (left, right, top, bottom) = (140.0, 16.0, 6.0, 26.0);
    let h = top + bottom + row * items.len().max(1) as f64;
    let plot_w = w - left - right;
    let max = nice_max(items.iter().map(|(_, n)| *n).max().unwrap_or(0));
    let mut svg = format!(
        "<svg class=\"chart analytics-chart bars\" id=\"{id}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"{id}-title\"><title id=\"{id}-title\">{}</title>",
        esc(title)
    );
    let base = top + row * items.len().max(1) as f64;
    for (i, v) in [0, max / 2, max].into_iter().enumerate() {
        let x = left + v as f64 / max as f64 * plot_w;
        let class = if i == 0 { "axis" } else { "grid" };
        svg.push_str(&format!(
            "<line class=\"{class}\" x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{base}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"{}\">{}</text>",
            base + 18.0,
            if i == 2 {
                "end"
            } else if i == 0 {
                "start"
            } else {
                "middle"
            },
            number(v)
        ));
    }
    svg.push_str(&format!(
        "<line class=\"axis\" x1=\"{left}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\"/>",
        w - right
    ));
    for (i, (label, n)) in items.iter().enumerate() {
        let y = top + i as f64 * row;
        let bw = *n as f64 / max as f64 * plot_w;
        let short: String = if label.chars().count() > 16 {
            label.chars().take(15).chain(['…']).collect()
        } else {
            label.clone()
        };
        svg.push_str(&format!(
            "<g><title>{}: {}</title><text class=\"label\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{left}\" y=\"{:.1}\" width=\"{bw:.2}\" height=\"{:.1}\" fill=\"#2e90fa\"/></g>",
            esc(label),
            number(*n),
            left - 8.0,
            y + row / 2.0 + 4.0,
            esc(&short),
            y + 4.0,
            row - 8.0
        ));
    }
    svg.push_str("</svg>");
    widgets::raw(svg)
}

fn key_label(k: &TopKeyView) -> String {
    k.name
        .clone()
        .unwrap_or_else(|| format!("{} (deleted)", k.key_id))
}

fn top_table(id: &str, caption: &str, keys: &[TopKeyView], failing: bool) -> Markup {
    html! {
        div class="table-wrap chart-table" {
            table class="table" id=(id) {
                caption class="sr-caption" { (caption) }
                thead { tr {
                    th scope="col" { "Key" }
                    th scope="col" class="num" { @if failing { "Refused" } @else { "Calls" } }
                    th scope="col" { "By code" }
                } }
                tbody {
                    @for k in keys {
                        tr data-id=(k.key_id) {
                            th scope="row" {
                                @if k.name.is_some() {
                                    a href={ "/api-keys/" (k.key_id) } { (key_label(k)) }
                                } @else {
                                    (key_label(k))
                                }
                            }
                            td class="num" { (number(k.total)) }
                            td class="small" {
                                @for (i, (c, n)) in k.by_code.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    (code_label(c)) " " (number(*n))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /analytics?range=24h|7d|30d|90d`.
pub async fn page(State(state): State<AppState>, c: Console, Query(q): Query) -> PageResult {
    c.require(Permission::ApiKeysView)?;
    let svc = &state.service;
    let key = match q.get("range") {
        k @ ("7d" | "30d" | "90d") => k,
        _ => "24h",
    };
    let (since, until, granularity, n) = range(key, svc.now());
    let hourly = granularity == Granularity::Hour;
    let query = |group_by: Vec<Dimension>| VerificationQuery {
        since: Some(since),
        until: Some(until),
        granularity,
        group_by,
        key_id: None,
        owner_id: None,
        code: None,
        tag: None,
        limit: 1000,
        after: None,
    };
    // Calls over time by code: at most 90 buckets × 11 codes, a page or two.
    let mut buckets: Vec<(Timestamp, BTreeMap<String, i64>)> = (0..n)
        .map(|i| {
            let t = from_millis(granularity.floor(since.timestamp_millis()) + i * granularity.ms());
            (t, BTreeMap::new())
        })
        .collect();
    let mut tags: BTreeMap<String, i64> = BTreeMap::new();
    for (dims, into_tags) in [(vec![Dimension::Code], false), (vec![Dimension::Tag], true)] {
        let mut q = query(dims);
        // Bounded: tags may be many; the breakdown shows the busiest of the first 20,000 rows.
        for _ in 0..20 {
            let (page, _, _) = svc.verification_analytics(&c.caller, &q).await?;
            for r in &page.rows {
                if into_tags {
                    if let Some(t) = &r.tag {
                        *tags.entry(t.clone()).or_insert(0) += r.count;
                    }
                } else {
                    let i =
                        (r.time - granularity.floor(since.timestamp_millis())) / granularity.ms();
                    if let Some((_, m)) = usize::try_from(i).ok().and_then(|i| buckets.get_mut(i)) {
                        *m.entry(r.code.clone().unwrap_or_default()).or_insert(0) += r.count;
                    }
                }
            }
            match (page.has_more, page.rows.last()) {
                (true, Some(last)) => q.after = Some(last.clone()),
                _ => break,
            }
        }
    }
    let (top, _, _) = svc
        .top_keys(&c.caller, Some(since), Some(until), CodeFilter::All, 10)
        .await?;
    let (failing, _, _) = svc
        .top_keys(&c.caller, Some(since), Some(until), CodeFilter::Failing, 10)
        .await?;
    let mut tag_list: Vec<(String, i64)> = tags.into_iter().collect();
    tag_list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    tag_list.truncate(10);

    let total: i64 = buckets.iter().map(|(_, m)| m.values().sum::<i64>()).sum();
    let valid: i64 = buckets
        .iter()
        .map(|(_, m)| m.get("VALID").copied().unwrap_or(0))
        .sum();
    let present: Vec<&str> = CODES
        .iter()
        .map(|(c, _, _)| *c)
        .filter(|c| buckets.iter().any(|(_, m)| m.contains_key(*c)))
        .collect();
    let label = RANGES
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, l)| *l)
        .unwrap_or("24 hours");
    let fmt = |t: &Timestamp| {
        if hourly {
            t.format("%Y-%m-%d %H:00 UTC").to_string()
        } else {
            t.format("%Y-%m-%d").to_string()
        }
    };
    let body = html! {
        (header("Analytics", Some("Verifications of this organization's keys: who calls, how often, and what fails."), html! {}))
        nav class="tabs range-tabs" aria-label="Time range" {
            @for (k, l) in RANGES {
                a href={ "/analytics?range=" (k) } aria-current=[(*k == key).then_some("page")] { (l) }
            }
        }
        div class="metrics analytics-metrics" {
            div class="metric" { div class="metric-label" { "Verifications (" (label) ")" } div class="metric-value" id="metric-total" { (number(total)) } }
            div class="metric" { div class="metric-label" { "Valid" } div class="metric-value" id="metric-valid" { (number(valid)) } }
            div class="metric" { div class="metric-label" { "Refused" } div class="metric-value" id="metric-refused" { (number(total - valid)) } }
            div class="metric" { div class="metric-label" { "Valid share" } div class="metric-value" {
                @if total > 0 { (valid * 100 / total) "%" } @else { "—" }
            } }
        }
        section class="card" aria-labelledby="calls-heading" {
            h2 id="calls-heading" { "Calls over time" }
            @if total == 0 {
                div class="chart-empty" id="calls-empty" { p class="muted" { "No verifications in the last " (label) "." } }
            } @else {
                div class="chart-pair" {
                    figure class="chart-wrap" {
                        (stacked_chart(&buckets, hourly))
                        figcaption class="legend" {
                            @for c in &present {
                                span class="legend-item" {
                                    (widgets::raw(format!("<svg class=\"swatch-svg\" width=\"10\" height=\"10\" aria-hidden=\"true\"><rect width=\"10\" height=\"10\" rx=\"2\" fill=\"{}\"/></svg>", code_colour(c))))
                                    " " (code_label(c))
                                }
                            }
                        }
                    }
                    div class="table-wrap chart-table" {
                        table class="table" id="calls-table" {
                            caption id="calls-table-caption" class="sr-caption" { "Verifications per " @if hourly { "hour" } @else { "day" } " by code, the last " (label) }
                            thead { tr {
                                th scope="col" { @if hourly { "Hour" } @else { "Day" } }
                                th scope="col" class="num" { "Total" }
                                @for c in &present { th scope="col" class="num" { (code_label(c)) } }
                            } }
                            tbody {
                                @for (t, m) in buckets.iter().rev() {
                                    tr {
                                        th scope="row" {
                                            @if hourly { (widgets::time(t)) } @else { (fmt(t)) }
                                        }
                                        td class="num" { (number(m.values().sum::<i64>())) }
                                        @for c in &present { td class="num" { (number(m.get(*c).copied().unwrap_or(0))) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        div class="grid-2 analytics-grid" {
            section class="card" aria-labelledby="top-heading" {
                h2 id="top-heading" { "Top keys" }
                @if top.is_empty() {
                    p class="muted" id="top-empty" { "No key was used in the last " (label) "." }
                } @else {
                    @let items: Vec<(String, i64)> = top.iter().map(|k| (key_label(k), k.total)).collect();
                    (bar_chart("top-chart", &format!("The busiest keys, the last {label}"), &items))
                    (top_table("top-table", &format!("The busiest keys, the last {label}"), &top, false))
                }
            }
            section class="card" aria-labelledby="failing-heading" {
                h2 id="failing-heading" { "Top failing keys" }
                @if failing.is_empty() {
                    p class="muted" id="failing-empty" { "No key was refused in the last " (label) "." }
                } @else {
                    @let items: Vec<(String, i64)> = failing.iter().map(|k| (key_label(k), k.total)).collect();
                    (bar_chart("failing-chart", &format!("The keys refused most, the last {label}"), &items))
                    (top_table("failing-table", &format!("The keys refused most, the last {label}"), &failing, true))
                }
            }
        }
        section class="card" aria-labelledby="tags-heading" {
            h2 id="tags-heading" { "By tag" }
            @if tag_list.is_empty() {
                p class="muted" id="tags-empty" { "No tagged verifications in the last " (label) ". Send "
                    code { "\"tags\"" } " with " code { "POST /v1/keys/verify" } " or " code { "X-Keyhaven-Tags" } " with " code { "/v1/auth" } "." }
            } @else {
                div class="chart-pair" {
                    (bar_chart("tags-chart", &format!("Verifications by tag, the last {label}"), &tag_list))
                    div class="table-wrap chart-table" {
                        table class="table" id="tags-table" {
                            caption class="sr-caption" { "Verifications by tag, the last " (label) }
                            thead { tr { th scope="col" { "Tag" } th scope="col" class="num" { "Calls" } } }
                            tbody {
                                @for (t, n) in &tag_list {
                                    tr { th scope="row" { code { (t) } } td class="num" { (number(*n)) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        p class="muted small" { "Hours and days are UTC buckets (the hours in the tables show in your time zone, UTC in the tooltip). Counts reach this page within a few seconds of the verification." }
    };
    Ok(layout::ok(layout(&c, "Analytics", "analytics", body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(500), 500);
        assert_eq!(nice_max(501), 1000);
        assert!(nice_max(i64::MAX) >= i64::MAX / 2);
    }

    #[test]
    fn ranges_stay_within_the_query_bound() {
        let now = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 22, 12, 34, 0)
            .single()
            .unwrap();
        for (k, _) in RANGES {
            let (since, until, _, _) = range(k, now);
            assert!(
                until - since <= keyhaven_service::analytics::MAX_RANGE,
                "{k}"
            );
            assert!(until > now);
        }
        let (since, _, g, n) = range("24h", now);
        assert_eq!(since.to_rfc3339(), "2026-11-21T13:00:00+00:00");
        assert_eq!((g, n), (Granularity::Hour, 24));
        let (since, _, g, n) = range("7d", now);
        assert_eq!(since.to_rfc3339(), "2026-11-16T00:00:00+00:00");
        assert_eq!((g, n), (Granularity::Day, 7));
    }
}
