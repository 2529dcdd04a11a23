//! [`Reports`] on PostgreSQL: the `reports` and `report_runs` tables.
//!
//! As on SQLite: a run id is inserted once (`ON CONFLICT DO NOTHING`, whatever the stored run's
//! status), and a run is finished once: the `UPDATE … WHERE status = 'due'` and the enqueue of
//! its notifications share [`PostgresStore::write`]'s transaction, which holds the store's write
//! lock, so of two generators finishing the same run exactly one sees it due and enqueues.
//!
//! Listings order text byte-wise (text columns are `COLLATE "C"`, as SQLite's default `BINARY` collation
//! does), so the order does not depend on the database's locale. A report's `enabled` flag is a
//! `BIGINT` 0/1; a report's or run's `version` beyond `i64::MAX` is refused before anything is
//! written, as the SQLite store refuses to bind it.

use tokio_postgres::Row;

use super::outbox::{NOTIFICATION_COLUMNS, enqueue_in, notification_row, notification_views};
use super::{PostgresStore, clamp_i64, pg, unsigned};
use crate::store::reports::check_finished;
use crate::store::{
    FinishedRun, NewNotification, NewReportRun, NotificationView, REPORT_KIND, ReportRun, Reports,
    RunStatus, StoreError, StoreResult, StoredReport,
};

/// Columns of a [`StoredReport`], in [`report_from_row`] order.
const REPORT_COLUMNS: &str = "tenant, id, version, enabled, body, updated_at_ms";

/// Columns of a [`ReportRun`], in [`run_from_row`] order.
const RUN_COLUMNS: &str = "tenant, report_id, run_id, version, scheduled_ms, trigger, status, \
                           created_at_ms, generated_at_ms, generation_ms, error";

fn report_from_row(row: &Row, op: &'static str) -> StoreResult<StoredReport> {
    Ok(StoredReport {
        tenant: row.try_get(0).map_err(pg(op))?,
        id: row.try_get(1).map_err(pg(op))?,
        version: unsigned(row.try_get(2).map_err(pg(op))?, "reports.version")?,
        enabled: row.try_get::<_, i64>(3).map_err(pg(op))? != 0,
        body: row.try_get(4).map_err(pg(op))?,
        updated_at_ms: row.try_get(5).map_err(pg(op))?,
    })
}

/// A `report_runs` row; the status is checked by the table, so an unknown one is corruption.
fn run_from_row(row: &Row, op: &'static str) -> StoreResult<ReportRun> {
    let status: String = row.try_get(6).map_err(pg(op))?;
    let status = RunStatus::parse(&status).ok_or_else(|| {
        StoreError::Corrupt(format!("{op}: unknown report run status {status:?}"))
    })?;
    let generation_ms: Option<i64> = row.try_get(9).map_err(pg(op))?;
    Ok(ReportRun {
        tenant: row.try_get(0).map_err(pg(op))?,
        report_id: row.try_get(1).map_err(pg(op))?,
        run_id: row.try_get(2).map_err(pg(op))?,
        version: unsigned(row.try_get(3).map_err(pg(op))?, "report_runs.version")?,
        scheduled_ms: row.try_get(4).map_err(pg(op))?,
        trigger: row.try_get(5).map_err(pg(op))?,
        status,
        created_at_ms: row.try_get(7).map_err(pg(op))?,
        generated_at_ms: row.try_get(8).map_err(pg(op))?,
        generation_ms: generation_ms
            .map(|ms| unsigned(ms, "report_runs.generation_ms"))
            .transpose()?,
        error: row.try_get(10).map_err(pg(op))?,
    })
}

/// A report's or run's version as a `BIGINT`; one beyond `i64::MAX` is refused (the SQLite
/// store fails to bind it).
fn version_i64(version: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(version).map_err(|_| {
        StoreError::InvalidInput(format!(
            "{what} version {version} is too large (at most {})",
            i64::MAX
        ))
    })
}

impl Reports for PostgresStore {
    fn put_report(&self, report: &StoredReport) -> StoreResult<()> {
        const OP: &str = "put report";
        let version = version_i64(report.version, "report")?;
        self.write(OP, async |tx| {
            tx.execute(
                "INSERT INTO reports (tenant, id, version, enabled, body, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    version = excluded.version, enabled = excluded.enabled,
                    body = excluded.body, updated_at_ms = excluded.updated_at_ms",
                &[
                    &report.tenant,
                    &report.id,
                    &version,
                    &i64::from(report.enabled),
                    &report.body,
                    &report.updated_at_ms,
                ],
            )
            .await
            .map_err(pg(OP))?;
            Ok(())
        })
    }

