//! Conflicts between rules (issue 23): two rules that one input triggers together — the same
//! event, or time triggers that come due at the same moment for a record — and that write
//! different values to the same owner, stage or field. Only one of the writes can land; at run
//! time the engine keeps the one of the higher `priority:` (on a tie, the rule declared first)
//! and records the other as overruled. `check` reports such pairs so the order is chosen, not
//! fallen into:
//!
//! - an **error** when both can act and no `priority:` orders them;
//! - a **warning** when their conditions may exclude each other but the check cannot tell;
//! - nothing when their conditions cannot both hold, or when priorities order them.
//!
//! Conditions are compared by what they say about single facts: `deal.stage == "a"`,
//! `event.kind in ["pricing", "legal"]`, `deal.stage != "a"`, a bare true-or-false fact,
//! joined by `&&`, `||` and `!`. Two conditions that ask one fact for values with none in
//! common cannot both hold. What else they say (orderings, sizes, functions) the check cannot
//! weigh; when both conditions hold such parts, it cannot tell.

use std::collections::{BTreeMap, BTreeSet};

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators as op};

use domain::Timestamp;

use crate::load::{Diagnostic, Severity};
use crate::model::{Action, Location, Playbook, Rule, Trigger};
use crate::{Condition, Schedule};

/// Reports every pair of rules of `playbooks` (and every rule with itself) whose writes
/// conflict, at the later one's action. Rules placed at `incomplete` (their trigger or
/// condition did not compile) are left out.
pub(crate) fn check(
    playbooks: &[Playbook],
    incomplete: &[Location],
    diagnostics: &mut Vec<Diagnostic>,
) {
    // Rules in declared order; rules that write nothing, or only in shadow (recorded, never
    // delivered), cannot conflict.
    let rules: Vec<&Rule> = playbooks
        .iter()
        .flat_map(|p| &p.rules)
        .filter(|r| !r.shadow && r.actions.iter().any(|a| a.writes().is_some()))
        .filter(|r| !incomplete.contains(&r.location))
        .collect();
    for rule in &rules {
        within(rule, diagnostics);
    }
    // Rules can meet only within a group of triggers that can come due together.
    let mut groups: BTreeMap<Moment<'_>, Vec<&Rule>> = BTreeMap::new();
    for rule in &rules {
        groups.entry(moment(rule)).or_default().push(rule);
    }
    for group in groups.values() {
        for (j, later) in group.iter().enumerate() {
            for earlier in &group[..j] {
                if earlier.record == later.record && together(&earlier.trigger, &later.trigger) {
                    between(earlier, later, diagnostics);
                }
            }
        }
    }
}

/// Two actions of one rule that write different values to one target: no priority can
/// order them, and at run time the one written first wins.
fn within(rule: &Rule, diagnostics: &mut Vec<Diagnostic>) {
    for (j, (action, at)) in rule.actions.iter().zip(&rule.action_locations).enumerate() {
        let earlier = rule.actions[..j]
            .iter()
            .zip(&rule.action_locations)
            .find(|(a, _)| a.conflicts_with(action));
        if let (Some((first, first_at)), Some(what)) = (earlier, action.what_it_writes()) {
            let before = first.what_it_writes().unwrap_or_default();
            diagnostics.push(Diagnostic::error(
                at.file.clone(),
                at.line,
                at.column,
                format!(
                    "conflict: this rule already {before} ({}) and here {what}: only the first would land; keep one",
                    place(first_at)
                ),
            ));
        }
    }
}

