//! Event batches: a body of event documents, as a JSON array or as NDJSON, decoded into events,
//! the documents that were refused (each with its position and the field at fault) and the
//! number of ids repeated within the batch.
//!
//! One bad document never takes the others down: it is reported and the rest are decoded. Only a
//! problem with the batch as a whole — bytes that are not UTF-8, an array that is not valid JSON,
//! more events than the limits allow — refuses the batch.
//!
//! The report stays small whatever the batch: only the first [`Limits::max_reported_errors`]
//! refused documents are listed (each message cut at [`MAX_MESSAGE_BYTES`]), the rest are counted.

use std::collections::HashSet;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// How much one batch may hold. The defaults refuse nothing: the HTTP API bounds a request by its
/// body size at the router; a source without such a bound (a topic) sets its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most events (documents, valid or not) in one batch.
    pub max_events: usize,
    /// Longest NDJSON line, in bytes; a longer line is refused as a document of its own. (An
    /// array is one document list, bounded by `max_events` and the body size.)
    pub max_line_bytes: usize,
    /// Most refused documents listed in [`DecodedBatch::rejected`]; the others are only counted
    /// ([`DecodedBatch::rejected_total`]), so a body of bad lines cannot make a huge report.
    pub max_reported_errors: usize,
}

/// Refused documents listed by default; enough to fix a producer, small enough to answer.
pub const DEFAULT_REPORTED_ERRORS: usize = 100;

/// Longest message (and field name) of one refused document, in bytes: a message may quote the
/// producer's input (an unknown key, a timestamp), which can be as long as the line.
pub const MAX_MESSAGE_BYTES: usize = 512;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_events: usize::MAX,
            max_line_bytes: usize::MAX,
            max_reported_errors: DEFAULT_REPORTED_ERRORS,
        }
    }
}

/// Where a document stood in its batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    /// Index in a JSON array, from 0.
    Index(usize),
    /// Line of an NDJSON body, from 1 (blank lines count, so a producer's editor agrees).
    Line(usize),
}

/// What was wrong with one document: the field at fault and a message that says why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    /// The whole message, starting with the field: `ts: 'yesterday' is not an RFC 3339 timestamp …`.
    pub message: String,
    /// The field at fault, e.g. `ts`, `attrs`, or `event` for the document as a whole.
    pub field: String,
}

impl FieldError {
    /// An error about `field`; `message` should start with the field, as producers read it first.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            message: message.into(),
            field: field.into(),
        }
    }

    /// An error from a message written `field: problem`; the field is the text before the first
    /// `:` (the whole message when there is none). The API has always named the field this way,
    /// so its answers stay the same byte for byte.
    pub fn from_message(message: impl Into<String>) -> FieldError {
        let message = message.into();
        let field = message.split(':').next().unwrap_or_default().to_string();
        FieldError { message, field }
    }
}

/// A refused document: where it stood and why. Serializes as the API answers it:
/// `{"line": 2, "message": "…", "field": "event"}` (or `"index"` for arrays).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// Where the document stood.
    #[serde(flatten)]
    pub position: Position,
    /// What was wrong with it.
    #[serde(flatten)]
    pub error: FieldError,
}

/// A decoded batch.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedBatch<E> {
    /// The valid events, in batch order, each id once (its first occurrence).
    pub events: Vec<E>,
    /// The first refused documents (at most [`Limits::max_reported_errors`]), in batch order.
    pub rejected: Vec<Rejected>,
    /// Every refused document, listed or not.
    pub rejected_total: usize,
    /// Valid events dropped because an earlier one in the batch had the same id.
    pub duplicates: u64,
}

impl<E> DecodedBatch<E> {
    /// Refused documents counted but not listed in [`DecodedBatch::rejected`].
    pub fn rejected_omitted(&self) -> usize {
        self.rejected_total - self.rejected.len()
    }
}

