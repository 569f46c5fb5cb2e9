//! The events webhook endpoints subscribe to.

/// A webhook event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    /// `api_key.created`.
    ApiKeyCreated,
    /// `api_key.updated`.
    ApiKeyUpdated,
    /// `api_key.regenerated`.
    ApiKeyRegenerated,
    /// `api_key.revoked`.
    ApiKeyRevoked,
    /// `api_key.deleted`.
    ApiKeyDeleted,
    /// `api_key.expiring`.
    ApiKeyExpiring,
    /// `api_key.expired`.
    ApiKeyExpired,
    /// `api_key.credits_low`: the balance fell below the key's `low_threshold`.
    ApiKeyCreditsLow,
    /// `api_key.credits_exhausted`: the balance reached 0.
    ApiKeyCreditsExhausted,
    /// `service_account.created`.
    ServiceAccountCreated,
    /// `service_account.updated`.
    ServiceAccountUpdated,
    /// `service_account.suspended`.
    ServiceAccountSuspended,
    /// `service_account.reactivated`.
    ServiceAccountReactivated,
    /// `service_account.archived`.
    ServiceAccountArchived,
    /// `service_account.deleted`.
    ServiceAccountDeleted,
}

impl WebhookEvent {
    /// Every value, in a stable order.
    pub const ALL: &'static [WebhookEvent] = &[
        WebhookEvent::ApiKeyCreated,
        WebhookEvent::ApiKeyUpdated,
        WebhookEvent::ApiKeyRegenerated,
        WebhookEvent::ApiKeyRevoked,
        WebhookEvent::ApiKeyDeleted,
        WebhookEvent::ApiKeyExpiring,
        WebhookEvent::ApiKeyExpired,
        WebhookEvent::ApiKeyCreditsLow,
        WebhookEvent::ApiKeyCreditsExhausted,
        WebhookEvent::ServiceAccountCreated,
        WebhookEvent::ServiceAccountUpdated,
        WebhookEvent::ServiceAccountSuspended,
        WebhookEvent::ServiceAccountReactivated,
        WebhookEvent::ServiceAccountArchived,
        WebhookEvent::ServiceAccountDeleted,
    ];

    /// The name of every value, in the order of [`Self::ALL`].
    pub const NAMES: &'static [&'static str] = &[
        "api_key.created",
        "api_key.updated",
        "api_key.regenerated",
        "api_key.revoked",
        "api_key.deleted",
        "api_key.expiring",
        "api_key.expired",
        "api_key.credits_low",
        "api_key.credits_exhausted",
        "service_account.created",
        "service_account.updated",
        "service_account.suspended",
        "service_account.reactivated",
        "service_account.archived",
        "service_account.deleted",
    ];

    /// The name as stored and shown in deliveries (`type`).
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::ApiKeyCreated => "api_key.created",
            WebhookEvent::ApiKeyUpdated => "api_key.updated",
            WebhookEvent::ApiKeyRegenerated => "api_key.regenerated",
            WebhookEvent::ApiKeyRevoked => "api_key.revoked",
            WebhookEvent::ApiKeyDeleted => "api_key.deleted",
            WebhookEvent::ApiKeyExpiring => "api_key.expiring",
            WebhookEvent::ApiKeyExpired => "api_key.expired",
            WebhookEvent::ApiKeyCreditsLow => "api_key.credits_low",
            WebhookEvent::ApiKeyCreditsExhausted => "api_key.credits_exhausted",
            WebhookEvent::ServiceAccountCreated => "service_account.created",
            WebhookEvent::ServiceAccountUpdated => "service_account.updated",
            WebhookEvent::ServiceAccountSuspended => "service_account.suspended",
            WebhookEvent::ServiceAccountReactivated => "service_account.reactivated",
            WebhookEvent::ServiceAccountArchived => "service_account.archived",
            WebhookEvent::ServiceAccountDeleted => "service_account.deleted",
        }
    }

    /// The value named `s`, if there is one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_parses_back_from_its_name() {
        for e in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(*e));
        }
        assert_eq!(WebhookEvent::parse("api_key.create"), None);
        assert_eq!(
            WebhookEvent::parse("api_key.credits_exhausted"),
            Some(WebhookEvent::ApiKeyCreditsExhausted)
        );
    }
}
