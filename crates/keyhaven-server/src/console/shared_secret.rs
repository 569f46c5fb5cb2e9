//! The API shared secret: its status, reveal and rotate.

use axum::extract::State;
use keyhaven_core::permission::Permission;
use maud::{html, Markup};

use super::auth::Console;
use super::errors::{self, PageResult};
use super::forms::{csrf, FormData};
use super::layout::{self, header, layout};
use super::widgets::{self, badge};
use crate::app::AppState;

fn secret_page(
    c: &Console,
    status: Option<&keyhaven_service::shared_secret::SharedSecretStatus>,
    shown: Option<(&str, &str)>,
) -> Markup {
    let can_view = c.can(Permission::SharedSecretView);
    let can_manage = c.can(Permission::SharedSecretManage);
    html! {
        @if c.can(Permission::WebhooksView) {
            nav class="crumbs" aria-label="Breadcrumb" { a href="/settings/webhooks" { "Webhooks" } " / " span { "Signing secret" } }
        }
        (header("Webhook signing secret", Some("Keyhaven signs outgoing webhooks (and HTTP audit sinks) with this secret (Standard Webhooks). Receivers verify the signature with it."), html! {}))
        @if let Some((title, secret)) = shown {
            div class="banner banner-success secret-banner" role="status" {
                h2 { (title) }
                p { "Keep it in your receivers' secret store. Revealing it again is recorded in the audit log." }
                (widgets::secret_box("Shared secret", "new-secret", secret))
            }
        }
        div class="card" {
            @match status {
                Some(status) => {
                    dl class="props" id="secret-status" {
                        dt { "Status" } dd { @if status.exists { (badge("active")) } @else { span class="muted" { "No shared secret yet" } } }
                        @if let Some(t) = &status.created_at { dt { "Created" } dd { (widgets::time(t)) } }
                        @if let Some(t) = &status.previous_valid_until { dt { "Previous secret signs until" } dd { (widgets::time(t)) } }
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
) -> Result<Option<keyhaven_service::shared_secret::SharedSecretStatus>, errors::PageError> {
    if c.can(Permission::SharedSecretView) {
        Ok(Some(state.service.shared_secret_status(&c.caller).await?))
    } else {
        Ok(None)
    }
}

/// `GET /settings/shared-secret`.
pub async fn shared_secret(State(state): State<AppState>, c: Console) -> PageResult {
    if !c.can(Permission::SharedSecretView) && !c.can(Permission::SharedSecretManage) {
        return Err(errors::forbidden(Permission::SharedSecretView.as_str()));
    }
    let status = status_for(&state, &c).await?;
    Ok(layout::ok(layout(
        &c,
        "Webhook signing secret",
        nav_key(&c),
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
    Ok(layout::ok(layout(
        &c,
        "Webhook signing secret",
        nav_key(&c),
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
    Ok(layout::ok(layout(
        &c,
        "Webhook signing secret",
        nav_key(&c),
        secret_page(&c, status.as_ref(), Some(("New shared secret", &secret))),
    )))
}

/// The menu entry the page belongs to: Webhooks, or its own for those who can't see
/// webhooks.
fn nav_key(c: &Console) -> &'static str {
    if c.can(Permission::WebhooksView) {
        "webhooks"
    } else {
        "secret"
    }
}
