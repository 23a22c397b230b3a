//! The report as text: a table for people, CSV (one section at a time) for spreadsheets.

use std::fmt::Write;

use domain::Money;

use crate::report::{Closed, Report, Revenue, Summary};

/// The sections `csv` can write.
pub const SECTIONS: &[&str] = &[
    "months",
    "people",
    "reasons",
    "stages",
    "waiting",
    "coverage",
    "interventions",
];

fn pct(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |s| format!("{:.1}%", s * 100.0))
}

/// `12,345.67 USD`, with the cents only when there are any.
pub fn money(m: &Money) -> String {
    let major = m.minor / 100;
    let cents = m.minor % 100;
    let digits = major.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if cents == 0 {
        format!("{grouped} {}", m.currency)
    } else {
        format!("{grouped}.{cents:02} {}", m.currency)
    }
}

fn revenue(r: &Revenue) -> String {
    let parts: Vec<String> = r.amounts().map(|m| money(&m)).collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" + ")
    }
}

fn closed_line(c: &Closed) -> String {
    format!(
        "won {} ({} with a key person, {}), lost {} ({}, {}), exceptions {}",
        c.won.deals,
        c.won.with_key_person,
        pct(c.won.share),
        c.lost.deals,
        c.lost.with_key_person,
        pct(c.lost.share),
        pct(c.exception_rate)
    )
}

fn period(s: &Summary) -> String {
    match s.from {
        Some(from) => format!("{from} to {}", s.to),
        None => format!("everything before {}", s.to),
    }
}

