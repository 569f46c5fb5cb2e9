//! Forms: submitted data ([`FormData`], [`Query`]), field errors and the plain-language
//! text of service refusals, labelled fields and checklists, the CSRF and time-zone
//! fields, and the status of a form page.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use keyhaven_core::permission::{check_no_escalation, Permission};
use keyhaven_core::time::Timestamp;
use keyhaven_core::DomainError;
use maud::{html, Markup, PreEscaped};

use super::auth::Console;
use super::errors::{problem, PageError, PageResult};
use super::layout::page;
use crate::app::AppState;
use keyhaven_service::ServiceError;

/// A form page: 200, or 422 when it shows errors next to its fields.
pub fn form_page(errors: &FieldErrors, markup: Markup) -> PageResult {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(page(status, markup))
}

/// The hidden CSRF field every form carries.
pub fn csrf(c: &Console) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(c.csrf); }
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

/// Query parameters are parsed here once for every page, so a control character (a NUL
/// byte, which PostgreSQL refuses in text) never reaches a filter: the page answers 400.
impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = super::errors::PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = FormData::parse(parts.uri.query().unwrap_or_default().as_bytes());
        if q.0
            .iter()
            .any(|(k, v)| k.chars().any(char::is_control) || v.chars().any(char::is_control))
        {
            return Err(super::errors::problem(
                axum::http::StatusCode::BAD_REQUEST,
                "This address can't be used",
                "Its query contains control characters. Remove them and try again.",
            ));
        }
        Ok(Query(q))
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
