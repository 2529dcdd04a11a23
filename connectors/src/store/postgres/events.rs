//! [`EventLog`] on PostgreSQL: the `events` table, one row per accepted event, `seq` an
//! identity column.
//!
//! An append is one transaction: the batch goes into a temporary table with `COPY … FROM STDIN
//! BINARY` (one round trip for the whole batch; only the first occurrence of each (tenant, id)),
//! one `INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING` moves them into the log in batch order
//! and answers the new `seq`s, and only when some were already logged does one join read theirs.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use futures::pin_mut;
use tokio_postgres::Row;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::{PostgresStore, clamp_i64, pg, unsigned};
use crate::clock::now_ms;
use crate::store::{
    AppendOutcome, EventLog, NewEvent, SourceProgress, StoreError, StoreResult, StoredEvent,
};

/// Columns of a [`StoredEvent`], in [`event_from_row`] order.
const EVENT_COLUMNS: &str = "seq, id, tenant, event_type, ts_ms, body, received_at_ms";

/// The batch being appended, private to the connection and emptied at every commit.
const INCOMING: &str = "CREATE TEMPORARY TABLE IF NOT EXISTS incoming_events (
    ord        BIGINT NOT NULL,
    tenant     TEXT   NOT NULL,
    id         TEXT   NOT NULL,
    event_type TEXT   NOT NULL,
    ts_ms      BIGINT NOT NULL,
    body       TEXT   NOT NULL
) ON COMMIT DELETE ROWS";

fn event_from_row(row: &Row) -> StoreResult<StoredEvent> {
    Ok(StoredEvent {
        seq: unsigned(row.get(0), "events.seq")?,
        id: row.get(1),
        tenant: row.get(2),
        event_type: row.get(3),
        ts_ms: row.get(4),
        body: row.get(5),
        received_at_ms: row.get(6),
    })
}

impl EventLog for PostgresStore {
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
        self.write(OP, async |tx| {
            super::sources::record_progress(tx, progress, received_at_ms).await?;
            if events.is_empty() {
                return Ok(Vec::new());
            }
            tx.batch_execute(INCOMING).await.map_err(pg(OP))?;
            let sink = tx
                .copy_in(
                    "COPY incoming_events (ord, tenant, id, event_type, ts_ms, body)
                     FROM STDIN BINARY",
                )
                .await
                .map_err(pg(OP))?;
            let writer = BinaryCopyInWriter::new(
                sink,
                &[
                    Type::INT8,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT8,
                    Type::TEXT,
                ],
            );
            pin_mut!(writer);
            // Only the first occurrence of each (tenant, id) in the batch goes in; the others
            // are duplicates of it whatever happens.
            let mut first: HashMap<(&str, &str), usize> = HashMap::with_capacity(events.len());
            for (ord, event) in events.iter().enumerate() {
                if let Entry::Vacant(slot) = first.entry((&event.tenant, &event.id)) {
                    slot.insert(ord);
                    writer
                        .as_mut()
                        .write(&[
                            &clamp_i64(ord),
                            &event.tenant,
                            &event.id,
                            &event.event_type,
                            &event.ts_ms,
                            &event.body,
                        ])
                        .await
                        .map_err(pg(OP))?;
                }
            }
            writer.finish().await.map_err(pg(OP))?;
            // In batch order: the identity column numbers rows in the order they are inserted.
            let inserted = tx
                .query(
                    "INSERT INTO events (tenant, id, event_type, ts_ms, body, received_at_ms)
                     SELECT tenant, id, event_type, ts_ms, body, $1
                     FROM incoming_events ORDER BY ord
                     ON CONFLICT (tenant, id) DO NOTHING
                     RETURNING seq, tenant, id",
                    &[&received_at_ms],
                )
                .await
                .map_err(pg(OP))?;
            // By the batch position of each first occurrence: its seq, and whether it is new.
            let mut seqs: HashMap<usize, (i64, bool)> = HashMap::with_capacity(first.len());
            for row in &inserted {
                let key = (row.get::<_, &str>(1), row.get::<_, &str>(2));
                if let Some(&ord) = first.get(&key) {
                    seqs.insert(ord, (row.get(0), true));
                }
            }
            // Events already in the log: their seq (one lookup, only when there are some).
            if seqs.len() < first.len() {
                let logged = tx
                    .query(
                        "SELECT i.ord, e.seq FROM incoming_events i
                         JOIN events e ON e.tenant = i.tenant AND e.id = i.id",
                        &[],
                    )
                    .await
                    .map_err(pg(OP))?;
                for row in &logged {
                    if let Ok(ord) = usize::try_from(row.get::<_, i64>(0)) {
                        seqs.entry(ord).or_insert((row.get(1), false));
                    }
                }
            }
            events
                .iter()
                .enumerate()
                .map(|(ord, event)| {
                    let key = (event.tenant.as_str(), event.id.as_str());
                    let found = first.get(&key).and_then(|at| Some((*at, *seqs.get(at)?)));
                    let Some((at, (seq, appended))) = found else {
                        return Err(StoreError::Corrupt(format!(
                            "appended event {:?} of tenant {:?} is not in the log",
                            event.id, event.tenant
                        )));
                    };
                    let seq = unsigned(seq, "events.seq")?;
                    // Appended at its first occurrence only.
                    Ok(if appended && at == ord {
                        AppendOutcome::Appended { seq }
                    } else {
                        AppendOutcome::Duplicate { seq }
                    })
                })
                .collect()
        })
    }

    fn events_after(&self, after_seq: u64, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        const OP: &str = "read events";
        self.read(OP, async |tx| {
            tx.query(
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"),
                &[&clamp_i64(after_seq), &clamp_i64(limit)],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(event_from_row)
            .collect()
        })
    }

    fn events_since_ts(
        &self,
        min_ts_ms: i64,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        const OP: &str = "read recent events";
        self.read(OP, async |tx| {
            tx.query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 AND ts_ms >= $2
                     ORDER BY seq LIMIT $3"
                ),
                &[&clamp_i64(after_seq), &min_ts_ms, &clamp_i64(limit)],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(event_from_row)
            .collect()
        })
    }

    fn event_count(&self, tenant: &str) -> StoreResult<u64> {
        const OP: &str = "count events";
        self.read(OP, async |tx| {
            let row = tx
                .query_one("SELECT count(*) FROM events WHERE tenant = $1", &[&tenant])
                .await
                .map_err(pg(OP))?;
            unsigned(row.get(0), "the event count")
        })
    }

    fn last_event_seq(&self) -> StoreResult<u64> {
        const OP: &str = "read last event seq";
        self.read(OP, async |tx| {
            let row = tx
                .query_one("SELECT coalesce(max(seq), 0)::BIGINT FROM events", &[])
                .await
                .map_err(pg(OP))?;
            unsigned(row.get(0), "events.seq")
        })
    }
}
