-- The most recent verifications of each key (the key page's "Recent verifications"):
-- each node keeps the last few per key in memory and writes them with its analytics
-- flush, which then trims every key it wrote to the newest 20 rows. Rows older than the
-- analytics retention are pruned with the hourly counts. No foreign key: a row may
-- outlive its key until it is trimmed or pruned (key ids are never reused).
CREATE TABLE recent_verifications (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id  TEXT NOT NULL,
    key_id  TEXT NOT NULL,
    at      INTEGER NOT NULL,
    code    TEXT NOT NULL,
    ip      TEXT,
    tags    TEXT NOT NULL
);
CREATE INDEX recent_verifications_key ON recent_verifications (key_id, at, id);
CREATE INDEX recent_verifications_at ON recent_verifications (at);
