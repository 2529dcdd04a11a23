//! The shared [`Store`](crate::store::Store): one PostgreSQL database, which several Tidemark
//! processes may use at once.
//!
//! This module connects (a `postgres://` URL; the password from the URL, or `PGPASSWORD`), keeps
//! the connection pool, migrates the schema and runs every statement; each concern's trait is
//! implemented in its own file ([`events`], [`catalog`], [`outbox`], [`reports`], [`sources`],
//! [`secrets`], [`meta`], [`audiences`], [`campaigns`], [`dashboards`]) on the helpers kept here.
//!
//! Blocking calls over an async driver: the store traits are synchronous (see the parent
//! module), and `tokio-postgres` is async. The store owns a small tokio runtime of its own whose
//! one thread drives the connections' sockets; a store method builds its future on the caller's
//! thread and waits for it there ([`PostgresStore::block`]). Client futures only exchange
//! messages with the connection tasks, so this works from any thread, a tokio worker's included
//! (which it blocks for the call, exactly as the SQLite store does).
//!
//! Writes: every write transaction first takes one transaction-scoped advisory lock
//! ([`WRITE_LOCK`]), so writes are serialized across every process on the database, as on
//! SQLite: a read-modify-write (a rule's version, a claim, a run finished once) needs no retry
//! loop, and the event log's `seq` values commit in increasing order, so a reader that has seen
//! `seq` N never later finds a new row below it. Reads run in `REPEATABLE READ READ ONLY`
//! transactions, one consistent snapshot each, beside the writer.
//!
//! Durability: PostgreSQL's own (`synchronous_commit` as the server is configured; on by
//! default): a write method returns after its commit is flushed.

mod audiences;
mod campaigns;
mod catalog;
mod dashboards;
mod events;
mod import;
mod keyed;
mod lease;
mod meta;
mod outbox;
mod reports;
mod secrets;
mod sources;
#[cfg(test)]
mod tests;
mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::Transaction;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{IsolationLevel, NoTls};

pub use import::ImportedTable;

use crate::store::meta::{SCHEMA_VERSION_KEY, stored_schema_version};
use crate::store::{StoreError, StoreResult};

/// Newest schema version this build creates and understands: the same data model as the
/// SQLite store's version of the same number.
const SCHEMA_VERSION: i64 = 7;

/// The advisory lock every write transaction holds: one writer at a time on the database.
const WRITE_LOCK: i64 = 0x7469_6465_6d61_726b; // "tidemark"

/// The advisory lock a migration holds, so two processes starting together migrate once.
const MIGRATE_LOCK: i64 = 0x7469_6465_6d69_6772; // "tidemigr"

/// Connections kept open at most.
const POOL_SIZE: usize = 16;

