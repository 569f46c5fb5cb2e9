//! API keys: list with metrics and filters, create, details with the usage chart, edit,
//! regenerate, revoke, delete (single and bulk).

use axum::extract::{Path, State};
use chrono::{Duration, NaiveDate};
use keyhaven_core::api_key::{ApiKey, KeyStatus};
use keyhaven_core::id::Id;
use keyhaven_core::permission::Permission;
use keyhaven_core::principal::PrincipalKind;
use keyhaven_core::service_account::{ServiceAccount, ServiceAccountStatus};
use keyhaven_core::time::Timestamp;
use keyhaven_core::usage_control::{self, CreditOp, Credits, Refill, RefillInterval, MAX_CREDITS};
use keyhaven_store::{ApiKeyFilter, Page, ServiceAccountFilter};
use maud::{html, Markup};

use super::auth::Console;
use super::errors::{self, PageResult};
use super::forms::{
    self, checklist, csrf, field, form_error, parse_whole, FieldErrors, FormData, Query,
};
use super::layout::{self, header, layout};
use super::sorting::{Sorting, KEY_COLUMNS};
use super::widgets::{self, chips, key_badge, number, relative, LimitScope};
use crate::app::AppState;
use keyhaven_service::api_keys::{
    ApiKeyPatch, CreateApiKey, DailyUsage, NewApiKey, OwnerHold, OwnerRef, RegenerateApiKey,
    UpdateApiKey,
};
use keyhaven_service::ServiceError;
use std::collections::HashMap;

const PAGE_SIZE: i64 = 20;

const HINT_EXTERNAL_ID: &str =
    "Optional: the id of the customer or system this key belongs to in your world (up to 255 characters). Verification answers return it.";

/// The status shown: `disabled` for a live key turned off (`enabled: false`).
fn status_of(k: &ApiKey, now: Timestamp) -> &'static str {
    match k.status(now) {
        KeyStatus::Active if !k.enabled => "disabled",
        s => s.as_str(),
    }
}

fn notice_text(q: &FormData) -> Option<String> {
    match q.get("notice") {
        "deleted" => Some("API key deleted.".into()),
        "bulk_deleted" => {
            let n: i64 = q.get("n").parse().unwrap_or(0);
            Some(if n == 1 {
                "Deleted 1 API key.".into()
            } else {
                format!("Deleted {n} API keys.")
            })
        }
        "none_selected" => Some("Select at least one API key first.".into()),
        "bulk_revoked" => {
            let n: i64 = q.get("n").parse().unwrap_or(0);
            Some(if n == 1 {
                "Revoked 1 API key. It no longer verifies.".into()
            } else {
                format!("Revoked {n} API keys. They no longer verify.")
            })
        }
        "revoked" => Some("API key revoked. It no longer verifies.".into()),
        "disabled" => {
            Some("API key turned off. It answers DISABLED until you turn it on again.".into())
        }
        "enabled" => Some("API key turned on. It verifies again.".into()),
        "updated" => Some("API key updated.".into()),
        "secret_shown" => Some(
            "The key's secret was shown once and can't be shown again. If it was lost, regenerate the key."
                .into(),
        ),
        "credits" => q
            .get("n")
            .parse::<i64>()
            .ok()
            .map(|n| format!("Credits adjusted. The balance is now {}.", number(n))),
        _ => None,
    }
}

/// The keys table, shared with the service account page.
/// `holds`: the owners that keep their keys from verifying
/// ([`keyhaven_service::Service::key_owner_holds`]).
pub fn keys_table(
    c: &Console,
    keys: &[(ApiKey, Vec<String>)],
    bulk: bool,
    holds: &HashMap<String, OwnerHold>,
) -> Markup {
    keys_table_sorted(c, keys, bulk, holds, None)
}

