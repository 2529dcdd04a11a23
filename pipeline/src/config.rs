//! Configuration: embedded defaults, overridden by one TOML file, overridden by `TIDEMARK_*`
//! environment variables (`__` separates levels: `TIDEMARK_SERVER__LISTEN=127.0.0.1:9000`).
//!
//! An invalid configuration stops start-up with one message naming the key and the problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use connectors::outbound::{OutboundGuard, OutboundPolicy};
use connectors::sinks::fluvio::config::{DEFAULT_TIMEOUT, DEFAULT_TOPIC_PREFIX};
use connectors::sinks::{FluvioSettings, SinkError, SinkSettings};
use connectors::sources::fluvio::FluvioSourceConfig;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// `store`: where the state lives when it is not the embedded SQLite file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoreSetting {
    /// `store = "postgres://…"` (or a `sqlite://` URL or a file path).
    Url(String),
    /// `[store]` with `url` and what a URL cannot carry.
    Table(StoreTable),
}

/// `[store]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreTable {
    /// The database URL, as `store = "…"` takes it.
    pub url: String,
    /// A file holding the password (its first line), e.g. a mounted secret; it wins over the
    /// URL's password and `PGPASSWORD`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM certificates to verify the server with, besides the system's roots
    /// (`sslmode=require`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl StoreSetting {
    /// The URL.
    pub fn url(&self) -> &str {
        match self {
            StoreSetting::Url(url) | StoreSetting::Table(StoreTable { url, .. }) => url,
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the SQLite store and other files live.
    pub data_dir: PathBuf,
    /// The store, when it is not the SQLite file in `data_dir`: a `postgres://` URL
    /// (`postgres://user@host:5432/tidemark`; a password missing from it is read from
    /// `PGPASSWORD`), a `sqlite://` URL or a file path (`TIDEMARK_STORE`); or a `[store]`
    /// table with the URL and a password file and CA file.
    pub store: Option<StoreSetting>,
    /// HTTP server.
    pub server: ServerConfig,
    /// Dataflow engine and ingest batching.
    pub engine: EngineSettings,
    /// Notification delivery.
    pub sender: SenderConfig,
    /// Where deliveries may connect: the guard on tenant-supplied URLs (`[outbound]`).
    pub outbound: OutboundSettings,
    /// The operator's own systems destinations deliver to (`[sinks]`).
    pub sinks: SinksSettings,
    /// Tenants created (or updated) at start-up, with their API keys.
    pub tenants: Vec<TenantConfig>,
    /// The secrets store: where its key-encryption key lives, and re-wrap batching.
    pub secrets: SecretsConfig,
    /// Dashboards: the engine's warehouse, models and cache, and the PostgreSQL-wire endpoint.
    pub dashboard: DashboardSettings,
    /// Which event times ingest accepts (`[ingest]`).
    pub ingest: IngestSettings,
    /// How much a rule's message template may do (`[templates]`).
    pub templates: TemplateSettings,
    /// Where events stream in from besides `POST /v1/events` (`[[sources.fluvio]]`).
    pub sources: SourcesSettings,
}

/// Event sources (`[sources]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesSettings {
    /// Fluvio topics (`[[sources.fluvio]]`), each bound to its tenant(s).
    pub fluvio: Vec<FluvioSourceConfig>,
}

/// Rule message templates (`[templates]`): each render is bounded in steps, output and time, so
/// a runaway template costs only its own rule's messages (they go out with a fallback message
/// saying why). The same limits apply to the trial render when a rule is created or replaced.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateSettings {
    /// Template steps (minijinja fuel: roughly one per expression or loop turn) one render may
    /// run; default 100000.
    pub fuel: u64,
    /// Longest rendered message, bytes; a longer one is cut and ends with `… [truncated]`.
    /// Default 65536.
    pub max_bytes: usize,
    /// Longest one render may take, e.g. `"1s"` (the default); a slower one is abandoned and
    /// its rule's later messages use the fallback until the rule changes.
    pub timeout: DurationSetting,
}

impl Default for TemplateSettings {
    fn default() -> Self {
        let limits = crate::generate::TemplateLimits::default();
        TemplateSettings {
            fuel: limits.fuel,
            max_bytes: limits.max_bytes,
            timeout: DurationSetting::from(limits.timeout),
        }
    }
}

impl TemplateSettings {
    /// The limits renders run under.
    pub fn limits(&self) -> crate::generate::TemplateLimits {
        crate::generate::TemplateLimits {
            fuel: self.fuel,
            max_bytes: self.max_bytes,
            timeout: self.timeout.get(),
        }
    }
}

/// Event-time sanity (`[ingest]`): an event whose `ts` falls outside
/// `[min_event_time, clock + max_future]` is refused, on its own line, with the reason.
/// Backfills inside the range are accepted (and are late for their windows; see the README).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Earliest accepted event time, RFC 3339, e.g. `"2000-01-01T00:00:00Z"` (the default).
    pub min_event_time: TimeSetting,
    /// How far ahead of the server's clock an event time may be, e.g. `"1d"` (the default).
    pub max_future: DurationSetting,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            min_event_time: TimeSetting(operators::event::DEFAULT_EARLIEST_MS),
            max_future: DurationSetting::from(Duration::from_secs(86_400)),
        }
    }
}

