//! Charts of a report block, drawn in-process with `plotters`: the same picture as SVG (for the
//! web) and PNG (for email), from a [`ChartSpec`] over a [`Table`].
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

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::table::{ColumnKind, Table, format_number};

/// Width of a chart, pixels.
pub const WIDTH: u32 = 800;
/// Height of a chart, pixels.
pub const HEIGHT: u32 = 400;
/// Most categories a bar or Pareto chart draws; beyond, the smallest are summed as "other".
pub const MAX_CATEGORIES: usize = 50;
/// Most series a line or stacked-bar chart draws; beyond, the smallest are summed as "other".
pub const MAX_SERIES: usize = 10;

/// The font charts are drawn with (DejaVu Sans; licence in `assets/fonts/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
/// The family name charts ask for, under which [`FONT`] is registered.
const FAMILY: &str = "sans-serif";
/// The font for PNG charts whose words have letters [`FONT`] lacks — Hangul above all, for the
/// Korean shops Tidemark serves (NanumSquare: Hangul, Latin letters and digits; licence in
/// `assets/fonts/LICENSE-NanumSquare.txt`). SVG charts keep [`FAMILY`]: the browser or mail
/// client draws their text with its own fonts.
static FONT_HANGUL: &[u8] = include_bytes!("../../../assets/fonts/NanumSquareR.ttf");
/// The family [`FONT_HANGUL`] is registered under.
const FAMILY_HANGUL: &str = "NanumSquare";

/// Series colours, in order (Tableau 10: distinct, readable on white).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// Bar colours of ABC classes A, B and C.
const CLASS_COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(127, 127, 127),
];
/// The Pareto chart's cumulative-share line.
const CUMULATIVE_COLOR: RGBColor = RGBColor(214, 39, 40);
/// Split lines and notes.
const MUTED: RGBColor = RGBColor(110, 110, 110);
/// Quadrant colours, by code: HH, HL, LH, LL.
const QUADRANTS: [(&str, &str, RGBColor); 4] = [
    ("HH", "star", RGBColor(44, 160, 44)),
    ("HL", "cash cow", RGBColor(31, 119, 180)),
    ("LH", "question mark", RGBColor(255, 127, 14)),
    ("LL", "dog", RGBColor(127, 127, 127)),
];

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

/// What to draw from a table: a report's explicit chart, or the one [`auto_chart`] picks.
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

/// A drawn chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chart {
    /// The chart as an SVG document.
    pub svg: String,
    /// The same chart as a PNG image.
    pub png: Vec<u8>,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
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

/// Columns an analysis adds that are not measures to draw.
fn is_analysis_column(name: &str) -> bool {
    const NAMES: [&str; 6] = [
        "abc_share",
        "abc_class",
        "quadrant",
        "quadrant_label",
        "quadrant_x_split",
        "quadrant_y_split",
    ];
    const SUFFIXES: [&str; 8] = [
        ".compare",
        ".change",
        ".change_pct",
        ".share",
        ".running_total",
        ".rank",
        ".previous",
        ".previous_change_pct",
    ];
    NAMES.contains(&name)
        || name == super::table::TOTAL_COLUMN
        || SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The grain of a time bucket column `<dimension>.<grain>`.
fn grain_of(name: &str) -> Option<&str> {
    let grain = name.rsplit_once('.')?.1;
    ["hour", "day", "week", "month", "quarter", "year"]
        .contains(&grain)
        .then_some(grain)
}

/// The natural chart for a dashboard answer, if there is one: ABC columns → Pareto; quadrant
/// columns → quadrant; a time bucket and measures → line (one series per measure, or per value
/// of a text dimension); one text dimension → bar; two → stacked bar.
pub fn auto_chart(table: &Table) -> Option<ChartSpec> {
    let has = |name: &str| table.column(name).is_some();
    let measures: Vec<String> = table
        .columns
        .iter()
        .filter(|c| c.kind == ColumnKind::Number && !is_analysis_column(&c.name))
        .map(|c| c.name.clone())
        .collect();
    let dimensions: Vec<String> = table
        .columns
        .iter()
        .filter(|c| c.kind == ColumnKind::Text && !is_analysis_column(&c.name))
        .map(|c| c.name.clone())
        .collect();
    let time = table
        .columns
        .iter()
        .find(|c| c.kind == ColumnKind::Time)
        .map(|c| c.name.clone());
    let first = measures.first()?.clone();
    if has("abc_class") || has("abc_share") {
        let x = dimensions.first()?.clone();
        let measure = abc_measure(table, &measures).unwrap_or(first);
        return Some(ChartSpec {
            title: format!("{measure} by {x}: ABC analysis"),
            kind: ChartKind::Pareto,
            x,
            y: vec![measure],
            series: None,
        });
    }
    if has("quadrant_x_split") && has("quadrant_y_split") && measures.len() >= 2 {
        let (x, y) = quadrant_measures(table, &measures)
            .unwrap_or_else(|| (measures[0].clone(), measures[1].clone()));
        return Some(ChartSpec {
            title: format!("{y} against {x}"),
            kind: ChartKind::Quadrant,
            x,
            y: vec![y],
            series: dimensions.first().cloned(),
        });
    }
    if let Some(time) = time {
        if let Some(dimension) = dimensions.first() {
            return Some(ChartSpec {
                title: format!("{first} by {dimension} over time"),
                kind: ChartKind::Line,
                x: time,
                y: vec![first],
                series: Some(dimension.clone()),
            });
        }
        let mut y = Vec::new();
        for m in &measures {
            y.push(m.clone());
            let compare = format!("{m}.compare");
            if has(&compare) {
                y.push(compare);
            }
        }
        return Some(ChartSpec {
            title: format!("{} over time", measures.join(", ")),
            kind: ChartKind::Line,
            x: time,
            y,
            series: None,
        });
    }
    match dimensions.as_slice() {
        [x] => Some(ChartSpec {
            title: format!("{first} by {x}"),
            kind: ChartKind::Bar,
            x: x.clone(),
            y: vec![first],
            series: None,
        }),
        [x, series, ..] => Some(ChartSpec {
            title: format!("{first} by {x} and {series}"),
            kind: ChartKind::StackedBar,
            x: x.clone(),
            y: vec![first],
            series: Some(series.clone()),
        }),
        [] => None,
    }
}

/// The measure an ABC analysis ranked: the one whose values fall as `abc_share` rises.
fn abc_measure(table: &Table, measures: &[String]) -> Option<String> {
    let share = table.column_index("abc_share")?;
    let rows = chart_rows(table);
    measures
        .iter()
        .find(|m| {
            let Some(i) = table.column_index(m) else {
                return false;
            };
            let mut pairs: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|r| Some((number(&r[share])?, number(&r[i])?)))
                .collect();
            pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
            pairs.windows(2).all(|w| w[0].1 >= w[1].1)
        })
        .cloned()
}

/// The two measures a quadrant analysis split: those whose sides of the splits give `quadrant`.
fn quadrant_measures(table: &Table, measures: &[String]) -> Option<(String, String)> {
    let code = table.column_index("quadrant")?;
    let xs = table.column_index("quadrant_x_split")?;
    let ys = table.column_index("quadrant_y_split")?;
    let rows = chart_rows(table);
    for x in measures {
        for y in measures.iter().filter(|y| *y != x) {
            let (xi, yi) = (table.column_index(x)?, table.column_index(y)?);
            let fits = rows.iter().all(|r| {
                let (Some(vx), Some(vy), Some(sx), Some(sy)) = (
                    number(&r[xi]),
                    number(&r[yi]),
                    number(&r[xs]),
                    number(&r[ys]),
                ) else {
                    return true;
                };
                let expected = format!(
                    "{}{}",
                    if vx >= sx { 'H' } else { 'L' },
                    if vy >= sy { 'H' } else { 'L' }
                );
                r[code].as_str().is_none_or(|c| c == expected)
            });
            if fits {
                return Some((x.clone(), y.clone()));
            }
        }
    }
    None
}

