//! Durable state: the event log, rules, destinations, tenants, the notification outbox and
//! the delivery log.
//!
//! [`Store`] is the interface the pipeline programs against; [`SqliteStore`] is the embedded
//! implementation (a PostgreSQL one is meant to follow behind the same trait, which is why no
//! SQL dialect detail leaks out of `sqlite.rs`). All methods are synchronous: callers run them
//! on blocking threads (`tokio::task::spawn_blocking`) and batch work into few calls, since
//! every call that writes is one transaction and one durable commit.
//!
//! Sealed secrets (see [`crate::secrets`]) live behind their own trait, [`SecretRows`], which
//! every backend implements beside [`Store`].
//!
//! Everything is tenant-scoped: every read or update that takes a tenant filters by it, so a
//! caller holding tenant A's credential cannot see or change tenant B's rows by guessing ids.

mod sqlite;
#[cfg(test)]
mod tests;

pub use sqlite::SqliteStore;

use serde::{Deserialize, Serialize};

/// An event to append to the log. The idempotency key is `(tenant, id)`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Producer-chosen event id; unique per tenant.
    pub id: String,
    /// Owning tenant (taken from the credential, never from the body).
    pub tenant: String,
    /// Event type, e.g. `order.created`.
    pub event_type: String,
    /// Event time, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The original JSON text of the event, kept verbatim for replay.
    pub body: String,
}

/// An event as stored in the log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Log position: strictly increasing in append order, never reused.
    pub seq: u64,
    /// Producer-chosen event id.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Event type.
    pub event_type: String,
    /// Event time, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The original JSON text.
    pub body: String,
    /// When the log accepted the event, milliseconds since the Unix epoch.
    pub received_at_ms: i64,
}

/// What happened to one event of an [`Store::append_events`] batch.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AppendOutcome {
    /// The event is new and now durable at `seq`.
    Appended {
        /// Log position of the new event.
        seq: u64,
    },
    /// An event with the same `(tenant, id)` was already in the log (or earlier in the same
    /// batch) at `seq`; nothing was written.
    Duplicate {
        /// Log position of the event that was there first.
        seq: u64,
    },
}

impl AppendOutcome {
    /// The log position of the event, new or pre-existing.
    pub fn seq(&self) -> u64 {
        match *self {
            Self::Appended { seq } | Self::Duplicate { seq } => seq,
        }
    }
}

/// An alert rule as stored; `body` is the rule's JSON definition, opaque to the store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredRule {
    /// Owning tenant.
    pub tenant: String,
    /// Rule id, unique per tenant.
    pub id: String,
    /// Version chosen by the caller; increases on every change.
    pub version: u64,
    /// Whether the rule is evaluated.
    pub enabled: bool,
    /// The rule definition as JSON text.
    pub body: String,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// A notification destination as stored; `config` is kind-specific JSON (see `sinks`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredDestination {
    /// Owning tenant.
    pub tenant: String,
    /// Destination id, unique per tenant.
    pub id: String,
    /// Sink kind: `"webhook"` or `"file"`.
    pub kind: String,
    /// Kind-specific configuration as JSON text.
    pub config: String,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// A tenant (one shop).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    /// Tenant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// IANA time zone used for schedules and quiet hours, e.g. `Asia/Seoul`.
    pub time_zone: String,
}

/// A notification intent to put in the outbox.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewNotification {
    /// Deterministic id (derived from tenant + rule + group key + window, or report + instant),
    /// unique across all tenants. Regenerating the same id after a restart adds nothing.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Rule (or report) that produced it.
    pub rule_id: String,
    /// `"match"`, `"firing"`, `"resolved"`, …; `firing`/`resolved` maintain the open alerts.
    pub kind: String,
    /// Group key within the rule (empty for ungrouped rules).
    pub group_key: String,
    /// JSON body to deliver; must be valid JSON.
    pub payload: String,
    /// When the notification was generated, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Destinations (of the same tenant) to deliver to; one delivery row each.
    pub destination_ids: Vec<String>,
}

/// State of one (notification, destination) delivery.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first or next attempt.
    Pending,
    /// A sink accepted it.
    Delivered,
    /// Given up on: attempts exhausted, a permanent error, or the destination was deleted.
    Dead,
}

