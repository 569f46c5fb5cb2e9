//! Typed values: the names, tags, scopes, role names, emails and other fields a request
//! carries, each parsed once, where input enters (the API's bodies, the console's
//! forms, the CLI), into a type that can only hold a valid value. The use cases take
//! these types, so they never see an unchecked string and no rule is written twice.
//!
//! Each type also describes itself as a [`Shape`] — lengths, item counts, patterns,
//! ranges — from the same constants it parses with; the HTTP layer turns shapes into
//! the OpenAPI document's constraints, so the contract cannot drift from the parser.

use std::fmt;

use crate::error::DomainError;
use crate::validate;

/// What a value looks like on the wire, for the contract document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A string.
    Text {
        /// Fewest characters (code points).
        min_length: usize,
        /// Most characters (code points).
        max_length: usize,
        /// A regular expression (ECMA 262 / Python syntax) every accepted value matches.
        pattern: Option<String>,
        /// A JSON Schema format (`regex`, `date-time`…).
        format: Option<&'static str>,
    },
    /// A list of values of one shape.
    List {
        /// Most items.
        max_items: usize,
        /// Fewest items.
        min_items: usize,
        /// The shape of each item.
        item: Box<Shape>,
    },
    /// An integer in a range.
    Integer {
        /// Smallest value.
        minimum: i64,
        /// Largest value.
        maximum: i64,
    },
    /// One of a fixed set of strings.
    OneOf(&'static [&'static str]),
}

/// A value that can describe its shape.
pub trait Described {
    /// The value's wire shape.
    fn shape() -> Shape;
}

/// The characters `trim` removes (Unicode `White_Space`), as a regex class body.
const SPACE: &str =
    "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// Control characters (`char::is_control`) as a regex class body.
const CONTROL: &str = "\\x00-\\x1f\\x7f-\\x9f";

/// Control characters but tab, line feed and carriage return.
const CONTROL_BUT_LINES: &str = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f";

/// The invisible and text-direction characters of [`validate::INVISIBLE`] as a regex
/// class body: `\uXXXX` for the basic plane, the characters themselves above it (the
/// two regex dialects of JSON Schema spell those differently).
fn invisible_class() -> String {
    let mut s = String::new();
    for &(lo, hi) in validate::INVISIBLE {
        for (i, c) in [lo, hi].into_iter().enumerate() {
            if i == 1 && lo == hi {
                break;
            }
            if i == 1 {
                s.push('-');
            }
            if c <= 0xFFFF {
                s.push_str(&format!("\\u{c:04x}"));
            } else if let Some(ch) = char::from_u32(c) {
                s.push(ch);
            }
        }
    }
    s
}

/// The pattern of a single-line name: no control or invisible characters, something
/// besides spaces (which are trimmed).
fn name_pattern() -> String {
    let bad = format!("{CONTROL}{}", invisible_class());
    format!("^[{SPACE}]*[^{SPACE}{bad}]([^{bad}]*[^{SPACE}{bad}])?[{SPACE}]*$")
}

fn text(min_length: usize, max_length: usize, pattern: Option<String>) -> Shape {
    Shape::Text {
        min_length,
        max_length,
        pattern,
        format: None,
    }
}

fn list(max_items: usize, item: Shape) -> Shape {
    Shape::List {
        max_items,
        min_items: 0,
        item: Box::new(item),
    }
}

/// Defines a text value type: the newtype, its accessors and conversions.
macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The value as an owned string.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

