//! Raw YAML → compiled playbooks, collecting every problem as a located diagnostic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

use domain::{EventType, RecordId, RecordKind, Role, Stage};

use crate::condition::Scope;
use crate::facts::{DEAL_FACTS, Fact, LEAD_FACTS, event_facts, find};
use crate::model::{
    Action, Answer, Asset, AssetChoice, Busy, Criterion, DecisionTree, Engagement, Exit, Gate,
    InputKind, LINK, Location, ObjectionScript, Outcome, Playbook, PlaybookSet, Question, Reentry,
    Reply, Route, Rule, Sending, Sequence, Span, Step, StepKind, StormLimit, Strategy, Target,
    TaskKind, Trigger, Wait,
};
use crate::{Condition, Schedule, raw};

/// How much a problem matters: an error keeps the set from loading; a warning is printed
/// beside it and the set loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in one playbook file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    /// An error at a position.
    pub fn error(file: PathBuf, line: usize, column: usize, message: String) -> Self {
        Self {
            file,
            line,
            column,
            severity: Severity::Error,
            message,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let warning = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        write!(
            f,
            "{}:{}:{}: {warning}{}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// The outcome of loading a folder: the compiled set when there was no error (warnings may
/// accompany it).
#[derive(Debug)]
pub struct Loaded {
    pub set: Option<PlaybookSet>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// How many of the diagnostics are errors.
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// The set, when no diagnostic is an error; else every error, one line each.
    pub fn into_set(self) -> Result<PlaybookSet, Vec<String>> {
        let errors: Vec<String> = self
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(ToString::to_string)
            .collect();
        match self.set.filter(|_| errors.is_empty()) {
            Some(set) => Ok(set),
            None => Err(errors),
        }
    }
}

/// What the configuration delivers to, by name, for actions to be held to: a chat channel
/// (`alert: { to: channel:NAME }`) must have an incoming webhook. `None`: not checked — what
/// delivers nothing (a backtest, the handbook, a replay) loads playbooks without it. Plain names,
/// so this crate needs no configuration types.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// The chat channels configured (`delivery.chat.NAME`).
    pub chat_channels: Option<BTreeSet<String>>,
}

/// Loads every `*.yaml` / `*.yml` file of `dir`, in name order, without holding its actions
/// to a configuration ([`load_dir_with`] does).
pub fn load_dir(dir: &Path) -> Loaded {
    load_dir_with(dir, &Targets::default())
}

/// Loads every `*.yaml` / `*.yml` file of `dir`, in name order; a chat channel an action names
/// must be among `targets`'.
pub fn load_dir_with(dir: &Path, targets: &Targets) -> Loaded {
    let (files, mut diagnostics) = read_dir(dir);
    let mut loaded = load_files_with(&files, targets);
    diagnostics.append(&mut loaded.diagnostics);
    sort(&mut diagnostics);
    Loaded {
        set: loaded
            .set
            .filter(|_| !diagnostics.iter().any(Diagnostic::is_error)),
        diagnostics,
    }
}

/// The playbook files (`*.yaml`, `*.yml`) of a folder as (path, text), in path order, and the
/// problems reading it (an unreadable file, an empty or missing folder).
pub fn read_dir(dir: &Path) -> (Vec<(PathBuf, String)>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut diagnostics = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            paths.sort();
            for path in paths {
                match std::fs::read_to_string(&path) {
                    Ok(text) => files.push((path, text)),
                    Err(e) => diagnostics.push(at_start(&path, format!("cannot read: {e}"))),
                }
            }
            if files.is_empty() && diagnostics.is_empty() {
                diagnostics.push(at_start(
                    dir,
                    "no playbook files (*.yaml) in this folder".into(),
                ));
            }
        }
        Err(e) => diagnostics.push(at_start(dir, format!("cannot read the folder: {e}"))),
    }
    (files, diagnostics)
}

fn at_start(file: &Path, message: String) -> Diagnostic {
    Diagnostic::error(file.to_owned(), 1, 1, message)
}

/// Compiles playbook files given as (path, text), without holding their actions to a
/// configuration ([`load_files_with`] does).
pub fn load_files(files: &[(PathBuf, String)]) -> Loaded {
    load_files_with(files, &Targets::default())
}

/// Compiles playbook files given as (path, text); a chat channel an action names must be among
/// `targets`'.
pub fn load_files_with(files: &[(PathBuf, String)], targets: &Targets) -> Loaded {
    let mut cx = Compiler {
        targets: targets.clone(),
        diagnostics: Vec::new(),
        file: PathBuf::new(),
        stages: Vec::new(),
        assets: BTreeSet::new(),
        generated: Vec::new(),
        incomplete: Vec::new(),
        buyer_links: BTreeSet::new(),
    };
    let mut parsed = Vec::new();
    for (path, text) in files {
        match serde_saphyr::from_str::<raw::File>(text) {
            Ok(file) => parsed.push((path.clone(), file)),
            Err(e) => {
                let (line, column) = e
                    .location()
                    .map_or((1, 1), |l| (l.line() as usize, l.column() as usize));
                let message = e.to_string();
                let message = message.lines().next().unwrap_or_default();
                // serde-saphyr prefixes "error: line L column C: "; the position is ours to print.
                let message = message
                    .split_once(": ")
                    .and_then(|(_, rest)| rest.split_once(": ").map(|(_, m)| m))
                    .unwrap_or(message);
                cx.diagnostics.push(Diagnostic::error(
                    path.clone(),
                    line,
                    column,
                    message.to_owned(),
                ));
            }
        }
    }
    let names = Names::collect(&mut cx, &parsed);
    cx.assets = names.assets.keys().cloned().collect();
    // A set that declares no stages of its own leaves the CRM's stage names unchecked.
    if names.stages.len() > 2 {
        cx.stages = names.stages.iter().cloned().collect();
    }
    let sending = cx.sending(&parsed);
    let risk = cx.risk(&parsed, &names);
    let mut playbooks = Vec::new();
    for (path, file) in parsed {
        cx.file = path.clone();
        playbooks.push(cx.playbook(path, file, &names));
    }
    crate::conflicts::check(&playbooks, &cx.incomplete, &mut cx.diagnostics);
    sort(&mut cx.diagnostics);
    let set = (!cx.diagnostics.iter().any(Diagnostic::is_error)).then(|| PlaybookSet {
        playbooks,
        version: version(files),
        sending,
        risk,
    });
    Loaded {
        set,
        diagnostics: cx.diagnostics,
    }
}

/// Problems in reading order: by file, then position.
fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
}

fn version(files: &[(PathBuf, String)]) -> String {
    let mut hash = Sha256::new();
    let mut sorted: Vec<_> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, text) in sorted {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(text.as_bytes());
        hash.update([0]);
    }
    hash.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Names declared across all files, which rules in any file may refer to.
struct Names {
    stages: BTreeSet<String>,
    assets: BTreeMap<String, Vec<String>>,
    /// Each sequence with the kind of record it runs for.
    sequences: BTreeMap<String, RecordKind>,
    /// Each email template, with the values it reads (`deal.name`, `owner.email`, `link`).
    templates: BTreeMap<String, TemplateValues>,
    /// Each holiday calendar's dates.
    calendars: BTreeMap<String, BTreeSet<jiff::civil::Date>>,
}

/// What a template reads, and where it first reads `link`.
struct TemplateValues {
    read: BTreeSet<String>,
    link: Option<Location>,
}

/// A question's place in a tree while it is checked: its id and raw form.
type RawQuestions<'a> = BTreeMap<&'a str, &'a raw::Question>;

