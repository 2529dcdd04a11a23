//! Sealed secrets (see [`crate::secrets`]): the rows the envelope encryption produces and the
//! per-KEK-version bookkeeping. The store never sees a plaintext or a key.

use serde::{Deserialize, Serialize};

use super::{StoreError, StoreResult};

/// One sealed version of a tenant's secret, as stored.
///
/// The store never sees a plaintext or a key: only the sealed bytes and the numbers the
/// encryption binds them to (tenant, name, version and KEK version; see
/// [`crate::secrets`]). `Debug` shows sizes, not bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// Owning tenant.
    pub tenant: String,
    /// Secret name, unique per tenant.
    pub name: String,
    /// Value version, 1 for the first put of a name; increases by one per put.
    pub version: u64,
    /// Version of the key-encryption key that wraps `wrapped_dek`.
    pub kek_version: u32,
    /// Nonce of the data-key layer.
    pub dek_nonce: Vec<u8>,
    /// The data key, encrypted and authenticated under the KEK.
    pub wrapped_dek: Vec<u8>,
    /// Nonce of the value layer.
    pub value_nonce: Vec<u8>,
    /// The value, encrypted and authenticated under the data key (tag appended).
    pub ciphertext: Vec<u8>,
    /// When this version was put, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

impl std::fmt::Debug for SecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRow")
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("kek_version", &self.kek_version)
            .field("ciphertext_bytes", &self.ciphertext.len())
            .field("created_at_ms", &self.created_at_ms)
            .finish_non_exhaustive()
    }
}

/// A [`SecretRow`] with its position in the table, for the re-wrap scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionedSecretRow {
    /// Row position: stable for the row's life, increasing in insert order.
    pub position: u64,
    /// The row.
    pub row: SecretRow,
}

/// A row re-sealed under a new KEK version, replacing the row at `position` only if that row
/// is still sealed under `from_kek_version` (a concurrent delete or prune wins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewrappedSecretRow {
    /// Position of the row being replaced.
    pub position: u64,
    /// KEK version the row was read under.
    pub from_kek_version: u32,
    /// The re-sealed row (same tenant, name and version).
    pub row: SecretRow,
}

/// A secret as listed: never its value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretInfo {
    /// Secret name.
    pub name: String,
    /// Latest version.
    pub version: u64,
    /// Versions kept (the latest and the ones before it still available for rollback).
    pub versions: Vec<u64>,
    /// KEK version the latest version is sealed under.
    pub kek_version: u32,
    /// When the latest version was put, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// Per-KEK-version bookkeeping of the secrets table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct KekUsage {
    /// KEK version.
    pub kek_version: u32,
    /// Encryptions made under this KEK version (one per data key wrapped).
    pub encryptions: u64,
    /// Position of the last row re-wrapped to this version (the resumable re-wrap cursor).
    pub rewrap_cursor: u64,
}

/// Limits applied by [`SecretRows::put_secret_rows`] inside its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretWritePolicy {
    /// Versions of a name kept after a put (the new one included); older ones are deleted.
    pub keep_versions: u64,
    /// Encryptions one KEK version may make; a put that would exceed it is refused.
    pub max_kek_encryptions: u64,
}

/// Outcome of [`SecretRows::put_secret_rows`]. Anything but `Stored` wrote nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretPut {
    /// Every row is durable.
    Stored {
        /// Encryptions counted against the rows' KEK version after this put.
        kek_encryptions: u64,
    },
    /// Another writer already stored this or a later version of the name: read the latest
    /// version again and re-seal.
    VersionTaken {
        /// The name whose version was taken.
        name: String,
        /// The version that was refused.
        version: u64,
    },
    /// The rows are sealed under an older KEK version than the store's active one (a
    /// rotation happened): fetch the current KEK and re-seal.
    StaleKek {
        /// The store's active KEK version.
        active: u32,
    },
    /// The KEK version has made as many encryptions as the policy allows: rotate it.
    KekExhausted {
        /// The exhausted KEK version.
        kek_version: u32,
        /// Encryptions made under it so far.
        encryptions: u64,
    },
}

