//! [`Catalog`] on SQLite: the `tenants`, `api_keys`, `rules` and `destinations` tables.

use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, db};
use crate::store::catalog::check_key_hash;
use crate::store::{Catalog, StoreResult, StoredDestination, StoredRule, Tenant};

fn rule_from_row(row: &Row<'_>) -> rusqlite::Result<StoredRule> {
    Ok(StoredRule {
        tenant: row.get(0)?,
        id: row.get(1)?,
        version: row.get(2)?,
        enabled: row.get(3)?,
        body: row.get(4)?,
        updated_at_ms: row.get(5)?,
    })
}

fn destination_from_row(row: &Row<'_>) -> rusqlite::Result<StoredDestination> {
    Ok(StoredDestination {
        tenant: row.get(0)?,
        id: row.get(1)?,
        kind: row.get(2)?,
        config: row.get(3)?,
        updated_at_ms: row.get(4)?,
    })
}

fn tenant_from_row(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: row.get(0)?,
        name: row.get(1)?,
        time_zone: row.get(2)?,
    })
}

impl Catalog for SqliteStore {
    fn put_rule(&self, rule: &StoredRule) -> StoreResult<()> {
        const OP: &str = "put rule";
        self.write(OP, |tx| {
            tx.prepare_cached(
                "INSERT INTO rules (tenant, id, version, enabled, body, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    version = excluded.version, enabled = excluded.enabled,
                    body = excluded.body, updated_at_ms = excluded.updated_at_ms",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    rule.tenant,
                    rule.id,
                    rule.version,
                    rule.enabled,
                    rule.body,
                    rule.updated_at_ms
                ])
            })
            .map_err(db(OP))?;
            Ok(())
        })
    }

    fn get_rule(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredRule>> {
        const OP: &str = "get rule";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, id, version, enabled, body, updated_at_ms
                 FROM rules WHERE tenant = ?1 AND id = ?2",
            )
            .map_err(db(OP))?;
        stmt.query_row([tenant, id], rule_from_row)
            .optional()
            .map_err(db(OP))
    }

    fn list_rules(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredRule>> {
        const OP: &str = "list rules";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, id, version, enabled, body, updated_at_ms
                 FROM rules WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, id",
            )
            .map_err(db(OP))?;
        let rows = stmt.query_map([tenant], rule_from_row).map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn delete_rule(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        const OP: &str = "delete rule";
        self.write(OP, |tx| {
            let n = tx
                .prepare_cached("DELETE FROM rules WHERE tenant = ?1 AND id = ?2")
                .and_then(|mut stmt| stmt.execute([tenant, id]))
                .map_err(db(OP))?;
            Ok(n > 0)
        })
    }

    fn put_destination(&self, destination: &StoredDestination) -> StoreResult<()> {
        const OP: &str = "put destination";
        self.write(OP, |tx| {
            tx.prepare_cached(
                "INSERT INTO destinations (tenant, id, kind, config, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    kind = excluded.kind, config = excluded.config,
                    updated_at_ms = excluded.updated_at_ms",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    destination.tenant,
                    destination.id,
                    destination.kind,
                    destination.config,
                    destination.updated_at_ms
                ])
            })
            .map_err(db(OP))?;
            Ok(())
        })
    }

    fn get_destination(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredDestination>> {
        const OP: &str = "get destination";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, id, kind, config, updated_at_ms
                 FROM destinations WHERE tenant = ?1 AND id = ?2",
            )
            .map_err(db(OP))?;
        stmt.query_row([tenant, id], destination_from_row)
            .optional()
            .map_err(db(OP))
    }

    fn list_destinations(&self, tenant: &str) -> StoreResult<Vec<StoredDestination>> {
        const OP: &str = "list destinations";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, id, kind, config, updated_at_ms
                 FROM destinations WHERE tenant = ?1 ORDER BY id",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([tenant], destination_from_row)
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn delete_destination(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        const OP: &str = "delete destination";
        self.write(OP, |tx| {
            let n = tx
                .prepare_cached("DELETE FROM destinations WHERE tenant = ?1 AND id = ?2")
                .and_then(|mut stmt| stmt.execute([tenant, id]))
                .map_err(db(OP))?;
            Ok(n > 0)
        })
    }

    fn put_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        const OP: &str = "put tenant";
        self.write(OP, |tx| {
            tx.prepare_cached(
                "INSERT INTO tenants (id, name, time_zone) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET
                    name = excluded.name, time_zone = excluded.time_zone",
            )
            .and_then(|mut stmt| stmt.execute([&tenant.id, &tenant.name, &tenant.time_zone]))
            .map_err(db(OP))?;
            Ok(())
        })
    }

    fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        const OP: &str = "get tenant";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT id, name, time_zone FROM tenants WHERE id = ?1")
            .map_err(db(OP))?;
        stmt.query_row([id], tenant_from_row)
            .optional()
            .map_err(db(OP))
    }

    fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        const OP: &str = "list tenants";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT id, name, time_zone FROM tenants ORDER BY id")
            .map_err(db(OP))?;
        let rows = stmt.query_map([], tenant_from_row).map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn put_api_key(&self, tenant: &str, key_hash: &str) -> StoreResult<()> {
        const OP: &str = "put api key";
        check_key_hash(key_hash)?;
        self.write(OP, |tx| {
            tx.prepare_cached(
                "INSERT INTO api_keys (key_hash, tenant) VALUES (?1, ?2)
                 ON CONFLICT (key_hash) DO UPDATE SET tenant = excluded.tenant",
            )
            .and_then(|mut stmt| stmt.execute([key_hash, tenant]))
            .map_err(db(OP))?;
            Ok(())
        })
    }

    fn replace_api_keys(&self, keys: &[(String, String)]) -> StoreResult<()> {
        const OP: &str = "replace api keys";
        for (_, key_hash) in keys {
            check_key_hash(key_hash)?;
        }
        self.write(OP, |tx| {
            tx.execute("DELETE FROM api_keys", []).map_err(db(OP))?;
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO api_keys (key_hash, tenant) VALUES (?1, ?2)
                     ON CONFLICT (key_hash) DO UPDATE SET tenant = excluded.tenant",
                )
                .map_err(db(OP))?;
            for (tenant, key_hash) in keys {
                stmt.execute([key_hash, tenant]).map_err(db(OP))?;
            }
            Ok(())
        })
    }

    fn tenant_for_api_key(&self, key_hash: &str) -> StoreResult<Option<String>> {
        const OP: &str = "look up api key";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT tenant FROM api_keys WHERE key_hash = ?1")
            .map_err(db(OP))?;
        stmt.query_row([key_hash], |row| row.get(0))
            .optional()
            .map_err(db(OP))
    }
}