/// The conflicts between two rules triggered together, at `later`'s actions.
fn between(earlier: &Rule, later: &Rule, diagnostics: &mut Vec<Diagnostic>) {
    if earlier.priority != later.priority {
        return;
    }
    let mut verdict = None;
    for (action, at) in later.actions.iter().zip(&later.action_locations) {
        let Some((other, other_at)) = earlier
            .actions
            .iter()
            .zip(&earlier.action_locations)
            .find(|(a, _)| a.conflicts_with(action))
        else {
            continue;
        };
        let verdict = *verdict.get_or_insert_with(|| relate(earlier, later));
        let severity = match verdict {
            Relation::Exclusive => return,
            Relation::Both => Severity::Error,
            Relation::Unknown => Severity::Warning,
        };
        let writes = match (other.writes(), action.writes()) {
            (Some((_, Some(_))), Some((_, Some(value)))) => format!(
                "{} and this rule to {}",
                other.what_it_writes().unwrap_or_default(),
                describe_value(action, value)
            ),
            _ => format!(
                "{} and so does this rule (routing picks an owner for each)",
                other.what_it_writes().unwrap_or_default()
            ),
        };
        let when =
            if let (Trigger::Event(a), Trigger::Event(_)) = (&earlier.trigger, &later.trigger) {
                format!("both on event {a}")
            } else if earlier.trigger.to_string() == later.trigger.to_string() {
                format!("both due at the same moment ({})", earlier.trigger)
            } else {
                format!(
                    "both due at the same moment ({}; {})",
                    earlier.trigger, later.trigger
                )
            };
        let tie = if later.priority == 0 {
            String::new()
        } else {
            format!(" (both have priority {})", later.priority)
        };
        let verdict = match verdict {
            Relation::Both => format!(
                ", and both can act: give the one that should win a higher `priority:`{tie}"
            ),
            _ => format!(
                "; check cannot tell whether their conditions exclude each other: if both can hold, give the one that should win a higher `priority:`{tie}"
            ),
        };
        diagnostics.push(Diagnostic {
            file: at.file.clone(),
            line: at.line,
            column: at.column,
            severity,
            message: format!(
                "conflict: rule {:?} ({}) {writes}, {when}{verdict}",
                earlier.id,
                place(other_at)
            ),
        });
    }
}

/// The value a write gives, in words matching [`Action::what_it_writes`]: a stage by name, a
/// field's value quoted.
fn describe_value(action: &Action, value: &str) -> String {
    match action {
        Action::SetField { .. } => format!("{value:?}"),
        _ => value.to_owned(),
    }
}

fn place(at: &Location) -> String {
    format!("{}:{}:{}", at.file.display(), at.line, at.column)
}

/// The class of moments a trigger comes due at: rules of different classes never share an
/// input. A stage move is activity, so a quiet stretch and a stay in a stage of the same
/// length can end together (when nothing happened since the move): both are keyed by length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Moment<'a> {
    Event(domain::EventType),
    /// `quiet_for` and `in_stage_for`, by length.
    Stretch(i64),
    Date(&'a str, i64),
    Schedule,
    Untouched(i64),
    Warning(risk::Kind),
}

fn moment(rule: &Rule) -> Moment<'_> {
    match &rule.trigger {
        Trigger::Event(t) => Moment::Event(*t),
        Trigger::QuietFor(span) => Moment::Stretch(span.0),
        Trigger::InStageFor { longer_than, .. } => Moment::Stretch(longer_than.0),
        Trigger::DateField { field, offset } => Moment::Date(field, offset.0),
        Trigger::Schedule(_) => Moment::Schedule,
        Trigger::Untouched(span) => Moment::Untouched(span.0),
        Trigger::Warning(kind) => Moment::Warning(*kind),
    }
}

/// Whether two triggers of one class can come due for a record at the same moment by their
/// own making. Moments that meet only by the data (two date fields holding the same date, a
/// warning that appears as a quiet stretch ends) are not reported; the engine resolves them
/// all the same.
fn together(a: &Trigger, b: &Trigger) -> bool {
    match (a, b) {
        (Trigger::InStageFor { stage: x, .. }, Trigger::InStageFor { stage: y, .. }) => x == y,
        (Trigger::Schedule(x), Trigger::Schedule(y)) => schedules_meet(x, y),
        _ => true,
    }
}

