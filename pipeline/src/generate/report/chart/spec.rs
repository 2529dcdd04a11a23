//! What a chart draws: its kind, the [`ChartSpec`] naming a table's columns, the spec checked
//! against the table, and why a chart could not be drawn.

use serde::{Deserialize, Serialize};

use crate::generate::report::table::{ColumnKind, Table};

/// The kinds of chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChartKind {
    /// Measures over an ordered x (a time bucket): one line per measure, or per value of `series`.
    Line,
    /// One bar per category of `x`, side by side for several measures.
    Bar,
    /// One bar per category of `x`, stacked by the values of `series`.
    StackedBar,
    /// ABC analysis: bars sorted descending, coloured by class, with the cumulative share line.
    Pareto,
    /// Four-quadrant analysis: a scatter of `x` against `y[0]`, with the split lines and the
    /// quadrants' names; `series` names the points.
    Quadrant,
}

/// What to draw from a table: a report's explicit chart, or the one [`auto_chart`](super::auto_chart) picks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartSpec {
    /// The kind of chart.
    pub kind: ChartKind,
    /// The column along the x axis (categories, time buckets, or the quadrant's x measure).
    pub x: String,
    /// The measures drawn (number columns); a Pareto, stacked-bar or quadrant chart uses the first.
    pub y: Vec<String>,
    /// The column whose values split the measure into series (line, stacked bar), or name the
    /// points (quadrant).
    #[serde(default)]
    pub series: Option<String>,
    /// The chart's title.
    #[serde(default)]
    pub title: String,
}

/// Why a chart could not be drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChartError {
    /// The spec names a column the table does not have.
    #[error("the chart's {field} column `{column}` is not in the table (its columns: {available})")]
    MissingColumn {
        /// Which part of the spec names it (`x`, `y`, `series`).
        field: &'static str,
        /// The column named.
        column: String,
        /// The table's columns, comma-separated.
        available: String,
    },
    /// A column that must hold numbers does not.
    #[error("the chart's {field} column `{column}` must hold numbers, but it holds {kind}")]
    NotNumeric {
        /// Which part of the spec names it.
        field: &'static str,
        /// The column named.
        column: String,
        /// What it holds.
        kind: &'static str,
    },
    /// The spec does not fit its kind (no measure, a stacked bar without series, …).
    #[error("{0}")]
    Invalid(String),
    /// There is nothing to draw.
    #[error("the table has no rows to chart")]
    NoData,
    /// Drawing or encoding failed.
    #[error("could not draw the chart: {0}")]
    Draw(String),
}

impl ChartSpec {
    /// Checks the spec against `table`: every column it names exists, measures are numbers, and
    /// the kind has what it needs.
    pub fn validate(&self, table: &Table) -> Result<(), ChartError> {
        let missing = |field: &'static str, column: &str| ChartError::MissingColumn {
            field,
            column: column.to_string(),
            available: table
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        };
        let numeric = |field: &'static str, column: &str| -> Result<(), ChartError> {
            let c = table.column(column).ok_or_else(|| missing(field, column))?;
            match c.kind {
                ColumnKind::Number => Ok(()),
                other => Err(ChartError::NotNumeric {
                    field,
                    column: column.to_string(),
                    kind: kind_name(other),
                }),
            }
        };
        if table.column(&self.x).is_none() {
            return Err(missing("x", &self.x));
        }
        if self.y.is_empty() {
            return Err(ChartError::Invalid(
                "the chart names no measure: set `y` to one or more number columns".into(),
            ));
        }
        for y in &self.y {
            numeric("y", y)?;
        }
        if let Some(series) = &self.series
            && table.column(series).is_none()
        {
            return Err(missing("series", series));
        }
        match self.kind {
            ChartKind::Quadrant => numeric("x", &self.x)?,
            ChartKind::StackedBar if self.series.is_none() => {
                return Err(ChartError::Invalid(
                    "a stacked bar chart needs `series`: the column whose values are stacked"
                        .into(),
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

fn kind_name(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Number => "numbers",
        ColumnKind::Text => "text",
        ColumnKind::Time => "dates or times",
    }
}
