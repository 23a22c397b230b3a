//! Turns an effect into the message it delivers, without sending anything: the same rendering
//! serves live delivery and dry runs. Everything it needs is looked up beforehand (the record,
//! the people, the primary contact, the playbooks), so rendering itself is pure.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use domain::{Contact, Person, Record, RecordKey, Role, Timestamp};
use playbook::{Action, AssetChoice, PlaybookSet, Target};
use store::{NewException, NewTask, StoredEffect};

/// A message ready to send, as stored in the outbox (`rendered`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Message {
    Email {
        from: String,
        to: Vec<String>,
        subject: String,
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        html: Option<String>,
        /// `<idempotency key@sender's domain>`: receivers (and mail clients) de-duplicate on it.
        message_id: String,
        /// For an email to a contact: the signed link that unsubscribes them, sent in the
        /// `List-Unsubscribe` headers.
        #[serde(skip_serializing_if = "Option::is_none")]
        unsubscribe: Option<String>,
    },
    /// Slack's incoming-webhook format (also accepted by Mattermost, Rocket.Chat, …).
    Chat {
        channel: String,
        payload: Value,
    },
    Webhook {
        url: String,
        body: Value,
    },
    Task {
        id: String,
        kind: String,
        assignee: String,
        title: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        due_at: Option<Timestamp>,
    },
    /// An item in a person's exceptions inbox, escalating through `chain` (person ids, the
    /// first holds it first).
    Exception {
        id: String,
        reason: String,
        title: String,
        chain: Vec<String>,
        sla_ms: i64,
        /// The record's facts and the why-trace when it was raised.
        context: Value,
    },
    /// A change to pipewright's own records, applied as an event whose source id is the
    /// effect's key (so applying it twice changes nothing).
    Internal {
        event: Value,
    },
    /// Started and stopped by the sequence engine, not delivered here.
    Sequence,
}

impl Message {
    pub fn task(&self, effect: &StoredEffect) -> Option<NewTask> {
        match self {
            Message::Task {
                id,
                kind,
                assignee,
                title,
                due_at,
            } => Some(NewTask {
                id: id.clone(),
                kind: kind.clone(),
                assignee: assignee.clone(),
                title: title.clone(),
                record: effect.record.clone(),
                rule: effect.rule.clone(),
                due_at: *due_at,
            }),
            _ => None,
        }
    }

    pub fn exception(&self, effect: &StoredEffect, now: Timestamp) -> Option<NewException> {
        match self {
            Message::Exception {
                id,
                reason,
                title,
                chain,
                sla_ms,
                context,
            } => Some(NewException {
                id: id.clone(),
                record: effect.record.clone(),
                playbook: effect.playbook.clone(),
                rule: effect.rule.clone(),
                version: effect.version.clone(),
                reason: reason.clone(),
                title: title.clone(),
                context: context.clone(),
                chain: chain.clone(),
                sla_ms: *sla_ms,
                raised_at: now,
            }),
            _ => None,
        }
    }
}

/// What rendering needs to know beyond the effect.
#[derive(Debug, Default)]
pub struct Lookup {
    pub record: Option<Record>,
    pub people: Vec<Person>,
    /// The contact the effect addresses (`Target::Contact`), else the record's first, if any.
    pub contact: Option<Contact>,
    pub playbooks: Option<std::sync::Arc<PlaybookSet>>,
    /// The key that signs unsubscribe links (see [`crate::unsubscribe`]); without it, emails
    /// go without one.
    pub unsubscribe_secret: Option<String>,
}

/// Why an effect cannot be rendered: permanent, so it is dead-lettered with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, RenderError> {
    Err(RenderError(message.into()))
}

