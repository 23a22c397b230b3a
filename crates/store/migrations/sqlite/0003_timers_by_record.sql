-- A record's timers, found without scanning them all: for the record's API view and for
-- re-arming a record when the playbooks change (its timers are replaced as a whole).
CREATE INDEX timers_by_record ON timers (record_kind, record_id);
