//! Conditions in CEL, compiled once at load and checked against the facts the engine provides.
//!
//! CEL has no static type checker in its Rust implementation, so a condition is checked here by
//! walking its syntax tree against the typed facts of `facts.rs`: every variable must be one
//! the rule's context provides, every field selected must exist on what it is selected from,
//! comparisons must be between things that can be equal or ordered, and a string compared with
//! a stage or another closed set of values must be one of them. A misspelled field or value is
//! a load error, never a condition that is silently false. Where the check cannot tell (custom
//! fields, payloads of no declared shape, functions), it says nothing.

use std::fmt;
use std::sync::Arc;

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators as op};

use crate::Severity;
use crate::facts::{Fact, Type, Values, find, names};

/// A compiled CEL condition with its source text.
#[derive(Clone)]
pub struct Condition {
    pub source: String,
    /// The condition as written: its syntax tree with each node's place in `source`.
    pub program: Arc<cel::Program>,
    /// What the engine evaluates: the program under pipewright's rule for custom fields a
    /// record lacks (`absent_as_null`).
    pub expression: Arc<IdedExpr>,
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
    pub severity: Severity,
    pub message: String,
}

/// What a condition may refer to: the variables of the rule's context, each with its facts
/// (`None`: any field), and the stages the playbook set declares.
#[derive(Debug, Default)]
pub struct Scope<'a> {
    pub variables: Vec<(&'a str, Option<&'a [Fact]>)>,
    /// The values of `deal.stage` (with closed_won and closed_lost); empty: not checked.
    pub stages: Vec<&'a str>,
}

impl Condition {
    /// Compiles `source` and checks it against `scope`; warnings are left out.
    ///
    /// # Errors
    /// Every syntax error, unknown variable, unknown field, type error and value outside its
    /// set, each with its position.
    pub fn compile(source: &str, scope: &Scope<'_>) -> Result<Self, Vec<ConditionError>> {
        let (condition, problems) = Self::check(source, scope);
        match condition {
            Some(c) => Ok(c),
            None => Err(problems
                .into_iter()
                .filter(|p| p.severity == Severity::Error)
                .collect()),
        }
    }