impl DeliveryStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 3] = [Self::Pending, Self::Delivered, Self::Dead];

    /// The lowercase name used in storage, the API and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// Parses the lowercase name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery that is due, joined with its destination's current configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DueDelivery {
    /// Notification id: the idempotency key handed to the sink.
    pub notification_id: String,
    /// Owning tenant.
    pub tenant: String,
    /// The destination as currently configured.
    pub destination: StoredDestination,
    /// JSON body to deliver.
    pub payload: String,
    /// Attempts made so far (0 before the first).
    pub attempt: u32,
    /// Notification kind.
    pub kind: String,
    /// When the notification was generated, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// One entry of the delivery attempt log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// Notification id.
    pub notification_id: String,
    /// Destination id.
    pub destination_id: String,
    /// 1-based number of this attempt (`DueDelivery::attempt + 1`).
    pub attempt: u32,
    /// When the attempt was made, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// `"delivered"`, `"retry"` or `"dead"`.
    pub outcome: String,
    /// HTTP status code, when the sink got a response.
    pub status_code: Option<u16>,
    /// Short error text for failed attempts.
    pub error: Option<String>,
    /// How long the attempt took.
    pub duration_ms: u64,
}

/// What to do with a delivery after an attempt (see [`Store::record_attempt`]).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryNext {
    /// Done: the sink accepted it.
    Delivered,
    /// Try again at this time (milliseconds since the Unix epoch).
    RetryAt(i64),
    /// Give up: moves to the dead letters.
    Dead,
}

/// A delivery as shown by the API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DeliveryView {
    /// Destination id.
    pub destination_id: String,
    /// Current status.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// Next attempt time while pending.
    pub next_attempt_at_ms: Option<i64>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<DeliveryAttempt>,
}

/// A notification with its deliveries, as shown by the API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NotificationView {
    /// Notification id.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Producing rule.
    pub rule_id: String,
    /// Notification kind.
    pub kind: String,
    /// Group key within the rule.
    pub group_key: String,
    /// The delivered body.
    pub payload: serde_json::Value,
    /// When the notification was generated, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// One entry per destination, ordered by destination id.
    pub deliveries: Vec<DeliveryView>,
}

/// Position in a newest-first notification listing: pass the last item's values to get the
/// next page.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NotificationCursor {
    /// `created_at_ms` of the last notification seen.
    pub created_at_ms: i64,
    /// `id` of the last notification seen.
    pub id: String,
}

/// Filter for [`Store::list_notifications`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    /// Only notifications with at least one delivery in this status.
    pub status: Option<DeliveryStatus>,
    /// Only notifications of this rule.
    pub rule_id: Option<String>,
    /// Maximum number returned; 0 means the default of 100.
    pub limit: usize,
    /// Only notifications strictly older than this position (newest first).
    pub before: Option<NotificationCursor>,
}

/// An alert that fired and has not resolved yet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OpenAlert {
    /// Owning tenant.
    pub tenant: String,
    /// Rule that fired.
    pub rule_id: String,
    /// Group key within the rule.
    pub group_key: String,
    /// `created_at_ms` of the first firing notification of this episode.
    pub since_ms: i64,
    /// The most recent firing notification.
    pub notification_id: String,
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
            Self::Open { .. } => true,
            _ => false,
        }
    }
}

/// Shorthand for store results.
/// The kinds of tenant-owned objects addressed by id in the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// An alert rule.
    Rule,
    /// A delivery destination.
    Destination,
    /// A notification.
    Notification,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The durable state of Tidemark. Implementations are shared between threads; every method
/// that writes is atomic (one transaction) and durable when it returns.
pub trait Store: Send + Sync {
    // ---- event log ----

    /// Appends a batch of events in ONE transaction (group commit). Each event is inserted
    /// unless `(tenant, id)` is already in the log — or earlier in the same batch — in which
    /// case it is reported as [`AppendOutcome::Duplicate`] with the original position.
    /// Outcomes are in input order. When this returns `Ok`, every event is durable.
    fn append_events(&self, events: &[NewEvent]) -> StoreResult<Vec<AppendOutcome>>;

    /// Up to `limit` events with `seq > after_seq`, in `seq` order (replay on restart).
    fn events_after(&self, after_seq: u64, limit: usize) -> StoreResult<Vec<StoredEvent>>;

