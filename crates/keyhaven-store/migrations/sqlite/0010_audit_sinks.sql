-- Audit sinks (ANALYTICS.md, "Audit streaming"): where an organization's audit log is
-- streamed. `cursor_seq` is the last entry delivered (0: none yet); one node at a time
-- delivers a sink, holding the lease `claimed_until` under `claim_token`.
CREATE TABLE audit_sinks (
    id                 TEXT PRIMARY KEY,
    org_id             TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    kind               TEXT NOT NULL,
    target             TEXT NOT NULL,
    description        TEXT NOT NULL,
    enabled            INTEGER NOT NULL,
    cursor_seq         INTEGER NOT NULL,
    cursor_hash        TEXT,
    last_delivered_at  INTEGER,
    last_error         TEXT,
    last_error_at      INTEGER,
    failures           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    INTEGER NOT NULL DEFAULT 0,
    claimed_until      INTEGER NOT NULL DEFAULT 0,
    claim_token        TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX audit_sinks_org ON audit_sinks (org_id, id);
CREATE INDEX audit_sinks_due ON audit_sinks (enabled, next_attempt_at);

-- The new permission, granted to the built-in super-admin role of every existing
-- organization (new ones get it from the catalog).
UPDATE roles SET permissions = json_insert(permissions, '$[#]', 'audit.manage')
    WHERE built_in = 1 AND name = 'super-admin'
    AND permissions NOT LIKE '%"audit.manage"%';
