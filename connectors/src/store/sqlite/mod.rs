//! The embedded [`Store`](crate::store::Store): one SQLite file.
//!
//! This module opens the file, configures its connections, migrates the schema and runs the
//! background checkpointer; each concern's trait is implemented in its own file ([`events`],
//! [`catalog`], [`outbox`], [`reports`], [`sources`], [`secrets`], [`meta`], [`audiences`],
//! [`campaigns`], [`dashboards`]) on the connections and helpers kept here.
//!
//! Durability: the database runs in WAL mode with `synchronous=FULL`, so every commit fsyncs
//! the WAL before it returns; an appended event survives a power cut once `append_events`
//! returns. (`synchronous=NORMAL` would only fsync at checkpoints and could lose the last
//! commits.) The cost is one fsync per transaction, which is why callers batch.
//!
//! Concurrency: one connection writes (behind a mutex, every write an `IMMEDIATE`
//! transaction); a second connection serves reads, which WAL lets run beside the writer and
//! which always see the last committed state. A `busy_timeout` covers other processes opening
//! the same file (e.g. an operator's CLI).
//!
//! Checkpoints: a background thread with its own connection copies the WAL into the database
//! file every [`CHECKPOINT_INTERVAL`] (`PASSIVE`: it never waits for, nor blocks, the writer or
//! readers), so a commit never pays for a checkpoint's writes and fsync; the writer's own
//! automatic checkpoint stays as a backstop should the WAL grow past
//! [`WAL_AUTOCHECKPOINT_PAGES`].

mod audiences;
mod campaigns;
mod catalog;
mod dashboards;
mod events;
mod meta;
mod outbox;
mod reports;
mod secrets;
mod sources;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::store::meta::{SCHEMA_VERSION_KEY, stored_schema_version};
use crate::store::{StoreError, StoreResult};

/// Newest schema version this build creates and understands.
const SCHEMA_VERSION: i64 = 7;

/// How long a statement waits for another process's lock before failing with `busy`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`SqliteStore::checkpoint_wal`] keeps trying while the log is in use.
const CHECKPOINT_LOG_PATIENCE: Duration = Duration::from_secs(10);

/// Page cache per connection, in KiB (negative `cache_size` means KiB in SQLite).
///
/// The writer's is small on purpose. When a B-tree split reorders its new pages, SQLite parks
/// one for a moment under the lock page's number (262,145 with 4 KiB pages), which leaves the
/// page cache believing it holds pages up to there; at the end of that transaction the cache
/// is trimmed to the database's size by visiting every slot of its hash table and every page
/// in it. With 64 MiB (16,384 pages) that took ≈ 0.6 ms per such commit, with the writer held;
/// with 8 MiB ≈ 0.05 ms. Appends touch few pages (the rightmost leaves and index pages), and
/// the operating system's cache serves the rest.
const WRITER_CACHE_KIB: i64 = 8 * 1024;
const READER_CACHE_KIB: i64 = 32 * 1024;

/// WAL size (in 4 KiB pages, so 256 MiB) at which a commit checkpoints itself: only reached if
/// the background checkpointer falls behind. (SQLite's default of 1000 pages checkpointed after
/// nearly every large append batch, doubling the fsyncs on the commit path.)
const WAL_AUTOCHECKPOINT_PAGES: i64 = 65_536;

