//! Each channel against its real peer: what arrives, with which headers.

use delivery::ReplyTo;
use hmac::{KeyInit, Mac};
use testkit::{Receiver, SmtpServer};

use crate::{Backend, ingest, note, rule, setup, ts};

async fn emails_are_rendered_and_carry_the_key_as_message_id(backend: Backend) {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let s = setup(
        backend,
        &rule("      - send_email: { template: follow-up, to: deal.primary_contact }\n      - send_asset: { asset: roi-calculator }\n"),
        |c| c.email.port = smtp.port,
    )
    .await;
    ingest(&*s.store, &note(1)).await;
    let pass = s.dispatcher.run_once().await.unwrap();
    assert_eq!((pass.claimed, pass.delivered), (2, 2), "{pass:?}");
    let messages = smtp.messages();
    assert_eq!(messages.len(), 2, "{messages:?}");
    let effects = s.store.effects(None, 10).await.unwrap();
    let follow_up = messages
        .iter()
        .find(|m| m["subject"] == "Globex rollout: next steps")
        .unwrap();
    let key = follow_up["effect"].as_str().unwrap();
    assert!(effects.iter().any(|e| e.key == key && e.rule == "r"));
    assert_eq!(follow_up["message_id"], format!("<{key}@acme.example>"));
    assert_eq!(
        follow_up["rcpt_tos"],
        serde_json::json!(["ana@globex.example"])
    );
    // To a contact: the sending address under the owner's name (issue 23).
    assert_eq!(follow_up["from"], "Sam Ortiz <sales@acme.example>");
    assert_eq!(
        follow_up["text"].as_str().unwrap().trim(),
        "Hi Ana Ruiz, about Globex rollout (proposal). Sam Ortiz"
    );
    let html = follow_up["html"].as_str().unwrap();
    assert!(
        html.contains(
            "<b>Globex rollout</b> &amp; more <a href='https:&#x2f;&#x2f;acme.example&#x2f;roi'>ROI</a>"
        ),
        "the asset's URL, escaped for HTML: {html}"
    );
    // An email to a contact can be unsubscribed from in one click (RFC 8058).
    let unsubscribe = follow_up["list_unsubscribe"].as_str().unwrap();
    assert!(
        unsubscribe.starts_with("<") && unsubscribe.contains("/unsubscribe/"),
        "{unsubscribe}"
    );
    assert_eq!(
        follow_up["list_unsubscribe_post"],
        "List-Unsubscribe=One-Click"
    );
    let asset = messages
        .iter()
        .find(|m| m["subject"] == "ROI calculator")
        .unwrap();
    let text = asset["text"].as_str().unwrap();
    assert!(
        text.contains("Hello Ana Ruiz") && text.contains("https://acme.example/roi"),
        "{text}"
    );

    for e in s.store.effects(None, 10).await.unwrap() {
        assert_eq!(e.status, "delivered", "{e:?}");
        assert!(e.response.as_deref().unwrap().starts_with("250"), "{e:?}");
        assert_eq!(e.rendered.as_ref().unwrap()["via"], "email");
    }
    // Delivered effects are never claimed again.
    s.clock.advance(std::time::Duration::from_secs(3600));
    assert_eq!(s.dispatcher.run_once().await.unwrap().claimed, 0);
    assert_eq!(smtp.messages().len(), 2);
}

