-- People who sign in to the web UI: id (their email), name, role (viewer, rep, manager, admin),
-- the password as an Argon2id PHC string, when created and disabled.
CREATE TABLE users (
    id            TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER
);

-- Signed-in sessions: the SHA-256 of the cookie's secret (never the secret), the user, the
-- CSRF token every form of the session carries, when it began, was last seen and expires.
CREATE TABLE sessions (
    hash        TEXT    PRIMARY KEY,
    user_id     TEXT    NOT NULL,
    csrf        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
