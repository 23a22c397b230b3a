//! Sequences in the store, on both backends: enrolments start from the rules' decisions, run
//! their steps when due (in virtual time), stop on exits, follow the sending etiquette and the
//! version they started on.

use std::path::PathBuf;
use std::sync::Arc;

use domain::{RecordId, RecordKey, RecordKind};
use store::{Control, EnrolmentQuery, PauseScope, Store, StoredEffect};

use crate::{Backend, Harness, ev, ts};

const PLAYBOOK: &str = r#"
playbook: t
owner: o
stages: [discovery, proposal]
sending:
  per_contact: { max: 2, per: 7d }
  per_sender: { per_hour: 2 }
  cool_off: 3d
rules:
  - id: start-s
    why: Follow up after the demo form.
    when: { event: form.submitted }
    if: event.form == "demo"
    then:
      - start_sequence: s
  - id: start-t
    why: Another cadence.
    when: { event: form.submitted }
    if: event.form == "other"
    then:
      - start_sequence: t
  - id: note-email
    why: A one-off email.
    when: { event: note.added }
    then:
      - send_email: { template: a, to: deal.primary_contact }
sequences:
  s:
    account_wide_exit: true
    goal: deal.stage == "proposal"
    steps:
      - email: { template: a }
      - wait: 2d
      - email: { variants: [b, c] }
      - wait: 2d
      - task: { assignee: deal.owner, title: "Call {{ deal.name }}", kind: call }
  t:
    steps:
      - email: { template: a }
templates:
  a: { subject: "A {{ deal.name }}", text: "a" }
  b: { subject: B, text: b }
  c: { subject: C, text: c }
  z: { subject: Z, text: z }
"#;

