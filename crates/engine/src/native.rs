//! A fast first look at a condition. Most conditions are comparisons of facts with literals,
//! joined by `&&`, `||` and `!` (`deal.stage in ["demo", "proposal"] && deal.meetings_held >=
//! 1`). For those, a compiled tree reads the few facts it needs straight from the record —
//! no map of every fact, no CEL values — and says `false` when the condition certainly does
//! not hold. Anything else (true, or a case it does not know) goes to CEL, which decides and
//! records what it saw, so every effect and why-trace is CEL's. A condition it cannot compile
//! always goes to CEL.
//!
//! The obligation: an answer (`Some`) only where CEL gives exactly that answer; an error in
//! CEL is `None` here, except where CEL's own `&&` and `||` absorb it (`false && error` is
//! `false`). `tests/native.rs` holds the first look against CEL on generated records.

use std::borrow::Cow;
use std::collections::BTreeMap;

use cel::IdedExpr;
use cel::common::ast::operators as op;
use cel::common::ast::{Expr, LiteralValue};

use domain::{Event, Record, Timestamp};

use crate::facts::{self, DealNow, Fact};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    /// `<`, `<=`, `>`, `>=`.
    fn orders(self) -> bool {
        !matches!(self, Cmp::Eq | Cmp::Ne)
    }
}

#[derive(Debug, Clone)]
enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Debug, Clone)]
enum Term {
    /// `deal.stage`: a fact of the record.
    Record(String),
    /// `deal.fields.budget_confirmed`: a key of the record's own fields.
    Field(String),
    /// `event.kind`, by its key in the event's facts.
    Event(cel::objects::Key),
    Now,
    Lit(Lit),
}

#[derive(Debug, Clone)]
enum Node {
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Cmp(Cmp, Term, Term),
    In(Term, Vec<Lit>),
    /// `has(deal.fields.KEY)`.
    HasField(String),
}

/// A condition compiled for the first look, and whether it reads the event.
#[derive(Debug, Clone)]
pub struct Native(Node, bool);

/// What a first look reads: the record, the event's facts (made once per event), `now`.
pub(crate) struct Look<'a> {
    pub record: &'a Record,
    pub event: Option<&'a cel::Value>,
    pub now: Timestamp,
    pub risk: &'a risk::Model,
    pub deal_facts: Option<DealNow<'a>>,
}

impl Native {
    /// Compiles a condition over a record of kind `kind` (`deal`, `lead`); `None` when it uses
    /// anything beyond comparisons, `in` over a list of literals, `has` of a field, and the
    /// logical operators.
    pub fn compile(program: &cel::Program, kind: &str) -> Option<Native> {
        let node = node(program.expression(), kind)?;
        let reads_event = reads_event(&node);
        Some(Native(node, reads_event))
    }

    /// Whether it reads the event's facts (made, then, once per event).
    pub(crate) fn reads_event(&self) -> bool {
        self.1
    }

    /// What CEL would give, where the first look is sure of it; `None`: ask CEL.
    pub(crate) fn look(&self, look: &mut Look<'_>) -> Option<bool> {
        eval(&self.0, look)
    }

    /// The first look at a record (and an event) at `now`: what CEL would give, where it is
    /// sure. For tests that hold it against CEL.
    pub fn first_look(
        &self,
        record: &Record,
        event: Option<&Event>,
        now: Timestamp,
        risk: &risk::Model,
    ) -> Option<bool> {
        let event = event.map(facts::event);
        let mut look = Look {
            record,
            event: event.as_ref(),
            now,
            risk,
            deal_facts: None,
        };
        self.look(&mut look)
    }
}

/// The facts a condition read (`deal.stage` → its value), as CEL's path reports them in
/// why-traces, read one by one from the record.
pub(crate) fn saw(
    condition: &playbook::Condition,
    record: &Record,
    event: Option<&cel::Value>,
    now: Timestamp,
    risk: &risk::Model,
) -> BTreeMap<String, serde_json::Value> {
    let deal_facts = match record {
        Record::Deal(d) => Some(DealNow::at(d, now, Some(risk))),
        _ => None,
    };
    let mut saw = BTreeMap::new();
    for (root, field) in &condition.fields {
        let value = if root == "event" {
            let Some(cel::Value::Map(m)) = event else {
                continue;
            };
            m.map
                .get(&cel::objects::Key::String(std::sync::Arc::new(
                    field.clone(),
                )))
                .map(facts::to_json)
        } else {
            match (record, &deal_facts) {
                (Record::Deal(d), Some(f)) => {
                    facts::deal_fact(d, f, field).map(|x| facts::to_json(&x.cel()))
                }
                (Record::Lead(l), _) => {
                    facts::lead_fact(l, now, field).map(|x| facts::to_json(&x.cel()))
                }
                _ => continue,
            }
        };
        saw.insert(
            format!("{root}.{field}"),
            value.unwrap_or(serde_json::Value::Null),
        );
    }
    saw
}

