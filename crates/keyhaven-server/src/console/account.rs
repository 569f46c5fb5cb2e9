//! The signed-in user's own account: profile (display name) and password change.

use axum::extract::State;
use axum::http::StatusCode;
use maud::{html, Markup};

use super::auth::Console;
use super::errors::{self, PageResult};
use super::forms::{self, csrf, field, form_error, FieldErrors, FormData, Query};
use super::layout::{self, header, layout};
use super::widgets::{self, chips};
use crate::app::AppState;

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
        @if let Some(n) = notice { (widgets::notice(n)) }
        div class="card" {
            h2 { "Profile" }
            dl class="props" {
                dt { "Email" } dd { (c.caller.principal.name) }
                @if let Some(u) = user {
                    dt { "Roles" } dd { (chips(&u.roles, "chip-role")) }
                    dt { "Created" } dd { (widgets::time(&u.created_at)) }
                }
            }
            @if user.is_some() {
                (form_error(perrors))
                form method="post" action="/account/profile" class="row-form" novalidate {
                    (csrf(c))
                    (field("Display name", "display_name", perrors, None, forms::text_input("display_name", pform.get("display_name"), "text", true)))
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
) -> Result<Option<keyhaven_core::user::User>, errors::PageError> {
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
    Ok(layout::ok(layout(
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
        Ok(_) => Ok(layout::see_other("/account?notice=profile_updated")),
        Err(e) => {
            let errors = FieldErrors::from_service(e, &[])?;
            let user = own_user(&state, &c).await?;
            Ok(layout::page(
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
        Ok(()) => Ok(layout::see_other("/account?notice=password_changed")),
        Err(e) => {
            let errors = FieldErrors::from_service(e, &[])?;
            let user = own_user(&state, &c).await?;
            let pform = profile_form(user.as_ref());
            Ok(layout::page(
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