/// The rows a chart draws: all but the grand-total row (and rows without a value per column,
/// which [`prepare`] refuses).
fn chart_rows(table: &Table) -> Vec<&Vec<Value>> {
    (0..table.rows.len())
        .filter(|&i| !table.is_total_row(i) && table.rows[i].len() == table.columns.len())
        .map(|i| &table.rows[i])
        .collect()
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|v: &f64| v.is_finite())
}

/// A key cell as a label: dates by the column's grain, numbers with separators.
fn label(value: &Value, kind: ColumnKind, grain: Option<&str>) -> String {
    match value {
        Value::Null => "(none)".to_string(),
        Value::String(s) if kind == ColumnKind::Time => format_time(s, grain),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map(format_number).unwrap_or_default(),
        other => other.to_string(),
    }
}

/// An ISO 8601 date or timestamp written for its grain: `2024-06-03 14:00` (hour),
/// `2024-06-03` (day, week: the week's Monday), `Jun 2024`, `Q2 2024`, `2024`.
fn format_time(text: &str, grain: Option<&str>) -> String {
    let local: Option<NaiveDateTime> = DateTime::parse_from_rfc3339(text)
        .map(|t| t.naive_local())
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok())
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(chrono::NaiveTime::MIN))
        });
    let Some(t) = local else {
        return text.to_string();
    };
    match grain {
        Some("hour") => t.format("%Y-%m-%d %H:00").to_string(),
        Some("month") => t.format("%b %Y").to_string(),
        Some("quarter") => format!("Q{} {}", t.month0() / 3 + 1, t.year()),
        Some("year") => t.format("%Y").to_string(),
        Some(_) => t.format("%Y-%m-%d").to_string(),
        None if t.time() == chrono::NaiveTime::MIN => t.format("%Y-%m-%d").to_string(),
        None => t.format("%Y-%m-%d %H:%M").to_string(),
    }
}

/// One named series of values, one per category (missing: `None`).
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    values: Vec<Option<f64>>,
}

/// A chart's data, ready to draw.
#[derive(Debug, Clone, PartialEq)]
enum Plot {
    /// Bars (side by side per series, or stacked) or lines over categories.
    Categories {
        categories: Vec<String>,
        series: Vec<Series>,
        style: CategoryStyle,
    },
    /// Bars sorted descending, their ABC classes and the cumulative share, percent.
    Pareto {
        categories: Vec<String>,
        values: Vec<f64>,
        classes: Vec<usize>,
        cumulative: Vec<f64>,
    },
    /// Points and the splits.
    Quadrant {
        points: Vec<(String, f64, f64)>,
        x_split: f64,
        y_split: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CategoryStyle {
    Bars,
    Stacked,
    Lines,
}

/// A chart's data with its words.
#[derive(Debug, Clone, PartialEq)]
struct Prepared {
    plot: Plot,
    title: String,
    x_desc: String,
    y_desc: String,
    /// Said under the title: what was left out or summed.
    note: Option<String>,
    /// The font family the words are drawn with.
    family: &'static str,
}

/// Categories in first-seen order, and each one's position.
#[derive(Default)]
struct Keys {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Keys {
    fn position(&mut self, name: String) -> usize {
        if let Some(&i) = self.index.get(&name) {
            return i;
        }
        self.index.insert(name.clone(), self.names.len());
        self.names.push(name);
        self.names.len() - 1
    }
}

/// Adds `value` to a sum that starts missing.
fn add(sum: &mut Option<f64>, value: Option<f64>) {
    if let Some(v) = value {
        *sum = Some(sum.unwrap_or(0.0) + v);
    }
}

/// Keeps the `keep - 1` largest (by `weight`) of `names` in their order and sums the rest into
/// one "other" entry; returns the kept positions (the "other" as `None`) when anything was cut.
fn largest(weights: &[f64], keep: usize) -> Option<Vec<Option<usize>>> {
    if weights.len() <= keep {
        return None;
    }
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        weights[b]
            .abs()
            .total_cmp(&weights[a].abs())
            .then(a.cmp(&b))
    });
    let mut kept: Vec<usize> = order[..keep - 1].to_vec();
    kept.sort_unstable();
    Some(kept.into_iter().map(Some).chain([None]).collect())
}

/// Folds series values onto kept categories, the cut ones summed into the last ("other").
fn fold_categories(values: &[Option<f64>], kept: &[Option<usize>]) -> Vec<Option<f64>> {
    let mut other = None;
    for (i, v) in values.iter().enumerate() {
        if !kept.contains(&Some(i)) {
            add(&mut other, *v);
        }
    }
    kept.iter()
        .map(|k| match k {
            Some(i) => values[*i],
            None => other,
        })
        .collect()
}

/// A spec's columns resolved to positions in its table, and the rows drawn.
struct Input<'t> {
    spec: &'t ChartSpec,
    table: &'t Table,
    rows: Vec<&'t Vec<Value>>,
    x: usize,
    x_kind: ColumnKind,
    grain: Option<&'t str>,
    ys: Vec<usize>,
    series: Option<usize>,
}

/// The chart's data and words, after checking the spec against the table.
fn prepare(spec: &ChartSpec, table: &Table) -> Result<Prepared, ChartError> {
    spec.validate(table)?;
    if let Some(i) = table
        .rows
        .iter()
        .position(|r| r.len() != table.columns.len())
    {
        return Err(ChartError::Invalid(format!(
            "row {i} of the table has {} values for {} columns",
            table.rows[i].len(),
            table.columns.len()
        )));
    }
    let rows = chart_rows(table);
    if rows.is_empty() {
        return Err(ChartError::NoData);
    }
    let col = |name: &str| table.column_index(name).unwrap_or_default();
    let x = col(&spec.x);
    let x_kind = table.columns[x].kind;
    let grain = grain_of(&spec.x);
    let ys: Vec<usize> = spec.y.iter().map(|y| col(y)).collect();
    let series_col = spec.series.as_deref().map(col);
    let title = if spec.title.is_empty() {
        format!("{} by {}", spec.y.join(", "), spec.x)
    } else {
        spec.title.clone()
    };
    let y_desc = if spec.y.len() == 1 {
        spec.y[0].clone()
    } else {
        "value".to_string()
    };
    let input = Input {
        spec,
        table,
        rows,
        x,
        x_kind,
        grain,
        ys,
        series: series_col,
    };
    let (plot, note) = match spec.kind {
        ChartKind::Bar | ChartKind::StackedBar | ChartKind::Line => prepare_categories(&input)?,
        ChartKind::Pareto => prepare_pareto(&input)?,
        ChartKind::Quadrant => prepare_quadrant(&input)?,
    };
    Ok(Prepared {
        plot,
        title,
        x_desc: spec.x.clone(),
        y_desc,
        note,
        family: FAMILY,
    })
}

