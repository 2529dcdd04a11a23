//! [`Sources`] on SQLite: `source_positions` (one row per source partition) and
//! `source_dead_letters`, written inside the event append's transaction.

use rusqlite::{Row, Transaction, params};

use super::{SqliteStore, clamp_i64, db};
use crate::store::{
    DeadLetter, NewDeadLetter, SourcePosition, SourceProgress, Sources, StoreResult,
};

/// Writes a batch's positions and dead letters into the append's transaction `tx`.
pub(super) fn record_progress(
    tx: &Transaction<'_>,
    progress: &SourceProgress,
    now_ms: i64,
) -> StoreResult<()> {
    const OP: &str = "record source progress";
    if progress.is_empty() {
        return Ok(());
    }
    let mut position = tx
        .prepare_cached(
            "INSERT INTO source_positions (source, partition, next_offset, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source, partition) DO UPDATE
                SET next_offset = excluded.next_offset, updated_at_ms = excluded.updated_at_ms",
        )
        .map_err(db(OP))?;
    for p in &progress.positions {
        position
            .execute(params![p.source, p.partition, p.next_offset, now_ms])
            .map_err(db(OP))?;
    }
    let mut letter = tx
        .prepare_cached(
            "INSERT INTO source_dead_letters
                (at_ms, source, tenant, topic, partition, offset, raw, raw_len, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(db(OP))?;
    for d in &progress.dead_letters {
        letter
            .execute(params![
                now_ms,
                d.source,
                d.tenant,
                d.topic,
                d.partition,
                d.offset,
                d.raw,
                clamp_i64(d.raw_len),
                d.error
            ])
            .map_err(db(OP))?;
    }
    Ok(())
}

fn dead_letter_from_row(row: &Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: row.get(0)?,
        at_ms: row.get(1)?,
        letter: NewDeadLetter {
            source: row.get(2)?,
            tenant: row.get(3)?,
            topic: row.get(4)?,
            partition: row.get(5)?,
            offset: row.get(6)?,
            raw: row.get(7)?,
            raw_len: row.get(8)?,
            error: row.get(9)?,
        },
    })
}

impl Sources for SqliteStore {
    fn source_positions(&self, source: &str) -> StoreResult<Vec<SourcePosition>> {
        const OP: &str = "read source positions";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT partition, next_offset FROM source_positions WHERE source = ?1
                 ORDER BY partition",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([source], |row| {
                Ok(SourcePosition {
                    source: source.to_owned(),
                    partition: row.get(0)?,
                    next_offset: row.get(1)?,
                })
            })
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn dead_letters(
        &self,
        tenant: &str,
        after_id: u64,
        limit: usize,
    ) -> StoreResult<Vec<DeadLetter>> {
        const OP: &str = "read dead letters";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, at_ms, source, tenant, topic, partition, offset, raw, raw_len, error
                 FROM source_dead_letters WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map(
                params![tenant, clamp_i64(after_id), clamp_i64(limit)],
                dead_letter_from_row,
            )
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }
}