impl IngestSettings {
    /// The accepted event-time range.
    pub fn event_time_range(&self) -> operators::EventTimeRange {
        operators::EventTimeRange {
            earliest_ms: self.min_event_time.as_millis(),
            max_future_ms: self.max_future.as_millis(),
        }
    }
}

/// An instant setting, written in RFC 3339 (`"2000-01-01T00:00:00Z"`); parsed at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeSetting(i64);

impl TimeSetting {
    /// Parses the written form.
    pub fn parse(text: &str) -> Result<TimeSetting, String> {
        chrono::DateTime::parse_from_rfc3339(text.trim())
            .map(|t| TimeSetting(t.timestamp_millis()))
            .map_err(|e| {
                format!("'{text}' is not an RFC 3339 instant like 2000-01-01T00:00:00Z ({e})")
            })
    }

    /// The instant, epoch milliseconds.
    pub fn as_millis(self) -> i64 {
        self.0
    }
}

impl Serialize for TimeSetting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(self.0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .unwrap_or_default();
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for TimeSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TimeSetting, D::Error> {
        let text = String::deserialize(deserializer)?;
        TimeSetting::parse(&text).map_err(serde::de::Error::custom)
    }
}

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

/// HTTP server settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address; loopback by default.
    pub listen: String,
    /// Largest accepted request body, bytes. A larger `Content-Length` is refused (413) before
    /// any of the body is read.
    pub max_body_bytes: usize,
    // ---- connection limits (see `http::listener`) ----
    /// Time a client has to send a request's head (line and headers) once the connection is
    /// open or the previous response is written; an idle keep-alive connection is closed after
    /// it too.
    pub header_timeout: DurationSetting,
    /// Time a client has to send a request's whole body once its head arrived (408 after).
    pub body_timeout: DurationSetting,
    /// Largest request head (line and headers), bytes; larger answers 431.
    pub max_header_bytes: usize,
    /// On SIGTERM, how long in-flight requests may take to finish before their connections
    /// are closed.
    pub shutdown_grace: DurationSetting,
    /// Failed authentications (HTTP or pgwire) one client address may make per minute before
    /// its logins are refused (429 / SQLSTATE 28000) for the rest of that minute. A pgwire
    /// user name (a tenant) may fail four times as often, from all addresses together.
    pub auth_failures_per_minute: u32,
    /// The URL people reach this server at (`https://crm.shop.example`), for the unsubscribe
    /// links of campaign messages; empty: `http://` and the listen address.
    pub public_url: String,
    /// The URL the other servers on a shared store reach this one at, to forward requests to
    /// it while it runs (`http://10.0.0.5:8080`); empty: `http://` and the listen address.
    pub internal_url: String,
}

/// Engine settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// Timely worker threads.
    pub workers: usize,
    /// How late an event may arrive and still count in its windows, e.g. `"60s"`.
    pub allowed_lateness: DurationSetting,
    /// How often the clock advances when no events arrive, e.g. `"200ms"`.
    pub tick: DurationSetting,
    /// Most events in one group commit / one epoch.
    pub max_batch: usize,
}

/// Sender settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SenderConfig {
    /// Deliveries in flight at once, over all destinations.
    pub concurrency: usize,
    /// Deliveries in flight at once to any one destination, so a slow one cannot hold up others.
    pub per_destination: usize,
    /// First retry delay ceiling, e.g. `"1s"`.
    pub retry_base: DurationSetting,
    /// Largest retry delay ceiling, e.g. `"5m"`.
    pub retry_max: DurationSetting,
    /// Attempts before a delivery is dead.
    pub max_attempts: u32,
    /// How often the queue is polled when idle, e.g. `"200ms"`.
    pub poll: DurationSetting,
    /// Deliveries in flight at once for any one tenant, so one tenant's slow receivers cannot
    /// hold the deliveries of the others (the sender also claims due deliveries round-robin
    /// across tenants).
    pub per_tenant: usize,
}

/// The outbound guard (`[outbound]`): which addresses tenants' destinations may reach, and how
/// long a delivery may wait. See `connectors::outbound`.
///
/// By default destinations reach public addresses only: a URL that is — or resolves to —
/// loopback, private (RFC 1918, fc00::/7), link-local, CGNAT, multicast, broadcast, unspecified,
/// documentation, reserved or a cloud metadata service is refused when the destination is
/// defined (400) and at every delivery (dead).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSettings {
    /// Non-public networks destinations may reach anyway, for operators who deliver inside
    /// their own network: CIDRs or single addresses, e.g. `["10.0.0.0/8", "127.0.0.1/32"]`.
    /// Empty (the default) allows none. Metadata services (169.254.169.254, fd00:ec2::254,
    /// metadata.google.internal) and this server's own API and pgwire ports stay refused.
    pub allow_private_networks: Vec<String>,
    /// Longest request timeout a destination may set (`timeout_ms`), e.g. `"30s"` (default);
    /// a destination asking for more is refused with this maximum named.
    pub max_timeout: DurationSetting,
}

