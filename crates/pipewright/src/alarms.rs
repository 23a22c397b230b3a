//! `pipewright alarms`: what the silent-failure monitor raised about the automation itself — a
//! rule that stopped firing, a channel failing, dead letters, a storm held, a background loop
//! that stopped — listed in words, acknowledged and resolved.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;

use server::storms::when;
use store::{Alarm, AlarmAction, Store};

#[derive(Debug, Subcommand)]
pub enum AlarmCommand {
    /// List alarms, newest first.
    List {
        /// open, acknowledged, resolved, unresolved (the default: open or acknowledged), or
        /// all.
        #[arg(long, default_value = "unresolved")]
        status: String,
        /// rule_silent, channel_failing, dead_letters, storm_held or loop_restarted.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Say you are on it: it stays in view until it is resolved.
    Ack {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Resolve it, saying how. While its cause still holds it stays resolved; once the cause
    /// has cleared, a new occurrence raises a new alarm.
    Resolve {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        resolution: String,
    },
}

/// An alarm in two lines: its id, status and title; what it is about and what happened to it.
fn print(out: &mut impl Write, a: &Alarm) -> std::io::Result<()> {
    writeln!(out, "{}  {:<12}  {}", a.id, a.status, a.title)?;
    let mut what = vec![
        server::alarms::kind_in_words(a.kind).to_owned(),
        format!("raised {}", when(a.opened_at)),
    ];
    if a.updated_at != a.opened_at {
        what.push(format!("last seen {}", when(a.updated_at)));
    }
    if let Some(by) = &a.acknowledged_by {
        what.push(format!("acknowledged by {by}"));
    }
    if let (Some(by), Some(at)) = (&a.resolved_by, a.resolved_at) {
        let how = a.resolution.as_deref().unwrap_or_default();
        what.push(format!("resolved by {by} {}: {how}", when(at)));
    }
    writeln!(out, "    {}", what.join(" · "))
}

/// Runs `pipewright alarms …` on `store`.
pub async fn run(
    store: &dyn Store,
    command: &AlarmCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        AlarmCommand::List {
            status,
            kind,
            limit,
        } => {
            let status = (status != "all").then_some(status.as_str());
            let query = server::alarms::alarm_query(status, kind.as_deref(), *limit)
                .map_err(|m| anyhow::anyhow!("--{m}"))?;
            let alarms = store.alarms(&query).await?;
            if alarms.is_empty() {
                writeln!(out, "no alarms ({})", status.unwrap_or("all"))?;
            }
            for a in &alarms {
                print(out, a)?;
            }
        }
        AlarmCommand::Ack { id, .. } | AlarmCommand::Resolve { id, .. } => {
            let (action, deed) = match command {
                AlarmCommand::Ack { by, note, .. } => (
                    AlarmAction::Acknowledge {
                        by: by.clone(),
                        note: note.clone(),
                    },
                    "acknowledge",
                ),
                AlarmCommand::Resolve { by, resolution, .. } => (
                    AlarmAction::Resolve {
                        by: by.clone(),
                        resolution: resolution.clone(),
                    },
                    "resolve",
                ),
                AlarmCommand::List { .. } => unreachable!("matched above"),
            };
            let a = store
                .act_on_alarm(id, action)
                .await
                .with_context(|| format!("cannot {deed} alarm {id}"))?;
            print(out, &a)?;
        }
    }
    Ok(())
}