    fn get_report(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredReport>> {
        const OP: &str = "get report";
        self.get_keyed(OP, ("reports", REPORT_COLUMNS), tenant, id, |row| {
            report_from_row(row, OP)
        })
    }

    fn list_reports(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredReport>> {
        const OP: &str = "list reports";
        self.list_keyed(OP, ("reports", REPORT_COLUMNS), tenant, |row| {
            report_from_row(row, OP)
        })
    }

    fn delete_report(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        self.delete_keyed("delete report", "reports", tenant, id)
    }

    fn add_runs(&self, runs: &[NewReportRun]) -> StoreResult<usize> {
        const OP: &str = "add report runs";
        if runs.is_empty() {
            return Ok(0);
        }
        // Checked before the transaction: a run that cannot be stored adds none of the batch.
        let versions = runs
            .iter()
            .map(|run| version_i64(run.version, "report run"))
            .collect::<StoreResult<Vec<i64>>>()?;
        self.write(OP, async |tx| {
            let insert = tx
                .prepare_cached(
                    "INSERT INTO report_runs
                        (tenant, report_id, run_id, version, scheduled_ms, trigger, status,
                         created_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, 'due', $7)
                     ON CONFLICT (tenant, run_id) DO NOTHING",
                )
                .await
                .map_err(pg(OP))?;
            let mut added: u64 = 0;
            for (run, version) in runs.iter().zip(&versions) {
                added += tx
                    .execute(
                        &insert,
                        &[
                            &run.tenant,
                            &run.report_id,
                            &run.run_id,
                            version,
                            &run.scheduled_ms,
                            &run.trigger,
                            &run.created_at_ms,
                        ],
                    )
                    .await
                    .map_err(pg(OP))?;
            }
            Ok(usize::try_from(added).unwrap_or(usize::MAX))
        })
    }

    fn due_runs(&self, limit: usize) -> StoreResult<Vec<ReportRun>> {
        const OP: &str = "read due report runs";
        self.read(OP, async |tx| {
            tx.query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM report_runs WHERE status = 'due'
                     ORDER BY scheduled_ms, tenant, run_id
                     LIMIT $1"
                ),
                &[&clamp_i64(limit)],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| run_from_row(row, OP))
            .collect()
        })
    }

    fn finish_run(
        &self,
        finished: &FinishedRun,
        notifications: &[NewNotification],
    ) -> StoreResult<bool> {
        const OP: &str = "finish report run";
        check_finished(finished, notifications)?;
        self.write(OP, async |tx| {
            let updated = tx
                .execute(
                    "UPDATE report_runs SET status = $3, generated_at_ms = $4,
                        generation_ms = $5, error = $6
                     WHERE tenant = $1 AND run_id = $2 AND status = 'due'",
                    &[
                        &finished.tenant,
                        &finished.run_id,
                        &finished.status.as_str(),
                        &finished.generated_at_ms,
                        &clamp_i64(finished.generation_ms),
                        &finished.error,
                    ],
                )
                .await
                .map_err(pg(OP))?;
            if updated == 0 {
                // Finished meanwhile (or never added): its notifications are not enqueued.
                return Ok(false);
            }
            enqueue_in(tx, notifications, finished.generated_at_ms).await?;
            Ok(true)
        })
    }

    fn get_run(&self, tenant: &str, run_id: &str) -> StoreResult<Option<ReportRun>> {
        const OP: &str = "get report run";
        self.read(OP, async |tx| {
            tx.query_opt(
                &format!("SELECT {RUN_COLUMNS} FROM report_runs WHERE tenant = $1 AND run_id = $2"),
                &[&tenant, &run_id],
            )
            .await
            .map_err(pg(OP))?
            .map(|row| run_from_row(&row, OP))
            .transpose()
        })
    }

    fn list_runs(
        &self,
        tenant: &str,
        report_id: &str,
        limit: usize,
    ) -> StoreResult<Vec<ReportRun>> {
        const OP: &str = "list report runs";
        self.read(OP, async |tx| {
            tx.query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM report_runs WHERE tenant = $1 AND report_id = $2
                     ORDER BY scheduled_ms DESC, run_id DESC LIMIT $3"
                ),
                &[&tenant, &report_id, &clamp_i64(limit)],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| run_from_row(row, OP))
            .collect()
        })
    }

    fn run_notifications(&self, tenant: &str, run_id: &str) -> StoreResult<Vec<NotificationView>> {
        const OP: &str = "read report run notifications";
        // The kind is written into the statement (a constant, not input) so that the planner
        // can use the partial index `notifications_by_run`.
        self.read(OP, async |tx| {
            let rows = tx
                .query(
                    &format!(
                        "SELECT {NOTIFICATION_COLUMNS} FROM notifications
                         WHERE tenant = $1 AND kind = '{REPORT_KIND}' AND group_key = $2
                         ORDER BY id"
                    ),
                    &[&tenant, &run_id],
                )
                .await
                .map_err(pg(OP))?
                .iter()
                .map(notification_row)
                .collect::<StoreResult<Vec<_>>>()?;
            notification_views(tx, rows).await
        })
    }

    fn last_scheduled_runs(&self) -> StoreResult<Vec<(String, String, i64)>> {
        const OP: &str = "read last scheduled runs";
        self.read(OP, async |tx| {
            tx.query(
                "SELECT tenant, report_id, max(scheduled_ms) FROM report_runs
                 WHERE trigger = 'schedule' GROUP BY tenant, report_id
                 ORDER BY tenant, report_id",
                &[],
            )
            .await
            .map_err(pg(OP))?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get(0).map_err(pg(OP))?,
                    row.try_get(1).map_err(pg(OP))?,
                    row.try_get(2).map_err(pg(OP))?,
                ))
            })
            .collect()
        })
    }
}