/// Bars (side by side or stacked) or lines over the categories of `x`.
fn prepare_categories(input: &Input) -> Result<(Plot, Option<String>), ChartError> {
    let Input {
        spec,
        table,
        x,
        x_kind,
        grain,
        series: series_col,
        ..
    } = *input;
    let (rows, ys) = (&input.rows, &input.ys);
    let mut note = None;
    let mut keys = Keys::default();
    let mut row_keys = Vec::with_capacity(rows.len());
    // Line charts put their x in order; bars keep the answer's order.
    let mut ordered: Vec<&Vec<Value>> = rows.clone();
    if spec.kind == ChartKind::Line {
        ordered.sort_by(|a, b| compare_keys(&a[x], &b[x]));
    }
    for r in &ordered {
        row_keys.push(keys.position(label(&r[x], x_kind, grain)));
    }
    let n = keys.names.len();
    let mut series: Vec<Series> = Vec::new();
    match series_col {
        Some(s) if spec.kind != ChartKind::Bar => {
            let s_kind = table.columns[s].kind;
            let mut names = Keys::default();
            for (r, &k) in ordered.iter().zip(&row_keys) {
                let i = names.position(label(&r[s], s_kind, grain_of(&table.columns[s].name)));
                if i == series.len() {
                    series.push(Series {
                        name: names.names[i].clone(),
                        values: vec![None; n],
                    });
                }
                add(&mut series[i].values[k], number(&r[ys[0]]));
            }
            let weights: Vec<f64> = series
                .iter()
                .map(|s| s.values.iter().flatten().map(|v| v.abs()).sum())
                .collect();
            if let Some(kept) = largest(&weights, MAX_SERIES) {
                let cut = series.len() - (kept.len() - 1);
                let mut other = vec![None; n];
                for (i, s) in series.iter().enumerate() {
                    if !kept.contains(&Some(i)) {
                        for (o, v) in other.iter_mut().zip(&s.values) {
                            add(o, *v);
                        }
                    }
                }
                series = kept
                    .iter()
                    .map(|k| match k {
                        Some(i) => series[*i].clone(),
                        None => Series {
                            name: "other".into(),
                            values: other.clone(),
                        },
                    })
                    .collect();
                note = Some(format!(
                    "the {cut} smallest of {} series are summed as \"other\"",
                    weights.len()
                ));
            }
        }
        _ => {
            for (j, &y) in ys.iter().enumerate() {
                let mut values = vec![None; n];
                for (r, &k) in ordered.iter().zip(&row_keys) {
                    add(&mut values[k], number(&r[y]));
                }
                series.push(Series {
                    name: spec.y[j].clone(),
                    values,
                });
            }
        }
    }
    let mut categories = keys.names;
    if spec.kind != ChartKind::Line {
        let weights: Vec<f64> = (0..categories.len())
            .map(|c| {
                series
                    .iter()
                    .filter_map(|s| s.values[c])
                    .map(f64::abs)
                    .sum()
            })
            .collect();
        if let Some(kept) = largest(&weights, MAX_CATEGORIES) {
            let cut = categories.len() - (kept.len() - 1);
            let other = format!("other ({cut})");
            for s in &mut series {
                s.values = fold_categories(&s.values, &kept);
            }
            categories = kept
                .iter()
                .map(|k| k.map_or_else(|| other.clone(), |i| categories[i].clone()))
                .collect();
            let said = format!(
                "the {cut} smallest of {} categories are summed as \"other\"",
                weights.len()
            );
            note = Some(match note {
                Some(n) => format!("{n}; {said}"),
                None => said,
            });
        }
    }
    Ok((
        Plot::Categories {
            categories,
            series,
            style: match spec.kind {
                ChartKind::Line => CategoryStyle::Lines,
                ChartKind::StackedBar => CategoryStyle::Stacked,
                _ => CategoryStyle::Bars,
            },
        },
        note,
    ))
}

/// The Pareto chart: bars sorted descending, their ABC classes and the cumulative share.
fn prepare_pareto(input: &Input) -> Result<(Plot, Option<String>), ChartError> {
    let Input {
        table,
        x,
        x_kind,
        grain,
        ..
    } = *input;
    let (rows, ys) = (&input.rows, &input.ys);
    let mut note = None;
    let class_col = table.column_index("abc_class");
    let mut keys = Keys::default();
    let mut values: Vec<f64> = Vec::new();
    let mut classes: Vec<Option<usize>> = Vec::new();
    for r in rows.iter() {
        let k = keys.position(label(&r[x], x_kind, grain));
        if k == values.len() {
            values.push(0.0);
            classes.push(None);
        }
        values[k] += number(&r[ys[0]]).unwrap_or(0.0);
        if let Some(c) = class_col.and_then(|c| r[c].as_str()) {
            classes[k] = ["A", "B", "C"].iter().position(|n| *n == c);
        }
    }
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let mut categories: Vec<String> = order.iter().map(|&i| keys.names[i].clone()).collect();
    let mut sorted: Vec<f64> = order.iter().map(|&i| values[i]).collect();
    let mut class_of: Vec<Option<usize>> = order.iter().map(|&i| classes[i]).collect();
    if sorted.len() > MAX_CATEGORIES {
        let cut = sorted.len() - (MAX_CATEGORIES - 1);
        let rest: f64 = sorted[MAX_CATEGORIES - 1..].iter().sum();
        sorted.truncate(MAX_CATEGORIES - 1);
        categories.truncate(MAX_CATEGORIES - 1);
        class_of.truncate(MAX_CATEGORIES - 1);
        sorted.push(rest);
        categories.push(format!("other ({cut})"));
        class_of.push(Some(2));
        note = Some(format!(
            "the {cut} smallest of {} categories are summed as \"other\"",
            values.len()
        ));
    }
    let total: f64 = sorted.iter().filter(|v| **v > 0.0).sum();
    let mut running = 0.0;
    let cumulative: Vec<f64> = sorted
        .iter()
        .map(|v| {
            running += v.max(0.0);
            if total > 0.0 {
                running / total * 100.0
            } else {
                0.0
            }
        })
        .collect();
    let classes = class_of
        .iter()
        .zip(&cumulative)
        .map(|(c, share)| {
            c.unwrap_or(if *share <= 80.0 + 1e-9 {
                0
            } else if *share <= 95.0 + 1e-9 {
                1
            } else {
                2
            })
        })
        .collect();
    Ok((
        Plot::Pareto {
            categories,
            values: sorted,
            classes,
            cumulative,
        },
        note,
    ))
}

/// The quadrant scatter: points and the splits (the answer's, or the means).
fn prepare_quadrant(input: &Input) -> Result<(Plot, Option<String>), ChartError> {
    let Input {
        table,
        x,
        series: series_col,
        ..
    } = *input;
    let (rows, y) = (&input.rows, input.ys[0]);
    let points: Vec<(String, f64, f64)> = rows
        .iter()
        .filter_map(|r| {
            let name = series_col
                .map(|s| label(&r[s], table.columns[s].kind, None))
                .unwrap_or_default();
            Some((name, number(&r[x])?, number(&r[y])?))
        })
        .collect();
    if points.is_empty() {
        return Err(ChartError::NoData);
    }
    let split = |column: &str, values: &mut dyn Iterator<Item = f64>| {
        table
            .column_index(column)
            .and_then(|c| rows.iter().find_map(|r| number(&r[c])))
            .unwrap_or_else(|| {
                let (sum, n) = values.fold((0.0, 0.0), |(s, n), v| (s + v, n + 1.0));
                sum / n
            })
    };
    let x_split = split("quadrant_x_split", &mut points.iter().map(|p| p.1));
    let y_split = split("quadrant_y_split", &mut points.iter().map(|p| p.2));
    Ok((
        Plot::Quadrant {
            points,
            x_split,
            y_split,
        },
        None,
    ))
}

