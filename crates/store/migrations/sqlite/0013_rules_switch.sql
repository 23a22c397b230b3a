-- The rules' switch, for every node sharing the database: each time a person switched the
-- playbooks' rules off or on (`pipewright rules off|on`, POST /api/v1/rules/off|on), who, when
-- and why. The newest row (highest seq) is how the rules stand; no row: on.
CREATE TABLE rules_switches (
    seq        INTEGER PRIMARY KEY,
    rules_on   INTEGER NOT NULL,
    changed_by TEXT    NOT NULL,
    changed_at INTEGER NOT NULL,
    reason     TEXT
);
