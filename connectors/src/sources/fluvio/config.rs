//! `[[sources.fluvio]]`: which topic to read, whose events it carries, where a new consumer
//! starts and how much one batch may hold.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sources::FieldError;

/// Where a partition with no stored position starts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    /// The first record the partition still holds.
    #[default]
    Beginning,
    /// The next record produced after the source first starts (recorded at once, so a restart
    /// resumes there rather than at the then-current end).
    End,
}

/// One Fluvio source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FluvioSourceConfig {
    /// The name positions and dead letters are kept under (default `fluvio:<topic>`). Renaming
    /// a source starts it again from `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Fluvio controller (SC) address, `host:port`.
    pub endpoint: String,
    /// The topic to read.
    pub topic: String,
    /// The partitions to read (default: every partition of the topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<u32>>,
    /// The one tenant this topic's events belong to. A record's body never chooses it: an event
    /// naming another tenant is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Marks a topic that carries several tenants' events; then `tenant_field` names the
    /// document field holding each event's tenant and `tenants` lists the tenants allowed.
    #[serde(default)]
    pub multi_tenant: bool,
    /// The field naming an event's tenant on a `multi_tenant` topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_field: Option<String>,
    /// The tenants a `multi_tenant` topic may carry; an event naming any other is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// Where a partition with no stored position starts.
    #[serde(default)]
    pub start: StartPosition,
    /// The largest record accepted, in bytes; a larger one is dead-lettered (1 MiB).
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// Most events one record may hold (a JSON array or NDJSON lines).
    #[serde(default = "default_max_record_events")]
    pub max_record_events: usize,
    /// Most records committed in one transaction per partition.
    #[serde(default = "default_max_batch_records")]
    pub max_batch_records: usize,
}

fn default_max_record_bytes() -> usize {
    1 << 20
}

fn default_max_record_events() -> usize {
    10_000
}

fn default_max_batch_records() -> usize {
    4_096
}

/// Whose events a topic carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantBinding {
    /// Every event is this tenant's.
    One(String),
    /// Each event names its tenant in `field`, one of `tenants`.
    Field {
        /// The document field.
        field: String,
        /// The tenants allowed.
        tenants: Vec<String>,
    },
}

impl TenantBinding {
    /// The tenant `document` belongs to, or why it belongs to none this topic carries.
    pub fn tenant_of<'a>(&'a self, document: &Value) -> Result<&'a str, FieldError> {
        match self {
            TenantBinding::One(tenant) => Ok(tenant),
            TenantBinding::Field { field, tenants } => {
                let named = match document.get(field) {
                    Some(Value::String(named)) => named,
                    Some(_) => {
                        return Err(FieldError::new(field, format!("{field}: must be a string")));
                    }
                    None => {
                        return Err(FieldError::new(
                            field,
                            format!("{field}: is required on a topic carrying several tenants"),
                        ));
                    }
                };
                tenants
                    .iter()
                    .find(|t| *t == named)
                    .map(String::as_str)
                    .ok_or_else(|| {
                        FieldError::new(
                            field,
                            format!("{field}: '{named}' is not a tenant this topic carries"),
                        )
                    })
            }
        }
    }
}

