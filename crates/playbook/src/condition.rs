//! Conditions in CEL, compiled once at load and checked against the facts the engine provides.
//!
//! CEL has no static type checker in its Rust implementation, so a condition is checked here by
//! walking its syntax tree: every variable must be one the rule's context provides, and every
//! field selected from a record must be a fact pipewright derives. A misspelled field is a load
//! error, never a condition that is silently false.

use std::fmt;
use std::sync::Arc;

use cel::common::ast::{Expr, IdedExpr};

/// The facts of each record kind that conditions can read. `fields` holds custom fields, whose
/// names are the team's own.
pub const DEAL_FACTS: &[&str] = &[
    "id",
    "name",
    "pipeline",
    "stage",
    "status",
    "owner",
    "amount",
    "currency",
    "close_date",
    "close_date_pushes",
    "account",
    "lead",
    "contacts",
    "stakeholders",
    "fields",
    "created_at",
    "closed_at",
    "days_in_stage",
    "days_since_activity",
    "days_open",
    "last_activity_at",
    "last_inbound_at",
    "last_outbound_at",
    "emails_sent",
    "emails_received",
    "meetings_booked",
    "meetings_held",
    "calls",
    "notes",
    "content_views",
    "objections",
    "interventions",
    "blocked",
    "assigned_at",
    "assigned_by",
    "first_touch_at",
    "risk",
];
pub const LEAD_FACTS: &[&str] = &[
    "id",
    "name",
    "email",
    "company",
    "title",
    "origin",
    "owner",
    "status",
    "converted_to",
    "fields",
    "created_at",
    "days_since_activity",
    "days_since_created",
    "last_activity_at",
    "last_inbound_at",
    "last_outbound_at",
    "emails_sent",
    "emails_received",
    "meetings_booked",
    "meetings_held",
    "calls",
    "notes",
    "content_views",
    "objections",
    "assigned_at",
    "assigned_by",
    "first_touch_at",
];
/// Fields every event has; an event's payload fields are read as `event.data.NAME`.
pub const EVENT_FACTS: &[&str] = &[
    "type",
    "source",
    "source_id",
    "occurred_at",
    "actor",
    "data",
    "kind",
];

