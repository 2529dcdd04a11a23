//! Tenants' third-party credentials (ad-platform keys, GA4 service-account keys, Slack tokens,
//! SMTP and Trino passwords), envelope-encrypted in the database.
//!
//! Every value is sealed with its own AES-256-GCM data key, which is wrapped by the
//! key-encryption key (KEK); only the KEK lives outside the database, in a local key file or
//! in AWS Secrets Manager — one secret there instead of one per credential.
//!
//! - [`envelope`]: the two-layer encryption and what each layer authenticates.
//! - [`kek`]: KEK sources (local file, AWS Secrets Manager).
//! - [`Secrets`]: put, get, list, delete, roll back and rotate, over any store implementing
//!   [`SecretRows`](crate::store::SecretRows).
//!
//! What is promised:
//! - A row only decrypts as the tenant, name, version and KEK version it was sealed for:
//!   copies to another tenant or name, edits and swaps fail with
//!   [`SecretsError::Undecryptable`].
//! - Values are versioned: a put adds a version and keeps the one before it for
//!   [`Secrets::rollback`].
//! - KEK rotation re-wraps every data key in the background while reads and writes go on; the
//!   old KEK version stays readable until the re-wrap has finished, and the re-wrap resumes
//!   where it stopped after a crash.
//! - Encryptions per KEK version are counted; the store warns from
//!   [`SecretsOptions::warn_kek_encryptions`] on and refuses at
//!   [`SecretsOptions::max_kek_encryptions`] (2^32, the bound for random 96-bit nonces);
//!   rotation starts a fresh count.
//! - Values, data keys and KEKs live in zeroize-on-drop buffers, and never appear in logs,
//!   errors or `Debug`/`Display` output.

pub mod envelope;
pub mod kek;
mod rotation;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub use envelope::Layer;
pub use kek::{AwsKekSettings, AwsSecretsManager, Kek, KekSource, LocalKeyFile};
pub use rotation::{RewrapProgress, RotationReport};

use crate::store::{KekUsage, SecretInfo, SecretPut, SecretRows, SecretWritePolicy, StoreError};

/// Longest secret value accepted, bytes (a GA4 service-account key is about 2.3 KB).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Longest tenant id or secret name, bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Put attempts before giving up on a name other writers keep changing.
const PUT_ATTEMPTS: usize = 8;

/// A secret's value: zeroed when dropped; `Debug` and `Display` print `<redacted>`.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    /// Wraps `bytes` (moved, not copied).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    fn from_zeroizing(mut bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(std::mem::take(&mut *bytes))
    }

    /// The value's bytes. Keep the borrow short and never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, for credentials that are strings.
    pub fn expose_str(&self) -> Result<&str, SecretsError> {
        std::str::from_utf8(&self.0)
            .map_err(|_| SecretsError::InvalidInput("the secret value is not UTF-8 text".into()))
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl std::fmt::Display for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A secret named in a destination's or connector's configuration, e.g.
/// `"token": {"secret": "slack-bot-token"}`. It holds a name only and is resolved with
/// [`Secrets::resolve`] under the configuration's own tenant, so a configuration can reach
/// nothing outside its tenant, and an unknown name reveals nothing about other tenants.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Name of the secret within the owning tenant.
    pub secret: String,
}

impl SecretRef {
    /// A reference to `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            secret: name.into(),
        }
    }
}