/// `text` cut to at most `max` bytes at a character boundary, with `…` when something was cut.
fn shortened(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Why a whole batch was refused.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The body is not UTF-8 text.
    #[error("body is not UTF-8: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
    /// The body starts like a JSON array but is not one.
    #[error("body is not a JSON array: {0}")]
    NotAnArray(#[source] serde_json::Error),
    /// The batch holds more events than [`Limits::max_events`].
    #[error("the batch holds more than {max} events; send at most {max} in one batch")]
    TooManyEvents {
        /// The limit.
        max: usize,
    },
}

/// Decodes a batch: a JSON array of documents (when the body's first non-blank character is `[`)
/// or NDJSON, one document per line, blank lines skipped.
///
/// Each document is read as a `D` — any JSON for a [`serde_json::Value`]; an event's fields,
/// straight from the text, for the pipeline's `operators::EventFields` — which must accept every
/// JSON value, so that only text that is not JSON refuses a document (or an array). `parse`
/// turns one document into an event or names the field at fault; `id` gives an event's id, by
/// which repeats within the batch are dropped and counted.
pub fn decode_batch<D, E>(
    body: &[u8],
    limits: &Limits,
    mut parse: impl FnMut(D) -> Result<E, FieldError>,
    id: impl Fn(&E) -> &str,
) -> Result<DecodedBatch<E>, BatchError>
where
    D: DeserializeOwned,
{
    let text = std::str::from_utf8(body)?;
    let mut events = Vec::new();
    let mut rejected = Vec::new();
    let mut rejected_total = 0;
    let mut take =
        |document: Result<D, FieldError>, position: Position| match document.and_then(&mut parse) {
            Ok(event) => events.push(event),
            Err(error) => {
                rejected_total += 1;
                if rejected.len() < limits.max_reported_errors {
                    let error = FieldError {
                        message: shortened(error.message, MAX_MESSAGE_BYTES),
                        field: shortened(error.field, MAX_MESSAGE_BYTES),
                    };
                    rejected.push(Rejected { position, error });
                }
            }
        };
    if text.trim_start().starts_with('[') {
        let items: Vec<D> = serde_json::from_str(text).map_err(BatchError::NotAnArray)?;
        if items.len() > limits.max_events {
            return Err(BatchError::TooManyEvents {
                max: limits.max_events,
            });
        }
        for (index, item) in items.into_iter().enumerate() {
            take(Ok(item), Position::Index(index));
        }
    } else {
        let mut documents = 0;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            documents += 1;
            if documents > limits.max_events {
                return Err(BatchError::TooManyEvents {
                    max: limits.max_events,
                });
            }
            let document = if line.len() > limits.max_line_bytes {
                Err(FieldError::new(
                    "event",
                    format!(
                        "event: the line is {} bytes long; at most {} are accepted",
                        line.len(),
                        limits.max_line_bytes
                    ),
                ))
            } else {
                serde_json::from_str::<D>(line)
                    .map_err(|e| FieldError::from_message(format!("event: not valid JSON ({e})")))
            };
            take(document, Position::Line(n + 1));
        }
    }
    let duplicates = drop_repeated_ids(&mut events, id);
    Ok(DecodedBatch {
        events,
        rejected,
        rejected_total,
        duplicates,
    })
}

