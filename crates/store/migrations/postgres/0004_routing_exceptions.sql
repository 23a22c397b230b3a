-- Routing and the exceptions inbox.
--
-- assignments: every owner routing chose, keyed by the assign_owner effect; what the
-- `recent_assignments` measure counts.
CREATE TABLE assignments (
    effect_key  TEXT    PRIMARY KEY,
    person      TEXT    NOT NULL,
    record_kind TEXT    NOT NULL,
    record_id   TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX assignments_person ON assignments (person, at);

-- An exception: what the playbooks route to a human on purpose (escalate). Its id is the
-- escalate effect's key. chain holds the people it escalates through (JSON array of person
-- ids, level 0 first); assignee is chain[level] unless reassigned by hand. due_at is when the
-- current level's SLA runs out (NULL once acknowledged, resolved, or at the last level after
-- it ran out: overdue_at says when). context is the record's facts and the why-trace when it
-- was raised (JSON).
CREATE TABLE exceptions (
    id              TEXT    PRIMARY KEY,
    record_kind     TEXT    NOT NULL,
    record_id       TEXT    NOT NULL,
    playbook        TEXT    NOT NULL,
    rule            TEXT    NOT NULL,
    version         TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    title           TEXT    NOT NULL,
    context         TEXT    NOT NULL,
    chain           TEXT    NOT NULL,
    level           INTEGER NOT NULL,
    assignee        TEXT    NOT NULL,
    sla_ms          BIGINT NOT NULL,
    due_at          BIGINT,
    overdue_at      BIGINT,
    status          TEXT    NOT NULL,
    created_at      BIGINT NOT NULL,
    acknowledged_at BIGINT,
    acknowledged_by TEXT,
    resolved_at     BIGINT,
    resolved_by     TEXT,
    resolution      TEXT,
    note            TEXT
);
CREATE INDEX exceptions_assignee ON exceptions (assignee, status);
CREATE INDEX exceptions_record ON exceptions (record_kind, record_id);
CREATE INDEX exceptions_due ON exceptions (due_at) WHERE status = 'open';

-- What happened to each exception, in order: raised, escalated, acknowledged, reassigned,
-- resolved, overdue.
CREATE TABLE exception_history (
    exception_id TEXT    NOT NULL,
    n            INTEGER NOT NULL,
    at           BIGINT NOT NULL,
    action       TEXT    NOT NULL,
    by_person    TEXT,
    assignee     TEXT,
    note         TEXT,
    PRIMARY KEY (exception_id, n)
);
