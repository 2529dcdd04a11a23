//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! Units are in the names (`_seconds`, `_total`); counters get `_total` from the encoder.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn source_partition(source: &str, partition: &str) -> Labels {
    vec![
        ("source".to_string(), source.to_string()),
        ("partition".to_string(), partition.to_string()),
    ]
}

/// Every metric Tidemark exports.
pub struct Metrics {
    registry: Registry,
    /// Events durably accepted.
    pub events_accepted: Counter,
    /// Events refused, by reason (`invalid`, `too_large`…).
    pub events_rejected: Family<Labels, Counter>,
    /// Events already in the log (same tenant and id).
    pub events_duplicate: Counter,
    /// Events later than the allowed lateness (matched, not counted in windows).
    pub events_late: Counter,
    /// Notifications created, by kind (`match`, `firing`, `resolved`).
    pub notifications: Family<Labels, Counter>,
    /// Notifications withheld by a rule's throttle.
    pub notifications_throttled: Gauge,
    /// Notifications whose rule template failed (fuel, time, error) and got the fallback message.
    pub templates_failed: Counter,
    /// Delivery attempts, by outcome (`delivered`, `retry`, `dead`).
    pub deliveries: Family<Labels, Counter>,
    /// Time to make a batch of events durable.
    pub ingest_commit_seconds: Histogram,
    /// From an event's acceptance to its notifications being enqueued.
    pub event_to_enqueue_seconds: Histogram,
    /// One dataflow epoch.
    pub engine_step_seconds: Histogram,
    /// Time to make an epoch's notifications and processed position durable (one transaction).
    pub outbox_commit_seconds: Histogram,
    /// One delivery attempt.
    pub delivery_seconds: Histogram,
    /// Active rules in the dataflow.
    pub rules_active: Gauge,
    /// Events held in the dataflow for open windows.
    pub events_retained: Gauge,
    /// Group keys the rules' throttles remember.
    pub throttle_keys: Gauge,
    /// Deliveries waiting (including retries and quiet-hour holds).
    pub deliveries_pending: Gauge,
    /// Deliveries that gave up.
    pub deliveries_dead: Gauge,
    /// Dashboard queries answered, by `endpoint` (`query`, `sql`) and `cache` (`hit`, `miss`,
    /// `error`).
    pub dashboard_queries: Family<Labels, Counter>,
    /// One dashboard query (spec or SQL over HTTP), cached or not.
    pub dashboard_query_seconds: Histogram,
    /// Report runs generated, by `status` (`complete`, `partial`, `failed`).
    pub report_runs: Family<Labels, Counter>,
    /// Generating one report run: its queries, charts and layout.
    pub report_generation_seconds: Histogram,
    /// Records a source logged, by `source` and `partition` (dead letters included).
    pub source_records: Family<Labels, Counter>,
    /// Records a source refused into the dead-letter table, by `source`.
    pub source_dead_letters: Family<Labels, Counter>,
    /// Records produced to a partition but not yet logged, by `source` and `partition`.
    pub source_lag: Family<Labels, Gauge>,
    /// 1 while a source is connected and reading, 0 while it retries, by `source`.
    pub source_up: Family<Labels, Gauge>,
    /// Times a source lost its connection or failed a commit and started again, by `source`.
    pub source_errors: Family<Labels, Counter>,
    /// Events read into live tables and not yet compacted into Parquet files.
    pub live_tail_events: Gauge,
    /// The last event-log position every live table's files cover.
    pub live_compacted_seq: Gauge,
    /// A PostgreSQL store's pooled connections, by `state` (`in_use`, `idle`); the rest of the
    /// `store_*` metrics are also a PostgreSQL store's (the embedded one has no pool).
    store_pool_connections: Family<Labels, Gauge>,
    /// Connections the pool may open.
    store_pool_max_connections: Gauge,
    /// Calls waiting for a pooled connection.
    store_pool_waiting: Gauge,
    /// Write transactions.
    store_writes: Counter,
    /// Time writes waited for the store's write lock (held by another writer, in this process
    /// or another).
    store_write_lock_wait_seconds: Counter<f64, AtomicU64>,
    /// Writes that waited more than a millisecond for the write lock.
    store_write_lock_contended: Counter,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tidemark");
        let latency = || Histogram::new(exponential_buckets(0.000_25, 2.0, 18));
        let m = Metrics {
            events_accepted: Counter::default(),
            events_rejected: Family::default(),
            events_duplicate: Counter::default(),
            events_late: Counter::default(),
            notifications: Family::default(),
            notifications_throttled: Gauge::default(),
            templates_failed: Counter::default(),
            deliveries: Family::default(),
            ingest_commit_seconds: latency(),
            event_to_enqueue_seconds: latency(),
            engine_step_seconds: latency(),
            outbox_commit_seconds: latency(),
            delivery_seconds: latency(),
            rules_active: Gauge::default(),
            events_retained: Gauge::default(),
            throttle_keys: Gauge::default(),
            deliveries_pending: Gauge::default(),
            deliveries_dead: Gauge::default(),
            dashboard_queries: Family::default(),
            dashboard_query_seconds: latency(),
            report_runs: Family::default(),
            report_generation_seconds: latency(),
            source_records: Family::default(),
            source_dead_letters: Family::default(),
            source_lag: Family::default(),
            source_up: Family::default(),
            source_errors: Family::default(),
            live_tail_events: Gauge::default(),
            live_compacted_seq: Gauge::default(),
            store_pool_connections: Family::default(),
            store_pool_max_connections: Gauge::default(),
            store_pool_waiting: Gauge::default(),
            store_writes: Counter::default(),
            store_write_lock_wait_seconds: Counter::default(),
            store_write_lock_contended: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_accepted",
            "Events durably accepted",
            m.events_accepted.clone(),
        );
        registry.register(
            "events_rejected",
            "Events refused, by reason",
            m.events_rejected.clone(),
        );
        registry.register(
            "events_duplicate",
            "Events already in the log",
            m.events_duplicate.clone(),
        );
        registry.register(
            "events_late",
            "Events later than the allowed lateness",
            m.events_late.clone(),
        );
        registry.register(
            "notifications",
            "Notifications created, by kind",
            m.notifications.clone(),
        );
        registry.register(
            "templates_failed",
            "Notifications whose rule template failed and got the fallback message",
            m.templates_failed.clone(),
        );
        registry.register(
            "notifications_throttled",
            "Notifications withheld by throttles since start",
            m.notifications_throttled.clone(),
        );
        registry.register(
            "deliveries",
            "Delivery attempts, by outcome",
            m.deliveries.clone(),
        );
        registry.register(
            "ingest_commit_seconds",
            "Time to make a batch of events durable",
            m.ingest_commit_seconds.clone(),
        );
        registry.register(
            "event_to_enqueue_seconds",
            "From event acceptance to its notifications being enqueued",
            m.event_to_enqueue_seconds.clone(),
        );
        registry.register(
            "engine_step_seconds",
            "One dataflow epoch",
            m.engine_step_seconds.clone(),
        );
        registry.register(
            "outbox_commit_seconds",
            "Time to make an epoch's notifications and processed position durable",
            m.outbox_commit_seconds.clone(),
        );
        registry.register(
            "delivery_seconds",
            "One delivery attempt",
            m.delivery_seconds.clone(),
        );
        registry.register(
            "rules_active",
            "Active rules in the dataflow",
            m.rules_active.clone(),
        );
        registry.register(
            "events_retained",
            "Events held for open windows",
            m.events_retained.clone(),
        );
        registry.register(
            "throttle_keys",
            "Group keys the rules' throttles remember (forgotten a day past the watermark)",
            m.throttle_keys.clone(),
        );
        registry.register(
            "deliveries_pending",
            "Deliveries waiting",
            m.deliveries_pending.clone(),
        );
        registry.register(
            "deliveries_dead",
            "Deliveries that gave up",
            m.deliveries_dead.clone(),
        );
        registry.register(
            "dashboard_queries",
            "Dashboard queries, by endpoint and result-cache outcome",
            m.dashboard_queries.clone(),
        );
        registry.register(
            "dashboard_query_seconds",
            "One dashboard query over HTTP",
            m.dashboard_query_seconds.clone(),
        );
        registry.register(
            "report_runs",
            "Report runs generated, by status",
            m.report_runs.clone(),
        );
        registry.register(
            "report_generation_seconds",
            "Generating one report run (queries, charts, layout)",
            m.report_generation_seconds.clone(),
        );
        registry.register(
            "source_records",
            "Records a source logged, by source and partition",
            m.source_records.clone(),
        );
        registry.register(
            "source_dead_letters",
            "Records a source refused into the dead-letter table, by source",
            m.source_dead_letters.clone(),
        );
        registry.register(
            "source_lag",
            "Records produced but not yet logged (high watermark - next offset), by source and partition",
            m.source_lag.clone(),
        );
        registry.register(
            "source_up",
            "1 while a source is connected and reading, by source",
            m.source_up.clone(),
        );
        registry.register(
            "source_errors",
            "Times a source lost its connection or a commit and started again, by source",
            m.source_errors.clone(),
        );
        registry.register(
            "live_tail_events",
            "Events read into live tables, not yet compacted into Parquet files",
            m.live_tail_events.clone(),
        );
        registry.register(
            "live_compacted_seq",
            "The last event-log position the live tables' Parquet files cover",
            m.live_compacted_seq.clone(),
        );
        registry.register(
            "store_pool_connections",
            "A PostgreSQL store's pooled connections, by state (in_use, idle)",
            m.store_pool_connections.clone(),
        );
        registry.register(
            "store_pool_max_connections",
            "Connections a PostgreSQL store's pool may open",
            m.store_pool_max_connections.clone(),
        );
        registry.register(
            "store_pool_waiting",
            "Calls waiting for a pooled PostgreSQL connection",
            m.store_pool_waiting.clone(),
        );
        registry.register(
            "store_writes",
            "Write transactions on a PostgreSQL store",
            m.store_writes.clone(),
        );
        registry.register(
            "store_write_lock_wait_seconds",
            "Time PostgreSQL writes waited for the store's write lock (held by another writer, in this process or another)",
            m.store_write_lock_wait_seconds.clone(),
        );
        registry.register(
            "store_write_lock_contended",
            "PostgreSQL writes that waited more than a millisecond for the write lock",
            m.store_write_lock_contended.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Shows a shared store's pool and write contention (its counters are cumulative since
    /// the store opened; the exported counters are moved up to them).
    pub fn set_store_pool(&self, stats: &connectors::store::PoolStats) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let in_use = stats.open.saturating_sub(stats.idle);
        for (state, n) in [("in_use", in_use), ("idle", stats.idle)] {
            self.store_pool_connections
                .get_or_create(&vec![("state".to_string(), state.to_string())])
                .set(gauge(n));
        }
        self.store_pool_max_connections.set(gauge(stats.max_size));
        self.store_pool_waiting.set(gauge(stats.waiting));
        self.store_writes
            .inc_by(stats.writes.saturating_sub(self.store_writes.get()));
        self.store_write_lock_contended.inc_by(
            stats
                .write_lock_contended
                .saturating_sub(self.store_write_lock_contended.get()),
        );
        let waited = stats.write_lock_wait_seconds - self.store_write_lock_wait_seconds.get();
        if waited > 0.0 {
            self.store_write_lock_wait_seconds.inc_by(waited);
        }
    }

    /// Counts a committed source batch: `records` read from `partition`, `dead` of them refused.
    pub fn source_records(&self, source: &str, partition: &str, records: u64, dead: u64) {
        self.source_records
            .get_or_create(&source_partition(source, partition))
            .inc_by(records);
        if dead > 0 {
            Self::inc(&self.source_dead_letters, "source", source, dead);
        }
    }

    /// Sets a partition's lag.
    pub fn set_source_lag(&self, source: &str, partition: &str, lag: i64) {
        self.source_lag
            .get_or_create(&source_partition(source, partition))
            .set(lag);
    }

    /// Marks a source connected (or not).
    pub fn set_source_up(&self, source: &str, up: bool) {
        self.source_up
            .get_or_create(&vec![("source".to_string(), source.to_string())])
            .set(i64::from(up));
    }

    /// Counts a source's restart after an error.
    pub fn source_errors(&self, source: &str) {
        Self::inc(&self.source_errors, "source", source, 1);
    }

    /// Counts one of a labelled family.
    pub fn inc(family: &Family<Labels, Counter>, label: &str, value: &str, by: u64) {
        family
            .get_or_create(&vec![(label.to_string(), value.to_string())])
            .inc_by(by);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