/// Errors from the secrets store. None of them carries a value or key byte.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// No such secret (or version) for this tenant.
    #[error("tenant {tenant:?} has no secret named {name:?}{}", version.map(|v| format!(" at version {v}")).unwrap_or_default())]
    NotFound {
        /// Tenant asked.
        tenant: String,
        /// Name asked.
        name: String,
        /// Version asked, when one was.
        version: Option<u64>,
    },
    /// A row failed authentication: it was altered, copied from another tenant, name or
    /// version, or sealed under a different KEK.
    #[error(
        "secret {name:?} version {version} of tenant {tenant:?} failed authentication at the \
         {layer} layer: the stored row was altered, copied from another tenant or name, or \
         sealed under another KEK; restore it from a backup or put the value again"
    )]
    Undecryptable {
        /// Owning tenant (as stored in the row).
        tenant: String,
        /// Secret name (as stored).
        name: String,
        /// Version (as stored).
        version: u64,
        /// Layer that failed.
        layer: Layer,
    },
    /// Encryption itself failed (only for inputs beyond what AES-GCM can take).
    #[error("cannot seal secret {name:?} of tenant {tenant:?} at the {layer} layer")]
    Seal {
        /// Tenant.
        tenant: String,
        /// Secret name.
        name: String,
        /// Layer that failed.
        layer: Layer,
    },
    /// A stored row is malformed (wrong sizes, wrong KEK version for the key given).
    #[error("secrets: corrupt row: {0}")]
    Corrupt(String),
    /// The input cannot be stored (which field, and why).
    #[error("secrets: invalid input: {0}")]
    InvalidInput(String),
    /// The KEK version a row needs is not in the KEK source any more.
    #[error(
        "KEK version {version} is not available from {source_name}; rows sealed under it \
         cannot be decrypted (was it retired before the re-wrap finished?)"
    )]
    KekUnavailable {
        /// The missing version.
        version: u32,
        /// The KEK source.
        source_name: String,
    },
    /// The KEK source failed.
    #[error("{source_name}: {op} failed: {message}")]
    KekSource {
        /// The KEK source.
        source_name: String,
        /// What was being done.
        op: &'static str,
        /// What went wrong.
        message: String,
        /// Whether retrying later may succeed (throttling, network, server error).
        transient: bool,
    },
    /// The local key file cannot be used.
    #[error("KEK file {path}: {problem}")]
    KeyFile {
        /// Path of the file.
        path: String,
        /// What is wrong, and what to do.
        problem: String,
    },
    /// The KEK source's current version is older than the store's active one: the store was
    /// rotated with another KEK source.
    #[error(
        "the KEK source's current version {source_version} is older than the version {store_version} \
         the store already uses; is Tidemark pointed at the right key file or secret?"
    )]
    KekBehindStore {
        /// Current version at the source.
        source_version: u32,
        /// Active version in the store.
        store_version: u32,
    },
    /// The KEK version has made as many encryptions as allowed.
    #[error(
        "KEK version {kek_version} has made {encryptions} encryptions, its limit; \
         run `tidemark secrets rotate-kek`"
    )]
    KekExhausted {
        /// The exhausted version.
        kek_version: u32,
        /// Encryptions made.
        encryptions: u64,
    },
    /// A row could not be re-wrapped, so the old KEK version cannot be retired yet.
    #[error("re-wrap stopped at secret {name:?} version {version} of tenant {tenant:?}: {reason}")]
    RewrapBlocked {
        /// Owning tenant.
        tenant: String,
        /// Secret name.
        name: String,
        /// Version.
        version: u64,
        /// Why (the underlying error's message).
        reason: String,
    },
    /// Other writers kept taking the version this put wanted.
    #[error("secret {name:?} of tenant {tenant:?} is being changed concurrently; try again")]
    Contended {
        /// Tenant.
        tenant: String,
        /// Secret name.
        name: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug or a runtime failure (a worker thread panicked).
    #[error("secrets: internal error: {0}")]
    Internal(String),
}

impl SecretsError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::KekSource { transient, .. } => *transient,
            Self::Store(e) => e.is_transient(),
            Self::Contended { .. } => true,
            _ => false,
        }
    }
}

/// Tunables of [`Secrets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretsOptions {
    /// Versions of a name kept (the latest included); 2 keeps one for rollback.
    pub keep_versions: u64,
    /// Encryptions of one KEK version from which every put logs a warning to rotate.
    pub warn_kek_encryptions: u64,
    /// Encryptions of one KEK version at which puts are refused until a rotation.
    pub max_kek_encryptions: u64,
    /// Rows re-wrapped per transaction during a rotation.
    pub rewrap_batch: usize,
}

impl Default for SecretsOptions {
    fn default() -> Self {
        Self {
            keep_versions: 2,
            // NIST SP 800-38D: at most 2^32 encryptions per key with random 96-bit nonces.
            // Warning at 2^30 leaves three quarters of the budget to plan the rotation.
            warn_kek_encryptions: 1 << 30,
            max_kek_encryptions: 1 << 32,
            rewrap_batch: 1_000,
        }
    }
}

/// The state of the KEK and its counters, as `tidemark secrets status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretsStatus {
    /// Where the KEK lives.
    pub kek_source: String,
    /// The KEK source's current version.
    pub current_kek_version: u32,
    /// Per-version counters and cursors in the store, oldest first.
    pub kek_versions: Vec<KekUsage>,
    /// Rows still sealed under an older KEK version (a rotation to finish).
    pub rows_to_rewrap: u64,
    /// Whether the current version is past the warning threshold.
    pub rotation_advised: bool,
}

