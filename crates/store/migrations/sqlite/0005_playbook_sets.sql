-- Playbook sets published for every node sharing the database: the newest (highest seq) is the
-- one every node runs. files: a JSON array of [path, text] pairs.
CREATE TABLE playbook_sets (
    seq          INTEGER PRIMARY KEY,
    version      TEXT    NOT NULL,
    files        TEXT    NOT NULL,
    published_at INTEGER NOT NULL,
    node         TEXT    NOT NULL
);
CREATE INDEX playbook_sets_by_version ON playbook_sets (version);