/// Whether two schedules share an occurrence within a year (a whole cycle of daylight-saving
/// changes), leaping each to the other's next occurrence. A search too long to finish says
/// they may.
fn schedules_meet(a: &Schedule, b: &Schedule) -> bool {
    if a == b {
        return true;
    }
    const FROM: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    const UNTIL: i64 = FROM + 366 * 86_400_000;
    let at = |s: &Schedule, from: i64| s.next_after(Timestamp::from_millis(from));
    let (mut x, mut y) = (at(a, FROM), at(b, FROM));
    for _ in 0..20_000 {
        let (Some(p), Some(q)) = (x, y) else {
            return false;
        };
        let (p, q) = (p.as_millis(), q.as_millis());
        if p == q {
            return true;
        }
        if p.max(q) > UNTIL {
            return false;
        }
        if p < q {
            x = at(a, q - 1);
        } else {
            y = at(b, p - 1);
        }
    }
    true
}

/// Whether the conditions of two rules triggered together can both hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    /// They ask one fact for values with none in common.
    Exclusive,
    Both,
    /// Each holds parts the check cannot weigh.
    Unknown,
}

fn relate(a: &Rule, b: &Rule) -> Relation {
    let (x, y) = (Constraints::of(a), Constraints::of(b));
    let exact = x.exact && y.exact;
    if x.and(y).impossible() {
        Relation::Exclusive
    } else if a.condition.is_none() || b.condition.is_none() || exact {
        // A rule without a condition acts whenever it is triggered; the other's condition is
        // taken to hold sometimes (one that never does is a rule that never acts).
        Relation::Both
    } else {
        Relation::Unknown
    }
}

/// A literal a fact is compared with. Numbers are compared by value, as CEL compares `1` and
/// `1.0`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Lit {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
}

impl Lit {
    fn of(node: &IdedExpr) -> Option<Lit> {
        let Expr::Literal(l) = &node.expr else {
            return None;
        };
        let number = |n: f64| Lit::Num(format!("{}", if n == 0.0 { 0.0 } else { n }));
        Some(match l {
            LiteralValue::Null => Lit::Null,
            LiteralValue::Boolean(b) => Lit::Bool(*b.inner()),
            LiteralValue::Int(i) => number(*i.inner() as f64),
            LiteralValue::UInt(u) => number(*u.inner() as f64),
            LiteralValue::Double(d) => number(*d.inner()),
            LiteralValue::String(s) => Lit::Str(s.inner().to_owned()),
            _ => return None,
        })
    }
}

/// The values one fact may take for a condition to hold: one of a set, or none of one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    In(BTreeSet<Lit>),
    NotIn(BTreeSet<Lit>),
}

impl Allowed {
    fn and(self, other: Allowed) -> Allowed {
        use Allowed::*;
        match (self, other) {
            (In(a), In(b)) => In(a.intersection(&b).cloned().collect()),
            (In(a), NotIn(b)) | (NotIn(b), In(a)) => In(a.difference(&b).cloned().collect()),
            (NotIn(a), NotIn(b)) => NotIn(a.union(&b).cloned().collect()),
        }
    }

    fn or(self, other: Allowed) -> Allowed {
        use Allowed::*;
        match (self, other) {
            (In(a), In(b)) => In(a.union(&b).cloned().collect()),
            (In(a), NotIn(b)) | (NotIn(b), In(a)) => NotIn(b.difference(&a).cloned().collect()),
            (NotIn(a), NotIn(b)) => NotIn(a.intersection(&b).cloned().collect()),
        }
    }

    fn not(self) -> Allowed {
        match self {
            Allowed::In(s) => Allowed::NotIn(s),
            Allowed::NotIn(s) => Allowed::In(s),
        }
    }
}

/// What a condition requires of single facts (`deal.stage`, `event.kind`), by the fact's
/// path. `exact`: the condition is nothing but these requirements, so any facts meeting them
/// make it hold; otherwise it also says things the check cannot weigh.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Constraints {
    facts: BTreeMap<String, Allowed>,
    exact: bool,
}

impl Constraints {
    /// Nothing known.
    fn unknown() -> Self {
        Self {
            facts: BTreeMap::new(),
            exact: false,
        }
    }

    fn one(path: String, allowed: Allowed) -> Self {
        Self {
            facts: BTreeMap::from([(path, allowed)]),
            exact: true,
        }
    }