/// A compiled CEL condition with its source text.
#[derive(Clone)]
pub struct Condition {
    pub source: String,
    pub program: Arc<cel::Program>,
    /// The record and event fields it reads (`("deal", "stage")`), for why-traces.
    pub fields: Vec<(String, String)>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

/// A problem in a condition, positioned inside its source (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// What a condition may refer to: the variables of the rule's context, each with its facts
/// (`None`: any field).
#[derive(Debug)]
pub struct Scope<'a> {
    pub variables: Vec<(&'a str, Option<&'a [&'a str]>)>,
}

impl Condition {
    /// Compiles `source` and checks every name it uses against `scope`.
    ///
    /// # Errors
    /// Every syntax error, unknown variable and unknown field, each with its position.
    pub fn compile(source: &str, scope: &Scope<'_>) -> Result<Self, Vec<ConditionError>> {
        let program = cel::Program::compile(source).map_err(|errors| {
            errors
                .errors
                .into_iter()
                .map(|e| ConditionError {
                    line: e.pos.0.max(1) as usize,
                    column: e.pos.1.max(1) as usize,
                    message: tidy(&e.msg),
                })
                .collect::<Vec<_>>()
        })?;
        let mut problems = Vec::new();
        check(program.expression(), scope, &mut problems, &program, source);
        if problems.is_empty() {
            let mut types = Types {
                scope,
                program: &program,
                source,
                problems: &mut problems,
            };
            types.walk(program.expression());
            let whole = types.ty(program.expression());
            if !matches!(whole, Ty::Bool | Ty::Unknown) {
                types.error(
                    program.expression().id,
                    format!(
                        "a condition must give true or false, but this gives {}",
                        whole.a()
                    ),
                );
            }
        }
        let mut fields = Vec::new();
        selected(program.expression(), &mut fields);
        fields.sort();
        fields.dedup();
        if problems.is_empty() {
            Ok(Self {
                source: source.to_owned(),
                program: Arc::new(program),
                fields,
            })
        } else {
            Err(problems)
        }
    }
}

/// CEL's parser lists every token it could have accepted; the first sentence is the useful part.
fn tidy(msg: &str) -> String {
    match msg.find(" expecting {") {
        Some(i) => format!(
            "{} (the expression is incomplete or has a stray token)",
            &msg[..i]
        ),
        None => msg.to_owned(),
    }
}

fn position(program: &cel::Program, source: &str, id: u64) -> (usize, usize) {
    let offset = program
        .source_info()
        .offset_for(id)
        .map_or(0, |(start, _)| start as usize);
    let before = &source[..offset.min(source.len())];
    let line = 1 + before.matches('\n').count();
    let column = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

fn check(
    node: &IdedExpr,
    scope: &Scope<'_>,
    problems: &mut Vec<ConditionError>,
    program: &cel::Program,
    source: &str,
) {
    let mut at = |id: u64, message: String| {
        let (line, column) = position(program, source, id);
        problems.push(ConditionError {
            line,
            column,
            message,
        });
    };
    match &node.expr {
        Expr::Ident(name) => {
            if !scope.variables.iter().any(|(v, _)| v == name) {
                let known: Vec<&str> = scope.variables.iter().map(|(v, _)| *v).collect();
                at(
                    node.id,
                    format!(
                        "unknown name `{name}`: this rule can use {}",
                        known.join(", ")
                    ),
                );
            }
        }
        Expr::Select(select) => {
            if let Expr::Ident(root) = &select.operand.expr
                && let Some((_, Some(facts))) = scope.variables.iter().find(|(v, _)| v == root)
                && !facts.contains(&select.field.as_str())
            {
                let hint = suggestion(&select.field, facts);
                // The select node sits at its dot; point at the field name after it.
                let (line, column) = position(program, source, node.id);
                problems.push(ConditionError {
                    line,
                    column: column + 1,
                    message: format!("`{root}` has no field `{}`{hint}", select.field),
                });
                return;
            }
            check(&select.operand, scope, problems, program, source);
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                check(target, scope, problems, program, source);
            }
            for arg in &call.args {
                check(arg, scope, problems, program, source);
            }
        }
        Expr::List(list) => {
            for e in &list.elements {
                check(e, scope, problems, program, source);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let cel::common::ast::EntryExpr::MapEntry(e) = &entry.expr {
                    check(&e.key, scope, problems, program, source);
                    check(&e.value, scope, problems, program, source);
                }
            }
        }
        Expr::Comprehension(c) => {
            // The loop variables are in scope inside the comprehension.
            let mut inner = Scope {
                variables: scope.variables.clone(),
            };
            inner.variables.push((c.iter_var.as_str(), None));
            inner.variables.push((c.accu_var.as_str(), None));
            if let Some(v2) = c.iter_var2.as_deref() {
                inner.variables.push((v2, None));
            }
            check(&c.iter_range, scope, problems, program, source);
            for e in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                check(e, &inner, problems, program, source);
            }
        }
        Expr::Literal(_) | Expr::Struct(_) | Expr::Unspecified => {}
    }
}

/// What a fact or literal is, as far as the check can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Num,
    Bool,
    List,
    Map,
    Null,
    Unknown,
}

impl Ty {
    fn a(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Num => "a number",
            Ty::Bool => "true or false",
            Ty::List => "a list",
            Ty::Map => "a map",
            Ty::Null => "null",
            Ty::Unknown => "a value",
        }
    }

    fn known(self) -> bool {
        !matches!(self, Ty::Unknown | Ty::Null)
    }
}

