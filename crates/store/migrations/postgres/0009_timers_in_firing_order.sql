-- Due timers in firing order, and a record's timers by due time (see SQLite's 0012).
DROP INDEX timers_by_due;
CREATE INDEX timers_by_due ON timers (due, rule, record_kind, record_id);
DROP INDEX timers_by_record;
CREATE INDEX timers_by_record ON timers (record_kind, record_id, due);
