//! Rule changes on their way to the dataflow, and the metadata of the active rules that
//! rendering reads.
//!
//! Every change to a rule — created, updated, enabled, disabled, deleted, or read back at start —
//! is a [`RuleUpdate`]: the rule's new state, compiled once ([`CompiledRule`]) when it is active,
//! nothing when it is gone or switched off. [`ActiveRules::apply`] is the one place that turns it
//! into the dataflow's [`RuleChange`] and keeps the metadata beside it.
//!
//! The metadata stays here, at the engine thread, rather than riding on the dataflow's rules
//! and intents: the engine thread pairs each intent with its rule's metadata (one lookup and a
//! reference count per intent) as it hands the step over for rendering, while carrying it would
//! add a pointer to every match intent on the matching path and to every rule the workers
//! hold, for nothing the workers read.

use std::collections::HashMap;
use std::sync::Arc;

use connectors::store::StoredRule;
use operators::{CompiledRule, RuleChange, RuleError, RuleMeta, RuleSpec};

/// A rule's new state, for the engine thread.
#[derive(Clone, Debug)]
pub struct RuleUpdate {
    tenant: String,
    rule_id: String,
    active: Option<CompiledRule>,
}

/// Why a stored rule could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StoredRuleError {
    /// Its document is not a rule spec.
    #[error("stored rule {tenant}/{id} is not a valid rule document: {source}")]
    Document {
        /// Tenant.
        tenant: String,
        /// Rule id.
        id: String,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// It no longer compiles (say, its time zone is gone).
    #[error("stored rule {tenant}/{id}: {source}")]
    Compile {
        /// Tenant.
        tenant: String,
        /// Rule id.
        id: String,
        /// The compiler's complaint.
        source: RuleError,
    },
}

impl RuleUpdate {
    /// The new state of rule `rule_id` of `tenant`: `active` when it exists and is enabled,
    /// `None` when it was deleted or disabled.
    pub fn new(tenant: &str, rule_id: &str, active: Option<CompiledRule>) -> RuleUpdate {
        RuleUpdate {
            tenant: tenant.to_string(),
            rule_id: rule_id.to_string(),
            active,
        }
    }

    /// The state a stored rule puts its rule in, compiled with the tenant's time zone.
    pub fn from_stored(
        stored: &StoredRule,
        time_zone: &str,
    ) -> Result<RuleUpdate, StoredRuleError> {
        let spec: RuleSpec =
            serde_json::from_str(&stored.body).map_err(|source| StoredRuleError::Document {
                tenant: stored.tenant.clone(),
                id: stored.id.clone(),
                source,
            })?;
        let active = if stored.enabled && spec.enabled {
            let compiled =
                CompiledRule::compile(&spec, &stored.tenant, &stored.id, stored.version, time_zone)
                    .map_err(|source| StoredRuleError::Compile {
                        tenant: stored.tenant.clone(),
                        id: stored.id.clone(),
                        source,
                    })?;
            Some(compiled)
        } else {
            None
        };
        Ok(RuleUpdate::new(&stored.tenant, &stored.id, active))
    }

    /// The compiled rule, when the update leaves it active.
    pub fn active(&self) -> Option<&CompiledRule> {
        self.active.as_ref()
    }
}

/// The metadata of the rules active in the dataflow, by tenant and rule id.
#[derive(Debug, Default)]
pub(super) struct ActiveRules {
    metas: HashMap<String, HashMap<String, Arc<RuleMeta>>>,
    /// The longest time any rule applied since start keeps events (window plus period), ms.
    horizon_ms: i64,
}

impl ActiveRules {
    /// Records an update and returns the change the dataflow must make for it.
    pub(super) fn apply(&mut self, update: RuleUpdate) -> RuleChange {
        let RuleUpdate {
            tenant,
            rule_id,
            active,
        } = update;
        match active {
            Some(CompiledRule { rule, meta }) => {
                self.horizon_ms = self.horizon_ms.max(rule.retention_ms());
                self.metas
                    .entry(tenant)
                    .or_default()
                    .insert(rule_id, Arc::new(meta));
                RuleChange::Upsert(rule)
            }
            None => {
                if let Some(rules) = self.metas.get_mut(&tenant) {
                    rules.remove(&rule_id);
                    if rules.is_empty() {
                        self.metas.remove(&tenant);
                    }
                }
                RuleChange::Remove { tenant, rule_id }
            }
        }
    }

    /// How far back the rules need events, ms: the longest retention of any rule applied
    /// since start (a rule removed since still counts, which replays a little more history at
    /// the next start, never less).
    pub(super) fn horizon_ms(&self) -> i64 {
        self.horizon_ms
    }

    /// The metadata of an active rule.
    pub(super) fn meta(&self, tenant: &str, rule_id: &str) -> Option<&Arc<RuleMeta>> {
        self.metas.get(tenant)?.get(rule_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(enabled: bool, body: serde_json::Value) -> StoredRule {
        StoredRule {
            tenant: "shop".into(),
            id: "big".into(),
            version: 2,
            enabled,
            body: body.to_string(),
            updated_at_ms: 0,
        }
    }

    #[test]
    fn every_update_goes_through_apply_and_keeps_the_metadata_beside_the_change() {
        let body = serde_json::json!({"kind": "match", "event_type": "order", "name": "Big",
            "destinations": ["hook"]});
        let mut rules = ActiveRules::default();
        let update = RuleUpdate::from_stored(&stored(true, body.clone()), "UTC").unwrap();
        let RuleChange::Upsert(rule) = rules.apply(update) else {
            panic!("an enabled rule is upserted");
        };
        assert_eq!((rule.id.as_str(), rule.version), ("big", 2));
        let meta = rules.meta("shop", "big").expect("metadata kept");
        assert_eq!(
            (meta.name.as_str(), &meta.destinations[..]),
            ("Big", &["hook".to_string()][..])
        );

        // Disabled (by the row or by the document) and deleted rules are removed alike.
        for update in [
            RuleUpdate::from_stored(&stored(false, body.clone()), "UTC").unwrap(),
            RuleUpdate::from_stored(
                &stored(
                    true,
                    serde_json::json!({"kind": "match", "event_type": "order", "enabled": false}),
                ),
                "UTC",
            )
            .unwrap(),
            RuleUpdate::new("shop", "big", None),
        ] {
            let _ =
                rules.apply(RuleUpdate::from_stored(&stored(true, body.clone()), "UTC").unwrap());
            assert_eq!(
                rules.apply(update),
                RuleChange::Remove {
                    tenant: "shop".into(),
                    rule_id: "big".into()
                }
            );
            assert!(rules.meta("shop", "big").is_none());
        }
    }

    #[test]
    fn a_stored_rule_that_no_longer_reads_back_says_which_and_why() {
        let error = RuleUpdate::from_stored(&stored(true, serde_json::json!({"kind": 1})), "UTC")
            .unwrap_err();
        assert!(matches!(error, StoredRuleError::Document { .. }), "{error}");
        let error = RuleUpdate::from_stored(
            &stored(
                true,
                serde_json::json!({"kind": "match", "event_type": "order"}),
            ),
            "Mars/Olympus",
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("stored rule shop/big: time_zone: "),
            "{error}"
        );
    }
}