/// The type of a fact, by name: the same name means the same thing for deals, leads and
/// events. Names not listed (custom fields, payload fields of varying shape) are not checked.
fn fact_type(field: &str) -> Ty {
    match field {
        "id" | "name" | "pipeline" | "stage" | "status" | "owner" | "currency" | "close_date"
        | "account" | "lead" | "email" | "company" | "title" | "origin" | "converted_to"
        | "type" | "source" | "source_id" | "actor" | "kind" | "domain" | "industry"
        | "segment" | "territory" | "timezone" | "role" | "reason" | "person" | "subject" => {
            Ty::Str
        }
        "amount" | "close_date_pushes" | "created_at" | "closed_at" | "occurred_at"
        | "employees" | "emails_sent" | "emails_received" | "meetings_booked" | "meetings_held"
        | "calls" | "notes" | "content_views" | "duration_minutes" | "seconds" | "capacity" => {
            Ty::Num
        }
        f if f.starts_with("days_") || (f.starts_with("last_") && f.ends_with("_at")) => Ty::Num,
        "contacts" | "stakeholders" | "objections" | "interventions" | "attendees" | "roles"
        | "unmet" => Ty::List,
        "fields" | "data" | "risk" => Ty::Map,
        "key_person" | "auto_reply" | "available" => Ty::Bool,
        _ => Ty::Unknown,
    }
}

/// The type check: comparisons between things that can never be equal or ordered, `in` over
/// something that is not a collection, logic over non-booleans.
struct Types<'a, 'p> {
    scope: &'a Scope<'a>,
    program: &'a cel::Program,
    source: &'a str,
    problems: &'p mut Vec<ConditionError>,
}

impl Types<'_, '_> {
    fn error(&mut self, id: u64, message: String) {
        let (line, column) = position(self.program, self.source, id);
        self.problems.push(ConditionError {
            line,
            column,
            message,
        });
    }

    fn ty(&self, node: &IdedExpr) -> Ty {
        use cel::common::ast::{LiteralValue as L, operators as op};
        match &node.expr {
            Expr::Literal(L::String(_)) => Ty::Str,
            Expr::Literal(L::Int(_) | L::UInt(_) | L::Double(_)) => Ty::Num,
            Expr::Literal(L::Boolean(_)) => Ty::Bool,
            Expr::Literal(L::Null) => Ty::Null,
            Expr::Ident(name) if name == "now" => Ty::Num,
            Expr::Select(s) => match &s.operand.expr {
                Expr::Ident(root)
                    if self
                        .scope
                        .variables
                        .iter()
                        .any(|(v, facts)| v == root && facts.is_some()) =>
                {
                    fact_type(&s.field)
                }
                _ => Ty::Unknown,
            },
            Expr::List(_) => Ty::List,
            Expr::Map(_) => Ty::Map,
            Expr::Call(c) => match c.func_name.as_str() {
                op::EQUALS
                | op::NOT_EQUALS
                | op::LESS
                | op::LESS_EQUALS
                | op::GREATER
                | op::GREATER_EQUALS
                | op::LOGICAL_AND
                | op::LOGICAL_OR
                | op::LOGICAL_NOT
                | op::IN => Ty::Bool,
                op::SUBSTRACT | op::MULTIPLY | op::DIVIDE | op::MODULO | op::NEGATE | "size" => {
                    Ty::Num
                }
                // `+` adds numbers and joins strings and lists.
                op::ADD => match c.args.as_slice() {
                    [a, b] if self.ty(a) == self.ty(b) => self.ty(a),
                    _ => Ty::Unknown,
                },
                _ => Ty::Unknown,
            },
            _ => Ty::Unknown,
        }
    }

    /// A short name for what a node is, for messages: `deal.stage`, or its type.
    fn name(&self, node: &IdedExpr) -> String {
        match &node.expr {
            Expr::Select(s) => match &s.operand.expr {
                Expr::Ident(root) => format!("`{root}.{}`", s.field),
                _ => format!("`…{}`", s.field),
            },
            _ => self.ty(node).a().to_owned(),
        }
    }

