//! Layered configuration: compiled-in defaults, then a TOML file, then `PIPEWRIGHT_…`
//! environment variables (`PIPEWRIGHT_SERVER__LISTEN=0.0.0.0:7878`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use store::Synchronous;

/// The documented default configuration, printed by `pipewright config default`.
pub const DEFAULT_CONFIG: &str = r#"# pipewright configuration. Every key is optional; these are the defaults.
# Any key can also be set from the environment: PIPEWRIGHT_<SECTION>__<KEY>,
# for example PIPEWRIGHT_SERVER__LISTEN=0.0.0.0:7878.

[server]
# Address and port to listen on.
listen = "127.0.0.1:7878"
# Largest request body accepted, in bytes; a larger one is refused with 413 body_too_large.
max_body_bytes = 8388608
# Whether /metrics can be scraped without an API token.
metrics_public = false

[database]
# sqlite:PATH for the embedded database; postgres://USER@HOST:PORT/DATABASE for PostgreSQL,
# where several nodes can share one database.
url = "sqlite:pipewright.db"
# SQLite: what an acknowledged event survives.
#   full:   each commit is fsynced before it is acknowledged; survives power loss.
#   normal: survives a crash of pipewright (kill -9); an OS crash or power loss may lose the
#           last acknowledged commits.
# (PostgreSQL's durability is its own synchronous_commit setting.)
synchronous = "full"
# The most events one group commit takes before committing.
max_group_events = 10000
# Connections each node keeps for reads; its writer has one more of its own. On PostgreSQL a
# node therefore uses at most read_connections + 1 of the server's max_connections.
read_connections = 4
# PostgreSQL: how long to wait for a connection, in milliseconds.
connect_timeout_ms = 10000

[engine]
# The folder of playbook files. A broken edit — an error in a file, no playbook files, the
# folder gone — keeps the last good playbooks running and reports the problems (log,
# /api/v1/playbooks, metrics), at start as after an edit: emptying the folder does not stop the
# rules (`pipewright rules off` does). "" for a node with no folder on purpose: it runs the
# playbooks another node published in the database, or none.
playbooks = "playbooks"
# How often due timers are looked for, in milliseconds.
timer_poll_ms = 250
# How often the playbook folder is checked for changes (an edit is loaded and published for
# every node on the database, once the folder has looked the same at two checks in a row and
# for at least a second) and the database for a set another node published or the rules
# switched off or on, in milliseconds (0: never).
reload_poll_ms = 2000
# The storm guard. A rule is watched for storm_watch_ms after it is new, after its trigger,
# condition or re-entry changes, and after an import: while watched, once it acts on more than
# storm_limit records within one hour (or when its forecast says it would, before it acts at
# all), its effects wait in the outbox as `held` until a person approves or discards them
# (inbox, `pipewright storms`, /api/v1/storms). A rule's own `storm_limit:` (a number, or
# `off`) overrides it; 0 switches the guard off.
storm_limit = 100
storm_watch_ms = 604800000
# How many days ahead `pipewright preview` and the guard's forecast look.
preview_days = 7
# How often the silent-failure monitor looks, in milliseconds (0: never). It raises one alarm
# (inbox, `pipewright alarms`, /api/v1/alarms) per condition while it lasts, and resolves it
# when the condition clears: a rule that fired on at least 5 days and has not fired for 4 times
# its typical gap (at least a day); a channel with at least 5 failed deliveries, half or more
# of its attempts, in the last 15 minutes; effects given up on (dead letters); a storm holding
# a rule's effects; a background loop that stopped and was restarted (resolved after an hour
# without stopping).
monitor_ms = 60000