/// Renders `effect` at `now`.
///
/// # Errors
/// A recipient without an address, an unknown template or asset, a template that uses a value
/// the record does not have.
pub fn render(
    effect: &StoredEffect,
    lookup: &Lookup,
    config: &crate::Config,
    now: Timestamp,
) -> Result<Message, RenderError> {
    let action: Action = serde_json::from_value(effect.action.clone())
        .map_err(|e| RenderError(format!("unreadable action: {e}")))?;
    let cx = Context::new(effect, lookup, config, now);
    match &action {
        Action::SendEmail { template, to } => {
            let t = lookup
                .playbooks
                .as_deref()
                .and_then(|s| {
                    s.playbooks
                        .iter()
                        .flat_map(|p| &p.templates)
                        .find(|t| &t.name == template)
                })
                .ok_or_else(|| {
                    RenderError(format!(
                        "template {template:?} is not in the running playbooks"
                    ))
                })?;
            let values = cx.values(None);
            cx.email(
                to,
                render_text(&t.subject, &values, false)?,
                render_text(&t.text, &values, false)?,
                t.html
                    .as_deref()
                    .map(|h| render_text(h, &values, true))
                    .transpose()?,
            )
        }
        Action::SendAsset { asset, to, .. } => {
            let AssetChoice::Named(name) = asset else {
                return fail("no asset in the library matches the use case");
            };
            let a = lookup
                .playbooks
                .as_deref()
                .and_then(|s| {
                    s.playbooks
                        .iter()
                        .flat_map(|p| &p.assets)
                        .find(|a| &a.name == name)
                })
                .ok_or_else(|| {
                    RenderError(format!("asset {name:?} is not in the running playbooks"))
                })?;
            let values = cx.values(Some(asset_value(a)));
            let subject = render_text("{{ asset.title }}", &values, false)?;
            let text = render_text(ASSET_EMAIL, &values, false)?;
            cx.email(to, subject, text, None)
        }
        Action::Alert {
            to: Target::Channel(channel),
            text,
        } => {
            let text = render_text(text, &cx.values(None), false)?;
            Ok(Message::Chat {
                channel: channel.clone(),
                payload: json!({
                    "text": format!(
                        "{text} — <{}|{}>\n_Why: {}_",
                        cx.link,
                        cx.title,
                        cx.why
                    ),
                }),
            })
        }
        Action::Alert { to, text } => {
            let text = render_text(text, &cx.values(None), false)?;
            let subject = format!("[pipewright] {}: {}", cx.title, effect.rule);
            let body = format!("{text}\n\nWhy: {}\n{}\n", cx.why, cx.link);
            cx.email(to, subject, body, None)
        }
        Action::Task {
            assignee,
            title,
            due,
            task,
        } => Ok(Message::Task {
            id: effect.key.clone(),
            kind: task.map_or("task", |k| k.as_str()).into(),
            assignee: cx.person_id(assignee)?,
            title: render_text(title, &cx.values(None), false)?,
            due_at: due.map(|d| Timestamp::from_millis(now.as_millis() + d.0)),
        }),
        Action::Escalate {
            to,
            reason,
            then,
            sla,
            ..
        } => {
            // Each level of the chain as a person; a level nobody fills is left out, and the
            // same person twice in a row holds it once.
            let mut chain: Vec<String> = Vec::new();
            let mut first_error = None;
            for target in std::iter::once(to).chain(then) {
                match cx.person_id(target) {
                    Ok(id) if chain.last() != Some(&id) => chain.push(id),
                    Ok(_) => {}
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if chain.is_empty() {
                return Err(
                    first_error.unwrap_or_else(|| RenderError("nobody to escalate to".into()))
                );
            }
            Ok(Message::Exception {
                id: effect.key.clone(),
                reason: reason.clone(),
                title: format!("{}: {reason}", cx.title),
                chain,
                sla_ms: sla.unwrap_or(playbook::DEFAULT_ESCALATION_SLA).0,
                context: json!({
                    "facts": cx.facts,
                    "trace": effect.trace,
                    "link": cx.link,
                }),
            })
        }
        Action::Webhook { url } => Ok(Message::Webhook {
            url: url.clone(),
            body: cx.webhook_body(effect),
        }),
        Action::AssignOwner {
            chosen,
            chosen_by,
            why,
            route,
            ..
        } => {
            let Some(owner) = chosen else {
                return fail("no team member was chosen");
            };
            let why = why.clone().unwrap_or_default();
            let strategy = chosen_by.as_deref().unwrap_or(route.strategy.as_str());
            let mut data = json!({
                "owner": owner,
                "rule": effect.rule,
                "strategy": strategy,
                "why": why,
            });
            if let Some(previous) = cx.owner() {
                data["previous"] = json!(previous);
            }
            Ok(cx.internal_event(effect, "owner.assigned", data))
        }
        Action::SetField { field, value } => {
            let name = field.strip_prefix("fields.").unwrap_or(field);
            // `true`, `12` or `"x"` keep their type; anything else is text.
            let value = serde_json::from_str::<Value>(value).unwrap_or_else(|_| json!(value));
            Ok(cx.internal(effect, json!({ "fields": { name: value } })))
        }
        Action::SetStage { stage } => Ok(cx.internal(effect, json!({ "stage": stage }))),
        Action::StartSequence { .. } | Action::StopSequence { .. } => Ok(Message::Sequence),
    }
}

/// The email `send_asset` sends.
const ASSET_EMAIL: &str = "Hello {{ contact.name | default('there') }},

As promised: {{ asset.title }}
{{ asset.url }}

Best regards,
{{ owner.name | default('') }}
";

/// An asset as messages read it: name, title (the name without one) and URL (or file).
fn asset_value(a: &playbook::Asset) -> Value {
    json!({
        "name": a.name,
        "title": a.title.clone().unwrap_or_else(|| a.name.clone()),
        "url": a.url.clone().or_else(|| a.file.clone()).unwrap_or_default(),
    })
}

fn render_text(source: &str, values: &Value, html: bool) -> Result<String, RenderError> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_fuel(Some(50_000));
    let escape = if html {
        minijinja::AutoEscape::Html
    } else {
        minijinja::AutoEscape::None
    };
    env.set_auto_escape_callback(move |_| escape.clone());
    env.render_str(source, minijinja::value::Serde(values))
        .map_err(|e| {
            RenderError(format!(
                "template: {}",
                e.detail().map_or_else(|| e.to_string(), str::to_owned)
            ))
        })
}

struct Context<'a> {
    lookup: &'a Lookup,
    config: &'a crate::Config,
    key: &'a RecordKey,
    effect_key: &'a str,
    /// The record's facts, as conditions see them.
    facts: Value,
    link: String,
    /// The record's name, or its id.
    title: String,
    why: String,
    now: Timestamp,
}

