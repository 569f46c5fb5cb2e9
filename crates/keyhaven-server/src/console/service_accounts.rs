//! Service accounts and their credentials (the audit log, on its own menu entry, is in
//! `audit_log`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::NaiveDate;
use keyhaven_core::credential::Credential;
use keyhaven_core::permission::Permission;
use keyhaven_core::service_account::{ServiceAccount, ServiceAccountStatus, Transition};
use keyhaven_store::{ApiKeyFilter, Page, ServiceAccountFilter};
use maud::{html, Markup};

use super::api_keys::keys_table;
use super::auth::Console;
use super::errors::{self, PageResult};
use super::forms::{self, checklist, csrf, field, form_error, FieldErrors, FormData, Query};
use super::layout::{self, header, layout};
use super::sorting::{Sorting, ACCOUNT_COLUMNS};
use super::widgets::{self, badge, chips, key_badge, relative, LimitScope};
use crate::app::AppState;
use keyhaven_service::api_keys::OwnerHold;
use keyhaven_service::credentials::{CreateCredential, UpdateCredential};
use keyhaven_service::service_accounts::{
    CreateServiceAccount, NewServiceAccount, ServiceAccountPatch, UpdateServiceAccount,
};
use std::collections::HashMap;

const HINT_SHARED_LIMITS: &str = "Shared by every key of this account: one allowance per limit for the whole account, so five keys do not get five times the calls.";

/// The core's checks of the fields the use case checks first, so that their mistakes
/// show together with those of the limits (the use case stops at the first).
fn notice_text(q: &FormData) -> Option<&'static str> {
    match q.get("notice") {
        "created" => Some("Service account created."),
        "suspended" => Some("Service account suspended. Its keys and credentials stop verifying until you reactivate it."),
        "reactivated" => Some("Service account reactivated."),
        "archived" => Some("Service account archived. Every key and credential it owned is revoked."),
        "credential_deleted" => Some("Credential deleted."),
        "deleted" => Some("Service account deleted, with its API keys and credentials."),
        "updated" => Some("Service account updated."),
        "credential_updated" => Some("Credential updated."),
        "secret_shown" => Some("The credential's client secret was shown once and can't be shown again. If it was lost, create a new credential and delete this one."),
        _ => None,
    }
}

