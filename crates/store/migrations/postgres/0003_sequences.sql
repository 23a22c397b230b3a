-- Sequences: enrolments, every automated email to a contact, suppressions and pauses.
--
-- An enrolment is one contact in one sequence, pinned to the playbook version it started on
-- (its id is the key of the start_sequence effect that started it). record and contact are
-- record keys written `kind:id`. status: active (due_at: when its next step runs) | paused
-- (paused_by: 'enrolment', 'owner:ID' or 'global') | ended (end_reason). state holds the
-- rest of the state machine (step, engagement) as JSON; the columns are what queries need and
-- are authoritative for status and due time.
CREATE TABLE enrolments (
    id          TEXT    PRIMARY KEY,
    sequence    TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    record      TEXT    NOT NULL,
    contact     TEXT    NOT NULL,
    account     TEXT,
    owner       TEXT,
    concurrent  BIGINT NOT NULL DEFAULT 0,
    status      TEXT    NOT NULL,
    paused_by   TEXT,
    paused_at   BIGINT,
    due_at      BIGINT,
    replied_at  BIGINT,
    state       TEXT    NOT NULL,
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    end_reason  TEXT
);
CREATE INDEX enrolments_due ON enrolments (due_at) WHERE status = 'active';
-- Whether any enrolment is live at all: every ingest asks, and most have ended.
CREATE INDEX enrolments_live ON enrolments (status) WHERE status <> 'ended';
CREATE INDEX enrolments_by_record ON enrolments (record, status);
CREATE INDEX enrolments_by_contact ON enrolments (contact, status);
CREATE INDEX enrolments_by_account ON enrolments (account) WHERE account IS NOT NULL;
CREATE INDEX enrolments_by_owner ON enrolments (owner, status);
CREATE INDEX enrolments_by_sequence ON enrolments (sequence, status);

-- Every automated email to a contact when it was decided: frequency caps count per contact,
-- throttles per sender (the record's owner), results per sequence step and variant.
CREATE TABLE sends (
    effect    TEXT    PRIMARY KEY,
    contact   TEXT    NOT NULL,
    sender    TEXT    NOT NULL,
    at        BIGINT NOT NULL,
    enrolment TEXT,
    step      TEXT,
    variant   TEXT
);
CREATE INDEX sends_by_contact ON sends (contact, at);
CREATE INDEX sends_by_sender ON sends (sender, at);
CREATE INDEX sends_by_enrolment ON sends (enrolment);

-- Addresses (lower case) and whole domains ('@example.com') that get no automated email.
-- reason: do_not_contact | unsubscribed | bounced.
CREATE TABLE suppressions (
    address    TEXT    PRIMARY KEY,
    reason     TEXT    NOT NULL,
    note       TEXT,
    created_at BIGINT NOT NULL
);

-- Sequences paused for everyone ('global') or one owner's records ('owner:ID').
CREATE TABLE sequence_pauses (
    scope TEXT    PRIMARY KEY,
    since BIGINT NOT NULL,
    note  TEXT
);

-- Secrets every node shares (the key that signs unsubscribe links), made on first use.
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
