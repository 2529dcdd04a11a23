//! The natural chart for a dashboard answer, read from its column names and kinds.

use crate::generate::report::table::{ColumnKind, TOTAL_COLUMN, Table};

use super::cells::{chart_rows, number};
use super::spec::{ChartKind, ChartSpec};

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
    NAMES.contains(&name) || name == TOTAL_COLUMN || SUFFIXES.iter().any(|s| name.ends_with(s))
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
