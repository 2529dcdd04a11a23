//! [`Reports`] on SQLite: the `reports` and `report_runs` tables.

use rusqlite::{OptionalExtension, Row, params};

use super::outbox::{NOTIFICATION_COLUMNS, enqueue_in, notification_row, notification_view};
use super::{SqliteStore, clamp_i64, db};
use crate::store::reports::check_finished;
use crate::store::{
    FinishedRun, NewNotification, NewReportRun, NotificationView, REPORT_KIND, ReportRun, Reports,
    RunStatus, StoreResult, StoredReport,
};

fn report_from_row(row: &Row<'_>) -> rusqlite::Result<StoredReport> {
    Ok(StoredReport {
        tenant: row.get(0)?,
        id: row.get(1)?,
        version: row.get(2)?,
        enabled: row.get(3)?,
        body: row.get(4)?,
        updated_at_ms: row.get(5)?,
    })
}

const RUN_COLUMNS: &str = "tenant, report_id, run_id, version, scheduled_ms, trigger, status, \
                           created_at_ms, generated_at_ms, generation_ms, error";

/// A `report_runs` row; the status is checked by the table, so an unknown one is corruption.
fn run_from_row(row: &Row<'_>) -> rusqlite::Result<ReportRun> {
    let status: String = row.get(6)?;
    let status = RunStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            6,
            rusqlite::types::Type::Text,
            format!("unknown run status {status:?}").into(),
        )
    })?;
    Ok(ReportRun {
        tenant: row.get(0)?,
        report_id: row.get(1)?,
        run_id: row.get(2)?,
        version: row.get(3)?,
        scheduled_ms: row.get(4)?,
        trigger: row.get(5)?,
        status,
        created_at_ms: row.get(7)?,
        generated_at_ms: row.get(8)?,
        generation_ms: row.get(9)?,
        error: row.get(10)?,
    })
}

impl Reports for SqliteStore {
    fn put_report(&self, report: &StoredReport) -> StoreResult<()> {
        const OP: &str = "put report";
        self.write(OP, |tx| {
            tx.prepare_cached(
                "INSERT INTO reports (tenant, id, version, enabled, body, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    version = excluded.version, enabled = excluded.enabled,
                    body = excluded.body, updated_at_ms = excluded.updated_at_ms",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    report.tenant,
                    report.id,
                    report.version,
                    report.enabled,
                    report.body,
                    report.updated_at_ms
                ])
            })
            .map_err(db(OP))?;
            Ok(())
        })
    }

    fn get_report(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredReport>> {
        const OP: &str = "get report";
        let conn = self.reader();
        conn.prepare_cached(
            "SELECT tenant, id, version, enabled, body, updated_at_ms
             FROM reports WHERE tenant = ?1 AND id = ?2",
        )
        .and_then(|mut stmt| stmt.query_row([tenant, id], report_from_row).optional())
        .map_err(db(OP))
    }

    fn list_reports(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredReport>> {
        const OP: &str = "list reports";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, id, version, enabled, body, updated_at_ms
                 FROM reports WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, id",
            )
            .map_err(db(OP))?;
        let rows = stmt.query_map([tenant], report_from_row).map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn delete_report(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        const OP: &str = "delete report";
        self.write(OP, |tx| {
            let n = tx
                .prepare_cached("DELETE FROM reports WHERE tenant = ?1 AND id = ?2")
                .and_then(|mut stmt| stmt.execute([tenant, id]))
                .map_err(db(OP))?;
            Ok(n > 0)
        })
    }

    fn add_runs(&self, runs: &[NewReportRun]) -> StoreResult<usize> {
        const OP: &str = "add report runs";
        if runs.is_empty() {
            return Ok(0);
        }
        self.write(OP, |tx| {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO report_runs
                        (tenant, report_id, run_id, version, scheduled_ms, trigger, status,
                         created_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'due', ?7)
                     ON CONFLICT (tenant, run_id) DO NOTHING",
                )
                .map_err(db(OP))?;
            let mut added = 0;
            for run in runs {
                added += insert
                    .execute(params![
                        run.tenant,
                        run.report_id,
                        run.run_id,
                        run.version,
                        run.scheduled_ms,
                        run.trigger,
                        run.created_at_ms
                    ])
                    .map_err(db(OP))?;
            }
            Ok(added)
        })
    }

    fn due_runs(&self, limit: usize) -> StoreResult<Vec<ReportRun>> {
        const OP: &str = "read due report runs";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM report_runs WHERE status = 'due'
                 ORDER BY scheduled_ms, tenant, run_id LIMIT ?1"
            ))
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([clamp_i64(limit)], run_from_row)
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn finish_run(
        &self,
        finished: &FinishedRun,
        notifications: &[NewNotification],
    ) -> StoreResult<bool> {
        const OP: &str = "finish report run";
        check_finished(finished, notifications)?;
        self.write(OP, |tx| {
            let updated = tx
                .prepare_cached(
                    "UPDATE report_runs SET status = ?3, generated_at_ms = ?4,
                        generation_ms = ?5, error = ?6
                     WHERE tenant = ?1 AND run_id = ?2 AND status = 'due'",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        finished.tenant,
                        finished.run_id,
                        finished.status.as_str(),
                        finished.generated_at_ms,
                        clamp_i64(finished.generation_ms),
                        finished.error
                    ])
                })
                .map_err(db(OP))?;
            if updated == 0 {
                return Ok(false);
            }
            enqueue_in(tx, notifications, finished.generated_at_ms)?;
            Ok(true)
        })
    }

    fn get_run(&self, tenant: &str, run_id: &str) -> StoreResult<Option<ReportRun>> {
        const OP: &str = "get report run";
        let conn = self.reader();
        conn.prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM report_runs WHERE tenant = ?1 AND run_id = ?2"
        ))
        .and_then(|mut stmt| stmt.query_row([tenant, run_id], run_from_row).optional())
        .map_err(db(OP))
    }

    fn list_runs(
        &self,
        tenant: &str,
        report_id: &str,
        limit: usize,
    ) -> StoreResult<Vec<ReportRun>> {
        const OP: &str = "list report runs";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM report_runs WHERE tenant = ?1 AND report_id = ?2
                 ORDER BY scheduled_ms DESC, run_id DESC LIMIT ?3"
            ))
            .map_err(db(OP))?;
        let rows = stmt
            .query_map(params![tenant, report_id, clamp_i64(limit)], run_from_row)
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }

    fn run_notifications(&self, tenant: &str, run_id: &str) -> StoreResult<Vec<NotificationView>> {
        const OP: &str = "read report run notifications";
        self.read(OP, |tx| {
            let rows = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {NOTIFICATION_COLUMNS} FROM notifications
                         WHERE tenant = ?1 AND kind = ?2 AND group_key = ?3 ORDER BY id"
                    ))
                    .map_err(db(OP))?;
                let rows = stmt
                    .query_map([tenant, REPORT_KIND, run_id], notification_row)
                    .map_err(db(OP))?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db(OP))?
            };
            rows.into_iter()
                .map(|row| notification_view(tx, row))
                .collect()
        })
    }

    fn last_scheduled_runs(&self) -> StoreResult<Vec<(String, String, i64)>> {
        const OP: &str = "read last scheduled runs";
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tenant, report_id, MAX(scheduled_ms) FROM report_runs
                 WHERE trigger = 'schedule' GROUP BY tenant, report_id ORDER BY tenant, report_id",
            )
            .map_err(db(OP))?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .map_err(db(OP))?;
        rows.collect::<Result<_, _>>().map_err(db(OP))
    }
}
