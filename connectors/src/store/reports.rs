//! Scheduled reports: their definitions and their runs.
//!
//! A report is stored like a rule: an opaque JSON definition keyed by (tenant, id). A *run* is
//! one generation of a report for one instant — the scheduled one, or "now" for a run asked for
//! by hand — identified by a run id derived from the report and the instant, so a run that is
//! due again after a restart is the same row. A run is `due` until the generator has rendered
//! it; [`Reports::finish_run`] then enqueues its notifications (one per recipient and channel,
//! each with an id derived from the run) and records the outcome in one transaction, so a crash
//! between "due" and "enqueued" regenerates the run with the same ids and adds nothing twice.

use serde::{Deserialize, Serialize};

use super::{NewNotification, NotificationView, StoreResult};

/// The notification kind of report deliveries; their `group_key` is the run id.
pub const REPORT_KIND: &str = "report";

/// A report as stored; `body` is its JSON definition, opaque to the store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredReport {
    /// Owning tenant.
    pub tenant: String,
    /// Report id, unique per tenant.
    pub id: String,
    /// Increases on every change.
    pub version: u64,
    /// Whether its schedule runs.
    pub enabled: bool,
    /// The definition as JSON text.
    pub body: String,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// Where a run is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting to be generated.
    Due,
    /// Generated with every block; its notifications are enqueued.
    Complete,
    /// Generated, but at least one block failed and shows a placeholder; enqueued.
    Partial,
    /// Could not be generated at all (the report was deleted, its definition no longer
    /// reads); nothing was enqueued.
    Failed,
}

impl RunStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 4] = [Self::Due, Self::Complete, Self::Partial, Self::Failed];

    /// The lowercase name used in storage and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Due => "due",
            Self::Complete => "complete",
            Self::Partial => "partial",
            Self::Failed => "failed",
        }
    }

    /// Parses the lowercase name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// A run that became due.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewReportRun {
    /// Owning tenant.
    pub tenant: String,
    /// The report.
    pub report_id: String,
    /// Deterministic id: the same report and instant always give the same id.
    pub run_id: String,
    /// The report's version when the run became due.
    pub version: u64,
    /// The instant the run is for (its relative ranges resolve there), ms since the epoch.
    pub scheduled_ms: i64,
    /// `"schedule"` or `"manual"`.
    pub trigger: String,
    /// When it became due, ms since the epoch.
    pub created_at_ms: i64,
}

/// A run as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReportRun {
    /// Owning tenant.
    pub tenant: String,
    /// The report.
    pub report_id: String,
    /// Run id.
    pub run_id: String,
    /// The report's version when the run became due.
    pub version: u64,
    /// The instant the run is for, ms since the epoch.
    pub scheduled_ms: i64,
    /// `"schedule"` or `"manual"`.
    pub trigger: String,
    /// Where it is.
    pub status: RunStatus,
    /// When it became due, ms since the epoch.
    pub created_at_ms: i64,
    /// When generation finished, ms since the epoch.
    pub generated_at_ms: Option<i64>,
    /// How long generation took (queries, charts, rendering), ms.
    pub generation_ms: Option<u64>,
    /// Why the run failed or which blocks failed, for people.
    pub error: Option<String>,
}

/// The outcome of generating a run, recorded by [`Reports::finish_run`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedRun {
    /// Owning tenant.
    pub tenant: String,
    /// Run id.
    pub run_id: String,
    /// `Complete`, `Partial` or `Failed`.
    pub status: RunStatus,
    /// When generation finished, ms since the epoch.
    pub generated_at_ms: i64,
    /// How long generation took, ms.
    pub generation_ms: u64,
    /// Why it failed, or which blocks failed.
    pub error: Option<String>,
}

/// Report definitions and runs. Every method that writes is one transaction, durable when it
/// returns.
pub trait Reports: Send + Sync {
    /// Inserts or replaces the report `(report.tenant, report.id)`.
    fn put_report(&self, report: &StoredReport) -> StoreResult<()>;

    /// The report `id` of `tenant`, if any.
    fn get_report(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredReport>>;

    /// Reports of `tenant`, or of every tenant with `None` (to rebuild the schedules on start),
    /// ordered by tenant then id.
    fn list_reports(&self, tenant: Option<&str>) -> StoreResult<Vec<StoredReport>>;

    /// Deletes the report `id` of `tenant`; `false` when there was none. Its runs stay, for
    /// the record; a run still due fails when the generator reaches it.
    fn delete_report(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    /// Records runs that became due and returns how many were new: a run id already stored is
    /// ignored, whatever its status, so emitting a run twice (a restart, a catch-up) generates
    /// it once.
    fn add_runs(&self, runs: &[NewReportRun]) -> StoreResult<usize>;

    /// Up to `limit` due runs, earliest scheduled first, across tenants.
    fn due_runs(&self, limit: usize) -> StoreResult<Vec<ReportRun>>;

    /// Records a due run's outcome and enqueues its notifications (as
    /// [`Outbox::enqueue_notifications`](super::Outbox::enqueue_notifications) would) in one
    /// transaction. A run that is no longer due (generated meanwhile) is left as it is and its
    /// notifications are ignored; returns whether this call finished it.
    fn finish_run(
        &self,
        finished: &FinishedRun,
        notifications: &[NewNotification],
    ) -> StoreResult<bool>;

    /// The run `run_id` of `tenant`, if any.
    fn get_run(&self, tenant: &str, run_id: &str) -> StoreResult<Option<ReportRun>>;

    /// Runs of a report, newest scheduled first, at most `limit`.
    fn list_runs(&self, tenant: &str, report_id: &str, limit: usize)
    -> StoreResult<Vec<ReportRun>>;

    /// The notifications a run enqueued (one per recipient and channel), with their deliveries
    /// and attempt logs, ordered by id.
    fn run_notifications(&self, tenant: &str, run_id: &str) -> StoreResult<Vec<NotificationView>>;

    /// For every report that has run on its schedule, the latest scheduled instant: (tenant,
    /// report id, ms). The schedules restart from there, so no slot runs twice.
    fn last_scheduled_runs(&self) -> StoreResult<Vec<(String, String, i64)>>;
}

/// Checks a finished run before anything is written: it is not `due`, and its notifications'
/// payloads are JSON.
pub(crate) fn check_finished(
    finished: &FinishedRun,
    notifications: &[NewNotification],
) -> StoreResult<()> {
    if finished.status == RunStatus::Due {
        return Err(super::StoreError::InvalidInput(format!(
            "run {} cannot finish as due",
            finished.run_id
        )));
    }
    super::outbox::check_payloads(notifications)
}
