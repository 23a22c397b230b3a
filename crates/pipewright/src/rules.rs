//! `pipewright rules off|on|status`: the documented way to stop the playbooks' rules on
//! purpose, for every node on the database, and to start them again. Emptying or removing the
//! playbook folder does not stop them (that is reported as a problem, and the last good set
//! keeps running).

use std::io::Write;
use std::sync::Arc;

use clap::Subcommand;

use clock::{Clock, SystemClock};
use server::Settings;
use server::rules::RulesState;
use store::{RulesSwitch, Store};

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Switch the rules off on every node: no rule fires, no timer acts, no sequence step
    /// runs and no gate judges a move until they are switched on. Events are still taken and
    /// effects already in the outbox are still delivered.
    Off {
        /// Who switches them off (shown with the state).
        #[arg(long)]
        by: String,
        /// Why, in a few words.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Switch the rules on again. Timers that came due while they were off fire once (not
    /// lost), after every rule is watched by the storm guard: a rule that would act on more
    /// records within an hour than its limit waits for approval (`pipewright storms`).
    On {
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Whether the rules are on, and who switched them last, when and why.
    Status,
}

/// Runs `pipewright rules …` on `store`.
pub async fn run(
    settings: &Settings,
    store: Arc<dyn Store>,
    command: &RulesCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (on, by, reason) = match command {
        RulesCommand::Status => {
            let state = RulesState::of(store.rules_switch().await?);
            writeln!(out, "rules: {}", state.words)?;
            return Ok(());
        }
        RulesCommand::Off { by, reason } => (false, by, reason),
        RulesCommand::On { by, reason } => (true, by, reason),
    };
    // The set every node runs, for the storm guard's forecast when switching on.
    let running = match store.latest_playbooks().await? {
        Some(latest) => store
            .playbook_set(&latest.version)
            .await?
            .map(store::Engine::new),
        None => None,
    };
    let asked = RulesSwitch {
        on,
        by: by.clone(),
        at: SystemClock.now(),
        reason: reason.clone(),
    };
    let guard = server::storms::GuardSettings::of(&settings.engine);
    let now = server::rules::switch_rules(&*store, running.as_ref(), guard, asked).await?;
    writeln!(out, "rules: {}", RulesState::of(Some(now)).words)?;
    writeln!(
        out,
        "every node follows within engine.reload_poll_ms ({} ms)",
        settings.engine.reload_poll_ms
    )?;
    Ok(())
}
