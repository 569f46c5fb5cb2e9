//! The contract's error object, produced in one place.
//!
//! Handlers return [`ApiError`]. Its response carries the error's fields in an extension;
//! the request middleware (`app::request_context`) renders the final JSON with the
//! request id, so no handler builds error JSON by hand.

use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyhaven_core::DomainError;
use keyhaven_store::StoreError;
use serde::de::DeserializeOwned;

use keyhaven_service::ServiceError;

/// `Retry-After` when the database is unavailable.
pub const DATABASE_RETRY_SECS: u64 = 2;

/// The fields of the error object, minus the request id.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    /// `invalid_request`, `authentication_required`, …
    pub kind: &'static str,
    /// Machine-readable code.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// The parameter at fault.
    pub param: Option<String>,
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The error object's fields.
    pub info: ErrorInfo,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// 414 `uri_too_long`: the path and query are over [`crate::app::MAX_URI`].
    pub fn uri_too_long() -> Self {
        ApiError::new(
            StatusCode::URI_TOO_LONG,
            "invalid_request",
            "uri_too_long",
            "the path and query must be at most 16 KiB together",
            None,
        )
    }

    /// 413 `body_too_large`: the request body is over the route's limit.
    pub fn too_large() -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "body_too_large",
            "the request body is too large",
            None,
        )
    }

    /// A new error.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &str,
        message: impl Into<String>,
        param: Option<&str>,
    ) -> Self {
        ApiError {
            status,
            info: ErrorInfo {
                kind,
                code: code.to_string(),
                message: message.into(),
                param: param.map(str::to_string),
            },
            retry_after: None,
        }
    }

    /// 400 for a bad parameter.
    pub fn bad_request(code: &str, message: impl Into<String>, param: Option<&str>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            code,
            message,
            param,
        )
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "not_found",
            format!("no such {what}"),
            None,
        )
    }

    /// 401.
    pub fn unauthenticated(message: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_required",
            "authentication_required",
            message,
            None,
        )
    }

    /// 503 `database_unavailable` with `Retry-After`: the database is out of reach (an
    /// outage, logged as one: `why` is the driver's reason).
    pub fn unavailable(why: &str) -> Self {
        tracing::warn!(reason = %why, "database unavailable; answering 503");
        ApiError {
            retry_after: Some(DATABASE_RETRY_SECS),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "database_unavailable",
                "the database is unavailable right now; try again shortly",
                None,
            )
        }
    }

    /// 500 with nothing internal in the message.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal",
            "something went wrong on our side; the request id lets an operator find the details",
            None,
        )
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid {
                code,
                param,
                message,
            } => ApiError::bad_request(code, message, param.as_deref()),
            DomainError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", code, message, None)
            }
            DomainError::PermissionDenied { permission } => ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_denied",
                "permission_denied",
                format!("this needs the {permission} permission"),
                None,
            ),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Domain(d) => d.into(),
            ServiceError::NotFound(what) => ApiError::not_found(what),
            ServiceError::Unauthenticated(m) => ApiError::unauthenticated(m),
            ServiceError::RateLimited(secs) => ApiError {
                retry_after: Some(secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too_many_attempts",
                    "too many failed sign-ins for this email or from this address; try again later",
                    None,
                )
            },
            ServiceError::Busy(secs) => ApiError {
                retry_after: Some(secs),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "busy",
                    "too many sign-ins are being checked right now; try again shortly",
                    None,
                )
            },
            ServiceError::Store(StoreError::Duplicate(what)) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "duplicate",
                format!("the {what} is already taken"),
                None,
            ),
            ServiceError::Store(StoreError::Unavailable(why)) => ApiError::unavailable(&why),
            ServiceError::Store(e) => {
                tracing::error!(error = %e, "storage error");
                ApiError::internal()
            }
            ServiceError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res.extensions_mut().insert(self.info);
        res
    }
}

/// Renders the error object with the request id.
pub fn render(info: &ErrorInfo, request_id: &str) -> serde_json::Value {
    serde_json::json!({
        "error": {
            "type": info.kind,
            "code": info.code,
            "message": info.message,
            "param": info.param,
            "request_id": request_id,
        }
    })
}

/// A JSON body extractor whose every rejection is the contract's error:
/// wrong content type → 415, too large → 413, not JSON → 400, unknown field → 400
/// `unknown_field`, wrong type → 400 naming the parameter.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        parse_json_owned(&bytes).map(Json)
    }
}

/// The raw bytes of a JSON body, with [`Json`]'s content-type and size checks, for
/// handlers that parse into a type borrowing from the body (see [`parse_json`]).
pub struct JsonBytes(pub axum::body::Bytes);

impl<S> FromRequest<S> for JsonBytes
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().as_bytes();
                v.eq_ignore_ascii_case(b"application/json")
                    || (v.len() > 17
                        && v[..12].eq_ignore_ascii_case(b"application/")
                        && v[v.len() - 5..].eq_ignore_ascii_case(b"+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
                None,
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large()
                } else {
                    ApiError::bad_request(
                        "invalid_body",
                        "the request body could not be read",
                        None,
                    )
                }
            })?;
        Ok(JsonBytes(bytes))
    }
}

