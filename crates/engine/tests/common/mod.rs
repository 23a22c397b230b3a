//! Helpers shared by the engine's test files.

use domain::EventId;

/// An event about deal D-1 as a client would send it, stamped with a fixed id and received
/// when it occurred.
pub fn deal_event(id: u128, ty: &str, at: &str, data: &str) -> domain::Event {
    let text = format!(
        r#"{{"type":"{ty}","source":"t","source_id":"{id}","occurred_at":"{at}","deal":"D-1","data":{data}}}"#
    );
    let new = wire::parse_one(&text).unwrap();
    let at = new.occurred_at;
    new.stamp(EventId(uuid::Uuid::from_u128(id)), at)
}
