//! Reading and deleting rows of the tables keyed by (tenant, id) — rules, destinations,
//! reports, audiences, campaigns, contacts, dashboards — written once for all of them.

use tokio_postgres::Row;

use super::{PostgresStore, pg};
use crate::store::StoreResult;

impl PostgresStore {
    /// Row `id` of `tenant` in `table` (its `columns`, read by `from_row`).
    pub(super) fn get_keyed<T>(
        &self,
        op: &'static str,
        (table, columns): (&str, &str),
        tenant: &str,
        id: &str,
        from_row: impl Fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        self.read(op, async |tx| {
            tx.query_opt(
                &format!("SELECT {columns} FROM {table} WHERE tenant = $1 AND id = $2"),
                &[&tenant, &id],
            )
            .await
            .map_err(pg(op))?
            .as_ref()
            .map(&from_row)
            .transpose()
        })
    }

    /// The rows of `tenant` in `table` (of every tenant with `None`), by tenant and id.
    pub(super) fn list_keyed<T>(
        &self,
        op: &'static str,
        (table, columns): (&str, &str),
        tenant: Option<&str>,
        from_row: impl Fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        self.read(op, async |tx| {
            tx.query(
                &format!(
                    "SELECT {columns} FROM {table} WHERE $1::TEXT IS NULL OR tenant = $1
                     ORDER BY tenant, id"
                ),
                &[&tenant],
            )
            .await
            .map_err(pg(op))?
            .iter()
            .map(&from_row)
            .collect()
        })
    }

    /// Deletes row `id` of `tenant` from `table`; whether there was one.
    pub(super) fn delete_keyed(
        &self,
        op: &'static str,
        table: &str,
        tenant: &str,
        id: &str,
    ) -> StoreResult<bool> {
        self.write(op, async |tx| {
            let n = tx
                .execute(
                    &format!("DELETE FROM {table} WHERE tenant = $1 AND id = $2"),
                    &[&tenant, &id],
                )
                .await
                .map_err(pg(op))?;
            Ok(n > 0)
        })
    }
}