async fn webhooks_are_signed_and_carry_the_idempotency_key(backend: Backend) {
    let receiver = Receiver::start().await;
    let s = setup(
        backend,
        &rule(&format!(
            "      - webhook: {{ url: \"{}\" }}\n",
            receiver.url("/ok/hook")
        )),
        |_| {},
    )
    .await;
    ingest(&*s.store, &note(1)).await;
    assert_eq!(s.dispatcher.run_once().await.unwrap().delivered, 1);
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    let effect = &s.store.effects(None, 10).await.unwrap()[0];
    assert_eq!(r.header("idempotency-key"), Some(effect.key.as_str()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Verify as a receiver would: HMAC-SHA256 over "<t>.<raw body>" with the shared secret.
    let signature = r.header("pipewright-signature").unwrap();
    let (t, v1) = signature
        .split_once(',')
        .map(|(t, v)| {
            (
                t.strip_prefix("t=").unwrap(),
                v.strip_prefix("v1=").unwrap(),
            )
        })
        .unwrap();
    assert_eq!(
        t.parse::<i64>().unwrap(),
        ts("2026-11-20T12:00:00Z").as_millis() / 1000
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"whsec-test").unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&r.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected);
    let body = r.json();
    assert_eq!(body["id"], effect.key);
    assert_eq!(body["type"], "pipewright.effect");
    assert_eq!(
        body["record"],
        serde_json::json!({"kind": "deal", "id": "D-1"})
    );
    assert_eq!(body["facts"]["name"], "Globex rollout");
    assert_eq!(body["link"], "https://pipewright.acme.example/deals/D-1");
    assert_eq!(body["trace"]["why"], "Every note gets a follow-up.");
}

async fn chat_alerts_use_the_incoming_webhook_format(backend: Backend) {
    let receiver = Receiver::start().await;
    let url = receiver.url("/ok/slack");
    let s = setup(
        backend,
        &rule("      - alert: { to: channel:sales, text: \"{{ deal.name }} needs a look\" }\n"),
        |c| {
            c.chat.insert("sales".into(), url);
        },
    )
    .await;
    ingest(&*s.store, &note(1)).await;
    assert_eq!(s.dispatcher.run_once().await.unwrap().delivered, 1);
    let got = receiver.received();
    assert_eq!(
        got[0].json(),
        serde_json::json!({"text": "Globex rollout needs a look — <https://pipewright.acme.example/deals/D-1|Globex rollout>\n_Why: Every note gets a follow-up._"})
    );
    // The webhook URL is a secret: the outbox keeps the channel's name, not the URL.
    let effect = &s.store.effects(None, 10).await.unwrap()[0];
    assert_eq!(effect.channel, "chat:sales");
    assert!(
        !effect
            .rendered
            .as_ref()
            .unwrap()
            .to_string()
            .contains("/ok/slack")
    );
}

async fn tasks_escalations_and_changes_to_records(backend: Backend) {
    let s = setup(
        backend,
        &rule("      - task: { assignee: deal.owner, title: \"Call {{ contact.name }}\", due: 2d }\n      - escalate: { to: role:vp, reason: legal-stall }\n      - set_field: { field: fields.next_step, value: call }\n      - assign_owner: { team: [vera@acme.example] }\n"),
        |_| {},
    )
    .await;
    ingest(&*s.store, &note(1)).await;
    let pass = s.dispatcher.run_once().await.unwrap();
    assert_eq!(pass.delivered, 4, "{pass:?}");
    let tasks = |who: &str| {
        let store = std::sync::Arc::clone(&s.store);
        let who = who.to_owned();
        async move {
            store
                .tasks(&store::TaskQuery {
                    assignee: Some(who),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap()
        }
    };
    let sam = tasks("sam@acme.example").await;
    assert_eq!(sam.len(), 1);
    assert_eq!(
        (sam[0].title.as_str(), sam[0].kind.as_str()),
        ("Call Ana Ruiz", "task")
    );
    assert_eq!(sam[0].due_at, Some(ts("2026-11-22T12:00:00Z")));
    // The escalation is an exception in vera's inbox, not a task.
    assert!(tasks("vera@acme.example").await.is_empty());
    let vera = s
        .store
        .exceptions(&store::ExceptionQuery {
            assignee: Some("vera@acme.example".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(vera.len(), 1);
    assert_eq!(vera[0].title, "Globex rollout: legal-stall");
    assert_eq!(vera[0].chain, ["vera@acme.example"]);
    assert_eq!(
        vera[0].due_at,
        Some(ts("2026-11-21T12:00:00Z")),
        "one day by default"
    );
    let deal = s
        .store
        .record(&domain::RecordKey::new(
            domain::RecordKind::Deal,
            domain::RecordId::parse("D-1").unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    let domain::Record::Deal(deal) = deal.record else {
        panic!()
    };
    assert_eq!(
        deal.owner.as_ref().map(|o| o.as_str()),
        Some("vera@acme.example")
    );
    assert_eq!(
        deal.fields.get("next_step"),
        Some(&serde_json::json!("call"))
    );
}

/// An escalation chain becomes people when it is delivered: the owner's manager, a role's
/// first member who can take work (one out of office is passed over), the same person twice
/// in a row once, a level nobody fills left out.
async fn an_escalation_chain_is_resolved_to_people(backend: Backend) {
    let s = setup(
        backend,
        &rule("      - escalate: { to: deal.owner.manager, then: [role:vp, role:vp, role:founder, role:executive], reason: legal-stall, sla: 2h }\n"),
        |c| c.dry_run = true,
    )
    .await;
    ingest(
        &*s.store,
        r#"
{"type":"person.updated","source":"t","source_id":"p1m","occurred_at":"2026-11-01T08:00:00Z","person":"sam@acme.example","data":{"manager":"omar@acme.example"}}
{"type":"person.created","source":"t","source_id":"p3","occurred_at":"2026-11-01T08:00:00Z","person":"omar@acme.example","data":{"name":"Omar","roles":["manager"]}}
{"type":"person.created","source":"t","source_id":"p4","occurred_at":"2026-11-01T08:00:00Z","person":"ada@acme.example","data":{"name":"Ada","roles":["founder"],"out_of_office":[{"from":"2026-11-15T00:00:00Z","until":"2026-12-01T00:00:00Z"}]}}
{"type":"person.created","source":"t","source_id":"p5","occurred_at":"2026-11-01T08:00:00Z","person":"mia@acme.example","data":{"name":"Mia","roles":["founder"]}}
"#,
    )
    .await;
    ingest(&*s.store, &note(1)).await;
    let pass = s.dispatcher.run_once().await.unwrap();
    assert_eq!(pass.delivered, 1, "{pass:?}");
    let all = s
        .store
        .exceptions(&store::ExceptionQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].chain,
        ["omar@acme.example", "vera@acme.example", "mia@acme.example"]
    );
    assert_eq!(all[0].assignee, "omar@acme.example");
    assert_eq!(all[0].due_at, Some(ts("2026-11-20T14:00:00Z")));
    assert_eq!(all[0].context["facts"]["name"], "Globex rollout");
    // Raising it told its first holder: an email, delivered like any alert.
    s.dispatcher.run_once().await.unwrap();
    let told = s
        .store
        .outbox(&store::OutboxQuery {
            channel: Some("email".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(told.len(), 1);
    let email = told[0].rendered.as_ref().unwrap();
    assert_eq!(email["to"], serde_json::json!(["omar@acme.example"]));
    assert_eq!(email["subject"], "[pipewright] Globex rollout: r");
    let text = email["text"].as_str().unwrap();
    assert!(
        text.starts_with("Globex rollout: legal-stall: an exception for you to acknowledge (to acknowledge by 2026-11-20T14:00:00.000Z)."),
        "{text}"
    );
    assert!(text.contains("Why: Every note gets a follow-up."), "{text}");
}

async fn a_dry_run_renders_everything_and_sends_nothing(backend: Backend) {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let receiver = Receiver::start().await;
    let s = setup(
        backend,
        &rule(&format!(
            "      - send_email: {{ template: follow-up, to: deal.owner }}\n      - webhook: {{ url: \"{}\" }}\n      - task: {{ assignee: deal.owner, title: Call }}\n",
            receiver.url("/ok/dry")
        )),
        |c| {
            c.email.port = smtp.port;
            c.dry_run = true;
        },
    )
    .await;
    ingest(&*s.store, &note(1)).await;
    let pass = s.dispatcher.run_once().await.unwrap();
    assert_eq!((pass.dry_run, pass.delivered), (2, 1), "{pass:?}");
    assert!(smtp.messages().is_empty());
    assert!(receiver.received().is_empty());
    let effects = s.store.effects(None, 10).await.unwrap();
    let email = effects.iter().find(|e| e.channel == "email").unwrap();
    assert_eq!(email.status, "dry_run");
    let rendered = email.rendered.as_ref().unwrap();
    assert_eq!(rendered["subject"], "Globex rollout: next steps");
    assert_eq!(rendered["to"], serde_json::json!(["sam@acme.example"]));
    // Tasks are pipewright's own: they are created in a dry run too.
    assert_eq!(
        effects.iter().find(|e| e.channel == "task").unwrap().status,
        "delivered"
    );
}

async fn a_message_that_cannot_be_rendered_is_dead_lettered_with_the_reason(backend: Backend) {
    let s = setup(
        backend,
        &rule("      - alert: { to: deal.owner, text: \"{{ deal.fields.no_such_field }}\" }\n      - send_email: { template: follow-up, to: role:sdr }\n"),
        |_| {},
    )
    .await;
    ingest(&*s.store, &note(1)).await;
    let pass = s.dispatcher.run_once().await.unwrap();
    assert_eq!(pass.dead, 2, "{pass:?}");
    let mut errors: Vec<String> = s
        .store
        .effects(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.last_error.unwrap_or_default())
        .collect();
    errors.sort();
    assert!(errors[0].contains("nobody has the role sdr"), "{errors:?}");
    assert!(
        errors[1].starts_with("template:") && errors[1].contains("undefined"),
        "{errors:?}"
    );
}

async fn smtp_login_is_used_when_configured(backend: Backend) {
    let Some(smtp) = SmtpServer::start_with_login("pipewright", "s3cret") else {
        return;
    };
    let playbook = rule("      - send_email: { template: follow-up, to: deal.owner }\n");
    let wrong = setup(backend, &playbook, |c| {
        c.email.port = smtp.port;
        c.email.username = Some("pipewright".into());
        c.email.password = Some("wrong".into());
    })
    .await;
    ingest(&*wrong.store, &note(1)).await;
    // 535: authentication failed, a permanent refusal.
    assert_eq!(wrong.dispatcher.run_once().await.unwrap().dead, 1);
    let e = &wrong.store.effects(None, 1).await.unwrap()[0];
    assert!(e.last_error.as_deref().unwrap().contains("535"), "{e:?}");
    let right = setup(backend, &playbook, |c| {
        c.email.port = smtp.port;
        c.email.username = Some("pipewright".into());
        c.email.password = Some("s3cret".into());
    })
    .await;
    ingest(&*right.store, &note(1)).await;
    assert_eq!(right.dispatcher.run_once().await.unwrap().delivered, 1);
    assert_eq!(smtp.messages().len(), 1);
}

async fn tasks_can_also_be_pushed_to_a_webhook(backend: Backend) {
    let receiver = Receiver::start().await;
    let url = receiver.url("/ok/tasks");
    let s = setup(
        backend,
        &rule("      - task: { assignee: deal.owner, title: \"Call {{ contact.name }}\" }\n"),
        |c| c.tasks.webhook = Some(url),
    )
    .await;
    ingest(&*s.store, &note(1)).await;
    assert_eq!(s.dispatcher.run_once().await.unwrap().delivered, 1);
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let body = got[0].json();
    assert_eq!(
        (body["via"].as_str(), body["title"].as_str()),
        (Some("task"), Some("Call Ana Ruiz"))
    );
    assert_eq!(body["assignee"], "sam@acme.example");
    let tasks = s
        .store
        .tasks(&store::TaskQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1);
}

/// Issue 23: email to a buyer comes from the deal's owner by name (at the configured address)
/// and is answered to the owner; it carries no link into pipewright. What the owner is sent —
/// an alert — comes from the system sender and links to the deal's page in the web UI.
async fn buyer_email_is_from_the_owner_and_only_the_team_gets_internal_links(backend: Backend) {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let s = setup(
        backend,
        &rule("      - send_email: { template: follow-up, to: deal.primary_contact }\n      - send_asset: { asset: roi-calculator }\n      - alert: { to: deal.owner, text: \"{{ deal.name }} needs a look: {{ link }}\" }\n"),
        |c| c.email.port = smtp.port,
    )
    .await;
    ingest(&*s.store, &note(1)).await;
    let pass = s.dispatcher.run_once().await.unwrap();
    assert_eq!((pass.claimed, pass.delivered), (3, 3), "{pass:?}");
    let messages = smtp.messages();
    let to = |who: &str| {
        messages
            .iter()
            .filter(|m| m["rcpt_tos"] == serde_json::json!([who]))
            .collect::<Vec<_>>()
    };
    let buyer = to("ana@globex.example");
    assert_eq!(buyer.len(), 2, "the follow-up and the asset: {messages:?}");
    for m in &buyer {
        assert_eq!(m["from"], "Sam Ortiz <sales@acme.example>", "{m}");
        assert_eq!(m["reply_to"], "Sam Ortiz <sam@acme.example>", "{m}");
        assert_eq!(m["mail_from"], "sales@acme.example", "{m}");
        // Message-ID and the one-click unsubscribe headers are as they were.
        let key = m["effect"].as_str().unwrap();
        assert_eq!(m["message_id"], format!("<{key}@acme.example>"));
        assert!(
            m["list_unsubscribe"]
                .as_str()
                .unwrap()
                .starts_with("<https://pipewright.acme.example/unsubscribe/"),
            "{m}"
        );
        assert_eq!(m["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
        for part in [&m["text"], &m["html"]] {
            let body = part.as_str().unwrap_or_default();
            assert!(
                !body.contains("/api/") && !body.contains("pipewright.acme.example"),
                "no internal link in email to a buyer: {body}"
            );
        }
    }
    let owner = to("sam@acme.example");
    assert_eq!(owner.len(), 1, "{messages:?}");
    let alert = owner[0];
    assert_eq!(alert["from"], "Acme Sales <sales@acme.example>");
    assert_eq!(alert["reply_to"], "", "the team answers the system sender");
    let text = alert["text"].as_str().unwrap().replace("\r\n", "\n");
    assert!(
        text.starts_with(
            "Globex rollout needs a look: https://pipewright.acme.example/deals/D-1\n"
        ) && text.contains("Open in pipewright: https://pipewright.acme.example/deals/D-1"),
        "{text}"
    );
    assert!(!text.contains("/api/"), "{text}");
}

/// Issue 23: `delivery.email.reply_to` sends a buyer's reply to the sender's address or to one
/// fixed address; an owner whose person record has no name lends none, and a name that needs
/// quoting or encoding arrives as written.
async fn buyer_replies_go_where_the_configuration_says(backend: Backend) {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let playbook = rule("      - send_email: { template: follow-up, to: deal.primary_contact }\n");
    let cases = [
        (ReplyTo::Sender, None, "Sam Ortiz <sales@acme.example>", ""),
        (
            ReplyTo::Address("Sales replies <replies@acme.example>".into()),
            None,
            "Sam Ortiz <sales@acme.example>",
            "Sales replies <replies@acme.example>",
        ),
        (
            ReplyTo::Owner,
            Some(("kim@acme.example", None)),
            "Acme Sales <sales@acme.example>",
            "kim@acme.example",
        ),
        (
            ReplyTo::Owner,
            Some(("soren@acme.example", Some("Søren O'Neil, Jr."))),
            "\"Søren O'Neil, Jr.\" <sales@acme.example>",
            "\"Søren O'Neil, Jr.\" <soren@acme.example>",
        ),
    ];
    for (i, (reply_to, owner, from, replies)) in cases.into_iter().enumerate() {
        let s = setup(backend, &playbook, |c| {
            c.email.port = smtp.port;
            c.email.reply_to = reply_to;
        })
        .await;
        if let Some((owner, name)) = owner {
            let person = serde_json::json!({ "email": owner, "name": name });
            ingest(
                &*s.store,
                &format!(
                    "{}\n{}",
                    format_args!(
                        r#"{{"type":"person.created","source":"t","source_id":"k{i}","occurred_at":"2026-11-01T08:00:00Z","person":"{owner}","data":{person}}}"#
                    ),
                    format_args!(
                        r#"{{"type":"deal.updated","source":"t","source_id":"o{i}","occurred_at":"2026-11-20T10:00:00Z","deal":"D-1","data":{{"owner":"{owner}"}}}}"#
                    ),
                ),
            )
            .await;
        }
        ingest(&*s.store, &note(1)).await;
        assert_eq!(s.dispatcher.run_once().await.unwrap().delivered, 1);
        let messages = smtp.messages();
        let m = messages.last().unwrap();
        assert_eq!(
            (m["from"].as_str(), m["reply_to"].as_str()),
            (Some(from), Some(replies)),
            "case {i}: {m}"
        );
    }
}

/// Issue 23: an alert about a lead links to the lead's page in the web UI, and once the lead
/// has become a deal, to the deal's.
async fn alerts_about_a_lead_link_to_its_page_then_to_its_deal(backend: Backend) {
    let playbook = "playbook: p\nowner: o\nrules:\n  - id: l\n    why: A note on a lead is worth a look.\n    record: lead\n    when: { event: note.added }\n    then:\n      - alert: { to: lead.owner, text: \"{{ lead.name }}\" }\n      - task: { assignee: lead.owner, title: \"Call {{ lead.name }}\" }\n";
    let s = setup(backend, playbook, |c| c.dry_run = true).await;
    let lead_note = |i: u32| {
        format!(
            r#"{{"type":"note.added","source":"t","source_id":"ln{i}","occurred_at":"2026-11-20T11:0{i}:00Z","lead":"L-1","data":{{"text":"note {i}"}}}}"#
        )
    };
    ingest(
        &*s.store,
        &format!(
            "{}\n{}",
            r#"{"type":"lead.created","source":"t","source_id":"l1","occurred_at":"2026-11-02T09:00:00Z","lead":"L-1","data":{"name":"Initech","owner":"sam@acme.example"}}"#,
            lead_note(1)
        ),
    )
    .await;
    s.dispatcher.run_once().await.unwrap();
    ingest(
        &*s.store,
        &format!(
            "{}\n{}",
            r#"{"type":"deal.created","source":"t","source_id":"d2","occurred_at":"2026-11-20T11:05:00Z","deal":"D-2","lead":"L-1","data":{"name":"Initech pilot","owner":"sam@acme.example"}}"#,
            lead_note(6)
        ),
    )
    .await;
    s.dispatcher.run_once().await.unwrap();
    let mut links: Vec<(String, String)> = s
        .store
        .effects(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let r = e.rendered.unwrap();
            let link = match r["via"].as_str().unwrap() {
                "task" => r["link"].as_str().unwrap().to_owned(),
                _ => r["text"]
                    .as_str()
                    .unwrap()
                    .lines()
                    .last()
                    .unwrap()
                    .to_owned(),
            };
            (e.trace["trigger"].to_string(), link)
        })
        .collect();
    links.sort();
    let before = "Open in pipewright: https://pipewright.acme.example/leads/L-1";
    let after = "Open in pipewright: https://pipewright.acme.example/deals/D-2";
    let got: Vec<&str> = links.iter().map(|(_, l)| l.as_str()).collect();
    assert!(got.contains(&before) && got.contains(&after), "{links:?}");
    assert!(
        got.contains(&"https://pipewright.acme.example/leads/L-1")
            && got.contains(&"https://pipewright.acme.example/deals/D-2"),
        "tasks carry the same link: {links:?}"
    );
}

crate::suite!(
    emails_are_rendered_and_carry_the_key_as_message_id,
    webhooks_are_signed_and_carry_the_idempotency_key,
    chat_alerts_use_the_incoming_webhook_format,
    tasks_escalations_and_changes_to_records,
    an_escalation_chain_is_resolved_to_people,
    a_dry_run_renders_everything_and_sends_nothing,
    a_message_that_cannot_be_rendered_is_dead_lettered_with_the_reason,
    smtp_login_is_used_when_configured,
    tasks_can_also_be_pushed_to_a_webhook,
    buyer_email_is_from_the_owner_and_only_the_team_gets_internal_links,
    buyer_replies_go_where_the_configuration_says,
    alerts_about_a_lead_link_to_its_page_then_to_its_deal,
);