impl Names {
    fn collect(cx: &mut Compiler, files: &[(PathBuf, raw::File)]) -> Names {
        let mut names = Names {
            stages: [domain::WON_STAGE, domain::LOST_STAGE]
                .map(String::from)
                .into_iter()
                .collect(),
            assets: BTreeMap::new(),
            sequences: BTreeMap::new(),
            templates: BTreeMap::new(),
            calendars: BTreeMap::new(),
        };
        let mut rule_ids: BTreeMap<String, (PathBuf, u64)> = BTreeMap::new();
        let mut gate_rule_ids: BTreeSet<String> = BTreeSet::new();
        let mut playbook_names: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut tree_names: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (path, file) in files {
            cx.file = path.clone();
            if let Some(first) = playbook_names.insert(file.playbook.value.clone(), path.clone()) {
                cx.error(
                    &file.playbook,
                    format!(
                        "playbook {:?} is also defined in {}",
                        file.playbook.value,
                        first.display()
                    ),
                );
            }
            names
                .stages
                .extend(file.stages.iter().map(|s| s.value.clone()));
            for (name, asset) in &file.assets {
                if names
                    .assets
                    .insert(name.clone(), asset.use_cases.clone())
                    .is_some()
                {
                    cx.error(&file.playbook, format!("asset {name:?} is defined twice"));
                }
            }
            for (name, sequence) in &file.sequences {
                let record = match sequence.record.as_ref().map(|r| r.value.as_str()) {
                    Some("lead") => RecordKind::Lead,
                    _ => RecordKind::Deal,
                };
                if names.sequences.insert(name.clone(), record).is_some() {
                    cx.error(
                        &file.playbook,
                        format!("sequence {name:?} is defined twice"),
                    );
                }
            }
            for name in file.decision_trees.keys() {
                if let Some(first) = tree_names.insert(name.clone(), path.clone()) {
                    cx.error(
                        &file.playbook,
                        format!(
                            "decision tree {name:?} is also defined in {}",
                            first.display()
                        ),
                    );
                }
            }
            for (name, calendar) in &file.calendars {
                let mut dates = BTreeSet::new();
                for day in &calendar.holidays {
                    match day.value.parse::<jiff::civil::Date>() {
                        Ok(d) => {
                            dates.insert(d);
                        }
                        Err(_) => cx.error(
                            day,
                            format!("{:?} is not a date: write YYYY-MM-DD", day.value),
                        ),
                    }
                }
                if names.calendars.insert(name.clone(), dates).is_some() {
                    cx.error(
                        &file.playbook,
                        format!("calendar {name:?} is defined twice"),
                    );
                }
            }
            for (name, t) in &file.templates {
                let parts = [Some(&t.subject), Some(&t.text), t.html.as_ref()];
                let mut read = BTreeSet::new();
                let mut link = None;
                for part in parts.into_iter().flatten() {
                    let values = values_read(&part.value);
                    if link.is_none() && values.contains(LINK) {
                        link = Some(match link_read_at(&part.value) {
                            Some((line, column)) => cx.within(part, line, column),
                            None => cx.location(part),
                        });
                    }
                    read.extend(values);
                }
                if names
                    .templates
                    .insert(name.clone(), TemplateValues { read, link })
                    .is_some()
                {
                    cx.error(
                        &file.playbook,
                        format!("template {name:?} is defined twice"),
                    );
                }
            }
            for rule in &file.rules {
                let here = (path.clone(), rule.id.referenced.line());
                let generated = first_touch_rule_ids(rule);
                for id in std::iter::once(rule.id.value.clone()).chain(generated) {
                    if let Some((file, line)) = rule_ids.insert(id.clone(), here.clone()) {
                        let what = if id == rule.id.value {
                            format!("rule id {id:?} is already used")
                        } else {
                            format!("this rule's first-touch SLA is the rule {id:?}, already used")
                        };
                        cx.error(&rule.id, format!("{what} at {}:{line}", file.display()));
                    }
                }
            }
            // A gate's alerts are the rule `gate-STAGE`; one gate per stage in the set.
            for gate in &file.gates {
                let here = (path.clone(), gate.stage.referenced.line());
                let id = gate_rule_id(&gate.stage.value);
                if let Some((file, line)) = rule_ids.insert(id.clone(), here) {
                    let what = if gate_rule_ids.contains(&id) {
                        format!("stage {:?} already has a gate", gate.stage.value)
                    } else {
                        format!("the gate's alerts are the rule {id:?}")
                    };
                    cx.error(&gate.stage, format!("{what} at {}:{line}", file.display()));
                }
                gate_rule_ids.insert(id);
            }
        }
        names
    }
}

struct Compiler {
    targets: Targets,
    diagnostics: Vec<Diagnostic>,
    file: PathBuf,
    /// The stages the set declares, with closed_won and closed_lost: what `deal.stage` can be
    /// (empty when it declares none of its own: then stage names are not checked).
    stages: Vec<String>,
    /// The asset library's names: messages may read `assets.NAME` / `assets["NAME"]`.
    assets: BTreeSet<String>,
    /// Rules compiled from a rule's parts (a first-touch SLA), added after it.
    generated: Vec<Rule>,
    /// Rules whose trigger or condition did not compile, by place: what they would conflict
    /// with is unknown, so they are left out of the conflict check.
    incomplete: Vec<Location>,
    /// Templates already reported for linking buyers to pipewright: once each, however many
    /// uses send them to buyers.
    buyer_links: BTreeSet<String>,
}

/// 1 when a scalar was written in quotes: positions inside its value start one column later.
fn quote_width(s: &Spanned<String>) -> usize {
    usize::from(s.referenced.span().len() as usize >= s.value.chars().count() + 2)
}

fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let names: Vec<String> = names.into_iter().map(|n| n.as_ref().to_owned()).collect();
    if names.is_empty() {
        "none are declared".into()
    } else {
        names.join(", ")
    }
}

impl Compiler {
    /// Where a position inside a scalar's value (line and column from 1) was written. The
    /// first line starts where the scalar does (a column on when it is quoted); a value of
    /// several lines is a block scalar (`|`), whose lines all start at its indentation.
    fn within(&self, s: &Spanned<String>, line: usize, column: usize) -> Location {
        let base = self.location(s);
        if line <= 1 {
            Location {
                column: base.column + quote_width(s) + column.saturating_sub(1),
                ..base
            }
        } else {
            Location {
                line: base.line + line - 1,
                column: base.column + column.saturating_sub(1),
                ..base
            }
        }
    }

    fn location<T>(&self, s: &Spanned<T>) -> Location {
        Location {
            file: self.file.clone(),
            line: s.referenced.line() as usize,
            column: s.referenced.column() as usize,
        }
    }

    fn error<T>(&mut self, at: &Spanned<T>, message: String) {
        let l = self.location(at);
        self.error_at(&l, message);
    }

    /// The set's sending etiquette: the one `sending:` block (defaults for what it leaves out
    /// and without one); a second block is an error.
    fn sending(&mut self, files: &[(PathBuf, raw::File)]) -> Sending {
        let mut first: Option<(PathBuf, Sending)> = None;
        for (path, file) in files {
            let Some(raw) = &file.sending else { continue };
            self.file = path.clone();
            // Every block is checked; the first one counts.
            let mut sending = Sending::default();
            if let Some(c) = &raw.per_contact {
                match parse_span(&c.per.value) {
                    Some(per) if c.max > 0 => sending.per_contact = Some((c.max, per)),
                    Some(_) => self.error(&c.per, "`max` must be at least 1".into()),
                    None => self.error(
                        &c.per,
                        format!("{:?} is not a length of time (e.g. 7d)", c.per.value),
                    ),
                }
            }
            if let Some(p) = &raw.per_sender {
                sending.per_sender_hour = p.per_hour.or(sending.per_sender_hour);
                sending.per_sender_day = p.per_day.or(sending.per_sender_day);
            }
            if let Some(c) = &raw.cool_off {
                match parse_span(&c.value) {
                    Some(span) => sending.cool_off = Some(span),
                    None => self.error(
                        c,
                        format!("{:?} is not a length of time (e.g. 14d)", c.value),
                    ),
                }
            }
            match &first {
                Some((declared, _)) => self.error(
                    &file.playbook,
                    format!(
                        "`sending:` is also declared in {}: one playbook declares it",
                        declared.display()
                    ),
                ),
                None => first = Some((path.clone(), sending)),
            }
        }
        first.map(|(_, s)| s).unwrap_or_default()
    }

    fn warning_kind(&mut self, k: &Spanned<String>) -> Option<risk::Kind> {
        let kind = risk::Kind::parse(&k.value);
        if kind.is_none() {
            let all: Vec<&str> = risk::Kind::ALL.iter().map(|k| k.as_str()).collect();
            self.error(
                k,
                format!(
                    "unknown warning {:?}; expected one of: {}",
                    k.value,
                    all.join(", ")
                ),
            );
        }
        kind
    }

    /// A weight or threshold between 0 and 1.
    fn unit(&mut self, v: &Spanned<f64>, what: &str) -> Option<f64> {
        if (0.0..=1.0).contains(&v.value) {
            Some(v.value)
        } else {
            self.error(v, format!("{what} is between 0 and 1, not {}", v.value));
            None
        }
    }

    fn millis(&mut self, s: &Option<Spanned<String>>, into: &mut i64) {
        if let Some(Some(span)) = self.optional_span(s) {
            *into = span.0;
        }
    }

