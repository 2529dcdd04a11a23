//! Durable state, split by concern: the event log, the catalog (tenants, API keys, rules,
//! destinations), the notification outbox and delivery log, scheduled reports and their runs,
//! saved console dashboards, sealed secret rows and process-wide metadata.
//!
//! Each concern is a trait in its own module, with its row types beside it: [`EventLog`],
//! [`Catalog`], [`Outbox`], [`Reports`], [`Sources`] (source positions and dead letters), [`Audiences`] (CRM contacts,
//! audiences and their members), [`Campaigns`] (campaigns and their sends), [`Dashboards`]
//! (saved console dashboards), [`SecretRows`] and [`Meta`]. [`Store`] is all of them at once; the
//! pipeline shares one `Arc<dyn Store>`, and code that needs a single concern takes just that
//! trait (the secrets store, for one, takes only [`SecretRows`]). [`open`] opens the store a
//! configuration names; [`SqliteStore`] is the embedded backend and [`PostgresStore`] the
//! shared one (a `postgres://` URL); no SQL dialect detail leaks out of `sqlite/` or `postgres/`.
//! Every backend must pass the same behaviour tests, the `contract` module (built for this
//! crate's tests and for the `contract-tests` feature).
//!
//! # Synchronous, by decision
//!
//! Every store method is synchronous. The callers that matter for throughput are dedicated OS
//! threads that batch: the group-commit thread appends a whole batch of events in one
//! [`EventLog::append_events`] call, and the engine thread records a whole step with one
//! [`Outbox::commit_step`]; each call is one transaction and one durable commit, so there is
//! nothing to gain from yielding inside it, and a blocking call keeps the transaction's shape
//! plain to read. Async code (HTTP handlers, the sender, the secrets store) moves calls onto
//! tokio's blocking pool through one `spawn_blocking` helper where it lives, and makes few,
//! batched calls. The PostgreSQL backend implements the same traits by waiting on its async client
//! and connection pool, so neither the traits nor their callers change with the backend.
//!
//! Everything is tenant-scoped: every read or update that takes a tenant filters by it, so a
//! caller holding tenant A's credential cannot see or change tenant B's rows by guessing ids.

mod audiences;
mod campaigns;
mod catalog;
#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
mod dashboards;
mod events;
mod handover;
mod meta;
mod outbox;
mod postgres;
mod reports;
mod secrets;
mod sources;
mod sqlite;

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;

pub use audiences::{
    AudienceSize, AudienceStep, Audiences, Member, MembershipChangeRow, StoredAudience,
    StoredContact,
};
pub use campaigns::{CampaignSend, Campaigns, NewSend, SendOutcome, SendStatus, StoredCampaign};
pub use catalog::{Catalog, StoredDestination, StoredRule, Tenant};
pub use dashboards::{Dashboards, StoredDashboard};
pub use events::{AppendOutcome, EventLog, NewEvent, StoredEvent};
pub use handover::{Handover, Logged};
pub use meta::{Leadership, Meta, PoolStats};
pub use outbox::{
    ClaimLimits, DeliveryAttempt, DeliveryNext, DeliveryStatus, DeliveryView, DueDelivery,
    NewNotification, NotificationCursor, NotificationFilter, NotificationView, OpenAlert, Outbox,
};
pub use postgres::{ImportedTable, PostgresOptions, PostgresStore};
pub use reports::{
    FinishedRun, NewReportRun, REPORT_KIND, ReportRun, Reports, RunStatus, StoredReport,
};
pub use secrets::{
    KekUsage, PositionedSecretRow, RewrappedSecretRow, SecretInfo, SecretPut, SecretRow,
    SecretRows, SecretWritePolicy,
};
pub use sources::{
    DEAD_LETTER_RAW_BYTES, DeadLetter, NewDeadLetter, SourcePosition, SourceProgress, Sources,
};
pub use sqlite::SqliteStore;

/// The durable state of Tidemark: every concern at once. Implementations are shared between
/// threads; every method that writes is atomic (one transaction) and durable when it returns.
///
/// Nothing to implement: a type that implements every concern is a `Store`.
pub trait Store:
    EventLog
    + Catalog
    + Outbox
    + Reports
    + Sources
    + Audiences
    + Campaigns
    + Dashboards
    + Meta
    + SecretRows
    + Send
    + Sync
{
}

