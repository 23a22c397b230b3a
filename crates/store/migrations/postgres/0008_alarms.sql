-- Alarms about the automation itself (see SQLite's 0011).
CREATE TABLE alarms (
    id              TEXT    PRIMARY KEY,
    kind            TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    title           TEXT    NOT NULL,
    detail          TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    opened_at       BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    acknowledged_at BIGINT,
    acknowledged_by TEXT,
    note            TEXT,
    resolved_at     BIGINT,
    resolved_by     TEXT,
    resolution      TEXT,
    cleared_at      BIGINT
);
CREATE UNIQUE INDEX alarms_current ON alarms (kind, subject) WHERE cleared_at IS NULL;
CREATE INDEX alarms_by_status ON alarms (status, opened_at);

CREATE INDEX effects_by_rule ON effects (rule, created_at);
CREATE INDEX delivery_attempts_finished ON delivery_attempts (finished_at);