/// The operator's own systems destinations deliver to (`[sinks]`), as opposed to the URLs and
/// hosts tenants name (those go through `[outbound]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksSettings {
    /// The Fluvio cluster `fluvio` destinations write to (`[sinks.fluvio]`); without it, Fluvio
    /// destinations are refused.
    pub fluvio: Option<FluvioSinkSettings>,
}

/// The Fluvio cluster `fluvio` destinations write to (`[sinks.fluvio]`). Tenants name only a
/// topic, which must exist and start with their prefix. The connection is plaintext (no TLS).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FluvioSinkSettings {
    /// The cluster's SC (streaming controller) public address, `host:port`, e.g.
    /// `"127.0.0.1:9003"`.
    pub endpoint: String,
    /// What every topic of a tenant starts with, `{tenant}` standing for the tenant id (default
    /// `"{tenant}-"`: tenant `acme` writes only to `acme-…` topics). Must contain `{tenant}`;
    /// otherwise only lowercase letters, digits and `-`.
    #[serde(default = "default_fluvio_topic_prefix")]
    pub topic_prefix: String,
    /// Longest one delivery may take — connecting, sending, flushing, the record's offset
    /// acknowledged — e.g. `"10s"` (the default); a slower one is retried.
    #[serde(default = "default_fluvio_timeout")]
    pub timeout: DurationSetting,
}

fn default_fluvio_topic_prefix() -> String {
    DEFAULT_TOPIC_PREFIX.to_owned()
}

fn default_fluvio_timeout() -> DurationSetting {
    DurationSetting::from(DEFAULT_TIMEOUT)
}

impl FluvioSinkSettings {
    /// The sinks' form of these settings.
    pub fn settings(&self) -> FluvioSettings {
        FluvioSettings {
            endpoint: self.endpoint.trim().to_owned(),
            topic_prefix: self.topic_prefix.clone(),
            timeout: self.timeout.get(),
        }
    }
}

/// Secrets store settings (`[secrets]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Where the key-encryption key lives: `"local"` (a key file) or `"aws"` (AWS Secrets
    /// Manager).
    pub kek: KekProvider,
    /// The local key file; `<data_dir>/secrets.kek` when absent. Created with mode 0600.
    pub key_file: Option<PathBuf>,
    /// AWS Secrets Manager settings, used with `kek = "aws"`.
    pub aws: AwsKekConfig,
    /// Rows re-wrapped per transaction by `tidemark secrets rotate-kek`.
    pub rewrap_batch: usize,
}

/// Which KEK provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KekProvider {
    /// A key file under the data directory (the embedded default).
    Local,
    /// One secret in AWS Secrets Manager.
    Aws,
}

/// `[secrets.aws]`: the KEK secret in AWS Secrets Manager. Credentials come from the standard
/// AWS configuration (environment, profile, instance role).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsKekConfig {
    /// Secret name or ARN.
    pub secret_id: String,
    /// Region; the standard AWS configuration's when absent.
    pub region: Option<String>,
    /// Endpoint override (e.g. an emulator); `AWS_ENDPOINT_URL_SECRETS_MANAGER` applies when
    /// absent.
    pub endpoint_url: Option<String>,
    /// Create the secret with a fresh KEK when it does not exist.
    pub create_if_missing: bool,
}

/// A tenant to create at start-up.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// IANA time zone.
    #[serde(default = "default_tz")]
    pub time_zone: String,
    /// API key (stored only as a SHA-256 hash).
    pub api_key: String,
    /// Keys that stay valid beside `api_key` while clients move to it (key rotation). Keys not
    /// in the configuration stop working when the server starts.
    #[serde(default)]
    pub previous_api_keys: Vec<String>,
    /// How the console shows numbers (a BCP 47 tag: `ko-KR`, `en-US`, `de-DE`).
    #[serde(default = "default_locale")]
    pub locale: String,
    /// The currency money measures are in (ISO 4217: `KRW`, `USD`, `EUR`).
    #[serde(default = "default_currency")]
    pub currency: String,
}

fn default_locale() -> String {
    "en-US".to_string()
}

fn default_currency() -> String {
    "USD".to_string()
}

fn default_tz() -> String {
    "UTC".to_string()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("tidemark-data"),
            store: None,
            server: ServerConfig::default(),
            engine: EngineSettings::default(),
            sender: SenderConfig::default(),
            outbound: OutboundSettings::default(),
            sinks: SinksSettings::default(),
            tenants: Vec::new(),
            secrets: SecretsConfig::default(),
            dashboard: DashboardSettings::default(),
            ingest: IngestSettings::default(),
            templates: TemplateSettings::default(),
            sources: SourcesSettings::default(),
        }
    }
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

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".to_string(),
            max_body_bytes: 64 * 1024 * 1024,
            header_timeout: DurationSetting::from(Duration::from_secs(10)),
            body_timeout: DurationSetting::from(Duration::from_secs(60)),
            max_header_bytes: 32 * 1024,
            shutdown_grace: DurationSetting::from(Duration::from_secs(10)),
            auth_failures_per_minute: 20,
            public_url: String::new(),
            internal_url: String::new(),
        }
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            workers: 2,
            allowed_lateness: DurationSetting::from(Duration::from_secs(60)),
            tick: DurationSetting::from(Duration::from_millis(200)),
            max_batch: 50_000,
        }
    }
}

