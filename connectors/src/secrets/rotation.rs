//! KEK rotation: a new KEK version, every data key re-wrapped under it in the background,
//! then the old version retired.
//!
//! The order keeps every row readable at every moment, across crashes:
//! 1. the KEK source makes a new version current (the old one stays readable);
//! 2. the store records it as active, so writers still holding the old version are turned
//!    back (`SecretPut::StaleKek`) and re-seal under the new one;
//! 3. rows are re-wrapped in batches, each batch one transaction that also moves the
//!    version's re-wrap cursor, so a restart resumes after the last committed batch;
//! 4. only when no row is left under an older version is the old version retired, in the
//!    source first and then in the store.
//!
//! A restart at any point is safe: when the source's current version is ahead of the store's
//! active one, or rows remain under an older version, `rotate_kek` finishes that rotation
//! instead of starting another.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Kek, Secrets, SecretsError, envelope};
use crate::store::{RewrappedSecretRow, SecretRows};

/// Full passes over the table before giving up on rows that keep appearing under an old
/// KEK version (a writer that never refreshes its KEK).
const MAX_PASSES: usize = 4;

/// Progress of a re-wrap, reported after every committed batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewrapProgress {
    /// KEK version being re-wrapped to.
    pub target_kek_version: u32,
    /// Rows re-wrapped so far in this run.
    pub done: u64,
    /// Rows that needed re-wrapping when this run started (grows if writers add old rows).
    pub total: u64,
}