/// `GET /settings/api-access` (and `?tab=activity`).
pub async fn index(State(state): State<AppState>, c: Console, Query(q): Query) -> PageResult {
    if q.get("tab") == "activity" {
        return super::audit_log::activity(state, c, q).await;
    }
    c.require(Permission::ServiceAccountsView)?;
    let show = q.get("status").to_string();
    let statuses = match show.as_str() {
        "archived" => vec![ServiceAccountStatus::Archived],
        "suspended" => vec![ServiceAccountStatus::Suspended],
        "all" => Vec::new(),
        _ => vec![
            ServiceAccountStatus::Active,
            ServiceAccountStatus::Suspended,
        ],
    };
    let sorting = Sorting::from_query(&q, ACCOUNT_COLUMNS);
    let listing = state
        .service
        .list_service_accounts_sorted(
            &c.caller,
            &ServiceAccountFilter {
                statuses,
                q: q.opt("q"),
                external_id: None,
            },
            sorting.sort(),
            &Page {
                limit: 50,
                cursor: q.opt("cursor"),
            },
        )
        .await?;
    let ids: Vec<_> = listing.items.iter().map(|s| s.id.clone()).collect();
    let counts = state
        .service
        .service_account_key_counts(&c.caller, &ids)
        .await?;
    let manage = c.can(Permission::ServiceAccountsManage);
    let filter_q = [("q", q.get("q")), ("status", show.as_str())];
    let mut base = filter_q.to_vec();
    base.extend(sorting.pairs());
    let next_href = match (listing.has_more, listing.next_cursor.as_deref()) {
        (true, Some(cur)) => {
            let mut n = base.clone();
            n.push(("cursor", cur));
            Some(format!("/settings/api-access?{}", forms::query_string(&n)))
        }
        _ => None,
    };
    let body = html! {
        (header("Service accounts", Some("Service accounts are identities for programs; their keys and credentials outlive any person's account."), html! {
            @if manage { a class="btn btn-primary" href="/settings/api-access/new" { "Create Service Account" } }
        }))
        @if let Some(n) = notice_text(&q) { (widgets::notice(n)) }
        form class="filters" method="get" action="/settings/api-access" role="search" aria-label="Filter service accounts" {
            (sorting.hidden_fields())
            div class="field" {
                label for="filter-q" { "Search" }
                input id="filter-q" type="search" name="q" value=(q.get("q"));
            }
            div class="field" {
                label for="filter-status" { "Show" }
                select id="filter-status" name="status" {
                    option value="" selected[show.is_empty()] { "Active and suspended" }
                    option value="suspended" selected[show == "suspended"] { "Suspended only" }
                    option value="archived" selected[show == "archived"] { "Archived only" }
                    option value="all" selected[show == "all"] { "All, including archived" }
                }
            }
            div class="filter-actions" { button class="btn" type="submit" { "Apply filters" } }
        }
        @if listing.items.is_empty() {
            (widgets::empty("No service accounts", "Create one for each integration that calls your APIs.", html! {
                @if manage { a class="btn btn-primary" href="/settings/api-access/new" { "Create Service Account" } }
            }))
        } @else {
            div class="table-wrap" {
                table class="table" id="accounts-table" {
                    thead { tr {
                        (sorting.header("Name", "name", "/settings/api-access", &filter_q))
                        th { "Description" } th { "Status" } th { "Keys" }
                        (sorting.header("Created", "created", "/settings/api-access", &filter_q))
                        th class="col-actions" { span class="sr-only" { "Actions" } }
                    } }
                    tbody {
                        @for sa in &listing.items {
                            @let n = counts.iter().find(|(i, _)| *i == sa.id).map(|(_, n)| *n).unwrap_or(0);
                            tr data-id=(sa.id) {
                                td { a class="strong" href={ "/settings/api-access/" (sa.id) } { (sa.name) } }
                                td { @if sa.description.is_empty() { span class="muted" { "—" } } @else { (sa.description) } }
                                td { (badge(sa.status.as_str())) }
                                td { (n) }
                                td { (widgets::time(&sa.created_at)) }
                                td class="col-actions" { @if manage { (transition_buttons(&c, sa)) } }
                            }
                        }
                    }
                }
            }
        }
        (widgets::pager("/settings/api-access", &base, q.has("cursor"), next_href.as_deref()))
    };
    Ok(layout::ok(layout(&c, "Service accounts", "access", body)))
}

fn transition_buttons(c: &Console, sa: &ServiceAccount) -> Markup {
    let action = format!("/settings/api-access/{}/transition", sa.id);
    html! {
        div class="row-actions" {
            @if sa.status == ServiceAccountStatus::Active {
                form method="post" action=(action) class="inline"
                    data-confirm={ "Suspend \u{201c}" (sa.name) "\u{201d}? Every API key and credential it owns is refused from now on, so programs using them stop working until you reactivate the account." }
                    data-confirm-label="Suspend" {
                    (csrf(c))
                    input type="hidden" name="action" value="suspend";
                    button class="btn btn-small" type="submit" { "Suspend" }
                }
            }
            @if sa.status == ServiceAccountStatus::Suspended {
                form method="post" action=(action) class="inline" {
                    (csrf(c))
                    input type="hidden" name="action" value="reactivate";
                    button class="btn btn-small" type="submit" { "Reactivate" }
                }
            }
            @if sa.status != ServiceAccountStatus::Archived {
                form method="post" action=(action) class="inline"
                    data-confirm={ "Archive \u{201c}" (sa.name) "\u{201d}? Archiving revokes every API key and credential it owns, immediately and for good. The account stays listed for the audit history." }
                    data-confirm-label="Archive" {
                    (csrf(c))
                    input type="hidden" name="action" value="archive";
                    button class="btn btn-small btn-danger-outline" type="submit" { "Archive" }
                }
            }
        }
    }
}