    /// The set's risk settings: the one `risk:` block (defaults for what it leaves out and
    /// without one); a second block is an error.
    fn risk(&mut self, files: &[(PathBuf, raw::File)], names: &Names) -> risk::Settings {
        use risk::Kind;
        let mut first: Option<(PathBuf, risk::Settings)> = None;
        for (path, file) in files {
            let Some(raw) = &file.risk else { continue };
            self.file = path.clone();
            let mut s = risk::Settings::default();
            if let Some(t) = &raw.threshold
                && let Some(t) = self.unit(t, "the threshold")
            {
                s.threshold = t;
            }
            if let Some(late) = &raw.late_stages {
                s.late_stages = Some(
                    late.iter()
                        .filter_map(|st| self.stage(st, Some(&names.stages)))
                        .collect(),
                );
            }
            if let Some(fit) = &raw.fit {
                s.fit_min_closed = fit.min_closed.unwrap_or(s.fit_min_closed);
                s.fit_min_each = fit.min_each.unwrap_or(s.fit_min_each);
            }
            let w = &raw.warnings;
            let mut common =
                |cx: &mut Self, kind: Kind, off: bool, weight: &Option<Spanned<f64>>| {
                    if off {
                        s.off.push(kind);
                    }
                    if let Some(v) = weight
                        && let Some(v) = cx.unit(v, "a weight")
                    {
                        s.weights.push((kind, v));
                    }
                };
            for (kind, a) in [
                (Kind::NoActivity, &w.no_activity),
                (Kind::CloseDateOverdue, &w.close_date_overdue),
                (Kind::PricingNotDiscussed, &w.pricing_not_discussed),
                (Kind::UnresolvedObjection, &w.unresolved_objection),
            ] {
                if let Some(a) = a {
                    common(self, kind, a.off, &a.weight);
                }
            }
            if let Some(g) = &w.ghosted {
                common(self, Kind::Ghosted, g.off, &g.weight);
            }
            if let Some(p) = &w.close_date_pushed {
                common(self, Kind::CloseDatePushed, p.off, &p.weight);
            }
            if let Some(t) = &w.single_threaded {
                common(self, Kind::SingleThreaded, t.off, &t.weight);
            }
            if let Some(b) = &w.no_economic_buyer {
                common(self, Kind::NoEconomicBuyer, b.off, &b.weight);
            }
            if let Some(st) = &w.stalled {
                common(self, Kind::Stalled, st.off, &st.weight);
            }
            // The thresholds, each where its warning is configured.
            if let Some(a) = &w.no_activity {
                self.millis(&a.after, &mut s.no_activity_after);
            }
            if let Some(a) = &w.close_date_overdue {
                self.millis(&a.after, &mut s.overdue_after);
            }
            if let Some(a) = &w.pricing_not_discussed {
                self.millis(&a.after, &mut s.pricing_after);
            }
            if let Some(a) = &w.unresolved_objection {
                self.millis(&a.after, &mut s.objection_after);
            }
            if let Some(g) = &w.ghosted {
                self.millis(&g.after, &mut s.ghosted_after);
                if let Some(m) = &g.messages {
                    if (1..=domain::UNANSWERED_KEPT).contains(&m.value) {
                        s.ghosted_messages = m.value;
                    } else {
                        self.error(
                            m,
                            format!(
                                "`messages` is between 1 and {}, not {}",
                                domain::UNANSWERED_KEPT,
                                m.value
                            ),
                        );
                    }
                }
            }
            if let Some(p) = &w.close_date_pushed
                && let Some(t) = &p.times
            {
                if t.value >= 1 {
                    s.pushed_times = t.value;
                } else {
                    self.error(t, "`times` must be at least 1".into());
                }
            }
            if let Some(t) = &w.single_threaded {
                self.millis(&t.within, &mut s.single_within);
                self.millis(&t.after, &mut s.single_after);
                if let Some(c) = &t.contacts {
                    if (1..=risk::MAX_CONTACTS).contains(&c.value) {
                        s.single_contacts = c.value;
                    } else {
                        self.error(
                            c,
                            format!(
                                "`contacts` is between 1 and {}, not {}",
                                risk::MAX_CONTACTS,
                                c.value
                            ),
                        );
                    }
                }
            }
            if let Some(b) = &w.no_economic_buyer {
                self.millis(&b.after, &mut s.buyer_after);
                if let Some(roles) = &b.roles {
                    s.buyer_roles = roles.clone();
                }
            }
            if let Some(st) = &w.stalled {
                self.millis(&st.default, &mut s.stalled_default);
                s.stalled_min_won = st.min_won.unwrap_or(s.stalled_min_won);
                if let Some(p) = &st.percentile {
                    if p.value > 0.0 && p.value < 100.0 {
                        s.stalled_percentile = p.value;
                    } else {
                        self.error(
                            p,
                            format!("`percentile` is between 0 and 100, not {}", p.value),
                        );
                    }
                }
            }
            match &first {
                Some((declared, _)) => self.error(
                    &file.playbook,
                    format!(
                        "`risk:` is also declared in {}: one playbook declares it",
                        declared.display()
                    ),
                ),
                None => first = Some((path.clone(), s)),
            }
        }
        first.map(|(_, s)| s).unwrap_or_default()
    }

    fn playbook(&mut self, path: PathBuf, file: raw::File, names: &Names) -> Playbook {
        let stages = file
            .stages
            .iter()
            .filter_map(|s| self.stage(s, None))
            .collect();
        let assets = file
            .assets
            .iter()
            .map(|(name, a)| self.asset(name, a, names))
            .collect();
        let mut rules: Vec<Rule> = Vec::new();
        for r in &file.rules {
            rules.push(self.rule(r, file.shadow, names));
            rules.append(&mut self.generated);
        }
        let mut gates = Vec::new();
        for g in &file.gates {
            if let Some((gate, alerts)) = self.gate(g, file.shadow, names) {
                gates.push(gate);
                rules.extend(alerts);
            }
        }
        let sequences = file
            .sequences
            .iter()
            .filter_map(|(name, q)| self.sequence(name, q, names))
            .collect();
        let templates = file
            .templates
            .iter()
            .map(|(name, t)| {
                for part in [Some(&t.subject), Some(&t.text), t.html.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    self.template_syntax(part);
                }
                crate::model::Template {
                    name: name.clone(),
                    subject: t.subject.value.clone(),
                    text: t.text.value.clone(),
                    html: t.html.as_ref().map(|h| h.value.clone()),
                }
            })
            .collect();
        let trees = file
            .decision_trees
            .iter()
            .filter_map(|(name, t)| self.tree(name, t, names))
            .collect();
        let objections = file
            .objections
            .iter()
            .filter_map(|(kind, o)| self.objection(kind, o, &file.playbook, names))
            .collect();
        Playbook {
            name: file.playbook.value,
            owner: file.owner.value,
            description: file.description,
            file: path,
            stages,
            rules,
            gates,
            assets,
            sequences,
            templates,
            trees,
            objections,
        }
    }

    /// A gate, and the rule that alerts `notify` when it refuses a move (none without
    /// `notify`).
    fn gate(
        &mut self,
        g: &raw::Gate,
        playbook_shadow: bool,
        names: &Names,
    ) -> Option<(Gate, Option<Rule>)> {
        if g.why.value.trim().is_empty() {
            self.error(
                &g.why,
                "`why` must say, in a sentence, why the stage needs these criteria".into(),
            );
        }
        if g.require.is_empty() {
            self.error(
                &g.stage,
                "a gate needs at least one criterion under `require`".into(),
            );
        }
        let stage = self.open_stage(&g.stage, names, "a gate judges moves into open stages");
        let mut criteria = Vec::new();
        let mut seen = BTreeSet::new();
        for c in &g.require {
            if !seen.insert(c.name.value.as_str()) {
                self.error(
                    &c.name,
                    format!("criterion {:?} is named twice", c.name.value),
                );
            }
            let variables = vec![("deal", Some(DEAL_FACTS)), ("now", None)];
            if let Some(condition) = self.compiled(&c.condition, variables) {
                criteria.push(Criterion {
                    name: c.name.value.clone(),
                    condition,
                });
            }
        }
        let override_roles = g
            .override_roles
            .iter()
            .filter_map(|r| {
                let role = serde_plain_role(&r.value);
                if role.is_none() {
                    self.error(
                        r,
                        format!(
                            "unknown role {:?}; expected founder, executive, vp, manager, ae, sdr, csm or revops",
                            r.value
                        ),
                    );
                }
                role
            })
            .collect();
        let targets: Vec<Target> = g
            .notify
            .iter()
            .filter_map(|t| self.recipient(t, RecordKind::Deal, Receives::Alert))
            .collect();
        let stage = stage?;
        let location = self.location(&g.stage);
        let alerts = (!targets.is_empty()).then(|| {
            let source = format!("event.stage == {:?}", stage.as_str());
            let event_fields = event_facts(EventType::GateBlocked);
            let condition = Condition::compile(
                &source,
                &Scope {
                    variables: vec![
                        ("deal", Some(DEAL_FACTS)),
                        ("now", None),
                        ("event", Some(event_fields.as_slice())),
                    ],
                    ..Scope::default()
                },
            )
            .ok();
            // Delivery appends the rule's `why`: the gate's.
            let text = format!(
                "{{{{ deal.name | default(deal.id) }}}} was kept out of {stage}: {{{{ deal.blocked.unmet | join(\", \") }}}} not met yet."
            );
            Rule {
                id: gate_rule_id(stage.as_str()),
                why: g.why.value.clone(),
                covers: vec!["blocked-gate".into()],
                record: RecordKind::Deal,
                trigger: Trigger::Event(EventType::GateBlocked),
                condition,
                action_locations: vec![location.clone(); targets.len()],
                actions: targets
                    .into_iter()
                    .map(|to| Action::Alert {
                        to,
                        text: text.clone(),
                    })
                    .collect(),
                reentry: Reentry::EachTrigger,
                shadow: playbook_shadow,
                storm_limit: None,
                priority: 0,
                location: location.clone(),
            }
        });
        (criteria.len() == g.require.len()).then_some((
            Gate {
                stage,
                why: g.why.value.clone(),
                criteria,
                override_roles,
                location,
            },
            alerts,
        ))
    }

    fn stage(&mut self, s: &Spanned<String>, known: Option<&BTreeSet<String>>) -> Option<Stage> {
        if let Some(known) = known
            && !known.contains(&s.value)
        {
            self.error(
                s,
                format!(
                    "unknown stage {:?}; the playbooks declare: {}",
                    s.value,
                    list(known)
                ),
            );
            return None;
        }
        match Stage::parse(s.value.clone()) {
            Ok(stage) => Some(stage),
            Err(e) => {
                self.error(s, format!("stage name {e}"));
                None
            }
        }
    }

    /// A declared stage a deal can be moved into; deals are won and lost by `deal.won` and
    /// `deal.lost`, not moved to closed_won / closed_lost.
    fn open_stage(&mut self, s: &Spanned<String>, names: &Names, what: &str) -> Option<Stage> {
        if [domain::WON_STAGE, domain::LOST_STAGE].contains(&s.value.as_str()) {
            self.error(
                s,
                format!("{what}; {} is entered by deal.won or deal.lost", s.value),
            );
            return None;
        }
        self.stage(s, Some(&names.stages))
    }