    /// Like [`Store::events_after`] but only events whose event time is `>= min_ts_ms`
    /// (replaying just the window the dataflow still needs).
    fn events_since_ts(
        &self,
        min_ts_ms: i64,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>>;

    /// Number of events in the log for `tenant`.
    fn event_count(&self, tenant: &str) -> StoreResult<u64>;

    /// Highest `seq` in the log, 0 when empty.
    fn last_event_seq(&self) -> StoreResult<u64>;

    // ---- rules ----

    /// Inserts or replaces the rule `(rule.tenant, rule.id)`.
    fn put_rule(&self, rule: &StoredRule) -> StoreResult<()>;

    /// The rule `id` of `tenant`, if any.
    fn get_rule(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredRule>>;

    /// Rules of `tenant`, or of every tenant with `None` (to rebuild dataflow state), ordered
    /// by tenant then id.
    fn list_rules(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredRule>>;

    /// Deletes the rule `id` of `tenant`; `false` when there was none.
    fn delete_rule(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    // ---- destinations ----

    /// Inserts or replaces the destination `(destination.tenant, destination.id)`.
    fn put_destination(&self, destination: &StoredDestination) -> StoreResult<()>;

    /// The destination `id` of `tenant`, if any.
    fn get_destination(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredDestination>>;

    /// Destinations of `tenant`, ordered by id.
    fn list_destinations(&self, tenant: &str) -> StoreResult<Vec<StoredDestination>>;

    /// Deletes the destination `id` of `tenant`; `false` when there was none. Pending
    /// deliveries to it go dead when next claimed.
    fn delete_destination(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    // ---- tenants and credentials ----

    /// Inserts or replaces a tenant.
    fn put_tenant(&self, tenant: &Tenant) -> StoreResult<()>;

    /// The tenant `id`, if any.
    fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>>;

    /// All tenants, ordered by id.
    fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;

    /// Registers an API key for `tenant` by the lowercase hex SHA-256 of the key (the key
    /// itself is never stored). Re-registering a hash moves it to `tenant`.
    fn put_api_key(&self, tenant: &str, key_hash: &str) -> StoreResult<()>;

    /// The tenant owning the API key with this hash, if any.
    fn tenant_for_api_key(&self, key_hash: &str) -> StoreResult<Option<String>>;

    // ---- notification outbox ----

    /// Enqueues notifications in one transaction and returns how many were new. A
    /// notification whose id is already stored is ignored (restarts regenerate the same ids),
    /// and so is its open-alert effect. Each new notification gets one pending delivery per
    /// destination, due at `now_ms`. New `"firing"` notifications open (or refresh) the alert
    /// `(tenant, rule_id, group_key)`; new `"resolved"` ones close it. Processed in input order.
    fn enqueue_notifications(
        &self,
        notifications: &[NewNotification],
        now_ms: i64,
    ) -> StoreResult<usize> {
        self.commit_step(&[(now_ms, notifications.to_vec())], None)
    }

    /// Records one engine step in one transaction (one fsync): each group of notifications is
    /// enqueued as [`Store::enqueue_notifications`] with its deliveries due at the group's time,
    /// and the `checkpoint` meta key is set with them, so the notifications and the position
    /// they were produced up to are durable together. Returns how many notifications were new.
    fn commit_step(
        &self,
        notifications: &[(i64, Vec<NewNotification>)],
        checkpoint: Option<(&str, &str)>,
    ) -> StoreResult<usize>;

    /// Open alerts of `tenant`, or of all tenants with `None`.
    fn open_alerts(&self, tenant: Option<&str>) -> StoreResult<Vec<OpenAlert>>;

    /// Up to `limit` pending deliveries due at `now_ms`, oldest due first, without claiming
    /// them. Deliveries whose destination was deleted are skipped. Meant for inspection; a
    /// sender uses [`Store::claim_due_deliveries`].
    fn due_deliveries(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<DueDelivery>>;

    /// Like [`Store::due_deliveries`], but in the same transaction pushes each returned
    /// delivery's next attempt to `now_ms + lease_ms`, so concurrent senders never get the
    /// same delivery while the lease runs. A sender that dies mid-delivery loses only its
    /// lease: the delivery becomes due again (at-least-once; the sink de-duplicates by
    /// notification id). Deliveries whose destination was deleted are marked dead here.
    fn claim_due_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<DueDelivery>>;

    /// Appends `attempt` to the attempt log and moves the delivery according to `next`, in
    /// one transaction. A delivery that is no longer pending (another sender finished it) keeps
    /// its status; the attempt is still logged. Errors with `NotFound` for an unknown delivery.
    fn record_attempt(&self, attempt: &DeliveryAttempt, next: DeliveryNext) -> StoreResult<()>;

    /// Notifications of `tenant`, newest first, with deliveries and attempt logs.
    fn list_notifications(
        &self,
        tenant: &str,
        filter: &NotificationFilter,
    ) -> StoreResult<Vec<NotificationView>>;

    /// The notification `id` of `tenant`, if any.
    fn get_notification(&self, tenant: &str, id: &str) -> StoreResult<Option<NotificationView>>;

    /// Number of deliveries in each status, across tenants (for gauges); every status is
    /// listed, zero or not.
    fn delivery_counts(&self) -> StoreResult<Vec<(DeliveryStatus, u64)>>;

    /// Makes every claimed but unfinished delivery due again at `now_ms`. Called once at start-up
    /// by the only process using this store: claims left by a crashed predecessor are then
    /// retried at once instead of after their lease. Returns how many were released.
    fn release_claims(&self, now_ms: i64) -> StoreResult<usize>;

    /// Which tenant owns the rule, destination or notification `id`, if any. Used only to tell
    /// "not yours" (403) from "no such thing" (404); it never returns the object itself.
    fn owner_of(&self, kind: ObjectKind, id: &str) -> StoreResult<Option<String>>;

    // ---- metadata ----

    /// A process-wide metadata value (e.g. the pipeline's replay checkpoint).
    fn get_meta(&self, key: &str) -> StoreResult<Option<String>>;

    /// Sets a process-wide metadata value.
    fn set_meta(&self, key: &str, value: &str) -> StoreResult<()>;

    /// Copies everything committed so far from the store's write-ahead log into its main file
    /// and empties the log, returning once done: so that a measurement does not start with the
    /// previous phase's writes still to be copied. A store without such a log has nothing to do.
    fn checkpoint_log(&self) -> StoreResult<()> {
        Ok(())
    }
}

// ---- secrets ----

/// One sealed version of a tenant's secret, as stored.
///
/// The store never sees a plaintext or a key: only the sealed bytes and the numbers the
/// encryption binds them to (tenant, name, version and KEK version; see
/// [`crate::secrets`]). `Debug` shows sizes, not bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// Owning tenant.
    pub tenant: String,
    /// Secret name, unique per tenant.
    pub name: String,
    /// Value version, 1 for the first put of a name; increases by one per put.
    pub version: u64,
    /// Version of the key-encryption key that wraps `wrapped_dek`.
    pub kek_version: u32,
    /// Nonce of the data-key layer.
    pub dek_nonce: Vec<u8>,
    /// The data key, encrypted and authenticated under the KEK.
    pub wrapped_dek: Vec<u8>,
    /// Nonce of the value layer.
    pub value_nonce: Vec<u8>,
    /// The value, encrypted and authenticated under the data key (tag appended).
    pub ciphertext: Vec<u8>,
    /// When this version was put, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

impl std::fmt::Debug for SecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRow")
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("kek_version", &self.kek_version)
            .field("ciphertext_bytes", &self.ciphertext.len())
            .field("created_at_ms", &self.created_at_ms)
            .finish_non_exhaustive()
    }
}

/// A [`SecretRow`] with its position in the table, for the re-wrap scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionedSecretRow {
    /// Row position: stable for the row's life, increasing in insert order.
    pub position: u64,
    /// The row.
    pub row: SecretRow,
}

/// A row re-sealed under a new KEK version, replacing the row at `position` only if that row
/// is still sealed under `from_kek_version` (a concurrent delete or prune wins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewrappedSecretRow {
    /// Position of the row being replaced.
    pub position: u64,
    /// KEK version the row was read under.
    pub from_kek_version: u32,
    /// The re-sealed row (same tenant, name and version).
    pub row: SecretRow,
}

/// A secret as listed: never its value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretInfo {
    /// Secret name.
    pub name: String,
    /// Latest version.
    pub version: u64,
    /// Versions kept (the latest and the ones before it still available for rollback).
    pub versions: Vec<u64>,
    /// KEK version the latest version is sealed under.
    pub kek_version: u32,
    /// When the latest version was put, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// Per-KEK-version bookkeeping of the secrets table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct KekUsage {
    /// KEK version.
    pub kek_version: u32,
    /// Encryptions made under this KEK version (one per data key wrapped).
    pub encryptions: u64,
    /// Position of the last row re-wrapped to this version (the resumable re-wrap cursor).
    pub rewrap_cursor: u64,
}

/// Limits applied by [`SecretRows::put_secret_rows`] inside its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretWritePolicy {
    /// Versions of a name kept after a put (the new one included); older ones are deleted.
    pub keep_versions: u64,
    /// Encryptions one KEK version may make; a put that would exceed it is refused.
    pub max_kek_encryptions: u64,
}

/// Outcome of [`SecretRows::put_secret_rows`]. Anything but `Stored` wrote nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretPut {
    /// Every row is durable.
    Stored {
        /// Encryptions counted against the rows' KEK version after this put.
        kek_encryptions: u64,
    },
    /// Another writer already stored this or a later version of the name: read the latest
    /// version again and re-seal.
    VersionTaken {
        /// The name whose version was taken.
        name: String,
        /// The version that was refused.
        version: u64,
    },
    /// The rows are sealed under an older KEK version than the store's active one (a
    /// rotation happened): fetch the current KEK and re-seal.
    StaleKek {
        /// The store's active KEK version.
        active: u32,
    },
    /// The KEK version has made as many encryptions as the policy allows: rotate it.
    KekExhausted {
        /// The exhausted KEK version.
        kek_version: u32,
        /// Encryptions made under it so far.
        encryptions: u64,
    },
}

