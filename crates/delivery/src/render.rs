//! Turns an effect into the message it delivers, without sending anything: the same rendering
//! serves live delivery and dry runs. Everything it needs is looked up beforehand (the record,
//! the people, the primary contact, the playbooks), so rendering itself is pure.
//!
//! Two audiences (issue 23). What the team reads — alerts, tasks, escalations, chat, webhooks —
//! links to the record's page in the web UI (`link`) and comes from the configured sender.
//! What a buyer reads — email to a contact or a lead — is never given `link`, comes from the
//! configured address under the owner's name, and is answered to the owner (`reply_to`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use domain::{Contact, Person, Record, RecordKey, RecordKind, Role, Timestamp};
use lettre::message::Mailbox;
use playbook::{Action, AssetChoice, PlaybookSet, Target};
use store::{NewException, NewTask, StoredEffect};

/// A message ready to send, as stored in the outbox (`rendered`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Message {
    Email {
        from: String,
        /// Where replies go, when not to `from`: for email to a buyer, the owner by default.
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
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
        /// The record's page in the web UI, for a task pushed to another tool.
        link: String,
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
                ..
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
            let to_buyer = to.is_buyer();
            // `check` refuses this since issue 23; a set published before may still hold it.
            if to_buyer && t.reads_link() {
                return fail(format!(
                    "template {template:?} reads `link`, the record's page in pipewright, which only the team can open: it is not emailed to a contact (give an asset's URL instead)"
                ));
            }
            let values = cx.values(None, to_buyer);
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
            let values = cx.values(Some(asset_value(a)), to.is_buyer());
            let subject = render_text("{{ asset.title }}", &values, false)?;
            let text = render_text(ASSET_EMAIL, &values, false)?;
            cx.email(to, subject, text, None)
        }
        Action::Alert {
            to: Target::Channel(channel),
            text,
        } => {
            let text = render_text(text, &cx.values(None, false), false)?;
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
        // An alert carries the rule's why and the record's page: `check` keeps it from
        // contacts since issue 23; a set published before may still hold one.
        Action::Alert { to, .. } if to.is_buyer() => {
            fail("an alert is for the team, not a contact")
        }
        Action::Alert { to, text } => {
            let text = render_text(text, &cx.values(None, false), false)?;
            let subject = format!("[pipewright] {}: {}", cx.title, effect.rule);
            let body = format!(
                "{text}\n\nWhy: {}\nOpen in pipewright: {}\n",
                cx.why, cx.link
            );
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
            title: render_text(title, &cx.values(None, false), false)?,
            due_at: due.map(|d| Timestamp::from_millis(now.as_millis() + d.0)),
            link: cx.link.clone(),
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

/// The web UI's page of a record, as a path: `/deals/ID`, `/leads/ID` (the id percent-encoded,
/// so any id makes one path segment); other kinds have none.
pub fn page(key: &RecordKey) -> Option<String> {
    /// What a path segment keeps as it is: RFC 3986's unreserved characters.
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let kind = match key.kind {
        RecordKind::Deal => "deals",
        RecordKind::Lead => "leads",
        _ => return None,
    };
    let id = percent_encoding::utf8_percent_encode(key.id.as_str(), SEGMENT);
    Some(format!("/{kind}/{id}"))
}

/// What the team opens from a message about the effect's record: the record's page in the
/// web UI — for a lead that became a deal, the deal's — under `public_url`; for a record with
/// no page, the effect's own page in the outbox.
fn team_link(effect: &StoredEffect, record: Option<&Record>, public_url: &str) -> String {
    let converted = match record {
        Some(Record::Lead(l)) => l.converted_to.clone(),
        _ => None,
    };
    let page = match converted {
        Some(deal) => page(&RecordKey::new(RecordKind::Deal, deal)),
        None => page(&effect.record),
    };
    let path = page.unwrap_or_else(|| {
        let key =
            percent_encoding::utf8_percent_encode(&effect.key, percent_encoding::NON_ALPHANUMERIC);
        format!("/outbox/{key}")
    });
    format!("{}{path}", public_url.trim_end_matches('/'))
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
        let link = team_link(effect, lookup.record.as_ref(), &config.public_url);
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

    /// Template values: the record under its kind, its owner and contact, the asset; `link`
    /// only in what the team reads.
    fn values(&self, asset: Option<Value>, to_buyer: bool) -> Value {
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
            "assets": assets,
        });
        if !to_buyer {
            v[playbook::LINK] = json!(self.link);
        }
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

    /// Who an email comes from and where replies go. To the team: the configured sender as
    /// written, replies to it. To a buyer: the configured address under the owner's name (the
    /// configured name when the owner has none), replies as `reply_to` says.
    fn sender(&self, to_buyer: bool) -> (String, Option<String>) {
        let configured = &self.config.email.from;
        if !to_buyer {
            return (configured.clone(), None);
        }
        let owner = self.owner();
        let person = owner.as_deref().and_then(|id| self.person(id));
        let from = match (
            configured.parse::<Mailbox>(),
            person.and_then(|p| p.name.clone()),
        ) {
            (Ok(sender), Some(name)) => Mailbox::new(Some(name), sender.email).to_string(),
            _ => configured.clone(),
        };
        let reply_to = match &self.config.email.reply_to {
            crate::ReplyTo::Owner => owner
                .as_deref()
                .and_then(|id| self.address(id).ok())
                .and_then(|a| a.parse().ok())
                .map(|email| Mailbox::new(person.and_then(|p| p.name.clone()), email).to_string()),
            crate::ReplyTo::Sender => None,
            crate::ReplyTo::Address(a) => Some(a.clone()),
        };
        (from, reply_to)
    }

    fn email(
        &self,
        to: &Target,
        subject: String,
        text: String,
        html: Option<String>,
    ) -> Result<Message, RenderError> {
        // Message-IDs are named by the configured address's domain, whoever it is from.
        let domain = self
            .config
            .email
            .from
            .rsplit_once('@')
            .map_or("pipewright.localhost", |(_, d)| d.trim_end_matches('>'))
            .to_owned();
        let (from, reply_to) = self.sender(to.is_buyer());
        Ok(Message::Email {
            to: self.recipients(to)?,
            from,
            reply_to,
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
        Some(crate::unsubscribe::url(&self.config.public_url, &token))
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

#[cfg(test)]
mod tests {
    use domain::{RecordId, RecordKey, RecordKind};

    fn key(kind: RecordKind, id: &str) -> RecordKey {
        RecordKey::new(kind, RecordId::parse(id).unwrap())
    }

    /// Any id is one path segment of the web UI's page (ids come from a CRM: anything goes).
    #[test]
    fn a_record_page_is_one_segment_per_id() {
        assert_eq!(
            super::page(&key(RecordKind::Deal, "D-1")).as_deref(),
            Some("/deals/D-1")
        );
        assert_eq!(
            super::page(&key(RecordKind::Lead, "acme/42 #3?x")).as_deref(),
            Some("/leads/acme%2F42%20%233%3Fx")
        );
        assert_eq!(super::page(&key(RecordKind::Contact, "C-1")), None);
    }
}
