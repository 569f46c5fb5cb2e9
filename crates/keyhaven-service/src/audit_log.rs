//! Reading the audit log.

use keyhaven_core::audit::Action;
use keyhaven_core::audit::AuditEntry;
use keyhaven_core::permission::Permission;
use keyhaven_store::{AuditFilter, Listing, Page};

use crate::{Caller, Service, ServiceResult};

impl Service {
    /// A page of the organization's audit events, newest first.
    pub async fn list_audit_events(
        &self,
        caller: &Caller,
        filter: &AuditFilter,
        page: &Page,
    ) -> ServiceResult<Listing<AuditEntry>> {
        self.authorize(caller, Permission::AuditView, Action::AuditList)
            .await?;
        let mut tx = self.store.read().await?;
        Ok(tx.list_audit(&caller.org_id, filter, page).await?)
    }
}