impl FluvioSourceConfig {
    /// The name positions and dead letters are kept under.
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("fluvio:{}", self.topic))
    }

    /// Whose events the topic carries (after [`FluvioSourceConfig::validate`]).
    pub fn binding(&self) -> TenantBinding {
        match (&self.tenant, self.multi_tenant) {
            (Some(tenant), false) => TenantBinding::One(tenant.clone()),
            _ => TenantBinding::Field {
                field: self.tenant_field.clone().unwrap_or_else(|| "tenant".into()),
                tenants: self.tenants.clone(),
            },
        }
    }

    /// Checks what serde cannot; `configured` are the server's tenants. An error names the
    /// field (without the `sources.fluvio[i].` prefix the caller adds) and says why.
    pub fn validate(&self, configured: &[&str]) -> Result<(), String> {
        if self.endpoint.trim().is_empty() {
            return Err("endpoint: must name the Fluvio controller, host:port".into());
        }
        if !self.endpoint.contains(':') {
            return Err(format!(
                "endpoint: '{}' has no port; give host:port (the controller's public port, 9003 by default)",
                self.endpoint
            ));
        }
        if self.topic.is_empty() {
            return Err("topic: must not be empty".into());
        }
        if self.name.as_deref().is_some_and(str::is_empty) {
            return Err("name: must not be empty".into());
        }
        if self.partitions.as_ref().is_some_and(Vec::is_empty) {
            return Err(
                "partitions: must list at least one partition, or be left out for all".into(),
            );
        }
        let unknown = |tenant: &str| !configured.contains(&tenant);
        match (&self.tenant, self.multi_tenant) {
            (Some(_), true) => {
                return Err(
                    "tenant: a multi_tenant topic names its tenants in `tenants`, not `tenant`"
                        .into(),
                );
            }
            (None, false) => {
                return Err("tenant: must name the tenant this topic's events belong to (or set multi_tenant = true with tenant_field and tenants)".into());
            }
            (Some(tenant), false) => {
                if self.tenant_field.is_some() {
                    return Err("tenant_field: only a topic marked multi_tenant = true may take the tenant from its records".into());
                }
                if !self.tenants.is_empty() {
                    return Err(
                        "tenants: only a topic marked multi_tenant = true lists several tenants"
                            .into(),
                    );
                }
                if unknown(tenant) {
                    return Err(format!("tenant: '{tenant}' is not a configured tenant"));
                }
            }
            (None, true) => {
                if self.tenant_field.as_deref().is_none_or(str::is_empty) {
                    return Err("tenant_field: a multi_tenant topic must name the field holding each event's tenant".into());
                }
                if self.tenants.is_empty() {
                    return Err(
                        "tenants: a multi_tenant topic must list the tenants it carries".into(),
                    );
                }
                if let Some(tenant) = self.tenants.iter().find(|t| unknown(t)) {
                    return Err(format!("tenants: '{tenant}' is not a configured tenant"));
                }
            }
        }
        for (field, value) in [
            ("max_record_bytes", self.max_record_bytes),
            ("max_record_events", self.max_record_events),
            ("max_batch_records", self.max_batch_records),
        ] {
            if value == 0 {
                return Err(format!("{field}: must be at least 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> FluvioSourceConfig {
        FluvioSourceConfig {
            name: None,
            endpoint: "127.0.0.1:9003".into(),
            topic: "orders".into(),
            partitions: None,
            tenant: Some("acme".into()),
            multi_tenant: false,
            tenant_field: None,
            tenants: Vec::new(),
            start: StartPosition::Beginning,
            max_record_bytes: default_max_record_bytes(),
            max_record_events: default_max_record_events(),
            max_batch_records: default_max_batch_records(),
        }
    }

    #[test]
    fn a_topic_is_bound_to_one_configured_tenant() {
        assert_eq!(base().validate(&["acme"]), Ok(()));
        assert_eq!(base().name(), "fluvio:orders");
        assert!(
            base()
                .validate(&["globex"])
                .unwrap_err()
                .contains("'acme' is not a configured tenant")
        );
        let mut no_tenant = base();
        no_tenant.tenant = None;
        assert!(
            no_tenant
                .validate(&["acme"])
                .unwrap_err()
                .starts_with("tenant:")
        );
        let mut field = base();
        field.tenant_field = Some("tenant".into());
        assert!(
            field
                .validate(&["acme"])
                .unwrap_err()
                .contains("only a topic marked multi_tenant")
        );
        let mut no_port = base();
        no_port.endpoint = "localhost".into();
        assert!(no_port.validate(&["acme"]).unwrap_err().contains("no port"));
    }

    #[test]
    fn a_multi_tenant_topic_lists_configured_tenants_and_names_the_field() {
        let mut multi = base();
        multi.tenant = None;
        multi.multi_tenant = true;
        assert!(
            multi
                .validate(&["acme"])
                .unwrap_err()
                .starts_with("tenant_field:")
        );
        multi.tenant_field = Some("shop".into());
        assert!(
            multi
                .validate(&["acme"])
                .unwrap_err()
                .starts_with("tenants:")
        );
        multi.tenants = vec!["acme".into(), "initech".into()];
        assert!(multi.validate(&["acme"]).unwrap_err().contains("'initech'"));
        assert_eq!(multi.validate(&["acme", "initech"]), Ok(()));
        let binding = multi.binding();
        assert_eq!(
            binding.tenant_of(&serde_json::json!({"shop": "initech"})),
            Ok("initech")
        );
        let other = binding
            .tenant_of(&serde_json::json!({"shop": "globex"}))
            .unwrap_err();
        assert_eq!(other.field, "shop");
        assert!(
            other
                .message
                .contains("'globex' is not a tenant this topic carries")
        );
        assert!(binding.tenant_of(&serde_json::json!({})).is_err());
        assert!(binding.tenant_of(&serde_json::json!({"shop": 7})).is_err());
    }

    #[test]
    fn unknown_keys_are_refused_and_defaults_apply() {
        let parsed: FluvioSourceConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "127.0.0.1:9003", "topic": "orders", "tenant": "acme", "start": "end"
        }))
        .expect("config");
        assert_eq!(parsed.start, StartPosition::End);
        assert_eq!(parsed.max_batch_records, 4_096);
        let unknown = serde_json::from_value::<FluvioSourceConfig>(serde_json::json!({
            "endpoint": "127.0.0.1:9003", "topic": "orders", "tenant": "acme", "offset": 3
        }));
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown field `offset`")
        );
    }
}
