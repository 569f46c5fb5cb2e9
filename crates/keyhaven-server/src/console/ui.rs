//! Page shell, small view helpers, form data and the mapping of service errors to pages.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use keyhaven_core::permission::Permission;
use keyhaven_core::time::Timestamp;
use keyhaven_core::DomainError;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::auth::Console;
use crate::service::ServiceError;

/// An HTML answer.
pub fn page(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
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
                                    Some(p) => c.caller.has(p),
                                    None => item.key != "secret" || secret_visible,
                                };
                                @if allowed {
                                    li {
                                        a href=(item.href) aria-current=[(item.key == active).then_some("page")] {
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
            ServiceError::Domain(DomainError::Invalid { param, message, .. }) => {
                match param {
                    Some(p) => {
                        let root: String =
                            p.split(['[', '.']).next().unwrap_or_default().to_string();
                        let field = rename
                            .iter()
                            .find(|(from, _)| *from == root)
                            .map(|(_, to)| to.to_string())
                            .unwrap_or(root);
                        out.add(&field, message);
                    }
                    None => out.general = Some(message),
                }
                Ok(out)
            }
            ServiceError::Domain(DomainError::Conflict { code, message }) => {
                if code == "name_taken" {
                    out.add("name", message);
                } else {
                    out.general = Some(message);
                }
                Ok(out)
            }
            other => Err(other.into()),
        }
    }
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
    html! {
        div class={ "field" @if err.is_some() { " has-error" } } {
            label for={ "f-" (name) } { (label) }
            (input)
            @if let Some(h) = hint { div class="hint" id={ "h-" (name) } { (h) } }
            @if let Some(e) = err { div class="field-error" id={ "e-" (name) } role="alert" { (e) } }
        }
    }
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

/// A list of checkboxes named `name`.
pub fn checklist(name: &str, options: &[(String, String)], checked: &[String]) -> Markup {
    html! {
        div class="checklist" id={ "f-" (name) } {
            @for (value, text) in options {
                label class="check" {
                    input type="checkbox" name=(name) value=(value) checked[checked.contains(value)];
                    " " span { (value) } @if !text.is_empty() { span class="muted" { " — " (text) } }
                }
            }
        }
    }
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

/// A page explaining a problem, with a way back.
pub fn problem(status: StatusCode, title: &str, text: &str) -> PageError {
    PageError(Box::new(page(
        status,
        bare(
            title,
            html! {
                div class="card narrow problem" {
                    h1 { (title) }
                    p { (text) }
                    p { a class="btn" href="/api-keys" { "Go to the console" } }
                }
            },
        ),
    )))
}

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
            ServiceError::Unauthenticated(_) => PageError(Box::new(see_other("/login?expired=1"))),
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

/// Inline SVG markup that was built by the server.
pub fn raw(s: String) -> Markup {
    PreEscaped(s)
}
