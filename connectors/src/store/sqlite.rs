//! The embedded [`Store`]: one SQLite file.
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

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::{
    AppendOutcome, DeliveryAttempt, DeliveryNext, DeliveryStatus, DeliveryView, DueDelivery,
    KekUsage, NewEvent, NewNotification, NotificationFilter, NotificationView, ObjectKind,
    OpenAlert, PositionedSecretRow, RewrappedSecretRow, SecretInfo, SecretPut, SecretRow,
    SecretRows, SecretWritePolicy, Store, StoreError, StoreResult, StoredDestination, StoredEvent,
    StoredRule, Tenant,
};

/// Newest schema version this build creates and understands.
const SCHEMA_VERSION: i64 = 2;

/// Meta key holding the schema version; not writable through [`Store::set_meta`].
const SCHEMA_VERSION_KEY: &str = "schema_version";

/// How long a statement waits for another process's lock before failing with `busy`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`Store::checkpoint_log`] keeps trying while the log is in use.
const CHECKPOINT_LOG_PATIENCE: Duration = Duration::from_secs(10);

/// Page cache per connection, in KiB (negative `cache_size` means KiB in SQLite).
const WRITER_CACHE_KIB: i64 = 64 * 1024;
const READER_CACHE_KIB: i64 = 32 * 1024;

/// WAL size (in 4 KiB pages, so 256 MiB) at which a commit checkpoints itself: only reached if
/// the background checkpointer falls behind. (SQLite's default of 1000 pages checkpointed after
/// nearly every large append batch, doubling the fsyncs on the commit path.)
const WAL_AUTOCHECKPOINT_PAGES: i64 = 65_536;

/// How often the background checkpointer runs. A checkpoint inside a commit made that commit
/// wait for tens of megabytes of writes and an fsync: 45–60 ms at the p99 of `bench ingest`
/// against 28–30 ms without.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// Default page size of [`Store::list_notifications`].
const DEFAULT_NOTIFICATION_LIMIT: usize = 100;

/// Schema version 1, applied to an empty database.
const SCHEMA_V1: &str = "
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
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

/// Columns of a [`StoredEvent`], in [`event_from_row`] order.
const EVENT_COLUMNS: &str = "seq, id, tenant, event_type, ts_ms, body, received_at_ms";

/// Due deliveries in [`due_from_row`] column order; `d` = deliveries, `n` = notifications,
/// `x` = destinations (NULL columns when the destination was deleted).
const DUE_SELECT: &str = "
SELECT d.notification_id, d.tenant, d.attempts, n.payload, n.kind, n.created_at_ms,
       d.destination_id, x.kind, x.config, x.updated_at_ms
FROM deliveries d
JOIN notifications n ON n.id = d.notification_id
LEFT JOIN destinations x ON x.tenant = d.tenant AND x.id = d.destination_id
WHERE d.status = 'pending' AND d.next_attempt_at_ms <= ?1
ORDER BY d.next_attempt_at_ms, d.rowid
LIMIT ?2";

/// The embedded SQLite [`Store`]. See the module docs for durability and concurrency.
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
    let found = match found {
        None => 0,
        Some(text) => text.parse::<i64>().map_err(|_| {
            StoreError::Corrupt(format!("meta.schema_version is not a number: {text:?}"))
        })?,
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    // One arm per version step; each runs once, inside this transaction.
    if found < 1 {
        tx.execute_batch(SCHEMA_V1)
            .map_err(db("create schema v1"))?;
    }
    if found < 2 {
        tx.execute_batch(SCHEMA_V2)
            .map_err(db("create schema v2"))?;
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// SQLite integers are signed; positions and limits beyond `i64::MAX` mean "everything".
fn clamp_i64(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl FromSql for DeliveryStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        Self::parse(text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown delivery status {text:?}").into()))
    }
}

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

fn rule_from_row(row: &Row<'_>) -> rusqlite::Result<StoredRule> {
    Ok(StoredRule {
        tenant: row.get(0)?,
        id: row.get(1)?,
        version: row.get(2)?,
        enabled: row.get(3)?,
        body: row.get(4)?,
        updated_at_ms: row.get(5)?,
    })
}

fn destination_from_row(row: &Row<'_>) -> rusqlite::Result<StoredDestination> {
    Ok(StoredDestination {
        tenant: row.get(0)?,
        id: row.get(1)?,
        kind: row.get(2)?,
        config: row.get(3)?,
        updated_at_ms: row.get(4)?,
    })
}

fn tenant_from_row(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: row.get(0)?,
        name: row.get(1)?,
        time_zone: row.get(2)?,
    })
}

/// A due delivery row: live, or pointing at a destination that no longer exists.
enum DueRow {
    Live(DueDelivery),
    Orphan {
        notification_id: String,
        destination_id: String,
    },
}

