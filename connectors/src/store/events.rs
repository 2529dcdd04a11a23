//! The event log: every accepted event, in append order, replayed into the dataflow on restart.
//!
//! The idempotency key is `(tenant, id)`: appending an event the log already holds reports the
//! original position and writes nothing.

use serde::{Deserialize, Serialize};

use super::{SourceProgress, StoreResult};

/// An event to append to the log. The idempotency key is `(tenant, id)`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Producer-chosen event id; unique per tenant.
    pub id: String,
    /// Owning tenant (taken from the credential, never from the body).
    pub tenant: String,
    /// Event type, e.g. `order.created`.
    pub event_type: String,
    /// Event time, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The event as JSON text, in the one stored form the pipeline writes and reads back on
    /// replay (`pipeline::ingest::event_body`); opaque to the store.
    pub body: String,
}

/// An event as stored in the log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Log position: strictly increasing in append order, never reused.
    pub seq: u64,
    /// Producer-chosen event id.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Event type.
    pub event_type: String,
    /// Event time, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The original JSON text.
    pub body: String,
    /// When the log accepted the event, milliseconds since the Unix epoch.
    pub received_at_ms: i64,
}

/// What happened to one event of an [`EventLog::append_events`] batch.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AppendOutcome {
    /// The event is new and now durable at `seq`.
    Appended {
        /// Log position of the new event.
        seq: u64,
    },
    /// An event with the same `(tenant, id)` was already in the log (or earlier in the same
    /// batch) at `seq`; nothing was written.
    Duplicate {
        /// Log position of the event that was there first.
        seq: u64,
    },
}

impl AppendOutcome {
    /// The log position of the event, new or pre-existing.
    pub fn seq(&self) -> u64 {
        match *self {
            Self::Appended { seq } | Self::Duplicate { seq } => seq,
        }
    }
}

/// The durable event log. Every method that writes is one transaction, durable when it returns.
pub trait EventLog: Send + Sync {
    /// Appends a batch of events in ONE transaction (group commit). Each event is inserted
    /// unless `(tenant, id)` is already in the log — or earlier in the same batch — in which
    /// case it is reported as [`AppendOutcome::Duplicate`] with the original position.
    /// Outcomes are in input order. When this returns `Ok`, every event is durable.
    fn append_events(&self, events: &[NewEvent]) -> StoreResult<Vec<AppendOutcome>> {
        self.append_from_source(events, &SourceProgress::default())
    }

    /// [`EventLog::append_events`], recording in the same transaction where the sources that
    /// delivered the events got to (each partition's next offset replaces the stored one) and
    /// the records they refused: the log and the positions are durable together or not at all.
    /// `events` may be empty (a batch of refused records still moves its partition on).
    fn append_from_source(
        &self,
        events: &[NewEvent],
        progress: &SourceProgress,
    ) -> StoreResult<Vec<AppendOutcome>>;

    /// Up to `limit` events with `seq > after_seq`, in `seq` order (replay on restart).
    fn events_after(&self, after_seq: u64, limit: usize) -> StoreResult<Vec<StoredEvent>>;

    /// Like [`EventLog::events_after`] but only events whose event time is `>= min_ts_ms`
    /// (replaying just the window the dataflow still needs).
    fn events_since_ts(
        &self,
        min_ts_ms: i64,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>>;

    /// Number of events in the log for `tenant`.
    fn event_count(&self, tenant: &str) -> StoreResult<u64>;

    /// Highest `seq` in the log, 0 when empty.
    fn last_event_seq(&self) -> StoreResult<u64>;

    /// Copies everything committed so far from the store's write-ahead log into its main file
    /// and empties the log, returning once done: so that a measurement does not start with the
    /// previous phase's writes still to be copied. A store without such a log has nothing to do.
    fn checkpoint_log(&self) -> StoreResult<()> {
        Ok(())
    }
}
