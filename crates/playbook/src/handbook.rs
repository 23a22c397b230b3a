//! The handbook: the playbooks written out for the people who work beside them — for each
//! stage what the system does on its own and why, what a deal needs to enter it, the calls to
//! make there; the objection scripts with the assets that answer them; every decision tree,
//! sequence and asset. Generated from the compiled set, so it never drifts from what runs.
//!
//! One document model, rendered to Markdown and to HTML.

use std::fmt::Write;

use crate::model::{
    Action, AssetChoice, DecisionTree, Outcome, PlaybookSet, Reply, Rule, Sequence, StepKind,
    Target, Trigger, Wait,
};

/// Inline text.
#[derive(Debug, Clone, PartialEq)]
enum Inline {
    Text(String),
    Strong(String),
    Code(String),
    Em(String),
}

use Inline::{Code, Em, Strong, Text};

fn t(s: impl Into<String>) -> Inline {
    Text(s.into())
}

#[derive(Debug, Clone, PartialEq)]
struct Item {
    text: Vec<Inline>,
    children: Vec<Item>,
}

fn item(text: Vec<Inline>) -> Item {
    Item {
        text,
        children: Vec::new(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Block {
    Heading(u8, String, String),
    Para(Vec<Inline>),
    Quote(String),
    List { ordered: bool, items: Vec<Item> },
    Table(Vec<String>, Vec<Vec<String>>),
}

/// A heading's anchor: lowercase letters, digits and dashes.
fn anchor(parts: &[&str]) -> String {
    let mut out = String::new();
    for c in parts.join("-").chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

fn h(level: u8, text: impl Into<String>, id: &[&str]) -> Block {
    Block::Heading(level, text.into(), anchor(id))
}

fn target(to: &Target) -> String {
    match to {
        Target::Owner => "the owner".into(),
        Target::OwnerManager => "the owner's manager".into(),
        Target::PrimaryContact => "the primary contact".into(),
        Target::Contact(id) | Target::Person(id) => id.as_str().to_owned(),
        Target::Role(role) => format!("the {}", role.as_str()),
        Target::Channel(c) => format!("#{c}"),
    }
}

/// An action in words.
fn action(a: &Action) -> String {
    match a {
        Action::StartSequence { sequence } => format!("start the sequence {sequence}"),
        Action::StopSequence { sequence } => format!("stop the sequence {sequence}"),
        Action::SendAsset { asset, to, .. } => match asset {
            AssetChoice::Named(name) => format!("send the asset {name} to {}", target(to)),
            AssetChoice::BestFor(use_case) => format!(
                "send {} the asset for {use_case} that best fits the stage",
                target(to)
            ),
        },
        Action::SendEmail { template, to } => {
            format!("email {} (template {template})", target(to))
        }
        Action::Alert { to, text } => format!("alert {}: “{text}”", target(to)),
        Action::Task {
            assignee,
            title,
            due,
            ..
        } => {
            let due = due.map(|d| format!(", due in {d}")).unwrap_or_default();
            format!("give {} the task “{title}”{due}", target(assignee))
        }
        Action::AssignOwner { team, route, .. } => {
            let team: Vec<&str> = team.iter().map(|m| m.as_str()).collect();
            let how = route.strategy.as_str().replace('_', " ");
            let verb = if route.reassign { "reassign" } else { "assign" };
            let fallback = route
                .fallback
                .as_ref()
                .map(|f| format!(", else {f}"))
                .unwrap_or_default();
            format!(
                "{verb} to one of {} ({how}; people away, off hours or at capacity are passed over{fallback})",
                team.join(", ")
            )
        }
        Action::SetField { field, value } => format!("set {field} to {value}"),
        Action::SetStage { stage } => format!("move the deal to {stage} (through its gate)"),
        Action::Escalate {
            to,
            reason,
            after,
            then,
            sla,
        } => {
            let mut chain = vec![target(to)];
            chain.extend(then.iter().map(target));
            let after = after.map(|a| format!(" after {a}")).unwrap_or_default();
            let sla = sla.unwrap_or(crate::DEFAULT_ESCALATION_SLA);
            format!(
                "raise an exception ({reason}){after} for {}, each with {sla} to acknowledge it",
                chain.join(", then ")
            )
        }
        Action::Webhook { url } => format!("call the webhook {url}"),
    }
}

fn rule_item(playbook: &str, r: &Rule) -> Item {
    let mut text = vec![Strong(r.id.clone()), t(format!(" ({playbook}) — "))];
    text.push(Em(r.why.clone()));
    if r.shadow {
        text.push(t(" [shadow: recorded, not delivered]"));
    }
    if r.priority != 0 {
        text.push(t(format!(
            " [priority {}: wins over lower ones writing the same owner, stage or field at once]",
            r.priority
        )));
    }
    let mut when = vec![t("When: "), t(r.trigger.to_string())];
    if let Some(c) = &r.condition {
        when.push(t(", if "));
        when.push(Code(c.source.clone()));
    }
    let mut children = vec![item(when)];
    children.extend(
        r.actions
            .iter()
            .map(|a| item(vec![t("Then: "), t(action(a))])),
    );
    Item { text, children }
}

/// The stages a rule acts in: its `in_stage_for` stage, or the stages its condition names.
fn rule_stages(r: &Rule, stages: &[String]) -> Vec<String> {
    if let Trigger::InStageFor { stage, .. } = &r.trigger {
        return vec![stage.as_str().to_owned()];
    }
    let Some(c) = &r.condition else {
        return Vec::new();
    };
    if !c.source.contains("stage") {
        return Vec::new();
    }
    stages
        .iter()
        .filter(|s| c.source.contains(&format!("\"{s}\"")))
        .cloned()
        .collect()
}

/// The objection kinds a rule answers: triggered by `objection.raised` and naming the kind.
fn rule_objection(r: &Rule, kind: &str) -> bool {
    matches!(
        r.trigger,
        Trigger::Event(domain::EventType::ObjectionRaised)
    ) && r
        .condition
        .as_ref()
        .is_some_and(|c| c.source.contains(&format!("\"{kind}\"")))
}

fn outcome(tree: &DecisionTree, o: &Outcome) -> Vec<Inline> {
    match o {
        Outcome::Next(id) => {
            let ask = tree.question(id).map_or(id.as_str(), |q| q.ask.as_str());
            vec![t("next: "), t(ask.to_owned())]
        }
        Outcome::Recommend(text) => vec![Strong("recommend".into()), t(format!(": {text}"))],
    }
}

fn tree_blocks(tree: &DecisionTree, out: &mut Vec<Block>) {
    out.push(h(
        3,
        format!("{} ({})", tree.title, tree.name),
        &["tree", &tree.name],
    ));
    if let Some(why) = &tree.why {
        out.push(Block::Quote(why.clone()));
    }
    let fields: Vec<String> = tree
        .questions
        .iter()
        .filter_map(|q| q.field.as_ref().map(|f| format!("deal.fields.{f}")))
        .collect();
    let mut intro = Vec::new();
    if let Some(stage) = &tree.stage {
        intro.push(t(format!("For deals in {stage}. ")));
    }
    intro.push(t(
        "Walk it with the buyer (pipewright tree walk, or the deal's page); the answers are written to ",
    ));
    intro.push(Code(fields.join(", ")));
    intro.push(t(", which gates and rules read."));
    out.push(Block::Para(intro));
    let items = tree
        .questions
        .iter()
        .map(|q| {
            let mut text = vec![Strong(q.ask.clone())];
            if let Some(f) = &q.field {
                text.push(t(" → "));
                text.push(Code(format!("deal.fields.{f}")));
            }
            if let Some(help) = &q.help {
                text.push(t(" — "));
                text.push(Em(help.clone()));
            }
            let children = match &q.reply {
                Reply::Choice { answers } => answers
                    .iter()
                    .map(|a| {
                        let mut line = vec![t(format!("“{}”", a.answer))];
                        if a.value != serde_json::Value::String(a.answer.clone()) {
                            line.push(t(" ("));
                            line.push(Code(a.value.to_string()));
                            line.push(t(")"));
                        }
                        line.push(t(" — "));
                        line.extend(outcome(tree, &a.then));
                        item(line)
                    })
                    .collect(),
                Reply::Input { input, then } => {
                    let how = match input {
                        crate::InputKind::Text => "answer in words",
                        crate::InputKind::Number => "answer with a number",
                        crate::InputKind::Date => "answer with a date",
                    };
                    let mut line = vec![t(format!("{how} — "))];
                    line.extend(outcome(tree, then));
                    vec![item(line)]
                }
            };
            Item { text, children }
        })
        .collect();
    out.push(Block::List {
        ordered: true,
        items,
    });
}

fn sequence_blocks(s: &Sequence, out: &mut Vec<Block>) {
    out.push(h(3, s.name.clone(), &["sequence", &s.name]));
    let mut about = vec![t(format!("For a {}. ", s.record))];
    if let Some(goal) = &s.goal {
        about.push(t("Ends once "));
        about.push(Code(goal.source.clone()));
        about.push(t(". "));
    }
    let exits: Vec<&str> = s.exits.iter().map(|e| e.as_str()).collect();
    about.push(t(format!("Stops on: {}.", exits.join(", "))));
    if let Some(w) = &s.window {
        about.push(t(format!(" Sends only {w}.")));
    }
    out.push(Block::Para(about));
    let items = s
        .steps
        .iter()
        .map(|step| {
            item(vec![t(match &step.kind {
                StepKind::Email { variants } if variants.len() == 1 => {
                    format!("email (template {})", variants[0])
                }
                StepKind::Email { variants } => {
                    format!("email, A/B test of {}", variants.join(" and "))
                }
                StepKind::Task {
                    assignee, title, ..
                } => format!("task for {}: “{title}”", target(assignee)),
                StepKind::Wait(Wait::For(span)) => format!("wait {span}"),
                StepKind::Wait(Wait::Until { weekday, time }) => {
                    let day = weekday.map(|d| format!(" {d:?}")).unwrap_or_default();
                    let at = time.map(|t| format!(" {t}")).unwrap_or_default();
                    format!("wait until{day}{at}")
                }
                StepKind::Branch { on, goto } => format!(
                    "if {}, go to step {}",
                    serde_json::to_value(on)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    s.steps.get(*goto).map_or("?", |g| g.id.as_str())
                ),
            })])
        })
        .collect();
    out.push(Block::List {
        ordered: true,
        items,
    });
}

/// The warnings that flag a deal at risk, with the set's thresholds, and the rules that act
/// when one appears.
fn risk_blocks(set: &PlaybookSet, out: &mut Vec<Block>) {
    let model = risk::Model::new(set.risk.clone(), &set.stages(), risk::Learned::default());
    out.push(h(2, "Deals at risk", &["risk"]));
    out.push(Block::Para(vec![t(format!(
        "Every open deal is checked for these warnings as it changes and as time passes. Together they make its risk score; a deal scoring {:.2} or more with a warning that raises it is at risk. The weights below are the rule-based ones; once enough deals have closed, weights fitted to them take over (`pipewright risk model`).",
        model.settings.threshold
    ))]));
    let rules: Vec<(&str, &Rule)> = set
        .playbooks
        .iter()
        .flat_map(|p| p.rules.iter().map(move |r| (p.name.as_str(), r)))
        .collect();
    out.push(Block::Table(
        ["warning", "holds when", "weight", "rules that act on it"]
            .map(String::from)
            .to_vec(),
        risk::Kind::ALL
            .iter()
            .filter(|k| model.settings.is_on(**k))
            .map(|k| {
                let acting: Vec<String> = rules
                    .iter()
                    .filter(|(_, r)| matches!(r.trigger, Trigger::Warning(w) if w == *k))
                    .map(|(_, r)| r.id.clone())
                    .collect();
                vec![
                    k.title().to_owned(),
                    model.describe(*k),
                    format!("{:.2}", model.settings.weight(*k)),
                    if acting.is_empty() {
                        "none".to_owned()
                    } else {
                        acting.join(", ")
                    },
                ]
            })
            .collect(),
    ));
}

fn document(set: &PlaybookSet) -> Vec<Block> {
    let mut out = Vec::new();
    let rules: usize = set.playbooks.iter().map(|p| p.rules.len()).sum();
    out.push(h(1, "Handbook", &["handbook"]));
    out.push(Block::Para(vec![
        t(format!(
            "What the system does on its own, and what people do beside it, stage by stage. Generated from the playbooks (version {}: {} playbooks, {rules} rules); every automated move says why. ",
            set.version,
            set.playbooks.len()
        )),
        t("Edit the playbooks, not this page."),
    ]));
    let mut stages: Vec<String> = Vec::new();
    for p in &set.playbooks {
        for s in &p.stages {
            if !stages.iter().any(|x| x == s.as_str()) {
                stages.push(s.as_str().to_owned());
            }
        }
    }
    let all_rules: Vec<(&str, &Rule)> = set
        .playbooks
        .iter()
        .flat_map(|p| p.rules.iter().map(move |r| (p.name.as_str(), r)))
        .collect();
    let trees: Vec<&DecisionTree> = set.playbooks.iter().flat_map(|p| &p.trees).collect();

    out.push(h(2, "Stage by stage", &["stages"]));
    for stage in &stages {
        out.push(h(3, format!("Stage: {stage}"), &["stage", stage]));
        let gate = domain::Stage::parse(stage.clone())
            .ok()
            .and_then(|s| set.gate(&s));
        if let Some((p, gate)) = gate {
            out.push(Block::Para(vec![
                Strong(format!("Before a deal may enter {stage}")),
                t(format!(" ({}):", p.name)),
            ]));
            out.push(Block::Quote(gate.why.clone()));
            let mut items: Vec<Item> = gate
                .criteria
                .iter()
                .map(|c| {
                    item(vec![
                        Strong(c.name.clone()),
                        t(" — "),
                        Code(c.condition.source.clone()),
                    ])
                })
                .collect();
            if !gate.override_roles.is_empty() {
                let roles: Vec<&str> = gate.override_roles.iter().map(|r| r.as_str()).collect();
                items.push(item(vec![t(format!(
                    "Who may move a deal past it anyway, with a reason: {}.",
                    roles.join(", ")
                ))]));
            }
            out.push(Block::List {
                ordered: false,
                items,
            });
        }
        let here: Vec<Item> = all_rules
            .iter()
            .filter(|(_, r)| rule_stages(r, &stages).contains(stage))
            .map(|(p, r)| rule_item(p, r))
            .collect();
        if !here.is_empty() {
            out.push(Block::Para(vec![Strong(
                "What the system does here".into(),
            )]));
            out.push(Block::List {
                ordered: false,
                items: here,
            });
        }
        let calls: Vec<Item> = trees
            .iter()
            .filter(|tr| tr.stage.as_ref().is_some_and(|s| s.as_str() == stage))
            .map(|tr| {
                item(vec![
                    t("Call to make: "),
                    Strong(tr.title.clone()),
                    t(format!(" (decision tree {}, below)", tr.name)),
                ])
            })
            .collect();
        if !calls.is_empty() {
            out.push(Block::List {
                ordered: false,
                items: calls,
            });
        }
    }
    let anywhere: Vec<Item> = all_rules
        .iter()
        .filter(|(_, r)| r.record == domain::RecordKind::Deal && rule_stages(r, &stages).is_empty())
        .map(|(p, r)| rule_item(p, r))
        .collect();
    if !anywhere.is_empty() {
        out.push(h(3, "At any stage", &["stage", "any"]));
        out.push(Block::List {
            ordered: false,
            items: anywhere,
        });
    }
    let leads: Vec<Item> = all_rules
        .iter()
        .filter(|(_, r)| r.record == domain::RecordKind::Lead)
        .map(|(p, r)| rule_item(p, r))
        .collect();
    if !leads.is_empty() {
        out.push(h(3, "Leads", &["leads"]));
        out.push(Block::List {
            ordered: false,
            items: leads,
        });
    }

    // Objections: every kind with a script, a rule or an asset.
    let assets: Vec<&crate::Asset> = set.playbooks.iter().flat_map(|p| &p.assets).collect();
    let scripts: Vec<&crate::ObjectionScript> =
        set.playbooks.iter().flat_map(|p| &p.objections).collect();
    let mut objection_blocks = Vec::new();
    for kind in domain::ObjectionKind::ALL.map(domain::ObjectionKind::as_str) {
        let script = scripts.iter().find(|s| s.kind.as_str() == kind);
        let answering: Vec<Item> = all_rules
            .iter()
            .filter(|(_, r)| rule_objection(r, kind))
            .map(|(p, r)| rule_item(p, r))
            .collect();
        let helpful: Vec<&&crate::Asset> = assets
            .iter()
            .filter(|a| {
                a.use_cases.iter().any(|u| u == kind)
                    || script.is_some_and(|s| s.assets.contains(&a.name))
            })
            .collect();
        if script.is_none() && answering.is_empty() && helpful.is_empty() {
            continue;
        }
        objection_blocks.push(h(3, format!("Objection: {kind}"), &["objection", kind]));
        if let Some(s) = script {
            objection_blocks.push(Block::Para(vec![
                Strong("What to say:".into()),
                t(" ".to_owned() + &s.script.trim().replace('\n', " ")),
            ]));
        }
        if !answering.is_empty() {
            objection_blocks.push(Block::Para(vec![Strong("What the system does".into())]));
            objection_blocks.push(Block::List {
                ordered: false,
                items: answering,
            });
        }
        if !helpful.is_empty() {
            objection_blocks.push(Block::Para(vec![Strong("Assets that answer it".into())]));
            objection_blocks.push(Block::List {
                ordered: false,
                items: helpful
                    .iter()
                    .map(|a| {
                        let link = a.url.clone().or(a.file.clone()).unwrap_or_default();
                        item(vec![
                            Strong(a.title.clone().unwrap_or_else(|| a.name.clone())),
                            t(format!(" ({}) {link}", a.name)),
                        ])
                    })
                    .collect(),
            });
        }
    }
    if !objection_blocks.is_empty() {
        out.push(h(2, "Objections", &["objections"]));
        out.extend(objection_blocks);
    }
    if !trees.is_empty() {
        out.push(h(2, "Decision trees", &["trees"]));
        for tree in &trees {
            tree_blocks(tree, &mut out);
        }
    }
    let sequences: Vec<&Sequence> = set.playbooks.iter().flat_map(|p| &p.sequences).collect();
    if !sequences.is_empty() {
        out.push(h(2, "Sequences", &["sequences"]));
        for s in sequences {
            sequence_blocks(s, &mut out);
        }
    }
    risk_blocks(set, &mut out);
    if !assets.is_empty() {
        out.push(h(2, "Asset library", &["assets"]));
        out.push(Block::Table(
            ["asset", "title", "use cases", "stages", "link"]
                .map(String::from)
                .to_vec(),
            assets
                .iter()
                .map(|a| {
                    vec![
                        a.name.clone(),
                        a.title.clone().unwrap_or_default(),
                        a.use_cases.join(", "),
                        a.stages
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        a.url.clone().or(a.file.clone()).unwrap_or_default(),
                    ]
                })
                .collect(),
        ));
    }
    out
}

fn md_inline(parts: &[Inline]) -> String {
    let mut s = String::new();
    for p in parts {
        match p {
            Text(x) => s.push_str(x),
            Strong(x) => {
                let _ = write!(s, "**{x}**");
            }
            Em(x) => {
                let _ = write!(s, "*{x}*");
            }
            Code(x) => {
                let _ = write!(s, "`{x}`");
            }
        }
    }
    s
}

fn md_items(items: &[Item], ordered: bool, depth: usize, out: &mut String) {
    for (i, it) in items.iter().enumerate() {
        let marker = if ordered && depth == 0 {
            format!("{}.", i + 1)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            out,
            "{}{marker} {}",
            "  ".repeat(depth),
            md_inline(&it.text)
        );
        md_items(&it.children, false, depth + 1, out);
    }
}

/// The handbook as Markdown.
pub fn markdown(set: &PlaybookSet) -> String {
    let mut out = String::new();
    for b in document(set) {
        match b {
            Block::Heading(level, text, _) => {
                let _ = writeln!(out, "{} {text}\n", "#".repeat(level as usize));
            }
            Block::Para(parts) => {
                let _ = writeln!(out, "{}\n", md_inline(&parts));
            }
            Block::Quote(text) => {
                let _ = writeln!(out, "> {text}\n");
            }
            Block::List { ordered, items } => {
                md_items(&items, ordered, 0, &mut out);
                out.push('\n');
            }
            Block::Table(head, rows) => {
                let _ = writeln!(out, "| {} |", head.join(" | "));
                let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
                for row in rows {
                    let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
                    let _ = writeln!(out, "| {} |", cells.join(" | "));
                }
                out.push('\n');
            }
        }
    }
    out
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html_inline(parts: &[Inline]) -> String {
    let mut s = String::new();
    for p in parts {
        match p {
            Text(x) => s.push_str(&esc(x)),
            Strong(x) => {
                let _ = write!(s, "<strong>{}</strong>", esc(x));
            }
            Em(x) => {
                let _ = write!(s, "<em>{}</em>", esc(x));
            }
            Code(x) => {
                let _ = write!(s, "<code>{}</code>", esc(x));
            }
        }
    }
    s
}

fn html_items(items: &[Item], ordered: bool, out: &mut String) {
    let tag = if ordered { "ol" } else { "ul" };
    let _ = write!(out, "<{tag}>");
    for it in items {
        let _ = write!(out, "<li>{}", html_inline(&it.text));
        if !it.children.is_empty() {
            html_items(&it.children, false, out);
        }
        out.push_str("</li>");
    }
    let _ = writeln!(out, "</{tag}>");
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d2430}\
h1,h2,h3{line-height:1.2}h2{border-bottom:1px solid #d7dce3;padding-bottom:.3rem;margin-top:2.5rem}\
blockquote{margin:.5rem 0;padding:.2rem 1rem;border-left:4px solid #7a8ca5;color:#3b4758}\
code{background:#eef1f5;padding:0 .25rem;border-radius:3px}table{border-collapse:collapse}\
td,th{border:1px solid #d7dce3;padding:.3rem .6rem;text-align:left}li{margin:.2rem 0}";

/// The handbook as one HTML page, with nothing loaded from elsewhere.
pub fn html(set: &PlaybookSet) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Handbook — pipewright</title><style>{STYLE}</style></head><body>"
    );
    for b in document(set) {
        match b {
            Block::Heading(level, text, id) => {
                let _ = writeln!(out, "<h{level} id=\"{id}\">{}</h{level}>", esc(&text));
            }
            Block::Para(parts) => {
                let _ = writeln!(out, "<p>{}</p>", html_inline(&parts));
            }
            Block::Quote(text) => {
                let _ = writeln!(out, "<blockquote>{}</blockquote>", esc(&text));
            }
            Block::List { ordered, items } => html_items(&items, ordered, &mut out),
            Block::Table(head, rows) => {
                out.push_str("<table><tr>");
                for hd in head {
                    let _ = write!(out, "<th>{}</th>", esc(&hd));
                }
                out.push_str("</tr>");
                for row in rows {
                    out.push_str("<tr>");
                    for c in row {
                        let _ = write!(out, "<td>{}</td>", esc(&c));
                    }
                    out.push_str("</tr>");
                }
                out.push_str("</table>\n");
            }
        }
    }
    out.push_str("</body></html>\n");
    out
}
