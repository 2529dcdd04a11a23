//! Process-wide metadata: small named values such as the engine's processed position.

use super::{StoreError, StoreResult};

/// Meta key holding the schema version, which every backend keeps itself.
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// Process-wide metadata values. The key `schema_version` belongs to the store itself and
/// cannot be set.
pub trait Meta: Send + Sync {
    /// A process-wide metadata value (e.g. the pipeline's replay checkpoint).
    fn get_meta(&self, key: &str) -> StoreResult<Option<String>>;

    /// Sets a process-wide metadata value.
    fn set_meta(&self, key: &str, value: &str) -> StoreResult<()>;

    /// The connection pool and write contention, for a store that has them (PostgreSQL); the
    /// embedded store has one connection and no pool.
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }

    /// Waits until this process may run the engine (the dataflow, the sender, the schedulers)
    /// on a store several processes can share, calling `standing_by` once if another holds it
    /// now; `None` for a store only this process can use (SQLite: the data directory's lock
    /// sees to that).
    fn wait_to_lead(&self, standing_by: &dyn Fn()) -> StoreResult<Option<Box<dyn Leadership>>> {
        let _ = standing_by;
        Ok(None)
    }
}

/// The engine lease of a process on a shared store, from [`Meta::wait_to_lead`]. It lasts as
/// long as the process (or its connection) lives; whoever waits next takes it over.
pub trait Leadership: Send {
    /// Whether this process still holds the lease: after a lost connection it is taken again
    /// unless another process took it meanwhile (`Ok(false)`: this one must stop leading). An
    /// error means the database cannot be asked now.
    fn check(&mut self) -> StoreResult<bool>;
}

/// A shared store's connection pool and writes, as `/metrics` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PoolStats {
    /// Connections the pool may open.
    pub max_size: usize,
    /// Connections open now.
    pub open: usize,
    /// Open connections idle in the pool.
    pub idle: usize,
    /// Calls waiting for a connection now.
    pub waiting: usize,
    /// Write transactions committed or attempted since the store opened.
    pub writes: u64,
    /// Time write transactions spent waiting for the write lock (another writer, possibly in
    /// another process, held it), in total: the store's conflicts, as writes are serialized.
    pub write_lock_wait_seconds: f64,
    /// Write transactions that waited more than a millisecond for the lock.
    pub write_lock_contended: u64,
}

/// Refuses the key the store keeps its schema version under.
pub(crate) fn check_meta_key(key: &str) -> StoreResult<()> {
    if key == SCHEMA_VERSION_KEY {
        return Err(StoreError::InvalidInput(format!(
            "meta key {SCHEMA_VERSION_KEY:?} is reserved for the store itself"
        )));
    }
    Ok(())
}

/// The schema version a store holds (`text`, its `meta` value; 0 for a new store), refused when
/// it is newer than `supported`, the newest this build knows.
pub(crate) fn stored_schema_version(text: Option<&str>, supported: i64) -> StoreResult<i64> {
    let found = match text {
        None => 0,
        Some(text) => text.parse::<i64>().map_err(|_| {
            StoreError::Corrupt(format!("meta.schema_version is not a number: {text:?}"))
        })?,
    };
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    Ok(found)
}
