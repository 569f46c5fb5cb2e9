//! Webhook endpoints: where an organization's events are POSTed.

use async_trait::async_trait;
use keyhaven_core::id::Id;
use keyhaven_core::time::Timestamp;
use sqlx::any::AnyRow;

use crate::error::StoreResult;
use crate::row::{bind_all, id, int, json, listing, ms, text, time, to_json, Arg, Where};
use crate::sql::SqlTx;
use crate::{Listing, Page};

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// Its id.
    pub id: Id,
    /// Its organization.
    pub org_id: Id,
    /// Where events are POSTed.
    pub url: String,
    /// Event types it receives.
    pub events: Vec<String>,
    /// Free text.
    pub description: String,
    /// Whether it receives events.
    pub enabled: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Storage of webhook endpoints.
#[async_trait]
pub trait Webhooks {
    /// Adds an endpoint.
    async fn insert_webhook(&mut self, w: &WebhookEndpoint) -> StoreResult<()>;
    /// One endpoint.
    async fn webhook(&mut self, org_id: &Id, id: &Id) -> StoreResult<Option<WebhookEndpoint>>;
    /// A page of endpoints.
    async fn list_webhooks(
        &mut self,
        org_id: &Id,
        page: &Page,
    ) -> StoreResult<Listing<WebhookEndpoint>>;
    /// Enabled endpoints of an organization.
    async fn enabled_webhooks(&mut self, org_id: &Id) -> StoreResult<Vec<WebhookEndpoint>>;
    /// Saves url, events, description, enabled and updated_at.
    async fn update_webhook(&mut self, w: &WebhookEndpoint) -> StoreResult<()>;
    /// Removes an endpoint (and its deliveries).
    async fn delete_webhook(&mut self, org_id: &Id, id: &Id) -> StoreResult<bool>;
}

fn webhook_row(r: &AnyRow) -> StoreResult<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: id(r, "id")?,
        org_id: id(r, "org_id")?,
        url: text(r, "url")?,
        events: json(r, "events")?,
        description: text(r, "description")?,
        enabled: int(r, "enabled")? != 0,
        created_at: time(r, "created_at")?,
        updated_at: time(r, "updated_at")?,
    })
}

#[async_trait]
impl Webhooks for SqlTx {
    async fn insert_webhook(&mut self, w: &WebhookEndpoint) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, org_id, url, events, description, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(w.id.as_str())
        .bind(w.org_id.as_str())
        .bind(&w.url)
        .bind(to_json(&w.events))
        .bind(&w.description)
        .bind(i64::from(w.enabled))
        .bind(ms(&w.created_at))
        .bind(ms(&w.updated_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn webhook(&mut self, org_id: &Id, wid: &Id) -> StoreResult<Option<WebhookEndpoint>> {
        let row = sqlx::query("SELECT * FROM webhook_endpoints WHERE org_id = $1 AND id = $2")
            .bind(org_id.as_str())
            .bind(wid.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(webhook_row).transpose()
    }

    async fn list_webhooks(
        &mut self,
        org_id: &Id,
        page: &Page,
    ) -> StoreResult<Listing<WebhookEndpoint>> {
        let mut w = Where::new();
        w.push("org_id = ?", Arg::Text(org_id.to_string()));
        let (sql, args) = w.finish(page, "id");
        let rows = bind_all(
            sqlx::query(&format!("SELECT * FROM webhook_endpoints WHERE {sql}")),
            args,
        )
        .fetch_all(&mut *self.tx)
        .await?;
        let items = rows
            .iter()
            .map(webhook_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(listing(items, page, |w| w.id.to_string()))
    }

    async fn enabled_webhooks(&mut self, org_id: &Id) -> StoreResult<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(
            "SELECT * FROM webhook_endpoints WHERE org_id = $1 AND enabled = 1 ORDER BY id",
        )
        .bind(org_id.as_str())
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(webhook_row).collect()
    }

    async fn update_webhook(&mut self, w: &WebhookEndpoint) -> StoreResult<()> {
        sqlx::query(
            "UPDATE webhook_endpoints SET url = $3, events = $4, description = $5, enabled = $6, updated_at = $7 \
             WHERE org_id = $1 AND id = $2",
        )
        .bind(w.org_id.as_str())
        .bind(w.id.as_str())
        .bind(&w.url)
        .bind(to_json(&w.events))
        .bind(&w.description)
        .bind(i64::from(w.enabled))
        .bind(ms(&w.updated_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_webhook(&mut self, org_id: &Id, wid: &Id) -> StoreResult<bool> {
        sqlx::query("DELETE FROM webhook_deliveries WHERE org_id = $1 AND endpoint_id = $2")
            .bind(org_id.as_str())
            .bind(wid.as_str())
            .execute(&mut *self.tx)
            .await?;
        let r = sqlx::query("DELETE FROM webhook_endpoints WHERE org_id = $1 AND id = $2")
            .bind(org_id.as_str())
            .bind(wid.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