    fn walk(&mut self, node: &IdedExpr) {
        use cel::common::ast::operators as op;
        match &node.expr {
            Expr::Call(c) => {
                let [a, b] = c.args.as_slice() else {
                    if let ([a], op::LOGICAL_NOT) = (c.args.as_slice(), c.func_name.as_str()) {
                        self.boolean(a);
                    }
                    c.args.iter().for_each(|a| self.walk(a));
                    return;
                };
                let (ta, tb) = (self.ty(a), self.ty(b));
                match c.func_name.as_str() {
                    op::EQUALS | op::NOT_EQUALS if ta.known() && tb.known() && ta != tb => {
                        self.error(
                            b.id,
                            format!(
                                "{} is {}, so it never equals {}",
                                self.name(a),
                                ta.a(),
                                self.name(b)
                            ),
                        );
                    }
                    op::LESS | op::LESS_EQUALS | op::GREATER | op::GREATER_EQUALS => {
                        if let Some(bad) = [a, b]
                            .into_iter()
                            .find(|n| matches!(self.ty(n), Ty::List | Ty::Map | Ty::Null))
                        {
                            let message = format!("{} cannot be ordered", self.name(bad));
                            self.error(bad.id, message);
                        } else if ta.known() && tb.known() && ta != tb {
                            self.error(
                                b.id,
                                format!(
                                    "{} is {} and cannot be compared with {}",
                                    self.name(a),
                                    ta.a(),
                                    self.name(b)
                                ),
                            );
                        }
                    }
                    op::IN => match &b.expr {
                        _ if matches!(tb, Ty::Str | Ty::Num | Ty::Bool) => self.error(
                            b.id,
                            format!(
                                "`in` needs a list or a map, but {} is {}",
                                self.name(b),
                                tb.a()
                            ),
                        ),
                        Expr::List(list) if ta.known() => {
                            if let Some(e) = list
                                .elements
                                .iter()
                                .find(|e| self.ty(e).known() && self.ty(e) != ta)
                            {
                                let message = format!(
                                    "{} is {}, so it is never {}",
                                    self.name(a),
                                    ta.a(),
                                    self.name(e)
                                );
                                self.error(e.id, message);
                            }
                        }
                        _ => {}
                    },
                    op::LOGICAL_AND | op::LOGICAL_OR => {
                        self.boolean(a);
                        self.boolean(b);
                    }
                    _ => {}
                }
                if let Some(t) = &c.target {
                    self.walk(t);
                }
                c.args.iter().for_each(|a| self.walk(a));
            }
            Expr::Select(s) => self.walk(&s.operand),
            Expr::List(l) => l.elements.iter().for_each(|e| self.walk(e)),
            Expr::Comprehension(c) => {
                for e in [&c.iter_range, &c.loop_cond, &c.loop_step, &c.result] {
                    self.walk(e);
                }
            }
            _ => {}
        }
    }

    /// An operand of `&&`, `||` or `!` must be true or false.
    fn boolean(&mut self, node: &IdedExpr) {
        let t = self.ty(node);
        if t.known() && t != Ty::Bool {
            let message = format!(
                "{} is {}, not true or false; compare it with something",
                self.name(node),
                t.a()
            );
            self.error(node.id, message);
        }
    }
}

/// Every `root.field` the expression selects.
fn selected(node: &IdedExpr, out: &mut Vec<(String, String)>) {
    match &node.expr {
        Expr::Select(s) => {
            if let Expr::Ident(root) = &s.operand.expr {
                out.push((root.clone(), s.field.clone()));
            } else {
                selected(&s.operand, out);
            }
        }
        Expr::Call(c) => {
            c.target.iter().for_each(|t| selected(t, out));
            c.args.iter().for_each(|a| selected(a, out));
        }
        Expr::List(l) => l.elements.iter().for_each(|e| selected(e, out)),
        Expr::Comprehension(c) => {
            for e in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                selected(e, out);
            }
        }
        _ => {}
    }
}

