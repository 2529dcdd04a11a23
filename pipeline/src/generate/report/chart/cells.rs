//! A table's cells as a chart reads them: the rows drawn, numbers, labels (dates written by the
//! bucket's grain) and the order of x values.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};
use serde_json::Value;

use crate::generate::report::table::{ColumnKind, Table, format_number};

/// The grain of a time bucket column `<dimension>.<grain>`.
pub(super) fn grain_of(name: &str) -> Option<&str> {
    let grain = name.rsplit_once('.')?.1;
    ["hour", "day", "week", "month", "quarter", "year"]
        .contains(&grain)
        .then_some(grain)
}

/// The rows a chart draws: all but the grand-total row (and rows without a value per column,
/// which [`prepare`](super::plot::prepare) refuses).
pub(super) fn chart_rows(table: &Table) -> Vec<&Vec<Value>> {
    (0..table.rows.len())
        .filter(|&i| !table.is_total_row(i) && table.rows[i].len() == table.columns.len())
        .map(|i| &table.rows[i])
        .collect()
}

pub(super) fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|v: &f64| v.is_finite())
}

/// A key cell as a label: dates by the column's grain, numbers with separators.
pub(super) fn label(value: &Value, kind: ColumnKind, grain: Option<&str>) -> String {
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

/// Orders x values: numbers by value, everything else (ISO dates included) as text.
pub(super) fn compare_keys(a: &Value, b: &Value) -> std::cmp::Ordering {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