/// Orders x values: numbers by value, everything else (ISO dates included) as text.
fn compare_keys(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => match (a, b) {
            (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
            (Value::Null, _) => std::cmp::Ordering::Greater,
            (_, Value::Null) => std::cmp::Ordering::Less,
            (Value::String(x), Value::String(y)) => x.cmp(y),
            _ => a.to_string().cmp(&b.to_string()),
        },
    }
}

/// Registers the shipped font with plotters, once.
fn register_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok()
            && plotters::style::register_font(FAMILY, FontStyle::Bold, FONT).is_ok()
            && plotters::style::register_font(FAMILY_HANGUL, FontStyle::Normal, FONT_HANGUL).is_ok()
            && plotters::style::register_font(FAMILY_HANGUL, FontStyle::Bold, FONT_HANGUL).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ChartError::Draw("the shipped font does not load".into()))
    }
}

/// Draws the chart `spec` asks for from `table`, as SVG and PNG.
pub fn render(spec: &ChartSpec, table: &Table) -> Result<Chart, ChartError> {
    let mut prepared = prepare(spec, table)?;
    let svg = draw_svg(&prepared)?;
    prepared.family = bitmap_family(&prepared);
    let draw_error = |e: Box<dyn std::error::Error>| ChartError::Draw(e.to_string());
    let mut pixels = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, &prepared).map_err(draw_error)?;
        root.present()
            .map_err(|e| ChartError::Draw(e.to_string()))?;
    }
    let png = encode_png(&pixels, WIDTH, HEIGHT)
        .map_err(|e| ChartError::Draw(format!("PNG encoding: {e}")))?;
    Ok(Chart {
        svg,
        png,
        width: WIDTH,
        height: HEIGHT,
    })
}

/// Draws the chart `spec` asks for from `table` as SVG only (the console's charts).
pub fn render_svg(spec: &ChartSpec, table: &Table) -> Result<String, ChartError> {
    draw_svg(&prepare(spec, table)?)
}

fn draw_svg(prepared: &Prepared) -> Result<String, ChartError> {
    register_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, prepared).map_err(|e| ChartError::Draw(e.to_string()))?;
        root.present()
            .map_err(|e| ChartError::Draw(e.to_string()))?;
    }
    Ok(svg)
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    Ok(out)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn font(family: &'static str, size: f64) -> TextStyle<'static> {
    TextStyle::from((family, size).into_font()).color(&BLACK)
}

/// Every word a chart shows.
fn words(prepared: &Prepared) -> Vec<&str> {
    let mut out = vec![
        prepared.title.as_str(),
        prepared.x_desc.as_str(),
        prepared.y_desc.as_str(),
    ];
    out.extend(prepared.note.as_deref());
    match &prepared.plot {
        Plot::Categories {
            categories, series, ..
        } => {
            out.extend(categories.iter().map(String::as_str));
            out.extend(series.iter().map(|s| s.name.as_str()));
        }
        Plot::Pareto { categories, .. } => out.extend(categories.iter().map(String::as_str)),
        Plot::Quadrant { points, .. } => out.extend(points.iter().map(|(name, ..)| name.as_str())),
    }
    out
}

/// The family a PNG chart is drawn with: [`FAMILY_HANGUL`] when some word has a letter
/// [`FONT`] lacks and it has, else [`FAMILY`].
fn bitmap_family(prepared: &Prepared) -> &'static str {
    use ab_glyph::Font as _;
    let (Ok(main), Ok(hangul)) = (
        ab_glyph::FontRef::try_from_slice(FONT),
        ab_glyph::FontRef::try_from_slice(FONT_HANGUL),
    ) else {
        return FAMILY;
    };
    let wanted = words(prepared)
        .iter()
        .flat_map(|w| w.chars())
        .any(|c| !c.is_whitespace() && main.glyph_id(c).0 == 0 && hangul.glyph_id(c).0 != 0);
    if wanted { FAMILY_HANGUL } else { FAMILY }
}

/// Shortens a label to `max` characters, with an ellipsis.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Room for the y axis labels, pixels.
fn y_label_area(low: f64, high: f64) -> u32 {
    let longest = [low, high]
        .iter()
        .map(|v| format_number(*v).chars().count())
        .max()
        .unwrap_or(1);
    (longest as u32 * 8 + 44).min(140)
}

fn draw<DB>(root: &DrawingArea<DB, Shift>, prepared: &Prepared) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (width, _) = root.dim_in_pixel();
    let center = (width / 2) as i32;
    root.draw(&Text::new(
        shorten(&prepared.title, 90),
        (center, 8),
        font(prepared.family, 18.0).pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    let header = if let Some(note) = &prepared.note {
        root.draw(&Text::new(
            shorten(note, 110),
            (center, 32),
            font(prepared.family, 12.0)
                .color(&MUTED)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        50
    } else {
        34
    };
    let (_, body) = root.split_vertically(header);
    match &prepared.plot {
        Plot::Categories {
            categories,
            series,
            style,
        } => draw_categories(root, &body, prepared, categories, series, *style),
        Plot::Pareto {
            categories,
            values,
            classes,
            cumulative,
        } => draw_pareto(
            root, &body, prepared, categories, values, classes, cumulative,
        ),
        Plot::Quadrant {
            points,
            x_split,
            y_split,
        } => draw_quadrant(&body, prepared, points, *x_split, *y_split),
    }
}

/// Writes category labels under the x axis, every `step`-th when they would overlap.
fn draw_category_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    family: &'static str,
    categories: &[String],
    position: impl Fn(usize) -> (i32, i32),
    slot: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let longest = categories
        .iter()
        .map(|c| c.chars().count().min(16))
        .max()
        .unwrap_or(1);
    let needed = longest as f64 * 7.0 + 8.0;
    let step = ((needed / slot.max(1.0)).ceil() as usize).max(1);
    for (i, c) in categories.iter().enumerate().step_by(step) {
        let (px, py) = position(i);
        root.draw(&Text::new(
            shorten(c, 16),
            (px, py + 6),
            font(family, 12.0).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    Ok(())
}

fn draw_categories<DB>(
    root: &DrawingArea<DB, Shift>,
    body: &DrawingArea<DB, Shift>,
    prepared: &Prepared,
    categories: &[String],
    series: &[Series],
    style: CategoryStyle,
) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let n = categories.len().max(1);
    let (mut low, mut high) = (0.0f64, 0.0f64);
    if style == CategoryStyle::Stacked {
        for c in 0..n {
            let (pos, neg) = series
                .iter()
                .filter_map(|s| s.values.get(c).copied().flatten())
                .fold(
                    (0.0, 0.0),
                    |(p, q), v| if v >= 0.0 { (p + v, q) } else { (p, q + v) },
                );
            high = high.max(pos);
            low = low.min(neg);
        }
    } else {
        for v in series.iter().flat_map(|s| s.values.iter().flatten()) {
            high = high.max(*v);
            low = low.min(*v);
        }
    }
    if high - low <= f64::EPSILON {
        high = low + 1.0;
    }
    // Room above the highest value for the legend.
    let headroom = if series.len() > 1 { 0.25 } else { 0.08 };
    let high = high + (high - low) * headroom;
    let mut chart = ChartBuilder::on(body)
        .margin_left(10)
        .margin_right(20)
        .margin_bottom(6)
        .x_label_area_size(44)
        .y_label_area_size(y_label_area(low, high))
        .build_cartesian_2d(0f64..n as f64, low..high)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(6)
        .y_label_formatter(&|v| format_number(*v))
        .x_desc(prepared.x_desc.as_str())
        .y_desc(prepared.y_desc.as_str())
        .label_style(font(prepared.family, 12.0))
        .axis_desc_style(font(prepared.family, 13.0))
        .light_line_style(WHITE)
        .draw()?;
    let slot = {
        let (a, _) = chart.backend_coord(&(0.0, low));
        let (b, _) = chart.backend_coord(&(1.0, low));
        f64::from(b - a)
    };
    let position = |i: usize| chart.backend_coord(&(i as f64 + 0.5, low));
    draw_category_labels(root, prepared.family, categories, position, slot)?;
    let m = series.len().max(1) as f64;
    let mut stack_up = vec![0.0f64; n];
    let mut stack_down = vec![0.0f64; n];
    for (k, s) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let drawn = match style {
            CategoryStyle::Lines => {
                let points: Vec<(f64, f64)> = s
                    .values
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (i as f64 + 0.5, v)))
                    .collect();
                let dots = if points.len() <= 60 {
                    points.clone()
                } else {
                    Vec::new()
                };
                chart.draw_series(
                    dots.into_iter()
                        .map(move |p| Circle::new(p, 3, color.filled())),
                )?;
                chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?
            }
            CategoryStyle::Bars => {
                let bars: Vec<Rectangle<(f64, f64)>> = s
                    .values
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| {
                        let v = (*v)?;
                        let x0 = i as f64 + 0.1 + 0.8 * k as f64 / m;
                        Some(Rectangle::new(
                            [(x0, 0.0), (x0 + 0.8 / m, v)],
                            color.filled(),
                        ))
                    })
                    .collect();
                chart.draw_series(bars)?
            }
            CategoryStyle::Stacked => {
                let mut bars = Vec::new();
                for (i, v) in s.values.iter().enumerate() {
                    let Some(v) = *v else { continue };
                    let stack = if v >= 0.0 {
                        &mut stack_up[i]
                    } else {
                        &mut stack_down[i]
                    };
                    let base = *stack;
                    *stack += v;
                    bars.push(Rectangle::new(
                        [(i as f64 + 0.1, base), (i as f64 + 0.9, base + v)],
                        color.filled(),
                    ));
                }
                chart.draw_series(bars)?
            }
        };
        drawn
            .label(shorten(&s.name, 30))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(font(prepared.family, 12.0))
            .draw()?;
    }
    Ok(())
}

