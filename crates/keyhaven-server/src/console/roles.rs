//! Roles: the list, create, edit (permissions, scopes, key name pattern), delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyhaven_core::permission::Permission;
use maud::{html, Markup};

use super::auth::Console;
use super::errors::{self, PageResult};
use super::forms::{
    self, checklist, csrf, field, form_error, Choice, FieldErrors, FormData, Query,
};
use super::layout::{self, header, layout};
use super::users::notice_text;
use super::widgets::{self, chips};
use crate::app::AppState;
use keyhaven_service::roles::{CreateRole, NewRole, RolePatch, UpdateRole};

/// `GET /roles`.
pub async fn roles(State(state): State<AppState>, c: Console, Query(q): Query) -> PageResult {
    c.require(Permission::RolesView)?;
    let roles = state.service.list_roles(&c.caller).await?;
    let manage = c.can(Permission::RolesManage);
    let body = html! {
        (header("Roles", Some("A role is a named set of permissions. Built-in roles cannot be changed."), html! {
            @if manage { a class="btn btn-primary" href="/roles/new" { "Create role" } }
        }))
        @if let Some(n) = notice_text(&q) { (widgets::notice(n)) }
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
    Ok(layout::ok(layout(&c, "Roles", "roles", body)))
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
                    (field("Name *", "name", errors, Some("Lower-case letters, digits and hyphens, e.g. billing-admin."), forms::text_input("name", form.get("name"), "text", true)))
                }
                (field("Description", "description", errors, None, forms::text_input("description", form.get("description"), "text", false)))
                (checklist("Permissions", "permissions", errors, Some("Permissions you don't hold yourself cannot be granted and are greyed out."), &catalog, &form.list("permissions")))
                (field("Application scopes", "scopes", errors, Some("Extra scopes this role grants, separated by commas, e.g. read, billing:write."), forms::text_input("scopes", &form.list("scopes").join(", "), "text", false)))
                (field("Key name pattern", "key_name_pattern", errors, Some("Optional regular expression that names of keys and service accounts created or renamed under this role must match. It matches anywhere in the name unless anchored: ^ marks the start, $ the end, so ^svc- means \"starts with svc-\" and ^svc-[a-z]+$ the whole name."), forms::text_input("key_name_pattern", form.get("key_name_pattern"), "text", false)))
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
        return Err(errors::problem(
            StatusCode::CONFLICT,
            "Built-in roles cannot be changed",
            "Create a custom role with the permissions you need instead.",
        ));
    }
    Ok(layout::ok(layout(
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
    let draft = UpdateRole {
        description: Some(form.get("description").to_string()),
        permissions: forms::roles_changed(&permissions, &current.permissions)
            .then_some(permissions),
        key_name_pattern: Some(Some(form.get("key_name_pattern").trim().to_string())),
    };
    let mut errors = FieldErrors::default();
    let Some(input) = errors.parsed(RolePatch::parse_all(draft), &[]) else {
        return Ok(layout::page(
            StatusCode::UNPROCESSABLE_ENTITY,
            layout(
                &c,
                "Edit role",
                "roles",
                role_form(&c, Some(&current.name), &form, &errors),
            ),
        ));
    };
    match state.service.update_role(&c.caller, &name, input).await {
        Ok(_) => Ok(layout::see_other("/roles?notice=role_updated")),
        Err(e) => {
            let errors = FieldErrors::from_grant(e, &[], Permission::RolesManage, "permissions")?;
            Ok(layout::page(
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
    Ok(layout::ok(layout(
        &c,
        "Create role",
        "roles",
        role_form(&c, None, &FormData::default(), &FieldErrors::default()),
    )))
}

/// `POST /roles/new`.
pub async fn create_role(State(state): State<AppState>, c: Console, form: FormData) -> PageResult {
    c.check_csrf(&form)?;
    // Every field's mistake at once.
    let mut errors = FieldErrors::default();
    let draft = CreateRole {
        name: form.get("name").trim().to_string(),
        description: Some(form.get("description").to_string()),
        permissions: form_permissions(&form),
        key_name_pattern: form.opt("key_name_pattern"),
    };
    let Some(input) = errors.parsed(NewRole::parse_all(draft), &[]) else {
        return Ok(layout::page(
            StatusCode::UNPROCESSABLE_ENTITY,
            layout(
                &c,
                "Create role",
                "roles",
                role_form(&c, None, &form, &errors),
            ),
        ));
    };
    match state.service.create_role(&c.caller, input).await {
        Ok(_) => Ok(layout::see_other("/roles?notice=role_created")),
        Err(e) => {
            let errors = FieldErrors::from_grant(e, &[], Permission::RolesManage, "permissions")?;
            Ok(layout::page(
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
    Ok(layout::see_other("/roles?notice=role_deleted"))
}
