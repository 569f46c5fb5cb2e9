//! Users (seed 004's role matrix) and roles.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyhaven_core::permission::Permission;
use keyhaven_core::user::{User, UserStatus};
use keyhaven_store::{Page, UserFilter};
use maud::{html, Markup};

use super::auth::Console;
use super::ui::{
    self, badge, checklist, chips, csrf, field, form_error, header, layout, relative, Choice,
    FieldErrors, FormData, PageResult, Query,
};
use crate::app::AppState;
use keyhaven_service::roles::{CreateRole, UpdateRole};
use keyhaven_service::users::{CreateUser, UpdateUser};

fn notice_text(q: &FormData) -> Option<&'static str> {
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
    let listing = state
        .service
        .list_users(
            &c.caller,
            &UserFilter {
                status: None,
                role: None,
                q: q.opt("q"),
            },
            &Page {
                limit: 50,
                cursor: q.opt("cursor"),
            },
        )
        .await?;
    let text = q.get("q");
    let base = [("q", text)];
    let next_href = match (listing.has_more, listing.next_cursor.as_deref()) {
        (true, Some(cur)) => Some(format!(
            "/users?{}",
            ui::query_string(&[("q", text), ("cursor", cur)])
        )),
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
        @if let Some(n) = notice_text(&q) { (ui::notice(n)) }
        form class="filters" method="get" action="/users" role="search" aria-label="Search users" {
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
            (ui::empty("No users match", "Try another search.", html! {}))
        } @else {
            div class="table-wrap" {
                table class="table" id="users-table" {
                    thead { tr { th { "Email" } th { "Display name" } th { "Roles" } th { "Status" } th { "Last login" } th class="col-actions" { span class="sr-only" { "Actions" } } } }
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
        (ui::pager("/users", &base, q.has("cursor"), next_href.as_deref()))
    };
    Ok(ui::ok(layout(&c, "Users", "users", body)))
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
    let roles = ui::role_choices(state, c, &[]).await?;
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/users" { "Users" } " / " span { "New user" } }
        (header("Create user", None, html! {}))
        div class="card" {
            (form_error(errors))
            form method="post" action="/users/new" class="stack" novalidate {
                (csrf(c))
                (field("Email *", "email", errors, None, ui::text_input("email", form.get("email"), "email", true)))
                (field("Display name *", "display_name", errors, None, ui::text_input("display_name", form.get("display_name"), "text", true)))
                (field("Initial password *", "password", errors, Some("At least 12 characters. The user can change it on their account page."), html! {
                    input id="f-password" name="password" type="password" autocomplete="new-password" required;
                }))
                @if !c.can(Permission::RolesView) {
                    (field("Roles", "roles", errors, Some("Role names, separated by commas."), ui::text_input("roles", &form.list("roles").join(", "), "text", false)))
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
    Ok(ui::page(
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
    let input = CreateUser {
        email: form.get("email").trim().to_string(),
        display_name: form.get("display_name").to_string(),
        password: form.get("password").into(),
        roles: form.list("roles"),
    };
    match state.service.create_user(&c.caller, input).await {
        Ok(_) => Ok(ui::see_other("/users?notice=created")),
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
    let roles = ui::role_choices(state, c, &u.roles).await?;
    let status = form.get("status");
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/users" { "Users" } " / " span { (u.email) } }
        (header("Edit user", Some(&u.email), html! {}))
        div class="card" {
            (form_error(errors))
            form method="post" action={ "/users/" (u.id) "/edit" } class="stack" novalidate {
                (csrf(c))
                (field("Display name *", "display_name", errors, None, ui::text_input("display_name", form.get("display_name"), "text", true)))
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
    Ok(ui::page(
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
    let id = ui::path_id(&id, "user")?;
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
    let id = ui::path_id(&id, "user")?;
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
        // Roles go to the service only when the set changed: editing the name or status
        // of someone holding roles the editor could not grant must still work.
        let roles = form.list("roles");
        let input = UpdateUser {
            display_name: Some(form.get("display_name").to_string()),
            roles: (form.has("roles_present") && ui::roles_changed(&roles, &u.roles))
                .then_some(roles),
            status,
        };
        match state.service.update_user(&c.caller, &id, input).await {
            Ok(_) => return Ok(ui::see_other("/users?notice=updated")),
            Err(e) => errors = FieldErrors::from_grant(e, &[], Permission::UsersUpdate, "roles")?,
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
    let id = ui::path_id(&id, "user")?;
    let u = state.service.get_user(&c.caller, &id).await?;
    Ok(ui::ok(layout(
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
    let id = ui::path_id(&id, "user")?;
    match state
        .service
        .reset_password(&c.caller, &id, form.get("password"))
        .await
    {
        Ok(()) => Ok(ui::see_other("/users?notice=password_reset")),
        Err(e) => {
            let errors = FieldErrors::from_service(e, &[])?;
            let u = state.service.get_user(&c.caller, &id).await?;
            Ok(ui::page(
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
    let id = ui::path_id(&id, "user")?;
    state.service.delete_user(&c.caller, &id).await?;
    Ok(ui::see_other("/users?notice=deleted"))
}

/// `GET /roles`.
pub async fn roles(State(state): State<AppState>, c: Console, Query(q): Query) -> PageResult {
    c.require(Permission::RolesView)?;
    let roles = state.service.list_roles(&c.caller).await?;
    let manage = c.can(Permission::RolesManage);
    let body = html! {
        (header("Roles", Some("A role is a named set of permissions. Built-in roles cannot be changed."), html! {
            @if manage { a class="btn btn-primary" href="/roles/new" { "Create role" } }
        }))
        @if let Some(n) = notice_text(&q) { (ui::notice(n)) }
        div class="table-wrap" {
            table class="table" id="roles-table" {
                thead { tr { th { "Name" } th { "Permissions" } th { "Key name pattern" } th class="col-actions" { span class="sr-only" { "Actions" } } } }
                tbody {
                    @for r in &roles {
                        tr data-id=(r.name) {
                            td {
                                span class="strong" { (r.name) }
                                @if r.built_in { " " span class="chip" { "Built-in" } }
                                @if !r.description.is_empty() { div class="muted small" { (r.description) } }
                            }
                            td { (chips(&r.permissions, "chip-perm")) }
                            td { @match &r.key_name_pattern { Some(p) => code { (p) }, None => span class="muted" { "—" } } }
                            td class="col-actions" {
                                @if manage && !r.built_in {
                                    a class="btn btn-small" href={ "/roles/" (r.name) "/edit" } aria-label={ "Edit " (r.name) } { "Edit" }
                                    " "
                                    form method="post" action={ "/roles/" (r.name) "/delete" } class="inline"
                                        data-confirm={ "Delete the role " (r.name) "?" } data-confirm-label="Delete" {
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
    };
    Ok(ui::ok(layout(&c, "Roles", "roles", body)))
}

/// The role form: `editing` is the role being changed (name fixed), or `None` to create.
fn role_form(c: &Console, editing: Option<&str>, form: &FormData, errors: &FieldErrors) -> Markup {
    let catalog: Vec<Choice> = Permission::ALL
        .iter()
        .map(|p| Choice {
            value: p.as_str().to_string(),
            text: p.description().to_string(),
            enabled: c.can(*p),
        })
        .collect();
    let (title, action, submit) = match editing {
        Some(name) => ("Edit role", format!("/roles/{name}/edit"), "Save changes"),
        None => ("Create role", "/roles/new".to_string(), "Create role"),
    };
    html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/roles" { "Roles" } " / " span { @if let Some(n) = editing { (n) } @else { "New role" } } }
        (header(title, None, html! {}))
        div class="card" {
            (form_error(errors))
            form method="post" action=(action) class="stack" novalidate {
                (csrf(c))
                @if let Some(name) = editing {
                    div class="field" {
                        label for="f-name" { "Name" }
                        input id="f-name" type="text" value=(name) readonly aria-describedby="h-name";
                        div class="hint" id="h-name" { "A role's name cannot change: keys, users and service accounts refer to it." }
                    }
                } @else {
                    (field("Name *", "name", errors, Some("Lower-case letters, digits and hyphens, e.g. billing-admin."), ui::text_input("name", form.get("name"), "text", true)))
                }
                (field("Description", "description", errors, None, ui::text_input("description", form.get("description"), "text", false)))
                (checklist("Permissions", "permissions", errors, Some("Permissions you don't hold yourself cannot be granted and are greyed out."), &catalog, &form.list("permissions")))
                (field("Application scopes", "scopes", errors, Some("Extra scopes this role grants, separated by commas, e.g. read, billing:write."), ui::text_input("scopes", &form.list("scopes").join(", "), "text", false)))
                (field("Key name pattern", "key_name_pattern", errors, Some("Optional regular expression that names of keys and service accounts created under this role must match, e.g. ^svc-[a-z]+$."), ui::text_input("key_name_pattern", form.get("key_name_pattern"), "text", false)))
                div class="form-actions" {
                    button class="btn btn-primary" type="submit" { (submit) }
                    a class="btn btn-link" href="/roles" { "Cancel" }
                }
            }
        }
    }
}

/// Splits a stored permission list into the form's checklist (catalog entries) and
/// scopes field (everything else).
fn role_pairs(r: &keyhaven_core::role::Role) -> FormData {
    let mut pairs = vec![
        ("description".to_string(), r.description.clone()),
        (
            "key_name_pattern".to_string(),
            r.key_name_pattern.clone().unwrap_or_default(),
        ),
    ];
    let (perms, scopes): (Vec<&String>, Vec<&String>) = r
        .permissions
        .iter()
        .partition(|p| keyhaven_core::permission::is_management(p));
    pairs.extend(
        perms
            .into_iter()
            .map(|p| ("permissions".to_string(), p.clone())),
    );
    pairs.push((
        "scopes".to_string(),
        scopes.into_iter().cloned().collect::<Vec<_>>().join(", "),
    ));
    FormData(pairs)
}

fn form_permissions(form: &FormData) -> Vec<String> {
    let mut permissions = form.list("permissions");
    permissions.extend(form.list("scopes"));
    permissions
}

/// `GET /roles/{name}/edit`.
pub async fn edit_role_page(
    State(state): State<AppState>,
    c: Console,
    Path(name): Path<String>,
) -> PageResult {
    c.require(Permission::RolesManage)?;
    let r = state.service.get_role(&c.caller, &name).await?;
    if r.built_in {
        return Err(ui::problem(
            StatusCode::CONFLICT,
            "Built-in roles cannot be changed",
            "Create a custom role with the permissions you need instead.",
        ));
    }
    Ok(ui::ok(layout(
        &c,
        "Edit role",
        "roles",
        role_form(&c, Some(&r.name), &role_pairs(&r), &FieldErrors::default()),
    )))
}

/// `POST /roles/{name}/edit`.
pub async fn edit_role(
    State(state): State<AppState>,
    c: Console,
    Path(name): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let current = state.service.get_role(&c.caller, &name).await?;
    // Permissions go to the service only when the set changed, so that someone who may
    // not grant every permission of the role can still edit its description or pattern.
    let permissions = form_permissions(&form);
    let input = UpdateRole {
        description: Some(form.get("description").to_string()),
        permissions: ui::roles_changed(&permissions, &current.permissions).then_some(permissions),
        key_name_pattern: Some(Some(form.get("key_name_pattern").trim().to_string())),
    };
    match state.service.update_role(&c.caller, &name, input).await {
        Ok(_) => Ok(ui::see_other("/roles?notice=role_updated")),
        Err(e) => {
            let errors = FieldErrors::from_grant(e, &[], Permission::RolesManage, "permissions")?;
            Ok(ui::page(
                StatusCode::UNPROCESSABLE_ENTITY,
                layout(
                    &c,
                    "Edit role",
                    "roles",
                    role_form(&c, Some(&current.name), &form, &errors),
                ),
            ))
        }
    }
}

/// `GET /roles/new`.
pub async fn new_role_page(c: Console) -> PageResult {
    c.require(Permission::RolesManage)?;
    Ok(ui::ok(layout(
        &c,
        "Create role",
        "roles",
        role_form(&c, None, &FormData::default(), &FieldErrors::default()),
    )))
}

/// `POST /roles/new`.
pub async fn create_role(State(state): State<AppState>, c: Console, form: FormData) -> PageResult {
    c.check_csrf(&form)?;
    let input = CreateRole {
        name: form.get("name").trim().to_string(),
        description: Some(form.get("description").to_string()),
        permissions: form_permissions(&form),
        key_name_pattern: form.opt("key_name_pattern"),
    };
    match state.service.create_role(&c.caller, input).await {
        Ok(_) => Ok(ui::see_other("/roles?notice=role_created")),
        Err(e) => {
            let errors = FieldErrors::from_grant(e, &[], Permission::RolesManage, "permissions")?;
            Ok(ui::page(
                StatusCode::UNPROCESSABLE_ENTITY,
                layout(
                    &c,
                    "Create role",
                    "roles",
                    role_form(&c, None, &form, &errors),
                ),
            ))
        }
    }
}

/// `POST /roles/{name}/delete`.
pub async fn delete_role(
    State(state): State<AppState>,
    c: Console,
    Path(name): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    state.service.delete_role(&c.caller, &name).await?;
    Ok(ui::see_other("/roles?notice=role_deleted"))
}