/// Storage of sealed secrets: one of the concerns every [`Store`](super::Store) backend
/// implements, and all that [`crate::secrets::Secrets`] needs.
///
/// Every read and delete takes the tenant and filters by it. The methods are synchronous,
/// like every store concern's; every method that writes is one transaction.
pub trait SecretRows: Send + Sync {
    /// The latest stored version of each of `names` of `tenant`, 0 for a name with none, in
    /// input order.
    fn latest_secret_versions(&self, tenant: &str, names: &[&str]) -> StoreResult<Vec<u64>>;

    /// Stores sealed rows in one transaction, all or nothing. Each row's version must be
    /// above every stored version of its name, and its KEK version at least the active one
    /// (a higher one becomes active). Counts one KEK encryption per row and deletes versions
    /// beyond `policy.keep_versions`.
    fn put_secret_rows(
        &self,
        rows: &[SecretRow],
        policy: &SecretWritePolicy,
    ) -> StoreResult<SecretPut>;

    /// The row `(tenant, name, version)`, or the latest version with `None`.
    fn get_secret_row(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u64>,
    ) -> StoreResult<Option<SecretRow>>;

    /// Secrets of `tenant`, ordered by name.
    fn list_secrets(&self, tenant: &str) -> StoreResult<Vec<SecretInfo>>;

    /// Deletes every version of the secret `name` of `tenant`; returns how many.
    fn delete_secret(&self, tenant: &str, name: &str) -> StoreResult<u64>;

    /// Bookkeeping of every KEK version still registered, oldest first; the last is active.
    fn kek_usage(&self) -> StoreResult<Vec<KekUsage>>;

    /// Makes `kek_version` the active KEK version (idempotent). Refused for a version below
    /// the active one.
    fn activate_kek_version(&self, kek_version: u32) -> StoreResult<()>;

    /// Number of rows sealed under any KEK version other than `kek_version`.
    fn count_secret_rows_off(&self, kek_version: u32) -> StoreResult<u64>;

    /// Up to `limit` rows at positions after `after` sealed under a KEK version other than
    /// `target`, in position order.
    fn secret_rows_to_rewrap(
        &self,
        target: u32,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<PositionedSecretRow>>;

    /// Replaces re-sealed rows, counts their encryptions against `target` and moves its
    /// re-wrap cursor to `cursor`, in one transaction. Refused when `target` is no longer the
    /// active version. Returns how many rows were replaced.
    fn rewrap_secret_rows(
        &self,
        target: u32,
        rows: &[RewrappedSecretRow],
        cursor: u64,
    ) -> StoreResult<usize>;

    /// Forgets every KEK version below `kek_version` (and its counter). Refused while a row is
    /// still sealed under one of them.
    fn retire_kek_versions_before(&self, kek_version: u32) -> StoreResult<Vec<u32>>;
}

/// The KEK version a put's rows are sealed under, checked against the active one: `Err` with
/// [`SecretPut::StaleKek`] when a row is sealed under an older one (nothing may be written).
/// Rows of one put are sealed under one KEK; mixed versions are a caller's bug.
pub(crate) fn kek_version_of_put(
    rows: &[SecretRow],
    active: Option<u32>,
) -> StoreResult<Result<u32, SecretPut>> {
    let mut kek_versions = std::collections::BTreeSet::new();
    for row in rows {
        if let Some(active) = active
            && row.kek_version < active
        {
            return Ok(Err(SecretPut::StaleKek { active }));
        }
        kek_versions.insert(row.kek_version);
    }
    match kek_versions.into_iter().collect::<Vec<_>>()[..] {
        [kek_version] => Ok(Ok(kek_version)),
        _ => Err(StoreError::InvalidInput(
            "all rows of one secrets put must be sealed under the same KEK version".to_owned(),
        )),
    }
}