#[derive(Default)]
struct KekCache {
    current: Option<Arc<Kek>>,
    by_version: BTreeMap<u32, Arc<Kek>>,
}

/// The secrets store: envelope-encrypted values in a [`SecretRows`] store under a KEK from a
/// [`KekSource`]. KEKs are cached in memory after first use. Share it behind an `Arc`.
///
/// `S` may be a concrete backend or a trait object: `Secrets<dyn SecretRows>` runs over
/// whatever store the process opened, shared with the rest of it as an `Arc<dyn Store>`.
pub struct Secrets<S: ?Sized> {
    store: Arc<S>,
    keks: KekSource,
    cache: RwLock<KekCache>,
    options: SecretsOptions,
}

impl<S: ?Sized> std::fmt::Debug for Secrets<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("kek_source", &self.keks.describe())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Checks a tenant id or secret name: 1..=128 bytes of letters, digits and `. _ - / :`.
fn validate_name(what: &str, value: &str) -> Result<(), SecretsError> {
    if value.is_empty() || value.len() > MAX_NAME_BYTES {
        return Err(SecretsError::InvalidInput(format!(
            "{what} must be 1 to {MAX_NAME_BYTES} bytes long (got {})",
            value.len()
        )));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':')))
    {
        return Err(SecretsError::InvalidInput(format!(
            "{what} {value:?} may only hold letters, digits and . _ - / : (found {bad:?})"
        )));
    }
    Ok(())
}

fn validate_value(value: &[u8]) -> Result<(), SecretsError> {
    if value.is_empty() {
        return Err(SecretsError::InvalidInput("the value is empty".into()));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(SecretsError::InvalidInput(format!(
            "the value is {} bytes; at most {MAX_VALUE_BYTES} are accepted",
            value.len()
        )));
    }
    Ok(())
}

