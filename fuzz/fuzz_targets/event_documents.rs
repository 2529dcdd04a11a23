//! A request body of `POST /v1/events` (or a Fluvio record batch): decoded by the shared
//! decoder into events the way the API does, event-time bounds included. Any input must give
//! an answer — events, per-line errors or a batch error — never a panic; the counts must add
//! up, the listed errors stay within their cap, and every accepted event is the caller's
//! tenant's and inside the time bounds.
#![no_main]

use connectors::sources::{FieldError, Limits, decode_batch};
use libfuzzer_sys::fuzz_target;
use operators::{EventFields, EventTimeRange};

/// A fixed clock, so a run is reproducible: 2026-12-01T00:00:00Z.
const NOW_MS: i64 = 1_764_547_200_000;

fuzz_target!(|body: &[u8]| {
    let limits = Limits {
        max_events: 10_000,
        max_line_bytes: 64 * 1024,
        ..Limits::default()
    };
    let times = EventTimeRange::default();
    if let Ok(batch) = decode_batch(
        body,
        &limits,
        |fields: EventFields| {
            fields
                .into_event("fuzz-shop")
                .and_then(|event| times.check(event.ts_ms, NOW_MS).map(|()| event))
                .map_err(|e| FieldError::from_message(e.to_string()))
        },
        |event| event.id.as_str(),
    ) {
        assert!(batch.rejected.len() <= limits.max_reported_errors);
        assert!(batch.rejected.len() <= batch.rejected_total);
        let documents = batch.events.len() + batch.rejected_total + batch.duplicates as usize;
        assert!(documents <= limits.max_events);
        for event in &batch.events {
            assert_eq!(event.tenant.as_str(), "fuzz-shop");
            assert!(times.check(event.ts_ms, NOW_MS).is_ok());
        }
    }
});