fn reads_event(n: &Node) -> bool {
    let term = |t: &Term| matches!(t, Term::Event(_));
    match n {
        Node::And(a, b) | Node::Or(a, b) => reads_event(a) || reads_event(b),
        Node::Not(a) => reads_event(a),
        Node::Cmp(_, a, b) => term(a) || term(b),
        Node::In(a, _) => term(a),
        Node::HasField(_) => false,
    }
}

fn node(e: &IdedExpr, kind: &str) -> Option<Node> {
    match &e.expr {
        Expr::Call(call) if call.target.is_none() => {
            let arg = |i: usize| call.args.get(i);
            match (call.func_name.as_str(), call.args.len()) {
                (op::LOGICAL_AND, 2) => Some(Node::And(
                    Box::new(node(arg(0)?, kind)?),
                    Box::new(node(arg(1)?, kind)?),
                )),
                (op::LOGICAL_OR, 2) => Some(Node::Or(
                    Box::new(node(arg(0)?, kind)?),
                    Box::new(node(arg(1)?, kind)?),
                )),
                (op::LOGICAL_NOT, 1) => Some(Node::Not(Box::new(node(arg(0)?, kind)?))),
                (op::IN, 2) => {
                    let Expr::List(list) = &arg(1)?.expr else {
                        return None;
                    };
                    let items = list
                        .elements
                        .iter()
                        .map(|e| match &e.expr {
                            Expr::Literal(l) => literal(l),
                            _ => None,
                        })
                        .collect::<Option<Vec<_>>>()?;
                    Some(Node::In(term(arg(0)?, kind)?, items))
                }
                (name, 2) => {
                    let cmp = match name {
                        op::EQUALS => Cmp::Eq,
                        op::NOT_EQUALS => Cmp::Ne,
                        op::LESS => Cmp::Lt,
                        op::LESS_EQUALS => Cmp::Le,
                        op::GREATER => Cmp::Gt,
                        op::GREATER_EQUALS => Cmp::Ge,
                        _ => return None,
                    };
                    Some(Node::Cmp(cmp, term(arg(0)?, kind)?, term(arg(1)?, kind)?))
                }
                _ => None,
            }
        }
        Expr::Select(select) if select.test => match &select.operand.expr {
            Expr::Select(inner) if !inner.test && inner.field == "fields" => {
                matches!(&inner.operand.expr, Expr::Ident(root) if root == kind)
                    .then(|| Node::HasField(select.field.clone()))
            }
            _ => None,
        },
        _ => None,
    }
}

fn literal(l: &LiteralValue) -> Option<Lit> {
    Some(match l {
        LiteralValue::Null => Lit::Null,
        LiteralValue::Boolean(b) => Lit::Bool(*b.inner()),
        LiteralValue::Int(i) => Lit::Int(*i.inner()),
        LiteralValue::Double(d) => Lit::Float(*d.inner()),
        LiteralValue::String(s) => Lit::Str(s.inner().to_owned()),
        _ => return None,
    })
}

fn term(e: &IdedExpr, kind: &str) -> Option<Term> {
    match &e.expr {
        Expr::Literal(l) => literal(l).map(Term::Lit),
        Expr::Ident(name) if name == "now" => Some(Term::Now),
        Expr::Select(select) if !select.test => match &select.operand.expr {
            Expr::Ident(root) if root == kind => Some(Term::Record(select.field.clone())),
            Expr::Ident(root) if root == "event" => Some(Term::Event(cel::objects::Key::String(
                std::sync::Arc::new(select.field.clone()),
            ))),
            Expr::Select(inner) if !inner.test && inner.field == "fields" => {
                matches!(&inner.operand.expr, Expr::Ident(root) if root == kind)
                    .then(|| Term::Field(select.field.clone()))
            }
            _ => None,
        },
        _ => None,
    }
}

