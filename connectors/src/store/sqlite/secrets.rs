//! [`SecretRows`] on SQLite: the `secrets` table (one row per sealed version) and
//! `secret_keks` (per-KEK-version counters and re-wrap cursors).

use rusqlite::{OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::{SqliteStore, clamp_i64, db};
use crate::store::secrets::kek_version_of_put;
use crate::store::{
    KekUsage, PositionedSecretRow, RewrappedSecretRow, SecretInfo, SecretPut, SecretRow,
    SecretRows, SecretWritePolicy, StoreError, StoreResult,
};

/// Columns of a [`SecretRow`], in [`secret_from_row`] order.
const SECRET_COLUMNS: &str = "tenant, name, version, kek_version, dek_nonce, wrapped_dek, \
                              value_nonce, ciphertext, created_at_ms";

fn secret_from_row(row: &Row<'_>) -> rusqlite::Result<SecretRow> {
    Ok(SecretRow {
        tenant: row.get(0)?,
        name: row.get(1)?,
        version: row.get(2)?,
        kek_version: row.get(3)?,
        dek_nonce: row.get(4)?,
        wrapped_dek: row.get(5)?,
        value_nonce: row.get(6)?,
        ciphertext: row.get(7)?,
        created_at_ms: row.get(8)?,
    })
}

/// The active (highest registered) KEK version, if any.
fn active_kek_version(tx: &Transaction<'_>, op: &'static str) -> StoreResult<Option<u32>> {
    tx.prepare_cached("SELECT max(kek_version) FROM secret_keks")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(db(op))
}

/// Registers `kek_version` (no-op when known).
fn register_kek_version(
    tx: &Transaction<'_>,
    kek_version: u32,
    op: &'static str,
) -> StoreResult<()> {
    tx.prepare_cached("INSERT INTO secret_keks (kek_version) VALUES (?1) ON CONFLICT DO NOTHING")
        .and_then(|mut stmt| stmt.execute([kek_version]))
        .map_err(db(op))?;
    Ok(())
}

/// Checks a put against the stored versions, the active KEK version and the encryption
/// limit, and writes it; anything but `Stored` is reported before a row is written, so the
/// caller can roll back.
fn put_secret_rows_in(
    tx: &Transaction<'_>,
    rows: &[SecretRow],
    policy: &SecretWritePolicy,
) -> StoreResult<SecretPut> {
    const OP: &str = "put secrets";
    let active = active_kek_version(tx, OP)?;
    let kek_version = match kek_version_of_put(rows, active)? {
        Ok(kek_version) => kek_version,
        Err(refused) => return Ok(refused),
    };
    register_kek_version(tx, kek_version, OP)?;
    let encryptions: u64 = tx
        .prepare_cached("SELECT encryptions FROM secret_keks WHERE kek_version = ?1")
        .and_then(|mut stmt| stmt.query_row([kek_version], |row| row.get(0)))
        .map_err(db(OP))?;
    let added = rows.len() as u64;
    if encryptions.saturating_add(added) > policy.max_kek_encryptions {
        return Ok(SecretPut::KekExhausted {
            kek_version,
            encryptions,
        });
    }
    let mut latest = tx
        .prepare_cached("SELECT max(version) FROM secrets WHERE tenant = ?1 AND name = ?2")
        .map_err(db(OP))?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO secrets (tenant, name, version, kek_version, dek_nonce, wrapped_dek,
                                  value_nonce, ciphertext, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(db(OP))?;
    let mut prune = tx
        .prepare_cached("DELETE FROM secrets WHERE tenant = ?1 AND name = ?2 AND version <= ?3")
        .map_err(db(OP))?;
    for row in rows {
        let stored: Option<u64> = latest
            .query_row([&row.tenant, &row.name], |r| r.get(0))
            .map_err(db(OP))?;
        if row.version == 0 || stored.is_some_and(|stored| row.version <= stored) {
            return Ok(SecretPut::VersionTaken {
                name: row.name.clone(),
                version: row.version,
            });
        }
        insert
            .execute(params![
                row.tenant,
                row.name,
                clamp_i64(row.version),
                row.kek_version,
                row.dek_nonce,
                row.wrapped_dek,
                row.value_nonce,
                row.ciphertext,
                row.created_at_ms
            ])
            .map_err(db(OP))?;
        let keep = policy.keep_versions.max(1);
        if row.version > keep {
            prune
                .execute(params![row.tenant, row.name, clamp_i64(row.version - keep)])
                .map_err(db(OP))?;
        }
    }
    let kek_encryptions = encryptions + added;
    tx.prepare_cached("UPDATE secret_keks SET encryptions = ?1 WHERE kek_version = ?2")
        .and_then(|mut stmt| stmt.execute(params![clamp_i64(kek_encryptions), kek_version]))
        .map_err(db(OP))?;
    Ok(SecretPut::Stored { kek_encryptions })
}

impl SecretRows for SqliteStore {
    fn latest_secret_versions(&self, tenant: &str, names: &[&str]) -> StoreResult<Vec<u64>> {
        const OP: &str = "read secret versions";
        self.read(OP, |tx| {
            let mut stmt = tx
                .prepare_cached("SELECT max(version) FROM secrets WHERE tenant = ?1 AND name = ?2")
                .map_err(db(OP))?;
            names
                .iter()
                .map(|name| {
                    stmt.query_row([tenant, name], |row| row.get::<_, Option<u64>>(0))
                        .map(Option::unwrap_or_default)
                        .map_err(db(OP))
                })
                .collect()
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
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(OP))?;
        let outcome = put_secret_rows_in(&tx, rows, policy)?;
        // Dropping the transaction rolls back a refused put.
        if matches!(outcome, SecretPut::Stored { .. }) {
            tx.commit().map_err(db(OP))?;
        }
        Ok(outcome)
    }

    fn get_secret_row(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u64>,
    ) -> StoreResult<Option<SecretRow>> {
        const OP: &str = "get secret";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {SECRET_COLUMNS} FROM secrets
                 WHERE tenant = ?1 AND name = ?2 AND (?3 IS NULL OR version = ?3)
                 ORDER BY version DESC LIMIT 1"
            ))
            .map_err(db(OP))?;
        stmt.query_row(
            params![tenant, name, version.map(clamp_i64)],
            secret_from_row,
        )
        .optional()
        .map_err(db(OP))
    }

    fn list_secrets(&self, tenant: &str) -> StoreResult<Vec<SecretInfo>> {
        const OP: &str = "list secrets";
        let rows: Vec<(String, u64, u32, i64)> = self.read(OP, |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT name, version, kek_version, created_at_ms FROM secrets
                     WHERE tenant = ?1 ORDER BY name, version DESC",
                )
                .map_err(db(OP))?;
            let rows = stmt
                .query_map([tenant], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .map_err(db(OP))?;
            rows.collect::<Result<_, _>>().map_err(db(OP))
        })?;
        let mut out: Vec<SecretInfo> = Vec::new();
        for (name, version, kek_version, created_at_ms) in rows {
            match out.last_mut() {
                Some(info) if info.name == name => info.versions.push(version),
                _ => out.push(SecretInfo {
                    name,
                    version,
                    versions: vec![version],
                    kek_version,
                    created_at_ms,
                }),
            }
        }
        Ok(out)
    }

    fn delete_secret(&self, tenant: &str, name: &str) -> StoreResult<u64> {
        const OP: &str = "delete secret";
        self.write(OP, |tx| {
            let deleted = tx
                .prepare_cached("DELETE FROM secrets WHERE tenant = ?1 AND name = ?2")
                .and_then(|mut stmt| stmt.execute([tenant, name]))
                .map_err(db(OP))?;
            Ok(deleted as u64)
        })
    }

    fn kek_usage(&self) -> StoreResult<Vec<KekUsage>> {
        const OP: &str = "read KEK usage";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT kek_version, encryptions, rewrap_cursor FROM secret_keks
                 ORDER BY kek_version",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(KekUsage {
                    kek_version: row.get(0)?,
                    encryptions: row.get(1)?,
                    rewrap_cursor: row.get(2)?,
                })
            })
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn activate_kek_version(&self, kek_version: u32) -> StoreResult<()> {
        const OP: &str = "activate KEK version";
        self.write(OP, |tx| {
            if let Some(active) = active_kek_version(tx, OP)?
                && kek_version < active
            {
                return Err(StoreError::InvalidInput(format!(
                    "KEK version {kek_version} is older than the active version {active}"
                )));
            }
            register_kek_version(tx, kek_version, OP)
        })
    }

    fn count_secret_rows_off(&self, kek_version: u32) -> StoreResult<u64> {
        const OP: &str = "count secrets to re-wrap";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT count(*) FROM secrets WHERE kek_version <> ?1")
            .map_err(db(OP))?;
        stmt.query_row([kek_version], |row| row.get(0))
            .map_err(db(OP))
    }

    fn secret_rows_to_rewrap(
        &self,
        target: u32,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<PositionedSecretRow>> {
        const OP: &str = "read secrets to re-wrap";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT id, {SECRET_COLUMNS} FROM secrets
                 WHERE id > ?1 AND kek_version <> ?2 ORDER BY id LIMIT ?3"
            ))
            .map_err(db(OP))?;
        let rows = stmt
            .query_map(params![clamp_i64(after), target, clamp_i64(limit)], |row| {
                let position: u64 = row.get(0)?;
                let row = SecretRow {
                    tenant: row.get(1)?,
                    name: row.get(2)?,
                    version: row.get(3)?,
                    kek_version: row.get(4)?,
                    dek_nonce: row.get(5)?,
                    wrapped_dek: row.get(6)?,
                    value_nonce: row.get(7)?,
                    ciphertext: row.get(8)?,
                    created_at_ms: row.get(9)?,
                };
                Ok(PositionedSecretRow { position, row })
            })
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn rewrap_secret_rows(
        &self,
        target: u32,
        rows: &[RewrappedSecretRow],
        cursor: u64,
    ) -> StoreResult<usize> {
        const OP: &str = "re-wrap secrets";
        self.write(OP, |tx| {
            if active_kek_version(tx, OP)? != Some(target) {
                return Err(StoreError::InvalidInput(format!(
                    "KEK version {target} is no longer the active version; \
                     another rotation started"
                )));
            }
            let mut update = tx
                .prepare_cached(
                    "UPDATE secrets SET kek_version = ?1, dek_nonce = ?2, wrapped_dek = ?3,
                        value_nonce = ?4, ciphertext = ?5
                     WHERE id = ?6 AND kek_version = ?7 AND tenant = ?8 AND name = ?9
                       AND version = ?10",
                )
                .map_err(db(OP))?;
            let mut replaced = 0;
            for r in rows {
                if r.row.kek_version != target {
                    return Err(StoreError::InvalidInput(format!(
                        "re-wrapped row is sealed under KEK version {}, not {target}",
                        r.row.kek_version
                    )));
                }
                replaced += update
                    .execute(params![
                        target,
                        r.row.dek_nonce,
                        r.row.wrapped_dek,
                        r.row.value_nonce,
                        r.row.ciphertext,
                        clamp_i64(r.position),
                        r.from_kek_version,
                        r.row.tenant,
                        r.row.name,
                        clamp_i64(r.row.version)
                    ])
                    .map_err(db(OP))?;
            }
            tx.prepare_cached(
                "UPDATE secret_keks SET encryptions = encryptions + ?1,
                    rewrap_cursor = max(rewrap_cursor, ?2)
                 WHERE kek_version = ?3",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![clamp_i64(replaced), clamp_i64(cursor), target])
            })
            .map_err(db(OP))?;
            Ok(replaced)
        })
    }

    fn retire_kek_versions_before(&self, kek_version: u32) -> StoreResult<Vec<u32>> {
        const OP: &str = "retire KEK versions";
        self.write(OP, |tx| {
            let still_used: u64 = tx
                .prepare_cached("SELECT count(*) FROM secrets WHERE kek_version < ?1")
                .and_then(|mut stmt| stmt.query_row([kek_version], |row| row.get(0)))
                .map_err(db(OP))?;
            if still_used > 0 {
                return Err(StoreError::InvalidInput(format!(
                    "{still_used} secrets are still sealed under a KEK version below \
                     {kek_version}; finish the re-wrap first"
                )));
            }
            let retired: Vec<u32> = {
                let mut stmt = tx
                    .prepare_cached(
                        "DELETE FROM secret_keks WHERE kek_version < ?1 RETURNING kek_version",
                    )
                    .map_err(db(OP))?;
                let rows = stmt
                    .query_map([kek_version], |row| row.get(0))
                    .map_err(db(OP))?;
                rows.collect::<Result<_, _>>().map_err(db(OP))?
            };
            Ok(retired)
        })
    }
}
