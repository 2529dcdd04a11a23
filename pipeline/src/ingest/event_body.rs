//! The one stored form of an event: its JSON document as accepted and normalised —
//! `{"attrs", "id", "tenant", "ts", "type"}`, `ts` in epoch milliseconds, the tenant filled in from
//! the credential, whole-number attributes as integers (see [`operators::Event::document`]).
//!
//! Ingest writes it and recovery reads it back, through these two functions only. The form is
//! the one the log has always held, so logs written before stay readable.

use operators::{Event, EventError, EventFields};

/// Why a stored event body no longer decodes.
#[derive(Debug, thiserror::Error)]
pub enum StoredEventError {
    /// The body is not JSON.
    #[error("the stored body is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The body is JSON but not a valid event.
    #[error("the stored body is not a valid event: {0}")]
    Event(#[from] EventError),
}

/// The body an event is stored with, written straight from the event (no JSON tree between).
pub fn stored_body(event: &Event) -> String {
    serde_json::to_string(&event.document())
        .expect("an event document always serializes: its keys are strings and it writes to memory")
}

/// The event a stored body holds, for `tenant` (the log row's tenant): read as ingest reads a
/// document, without a JSON tree (recovery and the audience thread read every logged event).
pub fn event_from_stored(body: &str, tenant: &str) -> Result<Event, StoredEventError> {
    let fields: EventFields = serde_json::from_str(body)?;
    Ok(fields.into_event(tenant)?)
}

/// The attributes a stored body holds, without decoding the rest (live tables read every event).
pub fn stored_attributes(
    body: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Attributes {
        #[serde(default)]
        attrs: serde_json::Map<String, serde_json::Value>,
    }
    Ok(serde_json::from_str::<Attributes>(body)?.attrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body as the log has held it since the first release.
    const STORED: &str = r#"{"attrs":{"amount":250000,"channel":"naver","rate":2.5,"tags":["a",1]},"id":"o1","tenant":"shop","ts":1764028800000,"type":"order"}"#;

    #[test]
    fn a_stored_body_reads_back_to_the_event_that_writes_it_again() {
        let event = event_from_stored(STORED, "shop").unwrap();
        assert_eq!(event.id, "o1");
        assert_eq!(event.ts_ms, 1_764_028_800_000);
        assert_eq!(stored_body(&event), STORED);
        assert_eq!(stored_body(&event), event.to_json().to_string());
        let attrs = stored_attributes(STORED).unwrap();
        assert_eq!(attrs["channel"], "naver");
        assert_eq!(attrs["amount"], 250000);
    }

    #[test]
    fn a_body_that_no_longer_decodes_says_why() {
        assert!(matches!(
            event_from_stored("{\"id\":", "shop"),
            Err(StoredEventError::Json(_))
        ));
        let error = event_from_stored(r#"{"id":"o1","type":"order"}"#, "shop").unwrap_err();
        assert!(matches!(error, StoredEventError::Event(_)), "{error}");
        assert_eq!(
            error.to_string(),
            "the stored body is not a valid event: ts: is required"
        );
    }
}
