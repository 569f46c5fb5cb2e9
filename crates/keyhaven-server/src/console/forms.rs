//! Page shell, small view helpers, form data and the mapping of service errors to pages.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use keyhaven_core::permission::{check_no_escalation, Permission};
use keyhaven_core::time::Timestamp;
use keyhaven_core::DomainError;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::auth::Console;
use crate::app::AppState;
use keyhaven_service::ServiceError;

/// An HTML answer.
pub fn page(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// A form page: 200, or 422 when it shows errors next to its fields.
pub fn form_page(errors: &FieldErrors, markup: Markup) -> PageResult {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(page(status, markup))
}

/// 200 with a page.
pub fn ok(markup: Markup) -> Response {
    page(StatusCode::OK, markup)
}

/// A 303 to `to`.
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Keyhaven" }
            link rel="stylesheet" href="/static/app.css";
            script src="/static/app.js" defer {}
        }
    }
}

/// A page without navigation (sign-in, errors for signed-out visitors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body class="bare" {
                main class="bare-main" {
                    div class="brand brand-center" { span class="logo" { "K" } "Keyhaven" }
                    (body)
                }
            }
        }
    }
}

struct NavItem {
    href: &'static str,
    label: &'static str,
    key: &'static str,
    needs: Option<Permission>,
}

const NAV: &[NavItem] = &[
    NavItem {
        href: "/api-keys",
        label: "API Keys",
        key: "keys",
        needs: Some(Permission::ApiKeysView),
    },
    NavItem {
        href: "/settings/api-access",
        label: "API Access",
        key: "access",
        needs: Some(Permission::ServiceAccountsView),
    },
    NavItem {
        href: "/users",
        label: "Users",
        key: "users",
        needs: Some(Permission::UsersView),
    },
    NavItem {
        href: "/roles",
        label: "Roles",
        key: "roles",
        needs: Some(Permission::RolesView),
    },
    NavItem {
        href: "/settings/shared-secret",
        label: "Shared secret",
        key: "secret",
        needs: None,
    },
    NavItem {
        href: "/settings/webhooks",
        label: "Webhooks",
        key: "webhooks",
        needs: Some(Permission::WebhooksView),
    },
    NavItem {
        href: "/account",
        label: "Account",
        key: "account",
        needs: None,
    },
];

/// The page shell with navigation for a signed-in user.
pub fn layout(c: &Console, title: &str, active: &str, content: Markup) -> Markup {
    let access_href = if c.caller.has(Permission::ServiceAccountsView) {
        "/settings/api-access"
    } else {
        "/settings/api-access?tab=activity"
    };
    let secret_visible =
        c.caller.has(Permission::SharedSecretView) || c.caller.has(Permission::SharedSecretManage);
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a class="skip" href="#main" { "Skip to content" }
                div class="shell" {
                    nav class="sidebar" aria-label="Main" {
                        div class="brand" { span class="logo" { "K" } "Keyhaven" }
                        ul {
                            @for item in NAV {
                                @let allowed = match item.needs {
                                    Some(_) if item.key == "access" => c.caller.has(Permission::ServiceAccountsView) || c.caller.has(Permission::AuditView),
                                    Some(p) => c.caller.has(p),
                                    None => item.key != "secret" || secret_visible,
                                };
                                @let href = if item.key == "access" { access_href } else { item.href };
                                @if allowed {
                                    li {
                                        a href=(href) aria-current=[(item.key == active).then_some("page")] {
                                            (item.label)
                                        }
                                    }
                                }
                            }
                        }
                        div class="sidebar-foot" {
                            div class="who" { (c.caller.principal.name) }
                            form method="post" action="/logout" {
                                (csrf(c))
                                button class="btn btn-link" type="submit" { "Sign out" }
                            }
                        }
                    }
                    main id="main" class="content" {
                        (content)
                    }
                }
                (confirm_dialog())
            }
        }
    }
}