pub(crate) fn suggestion(field: &str, facts: &[&str]) -> String {
    let close = facts
        .iter()
        .find(|f| f.contains(field) || field.contains(**f) || edit_distance(field, f) <= 2);
    match close {
        Some(f) => format!(" (did you mean `{f}`?)"),
        None => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let old = row[j + 1];
            row[j + 1] = (old + 1).min(row[j] + 1).min(prev + usize::from(ca != *cb));
            prev = old;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deal_scope() -> Scope<'static> {
        Scope {
            variables: vec![("deal", Some(DEAL_FACTS)), ("now", None)],
        }
    }

    #[test]
    fn good_conditions_compile() {
        let c = Condition::compile(
            r#"deal.stage in ["discovery", "demo"] && deal.meetings_held >= 1 && size(deal.stakeholders) >= 2"#,
            &deal_scope(),
        );
        assert!(c.is_ok(), "{c:?}");
        let c = Condition::compile(
            "deal.objections.exists(o, o.kind == 'pricing')",
            &deal_scope(),
        );
        assert!(c.is_ok(), "{c:?}");
    }

    #[test]
    fn misspelled_fields_and_unknown_names_are_located() {
        let errors =
            Condition::compile("deal.amount > 5 && deal.stgae == 'x'", &deal_scope()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("`stgae`") && errors[0].message.contains("`stage`"),
            "{errors:?}"
        );
        assert_eq!((errors[0].line, errors[0].column), (1, 25));
        let errors = Condition::compile("lead.owner == ''", &deal_scope()).unwrap_err();
        assert!(
            errors[0].message.contains("unknown name `lead`"),
            "{errors:?}"
        );
    }

    #[test]
    fn type_errors_are_located() {
        let error = |source: &str| {
            let errors = Condition::compile(source, &deal_scope()).unwrap_err();
            assert_eq!(errors.len(), 1, "{source}: {errors:?}");
            let e = &errors[0];
            (e.column, e.message.clone())
        };
        assert_eq!(
            error("deal.stage == 5"),
            (
                15,
                "`deal.stage` is a string, so it never equals a number".into()
            )
        );
        assert_eq!(
            error("deal.amount > '10000'"),
            (
                15,
                "`deal.amount` is a number and cannot be compared with a string".into()
            )
        );
        assert_eq!(
            error("deal.stage in ['demo', 3]"),
            (
                24,
                "`deal.stage` is a string, so it is never a number".into()
            )
        );
        assert!(
            error("deal.stage in deal.owner")
                .1
                .contains("`in` needs a list")
        );
        assert!(error("deal.contacts > 1").1.contains("cannot be ordered"));
        assert_eq!(
            error("deal.amount && deal.stage == 'demo'").1,
            "`deal.amount` is a number, not true or false; compare it with something"
        );
        assert_eq!(
            error("deal.days_in_stage + 1").1,
            "a condition must give true or false, but this gives a number"
        );
        // Unknown shapes are left alone: custom fields, payloads, null checks, functions.
        for fine in [
            "deal.fields.tier == 'gold' && deal.fields.seats > 10",
            "deal.close_date != null && deal.amount != null",
            "size(deal.stakeholders) >= 2 && now - deal.created_at > 86400000",
            "deal.objections.exists(o, o.kind == 'pricing')",
            "!(deal.stage in ['legal'])",
        ] {
            assert!(Condition::compile(fine, &deal_scope()).is_ok(), "{fine}");
        }
    }

    #[test]
    fn syntax_errors_are_located() {
        let errors = Condition::compile("deal.amount > 5 &&", &deal_scope()).unwrap_err();
        assert_eq!(errors[0].line, 1);
        assert_eq!(errors[0].column, 19);
        assert!(errors[0].message.contains("Syntax error"), "{errors:?}");
    }
}
