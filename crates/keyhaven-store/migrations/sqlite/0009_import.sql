-- Imported keys (IMPORT.md): the ids integrations know keys and service accounts by,
-- keys turned off without being revoked, and the hashes of keys imported from other
-- systems, kept only until each key's first successful verification.

ALTER TABLE api_keys ADD COLUMN external_id TEXT;
ALTER TABLE api_keys ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1;
-- When the key was imported from another system (NULL for keys made here).
ALTER TABLE api_keys ADD COLUMN imported_at INTEGER;
CREATE INDEX api_keys_external_id ON api_keys (org_id, external_id) WHERE external_id IS NOT NULL;

ALTER TABLE service_accounts ADD COLUMN external_id TEXT;
CREATE INDEX service_accounts_external_id ON service_accounts (org_id, external_id) WHERE external_id IS NOT NULL;

-- A key imported with a hash that is not its SHA-256 digest: its api_keys.digest holds
-- a placeholder that matches no digest ('import:' || key id) until the key's first
-- successful verification replaces it with the SHA-256 digest and deletes this row.
-- `lookup` is how a verification finds the one candidate: the hex SHA-512 digest of
-- the key (kind 'sha512'), or the clear prefix the old system stored (kind 'prefix').
CREATE TABLE api_key_hashes (
    key_id     TEXT PRIMARY KEY REFERENCES api_keys(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    lookup     TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    value      TEXT NOT NULL
);
CREATE INDEX api_key_hashes_lookup ON api_key_hashes (kind, lookup);
