//! Storage for the credential lifecycle: webhook endpoints, the event outbox and its
//! deliveries, and expiry notices.

use async_trait::async_trait;

use crate::sql::SqlTx;

/// Storage of webhooks, outbox events and expiry notices.
#[async_trait]
pub trait Lifecycle {}

#[async_trait]
impl Lifecycle for SqlTx {}
