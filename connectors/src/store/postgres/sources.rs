//! [`Sources`] on PostgreSQL: `source_positions` (one row per source partition) and
//! `source_dead_letters`, written inside the event append's transaction.

use deadpool_postgres::Transaction;

use super::{clamp_i64, pg};
use crate::store::{SourceProgress, StoreResult};

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