    /// What a rule requires when it acts: its condition's requirements, and what its trigger
    /// implies (an `in_stage_for` comes due only in its stage).
    fn of(rule: &Rule) -> Self {
        let mut c = match &rule.condition {
            Some(condition) => Self::condition(condition),
            None => Self {
                facts: BTreeMap::new(),
                exact: true,
            },
        };
        if let Trigger::InStageFor { stage, .. } = &rule.trigger {
            let stage = Lit::Str(stage.as_str().to_owned());
            let implied = Self::one("deal.stage".into(), Allowed::In([stage].into()));
            let exact = c.exact;
            c = c.and(implied);
            c.exact = exact;
        }
        c
    }

    fn condition(condition: &Condition) -> Self {
        Self::node(condition.program.expression())
    }

    fn node(node: &IdedExpr) -> Self {
        // A true-or-false fact on its own: it holds when the fact is true.
        if let Some(path) = fact(node) {
            return Self::one(path, Allowed::In([Lit::Bool(true)].into()));
        }
        let Expr::Call(call) = &node.expr else {
            return Self::unknown();
        };
        if call.target.is_some() {
            return Self::unknown();
        }
        match (call.func_name.as_str(), call.args.as_slice()) {
            (op::LOGICAL_AND, [a, b]) => Self::node(a).and(Self::node(b)),
            (op::LOGICAL_OR, [a, b]) => Self::node(a).or(Self::node(b)),
            (op::LOGICAL_NOT, [a]) => Self::node(a).not(),
            (op::EQUALS | op::NOT_EQUALS, [a, b]) => {
                let compared = match (fact(a), Lit::of(b), fact(b), Lit::of(a)) {
                    (Some(path), Some(lit), _, _) | (_, _, Some(path), Some(lit)) => {
                        Some((path, lit))
                    }
                    _ => None,
                };
                match compared {
                    Some((path, lit)) => {
                        let set = BTreeSet::from([lit]);
                        let allowed = if call.func_name == op::EQUALS {
                            Allowed::In(set)
                        } else {
                            Allowed::NotIn(set)
                        };
                        Self::one(path, allowed)
                    }
                    None => Self::unknown(),
                }
            }
            (op::IN, [a, b]) => match (fact(a), &b.expr) {
                (Some(path), Expr::List(list)) => {
                    let values: Option<BTreeSet<Lit>> = list.elements.iter().map(Lit::of).collect();
                    match values {
                        Some(values) => Self::one(path, Allowed::In(values)),
                        None => Self::unknown(),
                    }
                }
                _ => Self::unknown(),
            },
            _ => Self::unknown(),
        }
    }

    fn and(mut self, other: Self) -> Self {
        for (path, allowed) in other.facts {
            let merged = match self.facts.remove(&path) {
                Some(mine) => mine.and(allowed),
                None => allowed,
            };
            self.facts.insert(path, merged);
        }
        self.exact &= other.exact;
        self
    }

    /// Only what both sides say of the same fact survives an `||`; it stays exact when both
    /// sides are about that one fact alone.
    fn or(mut self, mut other: Self) -> Self {
        let single = self.facts.len() == 1 && self.facts.keys().eq(other.facts.keys());
        let exact = self.exact && other.exact && single;
        let facts = std::mem::take(&mut self.facts)
            .into_iter()
            .filter_map(|(path, mine)| {
                let theirs = other.facts.remove(&path)?;
                Some((path, mine.or(theirs)))
            })
            .collect();
        Self { facts, exact }
    }

    fn not(mut self) -> Self {
        if self.exact && self.facts.len() == 1 {
            self.facts = self
                .facts
                .into_iter()
                .map(|(path, allowed)| (path, allowed.not()))
                .collect();
            self
        } else {
            Self::unknown()
        }
    }

    /// Some fact is asked for a value from an empty set.
    fn impossible(&self) -> bool {
        self.facts
            .values()
            .any(|a| matches!(a, Allowed::In(values) if values.is_empty()))
    }
}