/// What a rotation did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RotationReport {
    /// The store's active KEK version before (none before the first secret).
    pub from_kek_version: Option<u32>,
    /// The KEK version every row is now sealed under.
    pub to_kek_version: u32,
    /// Whether this run finished an earlier, interrupted rotation instead of starting one.
    pub resumed: bool,
    /// Rows re-wrapped by this run.
    pub rewrapped: u64,
    /// KEK versions retired.
    pub retired_kek_versions: Vec<u32>,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl<S: SecretRows + ?Sized + 'static> Secrets<S> {
    /// Rotates the KEK and re-wraps every data key under the new version, calling `progress`
    /// after each batch; or, when an earlier rotation was interrupted, finishes that one.
    /// Reads and writes may go on meanwhile, from this process or others.
    pub async fn rotate_kek(
        &self,
        mut progress: impl FnMut(RewrapProgress) + Send,
    ) -> Result<RotationReport, SecretsError> {
        let started = Instant::now();
        let usage = self.blocking(|s| s.kek_usage()).await?;
        let active = usage.last().map(|u| u.kek_version);
        let current = self.current_kek(true).await?;
        if let Some(active) = active
            && current.version() < active
        {
            return Err(SecretsError::KekBehindStore {
                source_version: current.version(),
                store_version: active,
            });
        }
        let current_version = current.version();
        let left = self
            .blocking(move |s| s.count_secret_rows_off(current_version))
            .await?;
        let unfinished = left > 0 || active.is_some_and(|a| a < current_version);
        let target = if unfinished {
            tracing::info!(
                from = ?active,
                to = current_version,
                rows = left,
                "finishing an interrupted KEK rotation"
            );
            current
        } else {
            let new = self.keks.rotate().await?;
            tracing::info!(from = ?active, to = new.version(), "KEK rotation started");
            self.remember(new, true)
        };
        let to = target.version();
        self.blocking(move |s| s.activate_kek_version(to)).await?;
        let rewrapped = self.rewrap_to(&target, &mut progress).await?;
        let retired = self.keks.retire_before(to).await?;
        let retired_in_store = self
            .blocking(move |s| s.retire_kek_versions_before(to))
            .await?;
        self.forget_before(to);
        let mut retired_kek_versions = retired;
        retired_kek_versions.extend(retired_in_store);
        retired_kek_versions.sort_unstable();
        retired_kek_versions.dedup();
        let report = RotationReport {
            from_kek_version: active,
            to_kek_version: to,
            resumed: unfinished,
            rewrapped,
            retired_kek_versions,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            to = report.to_kek_version,
            rewrapped = report.rewrapped,
            retired = ?report.retired_kek_versions,
            seconds = report.seconds,
            "KEK rotation finished"
        );
        Ok(report)
    }

    /// Re-wraps every row not under `target`, resuming from the stored cursor; returns how
    /// many rows this call re-wrapped.
    async fn rewrap_to(
        &self,
        target: &Arc<Kek>,
        progress: &mut (impl FnMut(RewrapProgress) + Send),
    ) -> Result<u64, SecretsError> {
        let to = target.version();
        let batch = self.options.rewrap_batch.max(1);
        let mut cursor = self
            .blocking(|s| s.kek_usage())
            .await?
            .into_iter()
            .find(|u| u.kek_version == to)
            .map_or(0, |u| u.rewrap_cursor);
        if cursor > 0 {
            tracing::info!(
                kek_version = to,
                cursor,
                "re-wrap resumes after its last batch"
            );
        }
        let mut total = self.blocking(move |s| s.count_secret_rows_off(to)).await?;
        let mut done = 0;
        progress(RewrapProgress {
            target_kek_version: to,
            done,
            total,
        });
        for _ in 0..MAX_PASSES {
            loop {
                let after = cursor;
                let rows = self
                    .blocking(move |s| s.secret_rows_to_rewrap(to, after, batch))
                    .await?;
                let Some(last) = rows.last().map(|r| r.position) else {
                    break;
                };
                let mut old_keks = std::collections::BTreeMap::new();
                for r in &rows {
                    if old_keks.contains_key(&r.row.kek_version) {
                        continue;
                    }
                    let kek = self.kek(r.row.kek_version).await.map_err(|e| {
                        SecretsError::RewrapBlocked {
                            tenant: r.row.tenant.clone(),
                            name: r.row.name.clone(),
                            version: r.row.version,
                            reason: e.to_string(),
                        }
                    })?;
                    old_keks.insert(r.row.kek_version, kek);
                }
                let target = Arc::clone(target);
                let n = rows.len() as u64;
                // The crypto for a batch takes milliseconds: keep it off the async threads,
                // together with the write.
                self.blocking_rewrap(move |s| {
                    let mut rewrapped = Vec::with_capacity(rows.len());
                    for r in rows {
                        let old = &old_keks[&r.row.kek_version];
                        let row = envelope::rewrap(old, &target, &r.row).map_err(|e| {
                            SecretsError::RewrapBlocked {
                                tenant: r.row.tenant.clone(),
                                name: r.row.name.clone(),
                                version: r.row.version,
                                reason: e.to_string(),
                            }
                        })?;
                        rewrapped.push(RewrappedSecretRow {
                            position: r.position,
                            from_kek_version: r.row.kek_version,
                            row,
                        });
                    }
                    s.rewrap_secret_rows(to, &rewrapped, last)
                        .map_err(SecretsError::from)
                })
                .await?;
                cursor = last;
                done += n;
                total = total.max(done);
                tracing::debug!(kek_version = to, done, total, "re-wrap batch committed");
                progress(RewrapProgress {
                    target_kek_version: to,
                    done,
                    total,
                });
            }
            // Writers that had not yet seen the new version may have added rows under the
            // old one behind the cursor: sweep again from the start until none are left.
            let left = self.blocking(move |s| s.count_secret_rows_off(to)).await?;
            if left == 0 {
                return Ok(done);
            }
            tracing::info!(
                kek_version = to,
                rows = left,
                "rows under an older KEK appeared behind the re-wrap; another pass"
            );
            total = done + left;
            cursor = 0;
        }
        Err(SecretsError::Internal(format!(
            "rows under older KEK versions kept appearing after {MAX_PASSES} re-wrap passes; \
             is a writer running that never refreshes its KEK?"
        )))
    }

    /// Like `blocking`, for closures that fail with a [`SecretsError`].
    async fn blocking_rewrap<T: Send + 'static>(
        &self,
        f: impl FnOnce(&S) -> Result<T, SecretsError> + Send + 'static,
    ) -> Result<T, SecretsError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| SecretsError::Internal(format!("re-wrap worker failed: {e}")))?
    }
}