/// The body with every number that is a whole number written as a float (`462.0`,
/// `1e3`) rewritten as an integer — JSON Schema counts them as integers — or `None` when
/// there is none (or the body is not JSON). Only a body that failed to parse is looked
/// at again this way.
pub fn integral_floats(bytes: &[u8]) -> Option<Vec<u8>> {
    fn walk(v: &mut serde_json::Value) -> bool {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    *v = serde_json::Value::from(f as i64);
                    true
                }
                _ => false,
            },
            // Every element is walked (no short circuit).
            serde_json::Value::Array(a) => a.iter_mut().map(walk).filter(|&c| c).count() > 0,
            serde_json::Value::Object(o) => o.values_mut().map(walk).filter(|&c| c).count() > 0,
            _ => false,
        }
    }
    let mut v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if walk(&mut v) {
        serde_json::to_vec(&v).ok()
    } else {
        None
    }
}

/// [`parse_json`] for a type that owns its data, reading whole numbers written as
/// floats as integers.
pub fn parse_json_owned<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match parse_json(bytes) {
        Ok(v) => Ok(v),
        Err(e) => match integral_floats(bytes) {
            Some(n) => parse_json(&n),
            None => Err(e),
        },
    }
}

/// Parses a JSON body with the contract's errors.
pub fn parse_json<'de, T: serde::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, ApiError> {
    // Every body is an object: serde would also fill a struct from an array of its
    // fields in order, skipping the unknown-field check.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "the body has the wrong shape: it must be a JSON object, not an array",
            None,
        ));
    }
    // The fast path; only a body that fails is parsed again to name the parameter.
    if let Ok(v) = serde_json::from_slice(bytes) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        // Read as far as one value: anything after it (a second object, garbage) is
        // refused like any other invalid JSON.
        Ok(v) => match de.end() {
            Ok(()) => Ok(v),
            Err(_) => Err(ApiError::bad_request(
                "invalid_json",
                "the body is not valid JSON: it goes on after the first JSON value",
                None,
            )),
        },
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let msg = inner.to_string();
            let clean = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::bad_request(
                    "invalid_json",
                    format!("the body is not valid JSON: {clean}"),
                    None,
                ));
            }
            if let Some(rest) = clean.strip_prefix("unknown field `") {
                // The path already ends with the unknown field's name.
                let field = rest.split('`').next().unwrap_or_default();
                let param = if path == "." || path.is_empty() {
                    field.to_string()
                } else {
                    path.clone()
                };
                return Err(ApiError::bad_request(
                    "unknown_field",
                    format!("unknown field {param}"),
                    Some(&param),
                ));
            }
            if let Some(rest) = clean.strip_prefix("missing field `") {
                let field = rest.split('`').next().unwrap_or_default();
                let param = if path == "." || path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                };
                return Err(ApiError::bad_request(
                    "parameter_missing",
                    format!("{param} is required"),
                    Some(&param),
                ));
            }
            let param = if path == "." || path.is_empty() {
                None
            } else {
                Some(path.as_str())
            };
            let message = match param {
                Some(p) => format!("{p}: {clean}"),
                None => format!("the body has the wrong shape: {clean}"),
            };
            Err(ApiError::bad_request("invalid_parameter", message, param))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        n: Option<i64>,
    }

    fn code(r: Result<Body, ApiError>) -> (String, Option<String>) {
        let e = r.unwrap_err();
        (e.info.code, e.info.param)
    }

    #[test]
    fn json_errors_name_the_parameter() {
        assert_eq!(code(parse_json(b"{")).0, "invalid_json");
        assert_eq!(
            code(parse_json(b"{\"name\":\"a\",\"x\":1}")),
            ("unknown_field".into(), Some("x".into()))
        );
        assert_eq!(
            code(parse_json(b"{\"name\":1}")),
            ("invalid_parameter".into(), Some("name".into()))
        );
        assert_eq!(
            code(parse_json(b"{}")),
            ("parameter_missing".into(), Some("name".into()))
        );
        assert_eq!(code(parse_json(b"[]")).0, "invalid_parameter");
        assert!(parse_json::<Body>(b"{\"name\":\"a\"}").is_ok());
    }
}

/// The error object, as documented in the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

/// Fields of an error.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    /// `invalid_request`, `authentication_required`, `permission_denied`, `not_found`,
    /// `conflict`, `rate_limited`, `internal` or `unavailable` (503, with `Retry-After`:
    /// the database is unreachable or the server is too busy).
    #[serde(rename = "type")]
    pub kind: String,
    /// Machine-readable code.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// The parameter at fault.
    pub param: Option<String>,
    /// The request's id.
    pub request_id: String,
}

/// The error answers every management endpoint may give.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum CommonErrors {
    /// Malformed JSON, failed validation or a bad query parameter.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No credential, or an invalid one.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// The credential lacks the permission.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such resource in this organization.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Duplicate name, built-in role, role in use, last super-admin, state clash.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// Body too large.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Body is not JSON.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// The database is unavailable (type `unavailable`); `Retry-After` says when to retry.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}
