//! Forms: submitted data ([`FormData`], [`Query`]), field errors and the plain-language
//! text of service refusals, labelled fields and checklists, the CSRF and time-zone
//! fields, and the status of a form page.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use keyhaven_core::permission::{check_no_escalation, Permission};
use keyhaven_core::time::Timestamp;
use keyhaven_core::usage_control::{
    self, NamedLimit, MAX_DURATION_MS, MAX_LIMIT, MAX_LIMITS, MIN_DURATION_MS,
};
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

    /// How many messages were recorded (fields and the form's own).
    pub fn len(&self) -> usize {
        self.fields.len() + usize::from(self.general.is_some())
    }

    /// The message for `field`.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }

    /// Whether a message was recorded for `field`.
    pub fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    /// Whether a message was recorded for `field` or a part of it (`ratelimits[2].name`
    /// is a part of `ratelimits`).
    pub fn has_under(&self, field: &str) -> bool {
        self.fields.iter().any(|(f, _)| {
            f == field || f.starts_with(&format!("{field}[")) || f.starts_with(&format!("{field}."))
        })
    }

    /// Records the refusal of a core check run on a field of the form (as
    /// [`FieldErrors::from_service`] would place it), unless that field has a message
    /// already. Used to show every error of a form at once: the use case stops at the
    /// first.
    pub fn check<T>(&mut self, r: Result<T, DomainError>, rename: &[(&str, &str)]) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(DomainError::Invalid {
                code,
                param,
                message,
            }) => {
                let field = field_of(param.as_deref().unwrap_or_default(), rename);
                if !self.has(&field) {
                    self.add(&field, friendly(code, &message));
                }
                None
            }
            Err(e) => {
                if self.general.is_none() {
                    self.general = Some(capitalise(&e.to_string()));
                }
                None
            }
        }
    }

    /// Records every parse error of a typed command (its `parse_all`) on the form;
    /// the command when there was none, neither there nor in what the form read before.
    pub fn parsed<T>(
        &mut self,
        r: Result<T, Vec<DomainError>>,
        rename: &[(&str, &str)],
    ) -> Option<T> {
        match r {
            Ok(v) if self.is_empty() => Some(v),
            Ok(_) => None,
            Err(list) => {
                for e in list {
                    self.check::<()>(Err(e), rename);
                }
                None
            }
        }
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
                    Some(p) => out.add(&field_of(&p, rename), friendly(code, &message)),
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

/// The form field a service `param` belongs to: its first segment (`tags[2]` → `tags`),
/// renamed by `rename`.
fn field_of(param: &str, rename: &[(&str, &str)]) -> String {
    let root = param.split(['[', '.']).next().unwrap_or_default();
    rename
        .iter()
        .find(|(from, _)| *from == root)
        .map(|(_, to)| to.to_string())
        .unwrap_or_else(|| root.to_string())
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
        "invalid_ratelimit" => "Check the rate limits: each needs a name, a limit from 1 to 1,000,000,000 and a window from 1 second to 30 days; at most 10 limits.",
        "invalid_credits" => "Check the credits: balances and amounts are whole numbers from 0 to 1,000,000,000,000.",
        "no_credits" => "This key has no credit balance. Give it one on its Edit page first.",
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

/// A text input for a whole number (`inputmode=numeric`, so phones offer digits; typed
/// as text so that "5,000" reaches the server and gets a proper message if wrong).
pub fn number_input(name: &str, value: &str) -> Markup {
    html! {
        input id={ "f-" (name) } name=(name) type="text" inputmode="numeric" autocomplete="off" value=(value);
    }
}

/// The form's default button, first in it: pressing Enter in a field of a form with
/// more than one submit button (such as "Add another limit") presses this one, which
/// submits the form as its main button does. Invisible and out of the tab order; the
/// visible main button stays the one to use.
pub fn default_submit() -> Markup {
    html! {
        button type="submit" class="default-submit" tabindex="-1" aria-hidden="true" {}
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

// ---------------------------------------------------------------------------------------
// Named rate limits: one section of a form, shared by the key and service account forms.
// Each row is `ratelimits[i].name`, `.limit`, `.per` with `.unit`, and `.auto_apply`
// (the API's fields; the window is typed as a number and a unit instead of
// milliseconds). A row without a name and a limit is no limit, so clearing those two
// removes a limit.

/// The units a window is typed in: form value, label, milliseconds.
pub const WINDOW_UNITS: &[(&str, &str, i64)] = &[
    ("seconds", "seconds", 1_000),
    ("minutes", "minutes", 60_000),
    ("hours", "hours", 3_600_000),
    ("days", "days", 86_400_000),
];

/// Rows a form may carry before the rest are refused unread.
const MAX_ROWS: usize = 100;

/// Empty rows offered under the existing limits.
const SPARE_ROWS: usize = 2;

/// The submit button that asks for one more row (the form comes back unsaved).
pub const ADD_LIMIT: &str = "add_limit";

/// One row of the limits section, as typed.
#[derive(Debug, Clone, Default)]
pub struct LimitRow {
    /// `ratelimits[i].name`.
    pub name: String,
    /// `ratelimits[i].limit`.
    pub limit: String,
    /// `ratelimits[i].per`: the window's length in `unit`s.
    pub per: String,
    /// `ratelimits[i].unit`: one of [`WINDOW_UNITS`].
    pub unit: String,
    /// `ratelimits[i].auto_apply`.
    pub auto_apply: bool,
}

impl LimitRow {
    /// An empty row: per minute, applied to every call (the API's default) once a name
    /// and a limit are filled in.
    pub fn blank() -> Self {
        LimitRow {
            per: "1".into(),
            unit: "minutes".into(),
            auto_apply: true,
            ..Default::default()
        }
    }

    /// A row without a name and a limit is no limit (its window is ignored).
    fn is_blank(&self) -> bool {
        self.name.trim().is_empty() && self.limit.trim().is_empty()
    }

    fn of(l: &NamedLimit) -> Self {
        let (per, unit) = window_parts(l.duration_ms);
        LimitRow {
            name: l.name.clone(),
            limit: l.limit.to_string(),
            per,
            unit: unit.to_string(),
            auto_apply: l.auto_apply,
        }
    }
}

/// A window in the largest unit it is a whole number of (`90000` → `90 seconds`,
/// `3600000` → `1 hours`); a window that is no whole number of seconds in seconds
/// with decimals.
pub fn window_parts(ms: i64) -> (String, &'static str) {
    for (unit, _, size) in WINDOW_UNITS.iter().rev() {
        if ms % size == 0 {
            return ((ms / size).to_string(), unit);
        }
    }
    let frac = format!("{:03}", ms % 1000);
    (
        format!("{}.{}", ms / 1000, frac.trim_end_matches('0')),
        "seconds",
    )
}

/// The form fields of `limits` followed by empty rows (two, up to ten rows in all), for
/// a form that edits them.
pub fn limit_pairs(limits: &[NamedLimit]) -> Vec<(String, String)> {
    let mut rows: Vec<LimitRow> = limits.iter().map(LimitRow::of).collect();
    let spare = SPARE_ROWS.min(MAX_LIMITS.saturating_sub(rows.len()));
    rows.extend((0..spare).map(|_| LimitRow::blank()));
    row_pairs(&rows)
}

fn row_pairs(rows: &[LimitRow]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        out.push((row_field(i, "name"), r.name.clone()));
        out.push((row_field(i, "limit"), r.limit.clone()));
        out.push((row_field(i, "per"), r.per.clone()));
        out.push((row_field(i, "unit"), r.unit.clone()));
        if r.auto_apply {
            out.push((row_field(i, "auto_apply"), "on".into()));
        }
    }
    out
}

fn row_field(i: usize, part: &str) -> String {
    format!("ratelimits[{i}].{part}")
}

fn row_id(i: usize, part: &str) -> String {
    format!("ratelimits-{i}-{part}")
}

/// The rows a form carries, in the order of their numbers (renumbered from 0), and
/// whether it carried rows past [`MAX_ROWS`]. A form without any row (a new form) gets
/// [`SPARE_ROWS`] empty ones.
pub fn limit_rows(form: &FormData) -> (Vec<LimitRow>, bool) {
    let mut rows: std::collections::BTreeMap<usize, LimitRow> = Default::default();
    let mut overflow = false;
    let mut seen = false;
    for (k, v) in &form.0 {
        let Some((i, part)) = k
            .strip_prefix("ratelimits[")
            .and_then(|rest| rest.split_once("]."))
        else {
            continue;
        };
        seen = true;
        let Ok(i) = i.parse::<usize>() else {
            overflow = true;
            continue;
        };
        if i >= MAX_ROWS {
            overflow = true;
            continue;
        }
        let row = rows.entry(i).or_default();
        match part {
            "name" => row.name = v.clone(),
            "limit" => row.limit = v.clone(),
            "per" => row.per = v.clone(),
            "unit" => row.unit = v.clone(),
            "auto_apply" => row.auto_apply = true,
            _ => {}
        }
    }
    if !seen {
        return ((0..SPARE_ROWS).map(|_| LimitRow::blank()).collect(), false);
    }
    (rows.into_values().collect(), overflow)
}

/// Whether `form` carries a limits section (a form posted without one leaves the limits
/// as they are).
pub fn limits_sent(form: &FormData) -> bool {
    form.0.iter().any(|(k, _)| k.starts_with("ratelimits["))
}

/// `form` with one more empty row in its limits section (the "Add another limit"
/// button; no more than ten rows), its rows renumbered.
pub fn with_added_row(form: &FormData) -> FormData {
    let (mut rows, _) = limit_rows(form);
    if rows.len() < MAX_LIMITS {
        rows.push(LimitRow::blank());
    }
    let mut pairs: Vec<(String, String)> = form
        .0
        .iter()
        .filter(|(k, _)| !k.starts_with("ratelimits[") && k != ADD_LIMIT)
        .cloned()
        .collect();
    pairs.extend(row_pairs(&rows));
    FormData(pairs)
}

/// A whole number as people type it: digits, optionally grouped with commas, spaces or
/// underscores, optionally negative (so that the range check can say what is wrong).
pub fn parse_whole(s: &str) -> Option<i64> {
    let t: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, ',' | '_' | ' ' | '\u{a0}' | '\u{202f}'))
        .collect();
    let digits = t.strip_prefix('-').unwrap_or(&t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// `per` `unit`s in milliseconds, when that is a whole number of them (`1.5` seconds
/// is 1500).
fn parse_window(per: &str, unit: &str) -> Option<i64> {
    let size = WINDOW_UNITS.iter().find(|(u, _, _)| *u == unit)?.2 as i128;
    let (whole, frac) = per.trim().split_once('.').unwrap_or((per.trim(), ""));
    if (whole.is_empty() && frac.is_empty())
        || whole.len() > 12
        || frac.len() > 9
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let scale = 10_i128.pow(frac.len() as u32);
    let frac: i128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let ms = whole * size + frac * size / scale;
    (frac * size % scale == 0)
        .then_some(ms)
        .and_then(|m| i64::try_from(m).ok())
}

/// Reads the limits section: the limits of the filled-in rows, every mistake recorded
/// next to its field (and the count at `ratelimits`). `owner` names what carries the
/// limits in the message about their number ("A key", "A service account").
pub fn read_limits(form: &FormData, owner: &str, errors: &mut FieldErrors) -> Vec<NamedLimit> {
    let (rows, overflow) = limit_rows(form);
    let mut out: Vec<NamedLimit> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut filled = 0;
    for (i, r) in rows.iter().enumerate() {
        if r.is_blank() {
            continue;
        }
        filled += 1;
        let name = r.name.trim().to_string();
        let mut ok = true;
        if name.is_empty() {
            errors.add(&row_field(i, "name"), "Give the limit a name.");
            ok = false;
        } else if !usage_control::is_limit_name(&name) {
            errors.add(
                &row_field(i, "name"),
                "Use up to 64 lower-case letters, digits and . _ : -, starting with a letter or digit (for example tokens or per-user:v1).",
            );
            ok = false;
        } else if names.contains(&name) {
            errors.add(
                &row_field(i, "name"),
                "Another limit above already has this name.",
            );
            ok = false;
        }
        names.push(name.clone());
        let limit = parse_whole(&r.limit).filter(|n| (1..=MAX_LIMIT).contains(n));
        if limit.is_none() {
            errors.add(
                &row_field(i, "limit"),
                "Enter a whole number from 1 to 1,000,000,000.",
            );
        }
        let window = parse_window(&r.per, &r.unit)
            .filter(|ms| (MIN_DURATION_MS..=MAX_DURATION_MS).contains(ms));
        if window.is_none() {
            errors.add(
                &row_field(i, "per"),
                "Enter a window from 1 second to 30 days, such as 1 minute.",
            );
        }
        if let (true, Some(limit), Some(duration_ms)) = (ok, limit, window) {
            out.push(NamedLimit {
                name,
                limit,
                duration_ms,
                auto_apply: r.auto_apply,
            });
        }
    }
    if overflow || filled > MAX_LIMITS {
        errors.add(
            "ratelimits",
            format!(
                "{owner} can have at most {MAX_LIMITS} rate limits. Clear the rows you don't need."
            ),
        );
    }
    // The rows were checked one by one above; the list as a whole is the core's rule.
    errors.check(usage_control::validate_limits(&out, "ratelimits"), &[]);
    out
}

/// The limits section of a form: one row per limit, with "Add another limit" while
/// there are fewer than ten rows.
pub fn limits_fields(form: &FormData, errors: &FieldErrors, hint: &str) -> Markup {
    let (rows, _) = limit_rows(form);
    let err = errors.get("ratelimits");
    let described = if err.is_some() {
        "h-ratelimits e-ratelimits"
    } else {
        "h-ratelimits"
    };
    html! {
        fieldset class={ "field limits" @if errors.has_under("ratelimits") { " section-error" } } id="f-ratelimits"
            aria-describedby=(described) aria-invalid=[err.map(|_| "true")] {
            legend { "Rate limits" }
            div class="hint" id="h-ratelimits" { (hint) " To remove a limit, clear its name and limit." }
            div class="limit-rows" {
                @for (i, r) in rows.iter().enumerate() {
                    (limit_row(i, r, errors))
                }
            }
            @if let Some(e) = err { div class="field-error" id="e-ratelimits" role="alert" { (e) } }
            @if rows.len() < MAX_LIMITS {
                div {
                    button class="btn btn-small" type="submit" name=(ADD_LIMIT) value="1" formnovalidate { "Add another limit" }
                }
            }
        }
    }
}

fn limit_row(i: usize, r: &LimitRow, errors: &FieldErrors) -> Markup {
    let n = i + 1;
    let part = |p: &str| {
        let key = row_field(i, p);
        let err = errors.get(&key).map(str::to_string);
        (key, row_id(i, p), err)
    };
    let (name_key, name_id, name_err) = part("name");
    let (limit_key, limit_id, limit_err) = part("limit");
    let (per_key, per_id, per_err) = part("per");
    let unit_key = row_field(i, "unit");
    let unit_id = row_id(i, "unit");
    let auto_key = row_field(i, "auto_apply");
    let auto_id = row_id(i, "auto_apply");
    let unit = if r.unit.is_empty() {
        "minutes"
    } else {
        r.unit.as_str()
    };
    html! {
        div class="limit-row" data-row=(i) {
            div class={ "field" @if name_err.is_some() { " has-error" } } {
                label for={ "f-" (name_id) } { "Name" span class="sr-only" { " of limit " (n) } }
                input id={ "f-" (name_id) } name=(name_key) type="text" value=(r.name)
                    autocomplete="off" spellcheck="false" placeholder="e.g. requests"
                    aria-invalid=[name_err.as_ref().map(|_| "true")]
                    aria-describedby=[name_err.as_ref().map(|_| format!("e-{name_id}"))];
                @if let Some(e) = &name_err { div class="field-error" id={ "e-" (name_id) } role="alert" { (e) } }
            }
            div class={ "field" @if limit_err.is_some() { " has-error" } } {
                label for={ "f-" (limit_id) } { "Limit" span class="sr-only" { " of limit " (n) } }
                input id={ "f-" (limit_id) } name=(limit_key) type="text" inputmode="numeric" value=(r.limit)
                    autocomplete="off" placeholder="e.g. 100"
                    aria-invalid=[limit_err.as_ref().map(|_| "true")]
                    aria-describedby=[limit_err.as_ref().map(|_| format!("e-{limit_id}"))];
                @if let Some(e) = &limit_err { div class="field-error" id={ "e-" (limit_id) } role="alert" { (e) } }
            }
            div class={ "field" @if per_err.is_some() { " has-error" } } {
                label for={ "f-" (per_id) } { "Per" span class="sr-only" { " (window of limit " (n) ")" } }
                div class="per-inputs" {
                    input id={ "f-" (per_id) } name=(per_key) type="text" inputmode="decimal" value=(r.per)
                        autocomplete="off"
                        aria-invalid=[per_err.as_ref().map(|_| "true")]
                        aria-describedby=[per_err.as_ref().map(|_| format!("e-{per_id}"))];
                    select id={ "f-" (unit_id) } name=(unit_key) aria-label={ "Unit of the window of limit " (n) } {
                        @for (v, label, _) in WINDOW_UNITS {
                            option value=(v) selected[unit == *v] { (label) }
                        }
                    }
                }
                @if let Some(e) = &per_err { div class="field-error" id={ "e-" (per_id) } role="alert" { (e) } }
            }
            label class="check limit-auto" for={ "f-" (auto_id) } {
                input id={ "f-" (auto_id) } type="checkbox" name=(auto_key) value="on" checked[r.auto_apply];
                span {
                    "Apply to every call"
                    span class="muted small" { " (otherwise only when a request names it)" }
                }
            }
        }
    }
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

    fn form(pairs: &[(&str, &str)]) -> FormData {
        FormData(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn numbers_and_windows_are_read_as_typed() {
        assert_eq!(parse_whole("5,000"), Some(5_000));
        assert_eq!(parse_whole(" 1 000 000 "), Some(1_000_000));
        assert_eq!(parse_whole("-5"), Some(-5));
        for bad in ["", "-", "1.5", "ten", "1e3", "99999999999999999999"] {
            assert_eq!(parse_whole(bad), None, "{bad}");
        }
        assert_eq!(parse_window("1", "minutes"), Some(60_000));
        assert_eq!(parse_window("1.5", "seconds"), Some(1_500));
        assert_eq!(parse_window(".5", "minutes"), Some(30_000));
        assert_eq!(parse_window("30", "days"), Some(MAX_DURATION_MS));
        assert_eq!(parse_window("0.0001", "seconds"), None);
        assert_eq!(parse_window("1", "weeks"), None);
        assert_eq!(parse_window("", "seconds"), None);
        assert_eq!(parse_window("-1", "seconds"), None);
        // Every window round-trips through the form.
        for ms in [1_000, 1_500, 60_000, 90_000, 3_600_000, 86_400_000, 123_456] {
            let (per, unit) = window_parts(ms);
            assert_eq!(parse_window(&per, unit), Some(ms), "{ms}");
        }
    }

    #[test]
    fn limit_rows_are_read_with_every_mistake_at_its_field() {
        let f = form(&[
            ("ratelimits[0].name", "requests"),
            ("ratelimits[0].limit", "1,000"),
            ("ratelimits[0].per", "1"),
            ("ratelimits[0].unit", "minutes"),
            ("ratelimits[0].auto_apply", "on"),
            ("ratelimits[1].name", ""),
            ("ratelimits[1].limit", ""),
            ("ratelimits[1].per", "1"),
            ("ratelimits[1].unit", "minutes"),
            ("ratelimits[2].name", "Bad Name"),
            ("ratelimits[2].limit", "0"),
            ("ratelimits[2].per", "31"),
            ("ratelimits[2].unit", "days"),
            ("ratelimits[3].name", "requests"),
            ("ratelimits[3].limit", "5"),
            ("ratelimits[3].per", "1"),
            ("ratelimits[3].unit", "hours"),
        ]);
        let mut errors = FieldErrors::default();
        let limits = read_limits(&f, "A key", &mut errors);
        assert_eq!(limits.len(), 1);
        assert_eq!(
            limits[0],
            NamedLimit {
                name: "requests".into(),
                limit: 1_000,
                duration_ms: 60_000,
                auto_apply: true,
            }
        );
        assert!(errors.has("ratelimits[2].name"));
        assert!(errors.has("ratelimits[2].limit"));
        assert!(errors.has("ratelimits[2].per"));
        assert!(errors
            .get("ratelimits[3].name")
            .is_some_and(|m| m.contains("already")));
        assert!(!errors.has_under("ratelimits[1]"));
        assert!(!errors.has("ratelimits"));
        // Eleven filled rows: refused as a whole.
        let mut pairs = Vec::new();
        for i in 0..11 {
            pairs.push((format!("ratelimits[{i}].name"), format!("l{i}")));
            pairs.push((format!("ratelimits[{i}].limit"), "10".to_string()));
            pairs.push((format!("ratelimits[{i}].per"), "1".to_string()));
            pairs.push((format!("ratelimits[{i}].unit"), "seconds".to_string()));
        }
        let mut errors = FieldErrors::default();
        read_limits(&FormData(pairs), "A key", &mut errors);
        assert!(errors.get("ratelimits").is_some_and(|m| m.contains("10")));
        // A new form offers two empty rows; "Add another limit" one more.
        let (rows, _) = limit_rows(&FormData::default());
        assert_eq!(rows.len(), 2);
        let more = with_added_row(&f);
        assert_eq!(limit_rows(&more).0.len(), 5);
        assert!(!more.has(ADD_LIMIT));
        // A row number far out is refused, not rendered.
        let (_, overflow) = limit_rows(&form(&[("ratelimits[100000].name", "x")]));
        assert!(overflow);
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