impl<S: SecretRows + ?Sized + 'static> Secrets<S> {
    /// A secrets store over `store`, with KEKs from `keks`. Nothing is read until first use.
    pub fn new(store: Arc<S>, keks: KekSource, options: SecretsOptions) -> Self {
        Self {
            store,
            keks,
            cache: RwLock::new(KekCache::default()),
            options,
        }
    }

    /// The KEK source.
    pub fn kek_source(&self) -> &KekSource {
        &self.keks
    }

    /// The options in force.
    pub fn options(&self) -> &SecretsOptions {
        &self.options
    }

    /// Runs a store call on a blocking thread (store calls are synchronous).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&S) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, SecretsError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| SecretsError::Internal(format!("store worker failed: {e}")))?
            .map_err(SecretsError::from)
    }

    fn cached(&self, version: u32) -> Option<Arc<Kek>> {
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        cache.by_version.get(&version).cloned()
    }

    fn remember(&self, kek: Kek, current: bool) -> Arc<Kek> {
        let kek = Arc::new(kek);
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        cache.by_version.insert(kek.version(), Arc::clone(&kek));
        if current
            && cache
                .current
                .as_ref()
                .is_none_or(|c| c.version() <= kek.version())
        {
            cache.current = Some(Arc::clone(&kek));
        }
        kek
    }

    fn forget_before(&self, version: u32) {
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        cache.by_version.retain(|&v, _| v >= version);
    }

    /// The KEK of `version`, from the cache or the source.
    async fn kek(&self, version: u32) -> Result<Arc<Kek>, SecretsError> {
        if let Some(kek) = self.cached(version) {
            return Ok(kek);
        }
        let kek = self.keks.version(version).await?;
        tracing::debug!(kek_version = version, "KEK version loaded");
        Ok(self.remember(kek, false))
    }

    /// The KEK new encryptions use: cached, or fetched fresh with `refresh`.
    async fn current_kek(&self, refresh: bool) -> Result<Arc<Kek>, SecretsError> {
        if !refresh {
            let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(kek) = &cache.current {
                return Ok(Arc::clone(kek));
            }
        }
        let kek = self.keks.current().await?;
        tracing::debug!(kek_version = kek.version(), "current KEK loaded");
        Ok(self.remember(kek, true))
    }

    /// Stores `value` as the next version of `name` for `tenant`; returns that version.
    pub async fn put(&self, tenant: &str, name: &str, value: &[u8]) -> Result<u64, SecretsError> {
        let versions = self.put_many(tenant, &[(name, value)]).await?;
        versions
            .first()
            .copied()
            .ok_or_else(|| SecretsError::Internal("put stored nothing".into()))
    }

    /// Stores several values for one tenant in one transaction (all or nothing); returns the
    /// new version of each, in input order. Names must be distinct.
    pub async fn put_many(
        &self,
        tenant: &str,
        entries: &[(&str, &[u8])],
    ) -> Result<Vec<u64>, SecretsError> {
        validate_name("tenant", tenant)?;
        let mut seen = std::collections::BTreeSet::new();
        for (name, value) in entries {
            validate_name("secret name", name)?;
            validate_value(value)?;
            if !seen.insert(*name) {
                return Err(SecretsError::InvalidInput(format!(
                    "secret name {name:?} appears twice in one put"
                )));
            }
        }
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = entries.iter().map(|(n, _)| (*n).to_owned()).collect();
        let policy = SecretWritePolicy {
            keep_versions: self.options.keep_versions,
            max_kek_encryptions: self.options.max_kek_encryptions,
        };
        for _ in 0..PUT_ATTEMPTS {
            let kek = self.current_kek(false).await?;
            let latest = {
                let (tenant, names) = (tenant.to_owned(), names.clone());
                self.blocking(move |s| {
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    s.latest_secret_versions(&tenant, &names)
                })
                .await?
            };
            let created_at_ms = crate::clock::now_ms();
            let rows = entries
                .iter()
                .zip(&latest)
                .map(|((name, value), latest)| {
                    envelope::seal(&kek, tenant, name, latest + 1, value, created_at_ms)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let versions: Vec<u64> = rows.iter().map(|r| r.version).collect();
            let outcome = self
                .blocking(move |s| s.put_secret_rows(&rows, &policy))
                .await?;
            match outcome {
                SecretPut::Stored { kek_encryptions } => {
                    self.warn_if_near_limit(kek.version(), kek_encryptions, entries.len() as u64);
                    for (name, version) in names.iter().zip(&versions) {
                        tracing::debug!(tenant, name = %name, version, kek_version = kek.version(), "secret stored");
                    }
                    return Ok(versions);
                }
                SecretPut::VersionTaken { name, version } => {
                    tracing::debug!(tenant, name = %name, version, "secret version taken by another writer; retrying");
                }
                SecretPut::StaleKek { active } => {
                    tracing::debug!(
                        kek_version = kek.version(),
                        active,
                        "KEK rotated meanwhile; fetching the current one"
                    );
                    let fresh = self.current_kek(true).await?;
                    if fresh.version() < active {
                        return Err(SecretsError::KekBehindStore {
                            source_version: fresh.version(),
                            store_version: active,
                        });
                    }
                }
                SecretPut::KekExhausted {
                    kek_version,
                    encryptions,
                } => {
                    tracing::error!(
                        kek_version,
                        encryptions,
                        "KEK encryption limit reached; puts are refused until `tidemark secrets rotate-kek`"
                    );
                    return Err(SecretsError::KekExhausted {
                        kek_version,
                        encryptions,
                    });
                }
            }
        }
        Err(SecretsError::Contended {
            tenant: tenant.to_owned(),
            name: names.join(", "),
        })
    }

    /// Warns when a put crossed the warning threshold, and again every 1/64 of the remaining
    /// budget after it, so the warning repeats without flooding.
    fn warn_if_near_limit(&self, kek_version: u32, after: u64, added: u64) {
        let warn = self.options.warn_kek_encryptions;
        if after < warn {
            return;
        }
        let step = (self.options.max_kek_encryptions.saturating_sub(warn) / 64).max(1);
        let before = after.saturating_sub(added);
        if before < warn || (before - warn) / step != (after - warn) / step {
            tracing::warn!(
                kek_version,
                encryptions = after,
                limit = self.options.max_kek_encryptions,
                "KEK is nearing its encryption limit; run `tidemark secrets rotate-kek`"
            );
        }
    }

    /// The latest value of `name` for `tenant`.
    pub async fn get(&self, tenant: &str, name: &str) -> Result<SecretValue, SecretsError> {
        self.get_version(tenant, name, None).await
    }

    /// The value a destination's or connector's [`SecretRef`] names, within `tenant` (the
    /// configuration's owner) only.
    pub async fn resolve(
        &self,
        tenant: &str,
        reference: &SecretRef,
    ) -> Result<SecretValue, SecretsError> {
        self.get_version(tenant, &reference.secret, None).await
    }

    /// Version `version` of `name` (the latest with `None`).
    pub async fn get_version(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<SecretValue, SecretsError> {
        validate_name("tenant", tenant)?;
        validate_name("secret name", name)?;
        let mut retried = false;
        loop {
            let row = {
                let (t, n) = (tenant.to_owned(), name.to_owned());
                self.blocking(move |s| s.get_secret_row(&t, &n, version))
                    .await?
            };
            let Some(row) = row else {
                return Err(SecretsError::NotFound {
                    tenant: tenant.to_owned(),
                    name: name.to_owned(),
                    version,
                });
            };
            match self.kek(row.kek_version).await {
                Ok(kek) => {
                    let value = envelope::open(&kek, &row)?;
                    tracing::trace!(
                        tenant,
                        name,
                        version = row.version,
                        kek_version = row.kek_version,
                        "secret read"
                    );
                    return Ok(value);
                }
                // A rotation finished between reading the row and fetching its KEK: the row
                // has been re-wrapped since, so read it again.
                Err(SecretsError::KekUnavailable { .. }) if !retried => retried = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// The secrets of `tenant` (names, versions, timestamps; never values).
    pub async fn list(&self, tenant: &str) -> Result<Vec<SecretInfo>, SecretsError> {
        validate_name("tenant", tenant)?;
        let t = tenant.to_owned();
        self.blocking(move |s| s.list_secrets(&t)).await
    }

    /// Deletes every version of `name` of `tenant`; `false` when there was none.
    pub async fn delete(&self, tenant: &str, name: &str) -> Result<bool, SecretsError> {
        validate_name("tenant", tenant)?;
        validate_name("secret name", name)?;
        let (t, n) = (tenant.to_owned(), name.to_owned());
        let deleted = self.blocking(move |s| s.delete_secret(&t, &n)).await?;
        tracing::debug!(tenant, name, versions = deleted, "secret deleted");
        Ok(deleted > 0)
    }

    /// Puts the version before the latest again as a new version (so the rollback is itself
    /// undoable); returns the new version.
    pub async fn rollback(&self, tenant: &str, name: &str) -> Result<u64, SecretsError> {
        let info = self
            .list(tenant)
            .await?
            .into_iter()
            .find(|info| info.name == name)
            .ok_or_else(|| SecretsError::NotFound {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
                version: None,
            })?;
        let Some(&previous) = info.versions.get(1) else {
            return Err(SecretsError::InvalidInput(format!(
                "secret {name:?} has no earlier version to roll back to"
            )));
        };
        let value = self.get_version(tenant, name, Some(previous)).await?;
        let version = self.put(tenant, name, value.expose()).await?;
        tracing::info!(
            tenant,
            name,
            from = previous,
            to = version,
            "secret rolled back"
        );
        Ok(version)
    }

    /// The KEK's versions, counters and any unfinished re-wrap.
    pub async fn status(&self) -> Result<SecretsStatus, SecretsError> {
        let current = self.current_kek(true).await?.version();
        let kek_versions = self.blocking(|s| s.kek_usage()).await?;
        let rows_to_rewrap = self
            .blocking(move |s| s.count_secret_rows_off(current))
            .await?;
        let rotation_advised = kek_versions
            .iter()
            .find(|u| u.kek_version == current)
            .is_some_and(|u| u.encryptions >= self.options.warn_kek_encryptions);
        Ok(SecretsStatus {
            kek_source: self.keks.describe(),
            current_kek_version: current,
            kek_versions,
            rows_to_rewrap,
            rotation_advised,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_redact() {
        let value = SecretValue::new(b"hunter2".to_vec());
        assert_eq!(format!("{value:?}"), "SecretValue(<redacted>)");
        assert_eq!(value.to_string(), "<redacted>");
        assert_eq!(value.expose(), b"hunter2");
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("secret name", "slack/bot-token.v2").is_ok());
        let e = validate_name("secret name", "has space")
            .unwrap_err()
            .to_string();
        assert!(e.contains("' '"), "{e}");
        assert!(validate_name("tenant", "").is_err());
        assert!(validate_name("tenant", &"x".repeat(MAX_NAME_BYTES + 1)).is_err());
        assert!(validate_value(b"").is_err());
        assert!(validate_value(&vec![0; MAX_VALUE_BYTES + 1]).is_err());
    }
}
