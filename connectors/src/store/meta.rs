//! Process-wide metadata: small named values such as the engine's processed position.

use super::{StoreError, StoreResult};

/// Meta key holding the schema version, which every backend keeps itself.
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// Process-wide metadata values. The key `schema_version` belongs to the store itself and
/// cannot be set.
pub trait Meta: Send + Sync {
    /// A process-wide metadata value (e.g. the pipeline's replay checkpoint).
    fn get_meta(&self, key: &str) -> StoreResult<Option<String>>;

    /// Sets a process-wide metadata value.
    fn set_meta(&self, key: &str, value: &str) -> StoreResult<()>;
}

/// Refuses the key the store keeps its schema version under.
pub(crate) fn check_meta_key(key: &str) -> StoreResult<()> {
    if key == SCHEMA_VERSION_KEY {
        return Err(StoreError::InvalidInput(format!(
            "meta key {SCHEMA_VERSION_KEY:?} is reserved for the store itself"
        )));
    }
    Ok(())
}
