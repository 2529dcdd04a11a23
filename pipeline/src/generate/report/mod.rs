//! Scheduled BI reports, rendered in-process without a browser. A report is a list of blocks,
//! each the answer of a dashboard query shown as a table and/or a chart.
//!
//! - [`definition`]: the report as a tenant writes it, and the checks it passes at creation.
//! - [`run`]: one run generated — blocks answered by the dashboard engine, charts drawn,
//!   templates rendered — and its notifications, one per recipient and channel.
//! - [`generator`]: takes due runs from the store and records each with its notifications.
//! - [`table`]: the answer as typed columns and JSON rows ([`Table::from_query_result`]), and as
//!   CSV.
//! - [`chart`]: the natural chart for an answer ([`auto_chart`]) or the report's own
//!   ([`ChartSpec`]), drawn as SVG and PNG with the font shipped in the binary ([`render`]).
//! - [`document`]: the whole report for people — subject, email-safe HTML with inline chart
//!   images, a plain-text part and attachments ([`render_report`]), and a browser preview
//!   ([`preview_html`]).
//!
//! The schedules themselves live in the dataflow (`operators::schedule`): schedules × the clock
//! → due runs, which the outbox thread records for the generator.

pub mod chart;
pub mod definition;
pub mod document;
pub mod generator;
pub mod run;
pub mod table;

use connectors::store::StoredReport;

pub use chart::{Chart, ChartError, ChartKind, ChartSpec, auto_chart, render, render_svg};
pub use definition::{DefinitionError, ReportSpec};
pub use document::{
    Attachment, RenderedBlock, ReportDocument, ReportHeader, preview_html, render_report,
};
pub use generator::ReportGenerator;
pub use run::{GeneratedRun, ReportContext, RunRef, generate};
pub use table::{Column, ColumnKind, Table, TableError};

/// The dataflow schedule of a stored report, starting after `last_run_ms` (the latest
/// scheduled run already recorded, on restart); `tenant_tz` is used when the report names no
/// zone.
pub fn schedule_of(
    report: &StoredReport,
    tenant_tz: &str,
    last_run_ms: Option<i64>,
) -> Result<operators::Schedule, DefinitionError> {
    let spec = ReportSpec::from_json(report.body.as_bytes())?;
    let schedule = spec.schedule(
        &report.tenant,
        &report.id,
        report.version,
        tenant_tz,
        report.updated_at_ms,
    )?;
    Ok(schedule.with_last_run(last_run_ms))
}
