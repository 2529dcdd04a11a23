//! Dashboards (`[dashboard]`): the engine's warehouse, models and cache, the PostgreSQL-wire
//! endpoint, query limits, live tables and the Trino and GA4 sources.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::Config;
use super::time::DurationSetting;

/// Dashboard-engine settings (`[dashboard]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardSettings {
    /// Warehouse root (`<warehouse>/<table>/tenant=<tenant>/*.parquet`); `<data_dir>/warehouse`
    /// when absent.
    pub warehouse: Option<PathBuf>,
    /// Semantic-model files (TOML); the built-in commerce model when empty.
    pub models: Vec<PathBuf>,
    /// How long a cached answer is served, e.g. `"5m"` (`"0s"` turns the cache off).
    pub cache_ttl: DurationSetting,
    /// Answers the result cache holds (0 turns it off).
    pub cache_entries: usize,
    /// Longest a `/v1/query`, `/v1/sql` or pgwire query may run, e.g. `"60s"`.
    pub query_timeout: DurationSetting,
    /// PostgreSQL wire-protocol listen address, e.g. `"127.0.0.1:5433"`; `"off"` (the default)
    /// runs no listener.
    pub pgwire_listen: String,
    /// PEM certificate chain for TLS on the pgwire endpoint; with it (and the key) set, only
    /// TLS connections are accepted.
    pub pgwire_tls_cert: Option<PathBuf>,
    /// PEM private key of `pgwire_tls_cert`.
    pub pgwire_tls_key: Option<PathBuf>,
    /// Order and ad tables in Trino, as `trino.<table>` in every tenant's catalog.
    pub trino: Option<TrinoSettings>,
    /// GA4 properties, as `ga4.<table>` in their tenants' catalogs.
    pub ga4: Option<Ga4Settings>,
    /// What one query, one tenant and all dashboard queries together may use.
    pub limits: QueryLimitsSettings,
    /// The event log as tables (`raw_events` and the model's `[events.*]` mappings).
    pub live: LiveSettings,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        DashboardSettings {
            warehouse: None,
            models: Vec::new(),
            cache_ttl: DurationSetting::from(Duration::from_secs(300)),
            cache_entries: 1_000,
            query_timeout: DurationSetting::from(Duration::from_secs(60)),
            pgwire_listen: "off".to_string(),
            pgwire_tls_cert: None,
            pgwire_tls_key: None,
            trino: None,
            ga4: None,
            limits: QueryLimitsSettings::default(),
            live: LiveSettings::default(),
        }
    }
}

impl Config {
    /// The warehouse root the dashboard engine reads.
    pub fn warehouse_dir(&self) -> PathBuf {
        self.dashboard
            .warehouse
            .clone()
            .unwrap_or_else(|| self.data_dir.join("warehouse"))
    }

    /// The PostgreSQL-wire listen address, or `None` when it is off.
    pub fn pgwire_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        let listen = self.dashboard.pgwire_listen.trim();
        if listen.is_empty() || listen.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        listen.parse().map(Some).with_context(|| {
            format!("'{listen}' is not a socket address like 127.0.0.1:5433, nor \"off\"")
        })
    }
}

/// Live tables (`[dashboard.live]`): accepted events are rows of `raw_events` and of the tables
/// the semantic model maps their types to, queryable at once and compacted into the warehouse's
/// Parquet files in the background.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveSettings {
    /// Serve the event log as tables (default true).
    pub enabled: bool,
    /// How often new events are read from the log, e.g. `"50ms"` (a query reads them too).
    pub poll_every: DurationSetting,
    /// How often read events are compacted into Parquet files, e.g. `"5s"`.
    pub compact_every: DurationSetting,
    /// Compact sooner once this many events wait in memory.
    pub max_tail_events: usize,
    /// Merge a day's live files of a table once it has this many.
    pub merge_files: usize,
}

impl Default for LiveSettings {
    fn default() -> Self {
        let options = sql::live::LiveOptions::default();
        LiveSettings {
            enabled: true,
            poll_every: DurationSetting::from(options.poll_every),
            compact_every: DurationSetting::from(options.compact_every),
            max_tail_events: options.max_tail_events,
            merge_files: options.merge_files,
        }
    }
}

impl LiveSettings {
    /// The engine's form of these settings.
    pub fn options(&self) -> sql::live::LiveOptions {
        sql::live::LiveOptions {
            poll_every: self.poll_every.get(),
            compact_every: self.compact_every.get(),
            max_tail_events: self.max_tail_events.max(1),
            merge_files: self.merge_files.max(2),
            ..sql::live::LiveOptions::default()
        }
    }
}

