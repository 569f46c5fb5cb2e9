//! Time as the domain sees it: UTC instants passed in by the caller.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// An instant in UTC.
pub type Timestamp = DateTime<Utc>;

/// Source of the current time. The server uses the system clock; tests inject one.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// Formats an instant as API.md wants: RFC 3339, UTC, `Z`, whole seconds.
pub fn rfc3339(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses an RFC 3339 timestamp given in request field `param` (any offset; kept in UTC).
pub fn parse_rfc3339(s: &str, param: &str) -> Result<Timestamp, crate::DomainError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            crate::DomainError::invalid(
                "invalid_timestamp",
                param,
                format!("{param} must be an RFC 3339 timestamp such as 2026-11-22T18:20:00Z"),
            )
        })
}

/// Milliseconds since the Unix epoch, the storage representation.
pub fn to_millis(t: &Timestamp) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`to_millis`]; out-of-range values clamp to the epoch.
pub fn from_millis(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Serde helpers that write timestamps in the API's format.
pub mod serde_rfc3339 {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as RFC 3339 with `Z`.
    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(t))
    }

    /// Accepts any RFC 3339 timestamp and converts it to UTC.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                serde::de::Error::custom(
                    "must be an RFC 3339 timestamp such as 2026-11-22T18:20:00Z",
                )
            })
    }

    /// The same for optional timestamps (`null` stays `None`).
    pub mod option {
        use super::*;

        /// Serializes `None` as `null`.
        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&rfc3339(t)),
                None => s.serialize_none(),
            }
        }

        /// Accepts `null` or an RFC 3339 timestamp.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            let s = Option::<String>::deserialize(d)?;
            match s {
                None => Ok(None),
                Some(s) => DateTime::parse_from_rfc3339(&s)
                    .map(|t| Some(t.with_timezone(&Utc)))
                    .map_err(|_| {
                        serde::de::Error::custom(
                            "must be an RFC 3339 timestamp such as 2026-11-22T18:20:00Z",
                        )
                    }),
            }
        }
    }
}
