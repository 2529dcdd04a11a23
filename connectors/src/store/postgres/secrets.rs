//! [`SecretRows`] on PostgreSQL: the `secrets` table (one row per sealed version) and
//! `secret_keks` (per-KEK-version counters and re-wrap cursors).
//!
//! Every write runs in [`PostgresStore::write`]'s transaction, which holds the store's write lock
//! from its start, so a put's checks (the active KEK version, the encryption count, the latest
//! version of each name) and its writes see and change the same state, as on SQLite. A refused
//! put (anything but [`SecretPut::Stored`]) is rolled back to a savepoint taken at its start and
//! leaves nothing behind, not even the registration of a new KEK version.
//!
//! A row's position (the re-wrap cursor's unit) is `secrets.id`, an identity column: writes are
//! serialized, so ids increase in commit order, and unlike SQLite's `rowid` an id is never
//! reused after the highest row is deleted.
//!
//! Listings order names byte-wise (text columns are `COLLATE "C"`, as SQLite's default `BINARY` collation
//! does). Nothing here logs or reports a byte of a nonce, wrapped key or ciphertext.

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::{PostgresStore, clamp_i64, pg, unsigned};
use crate::store::secrets::kek_version_of_put;
use crate::store::{
    KekUsage, PositionedSecretRow, RewrappedSecretRow, SecretInfo, SecretPut, SecretRow,
    SecretRows, SecretWritePolicy, StoreError, StoreResult,
};

/// Columns of a [`SecretRow`], in [`secret_from_row`] order.
const SECRET_COLUMNS: &str = "tenant, name, version, kek_version, dek_nonce, wrapped_dek, \
                              value_nonce, ciphertext, created_at_ms";

/// The savepoint a put rolls back to when it is refused.
const PUT_SAVEPOINT: &str = "put_secret_rows";

/// A stored KEK version (`BIGINT`) as the traits' `u32`.
fn kek_u32(value: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{what} is not a KEK version: {value}")))
}

/// A [`SecretRow`] selected as [`SECRET_COLUMNS`], starting at column `first`.
fn secret_from_row(row: &Row, first: usize, op: &'static str) -> StoreResult<SecretRow> {
    Ok(SecretRow {
        tenant: row.try_get(first).map_err(pg(op))?,
        name: row.try_get(first + 1).map_err(pg(op))?,
        version: unsigned(row.try_get(first + 2).map_err(pg(op))?, "secrets.version")?,
        kek_version: kek_u32(
            row.try_get(first + 3).map_err(pg(op))?,
            "secrets.kek_version",
        )?,
        dek_nonce: row.try_get(first + 4).map_err(pg(op))?,
        wrapped_dek: row.try_get(first + 5).map_err(pg(op))?,
        value_nonce: row.try_get(first + 6).map_err(pg(op))?,
        ciphertext: row.try_get(first + 7).map_err(pg(op))?,
        created_at_ms: row.try_get(first + 8).map_err(pg(op))?,
    })
}

/// The active (highest registered) KEK version, if any.
async fn active_kek_version(tx: &Transaction<'_>, op: &'static str) -> StoreResult<Option<u32>> {
    let row = tx
        .query_one("SELECT max(kek_version) FROM secret_keks", &[])
        .await
        .map_err(pg(op))?;
    let active: Option<i64> = row.try_get(0).map_err(pg(op))?;
    active
        .map(|v| kek_u32(v, "secret_keks.kek_version"))
        .transpose()
}

/// Registers `kek_version` (no-op when known).
async fn register_kek_version(
    tx: &Transaction<'_>,
    kek_version: u32,
    op: &'static str,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO secret_keks (kek_version) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&i64::from(kek_version)],
    )
    .await
    .map_err(pg(op))?;
    Ok(())
}

/// The latest stored version of `(tenant, name)`, if any.
async fn latest_version(
    tx: &Transaction<'_>,
    tenant: &str,
    name: &str,
    op: &'static str,
) -> StoreResult<Option<u64>> {
    let stmt = tx
        .prepare_cached("SELECT max(version) FROM secrets WHERE tenant = $1 AND name = $2")
        .await
        .map_err(pg(op))?;
    let row = tx
        .query_one(&stmt, &[&tenant, &name])
        .await
        .map_err(pg(op))?;
    let latest: Option<i64> = row.try_get(0).map_err(pg(op))?;
    latest.map(|v| unsigned(v, "secrets.version")).transpose()
}

