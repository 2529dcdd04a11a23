//! A Fluvio destination's configuration — the topic it writes to — and the operator's cluster
//! settings (`[sinks.fluvio]`) it is checked against.
//!
//! Whether a destination may write to its topic is decided here once, when it is defined
//! ([`SinkConfig::validate`], [`SinkConfig::check_tenant`]) and again by the sink before each
//! delivery: the server must have a cluster, the name must be one Fluvio accepts, it must start
//! with its tenant's prefix, and it must not be one of the topics Tidemark itself reads.

use std::time::Duration;

use ::fluvio::metadata::topic::validate::valid_topic_name;
use serde::{Deserialize, Serialize};

use crate::sinks::{Credential, SinkConfig, SinkError, SinkSettings};

/// What `topic_prefix` writes for the tenant id.
pub const TENANT_PLACEHOLDER: &str = "{tenant}";

/// The default prefix of a tenant's topics: its id and a dash (`acme-…`).
pub const DEFAULT_TOPIC_PREFIX: &str = "{tenant}-";

/// The default longest delivery.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Fluvio's longest resource name, topics included.
pub const MAX_TOPIC_CHARS: usize = 63;

/// The operator's Fluvio cluster that Fluvio destinations write to (`[sinks.fluvio]`). Tenants
/// name only a topic; where the cluster is and which topics a tenant may use is the operator's
/// choice, so the endpoint does not go through the outbound guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FluvioSettings {
    /// The cluster's SC (streaming controller), `host:port`; plaintext, no TLS.
    pub endpoint: String,
    /// What every topic of a tenant starts with, `{tenant}` standing for the tenant's id
    /// (default `{tenant}-`), so tenants cannot write into each other's topics.
    pub topic_prefix: String,
    /// Longest one delivery may take: connecting, sending, flushing and waiting for the
    /// record's offset (default 10 s).
    pub timeout: Duration,
}

impl FluvioSettings {
    /// The cluster at `endpoint`, with the default prefix and timeout.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            topic_prefix: DEFAULT_TOPIC_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Checks what the operator wrote: an endpoint `host:port`, a prefix of topic characters
    /// (lowercase letters, digits, `-`) around `{tenant}`, and a timeout above zero. An error
    /// names the key inside `[sinks.fluvio]` (`endpoint`) as its field.
    pub fn validate(&self) -> Result<(), SinkError> {
        let invalid = |field: &str, reason: String| SinkError::InvalidField {
            field: field.to_owned(),
            reason,
        };
        let endpoint = self.endpoint.trim();
        let port = endpoint
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty() && !host.contains("://"))
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .filter(|port| *port != 0);
        if port.is_none() || endpoint.contains(char::is_whitespace) {
            return Err(invalid(
                "endpoint",
                format!(
                    "'{}' is not host:port, like 127.0.0.1:9003 (the SC's public port)",
                    self.endpoint
                ),
            ));
        }
        if !self.topic_prefix.contains(TENANT_PLACEHOLDER) {
            return Err(invalid(
                "topic_prefix",
                format!(
                    "'{}' does not contain {TENANT_PLACEHOLDER}, so tenants could write into \
                     each other's topics; the default is '{DEFAULT_TOPIC_PREFIX}'",
                    self.topic_prefix
                ),
            ));
        }
        let fixed = self.topic_prefix.replace(TENANT_PLACEHOLDER, "");
        if !fixed.chars().all(is_topic_char) || self.topic_prefix.starts_with('-') {
            return Err(invalid(
                "topic_prefix",
                format!(
                    "'{}' may hold only lowercase letters, digits and '-' besides \
                     {TENANT_PLACEHOLDER}, and may not start with '-' (Fluvio topic names)",
                    self.topic_prefix
                ),
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid("timeout", "must be longer than 0s".to_owned()));
        }
        Ok(())
    }