/// How long a call waits for a pooled connection, and for a new one to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The whole schema at version 6, applied to an empty database. Column types follow the SQLite
/// schema's: integers are `BIGINT` (flags 0/1 too), text `TEXT`, bytes `BYTEA`. Every text column
/// is `COLLATE "C"`: compared and ordered byte-wise, as SQLite's `BINARY` collation does, whatever
/// the database's default locale, so listings and page cursors mean the same on both stores and
/// ordered scans use the keys' indexes. The dead letter's record offset is `record_offset`
/// (`offset` is reserved in PostgreSQL).
const SCHEMA_V6: &str = r#"
CREATE TABLE events (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant         TEXT COLLATE "C"   NOT NULL,
    id             TEXT COLLATE "C"   NOT NULL,
    event_type     TEXT COLLATE "C"   NOT NULL,
    ts_ms          BIGINT NOT NULL,
    body           TEXT COLLATE "C"   NOT NULL,
    received_at_ms BIGINT NOT NULL,
    UNIQUE (tenant, id)
);
CREATE TABLE rules (
    tenant        TEXT COLLATE "C"   NOT NULL,
    id            TEXT COLLATE "C"   NOT NULL,
    version       BIGINT NOT NULL,
    enabled       BIGINT NOT NULL,
    body          TEXT COLLATE "C"   NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE destinations (
    tenant        TEXT COLLATE "C"   NOT NULL,
    id            TEXT COLLATE "C"   NOT NULL,
    kind          TEXT COLLATE "C"   NOT NULL,
    config        TEXT COLLATE "C"   NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE tenants (
    id        TEXT COLLATE "C" PRIMARY KEY,
    name      TEXT COLLATE "C" NOT NULL,
    time_zone TEXT COLLATE "C" NOT NULL
);
CREATE TABLE api_keys (
    key_hash TEXT COLLATE "C" PRIMARY KEY,
    tenant   TEXT COLLATE "C" NOT NULL
);
CREATE TABLE notifications (
    id            TEXT COLLATE "C" PRIMARY KEY,
    tenant        TEXT COLLATE "C"   NOT NULL,
    rule_id       TEXT COLLATE "C"   NOT NULL,
    kind          TEXT COLLATE "C"   NOT NULL,
    group_key     TEXT COLLATE "C"   NOT NULL,
    payload       TEXT COLLATE "C"   NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX notifications_by_tenant ON notifications (tenant, created_at_ms, id);
CREATE INDEX notifications_by_run ON notifications (tenant, group_key) WHERE kind = 'report';
CREATE TABLE deliveries (
    notification_id    TEXT COLLATE "C"   NOT NULL,
    destination_id     TEXT COLLATE "C"   NOT NULL,
    tenant             TEXT COLLATE "C"   NOT NULL,
    status             TEXT COLLATE "C"   NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts           BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT,
    last_error         TEXT COLLATE "C",
    claimed            BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (notification_id, destination_id)
);
CREATE INDEX deliveries_by_status ON deliveries (status, next_attempt_at_ms);
CREATE TABLE delivery_attempts (
    notification_id TEXT COLLATE "C"   NOT NULL,
    destination_id  TEXT COLLATE "C"   NOT NULL,
    attempt         BIGINT NOT NULL,
    at_ms           BIGINT NOT NULL,
    outcome         TEXT COLLATE "C"   NOT NULL,
    status_code     BIGINT,
    error           TEXT COLLATE "C",
    duration_ms     BIGINT NOT NULL
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (notification_id, destination_id);
CREATE TABLE open_alerts (
    tenant          TEXT COLLATE "C"   NOT NULL,
    rule_id         TEXT COLLATE "C"   NOT NULL,
    group_key       TEXT COLLATE "C"   NOT NULL,
    since_ms        BIGINT NOT NULL,
    notification_id TEXT COLLATE "C"   NOT NULL,
    PRIMARY KEY (tenant, rule_id, group_key)
);
CREATE TABLE secrets (
    id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant        TEXT COLLATE "C"   NOT NULL,
    name          TEXT COLLATE "C"   NOT NULL,
    version       BIGINT NOT NULL,
    kek_version   BIGINT NOT NULL,
    dek_nonce     BYTEA  NOT NULL,
    wrapped_dek   BYTEA  NOT NULL,
    value_nonce   BYTEA  NOT NULL,
    ciphertext    BYTEA  NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (tenant, name, version)
);
CREATE TABLE secret_keks (
    kek_version   BIGINT PRIMARY KEY,
    encryptions   BIGINT NOT NULL DEFAULT 0,
    rewrap_cursor BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE reports (
    tenant        TEXT COLLATE "C"   NOT NULL,
    id            TEXT COLLATE "C"   NOT NULL,
    version       BIGINT NOT NULL,
    enabled       BIGINT NOT NULL,
    body          TEXT COLLATE "C"   NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE report_runs (
    tenant          TEXT COLLATE "C"   NOT NULL,
    run_id          TEXT COLLATE "C"   NOT NULL,
    report_id       TEXT COLLATE "C"   NOT NULL,
    version         BIGINT NOT NULL,
    scheduled_ms    BIGINT NOT NULL,
    trigger         TEXT COLLATE "C"   NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    status          TEXT COLLATE "C"   NOT NULL CHECK (status IN ('due', 'complete', 'partial', 'failed')),
    created_at_ms   BIGINT NOT NULL,
    generated_at_ms BIGINT,
    generation_ms   BIGINT,
    error           TEXT COLLATE "C",
    PRIMARY KEY (tenant, run_id)
);
CREATE INDEX report_runs_due ON report_runs (scheduled_ms) WHERE status = 'due';
CREATE INDEX report_runs_by_report ON report_runs (tenant, report_id, scheduled_ms);
CREATE TABLE source_positions (
    source        TEXT COLLATE "C"   NOT NULL,
    partition     BIGINT NOT NULL,
    next_offset   BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (source, partition)
);
CREATE TABLE source_dead_letters (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms         BIGINT NOT NULL,
    source        TEXT COLLATE "C"   NOT NULL,
    tenant        TEXT COLLATE "C",
    topic         TEXT COLLATE "C"   NOT NULL,
    partition     BIGINT NOT NULL,
    record_offset BIGINT NOT NULL,
    raw           BYTEA  NOT NULL,
    raw_len       BIGINT NOT NULL,
    error         TEXT COLLATE "C"   NOT NULL
);
CREATE INDEX source_dead_letters_by_tenant ON source_dead_letters (tenant, id);
CREATE TABLE contacts (
    tenant        TEXT COLLATE "C"   NOT NULL,
    id            TEXT COLLATE "C"   NOT NULL,
    body          TEXT COLLATE "C"   NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE audiences (
    tenant        TEXT COLLATE "C"   NOT NULL,
    id            TEXT COLLATE "C"   NOT NULL,
    version       BIGINT NOT NULL,
    body          TEXT COLLATE "C"   NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE audience_members (
    tenant   TEXT COLLATE "C"   NOT NULL,
    audience TEXT COLLATE "C"   NOT NULL,
    contact  TEXT COLLATE "C"   NOT NULL,
    since_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, audience, contact)
);
CREATE INDEX audience_members_by_contact ON audience_members (tenant, contact);
CREATE TABLE audience_changes (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant   TEXT COLLATE "C"   NOT NULL,
    audience TEXT COLLATE "C"   NOT NULL,
    contact  TEXT COLLATE "C"   NOT NULL,
    at_ms    BIGINT NOT NULL,
    entered  BIGINT NOT NULL
);
CREATE INDEX audience_changes_by_audience ON audience_changes (tenant, audience, seq);
CREATE INDEX audience_changes_by_contact ON audience_changes (tenant, contact, seq);
CREATE TABLE audience_sizes (
    tenant    TEXT COLLATE "C"   NOT NULL,
    audience  TEXT COLLATE "C"   NOT NULL,
    minute_ms BIGINT NOT NULL,
    at_ms     BIGINT NOT NULL,
    size      BIGINT NOT NULL,
    PRIMARY KEY (tenant, audience, minute_ms)
);
CREATE TABLE event_types (
    tenant     TEXT COLLATE "C" NOT NULL,
    event_type TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, event_type)
);
CREATE TABLE campaigns (
    tenant         TEXT COLLATE "C"   NOT NULL,
    id             TEXT COLLATE "C"   NOT NULL,
    version        BIGINT NOT NULL,
    body           TEXT COLLATE "C"   NOT NULL,
    expanded_at_ms BIGINT,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE campaign_sends (
    tenant          TEXT COLLATE "C"   NOT NULL,
    campaign        TEXT COLLATE "C"   NOT NULL,
    instance        TEXT COLLATE "C"   NOT NULL,
    contact         TEXT COLLATE "C"   NOT NULL,
    channel         TEXT COLLATE "C"   NOT NULL,
    due_ms          BIGINT NOT NULL,
    status          TEXT COLLATE "C"   NOT NULL CHECK (status IN ('pending', 'held', 'sent', 'capped',
                                                      'unsubscribed', 'not_member', 'failed')),
    reason          TEXT COLLATE "C",
    notification_id TEXT COLLATE "C",
    updated_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (tenant, campaign, instance, contact, channel)
);
CREATE INDEX campaign_sends_due ON campaign_sends (due_ms) WHERE status IN ('pending', 'held');
CREATE INDEX campaign_sends_by_contact ON campaign_sends (tenant, contact, updated_at_ms);
"#;

/// Schema version 7: saved console dashboards, keyed by (tenant, id) like reports (`IF NOT
/// EXISTS`, as the SQLite store's migrations are written).
const SCHEMA_V7: &str = r#"
CREATE TABLE IF NOT EXISTS dashboards (
    tenant        TEXT COLLATE "C"   NOT NULL,
    id            TEXT COLLATE "C"   NOT NULL,
    title         TEXT COLLATE "C"   NOT NULL,
    body          TEXT COLLATE "C"   NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
"#;

/// What a `postgres://` URL cannot carry (`[store]` in the server's configuration).
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// The password (read from a file by the caller); takes precedence over the URL's.
    pub password: Option<String>,
    /// PEM certificates to trust besides the system's roots, for `sslmode=require`.
    pub ca_file: Option<std::path::PathBuf>,
}

/// The shared PostgreSQL [`Store`](crate::store::Store). See the module docs.
pub struct PostgresStore {
    pool: Pool,
    /// Connections outside the pool (the engine lease's).
    direct: Direct,
    /// Writes and their waits for [`WRITE_LOCK`], for [`Meta::pool_stats`](crate::store::Meta).
    writes: WriteCounters,
    /// Drives the pooled connections' sockets; dropped after the pool (fields drop in order).
    runtime: IoRuntime,
    /// The database, as the logs name it (no password).
    target: String,
}

/// Counters of write transactions and the time they waited for [`WRITE_LOCK`].
#[derive(Default)]
struct WriteCounters {
    writes: AtomicU64,
    contended: AtomicU64,
    wait_nanos: AtomicU64,
}

impl WriteCounters {
    fn record(&self, waited: Duration) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if waited > Duration::from_millis(1) {
            self.contended.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.wait_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Opens connections of its own, outside the pool, driven on the store's runtime.
#[derive(Clone)]
struct Direct {
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    handle: tokio::runtime::Handle,
}

impl Direct {
    async fn connect(&self, op: &'static str) -> StoreResult<tokio_postgres::Client> {
        let unavailable = |e: tokio_postgres::Error| StoreError::Unavailable {
            op,
            message: with_causes(&e),
        };
        match &self.tls {
            Some(tls) => {
                let (client, connection) = self
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(unavailable)?;
                self.handle.spawn(connection);
                Ok(client)
            }
            None => {
                let (client, connection) = self.config.connect(NoTls).await.map_err(unavailable)?;
                self.handle.spawn(connection);
                Ok(client)
            }
        }
    }

    /// Waits on this thread for `future` (see [`PostgresStore::block`]).
    fn block<F: Future>(&self, future: F) -> F::Output {
        let _context = self.handle.enter();
        futures::executor::block_on(future)
    }
}

/// The store's own runtime. Dropping a tokio runtime waits for its tasks and panics when that
/// happens inside another runtime (a store dropped by an async test or a server task), so this
/// one is shut down in the background instead: its connection tasks are cancelled, which closes
/// the sockets.
struct IoRuntime {
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/database`,
    /// with libpq's query options such as `connect_timeout` and `sslmode`; a password missing
    /// from the URL is taken from `PGPASSWORD`) and brings the schema up to date.
    pub fn open(url: &str) -> StoreResult<Self> {
        Self::open_with(url, &PostgresOptions::default())
    }

    /// [`open`](Self::open), with what a URL cannot carry: a password read from a file, a CA
    /// certificate to verify the server with.
    ///
    /// TLS: `sslmode=require` connects only over TLS and verifies the server's certificate and
    /// name against the system's roots and `options.ca_file` (libpq's `verify-full`: an
    /// encrypted connection to an unverified server is not offered). `disable` and `prefer`
    /// (the default) connect without TLS.
    pub fn open_with(url: &str, options: &PostgresOptions) -> StoreResult<Self> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::InvalidInput(format!("the PostgreSQL URL cannot be read: {e}"))
        })?;
        if let Some(password) = &options.password {
            config.password(password.as_str());
        } else if config.get_password().is_none()
            && let Ok(password) = std::env::var("PGPASSWORD")
        {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let tls = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Require => Some(tls::connector(options)?),
            _ if options.ca_file.is_some() => {
                return Err(StoreError::InvalidInput(
                    "a CA file is given but the URL does not ask for TLS: add sslmode=require"
                        .to_owned(),
                ));
            }
            _ => None,
        };
        let target = describe(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postgres-io")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Open {
                path: target.clone(),
                source,
            })?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let direct = Direct {
            config: config.clone(),
            tls: tls.clone(),
            handle: runtime.handle().clone(),
        };
        let manager = match tls {
            Some(tls) => Manager::from_config(config, tls, manager_config),
            None => Manager::from_config(config, NoTls, manager_config),
        };
        let runtime = IoRuntime {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        };
        let pool = {
            let _context = runtime.handle.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(CONNECT_TIMEOUT))
                .create_timeout(Some(CONNECT_TIMEOUT))
                .build()
                .map_err(|e| StoreError::InvalidInput(format!("PostgreSQL pool: {e}")))?
        };
        let store = Self {
            pool,
            direct,
            writes: WriteCounters::default(),
            runtime,
            target,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Waits on this thread for `future`, which may use the pool (connections are made and
    /// driven on the store's runtime).
    fn block<F: Future>(&self, future: F) -> F::Output {
        let _context = self.runtime.handle.enter();
        futures::executor::block_on(future)
    }

    /// A pooled connection.
    async fn client(&self, op: &'static str) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| pool_error(op, e))
    }

    /// Runs `f` in a write transaction holding [`WRITE_LOCK`] and commits it.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl AsyncFnOnce(&Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.block(async {
            let mut client = self.client(op).await?;
            let tx = client.transaction().await.map_err(pg(op))?;
            let waiting = Instant::now();
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
                .await
                .map_err(pg(op))?;
            self.writes.record(waiting.elapsed());
            let out = f(&tx).await?;
            tx.commit().await.map_err(pg(op))?;
            Ok(out)
        })
    }

    /// Runs `f` in a read-only transaction (one consistent snapshot).
    fn read<T>(
        &self,
        op: &'static str,
        f: impl AsyncFnOnce(&Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.block(async {
            let mut client = self.client(op).await?;
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(pg(op))?;
            let out = f(&tx).await?;
            tx.commit().await.map_err(pg(op))?;
            Ok(out)
        })
    }

    /// The pool's connections and the writes' lock waits.
    fn stats(&self) -> crate::store::PoolStats {
        let status = self.pool.status();
        crate::store::PoolStats {
            max_size: status.max_size,
            open: status.size,
            idle: status.available,
            waiting: status.waiting,
            writes: self.writes.writes.load(Ordering::Relaxed),
            write_lock_wait_seconds: Duration::from_nanos(
                self.writes.wait_nanos.load(Ordering::Relaxed),
            )
            .as_secs_f64(),
            write_lock_contended: self.writes.contended.load(Ordering::Relaxed),
        }
    }

    fn migrate(&self) -> StoreResult<()> {
        const OP: &str = "migrate schema";
        let found = self.block(async {
            let mut client = self.client(OP).await?;
            let tx = client.transaction().await.map_err(pg(OP))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
                .await
                .map_err(pg(OP))?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            )
            .await
            .map_err(pg("create meta table"))?;
            let found = tx
                .query_opt(
                    "SELECT value FROM meta WHERE key = $1",
                    &[&SCHEMA_VERSION_KEY],
                )
                .await
                .map_err(pg("read schema version"))?
                .map(|row| row.get::<_, String>(0));
            let found = stored_schema_version(found.as_deref(), SCHEMA_VERSION)?;
            // One arm per version step; each runs once, inside this transaction. The PostgreSQL
            // store starts at version 6.
            if found < 6 {
                tx.batch_execute(SCHEMA_V6)
                    .await
                    .map_err(pg("create schema v6"))?;
            }
            if found < 7 {
                tx.batch_execute(SCHEMA_V7)
                    .await
                    .map_err(pg("migrate schema to v7"))?;
            }
            if found < SCHEMA_VERSION {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&SCHEMA_VERSION_KEY, &SCHEMA_VERSION.to_string()],
                )
                .await
                .map_err(pg("record schema version"))?;
            }
            tx.commit().await.map_err(pg(OP))?;
            Ok(found)
        })?;
        if found < SCHEMA_VERSION {
            tracing::info!(database = %self.target, from = found, to = SCHEMA_VERSION, "store schema migrated");
        }
        Ok(())
    }
}

/// `user@host:port/database`, for logs and errors (never the password).
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// Maps a driver error to a [`StoreError`], naming the operation.
fn pg(op: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |source| StoreError::Postgres { op, source }
}

/// No connection to be had: the server is down or refuses new connections (restarting, the
/// database closed to connections, out of slots), or the pool stayed exhausted. Whatever the
/// cause, the call may succeed later, so it is [`StoreError::Unavailable`] (a 503 to an API
/// client, a retry for the pipeline's threads).
fn pool_error(op: &'static str, error: deadpool_postgres::PoolError) -> StoreError {
    let message = match error {
        deadpool_postgres::PoolError::Backend(source) => match source.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => with_causes(&source),
        },
        other => with_causes(&other),
    };
    StoreError::Unavailable { op, message }
}

/// An error and its causes, `error: cause: cause` (the driver's "error connecting to server"
/// says why only in its source).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// PostgreSQL integers are signed; positions and limits beyond `i64::MAX` mean "everything".
fn clamp_i64(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// A stored `BIGINT` that must not be negative (a seq, a count), as the traits' `u64`.
fn unsigned(value: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is negative: {value}")))
}
