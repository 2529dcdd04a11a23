//! [`Dashboards`] on SQLite: the `dashboards` table.

use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, db};
use crate::store::{Dashboards, StoreResult, StoredDashboard};

/// Columns of a [`StoredDashboard`], in [`dashboard_from_row`] order.
const DASHBOARD_COLUMNS: &str = "tenant, id, title, body, updated_at_ms";

fn dashboard_from_row(row: &Row<'_>) -> rusqlite::Result<StoredDashboard> {
    Ok(StoredDashboard {
        tenant: row.get(0)?,
        id: row.get(1)?,
        title: row.get(2)?,
        body: row.get(3)?,
        updated_at_ms: row.get(4)?,
    })
}

impl Dashboards for SqliteStore {
    fn put_dashboard(&self, dashboard: &StoredDashboard) -> StoreResult<()> {
        const OP: &str = "put dashboard";
        self.write(OP, |tx| {
            tx.prepare_cached(
                "INSERT INTO dashboards (tenant, id, title, body, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    title = excluded.title, body = excluded.body,
                    updated_at_ms = excluded.updated_at_ms",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    dashboard.tenant,
                    dashboard.id,
                    dashboard.title,
                    dashboard.body,
                    dashboard.updated_at_ms
                ])
            })
            .map_err(db(OP))?;
            Ok(())
        })
    }

    fn get_dashboard(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredDashboard>> {
        const OP: &str = "get dashboard";
        let conn = self.reader();
        conn.prepare_cached(&format!(
            "SELECT {DASHBOARD_COLUMNS} FROM dashboards WHERE tenant = ?1 AND id = ?2"
        ))
        .and_then(|mut stmt| stmt.query_row([tenant, id], dashboard_from_row).optional())
        .map_err(db(OP))
    }

    fn list_dashboards(&self, tenant: &str) -> StoreResult<Vec<StoredDashboard>> {
        const OP: &str = "list dashboards";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {DASHBOARD_COLUMNS} FROM dashboards WHERE tenant = ?1 ORDER BY id"
            ))
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([tenant], dashboard_from_row)
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn delete_dashboard(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        const OP: &str = "delete dashboard";
        self.write(OP, |tx| {
            let n = tx
                .prepare_cached("DELETE FROM dashboards WHERE tenant = ?1 AND id = ?2")
                .and_then(|mut stmt| stmt.execute([tenant, id]))
                .map_err(db(OP))?;
            Ok(n > 0)
        })
    }
}