impl<'a> Context<'a> {
    fn new(
        effect: &'a StoredEffect,
        lookup: &'a Lookup,
        config: &'a crate::Config,
        now: Timestamp,
    ) -> Self {
        let facts = lookup
            .record
            .as_ref()
            .and_then(|r| engine::facts::record(r, now, None))
            .map_or(Value::Null, |v| engine::facts::to_json(&v));
        let title = facts["name"]
            .as_str()
            .map_or_else(|| effect.record.id.as_str().to_owned(), str::to_owned);
        let link = format!(
            "{}/api/v1/{}s/{}",
            config.base_url.trim_end_matches('/'),
            effect.record.kind.as_str(),
            effect.record.id.as_str()
        );
        Self {
            lookup,
            config,
            key: &effect.record,
            effect_key: &effect.key,
            facts,
            link,
            title,
            why: effect.trace["why"].as_str().unwrap_or_default().to_owned(),
            now,
        }
    }

    fn person(&self, id: &str) -> Option<&Person> {
        self.lookup.people.iter().find(|p| p.id.as_str() == id)
    }

    fn owner(&self) -> Option<String> {
        self.facts["owner"].as_str().map(str::to_owned)
    }

    /// Template values: the record under its kind, its owner and contact, the link, the asset.
    fn values(&self, asset: Option<Value>) -> Value {
        let owner = self.owner().map(|id| match self.person(&id) {
            Some(p) => json!({"id": id, "name": p.name, "email": p.email}),
            None => json!({"id": id}),
        });
        let contact = self.lookup.contact.as_ref().map(
            |c| json!({"id": c.id.as_str(), "name": c.name, "email": c.email, "title": c.title}),
        );
        // The asset library, by name: `{{ assets["roi-calculator"].url }}`.
        let assets: serde_json::Map<String, Value> = self
            .lookup
            .playbooks
            .iter()
            .flat_map(|set| set.playbooks.iter().flat_map(|p| &p.assets))
            .map(|a| (a.name.clone(), asset_value(a)))
            .collect();
        let mut v = json!({
            self.key.kind.as_str(): self.facts,
            "link": self.link,
            "assets": assets,
        });
        for (name, value) in [("owner", owner), ("contact", contact), ("asset", asset)] {
            if let Some(value) = value {
                v[name] = value;
            }
        }
        v
    }

    fn address(&self, id: &str) -> Result<String, RenderError> {
        match self.person(id) {
            Some(Person { email: Some(e), .. }) => Ok(e.clone()),
            _ if id.contains('@') => Ok(id.to_owned()),
            _ => fail(format!("person {id} has no email address")),
        }
    }

    /// The owner's manager, as the owner's person record names them.
    fn owner_manager(&self) -> Result<String, RenderError> {
        let owner = self
            .owner()
            .ok_or_else(|| RenderError(format!("{} has no owner", self.key)))?;
        match self.person(&owner).and_then(|p| p.manager.as_ref()) {
            Some(m) => Ok(m.as_str().to_owned()),
            None => fail(format!("the owner {owner} has no manager")),
        }
    }

