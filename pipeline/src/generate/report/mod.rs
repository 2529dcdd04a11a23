//! Scheduled BI reports rendered in-process, without a browser: each block of a report is the
//! answer of a dashboard query, shown as a table and/or a chart.
//!
//! - [`table`]: the answer as typed columns and JSON rows ([`Table::from_query_result`]), and as
//!   CSV.
//! - [`chart`]: the natural chart for an answer ([`auto_chart`]) or the report's own
//!   ([`ChartSpec`]), drawn as SVG and PNG with the font shipped in the binary ([`render`]).
//! - [`document`]: the whole report for people — subject, email-safe HTML with inline chart
//!   images, a plain-text part and attachments ([`render_report`]), and a browser preview
//!   ([`preview_html`]).
//!
//! Running the queries and scheduling the runs are not here; this module turns their results
//! into what is sent.

pub mod chart;
pub mod document;
pub mod table;

pub use chart::{Chart, ChartError, ChartKind, ChartSpec, auto_chart, render};
pub use document::{
    Attachment, RenderedBlock, ReportDocument, ReportHeader, preview_html, render_report,
};
pub use table::{Column, ColumnKind, Table, TableError};
