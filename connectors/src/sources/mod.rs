//! Sources: where events come from. Every source — the HTTP API's `POST /v1/events` today, the
//! Fluvio topic next — decodes its bytes through [`events`], so a producer gets the same framing,
//! the same positions and the same per-event errors whichever way it sends.
//!
//! A source only frames and decodes documents. What makes a document a valid event is the event
//! model's business (the `operators` crate, which this crate does not depend on): the caller
//! passes it in as the function that turns one JSON document into an event.

pub mod events;
pub mod fluvio;

pub use events::{BatchError, DecodedBatch, FieldError, Limits, Position, Rejected, decode_batch};
