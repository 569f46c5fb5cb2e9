//! Webhooks: endpoints with their recent deliveries, create, edit, delete.

use axum::extract::{Path, State};
use keyhaven_core::permission::Permission;
use keyhaven_store::Page;
use maud::{html, Markup};

use super::auth::Console;
use super::errors::{self, PageResult};
use super::forms::{
    self, checklist, csrf, field, form_error, Choice, FieldErrors, FormData, Query,
};
use super::layout::{self, header, layout};
use super::widgets::{self, badge, chips};
use crate::app::AppState;
use keyhaven_core::webhook_event::WebhookEvent;
use keyhaven_service::webhooks::{CreateWebhook, NewWebhook, UpdateWebhook, WebhookPatch};
use keyhaven_store::WebhookEndpoint;

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
        (header("Webhooks", Some("Keyhaven posts signed events to these endpoints when keys and service accounts change."), html! {
            @if c.can(Permission::SharedSecretView) || c.can(Permission::SharedSecretManage) {
                a class="btn" href="/settings/shared-secret" { "Signing secret" }
            }
        }))
        @if let Some(n) = notice { (widgets::notice(n)) }
        @if endpoints.is_empty() {
            (widgets::empty("No webhook endpoints", "Add an endpoint to hear about new, rotated, revoked and expiring keys.", html! {}))
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
                                    td { (badge(d.status.as_str())) }
                                    td { (d.attempts) }
                                    td { @if let Some(s) = d.last_status { "HTTP " (s) } @else if let Some(e) = &d.last_error { span class="muted" { (e) } } @else { span class="muted" { "—" } } }
                                    td { (widgets::time(&d.created_at)) }
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
    forms::form_page(errors, layout(c, "Webhooks", "webhooks", body))
}

fn webhook_fields(form: &FormData, errors: &FieldErrors, enabled: bool) -> Markup {
    let events: Vec<Choice> = WebhookEvent::ALL
        .iter()
        .map(|e| Choice::new(e.as_str(), ""))
        .collect();
    html! {
        (field("URL *", "url", errors, Some("An http:// or https:// address that accepts POST requests. Use https:// wherever you can: over http:// the signed payload is sent unencrypted. Internal addresses are refused unless the operator has allowed their range."), forms::text_input("url", form.get("url"), "url", true)))
        (field("Description", "description", errors, None, forms::text_input("description", form.get("description"), "text", false)))
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
    let draft = CreateWebhook {
        url: form.get("url").trim().to_string(),
        events: form.list("events"),
        description: form.opt("description"),
        enabled: Some(form.has("enabled")),
    };
    // Every mistake at once: the address (against this server's outbound policy) and
    // the parsed fields — for someone who may change webhooks.
    c.require(Permission::WebhooksManage)?;
    let mut errors = FieldErrors::default();
    errors.check(state.service.check_webhook_url(&draft.url).await, &[]);
    let Some(input) = errors.parsed(NewWebhook::try_from(draft).map_err(|e| vec![e]), &[]) else {
        return webhooks_page(&state, &c, None, &form, &errors).await;
    };
    match state.service.create_webhook(&c.caller, input).await {
        Ok(_) => Ok(layout::see_other("/settings/webhooks?notice=created")),
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
    forms::form_page(errors, layout(c, "Edit endpoint", "webhooks", body))
}

/// `GET /settings/webhooks/{id}/edit`.
pub async fn edit_webhook_page(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
) -> PageResult {
    c.require(Permission::WebhooksManage)?;
    let id = errors::path_id(&id, "webhook")?;
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
    let id = errors::path_id(&id, "webhook")?;
    let draft = UpdateWebhook {
        url: Some(form.get("url").trim().to_string()),
        events: Some(form.list("events")),
        description: Some(form.get("description").to_string()),
        enabled: Some(form.has("enabled")),
    };
    c.require(Permission::WebhooksManage)?;
    let mut errors = FieldErrors::default();
    errors.check(
        state
            .service
            .check_webhook_url(draft.url.as_deref().unwrap_or_default())
            .await,
        &[],
    );
    let Some(input) = errors.parsed(WebhookPatch::try_from(draft).map_err(|e| vec![e]), &[]) else {
        let w = state.service.get_webhook(&c.caller, &id).await?;
        return webhook_edit_form(&c, &w, &form, &errors);
    };
    match state.service.update_webhook(&c.caller, &id, input).await {
        Ok(_) => Ok(layout::see_other("/settings/webhooks?notice=updated")),
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
    let id = errors::path_id(&id, "webhook")?;
    state.service.delete_webhook(&c.caller, &id).await?;
    Ok(layout::see_other("/settings/webhooks?notice=deleted"))
}
