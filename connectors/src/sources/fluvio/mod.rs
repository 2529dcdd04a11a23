//! The Fluvio source: a topic's records become events in the log, exactly once.
//!
//! A record's value is the same event document `POST /v1/events` takes — one JSON object, a
//! JSON array of them, or NDJSON lines — decoded by the same code ([`crate::sources::events`])
//! under the source's limits ([`decode_record`]). Whose events a topic carries is configuration
//! ([`FluvioSourceConfig::binding`]): a topic bound to one tenant refuses an event naming
//! another; only a topic marked `multi_tenant` takes each event's tenant from a field, and only
//! tenants it lists.
//!
//! Exactly once into the log does not rest on Fluvio (it has no transactions and no idempotent
//! producer, and its consumer offsets are not written with our log): each partition's next
//! offset is stored in the transaction that appends the events its records carried
//! ([`crate::store::EventLog::append_from_source`]), and the source always resumes from that
//! stored offset. A record is in the log with its position or not at all; event ids stay the
//! second guard against a producer that sends the same event twice.
//!
//! [`reader`] is the client side (connect, partitions, high watermarks, a partition's records);
//! the pipeline runs one reader per partition, commits batches through its group commit and
//! reconnects with backoff when the cluster goes away. Connections are plaintext (the client is
//! built without its TLS stack).

mod config;
pub mod reader;

use serde::de::DeserializeOwned;

pub use config::{FluvioSourceConfig, StartPosition, TenantBinding};
pub use reader::{FluvioTopic, SourceError, SourceRecord};

use crate::sources::{FieldError, Limits, decode_batch};
use crate::store::DEAD_LETTER_RAW_BYTES;

/// Refused documents of one record named in its dead letter; the rest are counted.
const REPORTED_PER_RECORD: usize = 5;

/// A record decoded: its valid events, and why it — or some of its documents — was refused.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedRecord<E> {
    /// The valid events, each id once.
    pub events: Vec<E>,
    /// Why the record or some of its documents were refused (then it is dead-lettered, and its
    /// valid events are still logged).
    pub refused: Option<String>,
}

/// Decodes one record's value under `config`'s limits: `parse` turns a document into an event
/// (or names the field at fault), `id` gives an event's id.
/// Each document is read as a `D`, as [`decode_batch`] reads it.
pub fn decode_record<D: DeserializeOwned, E>(
    value: &[u8],
    config: &FluvioSourceConfig,
    parse: impl FnMut(D) -> Result<E, FieldError>,
    id: impl Fn(&E) -> &str,
) -> DecodedRecord<E> {
    let refuse = |why: String| DecodedRecord {
        events: Vec::new(),
        refused: Some(why),
    };
    if value.len() > config.max_record_bytes {
        return refuse(format!(
            "record: {} bytes is more than max_record_bytes ({})",
            value.len(),
            config.max_record_bytes
        ));
    }
    let limits = Limits {
        max_events: config.max_record_events,
        max_line_bytes: config.max_record_bytes,
        max_reported_errors: REPORTED_PER_RECORD,
    };
    match decode_batch(value, &limits, parse, id) {
        Err(e) => refuse(format!("record: {e}")),
        Ok(batch) if batch.events.is_empty() && batch.rejected_total == 0 => {
            refuse("record: holds no event document".into())
        }
        Ok(batch) => {
            let refused = (batch.rejected_total > 0).then(|| {
                let mut why: Vec<String> = batch
                    .rejected
                    .iter()
                    .map(|r| {
                        let at = serde_json::to_value(r.position)
                            .ok()
                            .and_then(|p| {
                                p.as_object()
                                    .and_then(|o| o.iter().next().map(|(k, v)| format!("{k} {v}")))
                            })
                            .unwrap_or_default();
                        format!("{at}: {}", r.error.message)
                    })
                    .collect();
                if batch.rejected_omitted() > 0 {
                    why.push(format!("and {} more", batch.rejected_omitted()));
                }
                why.join("; ")
            });
            DecodedRecord {
                events: batch.events,
                refused,
            }
        }
    }
}

/// A record's value as a dead letter keeps it: at most [`DEAD_LETTER_RAW_BYTES`].
pub fn dead_letter_bytes(value: &[u8]) -> Vec<u8> {
    value[..value.len().min(DEAD_LETTER_RAW_BYTES)].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn config() -> FluvioSourceConfig {
        serde_json::from_value(serde_json::json!({
            "endpoint": "127.0.0.1:9003", "topic": "orders", "tenant": "acme",
            "max_record_bytes": 200, "max_record_events": 3
        }))
        .expect("config")
    }

    fn parse(document: Value) -> Result<String, FieldError> {
        document
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| FieldError::new("id", "id: is required"))
    }

    fn decode(value: &str) -> DecodedRecord<String> {
        decode_record(value.as_bytes(), &config(), parse, String::as_str)
    }

    #[test]
    fn a_record_holds_one_document_an_array_or_ndjson() {
        assert_eq!(decode(r#"{"id":"a"}"#).events, vec!["a"]);
        assert_eq!(decode(r#"[{"id":"a"},{"id":"b"}]"#).events, vec!["a", "b"]);
        let lines = decode("{\"id\":\"a\"}\n{\"id\":\"a\"}\n{\"id\":\"c\"}");
        assert_eq!(lines.events, vec!["a", "c"]);
        assert_eq!(lines.refused, None);
    }

    #[test]
    fn bad_documents_are_named_and_the_good_ones_kept() {
        let mixed = decode("{\"id\":\"a\"}\n{\"x\":1}\nnot json");
        assert_eq!(mixed.events, vec!["a"]);
        let why = mixed.refused.expect("refused");
        assert!(
            why.starts_with("line 2: id: is required; line 3: "),
            "{why}"
        );
        let oversized = decode(&format!("{{\"id\":\"{}\"}}", "x".repeat(300)));
        assert!(oversized.events.is_empty());
        assert!(
            oversized
                .refused
                .expect("refused")
                .contains("more than max_record_bytes (200)")
        );
        let too_many = decode(r#"[{"id":"a"},{"id":"b"},{"id":"c"},{"id":"d"}]"#);
        assert!(
            too_many
                .refused
                .expect("refused")
                .contains("more than 3 events")
        );
        assert!(
            decode(" \n")
                .refused
                .expect("refused")
                .contains("no event document")
        );
        assert!(
            decode_record(&[0xff, 0xfe], &config(), parse, String::as_str)
                .refused
                .expect("refused")
                .contains("not UTF-8")
        );
    }

    #[test]
    fn dead_letters_keep_a_bounded_prefix() {
        assert_eq!(dead_letter_bytes(b"abc"), b"abc");
        assert_eq!(
            dead_letter_bytes(&vec![7; 10_000]).len(),
            DEAD_LETTER_RAW_BYTES
        );
    }
}
