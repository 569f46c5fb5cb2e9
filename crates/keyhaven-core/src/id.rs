//! Resource ids: 26 lowercase characters, URL- and DNS-safe, time-sortable.
//!
//! An id is a ULID (48 bits of milliseconds, 80 random bits) written in Crockford's
//! base32 in lowercase, so ids sort by creation time as strings do.

use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A 26-character lowercase ULID.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Id(String);

impl Id {
    /// Makes a new id for the instant `unix_ms`, with 80 bits from `rng`.
    pub fn generate(unix_ms: i64, rng: &mut impl RngCore) -> Self {
        let mut random = [0u8; 10];
        rng.fill_bytes(&mut random);
        let mut r: u128 = 0;
        for b in random {
            r = (r << 8) | u128::from(b);
        }
        let ms = u64::try_from(unix_ms.max(0)).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
        Id(ulid::Ulid::from_parts(ms, r)
            .to_string()
            .to_ascii_lowercase())
    }

    /// Parses an id from user input; `param` names the field for the error.
    pub fn parse(input: &str, param: &str) -> Result<Self, DomainError> {
        let ok = input.len() == 26
            && input.bytes().all(|b| CROCKFORD.contains(&b))
            // The first character carries only 3 bits of the 128-bit value.
            && input.as_bytes()[0] <= b'7';
        if ok {
            Ok(Id(input.to_string()))
        } else {
            Err(DomainError::invalid(
                "invalid_id",
                param,
                format!("{param} must be a 26-character lowercase id"),
            ))
        }
    }

    /// Wraps a string read back from storage (already valid by construction).
    pub fn from_trusted(s: String) -> Self {
        Id(s)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Id {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Id::parse(&s, "id")
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ids_are_26_lowercase_and_sort_by_time() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = Id::generate(1_700_000_000_000, &mut rng);
        let b = Id::generate(1_700_000_000_001, &mut rng);
        assert_eq!(a.as_str().len(), 26);
        assert!(a.as_str().bytes().all(|c| !c.is_ascii_uppercase()));
        assert!(a < b);
        assert_eq!(Id::parse(a.as_str(), "id").unwrap(), a);
    }

    #[test]
    fn parse_rejects_bad_ids() {
        for bad in [
            "",
            "abc",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "01arz3ndektsv4rrffq69g5fa!",
            "81arz3ndektsv4rrffq69g5fav",
            "01arz3ndektsv4rrffq69g5favx",
        ] {
            assert!(Id::parse(bad, "id").is_err(), "{bad}");
        }
        assert!(Id::parse("01arz3ndektsv4rrffq69g5fav", "id").is_ok());
    }
}