/// The tabs of API Access: service accounts and API Activity.
pub fn api_access_tabs(c: &Console, active: &str) -> Markup {
    html! {
        nav class="tabs" aria-label="API Access sections" {
            @if c.can(Permission::ServiceAccountsView) {
                a href="/settings/api-access" aria-current=[(active == "accounts").then_some("page")] { "Service Accounts" }
            }
            @if c.can(Permission::AuditView) {
                a href="/settings/api-access?tab=activity" aria-current=[(active == "activity").then_some("page")] { "API Activity" }
            }
        }
    }
}

fn confirm_dialog() -> Markup {
    html! {
        dialog id="confirm-dialog" aria-labelledby="confirm-title" {
            h2 id="confirm-title" { "Please confirm" }
            p id="confirm-message" {}
            div class="actions" {
                button type="button" class="btn" data-close="" { "Cancel" }
                button type="button" class="btn btn-danger confirm" { "Confirm" }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf(c: &Console) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(c.csrf); }
}

/// The page heading with optional actions on the right.
pub fn header(title: &str, subtitle: Option<&str>, actions: Markup) -> Markup {
    html! {
        div class="page-head" {
            div {
                h1 { (title) }
                @if let Some(s) = subtitle { p class="muted" { (s) } }
            }
            div class="page-actions" { (actions) }
        }
    }
}

/// A timestamp: UTC in the markup, converted to the browser's zone by app.js.
pub fn time(t: &Timestamp) -> Markup {
    let iso = keyhaven_core::time::rfc3339(t);
    let utc = t.format("%Y-%m-%d %H:%M UTC").to_string();
    html! { time datetime=(iso) title=(utc) data-local="datetime" { (utc) } }
}

/// A date only (expiry columns).
pub fn date(t: &Timestamp) -> Markup {
    let iso = keyhaven_core::time::rfc3339(t);
    let utc = t.format("%Y-%m-%d %H:%M UTC").to_string();
    html! { time datetime=(iso) title=(utc) data-local="date" { (t.format("%Y-%m-%d")) } }
}

/// A hidden field that app.js fills with the browser's offset from UTC, so that dates
/// typed into the form mean days in the user's time zone.
pub fn tz_field() -> Markup {
    html! { input type="hidden" name="tz_offset" value="" data-tz-offset=""; }
}

/// The browser's offset (`tz_offset`, minutes to add to local time to get UTC, as
/// JavaScript's `getTimezoneOffset` gives it); 0 (UTC) when absent or out of range.
pub fn tz_offset(form: &FormData) -> i64 {
    form.get("tz_offset")
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|m| m.abs() <= 18 * 60)
        .unwrap_or(0)
}

/// The first instant of the day `d` in the zone `offset_minutes` behind UTC, or (with
/// `end`) its last second.
pub fn local_day(d: chrono::NaiveDate, offset_minutes: i64, end: bool) -> Option<Timestamp> {
    let t = if end {
        d.and_hms_opt(23, 59, 59)?
    } else {
        d.and_hms_opt(0, 0, 0)?
    };
    Some(t.and_utc() + chrono::Duration::minutes(offset_minutes))
}

/// "3 minutes ago", or "Never".
pub fn relative(now: Timestamp, t: Option<Timestamp>) -> Markup {
    let Some(t) = t else {
        return html! { span class="muted" { "Never" } };
    };
    let secs = (now - t).num_seconds().max(0);
    let text = match secs {
        0..=59 => "just now".to_string(),
        60..=3599 => plural(secs / 60, "minute"),
        3600..=86_399 => plural(secs / 3600, "hour"),
        86_400..=2_591_999 => plural(secs / 86_400, "day"),
        _ => plural(secs / 2_592_000, "month"),
    };
    let iso = keyhaven_core::time::rfc3339(&t);
    let utc = t.format("%Y-%m-%d %H:%M UTC").to_string();
    html! { time datetime=(iso) title=(utc) { (text) } }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

/// A coloured status badge.
pub fn badge(status: &str) -> Markup {
    let label = match status {
        "active" => "Active",
        "revoked" => "Revoked",
        "expired" => "Expired",
        "suspended" => "Suspended",
        "archived" => "Archived",
        "inactive" => "Inactive",
        "success" => "Success",
        "denied" => "Denied",
        "error" => "Error",
        "delivered" => "Delivered",
        "pending" => "Pending",
        "failed" => "Failed",
        other => other,
    };
    html! { span class={ "badge badge-" (status) } { (label) } }
}

/// Small grey chips for tags, roles and scopes.
pub fn chips(items: &[String], class: &str) -> Markup {
    html! {
        @if items.is_empty() { span class="muted" { "—" } }
        @for i in items { span class={ "chip " (class) } { (i) } " " }
    }
}

/// A success or information banner.
pub fn notice(text: &str) -> Markup {
    html! { div class="banner banner-info" role="status" { (text) } }
}

/// An empty state.
pub fn empty(title: &str, text: &str, action: Markup) -> Markup {
    html! {
        div class="empty" {
            h3 { (title) }
            p class="muted" { (text) }
            (action)
        }
    }
}

/// The secret shown once: a read-only field with Copy and Show / Hide.
pub fn secret_box(label: &str, id: &str, secret: &str) -> Markup {
    html! {
        div class="secret-field" {
            label for=(id) { (label) }
            div class="secret-row" {
                input id=(id) type="password" readonly data-secret="once" value=(secret) autocomplete="off" spellcheck="false";
                button type="button" class="btn" data-copy=(id) { "Copy" }
                button type="button" class="btn" data-toggle-secret=(id) aria-controls=(id) { "Show" }
            }
        }
    }
}

/// Errors of a form: per field, plus one for the whole form.
#[derive(Debug, Default)]
pub struct FieldErrors {
    fields: Vec<(String, String)>,
    /// A message not tied to a field.
    pub general: Option<String>,
}

impl FieldErrors {
    /// Adds a message for `field`.
    pub fn add(&mut self, field: &str, msg: impl Into<String>) {
        self.fields.push((field.to_string(), msg.into()));
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_none()
    }

    /// The message for `field`.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }

    /// Maps a service refusal onto the form (`param` → field); anything that is not
    /// about the form's values comes back as the error page to show instead.
    pub fn from_service(e: ServiceError, rename: &[(&str, &str)]) -> Result<Self, PageError> {
        let mut out = FieldErrors::default();
        match e {
            ServiceError::Domain(DomainError::Invalid {
                code,
                param,
                message,
            }) => {
                match param {
                    Some(p) => {
                        let root: String =
                            p.split(['[', '.']).next().unwrap_or_default().to_string();
                        let field = rename
                            .iter()
                            .find(|(from, _)| *from == root)
                            .map(|(_, to)| to.to_string())
                            .unwrap_or(root);
                        out.add(&field, friendly(code, &message));
                    }
                    None => out.general = Some(friendly(code, &message)),
                }
                Ok(out)
            }
            ServiceError::Domain(DomainError::Conflict { code, message }) => {
                match code {
                    "name_taken" => out.add("name", friendly(code, &message)),
                    "email_taken" => out.add("email", friendly(code, &message)),
                    _ => out.general = Some(friendly(code, &message)),
                }
                Ok(out)
            }
            other => Err(other.into()),
        }
    }

    /// Like [`FieldErrors::from_service`], and a refusal to grant a permission other than
    /// `action` (the no-escalation rule) becomes a message at `field` (the role or
    /// permission checklist) instead of a 403 page.
    pub fn from_grant(
        e: ServiceError,
        rename: &[(&str, &str)],
        action: Permission,
        field: &str,
    ) -> Result<Self, PageError> {
        match e {
            ServiceError::Domain(DomainError::PermissionDenied { permission })
                if permission != action.as_str() =>
            {
                let mut out = FieldErrors::default();
                out.add(
                    field,
                    format!(
                        "You can't grant {permission}: you don't hold it yourself. Untick the role or permission that includes it."
                    ),
                );
                Ok(out)
            }
            other => FieldErrors::from_service(other, rename),
        }
    }
}

/// Plain-language text for a service refusal; falls back to the service's own sentence.
pub fn friendly(code: &str, message: &str) -> String {
    let text = match code {
        "name_required" => "Enter a name.",
        "name_too_long" => "That is too long; please shorten it.",
        "invalid_characters" => "Remove control characters such as tabs or line breaks.",
        "name_taken" => "That name is already used in your organization. Choose another one.",
        "email_taken" => "A user with this email already exists.",
        "invalid_email" => "Enter an email address such as name@example.com.",
        "description_too_long" => "The description is too long.",
        "invalid_tag" => "Each tag must be 1–64 printable characters. Separate tags with commas.",
        "too_many_tags" => "Use at most 20 tags.",
        "invalid_scope" => "Scopes use lower-case letters, digits and . _ : - (for example billing:read), separated by commas.",
        "too_many_items" | "too_many_permissions" => "That list is too long.",
        "unknown_role" => "One of the chosen roles no longer exists. Reload the page and choose again.",
        "name_pattern_mismatch" => return format!("The name does not follow a chosen role's naming rule ({}).", message.trim_start_matches("name ")),
        "invalid_pattern" => "That is not a valid regular expression.",
        "invalid_role_name" => "Role names use lower-case letters, digits and hyphens, for example billing-admin.",
        "password_too_short" => "The password must be at least 12 characters long.",
        "password_too_long" => "The password is too long.",
        "wrong_password" => "Your current password is not correct.",
        "self_action" => return format!("Not possible: {message}."),
        "last_super_admin" => "The organization must keep at least one active super-admin.",
        "invalid_url" => "Enter an http:// or https:// address that is not Keyhaven itself.",
        "events_required" => "Choose at least one event.",
        "unknown_event" => "One of the chosen events is not known. Reload the page and choose again.",
        "expires_at_in_past" => "Pick a date in the future.",
        "invalid_timestamp" => "Enter a date such as 2027-01-31.",
        "invalid_expires_in_days" => "Choose an expiration.",
        "invalid_grace_period" => "Choose a grace period.",
        "built_in_role" => "Built-in roles cannot be changed or deleted.",
        "role_in_use" => "The role is still assigned to a user, service account or API key. Remove it from them first.",
        "service_account_archived" => "The service account is archived, so it can no longer change or get new keys and credentials.",
        "key_revoked" => "The key is revoked, so it can no longer change.",
        "owner_required" | "unknown_owner" | "invalid_owner" => "Choose an owner you are allowed to use.",
        _ => return capitalise(message),
    };
    text.to_string()
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    let mut out: String = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => return String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// A labelled field with its error under it.
pub fn field(
    label: &str,
    name: &str,
    errors: &FieldErrors,
    hint: Option<&str>,
    input: Markup,
) -> Markup {
    let err = errors.get(name);
    let input = describe(input, name, hint.is_some(), err.is_some());
    html! {
        div class={ "field" @if err.is_some() { " has-error" } } {
            label for={ "f-" (name) } { (label) }
            (input)
            @if let Some(h) = hint { div class="hint" id={ "h-" (name) } { (h) } }
            @if let Some(e) = err { div class="field-error" id={ "e-" (name) } role="alert" { (e) } }
        }
    }
}

/// Adds `aria-describedby` (hint, error) and `aria-invalid` to the control `f-{name}` of
/// server-built markup.
fn describe(input: Markup, name: &str, hint: bool, err: bool) -> Markup {
    let mut ids = Vec::new();
    if hint {
        ids.push(format!("h-{name}"));
    }
    if err {
        ids.push(format!("e-{name}"));
    }
    if ids.is_empty() {
        return input;
    }
    let anchor = format!("id=\"f-{name}\"");
    let mut extra = format!("{anchor} aria-describedby=\"{}\"", ids.join(" "));
    if err {
        extra.push_str(" aria-invalid=\"true\"");
    }
    PreEscaped(input.into_string().replacen(&anchor, &extra, 1))
}

/// A text input named `name` with `value`.
pub fn text_input(name: &str, value: &str, kind: &str, required: bool) -> Markup {
    html! {
        input id={ "f-" (name) } name=(name) type=(kind) value=(value) required[required];
    }
}

/// A form-wide error.
pub fn form_error(errors: &FieldErrors) -> Markup {
    html! {
        @if let Some(g) = &errors.general {
            div class="banner banner-error" role="alert" { (g) }
        } @else if !errors.is_empty() {
            div class="banner banner-error" role="alert" { "Please correct the fields marked below." }
        }
    }
}

/// One box of a checklist.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The submitted value (and the visible name).
    pub value: String,
    /// A short explanation shown after the value.
    pub text: String,
    /// Whether the user may tick or untick it. A ticked box the user may not change is
    /// shown disabled and still submitted (hidden field), so saving keeps it.
    pub enabled: bool,
}

impl Choice {
    /// An enabled choice.
    pub fn new(value: impl Into<String>, text: impl Into<String>) -> Self {
        Choice {
            value: value.into(),
            text: text.into(),
            enabled: true,
        }
    }
}

/// A group of checkboxes named `name`: a fieldset whose legend is `label`, with its
/// hint and error described on the group.
pub fn checklist(
    label: &str,
    name: &str,
    errors: &FieldErrors,
    hint: Option<&str>,
    options: &[Choice],
    checked: &[String],
) -> Markup {
    let err = errors.get(name);
    let mut described = Vec::new();
    if hint.is_some() {
        described.push(format!("h-{name}"));
    }
    if err.is_some() {
        described.push(format!("e-{name}"));
    }
    let described = (!described.is_empty()).then(|| described.join(" "));
    html! {
        fieldset class={ "field" @if err.is_some() { " has-error" } } id={ "f-" (name) }
            aria-describedby=[described] aria-invalid=[err.map(|_| "true")] {
            legend { (label) }
            div class="checklist" {
                @for o in options {
                    @let on = checked.contains(&o.value);
                    label class={ "check" @if !o.enabled { " check-disabled" } } {
                        input type="checkbox" name=(name) value=(o.value) checked[on] disabled[!o.enabled];
                        " " span { (o.value) } @if !o.text.is_empty() { span class="muted" { " — " (o.text) } }
                        @if !o.enabled { span class="muted small" { " (you can't grant this)" } }
                    }
                    @if !o.enabled && on { input type="hidden" name=(name) value=(o.value); }
                }
            }
            @if let Some(h) = hint { div class="hint" id={ "h-" (name) } { (h) } }
            @if let Some(e) = err { div class="field-error" id={ "e-" (name) } role="alert" { (e) } }
        }
    }
}

/// The roles a role checklist offers: every role the caller may grant (the
/// no-escalation rule of core), plus the `current` ones it may not, shown disabled so
/// they stay as they are. Empty without `roles.view`.
pub async fn role_choices(
    state: &AppState,
    c: &Console,
    current: &[String],
) -> Result<Vec<Choice>, PageError> {
    if !c.can(Permission::RolesView) {
        return Ok(Vec::new());
    }
    Ok(state
        .service
        .list_roles(&c.caller)
        .await?
        .into_iter()
        .filter_map(|r| {
            let grantable =
                check_no_escalation(&c.caller.permissions, r.permissions.iter()).is_ok();
            (grantable || current.contains(&r.name)).then_some(Choice {
                value: r.name,
                text: r.description,
                enabled: grantable,
            })
        })
        .collect())
}

/// Whether `submitted` names another set than `current` (roles or permissions).
pub fn roles_changed(submitted: &[String], current: &[String]) -> bool {
    let a: std::collections::BTreeSet<&String> = submitted.iter().collect();
    let b: std::collections::BTreeSet<&String> = current.iter().collect();
    a != b
}

/// A page the console shows instead of what was asked for.
#[derive(Debug)]
pub struct PageError(pub Box<Response>);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// What handlers return.
pub type PageResult = Result<Response, PageError>;

/// What a problem page says; kept on the response so that the console's middleware can
/// show the same page inside the navigation shell when the visitor is signed in.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The page's heading.
    pub title: String,
    /// The explanation.
    pub text: String,
}

fn problem_body(title: &str, text: &str) -> Markup {
    html! {
        div class="card narrow problem" {
            h1 { (title) }
            p { (text) }
            p { a class="btn" href="/api-keys" { "Go to the console" } }
        }
    }
}

/// A page explaining a problem, with a way back.
pub fn problem(status: StatusCode, title: &str, text: &str) -> PageError {
    let mut res = page(status, bare(title, problem_body(title, text)));
    res.extensions_mut().insert(Problem {
        title: title.to_string(),
        text: text.to_string(),
    });
    PageError(Box::new(res))
}

/// The problem page inside the shell, for a signed-in visitor.
pub fn problem_in_shell(c: &Console, status: StatusCode, p: &Problem) -> Response {
    page(
        status,
        layout(c, &p.title, "", problem_body(&p.title, &p.text)),
    )
}

/// Marks the redirect to the sign-in page that a service refusal produced, so the
/// console's middleware can add where to come back to.
#[derive(Debug, Clone, Copy)]
pub struct SignInAgain;

/// 403 page.
pub fn forbidden(permission: &str) -> PageError {
    problem(
        StatusCode::FORBIDDEN,
        "You don't have access to this page",
        &format!(
            "Your roles do not include the {permission} permission. Ask an administrator if you need it."
        ),
    )
}

/// The page for a stale or missing CSRF token.
pub fn csrf_failed() -> PageError {
    problem(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The security token of the form is missing or out of date (for example after signing in again in another tab). Go back, reload the page and submit it again.",
    )
}

impl From<ServiceError> for PageError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Domain(DomainError::PermissionDenied { permission }) => {
                forbidden(&permission)
            }
            ServiceError::Domain(DomainError::Invalid { message, .. }) => {
                problem(StatusCode::BAD_REQUEST, "That did not work", &message)
            }
            ServiceError::Domain(DomainError::Conflict { message, .. }) => {
                problem(StatusCode::CONFLICT, "That did not work", &message)
            }
            ServiceError::NotFound(what) => problem(
                StatusCode::NOT_FOUND,
                "Not found",
                &format!("There is no such {what} in your organization."),
            ),
            ServiceError::Unauthenticated(_) => {
                let mut res = see_other("/login?expired=1");
                res.extensions_mut().insert(SignInAgain);
                PageError(Box::new(res))
            }
            ServiceError::RateLimited(_) => problem(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "Wait a few minutes and try again.",
            ),
            ServiceError::Store(e) => {
                tracing::error!(error = %e, "console: storage failed");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Keyhaven could not complete this request. Try again; if it keeps failing, an operator can find the details in the server log.",
                )
            }
            ServiceError::Internal(m) => {
                tracing::error!(error = %m, "console: internal error");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Keyhaven could not complete this request. Try again; if it keeps failing, an operator can find the details in the server log.",
                )
            }
        }
    }
}

