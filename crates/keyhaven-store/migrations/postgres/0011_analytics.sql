-- Verification analytics (ANALYTICS.md): counts by organization, time bucket, key,
-- code and caller-supplied tag, hourly (kept KEYHAVEN_ANALYTICS_RETENTION, 90 days by
-- default) and daily (kept 2 years). Every flush adds into both, so the daily rows are
-- exact sums of the hourly ones however late a node flushes.
--
-- `key_id` and `owner_id` are '' for a verification without a key (MALFORMED or
-- NOT_FOUND asked in an organization's scope). `tag` is '' in the rows that count each
-- verification once; a verification with tags is counted again, once per tag, in rows
-- with that tag. The `analytics_org_*` tables hold the same counts without the key, for
-- organization-wide queries that need not read a row per key.

CREATE TABLE analytics_hourly (
    org_id    TEXT NOT NULL,
    bucket    BIGINT NOT NULL,
    key_id    TEXT NOT NULL,
    code      TEXT NOT NULL,
    tag       TEXT NOT NULL,
    owner_id  TEXT NOT NULL,
    count     BIGINT NOT NULL,
    PRIMARY KEY (org_id, bucket, key_id, code, tag)
);
CREATE INDEX analytics_hourly_key ON analytics_hourly (key_id, bucket);
CREATE INDEX analytics_hourly_owner ON analytics_hourly (org_id, owner_id, bucket);
CREATE INDEX analytics_hourly_bucket ON analytics_hourly (bucket);

CREATE TABLE analytics_daily (
    org_id    TEXT NOT NULL,
    bucket    BIGINT NOT NULL,
    key_id    TEXT NOT NULL,
    code      TEXT NOT NULL,
    tag       TEXT NOT NULL,
    owner_id  TEXT NOT NULL,
    count     BIGINT NOT NULL,
    PRIMARY KEY (org_id, bucket, key_id, code, tag)
);
CREATE INDEX analytics_daily_key ON analytics_daily (key_id, bucket);
CREATE INDEX analytics_daily_owner ON analytics_daily (org_id, owner_id, bucket);
CREATE INDEX analytics_daily_bucket ON analytics_daily (bucket);

CREATE TABLE analytics_org_hourly (
    org_id  TEXT NOT NULL,
    bucket  BIGINT NOT NULL,
    code    TEXT NOT NULL,
    tag     TEXT NOT NULL,
    count   BIGINT NOT NULL,
    PRIMARY KEY (org_id, bucket, code, tag)
);
CREATE INDEX analytics_org_hourly_bucket ON analytics_org_hourly (bucket);

CREATE TABLE analytics_org_daily (
    org_id  TEXT NOT NULL,
    bucket  BIGINT NOT NULL,
    code    TEXT NOT NULL,
    tag     TEXT NOT NULL,
    count   BIGINT NOT NULL,
    PRIMARY KEY (org_id, bucket, code, tag)
);
CREATE INDEX analytics_org_daily_bucket ON analytics_org_daily (bucket);

-- The old hourly valid/invalid counts move over: valid ones as VALID, refused ones as
-- INVALID (their codes were not kept), so the key pages and "API calls today" keep
-- their history and read the same rows as analytics from now on.
INSERT INTO analytics_hourly (org_id, bucket, key_id, code, tag, owner_id, count)
    SELECT u.org_id, u.hour, u.key_id, 'VALID', '', COALESCE(k.owner_id, ''), u.valid
    FROM usage_hourly u LEFT JOIN api_keys k ON k.id = u.key_id WHERE u.valid > 0;
INSERT INTO analytics_hourly (org_id, bucket, key_id, code, tag, owner_id, count)
    SELECT u.org_id, u.hour, u.key_id, 'INVALID', '', COALESCE(k.owner_id, ''), u.invalid
    FROM usage_hourly u LEFT JOIN api_keys k ON k.id = u.key_id WHERE u.invalid > 0;
INSERT INTO analytics_daily (org_id, bucket, key_id, code, tag, owner_id, count)
    SELECT org_id, bucket - (bucket % 86400000), key_id, code, tag, MAX(owner_id), SUM(count)
    FROM analytics_hourly GROUP BY org_id, bucket - (bucket % 86400000), key_id, code, tag;
INSERT INTO analytics_org_hourly (org_id, bucket, code, tag, count)
    SELECT org_id, bucket, code, tag, SUM(count) FROM analytics_hourly
    GROUP BY org_id, bucket, code, tag;
INSERT INTO analytics_org_daily (org_id, bucket, code, tag, count)
    SELECT org_id, bucket, code, tag, SUM(count) FROM analytics_daily
    GROUP BY org_id, bucket, code, tag;
DROP TABLE usage_hourly;
