-- Change log that verification caches on every node follow (and prune).
CREATE TABLE changes (
    seq     BIGSERIAL PRIMARY KEY,
    kind    TEXT NOT NULL,
    ref_id  TEXT NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX changes_at ON changes (at);
