use std::collections::BTreeSet;
use std::sync::Arc;

use domain::{DealStatus, ObjectionKind, Record, RecordId, RecordKey, RecordKind, Role};
use store::{Ingested, ListQuery, NewToken, RecordRange, Store, TokenRole};

use crate::{Backend, Harness, ev, ts};

fn key(kind: RecordKind, id: &str) -> RecordKey {
    RecordKey::new(kind, RecordId::parse(id).unwrap())
}

async fn record(store: &dyn Store, kind: RecordKind, id: &str) -> Record {
    store
        .record(&key(kind, id))
        .await
        .unwrap()
        .expect("record exists")
        .record
}

async fn deal(store: &dyn Store, id: &str) -> domain::Deal {
    match store
        .record(&key(RecordKind::Deal, id))
        .await
        .unwrap()
        .expect("deal exists")
        .record
    {
        Record::Deal(d) => d,
        other => panic!("not a deal: {other:?}"),
    }
}

fn stored(results: &[Ingested]) -> usize {
    results
        .iter()
        .filter(|r| matches!(r, Ingested::Stored { .. }))
        .count()
}

/// One deal's life touching every event type; each derived fact is checked.
fn story() -> Vec<domain::NewEvent> {
    let d = r#""deal":"D-1""#;
    vec![
        ev(
            "person.created",
            "p1",
            "2026-10-01T00:00:00Z",
            r#""person":"maya@acme.example""#,
            r#"{"name":"Maya","roles":["founder"],"key_person":true,"timezone":"Europe/Berlin"}"#,
        ),
        ev(
            "person.updated",
            "p2",
            "2026-10-01T00:00:01Z",
            r#""person":"maya@acme.example""#,
            r#"{"available":false}"#,
        ),
        ev(
            "account.created",
            "a1",
            "2026-10-01T00:00:00Z",
            r#""account":"A-1""#,
            r#"{"name":"Globex","industry":"logistics","employees":250}"#,
        ),
        ev(
            "account.updated",
            "a2",
            "2026-10-02T00:00:00Z",
            r#""account":"A-1""#,
            r#"{"segment":"mid-market"}"#,
        ),
        ev(
            "lead.created",
            "l1",
            "2026-10-01T09:00:00Z",
            r#""lead":"L-1""#,
            r#"{"name":"Hank","email":"hank@globex.example","origin":"webinar"}"#,
        ),
        ev(
            "lead.updated",
            "l2",
            "2026-10-01T10:00:00Z",
            r#""lead":"L-1""#,
            r#"{"status":"qualified","owner":"sam@acme.example"}"#,
        ),
        ev(
            "contact.created",
            "c1",
            "2026-10-02T09:00:00Z",
            r#""contact":"C-1","account":"A-1""#,
            r#"{"name":"Hank","timezone":"America/Chicago"}"#,
        ),
        ev(
            "contact.updated",
            "c2",
            "2026-10-02T09:30:00Z",
            r#""contact":"C-1""#,
            r#"{"role":"champion"}"#,
        ),
        ev(
            "deal.created",
            "d1",
            "2026-10-03T09:00:00Z",
            &format!(r#"{d},"lead":"L-1","account":"A-1""#),
            r#"{"name":"Globex rollout","stage":"discovery","owner":"sam@acme.example","amount":48000,"currency":"EUR","close_date":"2026-12-15","contacts":["C-1"],"fields":{"budget_confirmed":false}}"#,
        ),
        ev(
            "deal.updated",
            "d2",
            "2026-10-04T09:00:00Z",
            d,
            r#"{"close_date":"2027-01-15","fields":{"budget_confirmed":true}}"#,
        ),
        ev(
            "email.sent",
            "e1",
            "2026-10-05T09:00:00Z",
            &format!(r#"{d},"contact":"C-1","actor":{{"person":"sam@acme.example"}}"#),
            r#"{"subject":"Next steps"}"#,
        ),
        ev("email.opened", "e2", "2026-10-05T10:00:00Z", d, "{}"),
        ev(
            "link.clicked",
            "e3",
            "2026-10-05T10:01:00Z",
            d,
            r#"{"url":"https://acme.example/roi"}"#,
        ),
        ev(
            "email.received",
            "e4",
            "2026-10-06T09:00:00Z",
            &format!(r#"{d},"actor":{{"contact":"C-2"}}"#),
            r#"{"subject":"Re: Next steps"}"#,
        ),
        ev(
            "email.received",
            "e5",
            "2026-10-06T09:05:00Z",
            d,
            // An automatic reply recognised by its header (RFC 3834), not flagged by the sender.
            r#"{"subject":"Re: Globex rollout","headers":{"Auto-Submitted":"auto-replied"}}"#,
        ),
        ev(
            "meeting.booked",
            "m1",
            "2026-10-07T09:00:00Z",
            d,
            r#"{"scheduled_for":"2026-10-09T15:00:00Z"}"#,
        ),
        ev(
            "meeting.held",
            "m2",
            "2026-10-09T15:00:00Z",
            d,
            r#"{"duration_minutes":45,"attendees":["C-1","C-3"]}"#,
        ),
        ev(
            "call.logged",
            "k1",
            "2026-10-10T09:00:00Z",
            d,
            r#"{"direction":"outbound","duration_minutes":12}"#,
        ),
        ev(
            "note.added",
            "n1",
            "2026-10-10T09:30:00Z",
            d,
            r#"{"text":"Wants SSO"}"#,
        ),
        ev(
            "deal.stage_changed",
            "s1",
            "2026-10-11T09:00:00Z",
            d,
            r#"{"stage":"proposal"}"#,
        ),
        ev(
            "objection.raised",
            "o1",
            "2026-10-12T09:00:00Z",
            d,
            r#"{"kind":"pricing"}"#,
        ),
        ev(
            "content.viewed",
            "v1",
            "2026-10-13T09:00:00Z",
            d,
            r#"{"asset":"roi-calculator","seconds":95}"#,
        ),
        ev(
            "form.submitted",
            "f1",
            "2026-10-13T09:10:00Z",
            d,
            r#"{"form":"pricing-request"}"#,
        ),
        ev(
            "intervention.logged",
            "i1",
            "2026-10-14T09:00:00Z",
            d,
            r#"{"person":"maya@acme.example","reason":"pricing"}"#,
        ),
        ev(
            "deal.stage_changed",
            "s2",
            "2026-10-15T09:00:00Z",
            d,
            r#"{"stage":"legal"}"#,
        ),
        ev(
            "deal.lost",
            "x1",
            "2026-10-20T09:00:00Z",
            d,
            r#"{"reason":"went dark"}"#,
        ),
        ev(
            "deal.won",
            "w1",
            "2026-10-25T09:00:00Z",
            d,
            r#"{"amount":52000}"#,
        ),
    ]
}

async fn check_story(store: &dyn Store) {
    let deal = deal(store, "D-1").await;
    assert_eq!(deal.name.as_deref(), Some("Globex rollout"));
    assert_eq!(deal.status, DealStatus::Won);
    assert_eq!(deal.stage.as_ref().unwrap().as_str(), "closed_won");
    let stages: Vec<&str> = deal
        .stage_history
        .iter()
        .map(|v| v.stage.as_str())
        .collect();
    assert_eq!(
        stages,
        [
            "discovery",
            "proposal",
            "legal",
            "closed_lost",
            "closed_won"
        ]
    );
    assert_eq!(deal.stage_history[1].entered_at, ts("2026-10-11T09:00:00Z"));
    assert_eq!(
        deal.stage_history[1].left_at,
        Some(ts("2026-10-15T09:00:00Z"))
    );
    let amount = deal.amount.unwrap();
    assert_eq!((amount.minor, amount.currency.as_str()), (5_200_000, "EUR"));
    assert_eq!(deal.close_date.unwrap().to_string(), "2027-01-15");
    assert_eq!(deal.close_date_pushes, 1);
    assert_eq!(deal.fields["budget_confirmed"], serde_json::json!(true));
    assert_eq!(deal.account.as_ref().unwrap().as_str(), "A-1");
    assert_eq!(deal.lead.as_ref().unwrap().as_str(), "L-1");
    let stakeholders: Vec<&str> = deal.stakeholders.iter().map(|c| c.as_str()).collect();
    assert_eq!(stakeholders, ["C-1", "C-2", "C-3"]);
    let e = &deal.engagement;
    assert_eq!(
        (
            e.emails_sent,
            e.emails_received,
            e.auto_replies,
            e.emails_opened
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(
        (e.links_clicked, e.meetings_booked, e.meetings_held, e.calls),
        (1, 1, 1, 1)
    );
    assert_eq!((e.notes, e.content_views, e.forms_submitted), (1, 1, 1));
    assert_eq!(e.objections.len(), 1);
    assert_eq!(e.objections[0].kind, ObjectionKind::Pricing);
    assert_eq!(e.last_inbound_at, Some(ts("2026-10-13T09:10:00Z")));
    assert_eq!(e.last_outbound_at, Some(ts("2026-10-10T09:00:00Z")));
    assert_eq!(e.last_activity_at, Some(ts("2026-10-25T09:00:00Z")));
    assert_eq!(deal.interventions.len(), 1);
    assert_eq!(deal.interventions[0].reason, "pricing");
    assert_eq!(deal.closed_at, Some(ts("2026-10-25T09:00:00Z")));

    let Record::Lead(lead) = record(store, RecordKind::Lead, "L-1").await else {
        panic!("lead")
    };
    assert_eq!(lead.status.as_deref(), Some("converted"));
    assert_eq!(lead.converted_to.unwrap().as_str(), "D-1");
    assert_eq!(lead.owner.unwrap().as_str(), "sam@acme.example");
    let Record::Contact(contact) = record(store, RecordKind::Contact, "C-1").await else {
        panic!("contact")
    };
    assert_eq!(contact.role.as_deref(), Some("champion"));
    assert_eq!(contact.account.unwrap().as_str(), "A-1");
    assert_eq!(contact.timezone.as_deref(), Some("America/Chicago"));
    assert_eq!(contact.engagement.emails_sent, 1);
    let Record::Account(account) = record(store, RecordKind::Account, "A-1").await else {
        panic!("account")
    };
    assert_eq!(
        (account.segment.as_deref(), account.employees),
        (Some("mid-market"), Some(250))
    );
    let Record::Person(maya) = record(store, RecordKind::Person, "maya@acme.example").await else {
        panic!("person")
    };
    assert!(maya.key_person && !maya.available);
    assert!(maya.roles.contains(&Role::Founder));
}

async fn every_event_kind_updates_derived_state(backend: Backend) {
    let h = backend.open();
    let results = h.store.ingest(story()).await.unwrap();
    assert_eq!(stored(&results), 27);
    check_story(&*h.store).await;
    let timeline = h
        .store
        .timeline(&key(RecordKind::Deal, "D-1"), 1000)
        .await
        .unwrap();
    assert_eq!(timeline.len(), 19);
    assert!(
        timeline
            .windows(2)
            .all(|w| w[0].occurred_at <= w[1].occurred_at)
    );
    let newest = h
        .store
        .timeline(&key(RecordKind::Deal, "D-1"), 2)
        .await
        .unwrap();
    assert_eq!(
        newest
            .iter()
            .map(|e| e.source_id.as_str())
            .collect::<Vec<_>>(),
        ["x1", "w1"]
    );
}

async fn out_of_order_arrival_gives_the_same_state_as_in_order(backend: Backend) {
    let in_order = backend.open();
    in_order.store.ingest(story()).await.unwrap();
    let shuffled = backend.open();
    let mut events = story();
    events.reverse();
    // Half arrive in one batch, the rest one by one: both refold paths are exercised.
    let rest = events.split_off(10);
    shuffled.store.ingest(events).await.unwrap();
    for e in rest {
        shuffled.store.ingest(vec![e]).await.unwrap();
    }
    check_story(&*shuffled.store).await;
    for kind in RecordKind::ALL {
        let a = in_order.store.list(&ListQuery::new(kind)).await.unwrap();
        let b = shuffled.store.list(&ListQuery::new(kind)).await.unwrap();
        let records =
            |p: &store::Page| p.items.iter().map(|r| r.record.clone()).collect::<Vec<_>>();
        assert_eq!(records(&a), records(&b), "{kind} state differs");
    }
}

async fn a_late_stage_change_lands_in_its_place_in_history(backend: Backend) {
    let h = backend.open();
    let d = r#""deal":"D-9""#;
    h.store
        .ingest(vec![
            ev(
                "deal.created",
                "1",
                "2026-11-01T00:00:00Z",
                d,
                r#"{"stage":"discovery"}"#,
            ),
            ev(
                "deal.stage_changed",
                "3",
                "2026-11-10T00:00:00Z",
                d,
                r#"{"stage":"legal"}"#,
            ),
        ])
        .await
        .unwrap();
    h.store
        .ingest(vec![ev(
            "deal.stage_changed",
            "2",
            "2026-11-05T00:00:00Z",
            d,
            r#"{"stage":"proposal"}"#,
        )])
        .await
        .unwrap();
    let deal = deal(&*h.store, "D-9").await;
    let stages: Vec<_> = deal
        .stage_history
        .iter()
        .map(|v| (v.stage.as_str(), v.entered_at))
        .collect();
    assert_eq!(
        stages,
        [
            ("discovery", ts("2026-11-01T00:00:00Z")),
            ("proposal", ts("2026-11-05T00:00:00Z")),
            ("legal", ts("2026-11-10T00:00:00Z"))
        ]
    );
    assert_eq!(deal.stage.as_ref().unwrap().as_str(), "legal");
    let facts = domain::DealFacts::at(&deal, ts("2026-11-20T00:00:00Z"));
    assert_eq!(facts.days_in_stage, Some(10));
    assert_eq!(facts.days_since_activity, Some(10));
}

async fn duplicates_are_acknowledged_and_change_nothing(backend: Backend) {
    let h = backend.open();
    let d = r#""deal":"D-1""#;
    let first = h
        .store
        .ingest(vec![ev(
            "deal.created",
            "1",
            "2026-11-01T00:00:00Z",
            d,
            r#"{"amount":10}"#,
        )])
        .await
        .unwrap();
    let Ingested::Stored { id, .. } = first[0] else {
        panic!("stored")
    };
    h.clock.advance(std::time::Duration::from_secs(60));
    // Same (source, source_id) with different content: still the first event that counts.
    let again = h
        .store
        .ingest(vec![
            ev(
                "deal.created",
                "1",
                "2026-11-02T00:00:00Z",
                d,
                r#"{"amount":99}"#,
            ),
            ev(
                "note.added",
                "2",
                "2026-11-02T00:00:00Z",
                d,
                r#"{"text":"a"}"#,
            ),
            ev(
                "note.added",
                "2",
                "2026-11-02T00:00:00Z",
                d,
                r#"{"text":"a"}"#,
            ),
        ])
        .await
        .unwrap();
    assert_eq!(again[0], Ingested::Duplicate { id });
    assert!(matches!(again[1], Ingested::Stored { .. }));
    assert!(matches!(again[2], Ingested::Duplicate { .. }));
    assert_eq!(h.store.event_count().await.unwrap(), 2);
    let deal = deal(&*h.store, "D-1").await;
    assert_eq!(
        deal.amount.unwrap().minor,
        1000,
        "the duplicate's amount was applied"
    );
    assert_eq!(deal.engagement.notes, 1, "the duplicate note was counted");
    assert_eq!(deal.created_at, Some(ts("2026-11-01T00:00:00Z")));
}

async fn state_and_log_survive_reopening(backend: Backend) {
    let h = backend.open();
    h.store.ingest(story()).await.unwrap();
    drop(h.store);
    let reopened = (h.reopen)();
    assert_eq!(reopened.event_count().await.unwrap(), 27);
    check_story(&*reopened).await;
    let again = reopened.ingest(story()).await.unwrap();
    assert_eq!(stored(&again), 0);
}

async fn concurrent_writers_are_group_committed_exactly_once(backend: Backend) {
    let h = backend.open();
    let mut tasks = Vec::new();
    for client in 0..16 {
        let store = Arc::clone(&h.store);
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let id = format!("{client}-{i}");
                let deal = format!(r#""deal":"D-{client}""#);
                let r = store
                    .ingest(vec![ev(
                        "note.added",
                        &id,
                        "2026-11-01T00:00:00Z",
                        &deal,
                        r#"{"text":"x"}"#,
                    )])
                    .await
                    .unwrap();
                assert!(matches!(r[0], Ingested::Stored { .. }));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(h.store.event_count().await.unwrap(), 800);
    assert_eq!(deal(&*h.store, "D-3").await.engagement.notes, 50);
    let log = h.store.events_after(0, 10_000).await.unwrap();
    assert_eq!(log.len(), 800);
    assert!(log.windows(2).all(|w| w[0].0 < w[1].0));
}

/// Requests committed in one group that touch the same record all reach its state: each
/// builds on the one before it, not on the state before the group.
async fn concurrent_writers_to_one_record_all_reach_its_state(backend: Backend) {
    let h = backend.open();
    // The deal is written (and cached) before the burst.
    h.store
        .ingest(vec![ev(
            "deal.created",
            "c",
            "2026-11-01T00:00:00Z",
            r#""deal":"D-0""#,
            "{}",
        )])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for client in 0..16 {
        let store = Arc::clone(&h.store);
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                store
                    .ingest(vec![ev(
                        "note.added",
                        &format!("{client}-{i}"),
                        "2026-11-01T00:00:00Z",
                        r#""deal":"D-0""#,
                        r#"{"text":"x"}"#,
                    )])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(deal(&*h.store, "D-0").await.engagement.notes, 400);
    // And after reopening, from the stored state rather than the writer's cache.
    drop(h.store);
    let store = (h.reopen)();
    assert_eq!(deal(&*store, "D-0").await.engagement.notes, 400);
}

async fn lists_filter_and_paginate(backend: Backend) {
    let h = backend.open();
    let mut events = Vec::new();
    for i in 0..25 {
        let stage = if i % 2 == 0 { "discovery" } else { "proposal" };
        let owner = if i % 5 == 0 {
            "maya@acme.example"
        } else {
            "sam@acme.example"
        };
        events.push(ev(
            "deal.created",
            &format!("d{i}"),
            "2026-11-01T00:00:00Z",
            &format!(r#""deal":"D-{i:02}""#),
            &format!(r#"{{"stage":"{stage}","owner":"{owner}"}}"#),
        ));
    }
    h.store.ingest(events).await.unwrap();
    let mut q = ListQuery::new(RecordKind::Deal);
    q.stage = Some("discovery".into());
    q.limit = 5;
    let mut seen = Vec::new();
    loop {
        let page = h.store.list(&q).await.unwrap();
        seen.extend(page.items.iter().map(|r| r.record.clone()));
        match page.next {
            Some(next) => q.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 13);
    let mut q = ListQuery::new(RecordKind::Deal);
    q.owner = Some("maya@acme.example".into());
    assert_eq!(h.store.list(&q).await.unwrap().items.len(), 5);
    h.clock.advance(std::time::Duration::from_secs(3600));
    let later = h.clock_now();
    h.store
        .ingest(vec![ev(
            "note.added",
            "n",
            "2026-11-02T00:00:00Z",
            r#""deal":"D-07""#,
            r#"{"text":"x"}"#,
        )])
        .await
        .unwrap();
    let mut q = ListQuery::new(RecordKind::Deal);
    q.updated_since = Some(later);
    let page = h.store.list(&q).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].updated_at, later);
}

impl Harness {
    fn clock_now(&self) -> domain::Timestamp {
        use clock::Clock;
        self.clock.now()
    }
}

async fn tokens_are_stored_by_hash_and_revocable(backend: Backend) {
    let h = backend.open();
    let t = h
        .store
        .create_token(NewToken {
            id: "tok1".into(),
            name: "ci".into(),
            role: TokenRole::Writer,
            hash: "h1".into(),
        })
        .await
        .unwrap();
    assert_eq!(t.role, TokenRole::Writer);
    assert_eq!(
        h.store.token_by_hash("h1").await.unwrap().unwrap().id,
        "tok1"
    );
    assert!(h.store.token_by_hash("h2").await.unwrap().is_none());
    let revoked = h.store.revoke_token("tok1").await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(h.store.token_by_hash("h1").await.unwrap().is_none());
    assert_eq!(h.store.tokens().await.unwrap().len(), 1);
    assert!(matches!(
        h.store.revoke_token("nope").await,
        Err(store::Error::NotFound(_))
    ));
}

/// Two handles on one database (a server and an import, or two nodes) never apply an event to
/// stale state, whatever each has cached.
async fn two_handles_on_one_database_see_each_others_writes(backend: Backend) {
    let h = backend.open();
    let other = (h.reopen)();
    let d = r#""deal":"D-1""#;
    let note = |id: &str| {
        ev(
            "note.added",
            id,
            "2026-11-02T00:00:00Z",
            d,
            r#"{"text":"x"}"#,
        )
    };
    h.store
        .ingest(vec![ev(
            "deal.created",
            "c",
            "2026-11-01T00:00:00Z",
            d,
            r#"{"stage":"demo"}"#,
        )])
        .await
        .unwrap();
    h.store.ingest(vec![note("1")]).await.unwrap();
    other.ingest(vec![note("2")]).await.unwrap();
    h.store.ingest(vec![note("3")]).await.unwrap();
    other.ingest(vec![note("4"), note("5")]).await.unwrap();
    h.store.ingest(vec![note("6")]).await.unwrap();
    assert_eq!(deal(&*h.store, "D-1").await.engagement.notes, 6);
    assert_eq!(deal(&*other, "D-1").await.engagement.notes, 6);
}

fn example_engine() -> Arc<store::Engine> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks");
    let loaded = playbook::load_dir(&dir);
    Arc::new(store::Engine::new(Arc::new(
        loaded.set.expect("example playbooks load"),
    )))
}

/// Issue 3: effects are committed with the events that caused them, once per idempotency key.
async fn effects_are_written_with_their_events_and_never_twice(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(example_engine()));
    let d = r#""deal":"D-1""#;
    let events = || {
        vec![
            ev(
                "deal.created",
                "c",
                "2026-11-01T09:00:00Z",
                d,
                r#"{"stage":"proposal","owner":"sam@acme.example","contacts":["C-1"]}"#,
            ),
            ev(
                "objection.raised",
                "o",
                "2026-11-02T09:00:00Z",
                d,
                r#"{"kind":"pricing"}"#,
            ),
        ]
    };
    h.store.ingest(events()).await.unwrap();
    let deal_key = key(RecordKind::Deal, "D-1");
    let effects = h.store.effects(Some(&deal_key), 100).await.unwrap();
    assert_eq!(effects.len(), 1, "{effects:?}");
    let e = &effects[0];
    assert_eq!(
        (e.rule.as_str(), e.status.as_str()),
        ("pricing-objection", "pending")
    );
    assert_eq!(e.action["kind"], "send_asset");
    assert_eq!(e.trace["saw"]["event.kind"], "pricing");
    assert!(e.trace["why"].as_str().unwrap().contains("ROI calculator"));
    // The same events again are duplicates: no second effect.
    h.store.ingest(events()).await.unwrap();
    assert_eq!(
        h.store.effects(Some(&deal_key), 100).await.unwrap().len(),
        1
    );
    // Without an engine nothing is decided.
    h.store.set_engine(None);
    h.store
        .ingest(vec![ev(
            "objection.raised",
            "o2",
            "2026-11-03T09:00:00Z",
            d,
            r#"{"kind":"pricing"}"#,
        )])
        .await
        .unwrap();
    assert_eq!(h.store.effects(None, 100).await.unwrap().len(), 1);
    // The newest first: the web UI's outbox.
    let newest = h
        .store
        .outbox(&store::OutboxQuery {
            limit: 1,
            newest_first: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(newest[0].key, effects[0].key);
    // What the playbooks page counts: one firing of the rule, when it was decided.
    let firings = h.store.rule_firings().await.unwrap();
    assert_eq!(firings.len(), 1, "{firings:?}");
    let f = &firings[0];
    assert_eq!(
        (f.rule.as_str(), f.effects, f.days),
        ("pricing-objection", 1, 1)
    );
    assert_eq!(
        (f.first, f.last),
        (effects[0].created_at, effects[0].created_at)
    );
}

/// Issue 3: timers are rows; they move with activity, survive a restart and fire once.
async fn timers_survive_restart_move_with_activity_and_fire_once(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(example_engine()));
    let d = r#""deal":"D-1""#;
    h.store
        .ingest(vec![
            ev(
                "deal.created",
                "c",
                "2026-11-01T09:00:00Z",
                d,
                r#"{"stage":"demo","owner":"sam@acme.example"}"#,
            ),
            ev("meeting.held", "m", "2026-11-02T09:00:00Z", d, "{}"),
        ])
        .await
        .unwrap();
    let deal_key = key(RecordKind::Deal, "D-1");
    let quiet = |timers: &[store::Timer]| {
        timers
            .iter()
            .find(|t| t.rule == "quiet-after-enthusiasm")
            .map(|t| t.due)
    };
    assert_eq!(
        quiet(&h.store.timers(&deal_key).await.unwrap()),
        Some(ts("2026-11-07T09:00:00Z"))
    );
    h.store
        .ingest(vec![ev(
            "email.received",
            "r",
            "2026-11-04T09:00:00Z",
            d,
            "{}",
        )])
        .await
        .unwrap();
    assert_eq!(
        quiet(&h.store.timers(&deal_key).await.unwrap()),
        Some(ts("2026-11-09T09:00:00Z"))
    );

    drop(h.store);
    let store = (h.reopen)();
    store.set_engine(Some(example_engine()));
    assert_eq!(
        quiet(&store.timers(&deal_key).await.unwrap()),
        Some(ts("2026-11-09T09:00:00Z"))
    );
    let early = store
        .fire_due_timers(ts("2026-11-09T08:59:59Z"), 100)
        .await
        .unwrap();
    assert_eq!(early.timers, 0);
    let fired = store
        .fire_due_timers(ts("2026-11-09T09:00:01Z"), 100)
        .await
        .unwrap();
    assert_eq!((fired.timers, fired.effects), (1, 1));
    let effects = store.effects(Some(&deal_key), 100).await.unwrap();
    assert_eq!(effects[0].action["kind"], "start_sequence");
    assert!(
        effects[0].trace["trigger"]
            .as_str()
            .unwrap()
            .starts_with("quiet for 5d")
    );
    assert_eq!(quiet(&store.timers(&deal_key).await.unwrap()), None);
    // Later passes fire only the weekly review's schedule (its condition is false for a demo
    // deal): the quiet timer never fires again.
    store
        .fire_due_timers(ts("2026-12-31T00:00:00Z"), 100)
        .await
        .unwrap();
    let effects = store.effects(None, 100).await.unwrap();
    assert_eq!(
        effects.len(),
        1,
        "a fired timer never fires again: {effects:?}"
    );
}

/// Only timers that changed are rewritten, but a new playbook version re-arms everything the
/// record touches: a deal already in legal gets the new stuck-in-legal timer on its next event.
async fn a_new_playbook_version_arms_its_timers_on_the_next_event(backend: Backend) {
    let h = backend.open();
    let first = "playbook: p\nowner: o\nstages: [legal]\nrules:\n  - id: note\n    why: w\n    when: { event: note.added }\n    then:\n      - alert: { to: deal.owner, text: hi }\n";
    let set = playbook::load_files(&[(std::path::PathBuf::from("p.yaml"), first.into())])
        .set
        .unwrap();
    h.store
        .set_engine(Some(Arc::new(store::Engine::new(Arc::new(set)))));
    let d = r#""deal":"D-1""#;
    h.store
        .ingest(vec![ev(
            "deal.created",
            "c",
            "2026-11-01T09:00:00Z",
            d,
            r#"{"stage":"legal"}"#,
        )])
        .await
        .unwrap();
    let deal_key = key(RecordKind::Deal, "D-1");
    assert!(h.store.timers(&deal_key).await.unwrap().is_empty());
    h.store.set_engine(Some(example_engine()));
    h.store
        .ingest(vec![ev(
            "note.added",
            "n",
            "2026-11-02T09:00:00Z",
            d,
            r#"{"text":"x"}"#,
        )])
        .await
        .unwrap();
    let timers = h.store.timers(&deal_key).await.unwrap();
    let legal = timers
        .iter()
        .find(|t| t.rule == "stuck-in-legal")
        .expect("armed under the new version");
    assert_eq!(legal.due, ts("2026-11-11T09:00:00Z"));
    // Under the same version, a later note leaves the unchanged timer alone and moves none.
    h.store
        .ingest(vec![ev(
            "note.added",
            "n2",
            "2026-11-03T09:00:00Z",
            d,
            r#"{"text":"y"}"#,
        )])
        .await
        .unwrap();
    let again = h.store.timers(&deal_key).await.unwrap();
    assert_eq!(
        again
            .iter()
            .find(|t| t.rule == "stuck-in-legal")
            .unwrap()
            .due,
        legal.due
    );
}

/// `assign_owner` rotates through its team in the order decisions commit; a duplicate event
/// does not advance the rotation.
async fn assign_owner_rotates_through_the_team(backend: Backend) {
    let h = backend.open();
    let text = "playbook: p\nowner: o\nrules:\n  - id: route\n    why: New deals go round the team.\n    when: { event: deal.created }\n    then:\n      - assign_owner: { team: [ana@acme.example, ben@acme.example, cy@acme.example] }\n";
    let set = playbook::load_files(&[(std::path::PathBuf::from("p.yaml"), text.into())])
        .set
        .unwrap();
    h.store
        .set_engine(Some(Arc::new(store::Engine::new(Arc::new(set)))));
    // Routing passes over people the store does not know.
    let people = ["ana", "ben", "cy"].map(|n| {
        ev(
            "person.created",
            &format!("p-{n}"),
            "2026-10-01T00:00:00Z",
            &format!(r#""person":"{n}@acme.example""#),
            "{}",
        )
    });
    h.store.ingest(people.to_vec()).await.unwrap();
    let created = |n: usize| {
        ev(
            "deal.created",
            &format!("d{n}"),
            "2026-11-01T09:00:00Z",
            &format!(r#""deal":"D-{n}""#),
            "{}",
        )
    };
    h.store.ingest((0..2).map(created).collect()).await.unwrap();
    h.store.ingest(vec![created(1)]).await.unwrap(); // a duplicate: no decision, no turn
    h.store.ingest((2..4).map(created).collect()).await.unwrap();
    let chosen: Vec<String> = h
        .store
        .effects(None, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.action["chosen"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        chosen,
        [
            "ana@acme.example",
            "ben@acme.example",
            "cy@acme.example",
            "ana@acme.example"
        ]
    );
}

pub fn engine_from(text: &str) -> Arc<store::Engine> {
    let loaded = playbook::load_files(&[(std::path::PathBuf::from("p.yaml"), text.into())]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    Arc::new(store::Engine::new(Arc::new(loaded.set.unwrap())))
}

/// Walks every record with `arm_records`, a few at a time, and returns how many it armed.
pub async fn arm_all(store: &dyn Store, now: domain::Timestamp) -> usize {
    store.arm_all(now, 2).await.unwrap()
}

/// Records no event touches after the playbooks change are armed by the walk: a deal already
/// in legal before any rule existed gets the stuck-in-legal timer; rules removed lose theirs.
async fn arming_walk_brings_untouched_records_to_the_new_rules(backend: Backend) {
    let h = backend.open();
    let mut events = Vec::new();
    for i in 1..=5 {
        events.push(ev(
            "deal.created",
            &format!("c{i}"),
            "2026-11-01T09:00:00Z",
            &format!(r#""deal":"D-{i}","account":"A-1""#),
            r#"{"stage":"legal"}"#,
        ));
    }
    events.push(ev(
        "deal.won",
        "w5",
        "2026-11-02T09:00:00Z",
        r#""deal":"D-5""#,
        "{}",
    ));
    h.store.ingest(events).await.unwrap();
    let now = ts("2026-11-05T00:00:00Z");
    // Without an engine the walk does nothing.
    assert_eq!(h.store.arm_records(now, 0, 100).await.unwrap().armed, 0);

    h.store.set_engine(Some(example_engine()));
    // Deals and leads only (the account is skipped); the won deal is armed with no timers.
    assert_eq!(arm_all(&*h.store, now).await, 5);
    let legal = |timers: Vec<store::Timer>| {
        timers
            .into_iter()
            .find(|t| t.rule == "stuck-in-legal")
            .map(|t| t.due)
    };
    for i in 1..=4 {
        let timers = h
            .store
            .timers(&key(RecordKind::Deal, &format!("D-{i}")))
            .await
            .unwrap();
        assert_eq!(legal(timers), Some(ts("2026-11-11T09:00:00Z")), "D-{i}");
    }
    assert!(
        h.store
            .timers(&key(RecordKind::Deal, "D-5"))
            .await
            .unwrap()
            .is_empty()
    );
    // A second walk under the same version finds nothing to do.
    assert_eq!(arm_all(&*h.store, now).await, 0);

    // New playbooks without that rule: the walk removes its timers.
    h.store.set_engine(Some(engine_from(
        "playbook: p\nowner: o\nrules:\n  - id: note\n    why: w\n    when: { event: note.added }\n    then:\n      - alert: { to: deal.owner, text: hi }\n",
    )));
    assert_eq!(arm_all(&*h.store, now).await, 5);
    assert!(
        h.store
            .timers(&key(RecordKind::Deal, "D-1"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        h.store
            .fire_due_timers(ts("2027-01-01T00:00:00Z"), 100)
            .await
            .unwrap()
            .timers,
        0
    );
}

/// A schedule fires for every open record of the set at each occurrence, and re-arms itself
/// for the next one; an occurrence missed while nothing ran is not made up one by one.
async fn scheduled_timers_fire_each_occurrence_and_re_arm(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(engine_from(
        "playbook: p\nowner: o\nstages: [proposal]\nrules:\n  - id: weekly\n    why: Every Monday the open proposals are reviewed.\n    when: { schedule: { cron: \"0 9 * * MON\", timezone: Europe/Berlin } }\n    if: deal.stage == \"proposal\"\n    then:\n      - alert: { to: deal.owner, text: review }\n",
    )));
    // The receipt clock says Friday 2026-11-20: the first occurrence is Monday the 23rd.
    h.store
        .ingest(vec![
            ev(
                "deal.created",
                "c1",
                "2026-11-01T09:00:00Z",
                r#""deal":"D-1""#,
                r#"{"stage":"proposal"}"#,
            ),
            ev(
                "deal.created",
                "c2",
                "2026-11-01T09:00:00Z",
                r#""deal":"D-2""#,
                r#"{"stage":"proposal"}"#,
            ),
        ])
        .await
        .unwrap();
    let due = |timers: Vec<store::Timer>| timers.into_iter().map(|t| t.due).collect::<Vec<_>>();
    let d1 = key(RecordKind::Deal, "D-1");
    assert_eq!(
        due(h.store.timers(&d1).await.unwrap()),
        [ts("2026-11-23T08:00:00Z")]
    );
    let fired = h
        .store
        .fire_due_timers(ts("2026-11-23T08:00:00Z"), 100)
        .await
        .unwrap();
    assert_eq!((fired.timers, fired.effects), (2, 2));
    assert_eq!(
        due(h.store.timers(&d1).await.unwrap()),
        [ts("2026-11-30T08:00:00Z")]
    );
    // D-2 closes: its schedule stops.
    h.store
        .ingest(vec![ev(
            "deal.lost",
            "l2",
            "2026-11-24T09:00:00Z",
            r#""deal":"D-2""#,
            "{}",
        )])
        .await
        .unwrap();
    assert!(
        h.store
            .timers(&key(RecordKind::Deal, "D-2"))
            .await
            .unwrap()
            .is_empty()
    );
    // Down for three weeks: one late firing for the 30th, then the next Monday after now.
    let fired = h
        .store
        .fire_due_timers(ts("2026-12-16T12:00:00Z"), 100)
        .await
        .unwrap();
    assert_eq!((fired.timers, fired.effects), (1, 1));
    assert_eq!(
        due(h.store.timers(&d1).await.unwrap()),
        [ts("2026-12-21T08:00:00Z")]
    );
    let effects = h.store.effects(Some(&d1), 100).await.unwrap();
    assert_eq!(effects.len(), 2);
    assert!(
        effects[1].trace["trigger"]
            .as_str()
            .unwrap()
            .contains("at 2026-11-30T08:00:00.000Z"),
        "{}",
        effects[1].trace
    );
}

pub fn claim(node: &str, now: &str, limit: usize) -> store::Claim {
    store::Claim {
        node: node.into(),
        now: ts(now),
        lease_until: domain::Timestamp::from_millis(ts(now).as_millis() + 60_000),
        limit,
        ..store::Claim::default()
    }
}

pub fn finish(key: &str, node: &str, at: &str, outcome: store::Outcome) -> store::Finish {
    store::Finish {
        key: key.into(),
        node: node.into(),
        started_at: ts(at),
        finished_at: ts(at),
        outcome,
        detail: Some("250 OK".into()),
        rendered: Some(serde_json::json!({"subject": "ROI"})),
        task: None,
        exception: None,
    }
}

/// Issue 4: effects are claimed under a lease by one dispatcher at a time, retried when due,
/// taken over when the lease expires, and never claimed again once delivered.
async fn effects_are_leased_retried_taken_over_and_finished_once(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(example_engine()));
    let d = r#""deal":"D-1""#;
    h.store
        .ingest(vec![
            ev(
                "deal.created",
                "c",
                "2026-11-01T09:00:00Z",
                d,
                r#"{"stage":"proposal","contacts":["C-1"]}"#,
            ),
            ev(
                "objection.raised",
                "o",
                "2026-11-02T09:00:00Z",
                d,
                r#"{"kind":"pricing"}"#,
            ),
        ])
        .await
        .unwrap();
    let t0 = "2026-11-20T12:00:00Z";
    let got = h.store.claim_effects(claim("a", t0, 10)).await.unwrap();
    assert_eq!(got.len(), 1);
    let key = got[0].key.clone();
    assert_eq!(
        (
            got[0].status.as_str(),
            got[0].channel.as_str(),
            got[0].attempts
        ),
        ("delivering", "email", 1)
    );
    // Leased: nobody else gets it, and only the holder can finish it.
    assert!(
        h.store
            .claim_effects(claim("b", t0, 10))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !h.store
            .finish_delivery(finish(&key, "b", t0, store::Outcome::Dead))
            .await
            .unwrap()
    );
    let retry_at = ts("2026-11-20T12:00:10Z");
    assert!(
        h.store
            .finish_delivery(finish(
                &key,
                "a",
                t0,
                store::Outcome::Retry { next_at: retry_at }
            ))
            .await
            .unwrap()
    );
    assert!(
        h.store
            .claim_effects(claim("a", "2026-11-20T12:00:09Z", 10))
            .await
            .unwrap()
            .is_empty()
    );
    let again = h
        .store
        .claim_effects(claim("a", "2026-11-20T12:00:10Z", 10))
        .await
        .unwrap();
    assert_eq!(again[0].attempts, 2);
    // "a" dies holding the lease; after it expires "b" takes the effect over.
    assert!(
        h.store
            .claim_effects(claim("b", "2026-11-20T12:01:09Z", 10))
            .await
            .unwrap()
            .is_empty()
    );
    let taken = h
        .store
        .claim_effects(claim("b", "2026-11-20T12:01:10Z", 10))
        .await
        .unwrap();
    assert_eq!((taken.len(), taken[0].attempts), (1, 3));
    assert!(
        !h.store
            .finish_delivery(finish(&key, "a", t0, store::Outcome::Delivered))
            .await
            .unwrap()
    );
    assert!(
        h.store
            .finish_delivery(finish(
                &key,
                "b",
                "2026-11-20T12:01:11Z",
                store::Outcome::Delivered
            ))
            .await
            .unwrap()
    );
    assert!(
        h.store
            .claim_effects(claim("c", "2027-01-01T00:00:00Z", 10))
            .await
            .unwrap()
            .is_empty()
    );

    let (effect, attempts) = h.store.effect(&key).await.unwrap().unwrap();
    assert_eq!(effect.status, "delivered");
    assert_eq!(effect.delivered_at, Some(ts("2026-11-20T12:01:11Z")));
    assert_eq!(effect.response.as_deref(), Some("250 OK"));
    assert_eq!(effect.rendered.unwrap()["subject"], "ROI");
    let outcomes: Vec<(u32, &str, &str)> = attempts
        .iter()
        .map(|a| (a.attempt, a.node.as_str(), a.outcome.as_str()))
        .collect();
    // The attempt "a" died in is on record, its outcome unknown.
    assert_eq!(
        outcomes,
        [
            (1, "a", "retry"),
            (2, "a", "unknown"),
            (3, "b", "delivered")
        ]
    );
    // A delivered effect can be neither retried nor cancelled.
    assert!(matches!(
        h.store.retry_effect(&key).await,
        Err(store::Error::Conflict(_))
    ));
    assert!(matches!(
        h.store.cancel_effect(&key).await,
        Err(store::Error::Conflict(_))
    ));
    assert!(matches!(
        h.store.retry_effect("nope").await,
        Err(store::Error::NotFound(_))
    ));
}

/// Issue 4: pauses and budgets per channel; dead letters retried or cancelled by hand; a task
/// written by its delivery.
async fn claims_respect_channels_and_dead_letters_can_be_retried(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(engine_from(
        "playbook: p\nowner: o\nrules:\n  - id: fan-out\n    why: Every note is shared.\n    when: { event: note.added }\n    then:\n      - alert: { to: channel:sales, text: note }\n      - webhook: { url: \"https://hooks.example/notes?x=1\" }\n      - task: { assignee: deal.owner, title: Read the note }\n",
    )));
    let events = (1..=3)
        .map(|i| {
            ev(
                "note.added",
                &format!("n{i}"),
                "2026-11-02T09:00:00Z",
                &format!(r#""deal":"D-{i}""#),
                r#"{"text":"x"}"#,
            )
        })
        .collect();
    h.store.ingest(events).await.unwrap();
    let channels = |effects: &[store::StoredEffect]| {
        let mut c: Vec<String> = effects.iter().map(|e| e.channel.clone()).collect();
        c.sort();
        c
    };
    let all = h.store.effects(None, 100).await.unwrap();
    assert_eq!(
        channels(&all)
            .iter()
            .filter(|c| *c == "webhook:hooks.example")
            .count(),
        3
    );
    let mut c = claim("a", "2026-11-20T12:00:00Z", 10);
    c.paused = vec!["chat".into()];
    c.budgets = vec![("webhook".into(), 1)];
    let got = h.store.claim_effects(c).await.unwrap();
    assert_eq!(
        channels(&got),
        ["task", "task", "task", "webhook:hooks.example"]
    );

    let task = got.iter().find(|e| e.channel == "task").unwrap();
    let mut done = finish(
        &task.key,
        "a",
        "2026-11-20T12:00:01Z",
        store::Outcome::Delivered,
    );
    done.task = Some(store::NewTask {
        id: task.key.clone(),
        kind: "task".into(),
        assignee: "sam@acme.example".into(),
        title: "Read the note".into(),
        record: task.record.clone(),
        rule: "fan-out".into(),
        due_at: None,
    });
    assert!(h.store.finish_delivery(done).await.unwrap());
    let tasks = h
        .store
        .tasks(&store::TaskQuery {
            assignee: Some("sam@acme.example".into()),
            status: Some("open".into()),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].title, "Read the note");
    let closed = h.store.complete_task(&tasks[0].id).await.unwrap();
    assert_eq!(closed.status, "done");

    let hook = got
        .iter()
        .find(|e| e.channel.starts_with("webhook"))
        .unwrap();
    assert!(
        h.store
            .finish_delivery(finish(
                &hook.key,
                "a",
                "2026-11-20T12:00:01Z",
                store::Outcome::Dead
            ))
            .await
            .unwrap()
    );
    let waiting = h.store.backlog().await.unwrap().oldest_pending_due;
    assert_eq!(
        waiting,
        Some(ts("2026-11-02T09:00:00Z")),
        "chat effects still wait"
    );
    let dead = h
        .store
        .outbox(&store::OutboxQuery {
            status: Some("dead".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let retried = h.store.retry_effect(&hook.key).await.unwrap();
    assert_eq!((retried.status.as_str(), retried.attempts), ("pending", 0));
    let cancelled = h.store.cancel_effect(&hook.key).await.unwrap();
    assert_eq!(cancelled.status, "cancelled");
    assert!(
        h.store
            .claim_effects(claim("a", "2027-01-01T00:00:00Z", 100))
            .await
            .unwrap()
            .iter()
            .all(|e| e.key != hook.key)
    );
    let backlog = h.store.backlog().await.unwrap();
    let count = |status: &str| {
        backlog
            .by_status
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(
        (count("cancelled"), count("delivered")),
        (1, 1),
        "{backlog:?}"
    );
    assert_eq!(count("pending") + count("delivering"), 7, "{backlog:?}");
    // The last claim took every pending effect.
    assert_eq!(backlog.oldest_pending_due, None);
}

/// Issue 24: notes on `n` deals, each making a task, a chat alert and a webhook; the events
/// older the lower their number, so each channel's queue is in deal order.
async fn fan_out(h: &Harness, n: usize) {
    h.store.set_engine(Some(engine_from(
        "playbook: p\nowner: o\nrules:\n  - id: fan-out\n    why: Every note is shared.\n    when: { event: note.added }\n    then:\n      - alert: { to: channel:sales, text: note }\n      - webhook: { url: \"https://hooks.example/notes\" }\n      - task: { assignee: deal.owner, title: Read the note }\n",
    )));
    let events: Vec<_> = (0..n)
        .map(|i| {
            let at = domain::Timestamp::from_millis(
                ts("2026-11-02T09:00:00Z").as_millis() + i as i64 * 1000,
            );
            ev(
                "note.added",
                &format!("n{i}"),
                &at.to_string(),
                &format!(r#""deal":"D-{i:04}""#),
                r#"{"text":"x"}"#,
            )
        })
        .collect();
    for chunk in events.chunks(500) {
        h.store.ingest(chunk.to_vec()).await.unwrap();
    }
}

/// Issue 24: a claim takes from every channel in turn, the one that waited longest first, so
/// a channel with a budget of nothing or a large old backlog never holds the others back.
async fn claims_take_from_each_channel_in_turn(backend: Backend) {
    let h = backend.open();
    fan_out(&h, 40).await;
    let per_channel = |got: &[store::StoredEffect]| {
        let mut n: std::collections::BTreeMap<String, usize> = Default::default();
        for e in got {
            *n.entry(e.channel.clone()).or_default() += 1;
        }
        n.into_iter().collect::<Vec<_>>()
    };
    // 120 effects due, 40 a channel: 10 taken as 4, 3, 3, each channel's oldest first.
    let got = h
        .store
        .claim_effects(claim("a", "2026-11-20T12:00:00Z", 10))
        .await
        .unwrap();
    let counts = per_channel(&got);
    assert_eq!(counts.iter().map(|c| c.1).sum::<usize>(), 10, "{counts:?}");
    assert!(counts.iter().all(|c| (3..=4).contains(&c.1)), "{counts:?}");
    for channel in ["chat:sales", "task", "webhook:hooks.example"] {
        let mut deals: Vec<&str> = got
            .iter()
            .filter(|e| e.channel == channel)
            .map(|e| e.record.id.as_str())
            .collect();
        deals.sort();
        assert_eq!(deals[0], "D-0000", "{channel}: oldest first");
    }
    // A channel out of budget (its rate limit) leaves the whole claim to the others.
    let mut c = claim("a", "2026-11-20T12:00:00Z", 30);
    c.budgets = vec![("chat".into(), 0)];
    let got = h.store.claim_effects(c).await.unwrap();
    assert_eq!(
        per_channel(&got),
        [
            ("task".to_owned(), 15),
            ("webhook:hooks.example".to_owned(), 15)
        ]
    );
    // `each` bounds every channel no budget names.
    let mut c = claim("a", "2026-11-20T12:00:00Z", 100);
    c.each = Some(2);
    c.budgets = vec![("task".into(), 5)];
    let got = h.store.claim_effects(c).await.unwrap();
    assert_eq!(
        per_channel(&got),
        [
            ("chat:sales".to_owned(), 2),
            ("task".to_owned(), 5),
            ("webhook:hooks.example".to_owned(), 2)
        ]
    );
}

/// Issue 24: effects a dead dispatcher held are taken up by the first claim after their lease
/// ends, ahead of a backlog ten times the claim's size, with their unknown attempt on record.
async fn orphaned_effects_come_before_the_backlog(backend: Backend) {
    let h = backend.open();
    fan_out(&h, 40).await;
    let dead = h
        .store
        .claim_effects(claim("dead", "2026-11-20T12:00:00Z", 6))
        .await
        .unwrap();
    assert_eq!(dead.len(), 6);
    // 300 more effects, all due before the lease ends: a backlog of 414 effects, over 40
    // times the claim of 10 below.
    fan_out(&h, 140).await;
    let mut orphans: Vec<String> = dead.iter().map(|e| e.key.clone()).collect();
    orphans.sort();
    let lease_ends = "2026-11-20T12:01:00Z";
    let got = h
        .store
        .claim_effects(claim("b", lease_ends, 10))
        .await
        .unwrap();
    assert_eq!(got.len(), 10);
    let mut taken: Vec<String> = got
        .iter()
        .filter(|e| orphans.contains(&e.key))
        .map(|e| e.key.clone())
        .collect();
    taken.sort();
    assert_eq!(
        taken, orphans,
        "every orphan in the first claim after its lease"
    );
    for e in got.iter().filter(|e| orphans.contains(&e.key)) {
        assert_eq!(e.attempts, 2);
        let (_, attempts) = h.store.effect(&e.key).await.unwrap().unwrap();
        let seen: Vec<(u32, &str, &str)> = attempts
            .iter()
            .map(|a| (a.attempt, a.node.as_str(), a.outcome.as_str()))
            .collect();
        assert_eq!(seen, [(1, "dead", "unknown"), (2, "b", "unknown")]);
    }
}

/// Refolding a consistent store changes nothing: every stored state is the fold of its events.
async fn refolding_a_consistent_store_corrects_nothing(backend: Backend) {
    let h = backend.open();
    h.store.ingest(story()).await.unwrap();
    let (mut examined, mut corrected, mut cursor) = (0, 0, 0);
    loop {
        let pass = h.store.refold_records(cursor, 3).await.unwrap();
        examined += pass.examined;
        corrected += pass.corrected;
        match pass.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert!(examined >= 5, "{examined}");
    assert_eq!(corrected, 0);
    check_story(&*h.store).await;
}

async fn the_newest_published_playbooks_are_the_ones_every_node_runs(backend: Backend) {
    let h = backend.open();
    let other_node = (h.reopen)();
    assert_eq!(h.store.latest_playbooks().await.unwrap(), None);
    let set = |version: &str, node: &str, at: &str| store::PublishedPlaybooks {
        version: version.into(),
        files: vec![("playbooks/a.yaml".into(), format!("# {version}\n"))],
        published_at: ts(at),
        node: node.into(),
    };
    h.store
        .publish_playbooks(set("v1", "a", "2026-11-20T10:00:00Z"))
        .await
        .unwrap();
    other_node
        .publish_playbooks(set("v2", "b", "2026-11-20T11:00:00Z"))
        .await
        .unwrap();
    // The newest is the last published, seen from either node.
    for store in [&h.store, &other_node] {
        assert_eq!(
            store.latest_playbooks().await.unwrap(),
            Some(set("v2", "b", "2026-11-20T11:00:00Z"))
        );
    }
    // Publishing an earlier version again makes it the newest.
    h.store
        .publish_playbooks(set("v1", "a", "2026-11-20T12:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        other_node
            .latest_playbooks()
            .await
            .unwrap()
            .unwrap()
            .version,
        "v1"
    );
    assert!(h.store.playbooks_published("v2").await.unwrap());
    assert!(!h.store.playbooks_published("v3").await.unwrap());
}

/// Issue 24: the rules' switch is every node's; switched off, a store keeps its engine but
/// decides nothing — on events, on timers — and the timers stay for when it is switched on.
async fn switched_off_the_rules_decide_nothing_on_any_node(backend: Backend) {
    let h = backend.open();
    let other_node = (h.reopen)();
    assert_eq!(h.store.rules_switch().await.unwrap(), None);
    let off = store::RulesSwitch {
        on: false,
        by: "maya@acme.example".into(),
        at: ts("2026-11-20T12:00:00Z"),
        reason: Some("moving CRM".into()),
    };
    h.store.switch_rules(off.clone()).await.unwrap();
    assert_eq!(other_node.rules_switch().await.unwrap(), Some(off));

    h.store.set_engine(Some(example_engine()));
    let d = r#""deal":"D-1""#;
    h.store
        .ingest(vec![ev(
            "deal.created",
            "c",
            "2026-11-01T09:00:00Z",
            d,
            r#"{"stage":"legal","owner":"sam@acme.example"}"#,
        )])
        .await
        .unwrap();
    let deal = key(RecordKind::Deal, "D-1");
    let armed = h.store.timers(&deal).await.unwrap();
    assert!(
        armed.iter().any(|t| t.rule == "stuck-in-legal"),
        "{armed:?}"
    );
    h.store.set_rules_on(false);
    assert!(!h.store.rules_on());
    assert!(h.store.engine().is_some(), "kept for reading");
    h.store
        .ingest(vec![ev(
            "objection.raised",
            "o",
            "2026-11-02T09:00:00Z",
            d,
            r#"{"kind":"pricing"}"#,
        )])
        .await
        .unwrap();
    let later = ts("2026-11-20T12:00:00Z");
    assert_eq!(h.store.fire_due_timers(later, 100).await.unwrap().timers, 0);
    assert_eq!(h.store.arm_all(later, 100).await.unwrap(), 0);
    assert!(h.store.effects(Some(&deal), 100).await.unwrap().is_empty());
    // On again: the record events reached is re-armed, and the timer that came due fires once.
    h.store.set_rules_on(true);
    assert_eq!(h.store.arm_all(later, 100).await.unwrap(), 1);
    assert!(h.store.fire_due_timers(later, 100).await.unwrap().timers >= 1);
    let rules: Vec<String> = h
        .store
        .effects(Some(&deal), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.rule)
        .collect();
    assert!(rules.contains(&"stuck-in-legal".to_owned()), "{rules:?}");
    assert!(
        !rules.contains(&"pricing-objection".to_owned()),
        "{rules:?}"
    );
    let once = rules.len();
    h.store.fire_due_timers(later, 100).await.unwrap();
    assert_eq!(h.store.effects(Some(&deal), 100).await.unwrap().len(), once);
}

// Every test above, once per backend.
/// A record kind's events come record after record, each record's in occurrence order
/// whatever the order they arrived in, and pages pick up where the last one ended.
async fn record_events_come_record_by_record_in_occurrence_order(backend: Backend) {
    let h = backend.open();
    let note = |id: &str, at: &str, deal: &str| {
        ev(
            "note.added",
            id,
            at,
            &format!(r#""deal":"{deal}","lead":"L-1""#),
            r#"{"text":"x"}"#,
        )
    };
    h.store
        .ingest(vec![
            note("b2", "2026-11-02T00:00:00Z", "D-2"),
            note("a3", "2026-11-03T00:00:00Z", "D-1"),
            note("a1", "2026-11-01T00:00:00Z", "D-1"),
            note("b1", "2026-11-01T00:00:00Z", "D-2"),
            // The same time as a1, later in the log.
            note("a1bis", "2026-11-01T00:00:00Z", "D-1"),
        ])
        .await
        .unwrap();
    let mut read = Vec::new();
    let mut after = None;
    loop {
        let page = h
            .store
            .record_events(RecordKind::Deal, &RecordRange::all(), after.as_ref(), 2)
            .await
            .unwrap();
        let Some(last) = page.last().cloned() else {
            break;
        };
        assert!(page.len() <= 2);
        read.extend(
            page.into_iter()
                .map(|e| (e.record.as_str().to_owned(), e.event.source_id)),
        );
        after = Some(last);
    }
    let expected = [
        ("D-1", "a1"),
        ("D-1", "a1bis"),
        ("D-1", "a3"),
        ("D-2", "b1"),
        ("D-2", "b2"),
    ];
    let read: Vec<(&str, &str)> = read.iter().map(|(d, s)| (d.as_str(), s.as_str())).collect();
    assert_eq!(read, expected);
    // The same events also concern the lead: its own reading holds all five.
    let leads = h
        .store
        .record_events(RecordKind::Lead, &RecordRange::all(), None, 100)
        .await
        .unwrap();
    assert_eq!(leads.len(), 5);
}

/// Ranges split a kind's records into parts of about equal size that together hold every
/// record once, and a range's reading holds exactly its records' events.
async fn record_ranges_split_the_records_and_readers_share_them(backend: Backend) {
    let h = backend.open();
    let notes: Vec<_> = (0..10)
        .flat_map(|d| {
            (0..3).map(move |n| {
                ev(
                    "note.added",
                    &format!("n{d}-{n}"),
                    &format!("2026-11-0{}T00:00:00Z", n + 1),
                    &format!(r#""deal":"D-{d:02}""#),
                    r#"{"text":"x"}"#,
                )
            })
        })
        .collect();
    h.store.ingest(notes).await.unwrap();
    let whole = h
        .store
        .record_events(RecordKind::Deal, &RecordRange::all(), None, 1000)
        .await
        .unwrap();
    assert_eq!(whole.len(), 30);
    let ranges = h.store.record_ranges(RecordKind::Deal, 3).await.unwrap();
    assert_eq!(ranges.len(), 3);
    assert_eq!(ranges[0].from, None);
    assert_eq!(ranges[2].before, None);
    let mut joined = Vec::new();
    let mut sizes = Vec::new();
    for range in &ranges {
        // Paged in twos, so a page ends inside a record and the next one resumes it.
        let mut read = Vec::new();
        let mut after = None;
        loop {
            let page = h
                .store
                .record_events(RecordKind::Deal, range, after.as_ref(), 2)
                .await
                .unwrap();
            let Some(last) = page.last().cloned() else {
                break;
            };
            read.extend(page);
            after = Some(last);
        }
        let records: BTreeSet<_> = read.iter().map(|e| e.record.clone()).collect();
        sizes.push(records.len());
        joined.extend(read);
    }
    assert_eq!(sizes, [3, 3, 4]);
    assert_eq!(joined, whole);
    // One part, or more parts than records, still covers every record.
    let one = h.store.record_ranges(RecordKind::Deal, 1).await.unwrap();
    assert_eq!(one, [RecordRange::all()]);
    let many = h.store.record_ranges(RecordKind::Deal, 50).await.unwrap();
    assert_eq!(many.len(), 10);
    let none = h.store.record_ranges(RecordKind::Account, 4).await.unwrap();
    assert_eq!(none, [RecordRange::all()]);
}

suite!(
    switched_off_the_rules_decide_nothing_on_any_node,
    record_events_come_record_by_record_in_occurrence_order,
    record_ranges_split_the_records_and_readers_share_them,
    the_newest_published_playbooks_are_the_ones_every_node_runs,
    every_event_kind_updates_derived_state,
    out_of_order_arrival_gives_the_same_state_as_in_order,
    a_late_stage_change_lands_in_its_place_in_history,
    duplicates_are_acknowledged_and_change_nothing,
    state_and_log_survive_reopening,
    concurrent_writers_are_group_committed_exactly_once,
    concurrent_writers_to_one_record_all_reach_its_state,
    lists_filter_and_paginate,
    tokens_are_stored_by_hash_and_revocable,
    two_handles_on_one_database_see_each_others_writes,
    effects_are_written_with_their_events_and_never_twice,
    timers_survive_restart_move_with_activity_and_fire_once,
    a_new_playbook_version_arms_its_timers_on_the_next_event,
    assign_owner_rotates_through_the_team,
    arming_walk_brings_untouched_records_to_the_new_rules,
    scheduled_timers_fire_each_occurrence_and_re_arm,
    effects_are_leased_retried_taken_over_and_finished_once,
    claims_respect_channels_and_dead_letters_can_be_retried,
    claims_take_from_each_channel_in_turn,
    orphaned_effects_come_before_the_backlog,
    refolding_a_consistent_store_corrects_nothing,
);