/// Checks a put against the stored versions, the active KEK version and the encryption
/// limit, and writes it. Anything but `Stored` may have written part of the put (the KEK
/// version's registration, earlier rows): the caller rolls back.
async fn put_secret_rows_in(
    tx: &Transaction<'_>,
    rows: &[SecretRow],
    policy: &SecretWritePolicy,
) -> StoreResult<SecretPut> {
    const OP: &str = "put secrets";
    let active = active_kek_version(tx, OP).await?;
    let kek_version = match kek_version_of_put(rows, active)? {
        Ok(kek_version) => kek_version,
        Err(refused) => return Ok(refused),
    };
    register_kek_version(tx, kek_version, OP).await?;
    let row = tx
        .query_one(
            "SELECT encryptions FROM secret_keks WHERE kek_version = $1",
            &[&i64::from(kek_version)],
        )
        .await
        .map_err(pg(OP))?;
    let encryptions = unsigned(row.try_get(0).map_err(pg(OP))?, "secret_keks.encryptions")?;
    let added = u64::try_from(rows.len()).unwrap_or(u64::MAX);
    if encryptions.saturating_add(added) > policy.max_kek_encryptions {
        return Ok(SecretPut::KekExhausted {
            kek_version,
            encryptions,
        });
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO secrets (tenant, name, version, kek_version, dek_nonce, wrapped_dek,
                                  value_nonce, ciphertext, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await
        .map_err(pg(OP))?;
    let prune = tx
        .prepare_cached("DELETE FROM secrets WHERE tenant = $1 AND name = $2 AND version <= $3")
        .await
        .map_err(pg(OP))?;
    let keep = policy.keep_versions.max(1);
    for row in rows {
        // Read per row, after the earlier rows' inserts: a name twice in one put must rise.
        let stored = latest_version(tx, &row.tenant, &row.name, OP).await?;
        if row.version == 0 || stored.is_some_and(|stored| row.version <= stored) {
            return Ok(SecretPut::VersionTaken {
                name: row.name.clone(),
                version: row.version,
            });
        }
        tx.execute(
            &insert,
            &[
                &row.tenant,
                &row.name,
                &clamp_i64(row.version),
                &i64::from(row.kek_version),
                &row.dek_nonce,
                &row.wrapped_dek,
                &row.value_nonce,
                &row.ciphertext,
                &row.created_at_ms,
            ],
        )
        .await
        .map_err(pg(OP))?;
        if row.version > keep {
            tx.execute(
                &prune,
                &[&row.tenant, &row.name, &clamp_i64(row.version - keep)],
            )
            .await
            .map_err(pg(OP))?;
        }
    }
    let kek_encryptions = encryptions.saturating_add(added);
    tx.execute(
        "UPDATE secret_keks SET encryptions = $1 WHERE kek_version = $2",
        &[&clamp_i64(kek_encryptions), &i64::from(kek_version)],
    )
    .await
    .map_err(pg(OP))?;
    Ok(SecretPut::Stored { kek_encryptions })
}

impl SecretRows for PostgresStore {
    fn latest_secret_versions(&self, tenant: &str, names: &[&str]) -> StoreResult<Vec<u64>> {
        const OP: &str = "read secret versions";
        self.read(OP, async |tx| {
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                out.push(
                    latest_version(tx, tenant, name, OP)
                        .await?
                        .unwrap_or_default(),
                );
            }
            Ok(out)
        })
    }

    fn put_secret_rows(
        &self,
        rows: &[SecretRow],
        policy: &SecretWritePolicy,
    ) -> StoreResult<SecretPut> {
        const OP: &str = "put secrets";
        if rows.is_empty() {
            return Ok(SecretPut::Stored { kek_encryptions: 0 });
        }
        self.write(OP, async |tx| {
            tx.batch_execute(&format!("SAVEPOINT {PUT_SAVEPOINT}"))
                .await
                .map_err(pg(OP))?;
            let outcome = put_secret_rows_in(tx, rows, policy).await?;
            // A refused put writes nothing: undo whatever it wrote before it was refused. (An
            // error returned above rolls the whole transaction back.)
            if !matches!(outcome, SecretPut::Stored { .. }) {
                tx.batch_execute(&format!("ROLLBACK TO SAVEPOINT {PUT_SAVEPOINT}"))
                    .await
                    .map_err(pg(OP))?;
            }
            Ok(outcome)
        })
    }

    fn get_secret_row(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u64>,
    ) -> StoreResult<Option<SecretRow>> {
        const OP: &str = "get secret";
        self.read(OP, async |tx| {
            tx.query_opt(
                &format!(
                    "SELECT {SECRET_COLUMNS} FROM secrets
                     WHERE tenant = $1 AND name = $2 AND ($3::BIGINT IS NULL OR version = $3)
                     ORDER BY version DESC LIMIT 1"
                ),
                &[&tenant, &name, &version.map(clamp_i64)],
            )
            .await
            .map_err(pg(OP))?
            .map(|row| secret_from_row(&row, 0, OP))
            .transpose()
        })
    }

    fn list_secrets(&self, tenant: &str) -> StoreResult<Vec<SecretInfo>> {
        const OP: &str = "list secrets";
        let rows = self.read(OP, async |tx| {
            tx.query(
                "SELECT name, version, kek_version, created_at_ms FROM secrets
                 WHERE tenant = $1 ORDER BY name, version DESC",
                &[&tenant],
            )
            .await
            .map_err(pg(OP))
        })?;
        // Rows come grouped by name, latest version first: the first row of a name is its
        // latest version.
        let mut out: Vec<SecretInfo> = Vec::new();
        for row in rows {
            let name: String = row.try_get(0).map_err(pg(OP))?;
            let version = unsigned(row.try_get(1).map_err(pg(OP))?, "secrets.version")?;
            match out.last_mut() {
                Some(info) if info.name == name => info.versions.push(version),
                _ => out.push(SecretInfo {
                    name,
                    version,
                    versions: vec![version],
                    kek_version: kek_u32(row.try_get(2).map_err(pg(OP))?, "secrets.kek_version")?,
                    created_at_ms: row.try_get(3).map_err(pg(OP))?,
                }),
            }
        }
        Ok(out)
    }

    fn delete_secret(&self, tenant: &str, name: &str) -> StoreResult<u64> {
        const OP: &str = "delete secret";
        self.write(OP, async |tx| {
            tx.execute(
                "DELETE FROM secrets WHERE tenant = $1 AND name = $2",
                &[&tenant, &name],
            )
            .await
            .map_err(pg(OP))
        })
    }

    fn kek_usage(&self) -> StoreResult<Vec<KekUsage>> {
        const OP: &str = "read KEK usage";
        self.read(OP, async |tx| {
            tx.query(
                "SELECT kek_version, encryptions, rewrap_cursor FROM secret_keks
                 ORDER BY kek_version",
                &[],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| {
                Ok(KekUsage {
                    kek_version: kek_u32(
                        row.try_get(0).map_err(pg(OP))?,
                        "secret_keks.kek_version",
                    )?,
                    encryptions: unsigned(
                        row.try_get(1).map_err(pg(OP))?,
                        "secret_keks.encryptions",
                    )?,
                    rewrap_cursor: unsigned(
                        row.try_get(2).map_err(pg(OP))?,
                        "secret_keks.rewrap_cursor",
                    )?,
                })
            })
            .collect()
        })
    }

    fn activate_kek_version(&self, kek_version: u32) -> StoreResult<()> {
        const OP: &str = "activate KEK version";
        self.write(OP, async |tx| {
            if let Some(active) = active_kek_version(tx, OP).await?
                && kek_version < active
            {
                return Err(StoreError::InvalidInput(format!(
                    "KEK version {kek_version} is older than the active version {active}"
                )));
            }
            register_kek_version(tx, kek_version, OP).await
        })
    }

    fn count_secret_rows_off(&self, kek_version: u32) -> StoreResult<u64> {
        const OP: &str = "count secrets to re-wrap";
        self.read(OP, async |tx| {
            let row = tx
                .query_one(
                    "SELECT count(*) FROM secrets WHERE kek_version <> $1",
                    &[&i64::from(kek_version)],
                )
                .await
                .map_err(pg(OP))?;
            unsigned(row.try_get(0).map_err(pg(OP))?, "the secret count")
        })
    }

    fn secret_rows_to_rewrap(
        &self,
        target: u32,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<PositionedSecretRow>> {
        const OP: &str = "read secrets to re-wrap";
        self.read(OP, async |tx| {
            tx.query(
                &format!(
                    "SELECT id, {SECRET_COLUMNS} FROM secrets
                     WHERE id > $1 AND kek_version <> $2 ORDER BY id LIMIT $3"
                ),
                &[&clamp_i64(after), &i64::from(target), &clamp_i64(limit)],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| {
                Ok(PositionedSecretRow {
                    position: unsigned(row.try_get(0).map_err(pg(OP))?, "secrets.id")?,
                    row: secret_from_row(row, 1, OP)?,
                })
            })
            .collect()
        })
    }

    fn rewrap_secret_rows(
        &self,
        target: u32,
        rows: &[RewrappedSecretRow],
        cursor: u64,
    ) -> StoreResult<usize> {
        const OP: &str = "re-wrap secrets";
        self.write(OP, async |tx| {
            if active_kek_version(tx, OP).await? != Some(target) {
                return Err(StoreError::InvalidInput(format!(
                    "KEK version {target} is no longer the active version; \
                     another rotation started"
                )));
            }
            let update = tx
                .prepare_cached(
                    "UPDATE secrets SET kek_version = $1, dek_nonce = $2, wrapped_dek = $3,
                        value_nonce = $4, ciphertext = $5
                     WHERE id = $6 AND kek_version = $7 AND tenant = $8 AND name = $9
                       AND version = $10",
                )
                .await
                .map_err(pg(OP))?;
            let target_i64 = i64::from(target);
            let mut replaced: u64 = 0;
            for r in rows {
                if r.row.kek_version != target {
                    // Returning an error rolls back the rows replaced so far.
                    return Err(StoreError::InvalidInput(format!(
                        "re-wrapped row is sealed under KEK version {}, not {target}",
                        r.row.kek_version
                    )));
                }
                // Only a row still sealed under the version it was read under is replaced: a
                // concurrent delete, prune or re-put wins.
                replaced += tx
                    .execute(
                        &update,
                        &[
                            &target_i64,
                            &r.row.dek_nonce,
                            &r.row.wrapped_dek,
                            &r.row.value_nonce,
                            &r.row.ciphertext,
                            &clamp_i64(r.position),
                            &i64::from(r.from_kek_version),
                            &r.row.tenant,
                            &r.row.name,
                            &clamp_i64(r.row.version),
                        ],
                    )
                    .await
                    .map_err(pg(OP))?;
            }
            // The cursor only moves forward, so a late batch cannot move it back.
            tx.execute(
                "UPDATE secret_keks SET encryptions = encryptions + $1,
                    rewrap_cursor = GREATEST(rewrap_cursor, $2)
                 WHERE kek_version = $3",
                &[&clamp_i64(replaced), &clamp_i64(cursor), &target_i64],
            )
            .await
            .map_err(pg(OP))?;
            Ok(usize::try_from(replaced).unwrap_or(usize::MAX))
        })
    }

    fn retire_kek_versions_before(&self, kek_version: u32) -> StoreResult<Vec<u32>> {
        const OP: &str = "retire KEK versions";
        self.write(OP, async |tx| {
            let version = i64::from(kek_version);
            let row = tx
                .query_one(
                    "SELECT count(*) FROM secrets WHERE kek_version < $1",
                    &[&version],
                )
                .await
                .map_err(pg(OP))?;
            let still_used = unsigned(row.try_get(0).map_err(pg(OP))?, "the secret count")?;
            if still_used > 0 {
                return Err(StoreError::InvalidInput(format!(
                    "{still_used} secrets are still sealed under a KEK version below \
                     {kek_version}; finish the re-wrap first"
                )));
            }
            let mut retired = tx
                .query(
                    "DELETE FROM secret_keks WHERE kek_version < $1 RETURNING kek_version",
                    &[&version],
                )
                .await
                .map_err(pg(OP))?
                .iter()
                .map(|row| kek_u32(row.try_get(0).map_err(pg(OP))?, "secret_keks.kek_version"))
                .collect::<StoreResult<Vec<u32>>>()?;
            // RETURNING has no order; oldest first, as SQLite returns them.
            retired.sort_unstable();
            Ok(retired)
        })
    }
}
