//! The console's reads beyond the API's: lists sorted by a column, a key's recent
//! verifications, and the scopes in use to suggest in the key forms.

use keyhaven_core::api_key::ApiKey;
use keyhaven_core::audit::Action;
use keyhaven_core::id::Id;
use keyhaven_core::permission::{is_management, Permission};
use keyhaven_core::service_account::ServiceAccount;
use keyhaven_core::user::User;
use keyhaven_store::{
    ApiKeyFilter, Listing, Page, RecentVerification, ServiceAccountFilter, Sort, UserFilter,
};

use crate::verify::recent::RECENT_PER_KEY;
use crate::{Caller, Service, ServiceError, ServiceResult};

/// Most scopes suggested in a key form.
pub const MAX_SUGGESTED_SCOPES: usize = 200;

impl Service {
    /// A page of keys in the order `sort` asks (`None`: newest first), each with its
    /// effective permissions; the cursor is the previous page's with the same sort.
    pub async fn list_api_keys_sorted(
        &self,
        caller: &Caller,
        filter: &ApiKeyFilter,
        sort: Option<Sort>,
        page: &Page,
    ) -> ServiceResult<Listing<(ApiKey, Vec<String>)>> {
        self.authorize(caller, Permission::ApiKeysView, Action::ApiKeyList)
            .await?;
        let mut tx = self.store.read().await?;
        let l = tx
            .list_api_keys_sorted(&caller.org_id, filter, sort, page)
            .await?;
        let mut items = Vec::with_capacity(l.items.len());
        for mut k in l.items {
            let p = self.key_permissions(tx.as_mut(), &k).await?;
            self.live_credits(&mut k);
            items.push((k, p));
        }
        Ok(Listing {
            items,
            has_more: l.has_more,
            next_cursor: l.next_cursor,
        })
    }

    /// A page of users in the order `sort` asks (`None`: newest first).
    pub async fn list_users_sorted(
        &self,
        caller: &Caller,
        filter: &UserFilter,
        sort: Option<Sort>,
        page: &Page,
    ) -> ServiceResult<Listing<User>> {
        self.authorize(caller, Permission::UsersView, Action::UserList)
            .await?;
        let mut tx = self.store.read().await?;
        Ok(tx
            .list_users_sorted(&caller.org_id, filter, sort, page)
            .await?)
    }

    /// A page of service accounts in the order `sort` asks (`None`: newest first).
    pub async fn list_service_accounts_sorted(
        &self,
        caller: &Caller,
        filter: &ServiceAccountFilter,
        sort: Option<Sort>,
        page: &Page,
    ) -> ServiceResult<Listing<ServiceAccount>> {
        self.authorize(
            caller,
            Permission::ServiceAccountsView,
            Action::ServiceAccountList,
        )
        .await?;
        let mut tx = self.store.read().await?;
        Ok(tx
            .list_service_accounts_sorted(&caller.org_id, filter, sort, page)
            .await?)
    }

    /// The newest verifications of a key of the caller's organization [api_keys.view],
    /// newest first, as flushed by every node (up to [`RECENT_PER_KEY`]); a key of
    /// another organization is not found.
    pub async fn recent_verifications(
        &self,
        caller: &Caller,
        key_id: &Id,
    ) -> ServiceResult<Vec<RecentVerification>> {
        self.authorize(caller, Permission::ApiKeysView, Action::ApiKeyView)
            .await?;
        let mut tx = self.store.read().await?;
        if tx.api_key(&caller.org_id, key_id).await?.is_none() {
            return Err(ServiceError::NotFound("API key"));
        }
        Ok(tx
            .recent_verifications(&caller.org_id, key_id, RECENT_PER_KEY as i64)
            .await?)
    }

    /// The application scopes in use in the caller's organization — on its keys and in
    /// its custom roles — sorted, to suggest in the key forms (at most
    /// [`MAX_SUGGESTED_SCOPES`]; management permissions left out). Empty for a caller
    /// who can neither create nor change keys.
    pub async fn scopes_in_use(&self, caller: &Caller) -> ServiceResult<Vec<String>> {
        if !(caller.has(Permission::ApiKeysCreate) || caller.has(Permission::ApiKeysManage)) {
            return Ok(Vec::new());
        }
        let mut tx = self.store.read().await?;
        let all = tx
            .scopes_in_use(&caller.org_id, MAX_SUGGESTED_SCOPES * 2)
            .await?;
        Ok(all
            .into_iter()
            .filter(|s| !is_management(s))
            .take(MAX_SUGGESTED_SCOPES)
            .collect())
    }
}