async fn new_form(
    state: &AppState,
    c: &Console,
    form: &FormData,
    errors: &FieldErrors,
) -> PageResult {
    let roles = forms::role_choices(state, c, &[]).await?;
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/settings/api-access" { "Service accounts" } " / " span { "New service account" } }
        (header("Create Service Account", None, html! {}))
        div class="card" {
            (form_error(errors))
            form method="post" action="/settings/api-access/new" class="stack" novalidate {
                (forms::default_submit())
                (csrf(c))
                (field("Name *", "name", errors, None, forms::text_input("name", form.get("name"), "text", true)))
                (field("Description", "description", errors, None, html! {
                    textarea id="f-description" name="description" rows="2" { (form.get("description")) }
                }))
                @if !roles.is_empty() {
                    (checklist("Roles", "roles", errors, Some("Only roles whose permissions you hold yourself are offered."), &roles, &form.list("roles")))
                }
                (forms::limits_fields(form, errors, HINT_SHARED_LIMITS))
                div class="form-actions" {
                    button class="btn btn-primary" type="submit" { "Create Service Account" }
                    a class="btn btn-link" href="/settings/api-access" { "Cancel" }
                }
            }
        }
    };
    forms::form_page(errors, layout(c, "Create Service Account", "access", body))
}

/// `GET /settings/api-access/new`.
pub async fn new_page(State(state): State<AppState>, c: Console) -> PageResult {
    c.require(Permission::ServiceAccountsManage)?;
    new_form(&state, &c, &FormData::default(), &FieldErrors::default()).await
}

/// `POST /settings/api-access/new`.
pub async fn create(State(state): State<AppState>, c: Console, form: FormData) -> PageResult {
    c.check_csrf(&form)?;
    if form.has(forms::ADD_LIMIT) {
        let form = forms::with_added_row(&form);
        return new_form(&state, &c, &form, &FieldErrors::default()).await;
    }
    let mut errors = FieldErrors::default();
    let ratelimits = forms::read_limits(&form, "A service account", &mut errors);
    let draft = CreateServiceAccount {
        name: form.get("name").to_string(),
        description: Some(form.get("description").to_string()),
        roles: Some(form.list("roles")),
        ratelimits: Some(ratelimits),
        external_id: None,
    };
    let Some(input) = errors.parsed(NewServiceAccount::parse_all(draft), &[]) else {
        return new_form(&state, &c, &form, &errors).await;
    };
    match state.service.create_service_account(&c.caller, input).await {
        Ok(sa) => Ok(layout::see_other(&format!(
            "/settings/api-access/{}?notice=created",
            sa.id
        ))),
        Err(e) => {
            let errors =
                FieldErrors::from_grant(e, &[], Permission::ServiceAccountsManage, "roles")?;
            new_form(&state, &c, &form, &errors).await
        }
    }
}

/// `POST /settings/api-access/{id}/transition`.
pub async fn transition(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "service account")?;
    let (t, notice) = match form.get("action") {
        "suspend" => (Transition::Suspend, "suspended"),
        "reactivate" => (Transition::Reactivate, "reactivated"),
        "archive" => (Transition::Archive, "archived"),
        _ => {
            return Err(errors::problem(
                StatusCode::BAD_REQUEST,
                "Unknown action",
                "Choose Suspend, Reactivate or Archive.",
            ))
        }
    };
    state
        .service
        .transition_service_account(&c.caller, &id, t)
        .await?;
    Ok(layout::see_other(&format!(
        "/settings/api-access/{id}?notice={notice}"
    )))
}

struct Created<'a> {
    credential: &'a Credential,
    secret: &'a str,
}

