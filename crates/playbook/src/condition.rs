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

fn suggestion(field: &str, facts: &[&str]) -> String {
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
    fn syntax_errors_are_located() {
        let errors = Condition::compile("deal.amount > 5 &&", &deal_scope()).unwrap_err();
        assert_eq!(errors[0].line, 1);
        assert_eq!(errors[0].column, 19);
        assert!(errors[0].message.contains("Syntax error"), "{errors:?}");
    }
}
