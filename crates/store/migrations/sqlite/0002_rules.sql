-- What the rules engine decides, written in the same transaction as the events that caused it.

-- The outbox: one row per action a rule decided, keyed by its idempotency key, so deciding the
-- same thing twice (a replayed event, a timer fired again after a crash) adds nothing.
CREATE TABLE effects (
    key         TEXT    PRIMARY KEY,
    seq         INTEGER NOT NULL UNIQUE,
    playbook    TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    record_kind TEXT    NOT NULL,
    record_id   TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    due         INTEGER NOT NULL,
    shadow      INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    trace       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX effects_by_record ON effects (record_kind, record_id, seq);
CREATE INDEX effects_by_status ON effects (status, due);

-- Durable timers: at most one per (rule, record); they survive restarts and fire once.
CREATE TABLE timers (
    rule        TEXT    NOT NULL,
    record_kind TEXT    NOT NULL,
    record_id   TEXT    NOT NULL,
    due         INTEGER NOT NULL,
    anchor      INTEGER NOT NULL,
    PRIMARY KEY (rule, record_kind, record_id)
);
CREATE INDEX timers_by_due ON timers (due);

-- Round-robin position of each team that `assign_owner` rotates through (team = its members,
-- comma-separated, in playbook order).
CREATE TABLE rotations (
    team TEXT    PRIMARY KEY,
    next INTEGER NOT NULL
);

-- Each rule's memory of a record (re-entry policies), beside the record's state, and the
-- playbook version its timers were last armed with: under the same version only changed
-- timers are rewritten; under a new one all of them are.
ALTER TABLE records ADD COLUMN memory TEXT NOT NULL DEFAULT '{}';
ALTER TABLE records ADD COLUMN armed_version TEXT;