fn due_from_row(row: &Row<'_>) -> rusqlite::Result<DueRow> {
    let notification_id: String = row.get(0)?;
    let tenant: String = row.get(1)?;
    let destination_id: String = row.get(6)?;
    let Some(kind) = row.get::<_, Option<String>>(7)? else {
        return Ok(DueRow::Orphan {
            notification_id,
            destination_id,
        });
    };
    Ok(DueRow::Live(DueDelivery {
        notification_id,
        attempt: row.get(2)?,
        payload: row.get(3)?,
        kind: row.get(4)?,
        created_at_ms: row.get(5)?,
        destination: StoredDestination {
            tenant: tenant.clone(),
            id: destination_id,
            kind,
            config: row.get(8)?,
            updated_at_ms: row.get(9)?,
        },
        tenant,
    }))
}

fn attempt_from_row(row: &Row<'_>) -> rusqlite::Result<DeliveryAttempt> {
    Ok(DeliveryAttempt {
        notification_id: row.get(0)?,
        destination_id: row.get(1)?,
        attempt: row.get(2)?,
        at_ms: row.get(3)?,
        outcome: row.get(4)?,
        status_code: row.get(5)?,
        error: row.get(6)?,
        duration_ms: row.get(7)?,
    })
}

fn query_due(tx: &Transaction<'_>, now_ms: i64, limit: usize) -> StoreResult<Vec<DueRow>> {
    let mut stmt = tx
        .prepare_cached(DUE_SELECT)
        .map_err(db("read due deliveries"))?;
    let rows = stmt
        .query_map(params![now_ms, clamp_i64(limit)], due_from_row)
        .map_err(db("read due deliveries"))?;
    rows.collect::<Result<_, _>>()
        .map_err(db("read due deliveries"))
}

/// Loads the deliveries (with attempt logs) of one notification into a view.
fn notification_view(tx: &Transaction<'_>, row: NotificationRow) -> StoreResult<NotificationView> {
    const OP: &str = "read notification deliveries";
    let payload = serde_json::from_str(&row.payload).map_err(|e| {
        StoreError::Corrupt(format!("notification {} payload is not JSON: {e}", row.id))
    })?;
    let mut deliveries: Vec<DeliveryView> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT destination_id, status, attempts, next_attempt_at_ms, last_error
                 FROM deliveries WHERE notification_id = ?1 ORDER BY destination_id",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([&row.id], |r| {
                Ok(DeliveryView {
                    destination_id: r.get(0)?,
                    status: r.get(1)?,
                    attempts: r.get(2)?,
                    next_attempt_at_ms: r.get(3)?,
                    last_error: r.get(4)?,
                    attempt_log: Vec::new(),
                })
            })
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))?
    };
    let mut stmt = tx
        .prepare_cached(
            "SELECT notification_id, destination_id, attempt, at_ms, outcome, status_code, error,
                    duration_ms
             FROM delivery_attempts WHERE notification_id = ?1 ORDER BY rowid",
        )
        .map_err(db(OP))?;
    let attempts = stmt
        .query_map([&row.id], attempt_from_row)
        .map_err(db(OP))?;
    for attempt in attempts {
        let attempt = attempt.map_err(db(OP))?;
        if let Some(delivery) = deliveries
            .iter_mut()
            .find(|d| d.destination_id == attempt.destination_id)
        {
            delivery.attempt_log.push(attempt);
        }
    }
    Ok(NotificationView {
        id: row.id,
        tenant: row.tenant,
        rule_id: row.rule_id,
        kind: row.kind,
        group_key: row.group_key,
        payload,
        created_at_ms: row.created_at_ms,
        deliveries,
    })
}

/// A `notifications` row before its deliveries are attached.
struct NotificationRow {
    id: String,
    tenant: String,
    rule_id: String,
    kind: String,
    group_key: String,
    payload: String,
    created_at_ms: i64,
}

fn notification_row(row: &Row<'_>) -> rusqlite::Result<NotificationRow> {
    Ok(NotificationRow {
        id: row.get(0)?,
        tenant: row.get(1)?,
        rule_id: row.get(2)?,
        kind: row.get(3)?,
        group_key: row.get(4)?,
        payload: row.get(5)?,
        created_at_ms: row.get(6)?,
    })
}

const NOTIFICATION_COLUMNS: &str = "id, tenant, rule_id, kind, group_key, payload, created_at_ms";

impl Store for SqliteStore {
    fn append_events(&self, events: &[NewEvent]) -> StoreResult<Vec<AppendOutcome>> {
        const OP: &str = "append events";
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let received_at_ms = now_ms();
        self.write(OP, |tx| {
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

    fn put_rule(&self, rule: &StoredRule) -> StoreResult<()> {
        const OP: &str = "put rule";
        self.write(OP, |tx| {
            tx.prepare_cached(
                "INSERT INTO rules (tenant, id, version, enabled, body, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    version = excluded.version, enabled = excluded.enabled,
                    body = excluded.body, updated_at_ms = excluded.updated_at_ms",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    rule.tenant,
                    rule.id,
                    rule.version,
                    rule.enabled,
                    rule.body,
                    rule.updated_at_ms
                ])
            })
            .map_err(db(OP))?;
            Ok(())
        })
    }

    fn get_rule(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredRule>> {
        const OP: &str = "get rule";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, id, version, enabled, body, updated_at_ms
                 FROM rules WHERE tenant = ?1 AND id = ?2",
            )
            .map_err(db(OP))?;
        stmt.query_row([tenant, id], rule_from_row)
            .optional()
            .map_err(db(OP))
    }

