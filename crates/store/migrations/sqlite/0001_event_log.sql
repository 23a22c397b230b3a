-- The event log: append-only, de-duplicated on (source, source_id).
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    id          TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    source_id   TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    body        TEXT    NOT NULL,
    UNIQUE (source, source_id)
);
-- "Which records changed since T" is answered from the log: received_at only grows, so this
-- index is appended to, never rewritten in the middle (an index on records.updated_at was:
-- every state update moved its entry, a fifth of ingest time).
CREATE INDEX events_by_received ON events (received_at);

-- Which records each event concerns, ordered by occurrence: a record's timeline and the input
-- of its refold when an event arrives out of order.
CREATE TABLE event_records (
    kind        TEXT    NOT NULL,
    record_id   TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (kind, record_id, occurred_at, seq)
) WITHOUT ROWID;

-- Derived state of every record: a cache of the fold over its events, rebuilt from the log.
-- A rowid table on purpose: states are a kilobyte or more, too large for WITHOUT ROWID.
CREATE TABLE records (
    kind             TEXT    NOT NULL,
    id               TEXT    NOT NULL,
    stage            TEXT,
    owner            TEXT,
    last_occurred_at INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    state            TEXT    NOT NULL,
    UNIQUE (kind, id)
);
CREATE INDEX records_by_stage ON records (kind, stage, id);
CREATE INDEX records_by_owner ON records (kind, owner, id);

-- API tokens: only a SHA-256 hash of the secret is kept.
CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    hash         TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
