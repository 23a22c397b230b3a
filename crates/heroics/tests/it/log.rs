//! Hand-built event logs: one line per fact, at 09:00 UTC on the day given.

use domain::{Event, EventId};

#[derive(Default)]
pub struct Log {
    pub events: Vec<Event>,
}

impl Log {
    /// An event of type `ty` on `day` (`2026-09-10`, or a full RFC 3339 time), with its
    /// references (JSON members) and data.
    pub fn add(&mut self, ty: &str, day: &str, refs: &str, data: &str) -> &mut Self {
        let at = if day.len() == 10 {
            format!("{day}T09:00:00Z")
        } else {
            day.to_owned()
        };
        let id = self.events.len();
        let text = format!(
            r#"{{"type":"{ty}","source":"t","source_id":"{id}","occurred_at":"{at}",{refs},"data":{data}}}"#
        );
        let new = wire::parse_one(&text).unwrap_or_else(|p| panic!("{text}: {p}"));
        self.events
            .push(new.stamp(EventId(Default::default()), at.parse().unwrap()));
        self
    }

    pub fn person(&mut self, id: &str, key: bool) -> &mut Self {
        self.add(
            "person.created",
            "2026-08-01",
            &format!(r#""person":"{id}""#),
            &format!(r#"{{"key_person":{key},"name":"{id}"}}"#),
        )
    }

    /// A deal created on `day` with its owner, stage and amount (USD).
    pub fn deal(
        &mut self,
        id: &str,
        day: &str,
        owner: &str,
        stage: &str,
        amount: u32,
    ) -> &mut Self {
        self.add(
            "deal.created",
            day,
            &format!(r#""deal":"{id}""#),
            &format!(
                r#"{{"name":"{id} Corp","owner":"{owner}","stage":"{stage}","amount":{amount},"currency":"USD"}}"#
            ),
        )
    }

    /// A touch: `ty` (an email, call, meeting or note) on `deal` by `who`.
    pub fn by(&mut self, ty: &str, day: &str, deal: &str, who: &str) -> &mut Self {
        let data = match ty {
            "note.added" => r#"{"text":"x"}"#,
            _ => "{}",
        };
        self.add(
            ty,
            day,
            &format!(r#""deal":"{deal}","actor":{{"person":"{who}"}}"#),
            data,
        )
    }

    pub fn objection(&mut self, day: &str, deal: &str, kind: &str) -> &mut Self {
        self.add(
            "objection.raised",
            day,
            &format!(r#""deal":"{deal}","actor":{{"contact":"C-{deal}"}}"#),
            &format!(r#"{{"kind":"{kind}"}}"#),
        )
    }

    pub fn stage(&mut self, day: &str, deal: &str, stage: &str) -> &mut Self {
        self.add(
            "deal.stage_changed",
            day,
            &format!(r#""deal":"{deal}""#),
            &format!(r#"{{"stage":"{stage}"}}"#),
        )
    }

    pub fn won(&mut self, day: &str, deal: &str) -> &mut Self {
        self.add("deal.won", day, &format!(r#""deal":"{deal}""#), "{}")
    }

    pub fn lost(&mut self, day: &str, deal: &str) -> &mut Self {
        self.add("deal.lost", day, &format!(r#""deal":"{deal}""#), "{}")
    }

    pub fn logged(&mut self, day: &str, deal: &str, person: &str, reason: &str) -> &mut Self {
        self.add(
            "intervention.logged",
            day,
            &format!(r#""deal":"{deal}""#),
            &format!(r#"{{"person":"{person}","reason":"{reason}"}}"#),
        )
    }
}

pub fn ts(day: &str) -> domain::Timestamp {
    if day.len() == 10 {
        format!("{day}T09:00:00Z").parse().unwrap()
    } else {
        day.parse().unwrap()
    }
}