    fn list_rules(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredRule>> {
        const OP: &str = "list rules";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, id, version, enabled, body, updated_at_ms
                 FROM rules WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, id",
            )
            .map_err(db(OP))?;
        let rows = stmt.query_map([tenant], rule_from_row).map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn delete_rule(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        const OP: &str = "delete rule";
        self.write(OP, |tx| {
            let n = tx
                .prepare_cached("DELETE FROM rules WHERE tenant = ?1 AND id = ?2")
                .and_then(|mut stmt| stmt.execute([tenant, id]))
                .map_err(db(OP))?;
            Ok(n > 0)
        })
    }

    fn put_destination(&self, destination: &StoredDestination) -> StoreResult<()> {
        const OP: &str = "put destination";
        self.write(OP, |tx| {
            tx.prepare_cached(
                "INSERT INTO destinations (tenant, id, kind, config, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    kind = excluded.kind, config = excluded.config,
                    updated_at_ms = excluded.updated_at_ms",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    destination.tenant,
                    destination.id,
                    destination.kind,
                    destination.config,
                    destination.updated_at_ms
                ])
            })
            .map_err(db(OP))?;
            Ok(())
        })
    }

    fn get_destination(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredDestination>> {
        const OP: &str = "get destination";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, id, kind, config, updated_at_ms
                 FROM destinations WHERE tenant = ?1 AND id = ?2",
            )
            .map_err(db(OP))?;
        stmt.query_row([tenant, id], destination_from_row)
            .optional()
            .map_err(db(OP))
    }

    fn list_destinations(&self, tenant: &str) -> StoreResult<Vec<StoredDestination>> {
        const OP: &str = "list destinations";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, id, kind, config, updated_at_ms
                 FROM destinations WHERE tenant = ?1 ORDER BY id",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([tenant], destination_from_row)
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn delete_destination(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        const OP: &str = "delete destination";
        self.write(OP, |tx| {
            let n = tx
                .prepare_cached("DELETE FROM destinations WHERE tenant = ?1 AND id = ?2")
                .and_then(|mut stmt| stmt.execute([tenant, id]))
                .map_err(db(OP))?;
            Ok(n > 0)
        })
    }

    fn put_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        const OP: &str = "put tenant";
        self.write(OP, |tx| {
            tx.prepare_cached(
                "INSERT INTO tenants (id, name, time_zone) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET
                    name = excluded.name, time_zone = excluded.time_zone",
            )
            .and_then(|mut stmt| stmt.execute([&tenant.id, &tenant.name, &tenant.time_zone]))
            .map_err(db(OP))?;
            Ok(())
        })
    }

    fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        const OP: &str = "get tenant";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT id, name, time_zone FROM tenants WHERE id = ?1")
            .map_err(db(OP))?;
        stmt.query_row([id], tenant_from_row)
            .optional()
            .map_err(db(OP))
    }

    fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        const OP: &str = "list tenants";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT id, name, time_zone FROM tenants ORDER BY id")
            .map_err(db(OP))?;
        let rows = stmt.query_map([], tenant_from_row).map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn put_api_key(&self, tenant: &str, key_hash: &str) -> StoreResult<()> {
        const OP: &str = "put api key";
        let well_formed = key_hash.len() == 64
            && key_hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(StoreError::InvalidInput(
                "key_hash must be the lowercase hex SHA-256 of the API key (64 characters)"
                    .to_owned(),
            ));
        }
        self.write(OP, |tx| {
            tx.prepare_cached(
                "INSERT INTO api_keys (key_hash, tenant) VALUES (?1, ?2)
                 ON CONFLICT (key_hash) DO UPDATE SET tenant = excluded.tenant",
            )
            .and_then(|mut stmt| stmt.execute([key_hash, tenant]))
            .map_err(db(OP))?;
            Ok(())
        })
    }

    fn tenant_for_api_key(&self, key_hash: &str) -> StoreResult<Option<String>> {
        const OP: &str = "look up api key";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT tenant FROM api_keys WHERE key_hash = ?1")
            .map_err(db(OP))?;
        stmt.query_row([key_hash], |row| row.get(0))
            .optional()
            .map_err(db(OP))
    }

    fn commit_step(
        &self,
        notifications: &[(i64, Vec<NewNotification>)],
        checkpoint: Option<(&str, &str)>,
    ) -> StoreResult<usize> {
        for (_, batch) in notifications {
            check_payloads(batch)?;
        }
        if let Some((key, _)) = checkpoint {
            check_meta_key(key)?;
        }
        if notifications.iter().all(|(_, batch)| batch.is_empty()) && checkpoint.is_none() {
            return Ok(0);
        }
        self.write(ENQUEUE_OP, |tx| {
            let mut inserted = 0;
            for (due_ms, batch) in notifications {
                inserted += enqueue_in(tx, batch, *due_ms)?;
            }
            if let Some((key, value)) = checkpoint {
                put_meta(tx, key, value)?;
            }
            Ok(inserted)
        })
    }

    fn open_alerts(&self, tenant: Option<&str>) -> StoreResult<Vec<OpenAlert>> {
        const OP: &str = "list open alerts";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, rule_id, group_key, since_ms, notification_id FROM open_alerts
                 WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, rule_id, group_key",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([tenant], |row| {
                Ok(OpenAlert {
                    tenant: row.get(0)?,
                    rule_id: row.get(1)?,
                    group_key: row.get(2)?,
                    since_ms: row.get(3)?,
                    notification_id: row.get(4)?,
                })
            })
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn due_deliveries(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<DueDelivery>> {
        let rows = self.read("read due deliveries", |tx| query_due(tx, now_ms, limit))?;
        Ok(rows
            .into_iter()
            .filter_map(|row| match row {
                DueRow::Live(due) => Some(due),
                DueRow::Orphan { .. } => None,
            })
            .collect())
    }

    fn claim_due_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<DueDelivery>> {
        const OP: &str = "claim due deliveries";
        self.write(OP, |tx| {
            let lease_until = now_ms.saturating_add(lease_ms.max(0));
            let mut lease = tx
                .prepare_cached(
                    "UPDATE deliveries SET next_attempt_at_ms = ?1, claimed = 1
                     WHERE notification_id = ?2 AND destination_id = ?3",
                )
                .map_err(db(OP))?;
            let mut bury = tx
                .prepare_cached(
                    "UPDATE deliveries SET status = 'dead', next_attempt_at_ms = NULL,
                        last_error = ?1
                     WHERE notification_id = ?2 AND destination_id = ?3",
                )
                .map_err(db(OP))?;
            let mut log = tx
                .prepare_cached(
                    "INSERT INTO delivery_attempts
                        (notification_id, destination_id, attempt, at_ms, outcome, status_code,
                         error, duration_ms)
                     SELECT notification_id, destination_id, attempts, ?1, 'dead', NULL, ?2, 0
                     FROM deliveries WHERE notification_id = ?3 AND destination_id = ?4",
                )
                .map_err(db(OP))?;
            let mut claimed = Vec::new();
            for row in query_due(tx, now_ms, limit)? {
                match row {
                    DueRow::Live(due) => {
                        lease
                            .execute(params![
                                lease_until,
                                due.notification_id,
                                due.destination.id
                            ])
                            .map_err(db(OP))?;
                        claimed.push(due);
                    }
                    // A deleted destination can never be delivered to: log why and bury it.
                    // The log entry repeats the last attempt number: no attempt was made.
                    DueRow::Orphan {
                        notification_id,
                        destination_id,
                    } => {
                        let error = format!("destination {destination_id} no longer exists");
                        log.execute(params![now_ms, error, notification_id, destination_id])
                            .map_err(db(OP))?;
                        bury.execute(params![error, notification_id, destination_id])
                            .map_err(db(OP))?;
                    }
                }
            }
            Ok(claimed)
        })
    }

    fn record_attempt(&self, attempt: &DeliveryAttempt, next: DeliveryNext) -> StoreResult<()> {
        const OP: &str = "record delivery attempt";
        self.write(OP, |tx| {
            let status: Option<DeliveryStatus> = tx
                .prepare_cached(
                    "SELECT status FROM deliveries
                     WHERE notification_id = ?1 AND destination_id = ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_row([&attempt.notification_id, &attempt.destination_id], |row| {
                        row.get(0)
                    })
                    .optional()
                })
                .map_err(db(OP))?;
            let Some(status) = status else {
                return Err(StoreError::NotFound(format!(
                    "delivery of notification {} to destination {}",
                    attempt.notification_id, attempt.destination_id
                )));
            };
            tx.prepare_cached(
                "INSERT INTO delivery_attempts
                    (notification_id, destination_id, attempt, at_ms, outcome, status_code,
                     error, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    attempt.notification_id,
                    attempt.destination_id,
                    attempt.attempt,
                    attempt.at_ms,
                    attempt.outcome,
                    attempt.status_code,
                    attempt.error,
                    clamp_i64(attempt.duration_ms)
                ])
            })
            .map_err(db(OP))?;
            if status != DeliveryStatus::Pending {
                // Another sender finished it while our lease ran out; keep its verdict.
                return Ok(());
            }
            let (new_status, next_at, last_error) = match next {
                DeliveryNext::Delivered => (DeliveryStatus::Delivered, None, None),
                DeliveryNext::RetryAt(at) => {
                    (DeliveryStatus::Pending, Some(at), attempt.error.as_deref())
                }
                DeliveryNext::Dead => (DeliveryStatus::Dead, None, attempt.error.as_deref()),
            };
            tx.prepare_cached(
                "UPDATE deliveries SET status = ?1, attempts = attempts + 1,
                    next_attempt_at_ms = ?2, last_error = ?3, claimed = 0
                 WHERE notification_id = ?4 AND destination_id = ?5",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    new_status.as_str(),
                    next_at,
                    last_error,
                    attempt.notification_id,
                    attempt.destination_id
                ])
            })
            .map_err(db(OP))?;
            Ok(())
        })
    }

    fn list_notifications(
        &self,
        tenant: &str,
        filter: &NotificationFilter,
    ) -> StoreResult<Vec<NotificationView>> {
        const OP: &str = "list notifications";
        let limit = if filter.limit == 0 {
            DEFAULT_NOTIFICATION_LIMIT
        } else {
            filter.limit
        };
        self.read(OP, |tx| {
            let rows: Vec<NotificationRow> = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {NOTIFICATION_COLUMNS} FROM notifications n
                         WHERE n.tenant = ?1
                           AND (?2 IS NULL OR n.rule_id = ?2)
                           AND (?3 IS NULL OR EXISTS (
                                SELECT 1 FROM deliveries d
                                WHERE d.notification_id = n.id AND +d.status = ?3))
                           AND (?4 IS NULL OR n.created_at_ms < ?4
                                OR (n.created_at_ms = ?4 AND n.id < ?5))
                         ORDER BY n.created_at_ms DESC, n.id DESC
                         LIMIT ?6"
                    ))
                    .map_err(db(OP))?;
                let rows = stmt
                    .query_map(
                        params![
                            tenant,
                            filter.rule_id,
                            filter.status.map(DeliveryStatus::as_str),
                            filter.before.as_ref().map(|c| c.created_at_ms),
                            filter.before.as_ref().map(|c| c.id.as_str()),
                            clamp_i64(limit)
                        ],
                        notification_row,
                    )
                    .map_err(db(OP))?;
                rows.collect::<Result<_, _>>().map_err(db(OP))?
            };
            rows.into_iter()
                .map(|row| notification_view(tx, row))
                .collect()
        })
    }

    fn get_notification(&self, tenant: &str, id: &str) -> StoreResult<Option<NotificationView>> {
        const OP: &str = "get notification";
        self.read(OP, |tx| {
            let row = tx
                .prepare_cached(&format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM notifications
                     WHERE tenant = ?1 AND id = ?2"
                ))
                .and_then(|mut stmt| stmt.query_row([tenant, id], notification_row).optional())
                .map_err(db(OP))?;
            row.map(|row| notification_view(tx, row)).transpose()
        })
    }

    fn delivery_counts(&self) -> StoreResult<Vec<(DeliveryStatus, u64)>> {
        const OP: &str = "count deliveries";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT status, count(*) FROM deliveries GROUP BY status")
            .map_err(db(OP))?;
        let found: Vec<(DeliveryStatus, u64)> = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(db(OP))?
            .collect::<Result<_, _>>()
            .map_err(db(OP))?;
        Ok(DeliveryStatus::ALL
            .into_iter()
            .map(|status| {
                let count = found
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(0, |(_, c)| *c);
                (status, count)
            })
            .collect())
    }

    fn release_claims(&self, now_ms: i64) -> StoreResult<usize> {
        const OP: &str = "release claims";
        self.write(OP, |tx| {
            tx.execute(
                "UPDATE deliveries SET next_attempt_at_ms = ?1, claimed = 0
                 WHERE status = 'pending' AND claimed = 1",
                [now_ms],
            )
            .map_err(db(OP))
        })
    }

    fn owner_of(&self, kind: ObjectKind, id: &str) -> StoreResult<Option<String>> {
        const OP: &str = "look up owner";
        let sql = match kind {
            ObjectKind::Rule => "SELECT tenant FROM rules WHERE id = ?1 LIMIT 1",
            ObjectKind::Destination => "SELECT tenant FROM destinations WHERE id = ?1 LIMIT 1",
            ObjectKind::Notification => "SELECT tenant FROM notifications WHERE id = ?1 LIMIT 1",
        };
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(sql).map_err(db(OP))?;
        stmt.query_row([id], |row| row.get(0))
            .optional()
            .map_err(db(OP))
    }

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

    fn checkpoint_log(&self) -> StoreResult<()> {
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

/// What [`Store::commit_step`] reports failing as.
const ENQUEUE_OP: &str = "enqueue notifications";

/// Refuses notifications whose payload is not JSON, before anything is written.
fn check_payloads(notifications: &[NewNotification]) -> StoreResult<()> {
    for n in notifications {
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&n.payload) {
            return Err(StoreError::InvalidInput(format!(
                "notification {} payload is not JSON: {e}",
                n.id
            )));
        }
    }
    Ok(())
}