impl Default for SecretsConfig {
    fn default() -> Self {
        SecretsConfig {
            kek: KekProvider::Local,
            key_file: None,
            aws: AwsKekConfig::default(),
            rewrap_batch: 1_000,
        }
    }
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            concurrency: 64,
            per_destination: 8,
            retry_base: DurationSetting::from(Duration::from_secs(1)),
            retry_max: DurationSetting::from(Duration::from_secs(300)),
            max_attempts: 8,
            poll: DurationSetting::from(Duration::from_millis(200)),
            per_tenant: 16,
        }
    }
}

impl Default for OutboundSettings {
    fn default() -> Self {
        OutboundSettings {
            allow_private_networks: Vec::new(),
            max_timeout: DurationSetting::from(Duration::from_secs(30)),
        }
    }
}

impl OutboundSettings {
    /// What sinks and destination checks share: the guard (with this server's own endpoints
    /// `own_endpoints`, refused even when allowed) and the timeout maximum.
    pub fn sink_settings(&self, own_endpoints: Vec<SocketAddr>) -> anyhow::Result<SinkSettings> {
        let mut policy = OutboundPolicy::allowing(&self.allow_private_networks)
            .context("invalid configuration: outbound.allow_private_networks")?;
        policy.own_endpoints = own_endpoints;
        Ok(SinkSettings {
            outbound: OutboundGuard::new(policy),
            max_timeout: self.max_timeout.get(),
            ..SinkSettings::default()
        })
    }
}

