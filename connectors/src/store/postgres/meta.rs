//! [`Meta`] on PostgreSQL: the `meta` table, which also holds the schema version.

use deadpool_postgres::Transaction;

use super::{PostgresStore, pg};
use crate::store::meta::check_meta_key;
use crate::store::{Meta, StoreError, StoreResult};

impl Meta for PostgresStore {
    fn get_meta(&self, key: &str) -> StoreResult<Option<String>> {
        const OP: &str = "get meta";
        self.read(OP, async |tx| {
            let row = tx
                .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
                .await
                .map_err(pg(OP))?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        check_meta_key(key)?;
        self.write("set meta", async |tx| put_meta(tx, key, value).await)
    }

    fn pool_stats(&self) -> Option<crate::store::PoolStats> {
        Some(self.stats())
    }

    fn wait_to_lead(
        &self,
        standing_by: &dyn Fn(),
    ) -> StoreResult<Option<Box<dyn crate::store::Leadership>>> {
        Ok(Some(self.wait_for_lease(standing_by)))
    }
}

/// Sets `key` inside `tx`: [`Meta::set_meta`] in its own transaction, and the checkpoint of
/// [`Outbox::commit_step`](crate::store::Outbox::commit_step) in the step's.
pub(super) async fn put_meta(tx: &Transaction<'_>, key: &str, value: &str) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&key, &value],
    )
    .await
    .map_err(pg("set meta"))?;
    Ok(())
}

/// A log position kept under `key` (0 when none is): where the audience engine and the
/// campaigns each got to.
pub(super) fn read_position(store: &PostgresStore, key: &str) -> StoreResult<u64> {
    position_from(key, store.get_meta(key)?)
}

/// A log position kept under `key` (0 when none is), read inside `tx`: inside a write
/// transaction, which holds the store's write lock, it cannot move until the transaction ends.
pub(super) async fn position_in(
    tx: &Transaction<'_>,
    key: &str,
    op: &'static str,
) -> StoreResult<u64> {
    let row = tx
        .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
        .await
        .map_err(pg(op))?;
    position_from(key, row.map(|row| row.get(0)))
}

fn position_from(key: &str, text: Option<String>) -> StoreResult<u64> {
    match text {
        None => Ok(0),
        Some(text) => text
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("meta.{key} is not a position: {text:?}"))),
    }
}