    /// The prefix of `tenant`'s topics.
    pub fn prefix_for(&self, tenant: &str) -> String {
        self.topic_prefix.replace(TENANT_PLACEHOLDER, tenant)
    }
}

/// A character Fluvio allows in a topic name.
fn is_topic_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// Configuration of a Fluvio destination (the stored destination's JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FluvioConfig {
    /// The topic records go to, on the operator's cluster; it must exist (the tenant creates
    /// it) and start with the tenant's prefix.
    pub topic: String,
}

impl FluvioConfig {
    /// A config writing to `topic`.
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
        }
    }
}

fn topic_error(reason: String) -> SinkError {
    SinkError::InvalidField {
        field: "config.topic".to_owned(),
        reason,
    }
}

impl SinkConfig for FluvioConfig {
    /// The server must have a Fluvio cluster, the topic must be a Fluvio topic name (1 to 63
    /// lowercase letters, digits and '-', not starting or ending with '-'; Fluvio's own
    /// check), and not one of the topics Tidemark reads.
    fn validate(&self, settings: &SinkSettings) -> Result<(), SinkError> {
        if settings.fluvio.is_none() {
            return Err(topic_error(
                "this server has no Fluvio cluster configured ([sinks.fluvio]), so it cannot \
                 deliver to Fluvio topics"
                    .to_owned(),
            ));
        }
        let topic = self.topic.as_str();
        if topic.is_empty() || topic.len() > MAX_TOPIC_CHARS || !valid_topic_name(topic) {
            return Err(topic_error(format!(
                "'{topic}' is not a Fluvio topic name: 1 to {MAX_TOPIC_CHARS} lowercase \
                 letters, digits and '-', not starting or ending with '-'"
            )));
        }
        if settings.reserved_topics.iter().any(|t| t == topic) {
            return Err(topic_error(format!(
                "'{topic}' is a topic this server reads events from; a destination cannot \
                 write to it"
            )));
        }
        Ok(())
    }

    /// The topic must start with `tenant`'s prefix (`[sinks.fluvio] topic_prefix`).
    fn check_tenant(&self, tenant: &str, settings: &SinkSettings) -> Result<(), SinkError> {
        let Some(cluster) = &settings.fluvio else {
            // validate says why.
            return self.validate(settings);
        };
        let prefix = cluster.prefix_for(tenant);
        if !prefix.chars().all(is_topic_char) {
            return Err(topic_error(format!(
                "tenant id '{tenant}' cannot form Fluvio topic names (lowercase letters, digits \
                 and '-' only), so this tenant cannot have Fluvio destinations"
            )));
        }
        if !self.topic.starts_with(&prefix) || self.topic.len() == prefix.len() {
            return Err(topic_error(format!(
                "'{}' must start with '{prefix}' (this tenant's topics are named \
                 '{prefix}<name>')",
                self.topic
            )));
        }
        Ok(())
    }

    /// A Fluvio destination holds no credentials: the cluster is the operator's.
    fn credentials(&mut self) -> Vec<(String, &mut Credential)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cluster() -> SinkSettings {
        SinkSettings {
            fluvio: Some(FluvioSettings::new("127.0.0.1:9003")),
            reserved_topics: vec!["acme-orders".to_owned()],
            ..SinkSettings::default()
        }
    }

    fn refusal(topic: &str, tenant: &str, settings: &SinkSettings) -> Option<String> {
        let config = FluvioConfig::new(topic);
        config
            .validate(settings)
            .and_then(|()| config.check_tenant(tenant, settings))
            .err()
            .map(|e| {
                assert_eq!(e.field(), Some("config.topic"), "{e}");
                e.to_string()
            })
    }