/// How often the background checkpointer runs. A checkpoint inside a commit made that commit
/// wait for tens of megabytes of writes and an fsync: 45–60 ms at the p99 of `bench ingest`
/// against 28–30 ms without.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// Schema version 1, applied to an empty database.
///
/// `events.seq` is the table's rowid without `AUTOINCREMENT`: no event is ever deleted, so the
/// next rowid (one past the largest) never hands out a number twice, and `AUTOINCREMENT` would
/// read and rewrite its counter in `sqlite_sequence` on every insert (14 % of an append's CPU in
/// `append_throughput`). Stores created before this keep their `AUTOINCREMENT` table, which
/// numbers events the same way.
const SCHEMA_V1: &str = "
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,
    tenant         TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    ts_ms          INTEGER NOT NULL,
    body           TEXT    NOT NULL,
    received_at_ms INTEGER NOT NULL,
    UNIQUE (tenant, id)
);
CREATE TABLE rules (
    tenant        TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    enabled       INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE TABLE destinations (
    tenant        TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    config        TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE TABLE tenants (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    time_zone TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY,
    tenant   TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE notifications (
    id            TEXT PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    rule_id       TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    group_key     TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX notifications_by_tenant ON notifications (tenant, created_at_ms, id);
CREATE TABLE deliveries (
    notification_id    TEXT    NOT NULL,
    destination_id     TEXT    NOT NULL,
    tenant             TEXT    NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER,
    last_error         TEXT,
    claimed            INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (notification_id, destination_id)
);
CREATE INDEX deliveries_by_status ON deliveries (status, next_attempt_at_ms);
CREATE TABLE delivery_attempts (
    notification_id TEXT    NOT NULL,
    destination_id  TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    at_ms           INTEGER NOT NULL,
    outcome         TEXT    NOT NULL,
    status_code     INTEGER,
    error           TEXT,
    duration_ms     INTEGER NOT NULL
);
CREATE INDEX delivery_attempts_by_delivery
    ON delivery_attempts (notification_id, destination_id);
CREATE TABLE open_alerts (
    tenant          TEXT    NOT NULL,
    rule_id         TEXT    NOT NULL,
    group_key       TEXT    NOT NULL,
    since_ms        INTEGER NOT NULL,
    notification_id TEXT    NOT NULL,
    PRIMARY KEY (tenant, rule_id, group_key)
) WITHOUT ROWID;
CREATE INDEX rules_by_id ON rules (id);
CREATE INDEX destinations_by_id ON destinations (id);
";

/// Schema version 2: sealed secrets (see `crate::secrets`) and per-KEK-version bookkeeping.
/// `id` is the re-wrap scan's position; `secret_keks` holds the active KEK version (the
/// highest), each version's encryption count and its resumable re-wrap cursor.
const SCHEMA_V2: &str = "
CREATE TABLE secrets (
    id            INTEGER PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    kek_version   INTEGER NOT NULL,
    dek_nonce     BLOB    NOT NULL,
    wrapped_dek   BLOB    NOT NULL,
    value_nonce   BLOB    NOT NULL,
    ciphertext    BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (tenant, name, version)
);
CREATE TABLE secret_keks (
    kek_version   INTEGER PRIMARY KEY,
    encryptions   INTEGER NOT NULL DEFAULT 0,
    rewrap_cursor INTEGER NOT NULL DEFAULT 0
);
";

/// Schema version 3: ids are scoped per tenant. Rules and destinations were already keyed by
/// (tenant, id); the indexes by bare id only served a global "who owns this id" lookup, which
/// told one tenant which ids another uses. Rows are kept as they are.
const SCHEMA_V3: &str = "
DROP INDEX IF EXISTS rules_by_id;
DROP INDEX IF EXISTS destinations_by_id;
";

/// Schema version 4: scheduled reports and their runs (`IF NOT EXISTS`, so a database whose
/// recorded version is older than its tables, as a restored backup's can be, still migrates). A report's notifications carry the run
/// id as their `group_key`; the partial index finds a run's notifications without adding to
/// the cost of any other notification's insert.
const SCHEMA_V4: &str = "
CREATE TABLE IF NOT EXISTS reports (
    tenant        TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    enabled       INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS report_runs (
    tenant          TEXT    NOT NULL,
    run_id          TEXT    NOT NULL,
    report_id       TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    scheduled_ms    INTEGER NOT NULL,
    trigger         TEXT    NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    status          TEXT    NOT NULL CHECK (status IN ('due', 'complete', 'partial', 'failed')),
    created_at_ms   INTEGER NOT NULL,
    generated_at_ms INTEGER,
    generation_ms   INTEGER,
    error           TEXT,
    PRIMARY KEY (tenant, run_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS report_runs_due ON report_runs (scheduled_ms) WHERE status = 'due';
CREATE INDEX IF NOT EXISTS report_runs_by_report ON report_runs (tenant, report_id, scheduled_ms);
CREATE INDEX IF NOT EXISTS notifications_by_run ON notifications (tenant, group_key) WHERE kind = 'report';
";

/// Schema version 5: where each source partition got to, and the records sources refused.
/// Both are written in the transaction that appends the events the records carried.
const SCHEMA_V5: &str = "
CREATE TABLE IF NOT EXISTS source_positions (
    source        TEXT    NOT NULL,
    partition     INTEGER NOT NULL,
    next_offset   INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (source, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS source_dead_letters (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms     INTEGER NOT NULL,
    source    TEXT    NOT NULL,
    tenant    TEXT,
    topic     TEXT    NOT NULL,
    partition INTEGER NOT NULL,
    offset    INTEGER NOT NULL,
    raw       BLOB    NOT NULL,
    raw_len   INTEGER NOT NULL,
    error     TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS source_dead_letters_by_tenant ON source_dead_letters (tenant, id);
";

/// Schema version 6: CRM contacts and audiences, the audiences' members as the audience engine
/// last committed them, the log of their changes, sizes over time (one per audience and
/// minute), the event types the audience engine has seen per tenant, and campaigns with one
/// row per (campaign, instance, contact, channel) send.
const SCHEMA_V6: &str = "
CREATE TABLE IF NOT EXISTS contacts (
    tenant        TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audiences (
    tenant        TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audience_members (
    tenant   TEXT    NOT NULL,
    audience TEXT    NOT NULL,
    contact  TEXT    NOT NULL,
    since_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, audience, contact)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audience_members_by_contact ON audience_members (tenant, contact);
CREATE TABLE IF NOT EXISTS audience_changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant   TEXT    NOT NULL,
    audience TEXT    NOT NULL,
    contact  TEXT    NOT NULL,
    at_ms    INTEGER NOT NULL,
    entered  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audience_changes_by_audience ON audience_changes (tenant, audience, seq);
CREATE INDEX IF NOT EXISTS audience_changes_by_contact ON audience_changes (tenant, contact, seq);
CREATE TABLE IF NOT EXISTS audience_sizes (
    tenant    TEXT    NOT NULL,
    audience  TEXT    NOT NULL,
    minute_ms INTEGER NOT NULL,
    at_ms     INTEGER NOT NULL,
    size      INTEGER NOT NULL,
    PRIMARY KEY (tenant, audience, minute_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_types (
    tenant     TEXT NOT NULL,
    event_type TEXT NOT NULL,
    PRIMARY KEY (tenant, event_type)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS campaigns (
    tenant         TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    body           TEXT    NOT NULL,
    expanded_at_ms INTEGER,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS campaign_sends (
    tenant          TEXT    NOT NULL,
    campaign        TEXT    NOT NULL,
    instance        TEXT    NOT NULL,
    contact         TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    due_ms          INTEGER NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'held', 'sent', 'capped',
                                                       'unsubscribed', 'not_member', 'failed')),
    reason          TEXT,
    notification_id TEXT,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (tenant, campaign, instance, contact, channel)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS campaign_sends_due ON campaign_sends (due_ms)
    WHERE status IN ('pending', 'held');
CREATE INDEX IF NOT EXISTS campaign_sends_by_contact
    ON campaign_sends (tenant, contact, updated_at_ms);
";

/// Schema version 7: saved console dashboards, keyed by (tenant, id) like reports.
const SCHEMA_V7: &str = "
CREATE TABLE IF NOT EXISTS dashboards (
    tenant        TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    title         TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
";

/// The embedded SQLite [`Store`](crate::store::Store). See the module docs for durability and
/// concurrency.
#[derive(Debug)]
pub struct SqliteStore {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    /// Dropping it stops the checkpointer thread.
    _checkpointer: Option<std::sync::mpsc::Sender<()>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, creating its parent directory and
    /// bringing the schema up to date.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        }
        let mut writer = Connection::open(path).map_err(db("open database"))?;
        configure(&writer, WRITER_CACHE_KIB)?;
        migrate(&mut writer)?;
        let reader = Connection::open(path).map_err(db("open read connection"))?;
        configure(&reader, READER_CACHE_KIB)?;
        reader
            .pragma_update(None, "query_only", true)
            .map_err(db("configure read connection"))?;
        let checkpointer = Connection::open(path).map_err(db("open checkpoint connection"))?;
        configure(&checkpointer, 1024)?;
        Ok(Self {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            _checkpointer: spawn_checkpointer(checkpointer, path),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves at most an open transaction, which rusqlite
        // rolls back on drop; the connection itself is still sound.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in an `IMMEDIATE` write transaction and commits it.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(op))?;
        let out = f(&tx)?;
        tx.commit().map_err(db(op))?;
        Ok(out)
    }

    /// Runs `f` in a read transaction on the read connection (one consistent snapshot).
    fn read<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut conn = self.reader();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(db(op))?;
        let out = f(&tx)?;
        tx.finish().map_err(db(op))?;
        Ok(out)
    }

    /// Copies the whole WAL into the database file and truncates it: what
    /// [`EventLog::checkpoint_log`](crate::store::EventLog::checkpoint_log) does on SQLite.
    fn checkpoint_wal(&self) -> StoreResult<()> {
        const OP: &str = "checkpoint the WAL";
        // On the writer, so no commit can add to the log while it is emptied.
        let conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // The background checkpointer, or a reader still on an older snapshot, can hold part of
        // the log for a moment: try again until they let go.
        let deadline = std::time::Instant::now() + CHECKPOINT_LOG_PATIENCE;
        loop {
            let outcome = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            });
            let source = match outcome {
                Ok((0, _, _)) => return Ok(()),
                Ok((_, log, done)) => rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some(format!(
                        "{done} of {log} WAL frames copied; the rest are in use"
                    )),
                ),
                Err(e) => e,
            };
            let in_use = matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            );
            if !in_use || std::time::Instant::now() >= deadline {
                return Err(db(OP)(source));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts the background checkpointer on its own connection; `None` if no thread could be
/// started (the writer's automatic checkpoint then does the work, as SQLite does by default).
fn spawn_checkpointer(conn: Connection, path: &Path) -> Option<std::sync::mpsc::Sender<()>> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let path = path.display().to_string();
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            // Runs until the store (the only sender) is dropped.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(CHECKPOINT_INTERVAL)
            {
                let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
                });
                match result {
                    Ok((log, done)) => {
                        tracing::trace!(%path, wal_frames = log, checkpointed = done, "checkpoint");
                    }
                    Err(e) => tracing::warn!(%path, error = %e, "background WAL checkpoint failed"),
                }
            }
        });
    match spawned {
        Ok(_) => Some(stop),
        Err(e) => {
            tracing::warn!(error = %e, "no background checkpointer; commits checkpoint the WAL themselves");
            None
        }
    }
}

fn configure(conn: &Connection, cache_kib: i64) -> StoreResult<()> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(db("set busy timeout"))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(db("enable WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::InvalidInput(format!(
            "the database cannot use WAL journaling (got journal_mode={mode}); \
             is it on a network file system?"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db("set synchronous=FULL"))?;
    conn.pragma_update(None, "cache_size", -cache_kib)
        .map_err(db("set cache size"))?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        .map_err(db("set WAL checkpoint interval"))?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(db("set temp store"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db("migrate schema"))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    )
    .map_err(db("create meta table"))?;
    let found: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [SCHEMA_VERSION_KEY],
            |row| row.get(0),
        )
        .optional()
        .map_err(db("read schema version"))?;
    let found = stored_schema_version(found.as_deref(), SCHEMA_VERSION)?;
    // One arm per version step; each runs once, inside this transaction.
    if found < 1 {
        tx.execute_batch(SCHEMA_V1)
            .map_err(db("create schema v1"))?;
    }
    if found < 2 {
        tx.execute_batch(SCHEMA_V2)
            .map_err(db("create schema v2"))?;
    }
    if found < 3 {
        tx.execute_batch(SCHEMA_V3)
            .map_err(db("migrate schema to v3"))?;
    }
    if found < 4 {
        tx.execute_batch(SCHEMA_V4)
            .map_err(db("migrate schema to v4"))?;
    }
    if found < 5 {
        tx.execute_batch(SCHEMA_V5)
            .map_err(db("migrate schema to v5"))?;
    }
    if found < 6 {
        tx.execute_batch(SCHEMA_V6)
            .map_err(db("migrate schema to v6"))?;
    }
    if found < 7 {
        tx.execute_batch(SCHEMA_V7)
            .map_err(db("migrate schema to v7"))?;
    }
    if found < SCHEMA_VERSION {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![SCHEMA_VERSION_KEY, SCHEMA_VERSION.to_string()],
        )
        .map_err(db("record schema version"))?;
        tracing::info!(from = found, to = SCHEMA_VERSION, "store schema migrated");
    }
    tx.commit().map_err(db("migrate schema"))
}

/// Maps a driver error to a [`StoreError`], naming the operation. Conversion failures mean a
/// row holds what the schema does not allow, so they are reported as corruption.
fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |source| match source {
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt(format!("{op}: {source}")),
        source => StoreError::Database { op, source },
    }
}

/// SQLite integers are signed; positions and limits beyond `i64::MAX` mean "everything".
fn clamp_i64(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}
