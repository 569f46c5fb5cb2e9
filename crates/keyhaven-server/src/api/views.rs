//! JSON shapes of resources, as API.md defines them.

use keyhaven_core::organization::Organization;
use keyhaven_core::time::rfc3339;
use keyhaven_core::user::User;
use serde_json::{json, Value};

/// `{id, name, key_prefix, created_at, updated_at}`.
pub fn organization(o: &Organization) -> Value {
    json!({
        "id": o.id,
        "name": o.name,
        "key_prefix": o.key_prefix,
        "created_at": rfc3339(&o.created_at),
        "updated_at": rfc3339(&o.updated_at),
    })
}

/// `{id, email, display_name, roles, status, last_login_at, created_at, updated_at}`.
pub fn user(u: &User) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "display_name": u.display_name,
        "roles": u.roles,
        "status": u.status.as_str(),
        "last_login_at": u.last_login_at.as_ref().map(rfc3339),
        "created_at": rfc3339(&u.created_at),
        "updated_at": rfc3339(&u.updated_at),
    })
}
