//! PATCH semantics: a field that is absent stays as it is; `null` clears it.

use serde::{Deserialize, Deserializer};

/// Deserializes a present field (even `null`) as `Some(value)`, so that
/// `Option<Option<T>>` tells "absent" (`None`) from "null" (`Some(None)`).
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