/// Inserts notifications (and their deliveries, due at `now_ms`, and open-alert effects) inside
/// `tx`; returns how many were new. See [`Store::enqueue_notifications`] for what each does.
fn enqueue_in(
    tx: &Transaction<'_>,
    notifications: &[NewNotification],
    now_ms: i64,
) -> StoreResult<usize> {
    const OP: &str = ENQUEUE_OP;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO notifications
                    (id, tenant, rule_id, kind, group_key, payload, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO NOTHING",
        )
        .map_err(db(OP))?;
    let mut owner = tx
        .prepare_cached("SELECT tenant FROM notifications WHERE id = ?1")
        .map_err(db(OP))?;
    let mut delivery = tx
        .prepare_cached(
            "INSERT INTO deliveries
                    (notification_id, destination_id, tenant, status, attempts,
                     next_attempt_at_ms)
                 VALUES (?1, ?2, ?3, 'pending', 0, ?4)
                 ON CONFLICT DO NOTHING",
        )
        .map_err(db(OP))?;
    let mut fire = tx
        .prepare_cached(
            "INSERT INTO open_alerts (tenant, rule_id, group_key, since_ms, notification_id)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, rule_id, group_key)
                 DO UPDATE SET notification_id = excluded.notification_id",
        )
        .map_err(db(OP))?;
    let mut resolve = tx
        .prepare_cached(
            "DELETE FROM open_alerts WHERE tenant = ?1 AND rule_id = ?2 AND group_key = ?3",
        )
        .map_err(db(OP))?;
    let mut inserted = 0;
    for n in notifications {
        let new = insert
            .execute(params![
                n.id,
                n.tenant,
                n.rule_id,
                n.kind,
                n.group_key,
                n.payload,
                n.created_at_ms
            ])
            .map_err(db(OP))?;
        if new == 0 {
            let stored: String = owner.query_row([&n.id], |r| r.get(0)).map_err(db(OP))?;
            if stored != n.tenant {
                // Ids are global keys; a clash across tenants would silently drop one
                // tenant's notification, so it is refused instead.
                return Err(StoreError::InvalidInput(format!(
                    "notification id {} already belongs to another tenant; \
                         notification ids must be derived from the tenant too",
                    n.id
                )));
            }
            continue;
        }
        inserted += 1;
        let destinations: BTreeSet<&str> = n.destination_ids.iter().map(String::as_str).collect();
        for destination in destinations {
            delivery
                .execute(params![n.id, destination, n.tenant, now_ms])
                .map_err(db(OP))?;
        }
        match n.kind.as_str() {
            "firing" => {
                fire.execute(params![
                    n.tenant,
                    n.rule_id,
                    n.group_key,
                    n.created_at_ms,
                    n.id
                ])
                .map_err(db(OP))?;
            }
            "resolved" => {
                resolve
                    .execute([&n.tenant, &n.rule_id, &n.group_key])
                    .map_err(db(OP))?;
            }
            _ => {}
        }
    }
    Ok(inserted)
}

