-- The chain's head is authenticated: a MAC, keyed by a key derived from the master key,
-- chained over every entry (see keyhaven_core::audit). NULL until the organization's
-- first audited action after the upgrade.
ALTER TABLE audit_heads ADD COLUMN mac TEXT;
