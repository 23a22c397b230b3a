-- Delivery: each effect is claimed with a lease, attempted, and ends delivered, dead (after its
-- retries, or at once on a permanent refusal), cancelled, or captured by a dry run.
--
-- status: pending → delivering (leased) → delivered | pending (retry at next_at) | dead
--         | dry_run; pending or dead → cancelled; dead or cancelled → pending (retry by hand).
--         Shadow effects are never delivered.
-- channel: where it goes, and the unit of rate limits and circuit breakers: email, task,
--          internal (pipewright's own records), sequence (for the sequence engine),
--          chat:NAME, webhook:HOST.
ALTER TABLE effects ADD COLUMN channel TEXT NOT NULL DEFAULT '';
ALTER TABLE effects ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE effects ADD COLUMN next_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE effects ADD COLUMN lease_owner TEXT;
ALTER TABLE effects ADD COLUMN lease_until INTEGER;
ALTER TABLE effects ADD COLUMN last_error TEXT;
ALTER TABLE effects ADD COLUMN delivered_at INTEGER;
-- What was (or, in a dry run, would have been) sent: the rendered message, and the receiver's
-- answer.
ALTER TABLE effects ADD COLUMN rendered TEXT;
ALTER TABLE effects ADD COLUMN response TEXT;

UPDATE effects SET next_at = due, channel = CASE json_extract(action, '$.kind')
    WHEN 'send_email' THEN 'email'
    WHEN 'send_asset' THEN 'email'
    WHEN 'alert' THEN CASE WHEN json_type(action, '$.to.channel') IS NOT NULL
                           THEN 'chat:' || json_extract(action, '$.to.channel') ELSE 'email' END
    WHEN 'task' THEN 'task'
    WHEN 'escalate' THEN 'task'
    WHEN 'assign_owner' THEN 'internal'
    WHEN 'set_field' THEN 'internal'
    WHEN 'start_sequence' THEN 'sequence'
    WHEN 'stop_sequence' THEN 'sequence'
    ELSE 'webhook:' || coalesce(json_extract(action, '$.url'), '') END;

DROP INDEX effects_by_status;
CREATE INDEX effects_due ON effects (status, next_at);

-- Every attempt, with its outcome and what the receiver said.
CREATE TABLE delivery_attempts (
    effect_key  TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    node        TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    detail      TEXT,
    PRIMARY KEY (effect_key, attempt)
);

-- Tasks for people (and escalations, until the exceptions inbox takes them), written by the
-- delivery of their effect: the effect key is the task id, so a task is created once.
CREATE TABLE tasks (
    id          TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    assignee    TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    record_kind TEXT    NOT NULL,
    record_id   TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    due_at      INTEGER,
    status      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    done_at     INTEGER
);
CREATE INDEX tasks_by_assignee ON tasks (assignee, status, created_at);
