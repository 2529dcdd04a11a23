//! The catalog: tenants, their API keys, alert rules and delivery destinations.
//!
//! Ids are scoped per tenant: rules and destinations are keyed by (tenant, id), two tenants may
//! use the same id, and every read or delete filters by tenant, so a caller holding tenant A's
//! credential can neither see, change nor detect tenant B's rows by guessing ids.

use serde::{Deserialize, Serialize};

use super::{StoreError, StoreResult};

/// An alert rule as stored; `body` is the rule's JSON definition, opaque to the store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredRule {
    /// Owning tenant.
    pub tenant: String,
    /// Rule id, unique per tenant.
    pub id: String,
    /// Version chosen by the caller; increases on every change.
    pub version: u64,
    /// Whether the rule is evaluated.
    pub enabled: bool,
    /// The rule definition as JSON text.
    pub body: String,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// A notification destination as stored; `config` is kind-specific JSON (see `sinks`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredDestination {
    /// Owning tenant.
    pub tenant: String,
    /// Destination id, unique per tenant.
    pub id: String,
    /// Sink kind: `"webhook"` or `"file"`.
    pub kind: String,
    /// Kind-specific configuration as JSON text.
    pub config: String,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// A tenant (one shop).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    /// Tenant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// IANA time zone used for schedules and quiet hours, e.g. `Asia/Seoul`.
    pub time_zone: String,
}

/// What the pipeline is configured with: tenants, API keys, rules and destinations. Every
/// method that writes is one transaction, durable when it returns.
pub trait Catalog: Send + Sync {
    // ---- rules ----

    /// Inserts or replaces the rule `(rule.tenant, rule.id)`.
    fn put_rule(&self, rule: &StoredRule) -> StoreResult<()>;

    /// The rule `id` of `tenant`, if any.
    fn get_rule(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredRule>>;

    /// Rules of `tenant`, or of every tenant with `None` (to rebuild dataflow state), ordered
    /// by tenant then id.
    fn list_rules(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredRule>>;

    /// Deletes the rule `id` of `tenant`; `false` when there was none.
    fn delete_rule(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    // ---- destinations ----

    /// Inserts or replaces the destination `(destination.tenant, destination.id)`.
    fn put_destination(&self, destination: &StoredDestination) -> StoreResult<()>;

    /// The destination `id` of `tenant`, if any.
    fn get_destination(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredDestination>>;

    /// Destinations of `tenant`, ordered by id.
    fn list_destinations(&self, tenant: &str) -> StoreResult<Vec<StoredDestination>>;

    /// Deletes the destination `id` of `tenant`; `false` when there was none. Pending
    /// deliveries to it go dead when next claimed.
    fn delete_destination(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    // ---- tenants and credentials ----

    /// Inserts or replaces a tenant.
    fn put_tenant(&self, tenant: &Tenant) -> StoreResult<()>;

    /// The tenant `id`, if any.
    fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>>;

    /// All tenants, ordered by id.
    fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;

    /// Registers an API key for `tenant` by the lowercase hex SHA-256 of the key (the key
    /// itself is never stored). Re-registering a hash moves it to `tenant`.
    fn put_api_key(&self, tenant: &str, key_hash: &str) -> StoreResult<()>;

    /// Makes `keys` — pairs of tenant and key hash, as for [`Catalog::put_api_key`] — the only
    /// API keys, in one transaction: every other key stops working when this returns. The
    /// server calls it on start so that keys follow the configuration.
    fn replace_api_keys(&self, keys: &[(String, String)]) -> StoreResult<()>;

    /// The tenant owning the API key with this hash, if any.
    fn tenant_for_api_key(&self, key_hash: &str) -> StoreResult<Option<String>>;
}

/// Keys are stored only as the lowercase hex SHA-256 of the key.
pub(crate) fn check_key_hash(key_hash: &str) -> StoreResult<()> {
    let well_formed = key_hash.len() == 64
        && key_hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if well_formed {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(
            "key_hash must be the lowercase hex SHA-256 of the API key (64 characters)".to_owned(),
        ))
    }
}
