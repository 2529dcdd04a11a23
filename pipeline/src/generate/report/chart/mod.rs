//! Charts of a report block, drawn in-process with `plotters`: the same picture as SVG (for the
//! web) and PNG (for email), from a [`ChartSpec`] over a [`Table`](super::table::Table).
//!
//! [`auto_chart`] picks the natural chart for a dashboard answer from its column names and kinds
//! (the time bucket `<dimension>.<grain>`, text dimensions, measures, the columns the `abc` and
//! `quadrant` analyses add); a report may set its own [`ChartSpec`], checked against the table by
//! [`ChartSpec::validate`]. [`render`] draws it: 800×400 px, a title, axis labels, thousands
//! separators, dates written by the bucket's grain, a legend when there are several series, and at
//! most [`MAX_CATEGORIES`] categories (the rest summed as "other", which the chart says).
//!
//! Text is laid out with DejaVu Sans, shipped inside the binary and registered with plotters once,
//! so a machine without fonts draws the same picture; nothing looks up system fonts. DejaVu Sans
//! has no Hangul: a PNG chart with a word it cannot draw is drawn whole with NanumSquare (also
//! shipped; Hangul, Latin letters and digits) instead. The SVG always names the generic
//! `sans-serif`, and the viewer's fonts draw its words.
//!
//! The way there, a file a step: `spec.rs` (what to draw, checked) or `auto.rs` (the natural
//! chart); `cells.rs` (the table's values and labels) → `plot.rs` (the data ready to draw) →
//! `draw.rs` (the picture, with `fonts.rs` for its text) → `output.rs` (SVG and PNG).

mod auto;
mod cells;
mod draw;
mod fonts;
mod output;
mod plot;
mod spec;
#[cfg(test)]
mod tests;

pub use auto::auto_chart;
pub use output::{Chart, render, render_svg};
pub use spec::{ChartError, ChartKind, ChartSpec};

/// Width of a chart, pixels.
pub const WIDTH: u32 = 800;
/// Height of a chart, pixels.
pub const HEIGHT: u32 = 400;
/// Most categories a bar or Pareto chart draws; beyond, the smallest are summed as "other".
pub const MAX_CATEGORIES: usize = 50;
/// Most series a line or stacked-bar chart draws; beyond, the smallest are summed as "other".
pub const MAX_SERIES: usize = 10;
