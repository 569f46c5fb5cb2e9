-- Usage control (USAGE-CONTROL.md): named rate limits on keys and service accounts,
-- credit balances with refills, and the shared counters of the PostgreSQL engine.

ALTER TABLE api_keys ADD COLUMN ratelimits TEXT NOT NULL DEFAULT '[]';
UPDATE api_keys SET ratelimits = jsonb_build_array(jsonb_build_object(
        'name', 'default', 'limit', ratelimit_limit,
        'duration_ms', ratelimit_duration_ms, 'auto_apply', true))::text
    WHERE ratelimit_limit IS NOT NULL AND ratelimit_duration_ms IS NOT NULL;
ALTER TABLE api_keys DROP COLUMN ratelimit_limit;
ALTER TABLE api_keys DROP COLUMN ratelimit_duration_ms;
-- `remaining` stays the balance; these are its rules and bookkeeping.
ALTER TABLE api_keys ADD COLUMN credits_refill TEXT;
ALTER TABLE api_keys ADD COLUMN credits_low_threshold BIGINT;
ALTER TABLE api_keys ADD COLUMN credits_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN credits_next_refill_at BIGINT;
ALTER TABLE api_keys ADD COLUMN credits_low_notified BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN credits_exhausted_notified BIGINT NOT NULL DEFAULT 0;
CREATE INDEX api_keys_refill ON api_keys (credits_next_refill_at) WHERE credits_refill IS NOT NULL;

ALTER TABLE service_accounts ADD COLUMN ratelimits TEXT NOT NULL DEFAULT '[]';

-- Token buckets shared by every node: micro-tokens left at `updated_ms`; a row whose
-- bucket is full again by `full_at_ms` may be pruned.
CREATE TABLE rate_buckets (
    id          TEXT PRIMARY KEY,
    micro       BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    full_at_ms  BIGINT NOT NULL
);
CREATE INDEX rate_buckets_full ON rate_buckets (full_at_ms);

-- The new permission of `POST /v1/ratelimit`, granted to the built-in super-admin and
-- admin roles of every existing organization (new ones get it from the catalog).
UPDATE roles SET permissions = (permissions::jsonb || '["ratelimits.use"]'::jsonb)::text
    WHERE built_in = 1 AND name IN ('super-admin', 'admin')
    AND permissions NOT LIKE '%"ratelimits.use"%';