/// [`keys_table`] whose Name, Last used and Expires headers sort the list at
/// `/api-keys` (`sorted`: the sort asked for and the filters to keep).
fn keys_table_sorted(
    c: &Console,
    keys: &[(ApiKey, Vec<String>)],
    bulk: bool,
    holds: &HashMap<String, OwnerHold>,
    sorted: Option<(&Sorting, &[(&str, &str)])>,
) -> Markup {
    let manage = c.can(Permission::ApiKeysManage);
    let th = |label: &str, name: &str| match sorted {
        Some((s, base)) => s.header(label, name, "/api-keys", base),
        None => html! { th { (label) } },
    };
    html! {
        div class="table-wrap" {
            table class="table" id="keys-table" {
                thead {
                    tr {
                        @if bulk && manage {
                            th class="col-check" {
                                input type="checkbox" id="select-all" aria-label="Select all API keys on this page" data-select-all="ids";
                            }
                        }
                        (th("Name", "name"))
                        th { "Key" }
                        th { "Roles / Scopes" }
                        th { "Tags" }
                        th { "Owner" }
                        (th("Last used", "last_used"))
                        (th("Expires", "expires"))
                        th { "Status" }
                        th class="col-actions" { span class="sr-only" { "Actions" } }
                    }
                }
                tbody {
                    @for (k, _) in keys {
                        @let id = k.id.to_string();
                        @let status = status_of(k, c.now);
                        tr data-id=(id) {
                            @if bulk && manage {
                                td class="col-check" {
                                    input type="checkbox" name="ids" value=(id) form="bulk-form" class="row-select" aria-label={ "Select " (k.name) };
                                }
                            }
                            td {
                                a class="strong" href={ "/api-keys/" (id) } { (k.name) }
                                @if !k.description.is_empty() { div class="muted small" { (k.description) } }
                            }
                            td { code class="masked" { (k.masked_key) } }
                            td {
                                @if k.roles.is_empty() && k.scopes.is_empty() { span class="muted" { "—" } }
                                @if !k.roles.is_empty() { div { (chips(&k.roles, "chip-role")) } }
                                @if !k.scopes.is_empty() { div { (chips(&k.scopes, "chip-scope")) } }
                            }
                            td {
                                @if k.tags.is_empty() { span class="muted" { "—" } }
                                @for t in &k.tags {
                                    a class="chip chip-tag chip-link" href={ "/api-keys?" (forms::query_string(&[("tag", t.as_str())])) } title={ "Show the keys tagged " (t) } { (t) } " "
                                }
                            }
                            td {
                                (k.owner.name)
                                div class="muted small" {
                                    @if k.owner.kind == PrincipalKind::ServiceAccount { "Service account" } @else { "Personal" }
                                }
                            }
                            td class="nowrap" { (relative(c.now, k.last_used_at)) }
                            td class="nowrap" {
                                @match &k.expires_at {
                                    Some(t) if status == "active" && *t - c.now <= Duration::days(7) => {
                                        span class="expiring" title="Expires within 7 days" { (widgets::date(t)) }
                                        span class="sr-only" { " (expires within 7 days)" }
                                    }
                                    Some(t) => (widgets::date(t)),
                                    None => span class="muted" { "Never" },
                                }
                            }
                            td { (key_badge(status, holds.get(&k.owner.id).copied())) }
                            td class="col-actions" {
                                details class="menu" {
                                    summary class="btn btn-small" aria-label={ "Actions for " (k.name) } { "Actions" }
                                    div class="menu-items" {
                                        a href={ "/api-keys/" (id) } { "View" }
                                        @if manage && status != "revoked" {
                                            a href={ "/api-keys/" (id) "/edit" } { "Edit" }
                                            a href={ "/api-keys/" (id) "/regenerate" } { "Regenerate" }
                                            form method="post" action={ "/api-keys/" (id) "/revoke" }
                                                data-confirm={ "Revoke the API key \u{201c}" (k.name) "\u{201d}? Programs using it will be refused immediately. This cannot be undone." }
                                                data-confirm-label="Revoke" {
                                                (csrf(c))
                                                button type="submit" class="menu-danger" { "Revoke" }
                                            }
                                        }
                                        @if manage {
                                            form method="post" action={ "/api-keys/" (id) "/delete" }
                                                data-confirm={ "Delete the API key \u{201c}" (k.name) "\u{201d} permanently? This cannot be undone." }
                                                data-confirm-label="Delete" {
                                                (csrf(c))
                                                button type="submit" class="menu-danger" { "Delete" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /api-keys`.
pub async fn list(State(state): State<AppState>, c: Console, Query(q): Query) -> PageResult {
    c.require(Permission::ApiKeysView)?;
    let svc = &state.service;
    let metrics = svc.metrics(&c.caller).await?;
    let status = q.get("status").to_string();
    let role = q.get("role").to_string();
    let tag = q.get("tag").to_string();
    let text = q.get("q").to_string();
    let filter = ApiKeyFilter {
        status: KeyStatus::parse(&status, "status").ok(),
        role: q.opt("role"),
        tag: q.opt("tag"),
        owner_id: None,
        q: q.opt("q"),
        now: c.now,
        external_id: None,
    };
    let sorting = Sorting::from_query(&q, KEY_COLUMNS);
    let listing = svc
        .list_api_keys_sorted(
            &c.caller,
            &filter,
            sorting.sort(),
            &Page {
                limit: PAGE_SIZE,
                cursor: q.opt("cursor"),
            },
        )
        .await?;
    let holds = svc
        .key_owner_holds(&c.caller, listing.items.iter().map(|(k, _)| k))
        .await?;
    let roles = if c.can(Permission::RolesView) {
        svc.list_roles(&c.caller).await?
    } else {
        Vec::new()
    };
    let filtered = !(status.is_empty() && role.is_empty() && tag.is_empty() && text.is_empty());
    let filter_q = [
        ("status", status.as_str()),
        ("role", role.as_str()),
        ("tag", tag.as_str()),
        ("q", text.as_str()),
    ];
    // The filters and the sort: what the pager and the bulk actions keep.
    let mut base_q = filter_q.to_vec();
    base_q.extend(sorting.pairs());
    let next_href = match (listing.has_more, listing.next_cursor.as_deref()) {
        (true, Some(cur)) => {
            let mut next_q = base_q.clone();
            next_q.push(("cursor", cur));
            Some(format!("/api-keys?{}", forms::query_string(&next_q)))
        }
        _ => None,
    };
    let can_create = c.can(Permission::ApiKeysCreate);
    let can_manage = c.can(Permission::ApiKeysManage);
    // An organization without a single key yet sees how to start, not empty figures.
    let first_run = metrics.total_keys == 0 && !filtered && !q.has("cursor");
    let app_org = c.caller.org_id.to_string();
    let body = html! {
        (header("API Keys", Some("Keys that programs present to call your APIs."), html! {
            @if can_create { a class="btn" href="/api-keys/import" { "Import keys" } }
            @if can_create { a class="btn btn-primary" href="/api-keys/new" { "Create API key" } }
        }))
        @if let Some(n) = notice_text(&q) { (widgets::notice(&n)) }
        @if first_run {
            (getting_started(can_create, &state.config.public_url, &app_org))
        } @else {
        div class="metrics" {
            div class="metric" { div class="metric-label" { "Total keys" } div class="metric-value" id="metric-total" { (metrics.total_keys) } }
            div class="metric" { div class="metric-label" { "Active keys" } div class="metric-value" id="metric-active" { (metrics.active_keys) } }
            div class="metric" { div class="metric-label" { "Expired keys" } div class="metric-value" id="metric-expired" { (metrics.expired_keys) } }
            div class="metric" { div class="metric-label" { "API calls today" } div class="metric-value" id="metric-calls" { (metrics.api_calls_today) } }
        }
        form class="filters" method="get" action="/api-keys" role="search" aria-label="Filter API keys" {
            (sorting.hidden_fields())
            div class="field" {
                label for="filter-q" { "Search" }
                input id="filter-q" type="search" name="q" value=(text) placeholder="Name or description";
            }
            div class="field" {
                label for="filter-status" { "Status" }
                select id="filter-status" name="status" {
                    option value="" selected[status.is_empty()] { "Any status" }
                    @for s in ["active", "revoked", "expired"] {
                        option value=(s) selected[status == s] { (s[..1].to_uppercase()) (&s[1..]) }
                    }
                }
            }
            div class="field" {
                label for="filter-role" { "Role" }
                @if roles.is_empty() {
                    input id="filter-role" type="text" name="role" value=(role);
                } @else {
                    select id="filter-role" name="role" {
                        option value="" selected[role.is_empty()] { "Any role" }
                        @for r in &roles { option value=(r.name) selected[role == r.name] { (r.name) } }
                    }
                }
            }
            div class="field" {
                label for="filter-tag" { "Tag" }
                input id="filter-tag" type="text" name="tag" value=(tag);
            }
            div class="filter-actions" {
                button class="btn" type="submit" { "Apply filters" }
                @if filtered { a class="btn btn-link" href="/api-keys" { "Clear filters" } }
            }
        }
        }
        @if first_run {
        } @else if listing.items.is_empty() {
            @if filtered {
                (widgets::empty("No API keys match these filters", "Try another status, role, tag or search.", html! { a class="btn" href="/api-keys" { "Clear filters" } }))
            } @else {
                (widgets::empty("No API keys yet", "Create a key for each program that calls your APIs.", html! {
                    @if can_create { a class="btn btn-primary" href="/api-keys/new" { "Create API key" } }
                }))
            }
        } @else {
            @if can_manage {
                // A bar for the selected rows; app.js shows it once a row is selected
                // (without JavaScript it is always there).
                form id="bulk-form" class="bulk" method="post" action="/api-keys/delete" data-bulk="ids" aria-label="Selected API keys" {
                    (csrf(&c))
                    input type="hidden" name="back" value={ "/api-keys?" (forms::query_string(&base_q)) };
                    span class="strong small" data-selected-count="" {}
                    button type="submit" class="btn btn-danger-outline" formaction="/api-keys/revoke" data-bulk-verb="revoke" { "Revoke selected" }
                    button type="submit" class="btn btn-danger-outline" data-bulk-verb="delete" { "Delete selected" }
                }
            }
            p class="muted small result-count" id="result-count" role="status" {
                @let shown = listing.items.len();
                @if filtered {
                    (shown) @if shown == 1 { " matching key" } @else { " matching keys" }
                    @if listing.has_more { " on this page; more on the next" }
                } @else if listing.has_more || q.has("cursor") {
                    (shown) " on this page, of " (metrics.total_keys) " keys"
                } @else {
                    (shown) @if shown == 1 { " key" } @else { " keys" }
                }
            }
            (keys_table_sorted(&c, &listing.items, true, &holds, Some((&sorting, &filter_q))))
            nav class="pager" aria-label="Pagination" {
                @if q.has("cursor") {
                    a class="btn" href={ "/api-keys?" (forms::query_string(&base_q)) } { "First page" }
                }
                @if let Some(href) = &next_href {
                    a class="btn" rel="next" href=(href) { "Next page" }
                }
            }
        }
    };
    Ok(layout::ok(layout(&c, "API Keys", "keys", body)))
}

/// The first steps of an organization without keys.
fn getting_started(can_create: bool, public_url: &str, org_id: &str) -> Markup {
    html! {
        div class="card getting-started" id="getting-started" {
            h2 { "Get started" }
            ol class="steps" {
                li {
                    strong { "Create a key" } " for the first program that calls your API: give it the scopes it needs and, if you like, a rate limit or a credit balance."
                    @if can_create { div { a class="btn btn-primary" href="/api-keys/new" { "Create API key" } } }
                }
                li {
                    strong { "Verify it from your API." } " On each request, send the key Keyhaven received to the verification endpoint; the answer says whether to let the call through:"
                    pre class="snippet" { (verify_snippet(public_url, org_id)) }
                    " Behind nginx or Traefik, use forward auth (GET /v1/auth) instead."
                }
                li {
                    strong { "Read more" } " in the repository's docs: verification.md (codes, forward auth), usage-control.md (limits and credits), import.md (bringing keys from another system); the full API is at "
                    a href="/v1/openapi.json" { "/v1/openapi.json" } "."
                }
            }
        }
    }
}

/// Expiration choices: a preset number of days, a custom date, or never.
fn expiry_fields(form: &FormData, errors: &FieldErrors, default: &str) -> Markup {
    let chosen = form
        .opt("expiration")
        .unwrap_or_else(|| default.to_string());
    let options = [
        ("30", "30 days"),
        ("60", "60 days"),
        ("90", "90 days"),
        ("custom", "Custom date"),
        ("never", "Never"),
    ];
    let err = errors.get("expires_at");
    html! {
        fieldset class={ "field" @if err.is_some() { " has-error" } } {
            legend { "Expiration" }
            div class="radios" {
                @for (v, label) in options {
                    label class="radio" {
                        input type="radio" name="expiration" value=(v) checked[chosen == v];
                        " " (label)
                    }
                }
            }
            div class="field inline" {
                label for="f-expires_at" { "Custom expiry date" }
                input id="f-expires_at" type="date" name="expires_at" value=(form.get("expires_at")) aria-describedby="h-expires_at";
                div class="hint" id="h-expires_at" { "The key expires at the end of this day in your time zone." }
                (forms::tz_field())
            }
            @if let Some(e) = err { div class="field-error" id="e-expires_at" role="alert" { (e) } }
        }
    }
}

/// Reads the expiration choice: `Ok(None)` = never; `Ok(Some(Err(days)))` = preset.
fn read_expiry(
    form: &FormData,
    now: Timestamp,
    errors: &mut FieldErrors,
) -> Option<Option<Result<Timestamp, i64>>> {
    match form.get("expiration") {
        "never" => Some(None),
        "30" => Some(Some(Err(30))),
        "60" => Some(Some(Err(60))),
        "90" | "" => Some(Some(Err(90))),
        "custom" => match NaiveDate::parse_from_str(form.get("expires_at").trim(), "%Y-%m-%d") {
            Ok(d) => match forms::local_day(d, forms::tz_offset(form), true) {
                Some(t) if t > now => Some(Some(Ok(t))),
                _ => {
                    errors.add("expires_at", "Pick a date in the future.");
                    None
                }
            },
            Err(_) => {
                errors.add(
                    "expires_at",
                    "Pick a custom expiry date, or choose a preset.",
                );
                None
            }
        },
        _ => {
            errors.add("expires_at", "Choose an expiration.");
            None
        }
    }
}

const HINT_CIDRS: &str = "Optional: the client networks that may use the key, separated by commas, e.g. 10.0.0.0/8, 203.0.113.7/32. Empty means any address.";
const HINT_METADATA: &str =
    "Optional: a JSON object (up to 4 KiB) returned with every successful verification, e.g. {\"plan\": \"pro\"}.";

/// The networks and metadata fields of the key forms.
fn access_fields(form: &FormData, errors: &FieldErrors) -> Markup {
    html! {
        (field("Allowed networks", "allowed_cidrs", errors, Some(HINT_CIDRS), forms::text_input("allowed_cidrs", &form.list("allowed_cidrs").join(", "), "text", false)))
        (field("Metadata", "metadata", errors, Some(HINT_METADATA), html! {
            textarea id="f-metadata" name="metadata" rows="3" spellcheck="false" class="mono" { (form.get("metadata")) }
        }))
    }
}

/// The metadata box: empty → `{}`, else a JSON object (a message at the field
/// otherwise; the service checks its size).
fn read_metadata(form: &FormData, errors: &mut FieldErrors) -> Option<serde_json::Value> {
    let text = form.get("metadata").trim();
    if text.is_empty() {
        return Some(serde_json::json!({}));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => Some(v),
        Ok(_) => {
            errors.add(
                "metadata",
                "Metadata must be a JSON object, like {\"plan\": \"pro\"}.",
            );
            None
        }
        Err(e) => {
            errors.add("metadata", format!("Metadata is not valid JSON: {e}."));
            None
        }
    }
}

const HINT_KEY_LIMITS: &str = "Each limit lets through at most its number of successful verifications per window, across every Keyhaven node. Limits that apply only when named are used by requests that list them, with a cost.";

/// The credits section of the key forms: unlimited, or a balance with an optional
/// refill and low-balance threshold. `editing`: the balance shown is the key's, and
/// changing it sets it.
fn credits_fields(form: &FormData, errors: &FieldErrors, editing: bool) -> Markup {
    let limited = form.get("credits") == "limited";
    let interval = form.get("credits.refill.interval");
    let balance_hint = if editing {
        "Saving a different number here sets the balance, replacing what is left now. To add or take away credits, use Adjust credits on the key's page instead."
    } else {
        "The credits the key starts with."
    };
    let err = errors.get("credits");
    html! {
        fieldset class={ "field credits" @if errors.has_under("credits") { " section-error" } } id="f-credits"
            aria-describedby={ "h-credits" @if err.is_some() { " e-credits" } } {
            legend { "Credits" }
            div class="hint" id="h-credits" {
                "Each successful verification spends its cost (1 unless the request asks for more) from the balance. At zero the key is refused until the balance is refilled or topped up."
            }
            div class="radios" {
                label class="radio" {
                    input type="radio" name="credits" value="unlimited" checked[!limited];
                    " Unlimited"
                }
                label class="radio" {
                    input type="radio" name="credits" value="limited" checked[limited];
                    " A balance of credits"
                }
            }
            @if let Some(e) = err { div class="field-error" id="e-credits" role="alert" { (e) } }
            div class="credit-fields" data-credits-fields="" {
                (field("Balance", "credits.remaining", errors, Some(balance_hint),
                    forms::number_input("credits.remaining", form.get("credits.remaining"))))
                @if editing {
                    input type="hidden" name="credits.remaining_shown" value=(form.get("credits.remaining_shown"));
                }
                (field("Refill", "credits.refill.interval", errors, None, html! {
                    select id="f-credits.refill.interval" name="credits.refill.interval" {
                        option value="" selected[interval.is_empty() || interval == "none"] { "No refill" }
                        option value="daily" selected[interval == "daily"] { "Every day, at 00:00 UTC" }
                        option value="monthly" selected[interval == "monthly"] { "Every month" }
                    }
                }))
                (field("Refill to", "credits.refill.amount", errors, Some("The balance after each refill (whatever was left is replaced)."),
                    forms::number_input("credits.refill.amount", form.get("credits.refill.amount"))))
                (field("Day of the month", "credits.refill.day_of_month", errors, Some("Monthly refills: 1–31 (default 1); in shorter months, the last day."),
                    forms::number_input("credits.refill.day_of_month", form.get("credits.refill.day_of_month"))))
                (field("Warn below (optional)", "credits.low_threshold", errors, Some("The api_key.credits_low webhook fires once each time the balance drops below this."),
                    forms::number_input("credits.low_threshold", form.get("credits.low_threshold"))))
            }
        }
    }
}

const CREDITS_RANGE: &str = "Enter a whole number of credits from 0 to 1,000,000,000,000.";

/// A count of credits typed into `field`, 0..=10^12; blank is `None` without a message
/// unless `required` says what to enter.
fn read_count(
    form: &FormData,
    field: &str,
    required: Option<&str>,
    errors: &mut FieldErrors,
) -> Option<i64> {
    let raw = form.get(field);
    if raw.trim().is_empty() {
        if let Some(msg) = required {
            errors.add(field, msg);
        }
        return None;
    }
    let n = parse_whole(raw).filter(|n| (0..=MAX_CREDITS).contains(n));
    if n.is_none() {
        errors.add(field, CREDITS_RANGE);
    }
    n
}

/// Reads the credits section: `None` for unlimited (or when a field is wrong: each
/// mistake is recorded next to its field).
fn read_credits(form: &FormData, errors: &mut FieldErrors) -> Option<Credits> {
    match form.get("credits") {
        "limited" => {}
        "" | "unlimited" => return None,
        _ => {
            errors.add("credits", "Choose Unlimited or A balance of credits.");
            return None;
        }
    }
    let before = errors.len();
    let remaining = read_count(
        form,
        "credits.remaining",
        Some("Enter the balance, or choose Unlimited."),
        errors,
    );
    let interval = match form.get("credits.refill.interval") {
        "" | "none" => None,
        "daily" => Some(RefillInterval::Daily),
        "monthly" => Some(RefillInterval::Monthly),
        _ => {
            errors.add(
                "credits.refill.interval",
                "Choose how often the balance refills.",
            );
            None
        }
    };
    let refill = interval.and_then(|interval| {
        let amount = read_count(
            form,
            "credits.refill.amount",
            Some("Enter the balance each refill sets."),
            errors,
        );
        let day_of_month = match (interval, form.get("credits.refill.day_of_month").trim()) {
            (RefillInterval::Daily, _) | (_, "") => None,
            (RefillInterval::Monthly, d) => {
                let day = parse_whole(d).filter(|d| (1..=31).contains(d));
                if day.is_none() {
                    errors.add(
                        "credits.refill.day_of_month",
                        "Enter a day of the month from 1 to 31.",
                    );
                }
                day.map(|d| d as u32)
            }
        };
        Some(Refill {
            interval,
            amount: amount?,
            day_of_month,
        })
    });
    let low_threshold = read_count(form, "credits.low_threshold", None, errors);
    if errors.len() > before {
        return None;
    }
    // The numbers are read above; their rules are the core's (`NewApiKey::parse_all`).
    Some(Credits {
        remaining: remaining?,
        refill,
        low_threshold,
    })
}

/// The form fields showing a key's credits.
fn credit_pairs(c: Option<&Credits>) -> Vec<(String, String)> {
    let Some(c) = c else {
        return vec![("credits".into(), "unlimited".into())];
    };
    let mut out = vec![
        ("credits".into(), "limited".into()),
        ("credits.remaining".into(), c.remaining.to_string()),
        ("credits.remaining_shown".into(), c.remaining.to_string()),
    ];
    if let Some(r) = &c.refill {
        let interval = match r.interval {
            RefillInterval::Daily => "daily",
            RefillInterval::Monthly => "monthly",
        };
        out.push(("credits.refill.interval".into(), interval.into()));
        out.push(("credits.refill.amount".into(), r.amount.to_string()));
        if let Some(d) = r.day_of_month {
            out.push(("credits.refill.day_of_month".into(), d.to_string()));
        }
    }
    if let Some(t) = c.low_threshold {
        out.push(("credits.low_threshold".into(), t.to_string()));
    }
    out
}

/// The service accounts a new key may belong to (none without service_accounts.view):
/// the owner choices of the create and import forms.
pub(super) async fn owner_accounts(
    state: &AppState,
    c: &Console,
) -> Result<Vec<ServiceAccount>, errors::PageError> {
    if !c.can(Permission::ServiceAccountsView) {
        return Ok(Vec::new());
    }
    Ok(state
        .service
        .list_service_accounts(
            &c.caller,
            &ServiceAccountFilter {
                statuses: vec![
                    ServiceAccountStatus::Active,
                    ServiceAccountStatus::Suspended,
                ],
                q: None,
                external_id: None,
            },
            &Page {
                limit: 100,
                cursor: None,
            },
        )
        .await?
        .items)
}

async fn create_form(
    state: &AppState,
    c: &Console,
    form: &FormData,
    errors: &FieldErrors,
) -> PageResult {
    let roles = forms::role_choices(state, c, &[]).await?;
    let accounts = owner_accounts(state, c).await?;
    let owner = form.get("owner");
    let suggested = super::scopes::suggestions(state, c, &form.list("scopes")).await;
    let body = html! {
        (header("Create API key", Some("The key is shown once, right after you create it."), html! {
            a class="btn btn-link" href="/api-keys" { "Cancel" }
        }))
        div class="card" {
            (form_error(errors))
            form method="post" action="/api-keys/new" class="stack" novalidate {
                (forms::default_submit())
                (csrf(c))
                (field("Name *", "name", errors, Some("1–100 characters, unique in your organization."), forms::text_input("name", form.get("name"), "text", true)))
                (field("Description", "description", errors, None, html! {
                    textarea id="f-description" name="description" rows="2" { (form.get("description")) }
                }))
                (field("Tags", "tags", errors, Some("Separate tags with commas, e.g. billing, production."), forms::text_input("tags", &form.list("tags").join(", "), "text", false)))
                (super::scopes::scopes_field(form, errors, "What the key may do in your API, separated by commas, e.g. orders:read, billing:write. Your API asks for them when it verifies the key.", &suggested))
                @if !roles.is_empty() {
                    details class="management-access" open[!form.list("roles").is_empty()] {
                        summary { "Management access to Keyhaven (optional)" }
                        p class="hint warn" { "Roles let the key manage Keyhaven itself — users, keys, settings — like a signed-in person. Give them only to automation that administers Keyhaven; a key your programs use to call your API needs scopes, not roles." }
                        (checklist("Roles", "roles", errors, Some("Only roles whose permissions you hold yourself are offered."), &roles, &form.list("roles")))
                    }
                }
                (field("External ID", "external_id", errors, Some(HINT_EXTERNAL_ID), forms::text_input("external_id", form.get("external_id"), "text", false)))
                (field("Owner", "owner", errors, Some("A personal key acts with your permissions; a service account's key outlives your account."), html! {
                    select id="f-owner" name="owner" {
                        option value="" selected[owner.is_empty()] { "Personal (you)" }
                        @for sa in &accounts {
                            @let id = sa.id.to_string();
                            option value=(id) selected[owner == id] { "Service account: " (sa.name) }
                        }
                    }
                }))
                (expiry_fields(form, errors, "90"))
                (access_fields(form, errors))
                (forms::limits_fields(form, errors, HINT_KEY_LIMITS))
                (credits_fields(form, errors, false))
                div class="form-actions" {
                    button class="btn btn-primary" type="submit" { "Create API key" }
                    a class="btn btn-link" href="/api-keys" { "Cancel" }
                }
            }
        }
    };
    forms::form_page(errors, layout(c, "Create API key", "keys", body))
}

/// `GET /api-keys/new` (`?owner=ID` preselects a service account as the owner).
pub async fn new_page(State(state): State<AppState>, c: Console, Query(q): Query) -> PageResult {
    c.require(Permission::ApiKeysCreate)?;
    let form = match q.opt("owner") {
        Some(owner) => FormData(vec![("owner".into(), owner)]),
        None => FormData::default(),
    };
    create_form(&state, &c, &form, &FieldErrors::default()).await
}

const RENAME: &[(&str, &str)] = &[("expires_in_days", "expires_at"), ("owner", "owner")];

/// `POST /api-keys/new`.
pub async fn create(State(state): State<AppState>, c: Console, form: FormData) -> PageResult {
    c.check_csrf(&form)?;
    if form.has(forms::ADD_LIMIT) {
        let form = forms::with_added_row(&form);
        return create_form(&state, &c, &form, &FieldErrors::default()).await;
    }
    let mut errors = FieldErrors::default();
    let expiry = read_expiry(&form, c.now, &mut errors);
    let ratelimits = forms::read_limits(&form, "A key", &mut errors);
    let credits = read_credits(&form, &mut errors);
    let metadata = read_metadata(&form, &mut errors);
    let (expires_at, expires_in_days) = match expiry {
        Some(Some(Ok(t))) => (Some(t), None),
        Some(Some(Err(d))) => (None, Some(d)),
        _ => (None, None),
    };
    let draft = CreateApiKey {
        name: form.get("name").to_string(),
        description: Some(form.get("description").to_string()),
        tags: Some(form.list("tags")),
        roles: Some(form.list("roles")),
        scopes: Some(form.list("scopes")),
        owner: form.opt("owner").map(|id| OwnerRef {
            kind: PrincipalKind::ServiceAccount,
            id,
        }),
        expires_at,
        expires_in_days,
        ratelimits: Some(ratelimits),
        credits,
        external_id: form.opt("external_id"),
        allowed_cidrs: Some(form.list("allowed_cidrs")),
        metadata,
        ..Default::default()
    };
    let Some(input) = errors.parsed(NewApiKey::parse_all(draft), RENAME) else {
        return create_form(&state, &c, &form, &errors).await;
    };
    match state.service.create_api_key(&c.caller, input).await {
        // POST-redirect-GET: the secret page is a GET, so a reload can't create
        // another key.
        Ok((key, _, secret)) => Ok(super::flash::redirect_with(
            &state,
            &c,
            &secret_path(&key.id.to_string(), "created"),
            secret.expose(),
        )),
        Err(e) => {
            let errors = FieldErrors::from_grant(e, RENAME, Permission::ApiKeysCreate, "roles")?;
            create_form(&state, &c, &form, &errors).await
        }
    }
}

/// The page that shows a key's new secret once, after `what` (`created` or
/// `regenerated`).
fn secret_path(id: &str, what: &str) -> String {
    format!("/api-keys/{id}/{what}")
}

/// `GET /api-keys/{id}/created` and `…/regenerated`: the secret the POST before left
/// for this page, shown once; a reload finds it gone and goes to the key's page.
pub async fn new_secret(
    State(state): State<AppState>,
    c: Console,
    Path((id, what)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> PageResult {
    let title = match what.as_str() {
        "created" => "API key created",
        "regenerated" => "API key regenerated",
        _ => return Err(ServiceError::NotFound("page").into()),
    };
    let key_id = errors::path_id(&id, "API key")?;
    let page = secret_path(key_id.as_str(), &what);
    let Some(secret) = super::flash::take(&state, &c, &headers, &page) else {
        let mut res = layout::see_other(&format!("/api-keys/{key_id}?notice=secret_shown"));
        super::flash::clear(&state, &mut res);
        return Ok(res);
    };
    let (key, _) = state.service.get_api_key(&c.caller, &key_id).await?;
    let hold = shown_hold(&state, &c, &key).await;
    let mut res = layout::ok(layout(
        &c,
        title,
        "keys",
        secret_page(&c, title, &key, hold, &secret, &state.config.public_url),
    ));
    super::flash::clear(&state, &mut res);
    // Never kept by a cache or the back button's page store.
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

/// Whether the owner of a key just created or regenerated stops it; a failed lookup
/// shows no hold rather than losing the page with the secret.
async fn shown_hold(state: &AppState, c: &Console, k: &ApiKey) -> Option<OwnerHold> {
    match state.service.key_owner_holds(&c.caller, [k]).await {
        Ok(h) => h.get(&k.owner.id).copied(),
        Err(e) => {
            tracing::warn!(error = %e, "looking up the owner of a new key");
            None
        }
    }
}

/// A ready-to-paste check of a key against this server: the key itself is left as a
/// variable, so the snippet can be copied (or shown) without the secret.
fn verify_snippet(public_url: &str, org_id: &str) -> String {
    format!(
        "curl -s {}/v1/keys/verify \\\n  -H 'Content-Type: application/json' \\\n  -d \"{{\\\"key\\\": \\\"$KEYHAVEN_KEY\\\", \\\"organization_id\\\": \\\"{org_id}\\\"}}\"",
        public_url.trim_end_matches('/')
    )
}

fn secret_page(
    c: &Console,
    title: &str,
    key: &ApiKey,
    hold: Option<OwnerHold>,
    secret: &str,
    public_url: &str,
) -> Markup {
    let snippet = verify_snippet(public_url, key.org_id.as_str());
    html! {
        (header(title, None, html! {}))
        div class="banner banner-success secret-banner" role="status" {
            h2 { (title) }
            p { strong { "Copy this key now." } " It will not be shown again: Keyhaven keeps only a digest of it. If you lose it, regenerate the key." }
            (widgets::secret_box("API key", "new-secret", secret))
            div class="field" {
                label for="new-key-id" { "Key ID" }
                div class="secret-row" {
                    input id="new-key-id" type="text" readonly value=(key.id) class="mono";
                    button type="button" class="btn" data-copy="new-key-id" { "Copy" }
                }
            }
            div class="field" {
                label for="verify-snippet" { "Check it from your API" }
                pre class="snippet" id="verify-snippet" { (snippet) }
                div class="secret-row" {
                    span class="hint" { "Put the key in KEYHAVEN_KEY first (export KEYHAVEN_KEY=…)." }
                    button type="button" class="btn" data-copy="verify-snippet" { "Copy" }
                }
            }
        }
        div class="card" {
            dl class="props" {
                dt { "Name" } dd { (key.name) }
                dt { "Masked key" } dd { code { (key.masked_key) } }
                dt { "Expires" } dd { @match &key.expires_at { Some(t) => (widgets::time(t)), None => "Never" } }
                dt { "Status" } dd { (key_badge(status_of(key, c.now), hold)) }
            }
            div class="form-actions" {
                a class="btn btn-primary" href={ "/api-keys/" (key.id) } { "View key details" }
                a class="btn" href="/api-keys" { "Back to API keys" }
            }
        }
    }
}

/// `2026-11-13` as the console writes days elsewhere (`Nov 13`).
fn short_day(date: &str) -> String {
    NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map(|d| d.format("%b %-d").to_string())
        .unwrap_or_else(|_| date.to_string())
}

fn usage_chart(days: &[DailyUsage]) -> Markup {
    let full_width = 720.0_f64;
    // Room on the left for the y-axis labels.
    let left = 40.0_f64;
    let width = full_width - left;
    let height = 180.0_f64;
    let top = 10.0;
    let bottom = 24.0;
    let plot = height - top - bottom;
    let max = days
        .iter()
        .map(|d| d.valid + d.invalid)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = days.len().max(1) as f64;
    let slot = width / n;
    let bar = (slot - 4.0).max(1.0);
    let total_valid: i64 = days.iter().map(|d| d.valid).sum();
    let total_invalid: i64 = days.iter().map(|d| d.invalid).sum();
    if total_valid + total_invalid == 0 {
        return html! {
            div class="chart-empty" id="usage-empty" {
                p class="muted" { "No calls in the last " (days.len()) " days" }
            }
        };
    }
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {full_width} {height}\" role=\"img\" aria-label=\"Verifications per day over the last {} days: {total_valid} valid, {total_invalid} refused\">",
        days.len()
    );
    // The y-axis: 0, half the peak and the peak, with grid lines.
    for (value, frac) in [
        (0_i64, 0.0_f64),
        ((max / 2.0).round() as i64, 0.5),
        (max as i64, 1.0),
    ] {
        let y = top + plot - frac * plot;
        svg.push_str(&format!(
            "<line class=\"grid\" x1=\"{left}\" y1=\"{y:.1}\" x2=\"{full_width}\" y2=\"{y:.1}\" stroke=\"#eaecf0\"/>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{value}</text>",
            left - 6.0,
            y + 4.0
        ));
    }
    svg.push_str(&format!(
        "<line class=\"axis\" x1=\"{left}\" y1=\"{y}\" x2=\"{full_width}\" y2=\"{y}\" stroke=\"#98a2b3\"/>\
         <line class=\"axis\" x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{y}\" stroke=\"#98a2b3\"/>",
        y = top + plot
    ));
    for (i, d) in days.iter().enumerate() {
        let x = left + i as f64 * slot + 2.0;
        let hv = d.valid as f64 / max * plot;
        let hi = d.invalid as f64 / max * plot;
        let yv = top + plot - hv;
        let yi = yv - hi;
        let label =
            maud::html! { (short_day(&d.date)) ": " (d.valid) " valid, " (d.invalid) " refused" }
                .into_string();
        svg.push_str(&format!(
            "<g class=\"day\" data-date=\"{}\"><title>{label}</title>",
            d.date
        ));
        svg.push_str(&format!(
            "<rect class=\"bar-bg\" x=\"{x:.1}\" y=\"{top}\" width=\"{bar:.1}\" height=\"{plot:.1}\" fill=\"transparent\"/>"
        ));
        if d.valid > 0 {
            svg.push_str(&format!(
                "<rect class=\"bar-valid\" x=\"{x:.1}\" y=\"{yv:.1}\" width=\"{bar:.1}\" height=\"{hv:.1}\" fill=\"#12b76a\"/>"
            ));
        }
        if d.invalid > 0 {
            svg.push_str(&format!(
                "<rect class=\"bar-invalid\" x=\"{x:.1}\" y=\"{yi:.1}\" width=\"{bar:.1}\" height=\"{hi:.1}\" fill=\"#f04438\"/>"
            ));
        }
        svg.push_str("</g>");
        if i == 0 || i + 1 == days.len() || i == days.len() / 2 {
            let anchor = if i == 0 {
                "start"
            } else if i + 1 == days.len() {
                "end"
            } else {
                "middle"
            };
            let tx = if i == 0 {
                x
            } else if i + 1 == days.len() {
                x + bar
            } else {
                x + bar / 2.0
            };
            svg.push_str(&format!(
                "<text class=\"tick\" x=\"{tx:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
                height - 6.0,
                short_day(&d.date)
            ));
        }
    }
    svg.push_str("</svg>");
    html! {
        figure class="chart-wrap" {
            (widgets::raw(svg))
            figcaption class="legend" {
                span class="swatch swatch-valid" {} " Valid (" (total_valid) ")"
                span class="swatch swatch-invalid" {} " Refused (" (total_invalid) ")"
                span class="muted" { " · peak " (max as i64) " per day · " a href="/analytics" { "by code in Analytics" } }
            }
        }
    }
}

/// What the "Adjust credits" form on the details page shows: the values sent and their
/// mistakes, or a "set" waiting for confirmation.
#[derive(Default)]
struct Adjust {
    form: FormData,
    errors: FieldErrors,
    confirm_set: Option<i64>,
}

/// The key's service account, when it owns the key and the user may see it.
async fn owner_account(
    state: &AppState,
    c: &Console,
    k: &ApiKey,
) -> Result<Option<ServiceAccount>, errors::PageError> {
    if k.owner.kind != PrincipalKind::ServiceAccount || !c.can(Permission::ServiceAccountsView) {
        return Ok(None);
    }
    match state
        .service
        .get_service_account(&c.caller, &Id::from_trusted(k.owner.id.clone()))
        .await
    {
        Ok(sa) => Ok(Some(sa)),
        Err(ServiceError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api-keys/{id}`.
pub async fn details(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    Query(q): Query,
) -> PageResult {
    c.require(Permission::ApiKeysView)?;
    let id = errors::path_id(&id, "API key")?;
    details_page(&state, &c, &id, notice_text(&q), Adjust::default()).await
}

async fn details_page(
    state: &AppState,
    c: &Console,
    id: &Id,
    notice: Option<String>,
    adjust: Adjust,
) -> PageResult {
    let (k, perms) = state.service.get_api_key(&c.caller, id).await?;
    let usage = state.service.api_key_usage(&c.caller, id, 30).await?;
    let recent = state.service.recent_verifications(&c.caller, id).await?;
    let account = owner_account(state, c, &k).await?;
    let hold = state
        .service
        .key_owner_holds(&c.caller, [&k])
        .await?
        .get(&k.owner.id)
        .copied();
    let status = status_of(&k, c.now);
    let manage = c.can(Permission::ApiKeysManage);
    let live = status != "revoked";
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/api-keys" { "API Keys" } " / " span { (k.name) } }
        (header(&k.name, None, html! {
            @if manage && status != "revoked" {
                form method="post" action={ "/api-keys/" (k.id) "/enabled" } class="inline" {
                    (csrf(c))
                    @if k.enabled {
                        input type="hidden" name="enabled" value="false";
                        button class="btn" type="submit" id="toggle-enabled" { "Turn off" }
                    } @else {
                        input type="hidden" name="enabled" value="true";
                        button class="btn" type="submit" id="toggle-enabled" { "Turn on" }
                    }
                }
                a class="btn" href={ "/api-keys/" (k.id) "/edit" } { "Edit" }
                a class="btn" href={ "/api-keys/" (k.id) "/regenerate" } { "Regenerate" }
                form method="post" action={ "/api-keys/" (k.id) "/revoke" } class="inline"
                    data-confirm={ "Revoke the API key \u{201c}" (k.name) "\u{201d}? Programs using it will be refused immediately. This cannot be undone." }
                    data-confirm-label="Revoke" {
                    (csrf(c))
                    button class="btn btn-danger-outline" type="submit" { "Revoke" }
                }
            }
            @if manage {
                form method="post" action={ "/api-keys/" (k.id) "/delete" } class="inline"
                    data-confirm={ "Delete the API key \u{201c}" (k.name) "\u{201d} permanently? This cannot be undone." }
                    data-confirm-label="Delete" {
                    (csrf(c))
                    button class="btn btn-danger" type="submit" { "Delete" }
                }
            }
        }))
        @if let Some(n) = &notice { (widgets::notice(n)) }
        div class="grid-2" {
            div class="card" {
                h2 { "Details" }
                dl class="props" id="key-details" data-id=(k.id) {
                    dt { "Status" } dd {
                        (key_badge(status, hold))
                        @if let (Some(h), "active") = (hold, status) { div class="hint" id="status-hint" { (widgets::hold_reason(h)) } }
                    }
                    dt { "Description" } dd { @if k.description.is_empty() { span class="muted" { "—" } } @else { (k.description) } }
                    dt { "Key ID" } dd {
                        code id="key-id" { (k.id) } " "
                        button type="button" class="btn btn-small" data-copy="key-id" aria-label="Copy the key ID" { "Copy" }
                    }
                    dt { "Masked key" } dd { code { (k.masked_key) } }
                    @if !k.enabled { dt { "Turned off" } dd { "Answers DISABLED until turned on again (not revoked)." } }
                    dt { "External ID" } dd { @match &k.external_id { Some(e) => code { (e) }, None => span class="muted" { "—" } } }
                    @if let Some(t) = &k.imported_at { dt { "Imported" } dd { (widgets::time(t)) } }
                    dt { "Tags" } dd { (chips(&k.tags, "chip-tag")) }
                    dt { "Owner" } dd { (k.owner.name) span class="muted" { @if k.owner.kind == PrincipalKind::ServiceAccount { " (service account)" } @else { " (personal)" } } }
                    dt { "Roles" } dd { (chips(&k.roles, "chip-role")) }
                    dt { "Scopes" } dd { (chips(&k.scopes, "chip-scope")) }
                    dt { "Effective permissions" } dd { (chips(&perms, "chip-perm")) }
                    dt { "Expires" } dd { @match &k.expires_at { Some(t) => (widgets::time(t)), None => "Never" } }
                    dt { "Allowed networks" } dd { @if k.allowed_cidrs.is_empty() { span class="muted" { "Any address" } } @else { @for n in &k.allowed_cidrs { code { (n) } " " } } }
                    dt { "Metadata" } dd { @if k.metadata.as_object().is_some_and(|o| o.is_empty()) { span class="muted" { "—" } } @else { code class="metadata" { (k.metadata.to_string()) } } }
                    dt { "Created by" } dd { (k.created_by.name) }
                    dt { "Created" } dd { (widgets::time(&k.created_at)) }
                    dt { "Last used" } dd { (relative(c.now, k.last_used_at)) }
                    @if let Some(t) = &k.revoked_at { dt { "Revoked" } dd { (widgets::time(t)) } }
                    @if let Some(t) = &k.previous_valid_until {
                        @if *t > c.now { dt { "Previous key valid until" } dd { (widgets::time(t)) } }
                    }
                }
            }
            div class="card" {
                h2 { "Usage, last 30 days" }
                (usage_chart(&usage))
            }
        }
        div class="grid-2 usage-control" {
            (key_limits_card(c, &k, account.as_ref(), manage && live))
            (credits_card(c, &k, manage && live, &adjust))
        }
        (super::recent::recent_card(&recent))
    };
    forms::form_page(&adjust.errors, layout(c, &k.name, "keys", body))
}

/// The key's rate limits, and those its service account shares with all its keys.
fn key_limits_card(
    c: &Console,
    k: &ApiKey,
    account: Option<&ServiceAccount>,
    can_edit: bool,
) -> Markup {
    let mut all: Vec<(&usage_control::NamedLimit, LimitScope)> =
        k.ratelimits.iter().map(|l| (l, LimitScope::Key)).collect();
    if let Some(sa) = account {
        all.extend(
            sa.ratelimits
                .iter()
                .map(|l| (l, LimitScope::ServiceAccount)),
        );
    }
    let hidden_account =
        k.owner.kind == PrincipalKind::ServiceAccount && !c.can(Permission::ServiceAccountsView);
    html! {
        section class="card" id="key-limits" {
            div class="section-head" {
                h2 { "Rate limits" }
                @if can_edit { a class="btn btn-small" href={ "/api-keys/" (k.id) "/edit" } { "Edit limits" } }
            }
            @if all.is_empty() {
                p class="muted" id="limits-empty" { "No rate limits: callers may verify this key as often as they like." }
            } @else {
                (widgets::limits_table("limits-table", &all))
            }
            @if let Some(sa) = account {
                @if !sa.ratelimits.is_empty() {
                    p class="muted small" {
                        "Shared limits belong to the service account "
                        a href={ "/settings/api-access/" (sa.id) } { (sa.name) }
                        ": all of its keys draw from the same allowance."
                    }
                }
            }
            @if hidden_account {
                p class="muted small" { "The key's service account may add shared limits; seeing them takes the service_accounts.view permission." }
            }
        }
    }
}

/// The key's credit balance with its refill, and the "Adjust credits" form.
fn credits_card(c: &Console, k: &ApiKey, can_adjust: bool, adjust: &Adjust) -> Markup {
    let action = format!("/api-keys/{}/credits", k.id);
    let op = adjust.form.get("op");
    html! {
        section class="card" id="key-credits" {
            div class="section-head" {
                h2 { "Credits" }
                @if can_adjust && k.credits.is_none() { a class="btn btn-small" href={ "/api-keys/" (k.id) "/edit" } { "Edit credits" } }
            }
            @match &k.credits {
                None => {
                    (form_error(&adjust.errors))
                    p id="credits-balance" { strong { "Unlimited" } }
                    p class="muted" {
                        "This key has no credit balance, so verifications spend nothing."
                        @if can_adjust { " To meter it, give it a balance on its Edit page." }
                    }
                }
                Some(cr) => {
                    dl class="props" id="credits-props" {
                        dt { "Balance" }
                        dd id="credits-balance" data-remaining=(cr.remaining) { strong { (number(cr.remaining)) } " credits" }
                        dt { "Refill" }
                        dd id="credits-refill" {
                            @match (widgets::refill_text(cr), cr.refill) {
                                (Some(text), Some(r)) => {
                                    (text)
                                    div class="muted small" { "Next: " (widgets::time(&r.next_due(c.now))) }
                                }
                                _ => span class="muted" { "No refill" },
                            }
                        }
                        dt { "Low balance warning" }
                        dd id="credits-low" {
                            @match cr.low_threshold {
                                Some(t) => { "When the balance drops below " (number(t)) }
                                None => span class="muted" { "None" },
                            }
                        }
                    }
                    @if let Some(v) = adjust.confirm_set {
                        div class="banner banner-warn" role="alert" id="confirm-set" {
                            p {
                                "Set the balance to " strong { (number(v)) } " credits? "
                                "This replaces the current balance of " (number(cr.remaining)) ", including anything spent since this page was shown."
                            }
                            form method="post" action=(action) class="inline" {
                                (csrf(c))
                                input type="hidden" name="op" value="set";
                                input type="hidden" name="value" value=(v);
                                input type="hidden" name="confirmed" value="1";
                                button class="btn btn-primary" type="submit" { "Set balance to " (number(v)) }
                            }
                            " "
                            a class="btn btn-link" href={ "/api-keys/" (k.id) } { "Cancel" }
                        }
                    }
                    @if can_adjust {
                        h3 { "Adjust credits" }
                        (form_error(&adjust.errors))
                        form method="post" action=(action) class="adjust-form" novalidate
                            data-confirm-set={ "Set the balance of \u{201c}" (k.name) "\u{201d} to {value} credits? This replaces the current balance of " (number(cr.remaining)) "." }
                            data-confirm-label="Set balance" {
                            (csrf(c))
                            (field("Action", "op", &adjust.errors, None, html! {
                                select id="f-op" name="op" {
                                    option value="increment" selected[op == "increment"] { "Add" }
                                    option value="decrement" selected[op == "decrement"] { "Subtract" }
                                    option value="set" selected[op == "set"] { "Set to" }
                                }
                            }))
                            (field("Credits", "value", &adjust.errors, None,
                                forms::number_input("value", adjust.form.get("value"))))
                            div class="form-actions" {
                                button class="btn" type="submit" { "Adjust credits" }
                            }
                        }
                        p class="muted small" { "Adding or subtracting keeps the credits that verifications are spending right now; setting replaces the balance. Every change is in the audit log." }
                    }
                }
            }
        }
    }
}

/// `POST /api-keys/{id}/credits`: add to, subtract from or set the balance (a set is
/// confirmed first), then back to the key with a notice.
pub async fn adjust_credits(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "API key")?;
    let mut errors = FieldErrors::default();
    let op = CreditOp::parse(form.get("op"));
    if op.is_none() {
        errors.add("op", "Choose Add, Subtract or Set to.");
    }
    let value = match form.get("value").trim() {
        "" => {
            errors.add("value", "Enter a number of credits.");
            None
        }
        raw => {
            let v = parse_whole(raw).filter(|n| (0..=MAX_CREDITS).contains(n));
            if v.is_none() {
                errors.add("value", CREDITS_RANGE);
            }
            v
        }
    };
    if let (Some(op), Some(value)) = (op, value) {
        // Someone who may not change the balance is not asked to confirm: the use case
        // refuses them (and records the attempt).
        if op == CreditOp::Set && form.get("confirmed") != "1" && c.can(Permission::ApiKeysManage) {
            let adjust = Adjust {
                form,
                errors,
                confirm_set: Some(value),
            };
            return details_page(&state, &c, &id, None, adjust).await;
        }
        match state
            .service
            .adjust_credits(&c.caller, &id, op, value)
            .await
        {
            Ok(n) => {
                return Ok(layout::see_other(&format!(
                    "/api-keys/{id}?notice=credits&n={n}"
                )))
            }
            Err(e) => errors = FieldErrors::from_service(e, &[])?,
        }
    }
    let adjust = Adjust {
        form,
        errors,
        confirm_set: None,
    };
    details_page(&state, &c, &id, None, adjust).await
}

async fn edit_form(
    state: &AppState,
    c: &Console,
    k: &ApiKey,
    form: &FormData,
    errors: &FieldErrors,
) -> PageResult {
    let roles = forms::role_choices(state, c, &k.roles).await?;
    let suggested = super::scopes::suggestions(state, c, &form.list("scopes")).await;
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/api-keys" { "API Keys" } " / " a href={ "/api-keys/" (k.id) } { (k.name) } " / " span { "Edit" } }
        (header("Edit API key", None, html! {}))
        div class="card" {
            (form_error(errors))
            form method="post" action={ "/api-keys/" (k.id) "/edit" } class="stack" novalidate {
                (forms::default_submit())
                (csrf(c))
                (field("Name *", "name", errors, None, forms::text_input("name", form.get("name"), "text", true)))
                (field("Description", "description", errors, None, html! {
                    textarea id="f-description" name="description" rows="2" { (form.get("description")) }
                }))
                (field("Tags", "tags", errors, Some("Separate tags with commas."), forms::text_input("tags", &form.list("tags").join(", "), "text", false)))
                @if !roles.is_empty() {
                    input type="hidden" name="roles_present" value="1";
                    (checklist("Roles", "roles", errors, None, &roles, &form.list("roles")))
                }
                (super::scopes::scopes_field(form, errors, "Separate scopes with commas.", &suggested))
                (field("External ID", "external_id", errors, Some(HINT_EXTERNAL_ID), forms::text_input("external_id", form.get("external_id"), "text", false)))
                (access_fields(form, errors))
                p class="hint" { "To change when the key expires, regenerate it: the expiry goes with a secret." }
                (forms::limits_fields(form, errors, HINT_KEY_LIMITS))
                (credits_fields(form, errors, true))
                div class="form-actions" {
                    button class="btn btn-primary" type="submit" { "Save changes" }
                    a class="btn btn-link" href={ "/api-keys/" (k.id) } { "Cancel" }
                }
            }
        }
    };
    forms::form_page(errors, layout(c, "Edit API key", "keys", body))
}

/// A key's metadata as the edit form shows it: empty for `{}`, else indented JSON.
fn metadata_text(m: &serde_json::Value) -> String {
    match m {
        serde_json::Value::Object(o) if o.is_empty() => String::new(),
        v => serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}

/// `GET /api-keys/{id}/edit`.
pub async fn edit_page(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
) -> PageResult {
    c.require(Permission::ApiKeysManage)?;
    let id = errors::path_id(&id, "API key")?;
    let (k, _) = state.service.get_api_key(&c.caller, &id).await?;
    let mut pairs = vec![
        ("name".to_string(), k.name.clone()),
        ("description".to_string(), k.description.clone()),
        ("tags".to_string(), k.tags.join(", ")),
        ("scopes".to_string(), k.scopes.join(", ")),
        (
            "external_id".to_string(),
            k.external_id.clone().unwrap_or_default(),
        ),
        (
            "allowed_cidrs".to_string(),
            k.allowed_cidrs
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("metadata".to_string(), metadata_text(&k.metadata)),
    ];
    pairs.extend(k.roles.iter().map(|r| ("roles".to_string(), r.clone())));
    pairs.extend(forms::limit_pairs(&k.ratelimits));
    pairs.extend(credit_pairs(k.credits.as_ref()));
    edit_form(&state, &c, &k, &FormData(pairs), &FieldErrors::default()).await
}

/// `POST /api-keys/{id}/edit`.
pub async fn edit(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "API key")?;
    let (k, _) = state.service.get_api_key(&c.caller, &id).await?;
    if form.has(forms::ADD_LIMIT) {
        let form = forms::with_added_row(&form);
        return edit_form(&state, &c, &k, &form, &FieldErrors::default()).await;
    }
    let mut errors = FieldErrors::default();
    let ratelimits = forms::read_limits(&form, "A key", &mut errors);
    let mut credits = read_credits(&form, &mut errors);
    let metadata = read_metadata(&form, &mut errors);
    // A balance left as it was shown is not a "set": the key keeps the balance it has
    // now (calls may have spent some since the page was opened).
    if let (Some(new), Some(old)) = (credits.as_mut(), k.credits) {
        if parse_whole(form.get("credits.remaining_shown")) == Some(new.remaining) {
            new.remaining = old.remaining;
        }
    }
    let roles = form.list("roles");
    // Roles go to the service only when the set changed, so editing other fields of a
    // key whose roles the user could not grant still works.
    let input = UpdateApiKey {
        name: Some(form.get("name").to_string()),
        description: Some(form.get("description").to_string()),
        tags: Some(form.list("tags")),
        roles: (form.has("roles_present") && forms::roles_changed(&roles, &k.roles))
            .then_some(roles),
        scopes: Some(form.list("scopes")),
        // A post without these sections leaves them as they are.
        ratelimits: forms::limits_sent(&form).then_some(Some(ratelimits)),
        credits: form.has("credits").then_some(credits),
        external_id: form.has("external_id").then(|| form.opt("external_id")),
        allowed_cidrs: form
            .has("allowed_cidrs")
            .then(|| form.list("allowed_cidrs")),
        metadata: form.has("metadata").then_some(metadata),
        ..Default::default()
    };
    let Some(input) = errors.parsed(ApiKeyPatch::parse_all(input), RENAME) else {
        return edit_form(&state, &c, &k, &form, &errors).await;
    };
    match state.service.update_api_key(&c.caller, &id, input).await {
        Ok(_) => Ok(layout::see_other(&format!("/api-keys/{id}?notice=updated"))),
        Err(e) => {
            let errors = FieldErrors::from_grant(e, RENAME, Permission::ApiKeysManage, "roles")?;
            edit_form(&state, &c, &k, &form, &errors).await
        }
    }
}

fn regenerate_form(c: &Console, k: &ApiKey, form: &FormData, errors: &FieldErrors) -> PageResult {
    let grace = form.get("grace_period_seconds");
    let graces = [
        ("0", "No grace period: the old key stops working now"),
        ("3600", "1 hour"),
        ("86400", "24 hours"),
        ("604800", "7 days"),
    ];
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/api-keys" { "API Keys" } " / " a href={ "/api-keys/" (k.id) } { (k.name) } " / " span { "Regenerate" } }
        (header("Regenerate API key", Some("A new secret replaces the current one. You will see it once."), html! {}))
        div class="card" {
            (form_error(errors))
            form method="post" action={ "/api-keys/" (k.id) "/regenerate" } class="stack" novalidate {
                (csrf(c))
                (expiry_fields(form, errors, "90"))
                (field("Grace period for the old key", "grace_period_seconds", errors, Some("During the grace period both the old and the new key verify, so you can roll out the new one without downtime."), html! {
                    select id="f-grace_period_seconds" name="grace_period_seconds" {
                        @for (v, label) in graces { option value=(v) selected[grace == v] { (label) } }
                    }
                }))
                div class="form-actions" {
                    button class="btn btn-primary" type="submit" { "Regenerate key" }
                    a class="btn btn-link" href={ "/api-keys/" (k.id) } { "Cancel" }
                }
            }
        }
    };
    forms::form_page(errors, layout(c, "Regenerate API key", "keys", body))
}

/// `GET /api-keys/{id}/regenerate`.
pub async fn regenerate_page(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
) -> PageResult {
    c.require(Permission::ApiKeysManage)?;
    let id = errors::path_id(&id, "API key")?;
    let (k, _) = state.service.get_api_key(&c.caller, &id).await?;
    regenerate_form(
        &c,
        &k,
        &regenerate_defaults(&k, c.now),
        &FieldErrors::default(),
    )
}

/// The grace period the regenerate form starts with: an hour of overlap, so that a
/// slip of the Enter key does not cut off every program still using the old secret.
const DEFAULT_GRACE: &str = "3600";

/// How long the key's current secret was made to last: from its creation, or from
/// the last change if that set the expiry a whole number of days ahead (as
/// regenerating with a preset does). `None`: it never expires.
fn validity(k: &ApiKey) -> Option<Duration> {
    let e = k.expires_at?;
    let whole_days = |from: Timestamp| {
        let secs = (e - from).num_seconds();
        secs > 0 && (secs % 86_400 <= 2 || secs % 86_400 >= 86_398)
    };
    // An edit moves updated_at too, but lands a whole number of days before the expiry
    // only by chance.
    let from = if k.updated_at > k.created_at && whole_days(k.updated_at) {
        k.updated_at
    } else {
        k.created_at
    };
    Some((e - from).max(Duration::days(1)))
}

/// The regenerate form's starting values: a short grace period, and an expiry that
/// gives the new secret as long as the current one was given (a preset when it is
/// one, else the date that far from now; never for a key that never expires).
fn regenerate_defaults(k: &ApiKey, now: Timestamp) -> FormData {
    let mut pairs = vec![(
        "grace_period_seconds".to_string(),
        DEFAULT_GRACE.to_string(),
    )];
    match validity(k) {
        None => pairs.push(("expiration".into(), "never".into())),
        Some(d) => {
            let days = (d.num_seconds() + 43_200) / 86_400;
            let close = |n: i64| (d.num_seconds() - n * 86_400).abs() <= 3_600;
            match [30, 60, 90].into_iter().find(|n| days == *n && close(*n)) {
                Some(n) => pairs.push(("expiration".into(), n.to_string())),
                None => {
                    pairs.push(("expiration".into(), "custom".into()));
                    let day = (now + d).format("%Y-%m-%d").to_string();
                    pairs.push(("expires_at".into(), day));
                }
            }
        }
    }
    FormData(pairs)
}

/// `POST /api-keys/{id}/regenerate`.
pub async fn regenerate(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "API key")?;
    let mut errors = FieldErrors::default();
    let expiry = read_expiry(&form, c.now, &mut errors);
    let grace: Option<i64> = match form.get("grace_period_seconds").trim() {
        "" => None,
        s => match s.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.add("grace_period_seconds", "Choose a grace period.");
                None
            }
        },
    };
    let expires_at = match expiry {
        Some(None) => Some(None),
        Some(Some(Ok(t))) => Some(Some(t)),
        Some(Some(Err(days))) => Some(Some(c.now + Duration::days(days))),
        None => None,
    };
    if errors.is_empty() {
        let input = RegenerateApiKey {
            expires_at,
            grace_period_seconds: grace,
        };
        match state
            .service
            .regenerate_api_key(&c.caller, &id, input)
            .await
        {
            Ok((k, _, secret)) => {
                return Ok(super::flash::redirect_with(
                    &state,
                    &c,
                    &secret_path(&k.id.to_string(), "regenerated"),
                    secret.expose(),
                ));
            }
            Err(e) => errors = FieldErrors::from_service(e, RENAME)?,
        }
    }
    let (k, _) = state.service.get_api_key(&c.caller, &id).await?;
    regenerate_form(&c, &k, &form, &errors)
}

/// `POST /api-keys/{id}/enabled`: turns the key off (`enabled=false`) or on again.
pub async fn set_enabled(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "API key")?;
    let on = form.get("enabled") == "true";
    let input = UpdateApiKey {
        enabled: Some(on),
        ..Default::default()
    };
    state.service.update_api_key(&c.caller, &id, input).await?;
    let notice = if on { "enabled" } else { "disabled" };
    Ok(layout::see_other(&format!(
        "/api-keys/{id}?notice={notice}"
    )))
}

/// `POST /api-keys/{id}/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "API key")?;
    state.service.revoke_api_key(&c.caller, &id).await?;
    Ok(layout::see_other(&format!("/api-keys/{id}?notice=revoked")))
}

/// `POST /api-keys/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "API key")?;
    state.service.delete_api_key(&c.caller, &id).await?;
    Ok(layout::see_other("/api-keys?notice=deleted"))
}

/// `POST /api-keys/delete` (bulk).
/// Where a bulk action returns: the list it came from (only an API keys list), ready
/// for one more query parameter.
fn bulk_back(form: &FormData) -> String {
    let back = super::auth::safe_next(form.get("back"))
        .filter(|b| b.starts_with("/api-keys"))
        .unwrap_or("/api-keys");
    let sep = if back.contains('?') { '&' } else { '?' };
    format!("{back}{sep}")
}

/// `POST /api-keys/revoke`: revokes the selected keys (each audited like a single
/// revoke; already revoked ones are left as they are).
pub async fn bulk_revoke(State(state): State<AppState>, c: Console, form: FormData) -> PageResult {
    c.check_csrf(&form)?;
    let back = bulk_back(&form);
    let ids = form.list("ids");
    if ids.is_empty() {
        return Ok(layout::see_other(&format!("{back}notice=none_selected")));
    }
    let mut revoked = 0;
    for raw in ids.iter().take(100) {
        let id = errors::path_id(raw, "API key")?;
        let (k, _) = state.service.get_api_key(&c.caller, &id).await?;
        if k.revoked_at.is_none() {
            state.service.revoke_api_key(&c.caller, &id).await?;
            revoked += 1;
        }
    }
    Ok(layout::see_other(&format!(
        "{back}notice=bulk_revoked&n={revoked}"
    )))
}

pub async fn bulk_delete(State(state): State<AppState>, c: Console, form: FormData) -> PageResult {
    c.check_csrf(&form)?;
    let back = bulk_back(&form);
    let ids = form.list("ids");
    if ids.is_empty() {
        return Ok(layout::see_other(&format!("{back}notice=none_selected")));
    }
    let out = state.service.batch_delete_api_keys(&c.caller, &ids).await?;
    Ok(layout::see_other(&format!(
        "{back}notice=bulk_deleted&n={}",
        out.deleted.len()
    )))
}