    fn recipients(&self, to: &Target) -> Result<Vec<String>, RenderError> {
        match to {
            Target::Owner => match self.owner() {
                Some(id) => Ok(vec![self.address(&id)?]),
                None => fail(format!("{} has no owner", self.key)),
            },
            Target::OwnerManager => Ok(vec![self.address(&self.owner_manager()?)?]),
            // The lookup holds the contact the effect names, or the record's first.
            Target::PrimaryContact | Target::Contact(_) => match &self.lookup.contact {
                Some(Contact { email: Some(e), .. }) => Ok(vec![e.clone()]),
                Some(c) => fail(format!("contact {} has no email address", c.id)),
                None => fail(format!("{} has no contact", self.key)),
            },
            Target::Person(id) => Ok(vec![self.address(id.as_str())?]),
            Target::Role(role) => {
                let people = self.with_role(*role);
                if people.is_empty() {
                    return fail(format!("nobody has the role {}", role.as_str()));
                }
                people.iter().map(|p| self.address(p.id.as_str())).collect()
            }
            Target::Channel(c) => fail(format!("channel:{c} is not an email recipient")),
        }
    }

    fn with_role(&self, role: Role) -> Vec<&Person> {
        let mut people: Vec<&Person> = self
            .lookup
            .people
            .iter()
            .filter(|p| p.roles.contains(&role))
            .collect();
        people.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        people
    }

    /// The one person a task or exception is for: for a role, its first member (by id) who
    /// can take work now, else its first member.
    fn person_id(&self, to: &Target) -> Result<String, RenderError> {
        match to {
            Target::Owner => self
                .owner()
                .ok_or_else(|| RenderError(format!("{} has no owner", self.key))),
            Target::OwnerManager => self.owner_manager(),
            Target::Person(id) => Ok(id.as_str().to_owned()),
            Target::Role(role) => {
                let members = self.with_role(*role);
                members
                    .iter()
                    .find(|p| p.unavailable(self.now).is_none())
                    .or(members.first())
                    .map(|p| p.id.as_str().to_owned())
                    .ok_or_else(|| RenderError(format!("nobody has the role {}", role.as_str())))
            }
            other => fail(format!("a task cannot be assigned to {other:?}")),
        }
    }

    fn email(
        &self,
        to: &Target,
        subject: String,
        text: String,
        html: Option<String>,
    ) -> Result<Message, RenderError> {
        let from = self.config.email.from.clone();
        let domain = from
            .rsplit_once('@')
            .map_or("pipewright.localhost", |(_, d)| d.trim_end_matches('>'))
            .to_owned();
        Ok(Message::Email {
            to: self.recipients(to)?,
            from,
            subject,
            text,
            html,
            message_id: format!("<{}@{domain}>", self.effect_key),
            unsubscribe: self.unsubscribe(to),
        })
    }

    /// The unsubscribe link of an email to a contact (a lead is its own contact).
    fn unsubscribe(&self, to: &Target) -> Option<String> {
        if !matches!(to, Target::PrimaryContact | Target::Contact(_)) {
            return None;
        }
        let secret = self.lookup.unsubscribe_secret.as_deref()?;
        let contact = self.lookup.contact.as_ref()?;
        let kind = match self.key.kind {
            domain::RecordKind::Lead => domain::RecordKind::Lead,
            _ => domain::RecordKind::Contact,
        };
        let token = crate::unsubscribe::token(secret, &RecordKey::new(kind, contact.id.clone()));
        Some(crate::unsubscribe::url(&self.config.base_url, &token))
    }

    fn webhook_body(&self, effect: &StoredEffect) -> Value {
        json!({
            "id": effect.key,
            "type": "pipewright.effect",
            "created_at": effect.created_at,
            "playbook": effect.playbook,
            "rule": effect.rule,
            "version": effect.version,
            "record": { "kind": effect.record.kind.as_str(), "id": effect.record.id.as_str() },
            "action": effect.action,
            "trace": effect.trace,
            "facts": self.facts,
            "link": self.link,
        })
    }

    /// A change to the record as its `KIND.updated` event.
    fn internal(&self, effect: &StoredEffect, data: Value) -> Message {
        let ty = format!("{}.updated", self.key.kind.as_str());
        self.internal_event(effect, &ty, data)
    }

    fn internal_event(&self, effect: &StoredEffect, ty: &str, data: Value) -> Message {
        let kind = self.key.kind.as_str();
        Message::Internal {
            event: json!({
                "type": ty,
                "source": "pipewright",
                "source_id": effect.key,
                "occurred_at": effect.due,
                kind: self.key.id.as_str(),
                "data": data,
            }),
        }
    }
}

/// Headers an email carries beyond the usual ones.
pub fn email_headers(effect: &StoredEffect) -> BTreeMap<&'static str, String> {
    [
        ("X-Pipewright-Effect", effect.key.clone()),
        ("X-Pipewright-Rule", effect.rule.clone()),
    ]
    .into_iter()
    .collect()
}