    /// Compiles `source` and checks it against `scope`: the condition unless there is an error,
    /// and every problem, warnings too.
    pub fn check(source: &str, scope: &Scope<'_>) -> (Option<Self>, Vec<ConditionError>) {
        let program = match cel::Program::compile(source) {
            Ok(program) => program,
            Err(errors) => {
                let problems = errors
                    .errors
                    .into_iter()
                    .map(|e| ConditionError {
                        line: e.pos.0.max(1) as usize,
                        column: e.pos.1.max(1) as usize,
                        severity: Severity::Error,
                        message: tidy(&e.msg),
                    })
                    .collect();
                return (None, problems);
            }
        };
        let mut problems = Vec::new();
        check(program.expression(), scope, &mut problems, &program, source);
        if problems.is_empty() {
            let mut types = Types {
                scope,
                program: &program,
                source,
                problems: &mut problems,
                locals: Vec::new(),
                guarded: Vec::new(),
            };
            guarded_fields(program.expression(), &mut types.guarded);
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
        let condition = (!problems.iter().any(|p| p.severity == Severity::Error)).then(|| {
            let mut expression = program.expression().clone();
            absent_as_null(&mut expression);
            Self {
                source: source.to_owned(),
                program: Arc::new(program),
                expression: Arc::new(expression),
                fields,
            }
        });
        (condition, problems)
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

/// The names a condition uses: every variable must be in scope, every field selected from a
/// variable with declared facts one of them.
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
            severity: Severity::Error,
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
                && find(facts, &select.field).is_none()
            {
                let hint = suggestion(&select.field, &names(facts));
                // The select node sits at its dot; point at the field name after it.
                let (line, column) = position(program, source, node.id);
                problems.push(ConditionError {
                    line,
                    column: column + 1,
                    severity: Severity::Error,
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
                stages: Vec::new(),
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

/// What a value is, as far as the check can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty<'f> {
    /// A string; with the set of values it is one of, if it is.
    Str(Option<Values>),
    Num,
    Bool,
    /// A list; with the type of its elements, if known.
    List(Option<&'f Type>),
    /// A map; with its fields, if they are declared.
    Map(Option<&'f [Fact]>),
    Null,
    Unknown,
}

impl<'f> Ty<'f> {
    fn of(t: Type) -> Ty<'static> {
        match t {
            Type::String | Type::Date => Ty::Str(None),
            Type::Enum(values) => Ty::Str(Some(values)),
            Type::Int | Type::Double | Type::Time => Ty::Num,
            Type::Bool => Ty::Bool,
            Type::List(element) => Ty::List(Some(element)),
            Type::Object(fields) => Ty::Map(Some(fields)),
            Type::Map => Ty::Map(None),
            Type::Any => Ty::Unknown,
        }
    }

    fn a(self) -> &'static str {
        match self {
            Ty::Str(_) => "a string",
            Ty::Num => "a number",
            Ty::Bool => "true or false",
            Ty::List(_) => "a list",
            Ty::Map(_) => "a map",
            Ty::Null => "null",
            Ty::Unknown => "a value",
        }
    }

    fn known(self) -> bool {
        !matches!(self, Ty::Unknown | Ty::Null)
    }

    /// Of the same kind: two strings, two numbers, … whatever their values or elements.
    fn same(self, other: Ty<'_>) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }

    /// Can never be equal to `other`: both known, of different kinds.
    fn apart(self, other: Ty<'_>) -> bool {
        self.known() && other.known() && !self.same(other)
    }
}

/// The type check: member access on what has no members, comparisons between things that can
/// never be equal or ordered, `in` over something that is not a collection, logic over
/// non-booleans, values outside their set; and a warning where a missing custom field decides.
struct Types<'a, 'p> {
    scope: &'a Scope<'a>,
    program: &'a cel::Program,
    source: &'a str,
    problems: &'p mut Vec<ConditionError>,
    /// The comprehension variables in scope, with what they hold.
    locals: Vec<(String, Ty<'a>)>,
    /// The custom fields the condition tests with `has(…)`: `("deal", "seats")`.
    guarded: Vec<(String, String)>,
}

impl<'a> Types<'a, '_> {
    /// A problem at the node `id`, `shift` columns after where it starts.
    fn problem(&mut self, id: u64, shift: usize, severity: Severity, message: String) {
        let (line, column) = position(self.program, self.source, id);
        self.problems.push(ConditionError {
            line,
            column: column + shift,
            severity,
            message,
        });
    }

    fn error(&mut self, id: u64, message: String) {
        self.problem(id, 0, Severity::Error, message);
    }

    /// A problem with a field: at its name, after the select's dot.
    fn field_problem(&mut self, id: u64, severity: Severity, message: String) {
        self.problem(id, 1, severity, message);
    }

    fn ty(&self, node: &IdedExpr) -> Ty<'a> {
        use cel::common::ast::LiteralValue as L;
        match &node.expr {
            Expr::Literal(L::String(_)) => Ty::Str(None),
            Expr::Literal(L::Int(_) | L::UInt(_) | L::Double(_)) => Ty::Num,
            Expr::Literal(L::Boolean(_)) => Ty::Bool,
            Expr::Literal(L::Null) => Ty::Null,
            Expr::Ident(name) => {
                if let Some((_, ty)) = self.locals.iter().rev().find(|(v, _)| v == name) {
                    return *ty;
                }
                if name == "now" {
                    return Ty::Num;
                }
                // A record or the event: a map of its facts.
                match self.scope.variables.iter().find(|(v, _)| v == name) {
                    Some((_, Some(facts))) => Ty::Map(Some(facts)),
                    _ => Ty::Unknown,
                }
            }
            Expr::Select(s) if s.test => Ty::Bool,
            Expr::Select(s) => match self.ty(&s.operand) {
                Ty::Map(Some(fields)) => {
                    find(fields, &s.field).map_or(Ty::Unknown, |f| Ty::of(f.ty))
                }
                _ => Ty::Unknown,
            },
            Expr::List(_) => Ty::List(None),
            Expr::Map(_) => Ty::Map(None),
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
                    [a, b] if self.ty(a).same(self.ty(b)) => match self.ty(a) {
                        Ty::Str(_) => Ty::Str(None),
                        Ty::List(_) => Ty::List(None),
                        t => t,
                    },
                    _ => Ty::Unknown,
                },
                op::INDEX => match c.args.as_slice() {
                    [list, _] => match self.ty(list) {
                        Ty::List(Some(element)) => Ty::of(*element),
                        _ => Ty::Unknown,
                    },
                    _ => Ty::Unknown,
                },
                _ => Ty::Unknown,
            },
            _ => Ty::Unknown,
        }
    }

    /// A short name for what a node is, for messages: `deal.stage`, `o.kind`, or its type.
    fn name(&self, node: &IdedExpr) -> String {
        match path(node) {
            Some(p) => format!("`{p}`"),
            None => self.ty(node).a().to_owned(),
        }
    }

    fn walk(&mut self, node: &IdedExpr) {
        match &node.expr {
            Expr::Call(c) => {
                self.call(c);
                if let Some(t) = &c.target {
                    self.walk(t);
                }
                c.args.iter().for_each(|a| self.walk(a));
            }
            Expr::Select(s) => {
                self.member(node.id, s);
                self.walk(&s.operand);
            }
            Expr::List(l) => l.elements.iter().for_each(|e| self.walk(e)),
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range);
                // The loop variable holds an element of the list (a key of a map).
                let element = match self.ty(&c.iter_range) {
                    Ty::List(Some(element)) => Ty::of(*element),
                    Ty::Map(_) => Ty::Str(None),
                    _ => Ty::Unknown,
                };
                self.locals.push((c.iter_var.clone(), element));
                self.locals.push((c.accu_var.clone(), Ty::Unknown));
                if let Some(v2) = &c.iter_var2 {
                    self.locals.push((v2.clone(), Ty::Unknown));
                }
                for e in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                    self.walk(e);
                }
                let pushed = 2 + usize::from(c.iter_var2.is_some());
                self.locals.truncate(self.locals.len() - pushed);
            }
            _ => {}
        }
    }