impl Config {
    /// Loads defaults, then `file` (if given), then `TIDEMARK_*` variables, and validates.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // TIDEMARK_LOG is the log filter (read by main), not a configuration key.
        figment = figment.merge(Env::prefixed("TIDEMARK_").ignore(&["log"]).split("__"));
        let config: Config = figment.extract().map_err(|e| {
            let e = e
                .into_iter()
                .next()
                .map(describe)
                .unwrap_or_else(|| "invalid configuration".into());
            anyhow::anyhow!("invalid configuration: {e}")
        })?;
        config.validate()?;
        Ok(config)
    }

    /// What sinks and destination checks share: the outbound guard and timeout maximum
    /// (`[outbound]`, with this server's own endpoints `own_endpoints`; see
    /// [`OutboundSettings::sink_settings`]), the operator's Fluvio cluster (`[sinks.fluvio]`) and
    /// the topics `[[sources.fluvio]]` read, which no destination may write to: a notification
    /// written there would come back as an event.
    pub fn sink_settings(&self, own_endpoints: Vec<SocketAddr>) -> anyhow::Result<SinkSettings> {
        let mut reserved_topics: Vec<String> = self
            .sources
            .fluvio
            .iter()
            .map(|s| s.topic.trim().to_owned())
            .collect();
        reserved_topics.sort();
        reserved_topics.dedup();
        Ok(SinkSettings {
            fluvio: self.sinks.fluvio.as_ref().map(FluvioSinkSettings::settings),
            reserved_topics,
            ..self.outbound.sink_settings(own_endpoints)?
        })
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        let key =
            |k: &str, problem: String| anyhow::anyhow!("invalid configuration: {k}: {problem}");
        self.listen_addr()
            .map_err(|e| key("server.listen", e.to_string()))?;
        self.pgwire_addr()
            .map_err(|e| key("dashboard.pgwire_listen", e.to_string()))?;
        match (
            &self.dashboard.pgwire_tls_cert,
            &self.dashboard.pgwire_tls_key,
        ) {
            (Some(_), None) => {
                return Err(key(
                    "dashboard.pgwire_tls_key",
                    "is required with dashboard.pgwire_tls_cert".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(key(
                    "dashboard.pgwire_tls_cert",
                    "is required with dashboard.pgwire_tls_key".into(),
                ));
            }
            _ => {}
        }
        self.validate_query_limits()?;
        self.validate_sources()?;
        if !(1..=64).contains(&self.engine.workers) {
            return Err(key(
                "engine.workers",
                format!("{} is out of range 1..=64", self.engine.workers),
            ));
        }
        if self.server.max_header_bytes < 1024 {
            return Err(key(
                "server.max_header_bytes",
                "must be at least 1024".into(),
            ));
        }
        if self.server.auth_failures_per_minute == 0 {
            return Err(key(
                "server.auth_failures_per_minute",
                "must be at least 1".into(),
            ));
        }
        let mut owners = std::collections::HashMap::new();
        for t in &self.tenants {
            for k in std::iter::once(&t.api_key).chain(&t.previous_api_keys) {
                if let Some(other) = owners.insert(k.as_str(), t.id.as_str())
                    && other != t.id
                {
                    return Err(key(
                        "tenants",
                        format!("tenants '{other}' and '{}' share an API key", t.id),
                    ));
                }
            }
        }
        if self.engine.max_batch == 0 {
            return Err(key("engine.max_batch", "must be at least 1".into()));
        }
        if self.sender.concurrency == 0 || self.sender.per_destination == 0 {
            return Err(key(
                "sender.concurrency",
                "concurrency limits must be at least 1".into(),
            ));
        }
        if self.sender.per_tenant == 0 {
            return Err(key("sender.per_tenant", "must be at least 1".into()));
        }
        if let Err(e) = OutboundPolicy::allowing(&self.outbound.allow_private_networks) {
            return Err(key("outbound.allow_private_networks", e.to_string()));
        }
        if self.outbound.max_timeout.get().is_zero() {
            return Err(key("outbound.max_timeout", "must be longer than 0s".into()));
        }
        if let Some(fluvio) = &self.sinks.fluvio
            && let Err(e) = fluvio.settings().validate()
        {
            return Err(match e {
                SinkError::InvalidField { field, reason } => {
                    key(&format!("sinks.fluvio.{field}"), reason)
                }
                e => key("sinks.fluvio", e.to_string()),
            });
        }
        if self.sender.max_attempts == 0 {
            return Err(key("sender.max_attempts", "must be at least 1".into()));
        }
        if !(1..=100_000).contains(&self.secrets.rewrap_batch) {
            return Err(key(
                "secrets.rewrap_batch",
                format!("{} is out of range 1..=100000", self.secrets.rewrap_batch),
            ));
        }
        if self.secrets.kek == KekProvider::Aws && self.secrets.aws.secret_id.is_empty() {
            return Err(key(
                "secrets.aws.secret_id",
                "must name the KEK secret when secrets.kek = \"aws\"".into(),
            ));
        }
        if self.templates.fuel < 1_000 {
            return Err(key(
                "templates.fuel",
                format!(
                    "{} is too little for the default message; give at least 1000",
                    self.templates.fuel
                ),
            ));
        }
        if self.templates.max_bytes < 1_024 {
            return Err(key(
                "templates.max_bytes",
                format!(
                    "{} is too small; give at least 1024",
                    self.templates.max_bytes
                ),
            ));
        }
        if self.templates.timeout.get() < Duration::from_millis(10) {
            return Err(key("templates.timeout", "must be at least 10ms".into()));
        }
        for (i, t) in self.tenants.iter().enumerate() {
            if t.id.is_empty() {
                return Err(key(&format!("tenants[{i}].id"), "must not be empty".into()));
            }
            if t.api_key.len() < 16 {
                return Err(key(
                    &format!("tenants[{i}].api_key"),
                    "must be at least 16 characters".into(),
                ));
            }
            if let Some(j) = t.previous_api_keys.iter().position(|k| k.len() < 16) {
                return Err(key(
                    &format!("tenants[{i}].previous_api_keys[{j}]"),
                    "must be at least 16 characters".into(),
                ));
            }
            if t.time_zone.parse::<chrono_tz::Tz>().is_err() {
                return Err(key(
                    &format!("tenants[{i}].time_zone"),
                    format!("'{}' is not an IANA time zone", t.time_zone),
                ));
            }
            if t.currency.len() != 3 || !t.currency.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(key(
                    &format!("tenants[{i}].currency"),
                    format!("'{}' is not an ISO 4217 code (e.g. KRW)", t.currency),
                ));
            }
            let language = t.locale.split(['-', '_']).next().unwrap_or("");
            if !(2..=3).contains(&language.len())
                || !language.bytes().all(|b| b.is_ascii_alphabetic())
            {
                return Err(key(
                    &format!("tenants[{i}].locale"),
                    format!("'{}' is not a locale (e.g. ko-KR)", t.locale),
                ));
            }
        }
        Ok(())
    }

    /// Checks `[[sources.fluvio]]`: each source on its own, and no two sharing a name (their
    /// positions would mix).
    fn validate_sources(&self) -> anyhow::Result<()> {
        let tenants: Vec<&str> = self.tenants.iter().map(|t| t.id.as_str()).collect();
        let mut names = std::collections::HashSet::new();
        for (i, source) in self.sources.fluvio.iter().enumerate() {
            source
                .validate(&tenants)
                .map_err(|e| anyhow::anyhow!("invalid configuration: sources.fluvio[{i}].{e}"))?;
            if !names.insert(source.name()) {
                bail!(
                    "invalid configuration: sources.fluvio[{i}].name: '{}' is already another source's name; give each source its own",
                    source.name()
                );
            }
        }
        Ok(())
    }

    /// Checks `[dashboard.limits]`.
    fn validate_query_limits(&self) -> anyhow::Result<()> {
        let limits = &self.dashboard.limits;
        let key = |k: &str, problem: String| {
            anyhow::anyhow!("invalid configuration: dashboard.limits.{k}: {problem}")
        };
        for (name, value) in [
            ("max_sql_bytes", limits.max_sql_bytes),
            ("max_expr_depth", limits.max_expr_depth),
            ("query_memory_mb", limits.query_memory_mb),
            ("total_memory_mb", limits.total_memory_mb),
            ("max_result_rows", limits.max_result_rows),
            ("query_threads", limits.query_threads),
            ("max_running", limits.max_running),
            ("max_running_per_tenant", limits.max_running_per_tenant),
        ] {
            if value == 0 {
                return Err(key(name, "must be at least 1".into()));
            }
        }
        // Deeper expressions than this could exhaust even the query threads' large stacks.
        if limits.max_expr_depth > sql::limits::MAX_EXPR_DEPTH {
            return Err(key(
                "max_expr_depth",
                format!(
                    "{} is over the most the query threads' stacks allow ({})",
                    limits.max_expr_depth,
                    sql::limits::MAX_EXPR_DEPTH
                ),
            ));
        }
        if limits.query_memory_mb > limits.total_memory_mb {
            return Err(key(
                "query_memory_mb",
                format!(
                    "{} MiB is more than total_memory_mb ({} MiB)",
                    limits.query_memory_mb, limits.total_memory_mb
                ),
            ));
        }
        if limits.query_threads > 256 {
            return Err(key(
                "query_threads",
                format!("{} is out of range 1..=256", limits.query_threads),
            ));
        }
        Ok(())
    }

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

    /// The parsed listen address.
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.server.listen.parse().with_context(|| {
            format!(
                "'{}' is not a socket address like 127.0.0.1:8080",
                self.server.listen
            )
        })
    }

    /// The SQLite store's file in `data_dir`, used when `store` is not set.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("tidemark.db")
    }

    /// Where the store is: `store` when set, else the SQLite file in `data_dir`.
    pub fn store_location(&self) -> std::ffi::OsString {
        match &self.store {
            Some(store) => store.url().into(),
            None => self.store_path().into_os_string(),
        }
    }

    /// The store's location as logs and errors may show it: a URL's password is left out.
    pub fn store_display(&self) -> String {
        match &self.store {
            Some(store) => redact_password(store.url()),
            None => self.store_path().display().to_string(),
        }
    }

    /// The local KEK file.
    pub fn key_file_path(&self) -> PathBuf {
        self.secrets
            .key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secrets.kek"))
    }
}