    fn asset(&mut self, name: &str, a: &raw::Asset, names: &Names) -> Asset {
        Asset {
            name: name.to_owned(),
            title: a.title.clone(),
            url: a.url.as_ref().map(|u| u.value.clone()),
            file: a.file.as_ref().map(|f| f.value.clone()),
            use_cases: a.use_cases.clone(),
            stages: a
                .stages
                .iter()
                .filter_map(|s| self.stage(s, Some(&names.stages)))
                .collect(),
            industries: a.industries.clone(),
        }
    }

    fn span(&mut self, s: &Spanned<String>) -> Option<Span> {
        match parse_span(&s.value) {
            Some(span) => Some(span),
            None => {
                self.error(s, format!("{:?} is not a duration: write a number and a unit, such as 30m, 12h, 5d or 2w (units can be combined: 1d12h)", s.value));
                None
            }
        }
    }

    /// An optional duration: `Some(None)` when absent, `None` when present and invalid.
    fn optional_span(&mut self, s: &Option<Spanned<String>>) -> Option<Option<Span>> {
        match s {
            Some(s) => self.span(s).map(Some),
            None => Some(None),
        }
    }

    /// Checks a use of the template named at `at`, in a message about a `record` (to a buyer,
    /// or to the team): that it exists, and that it reads only values such a message has.
    /// Whether it exists.
    fn template(
        &mut self,
        at: &Spanned<String>,
        record: RecordKind,
        to_buyer: bool,
        names: &Names,
    ) -> bool {
        let Some(values) = names.templates.get(&at.value) else {
            self.error(
                at,
                format!(
                    "unknown template {:?}; the playbooks declare: {}",
                    at.value,
                    list(names.templates.keys())
                ),
            );
            return false;
        };
        let what = format!("template {:?}", at.value);
        self.values_fit(at, &values.read, &what, record);
        // Reported where the template reads it, once: that is what to change.
        if to_buyer
            && let Some(link) = &values.link
            && self.buyer_links.insert(at.value.clone())
        {
            let used = self.location(at);
            let asset = self.assets.first().map_or("NAME", String::as_str);
            self.error_at(
                link,
                format!(
                    "template {:?} is emailed to a contact (at {}:{}) and reads `link`, the record's page in pipewright, which only the team can open: give the buyer what they can open, such as an asset's URL ({{{{ assets[\"{asset}\"].url }}}})",
                    at.value,
                    used.file.display(),
                    used.line,
                ),
            );
        }
        true
    }

    /// Checks each value a message reads against what a message about a `record` has: the
    /// record's facts, its owner (`id`, `name`, `email`), a deal's primary contact (`id`,
    /// `name`, `email`, `title`) and `link`. A value it lacks would stop the send.
    fn values_fit(
        &mut self,
        at: &Spanned<String>,
        read: &BTreeSet<String>,
        what: &str,
        record: RecordKind,
    ) {
        let facts = record_facts(record);
        for value in read {
            let mut parts = value.split('.');
            let root = parts.next().unwrap_or_default();
            let field = parts.next();
            let problem = match (root, field) {
                _ if root == "link" || MESSAGE_GLOBALS.contains(&root) => None,
                ("assets", None) => None,
                ("assets", Some(name)) => (!self.assets.contains(name)).then(|| {
                    format!(
                        "the asset library has no `{name}`; it has: {}",
                        list(&self.assets)
                    )
                }),
                (r, None) if r == record.as_str() => None,
                (r, Some(f)) if r == record.as_str() => find(facts, f).is_none().then(|| {
                    format!(
                        "a {record} has no `{f}`{}",
                        crate::condition::suggestion(f, &crate::facts::names(facts))
                    )
                }),
                ("deal" | "lead", _) => Some(format!("this is a message about a {record}")),
                ("owner", None) => None,
                ("owner", Some(f)) => (!PERSON_VALUES.contains(&f)).then(|| {
                    format!(
                        "the owner has only {}",
                        PERSON_VALUES.map(|v| format!("`{v}`")).join(", ")
                    )
                }),
                ("contact", _) if record != RecordKind::Deal => {
                    Some(format!("a message about a {record} has no contact"))
                }
                ("contact", None) => None,
                ("contact", Some(f)) => (!CONTACT_VALUES.contains(&f)).then(|| {
                    format!(
                        "the contact has only {}",
                        CONTACT_VALUES.map(|v| format!("`{v}`")).join(", ")
                    )
                }),
                _ => Some(format!(
                    "messages read `{}`, `owner`, {}`assets` and `link`",
                    record.as_str(),
                    if record == RecordKind::Deal {
                        "`contact`, "
                    } else {
                        ""
                    }
                )),
            };
            if let Some(problem) = problem {
                self.error(at, format!("{what} uses `{value}`: {problem}"));
            }
        }
    }

    /// `deal` (also when absent) or `lead`.
    fn record_kind(&mut self, record: Option<&Spanned<String>>, what: &str) -> RecordKind {
        match record.map(|s| (s, s.value.as_str())) {
            None | Some((_, "deal")) => RecordKind::Deal,
            Some((_, "lead")) => RecordKind::Lead,
            Some((s, other)) => {
                self.error(s, format!("{what} on a `deal` or a `lead`, not {other:?}"));
                RecordKind::Deal
            }
        }
    }

    fn sequence(&mut self, name: &str, q: &raw::Sequence, names: &Names) -> Option<Sequence> {
        let record = self.record_kind(q.record.as_ref(), "sequences run");
        let location = Location {
            file: self.file.clone(),
            ..self.first_location(q)
        };
        if q.steps.is_empty() {
            self.error_at(&location, format!("sequence {name:?} has no steps"));
            return None;
        }
        // Step ids first: a branch names a later step.
        let mut ids: Vec<String> = Vec::with_capacity(q.steps.len());
        for (i, step) in q.steps.iter().enumerate() {
            let id = match &step.id {
                Some(id) if ids.contains(&id.value) => {
                    self.error(id, format!("step id {:?} is used twice", id.value));
                    id.value.clone()
                }
                Some(id) => id.value.clone(),
                None => format!("step-{}", i + 1),
            };
            ids.push(id);
        }
        let before = self.diagnostics.len();
        let mut steps = Vec::with_capacity(q.steps.len());
        let mut emails_before = false;
        for (i, step) in q.steps.iter().enumerate() {
            let at = step_anchor(step).map_or(location.clone(), |a| self.location(a));
            let kind = self.step(i, step, &at, &ids, emails_before, record, names);
            emails_before |= step.email.is_some();
            if let Some(kind) = kind {
                steps.push(Step {
                    id: ids[i].clone(),
                    kind,
                });
            }
        }
        let goal = q
            .goal
            .as_ref()
            .and_then(|g| self.condition(g, record, None));
        let exits = match &q.exit_on {
            None => Exit::ALL.to_vec(),
            Some(listed) => listed
                .iter()
                .filter_map(|e| {
                    let exit = Exit::ALL.into_iter().find(|x| x.as_str() == e.value);
                    if exit.is_none() {
                        self.error(
                            e,
                            format!(
                                "unknown exit {:?}; use {}",
                                e.value,
                                list(Exit::ALL.map(Exit::as_str))
                            ),
                        );
                    }
                    exit
                })
                .collect(),
        };
        let window = q.window.as_ref().and_then(|w| self.window(w, names));
        (self.diagnostics.len() == before).then(|| Sequence {
            name: name.to_owned(),
            record,
            steps,
            goal,
            exits,
            account_wide_exit: q.account_wide_exit,
            concurrent: q.concurrent,
            window,
            location,
        })
    }

    fn window(&mut self, w: &raw::Window, names: &Names) -> Option<crate::SendWindow> {
        let mut holidays = BTreeSet::new();
        for calendar in &w.holidays {
            match names.calendars.get(&calendar.value) {
                Some(dates) => holidays.extend(dates.iter().copied()),
                None => self.error(
                    calendar,
                    format!(
                        "unknown calendar {:?}; the playbooks declare: {}",
                        calendar.value,
                        list(names.calendars.keys())
                    ),
                ),
            }
        }
        let days = w.days.as_ref().map_or("mon-sun", |d| d.value.as_str());
        crate::SendWindow::parse(days, &w.hours.value, &w.timezone.value, holidays)
            .map_err(|e| {
                // Point at the part the message names.
                let at = if e.contains("time zone") {
                    &w.timezone
                } else if e.contains("hours") || e.contains("starts") {
                    &w.hours
                } else {
                    w.days.as_ref().unwrap_or(&w.hours)
                };
                self.error(at, e.clone());
                // The zone is checked last; a mistake in it is reported as well.
                if !e.contains("time zone")
                    && let Err(z) = crate::window::time_zone(&w.timezone.value)
                {
                    self.error(&w.timezone, z);
                }
            })
            .ok()
    }

    /// Where a sequence was written: its first step's first value.
    fn first_location(&self, q: &raw::Sequence) -> Location {
        let spanned = q.steps.first().and_then(step_anchor);
        match spanned.or(q.goal.as_ref()).or(q.record.as_ref()) {
            Some(s) => self.location(s),
            None => Location {
                file: self.file.clone(),
                line: 1,
                column: 1,
            },
        }
    }