    #[test]
    fn a_topic_must_be_a_fluvio_name_inside_the_tenants_prefix() {
        let settings = with_cluster();
        assert_eq!(refusal("acme-alerts", "acme", &settings), None);
        assert_eq!(refusal("acme-a", "acme", &settings), None);
        let long = format!("acme-{}", "x".repeat(MAX_TOPIC_CHARS - 5));
        assert_eq!(refusal(&long, "acme", &settings), None);

        for bad in [
            "",
            "Acme-alerts",
            "acme_alerts",
            "acme-alerts-",
            "-acme",
            "acme alerts",
            "acme-ålerts",
        ] {
            let refused = refusal(bad, "acme", &settings).expect(bad);
            assert!(refused.contains("is not a Fluvio topic name"), "{refused}");
        }
        let too_long = format!("{long}x");
        assert!(refusal(&too_long, "acme", &settings).is_some());

        assert_eq!(
            refusal("globex-alerts", "acme", &settings).as_deref(),
            Some(
                "config.topic: 'globex-alerts' must start with 'acme-' (this tenant's topics \
                 are named 'acme-<name>')"
            )
        );
        assert!(refusal("acme-", "acme", &settings).is_some());
        assert!(refusal("acme", "acme", &settings).is_some());
        assert!(refusal("acme-alerts", "globex", &settings).is_some());

        assert_eq!(
            refusal("acme-orders", "acme", &settings).as_deref(),
            Some(
                "config.topic: 'acme-orders' is a topic this server reads events from; a \
                 destination cannot write to it"
            )
        );
        let refused = refusal("Acme-alerts", "Acme", &settings).expect("uppercase tenant");
        assert!(refused.contains("is not a Fluvio topic name"), "{refused}");
        let refused = refusal("acme-alerts", "ACME", &settings).expect("uppercase tenant");
        assert!(
            refused.contains("cannot form Fluvio topic names"),
            "{refused}"
        );
    }

    #[test]
    fn without_a_cluster_no_topic_is_accepted() {
        let refused = refusal("acme-alerts", "acme", &SinkSettings::default()).expect("refused");
        assert!(
            refused.contains("no Fluvio cluster configured"),
            "{refused}"
        );
    }

    #[test]
    fn a_custom_prefix_places_the_tenant_anywhere() {
        let mut settings = with_cluster();
        if let Some(cluster) = settings.fluvio.as_mut() {
            cluster.topic_prefix = "tm-{tenant}-out-".to_owned();
        }
        assert_eq!(refusal("tm-acme-out-alerts", "acme", &settings), None);
        assert!(refusal("acme-alerts", "acme", &settings).is_some());
    }

    #[test]
    fn cluster_settings_are_checked() {
        let field = |settings: FluvioSettings| {
            settings
                .validate()
                .err()
                .and_then(|e| e.field().map(str::to_owned))
        };
        assert_eq!(field(FluvioSettings::new("127.0.0.1:9003")), None);
        assert_eq!(field(FluvioSettings::new("fluvio.internal:9003")), None);
        assert_eq!(field(FluvioSettings::new("[::1]:9003")), None);
        for bad in [
            "",
            "127.0.0.1",
            "127.0.0.1:",
            ":9003",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            "http://127.0.0.1:9003",
            "fluvio internal:9003",
        ] {
            assert_eq!(
                field(FluvioSettings::new(bad)).as_deref(),
                Some("endpoint"),
                "{bad}"
            );
        }
        for (prefix, refused) in [
            ("{tenant}-", false),
            ("tidemark-{tenant}-", false),
            ("{tenant}", false),
            ("shared-", true),
            ("{tenant}_", true),
            ("Tidemark-{tenant}-", true),
            ("-{tenant}", true),
        ] {
            let mut settings = FluvioSettings::new("127.0.0.1:9003");
            settings.topic_prefix = prefix.to_owned();
            assert_eq!(
                field(settings).as_deref(),
                refused.then_some("topic_prefix"),
                "{prefix}"
            );
        }
        let mut settings = FluvioSettings::new("127.0.0.1:9003");
        settings.timeout = Duration::ZERO;
        assert_eq!(field(settings).as_deref(), Some("timeout"));
    }
}