fn check_meta_key(key: &str) -> StoreResult<()> {
    if key == SCHEMA_VERSION_KEY {
        return Err(StoreError::InvalidInput(format!(
            "meta key {SCHEMA_VERSION_KEY:?} is reserved for the store itself"
        )));
    }
    Ok(())
}

fn put_meta(tx: &Transaction<'_>, key: &str, value: &str) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut stmt| stmt.execute([key, value]))
    .map_err(db("set meta"))?;
    Ok(())
}

/// Columns of a [`SecretRow`], in [`secret_from_row`] order.
const SECRET_COLUMNS: &str = "tenant, name, version, kek_version, dek_nonce, wrapped_dek, \
                              value_nonce, ciphertext, created_at_ms";

fn secret_from_row(row: &Row<'_>) -> rusqlite::Result<SecretRow> {
    Ok(SecretRow {
        tenant: row.get(0)?,
        name: row.get(1)?,
        version: row.get(2)?,
        kek_version: row.get(3)?,
        dek_nonce: row.get(4)?,
        wrapped_dek: row.get(5)?,
        value_nonce: row.get(6)?,
        ciphertext: row.get(7)?,
        created_at_ms: row.get(8)?,
    })
}

/// The active (highest registered) KEK version, if any.
fn active_kek_version(tx: &Transaction<'_>, op: &'static str) -> StoreResult<Option<u32>> {
    tx.prepare_cached("SELECT max(kek_version) FROM secret_keks")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(db(op))
}