    fn error_at(&mut self, at: &Location, message: String) {
        self.diagnostics.push(Diagnostic::error(
            at.file.clone(),
            at.line,
            at.column,
            message,
        ));
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        i: usize,
        step: &raw::Step,
        at: &Location,
        ids: &[String],
        emails_before: bool,
        record: RecordKind,
        names: &Names,
    ) -> Option<StepKind> {
        let given = [
            step.email.is_some(),
            step.task.is_some(),
            step.wait.is_some(),
            step.branch.is_some(),
        ]
        .into_iter()
        .filter(|g| *g)
        .count();
        if given != 1 {
            self.error_at(
                at,
                format!(
                    "step {} needs exactly one of `email`, `task`, `wait` or `branch`",
                    ids[i]
                ),
            );
            return None;
        }
        if let Some(email) = &step.email {
            let variants: Vec<&Spanned<String>> =
                email.template.iter().chain(&email.variants).collect();
            if email.template.is_some() && !email.variants.is_empty() {
                self.error(
                    variants[0],
                    "an email step has a `template` or `variants`, not both".into(),
                );
                return None;
            }
            let mut known = Vec::new();
            // A sequence emails the contact it enrolled.
            for t in &variants {
                if self.template(t, record, true, names) {
                    known.push(t.value.clone());
                }
            }
            if variants.is_empty() {
                self.error_at(
                    at,
                    format!("email step {} needs a `template` or `variants`", ids[i]),
                );
            }
            return (known.len() == variants.len() && !known.is_empty())
                .then_some(StepKind::Email { variants: known });
        }
        if let Some(task) = &step.task {
            self.template_syntax(&task.title);
            self.values_fit(
                &task.title,
                &values_read(&task.title.value),
                "this title",
                record,
            );
            let assignee = self.recipient(&task.assignee, record, Receives::Task);
            let kind = match task.kind.as_ref().map(|k| (k, k.value.as_str())) {
                None | Some((_, "other")) => Some(TaskKind::Other),
                Some((_, "call")) => Some(TaskKind::Call),
                Some((_, "linkedin")) => Some(TaskKind::Linkedin),
                Some((_, "manual_email")) => Some(TaskKind::ManualEmail),
                Some((k, other)) => {
                    self.error(
                        k,
                        format!(
                            "unknown task kind {other:?}; use call, linkedin, manual_email or other"
                        ),
                    );
                    None
                }
            };
            let due = self.optional_span(&task.due);
            return Some(StepKind::Task {
                assignee: assignee?,
                title: task.title.value.clone(),
                kind: kind?,
                due: due?,
            });
        }
        if let Some(wait) = &step.wait {
            let Some(until) = wait.value.strip_prefix("until ") else {
                return self.span(wait).map(|s| StepKind::Wait(Wait::For(s)));
            };
            return match parse_until(until) {
                Some((weekday, time)) => Some(StepKind::Wait(Wait::Until { weekday, time })),
                None => {
                    self.error(
                        wait,
                        format!(
                            "{until:?} is not a weekday and/or time of day: write e.g. \"until tuesday 09:00\", \"until 09:30\" or \"until friday\""
                        ),
                    );
                    None
                }
            };
        }
        let branch = step.branch.as_ref()?;
        let on = match branch.condition.value.as_str() {
            "opened" => Some(Engagement::Opened),
            "clicked" => Some(Engagement::Clicked),
            "replied" => Some(Engagement::Replied),
            "no_reply" => Some(Engagement::NoReply),
            other => {
                self.error(
                    &branch.condition,
                    format!("a branch tests opened, clicked, replied or no_reply, not {other:?}"),
                );
                None
            }
        };
        if !emails_before {
            self.error(
                &branch.condition,
                "a branch tests engagement with the emails before it, and none comes before this one"
                    .into(),
            );
            return None;
        }
        let goto = match ids.iter().position(|id| *id == branch.goto.value) {
            Some(at) if at > i => Some(at),
            Some(_) => {
                self.error(
                    &branch.goto,
                    format!(
                        "a branch jumps forward; step {:?} comes before it",
                        branch.goto.value
                    ),
                );
                None
            }
            None => {
                self.error(
                    &branch.goto,
                    format!(
                        "unknown step {:?}; this sequence's steps are: {}",
                        branch.goto.value,
                        list(ids)
                    ),
                );
                None
            }
        };
        Some(StepKind::Branch {
            on: on?,
            goto: goto?,
        })
    }

    fn rule(&mut self, r: &raw::Rule, playbook_shadow: bool, names: &Names) -> Rule {
        if r.why.value.trim().is_empty() {
            self.error(
                &r.why,
                "`why` must say, in a sentence, the judgment this rule encodes".into(),
            );
        }
        let record = self.record_kind(r.record.as_ref(), "rules act");
        let trigger = self.trigger(r, names);
        let condition = r
            .condition
            .as_ref()
            .and_then(|c| self.condition(c, record, trigger.as_ref()));
        let mut actions = Vec::with_capacity(r.then.len());
        let mut action_locations = Vec::with_capacity(r.then.len());
        for a in &r.then {
            let at = self.location(a);
            if let Some(action) = self.action(&a.value, &r.id, record, names, &at) {
                actions.push(action);
                action_locations.push(at);
            }
        }
        if trigger.is_none() || (r.condition.is_some() && condition.is_none()) {
            self.incomplete.push(self.location(&r.id));
        }
        let priority = r.priority.unwrap_or(0);
        // A first-touch SLA's rules act for this rule: they rank as it does.
        for generated in &mut self.generated {
            generated.priority = priority;
        }
        if r.then.is_empty() {
            self.error(
                &r.id,
                format!("rule {:?} has no actions under `then`", r.id.value),
            );
        }
        let reentry = match &r.reentry {
            None => Reentry::EachTrigger,
            Some(raw::Reentry::OncePerRecord) => Reentry::OncePerRecord,
            Some(raw::Reentry::OncePerStage) => Reentry::OncePerStage,
            Some(raw::Reentry::Every(s)) => self
                .span(s)
                .map_or(Reentry::EachTrigger, Reentry::AtMostEvery),
        };
        Rule {
            id: r.id.value.clone(),
            why: r.why.value.clone(),
            covers: r.covers.iter().map(|c| c.value.clone()).collect(),
            record,
            trigger: trigger.unwrap_or(Trigger::QuietFor(Span(0))),
            condition,
            actions,
            action_locations,
            reentry,
            shadow: playbook_shadow || r.shadow,
            storm_limit: r.storm_limit.as_ref().and_then(|l| self.storm_limit(l)),
            priority,
            location: self.location(&r.id),
        }
    }

    fn storm_limit(&mut self, limit: &raw::S<String>) -> Option<StormLimit> {
        match limit.value.trim() {
            "off" => Some(StormLimit::Off),
            n => match n.parse::<u32>() {
                Ok(n) if n > 0 => Some(StormLimit::Records(n)),
                _ => {
                    self.error(
                        limit,
                        format!(
                            "storm_limit {n:?} is not a number of records (1 or more) or `off`"
                        ),
                    );
                    None
                }
            },
        }
    }

    fn trigger(&mut self, r: &raw::Rule, names: &Names) -> Option<Trigger> {
        let w = &r.when;
        let given = [
            w.event.is_some(),
            w.quiet_for.is_some(),
            w.in_stage_for.is_some(),
            w.date_field.is_some(),
            w.schedule.is_some(),
            w.untouched_for.is_some(),
            w.warning.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            self.error(
                &r.id,
                "`when` needs exactly one of: event, quiet_for, in_stage_for, date_field, schedule, untouched_for, warning"
                    .into(),
            );
            return None;
        }
        if let Some(k) = &w.warning {
            let kind = self.warning_kind(k)?;
            if let Some(rec) = &r.record
                && rec.value != "deal"
            {
                self.error(
                    rec,
                    "risk warnings are about deals: a `warning` rule acts on deals".into(),
                );
            }
            return Some(Trigger::Warning(kind));
        }
        if let Some(u) = &w.untouched_for {
            return self.span(u).map(Trigger::Untouched);
        }
        if let Some(e) = &w.event {
            return match EventType::parse(&e.value) {
                Some(t) => Some(Trigger::Event(t)),
                None => {
                    let all: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                    self.error(
                        e,
                        format!(
                            "unknown event type {:?}; expected one of: {}",
                            e.value,
                            all.join(", ")
                        ),
                    );
                    None
                }
            };
        }
        if let Some(q) = &w.quiet_for {
            return self.span(q).map(Trigger::QuietFor);
        }
        if let Some(s) = &w.in_stage_for {
            let stage = self.stage(&s.stage, Some(&names.stages));
            let longer_than = self.span(&s.longer_than);
            return Some(Trigger::InStageFor {
                stage: stage?,
                longer_than: longer_than?,
            });
        }
        if let Some(s) = &w.schedule {
            return self.schedule(s);
        }
        let d = w.date_field.as_ref()?;
        if d.field.value != "close_date" && !d.field.value.starts_with("fields.") {
            self.error(
                &d.field,
                format!(
                    "{:?} is not a date field: use close_date or fields.NAME",
                    d.field.value
                ),
            );
        }
        let offset = match (&d.before, &d.after) {
            (Some(b), None) => Span(-self.span(b)?.0),
            (None, Some(a)) => self.span(a)?,
            _ => {
                self.error(
                    &d.field,
                    "date_field needs exactly one of `before` or `after`".into(),
                );
                return None;
            }
        };
        Some(Trigger::DateField {
            field: d.field.value.clone(),
            offset,
        })
    }

    /// A text with `{{ … }}` placeholders must parse as a template.
    fn template_syntax(&mut self, s: &Spanned<String>) {
        if let Err(e) = minijinja::Environment::new().template_from_str(&s.value) {
            let mut l = self.location(s);
            let line = e.line().unwrap_or(1);
            l.line += line - 1;
            let message = format!("template: {}", e.detail().unwrap_or("syntax error"));
            self.error_at(&l, message);
        }
    }

