//! Path and query parameters: the organization scope, ids, pagination and filters,
//! each refused with the contract's error naming the parameter.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;
use keyhaven_store::Page;

use super::error::ApiError;
use crate::app::AppState;

/// The query string as name/value pairs, in order.
pub struct QueryParams(pub Vec<(String, String)>);

impl FromRequestParts<AppState> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or_default();
        Ok(QueryParams(
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

impl QueryParams {
    /// Refuses parameters not in `allowed` (typos are not silently ignored).
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        for (k, _) in &self.0 {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_request(
                    "unknown_parameter",
                    format!("unknown query parameter {k}"),
                    Some(k),
                ));
            }
        }
        Ok(())
    }

    /// The single value of `name`; repeated or empty → 400 (an empty value is not
    /// a value: `?status=` is refused, not read as "no filter").
    pub fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut found = self.0.iter().filter(|(k, _)| k == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(ApiError::bad_request(
                "repeated_parameter",
                format!("{name} may be given only once"),
                Some(name),
            ));
        }
        match first {
            Some((_, v)) if v.is_empty() => Err(empty(name)),
            other => Ok(other.map(|(_, v)| v.as_str())),
        }
    }

    /// Every value of a repeatable parameter; an empty one → 400.
    pub fn all(&self, name: &str) -> Result<Vec<&str>, ApiError> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| {
                if v.is_empty() {
                    Err(empty(name))
                } else {
                    Ok(v.as_str())
                }
            })
            .collect()
    }

    /// `limit` (1–100, default 20) and `cursor`.
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = self.page_limit_only()?.limit;
        let cursor = match self.get("cursor")? {
            None => None,
            Some(c) => Some(decode_cursor(c)?),
        };
        Ok(Page { limit, cursor })
    }

    /// `limit` (1–100, default 20) and a `cursor` holding a role name (role listings
    /// go by name, not id).
    pub fn page_by_name(&self) -> Result<Page, ApiError> {
        let limit = self.page_limit_only()?.limit;
        let cursor = match self.get("cursor")? {
            None => None,
            Some(c) => Some(decode_name_cursor(c)?),
        };
        Ok(Page { limit, cursor })
    }

    fn page_limit_only(&self) -> Result<Page, ApiError> {
        let limit = match self.get("limit")? {
            None => 20,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_limit",
                        "limit must be a number from 1 to 100",
                        Some("limit"),
                    )
                })?,
        };
        Ok(Page {
            limit,
            cursor: None,
        })
    }

    /// An RFC 3339 timestamp parameter.
    pub fn time(&self, name: &str) -> Result<Option<Timestamp>, ApiError> {
        match self.get(name)? {
            None => Ok(None),
            Some(v) => chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| Some(t.with_timezone(&chrono::Utc)))
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_timestamp",
                        format!(
                            "{name} must be an RFC 3339 timestamp such as 2026-11-22T18:20:00Z"
                        ),
                        Some(name),
                    )
                }),
        }
    }

    /// The value of `name` parsed into its typed value (`RoleName::parse`,
    /// `Id::parse`…), as a string for the store's filters.
    pub fn parsed<T: Into<String>>(
        &self,
        name: &str,
        parse: impl Fn(&str, &str) -> Result<T, keyhaven_core::DomainError>,
    ) -> Result<Option<String>, ApiError> {
        Ok(self
            .get(name)?
            .map(|v| parse(v, name))
            .transpose()?
            .map(Into::into))
    }

    /// A bounded free-text parameter (≤ 200 characters, no control characters).
    pub fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name)? {
            Some(v) if v.chars().count() > 200 => Err(ApiError::bad_request(
                "parameter_too_long",
                format!("{name} must be at most 200 characters"),
                Some(name),
            )),
            Some(v) => {
                keyhaven_core::validate::no_control_chars(v, name)?;
                Ok(Some(v.to_string()))
            }
            None => Ok(None),
        }
    }

    /// Whether `expand[]=permissions` was asked for.
    pub fn expand_permissions(&self) -> Result<bool, ApiError> {
        let mut want = false;
        for v in self.all("expand[]")?.into_iter().chain(self.all("expand")?) {
            if v == "permissions" {
                want = true;
            } else {
                return Err(ApiError::bad_request(
                    "invalid_expand",
                    format!("cannot expand {v:?}; the only expansion is permissions"),
                    Some("expand[]"),
                ));
            }
        }
        Ok(want)
    }
}

/// The opaque cursor for a listing's next page.
/// The error for a parameter given without a value.
fn empty(name: &str) -> ApiError {
    ApiError::bad_request(
        "empty_parameter",
        format!("{name} must not be empty; leave the parameter out instead"),
        Some(name),
    )
}

/// Encodes a page cursor.
pub fn encode_cursor(id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(c: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_cursor",
            "cursor is not one this API returned",
            Some("cursor"),
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad())?;
    let s = String::from_utf8(bytes).map_err(|_| bad())?;
    Id::parse(&s, "cursor").map_err(|_| bad())?;
    Ok(s)
}

fn decode_name_cursor(c: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_cursor",
            "cursor is not one this API returned",
            Some("cursor"),
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad())?;
    let s = String::from_utf8(bytes).map_err(|_| bad())?;
    keyhaven_core::role::validate_name(&s, "cursor").map_err(|_| bad())?;
    Ok(s)
}

/// Parses a resource id from the path; malformed → 404 like an unknown id.
pub fn path_id(s: &str, what: &str) -> Result<Id, ApiError> {
    Id::parse(s, "id").map_err(|_| ApiError::not_found(what))
}

/// Path parameters whose rejection is the contract's error (404: no such resource).
pub struct PathParams<T>(pub T);

impl<T> FromRequestParts<AppState> for PathParams<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|_| ApiError::not_found("resource"))
    }
}
