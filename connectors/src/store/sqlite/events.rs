//! [`EventLog`] on SQLite: the `events` table, one row per accepted event, `seq` its rowid.

use rusqlite::{Row, params};

use super::{SqliteStore, clamp_i64, db};
use crate::clock::now_ms;
use crate::store::{
    AppendOutcome, EventLog, NewEvent, SourceProgress, StoreError, StoreResult, StoredEvent,
};

/// Columns of a [`StoredEvent`], in [`event_from_row`] order.
const EVENT_COLUMNS: &str = "seq, id, tenant, event_type, ts_ms, body, received_at_ms";

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        seq: row.get(0)?,
        id: row.get(1)?,
        tenant: row.get(2)?,
        event_type: row.get(3)?,
        ts_ms: row.get(4)?,
        body: row.get(5)?,
        received_at_ms: row.get(6)?,
    })
}

impl EventLog for SqliteStore {
    fn append_from_source(
        &self,
        events: &[NewEvent],
        progress: &SourceProgress,
    ) -> StoreResult<Vec<AppendOutcome>> {
        const OP: &str = "append events";
        if events.is_empty() && progress.is_empty() {
            return Ok(Vec::new());
        }
        let received_at_ms = now_ms();
        self.write(OP, |tx| {
            super::sources::record_progress(tx, progress, received_at_ms)?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (tenant, id, event_type, ts_ms, body, received_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (tenant, id) DO NOTHING",
                )
                .map_err(db(OP))?;
            let mut existing = tx
                .prepare_cached("SELECT seq FROM events WHERE tenant = ?1 AND id = ?2")
                .map_err(db(OP))?;
            let mut outcomes = Vec::with_capacity(events.len());
            for event in events {
                let inserted = insert
                    .execute(params![
                        event.tenant,
                        event.id,
                        event.event_type,
                        event.ts_ms,
                        event.body,
                        received_at_ms
                    ])
                    .map_err(db(OP))?;
                let outcome = if inserted == 1 {
                    let seq = u64::try_from(tx.last_insert_rowid())
                        .map_err(|_| StoreError::Corrupt("events.seq went negative".to_owned()))?;
                    AppendOutcome::Appended { seq }
                } else {
                    let seq = existing
                        .query_row(params![event.tenant, event.id], |row| row.get(0))
                        .map_err(db(OP))?;
                    AppendOutcome::Duplicate { seq }
                };
                outcomes.push(outcome);
            }
            Ok(outcomes)
        })
    }

    fn events_after(&self, after_seq: u64, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        const OP: &str = "read events";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))
            .map_err(db(OP))?;
        let rows = stmt
            .query_map(
                params![clamp_i64(after_seq), clamp_i64(limit)],
                event_from_row,
            )
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn events_since_ts(
        &self,
        min_ts_ms: i64,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        const OP: &str = "read recent events";
        let conn = self.reader();
        // A scan in seq order with a filter: no index on ts_ms, so appends stay cheap; a full
        // replay reads each row once across all pages.
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 AND ts_ms >= ?2
                 ORDER BY seq LIMIT ?3"
            ))
            .map_err(db(OP))?;
        let rows = stmt
            .query_map(
                params![clamp_i64(after_seq), min_ts_ms, clamp_i64(limit)],
                event_from_row,
            )
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn event_count(&self, tenant: &str) -> StoreResult<u64> {
        const OP: &str = "count events";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT count(*) FROM events WHERE tenant = ?1")
            .map_err(db(OP))?;
        stmt.query_row([tenant], |row| row.get(0)).map_err(db(OP))
    }

    fn last_event_seq(&self) -> StoreResult<u64> {
        const OP: &str = "read last event seq";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT coalesce(max(seq), 0) FROM events")
            .map_err(db(OP))?;
        stmt.query_row([], |row| row.get(0)).map_err(db(OP))
    }

    fn checkpoint_log(&self) -> StoreResult<()> {
        self.checkpoint_wal()
    }
}
