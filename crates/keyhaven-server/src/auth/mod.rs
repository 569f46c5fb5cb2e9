//! Authentication: password hashing, and resolving a request's credential (bearer key
//! or console session cookie with its CSRF token) into a [`keyhaven_service::Caller`].

pub mod extract;
