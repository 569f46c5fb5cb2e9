//! The audit log with its filters (actor, action, outcome, days), its own menu entry.

use chrono::NaiveDate;
use keyhaven_core::audit::Outcome;
use keyhaven_core::permission::Permission;
use keyhaven_store::{AuditFilter, Page, ServiceAccountFilter, UserFilter};
use maud::{html, Markup};

use super::auth::Console;
use super::errors::{self, PageResult};
use super::forms::{self, FormData};
use super::layout::{self, header, layout};
use super::widgets::{self, badge};
use crate::app::AppState;

fn day(s: &str, offset: i64, end: bool) -> Option<keyhaven_core::time::Timestamp> {
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    let d = if end { d.succ_opt()? } else { d };
    forms::local_day(d, offset, false)
}

/// The people and programs the actor filter offers: users and service accounts the
/// caller may list, plus whoever acts on the page shown (keys, the system).
async fn actor_options(
    state: &AppState,
    c: &Console,
    seen: &[keyhaven_core::principal::Principal],
) -> Result<Vec<(String, String)>, errors::PageError> {
    let mut out: Vec<(String, String)> = Vec::new();
    if c.can(Permission::UsersView) {
        let users = state
            .service
            .list_users(
                &c.caller,
                &UserFilter {
                    status: None,
                    role: None,
                    q: None,
                },
                &Page {
                    limit: 200,
                    cursor: None,
                },
            )
            .await?;
        out.extend(
            users
                .items
                .into_iter()
                .map(|u| (u.id.to_string(), format!("{} (user)", u.email))),
        );
    }
    if c.can(Permission::ServiceAccountsView) {
        let accounts = state
            .service
            .list_service_accounts(
                &c.caller,
                &ServiceAccountFilter {
                    statuses: Vec::new(),
                    q: None,
                    external_id: None,
                },
                &Page {
                    limit: 200,
                    cursor: None,
                },
            )
            .await?;
        out.extend(
            accounts
                .items
                .into_iter()
                .map(|s| (s.id.to_string(), format!("{} (service account)", s.name))),
        );
    }
    for p in seen {
        if !p.id.is_empty() && !out.iter().any(|(id, _)| *id == p.id) {
            out.push((
                p.id.clone(),
                format!("{} ({})", p.name, p.kind.as_str().replace('_', " ")),
            ));
        }
    }
    Ok(out)
}

