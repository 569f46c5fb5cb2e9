//! The OpenAPI constraints of the fields the server parses into typed values
//! ([`keyhaven_core::value`]): each schema is built from the value's own [`Shape`], so
//! the document says exactly what the parser accepts.
//!
//! Body fields use these through `#[schema(schema_with = …)]`; query and path
//! parameters get theirs in [`constrain_parameters`], by name.

use keyhaven_core::value::{self, Described, Shape};
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::RefOr;

/// The schema of a shape; `nullable` also admits JSON `null`.
pub fn of_shape(shape: &Shape, nullable: bool) -> Schema {
    let with_null = |t: Type| {
        if nullable {
            SchemaType::from_iter([t, Type::Null])
        } else {
            SchemaType::Type(t)
        }
    };
    match shape {
        Shape::Text {
            min_length,
            max_length,
            pattern,
            format,
        } => Schema::Object(
            ObjectBuilder::new()
                .schema_type(with_null(Type::String))
                .min_length(Some(*min_length))
                .max_length(Some(*max_length))
                .pattern(pattern.clone())
                .format(format.map(|f| match f {
                    "date-time" => SchemaFormat::KnownFormat(KnownFormat::DateTime),
                    other => SchemaFormat::Custom(other.to_string()),
                }))
                .build(),
        ),
        Shape::List {
            max_items,
            min_items,
            item,
        } => Schema::Array(
            ArrayBuilder::new()
                .schema_type(with_null(Type::Array))
                .items(RefOr::T(of_shape(item, false)))
                .max_items(Some(*max_items))
                .min_items((*min_items > 0).then_some(*min_items))
                .build(),
        ),
        Shape::Integer { minimum, maximum } => Schema::Object(
            ObjectBuilder::new()
                .schema_type(with_null(Type::Integer))
                .minimum(Some(*minimum))
                .maximum(Some(*maximum))
                .build(),
        ),
        Shape::OneOf(values) => {
            let mut v: Vec<serde_json::Value> = values.iter().map(|s| (*s).into()).collect();
            if nullable {
                v.push(serde_json::Value::Null);
            }
            Schema::Object(
                ObjectBuilder::new()
                    .schema_type(with_null(Type::String))
                    .enum_values(Some(v))
                    .build(),
            )
        }
    }
}

/// The schema of a required value of type `T`.
pub fn value<T: Described>() -> Schema {
    of_shape(&T::shape(), false)
}

/// The schema of an optional value of type `T` that may also be `null`.
pub fn nullable<T: Described>() -> Schema {
    of_shape(&T::shape(), true)
}

/// A role's `key_name_pattern` field: a [`value::KeyNamePattern`], or an empty string
/// or `null` for none.
pub fn key_name_pattern_field() -> Schema {
    let mut shape = value::KeyNamePattern::shape();
    if let Shape::Text {
        min_length,
        pattern,
        ..
    } = &mut shape
    {
        *min_length = 0;
        *pattern = pattern.as_ref().map(|p| p.replace("]+$", "]*$"));
    }
    of_shape(&shape, true)
}

/// Every verification code, as analytics filter by them.
const CODES: [&str; keyhaven_service::verify::Code::ALL.len()] = {
    let mut out = [""; keyhaven_service::verify::Code::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = keyhaven_service::verify::Code::ALL[i].as_str();
        i += 1;
    }
    out
};

/// The shape of a query or path parameter, by name; `path` tells the operations whose
/// `status` differ apart. `None`: the parameter keeps what its annotation says.
fn parameter_shape(path: &str, name: &str) -> Option<Shape> {
    let text = |min_length, max_length, pattern: Option<&str>| Shape::Text {
        min_length,
        max_length,
        pattern: pattern.map(str::to_string),
        format: None,
    };
    Some(match name {
        "org"
        | "id"
        | "cred"
        | "owner_id"
        | "key_id"
        | "X-Keyhaven-Organization-Id"
        | "organization_id" => value::IdShape::shape(),
        "actor_id" | "target_id" | "action" => text(1, 200, Some("^[^\\x00-\\x1f\\x7f-\\x9f]+$")),
        "name" if path.contains("/roles/") => value::RoleName::shape(),
        "role" => value::RoleName::shape(),
        "tag" if path.ends_with("/api-keys") => value::Tag::shape(),
        "external_id" => value::ExternalId::shape(),
        "q" => text(1, 200, Some("^[^\\x00-\\x1f\\x7f-\\x9f]+$")),
        "cursor" => text(1, 512, Some("^[A-Za-z0-9_-]+$")),
        "status" if path.ends_with("/api-keys") => Shape::OneOf(&["active", "revoked", "expired"]),
        "status" if path.ends_with("/users") => Shape::OneOf(&["active", "inactive"]),
        "status" if path.ends_with("/service-accounts") => {
            Shape::OneOf(&["active", "suspended", "archived", "all"])
        }
        "outcome" => Shape::OneOf(&["success", "denied", "error"]),
        "code" if path.contains("/analytics/") => Shape::OneOf(&CODES),
        "expand[]" => Shape::OneOf(&["permissions"]),
        "group_by" => Shape::List {
            max_items: 4,
            min_items: 1,
            item: Box::new(Shape::OneOf(&["key", "code", "tag", "owner"])),
        },
        _ => return None,
    })
}

/// Marks every object schema a request body uses as closed (`additionalProperties:
/// false`): bodies refuse unknown fields.
pub fn close_request_bodies(doc: &mut utoipa::openapi::OpenApi) {
    use std::collections::BTreeSet;
    use utoipa::openapi::schema::AdditionalProperties;
    fn refs_in(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                if let Some(serde_json::Value::String(r)) = o.get("$ref") {
                    if let Some(name) = r.strip_prefix("#/components/schemas/") {
                        out.push(name.to_string());
                    }
                }
                o.values().for_each(|v| refs_in(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs_in(v, out)),
            _ => {}
        }
    }
    let mut todo = Vec::new();
    for item in doc.paths.paths.values() {
        for op in [&item.post, &item.put, &item.patch].into_iter().flatten() {
            if let Some(body) = &op.request_body {
                if let Ok(v) = serde_json::to_value(body) {
                    refs_in(&v, &mut todo);
                }
            }
        }
    }
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let mut seen = BTreeSet::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(RefOr::T(schema)) = components.schemas.get_mut(&name) else {
            continue;
        };
        if let Ok(v) = serde_json::to_value(&*schema) {
            refs_in(&v, &mut todo);
        }
        if let Schema::Object(o) = schema {
            if !o.properties.is_empty() && o.additional_properties.is_none() {
                o.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
    }
}

/// Puts the constraints of every parameter the server parses into a typed value into
/// the document, and marks query parameters as never empty (an empty value is refused
/// like any other invalid one).
pub fn constrain_parameters(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in ops.into_iter().flatten() {
            for p in op.parameters.iter_mut().flatten() {
                if let Some(shape) = parameter_shape(path, &p.name) {
                    p.schema = Some(RefOr::T(of_shape(&shape, false)));
                } else if let (ParameterIn::Query, Some(RefOr::T(Schema::Object(o)))) =
                    (&p.parameter_in, p.schema.as_mut())
                {
                    // A query string value is never empty.
                    if o.schema_type == SchemaType::Type(Type::String)
                        || o.schema_type == SchemaType::from_iter([Type::String, Type::Null])
                    {
                        o.schema_type = SchemaType::Type(Type::String);
                        if o.min_length.is_none() {
                            o.min_length = Some(1);
                        }
                    }
                }
            }
        }
    }
}
