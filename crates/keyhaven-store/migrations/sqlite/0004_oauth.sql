-- OAuth 2.0 client-credentials tokens: the JWT signing key, shared by every node.
-- One row per slot; 'current' signs. Several nodes starting at once each try to insert
-- 'current' with ON CONFLICT DO NOTHING and then read back whichever won.
-- private_key is the PKCS#8 PEM encrypted with the master key (`v1:` + base64), never
-- plain text; public_n / public_e are the JWK's base64url modulus and exponent.
CREATE TABLE oauth_signing_keys (
    slot         TEXT PRIMARY KEY,
    kid          TEXT NOT NULL UNIQUE,
    private_key  TEXT NOT NULL,
    public_n     TEXT NOT NULL,
    public_e     TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