    /// `x.field`: `x` must have fields, and this one.
    fn member(&mut self, id: u64, s: &cel::common::ast::SelectExpr) {
        let operand = self.ty(&s.operand);
        let field = &s.field;
        let message = match operand {
            Ty::Map(Some(fields)) if find(fields, field).is_none() => format!(
                "{} has no field `{field}`{}",
                self.name(&s.operand),
                suggestion(field, &names(fields))
            ),
            Ty::Str(_) | Ty::Num | Ty::Bool | Ty::List(_) => format!(
                "{} is {}; it has no field `{field}`",
                self.name(&s.operand),
                operand.a()
            ),
            _ => return,
        };
        self.field_problem(id, Severity::Error, message);
    }

    fn call(&mut self, c: &cel::common::ast::CallExpr) {
        let [a, b] = c.args.as_slice() else {
            if let ([a], op::LOGICAL_NOT) = (c.args.as_slice(), c.func_name.as_str()) {
                self.boolean(a);
            }
            return;
        };
        let (ta, tb) = (self.ty(a), self.ty(b));
        match c.func_name.as_str() {
            op::EQUALS | op::NOT_EQUALS if ta.apart(tb) => {
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
            op::EQUALS | op::NOT_EQUALS => {
                self.value_in_set(a, b);
                self.value_in_set(b, a);
            }
            op::LESS | op::LESS_EQUALS | op::GREATER | op::GREATER_EQUALS => {
                if let Some(bad) = [a, b]
                    .into_iter()
                    .find(|n| matches!(self.ty(n), Ty::List(_) | Ty::Map(_) | Ty::Null))
                {
                    let message = format!("{} cannot be ordered", self.name(bad));
                    self.error(bad.id, message);
                } else if ta.apart(tb) {
                    self.error(
                        b.id,
                        format!(
                            "{} is {} and cannot be compared with {}",
                            self.name(a),
                            ta.a(),
                            self.name(b)
                        ),
                    );
                } else {
                    self.absent_field(a);
                    self.absent_field(b);
                }
            }
            op::IN => match &b.expr {
                _ if matches!(tb, Ty::Str(_) | Ty::Num | Ty::Bool) => self.error(
                    b.id,
                    format!(
                        "`in` needs a list or a map, but {} is {}",
                        self.name(b),
                        tb.a()
                    ),
                ),
                Expr::List(list) if ta.known() => {
                    if let Some(e) = list.elements.iter().find(|e| ta.apart(self.ty(e))) {
                        let message = format!(
                            "{} is {}, so it is never {}",
                            self.name(a),
                            ta.a(),
                            self.name(e)
                        );
                        self.error(e.id, message);
                    } else {
                        list.elements.iter().for_each(|e| self.value_in_set(a, e));
                    }
                }
                // `"ghosted" in deal.risk.warnings`: an element of the list's set.
                _ => {
                    if let Ty::List(Some(Type::Enum(values))) = tb {
                        let holder = format!("{} never holds", self.name(b));
                        self.literal_in(*values, &holder, a);
                    }
                }
            },
            op::LOGICAL_AND | op::LOGICAL_OR => {
                self.boolean(a);
                self.boolean(b);
            }
            _ => {}
        }
    }

    /// When `fact` is one of a set of values and `other` is a string literal, the literal must
    /// be one of them.
    fn value_in_set(&mut self, fact: &IdedExpr, other: &IdedExpr) {
        if let Ty::Str(Some(values)) = self.ty(fact) {
            let never = format!("{} is never", self.name(fact));
            self.literal_in(values, &never, other);
        }
    }

    /// A string literal must be one of `values`; `never` says what the message begins with
    /// (`deal.stage is never`).
    fn literal_in(&mut self, values: Values, never: &str, literal: &IdedExpr) {
        let Expr::Literal(LiteralValue::String(s)) = &literal.expr else {
            return;
        };
        let list = values.list(&self.scope.stages);
        let s = s.inner();
        if list.is_empty() || list.contains(&s) {
            return;
        }
        let hint = match close(s, &list) {
            Some(v) => format!(" (did you mean {v:?}?)"),
            None => String::new(),
        };
        let message = format!(
            "{never} {s:?}: {} are {}{hint}",
            values.what(),
            list.join(", ")
        );
        self.error(literal.id, message);
    }

    /// An ordering comparison reading a custom field the condition does not test with `has`:
    /// on a record without the field it is false, which the writer may not have meant.
    fn absent_field(&mut self, node: &IdedExpr) {
        let Some((root, field)) = custom_field(node) else {
            return;
        };
        if self.guarded.iter().any(|(r, f)| r == root && f == field) {
            return;
        }
        let message = format!(
            "`{root}.fields.{field}` is null on a {root} without it, and this comparison is then false; test `has({root}.fields.{field})` to say what such a {root} gets"
        );
        self.field_problem(node.id, Severity::Warning, message);
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

/// `deal.stage`, `o.kind`, `deal.risk.score`: a chain of fields from a name.
pub(crate) fn path(node: &IdedExpr) -> Option<String> {
    match &node.expr {
        Expr::Ident(name) => Some(name.clone()),
        Expr::Select(s) if !s.test => Some(format!("{}.{}", path(&s.operand)?, s.field)),
        _ => None,
    }
}

/// `deal.fields.NAME` (or `lead.…`): a custom field, as (record, name).
fn custom_field(node: &IdedExpr) -> Option<(&str, &str)> {
    let Expr::Select(s) = &node.expr else {
        return None;
    };
    let Expr::Select(fields) = &s.operand.expr else {
        return None;
    };
    let Expr::Ident(root) = &fields.operand.expr else {
        return None;
    };
    (!s.test
        && !fields.test
        && fields.field == "fields"
        && matches!(root.as_str(), "deal" | "lead"))
    .then_some((root.as_str(), s.field.as_str()))
}

/// Every custom field tested with `has(deal.fields.NAME)`.
fn guarded_fields(node: &IdedExpr, out: &mut Vec<(String, String)>) {
    visit(node, &mut |n| {
        if let Expr::Select(s) = &n.expr
            && s.test
            && let Expr::Select(fields) = &s.operand.expr
            && let Expr::Ident(root) = &fields.operand.expr
            && fields.field == "fields"
        {
            out.push((root.clone(), s.field.clone()));
        }
    });
}

/// pipewright's rule for a custom field a record lacks, applied to `e` (README, "Custom
/// fields"): `deal.fields.NAME` reads null when the deal has no such field, so `==` and `!=`
/// give CEL's null equality, and an ordering comparison (`<`, `<=`, `>`, `>=`) with such a
/// field is false. CEL alone fails on both ("No such key", "no such overload"), and a rule
/// that fails never fires, also under `!`. `has(deal.fields.NAME)` still tests the field.
///
/// `deal.fields.x` becomes `has(deal.fields.x) ? deal.fields.x : null`, and `deal.fields.x > 3`
/// becomes `has(deal.fields.x) ? deal.fields.x > 3 : false`. The new nodes have the id 0: ids
/// place nodes in the source, and these have no place of their own.
pub(crate) fn absent_as_null(e: &mut IdedExpr) {
    if let Expr::Call(c) = &mut e.expr
        && c.target.is_none()
        && ORDERING.contains(&c.func_name.as_str())
        && c.args.iter().any(|a| custom_field(a).is_some())
    {
        let mut guards = Vec::new();
        for arg in &mut c.args {
            if custom_field(arg).is_some() {
                guards.push(has(arg));
            } else {
                absent_as_null(arg);
            }
        }
        let guard = guards
            .into_iter()
            .reduce(|a, b| call(op::LOGICAL_AND, vec![a, b]))
            .unwrap_or_default();
        let compared = std::mem::take(e);
        *e = call(
            op::CONDITIONAL,
            vec![
                guard,
                compared,
                literal(LiteralValue::Boolean(false.into())),
            ],
        );
        return;
    }
    if custom_field(e).is_some() {
        let read = std::mem::take(e);
        *e = call(
            op::CONDITIONAL,
            vec![has(&read), read, literal(LiteralValue::Null)],
        );
        return;
    }
    match &mut e.expr {
        Expr::Call(c) => {
            c.target.iter_mut().for_each(|t| absent_as_null(t));
            c.args.iter_mut().for_each(absent_as_null);
        }
        Expr::Select(s) => absent_as_null(&mut s.operand),
        Expr::List(l) => l.elements.iter_mut().for_each(absent_as_null),
        Expr::Map(m) => {
            for entry in &mut m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(e) = &mut entry.expr {
                    absent_as_null(&mut e.key);
                    absent_as_null(&mut e.value);
                }
            }
        }
        Expr::Comprehension(c) => {
            let c = &mut **c;
            for part in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                absent_as_null(part);
            }
        }
        _ => {}
    }
}

const ORDERING: [&str; 4] = [op::LESS, op::LESS_EQUALS, op::GREATER, op::GREATER_EQUALS];

/// `has(x.f)` for the select `x.f`.
fn has(select: &IdedExpr) -> IdedExpr {
    let mut test = select.clone();
    if let Expr::Select(s) = &mut test.expr {
        s.test = true;
    }
    test.id = 0;
    test
}

fn call(func: &str, args: Vec<IdedExpr>) -> IdedExpr {
    IdedExpr {
        id: 0,
        expr: Expr::Call(cel::common::ast::CallExpr {
            func_name: func.to_owned(),
            target: None,
            args,
        }),
    }
}

fn literal(value: LiteralValue) -> IdedExpr {
    IdedExpr {
        id: 0,
        expr: Expr::Literal(value),
    }
}

/// Every `root.field` the expression selects.
fn selected(node: &IdedExpr, out: &mut Vec<(String, String)>) {
    visit(node, &mut |n| {
        if let Expr::Select(s) = &n.expr
            && let Expr::Ident(root) = &s.operand.expr
        {
            out.push((root.clone(), s.field.clone()));
        }
    });
}

/// Calls `f` on `node` and every node below it.
fn visit(node: &IdedExpr, f: &mut impl FnMut(&IdedExpr)) {
    f(node);
    match &node.expr {
        Expr::Select(s) => visit(&s.operand, f),
        Expr::Call(c) => {
            c.target.iter().for_each(|t| visit(t, f));
            c.args.iter().for_each(|a| visit(a, f));
        }
        Expr::List(l) => l.elements.iter().for_each(|e| visit(e, f)),
        Expr::Map(m) => {
            for entry in &m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(e) = &entry.expr {
                    visit(&e.key, f);
                    visit(&e.value, f);
                }
            }
        }
        Expr::Comprehension(c) => {
            for e in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                visit(e, f);
            }
        }
        _ => {}
    }
}