/// Limits on dashboard queries (`[dashboard.limits]`): `/v1/query`, `/v1/sql` and pgwire share
/// them. Queries run on their own threads, admitted fairly across tenants, so a heavy query
/// slows other queries but never ingest, delivery or `/healthz`; a query over a limit gets an
/// error naming the limit instead of taking the process down.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryLimitsSettings {
    /// Longest SQL text accepted, bytes (default 256 KiB).
    pub max_sql_bytes: usize,
    /// Deepest expression nesting accepted (`1+1+…` or `a OR b OR …` terms count one level
    /// each); checked before planning (default 256).
    pub max_expr_depth: usize,
    /// Memory one query may hold (joins, sorts, aggregates and its result), MiB. Operators that
    /// can spill to disk do so; the others fail with "query too large" (default: a quarter of
    /// `total_memory_mb`).
    pub query_memory_mb: usize,
    /// Memory all running dashboard queries may hold together, MiB (default: a quarter of the
    /// machine's memory, at least 256 MiB).
    pub total_memory_mb: usize,
    /// Most rows one answer may have (default 1,000,000).
    pub max_result_rows: usize,
    /// Threads that plan and run queries (default: half the cores, at least 1). Everything else
    /// (ingest, the dataflow, delivery, the API) runs on other threads.
    pub query_threads: usize,
    /// Queries running at once over all tenants (default: twice `query_threads`, at least 4, so
    /// one tenant at its own limit leaves room for others).
    pub max_running: usize,
    /// Queries running at once for one tenant (default 2).
    pub max_running_per_tenant: usize,
    /// Queries waiting for a slot over all tenants; beyond it a query is refused with 503 (SQLSTATE
    /// 53300 over pgwire) (default 64).
    pub max_queued: usize,
    /// Queries one tenant may have waiting; beyond it the tenant's query is refused with 429
    /// (SQLSTATE 53300) (default 8).
    pub max_queued_per_tenant: usize,
}

impl QueryLimitsSettings {
    /// The engine's form of the per-query limits.
    pub fn query_limits(&self) -> sql::QueryLimits {
        const MIB: usize = 1024 * 1024;
        sql::QueryLimits {
            max_sql_bytes: self.max_sql_bytes,
            max_expr_depth: self.max_expr_depth,
            query_memory_bytes: self.query_memory_mb.saturating_mul(MIB),
            total_memory_bytes: self.total_memory_mb.saturating_mul(MIB),
            max_result_rows: self.max_result_rows,
        }
    }
}

impl Default for QueryLimitsSettings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let query_threads = (cores / 2).max(1);
        let total_memory_mb = (machine_memory_mb() / 4).max(256);
        QueryLimitsSettings {
            max_sql_bytes: 256 * 1024,
            max_expr_depth: 256,
            query_memory_mb: (total_memory_mb / 4).max(64),
            total_memory_mb,
            max_result_rows: 1_000_000,
            query_threads,
            max_running: (2 * query_threads).max(4),
            max_running_per_tenant: 2,
            max_queued: 64,
            max_queued_per_tenant: 8,
        }
    }
}

/// The machine's memory in MiB (`MemTotal` of `/proc/meminfo`; 4 GiB where it cannot be read).
fn machine_memory_mb() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
        })
        .map_or(4096, |kib| kib / 1024)
}

/// A Trino source (`[dashboard.trino]`): every table of `catalog.schema`, each with a tenant
/// column that is always part of the query sent to Trino.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrinoSettings {
    /// Coordinator URL; `https://…` when a password is used.
    pub endpoint: String,
    /// The Trino user queries run as.
    pub user: String,
    /// Trino catalog of the tables.
    pub catalog: String,
    /// Trino schema of the tables.
    pub schema: String,
    /// The column naming each row's tenant (default `tenant`).
    #[serde(default = "default_tenant_column")]
    pub tenant_column: String,
    /// Push whole sub-plans (aggregates, joins, sorts) to Trino (default true).
    #[serde(default = "default_true")]
    pub pushdown: bool,
    /// Name of the secret holding the password (basic auth over HTTPS), if any.
    #[serde(default)]
    pub password_secret: Option<String>,
    /// The secrets-store tenant that owns `password_secret` (default `system`).
    #[serde(default = "default_system_tenant")]
    pub secrets_tenant: String,
}

/// GA4 sources (`[dashboard.ga4]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ga4Settings {
    /// The Data API root (default Google's; tests point it at a stand-in).
    #[serde(default)]
    pub api_base: Option<String>,
    /// Which tenants read which properties, with whose key.
    #[serde(default)]
    pub tenants: Vec<Ga4TenantSettings>,
}

/// One tenant's GA4 properties (`[[dashboard.ga4.tenants]]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ga4TenantSettings {
    /// The tenant.
    pub tenant: String,
    /// Name of the tenant's secret holding the service-account key JSON.
    pub key_secret: String,
    /// Table name → GA4 property id, e.g. `{ web = "123456789" }`.
    pub tables: std::collections::BTreeMap<String, String>,
}

fn default_tenant_column() -> String {
    "tenant".to_string()
}

fn default_true() -> bool {
    true
}

fn default_system_tenant() -> String {
    "system".to_string()
}
