//! [`Catalog`] on PostgreSQL: the `tenants`, `api_keys`, `rules` and `destinations` tables.
//!
//! Listings order text byte-wise (text columns are `COLLATE "C"`, as SQLite's default `BINARY` collation
//! does), so the order does not depend on the database's locale. A rule's `enabled` flag is a
//! `BIGINT` 0/1 and its `version` a `BIGINT`: a version beyond `i64::MAX` is refused, as the
//! SQLite store refuses to bind it.

use tokio_postgres::Row;

use super::{PostgresStore, pg, unsigned};
use crate::store::catalog::check_key_hash;
use crate::store::{Catalog, StoreError, StoreResult, StoredDestination, StoredRule, Tenant};

/// Columns of a [`StoredRule`], in [`rule_from_row`] order.
const RULE_COLUMNS: &str = "tenant, id, version, enabled, body, updated_at_ms";

/// Columns of a [`StoredDestination`], in [`destination_from_row`] order.
const DESTINATION_COLUMNS: &str = "tenant, id, kind, config, updated_at_ms";

/// Columns of a [`Tenant`], in [`tenant_from_row`] order.
const TENANT_COLUMNS: &str = "id, name, time_zone";

/// The upsert of one API key: a hash already registered moves to the new tenant.
const UPSERT_API_KEY: &str = "INSERT INTO api_keys (key_hash, tenant) VALUES ($1, $2)
     ON CONFLICT (key_hash) DO UPDATE SET tenant = excluded.tenant";

fn rule_from_row(row: &Row) -> StoreResult<StoredRule> {
    Ok(StoredRule {
        tenant: row.get(0),
        id: row.get(1),
        version: unsigned(row.get(2), "rules.version")?,
        enabled: row.get::<_, i64>(3) != 0,
        body: row.get(4),
        updated_at_ms: row.get(5),
    })
}

fn destination_from_row(row: &Row) -> StoredDestination {
    StoredDestination {
        tenant: row.get(0),
        id: row.get(1),
        kind: row.get(2),
        config: row.get(3),
        updated_at_ms: row.get(4),
    }
}

fn tenant_from_row(row: &Row) -> Tenant {
    Tenant {
        id: row.get(0),
        name: row.get(1),
        time_zone: row.get(2),
    }
}

impl Catalog for PostgresStore {
    fn put_rule(&self, rule: &StoredRule) -> StoreResult<()> {
        const OP: &str = "put rule";
        let version = i64::try_from(rule.version).map_err(|_| {
            StoreError::InvalidInput(format!(
                "rule version {} is too large (at most {})",
                rule.version,
                i64::MAX
            ))
        })?;
        self.write(OP, async |tx| {
            tx.execute(
                "INSERT INTO rules (tenant, id, version, enabled, body, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    version = excluded.version, enabled = excluded.enabled,
                    body = excluded.body, updated_at_ms = excluded.updated_at_ms",
                &[
                    &rule.tenant,
                    &rule.id,
                    &version,
                    &i64::from(rule.enabled),
                    &rule.body,
                    &rule.updated_at_ms,
                ],
            )
            .await
            .map_err(pg(OP))?;
            Ok(())
        })
    }

    fn get_rule(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredRule>> {
        self.get_keyed(
            "get rule",
            ("rules", RULE_COLUMNS),
            tenant,
            id,
            rule_from_row,
        )
    }

    fn list_rules(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredRule>> {
        self.list_keyed("list rules", ("rules", RULE_COLUMNS), tenant, rule_from_row)
    }

    fn delete_rule(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        self.delete_keyed("delete rule", "rules", tenant, id)
    }

    fn put_destination(&self, destination: &StoredDestination) -> StoreResult<()> {
        const OP: &str = "put destination";
        self.write(OP, async |tx| {
            tx.execute(
                "INSERT INTO destinations (tenant, id, kind, config, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    kind = excluded.kind, config = excluded.config,
                    updated_at_ms = excluded.updated_at_ms",
                &[
                    &destination.tenant,
                    &destination.id,
                    &destination.kind,
                    &destination.config,
                    &destination.updated_at_ms,
                ],
            )
            .await
            .map_err(pg(OP))?;
            Ok(())
        })
    }

    fn get_destination(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredDestination>> {
        let table = ("destinations", DESTINATION_COLUMNS);
        self.get_keyed("get destination", table, tenant, id, |row| {
            Ok(destination_from_row(row))
        })
    }

    fn list_destinations(&self, tenant: &str) -> StoreResult<Vec<StoredDestination>> {
        let table = ("destinations", DESTINATION_COLUMNS);
        self.list_keyed("list destinations", table, Some(tenant), |row| {
            Ok(destination_from_row(row))
        })
    }

    fn delete_destination(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        self.delete_keyed("delete destination", "destinations", tenant, id)
    }

    fn put_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        const OP: &str = "put tenant";
        self.write(OP, async |tx| {
            tx.execute(
                "INSERT INTO tenants (id, name, time_zone) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET
                    name = excluded.name, time_zone = excluded.time_zone",
                &[&tenant.id, &tenant.name, &tenant.time_zone],
            )
            .await
            .map_err(pg(OP))?;
            Ok(())
        })
    }

    fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        const OP: &str = "get tenant";
        self.read(OP, async |tx| {
            let row = tx
                .query_opt(
                    &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"),
                    &[&id],
                )
                .await
                .map_err(pg(OP))?;
            Ok(row.as_ref().map(tenant_from_row))
        })
    }

    fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        const OP: &str = "list tenants";
        self.read(OP, async |tx| {
            let rows = tx
                .query(
                    &format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY id"),
                    &[],
                )
                .await
                .map_err(pg(OP))?;
            Ok(rows.iter().map(tenant_from_row).collect())
        })
    }

    fn put_api_key(&self, tenant: &str, key_hash: &str) -> StoreResult<()> {
        const OP: &str = "put api key";
        check_key_hash(key_hash)?;
        self.write(OP, async |tx| {
            tx.execute(UPSERT_API_KEY, &[&key_hash, &tenant])
                .await
                .map_err(pg(OP))?;
            Ok(())
        })
    }

    /// Every hash is checked before the transaction starts, so a malformed one changes nothing.
    fn replace_api_keys(&self, keys: &[(String, String)]) -> StoreResult<()> {
        const OP: &str = "replace api keys";
        for (_, key_hash) in keys {
            check_key_hash(key_hash)?;
        }
        self.write(OP, async |tx| {
            tx.execute("DELETE FROM api_keys", &[])
                .await
                .map_err(pg(OP))?;
            let stmt = tx.prepare_cached(UPSERT_API_KEY).await.map_err(pg(OP))?;
            for (tenant, key_hash) in keys {
                tx.execute(&stmt, &[key_hash, tenant])
                    .await
                    .map_err(pg(OP))?;
            }
            Ok(())
        })
    }

    fn tenant_for_api_key(&self, key_hash: &str) -> StoreResult<Option<String>> {
        const OP: &str = "look up api key";
        self.read(OP, async |tx| {
            let row = tx
                .query_opt(
                    "SELECT tenant FROM api_keys WHERE key_hash = $1",
                    &[&key_hash],
                )
                .await
                .map_err(pg(OP))?;
            Ok(row.map(|row| row.get(0)))
        })
    }
}