fn changes_view(v: &serde_json::Value) -> Markup {
    html! {
        @match v.as_object() {
            Some(m) if !m.is_empty() => {
                table class="changes" {
                    thead { tr { th { "Field" } th { "Value" } } }
                    tbody {
                        @for (k, val) in m {
                            tr {
                                th scope="row" { (k) }
                                td {
                                    @if let (Some(from), Some(to)) = (val.get("from"), val.get("to")) {
                                        code { (from) } " → " code { (to) }
                                    } @else {
                                        code { (val) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            _ => { p class="muted small" { "No field changes recorded." } }
        }
    }
}

/// `GET /settings/api-access?tab=activity`.
pub async fn activity(state: AppState, c: Console, q: FormData) -> PageResult {
    c.require(Permission::AuditView)?;
    let offset = forms::tz_offset(&q);
    let filter = AuditFilter {
        actor_id: q.opt("actor_id"),
        action: q.opt("action"),
        target_id: None,
        outcome: Outcome::parse(q.get("outcome")),
        since: day(q.get("since"), offset, false),
        until: day(q.get("until"), offset, true),
    };
    let listing = state
        .service
        .list_audit_events(
            &c.caller,
            &filter,
            &Page {
                limit: 50,
                cursor: q.opt("cursor"),
            },
        )
        .await?;
    let seen: Vec<_> = listing
        .items
        .iter()
        .map(|e| e.draft.actor.clone())
        .collect();
    let actors = actor_options(&state, &c, &seen).await?;
    let sinks = super::audit_sinks::section(&state, &c).await?;
    let outcome = q.get("outcome");
    let actor = q.get("actor_id");
    let tz = offset.to_string();
    let base = [
        ("tab", "activity"),
        ("actor_id", actor),
        ("action", q.get("action")),
        ("outcome", outcome),
        ("since", q.get("since")),
        ("until", q.get("until")),
        (
            "tz_offset",
            if q.has("tz_offset") { tz.as_str() } else { "" },
        ),
    ];
    let next_href = match (listing.has_more, listing.next_cursor.as_deref()) {
        (true, Some(cur)) => {
            let mut n = base.to_vec();
            n.push(("cursor", cur));
            Some(format!("/settings/api-access?{}", forms::query_string(&n)))
        }
        _ => None,
    };
    let filtered = [
        actor,
        q.get("action"),
        outcome,
        q.get("since"),
        q.get("until"),
    ]
    .iter()
    .any(|v| !v.is_empty());
    let body = html! {
        (header("Audit log", Some("Who did what in this organization, newest first: every change, sign-in and refused request, in a hash chain."), html! {}))
        form class="filters" method="get" action="/settings/api-access" role="search" aria-label="Filter activity" {
            input type="hidden" name="tab" value="activity";
            (forms::tz_field())
            div class="field" {
                label for="filter-actor" { "Actor" }
                select id="filter-actor" name="actor_id" {
                    option value="" selected[actor.is_empty()] { "Anyone" }
                    @for (id, label) in &actors { option value=(id) selected[actor == id] { (label) } }
                    @if !actor.is_empty() && !actors.iter().any(|(id, _)| id == actor) {
                        option value=(actor) selected { (actor) }
                    }
                }
            }
            div class="field" { label for="filter-action" { "Action" } input id="filter-action" type="text" name="action" value=(q.get("action")) placeholder="api_key.create"; }
            div class="field" {
                label for="filter-outcome" { "Outcome" }
                select id="filter-outcome" name="outcome" {
                    option value="" selected[outcome.is_empty()] { "Any outcome" }
                    @for o in ["success", "denied", "error"] { option value=(o) selected[outcome == o] { (o[..1].to_uppercase()) (&o[1..]) } }
                }
            }
            div class="field" { label for="filter-since" { "From" } input id="filter-since" type="date" name="since" value=(q.get("since")); }
            div class="field" { label for="filter-until" { "To" } input id="filter-until" type="date" name="until" value=(q.get("until")); }
            div class="filter-actions" {
                button class="btn" type="submit" { "Apply filters" }
                @if filtered { a class="btn btn-link" href="/settings/api-access?tab=activity" { "Clear filters" } }
            }
        }
        @if listing.items.is_empty() {
            (widgets::empty("No activity", "Nothing matches these filters yet.", html! {}))
        } @else {
            div class="table-wrap" {
                table class="table" id="activity-table" {
                    thead { tr { th { "Time" } th { "Actor" } th { "Action" } th { "Target" } th { "Outcome" } th { "Details" } } }
                    tbody {
                        @for e in &listing.items {
                            tr data-id=(e.id) {
                                td { (widgets::time(&e.at)) }
                                td {
                                    @if e.draft.actor.id.is_empty() {
                                        (e.draft.actor.name)
                                    } @else {
                                        a class="actor-link" href={ "/settings/api-access?" (forms::query_string(&[("tab", "activity"), ("actor_id", e.draft.actor.id.as_str())])) }
                                            title={ "Show only what " (e.draft.actor.name) " did" } { (e.draft.actor.name) }
                                    }
                                    div class="muted small" { (e.draft.actor.kind.as_str().replace('_', " ")) }
                                }
                                td { code { (e.draft.action) } }
                                td { @match &e.draft.target { Some(t) => { (t.name) div class="muted small" { (t.kind.as_str().replace('_', " ")) } }, None => span class="muted" { "—" } } }
                                td { (badge(e.draft.outcome.as_str())) }
                                td {
                                    details class="expand" {
                                        summary { "Changes" }
                                        (changes_view(&e.draft.changes))
                                        dl class="props small" {
                                            @if let Some(ip) = &e.draft.ip { dt { "Source IP" } dd { (ip) } }
                                            @if let Some(ua) = &e.draft.user_agent { dt { "User agent" } dd class="user-agent" { (ua) } }
                                            @if let Some(r) = &e.draft.request_id { dt { "Request ID" } dd { code { (r) } } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (widgets::pager("/settings/api-access", &base, q.has("cursor"), next_href.as_deref()))
        }
        (sinks)
    };
    Ok(layout::ok(layout(&c, "Audit log", "audit", body)))
}