[delivery]
# Render every message and keep it in the outbox (GET /api/v1/outbox) instead of sending it.
# Tasks and changes to pipewright's own records still happen. The demo runs with dry_run.
dry_run = false
# The address people reach this server at; behind a reverse proxy, its public https:// address.
# Alerts, tasks, escalations, chat messages and webhooks link to the web UI's page of their
# record under it (PUBLIC_URL/deals/ID, PUBLIC_URL/leads/ID; a lead that became a deal links to
# the deal); unsubscribe links point at PUBLIC_URL/unsubscribe/…. Email to buyers never links
# here. (`base_url`, its name before, is still read.)
public_url = "http://127.0.0.1:7878"
# How often the outbox is looked at, in milliseconds.
poll_ms = 250
# How long a claimed effect is held before another node may take it over.
lease_ms = 60000
# Deliveries under way at most; each channel (the SMTP server, a webhook host, a chat channel)
# is a queue of its own, claimed in turn, with `concurrency` deliveries at once.
batch = 100
concurrency = 16
# Attempts before an effect is dead-lettered (a permanent refusal dead-letters at once).
max_attempts = 8
# How long after it was due an effect may still go out (a day): an effect whose channel kept
# failing past it is dead-lettered with the reason, attempts used up or not.
retry_budget_ms = 86400000
# Retry n waits backoff_base_ms * 2^(n-1), at most backoff_max_ms, the second half random.
backoff_base_ms = 5000
backoff_max_ms = 3600000
# A channel failing this many times in a row is paused for breaker_cooldown_ms, doubling
# (up to breaker_max_ms, a minute) while it keeps failing: delivery resumes at most a minute
# and one poll after the receiver is back.
breaker_failures = 5
breaker_cooldown_ms = 30000
breaker_max_ms = 60000

[delivery.rate_limits]
# Deliveries per second per channel: email; webhook (per host); chat (per channel); task.
# Slack accepts about one message per second per incoming webhook.
email = 20.0
chat = 1.0

[delivery.email]
host = "127.0.0.1"
port = 25
# none, starttls (RFC 3207, usually port 587) or tls (implicit TLS, RFC 8314, usually 465).
tls = "none"
# username = "…"
# password = "…"
# The sender; its domain also names each Message-ID (<idempotency key@domain>). Alerts and
# other email to the team come from it as written; email to a contact (send_email to a contact,
# sequence steps, send_asset) comes from this address under the name of the record's owner
# ("Sam Ortiz <pipewright@localhost>"; this name when the owner has none).
from = "pipewright <pipewright@localhost>"
# Where a contact's reply goes (Reply-To): "owner" (the record owner's email address, from
# their person record), "sender" (no Reply-To: to the address above), or one address
# ("sales-replies@acme.example", a shared inbox).
reply_to = "owner"
timeout_ms = 10000

[delivery.webhooks]
# Key for the Pipewright-Signature header (HMAC-SHA256 over "<timestamp>.<body>"); empty: unsigned.
secret = ""
timeout_ms = 10000

[delivery.chat]
# Channel name (as in `alert: { to: channel:sales }`) = incoming-webhook URL. `pipewright check`
# and the server refuse playbooks that alert a channel not listed here.
# sales = "https://hooks.slack.com/services/…"

[delivery.tasks]
# Also push each new task to this URL as a signed webhook.
# webhook = "https://…"

[log]
# error, warn, info, debug or trace, optionally per crate: "info,store=debug".
level = "info"
# text or json.
format = "text"
"#;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub engine: EngineSettings,
    pub delivery: delivery::Config,
    pub log: LogSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    pub playbooks: std::path::PathBuf,
    pub timer_poll_ms: u64,
    pub reload_poll_ms: u64,
    /// How old the risk model learned from closed deals may grow before it is learned again
    /// (and published for every node); 0: never learn, score with the rule-based weights.
    pub risk_refit_ms: u64,
    /// The storm guard: how many records a rule may act on within an hour while it is
    /// watched (new, reaching further, or after an import) before its effects are held for a
    /// person's approval; 0 switches the guard off. A rule's `storm_limit:` overrides it.
    pub storm_limit: u32,
    /// How long a rule is watched after it becomes new, reaches further, or after an import.
    pub storm_watch_ms: u64,
    /// How many days ahead a preview (and the guard's forecast) looks.
    pub preview_days: u32,
    /// How often the silent-failure monitor passes (0: never).
    pub monitor_ms: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            playbooks: "playbooks".into(),
            timer_poll_ms: 250,
            reload_poll_ms: 2000,
            risk_refit_ms: 86_400_000,
            storm_limit: 100,
            storm_watch_ms: 7 * 86_400_000,
            preview_days: 7,
            monitor_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: String,
    pub max_body_bytes: usize,
    pub metrics_public: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7878".into(),
            max_body_bytes: 8 * 1024 * 1024,
            metrics_public: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub synchronous: Synchronous,
    pub max_group_events: usize,
    /// Idle read connections each node keeps (its writer has one more).
    pub read_connections: usize,
    /// PostgreSQL: how long to wait for a connection before giving up.
    pub connect_timeout_ms: u64,
}

