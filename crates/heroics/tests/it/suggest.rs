//! Suggestions on a generated history with patterns planted in it: the founder writing to
//! deals gone quiet for 6+ days after the demo, the sales manager calling after pricing
//! objections in proposal, and quiet stretches in discovery nobody key steps in on.

use std::path::PathBuf;

use heroics::{History, Settings, SuggestOptions, Trigger, playbook_yaml, suggest};
use testkit::history::{Company, generate};

fn history(company: &Company) -> (History, testkit::history::Planted) {
    let (lines, planted) = generate(company);
    let events: Vec<domain::Event> = lines
        .iter()
        .map(|l| {
            let new = wire::parse_one(l).unwrap_or_else(|p| panic!("{l}: {p}"));
            let at = new.occurred_at;
            new.stamp(domain::EventId(Default::default()), at)
        })
        .collect();
    let end = domain::Timestamp::from_millis(i64::MAX);
    (
        History::from_events(&events, Settings::default(), end),
        planted,
    )
}

#[test]
fn the_planted_patterns_come_back_as_rules_that_load() {
    let company = Company::default();
    let (history, planted) = history(&company);
    assert!(
        planted.founder_rescues >= 30 && planted.manager_answers >= 15,
        "{planted:?}"
    );
    let found = suggest(&history, &SuggestOptions::default());

    let quiet = found
        .iter()
        .find(|s| {
            s.reason == "went-quiet" && s.stage.as_ref().is_some_and(|st| st.as_str() == "demo")
        })
        .unwrap_or_else(|| panic!("no quiet-after-demo rule in {found:#?}"));
    assert_eq!(quiet.trigger, Trigger::QuietFor { days: 6 });
    assert_eq!(quiet.min_amount, None);
    // Every rescue happened after 6+ quiet days: the rule would have fired before each.
    assert_eq!(quiet.support, planted.founder_rescues);
    assert_eq!(
        quiet.people.get(&domain::RecordId::parse("maya").unwrap()),
        Some(&quiet.support)
    );
    // It would also have fired on the quiet demos the owner revived alone.
    assert_eq!(
        quiet.elsewhere,
        planted.quiet_after_demo - planted.founder_rescues
    );
    assert!(
        quiet.why.starts_with("maya stepped in (went-quiet) on"),
        "{}",
        quiet.why
    );

    let pricing = found
        .iter()
        .find(|s| s.reason == "pricing")
        .unwrap_or_else(|| panic!("no pricing rule in {found:#?}"));
    assert_eq!(
        pricing.trigger,
        Trigger::Objection {
            objection: domain::ObjectionKind::Pricing
        }
    );
    assert_eq!(pricing.stage.as_ref().unwrap().as_str(), "proposal");
    assert_eq!(pricing.support, planted.manager_answers);
    assert_eq!(pricing.elsewhere, planted.pricing - planted.manager_answers);

    // The quiet stretches in discovery had no one key stepping in: no rule for them.
    assert!(
        found
            .iter()
            .all(|s| s.stage.as_ref().is_none_or(|st| st.as_str() != "discovery")),
        "{found:#?}"
    );

    // The proposal is a playbook that loads, with the rules as described.
    let yaml = playbook_yaml("suggested", "maya@acme.example", &found);
    let loaded = playbook::load_files(&[(PathBuf::from("suggested.yaml"), yaml.clone())]);
    assert!(
        loaded.diagnostics.is_empty(),
        "{yaml}\n{:?}",
        loaded.diagnostics
    );
    let set = loaded.set.unwrap();
    let rule = set.playbooks[0]
        .rules
        .iter()
        .find(|r| r.id == quiet.id)
        .unwrap();
    assert_eq!(rule.trigger.to_string(), "quiet for 6d");
    assert_eq!(
        rule.condition.as_ref().unwrap().source,
        r#"deal.stage == "demo""#
    );
    assert_eq!(rule.covers, ["went-quiet"]);
    assert_eq!(rule.why, quiet.why);
    // Dropped into the playbooks folder as it is, it acts in shadow only.
    assert!(set.playbooks[0].rules.iter().all(|r| r.shadow));
}

#[test]
fn a_pattern_about_large_deals_asks_for_their_size() {
    // The founder rescues only quiet demos of large deals; most deals are smaller.
    let company = Company {
        seed: 11,
        deals: 400,
        ..Company::default()
    };
    let (lines, _) = generate(&company);
    // Keep the founder's rescues on deals of 90,000 or more only.
    let large: std::collections::BTreeSet<String> = lines
        .iter()
        .filter(|l| l.contains(r#""type":"deal.created""#))
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["data"]["amount"].as_f64()? >= 90_000.0)
                .then(|| v["deal"].as_str().unwrap().to_owned())
        })
        .collect();
    let events: Vec<domain::Event> = lines
        .iter()
        .filter(|l| {
            !l.contains(r#""actor":{"person":"maya"}"#)
                || large
                    .iter()
                    .any(|d| l.contains(&format!(r#""deal":"{d}""#)))
        })
        .map(|l| {
            let new = wire::parse_one(l).unwrap();
            let at = new.occurred_at;
            new.stamp(domain::EventId(Default::default()), at)
        })
        .collect();
    let history = History::from_events(
        &events,
        Settings::default(),
        domain::Timestamp::from_millis(i64::MAX),
    );
    let found = suggest(&history, &SuggestOptions::default());
    let quiet = found
        .iter()
        .find(|s| s.reason == "went-quiet")
        .unwrap_or_else(|| panic!("{found:#?}"));
    let min = quiet.min_amount.expect("a size condition");
    assert!((80_000.0..=95_000.0).contains(&min), "{min}");
    assert!(
        quiet.yaml.contains(&format!("deal.amount >= {min:.1}")),
        "{}",
        quiet.yaml
    );
}