async fn detail_page(
    state: &AppState,
    c: &Console,
    id: &keyhaven_core::id::Id,
    notice: Option<&str>,
    created: Option<Created<'_>>,
    form: &FormData,
    errors: &FieldErrors,
) -> PageResult {
    let sa = state.service.get_service_account(&c.caller, id).await?;
    let creds = state.service.list_credentials(&c.caller, id).await?;
    let keys = if c.can(Permission::ApiKeysView) {
        Some(
            state
                .service
                .list_api_keys(
                    &c.caller,
                    &ApiKeyFilter {
                        status: None,
                        role: None,
                        tag: None,
                        owner_id: Some(sa.id.to_string()),
                        q: None,
                        now: c.now,
                        external_id: None,
                    },
                    &Page {
                        limit: 100,
                        cursor: None,
                    },
                )
                .await?
                .items,
        )
    } else {
        None
    };
    let manage = c.can(Permission::ServiceAccountsManage);
    let live = sa.status != ServiceAccountStatus::Archived;
    // The account's own status holds its keys and credentials.
    let hold = match sa.status {
        ServiceAccountStatus::Active => None,
        ServiceAccountStatus::Suspended => Some(OwnerHold::AccountSuspended),
        ServiceAccountStatus::Archived => Some(OwnerHold::AccountArchived),
    };
    let holds: HashMap<String, OwnerHold> =
        hold.map(|h| (sa.id.to_string(), h)).into_iter().collect();
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/settings/api-access" { "Service accounts" } " / " span { (sa.name) } }
        (header(&sa.name, None, html! {
            @if manage {
                @if live { a class="btn btn-small" href={ "/settings/api-access/" (sa.id) "/edit" } { "Edit" } }
                (transition_buttons(c, &sa))
                form method="post" action={ "/settings/api-access/" (sa.id) "/delete" } class="inline"
                    data-confirm={ "Delete the service account \u{201c}" (sa.name) "\u{201d} for good? Its API keys and credentials are deleted with it and stop working at once. To keep the audit history readable, archive it instead." }
                    data-confirm-label="Delete" {
                    (csrf(c))
                    button class="btn btn-small btn-danger" type="submit" { "Delete" }
                }
            }
        }))
        @if let Some(n) = notice { (widgets::notice(n)) }
        @if let Some(cr) = &created {
            div class="banner banner-success secret-banner" role="status" {
                h2 { "Credential created" }
                p { strong { "Copy the client secret now." } " It will not be shown again." }
                div class="field" {
                    label for="client-id" { "Client ID" }
                    div class="secret-row" {
                        input id="client-id" type="text" readonly value=(cr.credential.client_id);
                        button type="button" class="btn" data-copy="client-id" { "Copy" }
                    }
                }
                (widgets::secret_box("Client secret", "new-secret", cr.secret))
            }
        }
        div class="card" {
            dl class="props" data-id=(sa.id) {
                dt { "Status" } dd { (badge(sa.status.as_str())) }
                dt { "Description" } dd { @if sa.description.is_empty() { span class="muted" { "—" } } @else { (sa.description) } }
                dt { "Roles" } dd { (chips(&sa.roles, "chip-role")) }
                dt { "Created by" } dd { (sa.created_by.name) }
                dt { "Created" } dd { (widgets::time(&sa.created_at)) }
            }
        }
        section class="card" id="shared-limits" {
            div class="section-head" {
                h2 { "Shared rate limits" }
                @if manage && live { a class="btn btn-small" href={ "/settings/api-access/" (sa.id) "/edit" } { "Edit limits" } }
            }
            @if sa.ratelimits.is_empty() {
                p class="muted" id="limits-empty" { "No shared limits: each of its keys is held only to its own limits." }
            } @else {
                @let all: Vec<_> = sa.ratelimits.iter().map(|l| (l, LimitScope::ServiceAccount)).collect();
                (widgets::limits_table("limits-table", &all))
                p class="muted small" { "All keys of this account draw from these limits together, on top of each key's own limits." }
            }
        }
        @if let Some(keys) = &keys {
            section class="card" {
                div class="section-head" {
                    h2 { "API keys" }
                    @if live && c.can(Permission::ApiKeysCreate) { a class="btn" href={ "/api-keys/new?owner=" (sa.id) } { "Create API key" } }
                }
                @if keys.is_empty() { p class="muted" { "This service account owns no API keys." } }
                @else { (keys_table(c, keys, false, &holds)) }
            }
        }
        section class="card" {
            div class="section-head" { h2 { "Credentials" } }
            p class="muted small" { "Client ID and secret pairs exchanged at /oauth/token for short-lived access tokens." }
            @if creds.is_empty() {
                p class="muted" { "No credentials yet." }
            } @else {
                div class="table-wrap" {
                    table class="table" id="credentials-table" {
                        thead { tr { th { "Name" } th { "Client ID" } th { "Last used" } th { "Expires" } th { "Status" } th class="col-actions" { span class="sr-only" { "Actions" } } } }
                        tbody {
                            @for cr in &creds {
                                tr data-id=(cr.id) {
                                    td { (cr.name) @if !cr.description.is_empty() { div class="muted small" { (cr.description) } } }
                                    td { code { (cr.client_id) } }
                                    td { (relative(c.now, cr.last_used_at)) }
                                    td { @match &cr.expires_at { Some(t) => (widgets::date(t)), None => span class="muted" { "Never" } } }
                                    td { @if cr.revoked_at.is_some() { (badge("revoked")) } @else if cr.expires_at.is_some_and(|t| t <= c.now) { (badge("expired")) } @else { (key_badge("active", hold)) } }
                                    td class="col-actions" {
                                        @if manage {
                                            a class="btn btn-small" href={ "/settings/api-access/" (sa.id) "/credentials/" (cr.id) "/edit" } aria-label={ "Edit " (cr.name) } { "Edit" }
                                            " "
                                            form method="post" action={ "/settings/api-access/" (sa.id) "/credentials/" (cr.id) "/delete" } class="inline"
                                                data-confirm={ "Delete the credential \u{201c}" (cr.name) "\u{201d}? Programs using it can no longer get tokens." }
                                                data-confirm-label="Delete" {
                                                (csrf(c))
                                                button class="btn btn-small btn-danger-outline" type="submit" { "Delete" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if manage && live {
                h3 { "Create credential" }
                (form_error(errors))
                form method="post" action={ "/settings/api-access/" (sa.id) "/credentials" } class="row-form" novalidate {
                    (csrf(c))
                    (field("Name *", "name", errors, None, forms::text_input("name", form.get("name"), "text", true)))
                    (field("Description", "description", errors, None, forms::text_input("description", form.get("description"), "text", false)))
                    (field("Expires (optional)", "expires_at", errors, Some("End of this day in your time zone."), html! {
                        (forms::text_input("expires_at", form.get("expires_at"), "date", false))
                        (forms::tz_field())
                    }))
                    div class="form-actions" { button class="btn btn-primary" type="submit" { "Create credential" } }
                }
            }
        }
    };
    forms::form_page(errors, layout(c, &sa.name, "access", body))
}

/// `GET /settings/api-access/{id}`.
pub async fn detail(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    Query(q): Query,
) -> PageResult {
    c.require(Permission::ServiceAccountsView)?;
    let id = errors::path_id(&id, "service account")?;
    detail_page(
        &state,
        &c,
        &id,
        notice_text(&q),
        None,
        &FormData::default(),
        &FieldErrors::default(),
    )
    .await
}

/// `POST /settings/api-access/{id}/credentials`.
pub async fn create_credential(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "service account")?;
    let mut errors = FieldErrors::default();
    let expires_at = match form.opt("expires_at") {
        None => None,
        Some(s) => match NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .ok()
            .and_then(|d| forms::local_day(d, forms::tz_offset(&form), true))
        {
            Some(t) => Some(t),
            None => {
                errors.add("expires_at", "Enter a date such as 2027-01-31.");
                None
            }
        },
    };
    if errors.is_empty() {
        let input = CreateCredential {
            name: form.get("name").to_string(),
            description: form.opt("description"),
            expires_at,
        };
        match state.service.create_credential(&c.caller, &id, input).await {
            // POST-redirect-GET: a reload can't create a second credential.
            Ok((cred, secret)) => {
                return Ok(super::flash::redirect_with(
                    &state,
                    &c,
                    &format!("/settings/api-access/{id}/credentials/{}/created", cred.id),
                    secret.expose(),
                ))
            }
            Err(e) => errors = FieldErrors::from_service(e, &[])?,
        }
    }
    detail_page(&state, &c, &id, None, None, &form, &errors).await
}

/// `GET /settings/api-access/{id}/credentials/{cid}/created`: the client secret the
/// POST before left for this page, shown once; a reload goes to the account's page.
pub async fn credential_created(
    State(state): State<AppState>,
    c: Console,
    Path((id, cid)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> PageResult {
    let id = errors::path_id(&id, "service account")?;
    let cid = errors::path_id(&cid, "credential")?;
    let page = format!("/settings/api-access/{id}/credentials/{cid}/created");
    let Some(secret) = super::flash::take(&state, &c, &headers, &page) else {
        let mut res = layout::see_other(&format!("/settings/api-access/{id}?notice=secret_shown"));
        super::flash::clear(&state, &mut res);
        return Ok(res);
    };
    let cred = state.service.get_credential(&c.caller, &id, &cid).await?;
    let mut res = detail_page(
        &state,
        &c,
        &id,
        None,
        Some(Created {
            credential: &cred,
            secret: &secret,
        }),
        &FormData::default(),
        &FieldErrors::default(),
    )
    .await?;
    super::flash::clear(&state, &mut res);
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

/// `POST /settings/api-access/{id}/credentials/{cid}/delete`.
pub async fn delete_credential(
    State(state): State<AppState>,
    c: Console,
    Path((id, cid)): Path<(String, String)>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "service account")?;
    let cid = errors::path_id(&cid, "credential")?;
    state
        .service
        .delete_credential(&c.caller, &id, &cid)
        .await?;
    Ok(layout::see_other(&format!(
        "/settings/api-access/{id}?notice=credential_deleted"
    )))
}

async fn edit_form(
    state: &AppState,
    c: &Console,
    sa: &ServiceAccount,
    form: &FormData,
    errors: &FieldErrors,
) -> PageResult {
    let roles = forms::role_choices(state, c, &sa.roles).await?;
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/settings/api-access" { "Service accounts" } " / " a href={ "/settings/api-access/" (sa.id) } { (sa.name) } " / " span { "Edit" } }
        (header("Edit service account", None, html! {}))
        div class="card" {
            (form_error(errors))
            form method="post" action={ "/settings/api-access/" (sa.id) "/edit" } class="stack" novalidate {
                (forms::default_submit())
                (csrf(c))
                (field("Name *", "name", errors, None, forms::text_input("name", form.get("name"), "text", true)))
                (field("Description", "description", errors, None, html! {
                    textarea id="f-description" name="description" rows="2" { (form.get("description")) }
                }))
                @if !roles.is_empty() {
                    input type="hidden" name="roles_present" value="1";
                    (checklist("Roles", "roles", errors, None, &roles, &form.list("roles")))
                }
                (forms::limits_fields(form, errors, HINT_SHARED_LIMITS))
                div class="form-actions" {
                    button class="btn btn-primary" type="submit" { "Save changes" }
                    a class="btn btn-link" href={ "/settings/api-access/" (sa.id) } { "Cancel" }
                }
            }
        }
    };
    forms::form_page(errors, layout(c, "Edit service account", "access", body))
}

/// `GET /settings/api-access/{id}/edit`.
pub async fn edit_page(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
) -> PageResult {
    c.require(Permission::ServiceAccountsManage)?;
    let id = errors::path_id(&id, "service account")?;
    let sa = state.service.get_service_account(&c.caller, &id).await?;
    let mut pairs = vec![
        ("name".to_string(), sa.name.clone()),
        ("description".to_string(), sa.description.clone()),
    ];
    pairs.extend(sa.roles.iter().map(|r| ("roles".to_string(), r.clone())));
    pairs.extend(forms::limit_pairs(&sa.ratelimits));
    edit_form(&state, &c, &sa, &FormData(pairs), &FieldErrors::default()).await
}

/// `POST /settings/api-access/{id}/edit`.
pub async fn edit(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "service account")?;
    let sa = state.service.get_service_account(&c.caller, &id).await?;
    if form.has(forms::ADD_LIMIT) {
        let form = forms::with_added_row(&form);
        return edit_form(&state, &c, &sa, &form, &FieldErrors::default()).await;
    }
    let mut errors = FieldErrors::default();
    let ratelimits = forms::read_limits(&form, "A service account", &mut errors);
    let roles = form.list("roles");
    let input = UpdateServiceAccount {
        name: Some(form.get("name").to_string()),
        description: Some(form.get("description").to_string()),
        roles: (form.has("roles_present") && forms::roles_changed(&roles, &sa.roles))
            .then_some(roles),
        // A post without the limits section leaves the limits as they are.
        ratelimits: forms::limits_sent(&form).then_some(Some(ratelimits)),
        external_id: None,
    };
    let Some(input) = errors.parsed(ServiceAccountPatch::parse_all(input), &[]) else {
        return edit_form(&state, &c, &sa, &form, &errors).await;
    };
    match state
        .service
        .update_service_account(&c.caller, &id, input)
        .await
    {
        Ok(_) => Ok(layout::see_other(&format!(
            "/settings/api-access/{id}?notice=updated"
        ))),
        Err(e) => {
            let errors =
                FieldErrors::from_grant(e, &[], Permission::ServiceAccountsManage, "roles")?;
            edit_form(&state, &c, &sa, &form, &errors).await
        }
    }
}

/// `POST /settings/api-access/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "service account")?;
    state.service.delete_service_account(&c.caller, &id).await?;
    Ok(layout::see_other("/settings/api-access?notice=deleted"))
}

fn credential_form(
    c: &Console,
    sa: &ServiceAccount,
    cr: &Credential,
    form: &FormData,
    errors: &FieldErrors,
) -> PageResult {
    let action = format!("/settings/api-access/{}/credentials/{}/edit", sa.id, cr.id);
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/settings/api-access" { "Service accounts" } " / " a href={ "/settings/api-access/" (sa.id) } { (sa.name) } " / " span { "Edit credential" } }
        (header("Edit credential", Some(&cr.client_id), html! {}))
        div class="card" {
            (form_error(errors))
            form method="post" action=(action) class="stack" novalidate {
                (csrf(c))
                (field("Name *", "name", errors, None, forms::text_input("name", form.get("name"), "text", true)))
                (field("Description", "description", errors, None, forms::text_input("description", form.get("description"), "text", false)))
                div class="form-actions" {
                    button class="btn btn-primary" type="submit" { "Save changes" }
                    a class="btn btn-link" href={ "/settings/api-access/" (sa.id) } { "Cancel" }
                }
            }
        }
    };
    forms::form_page(errors, layout(c, "Edit credential", "access", body))
}

/// `GET /settings/api-access/{id}/credentials/{cid}/edit`.
pub async fn edit_credential_page(
    State(state): State<AppState>,
    c: Console,
    Path((id, cid)): Path<(String, String)>,
) -> PageResult {
    c.require(Permission::ServiceAccountsManage)?;
    let id = errors::path_id(&id, "service account")?;
    let cid = errors::path_id(&cid, "credential")?;
    let sa = state.service.get_service_account(&c.caller, &id).await?;
    let cr = state.service.get_credential(&c.caller, &id, &cid).await?;
    let form = FormData(vec![
        ("name".into(), cr.name.clone()),
        ("description".into(), cr.description.clone()),
    ]);
    credential_form(&c, &sa, &cr, &form, &FieldErrors::default())
}

/// `POST /settings/api-access/{id}/credentials/{cid}/edit`.
pub async fn edit_credential(
    State(state): State<AppState>,
    c: Console,
    Path((id, cid)): Path<(String, String)>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "service account")?;
    let cid = errors::path_id(&cid, "credential")?;
    let input = UpdateCredential {
        name: Some(form.get("name").to_string()),
        description: Some(form.get("description").to_string()),
    };
    match state
        .service
        .update_credential(&c.caller, &id, &cid, input)
        .await
    {
        Ok(_) => Ok(layout::see_other(&format!(
            "/settings/api-access/{id}?notice=credential_updated"
        ))),
        Err(e) => {
            let errors = FieldErrors::from_service(e, &[])?;
            let sa = state.service.get_service_account(&c.caller, &id).await?;
            let cr = state.service.get_credential(&c.caller, &id, &cid).await?;
            credential_form(&c, &sa, &cr, &form, &errors)
        }
    }
}
