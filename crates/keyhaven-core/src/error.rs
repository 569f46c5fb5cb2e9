//! The one error type of the domain layer.
//!
//! Each variant maps to one row of API.md's error table; the server converts it once,
//! at its edge, into the contract's error object (or a console message next to a field).

use std::fmt;

/// Result alias for domain operations.
pub type DomainResult<T> = Result<T, DomainError>;

/// Why a domain rule refused an input or an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A field failed validation (HTTP 400, `invalid_request`).
    #[error("{message}")]
    Invalid {
        /// Machine-readable code, e.g. `name_required`.
        code: &'static str,
        /// The request field at fault, e.g. `name` or `tags[3]`.
        param: Option<String>,
        /// A sentence a person can act on.
        message: String,
    },
    /// The action clashes with the current state (HTTP 409, `conflict`).
    #[error("{message}")]
    Conflict {
        /// Machine-readable code, e.g. `name_taken`.
        code: &'static str,
        /// A sentence a person can act on.
        message: String,
    },
    /// The principal lacks a permission (HTTP 403, `permission_denied`).
    #[error("missing permission {permission}")]
    PermissionDenied {
        /// The permission that is missing, e.g. `api_keys.create`.
        permission: String,
    },
}

impl DomainError {
    /// A validation failure for `param`.
    pub fn invalid(
        code: &'static str,
        param: impl Into<String>,
        message: impl fmt::Display,
    ) -> Self {
        DomainError::Invalid {
            code,
            param: Some(param.into()),
            message: message.to_string(),
        }
    }

    /// A state conflict.
    pub fn conflict(code: &'static str, message: impl fmt::Display) -> Self {
        DomainError::Conflict {
            code,
            message: message.to_string(),
        }
    }

    /// A missing permission.
    pub fn denied(permission: impl Into<String>) -> Self {
        DomainError::PermissionDenied {
            permission: permission.into(),
        }
    }

    /// The same error, but blaming a nested parameter (e.g. `ratelimit.limit`).
    pub fn with_param_prefix(self, prefix: &str) -> Self {
        match self {
            DomainError::Invalid {
                code,
                param,
                message,
            } => DomainError::Invalid {
                code,
                param: Some(match param {
                    Some(p) if p.starts_with('[') => format!("{prefix}{p}"),
                    Some(p) => format!("{prefix}.{p}"),
                    None => prefix.to_string(),
                }),
                message,
            },
            other => other,
        }
    }
}