fn engine(text: &str) -> Arc<store::Engine> {
    let loaded = playbook::load_files(&[(PathBuf::from("t.yaml"), text.to_owned())]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    Arc::new(store::Engine::new(Arc::new(loaded.set.unwrap())))
}

fn deal_key(id: &str) -> RecordKey {
    RecordKey::new(RecordKind::Deal, RecordId::parse(id).unwrap())
}

/// A contact at an account, and a deal of Sam's with that contact.
async fn deal_with_contact(h: &Harness, deal: &str, contact: &str, account: &str, email: &str) {
    deal_with_contact_on(&*h.store, deal, contact, account, email).await;
}

async fn deal_with_contact_on(
    store: &dyn Store,
    deal: &str,
    contact: &str,
    account: &str,
    email: &str,
) {
    store
        .ingest(vec![
            ev(
                "contact.created",
                &format!("{contact}-created"),
                "2026-11-01T08:00:00Z",
                &format!(r#""contact":"{contact}","account":"{account}""#),
                &format!(r#"{{"name":"{contact}","email":"{email}"}}"#),
            ),
            ev(
                "deal.created",
                &format!("{deal}-created"),
                "2026-11-01T09:00:00Z",
                &format!(r#""deal":"{deal}","account":"{account}""#),
                &format!(
                    r#"{{"name":"{deal}","stage":"discovery","owner":"sam","contacts":["{contact}"]}}"#
                ),
            ),
        ])
        .await
        .unwrap();
}

/// Moves the clock to `at` and ingests one event that happened then.
async fn happen(h: &Harness, ty: &str, id: &str, at: &str, refs: &str, data: &str) {
    h.clock.set(ts(at));
    h.store
        .ingest(vec![ev(ty, id, at, refs, data)])
        .await
        .unwrap();
}

async fn form(h: &Harness, deal: &str, form: &str, id: &str, at: &str) {
    let refs = format!(r#""deal":"{deal}""#);
    happen(
        h,
        "form.submitted",
        id,
        at,
        &refs,
        &format!(r#"{{"form":"{form}"}}"#),
    )
    .await;
}

async fn advance(h: &Harness, at: &str) -> store::Advanced {
    h.clock.set(ts(at));
    h.store.advance_enrolments(ts(at), 1000).await.unwrap()
}

async fn outbox(h: &Harness, deal: &str) -> Vec<StoredEffect> {
    h.store.effects(Some(&deal_key(deal)), 100).await.unwrap()
}

/// The step effects of a deal's sequences: (template or "task", status).
async fn steps(h: &Harness, deal: &str) -> Vec<(String, String)> {
    outbox(h, deal)
        .await
        .into_iter()
        .filter(|e| e.rule.starts_with("sequence:"))
        .map(|e| {
            let what = match e.action["kind"].as_str() {
                Some("send_email") => e.action["template"].as_str().unwrap().to_owned(),
                other => other.unwrap().to_owned(),
            };
            (what, e.status)
        })
        .collect()
}

async fn enrolment(h: &Harness, deal: &str) -> store::EnrolmentInfo {
    let mut all = h
        .store
        .enrolments(&EnrolmentQuery {
            record: Some(deal_key(deal)),
            ..EnrolmentQuery::default()
        })
        .await
        .unwrap();
    assert!(!all.is_empty(), "no enrolment for {deal}");
    all.remove(0)
}

/// The whole cadence on time; an out-of-office reply changes nothing; a real reply ends it.
async fn a_sequence_runs_on_time_and_a_reply_ends_it(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(engine(PLAYBOOK)));
    deal_with_contact(&h, "D-1", "C-1", "A-1", "hank@globex.example").await;
    form(&h, "D-1", "demo", "f1", "2026-11-02T10:00:00Z").await;
    let start = outbox(&h, "D-1").await;
    assert_eq!(start.len(), 1);
    assert_eq!(start[0].status, "delivered", "{:?}", start[0]);
    assert!(
        start[0]
            .response
            .as_deref()
            .unwrap()
            .contains("enrolled contact:C-1"),
        "{:?}",
        start[0].response
    );
    let e = enrolment(&h, "D-1").await;
    assert_eq!((e.status.as_str(), e.step), ("active", 0));

    let pass = advance(&h, "2026-11-02T10:00:01Z").await;
    assert_eq!((pass.enrolments, pass.emails), (1, 1));
    assert_eq!(steps(&h, "D-1").await, [("a".into(), "pending".into())]);
    let email = outbox(&h, "D-1").await.pop().unwrap();
    assert_eq!(email.channel, "email");
    assert_eq!(email.action["to"], serde_json::json!({"contact": "C-1"}));
    // Nothing more until the wait is over; running again adds nothing.
    assert_eq!(advance(&h, "2026-11-04T10:00:00Z").await.emails, 0);

    // An out-of-office reply between the steps: not a reply.
    happen(&h, "email.received", "ooo", "2026-11-03T08:00:00Z", r#""deal":"D-1","contact":"C-1""#, r#"{"subject":"Automatic reply: away until Monday","headers":{"Auto-Submitted":"auto-replied"}}"#).await;
    assert_eq!(enrolment(&h, "D-1").await.status, "active");

    let pass = advance(&h, "2026-11-04T10:00:02Z").await;
    assert_eq!(pass.emails, 1);
    let sent = steps(&h, "D-1").await;
    assert_eq!(sent.len(), 2);
    // Which of the variants b and c the contact gets is fixed by a hash of contact and step.
    let b_or_c = sent[1].0.clone();
    assert!(b_or_c == "b" || b_or_c == "c", "{sent:?}");

    // The contact replies (to the deal's thread, named by the contact only): it ends.
    happen(
        &h,
        "email.received",
        "reply",
        "2026-11-05T09:00:00Z",
        r#""contact":"C-1""#,
        r#"{"subject":"Re: B"}"#,
    )
    .await;
    let e = enrolment(&h, "D-1").await;
    assert_eq!(
        (e.status.as_str(), e.end_reason.as_deref()),
        ("ended", Some("reply"))
    );
    assert!(e.replied);
    // The call task it would have made never comes.
    assert_eq!(advance(&h, "2026-11-10T00:00:00Z").await.enrolments, 0);
    assert_eq!(steps(&h, "D-1").await.len(), 2);

    // The reply counts for the variant it followed.
    let results = h.store.sequence_results("s").await.unwrap();
    let second = results.iter().find(|r| r.step == "step-3").unwrap();
    assert_eq!(
        (second.variant.as_str(), second.sent, second.replied),
        (b_or_c.as_str(), 1, 1)
    );
    let first = results.iter().find(|r| r.step == "step-1").unwrap();
    assert_eq!((first.sent, first.replied, first.reply_rate), (1, 1, 1.0));
}

/// Without exits the cadence completes, ending on the owner's call task.
async fn a_sequence_completes_with_its_task(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(engine(PLAYBOOK)));
    deal_with_contact(&h, "D-1", "C-1", "A-1", "hank@globex.example").await;
    form(&h, "D-1", "demo", "f1", "2026-11-02T10:00:00Z").await;
    advance(&h, "2026-11-02T10:00:00Z").await;
    advance(&h, "2026-11-04T10:00:00Z").await;
    let pass = advance(&h, "2026-11-06T10:00:00Z").await;
    assert_eq!((pass.tasks, pass.ended), (1, 1));
    let task = outbox(&h, "D-1").await.pop().unwrap();
    assert_eq!(task.channel, "task");
    assert_eq!(task.action["task"], "call");
    assert_eq!(task.action["assignee"], "owner");
    let e = enrolment(&h, "D-1").await;
    assert_eq!(e.end_reason.as_deref(), Some("completed"));
}

/// Frequency caps hold a step (recorded once, with the reason) until the cap allows it; a
/// sender's throttle spreads a burst over the hours.
async fn caps_and_throttles_hold_sends_and_record_why(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(engine(PLAYBOOK)));
    deal_with_contact(&h, "D-1", "C-1", "A-1", "hank@globex.example").await;
    // A rule's one-off email first: one of the two the contact may get in 7 days.
    happen(
        &h,
        "note.added",
        "n1",
        "2026-11-02T09:00:00Z",
        r#""deal":"D-1""#,
        r#"{"text":"x"}"#,
    )
    .await;
    form(&h, "D-1", "demo", "f1", "2026-11-02T10:00:00Z").await;
    assert_eq!(advance(&h, "2026-11-02T10:00:00Z").await.emails, 1);
    // Two days later the second step would be the third email in 7 days: held.
    let pass = advance(&h, "2026-11-04T10:00:00Z").await;
    assert_eq!((pass.emails, pass.held), (0, 1));
    let blocked: Vec<StoredEffect> = outbox(&h, "D-1")
        .await
        .into_iter()
        .filter(|e| e.status == "blocked")
        .collect();
    assert_eq!(blocked.len(), 1);
    let why = blocked[0].last_error.as_deref().unwrap();
    assert!(
        why.starts_with("frequency cap: 2 automated emails to contact:C-1 within 7d; held until 2026-11-09T09:00:00"),
        "{why}"
    );
    // Asked again before then: still held, not recorded twice.
    assert_eq!(advance(&h, "2026-11-09T08:59:00Z").await.emails, 0);
    let e = enrolment(&h, "D-1").await;
    assert_eq!(e.due_at, Some(ts("2026-11-09T09:00:00Z")));
    assert_eq!(
        outbox(&h, "D-1")
            .await
            .iter()
            .filter(|e| e.status == "blocked")
            .count(),
        1
    );
    // When the cap allows, the step runs, and the wait after it counts from then.
    assert_eq!(advance(&h, "2026-11-09T09:00:00Z").await.emails, 1);
    assert_eq!(
        enrolment(&h, "D-1").await.due_at,
        Some(ts("2026-11-11T09:00:00Z"))
    );

    // Throttle: Sam may send two an hour. Three deals start together.
    for (d, c) in [("D-2", "C-2"), ("D-3", "C-3"), ("D-4", "C-4")] {
        deal_with_contact(&h, d, c, "A-2", &format!("{c}@initech.example")).await;
        form(&h, d, "demo", &format!("f-{d}"), "2026-11-20T10:00:00Z").await;
    }
    let pass = advance(&h, "2026-11-20T10:00:00Z").await;
    assert_eq!((pass.emails, pass.held), (2, 1));
    let held = h
        .store
        .outbox(&store::OutboxQuery {
            status: Some("blocked".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let throttled = held
        .iter()
        .find(|e| e.last_error.as_deref().unwrap().starts_with("throttle"))
        .expect("a throttled send");
    assert!(
        throttled
            .last_error
            .as_deref()
            .unwrap()
            .contains("throttle: 2 emails from sam per hour; held until 2026-11-20T11:00:00"),
        "{:?}",
        throttled.last_error
    );
    assert_eq!(advance(&h, "2026-11-20T10:59:59Z").await.emails, 0);
    assert_eq!(advance(&h, "2026-11-20T11:00:00Z").await.emails, 1);
}

/// One sequence at a time per contact; a cool-off after one ends; the do-not-contact list and
/// unsubscribes stop sends, each recorded with its reason.
async fn exclusivity_cool_off_and_suppression_are_enforced(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(engine(PLAYBOOK)));
    deal_with_contact(&h, "D-1", "C-1", "A-1", "hank@globex.example").await;
    form(&h, "D-1", "demo", "f1", "2026-11-02T10:00:00Z").await;
    // The same contact on another deal, another sequence: refused while the first runs.
    happen(
        &h,
        "deal.created",
        "d2",
        "2026-11-02T11:00:00Z",
        r#""deal":"D-2""#,
        r#"{"name":"D-2","owner":"sam","contacts":["C-1"]}"#,
    )
    .await;
    form(&h, "D-2", "other", "f2", "2026-11-02T11:00:00Z").await;
    let refused = outbox(&h, "D-2").await.pop().unwrap();
    assert_eq!(refused.status, "blocked");
    assert!(
        refused
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("exclusivity: contact:C-1 is in sequence \"s\""),
        "{:?}",
        refused.last_error
    );
    // Stopped by hand; a new sequence within the 3-day cool-off is refused, after it is not.
    let id = enrolment(&h, "D-1").await.id;
    h.clock.set(ts("2026-11-03T10:00:00Z"));
    let stopped = h.store.control_enrolment(&id, Control::Stop).await.unwrap();
    assert_eq!(stopped.end_reason.as_deref(), Some("stopped"));
    form(&h, "D-2", "other", "f3", "2026-11-05T10:00:00Z").await;
    let refused = outbox(&h, "D-2").await.pop().unwrap();
    assert!(
        refused
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("cool-off: contact:C-1's last sequence ended at 2026-11-03T10:00:00"),
        "{:?}",
        refused.last_error
    );
    form(&h, "D-2", "other", "f4", "2026-11-06T10:00:01Z").await;
    assert_eq!(outbox(&h, "D-2").await.pop().unwrap().status, "delivered");
    assert_eq!(advance(&h, "2026-11-06T10:00:01Z").await.emails, 1);

    // A whole domain on the do-not-contact list: no enrolment, and a rule's email is blocked.
    deal_with_contact(&h, "D-3", "C-3", "A-3", "wanda@umbrella.example").await;
    h.store
        .suppress(
            "@Umbrella.example",
            "do_not_contact",
            Some("legal asked".into()),
        )
        .await
        .unwrap();
    form(&h, "D-3", "demo", "f5", "2026-11-07T10:00:00Z").await;
    let refused = outbox(&h, "D-3").await.pop().unwrap();
    assert_eq!(
        refused.last_error.as_deref(),
        Some("do_not_contact: contact:C-3")
    );
    happen(
        &h,
        "note.added",
        "n3",
        "2026-11-07T11:00:00Z",
        r#""deal":"D-3""#,
        r#"{"text":"x"}"#,
    )
    .await;
    let email = outbox(&h, "D-3").await.pop().unwrap();
    assert_eq!(
        (email.rule.as_str(), email.status.as_str()),
        ("note-email", "blocked")
    );
    assert!(
        h.store
            .suppress("nobody", "do_not_contact", None)
            .await
            .is_err()
    );
    assert!(h.store.suppress("a@b.example", "whim", None).await.is_err());

    // An unsubscribe ends the running enrolment and suppresses the address.
    deal_with_contact(&h, "D-4", "C-4", "A-4", "Kim@Hooli.example").await;
    form(&h, "D-4", "demo", "f6", "2026-11-08T10:00:00Z").await;
    advance(&h, "2026-11-08T10:00:00Z").await;
    happen(
        &h,
        "contact.unsubscribed",
        "u1",
        "2026-11-08T12:00:00Z",
        r#""contact":"C-4""#,
        r#"{"via":"link"}"#,
    )
    .await;
    let e = enrolment(&h, "D-4").await;
    assert_eq!(e.end_reason.as_deref(), Some("unsubscribe"));
    let list = h.store.suppressions(100).await.unwrap();
    let kim = list
        .iter()
        .find(|s| s.address == "kim@hooli.example")
        .expect("suppressed");
    assert_eq!(kim.reason, "unsubscribed");
    assert!(h.store.unsuppress("@umbrella.example").await.unwrap());
    assert!(!h.store.unsuppress("@umbrella.example").await.unwrap());
}

/// A global pause runs nothing; on resume each enrolment runs one step, not every one it
/// missed. An owner's pause covers their records, new enrolments included.
async fn pauses_hold_everything_and_resume_without_a_burst(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(engine(PLAYBOOK)));
    deal_with_contact(&h, "D-1", "C-1", "A-1", "hank@globex.example").await;
    form(&h, "D-1", "demo", "f1", "2026-11-02T10:00:00Z").await;
    advance(&h, "2026-11-02T10:00:00Z").await;
    h.clock.set(ts("2026-11-03T00:00:00Z"));
    assert_eq!(
        h.store
            .pause_sequences(PauseScope::Global, Some("holiday freeze".into()))
            .await
            .unwrap(),
        1
    );
    let e = enrolment(&h, "D-1").await;
    assert_eq!(
        (e.status.as_str(), e.paused_by.as_deref()),
        ("paused", Some("global"))
    );
    // Everything falls due during the pause; nothing runs.
    assert_eq!(advance(&h, "2026-11-20T00:00:00Z").await.enrolments, 0);
    h.clock.set(ts("2026-11-20T09:00:00Z"));
    assert_eq!(
        h.store.resume_sequences(PauseScope::Global).await.unwrap(),
        1
    );
    assert!(h.store.sequence_pauses().await.unwrap().is_empty());
    // One step (the second email), then the two-day wait: not the email and the task at once.
    let pass = advance(&h, "2026-11-20T09:00:00Z").await;
    assert_eq!((pass.emails, pass.tasks), (1, 0));
    assert_eq!(
        enrolment(&h, "D-1").await.due_at,
        Some(ts("2026-11-22T09:00:00Z"))
    );

    // Sam is out of office: his new enrolments start paused, and resume with him.
    h.store
        .pause_sequences(PauseScope::Owner("sam".into()), None)
        .await
        .unwrap();
    deal_with_contact(&h, "D-2", "C-2", "A-2", "x@initech.example").await;
    form(&h, "D-2", "demo", "f2", "2026-11-21T10:00:00Z").await;
    let e = enrolment(&h, "D-2").await;
    assert_eq!(
        (e.status.as_str(), e.paused_by.as_deref()),
        ("paused", Some("owner:sam"))
    );
    assert_eq!(advance(&h, "2026-11-21T10:00:00Z").await.emails, 0);
    h.store
        .resume_sequences(PauseScope::Owner("sam".into()))
        .await
        .unwrap();
    assert_eq!(advance(&h, "2026-11-21T10:00:00Z").await.emails, 1);

    // One enrolment by hand.
    let id = enrolment(&h, "D-2").await.id;
    let paused = h
        .store
        .control_enrolment(&id, Control::Pause)
        .await
        .unwrap();
    assert_eq!(paused.paused_by.as_deref(), Some("enrolment"));
    assert_eq!(advance(&h, "2026-11-25T10:00:00Z").await.enrolments, 1); // D-1 only
    let resumed = h
        .store
        .control_enrolment(&id, Control::Resume)
        .await
        .unwrap();
    assert_eq!(resumed.status, "active");
    assert!(matches!(
        h.store.control_enrolment("nope", Control::Pause).await,
        Err(store::Error::NotFound(_))
    ));
}

/// An enrolment runs the sequence as it was when it started; a changed sequence applies to new
/// enrolments. After a restart the version comes from the published sets.
async fn enrolments_keep_the_version_they_started_on(backend: Backend) {
    let h = backend.open();
    let v1 = engine(PLAYBOOK);
    h.store.set_engine(Some(Arc::clone(&v1)));
    // Published, as a node does: a restarted node reads old versions from there.
    h.store
        .publish_playbooks(store::PublishedPlaybooks {
            version: v1.version().to_owned(),
            files: vec![("t.yaml".into(), PLAYBOOK.into())],
            published_at: ts("2026-11-01T00:00:00Z"),
            node: "n1".into(),
        })
        .await
        .unwrap();
    deal_with_contact(&h, "D-1", "C-1", "A-1", "hank@globex.example").await;
    form(&h, "D-1", "demo", "f1", "2026-11-02T10:00:00Z").await;
    advance(&h, "2026-11-02T10:00:00Z").await;

    // The sequence changes: its second email is now template z.
    let changed = PLAYBOOK.replace("{ variants: [b, c] }", "{ template: z }");
    // A new handle knows only the new version (a restart after the change).
    let store = (h.reopen)();
    store.set_engine(Some(engine(&changed)));
    deal_with_contact_on(&*store, "D-2", "C-2", "A-2", "y@initech.example").await;
    h.clock.set(ts("2026-11-02T11:00:00Z"));
    store
        .ingest(vec![ev(
            "form.submitted",
            "f2",
            "2026-11-02T11:00:00Z",
            r#""deal":"D-2""#,
            r#"{"form":"demo"}"#,
        )])
        .await
        .unwrap();
    for at in ["2026-11-02T11:00:00Z", "2026-11-05T00:00:00Z"] {
        h.clock.set(ts(at));
        store.advance_enrolments(ts(at), 100).await.unwrap();
    }
    let second = |effects: Vec<StoredEffect>| {
        effects
            .into_iter()
            .filter(|e| e.rule == "sequence:s" && e.status == "pending")
            .map(|e| e.action["template"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let old = second(store.effects(Some(&deal_key("D-1")), 100).await.unwrap());
    assert_eq!(old.len(), 2);
    assert!(old[1] == "b" || old[1] == "c", "{old:?}");
    let new = second(store.effects(Some(&deal_key("D-2")), 100).await.unwrap());
    assert_eq!(new, ["a", "z"]);
    assert_eq!(
        store
            .enrolments(&EnrolmentQuery::default())
            .await
            .unwrap()
            .iter()
            .filter(|e| e.version == v1.version())
            .count(),
        1
    );
}

/// A reply from one contact ends the account's other enrolments (`account_wide_exit`); the goal
/// ends an enrolment as soon as it holds.
async fn account_wide_exits_and_goals_end_enrolments(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(engine(PLAYBOOK)));
    deal_with_contact(&h, "D-1", "C-1", "A-1", "hank@globex.example").await;
    deal_with_contact(&h, "D-2", "C-2", "A-1", "gina@globex.example").await;
    form(&h, "D-1", "demo", "f1", "2026-11-02T10:00:00Z").await;
    form(&h, "D-2", "demo", "f2", "2026-11-02T10:00:00Z").await;
    happen(
        &h,
        "email.received",
        "r",
        "2026-11-03T10:00:00Z",
        r#""contact":"C-2""#,
        r#"{"subject":"Re: A"}"#,
    )
    .await;
    assert_eq!(
        enrolment(&h, "D-2").await.end_reason.as_deref(),
        Some("reply")
    );
    assert_eq!(
        enrolment(&h, "D-1").await.end_reason.as_deref(),
        Some("account_reply")
    );

    deal_with_contact(&h, "D-3", "C-3", "A-3", "z@initech.example").await;
    form(&h, "D-3", "demo", "f3", "2026-11-04T10:00:00Z").await;
    happen(
        &h,
        "deal.updated",
        "up",
        "2026-11-04T11:00:00Z",
        r#""deal":"D-3""#,
        r#"{"fields":{"x":1}}"#,
    )
    .await;
    assert_eq!(enrolment(&h, "D-3").await.status, "active");
    // Moving to proposal (through an update, not a stage-change event) meets the goal.
    happen(
        &h,
        "deal.updated",
        "st",
        "2026-11-04T12:00:00Z",
        r#""deal":"D-3""#,
        r#"{"stage":"proposal"}"#,
    )
    .await;
    let e = enrolment(&h, "D-3").await;
    assert_eq!(
        (e.status.as_str(), e.end_reason.as_deref()),
        ("ended", Some("goal"))
    );
}

suite!(
    a_sequence_runs_on_time_and_a_reply_ends_it,
    a_sequence_completes_with_its_task,
    caps_and_throttles_hold_sends_and_record_why,
    exclusivity_cool_off_and_suppression_are_enforced,
    pauses_hold_everything_and_resume_without_a_burst,
    enrolments_keep_the_version_they_started_on,
    account_wide_exits_and_goals_end_enrolments,
);
