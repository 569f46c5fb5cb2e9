//! Shared secret, webhooks and the account page.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyhaven_core::permission::Permission;
use keyhaven_store::Page;
use maud::{html, Markup};

use super::auth::Console;
use super::ui::{
    self, badge, checklist, chips, csrf, field, form_error, header, layout, Choice, FieldErrors,
    FormData, PageResult, Query,
};
use crate::app::AppState;
use keyhaven_service::webhooks::{CreateWebhook, UpdateWebhook, EVENT_TYPES};
use keyhaven_store::WebhookEndpoint;

fn secret_page(
    c: &Console,
    status: Option<&keyhaven_service::shared_secret::SharedSecretStatus>,
    shown: Option<(&str, &str)>,
) -> Markup {
    let can_view = c.can(Permission::SharedSecretView);
    let can_manage = c.can(Permission::SharedSecretManage);
    html! {
        (header("API shared secret", Some("Keyhaven signs outgoing webhooks with this secret (Standard Webhooks). Receivers verify the signature with it."), html! {}))
        @if let Some((title, secret)) = shown {
            div class="banner banner-success secret-banner" role="status" {
                h2 { (title) }
                p { "Keep it in your receivers' secret store. Revealing it again is recorded in the audit log." }
                (ui::secret_box("Shared secret", "new-secret", secret))
            }
        }
        div class="card" {
            @match status {
                Some(status) => {
                    dl class="props" id="secret-status" {
                        dt { "Status" } dd { @if status.exists { (badge("active")) } @else { span class="muted" { "No shared secret yet" } } }
                        @if let Some(t) = &status.created_at { dt { "Created" } dd { (ui::time(t)) } }
                        @if let Some(t) = &status.previous_valid_until { dt { "Previous secret signs until" } dd { (ui::time(t)) } }
                    }
                }
                None => {
                    p class="muted" id="secret-status" { "Your roles let you rotate the shared secret but not see it or whether one exists. Rotating creates a new secret if there is none; otherwise the previous one keeps signing for 24 hours." }
                }
            }
            @let exists = status.map(|s| s.exists);
            div class="form-actions" {
                @if exists == Some(true) && can_view {
                    form method="post" action="/settings/shared-secret/reveal" class="inline" {
                        (csrf(c))
                        button class="btn" type="submit" { "Reveal" }
                    }
                }
                @if can_manage {
                    @let (confirm, label, button) = match exists {
                        Some(true) => ("Rotate the shared secret? The previous secret keeps signing alongside the new one for 24 hours, then stops.", "Rotate", "Rotate"),
                        Some(false) => ("Create the organization's shared secret?", "Create", "Create shared secret"),
                        None => ("Rotate the shared secret? If one exists, it keeps signing alongside the new one for 24 hours, then stops.", "Rotate", "Rotate"),
                    };
                    form method="post" action="/settings/shared-secret/rotate" class="inline"
                        data-confirm=(confirm) data-confirm-label=(label) {
                        (csrf(c))
                        button class="btn btn-primary" type="submit" { (button) }
                    }
                }
            }
        }
    }
}

/// The secret's status, or `None` when the user may rotate but not view it.
async fn status_for(
    state: &AppState,
    c: &Console,
) -> Result<Option<keyhaven_service::shared_secret::SharedSecretStatus>, ui::PageError> {
    if c.can(Permission::SharedSecretView) {
        Ok(Some(state.service.shared_secret_status(&c.caller).await?))
    } else {
        Ok(None)
    }
}

/// `GET /settings/shared-secret`.
pub async fn shared_secret(State(state): State<AppState>, c: Console) -> PageResult {
    if !c.can(Permission::SharedSecretView) && !c.can(Permission::SharedSecretManage) {
        return Err(ui::forbidden(Permission::SharedSecretView.as_str()));
    }
    let status = status_for(&state, &c).await?;
    Ok(ui::ok(layout(
        &c,
        "API shared secret",
        "secret",
        secret_page(&c, status.as_ref(), None),
    )))
}

/// `POST /settings/shared-secret/reveal`.
pub async fn reveal_secret(
    State(state): State<AppState>,
    c: Console,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let secret = state.service.reveal_shared_secret(&c.caller).await?;
    let status = status_for(&state, &c).await?;
    Ok(ui::ok(layout(
        &c,
        "API shared secret",
        "secret",
        secret_page(&c, status.as_ref(), Some(("Shared secret", &secret))),
    )))
}