fn describe(error: figment::Error) -> String {
    let path = error.path.join(".");
    let kind = error.kind.to_string();
    if path.is_empty() {
        kind
    } else {
        format!("{path}: {kind}")
    }
}

/// A duration setting, written `"250ms"`, `"30s"`, `"5m"` or `"1h"` (the rules' spelling).
///
/// Parsed when the configuration loads, so an invalid one is a start-up error naming its key
/// (figment adds the key path to the deserializer's message), never a silent fallback later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationSetting(Duration);

impl DurationSetting {
    /// Parses the written form.
    pub fn parse(text: &str) -> Result<DurationSetting, String> {
        let value = serde_json::Value::String(text.to_string());
        operators::rule::parse_duration(&value, "duration")
            .map(|ms| DurationSetting(Duration::from_millis(ms as u64)))
            .map_err(|e| e.problem)
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// The duration in whole milliseconds.
    pub fn as_millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl From<Duration> for DurationSetting {
    fn from(duration: Duration) -> DurationSetting {
        DurationSetting(duration)
    }
}

impl Serialize for DurationSetting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DurationSetting, D::Error> {
        let text = String::deserialize(deserializer)?;
        DurationSetting::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_parsed_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidemark.toml");
        std::fs::write(
            &file,
            "[engine]\ntick = \"250ms\"\n[sender]\nretry_max = \"2m\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.engine.tick.get(), Duration::from_millis(250));
        assert_eq!(config.sender.retry_max.get(), Duration::from_secs(120));
        std::fs::write(&file, "[sender]\nretry_base = \"1 fortnight\"\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("sender.retry_base"), "{e}");
    }

    #[test]
    fn ingest_section_loads_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidemark.toml");
        let range = Config::default().ingest.event_time_range();
        assert_eq!(range, operators::EventTimeRange::default());
        std::fs::write(
            &file,
            "[ingest]\nmin_event_time = \"2015-06-01T09:00:00+09:00\"\nmax_future = \"2h\"\n",
        )
        .unwrap();
        let range = Config::load(Some(&file)).unwrap().ingest.event_time_range();
        assert_eq!(
            (range.earliest_ms, range.max_future_ms),
            (1_433_116_800_000, 7_200_000)
        );
        std::fs::write(&file, "[ingest]\nmin_event_time = \"last year\"\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("ingest.min_event_time"), "{e}");
    }

    #[test]
    fn templates_section_loads_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidemark.toml");
        assert_eq!(
            Config::default().templates.limits(),
            crate::generate::TemplateLimits::default()
        );
        std::fs::write(
            &file,
            "[templates]\nfuel = 5000\nmax_bytes = 2048\ntimeout = \"250ms\"\n",
        )
        .unwrap();
        let limits = Config::load(Some(&file)).unwrap().templates.limits();
        assert_eq!(
            (limits.fuel, limits.max_bytes, limits.timeout),
            (5000, 2048, Duration::from_millis(250))
        );
        std::fs::write(&file, "[templates]\nfuel = 10\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("templates.fuel"), "{e}");
        std::fs::write(&file, "[templates]\ntimeout = \"0s\"\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("templates.timeout"), "{e}");
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidemark.toml");
        std::fs::write(&file, "[engine]\nworkers = \"many\"\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("engine.workers"), "{e}");
        std::fs::write(&file, "[engine]\ntick = \"soon\"\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("engine.tick"), "{e}");
        std::fs::write(&file, "[server]\nlisten = \"localhost\"\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("server.listen"), "{e}");
        std::fs::write(&file, "[sever]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("sever"), "{e}");
    }

    #[test]
    fn dashboard_section_loads_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidemark.toml");
        std::fs::write(&file, "data_dir = \"d\"\n[dashboard]\ncache_ttl = \"0s\"\n").unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.warehouse_dir(), PathBuf::from("d/warehouse"));
        assert_eq!(config.pgwire_addr().unwrap(), None);
        std::fs::write(&file, "[dashboard]\npgwire_listen = \"127.0.0.1:5433\"\n").unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.pgwire_addr().unwrap().map(|a| a.port()), Some(5433));
        std::fs::write(&file, "[dashboard]\npgwire_listen = \"localhost\"\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("dashboard.pgwire_listen"), "{e}");
        std::fs::write(&file, "[dashboard]\nquery_timeout = \"forever\"\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("dashboard.query_timeout"), "{e}");
    }

    #[test]
    fn outbound_section_loads_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidemark.toml");
        assert!(Config::default().outbound.allow_private_networks.is_empty());
        std::fs::write(
            &file,
            "[outbound]\nallow_private_networks = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n\
             max_timeout = \"5s\"\n[sender]\nper_tenant = 4\n",
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.sender.per_tenant, 4);
        let settings = config.outbound.sink_settings(Vec::new()).unwrap();
        assert_eq!(settings.max_timeout, Duration::from_secs(5));
        assert!(settings.outbound.allows_private_networks());
        std::fs::write(
            &file,
            "[outbound]\nallow_private_networks = [\"intranet\"]\n",
        )
        .unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(
            e.contains("outbound.allow_private_networks") && e.contains("intranet"),
            "{e}"
        );
    }

    #[test]
    fn fluvio_sink_section_loads_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidemark.toml");
        assert!(Config::default().sinks.fluvio.is_none());
        let settings = Config::default().sink_settings(Vec::new()).unwrap();
        assert!(settings.fluvio.is_none() && settings.reserved_topics.is_empty());

        std::fs::write(&file, "[sinks.fluvio]\nendpoint = \"127.0.0.1:9003\"\n").unwrap();
        let config = Config::load(Some(&file)).unwrap();
        let fluvio = config.sink_settings(Vec::new()).unwrap().fluvio.unwrap();
        assert_eq!(fluvio, FluvioSettings::new("127.0.0.1:9003"));
        assert_eq!(fluvio.topic_prefix, "{tenant}-");
        assert_eq!(fluvio.timeout, Duration::from_secs(10));

        std::fs::write(
            &file,
            "[sinks.fluvio]\nendpoint = \"fluvio.internal:9003\"\n\
             topic_prefix = \"tm-{tenant}-\"\ntimeout = \"2s\"\n",
        )
        .unwrap();
        let fluvio = Config::load(Some(&file)).unwrap().sinks.fluvio.unwrap();
        assert_eq!(fluvio.settings().prefix_for("acme"), "tm-acme-");
        assert_eq!(fluvio.timeout.get(), Duration::from_secs(2));

        for (text, expected) in [
            (
                "endpoint = \"localhost\"",
                "sinks.fluvio.endpoint: 'localhost' is not host:port",
            ),
            (
                "endpoint = \"127.0.0.1:9003\"\ntopic_prefix = \"shared-\"",
                "sinks.fluvio.topic_prefix: 'shared-' does not contain {tenant}",
            ),
            (
                "endpoint = \"127.0.0.1:9003\"\ntopic_prefix = \"{tenant}_\"",
                "sinks.fluvio.topic_prefix: '{tenant}_' may hold only",
            ),
            (
                "endpoint = \"127.0.0.1:9003\"\ntimeout = \"soon\"",
                "sinks.fluvio.timeout",
            ),
            (
                "endpoint = \"127.0.0.1:9003\"\ntimeout = \"0s\"",
                "sinks.fluvio.timeout",
            ),
            ("topic_prefix = \"{tenant}-\"", "endpoint"),
            ("endpoint = \"127.0.0.1:9003\"\ntopic = \"x\"", "topic"),
        ] {
            std::fs::write(&file, format!("[sinks.fluvio]\n{text}\n")).unwrap();
            let e = Config::load(Some(&file)).unwrap_err().to_string();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn source_topics_are_reserved_from_fluvio_destinations() {
        use connectors::sinks::SinkConfig;
        use connectors::sinks::fluvio::config::FluvioConfig;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidemark.toml");
        std::fs::write(
            &file,
            "[[tenants]]\nid = \"acme\"\napi_key = \"tm_acme_0123456789abcdef\"\n\
             [sinks.fluvio]\nendpoint = \"127.0.0.1:9003\"\n\
             [[sources.fluvio]]\nendpoint = \"127.0.0.1:9003\"\ntopic = \"acme-orders\"\ntenant = \"acme\"\n\
             [[sources.fluvio]]\nname = \"orders-again\"\nendpoint = \"127.0.0.1:9003\"\ntopic = \"acme-orders\"\ntenant = \"acme\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        let settings = config.sink_settings(Vec::new()).unwrap();
        assert_eq!(settings.reserved_topics, ["acme-orders"]);
        let refused = FluvioConfig::new("acme-orders")
            .validate(&settings)
            .unwrap_err();
        assert!(
            refused.to_string().contains("reads events from"),
            "{refused}"
        );
        FluvioConfig::new("acme-alerts")
            .validate(&settings)
            .unwrap();
    }

    #[test]
    fn query_limits_load_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidemark.toml");
        std::fs::write(
            &file,
            "[dashboard.limits]\nquery_memory_mb = 8\ntotal_memory_mb = 64\nquery_threads = 1\n",
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        let limits = config.dashboard.limits.query_limits();
        assert_eq!(limits.query_memory_bytes, 8 * 1024 * 1024);
        assert_eq!(config.dashboard.limits.max_expr_depth, 256);
        for (text, key) in [
            (
                "query_memory_mb = 128\ntotal_memory_mb = 64",
                "query_memory_mb",
            ),
            ("max_expr_depth = 100000", "max_expr_depth"),
            ("query_threads = 0", "query_threads"),
            ("max_sql_bytez = 1", "max_sql_bytez"),
        ] {
            std::fs::write(&file, format!("[dashboard.limits]\n{text}\n")).unwrap();
            let e = Config::load(Some(&file)).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn secrets_section_loads_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidemark.toml");
        std::fs::write(
            &file,
            "data_dir = \"d\"\n[secrets]\nkek = \"aws\"\nrewrap_batch = 50\n\
             [secrets.aws]\nsecret_id = \"tidemark/kek\"\nregion = \"ap-northeast-2\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.secrets.kek, KekProvider::Aws);
        assert_eq!(config.secrets.aws.region.as_deref(), Some("ap-northeast-2"));
        assert_eq!(config.secrets.aws.endpoint_url, None);
        assert_eq!(config.key_file_path(), PathBuf::from("d/secrets.kek"));
        std::fs::write(&file, "[secrets]\nkek = \"aws\"\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("secrets.aws.secret_id"), "{e}");
        std::fs::write(&file, "[secrets]\nkek = \"vault\"\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("secrets.kek"), "{e}");
    }
}

/// `scheme://user:password@host/…` without the password.
pub(crate) fn redact_password(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => location.to_owned(),
    }
}

#[cfg(test)]
mod store_location_tests {
    use super::*;

    #[test]
    fn a_store_url_is_shown_without_its_password() {
        assert_eq!(
            redact_password("postgres://tidemark:s3cret@db.internal:5432/tidemark"),
            "postgres://tidemark:***@db.internal:5432/tidemark"
        );
        assert_eq!(
            redact_password("postgres://tidemark@db/tidemark"),
            "postgres://tidemark@db/tidemark"
        );
        let config = Config {
            store: Some(StoreSetting::Url("postgres://u:p@h/db".into())),
            ..Config::default()
        };
        assert_eq!(config.store_location(), "postgres://u:p@h/db");
        assert_eq!(config.store_display(), "postgres://u:***@h/db");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tidemark.toml");
        std::fs::write(
            &file,
            "[store]\nurl = \"postgres://u:p@h/db?sslmode=require\"\n\
             password_file = \"/run/secrets/pg\"\nca_file = \"/etc/ssl/db-ca.pem\"\n",
        )
        .unwrap();
        let table = Config::load(Some(&file)).unwrap();
        assert_eq!(
            table.store,
            Some(StoreSetting::Table(StoreTable {
                url: "postgres://u:p@h/db?sslmode=require".into(),
                password_file: Some("/run/secrets/pg".into()),
                ca_file: Some("/etc/ssl/db-ca.pem".into()),
            }))
        );
        assert_eq!(
            table.store_display(),
            "postgres://u:***@h/db?sslmode=require"
        );
        std::fs::write(
            &file,
            "[store]\nurl = \"postgres://h/db\"\npasword_file = \"x\"\n",
        )
        .unwrap();
        assert!(
            Config::load(Some(&file)).is_err(),
            "a misspelt key is refused"
        );
        let embedded = Config::default();
        assert_eq!(
            embedded.store_location(),
            embedded.data_dir.join("tidemark.db").into_os_string()
        );
    }
}
