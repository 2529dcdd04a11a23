//! [`Dashboards`] on PostgreSQL: the `dashboards` table, read and deleted through the keyed-table
//! helpers. Its text columns are `COLLATE "C"`, so a tenant's dashboards list in byte-wise id
//! order, as on SQLite.

use tokio_postgres::Row;

use super::{PostgresStore, pg};
use crate::store::{Dashboards, StoreResult, StoredDashboard};

/// Columns of a [`StoredDashboard`], in [`dashboard_from_row`] order.
const DASHBOARD_COLUMNS: &str = "tenant, id, title, body, updated_at_ms";

fn dashboard_from_row(row: &Row, op: &'static str) -> StoreResult<StoredDashboard> {
    Ok(StoredDashboard {
        tenant: row.try_get(0).map_err(pg(op))?,
        id: row.try_get(1).map_err(pg(op))?,
        title: row.try_get(2).map_err(pg(op))?,
        body: row.try_get(3).map_err(pg(op))?,
        updated_at_ms: row.try_get(4).map_err(pg(op))?,
    })
}

impl Dashboards for PostgresStore {
    fn put_dashboard(&self, dashboard: &StoredDashboard) -> StoreResult<()> {
        const OP: &str = "put dashboard";
        self.write(OP, async |tx| {
            tx.execute(
                "INSERT INTO dashboards (tenant, id, title, body, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    title = excluded.title, body = excluded.body,
                    updated_at_ms = excluded.updated_at_ms",
                &[
                    &dashboard.tenant,
                    &dashboard.id,
                    &dashboard.title,
                    &dashboard.body,
                    &dashboard.updated_at_ms,
                ],
            )
            .await
            .map_err(pg(OP))?;
            Ok(())
        })
    }

    fn get_dashboard(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredDashboard>> {
        const OP: &str = "get dashboard";
        self.get_keyed(OP, ("dashboards", DASHBOARD_COLUMNS), tenant, id, |row| {
            dashboard_from_row(row, OP)
        })
    }

    fn list_dashboards(&self, tenant: &str) -> StoreResult<Vec<StoredDashboard>> {
        const OP: &str = "list dashboards";
        self.list_keyed(OP, ("dashboards", DASHBOARD_COLUMNS), Some(tenant), |row| {
            dashboard_from_row(row, OP)
        })
    }

    fn delete_dashboard(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        self.delete_keyed("delete dashboard", "dashboards", tenant, id)
    }
}