/// Storage of sealed secrets, kept apart from [`Store`] so each backend implements both.
///
/// Every read and delete takes the tenant and filters by it. The methods are synchronous,
/// like [`Store`]'s; every method that writes is one transaction.
pub trait SecretRows: Send + Sync {
    /// The latest stored version of each of `names` of `tenant`, 0 for a name with none, in
    /// input order.
    fn latest_secret_versions(&self, tenant: &str, names: &[&str]) -> StoreResult<Vec<u64>>;

    /// Stores sealed rows in one transaction, all or nothing. Each row's version must be
    /// above every stored version of its name, and its KEK version at least the active one
    /// (a higher one becomes active). Counts one KEK encryption per row and deletes versions
    /// beyond `policy.keep_versions`.
    fn put_secret_rows(
        &self,
        rows: &[SecretRow],
        policy: &SecretWritePolicy,
    ) -> StoreResult<SecretPut>;

    /// The row `(tenant, name, version)`, or the latest version with `None`.
    fn get_secret_row(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u64>,
    ) -> StoreResult<Option<SecretRow>>;

    /// Secrets of `tenant`, ordered by name.
    fn list_secrets(&self, tenant: &str) -> StoreResult<Vec<SecretInfo>>;

    /// Deletes every version of the secret `name` of `tenant`; returns how many.
    fn delete_secret(&self, tenant: &str, name: &str) -> StoreResult<u64>;

