//! Configuration: embedded defaults, overridden by one TOML file, overridden by `TIDEMARK_*`
//! environment variables (`__` separates levels: `TIDEMARK_SERVER__LISTEN=127.0.0.1:9000`).
//!
//! An invalid configuration stops start-up with one message naming the key and the problem.
//!
//! Each section's settings live with their concern: [`store`](StoreSetting) in `store.rs`;
//! `[server]`, `[engine]`, `[ingest]`, `[sources]` and `[templates]` in `server.rs`;
//! `[dashboard]` with its limits, live tables, Trino and GA4 in `dashboard.rs`; `[sender]`,
//! `[outbound]` and `[sinks]` in `delivery.rs`; `[[tenants]]` and `[secrets]` in `tenants.rs`;
//! `[crm]` in `crm.rs`; `[cluster]` and its hosts file in `cluster.rs`;
//! written durations and instants in `time.rs`; loading and the checks serde cannot make in
//! `load.rs`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod cluster;
mod crm;
mod dashboard;
mod delivery;
mod load;
mod server;
mod store;
mod tenants;
#[cfg(test)]
mod tests;
mod time;

pub use cluster::{ClusterHost, ClusterSettings};
pub use crm::CrmSettings;
pub use dashboard::{
    DashboardSettings, Ga4Settings, Ga4TenantSettings, LiveSettings, QueryLimitsSettings,
    TrinoSettings,
};
pub use delivery::{FluvioSinkSettings, OutboundSettings, SenderConfig, SinksSettings};
pub use server::{EngineSettings, IngestSettings, ServerConfig, SourcesSettings, TemplateSettings};
pub(crate) use store::redact_password;
pub use store::{StoreSetting, StoreTable};
pub use tenants::{AwsKekConfig, KekProvider, SecretsConfig, TenantConfig};
pub use time::{DurationSetting, TimeSetting};

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
    /// CRM audiences and campaigns: the membership log's retention (`[crm]`).
    pub crm: CrmSettings,
    /// The timely cluster this server is one process of (`[cluster]`); absent: a cluster of
    /// one.
    pub cluster: Option<ClusterSettings>,
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
            crm: CrmSettings::default(),
            cluster: None,
        }
    }
}
