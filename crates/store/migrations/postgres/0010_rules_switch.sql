-- The rules' switch, for every node (see SQLite's 0013).
CREATE TABLE rules_switches (
    seq        BIGSERIAL PRIMARY KEY,
    rules_on   BOOLEAN   NOT NULL,
    changed_by TEXT      NOT NULL,
    changed_at BIGINT    NOT NULL,
    reason     TEXT
);
