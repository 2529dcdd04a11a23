//! Where and as whom the client connects.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Connection settings of a [`super::TrinoClient`].
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrinoConfig {
    /// Coordinator URL, e.g. `https://trino.internal:8443` (no path).
    pub endpoint: String,
    /// `X-Trino-User`.
    pub user: String,
    /// `X-Trino-Source`: how queries show up in Trino's UI and logs.
    #[serde(default = "default_source")]
    pub source: String,
    /// `X-Trino-Catalog`: the default catalog of unqualified names.
    #[serde(default)]
    pub catalog: Option<String>,
    /// `X-Trino-Schema`: the default schema of unqualified names.
    #[serde(default)]
    pub schema: Option<String>,
    /// `X-Trino-Time-Zone`: the session zone (`UTC` unless said otherwise, so that results do
    /// not depend on the coordinator's zone).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// `X-Trino-Session`: session properties, e.g. `("query_max_run_time", "5m")`.
    #[serde(default)]
    pub session: Vec<(String, String)>,
    /// Password for HTTP basic auth, resolved by the caller from the secrets store. Only sent
    /// over HTTPS: [`super::TrinoClient::new`] refuses it for `http://` endpoints.
    #[serde(skip)]
    pub password: Option<String>,
    /// Per-request timeout (each page is one request).
    #[serde(default = "default_request_timeout", with = "seconds")]
    pub request_timeout: Duration,
}

impl TrinoConfig {
    /// A configuration with the defaults for everything but endpoint and user.
    pub fn new(endpoint: impl Into<String>, user: impl Into<String>) -> TrinoConfig {
        TrinoConfig {
            endpoint: endpoint.into(),
            user: user.into(),
            source: default_source(),
            catalog: None,
            schema: None,
            time_zone: default_time_zone(),
            session: Vec::new(),
            password: None,
            request_timeout: default_request_timeout(),
        }
    }
}

// Written by hand so the password never reaches a log line.
impl fmt::Debug for TrinoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrinoConfig")
            .field("endpoint", &self.endpoint)
            .field("user", &self.user)
            .field("source", &self.source)
            .field("catalog", &self.catalog)
            .field("schema", &self.schema)
            .field("time_zone", &self.time_zone)
            .field("session", &self.session)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

fn default_source() -> String {
    "tidemark".into()
}

fn default_time_zone() -> String {
    "UTC".into()
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}
