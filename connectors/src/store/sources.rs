//! What external sources (a Fluvio topic's partitions) have delivered into the event log: each
//! partition's next offset, and the records that could not become events (dead letters).
//!
//! Both are written by [`EventLog::append_from_source`](super::EventLog::append_from_source) in
//! the same transaction as the events the records carried, so the log and the positions never
//! disagree: after a crash a source resumes at exactly the first record the log does not hold,
//! and a dead-lettered record is recorded once.

use serde::{Deserialize, Serialize};

use super::StoreResult;

/// The longest raw record a dead letter keeps; the rest is cut (its full size is kept).
pub const DEAD_LETTER_RAW_BYTES: usize = 4096;

/// One partition's progress: the offset of the first record not yet in the log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SourcePosition {
    /// The source's name (`[[sources.fluvio]] name`).
    pub source: String,
    /// Partition number.
    pub partition: u32,
    /// Offset of the next record to read.
    pub next_offset: i64,
}

/// A record that could not become an event, to be recorded with the batch that passed it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewDeadLetter {
    /// The source's name.
    pub source: String,
    /// The tenant the record was for, when it is known (a topic bound to one tenant, or a
    /// multi-tenant topic's record naming a configured tenant); `None` otherwise, and then no
    /// tenant sees it.
    pub tenant: Option<String>,
    /// Topic the record came from.
    pub topic: String,
    /// Partition the record came from.
    pub partition: u32,
    /// The record's offset.
    pub offset: i64,
    /// The record's bytes, at most [`DEAD_LETTER_RAW_BYTES`] (the caller cuts them).
    pub raw: Vec<u8>,
    /// The record's full size in bytes.
    pub raw_len: u64,
    /// Why it was refused.
    pub error: String,
}

/// A recorded dead letter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Position in the dead-letter table, increasing; the cursor of [`Sources::dead_letters`].
    pub id: u64,
    /// When it was recorded, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The record and why it was refused.
    #[serde(flatten)]
    pub letter: NewDeadLetter,
}

/// Everything a source batch records beside its events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceProgress {
    /// Each partition's next offset after the batch.
    pub positions: Vec<SourcePosition>,
    /// The batch's refused records.
    pub dead_letters: Vec<NewDeadLetter>,
}

impl SourceProgress {
    /// Whether there is nothing to record.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty() && self.dead_letters.is_empty()
    }

    /// Adds `other`'s progress: a partition's position becomes the further of the two.
    pub fn merge(&mut self, other: SourceProgress) {
        for position in other.positions {
            match self
                .positions
                .iter_mut()
                .find(|p| p.source == position.source && p.partition == position.partition)
            {
                Some(p) => p.next_offset = p.next_offset.max(position.next_offset),
                None => self.positions.push(position),
            }
        }
        self.dead_letters.extend(other.dead_letters);
    }
}

/// Source positions and dead letters (written through
/// [`EventLog::append_from_source`](super::EventLog::append_from_source)).
pub trait Sources: Send + Sync {
    /// Every partition's stored next offset for `source`, in partition order.
    fn source_positions(&self, source: &str) -> StoreResult<Vec<SourcePosition>>;

    /// Up to `limit` of `tenant`'s dead letters with `id > after_id`, oldest first.
    fn dead_letters(
        &self,
        tenant: &str,
        after_id: u64,
        limit: usize,
    ) -> StoreResult<Vec<DeadLetter>>;
}
