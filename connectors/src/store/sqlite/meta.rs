//! [`Meta`] on SQLite: the `meta` table, which also holds the schema version.

use rusqlite::{OptionalExtension, Transaction};

use super::{SqliteStore, db};
use crate::store::meta::check_meta_key;
use crate::store::{Meta, StoreError, StoreResult};

impl Meta for SqliteStore {
    fn get_meta(&self, key: &str) -> StoreResult<Option<String>> {
        const OP: &str = "get meta";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .map_err(db(OP))?;
        stmt.query_row([key], |row| row.get(0))
            .optional()
            .map_err(db(OP))
    }

    fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        check_meta_key(key)?;
        self.write("set meta", |tx| put_meta(tx, key, value))
    }
}

/// Sets `key` inside `tx`: [`Meta::set_meta`] in its own transaction, and the checkpoint of
/// [`Outbox::commit_step`](crate::store::Outbox::commit_step) in the step's.
pub(super) fn put_meta(tx: &Transaction<'_>, key: &str, value: &str) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut stmt| stmt.execute([key, value]))
    .map_err(db("set meta"))?;
    Ok(())
}

/// A log position kept under `key` (0 when none is), read on the read connection: where the
/// audience engine and the campaigns each got to.
pub(super) fn read_position(store: &SqliteStore, key: &str, op: &'static str) -> StoreResult<u64> {
    position_in(&store.reader(), key, op)
}

/// A log position kept under `key` (0 when none is), read on `conn`: inside a write
/// transaction, it cannot move until the transaction ends.
pub(super) fn position_in(
    conn: &rusqlite::Connection,
    key: &str,
    op: &'static str,
) -> StoreResult<u64> {
    let text: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut stmt| stmt.query_row([key], |row| row.get(0)).optional())
        .map_err(db(op))?;
    match text {
        None => Ok(0),
        Some(text) => text
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("meta.{key} is not a position: {text:?}"))),
    }
}
