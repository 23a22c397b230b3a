-- Alarms: what the silent-failure monitor raises about the automation itself, not about a deal —
-- a rule that used to fire and has stopped, a channel whose deliveries keep failing, dead
-- letters, a storm held for approval, a background loop that stopped and was restarted.
--
-- kind: rule_silent, channel_failing, dead_letters, storm_held, loop_restarted.
-- subject: what it is about within its kind (a rule id, a channel, `outbox`, a storm id, a loop).
-- title: a sentence for people; detail: the numbers behind it (JSON).
-- status: open → acknowledged → resolved; open → resolved. The monitor resolves an alarm
-- itself (resolved_by `pipewright`, with the reason) when its condition clears.
-- cleared_at: when the monitor last saw its condition clear. While it is NULL the alarm is the
-- one of its (kind, subject): raising again refreshes it, never adds a second; and one a
-- person resolved while the condition still held stays quiet until it clears.
CREATE TABLE alarms (
    id              TEXT    PRIMARY KEY,
    kind            TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    title           TEXT    NOT NULL,
    detail          TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    opened_at       INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    acknowledged_at INTEGER,
    acknowledged_by TEXT,
    note            TEXT,
    resolved_at     INTEGER,
    resolved_by     TEXT,
    resolution      TEXT,
    cleared_at      INTEGER
);
CREATE UNIQUE INDEX alarms_current ON alarms (kind, subject) WHERE cleared_at IS NULL;
CREATE INDEX alarms_by_status ON alarms (status, opened_at);

-- What the monitor reads each pass: every rule's firings (a scan of this index, not of the
-- outbox) and the delivery attempts of the last minutes.
CREATE INDEX effects_by_rule ON effects (rule, created_at);
CREATE INDEX delivery_attempts_finished ON delivery_attempts (finished_at);