/// Parses an id from a path, or answers 404.
pub fn path_id(raw: &str, what: &'static str) -> Result<keyhaven_core::id::Id, PageError> {
    keyhaven_core::id::Id::parse(raw, "id").map_err(|_| ServiceError::NotFound(what).into())
}

/// Submitted form fields or query parameters, in order.
#[derive(Debug, Default, Clone)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// Parses `application/x-www-form-urlencoded` text.
    pub fn parse(raw: &[u8]) -> Self {
        FormData(
            form_urlencoded::parse(raw)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `k`, or "".
    pub fn get(&self, k: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// The first value of `k`, trimmed, when not empty.
    pub fn opt(&self, k: &str) -> Option<String> {
        let v = self.get(k).trim();
        (!v.is_empty()).then(|| v.to_string())
    }

    /// Every value of `k`, each split at commas, trimmed, without empties.
    pub fn list(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .flat_map(|(_, v)| v.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Whether `k` was sent.
    pub fn has(&self, k: &str) -> bool {
        self.0.iter().any(|(n, _)| n == k)
    }
}

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| {
                problem(
                    StatusCode::BAD_REQUEST,
                    "The form could not be read",
                    "The browser sent a form Keyhaven could not read. Reload the page and try again.",
                )
            })?;
        Ok(FormData::parse(&bytes))
    }
}

/// The query string as [`FormData`].
pub struct Query(pub FormData);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Query(FormData::parse(
            parts.uri.query().unwrap_or_default().as_bytes(),
        )))
    }
}