pub(crate) fn suggestion(field: &str, facts: &[&str]) -> String {
    match close(field, facts) {
        Some(f) => format!(" (did you mean `{f}`?)"),
        None => String::new(),
    }
}

/// The candidate `word` was most likely meant to be: within two edits, or containing it (or
/// contained in it); the nearest first.
fn close<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2 || (!word.is_empty() && (c.contains(word) || word.contains(c))))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
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
            variables: vec![("deal", Some(crate::DEAL_FACTS)), ("now", None)],
            stages: vec![
                "discovery",
                "demo",
                "proposal",
                "legal",
                "closed_won",
                "closed_lost",
            ],
        }
    }

    /// The one error a condition over a deal has: its column and message.
    fn error(source: &str) -> (usize, String) {
        let errors = Condition::compile(source, &deal_scope()).unwrap_err();
        assert_eq!(errors.len(), 1, "{source}: {errors:?}");
        (errors[0].column, errors[0].message.clone())
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

    /// Issue 23: `check` as a type checker.
    #[test]
    fn members_values_and_loop_variables_are_typed() {
        assert_eq!(
            error("deal.owner.region == 'emea'"),
            (
                12,
                "`deal.owner` is a string; it has no field `region`".into()
            )
        );
        assert_eq!(
            error("deal.risk.scroe > 0.5"),
            (
                11,
                "`deal.risk` has no field `scroe` (did you mean `score`?)".into()
            )
        );
        assert_eq!(
            error("has(deal.risk.scroe)").1,
            "`deal.risk` has no field `scroe` (did you mean `score`?)"
        );
        assert_eq!(
            error("deal.contacts.first == 'C-1'").1,
            "`deal.contacts` is a list; it has no field `first`"
        );
        assert_eq!(
            error(r#"deal.stage == "propsal""#),
            (
                15,
                r#"`deal.stage` is never "propsal": the stages the playbooks declare are discovery, demo, proposal, legal, closed_won, closed_lost (did you mean "proposal"?)"#.into()
            )
        );
        assert_eq!(
            error(r#"deal.stage in ["demo", "legl"]"#).0,
            24,
            "each value of the list"
        );
        assert_eq!(
            error(r#""closed" != deal.status"#).1,
            r#"`deal.status` is never "closed": a deal's statuses are open, won, lost"#
        );
        assert_eq!(
            error("deal.objections.exists(o, o.kind == 'pricng')").1,
            r#"`o.kind` is never "pricng": the kinds of objection are pricing, implementation, legal, security, competitor, timing, other (did you mean "pricing"?)"#
        );
        assert_eq!(
            error("deal.objections.exists(o, o.knd == 'pricing')").1,
            "`o` has no field `knd` (did you mean `kind`?)"
        );
        assert!(
            error("'ghostd' in deal.risk.warnings")
                .1
                .ends_with("(did you mean \"ghosted\"?)")
        );
        assert_eq!(
            error("deal.risk.score == 'high'").1,
            "`deal.risk.score` is a number, so it never equals a string"
        );
        // What is well typed, or cannot be told, passes.
        for fine in [
            "deal.objections.exists(o, o.kind == 'pricing' && o.at > now - 86400000)",
            "deal.risk.at_risk && 'ghosted' in deal.risk.warnings",
            "deal.blocked.stage == 'proposal' && deal.stage == deal.blocked.stage",
            "deal.fields.tier.level == 'x' && deal.fields.region == 'emea'",
            "deal.stage in ['closed_won', 'closed_lost'] || deal.status == 'open'",
            "deal.interventions.all(i, i.person != deal.owner)",
            "deal.contacts[0] == 'C-1'",
        ] {
            let c = Condition::compile(fine, &deal_scope());
            assert!(c.is_ok(), "{fine}: {c:?}");
        }
        // Without declared stages, a stage is not checked.
        let scope = Scope {
            variables: vec![("deal", Some(crate::DEAL_FACTS))],
            stages: Vec::new(),
        };
        assert!(Condition::compile("deal.stage == 'anything'", &scope).is_ok());
    }

    /// Issue 23: where a missing custom field decides an ordering, `check` suggests `has`.
    #[test]
    fn an_unguarded_ordering_on_a_custom_field_is_a_warning() {
        let (condition, problems) = Condition::check("deal.fields.seats > 10", &deal_scope());
        assert!(condition.is_some(), "a warning does not stop the condition");
        assert_eq!(
            problems,
            [ConditionError {
                line: 1,
                column: 13,
                severity: Severity::Warning,
                message: "`deal.fields.seats` is null on a deal without it, and this comparison is then false; test `has(deal.fields.seats)` to say what such a deal gets".into(),
            }]
        );
        for quiet in [
            "has(deal.fields.seats) && deal.fields.seats > 10",
            "!has(deal.fields.seats) || deal.fields.seats > 10",
            "deal.fields.won == true && deal.fields.tier in ['gold']",
        ] {
            assert_eq!(Condition::check(quiet, &deal_scope()).1, [], "{quiet}");
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
