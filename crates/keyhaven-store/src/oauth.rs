//! Storage for OAuth 2.0: the JWT signing key (encrypted by the server) and credential use.

use async_trait::async_trait;

use crate::sql::SqlTx;

/// Storage for the OAuth token endpoint.
#[async_trait]
pub trait OAuth {}

#[async_trait]
impl OAuth for SqlTx {}
