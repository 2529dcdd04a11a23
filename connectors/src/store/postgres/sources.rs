//! [`Sources`] on PostgreSQL: `source_positions` (one row per source partition) and
//! `source_dead_letters`, written inside the event append's transaction.
//!
//! A dead letter's record offset is the column `record_offset` (`offset` is reserved in
//! PostgreSQL); partition numbers are stored as `BIGINT` and read back as the traits' `u32`.

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::{PostgresStore, clamp_i64, pg, unsigned};
use crate::store::{
    DeadLetter, NewDeadLetter, SourcePosition, SourceProgress, Sources, StoreError, StoreResult,
};

/// Writes a batch's positions and dead letters into the append's transaction `tx`.
pub(super) async fn record_progress(
    tx: &Transaction<'_>,
    progress: &SourceProgress,
    now_ms: i64,
) -> StoreResult<()> {
    const OP: &str = "record source progress";
    if progress.is_empty() {
        return Ok(());
    }
    let position = tx
        .prepare_cached(
            "INSERT INTO source_positions (source, partition, next_offset, updated_at_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (source, partition) DO UPDATE
                SET next_offset = excluded.next_offset, updated_at_ms = excluded.updated_at_ms",
        )
        .await
        .map_err(pg(OP))?;
    for p in &progress.positions {
        tx.execute(
            &position,
            &[&p.source, &i64::from(p.partition), &p.next_offset, &now_ms],
        )
        .await
        .map_err(pg(OP))?;
    }
    let letter = tx
        .prepare_cached(
            "INSERT INTO source_dead_letters
                (at_ms, source, tenant, topic, partition, record_offset, raw, raw_len, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await
        .map_err(pg(OP))?;
    for d in &progress.dead_letters {
        tx.execute(
            &letter,
            &[
                &now_ms,
                &d.source,
                &d.tenant,
                &d.topic,
                &i64::from(d.partition),
                &d.offset,
                &d.raw,
                &clamp_i64(d.raw_len),
                &d.error,
            ],
        )
        .await
        .map_err(pg(OP))?;
    }
    Ok(())
}

/// Columns of a [`DeadLetter`], in [`dead_letter_from_row`] order.
const DEAD_LETTER_COLUMNS: &str =
    "id, at_ms, source, tenant, topic, partition, record_offset, raw, raw_len, error";

/// A stored partition number (a `BIGINT`) as the traits' `u32`.
fn partition(value: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{what} is not a partition number: {value}")))
}

fn dead_letter_from_row(row: &Row) -> StoreResult<DeadLetter> {
    Ok(DeadLetter {
        id: unsigned(row.get(0), "source_dead_letters.id")?,
        at_ms: row.get(1),
        letter: NewDeadLetter {
            source: row.get(2),
            tenant: row.get(3),
            topic: row.get(4),
            partition: partition(row.get(5), "source_dead_letters.partition")?,
            offset: row.get(6),
            raw: row.get(7),
            raw_len: unsigned(row.get(8), "source_dead_letters.raw_len")?,
            error: row.get(9),
        },
    })
}

impl Sources for PostgresStore {
    fn source_positions(&self, source: &str) -> StoreResult<Vec<SourcePosition>> {
        const OP: &str = "read source positions";
        self.read(OP, async |tx| {
            tx.query(
                "SELECT partition, next_offset FROM source_positions WHERE source = $1
                 ORDER BY partition",
                &[&source],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| {
                Ok(SourcePosition {
                    source: source.to_owned(),
                    partition: partition(row.get(0), "source_positions.partition")?,
                    next_offset: row.get(1),
                })
            })
            .collect()
        })
    }

    /// A dead letter whose tenant is unknown (`tenant` NULL) matches no tenant, so no tenant
    /// ever sees it.
    fn dead_letters(
        &self,
        tenant: &str,
        after_id: u64,
        limit: usize,
    ) -> StoreResult<Vec<DeadLetter>> {
        const OP: &str = "read dead letters";
        self.read(OP, async |tx| {
            tx.query(
                &format!(
                    "SELECT {DEAD_LETTER_COLUMNS} FROM source_dead_letters
                     WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3"
                ),
                &[&tenant, &clamp_i64(after_id), &clamp_i64(limit)],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(dead_letter_from_row)
            .collect()
        })
    }
}
