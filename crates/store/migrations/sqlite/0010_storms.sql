-- The storm guard. A rule is watched for a while after it is new, after what it reaches (its
-- trigger, condition, re-entry or record kind) changes, and after an import: a storm row per
-- rule and cause. While watched, a rule that acts on more records within an hour than its
-- limit (or whose forecast says it would, before it acts at all) starts holding: its effects
-- wait in the outbox as `held` until a person approves (they are released and acted on) or
-- discards them (they are cancelled, with every other effect of the rule decided for a moment
-- before the discard).
--
-- status: watching → holding → approved | discarded; watching → ended (the watch ran out).
-- reason: new, reaches (what it reaches changed), import. preview: the rule's forecast (JSON)
-- when the storm was opened or began holding. owner: who answers for the rule (its playbook's
-- owner), whose inbox it lands in.
CREATE TABLE storms (
    id            TEXT    PRIMARY KEY,
    rule          TEXT    NOT NULL,
    playbook      TEXT    NOT NULL,
    owner         TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    since         INTEGER NOT NULL,
    watch_until   INTEGER NOT NULL,
    record_limit  INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    held          INTEGER NOT NULL DEFAULT 0,
    holding_since INTEGER,
    preview       TEXT,
    decided_at    INTEGER,
    decided_by    TEXT,
    note          TEXT
);
CREATE INDEX storms_by_rule ON storms (rule, status);
CREATE INDEX storms_by_status ON storms (status, since);

-- The records a watched rule acted on, with when it first did: what its busiest hour counts.
CREATE TABLE storm_records (
    storm       TEXT    NOT NULL,
    record_kind TEXT    NOT NULL,
    record_id   TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (storm, record_kind, record_id)
);
CREATE INDEX storm_records_at ON storm_records (storm, at);

-- Held effects, found by rule when a storm is decided.
CREATE INDEX effects_held ON effects (rule, seq) WHERE status = 'held';
