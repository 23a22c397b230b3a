-- What the risk score learned from closed deals, published for every node sharing the database:
-- the newest (highest seq) is the one every node scores with. learned: JSON (risk::Learned);
-- settings: the risk settings it was learned under, as JSON, so a change to them is relearned.
CREATE TABLE risk_models (
    seq        INTEGER PRIMARY KEY,
    learned    TEXT    NOT NULL,
    settings   TEXT    NOT NULL,
    learned_at INTEGER NOT NULL,
    node       TEXT    NOT NULL
);