impl DatabaseSettings {
    pub fn connect_options(&self) -> store::ConnectOptions {
        store::ConnectOptions {
            synchronous: self.synchronous,
            max_group_events: self.max_group_events,
            read_connections: self.read_connections,
            connect_timeout: std::time::Duration::from_millis(self.connect_timeout_ms),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite:pipewright.db".into(),
            synchronous: Synchronous::Full,
            max_group_events: 10_000,
            read_connections: 4,
            connect_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Settings {
    /// What the playbooks' actions may deliver to under this configuration: its chat channels.
    pub fn playbook_targets(&self) -> playbook::Targets {
        playbook::Targets {
            chat_channels: Some(self.delivery.chat.keys().cloned().collect()),
        }
    }

    /// Defaults, overlaid by `file` (if given) and then by `PIPEWRIGHT_…` variables.
    ///
    /// # Errors
    /// A missing or unreadable file, a TOML syntax error, an unknown key in a section or a
    /// value of the wrong type, each naming the key.
    pub fn load(file: Option<&Path>) -> Result<Self, config::ConfigError> {
        let mut builder =
            config::Config::builder().add_source(config::Config::try_from(&Settings::default())?);
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).required(true));
        }
        builder
            .add_source(
                config::Environment::with_prefix("PIPEWRIGHT")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize::<Settings>()
            .and_then(|mut s| {
                s.delivery
                    .adopt_old_keys()
                    .map_err(config::ConfigError::Message)?;
                Ok(s)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_default_is_the_default() {
        let parsed: Settings = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_CONFIG,
                config::FileFormat::Toml,
            ))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        assert_eq!(parsed, Settings::default());
    }

    #[test]
    fn a_file_overrides_defaults_and_unknown_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("pw-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "[database]\nsynchronous = \"normal\"\n").unwrap();
        let s = Settings::load(Some(&good)).unwrap();
        assert_eq!(s.database.synchronous, Synchronous::Normal);
        assert_eq!(s.server, ServerSettings::default());
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[server]\nlisten_on = \"x\"\n").unwrap();
        let err = Settings::load(Some(&bad)).unwrap_err().to_string();
        assert!(err.contains("listen_on"), "{err}");
    }

    /// Issue 23: the link address is `delivery.public_url`; a configuration written with its
    /// old name, `base_url`, loads the same; one giving both, differently, is refused.
    #[test]
    fn the_old_name_of_public_url_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.toml");
        std::fs::write(
            &old,
            "[delivery]\nbase_url = \"https://pipewright.acme.example\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&old)).unwrap();
        assert_eq!(s.delivery.public_url, "https://pipewright.acme.example");
        assert_eq!(s.delivery.base_url, None);
        let new = dir.path().join("new.toml");
        std::fs::write(
            &new,
            "[delivery]\npublic_url = \"https://pw.acme.example\"\n[delivery.email]\nreply_to = \"replies@acme.example\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&new)).unwrap();
        assert_eq!(s.delivery.public_url, "https://pw.acme.example");
        assert_eq!(
            s.delivery.email.reply_to,
            delivery::ReplyTo::Address("replies@acme.example".into())
        );
        let both = dir.path().join("both.toml");
        std::fs::write(
            &both,
            "[delivery]\npublic_url = \"https://a.example\"\nbase_url = \"https://b.example\"\n",
        )
        .unwrap();
        let err = Settings::load(Some(&both)).unwrap_err().to_string();
        assert!(err.contains("give only public_url"), "{err}");
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[delivery.email]\nreply_to = \"the owner\"\n").unwrap();
        let err = Settings::load(Some(&bad)).unwrap_err().to_string();
        assert!(
            err.contains("neither `owner`, `sender` nor an email address"),
            "{err}"
        );
    }
}
