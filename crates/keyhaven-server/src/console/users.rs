//! Users (seed 004's role matrix): the list, create, edit, reset password, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyhaven_core::permission::Permission;
use keyhaven_core::user::{User, UserStatus};
use keyhaven_store::{Page, UserFilter};
use maud::{html, Markup};

use super::auth::Console;
use super::errors::{self, PageResult};
use super::forms::{self, checklist, csrf, field, form_error, FieldErrors, FormData, Query};
use super::layout::{self, header, layout};
use super::sorting::{Sorting, USER_COLUMNS};
use super::widgets::{self, badge, chips, relative};
use crate::app::AppState;
use keyhaven_service::users::{CreateUser, NewUser, UpdateUser, UserPatch};

/// The banner for `?notice=` on the Users and the Roles page.
pub fn notice_text(q: &FormData) -> Option<&'static str> {
    match q.get("notice") {
        "created" => Some("User created."),
        "updated" => Some("User updated."),
        "deleted" => Some("User deleted."),
        "password_reset" => {
            Some("Password reset. Share the new password with the user over a safe channel.")
        }
        "role_created" => Some("Role created."),
        "role_updated" => Some("Role updated."),
        "role_deleted" => Some("Role deleted."),
        _ => None,
    }
}

/// `GET /users`.
pub async fn users(State(state): State<AppState>, c: Console, Query(q): Query) -> PageResult {
    c.require(Permission::UsersView)?;
    let sorting = Sorting::from_query(&q, USER_COLUMNS);
    let listing = state
        .service
        .list_users_sorted(
            &c.caller,
            &UserFilter {
                status: None,
                role: None,
                q: q.opt("q"),
            },
            sorting.sort(),
            &Page {
                limit: 50,
                cursor: q.opt("cursor"),
            },
        )
        .await?;
    let text = q.get("q");
    let filter_q = [("q", text)];
    let mut base = filter_q.to_vec();
    base.extend(sorting.pairs());
    let next_href = match (listing.has_more, listing.next_cursor.as_deref()) {
        (true, Some(cur)) => {
            let mut n = base.clone();
            n.push(("cursor", cur));
            Some(format!("/users?{}", forms::query_string(&n)))
        }
        _ => None,
    };
    let me = c.caller.user_id();
    let can_update = c.can(Permission::UsersUpdate);
    let can_reset = c.can(Permission::UsersResetPassword);
    let can_delete = c.can(Permission::UsersDelete);
    let body = html! {
        (header("Users", Some("People who sign in to this console."), html! {
            @if c.can(Permission::UsersCreate) { a class="btn btn-primary" href="/users/new" { "Create user" } }
        }))
        @if let Some(n) = notice_text(&q) { (widgets::notice(n)) }
        form class="filters" method="get" action="/users" role="search" aria-label="Search users" {
            (sorting.hidden_fields())
            div class="field" {
                label for="filter-q" { "Search" }
                input id="filter-q" type="search" name="q" value=(text) placeholder="Email or display name";
            }
            div class="filter-actions" {
                button class="btn" type="submit" { "Search" }
                @if !text.is_empty() { a class="btn btn-link" href="/users" { "Clear search" } }
            }
        }
        @if listing.items.is_empty() {
            (widgets::empty("No users match", "Try another search.", html! {}))
        } @else {
            div class="table-wrap" {
                table class="table" id="users-table" {
                    thead { tr {
                        (sorting.header("Email", "email", "/users", &filter_q))
                        (sorting.header("Display name", "name", "/users", &filter_q))
                        th { "Roles" } th { "Status" }
                        (sorting.header("Last login", "last_login", "/users", &filter_q))
                        th class="col-actions" { span class="sr-only" { "Actions" } }
                    } }
                    tbody {
                        @for u in &listing.items {
                            @let own = me.as_ref() == Some(&u.id);
                            tr data-id=(u.id) {
                                td { (u.email) @if own { " " span class="chip" { "You" } } }
                                td { (u.display_name) }
                                td { (chips(&u.roles, "chip-role")) }
                                td { (badge(u.status.as_str())) }
                                td { (relative(c.now, u.last_login_at)) }
                                td class="col-actions" {
                                    div class="row-actions" {
                                        @if can_update { a class="btn btn-small" href={ "/users/" (u.id) "/edit" } { "Edit" } }
                                        @if can_reset && !own { a class="btn btn-small" href={ "/users/" (u.id) "/reset-password" } { "Reset password" } }
                                        @if can_delete && !own {
                                            form method="post" action={ "/users/" (u.id) "/delete" } class="inline"
                                                data-confirm={ "Delete the user " (u.email) "? They can no longer sign in and their personal API keys stop working." }
                                                data-confirm-label="Delete" {
                                                (csrf(&c))
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
        }
        (widgets::pager("/users", &base, q.has("cursor"), next_href.as_deref()))
    };
    Ok(layout::ok(layout(&c, "Users", "users", body)))
}

fn status_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
}

async fn user_form(
    state: &AppState,
    c: &Console,
    form: &FormData,
    errors: &FieldErrors,
) -> PageResult {
    let roles = forms::role_choices(state, c, &[]).await?;
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/users" { "Users" } " / " span { "New user" } }
        (header("Create user", None, html! {}))
        div class="card" {
            (form_error(errors))
            form method="post" action="/users/new" class="stack" novalidate {
                (csrf(c))
                (field("Email *", "email", errors, None, forms::text_input("email", form.get("email"), "email", true)))
                (field("Display name *", "display_name", errors, None, forms::text_input("display_name", form.get("display_name"), "text", true)))
                (field("Initial password *", "password", errors, Some("At least 12 characters. The user can change it on their account page."), html! {
                    input id="f-password" name="password" type="password" autocomplete="new-password" required;
                }))
                @if !c.can(Permission::RolesView) {
                    (field("Roles", "roles", errors, Some("Role names, separated by commas."), forms::text_input("roles", &form.list("roles").join(", "), "text", false)))
                } @else if !roles.is_empty() {
                    (checklist("Roles", "roles", errors, Some("Only roles whose permissions you hold yourself are offered."), &roles, &form.list("roles")))
                }
                div class="form-actions" {
                    button class="btn btn-primary" type="submit" { "Create user" }
                    a class="btn btn-link" href="/users" { "Cancel" }
                }
            }
        }
    };
    let code = if errors.is_empty() { 200 } else { 422 };
    Ok(layout::page(
        status_of(code),
        layout(c, "Create user", "users", body),
    ))
}

/// `GET /users/new`.
pub async fn new_user_page(State(state): State<AppState>, c: Console) -> PageResult {
    c.require(Permission::UsersCreate)?;
    user_form(&state, &c, &FormData::default(), &FieldErrors::default()).await
}

/// `POST /users/new`.
pub async fn create_user(State(state): State<AppState>, c: Console, form: FormData) -> PageResult {
    c.check_csrf(&form)?;
    // Every field's mistake at once.
    let mut errors = FieldErrors::default();
    let draft = CreateUser {
        email: form.get("email").trim().to_string(),
        display_name: form.get("display_name").to_string(),
        password: form.get("password").into(),
        roles: form.list("roles"),
    };
    let Some(input) = errors.parsed(NewUser::parse_all(draft), &[]) else {
        return user_form(&state, &c, &form, &errors).await;
    };
    match state.service.create_user(&c.caller, input).await {
        Ok(_) => Ok(layout::see_other("/users?notice=created")),
        Err(e) => {
            let errors = FieldErrors::from_grant(e, &[], Permission::UsersCreate, "roles")?;
            user_form(&state, &c, &form, &errors).await
        }
    }
}

async fn edit_form(
    state: &AppState,
    c: &Console,
    u: &User,
    form: &FormData,
    errors: &FieldErrors,
) -> PageResult {
    let roles = forms::role_choices(state, c, &u.roles).await?;
    let status = form.get("status");
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/users" { "Users" } " / " span { (u.email) } }
        (header("Edit user", Some(&u.email), html! {}))
        div class="card" {
            (form_error(errors))
            form method="post" action={ "/users/" (u.id) "/edit" } class="stack" novalidate {
                (csrf(c))
                (field("Display name *", "display_name", errors, None, forms::text_input("display_name", form.get("display_name"), "text", true)))
                @if !roles.is_empty() {
                    input type="hidden" name="roles_present" value="1";
                    (checklist("Roles", "roles", errors, Some("Roles you can't grant are shown greyed out and stay as they are."), &roles, &form.list("roles")))
                }
                (field("Status", "status", errors, Some("Inactive users cannot sign in and their personal keys stop verifying."), html! {
                    select id="f-status" name="status" {
                        option value="active" selected[status == "active"] { "Active" }
                        option value="inactive" selected[status == "inactive"] { "Inactive" }
                    }
                }))
                div class="form-actions" {
                    button class="btn btn-primary" type="submit" { "Save changes" }
                    a class="btn btn-link" href="/users" { "Cancel" }
                }
            }
        }
    };
    let code = if errors.is_empty() { 200 } else { 422 };
    Ok(layout::page(
        status_of(code),
        layout(c, "Edit user", "users", body),
    ))
}

/// `GET /users/{id}/edit`.
pub async fn edit_user_page(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
) -> PageResult {
    c.require(Permission::UsersUpdate)?;
    let id = errors::path_id(&id, "user")?;
    let u = state.service.get_user(&c.caller, &id).await?;
    let mut pairs = vec![
        ("display_name".to_string(), u.display_name.clone()),
        ("status".to_string(), u.status.as_str().to_string()),
    ];
    pairs.extend(u.roles.iter().map(|r| ("roles".to_string(), r.clone())));
    edit_form(&state, &c, &u, &FormData(pairs), &FieldErrors::default()).await
}

/// `POST /users/{id}/edit`.
pub async fn edit_user(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "user")?;
    let mut errors = FieldErrors::default();
    let status = match UserStatus::parse(form.get("status"), "status") {
        Ok(s) => Some(s),
        Err(e) => {
            errors.add("status", e.to_string());
            None
        }
    };
    let u = state.service.get_user(&c.caller, &id).await?;
    if errors.is_empty() {
        // Roles go to the service only when the set changed (so the unchanged roles of
        // the form are not a grant). Changing someone who holds a management permission
        // the editor lacks is refused by the service whatever the form holds.
        let roles = form.list("roles");
        let draft = UpdateUser {
            display_name: Some(form.get("display_name").to_string()),
            roles: (form.has("roles_present") && forms::roles_changed(&roles, &u.roles))
                .then_some(roles),
            status,
        };
        let Some(input) = errors.parsed(UserPatch::parse_all(draft), &[]) else {
            return edit_form(&state, &c, &u, &form, &errors).await;
        };
        match state.service.update_user(&c.caller, &id, input).await {
            Ok(_) => return Ok(layout::see_other("/users?notice=updated")),
            Err(e) => {
                let target_rule = matches!(
                    &e,
                    keyhaven_service::ServiceError::Domain(
                        keyhaven_core::DomainError::PermissionDenied { .. }
                    )
                );
                let missing = if target_rule {
                    state.service.missing_to_manage_user(&c.caller, &u).await?
                } else {
                    None
                };
                errors = match missing {
                    Some(p) => {
                        let mut f = FieldErrors::default();
                        f.general = Some(format!(
                            "You can't change {}: they hold {p}, which you don't hold yourself.",
                            u.email
                        ));
                        f
                    }
                    None => FieldErrors::from_grant(e, &[], Permission::UsersUpdate, "roles")?,
                };
            }
        }
    }
    edit_form(&state, &c, &u, &form, &errors).await
}

fn reset_form(c: &Console, u: &User, errors: &FieldErrors) -> Markup {
    html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/users" { "Users" } " / " span { (u.email) } }
        (header("Reset password", Some(&u.email), html! {}))
        div class="card" {
            (form_error(errors))
            form method="post" action={ "/users/" (u.id) "/reset-password" } class="stack" novalidate {
                (csrf(c))
                (field("New password *", "password", errors, Some("At least 12 characters."), html! {
                    input id="f-password" name="password" type="password" autocomplete="new-password" required;
                }))
                div class="form-actions" {
                    button class="btn btn-primary" type="submit" { "Reset password" }
                    a class="btn btn-link" href="/users" { "Cancel" }
                }
            }
        }
    }
}

/// `GET /users/{id}/reset-password`.
pub async fn reset_page(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
) -> PageResult {
    c.require(Permission::UsersResetPassword)?;
    let id = errors::path_id(&id, "user")?;
    let u = state.service.get_user(&c.caller, &id).await?;
    Ok(layout::ok(layout(
        &c,
        "Reset password",
        "users",
        reset_form(&c, &u, &FieldErrors::default()),
    )))
}

/// `POST /users/{id}/reset-password`.
pub async fn reset_password(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "user")?;
    match state
        .service
        .reset_password(&c.caller, &id, form.get("password"))
        .await
    {
        Ok(()) => Ok(layout::see_other("/users?notice=password_reset")),
        Err(e) => {
            let errors = FieldErrors::from_service(e, &[])?;
            let u = state.service.get_user(&c.caller, &id).await?;
            Ok(layout::page(
                StatusCode::UNPROCESSABLE_ENTITY,
                layout(&c, "Reset password", "users", reset_form(&c, &u, &errors)),
            ))
        }
    }
}

/// `POST /users/{id}/delete`.
pub async fn delete_user(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "user")?;
    state.service.delete_user(&c.caller, &id).await?;
    Ok(layout::see_other("/users?notice=deleted"))
}
