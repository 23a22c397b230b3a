-- What the risk score learned, published for every node (see SQLite's 0008).
CREATE TABLE risk_models (
    seq        BIGSERIAL PRIMARY KEY,
    learned    TEXT      NOT NULL,
    settings   TEXT      NOT NULL,
    learned_at BIGINT    NOT NULL,
    node       TEXT      NOT NULL
);
