//! Scheduled BI reports rendered in-process, without a browser: each block of a report is the
//! answer of a dashboard query, shown as a table and/or a chart.
//!
//! - [`table`]: the answer as typed columns and JSON rows ([`Table::from_query_result`]), and as
//!   CSV.
//! - [`chart`]: the natural chart for an answer ([`auto_chart`]) or the report's own
//!   ([`ChartSpec`]), drawn as SVG and PNG with the font shipped in the binary ([`render`]).
//!
//! Running the queries and scheduling the runs are not here; this module turns their results
//! into what is sent.

pub mod chart;
pub mod table;

pub use chart::{Chart, ChartError, ChartKind, ChartSpec, auto_chart, render};
pub use table::{Column, ColumnKind, Table, TableError};
