//! Issue 8, asset effectiveness on a hand-built autumn where every number is known:
//!
//! | deal | what happened | counts as |
//! |---|---|---|
//! | D1 | pricing objection 1 Oct, ROI calculator sent, buyer replies 3 Oct, negotiation 5 Oct | sent: advanced, replied |
//! | D2 | pricing objection 2 Oct, sent, negotiation 10 Oct | sent: advanced |
//! | D3 | sent 25 Nov | sent: window open at 1 Dec |
//! | D4 | sent 3 Oct, lost 6 Oct | sent: neither (losing is not advancing) |
//! | S1 | pricing objection 1 Oct, nothing else | similar: neither |
//! | S2 | pricing objection 10 Oct, won 15 Oct | similar: advanced |
//! | S3 | in negotiation, pricing objection 12 Oct, back to proposal 14 Oct, an out-of-office 13 Oct | similar: neither |
//! | S4 | implementation objection | not similar |
//! | S5 | pricing objection 28 Nov | similar: window open |
//! | D6 | in demo, the rollout case study sent by name 5 Oct, proposal 8 Oct | sent (no use case): advanced |
//! | S6 | created in demo 1 Oct, stays | similar to D6: neither |

use heroics::assets::{AssetOptions, AssetSend, effectiveness, table};
use heroics::{People, Settings, by_deal, run_deal};

use crate::log::{Log, ts};

fn history() -> Log {
    let mut l = Log::default();
    for d in ["D1", "D2", "D3", "D4", "S1", "S2", "S4", "S5"] {
        l.deal(d, "2026-09-20", "sam", "proposal", 10_000);
    }
    l.deal("S3", "2026-09-20", "sam", "negotiation", 10_000);
    l.deal("D6", "2026-09-20", "sam", "demo", 10_000);
    l.deal("S6", "2026-10-01", "sam", "demo", 10_000);
    l.objection("2026-10-01", "D1", "pricing");
    l.add(
        "email.received",
        "2026-10-03",
        r#""deal":"D1","actor":{"contact":"C-D1"}"#,
        "{}",
    );
    l.stage("2026-10-05", "D1", "negotiation");
    l.objection("2026-10-02", "D2", "pricing");
    l.stage("2026-10-10", "D2", "negotiation");
    l.lost("2026-10-06", "D4");
    l.objection("2026-10-01", "S1", "pricing");
    l.objection("2026-10-10", "S2", "pricing");
    l.won("2026-10-15", "S2");
    l.objection("2026-10-12", "S3", "pricing");
    l.add(
        "email.received",
        "2026-10-13",
        r#""deal":"S3","actor":{"contact":"C-S3"}"#,
        r#"{"subject":"Out of Office: back Monday"}"#,
    );
    l.stage("2026-10-14", "S3", "proposal");
    l.objection("2026-10-05", "S4", "implementation");
    l.objection("2026-11-28", "S5", "pricing");
    l.stage("2026-10-08", "D6", "proposal");
    l
}

fn send(deal: &str, asset: &str, use_case: Option<&str>, day: &str) -> AssetSend {
    AssetSend {
        deal: domain::RecordId::parse(deal).unwrap(),
        asset: asset.into(),
        use_case: use_case.map(str::to_owned),
        at: ts(day),
    }
}

#[test]
fn assets_are_judged_against_similar_deals_that_did_not_get_them() {
    let log = history();
    let until = ts("2026-12-01");
    let people = People::from_events(&log.events);
    let runs: Vec<_> = by_deal(&log.events)
        .iter()
        .map(|(id, events)| run_deal(id, events, &people, &Settings::default(), until))
        .collect();
    let roi = |d: &str, day: &str| send(d, "roi-calculator", Some("pricing"), day);
    let sends = vec![
        roi("D1", "2026-10-01"),
        roi("D1", "2026-10-04"), // a second send to the same deal counts once, at the first
        roi("D2", "2026-10-02"),
        roi("D3", "2026-11-25"),
        roi("D4", "2026-10-03"),
        send("D6", "rollout-case-study", None, "2026-10-05"),
    ];
    let options = AssetOptions {
        within: 14 * 86_400_000,
        from: None,
        to: until,
        stages: ["discovery", "demo", "proposal", "negotiation", "legal"]
            .map(String::from)
            .to_vec(),
    };
    let rows = effectiveness(&runs, &sends, &options);
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(
        (r.asset.as_str(), r.use_case.as_deref()),
        ("roi-calculator", Some("pricing"))
    );
    assert_eq!(
        (
            r.sent.deals,
            r.sent.open,
            r.sent.judged,
            r.sent.advanced,
            r.sent.replied
        ),
        (4, 1, 3, 2, 1)
    );
    assert_eq!(
        (
            r.similar.deals,
            r.similar.open,
            r.similar.judged,
            r.similar.advanced,
            r.similar.replied
        ),
        (4, 1, 3, 1, 0)
    );
    let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
    assert!(close(r.sent.advanced_rate, 2.0 / 3.0));
    assert!(close(r.advance_lift, 1.0 / 3.0));
    assert!(close(r.reply_lift, 1.0 / 3.0));
    assert_eq!(
        r.compared_with,
        "deals that raised a pricing objection and were not sent roi-calculator"
    );

    let r = &rows[1];
    assert_eq!(
        (r.asset.as_str(), r.use_case.as_deref()),
        ("rollout-case-study", None)
    );
    assert_eq!((r.sent.judged, r.sent.advanced), (1, 1));
    assert_eq!(
        (r.similar.deals, r.similar.judged, r.similar.advanced),
        (1, 1, 0)
    );
    assert_eq!(
        r.compared_with,
        "deals that entered demo and were not sent rollout-case-study"
    );

    // A period that starts after the October sends leaves only the open one.
    let later = AssetOptions {
        from: Some(ts("2026-11-01")),
        ..options.clone()
    };
    let rows = effectiveness(&runs, &sends, &later);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].sent.deals, rows[0].sent.open), (1, 1));
    assert_eq!(
        rows[0].similar.deals, 1,
        "only S5's objection is in November"
    );

    let text = table(&effectiveness(&runs, &sends, &options), 14);
    let line = text
        .lines()
        .find(|l| l.starts_with("roi-calculator"))
        .unwrap();
    assert!(
        line.contains("67%") && line.contains("33%") && line.contains("+33 pts"),
        "{line}"
    );
}
