//! Schema migrations for PostgreSQL, recorded in `pipewright_migrations`. Each runs once, in
//! its own transaction, in order, under a session advisory lock so nodes starting together
//! migrate once; a database newer than this binary is refused.

use postgres::Client;

use crate::sql::backend;
use crate::{Error, Result};

/// The migrations this binary knows, oldest first: (version, name, SQL).
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "schema",
        include_str!("../../migrations/postgres/0001_schema.sql"),
    ),
    (
        2,
        "playbook sets",
        include_str!("../../migrations/postgres/0002_playbook_sets.sql"),
    ),
    (
        3,
        "sequences",
        include_str!("../../migrations/postgres/0003_sequences.sql"),
    ),
    (
        4,
        "routing and exceptions",
        include_str!("../../migrations/postgres/0004_routing_exceptions.sql"),
    ),
    (
        5,
        "risk models",
        include_str!("../../migrations/postgres/0005_risk_models.sql"),
    ),
    (
        6,
        "users and sessions",
        include_str!("../../migrations/postgres/0006_users.sql"),
    ),
    (
        7,
        "storm guard",
        include_str!("../../migrations/postgres/0007_storms.sql"),
    ),
    (
        8,
        "alarms",
        include_str!("../../migrations/postgres/0008_alarms.sql"),
    ),
    (
        9,
        "timers in firing order",
        include_str!("../../migrations/postgres/0009_timers_in_firing_order.sql"),
    ),
    (
        10,
        "rules switch",
        include_str!("../../migrations/postgres/0010_rules_switch.sql"),
    ),
    (
        11,
        "effects by channel",
        include_str!("../../migrations/postgres/0011_effects_by_channel.sql"),
    ),
];

/// What a migration run found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrations {
    /// The schema version before the run.
    pub from: u32,
    /// The versions this run applied, in order.
    pub applied: Vec<u32>,
    /// The schema version now.
    pub to: u32,
}

/// The advisory lock that serialises migrations: "pwmigrat" as a number.
const MIGRATION_LOCK: i64 = 0x7077_6d69_6772_6174;

pub(super) fn run(client: &mut Client) -> Result<Migrations> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map_err(backend)?;
    let out = apply(client);
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    out
}

fn apply(client: &mut Client) -> Result<Migrations> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS pipewright_migrations (
                 version    BIGINT      PRIMARY KEY,
                 name       TEXT        NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .map_err(backend)?;
    let from: i64 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM pipewright_migrations",
            &[],
        )
        .and_then(|r| r.try_get(0))
        .map_err(backend)?;
    let from = u32::try_from(from).map_err(|e| Error::Corrupt(e.to_string()))?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if from > known {
        return Err(Error::Invalid(format!(
            "the database schema is version {from}, newer than this binary's {known}; upgrade pipewright"
        )));
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > from) {
        let mut tx = client.transaction().map_err(backend)?;
        tx.batch_execute(sql).map_err(backend)?;
        tx.execute(
            "INSERT INTO pipewright_migrations (version, name) VALUES ($1, $2)",
            &[&i64::from(*version), name],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(version, name, "applied PostgreSQL migration");
        applied.push(*version);
    }
    Ok(Migrations {
        from,
        to: applied.last().copied().unwrap_or(from),
        applied,
    })
}