    fn schedule(&mut self, s: &raw::Schedule) -> Option<Trigger> {
        let zone = s.timezone.as_ref().map_or("UTC", |z| z.value.as_str());
        match Schedule::parse(&s.cron.value, zone) {
            Ok(schedule) => Some(Trigger::Schedule(schedule)),
            Err(e) => {
                match &s.timezone {
                    Some(z) if e.offset == 0 && e.message.contains("time zone") => {
                        self.error(z, e.message)
                    }
                    _ => {
                        let mut l = self.location(&s.cron);
                        l.column += quote_width(&s.cron) + e.offset;
                        self.error_at(&l, format!("cron: {}", e.message));
                    }
                }
                None
            }
        }
    }

    fn condition(
        &mut self,
        c: &Spanned<String>,
        record: RecordKind,
        trigger: Option<&Trigger>,
    ) -> Option<Condition> {
        let mut variables = vec![(record.as_str(), Some(record_facts(record))), ("now", None)];
        let event_fields;
        if let Some(Trigger::Event(t)) = trigger {
            event_fields = event_facts(*t);
            variables.push(("event", Some(event_fields.as_slice())));
        }
        self.compiled(c, variables)
    }

    /// A condition over `variables` (and the set's stages) compiled, its problems reported at
    /// their place in the YAML.
    fn compiled(
        &mut self,
        c: &Spanned<String>,
        variables: Vec<(&str, Option<&[Fact]>)>,
    ) -> Option<Condition> {
        let scope = Scope {
            variables,
            stages: self.stages.iter().map(String::as_str).collect(),
        };
        let (condition, problems) = Condition::check(&c.value, &scope);
        for e in problems {
            // Positions inside the expression, moved to the YAML scalar holding it.
            let at = self.within(c, e.line, e.column);
            self.diagnostics.push(Diagnostic {
                file: at.file,
                line: at.line,
                column: at.column,
                severity: e.severity,
                message: format!("condition: {}", e.message),
            });
        }
        condition
    }

    /// A recipient who can receive what it is given: an alert goes to anyone (a chat channel
    /// if the configuration has its webhook), an email to a person or a contact, a task or an
    /// exception to a person.
    fn recipient(
        &mut self,
        s: &Spanned<String>,
        record: RecordKind,
        receives: Receives,
    ) -> Option<Target> {
        let target = self.target(s, record)?;
        let r = record.as_str();
        let problem = match (receives, &target) {
            (Receives::Alert, Target::Channel(name)) => self.unconfigured(name),
            // An alert carries the rule's why and the record's page in pipewright.
            (Receives::Alert, t) if t.is_buyer() => Some(format!(
                "an alert is for the team: to write to a contact, use send_email with a template (alert {r}.owner, person:ID, role:NAME or channel:NAME)"
            )),
            (Receives::Email, Target::Channel(_)) => Some(format!(
                "a channel gets alerts, not emails: send to {r}.owner, {r}.owner.manager{}, person:ID or role:NAME",
                if record == RecordKind::Deal {
                    ", deal.primary_contact"
                } else {
                    ""
                }
            )),
            (Receives::Task, Target::PrimaryContact | Target::Channel(_)) => {
                Some("a task is for a person: the owner, person:ID or role:NAME".into())
            }
            (Receives::Exception, Target::PrimaryContact | Target::Channel(_)) => Some(format!(
                "an escalation goes to a person: {r}.owner, {r}.owner.manager, person:ID or role:NAME"
            )),
            _ => None,
        };
        match problem {
            Some(problem) => {
                self.error(s, problem);
                None
            }
            None => Some(target),
        }
    }

    /// Why a chat channel cannot be delivered to, if the configuration is known and lacks it.
    fn unconfigured(&self, name: &str) -> Option<String> {
        let configured = self.targets.chat_channels.as_ref()?;
        (!configured.contains(name)).then(|| {
            let known = if configured.is_empty() {
                "none".to_owned()
            } else {
                list(configured)
            };
            format!(
                "no chat channel {name:?} is configured: give its incoming-webhook URL as delivery.chat.{name} in the configuration (configured: {known})"
            )
        })
    }

    fn target(&mut self, s: &Spanned<String>, record: RecordKind) -> Option<Target> {
        let v = s.value.as_str();
        let owner = format!("{}.owner", record.as_str());
        let target = if v == owner || v == "owner" {
            Some(Target::Owner)
        } else if v == format!("{owner}.manager") || v == "owner.manager" {
            Some(Target::OwnerManager)
        } else if record == RecordKind::Deal
            && (v == "deal.primary_contact" || v == "primary_contact")
        {
            Some(Target::PrimaryContact)
        } else if let Some(id) = v.strip_prefix("person:") {
            RecordId::parse(id).ok().map(Target::Person)
        } else if let Some(role) = v.strip_prefix("role:") {
            serde_plain_role(role).map(Target::Role)
        } else if let Some(channel) = v.strip_prefix("channel:") {
            (!channel.is_empty()).then(|| Target::Channel(channel.to_owned()))
        } else {
            None
        };
        if target.is_none() {
            let contact = if record == RecordKind::Deal {
                ", deal.primary_contact"
            } else {
                ""
            };
            self.error(s, format!("{v:?} is not a recipient: use {owner}, {owner}.manager{contact}, person:ID, role:NAME (founder, executive, vp, manager, ae, sdr, csm, revops) or channel:NAME"));
        }
        target
    }

    fn action(
        &mut self,
        a: &raw::Action,
        rule: &Spanned<String>,
        record: RecordKind,
        names: &Names,
        at: &Location,
    ) -> Option<Action> {
        let default_to = if record == RecordKind::Deal {
            Target::PrimaryContact
        } else {
            Target::Owner
        };
        Some(match a {
            raw::Action::StartSequence(s) | raw::Action::StopSequence(s) => {
                match names.sequences.get(&s.value) {
                    None => {
                        self.error(
                            s,
                            format!(
                                "unknown sequence {:?}; the playbooks declare: {}",
                                s.value,
                                list(names.sequences.keys())
                            ),
                        );
                        return None;
                    }
                    Some(kind) if *kind != record => {
                        self.error(
                            s,
                            format!(
                                "sequence {:?} runs on a {kind}, this rule on a {record}",
                                s.value
                            ),
                        );
                        return None;
                    }
                    Some(_) => {}
                }
                if matches!(a, raw::Action::StartSequence(_)) {
                    Action::StartSequence {
                        sequence: s.value.clone(),
                    }
                } else {
                    Action::StopSequence {
                        sequence: s.value.clone(),
                    }
                }
            }
            raw::Action::SendAsset(x) => {
                let asset = match (&x.asset, &x.use_case) {
                    (Some(n), None) if names.assets.contains_key(&n.value) => {
                        AssetChoice::Named(n.value.clone())
                    }
                    (Some(n), None) => {
                        self.error(
                            n,
                            format!(
                                "unknown asset {:?}; the playbooks declare: {}",
                                n.value,
                                list(names.assets.keys())
                            ),
                        );
                        return None;
                    }
                    (None, Some(u))
                        if names.assets.values().any(|cases| cases.contains(&u.value)) =>
                    {
                        AssetChoice::BestFor(u.value.clone())
                    }
                    (None, Some(u)) => {
                        self.error(u, format!("no asset has the use case {:?}", u.value));
                        return None;
                    }
                    _ => {
                        self.error(
                            rule,
                            "send_asset needs exactly one of `asset` or `use_case`".into(),
                        );
                        return None;
                    }
                };
                let to = match &x.to {
                    Some(t) => self.recipient(t, record, Receives::Email)?,
                    None => default_to,
                };
                let use_case = match &asset {
                    AssetChoice::BestFor(u) => Some(u.clone()),
                    AssetChoice::Named(_) => None,
                };
                Action::SendAsset {
                    asset,
                    to,
                    use_case,
                }
            }
            raw::Action::SendEmail(x) => {
                let to = match &x.to {
                    Some(t) => self.recipient(t, record, Receives::Email),
                    None => Some(default_to),
                };
                let to_buyer = to.as_ref().is_some_and(Target::is_buyer);
                if !self.template(&x.template, record, to_buyer, names) {
                    return None;
                }
                Action::SendEmail {
                    template: x.template.value.clone(),
                    to: to?,
                }
            }
            raw::Action::Alert(x) => {
                self.template_syntax(&x.text);
                self.values_fit(&x.text, &values_read(&x.text.value), "this text", record);
                Action::Alert {
                    to: self.recipient(&x.to, record, Receives::Alert)?,
                    text: x.text.value.clone(),
                }
            }
            raw::Action::Task(x) => {
                self.template_syntax(&x.title);
                self.values_fit(&x.title, &values_read(&x.title.value), "this title", record);
                let assignee = self.recipient(&x.assignee, record, Receives::Task);
                let due = self.optional_span(&x.due);
                Action::Task {
                    assignee: assignee?,
                    title: x.title.value.clone(),
                    due: due?,
                    task: None,
                }
            }
            raw::Action::AssignOwner(x) => return self.assign_owner(x, rule, record, at),
            raw::Action::SetField(x) => Action::SetField {
                field: x.field.value.clone(),
                value: x.value.value.clone(),
            },
            raw::Action::SetStage(x) => {
                if record != RecordKind::Deal {
                    self.error(x, "set_stage moves deals only".into());
                    return None;
                }
                Action::SetStage {
                    stage: self.open_stage(
                        x,
                        names,
                        "set_stage moves deals between open stages",
                    )?,
                }
            }
            raw::Action::Escalate(x) => {
                let to = self.recipient(&x.to, record, Receives::Exception);
                let after = self.optional_span(&x.after);
                let sla = self.optional_span(&x.sla);
                let then: Vec<Option<Target>> = x
                    .then
                    .iter()
                    .map(|t| self.recipient(t, record, Receives::Exception))
                    .collect();
                if x.reason.value.trim().is_empty() {
                    self.error(&x.reason, "an escalation needs a `reason`".into());
                }
                Action::Escalate {
                    to: to?,
                    reason: x.reason.value.clone(),
                    after: after?,
                    then: then.into_iter().collect::<Option<Vec<_>>>()?,
                    sla: sla?,
                }
            }
            raw::Action::Webhook(x) => {
                let Some(rest) = (x.url.value.strip_prefix("https://"))
                    .or_else(|| x.url.value.strip_prefix("http://"))
                else {
                    self.error(&x.url, format!("{:?} is not an http(s) URL", x.url.value));
                    return None;
                };
                // The host: before the path, query or fragment, after any user, before the port.
                let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
                let host = authority.rsplit('@').next().unwrap_or_default();
                if host.split(':').next().unwrap_or_default().is_empty() {
                    self.error(
                        &x.url,
                        format!(
                            "{:?} names no host: a webhook needs its receiver's URL",
                            x.url.value
                        ),
                    );
                    return None;
                }
                Action::Webhook {
                    url: x.url.value.clone(),
                }
            }
        })
    }
}