fn draw_pareto<DB>(
    root: &DrawingArea<DB, Shift>,
    body: &DrawingArea<DB, Shift>,
    prepared: &Prepared,
    categories: &[String],
    values: &[f64],
    classes: &[usize],
    cumulative: &[f64],
) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let n = categories.len().max(1);
    let low = values.iter().copied().fold(0.0f64, f64::min);
    let mut high = values.iter().copied().fold(0.0f64, f64::max);
    if high - low <= f64::EPSILON {
        high = low + 1.0;
    }
    let high = high + (high - low) * 0.25;
    let mut chart = ChartBuilder::on(body)
        .margin_left(10)
        .margin_right(10)
        .margin_bottom(6)
        .x_label_area_size(44)
        .y_label_area_size(y_label_area(low, high))
        .right_y_label_area_size(70)
        .build_cartesian_2d(0f64..n as f64, low..high)?
        .set_secondary_coord(0f64..n as f64, 0f64..100f64);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(6)
        .y_label_formatter(&|v| format_number(*v))
        .x_desc(prepared.x_desc.as_str())
        .y_desc(prepared.y_desc.as_str())
        .label_style(font(prepared.family, 12.0))
        .axis_desc_style(font(prepared.family, 13.0))
        .light_line_style(WHITE)
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_labels(6)
        .y_label_formatter(&|v| format!("{v:.0}%"))
        .y_desc("cumulative share")
        .label_style(font(prepared.family, 12.0))
        .axis_desc_style(font(prepared.family, 13.0))
        .draw()?;
    let slot = {
        let (a, _) = chart.backend_coord(&(0.0, low));
        let (b, _) = chart.backend_coord(&(1.0, low));
        f64::from(b - a)
    };
    let position = |i: usize| chart.backend_coord(&(i as f64 + 0.5, low));
    draw_category_labels(root, prepared.family, categories, position, slot)?;
    for (class, name) in ["A", "B", "C"].iter().enumerate() {
        let color = CLASS_COLORS[class];
        let bars: Vec<Rectangle<(f64, f64)>> = values
            .iter()
            .zip(classes)
            .enumerate()
            .filter(|(_, (_, c))| **c == class)
            .map(|(i, (v, _))| {
                Rectangle::new(
                    [(i as f64 + 0.1, 0.0), (i as f64 + 0.9, *v)],
                    color.filled(),
                )
            })
            .collect();
        if bars.is_empty() {
            continue;
        }
        chart
            .draw_series(bars)?
            .label(format!("class {name}"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    let points: Vec<(f64, f64)> = cumulative
        .iter()
        .enumerate()
        .map(|(i, c)| (i as f64 + 0.5, *c))
        .collect();
    chart.draw_secondary_series(
        points
            .clone()
            .into_iter()
            .map(|p| Circle::new(p, 3, CUMULATIVE_COLOR.filled())),
    )?;
    chart
        .draw_secondary_series(LineSeries::new(points, CUMULATIVE_COLOR.stroke_width(2)))?
        .label("cumulative share")
        .legend(|(x, y)| {
            PathElement::new(vec![(x, y), (x + 12, y)], CUMULATIVE_COLOR.stroke_width(2))
        });
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(font(prepared.family, 12.0))
        .draw()?;
    Ok(())
}

fn draw_quadrant<DB>(
    body: &DrawingArea<DB, Shift>,
    prepared: &Prepared,
    points: &[(String, f64, f64)],
    x_split: f64,
    y_split: f64,
) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let span = |values: &mut dyn Iterator<Item = f64>, split: f64| {
        let (mut lo, mut hi) = (split, split);
        for v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let pad = ((hi - lo) * 0.08).max(1e-9);
        (lo - pad, hi + pad)
    };
    let (x0, x1) = span(&mut points.iter().map(|p| p.1), x_split);
    let (y0, y1) = span(&mut points.iter().map(|p| p.2), y_split);
    let mut chart = ChartBuilder::on(body)
        .margin_left(10)
        .margin_right(20)
        .margin_bottom(6)
        .x_label_area_size(44)
        .y_label_area_size(y_label_area(y0, y1))
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&|v| format_number(*v))
        .y_label_formatter(&|v| format_number(*v))
        .x_desc(prepared.x_desc.as_str())
        .y_desc(prepared.y_desc.as_str())
        .label_style(font(prepared.family, 12.0))
        .axis_desc_style(font(prepared.family, 13.0))
        .light_line_style(WHITE)
        .draw()?;
    let split_style = MUTED.stroke_width(1);
    chart.draw_series(LineSeries::new(
        vec![(x_split, y0), (x_split, y1)],
        split_style,
    ))?;
    chart.draw_series(LineSeries::new(
        vec![(x0, y_split), (x1, y_split)],
        split_style,
    ))?;
    for (code, name, color) in QUADRANTS {
        let right = code.starts_with('H');
        let top = code.ends_with('H');
        let (px, py) =
            chart.backend_coord(&(if right { x1 } else { x0 }, if top { y1 } else { y0 }));
        let pos = Pos::new(
            if right { HPos::Right } else { HPos::Left },
            if top { VPos::Top } else { VPos::Bottom },
        );
        let (bx, by) = body.get_base_pixel();
        let dx = if right { -6 } else { 6 };
        let dy = if top { 6 } else { -6 };
        body.draw(&Text::new(
            name,
            (px + dx - bx, py + dy - by),
            font(prepared.family, 14.0).color(&color).pos(pos),
        ))?;
    }
    let color_of = |x: f64, y: f64| {
        let code = match (x >= x_split, y >= y_split) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        QUADRANTS[code].2
    };
    chart.draw_series(
        points
            .iter()
            .map(|(_, x, y)| Circle::new((*x, *y), 5, color_of(*x, *y).filled())),
    )?;
    if points.len() <= 30 {
        chart.draw_series(
            points
                .iter()
                .filter(|p| !p.0.is_empty())
                .map(|(name, x, y)| {
                    EmptyElement::at((*x, *y))
                        + Text::new(
                            shorten(name, 20),
                            (7, -3),
                            font(prepared.family, 11.0).pos(Pos::new(HPos::Left, VPos::Bottom)),
                        )
                }),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::table::Column;
    use super::*;

    /// One element of an SVG document: its tag, attributes and text.
    #[derive(Debug)]
    struct Element {
        tag: String,
        attrs: HashMap<String, String>,
        text: String,
    }

    impl Element {
        fn attr(&self, name: &str) -> &str {
            self.attrs.get(name).map_or("", String::as_str)
        }
        fn num(&self, name: &str) -> f64 {
            self.attr(name).parse().unwrap_or(f64::NAN)
        }
    }

    /// The elements of a flat SVG document (plotters writes no nesting beyond `<svg>`).
    fn elements(svg: &str) -> Vec<Element> {
        let mut out = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            rest = &rest[start + 1..];
            let end = rest.find('>').unwrap();
            let head = &rest[..end];
            rest = &rest[end + 1..];
            if head.starts_with('/') || head.starts_with('?') || head.starts_with('!') {
                continue;
            }
            let (tag, mut attrs_text) = head.split_once(char::is_whitespace).unwrap_or((head, ""));
            let mut attrs = HashMap::new();
            while let Some(eq) = attrs_text.find("=\"") {
                let name = attrs_text[..eq].trim().to_string();
                let value_start = &attrs_text[eq + 2..];
                let close = value_start.find('"').unwrap();
                attrs.insert(name, value_start[..close].to_string());
                attrs_text = &value_start[close + 1..];
            }
            let mut text = String::new();
            if !head.ends_with('/') && tag == "text" {
                let close = rest.find("</text>").unwrap();
                text = rest[..close]
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&amp;", "&")
                    .trim()
                    .to_string();
            }
            out.push(Element {
                tag: tag.to_string(),
                attrs,
                text,
            });
        }
        out
    }

    fn hex(color: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", color.0, color.1, color.2)
    }

    fn filled_rects(svg: &[Element], color: RGBColor) -> Vec<&Element> {
        let fill = hex(color);
        svg.iter()
            .filter(|e| e.tag == "rect" && e.attr("fill").eq_ignore_ascii_case(&fill))
            .collect()
    }

    fn texts(svg: &[Element]) -> Vec<String> {
        svg.iter()
            .filter(|e| e.tag == "text")
            .map(|e| e.text.clone())
            .collect()
    }

    /// The PNG's pixels, RGB.
    fn pixels(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn pixel(image: &(u32, u32, Vec<u8>), x: u32, y: u32) -> [u8; 3] {
        let i = ((y * image.0 + x) * 3) as usize;
        [image.2[i], image.2[i + 1], image.2[i + 2]]
    }

    fn table(columns: &[(&str, ColumnKind)], rows: Vec<Vec<Value>>) -> Table {
        Table {
            columns: columns
                .iter()
                .map(|(name, kind)| Column {
                    name: name.to_string(),
                    kind: *kind,
                })
                .collect(),
            rows,
        }
    }

    fn by_channel() -> Table {
        table(
            &[
                ("orders.channel", ColumnKind::Text),
                ("orders.revenue", ColumnKind::Number),
            ],
            vec![
                vec![json!("naver"), json!(4_200_000)],
                vec![json!("kakao"), json!(2_500_000.5)],
                vec![json!("google"), json!(900_000)],
                vec![json!("direct"), json!(120_000)],
            ],
        )
    }

    #[test]
    fn a_dimension_and_a_measure_draw_one_bar_per_category() {
        let table = by_channel();
        let spec = auto_chart(&table).unwrap();
        assert_eq!(spec.kind, ChartKind::Bar);
        assert_eq!(spec.x, "orders.channel");
        assert_eq!(spec.y, ["orders.revenue"]);
        let chart = render(&spec, &table).unwrap();
        assert_eq!((chart.width, chart.height), (800, 400));
        let svg = elements(&chart.svg);
        let bars = filled_rects(&svg, PALETTE[0]);
        assert_eq!(bars.len(), 4, "{}", chart.svg);
        // Left to right in the answer's order, heights following the values.
        let heights: Vec<f64> = bars.iter().map(|b| b.num("height")).collect();
        assert!(heights.windows(2).all(|w| w[0] > w[1]), "{heights:?}");
        let words = texts(&svg);
        for category in ["naver", "kakao", "google", "direct"] {
            assert!(
                words.iter().any(|t| t == category),
                "{category} in {words:?}"
            );
        }
        for label in [
            "orders.channel",
            "orders.revenue",
            "orders.revenue by orders.channel",
        ] {
            assert!(words.iter().any(|t| t == label), "{label} in {words:?}");
        }
        assert!(
            words.iter().any(|t| t.contains(",000,000")),
            "thousands separators on the y axis: {words:?}"
        );
        // One series: no legend box.
        assert_eq!(words.iter().filter(|t| *t == "orders.revenue").count(), 1);

        let image = pixels(&chart.png);
        assert_eq!((image.0, image.1), (800, 400));
        for bar in &bars {
            let (x, y) = (bar.num("x"), bar.num("y"));
            let (w, h) = (bar.num("width"), bar.num("height"));
            let centre = pixel(&image, (x + w / 2.0) as u32, (y + h / 2.0) as u32);
            assert_eq!(centre, [PALETTE[0].0, PALETTE[0].1, PALETTE[0].2]);
            // Above the bar, inside its column, the plot is background.
            let above = pixel(&image, (x + w / 2.0) as u32, (y - 3.0) as u32);
            assert_ne!(above, centre);
        }
    }

    #[test]
    fn hangul_words_are_drawn_with_letters_not_boxes_in_png() {
        let channels = |name: &str| {
            table(
                &[
                    ("orders.channel", ColumnKind::Text),
                    ("orders.revenue", ColumnKind::Number),
                ],
                vec![
                    vec![json!(name), json!(100)],
                    vec![json!("naver"), json!(50)],
                ],
            )
        };
        let draw = |name: &str| render(&auto_chart(&channels(name)).unwrap(), &channels(name));
        let (a, b) = (draw("가나다").unwrap(), draw("라마바").unwrap());
        // A font without Hangul draws both names as the same three boxes: the images would be
        // equal. With Hangul glyphs the labels differ.
        assert_ne!(a.png, b.png);
        // The SVG names the text and leaves the font to the reader's own.
        assert!(texts(&elements(&a.svg)).iter().any(|t| t == "가나다"));
        assert!(a.svg.contains("font-family=\"sans-serif\""));
        // Latin words keep the main font.
        let latin = prepare(&auto_chart(&by_channel()).unwrap(), &by_channel()).unwrap();
        assert_eq!(bitmap_family(&latin), FAMILY);
        let korean = prepare(
            &auto_chart(&channels("가나다")).unwrap(),
            &channels("가나다"),
        )
        .unwrap();
        assert_eq!(bitmap_family(&korean), FAMILY_HANGUL);
    }

    #[test]
    fn text_is_drawn_with_the_shipped_font() {
        let chart = render(&auto_chart(&by_channel()).unwrap(), &by_channel()).unwrap();
        let image = pixels(&chart.png);
        // The title band holds dark (text) pixels.
        let dark = (0..800)
            .flat_map(|x| (4..30).map(move |y| (x, y)))
            .filter(|&(x, y)| pixel(&image, x, y).iter().all(|c| *c < 100))
            .count();
        assert!(dark > 100, "{dark} dark pixels in the title band");
    }

    fn daily() -> Table {
        table(
            &[
                ("orders.order_ts.month", ColumnKind::Time),
                ("orders.revenue", ColumnKind::Number),
                ("orders.count", ColumnKind::Number),
                ("orders.revenue.change_pct", ColumnKind::Number),
            ],
            vec![
                vec![json!("2024-03-01"), json!(3000), json!(30), json!(0.5)],
                vec![json!("2024-01-01"), json!(1000), json!(10), Value::Null],
                vec![json!("2024-02-01"), json!(2000), json!(20), json!(1.0)],
            ],
        )
    }

    #[test]
    fn a_time_bucket_draws_a_line_per_measure_with_dates_by_grain_and_a_legend() {
        let table = daily();
        let spec = auto_chart(&table).unwrap();
        assert_eq!(spec.kind, ChartKind::Line);
        assert_eq!(spec.y, ["orders.revenue", "orders.count"]);
        let chart = render(&spec, &table).unwrap();
        let svg = elements(&chart.svg);
        let lines: Vec<&Element> = svg.iter().filter(|e| e.tag == "polyline").collect();
        for (k, name) in ["orders.revenue", "orders.count"].iter().enumerate() {
            let line = lines
                .iter()
                .find(|l| l.attr("stroke").eq_ignore_ascii_case(&hex(PALETTE[k])))
                .unwrap_or_else(|| panic!("a line for {name}"));
            assert_eq!(line.attr("points").split_whitespace().count(), 3);
            assert!(texts(&svg).iter().any(|t| t == name), "legend entry {name}");
        }
        let words = texts(&svg);
        let months: Vec<&String> = words.iter().filter(|t| t.ends_with(" 2024")).collect();
        assert_eq!(months, ["Jan 2024", "Feb 2024", "Mar 2024"]);
        // The revenue line rises left to right (SVG y grows downwards).
        let revenue = lines
            .iter()
            .find(|l| l.attr("stroke").eq_ignore_ascii_case(&hex(PALETTE[0])))
            .unwrap();
        let ys: Vec<f64> = revenue
            .attr("points")
            .split_whitespace()
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(ys.windows(2).all(|w| w[0] > w[1]), "{ys:?}");
    }

    #[test]
    fn a_time_bucket_and_a_dimension_draw_a_line_per_dimension_value() {
        let table = table(
            &[
                ("orders.order_ts.day", ColumnKind::Time),
                ("orders.channel", ColumnKind::Text),
                ("orders.revenue", ColumnKind::Number),
            ],
            vec![
                vec![json!("2024-06-01"), json!("naver"), json!(10)],
                vec![json!("2024-06-01"), json!("kakao"), json!(5)],
                vec![json!("2024-06-02"), json!("naver"), json!(12)],
                vec![json!("2024-06-02"), json!("kakao"), json!(7)],
            ],
        );
        let spec = auto_chart(&table).unwrap();
        assert_eq!(
            (spec.kind, spec.series.as_deref()),
            (ChartKind::Line, Some("orders.channel"))
        );
        let chart = render(&spec, &table).unwrap();
        let svg = elements(&chart.svg);
        let strokes: Vec<String> = svg
            .iter()
            .filter(|e| e.tag == "polyline")
            .map(|e| e.attr("stroke").to_uppercase())
            .collect();
        for color in &PALETTE[..2] {
            assert_eq!(strokes.iter().filter(|s| **s == hex(*color)).count(), 1);
        }
        assert!(!strokes.contains(&hex(PALETTE[2])));
        let words = texts(&svg);
        for t in ["naver", "kakao", "2024-06-01", "2024-06-02"] {
            assert!(words.iter().any(|w| w == t), "{t} in {words:?}");
        }
    }

    #[test]
    fn two_dimensions_draw_stacked_bars() {
        let table = table(
            &[
                ("orders.channel", ColumnKind::Text),
                ("orders.device", ColumnKind::Text),
                ("orders.revenue", ColumnKind::Number),
            ],
            vec![
                vec![json!("naver"), json!("mobile"), json!(300)],
                vec![json!("naver"), json!("desktop"), json!(100)],
                vec![json!("kakao"), json!("mobile"), json!(200)],
            ],
        );
        let spec = auto_chart(&table).unwrap();
        assert_eq!(spec.kind, ChartKind::StackedBar);
        let chart = render(&spec, &table).unwrap();
        let svg = elements(&chart.svg);
        // Legend swatches are rects too: one more than the bars.
        let mobile = filled_rects(&svg, PALETTE[0]);
        let desktop = filled_rects(&svg, PALETTE[1]);
        assert_eq!((mobile.len(), desktop.len()), (3, 2));
        // naver's desktop part sits on its mobile part.
        let (m, d) = (mobile[0], desktop[0]);
        assert!((d.num("y") + d.num("height") - m.num("y")).abs() <= 1.0);
        assert!((m.num("height") - 3.0 * d.num("height")).abs() <= 2.0);
        let words = texts(&svg);
        assert!(words.iter().any(|w| w == "mobile") && words.iter().any(|w| w == "desktop"));
    }

    #[test]
    fn abc_columns_draw_a_pareto_chart_sorted_descending_up_to_100_percent() {
        let table = table(
            &[
                ("orders.product", ColumnKind::Text),
                ("orders.revenue", ColumnKind::Number),
                ("abc_share", ColumnKind::Number),
                ("abc_class", ColumnKind::Text),
            ],
            vec![
                vec![json!("socks"), json!(50), json!(0.9), json!("B")],
                vec![json!("shoes"), json!(400), json!(0.8), json!("A")],
                vec![json!("hats"), json!(30), json!(0.96), json!("C")],
                vec![json!("bags"), json!(20), json!(1.0), json!("C")],
            ],
        );
        let spec = auto_chart(&table).unwrap();
        assert_eq!(spec.kind, ChartKind::Pareto);
        assert_eq!(
            (spec.x.as_str(), spec.y[0].as_str()),
            ("orders.product", "orders.revenue")
        );
        let chart = render(&spec, &table).unwrap();
        let svg = elements(&chart.svg);
        let mut bars: Vec<&Element> = CLASS_COLORS
            .iter()
            .flat_map(|c| filled_rects(&svg, *c))
            .filter(|r| r.num("width") > 14.0)
            .collect();
        assert_eq!(bars.len(), 4);
        bars.sort_by(|a, b| a.num("x").total_cmp(&b.num("x")));
        let heights: Vec<f64> = bars.iter().map(|b| b.num("height")).collect();
        assert!(heights.windows(2).all(|w| w[0] >= w[1]), "{heights:?}");
        assert_eq!(bars[0].attr("fill"), hex(CLASS_COLORS[0]));
        assert_eq!(bars[1].attr("fill"), hex(CLASS_COLORS[1]));
        assert_eq!(bars[3].attr("fill"), hex(CLASS_COLORS[2]));
        let words = texts(&svg);
        let labels: Vec<&String> = words
            .iter()
            .filter(|w| ["socks", "shoes", "hats", "bags"].contains(&w.as_str()))
            .collect();
        assert_eq!(labels, ["shoes", "socks", "hats", "bags"]);
        for entry in ["class A", "class B", "class C", "cumulative share"] {
            assert!(words.iter().any(|w| w == entry), "legend {entry}");
        }
        let line = svg
            .iter()
            .find(|e| e.tag == "polyline" && e.attr("stroke") == hex(CUMULATIVE_COLOR))
            .unwrap();
        let points: Vec<(f64, f64)> = line
            .attr("points")
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(points.len(), 4);
        assert!(
            points.windows(2).all(|w| w[0].1 >= w[1].1),
            "cumulative rises"
        );
        let hundred = svg
            .iter()
            .find(|e| e.tag == "text" && e.text == "100%")
            .unwrap();
        assert!(
            (points[3].1 - hundred.num("y")).abs() <= 2.0,
            "last point {:?} at the 100% tick {}",
            points[3],
            hundred.num("y")
        );
    }

    #[test]
    fn quadrant_columns_draw_a_scatter_with_splits_and_quadrant_names() {
        let table = table(
            &[
                ("campaigns.name", ColumnKind::Text),
                ("ads.spend", ColumnKind::Number),
                ("ads.roas", ColumnKind::Number),
                ("quadrant_x_split", ColumnKind::Number),
                ("quadrant_y_split", ColumnKind::Number),
                ("quadrant", ColumnKind::Text),
            ],
            vec![
                vec![
                    json!("spring"),
                    json!(100),
                    json!(4.0),
                    json!(50),
                    json!(2.5),
                    json!("HH"),
                ],
                vec![
                    json!("summer"),
                    json!(20),
                    json!(1.0),
                    json!(50),
                    json!(2.5),
                    json!("LL"),
                ],
                vec![
                    json!("autumn"),
                    json!(30),
                    json!(3.0),
                    json!(50),
                    json!(2.5),
                    json!("LH"),
                ],
            ],
        );
        let spec = auto_chart(&table).unwrap();
        assert_eq!(spec.kind, ChartKind::Quadrant);
        assert_eq!(
            (spec.x.as_str(), spec.y[0].as_str()),
            ("ads.spend", "ads.roas")
        );
        let chart = render(&spec, &table).unwrap();
        let svg = elements(&chart.svg);
        let words = texts(&svg);
        for t in [
            "star",
            "cash cow",
            "question mark",
            "dog",
            "spring",
            "summer",
            "autumn",
        ] {
            assert!(words.iter().any(|w| w == t), "{t} in {words:?}");
        }
        assert_eq!(svg.iter().filter(|e| e.tag == "circle").count(), 3);
        let splits = svg
            .iter()
            .filter(|e| e.tag == "polyline" && e.attr("stroke") == hex(MUTED))
            .count();
        assert_eq!(splits, 2);
    }

    #[test]
    fn many_categories_are_cut_to_fifty_with_the_rest_summed_as_other() {
        let rows = (0..120)
            .map(|i| vec![json!(format!("p{i:03}")), json!(1000 - i)])
            .collect();
        let table = table(
            &[
                ("orders.product", ColumnKind::Text),
                ("orders.revenue", ColumnKind::Number),
            ],
            rows,
        );
        let chart = render(&auto_chart(&table).unwrap(), &table).unwrap();
        let svg = elements(&chart.svg);
        assert_eq!(filled_rects(&svg, PALETTE[0]).len(), MAX_CATEGORIES);
        let words = texts(&svg);
        assert!(
            words
                .iter()
                .any(|w| w.contains("71 smallest of 120 categories are summed as \"other\"")),
            "{words:?}"
        );
    }

    #[test]
    fn the_grand_total_row_is_not_drawn() {
        let mut table = by_channel();
        table.columns.push(Column {
            name: "is_total".into(),
            kind: ColumnKind::Text,
        });
        for row in &mut table.rows {
            row.push(json!(false));
        }
        table
            .rows
            .push(vec![Value::Null, json!(7_720_000.5), json!(true)]);
        let chart = render(&auto_chart(&table).unwrap(), &table).unwrap();
        assert_eq!(filled_rects(&elements(&chart.svg), PALETTE[0]).len(), 4);
    }

    #[test]
    fn an_explicit_spec_naming_a_missing_column_is_refused_by_name() {
        let table = by_channel();
        let spec = ChartSpec {
            kind: ChartKind::Bar,
            x: "orders.channel".into(),
            y: vec!["orders.profit".into()],
            series: None,
            title: String::new(),
        };
        let error = render(&spec, &table).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the chart's y column `orders.profit` is not in the table (its columns: orders.channel, orders.revenue)"
        );
        let spec = ChartSpec {
            y: vec!["orders.channel".into()],
            ..spec
        };
        assert!(matches!(
            spec.validate(&table),
            Err(ChartError::NotNumeric { .. })
        ));
        let spec: ChartSpec = serde_json::from_value(json!({
            "kind": "stackedbar", "x": "orders.channel", "y": ["orders.revenue"]
        }))
        .unwrap();
        assert!(matches!(spec.validate(&table), Err(ChartError::Invalid(_))));
        let empty = Table {
            rows: Vec::new(),
            ..table
        };
        let spec = auto_chart(&empty).unwrap();
        assert_eq!(render(&spec, &empty).unwrap_err(), ChartError::NoData);
    }

    #[test]
    fn a_row_without_a_value_per_column_is_refused() {
        let mut table = by_channel();
        table.rows[2].pop();
        let error = render(&auto_chart(&table).unwrap(), &table).unwrap_err();
        assert_eq!(
            error.to_string(),
            "row 2 of the table has 1 values for 2 columns"
        );
    }

    #[test]
    fn dates_are_written_by_grain() {
        let cases = [
            (
                "2024-06-03T14:00:00+09:00",
                Some("hour"),
                "2024-06-03 14:00",
            ),
            ("2024-06-03", Some("day"), "2024-06-03"),
            ("2024-06-03T00:00:00", Some("week"), "2024-06-03"),
            ("2024-06-01", Some("month"), "Jun 2024"),
            ("2024-04-01", Some("quarter"), "Q2 2024"),
            ("2024-01-01", Some("year"), "2024"),
            ("not a date", Some("day"), "not a date"),
        ];
        for (text, grain, expected) in cases {
            assert_eq!(format_time(text, grain), expected, "{text}");
        }
    }

    #[test]
    fn no_chart_without_a_measure() {
        let table = table(
            &[("orders.channel", ColumnKind::Text)],
            vec![vec![json!("a")]],
        );
        assert_eq!(auto_chart(&table), None);
    }
}
