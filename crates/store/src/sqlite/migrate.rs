//! Schema migrations, tracked in SQLite's `user_version`. Each runs once, in its own
//! transaction, in order; a database newer than this binary is refused.

use rusqlite::Connection;

use crate::sql::backend;
use crate::{Error, Result};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_event_log.sql"),
    include_str!("../../migrations/sqlite/0002_rules.sql"),
    include_str!("../../migrations/sqlite/0003_timers_by_record.sql"),
    include_str!("../../migrations/sqlite/0004_delivery.sql"),
    include_str!("../../migrations/sqlite/0005_playbook_sets.sql"),
    include_str!("../../migrations/sqlite/0006_sequences.sql"),
    include_str!("../../migrations/sqlite/0007_routing_exceptions.sql"),
    include_str!("../../migrations/sqlite/0008_risk_models.sql"),
    include_str!("../../migrations/sqlite/0009_users.sql"),
    include_str!("../../migrations/sqlite/0010_storms.sql"),
    include_str!("../../migrations/sqlite/0011_alarms.sql"),
    include_str!("../../migrations/sqlite/0012_timers_in_firing_order.sql"),
    include_str!("../../migrations/sqlite/0013_rules_switch.sql"),
    include_str!("../../migrations/sqlite/0014_effects_by_channel.sql"),
];

pub(super) fn run(conn: &mut Connection) -> Result<crate::Migrations> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend)?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(Error::Invalid(format!(
            "the database schema is version {current}, newer than this binary's {known}; upgrade pipewright"
        )));
    }
    let mut applied = Vec::new();
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(version = i + 1, "applied SQLite migration");
        applied.push(i as u32 + 1);
    }
    let from = current as u32;
    Ok(crate::Migrations {
        from,
        to: applied.last().copied().unwrap_or(from),
        applied,
    })
}
