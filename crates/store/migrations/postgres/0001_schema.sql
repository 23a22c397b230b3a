-- The PostgreSQL schema: the same tables as SQLite's migrations 0001-0004 (see their comments),
-- with 64-bit integers for times (epoch milliseconds) and counters, sequences where several
-- nodes number rows concurrently, and a position column that orders records for walks.

CREATE TABLE events (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT   NOT NULL,
    source      TEXT   NOT NULL,
    source_id   TEXT   NOT NULL,
    type        TEXT   NOT NULL,
    occurred_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    body        TEXT   NOT NULL,
    UNIQUE (source, source_id)
);
CREATE INDEX events_by_received ON events (received_at);

CREATE TABLE event_records (
    kind        TEXT   NOT NULL,
    record_id   TEXT   NOT NULL,
    occurred_at BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    PRIMARY KEY (kind, record_id, occurred_at, seq)
);

CREATE TABLE records (
    pos              BIGSERIAL NOT NULL UNIQUE,
    kind             TEXT   NOT NULL,
    id               TEXT   NOT NULL,
    stage            TEXT,
    owner            TEXT,
    last_occurred_at BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    state            TEXT   NOT NULL,
    memory           TEXT   NOT NULL DEFAULT '{}',
    armed_version    TEXT,
    PRIMARY KEY (kind, id)
);
CREATE INDEX records_by_stage ON records (kind, stage, id);
CREATE INDEX records_by_owner ON records (kind, owner, id);

CREATE TABLE api_tokens (
    id         TEXT   PRIMARY KEY,
    name       TEXT   NOT NULL,
    role       TEXT   NOT NULL,
    hash       TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE effects (
    key          TEXT      PRIMARY KEY,
    seq          BIGSERIAL NOT NULL UNIQUE,
    playbook     TEXT      NOT NULL,
    rule         TEXT      NOT NULL,
    version      TEXT      NOT NULL,
    record_kind  TEXT      NOT NULL,
    record_id    TEXT      NOT NULL,
    action       TEXT      NOT NULL,
    due          BIGINT    NOT NULL,
    shadow       BOOLEAN   NOT NULL,
    status       TEXT      NOT NULL,
    trace        TEXT      NOT NULL,
    created_at   BIGINT    NOT NULL,
    channel      TEXT      NOT NULL,
    attempts     BIGINT    NOT NULL DEFAULT 0,
    next_at      BIGINT    NOT NULL,
    lease_owner  TEXT,
    lease_until  BIGINT,
    last_error   TEXT,
    delivered_at BIGINT,
    rendered     TEXT,
    response     TEXT
);
CREATE INDEX effects_by_record ON effects (record_kind, record_id, seq);
CREATE INDEX effects_due ON effects (status, next_at);

CREATE TABLE timers (
    rule        TEXT   NOT NULL,
    record_kind TEXT   NOT NULL,
    record_id   TEXT   NOT NULL,
    due         BIGINT NOT NULL,
    anchor      BIGINT NOT NULL,
    PRIMARY KEY (rule, record_kind, record_id)
);
CREATE INDEX timers_by_due ON timers (due);
CREATE INDEX timers_by_record ON timers (record_kind, record_id);

CREATE TABLE rotations (
    team TEXT   PRIMARY KEY,
    next BIGINT NOT NULL
);

CREATE TABLE delivery_attempts (
    effect_key  TEXT   NOT NULL,
    attempt     BIGINT NOT NULL,
    node        TEXT   NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    outcome     TEXT   NOT NULL,
    detail      TEXT,
    PRIMARY KEY (effect_key, attempt)
);

CREATE TABLE tasks (
    id          TEXT   PRIMARY KEY,
    kind        TEXT   NOT NULL,
    assignee    TEXT   NOT NULL,
    title       TEXT   NOT NULL,
    record_kind TEXT   NOT NULL,
    record_id   TEXT   NOT NULL,
    rule        TEXT   NOT NULL,
    due_at      BIGINT,
    status      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    done_at     BIGINT
);
CREATE INDEX tasks_by_assignee ON tasks (assignee, status, created_at);
