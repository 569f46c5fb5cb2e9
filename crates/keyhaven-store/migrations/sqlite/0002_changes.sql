-- Change log that verification caches on every node follow (and prune).
CREATE TABLE changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind    TEXT NOT NULL,
    ref_id  TEXT NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX changes_at ON changes (at);
