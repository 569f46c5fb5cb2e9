//! The `changes` of an audit entry: `{field: {"from": old, "to": new}}` for each field
//! that actually changed. Secrets never go through here.

use serde::Serialize;
use serde_json::{json, Map, Value};

/// Collects changed fields.
#[derive(Default)]
pub struct Changes(Map<String, Value>);

impl Changes {
    /// Records `field` if `old != new`.
    pub fn field<T: Serialize + PartialEq + ?Sized>(&mut self, field: &str, old: &T, new: &T) {
        if old != new {
            self.0
                .insert(field.to_string(), json!({ "from": old, "to": new }));
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The JSON object.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}