/// Rows of cells as aligned columns, the first row a header; columns of numbers (and `-`) to
/// the right.
fn columns(out: &mut String, rows: &[Vec<String>]) {
    let n = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..n)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let right: Vec<bool> = (0..n)
        .map(|i| {
            i > 0
                && rows[1..].iter().all(|r| {
                    r[i].is_empty() || r[i].starts_with(|c: char| c.is_ascii_digit() || c == '-')
                })
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths.iter().zip(&right))
            .map(|(cell, (w, right))| {
                if *right {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "  {}", line.join("  ").trim_end());
    }
}

/// The whole report as text.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let who = r
        .person
        .as_ref()
        .map_or_else(|| "key people".to_owned(), |p| p.to_string());
    let _ = writeln!(out, "Heroics: {} ({who})", period(&r.summary));
    let _ = writeln!(out, "  {}", closed_line(&r.summary.closed));
    let _ = writeln!(out, "  interventions begun: {}", r.summary.interventions);

    let _ = writeln!(
        out,
        "\nClosed deals with a key person, by month (of the close, UTC)"
    );
    let mut rows = vec![vec![
        "month".into(),
        "won".into(),
        "with".into(),
        "share".into(),
        "lost".into(),
        "with".into(),
        "share".into(),
        "exceptions".into(),
        "interventions".into(),
    ]];
    for m in &r.months {
        let c = &m.closed;
        rows.push(vec![
            m.month.clone(),
            c.won.deals.to_string(),
            c.won.with_key_person.to_string(),
            pct(c.won.share),
            c.lost.deals.to_string(),
            c.lost.with_key_person.to_string(),
            pct(c.lost.share),
            pct(c.exception_rate),
            m.interventions.to_string(),
        ]);
    }
    columns(&mut out, &rows);

    let _ = writeln!(out, "\nPeople");
    let mut rows = vec![vec![
        "person".into(),
        "interventions".into(),
        "deals".into(),
        "won with".into(),
        "share".into(),
        "lost with".into(),
        "share".into(),
        "top reason".into(),
    ]];
    for p in &r.people {
        let top = p
            .by_reason
            .iter()
            .max_by_key(|(_, n)| **n)
            .map_or_else(|| "-".to_owned(), |(reason, n)| format!("{reason} ({n})"));
        rows.push(vec![
            p.name.clone().unwrap_or_else(|| p.person.to_string()),
            p.interventions.to_string(),
            p.deals.to_string(),
            p.won_deals.to_string(),
            pct(p.won_share),
            p.lost_deals.to_string(),
            pct(p.lost_share),
            top,
        ]);
    }
    columns(&mut out, &rows);

    for (title, slices) in [
        ("Reasons", &r.reasons),
        ("Stages (at the first touch)", &r.stages),
    ] {
        let _ = writeln!(out, "\n{title}");
        let mut rows = vec![vec![
            "name".into(),
            "interventions".into(),
            "deals".into(),
            "pipeline".into(),
            "won".into(),
        ]];
        for s in slices {
            rows.push(vec![
                s.name.clone(),
                s.interventions.to_string(),
                s.deals.to_string(),
                revenue(&s.pipeline),
                revenue(&s.won),
            ]);
        }
        columns(&mut out, &rows);
    }

    let _ = writeln!(out, "\nWaiting on a key person");
    if r.waiting.is_empty() {
        let _ = writeln!(out, "  nothing");
    } else {
        let mut rows = vec![vec![
            "deal".into(),
            "person".into(),
            "days".into(),
            "amount".into(),
            "stage".into(),
            "what".into(),
        ]];
        for w in &r.waiting {
            rows.push(vec![
                w.name
                    .as_ref()
                    .map_or_else(|| w.deal.to_string(), |n| format!("{n} ({})", w.deal)),
                w.person.to_string(),
                w.age_days.to_string(),
                w.amount.as_ref().map_or_else(|| "-".into(), money),
                w.stage.clone().unwrap_or_default(),
                w.what.clone(),
            ]);
        }
        columns(&mut out, &rows);
    }

    let _ = writeln!(out, "\nCoverage by the playbooks' rules");
    let mut rows = vec![vec![
        "reason / rule".into(),
        "interventions".into(),
        "after a rule".into(),
        "uncovered".into(),
        "fired".into(),
        "stepped in after".into(),
        "pre-empted".into(),
        "pending".into(),
    ]];
    for c in &r.coverage {
        rows.push(vec![
            c.reason.clone(),
            c.interventions.to_string(),
            c.after_rule.to_string(),
            c.uncovered.to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        for rule in &c.rules {
            rows.push(vec![
                format!(
                    "  {}/{}{}",
                    rule.playbook,
                    rule.rule,
                    if rule.shadow { " (shadow)" } else { "" }
                ),
                String::new(),
                String::new(),
                String::new(),
                rule.fired.to_string(),
                rule.stepped_in_after.to_string(),
                rule.pre_empted.to_string(),
                rule.pending.to_string(),
            ]);
        }
    }
    columns(&mut out, &rows);

    if let Some(c) = &r.comparison {
        let _ = writeln!(out, "\nBefore and after {}", c.at);
        for (label, s) in [("before", &c.before), ("after", &c.after)] {
            let _ = writeln!(
                out,
                "  {label:<6} {}; interventions {}",
                closed_line(&s.closed),
                s.interventions
            );
        }
    }
    out
}

/// One section of the report as CSV (see [`SECTIONS`]); `None` for an unknown section.
pub fn csv(r: &Report, section: &str) -> Option<String> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let opt = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_default();
    let money_cells = |rev: &Revenue| -> String {
        rev.amounts()
            .map(|m| format!("{:.2} {}", m.major(), m.currency))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let rows: Vec<Vec<String>> = match section {
        "months" => std::iter::once(
            [
                "month",
                "won",
                "won_with_key_person",
                "won_share",
                "lost",
                "lost_with_key_person",
                "lost_share",
                "exceptions",
                "exception_rate",
                "interventions",
            ]
            .map(String::from)
            .to_vec(),
        )
        .chain(r.months.iter().map(|m| {
            let c = &m.closed;
            vec![
                m.month.clone(),
                c.won.deals.to_string(),
                c.won.with_key_person.to_string(),
                opt(c.won.share),
                c.lost.deals.to_string(),
                c.lost.with_key_person.to_string(),
                opt(c.lost.share),
                c.exceptions.to_string(),
                opt(c.exception_rate),
                m.interventions.to_string(),
            ]
        }))
        .collect(),
        "people" => std::iter::once(
            [
                "person",
                "name",
                "interventions",
                "deals",
                "won_deals",
                "won_share",
                "lost_deals",
                "lost_share",
            ]
            .map(String::from)
            .to_vec(),
        )
        .chain(r.people.iter().map(|p| {
            vec![
                p.person.to_string(),
                p.name.clone().unwrap_or_default(),
                p.interventions.to_string(),
                p.deals.to_string(),
                p.won_deals.to_string(),
                opt(p.won_share),
                p.lost_deals.to_string(),
                opt(p.lost_share),
            ]
        }))
        .collect(),
        "reasons" | "stages" => {
            let slices = if section == "reasons" {
                &r.reasons
            } else {
                &r.stages
            };
            std::iter::once(
                ["name", "interventions", "deals", "pipeline", "won"]
                    .map(String::from)
                    .to_vec(),
            )
            .chain(slices.iter().map(|s| {
                vec![
                    s.name.clone(),
                    s.interventions.to_string(),
                    s.deals.to_string(),
                    money_cells(&s.pipeline),
                    money_cells(&s.won),
                ]
            }))
            .collect()
        }
        "waiting" => std::iter::once(
            [
                "deal", "name", "person", "what", "since", "age_days", "amount", "stage", "owner",
            ]
            .map(String::from)
            .to_vec(),
        )
        .chain(r.waiting.iter().map(|w| {
            vec![
                w.deal.to_string(),
                w.name.clone().unwrap_or_default(),
                w.person.to_string(),
                w.what.clone(),
                w.since.to_string(),
                w.age_days.to_string(),
                w.amount
                    .map(|m| format!("{:.2} {}", m.major(), m.currency))
                    .unwrap_or_default(),
                w.stage.clone().unwrap_or_default(),
                w.owner
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ]
        }))
        .collect(),
        "coverage" => std::iter::once(
            [
                "reason",
                "interventions",
                "after_rule",
                "uncovered",
                "playbook",
                "rule",
                "shadow",
                "fired",
                "deals",
                "stepped_in_after",
                "pre_empted",
                "pending",
            ]
            .map(String::from)
            .to_vec(),
        )
        .chain(r.coverage.iter().flat_map(|c| {
            let head = vec![
                c.reason.clone(),
                c.interventions.to_string(),
                c.after_rule.to_string(),
                c.uncovered.to_string(),
            ];
            if c.rules.is_empty() {
                let mut row = head;
                row.extend(std::iter::repeat_n(String::new(), 8));
                vec![row]
            } else {
                c.rules
                    .iter()
                    .map(|rule| {
                        let mut row = head.clone();
                        row.extend([
                            rule.playbook.clone(),
                            rule.rule.clone(),
                            rule.shadow.to_string(),
                            rule.fired.to_string(),
                            rule.deals.to_string(),
                            rule.stepped_in_after.to_string(),
                            rule.pre_empted.to_string(),
                            rule.pending.to_string(),
                        ]);
                        row
                    })
                    .collect()
            }
        }))
        .collect(),
        "interventions" => std::iter::once(
            [
                "deal", "person", "first_at", "last_at", "touches", "reason", "because", "stage",
                "owner",
            ]
            .map(String::from)
            .to_vec(),
        )
        .chain(r.interventions.iter().map(|i| {
            vec![
                i.deal.to_string(),
                i.person.to_string(),
                i.first_at.to_string(),
                i.last_at.to_string(),
                i.touches.to_string(),
                i.reason.clone(),
                i.because.clone(),
                i.stage
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                i.owner
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ]
        }))
        .collect(),
        _ => return None,
    };
    for row in rows {
        w.write_record(&row).ok()?;
    }
    String::from_utf8(w.into_inner().ok()?).ok()
}