impl Compiler {
    /// An `assign_owner` written at `at`, and the rules of its first-touch SLA (into
    /// `generated`).
    fn assign_owner(
        &mut self,
        x: &raw::AssignOwner,
        rule: &Spanned<String>,
        record: RecordKind,
        at: &Location,
    ) -> Option<Action> {
        let mut team = Vec::new();
        for member in &x.team {
            match RecordId::parse(member.value.clone()) {
                Ok(id) if team.contains(&id) => {
                    self.error(member, format!("{id} is in the team twice"))
                }
                Ok(id) => team.push(id),
                Err(e) => self.error(member, format!("team member id {e}")),
            }
        }
        if team.is_empty() {
            self.error(rule, "assign_owner needs at least one team member".into());
            return None;
        }
        let mut route = Route::default();
        if let Some(s) = &x.strategy {
            match Strategy::ALL.iter().find(|k| k.as_str() == s.value) {
                Some(k) => route.strategy = *k,
                None => self.error(
                    s,
                    format!(
                        "unknown strategy {:?}; expected round_robin, weighted or least_busy",
                        s.value
                    ),
                ),
            }
        }
        if !x.weights.is_empty() {
            let at = x.strategy.as_ref().unwrap_or(rule);
            if route.strategy != Strategy::Weighted {
                self.error(at, "`weights` go with `strategy: weighted`".into());
            }
            for (name, weight) in &x.weights {
                if !team.iter().any(|m| m.as_str() == name) {
                    self.error(at, format!("weights name {name:?}, who is not in the team"));
                }
                if *weight == 0 {
                    self.error(
                        at,
                        format!("{name:?} has weight 0: leave them out of the team"),
                    );
                }
            }
            route.weights = team
                .iter()
                .map(|m| x.weights.get(m.as_str()).copied().unwrap_or(1))
                .collect();
        }
        if let Some(b) = &x.busy {
            route.busy = match b.value.as_str() {
                "open_deals" => Busy::OpenDeals,
                "recent_assignments" => Busy::RecentAssignments,
                other => {
                    self.error(
                        b,
                        format!(
                            "unknown measure {other:?}; expected open_deals or recent_assignments"
                        ),
                    );
                    Busy::OpenDeals
                }
            };
            if route.strategy != Strategy::LeastBusy {
                self.error(b, "`busy` goes with `strategy: least_busy`".into());
            }
        }
        if let Some(r) = &x.recent {
            route.recent = self.span(r).unwrap_or(route.recent);
        }
        if let Some(f) = &x.fallback {
            match RecordId::parse(f.value.clone()) {
                Ok(id) => route.fallback = Some(id),
                Err(e) => self.error(f, format!("fallback id {e}")),
            }
        }
        let action = Action::AssignOwner {
            team,
            route,
            chosen: None,
            chosen_by: None,
            why: None,
        };
        if let Some(ft) = &x.first_touch {
            self.first_touch(ft, rule, record, &action, at);
        }
        Some(action)
    }

    /// The rules of a first-touch SLA on the assignments of `rule`: `RULE-first-touch` acts
    /// when the owner it chose has not touched the record within `within` (reassigns, or
    /// escalates); with both, `RULE-first-touch-escalate` escalates when the reassigned owner
    /// misses it too.
    fn first_touch(
        &mut self,
        ft: &raw::FirstTouch,
        rule: &Spanned<String>,
        record: RecordKind,
        assign: &Action,
        at: &Location,
    ) {
        let Some(within) = self.span(&ft.within) else {
            return;
        };
        let escalate = ft
            .escalate
            .as_ref()
            .and_then(|t| self.recipient(t, record, Receives::Exception));
        if ft.escalate.is_some() && escalate.is_none() {
            return;
        }
        if !ft.reassign && escalate.is_none() {
            self.error(
                &ft.within,
                "first_touch needs `reassign: true`, `escalate: WHO`, or both".into(),
            );
            return;
        }
        let scope = Scope {
            variables: vec![(record.as_str(), Some(record_facts(record))), ("now", None)],
            ..Scope::default()
        };
        let by = |id: &str| {
            Condition::compile(
                &format!("{}.assigned_by == {id:?}", record.as_str()),
                &scope,
            )
            .ok()
        };
        let escalation = |to: Target| Action::Escalate {
            to,
            reason: "slow-first-touch".into(),
            after: None,
            then: Vec::new(),
            sla: None,
        };
        let [first, second] = first_touch_ids(&rule.value);
        let location = self.location(rule);
        // Its actions are the `assign_owner`'s doing: they are placed there.
        let make = |id: String, condition, actions: Vec<Action>, why: String| Rule {
            id,
            why,
            covers: vec!["slow-first-touch".into()],
            record,
            trigger: Trigger::Untouched(within),
            condition,
            action_locations: vec![at.clone(); actions.len()],
            actions,
            reentry: Reentry::EachTrigger,
            shadow: false,
            storm_limit: None,
            priority: 0,
            location: location.clone(),
        };
        let why = format!(
            "A new {record} its owner has not touched within {within} is going cold; it cannot wait for them."
        );
        let actions = if ft.reassign {
            let mut reassign = assign.clone();
            if let Action::AssignOwner { route, .. } = &mut reassign {
                route.reassign = true;
            }
            vec![reassign]
        } else {
            escalate.clone().map(escalation).into_iter().collect()
        };
        self.generated
            .push(make(first.clone(), by(&rule.value), actions, why.clone()));
        if let (true, Some(to)) = (ft.reassign, escalate) {
            self.generated.push(make(
                second,
                by(&first),
                vec![escalation(to)],
                format!("{why} Reassigned once and still untouched, a person must look."),
            ));
        }
    }
}

impl Compiler {
    /// An objection kind's script; its assets must be in the library.
    fn objection(
        &mut self,
        kind: &str,
        o: &raw::Objection,
        at: &Spanned<String>,
        names: &Names,
    ) -> Option<ObjectionScript> {
        let Some(kind) = domain::ObjectionKind::parse(kind) else {
            let kinds = domain::ObjectionKind::ALL.map(domain::ObjectionKind::as_str);
            let (last, rest) = kinds.split_last().unwrap_or((&"", &[]));
            self.error(
                at,
                format!(
                    "objections: unknown kind {kind:?}; expected {} or {last}",
                    rest.join(", ")
                ),
            );
            return None;
        };
        if o.script.trim().is_empty() {
            self.error(at, format!("objections: the {kind:?} script is empty"));
        }
        for a in &o.assets {
            if !names.assets.contains_key(&a.value) {
                self.error(
                    a,
                    format!(
                        "unknown asset {:?}; the playbooks declare: {}",
                        a.value,
                        list(names.assets.keys())
                    ),
                );
            }
        }
        Some(ObjectionScript {
            kind,
            script: o.script.clone(),
            assets: o.assets.iter().map(|a| a.value.clone()).collect(),
        })
    }