/// Builds a query string from pairs, skipping empty values.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// "First page" / "Next page" links for a cursor-paged list at `path` with the filter
/// pairs `base`.
pub fn pager(path: &str, base: &[(&str, &str)], paged: bool, next: Option<&str>) -> Markup {
    html! {
        @if paged || next.is_some() {
            nav class="pager" aria-label="Pagination" {
                @if paged { a class="btn" href={ (path) "?" (query_string(base)) } { "First page" } }
                @if let Some(h) = next { a class="btn" rel="next" href=(h) { "Next page" } }
            }
        }
    }
}

/// Inline SVG markup that was built by the server.
pub fn raw(s: String) -> Markup {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_codes_read_as_plain_language() {
        let e = ServiceError::Domain(DomainError::invalid(
            "password_too_short",
            "new_password",
            "new_password must be at least 12 characters",
        ));
        let f = FieldErrors::from_service(e, &[]).unwrap();
        assert_eq!(
            f.get("new_password"),
            Some("The password must be at least 12 characters long.")
        );
        let e = ServiceError::Domain(DomainError::conflict("email_taken", "taken"));
        let f = FieldErrors::from_service(e, &[]).unwrap();
        assert_eq!(
            f.get("email"),
            Some("A user with this email already exists.")
        );
        // An unknown code keeps the service's sentence, as a sentence.
        assert_eq!(friendly("something_new", "it went wrong"), "It went wrong.");
    }

    #[test]
    fn a_refused_grant_lands_on_the_checklist() {
        let e = ServiceError::Domain(DomainError::denied("users.delete"));
        let f = FieldErrors::from_grant(e, &[], Permission::UsersUpdate, "roles").unwrap();
        assert!(f.get("roles").unwrap().contains("users.delete"));
        // Lacking the action's own permission is still a 403 page.
        let e = ServiceError::Domain(DomainError::denied("users.update"));
        assert!(FieldErrors::from_grant(e, &[], Permission::UsersUpdate, "roles").is_err());
    }

    #[test]
    fn days_are_read_in_the_browsers_zone() {
        let d = chrono::NaiveDate::from_ymd_opt(2027, 1, 31).unwrap();
        // UTC+10 (getTimezoneOffset = -600): the day ends at 13:59:59 UTC.
        let end = local_day(d, -600, true).unwrap();
        assert_eq!(keyhaven_core::time::rfc3339(&end), "2027-01-31T13:59:59Z");
        // UTC-5: the day starts at 05:00 UTC.
        let start = local_day(d, 300, false).unwrap();
        assert_eq!(keyhaven_core::time::rfc3339(&start), "2027-01-31T05:00:00Z");
        let form = FormData(vec![("tz_offset".into(), "99999".into())]);
        assert_eq!(tz_offset(&form), 0);
    }

    #[test]
    fn described_fields_point_at_their_hint_and_error() {
        let mut errors = FieldErrors::default();
        errors.add("name", "Enter a name.");
        let html = field(
            "Name",
            "name",
            &errors,
            Some("hint"),
            text_input("name", "", "text", true),
        )
        .into_string();
        assert!(
            html.contains(r#"id="f-name" aria-describedby="h-name e-name" aria-invalid="true""#),
            "{html}"
        );
    }
}
