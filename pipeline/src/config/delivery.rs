//! Delivering notifications: the sender (`[sender]`), the guard on where tenants' destinations
//! may connect (`[outbound]`) and the operator's own systems they deliver to (`[sinks]`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use connectors::outbound::{OutboundGuard, OutboundPolicy};
use connectors::sinks::fluvio::config::{DEFAULT_TIMEOUT, DEFAULT_TOPIC_PREFIX};
use connectors::sinks::{FluvioSettings, SinkSettings};
use serde::{Deserialize, Serialize};

use super::Config;
use super::time::DurationSetting;

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

impl Config {
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
}
