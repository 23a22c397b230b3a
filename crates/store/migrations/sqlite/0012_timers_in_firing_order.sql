-- Due timers are taken in firing order (due, rule, record): an index in that order lets a pass
-- read its batch straight off the index instead of sorting every due timer first, which made a
-- large backlog (1.4 million timers due at once) quadratic to fire. A record's timers due at
-- one moment are fired together; their index carries the due time, so that lookup never
-- scans every timer due at that moment (10,000 in a herd).
DROP INDEX timers_by_due;
CREATE INDEX timers_by_due ON timers (due, rule, record_kind, record_id);
DROP INDEX timers_by_record;
CREATE INDEX timers_by_record ON timers (record_kind, record_id, due);