/// `deal.stage`, `event.kind`, `deal.fields.tier`: a fact of the record or the event, by its
/// path (never a loop variable's: the check does not enter loops).
fn fact(node: &IdedExpr) -> Option<String> {
    let path = crate::condition::path(node)?;
    let root = path.split('.').next().unwrap_or_default();
    (path.contains('.') && matches!(root, "deal" | "lead" | "event")).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;

    fn constraints(source: &str) -> Constraints {
        let scope = Scope {
            variables: vec![
                ("deal", Some(crate::DEAL_FACTS)),
                ("event", None),
                ("now", None),
            ],
            stages: Vec::new(),
        };
        Constraints::condition(&Condition::compile(source, &scope).unwrap())
    }

    fn exclusive(a: &str, b: &str) -> bool {
        constraints(a).and(constraints(b)).impossible()
    }

    #[test]
    fn conditions_that_ask_one_fact_for_different_values_exclude_each_other() {
        for (a, b) in [
            (r#"deal.stage == "demo""#, r#"deal.stage == "legal""#),
            (r#"event.kind == "pricing""#, r#""legal" == event.kind"#),
            (
                r#"deal.stage in ["demo", "proposal"]"#,
                r#"deal.stage == "legal""#,
            ),
            (r#"deal.stage == "demo""#, r#"deal.stage != "demo""#),
            (r#"deal.stage == "demo""#, r#"!(deal.stage == "demo")"#),
            ("deal.risk.at_risk", "!deal.risk.at_risk"),
            (
                r#"deal.amount > 5 && deal.fields.tier == "gold""#,
                r#"deal.fields.tier == "silver" || deal.fields.tier == "bronze""#,
            ),
            ("deal.fields.seats == 1", "deal.fields.seats == 2.0"),
        ] {
            assert!(exclusive(a, b), "{a} / {b}");
        }
        for (a, b) in [
            (
                r#"deal.stage == "demo""#,
                r#"deal.stage in ["demo", "legal"]"#,
            ),
            (r#"deal.stage != "demo""#, r#"deal.stage != "legal""#),
            ("deal.fields.seats == 1", "deal.fields.seats == 1.0"),
            (
                r#"deal.stage == "demo" || deal.amount > 5"#,
                r#"deal.stage == "legal""#,
            ),
            ("deal.amount > 5", "deal.amount < 3"),
            (
                r#"deal.objections.exists(o, o.kind == "pricing")"#,
                r#"deal.objections.exists(o, o.kind == "legal")"#,
            ),
        ] {
            assert!(!exclusive(a, b), "{a} / {b}");
        }
    }

    #[test]
    fn a_condition_is_exact_when_it_only_asks_facts_for_values() {
        assert!(constraints(r#"deal.stage == "demo" && event.kind in ["a", "b"]"#).exact);
        assert!(constraints(r#"deal.stage == "demo" || deal.stage == "legal""#).exact);
        assert!(!constraints(r#"deal.stage == "demo" || event.kind == "a""#).exact);
        assert!(!constraints(r#"deal.stage == "demo" && deal.amount > 5"#).exact);
        assert!(!constraints("size(deal.contacts) > 1").exact);
    }

    #[test]
    fn schedules_meet_when_they_share_an_occurrence() {
        let s = |cron: &str, zone: &str| Schedule::parse(cron, zone).unwrap();
        assert!(schedules_meet(
            &s("0 9 * * MON", "UTC"),
            &s("0 9 * * *", "UTC")
        ));
        assert!(schedules_meet(
            &s("@hourly", "UTC"),
            &s("0 9 * * *", "Europe/Berlin")
        ));
        assert!(!schedules_meet(
            &s("0 9 * * MON", "UTC"),
            &s("0 9 * * TUE", "UTC")
        ));
        assert!(!schedules_meet(
            &s("0 9 * * *", "UTC"),
            &s("30 9 * * *", "UTC")
        ));
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 in summer.
        assert!(schedules_meet(
            &s("0 9 * * *", "Europe/Berlin"),
            &s("0 7 * * *", "UTC")
        ));
    }
}
