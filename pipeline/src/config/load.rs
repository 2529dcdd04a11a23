//! Loading: embedded defaults, the TOML file and `TIDEMARK_*` variables merged by figment, then
//! the checks serde cannot make, each failure naming its key.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use connectors::outbound::OutboundPolicy;
use connectors::sinks::SinkError;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use super::crm::MIN_MEMBERSHIP_LOG_RETENTION;
use super::{Config, KekProvider};

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
        if let Some(cluster) = &self.cluster {
            cluster
                .read_hosts()
                .map_err(|e| key("cluster.hosts", format!("{e:#}")))?;
        }
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
        if self.crm.membership_log_retention.get() < MIN_MEMBERSHIP_LOG_RETENTION {
            return Err(key(
                "crm.membership_log_retention",
                "must be at least 1d: a contact's history keeps at least a day (e.g. \"90d\")"
                    .into(),
            ));
        }
        if !(1..=operators::audience::MAX_WORKERS).contains(&self.crm.audience_workers) {
            return Err(key(
                "crm.audience_workers",
                format!(
                    "{} is out of range 1..={}",
                    self.crm.audience_workers,
                    operators::audience::MAX_WORKERS
                ),
            ));
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
