//! Process-wide metadata: small named values such as the engine's processed position.

use super::StoreResult;

/// Process-wide metadata values. The key `schema_version` belongs to the store itself and
/// cannot be set.
pub trait Meta: Send + Sync {
    /// A process-wide metadata value (e.g. the pipeline's replay checkpoint).
    fn get_meta(&self, key: &str) -> StoreResult<Option<String>>;

    /// Sets a process-wide metadata value.
    fn set_meta(&self, key: &str, value: &str) -> StoreResult<()>;
}