/// `POST /settings/shared-secret/rotate`.
pub async fn rotate_secret(
    State(state): State<AppState>,
    c: Console,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let (secret, _) = state.service.rotate_shared_secret(&c.caller).await?;
    let status = status_for(&state, &c).await?;
    Ok(ui::ok(layout(
        &c,
        "API shared secret",
        "secret",
        secret_page(&c, status.as_ref(), Some(("New shared secret", &secret))),
    )))
}

async fn webhooks_page(
    state: &AppState,
    c: &Console,
    notice: Option<&str>,
    form: &FormData,
    errors: &FieldErrors,
) -> PageResult {
    c.require(Permission::WebhooksView)?;
    let endpoints = state
        .service
        .list_webhooks(
            &c.caller,
            &Page {
                limit: 100,
                cursor: None,
            },
        )
        .await?
        .items;
    let mut deliveries = Vec::with_capacity(endpoints.len());
    for w in &endpoints {
        deliveries.push(
            state
                .service
                .list_deliveries(
                    &c.caller,
                    &w.id,
                    &Page {
                        limit: 5,
                        cursor: None,
                    },
                )
                .await?
                .items,
        );
    }
    let manage = c.can(Permission::WebhooksManage);
    let body = html! {
        (header("Webhooks", Some("Keyhaven posts signed events to these endpoints when keys and service accounts change."), html! {}))
        @if let Some(n) = notice { (ui::notice(n)) }
        @if endpoints.is_empty() {
            (ui::empty("No webhook endpoints", "Add an endpoint to hear about new, rotated, revoked and expiring keys.", html! {}))
        }
        @for (w, ds) in endpoints.iter().zip(deliveries.iter()) {
            section class="card" data-id=(w.id) {
                div class="section-head" {
                    h2 { code { (w.url) } " " @if w.enabled { (badge("active")) } @else { (badge("inactive")) } }
                    @if manage {
                        a class="btn btn-small" href={ "/settings/webhooks/" (w.id) "/edit" } aria-label={ "Edit " (w.url) } { "Edit" }
                        " "
                        form method="post" action={ "/settings/webhooks/" (w.id) "/delete" } class="inline"
                            data-confirm={ "Delete the endpoint " (w.url) "? Pending deliveries are dropped." } data-confirm-label="Delete" {
                            (csrf(c))
                            button class="btn btn-small btn-danger-outline" type="submit" { "Delete" }
                        }
                    }
                }
                @if !w.description.is_empty() { p class="muted" { (w.description) } }
                p { "Events: " (chips(&w.events, "chip-scope")) }
                h3 { "Recent deliveries" }
                @if ds.is_empty() { p class="muted small" { "No deliveries yet." } }
                @else {
                    table class="table" {
                        thead { tr { th { "Event" } th { "Status" } th { "Attempts" } th { "Last response" } th { "Created" } } }
                        tbody {
                            @for d in ds {
                                tr data-id=(d.id) {
                                    td { code { (d.event_type) } }
                                    td { (badge(&d.status)) }
                                    td { (d.attempts) }
                                    td { @if let Some(s) = d.last_status { "HTTP " (s) } @else if let Some(e) = &d.last_error { span class="muted" { (e) } } @else { span class="muted" { "—" } } }
                                    td { (ui::time(&d.created_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if manage {
            section class="card" {
                h2 { "Add endpoint" }
                (form_error(errors))
                form method="post" action="/settings/webhooks" class="stack" novalidate {
                    (csrf(c))
                    (webhook_fields(form, errors, !form.has("csrf_token") || form.has("enabled")))
                    div class="form-actions" { button class="btn btn-primary" type="submit" { "Add endpoint" } }
                }
            }
        }
    };
    ui::form_page(errors, layout(c, "Webhooks", "webhooks", body))
}

fn webhook_fields(form: &FormData, errors: &FieldErrors, enabled: bool) -> Markup {
    let events: Vec<Choice> = EVENT_TYPES.iter().map(|e| Choice::new(*e, "")).collect();
    html! {
        (field("URL *", "url", errors, Some("An https:// address that accepts POST requests."), ui::text_input("url", form.get("url"), "url", true)))
        (field("Description", "description", errors, None, ui::text_input("description", form.get("description"), "text", false)))
        (checklist("Events *", "events", errors, None, &events, &form.list("events")))
        div class="field" {
            label class="check" {
                input id="f-enabled" type="checkbox" name="enabled" value="true" checked[enabled];
                " Enabled: deliver events to this endpoint"
            }
        }
    }
}

/// `GET /settings/webhooks`.
pub async fn webhooks(State(state): State<AppState>, c: Console, Query(q): Query) -> PageResult {
    let notice = match q.get("notice") {
        "created" => Some("Endpoint added."),
        "deleted" => Some("Endpoint deleted."),
        "updated" => Some("Endpoint updated."),
        _ => None,
    };
    webhooks_page(
        &state,
        &c,
        notice,
        &FormData::default(),
        &FieldErrors::default(),
    )
    .await
}

/// `POST /settings/webhooks`.
pub async fn create_webhook(
    State(state): State<AppState>,
    c: Console,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let input = CreateWebhook {
        url: form.get("url").trim().to_string(),
        events: form.list("events"),
        description: form.opt("description"),
        enabled: Some(form.has("enabled")),
    };
    match state.service.create_webhook(&c.caller, input).await {
        Ok(_) => Ok(ui::see_other("/settings/webhooks?notice=created")),
        Err(e) => {
            let errors = FieldErrors::from_service(e, &[])?;
            webhooks_page(&state, &c, None, &form, &errors).await
        }
    }
}

fn webhook_edit_form(
    c: &Console,
    w: &WebhookEndpoint,
    form: &FormData,
    errors: &FieldErrors,
) -> PageResult {
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/settings/webhooks" { "Webhooks" } " / " span { "Edit endpoint" } }
        (header("Edit endpoint", Some(&w.url), html! {}))
        div class="card" {
            (form_error(errors))
            form method="post" action={ "/settings/webhooks/" (w.id) "/edit" } class="stack" novalidate {
                (csrf(c))
                (webhook_fields(form, errors, form.has("enabled")))
                div class="form-actions" {
                    button class="btn btn-primary" type="submit" { "Save changes" }
                    a class="btn btn-link" href="/settings/webhooks" { "Cancel" }
                }
            }
        }
    };
    ui::form_page(errors, layout(c, "Edit endpoint", "webhooks", body))
}

/// `GET /settings/webhooks/{id}/edit`.
pub async fn edit_webhook_page(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
) -> PageResult {
    c.require(Permission::WebhooksManage)?;
    let id = ui::path_id(&id, "webhook")?;
    let w = state.service.get_webhook(&c.caller, &id).await?;
    let mut pairs = vec![
        ("url".to_string(), w.url.clone()),
        ("description".to_string(), w.description.clone()),
    ];
    if w.enabled {
        pairs.push(("enabled".into(), "true".into()));
    }
    pairs.extend(w.events.iter().map(|e| ("events".to_string(), e.clone())));
    webhook_edit_form(&c, &w, &FormData(pairs), &FieldErrors::default())
}

/// `POST /settings/webhooks/{id}/edit`.
pub async fn edit_webhook(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = ui::path_id(&id, "webhook")?;
    let input = UpdateWebhook {
        url: Some(form.get("url").trim().to_string()),
        events: Some(form.list("events")),
        description: Some(form.get("description").to_string()),
        enabled: Some(form.has("enabled")),
    };
    match state.service.update_webhook(&c.caller, &id, input).await {
        Ok(_) => Ok(ui::see_other("/settings/webhooks?notice=updated")),
        Err(e) => {
            let errors = FieldErrors::from_service(e, &[])?;
            let w = state.service.get_webhook(&c.caller, &id).await?;
            webhook_edit_form(&c, &w, &form, &errors)
        }
    }
}

/// `POST /settings/webhooks/{id}/delete`.
pub async fn delete_webhook(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = ui::path_id(&id, "webhook")?;
    state.service.delete_webhook(&c.caller, &id).await?;
    Ok(ui::see_other("/settings/webhooks?notice=deleted"))
}

fn account_page(
    c: &Console,
    user: Option<&keyhaven_core::user::User>,
    notice: Option<&str>,
    profile: (&FormData, &FieldErrors),
    errors: &FieldErrors,
) -> Markup {
    let (pform, perrors) = profile;
    html! {
        (header("Account", Some("Your profile and password."), html! {}))
        @if let Some(n) = notice { (ui::notice(n)) }
        div class="card" {
            h2 { "Profile" }
            dl class="props" {
                dt { "Email" } dd { (c.caller.principal.name) }
                @if let Some(u) = user {
                    dt { "Roles" } dd { (chips(&u.roles, "chip-role")) }
                    dt { "Created" } dd { (ui::time(&u.created_at)) }
                }
            }
            @if user.is_some() {
                (form_error(perrors))
                form method="post" action="/account/profile" class="row-form" novalidate {
                    (csrf(c))
                    (field("Display name", "display_name", perrors, None, ui::text_input("display_name", pform.get("display_name"), "text", true)))
                    div class="form-actions" { button class="btn" type="submit" { "Save display name" } }
                }
            }
        }
        div class="card" {
            h2 { "Change password" }
            (form_error(errors))
            form method="post" action="/account" class="stack" novalidate {
                (csrf(c))
                (field("Current password", "current_password", errors, None, html! {
                    input id="f-current_password" name="current_password" type="password" autocomplete="current-password" required;
                }))
                (field("New password", "new_password", errors, Some("At least 12 characters."), html! {
                    input id="f-new_password" name="new_password" type="password" autocomplete="new-password" required;
                }))
                div class="form-actions" { button class="btn btn-primary" type="submit" { "Change password" } }
            }
        }
    }
}

async fn own_user(
    state: &AppState,
    c: &Console,
) -> Result<Option<keyhaven_core::user::User>, ui::PageError> {
    if c.caller.user_id().is_none() {
        return Ok(None);
    }
    Ok(Some(state.service.own_profile(&c.caller).await?))
}

fn profile_form(user: Option<&keyhaven_core::user::User>) -> FormData {
    FormData(
        user.map(|u| vec![("display_name".to_string(), u.display_name.clone())])
            .unwrap_or_default(),
    )
}

/// `GET /account`.
pub async fn account(State(state): State<AppState>, c: Console, Query(q): Query) -> PageResult {
    let notice = match q.get("notice") {
        "password_changed" => Some("Password changed."),
        "profile_updated" => Some("Display name saved."),
        _ => None,
    };
    let user = own_user(&state, &c).await?;
    let pform = profile_form(user.as_ref());
    Ok(ui::ok(layout(
        &c,
        "Account",
        "account",
        account_page(
            &c,
            user.as_ref(),
            notice,
            (&pform, &FieldErrors::default()),
            &FieldErrors::default(),
        ),
    )))
}

/// `POST /account/profile` (display name).
pub async fn update_profile(
    State(state): State<AppState>,
    c: Console,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    match state
        .service
        .update_own_display_name(&c.caller, form.get("display_name"))
        .await
    {
        Ok(_) => Ok(ui::see_other("/account?notice=profile_updated")),
        Err(e) => {
            let errors = FieldErrors::from_service(e, &[])?;
            let user = own_user(&state, &c).await?;
            Ok(ui::page(
                StatusCode::UNPROCESSABLE_ENTITY,
                layout(
                    &c,
                    "Account",
                    "account",
                    account_page(
                        &c,
                        user.as_ref(),
                        None,
                        (&form, &errors),
                        &FieldErrors::default(),
                    ),
                ),
            ))
        }
    }
}

/// `POST /account` (password change).
pub async fn change_password(
    State(state): State<AppState>,
    c: Console,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    match state
        .service
        .change_own_password(
            &c.caller,
            form.get("current_password"),
            form.get("new_password"),
        )
        .await
    {
        Ok(()) => Ok(ui::see_other("/account?notice=password_changed")),
        Err(e) => {
            let errors = FieldErrors::from_service(e, &[])?;
            let user = own_user(&state, &c).await?;
            let pform = profile_form(user.as_ref());
            Ok(ui::page(
                StatusCode::UNPROCESSABLE_ENTITY,
                layout(
                    &c,
                    "Account",
                    "account",
                    account_page(
                        &c,
                        user.as_ref(),
                        None,
                        (&pform, &FieldErrors::default()),
                        &errors,
                    ),
                ),
            ))
        }
    }
}