    /// Bookkeeping of every KEK version still registered, oldest first; the last is active.
    fn kek_usage(&self) -> StoreResult<Vec<KekUsage>>;

    /// Makes `kek_version` the active KEK version (idempotent). Refused for a version below
    /// the active one.
    fn activate_kek_version(&self, kek_version: u32) -> StoreResult<()>;

    /// Number of rows sealed under any KEK version other than `kek_version`.
    fn count_secret_rows_off(&self, kek_version: u32) -> StoreResult<u64>;

    /// Up to `limit` rows at positions after `after` sealed under a KEK version other than
    /// `target`, in position order.
    fn secret_rows_to_rewrap(
        &self,
        target: u32,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<PositionedSecretRow>>;

    /// Replaces re-sealed rows, counts their encryptions against `target` and moves its
    /// re-wrap cursor to `cursor`, in one transaction. Refused when `target` is no longer the
    /// active version. Returns how many rows were replaced.
    fn rewrap_secret_rows(
        &self,
        target: u32,
        rows: &[RewrappedSecretRow],
        cursor: u64,
    ) -> StoreResult<usize>;

    /// Forgets every KEK version below `kek_version` (and its counter). Refused while a row is
    /// still sealed under one of them.
    fn retire_kek_versions_before(&self, kek_version: u32) -> StoreResult<Vec<u32>>;
}