impl<
    T: EventLog
        + Catalog
        + Outbox
        + Reports
        + Sources
        + Audiences
        + Campaigns
        + Dashboards
        + Meta
        + SecretRows
        + Send
        + Sync,
> Store for T
{
}

/// The URL scheme of the embedded SQLite backend.
const SQLITE_SCHEME: &str = "sqlite";

/// The URL schemes of the PostgreSQL backend (libpq accepts both).
const POSTGRES_SCHEMES: [&str; 2] = ["postgres", "postgresql"];

/// Opens the store at `location`: a `sqlite://` URL (`sqlite:///var/lib/tidemark.db`,
/// `sqlite://data/tidemark.db`) or a plain file path, both meaning the SQLite database file
/// there (created, with its directory, if missing), or a `postgres://` URL, meaning that
/// PostgreSQL database (see [`PostgresStore::open`]). Any other `scheme://` is refused with
/// [`StoreError::UnsupportedScheme`].
pub fn open(location: impl AsRef<OsStr>) -> StoreResult<Arc<dyn Store>> {
    let location = location.as_ref();
    let path = match location.to_str().and_then(|text| text.split_once("://")) {
        Some((scheme, rest)) if is_scheme(scheme) => {
            // Schemes are case-insensitive (RFC 3986).
            if POSTGRES_SCHEMES
                .iter()
                .any(|known| scheme.eq_ignore_ascii_case(known))
            {
                let url = location.to_str().unwrap_or_default();
                return Ok(Arc::new(PostgresStore::open(url)?));
            }
            if !scheme.eq_ignore_ascii_case(SQLITE_SCHEME) {
                return Err(StoreError::UnsupportedScheme {
                    scheme: scheme.to_owned(),
                });
            }
            Path::new(rest)
        }
        _ => Path::new(location),
    };
    Ok(Arc::new(SqliteStore::open(path)?))
}

/// Whether `text` is a URL scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`),
/// so that a path that merely contains `://` further on is still taken as a path.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Errors from a [`Store`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed an operation.
    #[error("store: {op} failed: {source}")]
    Database {
        /// What the store was doing, e.g. `append events`.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL failed an operation (or the connection to it broke).
    #[error("store: {op} failed: {source}")]
    Postgres {
        /// What the store was doing.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// No connection to the database could be had in time (it is down or every pooled
    /// connection is busy).
    #[error("store: {op} failed: the database is unavailable: {message}")]
    Unavailable {
        /// What the store was doing.
        op: &'static str,
        /// Why.
        message: String,
    },
    /// The database file or its directory could not be prepared.
    #[error("store: cannot open {path}: {source}")]
    Open {
        /// Path of the database file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A stored row does not hold what the schema promises.
    #[error("store: corrupt row: {0}")]
    Corrupt(String),
    /// A row the operation needs does not exist.
    #[error("store: not found: {0}")]
    NotFound(String),
    /// The input cannot be stored as given (which field, and why).
    #[error("store: invalid input: {0}")]
    InvalidInput(String),
    /// The database was written by a newer version of Tidemark.
    #[error(
        "store: database schema version {found} is newer than this build supports ({supported}); upgrade Tidemark"
    )]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// The location names a kind of store this build cannot open.
    #[error(
        "store: {scheme}:// stores are not supported; use a sqlite:// URL, a file path or a postgres:// URL"
    )]
    UnsupportedScheme {
        /// The URL scheme given, e.g. `postgres`.
        scheme: String,
    },
}

impl StoreError {
    /// Whether retrying the same call later may succeed (the database was busy or hit an I/O
    /// error), as opposed to bad input or a corrupt database.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::SystemIoFailure
                        | rusqlite::ErrorCode::DiskFull
                )
            ),
            Self::Postgres { source, .. } => postgres_transient(source),
            Self::Open { .. } | Self::Unavailable { .. } => true,
            _ => false,
        }
    }
}

/// Whether a PostgreSQL error may pass: the connection broke, the server is starting or
/// shutting down or out of connections, or a transaction lost a conflict.
fn postgres_transient(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if error.is_closed() {
        return true;
    }
    match error.code() {
        // No SQL state: an I/O error or a timeout on the way.
        None => true,
        Some(code) => [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::QUERY_CANCELED,
            SqlState::DISK_FULL,
            SqlState::IO_ERROR,
        ]
        .contains(code),
    }
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;
