-- Playbook sets published for every node (see SQLite's 0005).
CREATE TABLE playbook_sets (
    seq          BIGSERIAL PRIMARY KEY,
    version      TEXT      NOT NULL,
    files        TEXT      NOT NULL,
    published_at BIGINT    NOT NULL,
    node         TEXT      NOT NULL
);
CREATE INDEX playbook_sets_by_version ON playbook_sets (version);