/// Registers `kek_version` (no-op when known).
fn register_kek_version(
    tx: &Transaction<'_>,
    kek_version: u32,
    op: &'static str,
) -> StoreResult<()> {
    tx.prepare_cached("INSERT INTO secret_keks (kek_version) VALUES (?1) ON CONFLICT DO NOTHING")
        .and_then(|mut stmt| stmt.execute([kek_version]))
        .map_err(db(op))?;
    Ok(())
}

/// Checks a put against the stored versions, the active KEK version and the encryption
/// limit, and writes it; anything but `Stored` is reported before a row is written, so the
/// caller can roll back.
fn put_secret_rows_in(
    tx: &Transaction<'_>,
    rows: &[SecretRow],
    policy: &SecretWritePolicy,
) -> StoreResult<SecretPut> {
    const OP: &str = "put secrets";
    let active = active_kek_version(tx, OP)?;
    let mut kek_versions: BTreeSet<u32> = BTreeSet::new();
    for row in rows {
        if let Some(active) = active
            && row.kek_version < active
        {
            return Ok(SecretPut::StaleKek { active });
        }
        kek_versions.insert(row.kek_version);
    }
    // Rows of one put are sealed under one KEK; mixed versions mean a caller bug.
    let [kek_version] = kek_versions.into_iter().collect::<Vec<_>>()[..] else {
        return Err(StoreError::InvalidInput(
            "all rows of one secrets put must be sealed under the same KEK version".to_owned(),
        ));
    };
    register_kek_version(tx, kek_version, OP)?;
    let encryptions: u64 = tx
        .prepare_cached("SELECT encryptions FROM secret_keks WHERE kek_version = ?1")
        .and_then(|mut stmt| stmt.query_row([kek_version], |row| row.get(0)))
        .map_err(db(OP))?;
    let added = rows.len() as u64;
    if encryptions.saturating_add(added) > policy.max_kek_encryptions {
        return Ok(SecretPut::KekExhausted {
            kek_version,
            encryptions,
        });
    }
    let mut latest = tx
        .prepare_cached("SELECT max(version) FROM secrets WHERE tenant = ?1 AND name = ?2")
        .map_err(db(OP))?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO secrets (tenant, name, version, kek_version, dek_nonce, wrapped_dek,
                                  value_nonce, ciphertext, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(db(OP))?;
    let mut prune = tx
        .prepare_cached("DELETE FROM secrets WHERE tenant = ?1 AND name = ?2 AND version <= ?3")
        .map_err(db(OP))?;
    for row in rows {
        let stored: Option<u64> = latest
            .query_row([&row.tenant, &row.name], |r| r.get(0))
            .map_err(db(OP))?;
        if row.version == 0 || stored.is_some_and(|stored| row.version <= stored) {
            return Ok(SecretPut::VersionTaken {
                name: row.name.clone(),
                version: row.version,
            });
        }
        insert
            .execute(params![
                row.tenant,
                row.name,
                clamp_i64(row.version),
                row.kek_version,
                row.dek_nonce,
                row.wrapped_dek,
                row.value_nonce,
                row.ciphertext,
                row.created_at_ms
            ])
            .map_err(db(OP))?;
        let keep = policy.keep_versions.max(1);
        if row.version > keep {
            prune
                .execute(params![row.tenant, row.name, clamp_i64(row.version - keep)])
                .map_err(db(OP))?;
        }
    }
    let kek_encryptions = encryptions + added;
    tx.prepare_cached("UPDATE secret_keks SET encryptions = ?1 WHERE kek_version = ?2")
        .and_then(|mut stmt| stmt.execute(params![clamp_i64(kek_encryptions), kek_version]))
        .map_err(db(OP))?;
    Ok(SecretPut::Stored { kek_encryptions })
}

impl SecretRows for SqliteStore {
    fn latest_secret_versions(&self, tenant: &str, names: &[&str]) -> StoreResult<Vec<u64>> {
        const OP: &str = "read secret versions";
        self.read(OP, |tx| {
            let mut stmt = tx
                .prepare_cached("SELECT max(version) FROM secrets WHERE tenant = ?1 AND name = ?2")
                .map_err(db(OP))?;
            names
                .iter()
                .map(|name| {
                    stmt.query_row([tenant, name], |row| row.get::<_, Option<u64>>(0))
                        .map(Option::unwrap_or_default)
                        .map_err(db(OP))
                })
                .collect()
        })
    }

    fn put_secret_rows(
        &self,
        rows: &[SecretRow],
        policy: &SecretWritePolicy,
    ) -> StoreResult<SecretPut> {
        const OP: &str = "put secrets";
        if rows.is_empty() {
            return Ok(SecretPut::Stored { kek_encryptions: 0 });
        }
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(OP))?;
        let outcome = put_secret_rows_in(&tx, rows, policy)?;
        // Dropping the transaction rolls back a refused put.
        if matches!(outcome, SecretPut::Stored { .. }) {
            tx.commit().map_err(db(OP))?;
        }
        Ok(outcome)
    }

    fn get_secret_row(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u64>,
    ) -> StoreResult<Option<SecretRow>> {
        const OP: &str = "get secret";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {SECRET_COLUMNS} FROM secrets
                 WHERE tenant = ?1 AND name = ?2 AND (?3 IS NULL OR version = ?3)
                 ORDER BY version DESC LIMIT 1"
            ))
            .map_err(db(OP))?;
        stmt.query_row(
            params![tenant, name, version.map(clamp_i64)],
            secret_from_row,
        )
        .optional()
        .map_err(db(OP))
    }

    fn list_secrets(&self, tenant: &str) -> StoreResult<Vec<SecretInfo>> {
        const OP: &str = "list secrets";
        let rows: Vec<(String, u64, u32, i64)> = self.read(OP, |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT name, version, kek_version, created_at_ms FROM secrets
                     WHERE tenant = ?1 ORDER BY name, version DESC",
                )
                .map_err(db(OP))?;
            let rows = stmt
                .query_map([tenant], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .map_err(db(OP))?;
            rows.collect::<Result<_, _>>().map_err(db(OP))
        })?;
        let mut out: Vec<SecretInfo> = Vec::new();
        for (name, version, kek_version, created_at_ms) in rows {
            match out.last_mut() {
                Some(info) if info.name == name => info.versions.push(version),
                _ => out.push(SecretInfo {
                    name,
                    version,
                    versions: vec![version],
                    kek_version,
                    created_at_ms,
                }),
            }
        }
        Ok(out)
    }

    fn delete_secret(&self, tenant: &str, name: &str) -> StoreResult<u64> {
        const OP: &str = "delete secret";
        self.write(OP, |tx| {
            let deleted = tx
                .prepare_cached("DELETE FROM secrets WHERE tenant = ?1 AND name = ?2")
                .and_then(|mut stmt| stmt.execute([tenant, name]))
                .map_err(db(OP))?;
            Ok(deleted as u64)
        })
    }

    fn kek_usage(&self) -> StoreResult<Vec<KekUsage>> {
        const OP: &str = "read KEK usage";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT kek_version, encryptions, rewrap_cursor FROM secret_keks
                 ORDER BY kek_version",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(KekUsage {
                    kek_version: row.get(0)?,
                    encryptions: row.get(1)?,
                    rewrap_cursor: row.get(2)?,
                })
            })
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn activate_kek_version(&self, kek_version: u32) -> StoreResult<()> {
        const OP: &str = "activate KEK version";
        self.write(OP, |tx| {
            if let Some(active) = active_kek_version(tx, OP)?
                && kek_version < active
            {
                return Err(StoreError::InvalidInput(format!(
                    "KEK version {kek_version} is older than the active version {active}"
                )));
            }
            register_kek_version(tx, kek_version, OP)
        })
    }

    fn count_secret_rows_off(&self, kek_version: u32) -> StoreResult<u64> {
        const OP: &str = "count secrets to re-wrap";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT count(*) FROM secrets WHERE kek_version <> ?1")
            .map_err(db(OP))?;
        stmt.query_row([kek_version], |row| row.get(0))
            .map_err(db(OP))
    }

    fn secret_rows_to_rewrap(
        &self,
        target: u32,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<PositionedSecretRow>> {
        const OP: &str = "read secrets to re-wrap";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT id, {SECRET_COLUMNS} FROM secrets
                 WHERE id > ?1 AND kek_version <> ?2 ORDER BY id LIMIT ?3"
            ))
            .map_err(db(OP))?;
        let rows = stmt
            .query_map(params![clamp_i64(after), target, clamp_i64(limit)], |row| {
                let position: u64 = row.get(0)?;
                let row = SecretRow {
                    tenant: row.get(1)?,
                    name: row.get(2)?,
                    version: row.get(3)?,
                    kek_version: row.get(4)?,
                    dek_nonce: row.get(5)?,
                    wrapped_dek: row.get(6)?,
                    value_nonce: row.get(7)?,
                    ciphertext: row.get(8)?,
                    created_at_ms: row.get(9)?,
                };
                Ok(PositionedSecretRow { position, row })
            })
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn rewrap_secret_rows(
        &self,
        target: u32,
        rows: &[RewrappedSecretRow],
        cursor: u64,
    ) -> StoreResult<usize> {
        const OP: &str = "re-wrap secrets";
        self.write(OP, |tx| {
            if active_kek_version(tx, OP)? != Some(target) {
                return Err(StoreError::InvalidInput(format!(
                    "KEK version {target} is no longer the active version; \
                     another rotation started"
                )));
            }
            let mut update = tx
                .prepare_cached(
                    "UPDATE secrets SET kek_version = ?1, dek_nonce = ?2, wrapped_dek = ?3,
                        value_nonce = ?4, ciphertext = ?5
                     WHERE id = ?6 AND kek_version = ?7 AND tenant = ?8 AND name = ?9
                       AND version = ?10",
                )
                .map_err(db(OP))?;
            let mut replaced = 0;
            for r in rows {
                if r.row.kek_version != target {
                    return Err(StoreError::InvalidInput(format!(
                        "re-wrapped row is sealed under KEK version {}, not {target}",
                        r.row.kek_version
                    )));
                }
                replaced += update
                    .execute(params![
                        target,
                        r.row.dek_nonce,
                        r.row.wrapped_dek,
                        r.row.value_nonce,
                        r.row.ciphertext,
                        clamp_i64(r.position),
                        r.from_kek_version,
                        r.row.tenant,
                        r.row.name,
                        clamp_i64(r.row.version)
                    ])
                    .map_err(db(OP))?;
            }
            tx.prepare_cached(
                "UPDATE secret_keks SET encryptions = encryptions + ?1,
                    rewrap_cursor = max(rewrap_cursor, ?2)
                 WHERE kek_version = ?3",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![clamp_i64(replaced), clamp_i64(cursor), target])
            })
            .map_err(db(OP))?;
            Ok(replaced)
        })
    }

    fn retire_kek_versions_before(&self, kek_version: u32) -> StoreResult<Vec<u32>> {
        const OP: &str = "retire KEK versions";
        self.write(OP, |tx| {
            let still_used: u64 = tx
                .prepare_cached("SELECT count(*) FROM secrets WHERE kek_version < ?1")
                .and_then(|mut stmt| stmt.query_row([kek_version], |row| row.get(0)))
                .map_err(db(OP))?;
            if still_used > 0 {
                return Err(StoreError::InvalidInput(format!(
                    "{still_used} secrets are still sealed under a KEK version below \
                     {kek_version}; finish the re-wrap first"
                )));
            }
            let retired: Vec<u32> = {
                let mut stmt = tx
                    .prepare_cached(
                        "DELETE FROM secret_keks WHERE kek_version < ?1 RETURNING kek_version",
                    )
                    .map_err(db(OP))?;
                let rows = stmt
                    .query_map([kek_version], |row| row.get(0))
                    .map_err(db(OP))?;
                rows.collect::<Result<_, _>>().map_err(db(OP))?
            };
            Ok(retired)
        })
    }
}