    /// A decision tree, every question checked: its reply, where each answer leads, the
    /// field it writes; the whole reached from `start` without a loop.
    fn tree(&mut self, name: &str, t: &raw::DecisionTree, names: &Names) -> Option<DecisionTree> {
        let stage = t.stage.as_ref().map(|s| self.stage(s, Some(&names.stages)));
        let raw_questions: RawQuestions =
            t.questions.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut ok = stage.as_ref().is_none_or(Option::is_some);
        let mut questions = Vec::new();
        for (id, q) in &t.questions {
            match self.question(id, q, &raw_questions) {
                Some(q) => questions.push(q),
                None => ok = false,
            }
        }
        if !raw_questions.contains_key(t.start.value.as_str()) {
            self.error(
                &t.start,
                format!(
                    "tree {name:?} starts at {:?}, which is not one of its questions: {}",
                    t.start.value,
                    list(raw_questions.keys())
                ),
            );
            return None;
        }
        // Every question reached from the start, none leading back to one on its own path.
        let mut order: Vec<String> = Vec::new();
        let mut on_path: Vec<&str> = Vec::new();
        fn visit<'a>(
            cx: &mut Compiler,
            id: &'a str,
            qs: &RawQuestions<'a>,
            on_path: &mut Vec<&'a str>,
            order: &mut Vec<String>,
            ok: &mut bool,
        ) {
            let Some(q) = qs.get(id) else { return };
            if order.iter().any(|o| o == id) {
                return;
            }
            order.push(id.to_owned());
            on_path.push(id);
            let nexts: Vec<&'a Spanned<String>> = q
                .answers
                .iter()
                .filter_map(|a| a.next.as_ref())
                .chain(q.next.as_ref())
                .collect();
            for next in nexts {
                if on_path.contains(&next.value.as_str()) {
                    cx.error(
                        next,
                        format!(
                            "{:?} leads back to {:?}: every path through a tree ends in a recommendation",
                            id, next.value
                        ),
                    );
                    *ok = false;
                    continue;
                }
                visit(cx, next.value.as_str(), qs, on_path, order, ok);
            }
            on_path.pop();
        }
        visit(
            self,
            t.start.value.as_str(),
            &raw_questions,
            &mut on_path,
            &mut order,
            &mut ok,
        );
        for (id, q) in &t.questions {
            if !order.contains(id) {
                self.error(
                    &q.ask,
                    format!("question {id:?} is never reached from {:?}", t.start.value),
                );
                ok = false;
            }
        }
        questions.sort_by_key(|q| order.iter().position(|o| o == &q.id));
        ok.then(|| DecisionTree {
            name: name.to_owned(),
            title: t.title.clone(),
            why: t.why.clone(),
            stage: stage.flatten(),
            start: t.start.value.clone(),
            questions,
        })
    }

    fn outcome(
        &mut self,
        next: &Option<Spanned<String>>,
        recommend: &Option<Spanned<String>>,
        at: &Spanned<String>,
        qs: &RawQuestions,
    ) -> Option<Outcome> {
        match (next, recommend) {
            (Some(n), None) if qs.contains_key(n.value.as_str()) => {
                Some(Outcome::Next(n.value.clone()))
            }
            (Some(n), None) => {
                self.error(
                    n,
                    format!(
                        "unknown question {:?}; the tree has: {}",
                        n.value,
                        list(qs.keys())
                    ),
                );
                None
            }
            (None, Some(r)) if !r.value.trim().is_empty() => {
                Some(Outcome::Recommend(r.value.clone()))
            }
            _ => {
                self.error(
                    at,
                    "needs exactly one of `next` (a question) or `recommend` (what to do)".into(),
                );
                None
            }
        }
    }

    fn question(&mut self, id: &str, q: &raw::Question, qs: &RawQuestions) -> Option<Question> {
        // A bad field name is reported and the rest of the question still checked.
        let mut field_ok = true;
        if let Some(f) = &q.field
            && (f.value.is_empty()
                || !f
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            self.error(
                f,
                format!(
                    "{:?} is not a field name: letters, digits and _ (it becomes deal.fields.NAME)",
                    f.value
                ),
            );
            field_ok = false;
        }
        let reply = match (&q.input, q.answers.is_empty()) {
            (Some(_), false) => {
                self.error(
                    &q.ask,
                    "a question has `answers` or an `input`, not both".into(),
                );
                return None;
            }
            (None, true) => {
                self.error(
                    &q.ask,
                    format!("question {id:?} needs `answers` to choose from, or an `input`"),
                );
                return None;
            }
            (Some(kind), true) => {
                let input = match kind.value.as_str() {
                    "text" => InputKind::Text,
                    "number" => InputKind::Number,
                    "date" => InputKind::Date,
                    other => {
                        self.error(
                            kind,
                            format!("unknown input {other:?}; use text, number or date"),
                        );
                        return None;
                    }
                };
                let then = self.outcome(&q.next, &q.recommend, &q.ask, qs)?;
                Reply::Input { input, then }
            }
            (None, false) => {
                if let Some(stray) = q.next.as_ref().or(q.recommend.as_ref()) {
                    self.error(
                        stray,
                        "with `answers`, `next` and `recommend` go on each answer".into(),
                    );
                    return None;
                }
                let mut answers = Vec::new();
                let mut labels = BTreeSet::new();
                let mut ok = true;
                for a in &q.answers {
                    if !labels.insert(a.answer.value.trim().to_lowercase()) {
                        self.error(
                            &a.answer,
                            format!("the answer {:?} is given twice", a.answer.value),
                        );
                        ok = false;
                    }
                    match self.outcome(&a.next, &a.recommend, &a.answer, qs) {
                        Some(then) => answers.push(Answer {
                            answer: a.answer.value.clone(),
                            value: a
                                .value
                                .clone()
                                .unwrap_or_else(|| serde_json::Value::from(a.answer.value.clone())),
                            then,
                        }),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                Reply::Choice { answers }
            }
        };
        field_ok.then(|| Question {
            id: id.to_owned(),
            ask: q.ask.value.clone(),
            help: q.help.clone(),
            field: q.field.as_ref().map(|f| f.value.clone()),
            reply,
        })
    }
}

/// The ids of the rules a rule's first-touch SLA compiles to.
/// What a recipient is given: see `Compiler::recipient`.
#[derive(Debug, Clone, Copy)]
enum Receives {
    Alert,
    Email,
    Task,
    Exception,
}

/// The facts of a rule's record: a deal's, or a lead's.
fn record_facts(record: RecordKind) -> &'static [Fact] {
    if record == RecordKind::Lead {
        LEAD_FACTS
    } else {
        DEAL_FACTS
    }
}

fn first_touch_ids(rule: &str) -> [String; 2] {
    [
        format!("{rule}-first-touch"),
        format!("{rule}-first-touch-escalate"),
    ]
}

/// The ids a raw rule's first-touch SLAs will take.
fn first_touch_rule_ids(rule: &raw::Rule) -> Vec<String> {
    let has = rule
        .then
        .iter()
        .any(|a| matches!(&a.value, raw::Action::AssignOwner(x) if x.first_touch.is_some()));
    if has {
        first_touch_ids(&rule.id.value).into()
    } else {
        Vec::new()
    }
}

fn serde_plain_role(name: &str) -> Option<Role> {
    serde::Deserialize::deserialize(
        serde::de::value::StrDeserializer::<serde::de::value::Error>::new(name),
    )
    .ok()
}

/// The rule that alerts when the gate on `stage` refuses a move.
fn gate_rule_id(stage: &str) -> String {
    format!("gate-{stage}")
}

/// Names a template may use that are not values: minijinja's global functions.
const MESSAGE_GLOBALS: [&str; 6] = ["range", "dict", "namespace", "debug", "cycler", "joiner"];
/// What a message knows of a person (the record's owner).
const PERSON_VALUES: [&str; 3] = ["id", "name", "email"];
/// What a message knows of a deal's primary contact.
const CONTACT_VALUES: [&str; 4] = ["id", "name", "email", "title"];

/// The values a template reads, as dotted paths (`deal.name`); none if it does not parse (its
/// syntax error is reported on its own).
pub(crate) fn values_read(text: &str) -> BTreeSet<String> {
    minijinja::Environment::new()
        .template_from_str(text)
        .map(|t| t.undeclared_variables(true).into_iter().collect())
        .unwrap_or_default()
}

/// Where a template first reads `link` as a value (not as a field, `x.link`): line and column
/// in its text, from 1. None if it does not lex (its syntax error is reported on its own).
fn link_read_at(text: &str) -> Option<(usize, usize)> {
    use minijinja::machinery::{Token, tokenize};
    let mut after_dot = false;
    for token in tokenize(text, false, Default::default()) {
        let (token, span) = token.ok()?;
        if matches!(token, Token::Ident(LINK)) && !after_dot {
            return Some((
                usize::from(span.start_line),
                usize::from(span.start_col) + 1,
            ));
        }
        after_dot = matches!(token, Token::Dot);
    }
    None
}

/// The first value written in a step, where its diagnostics point.
fn step_anchor(s: &raw::Step) -> Option<&Spanned<String>> {
    s.id.as_ref()
        .or(s
            .email
            .as_ref()
            .and_then(|e| e.template.as_ref().or(e.variants.first())))
        .or(s.task.as_ref().map(|t| &t.assignee))
        .or(s.branch.as_ref().map(|b| &b.condition))
        .or(s.wait.as_ref())
}

/// Parses a wait's `until`: a weekday (`tuesday`, `tue`), a time of day (`09:30`), or both
/// (`tuesday 09:30`).
fn parse_until(text: &str) -> Option<(Option<jiff::civil::Weekday>, Option<jiff::civil::Time>)> {
    let mut weekday = None;
    let mut time = None;
    for word in text.split_whitespace() {
        if let Some(day) = crate::window::parse_weekday(word) {
            if weekday.replace(day).is_some() {
                return None;
            }
        } else if time.replace(crate::window::parse_time(word)?).is_some() {
            return None;
        }
    }
    (weekday.is_some() || time.is_some()).then_some((weekday, time))
}

/// Parses `30m`, `12h`, `5d`, `2w` and combinations such as `1d12h`.
pub fn parse_span(text: &str) -> Option<Span> {
    let mut total: i64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: i64 = match c {
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 7 * 86_400_000,
            _ => return None,
        };
        let n: i64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
        any = true;
    }
    (any && digits.is_empty() && total > 0).then_some(Span(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_units_and_combinations() {
        assert_eq!(parse_span("5d"), Some(Span(5 * 86_400_000)));
        assert_eq!(parse_span("1d12h"), Some(Span(36 * 3_600_000)));
        assert_eq!(parse_span("30m"), Some(Span(1_800_000)));
        for bad in ["", "5", "d", "5x", "0d", "-1d", "5 d"] {
            assert_eq!(parse_span(bad), None, "{bad}");
        }
    }
}
