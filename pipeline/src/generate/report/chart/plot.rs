//! A chart's data ready to draw: categories and series (bars, stacked bars, lines), the Pareto
//! bars with their classes and cumulative share, or the quadrant's points and splits, with the
//! smallest categories and series summed as "other".

use std::collections::HashMap;

use serde_json::Value;

use crate::generate::report::table::{ColumnKind, Table};

use super::cells::{chart_rows, compare_keys, grain_of, label, number};
use super::fonts::FAMILY;
use super::spec::{ChartError, ChartKind, ChartSpec};
use super::{MAX_CATEGORIES, MAX_SERIES};

/// One named series of values, one per category (missing: `None`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Series {
    pub(super) name: String,
    pub(super) values: Vec<Option<f64>>,
}

/// A chart's data, ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Plot {
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
pub(super) enum CategoryStyle {
    Bars,
    Stacked,
    Lines,
}

/// A chart's data with its words.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Prepared {
    pub(super) plot: Plot,
    pub(super) title: String,
    pub(super) x_desc: String,
    pub(super) y_desc: String,
    /// Said under the title: what was left out or summed.
    pub(super) note: Option<String>,
    /// The font family the words are drawn with.
    pub(super) family: &'static str,
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
pub(super) fn prepare(spec: &ChartSpec, table: &Table) -> Result<Prepared, ChartError> {
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