/// Keeps the first event of each id; returns how many were dropped.
fn drop_repeated_ids<E>(events: &mut Vec<E>, id: impl Fn(&E) -> &str) -> u64 {
    // Marked first and dropped after, so the ids are borrowed rather than copied per event.
    let first: Vec<bool> = {
        let mut seen = HashSet::with_capacity(events.len());
        events.iter().map(|e| seen.insert(id(e))).collect()
    };
    let dropped = first.iter().filter(|&&keep| !keep).count();
    if dropped > 0 {
        let mut keep = first.into_iter();
        events.retain(|_| keep.next().unwrap_or(true));
    }
    dropped as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A stand-in event: a document with a string `id` and nothing else required.
    #[derive(Debug, PartialEq)]
    struct Doc {
        id: String,
    }

    fn parse(value: Value) -> Result<Doc, FieldError> {
        match value.get("id") {
            Some(Value::String(id)) => Ok(Doc { id: id.clone() }),
            Some(_) => Err(FieldError::from_message("id: must be a string")),
            None => Err(FieldError::from_message("id: is required")),
        }
    }

    fn decode(body: &str, limits: &Limits) -> Result<DecodedBatch<Doc>, BatchError> {
        decode_batch(body.as_bytes(), limits, parse, |d| d.id.as_str())
    }

    fn ids(batch: &DecodedBatch<Doc>) -> Vec<&str> {
        batch.events.iter().map(|d| d.id.as_str()).collect()
    }

    fn positions(batch: &DecodedBatch<Doc>) -> Vec<(Position, &str)> {
        batch
            .rejected
            .iter()
            .map(|r| (r.position, r.error.field.as_str()))
            .collect()
    }

    #[test]
    fn ndjson_lines_count_from_one_and_blank_lines_are_skipped_but_counted() {
        let body = "{\"id\":\"a\"}\n\n   \n{\"id\":7}\r\n{\"id\":\"b\"}\r\n{}\n";
        let batch = decode(body, &Limits::default()).unwrap();
        assert_eq!(ids(&batch), ["a", "b"]);
        assert_eq!(
            positions(&batch),
            [(Position::Line(4), "id"), (Position::Line(6), "id")]
        );
        assert_eq!(batch.duplicates, 0);
    }

    #[test]
    fn an_array_is_told_by_its_first_character_and_positions_are_indexes() {
        let body = "  \n [{\"id\":\"a\"}, {\"x\":1}, {\"id\":\"b\"}]";
        let batch = decode(body, &Limits::default()).unwrap();
        assert_eq!(ids(&batch), ["a", "b"]);
        assert_eq!(positions(&batch), [(Position::Index(1), "id")]);
    }

    #[test]
    fn an_invalid_json_line_is_one_rejected_event_and_the_rest_decode() {
        let batch = decode("{not json\n{\"id\":\"a\"}", &Limits::default()).unwrap();
        assert_eq!(ids(&batch), ["a"]);
        let error = &batch.rejected[0];
        assert_eq!(error.position, Position::Line(1));
        assert_eq!(error.error.field, "event");
        assert!(
            error.error.message.starts_with("event: not valid JSON ("),
            "{}",
            error.error.message
        );
    }

    #[test]
    fn a_body_that_is_not_utf8_or_a_broken_array_refuses_the_batch() {
        for (body, variant, message) in [
            (
                &b"[{\"id\":"[..],
                "NotAnArray",
                "body is not a JSON array: ",
            ),
            (&b"{\"id\":\"\xff\"}"[..], "NotUtf8", "body is not UTF-8: "),
        ] {
            let error =
                decode_batch(body, &Limits::default(), parse, |d| d.id.as_str()).unwrap_err();
            assert!(format!("{error:?}").starts_with(variant), "{error:?}");
            assert!(error.to_string().starts_with(message), "{error}");
        }
    }

    #[test]
    fn repeated_ids_keep_the_first_and_are_counted() {
        let body = "{\"id\":\"a\",\"n\":1}\n{\"id\":\"b\"}\n{\"id\":\"a\",\"n\":2}\n{\"id\":\"a\"}";
        let batch = decode_batch(
            body.as_bytes(),
            &Limits::default(),
            |v: Value| {
                let n = v.get("n").cloned();
                parse(v).map(|d| (d, n))
            },
            |(d, _)| d.id.as_str(),
        )
        .unwrap();
        assert_eq!(batch.duplicates, 2);
        assert_eq!(
            batch.events,
            [
                (Doc { id: "a".into() }, Some(json!(1))),
                (Doc { id: "b".into() }, None)
            ]
        );
    }

    #[test]
    fn over_the_limits_the_batch_or_the_line_is_refused() {
        let limits = Limits {
            max_events: 2,
            max_line_bytes: 12,
            ..Limits::default()
        };
        // Blank lines are not events.
        let batch = decode("{\"id\":\"a\"}\n\n{\"id\":\"bcdefgh\"}\n", &limits).unwrap();
        assert_eq!(ids(&batch), ["a"]);
        assert_eq!(positions(&batch), [(Position::Line(3), "event")]);
        for body in [
            "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c\"}",
            "[{\"id\":\"a\"}, {\"id\":\"b\"}, {\"id\":\"c\"}]",
        ] {
            let error = decode(body, &limits).unwrap_err();
            assert!(
                matches!(error, BatchError::TooManyEvents { max: 2 }),
                "{error}"
            );
        }
        // The defaults refuse nothing a body can hold.
        let long = format!("{{\"id\":\"{}\"}}", "x".repeat(1 << 20));
        assert_eq!(decode(&long, &Limits::default()).unwrap().events.len(), 1);
    }

    #[test]
    fn only_the_first_errors_are_listed_and_every_one_is_counted() {
        let body = "{\"x\":1}\n".repeat(500_000);
        let batch = decode(&body, &Limits::default()).unwrap();
        assert_eq!(batch.rejected.len(), DEFAULT_REPORTED_ERRORS);
        assert_eq!(batch.rejected_total, 500_000);
        assert_eq!(batch.rejected_omitted(), 500_000 - DEFAULT_REPORTED_ERRORS);
        assert_eq!(batch.rejected[99].position, Position::Line(100));
        let none = Limits {
            max_reported_errors: 0,
            ..Limits::default()
        };
        let batch = decode("{}\n{\"id\":\"a\"}", &none).unwrap();
        assert_eq!((batch.rejected.len(), batch.rejected_total), (0, 1));
        assert_eq!(ids(&batch), ["a"]);
    }

    #[test]
    fn a_long_message_or_field_is_cut_at_a_character_boundary() {
        let key = "ключ".repeat(1_000);
        let body = format!("{{\"{key}\":1}}");
        let batch = decode_batch(
            body.as_bytes(),
            &Limits::default(),
            |v: Value| -> Result<Doc, FieldError> {
                let key = v.as_object().and_then(|o| o.keys().next()).cloned();
                Err(FieldError::from_message(format!(
                    "{}: unknown field",
                    key.unwrap_or_default()
                )))
            },
            |d| d.id.as_str(),
        )
        .unwrap();
        let error = &batch.rejected[0].error;
        assert!(
            error.message.len() <= MAX_MESSAGE_BYTES,
            "{}",
            error.message.len()
        );
        assert!(error.field.len() <= MAX_MESSAGE_BYTES);
        assert!(error.message.ends_with('…') && error.message.starts_with("ключ"));
        assert_eq!(shortened("short".into(), 10), "short");
    }

    #[test]
    fn a_rejection_serializes_as_the_api_answers_it() {
        for (position, message, expected) in [
            (
                Position::Line(2),
                "ts: is required",
                json!({"line": 2, "message": "ts: is required", "field": "ts"}),
            ),
            (
                Position::Index(0),
                "no colon",
                json!({"index": 0, "message": "no colon", "field": "no colon"}),
            ),
        ] {
            let rejected = Rejected {
                position,
                error: FieldError::from_message(message),
            };
            assert_eq!(serde_json::to_value(&rejected).unwrap(), expected);
        }
    }
}
