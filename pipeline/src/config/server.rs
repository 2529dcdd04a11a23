//! The server's own running: the HTTP listener (`[server]`), the dataflow engine (`[engine]`),
//! which event times ingest accepts (`[ingest]`), where events stream in from (`[sources]`) and
//! how much a rule's message template may do (`[templates]`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use connectors::sources::fluvio::FluvioSourceConfig;
use serde::{Deserialize, Serialize};

use super::Config;
use super::time::{DurationSetting, TimeSetting};

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

impl Config {
    /// The parsed listen address.
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.server.listen.parse().with_context(|| {
            format!(
                "'{}' is not a socket address like 127.0.0.1:8080",
                self.server.listen
            )
        })
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
