-- The storm guard (see SQLite's 0010).
CREATE TABLE storms (
    id            TEXT    PRIMARY KEY,
    rule          TEXT    NOT NULL,
    playbook      TEXT    NOT NULL,
    owner         TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    since         BIGINT  NOT NULL,
    watch_until   BIGINT  NOT NULL,
    record_limit  BIGINT  NOT NULL,
    status        TEXT    NOT NULL,
    held          BIGINT  NOT NULL DEFAULT 0,
    holding_since BIGINT,
    preview       TEXT,
    decided_at    BIGINT,
    decided_by    TEXT,
    note          TEXT
);
CREATE INDEX storms_by_rule ON storms (rule, status);
CREATE INDEX storms_by_status ON storms (status, since);

CREATE TABLE storm_records (
    storm       TEXT    NOT NULL,
    record_kind TEXT    NOT NULL,
    record_id   TEXT    NOT NULL,
    at          BIGINT  NOT NULL,
    PRIMARY KEY (storm, record_kind, record_id)
);
CREATE INDEX storm_records_at ON storm_records (storm, at);

CREATE INDEX effects_held ON effects (rule, seq) WHERE status = 'held';