/// Defines a single-line name type of at most `$max` characters.
macro_rules! name_value {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        text_value!($(#[$doc])* $name);

        impl $name {
            /// Longest value, in characters.
            pub const MAX_LENGTH: usize = $max;

            /// Parses a name: trimmed, 1 to [`Self::MAX_LENGTH`] characters, no control,
            /// invisible or text-direction characters; `param` names the field.
            pub fn parse(input: &str, param: &str) -> Result<Self, DomainError> {
                validate::name(input, param, $max).map(Self)
            }
        }

        impl Described for $name {
            fn shape() -> Shape {
                text(1, $max, Some(name_pattern()))
            }
        }
    };
}

name_value!(
    /// An API key's name, unique in its organization.
    KeyName,
    crate::api_key::MAX_NAME
);
name_value!(
    /// A service account's name.
    ServiceAccountName,
    100
);
name_value!(
    /// An organization's name.
    OrganizationName,
    100
);
name_value!(
    /// A user's display name.
    DisplayName,
    100
);
name_value!(
    /// A client credential's name.
    CredentialName,
    100
);

text_value!(
    /// Free text describing a resource: at most [`validate::MAX_DESCRIPTION`]
    /// characters, lines allowed, no other control characters; trimmed.
    Description
);

impl Description {
    /// Parses a description; `param` names the field.
    pub fn parse(input: &str, param: &str) -> Result<Self, DomainError> {
        validate::description(input, param).map(Self)
    }

    /// No description.
    pub fn empty() -> Self {
        Self(String::new())
    }
}

impl Described for Description {
    fn shape() -> Shape {
        text(
            0,
            validate::MAX_DESCRIPTION,
            Some(format!("^[^{CONTROL_BUT_LINES}]*$")),
        )
    }
}

text_value!(
    /// A tag on a key: 1–64 printable characters, trimmed.
    Tag
);

impl Tag {
    /// Longest tag, in characters.
    pub const MAX_LENGTH: usize = 64;

    /// Parses one tag; `param` names the field (`tags[3]`).
    pub fn parse(input: &str, param: &str) -> Result<Self, DomainError> {
        let t = input.trim();
        if t.is_empty()
            || input.chars().count() > Self::MAX_LENGTH
            || t.chars()
                .any(|c| c.is_control() || validate::is_invisible(c))
        {
            return Err(DomainError::invalid(
                "invalid_tag",
                param,
                format!(
                    "{param} must be 1-64 printable characters (no invisible or text-direction characters)"
                ),
            ));
        }
        Ok(Self(t.to_string()))
    }
}

impl Described for Tag {
    fn shape() -> Shape {
        text(1, Self::MAX_LENGTH, Some(name_pattern()))
    }
}

/// Parses a list into distinct items (a repeated item is dropped), refusing more than
/// `max` entries with `code`.
fn distinct<T: PartialEq>(
    input: &[String],
    param: &str,
    max: usize,
    code: &'static str,
    what: &str,
    parse: impl Fn(&str, &str) -> Result<T, DomainError>,
) -> Result<Vec<T>, DomainError> {
    if input.len() > max {
        return Err(DomainError::invalid(
            code,
            param,
            format!("{param} may hold at most {max} {what}"),
        ));
    }
    let mut out: Vec<T> = Vec::with_capacity(input.len());
    for (i, v) in input.iter().enumerate() {
        let v = parse(v, &format!("{param}[{i}]"))?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

/// Defines a list type of distinct items of `$item`, at most `$max`.
macro_rules! list_value {
    ($(#[$doc:meta])* $name:ident, $item:ident, $max:expr, $code:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name(Vec<$item>);

        impl $name {
            /// Most entries.
            pub const MAX_ITEMS: usize = $max;

            /// Parses the list: each entry as its own type, a repeated entry dropped,
            /// at most [`Self::MAX_ITEMS`]; `param` names the field.
            pub fn parse(input: &[String], param: &str) -> Result<Self, DomainError> {
                distinct(input, param, $max, $code, $what, $item::parse).map(Self)
            }

            /// The entries.
            pub fn items(&self) -> &[$item] {
                &self.0
            }

            /// The entries as strings (the shape records store).
            pub fn to_strings(&self) -> Vec<String> {
                self.0.iter().map(|v| v.as_str().to_string()).collect()
            }

            /// The entries as owned strings.
            pub fn into_strings(self) -> Vec<String> {
                self.0.into_iter().map(String::from).collect()
            }
        }

        impl Described for $name {
            fn shape() -> Shape {
                list($max, $item::shape())
            }
        }
    };
}

list_value!(
    /// A key's tags: at most 20.
    Tags,
    Tag,
    20,
    "too_many_tags",
    "tags"
);

text_value!(
    /// A permission string: a catalog permission (`api_keys.view`) or an application
    /// scope (`billing:read`), `^[a-z0-9][a-z0-9_.:-]{0,63}$`.
    Scope
);

impl Scope {
    /// The pattern every scope matches.
    pub const PATTERN: &'static str = "^[a-z0-9][a-z0-9_.:-]{0,63}$";

    /// Parses a permission string; `param` names the field.
    pub fn parse(input: &str, param: &str) -> Result<Self, DomainError> {
        crate::permission::validate_scope(input, param).map(|()| Self(input.to_string()))
    }
}

impl Described for Scope {
    fn shape() -> Shape {
        text(1, 64, Some(Self::PATTERN.to_string()))
    }
}

list_value!(
    /// A key's extra permissions: at most 100.
    Scopes,
    Scope,
    100,
    "too_many_items",
    "entries"
);

list_value!(
    /// A role's permissions: at most 200.
    RolePermissions,
    Scope,
    200,
    "too_many_permissions",
    "entries"
);

text_value!(
    /// A role's name: `^[a-z0-9][a-z0-9_.-]{0,63}$`.
    RoleName
);

impl RoleName {
    /// The pattern every role name matches.
    pub const PATTERN: &'static str = "^[a-z0-9][a-z0-9_.-]{0,63}$";

    /// Parses a role name; `param` names the field.
    pub fn parse(input: &str, param: &str) -> Result<Self, DomainError> {
        crate::role::validate_name(input, param).map(|()| Self(input.to_string()))
    }
}

impl Described for RoleName {
    fn shape() -> Shape {
        text(1, 64, Some(Self::PATTERN.to_string()))
    }
}

list_value!(
    /// The roles given to a key, service account or user: at most 20.
    RoleNames,
    RoleName,
    20,
    "too_many_items",
    "entries"
);

text_value!(
    /// An email address: trimmed and lowercased, one `@` with text on both sides, at
    /// most 254 characters.
    Email
);

impl Email {
    /// Parses an email address; `param` names the field.
    pub fn parse(input: &str, param: &str) -> Result<Self, DomainError> {
        validate::email(input, param).map(Self)
    }
}

impl Described for Email {
    fn shape() -> Shape {
        let bad = format!("{SPACE}{CONTROL}@");
        text(
            3,
            validate::MAX_EMAIL,
            Some(format!(
                "^[{SPACE}]*[^{bad}]+@([^{bad}.]|[^{bad}.][^{bad}]*[^{bad}.])[{SPACE}]*$"
            )),
        )
    }
}

text_value!(
    /// The id of a customer or system in the caller's world: 1–255 characters, no
    /// control characters, kept as given.
    ExternalId
);

impl ExternalId {
    /// Parses an external id; `param` names the field.
    pub fn parse(input: &str, param: &str) -> Result<Self, DomainError> {
        crate::api_key::validate_external_id(input, param).map(Self)
    }
}

impl Described for ExternalId {
    fn shape() -> Shape {
        text(
            1,
            crate::api_key::MAX_EXTERNAL_ID,
            Some(format!("^[^{CONTROL}]+$")),
        )
    }
}

text_value!(
    /// The prefix of an organization's keys: `^[a-z][a-z0-9]{1,15}$`.
    KeyPrefix
);

impl KeyPrefix {
    /// The pattern every prefix matches.
    pub const PATTERN: &'static str = "^[a-z][a-z0-9]{1,15}$";

    /// Parses a key prefix.
    pub fn parse(input: &str, _param: &str) -> Result<Self, DomainError> {
        crate::organization::validate_key_prefix(input).map(|()| Self(input.to_string()))
    }
}

impl Described for KeyPrefix {
    fn shape() -> Shape {
        text(2, 16, Some(Self::PATTERN.to_string()))
    }
}

text_value!(
    /// A role's `key_name_pattern`: a regular expression of 1–200 characters that
    /// compiles.
    KeyNamePattern
);

impl KeyNamePattern {
    /// Parses a pattern; `param` names the field.
    pub fn parse(input: &str, param: &str) -> Result<Self, DomainError> {
        crate::role::validate_pattern(input, param).map(|_| Self(input.to_string()))
    }
}

impl Described for KeyNamePattern {
    fn shape() -> Shape {
        Shape::Text {
            min_length: 1,
            max_length: 200,
            pattern: Some(format!("^[^{CONTROL}]+$")),
            format: None,
        }
    }
}

/// A key's allowed client networks: at most [`crate::api_key::MAX_CIDRS`], each an IP
/// network (`10.0.0.0/8`, `2001:db8::/32`) or a single address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(Vec<ipnet::IpNet>);

impl Networks {
    /// The pattern of one entry: an IPv4 or IPv6 address, optionally with a prefix.
    pub fn entry_pattern() -> String {
        let v4 = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}(/(3[0-2]|[12]?[0-9]))?";
        let h = "[0-9a-fA-F]{1,4}";
        let v6 = format!(
            "(({h}:){{7}}{h}|({h}:){{1,7}}:|({h}:){{1,6}}:{h}|({h}:){{1,5}}(:{h}){{1,2}}|({h}:){{1,4}}(:{h}){{1,3}}|({h}:){{1,3}}(:{h}){{1,4}}|({h}:){{1,2}}(:{h}){{1,5}}|{h}:(:{h}){{1,6}}|:((:{h}){{1,7}}|:))(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?"
        );
        format!("^({v4}|{v6})$")
    }

    /// Parses the list; `param` names the field.
    pub fn parse(input: &[String], param: &str) -> Result<Self, DomainError> {
        crate::api_key::parse_cidrs(input, param).map(Self)
    }

    /// The networks.
    pub fn items(&self) -> &[ipnet::IpNet] {
        &self.0
    }

    /// The networks, owned.
    pub fn into_inner(self) -> Vec<ipnet::IpNet> {
        self.0
    }
}

impl Described for Networks {
    fn shape() -> Shape {
        list(
            crate::api_key::MAX_CIDRS,
            text(2, 43, Some(Self::entry_pattern())),
        )
    }
}

impl Described for crate::user::UserStatus {
    fn shape() -> Shape {
        Shape::OneOf(&["active", "inactive"])
    }
}

impl Described for crate::usage_control::CreditOp {
    fn shape() -> Shape {
        Shape::OneOf(&["set", "increment", "decrement"])
    }
}

impl Described for crate::usage_control::RefillInterval {
    fn shape() -> Shape {
        Shape::OneOf(&["daily", "monthly"])
    }
}

impl Described for crate::webhook_event::WebhookEvent {
    fn shape() -> Shape {
        Shape::OneOf(crate::webhook_event::WebhookEvent::NAMES)
    }
}

/// The events a webhook endpoint receives: 1 to all of them, each an event name, none
/// twice (a repeat is dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEventList(Vec<String>);

impl WebhookEventList {
    /// Parses the list; errors name `events`.
    pub fn parse(events: &[String]) -> Result<Self, DomainError> {
        use crate::webhook_event::WebhookEvent;
        if events.is_empty() {
            return Err(DomainError::invalid(
                "events_required",
                "events",
                "events must name at least one event type",
            ));
        }
        let events = validate::distinct_list(events, "events", WebhookEvent::ALL.len())?;
        for (i, e) in events.iter().enumerate() {
            if WebhookEvent::parse(e).is_none() {
                return Err(DomainError::invalid(
                    "unknown_event",
                    format!("events[{i}]"),
                    format!("{e:?} is not an event type; see the API documentation for the list"),
                ));
            }
        }
        Ok(Self(events))
    }

    /// The event names.
    pub fn into_strings(self) -> Vec<String> {
        self.0
    }
}

impl Described for WebhookEventList {
    fn shape() -> Shape {
        use crate::webhook_event::WebhookEvent;
        Shape::List {
            max_items: WebhookEvent::ALL.len(),
            min_items: 1,
            item: Box::new(WebhookEvent::shape()),
        }
    }
}

/// The shape of a webhook URL: `http://` or `https://`, at most 2048 characters.
pub struct WebhookUrlShape;

impl Described for WebhookUrlShape {
    fn shape() -> Shape {
        text(
            8,
            2048,
            Some("^[Hh][Tt][Tt][Pp][Ss]?://[^\\s/?#]+([/?#][^\\s]*)?$".to_string()),
        )
    }
}

/// The mistakes found while parsing several fields, so that a form can show them all
/// at once (an API answer names the first).
#[derive(Debug, Default)]
pub struct Errors(Vec<DomainError>);

impl Errors {
    /// The value, or `None` with its error recorded.
    pub fn take<T>(&mut self, r: Result<T, DomainError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    /// Every error recorded, in the order of the fields.
    pub fn into_vec(self) -> Vec<DomainError> {
        self.0
    }
}

/// A key's or service account's rate limits: at most
/// [`crate::usage_control::MAX_LIMITS`], valid windows, distinct names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits(Vec<crate::usage_control::NamedLimit>);

impl Limits {
    /// Parses the old single `ratelimit` (the limit named `default`, checked under
    /// that name) and the named `ratelimits` into one list.
    pub fn parse(
        default: Option<crate::api_key::RateLimit>,
        named: Option<Vec<crate::usage_control::NamedLimit>>,
    ) -> Result<Self, DomainError> {
        use crate::usage_control as uc;
        if let Some(rl) = &default {
            uc::validate_window(rl.limit, rl.duration_ms, "ratelimit")?;
        }
        let merged = uc::merge_default(default, named);
        uc::validate_limits(&merged, "ratelimits")?;
        Ok(Self(merged))
    }

    /// The limits.
    pub fn items(&self) -> &[crate::usage_control::NamedLimit] {
        &self.0
    }

    /// The limits, owned.
    pub fn into_inner(self) -> Vec<crate::usage_control::NamedLimit> {
        self.0
    }
}

/// A change to a key's limits: a new `default` limit (or its removal) and a new list
/// of named limits (or none), each checked on its own; [`LimitsPatch::apply`] checks
/// the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsPatch {
    default: Option<Option<crate::api_key::RateLimit>>,
    named: Option<Option<Vec<crate::usage_control::NamedLimit>>>,
}

impl LimitsPatch {
    /// Parses the two fields of a patch.
    pub fn parse(
        default: Option<Option<crate::api_key::RateLimit>>,
        named: Option<Option<Vec<crate::usage_control::NamedLimit>>>,
    ) -> Result<Self, DomainError> {
        use crate::usage_control as uc;
        if let Some(Some(rl)) = &default {
            uc::validate_window(rl.limit, rl.duration_ms, "ratelimit")?;
        }
        if let Some(Some(l)) = &named {
            uc::validate_limits(l, "ratelimits")?;
        }
        Ok(Self { default, named })
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.named.is_none()
    }

    /// The limits after the patch, from `current`.
    pub fn apply(
        self,
        current: &[crate::usage_control::NamedLimit],
    ) -> Result<Limits, DomainError> {
        use crate::usage_control as uc;
        let mut limits = match self.named {
            Some(l) => l.unwrap_or_default(),
            None => current.to_vec(),
        };
        match self.default {
            Some(Some(rl)) => limits = uc::merge_default(Some(rl), Some(limits)),
            Some(None) => limits.retain(|l| l.name != uc::DEFAULT_LIMIT),
            None => {}
        }
        uc::validate_limits(&limits, "ratelimits")?;
        Ok(Limits(limits))
    }
}

/// A credit balance with its refill and low threshold, every number in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditSettings(crate::usage_control::Credits);

impl CreditSettings {
    /// Parses a credits object.
    pub fn parse(c: crate::usage_control::Credits) -> Result<Self, DomainError> {
        crate::usage_control::validate_credits(&c).map(|()| Self(c))
    }

    /// Parses the `credits` object and the old `remaining` field, which name the same
    /// balance and must agree when both are given.
    pub fn resolve(
        credits: Option<crate::usage_control::Credits>,
        remaining: Option<i64>,
    ) -> Result<Option<Self>, DomainError> {
        if let (Some(c), Some(n)) = (credits, remaining) {
            if c.remaining != n {
                return Err(DomainError::invalid(
                    "invalid_credits",
                    "remaining",
                    "remaining and credits.remaining are the same balance: give one, or the same number",
                ));
            }
        }
        if let Some(n) = remaining {
            crate::usage_control::validate_balance(n, "remaining")?;
        }
        credits
            .or(remaining.map(|remaining| crate::usage_control::Credits {
                remaining,
                refill: None,
                low_threshold: None,
            }))
            .map(Self::parse)
            .transpose()
    }

    /// The credits.
    pub fn get(self) -> crate::usage_control::Credits {
        self.0
    }
}

/// A balance: 0 to [`crate::usage_control::MAX_CREDITS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance(i64);

impl Balance {
    /// Parses a balance; `param` names the field.
    pub fn parse(n: i64, param: &str) -> Result<Self, DomainError> {
        crate::usage_control::validate_balance(n, param).map(|()| Self(n))
    }

    /// The number.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A key's metadata: a JSON object of at most 4 KiB.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata(serde_json::Value);

impl Metadata {
    /// Parses metadata; nothing is the empty object.
    pub fn parse(v: Option<serde_json::Value>) -> Result<Self, DomainError> {
        let v = v.unwrap_or_else(|| serde_json::json!({}));
        crate::api_key::validate_metadata(&v).map(|()| Self(v))
    }

    /// The object.
    pub fn into_inner(self) -> serde_json::Value {
        self.0
    }
}

impl Default for Metadata {
    fn default() -> Self {
        Self(serde_json::json!({}))
    }
}

/// When a new key expires: never, at an instant, or some days after it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiry {
    /// It never expires.
    #[default]
    Never,
    /// At this instant.
    At(crate::time::Timestamp),
    /// This many days (1–3650) after creation.
    InDays(i64),
}

impl Expiry {
    /// Parses `expires_at` and `expires_in_days` (at most one).
    pub fn parse(
        at: Option<crate::time::Timestamp>,
        days: Option<i64>,
    ) -> Result<Self, DomainError> {
        match (at, days) {
            (Some(_), Some(_)) => Err(DomainError::invalid(
                "conflicting_expiry",
                "expires_in_days",
                "give either expires_at or expires_in_days, not both",
            )),
            (Some(at), None) => Ok(Expiry::At(at)),
            (None, Some(d)) if (1..=3650).contains(&d) => Ok(Expiry::InDays(d)),
            (None, Some(_)) => Err(DomainError::invalid(
                "invalid_expires_in_days",
                "expires_in_days",
                "expires_in_days must be between 1 and 3650",
            )),
            (None, None) => Ok(Expiry::Never),
        }
    }

    /// The expiry instant for a key made at `now`; an instant that is not in the
    /// future is refused unless `past_allowed` (an imported key may arrive expired).
    pub fn resolve(
        self,
        now: crate::time::Timestamp,
        past_allowed: bool,
    ) -> Result<Option<crate::time::Timestamp>, DomainError> {
        match self {
            Expiry::Never => Ok(None),
            Expiry::At(at) if past_allowed => Ok(Some(at)),
            Expiry::At(at) => crate::api_key::validate_future(at, now, "expires_at").map(Some),
            Expiry::InDays(d) => Ok(Some(now + chrono::Duration::days(d))),
        }
    }
}

/// How long a replaced secret keeps verifying: 0 to 7 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GracePeriod(chrono::Duration);

impl GracePeriod {
    /// Parses a number of seconds.
    pub fn parse(seconds: i64) -> Result<Self, DomainError> {
        crate::api_key::validate_grace(seconds).map(Self)
    }

    /// The period.
    pub fn get(self) -> chrono::Duration {
        self.0
    }
}

/// The shape of a resource id.
pub struct IdShape;

impl Described for IdShape {
    fn shape() -> Shape {
        text(26, 26, Some("^[0-7][0-9a-hjkmnp-tv-z]{25}$".to_string()))
    }
}

/// A new password: 12–1024 characters, held as a [`crate::key_format::Secret`] (its
/// `Debug` does not show it).
#[derive(Debug, Clone)]
pub struct NewPassword(crate::key_format::Secret);

impl NewPassword {
    /// Parses a new password; `param` names the field.
    pub fn parse(input: &str, param: &str) -> Result<Self, DomainError> {
        validate::new_password(input, param)
            .map(|()| Self(crate::key_format::Secret::new(input.to_string())))
    }

    /// The password, for hashing.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// The shape of a new password: 12–1024 characters.
pub struct NewPasswordShape;

impl Described for NewPasswordShape {
    fn shape() -> Shape {
        text(12, 1024, None)
    }
}

/// The shape of a limit name (`^[a-z0-9][a-z0-9_.:-]{0,63}$`).
pub struct LimitNameShape;

impl Described for LimitNameShape {
    fn shape() -> Shape {
        text(1, 64, Some(Scope::PATTERN.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern_of(s: Shape) -> regex::Regex {
        match s {
            Shape::Text {
                pattern: Some(p), ..
            } => regex::Regex::new(&p).unwrap(),
            _ => panic!("no pattern"),
        }
    }

    /// Rust's regex crate reads `\uXXXX` as the ECMA and Python dialects do, so the
    /// patterns can be checked against the parsers here.
    #[test]
    fn patterns_agree_with_the_parsers() {
        let name = pattern_of(KeyName::shape());
        for s in [
            "ci deploy",
            "  padded  ",
            "café ☕ 東京",
            "x",
            "a b",
            "",
            "   ",
            "a\u{202E}b",
            "a\u{200B}",
            "x\u{E0041}",
            "a\0b",
            "\nx\n",
            "a\tb",
        ] {
            assert_eq!(name.is_match(s), KeyName::parse(s, "name").is_ok(), "{s:?}");
        }
        let email = pattern_of(Email::shape());
        for s in [
            "a@b.c", " A@B.C ", "a@b", "@b", "a@", "a@.b", "a@b.", "a@@b", "a b@c", "a@b@c",
            "ü@ö.de",
        ] {
            assert_eq!(email.is_match(s), Email::parse(s, "email").is_ok(), "{s:?}");
        }
        let desc = pattern_of(Description::shape());
        for s in ["", "two\nlines\ttab", "bell\u{7}", "nul\0"] {
            assert_eq!(
                desc.is_match(s),
                Description::parse(s, "description").is_ok(),
                "{s:?}"
            );
        }
        let role = pattern_of(RoleName::shape());
        for s in ["ci", "a.b-c_d", "Ci", "-x", ""] {
            assert_eq!(
                role.is_match(s),
                RoleName::parse(s, "name").is_ok(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn network_pattern_agrees_with_the_parser() {
        let re = regex::Regex::new(&Networks::entry_pattern()).unwrap();
        for s in [
            "10.0.0.0/8",
            "192.168.1.7",
            "0.0.0.0/0",
            "2001:db8::/32",
            "::1",
            "::/0",
            "fe80::1:2",
            "1.2.3",
            "256.1.1.1",
            "10.0.0.0/33",
            "2001:db8::/129",
            " 10.0.0.1",
            "x",
        ] {
            assert_eq!(
                re.is_match(s),
                Networks::parse(&[s.to_string()], "allowed_cidrs").is_ok(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn enum_shapes_name_what_serde_reads() {
        use crate::usage_control::{CreditOp, RefillInterval};
        let names = |s: Shape| match s {
            Shape::OneOf(v) => v,
            _ => panic!("not an enum"),
        };
        for n in names(CreditOp::shape()) {
            serde_json::from_value::<CreditOp>(serde_json::json!(n)).unwrap();
        }
        for n in names(crate::user::UserStatus::shape()) {
            serde_json::from_value::<crate::user::UserStatus>(serde_json::json!(n)).unwrap();
        }
        for n in names(RefillInterval::shape()) {
            serde_json::from_value::<RefillInterval>(serde_json::json!(n)).unwrap();
        }
        let events = names(crate::webhook_event::WebhookEvent::shape());
        let all: Vec<&str> = crate::webhook_event::WebhookEvent::ALL
            .iter()
            .map(|e| e.as_str())
            .collect();
        assert_eq!(events, all.as_slice());
    }

    #[test]
    fn expiry_is_one_of_two_fields_and_in_the_future() {
        use chrono::TimeZone;
        let now = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let past = now - chrono::Duration::days(1);
        assert!(Expiry::parse(Some(now), Some(3)).is_err());
        assert!(Expiry::parse(None, Some(0)).is_err());
        assert!(Expiry::parse(None, Some(3651)).is_err());
        assert_eq!(
            Expiry::parse(None, Some(2))
                .unwrap()
                .resolve(now, false)
                .unwrap(),
            Some(now + chrono::Duration::days(2))
        );
        assert!(Expiry::At(past).resolve(now, false).is_err());
        assert_eq!(Expiry::At(past).resolve(now, true).unwrap(), Some(past));
        assert_eq!(Expiry::Never.resolve(now, false).unwrap(), None);
    }

    #[test]
    fn limits_merge_the_default_and_a_patch_is_checked_against_the_result() {
        use crate::api_key::RateLimit;
        use crate::usage_control::NamedLimit;
        let named = |n: &str| NamedLimit {
            name: n.into(),
            limit: 10,
            duration_ms: 1000,
            auto_apply: true,
        };
        let rl = RateLimit {
            limit: 5,
            duration_ms: 60_000,
        };
        let l = Limits::parse(Some(rl), Some(vec![named("default"), named("burst")])).unwrap();
        let names: Vec<&str> = l.items().iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["default", "burst"]);
        assert_eq!(l.items()[0].limit, 5);
        assert!(Limits::parse(None, Some(vec![named("a"), named("a")])).is_err());
        let patch = LimitsPatch::parse(Some(None), None).unwrap();
        let after = patch.apply(l.items()).unwrap();
        assert_eq!(after.items().len(), 1);
        assert!(LimitsPatch::parse(
            Some(Some(RateLimit {
                limit: 0,
                duration_ms: 1000
            })),
            None
        )
        .is_err());
    }

    #[test]
    fn errors_are_collected_in_order() {
        let mut e = Errors::default();
        assert_eq!(
            e.take(KeyName::parse("ok", "name")).map(String::from),
            Some("ok".into())
        );
        assert!(e.take(KeyName::parse("", "a")).is_none());
        assert!(e.take(Tag::parse("", "b")).is_none());
        let params: Vec<Option<String>> = e
            .into_vec()
            .into_iter()
            .map(|e| match e {
                DomainError::Invalid { param, .. } => param,
                _ => None,
            })
            .collect();
        assert_eq!(params, [Some("a".to_string()), Some("b".to_string())]);
    }

    #[test]
    fn lists_drop_repeats_and_count() {
        let t = Tags::parse(&["a".into(), " a ".into(), "b".into()], "tags").unwrap();
        assert_eq!(t.to_strings(), ["a", "b"]);
        let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        assert!(Tags::parse(&many, "tags").is_err());
        let e = Scopes::parse(&["ok".into(), "Bad".into()], "scopes").unwrap_err();
        assert!(
            matches!(e, DomainError::Invalid { ref param, .. } if param.as_deref() == Some("scopes[1]"))
        );
    }
}