fn eval(n: &Node, look: &mut Look<'_>) -> Option<bool> {
    match n {
        // As CEL: `false && x` and `x && false` are false whatever x is, even an error.
        Node::And(a, b) => match (eval(a, look), eval(b, look)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Node::Or(a, b) => match (eval(a, look), eval(b, look)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Node::Not(a) => eval(a, look).map(|b| !b),
        Node::Cmp(cmp, a, b) => {
            let (x, y) = (value(a, look)?, value(b, look)?);
            // A custom field the record lacks (or holds null) makes an ordering false: the
            // rule CEL evaluates by too (`playbook::Condition::expression`).
            let absent = |t: &Term, v: &Fact<'_>| matches!((t, v), (Term::Field(_), Fact::Null));
            if cmp.orders() && (absent(a, &x) || absent(b, &y)) {
                return Some(false);
            }
            compare(*cmp, &x, &y)
        }
        Node::In(a, items) => {
            let a = value(a, look)?;
            let mut all_false = true;
            for item in items {
                match compare(Cmp::Eq, &a, &lit(item)) {
                    Some(true) => return Some(true),
                    Some(false) => {}
                    None => all_false = false,
                }
            }
            all_false.then_some(false)
        }
        Node::HasField(key) => match look.record {
            Record::Deal(d) => Some(d.fields.contains_key(key)),
            Record::Lead(l) => Some(l.fields.contains_key(key)),
            _ => None,
        },
    }
}

fn lit(l: &Lit) -> Fact<'_> {
    match l {
        Lit::Null => Fact::Null,
        Lit::Bool(b) => Fact::Bool(*b),
        Lit::Int(i) => Fact::Int(*i),
        Lit::Float(f) => Fact::Float(*f),
        Lit::Str(s) => Fact::Str(Cow::Borrowed(s)),
    }
}

fn json(v: &serde_json::Value) -> Option<Fact<'_>> {
    Some(match v {
        serde_json::Value::Null => Fact::Null,
        serde_json::Value::Bool(b) => Fact::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Fact::Int(i),
            None => Fact::Float(n.as_f64()?),
        },
        serde_json::Value::String(s) => Fact::Str(Cow::Borrowed(s)),
        _ => return None,
    })
}

/// A term's value, if it is a scalar the first look compares.
fn value<'x, 'r: 'x>(t: &'x Term, look: &mut Look<'r>) -> Option<Fact<'x>> {
    let fact = match t {
        Term::Lit(l) => lit(l),
        Term::Now => Fact::Int(look.now.as_millis()),
        Term::Record(name) => match look.record {
            Record::Deal(d) => {
                let (now, risk) = (look.now, look.risk);
                let f = look
                    .deal_facts
                    .get_or_insert_with(|| DealNow::at(d, now, Some(risk)));
                facts::deal_fact(d, f, name)?
            }
            Record::Lead(l) => facts::lead_fact(l, look.now, name)?,
            _ => return None,
        },
        // A custom field the record lacks reads null.
        Term::Field(key) => match look.record {
            Record::Deal(d) => d.fields.get(key).map_or(Some(Fact::Null), json)?,
            Record::Lead(l) => l.fields.get(key).map_or(Some(Fact::Null), json)?,
            _ => return None,
        },
        Term::Event(key) => {
            let cel::Value::Map(m) = look.event? else {
                return None;
            };
            match m.map.get(key)? {
                cel::Value::Null => Fact::Null,
                cel::Value::Bool(b) => Fact::Bool(*b),
                cel::Value::Int(i) => Fact::Int(*i),
                cel::Value::Float(f) => Fact::Float(*f),
                cel::Value::String(s) => Fact::Str(Cow::Borrowed(s.as_str())),
                _ => return None,
            }
        }
    };
    match fact {
        Fact::Value(_) => None,
        scalar => Some(scalar),
    }
}

/// A comparison as CEL makes it, where the first look is sure; `None` where it is not.
fn compare(cmp: Cmp, a: &Fact<'_>, b: &Fact<'_>) -> Option<bool> {
    use std::cmp::Ordering;
    let ordering: Option<Ordering> = match (a, b) {
        (Fact::Str(x), Fact::Str(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (Fact::Int(x), Fact::Int(y)) => Some(x.cmp(y)),
        (Fact::Float(x), Fact::Float(y)) => x.partial_cmp(y),
        (Fact::Int(x), Fact::Float(y)) => (*x as f64).partial_cmp(y),
        (Fact::Float(x), Fact::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Fact::Bool(x), Fact::Bool(y)) => {
            return match cmp {
                Cmp::Eq => Some(x == y),
                Cmp::Ne => Some(x != y),
                _ => None,
            };
        }
        (Fact::Null, Fact::Null) => {
            return match cmp {
                Cmp::Eq => Some(true),
                Cmp::Ne => Some(false),
                _ => None,
            };
        }
        // Null against a value: equality is false, ordering an error (left to CEL).
        (Fact::Null, _) | (_, Fact::Null) => {
            return match cmp {
                Cmp::Eq => Some(false),
                Cmp::Ne => Some(true),
                _ => None,
            };
        }
        _ => None,
    };
    let o = ordering?;
    let mixed = matches!(
        (a, b),
        (Fact::Int(_), Fact::Float(_)) | (Fact::Float(_), Fact::Int(_))
    );
    Some(match cmp {
        // Equality across int and double: left to CEL.
        Cmp::Eq | Cmp::Ne if mixed => return None,
        Cmp::Eq => o == Ordering::Equal,
        Cmp::Ne => o != Ordering::Equal,
        Cmp::Lt => o == Ordering::Less,
        Cmp::Le => o != Ordering::Greater,
        Cmp::Gt => o == Ordering::Greater,
        Cmp::Ge => o != Ordering::Less,
    })
}
