//! The fitted score against the rule-based one on a generated history whose true risk factors
//! are known: deals are lost because they are single-threaded or carry an unresolved
//! objection; going quiet for a while (which the rule-based weights fear most) is noise.

use domain::{EventId, RecordId, RecordKey, RecordKind, Timestamp};
use risk::{DealHistory, Kind, Learned, Model, Scoring, Settings, evaluate};

const DAY: i64 = domain::MILLIS_PER_DAY;
const START: i64 = 1_767_258_000_000; // 2026-01-01T09:00:00Z

/// SplitMix64: a seeded stream, so the history is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.next() < p
    }
}

struct Truth {
    single: bool,
    unresolved: bool,
    quiet: bool,
    lost: bool,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// One deal: created on `day0`, open 60 days, then won or lost by the true factors.
fn deal(i: usize, rng: &mut Rng) -> (DealHistory, Truth) {
    let id = format!("D-{i}");
    let day0 = i as f64 * 0.5;
    let single = rng.chance(0.4);
    let objection = rng.chance(0.5);
    let unresolved = objection && rng.chance(0.5);
    let quiet = rng.chance(0.5);
    let lost = rng.chance(sigmoid(
        -2.0 + 2.5 * f64::from(single) + 2.5 * f64::from(unresolved),
    ));
    let mut lines = Vec::new();
    let mut push = |day: f64, ty: &str, actor: &str, data: &str| {
        let at = Timestamp::from_millis(START + ((day0 + day) * DAY as f64) as i64);
        lines.push(format!(
            r#"{{"type":"{ty}","source":"gen","source_id":"{id}-{}","occurred_at":"{at}","deal":"{id}"{actor},"data":{data}}}"#,
            lines.len()
        ));
    };
    push(
        0.0,
        "deal.created",
        "",
        &format!(r#"{{"name":"Deal {i}","stage":"discovery","contacts":["C-{i}a","C-{i}b"]}}"#),
    );
    for day in [1.0, 12.0, 41.0] {
        let attendees = if single {
            format!(r#"["C-{i}a"]"#)
        } else {
            format!(r#"["C-{i}a","C-{i}b"]"#)
        };
        push(
            day,
            "meeting.held",
            "",
            &format!(r#"{{"attendees":{attendees}}}"#),
        );
    }
    if objection {
        push(
            5.0,
            "objection.raised",
            &format!(r#","actor":{{"contact":"C-{i}a"}}"#),
            r#"{"kind":"timing"}"#,
        );
        if !unresolved {
            push(8.0, "objection.resolved", "", r#"{"kind":"timing"}"#);
        }
    }
    // Notes every three days, except in a quiet spell between the meetings of days 12 and 41.
    let mut day = 2.0;
    while day < 60.0 {
        if !(quiet && (12.0..41.0).contains(&day)) {
            push(day, "note.added", "", r#"{"text":"Worked the deal"}"#);
        }
        day += 3.0;
    }
    push(60.0, if lost { "deal.lost" } else { "deal.won" }, "", "{}");
    let events = lines
        .iter()
        .enumerate()
        .map(|(n, l)| {
            let new = wire::parse_one(l).unwrap();
            let at = new.occurred_at;
            new.stamp(EventId(uuid::Uuid::from_u128((i * 1000 + n) as u128)), at)
        })
        .collect::<Vec<_>>();
    let mut events = events;
    events.sort_by_key(|e| e.occurred_at);
    let key = RecordKey::new(RecordKind::Deal, RecordId::parse(&id).unwrap());
    (
        DealHistory { key, events },
        Truth {
            single,
            unresolved,
            quiet,
            lost,
        },
    )
}

#[test]
fn the_fitted_model_beats_the_rule_based_default_where_the_true_factors_are_known() {
    let mut rng = Rng(42);
    let (histories, truths): (Vec<_>, Vec<_>) = (0..800).map(|i| deal(i, &mut rng)).unzip();
    let lost = truths.iter().filter(|t| t.lost).count();
    assert!((150..650).contains(&lost), "{lost} lost");
    // The planted factors show as their warnings.
    let model = Model::new(Settings::default(), &[], Learned::default());
    let probe = |t: &Truth| t.single && t.quiet && t.unresolved;
    let i = truths.iter().position(probe).unwrap();
    let d = histories[i].deal().unwrap();
    let day = |n: f64| {
        Timestamp::from_millis(d.created_at.unwrap().as_millis() + (n * DAY as f64) as i64)
    };
    let mut lived = histories[i].clone();
    lived.events.retain(|e| e.occurred_at <= day(35.0));
    let open = lived.deal().unwrap();
    for kind in [
        Kind::SingleThreaded,
        Kind::UnresolvedObjection,
        Kind::NoActivity,
    ] {
        assert!(model.holds(kind, &open, day(35.0)), "{kind}");
    }

    let e = evaluate(&model, &histories, 0.7);
    assert_eq!(e.train.deals, 560);
    assert_eq!(e.test.deals, 240);
    let [rules, fitted] = &e.models[..] else {
        panic!("{e:?}")
    };
    assert_eq!(rules.name, "rule-based");
    assert!(
        matches!(fitted.scoring, Scoring::Fitted { deals: 560, .. }),
        "{:?}",
        fitted.scoring
    );
    let (r, f) = (rules.auc.unwrap(), fitted.auc.unwrap());
    assert!(f > r + 0.04, "fitted AUC {f:.3} against rule-based {r:.3}");
    let recall = |m: &risk::ModelScore| m.outcome.recall.unwrap();
    assert!(recall(fitted) > recall(rules) + 0.3, "{e:?}");
    assert!(f > 0.75, "fitted AUC {f:.3}");
    // The weights found the true factors and the noise.
    let learned = risk::learn(&model, &histories);
    let w = learned.fitted.unwrap().weights;
    let weight = |k: Kind| w[Kind::ALL.iter().position(|x| *x == k).unwrap()];
    assert!(weight(Kind::SingleThreaded) > 1.0, "{w:?}");
    assert!(weight(Kind::UnresolvedObjection) > 1.0, "{w:?}");
    assert!(weight(Kind::NoActivity).abs() < 0.5, "{w:?}");
    assert!(
        e.live
            .to_string()
            .contains("fitted by logistic regression on 800 closed deals"),
        "{}",
        e.live
    );
    let table = e.table();
    assert!(
        table.contains("Learned from the 560 oldest closed deals"),
        "{table}"
    );
    println!("{table}");
}

#[test]
fn too_few_closed_deals_keep_the_rule_based_weights() {
    let mut rng = Rng(7);
    let histories: Vec<DealHistory> = (0..30).map(|i| deal(i, &mut rng).0).collect();
    let model = Model::new(Settings::default(), &[], Learned::default());
    let learned = risk::learn(&model, &histories);
    assert!(learned.fitted.is_none());
    assert_eq!(learned.won + learned.lost, 30);
    let live = model.with_learned(learned);
    assert_eq!(
        live.scoring().to_string(),
        "rule-based weights (30 closed deals; weights are fitted from 40)"
    );
}
