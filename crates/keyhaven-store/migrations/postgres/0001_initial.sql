-- Keyhaven schema, PostgreSQL flavour. Times are Unix milliseconds (BIGINT); lists and
-- objects are JSON text. The SQLite migration has the same tables and columns.

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    key_prefix  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE roles (
    org_id           TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    description      TEXT NOT NULL,
    permissions      TEXT NOT NULL,
    key_name_pattern TEXT,
    built_in         BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (org_id, name)
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    email          TEXT NOT NULL UNIQUE,
    display_name   TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    roles          TEXT NOT NULL,
    status         TEXT NOT NULL,
    last_login_at  BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX users_org ON users (org_id, id);

CREATE TABLE service_accounts (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    roles        TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX service_accounts_org ON service_accounts (org_id, status, id);

CREATE TABLE api_keys (
    id                    TEXT PRIMARY KEY,
    org_id                TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    description           TEXT NOT NULL,
    tags                  TEXT NOT NULL,
    owner_type            TEXT NOT NULL,
    owner_id              TEXT NOT NULL,
    roles                 TEXT NOT NULL,
    scopes                TEXT NOT NULL,
    digest                TEXT NOT NULL UNIQUE,
    masked_key            TEXT NOT NULL,
    expires_at            BIGINT,
    created_by            TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    last_used_at          BIGINT,
    revoked_at            BIGINT,
    ratelimit_limit       BIGINT,
    ratelimit_duration_ms BIGINT,
    remaining             BIGINT,
    allowed_cidrs         TEXT NOT NULL,
    metadata              TEXT NOT NULL,
    previous_digest       TEXT UNIQUE,
    previous_valid_until  BIGINT,
    UNIQUE (org_id, name)
);
CREATE INDEX api_keys_org ON api_keys (org_id, id);
CREATE INDEX api_keys_owner ON api_keys (org_id, owner_id, id);
CREATE INDEX api_keys_expiry ON api_keys (org_id, revoked_at, expires_at);

CREATE TABLE credentials (
    id                  TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    service_account_id  TEXT NOT NULL REFERENCES service_accounts(id) ON DELETE CASCADE,
    client_id           TEXT NOT NULL UNIQUE,
    name                TEXT NOT NULL,
    description         TEXT NOT NULL,
    secret_digest       TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    last_used_at        BIGINT,
    expires_at          BIGINT,
    revoked_at          BIGINT
);
CREATE INDEX credentials_account ON credentials (service_account_id, id);

CREATE TABLE sessions (
    token_digest  TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE login_failures (
    id     TEXT PRIMARY KEY,
    email  TEXT NOT NULL,
    at     BIGINT NOT NULL
);
CREATE INDEX login_failures_email ON login_failures (email, at);

CREATE TABLE audit_events (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    actor_type   TEXT NOT NULL,
    actor_id     TEXT NOT NULL,
    actor_name   TEXT NOT NULL,
    action       TEXT NOT NULL,
    target_type  TEXT,
    target_id    TEXT,
    target_name  TEXT,
    outcome      TEXT NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    request_id   TEXT,
    changes      TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL,
    UNIQUE (org_id, seq)
);
CREATE INDEX audit_events_actor ON audit_events (org_id, actor_id, seq);
CREATE INDEX audit_events_target ON audit_events (org_id, target_id, seq);
CREATE INDEX audit_events_action ON audit_events (org_id, action, seq);
CREATE INDEX audit_events_at ON audit_events (org_id, at);

CREATE TABLE audit_heads (
    org_id  TEXT PRIMARY KEY,
    seq     BIGINT NOT NULL,
    hash    TEXT NOT NULL
);

CREATE TABLE shared_secrets (
    org_id                TEXT PRIMARY KEY REFERENCES organizations(id) ON DELETE CASCADE,
    ciphertext            TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    previous_ciphertext   TEXT,
    previous_valid_until  BIGINT
);

CREATE TABLE usage_hourly (
    key_id   TEXT NOT NULL,
    org_id   TEXT NOT NULL,
    hour     BIGINT NOT NULL,
    valid    BIGINT NOT NULL,
    invalid  BIGINT NOT NULL,
    PRIMARY KEY (key_id, hour)
);
CREATE INDEX usage_hourly_org ON usage_hourly (org_id, hour);
