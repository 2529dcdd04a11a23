//! A stored rule turned into its dataflow change and the metadata rendering needs.

use super::*;

/// What the engine thread needs to know about a rule besides its dataflow form.
#[derive(Clone, Debug, Default)]
pub struct RuleMeta {
    /// Display name.
    pub name: String,
    /// Message template.
    pub template: Option<String>,
    /// Destination ids.
    pub destinations: Vec<String>,
}

/// A rule change for the engine thread.
#[derive(Clone, Debug)]
pub struct RuleUpdate {
    /// The dataflow change.
    pub change: RuleChange,
    /// Metadata for upserts.
    pub meta: Option<RuleMeta>,
}

/// Compiles a stored rule; `Ok(None)` when it is disabled.
pub fn rule_update(stored: &StoredRule, time_zone: &str) -> anyhow::Result<RuleUpdate> {
    let spec: RuleSpec = serde_json::from_str(&stored.body).with_context(|| {
        format!(
            "stored rule {}/{} is not valid JSON",
            stored.tenant, stored.id
        )
    })?;
    if !stored.enabled || !spec.enabled {
        return Ok(RuleUpdate {
            change: RuleChange::Remove {
                tenant: stored.tenant.clone(),
                rule_id: stored.id.clone(),
            },
            meta: None,
        });
    }
    let rule = Rule::compile(&spec, &stored.tenant, &stored.id, stored.version, time_zone)
        .with_context(|| format!("stored rule {}/{}", stored.tenant, stored.id))?;
    Ok(RuleUpdate {
        change: RuleChange::Upsert(rule),
        meta: Some(RuleMeta {
            name: spec.name.clone().unwrap_or_else(|| stored.id.clone()),
            template: spec.template.clone(),
            destinations: spec.destinations.clone(),
        }),
    })
}
