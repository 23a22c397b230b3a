//! The `pipewright` command: serve the API, import events, manage API tokens, print the
//! default configuration. Glue only: the work is done by the `server`, `store` and `wire` crates.

/// mimalloc: reading the log allocates on the store's reader threads and frees on the async
/// ones, where the system allocator's per-thread arenas cost a third of a report's time
/// (BENCHMARKS.md, heroics).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod alarms;
mod import;
mod rules;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use clock::{Clock, SystemClock};
use server::{Application, LogFormat, Settings};
use store::{Store, TokenRole};

#[derive(Debug, Parser)]
#[command(
    name = "pipewright",
    version,
    about = "Self-hosted revenue autopilot",
    max_term_width = 100
)]
struct Cli {
    /// A TOML configuration file (see `pipewright config default`).
    #[arg(long, global = true, env = "PIPEWRIGHT_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// The database URL, overriding the configuration (e.g. sqlite:pipewright.db).
    #[arg(long, global = true)]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API.
    Serve {
        /// Address to listen on, overriding the configuration.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Load the demo company's year (a founder, a sales manager, four AEs, two SDRs and
    /// their leads and deals), switch the example playbooks on in dry run, print an admin
    /// token, and serve. The company is generated into an empty database only.
    Demo {
        #[arg(long)]
        listen: Option<String>,
        /// The demo company's seed: the same seed and day give the same company.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// How many days of history, ending now.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// The history's last moment (RFC 3339 or a date), for a company that is the same
        /// whatever the day; now by default.
        #[arg(long)]
        to: Option<String>,
    },
    /// Write the demo company's history as NDJSON events (to import, or to backtest on).
    #[command(after_help = COMPANY_HELP)]
    Company {
        /// The demo company's seed: the same seed, parameters and last moment give the same
        /// events.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// How many days of history.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// The history's last moment (RFC 3339 or a date); now by default.
        #[arg(long)]
        to: Option<String>,
        /// A model parameter, as name=value (see `pipewright simulate --help`); repeatable.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Run the demo company forward twice from the same seed, playbooks off and on, and
    /// compare founder involvement, time to first follow-up, stalls and revenue.
    #[command(after_help = COMPANY_HELP)]
    Simulate {
        /// The playbooks switched on in the second run.
        #[arg(long, default_value = "playbooks")]
        playbooks: PathBuf,
        /// Days compared, after the warm-up.
        #[arg(long, default_value_t = 180)]
        days: i64,
        /// Days both runs share with the playbooks off, so the pipeline is full when they
        /// are switched on.
        #[arg(long, default_value_t = 90)]
        warmup: i64,
        /// The demo company's seed, the same in both runs.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// When the warm-up starts (RFC 3339 or a date).
        #[arg(long, default_value = "2026-01-01")]
        from: String,
        /// A model parameter, as name=value; repeatable. The parameters and their defaults
        /// are printed with the results.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// Import events from an NDJSON or CSV file. Bad lines are reported and skipped. Into a
    /// database whose playbooks are running, the events are history: no rule acts on them and
    /// no gate judges them (the rules then act on the pipeline as it stands, every rule
    /// watched by the storm guard), unless --run-rules runs them through the rules and gates
    /// like events sent to the API (the configured folder's, when none are published yet).
    #[command(after_help = wire::CSV_COLUMNS_DOC)]
    Import {
        file: PathBuf,
        /// The file's format; by default taken from its extension (.csv, else NDJSON).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Events per committed batch.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Run the imported events through the running playbooks' rules and gates, as if they
        /// happened now.
        #[arg(long)]
        run_rules: bool,
    },
    /// What the playbooks in a folder would do to the pipeline as it stands, now and over the
    /// days ahead, rule by rule, beside the playbooks running now; which rules the storm
    /// guard would hold for approval.
    Preview {
        #[arg(default_value = "playbooks")]
        dir: PathBuf,
        /// How many days ahead to look (the configuration's engine.preview_days by default).
        #[arg(long)]
        days: Option<u32>,
        /// text or json.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// The storm guard: rules watched after they were new, changed or after an import, and
    /// the storms holding their effects until approved or discarded.
    Storms {
        #[command(subcommand)]
        command: StormCommand,
    },
    /// Switch the playbooks' rules off on purpose, or on again, for every node.
    Rules {
        #[command(subcommand)]
        command: rules::RulesCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// People who sign in to the web UI (`viewer`, `rep`, `manager`, `admin`).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Print the JSON Schema of playbook files (for editor completion and validation).
    Schema,
    /// Explain, for every rule, what it did and would do for a deal or lead.
    Explain {
        /// `deal` or `lead`.
        kind: String,
        id: String,
    },
    /// The outbox: what the rules decided to send and how delivery went.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Tasks and escalations created for people.
    Tasks {
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// What the monitor raised about the automation itself: a rule that stopped firing, a
    /// channel failing, dead letters, a storm held, a background loop that stopped.
    Alarms {
        #[command(subcommand)]
        command: alarms::AlarmCommand,
    },
    /// The exceptions inbox: what the playbooks routed to a person, and acting on it.
    Exceptions {
        #[command(subcommand)]
        command: ExceptionCommand,
    },
    /// Sequences: enrolments, results per variant, pauses and the suppression list.
    Sequences {
        #[command(subcommand)]
        command: SequenceCommand,
    },
    /// Reports on the stored history.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Propose rules from the patterns in which key people stepped in: a playbook to review,
    /// edit and backtest, each rule with its support and a drafted why.
    Suggest {
        #[command(flatten)]
        window: Window,
        /// Fewer interventions than this make no pattern.
        #[arg(long, default_value_t = 3)]
        min_support: u32,
        /// yaml (a playbook file) or json (the patterns).
        #[arg(long, default_value = "yaml")]
        format: String,
    },
    /// Deals at risk: the open deals ranked by value at risk with their warnings, the model the
    /// score runs on, and how well it foresaw the deals that were lost.
    Risk {
        #[command(subcommand)]
        command: RiskCommand,
    },
    /// Rebuild every record's derived state from the event log (state is a cache of the log).
    Refold,
    /// Bring the database schema up to this version of pipewright (every node also does this
    /// when it starts; run it first when upgrading several nodes).
    Migrate,
    /// Check the playbooks in a folder and report every problem with file:line:column. Chat
    /// channels are checked against the configuration (`--config`; without it the defaults,
    /// which configure none).
    Check {
        #[arg(default_value = "playbooks")]
        dir: PathBuf,
    },
    /// Write the handbook: what the playbooks do stage by stage and why, the gates, the
    /// objection scripts and assets, every decision tree and sequence.
    Handbook {
        #[arg(default_value = "playbooks")]
        dir: PathBuf,
        /// markdown or html.
        #[arg(long, default_value = "markdown", value_parser = ["markdown", "html"])]
        format: String,
    },
    /// What the playbooks in a folder would have done on a history (the stored log, or a file),
    /// replayed in virtual time with nothing delivered: per rule, its firings (per week, on
    /// which records), how those deals ended against the others, the lead time to the close,
    /// and the interventions it would have come before.
    Backtest {
        /// The playbooks to try.
        #[arg(long, default_value = "playbooks")]
        playbooks: PathBuf,
        /// NDJSON events to replay instead of the stored log.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Another playbook folder (the change): show what fires differently, rule by rule
        /// and record by record, from --playbooks to this one.
        #[arg(long)]
        compare: Option<PathBuf>,
        /// Count firings from this moment (RFC 3339 or a date).
        #[arg(long)]
        from: Option<String>,
        /// The history's end (default: just after its last event, so a file gives the same
        /// report every time).
        #[arg(long)]
        to: Option<String>,
        /// A firing this long before an intervention came first.
        #[arg(long, default_value = "14d")]
        within: String,
        #[arg(long, default_value = "table", value_parser = ["table", "json", "csv"])]
        format: String,
    },
    /// Decision trees: list them, or walk one for a deal.
    Tree {
        #[command(subcommand)]
        command: TreeCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TreeCommand {
    /// The decision trees of the running playbooks, with their questions.
    List,
    /// Walk a tree for a deal: every question not answered with --answer is asked on standard
    /// input (a choice by its number or its words). Once it ends in a recommendation, the
    /// answers are written to the deal's fields; a walk that stops before writes nothing.
    Walk {
        tree: String,
        #[arg(long)]
        deal: String,
        /// Who is on the call (a person id).
        #[arg(long)]
        by: String,
        /// QUESTION=ANSWER, as many as needed.
        #[arg(long = "answer", value_name = "QUESTION=ANSWER")]
        answers: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum RiskCommand {
    /// The open deals at risk, riskiest value (amount × score) first, each warning in words.
    Deals {
        /// Only this owner's deals.
        #[arg(long)]
        owner: Option<String>,
        /// Only deals scoring at least this (default: the playbooks' threshold).
        #[arg(long)]
        min_score: Option<f64>,
        /// Every open deal, whatever its score.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// What the score runs on: thresholds, late stages, won deals' time in each stage, and the
    /// weights — rule-based, or fitted and on how much data.
    Model {
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// On the stored closed deals, learned from the oldest and judged on the newer: how far
    /// ahead the warnings flagged the deals that were lost, precision and recall at the
    /// threshold, and the ROC AUC of the rule-based and the fitted score.
    Evaluate {
        /// The share of closed deals learned from (the oldest by close).
        #[arg(long, default_value_t = 0.7)]
        split: f64,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
}

#[derive(Subcommand, Debug)]
enum ReportCommand {
    /// How often key people still step in on deals they do not own, why, where, with what
    /// money behind it, which deals wait on them, and what the playbooks cover.
    #[command(after_long_help = heroics::DEFINITIONS)]
    Heroics {
        #[command(flatten)]
        window: Window,
        /// Compare before and after this moment (e.g. a playbook's go-live).
        #[arg(long)]
        split_at: Option<String>,
        /// After a rule fired, an intervention within this long means a human still stepped in.
        #[arg(long, default_value = "14d")]
        follow_within: String,
        /// table, json or csv.
        #[arg(long, default_value = "table")]
        format: String,
        /// With --format csv: months, people, reasons, stages, waiting, coverage or
        /// interventions.
        #[arg(long, default_value = "months")]
        section: String,
    },
    /// For each asset and the use case it was sent for: how often the deal advanced or the
    /// buyer replied soon after, beside similar deals that were not sent it.
    #[command(after_long_help = heroics::DEFINITIONS)]
    Assets {
        /// Sends from this moment count.
        #[arg(long)]
        from: Option<String>,
        /// … up to this moment, exclusive (default: now).
        #[arg(long)]
        to: Option<String>,
        /// An advance or a reply this long after a send counts.
        #[arg(long, default_value = "14d")]
        within: String,
        /// table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
}

/// The period, the person and what counts, shared by the report and suggestions. Times are
/// RFC 3339 or a date (midnight UTC); lengths are spans such as 14d or 36h.
#[derive(Debug, clap::Args)]
struct Window {
    /// Count deals closed and interventions begun from this moment.
    #[arg(long)]
    from: Option<String>,
    /// … up to this moment, exclusive; later events are not read (default: now).
    #[arg(long)]
    to: Option<String>,
    /// Only this key person's interventions.
    #[arg(long)]
    person: Option<String>,
    /// Touches closer than this are one intervention.
    #[arg(long, default_value = "2d")]
    merge_within: String,
    /// An objection this recent is an intervention's reason.
    #[arg(long, default_value = "14d")]
    objection_within: String,
    /// A deal this long without activity had gone quiet.
    #[arg(long, default_value = "5d")]
    quiet_after: String,
    /// A deal this long in its stage was stuck.
    #[arg(long, default_value = "14d")]
    stuck_after: String,
}

impl Window {
    fn params(&self) -> server::heroics::HeroicsParams {
        server::heroics::HeroicsParams {
            from: self.from.clone(),
            to: self.to.clone(),
            person: self.person.clone(),
            merge_within: Some(self.merge_within.clone()),
            objection_within: Some(self.objection_within.clone()),
            quiet_after: Some(self.quiet_after.clone()),
            stuck_after: Some(self.stuck_after.clone()),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Ndjson,
    Csv,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print its secret (shown only this once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value = "reader")]
        role: RoleArg,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id; it stops working at once.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user (the first admin, say). The password is read from the first line of standard
    /// input, so it is never in the shell's history: `pipewright user create … < secret.txt`.
    Create {
        /// Their email address, also their person id in events.
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// viewer (reads), rep (acts on their own exceptions, walks trees), manager (acts on
        /// anyone's), admin.
        #[arg(long, default_value = "viewer", value_parser = ["viewer", "rep", "manager", "admin"])]
        role: String,
        /// Replace the name, role and password of an existing user (ending their sessions).
        #[arg(long)]
        replace: bool,
    },
    /// List users (never their passwords).
    List,
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// List effects, oldest first.
    List {
        /// pending, delivering, delivered, dry_run, dead, cancelled, shadow, blocked, held or
        /// overruled.
        #[arg(long)]
        status: Option<String>,
        /// email, task, internal, sequence, chat:NAME or webhook:HOST.
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One effect: its action, rendered message and every attempt.
    Show { key: String },
    /// Put a dead or cancelled effect back in line, with a fresh attempt budget.
    Retry { key: String },
    /// Cancel a pending or dead effect; it is never delivered.
    Cancel { key: String },
}

#[derive(Debug, Subcommand)]
enum TaskCommand {
    /// List tasks, newest first.
    List {
        #[arg(long)]
        assignee: Option<String>,
        /// open or done.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Mark a task done.
    Done { id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum StormCommand {
    /// List storms, newest first.
    List {
        /// open (watching or holding, the default), holding, watching, approved, discarded,
        /// ended, or all.
        #[arg(long, default_value = "open")]
        status: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One storm: what the rule would do, and some of the effects it holds.
    Show { id: String },
    /// Let the held effects go out now; the rule is no longer watched.
    Approve {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Cancel the held effects (and what the rule decides for moments before now while it
    /// would have been watched).
    Discard {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ExceptionCommand {
    /// List exceptions, newest first: a person's inbox with --assignee.
    List {
        #[arg(long)]
        assignee: Option<String>,
        /// open, acknowledged, resolved or unresolved (the default: open or acknowledged).
        #[arg(long, default_value = "unresolved")]
        status: String,
        /// Only this deal's.
        #[arg(long)]
        deal: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One exception: its context and everything that happened to it.
    Show { id: String },
    /// Take an exception: its escalation stops with you.
    Ack {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Resolve an exception, saying how; on a deal it is logged as your intervention.
    Resolve {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        resolution: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Give an exception to another person.
    Reassign {
        id: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SequenceCommand {
    /// List enrolments, newest first.
    Enrolments {
        /// Only this deal's.
        #[arg(long)]
        deal: Option<String>,
        #[arg(long)]
        sequence: Option<String>,
        /// active, paused or ended.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Reply rates per step and A/B variant of a sequence.
    Results { sequence: String },
    /// Pause every sequence, or one owner's (out of office).
    Pause {
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
    /// End a pause: each enrolment runs its next step once, then keeps its spacing.
    Resume {
        #[arg(long)]
        owner: Option<String>,
    },
    /// Put an address (or @domain) on the suppression list.
    Suppress {
        address: String,
        /// do_not_contact, unsubscribed or bounced.
        #[arg(long, default_value = "do_not_contact")]
        reason: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Take an address (or @domain) off the suppression list.
    Unsuppress { address: String },
    /// The suppression list.
    Suppressions,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Reader,
    Writer,
    Admin,
}

impl From<RoleArg> for TokenRole {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Reader => TokenRole::Reader,
            RoleArg::Writer => TokenRole::Writer,
            RoleArg::Admin => TokenRole::Admin,
        }
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the documented default configuration.
    Default,
}

/// Exit codes: 0 success, 1 failure, 2 usage error (from clap), 3 import finished with
/// rejected lines, 4 the playbooks have errors (warnings alone do not fail).
const EXIT_REJECTED: u8 = 3;

/// What `company` and `simulate` print after their options.
const COMPANY_HELP: &str = "The demo company's model and every assumption in it: docs/company.md. \
Its parameters are printed with the simulation's results and changed with --set name=value.";

/// A moment given with `--FLAG` (RFC 3339 or a date), its error naming the flag.
fn flag_moment(flag: &'static str, text: &str) -> anyhow::Result<domain::Timestamp> {
    server::heroics::moment(flag, text).map_err(|e| anyhow::anyhow!("--{flag}: {}", e.message))
}

/// How many days of the demo company's history: at least one.
fn history_days(days: i64) -> anyhow::Result<i64> {
    if days < 1 {
        anyhow::bail!("--days: expected a number of days of 1 or more, got {days}");
    }
    Ok(days)
}

/// The demo company's model with a seed and `--set name=value` changes.
fn model_with(seed: u64, set: &[String]) -> anyhow::Result<company::Model> {
    let mut model = company::Model {
        seed,
        ..company::Model::default()
    };
    for change in set {
        let (name, value) = change
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--set: expected name=value, got {change:?}"))?;
        model
            .set(name.trim(), value)
            .map_err(|e| anyhow::anyhow!("--set: {e}"))?;
    }
    Ok(model)
}
const EXIT_PLAYBOOK_PROBLEMS: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn settings(cli: &Cli, demo: bool) -> anyhow::Result<Settings> {
    let mut settings =
        Settings::load(cli.config.as_deref()).context("cannot load the configuration")?;
    if demo && cli.database.is_none() && std::env::var_os("PIPEWRIGHT_DATABASE__URL").is_none() {
        settings.database.url = "sqlite:pipewright-demo.db".into();
    }
    // The demo sends nothing: messages are rendered into the outbox to look at.
    if demo && cli.config.is_none() && std::env::var_os("PIPEWRIGHT_DELIVERY__DRY_RUN").is_none() {
        settings.delivery.dry_run = true;
    }
    if let Some(url) = &cli.database {
        settings.database.url = url.clone();
    }
    Ok(settings)
}

/// Links in messages point at the address served, unless a public address is configured.
fn link_to_listen(settings: &mut Settings) {
    if settings.delivery.public_url == Settings::default().delivery.public_url {
        settings.delivery.public_url = format!("http://{}", settings.server.listen);
    }
}

fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter: Targets = settings
        .log
        .level
        .parse()
        .with_context(|| format!("log.level {:?} is not a valid filter", settings.log.level))?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match settings.log.format {
        LogFormat::Json => registry.with(fmt.json()).init(),
        LogFormat::Text => registry.with(fmt).init(),
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    store::connect(
        &settings.database.url,
        &settings.database.connect_options(),
        Arc::new(SystemClock),
    )
    .with_context(|| format!("cannot open the database {}", settings.database.url))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            out.write_all(server::DEFAULT_CONFIG.as_bytes())?;
        }
        Command::Check { dir } => {
            let targets = settings(&cli, false)?.playbook_targets();
            let loaded = playbook::load_dir_with(dir, &targets);
            // Warnings are printed with the errors; only errors fail the check.
            for d in &loaded.diagnostics {
                writeln!(out, "{d}")?;
            }
            let errors = loaded.errors();
            let warnings = match loaded.diagnostics.len() - errors {
                0 => String::new(),
                1 => ", 1 warning".to_owned(),
                n => format!(", {n} warnings"),
            };
            match loaded.set {
                Some(set) => {
                    let rules: usize = set.playbooks.iter().map(|p| p.rules.len()).sum();
                    writeln!(
                        out,
                        "{}: {} playbooks, {rules} rules, no problems{warnings} (version {})",
                        dir.display(),
                        set.playbooks.len(),
                        set.version
                    )?;
                }
                None => {
                    let s = if errors == 1 { "" } else { "s" };
                    writeln!(out, "{errors} problem{s}{warnings}")?;
                    return Ok(ExitCode::from(EXIT_PLAYBOOK_PROBLEMS));
                }
            }
        }
        Command::Handbook { dir, format } => {
            let loaded = playbook::load_dir(dir);
            let Some(set) = loaded.set else {
                for d in &loaded.diagnostics {
                    writeln!(out, "{d}")?;
                }
                return Ok(ExitCode::from(EXIT_PLAYBOOK_PROBLEMS));
            };
            let text = if format == "html" {
                playbook::handbook::html(&set)
            } else {
                playbook::handbook::markdown(&set)
            };
            out.write_all(text.as_bytes())?;
        }
        Command::Backtest {
            playbooks,
            events,
            compare,
            from,
            to,
            within,
            format,
        } => {
            let mut sets = Vec::new();
            for dir in std::iter::once(playbooks).chain(compare.as_ref()) {
                let loaded = playbook::load_dir(dir);
                let Some(set) = loaded.set else {
                    for d in &loaded.diagnostics {
                        writeln!(out, "{d}")?;
                    }
                    return Ok(ExitCode::from(EXIT_PLAYBOOK_PROBLEMS));
                };
                sets.push(Arc::new(set));
            }
            let mut history: Vec<(i64, domain::Event)> = match events {
                Some(file) => {
                    let text = std::fs::read_to_string(file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let mut found = Vec::new();
                    for (i, line) in text
                        .lines()
                        .enumerate()
                        .filter(|(_, l)| !l.trim().is_empty())
                    {
                        let new = wire::parse_one(line).map_err(|p| {
                            anyhow::anyhow!("{}: line {}: {p}", file.display(), i + 1)
                        })?;
                        let at = new.occurred_at;
                        let id = domain::EventId(uuid_for(i));
                        found.push((i as i64, new.stamp(id, at)));
                    }
                    found
                }
                None => {
                    let settings = settings(&cli, false)?;
                    init_logging(&settings)?;
                    runtime()?.block_on(async {
                        let store = open_store(&settings)?;
                        let mut all = Vec::new();
                        let mut after = 0;
                        loop {
                            let page = store.events_after(after, 10_000).await?;
                            let Some((last, _)) = page.last() else { break };
                            after = *last;
                            all.extend(page);
                        }
                        anyhow::Ok(all)
                    })?
                }
            };
            history.sort_by_key(|(seq, e)| (e.occurred_at, *seq));
            let events: Vec<domain::Event> = history.into_iter().map(|(_, e)| e).collect();
            let moment = flag_moment;
            let end = match to {
                Some(t) => moment("to", t)?,
                None => events
                    .last()
                    .map(|e| domain::Timestamp::from_millis(e.occurred_at.as_millis() + 1))
                    .unwrap_or_default(),
            };
            let within = playbook::parse_span(within).ok_or_else(|| {
                anyhow::anyhow!("--within: expected a length such as 14d, got {within:?}")
            })?;
            let options = backtest::Options {
                from: from.as_deref().map(|f| moment("from", f)).transpose()?,
                to: end,
                within: within.0,
            };
            // Long replays show how far they are (on a terminal only).
            let bar = import::progress((events.len() * sets.len()) as u64, false);
            bar.set_message("events replayed");
            let mut reports: Vec<backtest::Report> = Vec::new();
            for (i, set) in sets.into_iter().enumerate() {
                let offset = (i * events.len()) as u64;
                let report = backtest::run_with(set, &events, &options, &mut |n| {
                    bar.set_position(offset + n)
                });
                reports.push(report);
            }
            bar.finish_and_clear();
            let text = match (&reports[..], format.as_str()) {
                ([before, after], format) => {
                    let changes = backtest::compare(before, after);
                    match format {
                        "json" => {
                            let v = serde_json::json!({
                                "before": before.version,
                                "after": after.version,
                                "changes": changes,
                            });
                            serde_json::to_string_pretty(&v)? + "\n"
                        }
                        "csv" => backtest::compare_csv(&changes),
                        _ => format!(
                            "playbooks {} → {}\n{}",
                            before.version,
                            after.version,
                            backtest::compare_table(&changes)
                        ),
                    }
                }
                ([report, ..], "json") => serde_json::to_string_pretty(report)? + "\n",
                ([report, ..], "csv") => backtest::csv(report),
                ([report, ..], _) => backtest::table(report),
                ([], _) => String::new(),
            };
            out.write_all(text.as_bytes())?;
        }
        Command::Tree { command } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            runtime()?.block_on(tree(&settings, command, &mut out))?;
        }
        Command::Explain { kind, id } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            runtime()?.block_on(explain(&settings, kind, id, &mut out))?;
        }
        Command::Schema => {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&playbook::json_schema())?
            )?;
        }
        Command::Openapi => {
            writeln!(out, "{}", serde_json::to_string_pretty(&server::openapi())?)?;
        }
        Command::Serve { listen } => {
            let mut settings = settings(&cli, false)?;
            if let Some(listen) = listen {
                settings.server.listen = listen.clone();
            }
            init_logging(&settings)?;
            link_to_listen(&mut settings);
            runtime()?.block_on(serve(settings, None))?;
        }
        Command::Demo {
            listen,
            seed,
            days,
            to,
        } => {
            let mut settings = settings(&cli, true)?;
            if let Some(listen) = listen {
                settings.server.listen = listen.clone();
            }
            init_logging(&settings)?;
            link_to_listen(&mut settings);
            let model = company::Model {
                seed: *seed,
                ..company::Model::default()
            };
            let days = history_days(*days)?;
            let to = to.as_deref().map(|t| flag_moment("to", t)).transpose()?;
            runtime()?.block_on(serve(settings, Some((model, days, to))))?;
        }
        Command::Company {
            seed,
            days,
            to,
            set,
        } => {
            let model = model_with(*seed, set)?;
            let to = match to {
                Some(t) => flag_moment("to", t)?,
                None => clock::Clock::now(&SystemClock),
            };
            let history = company::history(&model, to, history_days(*days)?);
            out.write_all(history.ndjson().as_bytes())?;
        }
        Command::Simulate {
            playbooks,
            days,
            warmup,
            seed,
            from,
            set,
            format,
        } => {
            let model = model_with(*seed, set)?;
            let from = flag_moment("from", from)?;
            if *days <= 0 || *warmup < 0 {
                anyhow::bail!("--days must be more than 0 and --warmup 0 or more");
            }
            let loaded = playbook::load_dir(playbooks);
            let Some(set) = loaded.set else {
                for d in &loaded.diagnostics {
                    writeln!(out, "{d}")?;
                }
                return Ok(ExitCode::from(EXIT_PLAYBOOK_PROBLEMS));
            };
            let engine = engine::Engine::new(Arc::new(set));
            let simulation = company::simulate(&model, &engine, from, *warmup, *days);
            if format == "json" {
                serde_json::to_writer_pretty(&mut out, &simulation)?;
                writeln!(out)?;
            } else {
                out.write_all(company::table(&simulation).as_bytes())?;
            }
        }
        Command::Import {
            file,
            format,
            batch,
            run_rules,
        } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            let format = format.unwrap_or(match file.extension().and_then(|e| e.to_str()) {
                Some(ext) if ext.eq_ignore_ascii_case("csv") => Format::Csv,
                _ => Format::Ndjson,
            });
            let csv = matches!(format, Format::Csv);
            let (summary, note) =
                runtime()?.block_on(import(&settings, file, csv, *batch, *run_rules))?;
            summary.print(&mut out)?;
            out.write_all(note.as_bytes())?;
            if summary.rejected > 0 {
                return Ok(ExitCode::from(EXIT_REJECTED));
            }
        }
        Command::Token { command } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            runtime()?.block_on(tokens(&settings, command, &mut out))?;
        }
        Command::User { command } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            runtime()?.block_on(users(&settings, command, &mut out))?;
        }
        Command::Migrate => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            let url = &settings.database.url;
            let done = store::migrate(url, &settings.database.connect_options())
                .with_context(|| format!("cannot migrate the database {url}"))?;
            match done.applied.as_slice() {
                [] => writeln!(out, "schema at version {}; nothing to apply", done.to)?,
                applied => writeln!(
                    out,
                    "schema at version {} (was {}); applied {}",
                    done.to,
                    done.from,
                    applied
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )?,
            }
        }
        Command::Refold => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            let (examined, corrected) = runtime()?.block_on(async {
                let store = open_store(&settings)?;
                let (mut examined, mut corrected, mut cursor) = (0, 0, 0);
                loop {
                    let pass = store.refold_records(cursor, 1000).await?;
                    examined += pass.examined;
                    corrected += pass.corrected;
                    match pass.next {
                        Some(next) => cursor = next,
                        None => break,
                    }
                }
                anyhow::Ok((examined, corrected))
            })?;
            writeln!(out, "examined {examined} records; corrected {corrected}")?;
        }
        Command::Outbox { command } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            runtime()?.block_on(outbox(&settings, command, &mut out))?;
        }
        Command::Tasks { command } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            runtime()?.block_on(tasks(&settings, command, &mut out))?;
        }
        Command::Preview { dir, days, format } => {
            let mut settings = settings(&cli, false)?;
            init_logging(&settings)?;
            if let Some(days) = days {
                settings.engine.preview_days = *days;
            }
            runtime()?.block_on(preview(&settings, dir, *format, &mut out))?;
        }
        Command::Storms { command } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            runtime()?.block_on(storms(&settings, command, &mut out))?;
        }
        Command::Rules { command } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            runtime()?.block_on(async {
                let store = open_store(&settings)?;
                rules::run(&settings, store, command, &mut out).await
            })?;
        }
        Command::Alarms { command } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            runtime()?.block_on(async {
                let store = open_store(&settings)?;
                alarms::run(&*store, command, &mut out).await
            })?;
        }
        Command::Exceptions { command } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            runtime()?.block_on(exceptions(&settings, command, &mut out))?;
        }
        Command::Sequences { command } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            runtime()?.block_on(sequences(&settings, command, &mut out))?;
        }
        Command::Risk { command } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            runtime()?.block_on(risk(&settings, command, &mut out))?;
        }
        Command::Report {
            command:
                ReportCommand::Heroics {
                    window,
                    split_at,
                    follow_within,
                    format,
                    section,
                },
        } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            let params = server::heroics::HeroicsParams {
                split_at: split_at.clone(),
                follow_within: Some(follow_within.clone()),
                ..window.params()
            };
            let format = server::heroics::ReportFormat::parse(format, section).map_err(flag)?;
            let report = runtime()?.block_on(async {
                let store = open_store(&settings)?;
                let running = running_playbooks(&*store).await?;
                let now = clock::Clock::now(&clock::SystemClock);
                server::heroics::report(&*store, running, &params, now)
                    .await
                    .map_err(failed)
            })?;
            out.write_all(format.render(&report).1.as_bytes())?;
        }
        Command::Report {
            command:
                ReportCommand::Assets {
                    from,
                    to,
                    within,
                    format,
                },
        } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            let params = server::heroics::HeroicsParams {
                from: from.clone(),
                to: to.clone(),
                within: Some(within.clone()),
                ..Default::default()
            };
            let format = server::heroics::AssetFormat::parse(format).map_err(flag)?;
            let (rows, days) = runtime()?.block_on(async {
                let store = open_store(&settings)?;
                let running = running_playbooks(&*store).await?;
                let now = clock::Clock::now(&clock::SystemClock);
                server::heroics::asset_report(&*store, running, &params, now)
                    .await
                    .map_err(failed)
            })?;
            out.write_all(format.render(&rows, days).1.as_bytes())?;
        }
        Command::Suggest {
            window,
            min_support,
            format,
        } => {
            let settings = settings(&cli, false)?;
            init_logging(&settings)?;
            let params = server::heroics::HeroicsParams {
                min_support: Some(*min_support),
                ..window.params()
            };
            let format = server::heroics::SuggestFormat::parse(format).map_err(flag)?;
            let (found, owner) = runtime()?.block_on(async {
                let store = open_store(&settings)?;
                let now = clock::Clock::now(&clock::SystemClock);
                server::heroics::suggestions(&*store, &params, now)
                    .await
                    .map_err(failed)
            })?;
            out.write_all(format.render(&found, &owner).1.as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn tokens(
    settings: &Settings,
    command: &TokenCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let store = open_store(settings)?;
    match command {
        TokenCommand::Create { name, role } => {
            let generated =
                server::generate_token(name, (*role).into()).context("no randomness available")?;
            let info = store.create_token(generated.stored).await?;
            writeln!(
                out,
                "created token {} ({}, role {})",
                info.id,
                info.name,
                info.role.as_str()
            )?;
            writeln!(
                out,
                "secret (shown once; store it now): {}",
                generated.secret
            )?;
        }
        TokenCommand::List => {
            writeln!(
                out,
                "{:<18} {:<8} {:<26} {:<26} NAME",
                "ID", "ROLE", "CREATED", "REVOKED"
            )?;
            for t in store.tokens().await? {
                let revoked = t
                    .revoked_at
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "{:<18} {:<8} {:<26} {:<26} {}",
                    t.id,
                    t.role.as_str(),
                    t.created_at,
                    revoked,
                    t.name
                )?;
            }
        }
        TokenCommand::Revoke { id } => {
            let t = store
                .revoke_token(id)
                .await
                .with_context(|| format!("cannot revoke {id}"))?;
            writeln!(out, "revoked {} ({})", t.id, t.name)?;
        }
    }
    Ok(())
}

fn print_effect(out: &mut impl Write, e: &store::StoredEffect) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<32} {:<10} {:<22} {:>3} {:<24} {:<14} {}",
        e.key,
        e.status,
        e.channel,
        e.attempts,
        e.next_at.to_string(),
        e.record.to_string(),
        e.rule
    )
}

async fn outbox(
    settings: &Settings,
    command: &OutboxCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let store = open_store(settings)?;
    match command {
        OutboxCommand::List {
            status,
            channel,
            limit,
        } => {
            let items = store
                .outbox(&store::OutboxQuery {
                    status: status.clone(),
                    channel: channel.clone(),
                    limit: *limit,
                    ..store::OutboxQuery::default()
                })
                .await?;
            writeln!(
                out,
                "{:<32} {:<10} {:<22} {:>3} {:<24} {:<14} RULE",
                "KEY", "STATUS", "CHANNEL", "TRY", "NEXT/DUE", "RECORD"
            )?;
            for e in &items {
                print_effect(out, e)?;
            }
        }
        OutboxCommand::Show { key } => {
            let (effect, attempts) = store
                .effect(key)
                .await?
                .with_context(|| format!("no effect {key}"))?;
            writeln!(out, "{}", serde_json::to_string_pretty(&effect)?)?;
            for a in attempts {
                // An attempt is on record before it is made: one still `unknown` after its
                // lease is one a node stopped in the middle of.
                let outcome = match a.outcome.as_str() {
                    "unknown" => {
                        "outcome unknown (under way, or its node stopped mid-send; a repeat carries the same key)"
                    }
                    other => other,
                };
                writeln!(
                    out,
                    "attempt {} by {} at {}: {} {}",
                    a.attempt,
                    a.node,
                    a.started_at,
                    outcome,
                    a.detail.unwrap_or_default()
                )?;
            }
        }
        OutboxCommand::Retry { key } => {
            let e = store
                .retry_effect(key)
                .await
                .with_context(|| format!("cannot retry {key}"))?;
            print_effect(out, &e)?;
        }
        OutboxCommand::Cancel { key } => {
            let e = store
                .cancel_effect(key)
                .await
                .with_context(|| format!("cannot cancel {key}"))?;
            print_effect(out, &e)?;
        }
    }
    Ok(())
}

async fn sequences(
    settings: &Settings,
    command: &SequenceCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let store = open_store(settings)?;
    let scope = |owner: &Option<String>| match owner {
        Some(o) => store::PauseScope::Owner(o.clone()),
        None => store::PauseScope::Global,
    };
    match command {
        SequenceCommand::Enrolments {
            deal,
            sequence,
            status,
            limit,
        } => {
            let record = deal
                .as_ref()
                .map(|d| {
                    domain::RecordId::parse(d.clone())
                        .map(|id| domain::RecordKey::new(domain::RecordKind::Deal, id))
                })
                .transpose()?;
            let list = store
                .enrolments(&store::EnrolmentQuery {
                    record,
                    contact: None,
                    sequence: sequence.clone(),
                    status: status.clone(),
                    limit: *limit,
                })
                .await?;
            writeln!(
                out,
                "{:<32} {:<24} {:<16} {:<16} {:<7} {:>4} {:<24} END",
                "ID", "SEQUENCE", "RECORD", "CONTACT", "STATUS", "STEP", "DUE"
            )?;
            for e in list {
                writeln!(
                    out,
                    "{:<32} {:<24} {:<16} {:<16} {:<7} {:>4} {:<24} {}",
                    e.id,
                    e.sequence,
                    e.record.to_string(),
                    e.contact.to_string(),
                    e.status,
                    e.step,
                    e.due_at.map(|t| t.to_string()).unwrap_or_default(),
                    e.end_reason.unwrap_or_default()
                )?;
            }
        }
        SequenceCommand::Results { sequence } => {
            writeln!(
                out,
                "{:<16} {:<24} {:>6} {:>8} {:>6}",
                "STEP", "VARIANT", "SENT", "REPLIED", "RATE"
            )?;
            for r in store.sequence_results(sequence).await? {
                writeln!(
                    out,
                    "{:<16} {:<24} {:>6} {:>8} {:>5.1}%",
                    r.step,
                    r.variant,
                    r.sent,
                    r.replied,
                    r.reply_rate * 100.0
                )?;
            }
        }
        SequenceCommand::Pause { owner, note } => {
            let scope = scope(owner);
            let n = store.pause_sequences(scope.clone(), note.clone()).await?;
            writeln!(out, "paused {}: {n} enrolments", scope.key())?;
        }
        SequenceCommand::Resume { owner } => {
            let scope = scope(owner);
            let n = store.resume_sequences(scope.clone()).await?;
            writeln!(out, "resumed {}: {n} enrolments", scope.key())?;
        }
        SequenceCommand::Suppress {
            address,
            reason,
            note,
        } => {
            store.suppress(address, reason, note.clone()).await?;
            writeln!(
                out,
                "suppressed {} ({reason})",
                address.trim().to_lowercase()
            )?;
        }
        SequenceCommand::Unsuppress { address } => {
            anyhow::ensure!(
                store.unsuppress(address).await?,
                "{address} is not on the suppression list"
            );
            writeln!(out, "removed {address}")?;
        }
        SequenceCommand::Suppressions => {
            for s in store.suppressions(100_000).await? {
                writeln!(
                    out,
                    "{:<40} {:<15} {} {}",
                    s.address,
                    s.reason,
                    s.created_at,
                    s.note.unwrap_or_default()
                )?;
            }
        }
    }
    Ok(())
}

async fn tasks(
    settings: &Settings,
    command: &TaskCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let store = open_store(settings)?;
    let print = |out: &mut dyn Write, t: &store::Task| {
        writeln!(
            out,
            "{:<32} {:<5} {:<10} {:<24} {:<14} {}",
            t.id,
            t.status,
            t.kind,
            t.assignee,
            t.record.to_string(),
            t.title
        )
    };
    match command {
        TaskCommand::List {
            assignee,
            status,
            limit,
        } => {
            for t in store
                .tasks(&store::TaskQuery {
                    assignee: assignee.clone(),
                    status: status.clone(),
                    limit: *limit,
                })
                .await?
            {
                print(out, &t)?;
            }
        }
        TaskCommand::Done { id } => {
            let t = store
                .complete_task(id)
                .await
                .with_context(|| format!("cannot complete {id}"))?;
            print(out, &t)?;
        }
    }
    Ok(())
}

/// The id of the `i`th event of a file: the same for the same file, run after run.
fn uuid_for(i: usize) -> uuid::Uuid {
    uuid::Uuid::from_u128(i as u128 + 1)
}

/// One question as the CLI asks it: the question, its help, and the choices numbered.
fn ask(out: &mut dyn Write, q: &playbook::Question) -> std::io::Result<()> {
    writeln!(out, "{}", q.ask)?;
    if let Some(help) = &q.help {
        writeln!(out, "  ({help})")?;
    }
    match &q.reply {
        playbook::Reply::Choice { answers } => {
            for (i, a) in answers.iter().enumerate() {
                writeln!(out, "  {}. {}", i + 1, a.answer)?;
            }
        }
        playbook::Reply::Input { input, .. } => {
            let kind = serde_json::to_value(input).unwrap_or_default();
            writeln!(out, "  (a {})", kind.as_str().unwrap_or("value"))?;
        }
    }
    write!(out, "> ")?;
    out.flush()
}

async fn tree(
    settings: &Settings,
    command: &TreeCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let engine = load_engine(settings)?.ok_or_else(|| {
        anyhow::anyhow!("no playbooks in {}", settings.engine.playbooks.display())
    })?;
    let set = Arc::clone(engine.playbooks());
    match command {
        TreeCommand::List => {
            for t in set.playbooks.iter().flat_map(|p| &p.trees) {
                let stage = t
                    .stage
                    .as_ref()
                    .map(|s| format!(" [{s}]"))
                    .unwrap_or_default();
                writeln!(out, "{}{stage}: {}", t.name, t.title)?;
                for q in &t.questions {
                    let field = q
                        .field
                        .as_ref()
                        .map(|f| format!(" → deal.fields.{f}"))
                        .unwrap_or_default();
                    writeln!(out, "  {}: {}{field}", q.id, q.ask)?;
                }
            }
        }
        TreeCommand::Walk {
            tree,
            deal,
            by,
            answers,
        } => {
            let t = set
                .tree(tree)
                .ok_or_else(|| anyhow::anyhow!("no decision tree {tree:?} in the playbooks"))?;
            let mut given = std::collections::BTreeMap::new();
            for a in answers {
                let (q, v) = a.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!("--answer: expected QUESTION=ANSWER, not {a:?}")
                })?;
                given.insert(q.trim().to_owned(), v.trim().to_owned());
            }
            let deal_id = domain::RecordId::parse(deal.clone())
                .map_err(|e| anyhow::anyhow!("--deal: {e}"))?;
            let by_id =
                domain::RecordId::parse(by.clone()).map_err(|e| anyhow::anyhow!("--by: {e}"))?;
            let store = open_store(settings)?;
            store.set_engine(Some(Arc::new(engine.clone())));
            let key = domain::RecordKey::new(domain::RecordKind::Deal, deal_id.clone());
            if store.record(&key).await?.is_none() {
                anyhow::bail!("deal {deal} not found");
            }
            let stdin = std::io::stdin();
            let walk = loop {
                let walk = t.walk(&given).map_err(|e| anyhow::anyhow!("{e}"))?;
                let Some(q) = walk.next.clone() else {
                    break walk;
                };
                ask(out, &q)?;
                let mut line = String::new();
                if stdin.read_line(&mut line)? == 0 {
                    anyhow::bail!(
                        "the walk stopped at {:?} ({}): nothing was written",
                        q.id,
                        q.ask
                    );
                }
                let line = line.trim().to_owned();
                // A choice by its number.
                let answer = match (&q.reply, line.parse::<usize>()) {
                    (playbook::Reply::Choice { answers }, Ok(n))
                        if n >= 1 && n <= answers.len() =>
                    {
                        answers[n - 1].answer.clone()
                    }
                    _ => line,
                };
                given.insert(q.id.clone(), answer);
            };
            let now = clock::Clock::now(&SystemClock);
            let id = server::trees::walk_id(tree, &deal_id, &by_id, &given, now);
            server::trees::record_walk(&*store, t, &deal_id, &by_id, &walk, &id, now).await?;
            for a in &walk.path {
                writeln!(out, "{}: {}", a.ask, a.answer)?;
            }
            if let Some(r) = &walk.recommendation {
                writeln!(out, "Recommendation: {r}")?;
            }
            let fields = serde_json::Value::Object(walk.fields());
            writeln!(out, "Wrote to {deal}: {fields}")?;
        }
    }
    Ok(())
}

/// `pipewright import`. Into a database whose playbooks run (the newest published set), the
/// events are history unless `run_rules`: stored without any rule acting on them; then every
/// rule is watched by the storm guard (held at once where its forecast on the pipeline as it
/// now stands passes its limit) and the records are armed, so the rules act on the pipeline
/// as it stands. With `run_rules`, every rule is watched first, then the events run through
/// them as events sent to the API do. What happened, in words.
async fn import(
    settings: &Settings,
    file: &Path,
    csv: bool,
    batch: usize,
    run_rules: bool,
) -> anyhow::Result<(import::Summary, String)> {
    let store = open_store(settings)?;
    let mut running = running_playbooks(&*store)
        .await?
        .map(|set| Arc::new(store::Engine::new(set)));
    // Nothing published yet: --run-rules runs the folder a server would start with.
    if running.is_none() && run_rules {
        running = load_engine(settings)?.map(Arc::new);
    }
    let guard = server::storms::GuardSettings::of(&settings.engine);
    let watch_days = guard.watch_ms / 86_400_000;
    let Some(engine) = running else {
        let summary = import::import_file(&*store, file, csv, batch).await?;
        let note = if run_rules {
            "No playbooks run on this database and none are configured, so no rule ran on the events.\n"
        } else {
            "No playbooks run on this database yet: the events are history. Once playbooks run, they act on the pipeline as it stands.\n"
        };
        return Ok((summary, note.to_owned()));
    };
    let version = engine.version().to_owned();
    if run_rules {
        server::storms::guard_import(&*store, &engine, guard, SystemClock.now()).await?;
        store.set_engine(Some(engine));
        let summary = import::import_file(&*store, file, csv, batch).await?;
        let note = format!(
            "The events ran through the running playbooks (version {version}), as if they happened now; every rule is watched by the storm guard for {watch_days} days, and one acting on more than its limit of records within an hour waits for approval (`pipewright storms`).\n"
        );
        return Ok((summary, note));
    }
    let summary = import::import_file(&*store, file, csv, batch).await?;
    let preview = server::storms::guard_import(&*store, &engine, guard, SystemClock.now()).await?;
    store.set_engine(Some(engine));
    let armed = store.arm_all(SystemClock.now(), 1_000).await?;
    let mut note = format!(
        "The events are history: no rule acted on them (give --run-rules to run them through the rules). The running playbooks (version {version}) now wait on {armed} deals and leads as they stand, every rule watched by the storm guard for {watch_days} days.\n"
    );
    let at_once: Vec<String> = preview
        .rules
        .iter()
        .filter_map(|r| {
            let f = r.forecast.as_ref().filter(|f| f.now > 0)?;
            Some(match (r.would_hold, r.limit) {
                (true, Some(limit)) => format!(
                    "{} on {} (held for approval: over its limit of {limit} within an hour)",
                    r.rule, f.now
                ),
                _ => format!("{} on {}", r.rule, f.now),
            })
        })
        .collect();
    if at_once.is_empty() {
        note.push_str("No rule acts on them at once.\n");
    } else {
        note.push_str(&format!("At once: {}.\n", at_once.join("; ")));
    }
    if preview.held().next().is_some() {
        note.push_str("Approve or discard what is held with `pipewright storms`.\n");
    }
    Ok((summary, note))
}

/// `pipewright preview`: the folder against the running playbooks, on the stored pipeline.
async fn preview(
    settings: &Settings,
    dir: &Path,
    format: OutputFormat,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let set = playbooks_in(dir, &settings.playbook_targets())?;
    let store = open_store(settings)?;
    let running = running_playbooks(&*store).await?.map(store::Engine::new);
    let new = store::Engine::new(Arc::new(set));
    let guard = server::storms::GuardSettings::of(&settings.engine);
    let preview =
        server::storms::preview(&*store, running.as_ref(), &new, guard, SystemClock.now()).await?;
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &preview)?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            let what = format!("the playbooks in {}", dir.display());
            out.write_all(server::storms::describe(&preview, &what).as_bytes())?;
        }
    }
    Ok(())
}

/// `pipewright storms`.
async fn storms(
    settings: &Settings,
    command: &StormCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let store = open_store(settings)?;
    let now = SystemClock.now();
    let print = |out: &mut dyn Write, s: &store::Storm| -> std::io::Result<()> {
        let what = match s.status.as_str() {
            "holding" => format!("holding {} effects for approval", s.held),
            "watching" => format!(
                "watched until {} (held past {} records within an hour)",
                server::storms::when(s.watch_until),
                s.limit
            ),
            "approved" | "discarded" => format!(
                "{} by {} ({} effects)",
                s.status,
                s.decided_by.as_deref().unwrap_or("someone"),
                s.held
            ),
            other => other.to_owned(),
        };
        writeln!(
            out,
            "{}  {}  {} since {}: {what}",
            s.id,
            s.rule,
            server::storms::reason_in_words(s.reason),
            server::storms::when(s.since)
        )
    };
    match command {
        StormCommand::List { status, limit } => {
            let query = store::StormQuery {
                status: (status != "all").then(|| status.clone()),
                limit: *limit,
            };
            let storms = store.storms(&query, now).await?;
            if storms.is_empty() {
                writeln!(out, "no storms ({status})")?;
            }
            for s in &storms {
                print(out, s)?;
            }
        }
        StormCommand::Show { id } => {
            let detail = server::storms::detail(&*store, id, now)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            print(out, &detail.storm)?;
            if let Some(preview) = &detail.storm.preview {
                writeln!(
                    out,
                    "forecast when it was opened: {} records at once, {} in its busiest hour",
                    preview["now"], preview["busiest_hour"]
                )?;
            }
            for e in &detail.held_effects {
                writeln!(
                    out,
                    "  held: {} {} for {} ({})",
                    e.action["kind"].as_str().unwrap_or("effect"),
                    e.key,
                    e.record.id,
                    e.trace["trigger"].as_str().unwrap_or_default()
                )?;
            }
        }
        StormCommand::Approve { id, by, note } | StormCommand::Discard { id, by, note } => {
            // Approved effects are acted on (enrolled, routed) with the running playbooks.
            store.set_engine(
                running_playbooks(&*store)
                    .await?
                    .map(|set| Arc::new(store::Engine::new(set))),
            );
            let decision = match command {
                StormCommand::Approve { .. } => store::StormDecision::Approve {
                    by: by.clone(),
                    note: note.clone(),
                },
                _ => store::StormDecision::Discard {
                    by: by.clone(),
                    note: note.clone(),
                },
            };
            let storm = store
                .decide_storm(id, decision)
                .await
                .with_context(|| format!("cannot decide storm {id}"))?;
            print(out, &storm)?;
        }
    }
    Ok(())
}

async fn exceptions(
    settings: &Settings,
    command: &ExceptionCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let store = open_store(settings)?;
    let print = |out: &mut dyn Write, e: &store::ExceptionItem| {
        let due = match (&e.due_at, &e.overdue_at) {
            (Some(d), _) => format!("due {d}"),
            (None, Some(o)) => format!("overdue since {o}"),
            _ => String::new(),
        };
        writeln!(
            out,
            "{:<32} {:<12} {:<24} {:<14} {} {due}",
            e.id,
            e.status,
            e.assignee,
            e.record.to_string(),
            e.title
        )
    };
    let act = |id: &str, action: store::ExceptionAction| {
        let store = Arc::clone(&store);
        let id = id.to_owned();
        async move {
            // A resolution's intervention runs through the rules like any event.
            store.set_engine(load_engine(settings)?.map(Arc::new));
            store
                .act_on_exception(&id, action)
                .await
                .with_context(|| format!("cannot act on exception {id}"))
        }
    };
    match command {
        ExceptionCommand::List {
            assignee,
            status,
            deal,
            limit,
        } => {
            let record = deal
                .as_ref()
                .map(|d| {
                    domain::RecordId::parse(d.clone())
                        .map(|id| domain::RecordKey::new(domain::RecordKind::Deal, id))
                        .map_err(|e| anyhow::anyhow!("--deal: {e}"))
                })
                .transpose()?;
            if !server::exceptions::STATUSES.contains(&status.as_str()) {
                anyhow::bail!(
                    "--status: expected one of {}, not {status:?}",
                    server::exceptions::STATUSES.join(", ")
                );
            }
            let query = store::ExceptionQuery {
                assignee: assignee.clone(),
                status: Some(status.clone()),
                record,
                limit: *limit,
            };
            for e in store.exceptions(&query).await? {
                print(out, &e)?;
            }
        }
        ExceptionCommand::Show { id } => {
            let (e, history) = store
                .exception(id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("exception {id} not found"))?;
            print(out, &e)?;
            writeln!(out, "reason: {}  rule: {}", e.reason, e.rule)?;
            writeln!(out, "chain: {}", e.chain.join(" → "))?;
            if let Some(why) = e.context["trace"]["why"].as_str() {
                writeln!(out, "why: {why}")?;
            }
            if let Some(r) = &e.resolution {
                writeln!(out, "resolution: {r}")?;
            }
            for h in history {
                writeln!(
                    out,
                    "  {} {:<12} {:<24} {}",
                    h.at,
                    h.action,
                    h.by.or(h.assignee).unwrap_or_default(),
                    h.note.unwrap_or_default()
                )?;
            }
        }
        ExceptionCommand::Ack { id, by, note } => {
            let action = store::ExceptionAction::Acknowledge {
                by: by.clone(),
                note: note.clone(),
            };
            print(out, &act(id, action).await?)?;
        }
        ExceptionCommand::Resolve {
            id,
            by,
            resolution,
            note,
        } => {
            let action = store::ExceptionAction::Resolve {
                by: by.clone(),
                resolution: resolution.clone(),
                note: note.clone(),
            };
            print(out, &act(id, action).await?)?;
        }
        ExceptionCommand::Reassign { id, to, by, note } => {
            let action = store::ExceptionAction::Reassign {
                to: to.clone(),
                by: by.clone(),
                note: note.clone(),
            };
            print(out, &act(id, action).await?)?;
        }
    }
    Ok(())
}

/// A report parameter's problem, named as the command's flag.
fn flag(e: server::heroics::BadParam) -> anyhow::Error {
    anyhow::anyhow!("--{}: {}", e.field.replace('_', "-"), e.message)
}

fn failed(e: server::heroics::Failed) -> anyhow::Error {
    match e {
        server::heroics::Failed::Param(p) => flag(p),
        server::heroics::Failed::Store(s) => s.into(),
    }
}

async fn risk(
    settings: &Settings,
    command: &RiskCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let store = open_store(settings)?;
    // The playbooks every node runs, or this folder's when none are published yet.
    let engine = match running_playbooks(&*store).await? {
        Some(set) => Some(store::Engine::new(set)),
        None => load_engine(settings)?,
    };
    let now = clock::Clock::now(&clock::SystemClock);
    match command {
        RiskCommand::Deals {
            owner,
            min_score,
            all,
            limit,
            format,
        } => {
            if let Some(m) = min_score
                && !(0.0..=1.0).contains(m)
            {
                anyhow::bail!("--min-score: expected a score between 0 and 1, got {m}");
            }
            let model = server::risk::current(&*store, engine.as_ref(), now).await?;
            let query = server::risk::RankQuery {
                owner: owner.clone(),
                min_score: *min_score,
                all: *all,
                limit: *limit,
            };
            let deals = server::risk::ranked(&*store, &model, now, &query).await?;
            if format == "json" {
                writeln!(out, "{}", serde_json::to_string_pretty(&deals)?)?;
                return Ok(());
            }
            writeln!(out, "Scored at {now} with {}.", model.scoring())?;
            if deals.is_empty() {
                writeln!(
                    out,
                    "No open deal scores {:.2} or more.",
                    query.min_score.unwrap_or(model.settings.threshold)
                )?;
            }
            for d in &deals {
                let amount = d.amount.map_or("-".to_owned(), |a| {
                    format!("{a:.0} {}", d.currency.as_deref().unwrap_or(""))
                });
                writeln!(
                    out,
                    "\n{} {} — score {:.2}, {amount}, {} in {}",
                    d.id,
                    d.name.as_deref().unwrap_or(""),
                    d.score,
                    d.owner.as_deref().unwrap_or("no owner"),
                    d.stage.as_deref().unwrap_or("no stage"),
                )?;
                if model.learned.fitted.is_some() {
                    writeln!(
                        out,
                        "  {:<22} {:>6.2}  the score of a deal in its stage with no warning",
                        "(baseline)", d.baseline
                    )?;
                }
                for c in &d.warnings {
                    writeln!(
                        out,
                        "  {:<22} {:>+6.2}  {}",
                        c.warning.kind.as_str(),
                        c.weight,
                        c.warning.says
                    )?;
                }
                if d.warnings.is_empty() {
                    writeln!(out, "  no warning")?;
                }
            }
        }
        RiskCommand::Model { format } => {
            let model = server::risk::current(&*store, engine.as_ref(), now).await?;
            let described = server::risk::describe(&model);
            if format == "json" {
                writeln!(out, "{}", serde_json::to_string_pretty(&described)?)?;
                return Ok(());
            }
            writeln!(out, "Scoring: {}.", model.scoring())?;
            writeln!(
                out,
                "At risk from a score of {:.2}.",
                model.settings.threshold
            )?;
            let late: Vec<&str> = model.late.iter().map(|s| s.as_str()).collect();
            writeln!(
                out,
                "Late stages: {}.",
                if late.is_empty() {
                    "none".to_owned()
                } else {
                    late.join(", ")
                }
            )?;
            writeln!(
                out,
                "\n{:<22} {:>3} {:>12} {:>14}",
                "warning", "on", "rule weight", "fitted weight"
            )?;
            for (i, k) in risk::Kind::ALL.iter().enumerate() {
                writeln!(
                    out,
                    "{:<22} {:>3} {:>12.2} {:>14}",
                    k.as_str(),
                    if model.settings.is_on(*k) {
                        "yes"
                    } else {
                        "no"
                    },
                    model.settings.weight(*k),
                    model
                        .learned
                        .fitted
                        .as_ref()
                        .map_or("-".to_owned(), |f| format!("{:.2}", f.weights[i]))
                )?;
            }
            if let Some(f) = &model.learned.fitted {
                writeln!(
                    out,
                    "\nBaselines, the log-odds of a deal with no warning (fitted):"
                )?;
                for (stage, w) in &f.stages {
                    writeln!(out, "  {stage:<20} {:>6.2}", f.bias + w)?;
                }
                writeln!(out, "  {:<20} {:>6.2}", "(another stage)", f.bias)?;
            }
            writeln!(
                out,
                "\nTime in stage of won deals (stalled after the {}th percentile, from {} won deals; {} days by default):",
                model.settings.stalled_percentile,
                model.settings.stalled_min_won,
                model.settings.stalled_default / domain::MILLIS_PER_DAY
            )?;
            for (stage, st) in &model.learned.stages {
                writeln!(
                    out,
                    "  {stage:<28} {:>4} won  median {:>5.1} days  stalled after {:>5.1} days",
                    st.won,
                    st.median_ms as f64 / domain::MILLIS_PER_DAY as f64,
                    st.threshold_ms as f64 / domain::MILLIS_PER_DAY as f64,
                )?;
            }
        }
        RiskCommand::Evaluate { split, format } => {
            if !(*split > 0.0 && *split < 1.0) {
                anyhow::bail!(
                    "--split: expected the share of closed deals to learn from, between 0 and 1 (such as 0.7), got {split}"
                );
            }
            let base = engine
                .as_ref()
                .map_or_else(risk::Model::default, |e| e.risk().clone());
            let e = server::risk::evaluate(&*store, &base, now, *split).await?;
            if format == "json" {
                writeln!(out, "{}", serde_json::to_string_pretty(&e)?)?;
            } else {
                write!(out, "{}", e.table())?;
            }
        }
    }
    Ok(())
}

/// The least a password may be: long enough that guessing is not the cheap attack.
const MIN_PASSWORD: usize = 10;

async fn users(
    settings: &Settings,
    command: &UserCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let store = open_store(settings)?;
    match command {
        UserCommand::Create {
            email,
            name,
            role,
            replace,
        } => {
            let email = email.trim().to_lowercase();
            if !email.contains('@') || email.contains(char::is_whitespace) {
                anyhow::bail!("--email: expected an email address, got {email:?}");
            }
            let role =
                store::UserRole::parse(role).context("--role: viewer, rep, manager or admin")?;
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.chars().count() < MIN_PASSWORD {
                anyhow::bail!(
                    "the password (the first line of standard input) must be at least {MIN_PASSWORD} characters; got {}",
                    password.chars().count()
                );
            }
            let hash =
                server::web::auth::hash_password(password).map_err(|e| anyhow::anyhow!(e))?;
            let user = store
                .create_user(
                    store::NewUser {
                        id: email,
                        name: name.clone(),
                        role,
                        password_hash: hash,
                    },
                    *replace,
                )
                .await
                .map_err(|e| match e {
                    store::Error::Conflict(m) => anyhow::anyhow!(
                        "{m}: give --replace to change their name, role and password"
                    ),
                    other => other.into(),
                })?;
            writeln!(
                out,
                "user {} ({}) can sign in as {}",
                user.id,
                user.name,
                user.role.as_str()
            )?;
        }
        UserCommand::List => {
            for u in store.users().await? {
                let state = if u.disabled_at.is_some() {
                    " (disabled)"
                } else {
                    ""
                };
                writeln!(out, "{}\t{}\t{}{state}", u.id, u.role.as_str(), u.name)?;
            }
        }
    }
    Ok(())
}

/// The playbook set every node runs (the newest published), if any.
async fn running_playbooks(
    store: &dyn Store,
) -> anyhow::Result<Option<Arc<playbook::PlaybookSet>>> {
    Ok(match store.latest_playbooks().await? {
        Some(latest) => store.playbook_set(&latest.version).await?,
        None => None,
    })
}

/// The engine for the configured playbook folder: `None` when there is no folder, an error
/// listing every problem when it does not compile.
fn load_engine(settings: &Settings) -> anyhow::Result<Option<store::Engine>> {
    let dir = &settings.engine.playbooks;
    if !dir.exists() {
        return Ok(None);
    }
    let set = playbooks_in(dir, &playbook::Targets::default())?;
    Ok(Some(store::Engine::new(Arc::new(set))))
}

/// The playbooks in `dir` compiled (their actions held to `targets`), or an error listing every
/// problem.
fn playbooks_in(dir: &Path, targets: &playbook::Targets) -> anyhow::Result<playbook::PlaybookSet> {
    playbook::load_dir_with(dir, targets)
        .into_set()
        .map_err(|errors| {
            anyhow::anyhow!(
                "the playbooks in {} have problems:\n{}",
                dir.display(),
                errors.join("\n")
            )
        })
}

async fn explain(
    settings: &Settings,
    kind: &str,
    id: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    use clock::Clock;
    let kind = match kind {
        "deal" | "deals" => domain::RecordKind::Deal,
        "lead" | "leads" => domain::RecordKind::Lead,
        other => anyhow::bail!("rules act on deals and leads, not {other:?}"),
    };
    let key = domain::RecordKey::new(kind, domain::RecordId::parse(id).context("bad id")?);
    let engine = load_engine(settings)?.with_context(|| {
        format!(
            "no playbook folder at {}",
            settings.engine.playbooks.display()
        )
    })?;
    let store = open_store(settings)?;
    let record = store
        .record(&key)
        .await?
        .with_context(|| format!("{key} not found"))?;
    let memory = store.rule_memory(&key).await?;
    let now = SystemClock.now();
    writeln!(
        out,
        "{key} at {now}, playbooks version {}",
        engine.version()
    )?;
    for r in engine.explain(&record.record, &memory, now) {
        writeln!(out, "\n{} ({}) — {}", r.rule, r.playbook, r.summary)?;
        writeln!(out, "  why: {}", r.why)?;
        writeln!(out, "  when: {}", r.trigger)?;
        if let (Some(c), Some(now)) = (&r.condition, &r.condition_now) {
            writeln!(out, "  if: {c}  → {now}")?;
            for (name, value) in &r.saw {
                writeln!(out, "      {name} = {value}")?;
            }
        }
    }
    for g in engine.explain_gates(&record.record, now) {
        let verdict = if g.met { "would pass" } else { "would refuse" };
        writeln!(out, "\ngate on {} ({}) — {verdict}", g.stage, g.playbook)?;
        writeln!(out, "  why: {}", g.why)?;
        for c in &g.criteria {
            let mark = if c.met { "met" } else { "NOT met" };
            writeln!(out, "  {mark}: {}  ({})", c.name, c.condition)?;
            for (name, value) in &c.saw {
                writeln!(out, "      {name} = {value}")?;
            }
        }
    }
    for e in store.effects(Some(&key), 1000).await? {
        writeln!(
            out,
            "\neffect {} {} {} due {} ({})",
            e.rule, e.action, e.status, e.due, e.trace["trigger"]
        )?;
    }
    Ok(())
}

async fn serve(
    settings: Settings,
    demo: Option<(company::Model, i64, Option<domain::Timestamp>)>,
) -> anyhow::Result<()> {
    let clock = Arc::new(SystemClock);
    let store = open_store(&settings)?;
    // The demo company's history is imported before the playbooks are loaded, as a team
    // would import its CRM's history before switching them on: the rules act on the
    // pipeline as it stands now (its due timers fire once serving starts), not on every
    // event of the past year.
    let loaded = match &demo {
        Some((model, days, to)) if store.events_after(0, 1).await?.is_empty() => {
            let started = std::time::Instant::now();
            let to = to.unwrap_or_else(|| clock::Clock::now(&*clock));
            let history = company::history(model, to, *days);
            let summary = import::import_text(&*store, &history.ndjson(), false, 1000).await?;
            Some((history, summary, started.elapsed()))
        }
        _ => None,
    };
    let app = Application::with_store(&settings, store, clock).await?;
    let showcase = loaded
        .as_ref()
        .and_then(|(h, _, _)| h.quiet.first().cloned());
    let demo = match demo {
        Some(_) => {
            let token = server::generate_token("demo", TokenRole::Admin)
                .context("no randomness available")?;
            app.state().store.create_token(token.stored).await?;
            Some(token.secret)
        }
        None => None,
    };
    // The demo's founder signs in to the web UI with a password made for this start.
    let sign_in = match &demo {
        Some(_) => {
            let password =
                server::web::auth::random().context("no randomness available")?[..16].to_owned();
            let hash =
                server::web::auth::hash_password(&password).map_err(|e| anyhow::anyhow!(e))?;
            app.state()
                .store
                .create_user(
                    store::NewUser {
                        id: "maya@acme.example".into(),
                        name: "Maya Chen".into(),
                        role: store::UserRole::Admin,
                        password_hash: hash,
                    },
                    true,
                )
                .await?;
            Some(password)
        }
        None => None,
    };
    let host = settings
        .server
        .listen
        .rsplit_once(':')
        .map_or("127.0.0.1", |(h, _)| h);
    let base = format!("http://{host}:{}", app.port());
    if let Some(secret) = demo {
        match loaded {
            Some((history, summary, took)) => {
                let o = &history.outcome;
                let pct = |s: Option<f64>| s.map_or("-".into(), |s| format!("{:.0}%", s * 100.0));
                println!(
                    "Demo company loaded into {} in {:.1} s: {} events from {} to {}.",
                    settings.database.url,
                    took.as_secs_f64(),
                    summary.imported,
                    &history.from.to_string()[..10],
                    &history.to.to_string()[..10],
                );
                println!(
                    "  {} leads, {} deals ({} closed, {} won); the founder stepped in on {} of the closed deals, a key person on {}.",
                    o.leads,
                    o.deals,
                    o.closed,
                    o.won,
                    pct(o.founder_share()),
                    pct(o.key_person_share()),
                );
            }
            None => println!(
                "{} already holds events: serving it as it is (delete it for a fresh demo company).",
                settings.database.url
            ),
        }
        match app.state().store.engine() {
            Some(engine) => println!(
                "Playbooks {} (version {}) are on, delivering in dry run: the open pipeline's due timers fire now; see the outbox and the exceptions inbox.",
                settings.engine.playbooks.display(),
                engine.version()
            ),
            None => println!(
                "No playbooks at {}: no rules run.",
                settings.engine.playbooks.display()
            ),
        }
        if let Some(password) = &sign_in {
            println!(
                "Web UI: {base}/ — sign in as maya@acme.example with {password} (made for this start)."
            );
        }
        println!("Admin token for this demo: {secret}");
        let auth = format!("curl -H 'Authorization: Bearer {secret}'");
        println!("Try:");
        println!("  {auth} '{base}/api/v1/reports/heroics?format=table'");
        println!("  {auth} {base}/api/v1/outbox");
        println!("  {auth} {base}/api/v1/exceptions");
        if let Some(deal) = showcase {
            println!("  {auth} {base}/api/v1/deals/{deal}/explain   # quiet since its demo");
        }
        println!("  {auth} {base}/api/v1/deals");
        println!("  curl {base}/api/v1/openapi.json");
    }
    println!("listening on {base}");
    app.run_until_stopped(server::shutdown_signal()).await?;
    Ok(())
}
