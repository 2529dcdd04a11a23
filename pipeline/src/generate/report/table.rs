//! A report block's data: the dashboard engine's answer as named, typed columns and JSON rows,
//! the form charts, the HTML and text parts and the CSV attachment are all made from.
//!
//! Values are converted once, by Arrow's JSON writer (the same conversion as the JSON answer of
//! `POST /v1/query`): numbers stay numbers, dates and timestamps become ISO 8601 text in the
//! query's time zone, NULL becomes `null`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sql::QueryResult;
use sql::arrow::datatypes::{DataType, Schema};
use sql::arrow::record_batch::RecordBatch;

/// The marker column of a dashboard answer's grand-total row (`sql::spec::compile::TOTAL_COLUMN`).
pub const TOTAL_COLUMN: &str = "is_total";

/// What a column holds, as far as presenting it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    /// Integers and decimals: right-aligned, thousands separators, chartable as a measure.
    Number,
    /// Text, booleans and anything else: shown as it is.
    Text,
    /// Dates and timestamps (ISO 8601 text).
    Time,
}

/// One column of a [`Table`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The column's name in the answer (`orders.revenue`, `orders.order_ts.day`).
    pub name: String,
    /// What it holds.
    pub kind: ColumnKind,
}

/// A query answer ready for presenting: columns in answer order and one JSON value per cell.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// The columns.
    pub columns: Vec<Column>,
    /// The rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
}

/// Why a table could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Arrow could not convert the answer's batches.
    #[error("could not convert the query answer: {0}")]
    Convert(String),
    /// The CSV writer failed.
    #[error("could not write the table as CSV: {0}")]
    Csv(String),
}

impl Table {
    /// The table of a dashboard engine answer.
    pub fn from_query_result(result: &QueryResult) -> Result<Table, TableError> {
        Table::from_batches(&result.schema, &result.batches)
    }

    /// The table of Arrow batches of `schema`.
    pub fn from_batches(schema: &Schema, batches: &[RecordBatch]) -> Result<Table, TableError> {
        use sql::arrow::json::writer::{JsonArray, WriterBuilder};
        let columns: Vec<Column> = schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                kind: kind_of(f.data_type()),
            })
            .collect();
        let mut json = Vec::new();
        {
            let mut writer = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, JsonArray>(&mut json);
            let batches: Vec<&RecordBatch> = batches.iter().collect();
            writer
                .write_batches(&batches)
                .map_err(|e| TableError::Convert(e.to_string()))?;
            writer
                .finish()
                .map_err(|e| TableError::Convert(e.to_string()))?;
        }
        let objects: Vec<serde_json::Map<String, Value>> = if json.is_empty() {
            Vec::new()
        } else {
            serde_json::from_slice(&json).map_err(|e| TableError::Convert(e.to_string()))?
        };
        let rows = objects
            .into_iter()
            .map(|mut object| {
                columns
                    .iter()
                    .map(|c| object.remove(&c.name).unwrap_or(Value::Null))
                    .collect()
            })
            .collect();
        Ok(Table { columns, rows })
    }

    /// The position of the column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Whether row `row` is the grand-total row a spec with `total: true` appends.
    pub fn is_total_row(&self, row: usize) -> bool {
        self.column_index(TOTAL_COLUMN)
            .and_then(|i| self.rows.get(row).and_then(|r| r.get(i)))
            .is_some_and(|v| v.as_bool() == Some(true))
    }

    /// The cell at `row`, `column` as a person reads it: numbers with thousands separators,
    /// NULL as an empty string.
    pub fn display(&self, row: usize, column: usize) -> String {
        let value = self.rows.get(row).and_then(|r| r.get(column));
        match value {
            None | Some(Value::Null) => String::new(),
            Some(Value::Number(n)) => n.as_f64().map(format_number).unwrap_or_default(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    }

    /// The table as CSV (RFC 4180, header row first), values as the answer has them: numbers
    /// without separators, NULL as an empty field.
    pub fn to_csv(&self) -> Result<String, TableError> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let csv_error = |e: csv::Error| TableError::Csv(e.to_string());
        writer
            .write_record(self.columns.iter().map(|c| c.name.as_str()))
            .map_err(csv_error)?;
        for row in &self.rows {
            writer
                .write_record(row.iter().map(raw_text))
                .map_err(csv_error)?;
        }
        let bytes = writer
            .into_inner()
            .map_err(|e| TableError::Csv(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| TableError::Csv(e.to_string()))
    }
}

/// A cell's value as plain text, without formatting.
fn raw_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn kind_of(data_type: &DataType) -> ColumnKind {
    match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => ColumnKind::Number,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => ColumnKind::Time,
        _ => ColumnKind::Text,
    }
}

/// A number as a person reads it: thousands separators, whole numbers without a fraction, others
/// with two decimals, and none from 1,000 up (`1,234,567`, `0.25`, `-1,235`).
pub fn format_number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let rounded = if value.fract() == 0.0 || value.abs() >= 1000.0 {
        format!("{:.0}", value)
    } else {
        format!("{:.2}", value)
    };
    // `-0.00` reads as zero, without a sign.
    let negative = rounded.starts_with('-') && rounded.bytes().any(|b| (b'1'..=b'9').contains(&b));
    let sign = if negative { "-" } else { "" };
    let digits = rounded.trim_start_matches('-');
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sql::arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, StringArray};
    use sql::arrow::datatypes::Field;

    use super::*;

    fn answer() -> (Arc<Schema>, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("orders.order_ts.day", DataType::Date32, true),
            Field::new("orders.channel", DataType::Utf8, true),
            Field::new("orders.revenue", DataType::Float64, true),
            Field::new("orders.count", DataType::Int64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Date32Array::from(vec![Some(19875), Some(19876), None])),
            Arc::new(StringArray::from(vec![
                Some("naver"),
                Some("say \"hi\", <b>"),
                None,
            ])),
            Arc::new(Float64Array::from(vec![Some(1234567.5), Some(0.25), None])),
            Arc::new(Int64Array::from(vec![Some(3), None, Some(-4000)])),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        (schema, vec![batch])
    }

    #[test]
    fn an_answer_becomes_typed_columns_and_rows_in_order() {
        let (schema, batches) = answer();
        let table = Table::from_batches(&schema, &batches).unwrap();
        let kinds: Vec<ColumnKind> = table.columns.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                ColumnKind::Time,
                ColumnKind::Text,
                ColumnKind::Number,
                ColumnKind::Number
            ]
        );
        assert_eq!(
            table.rows,
            vec![
                vec![
                    json!("2024-06-01"),
                    json!("naver"),
                    json!(1234567.5),
                    json!(3)
                ],
                vec![
                    json!("2024-06-02"),
                    json!("say \"hi\", <b>"),
                    json!(0.25),
                    Value::Null
                ],
                vec![Value::Null, Value::Null, Value::Null, json!(-4000)],
            ]
        );
        assert_eq!(table.display(0, 2), "1,234,568");
        assert_eq!(table.display(1, 2), "0.25");
        assert_eq!(table.display(2, 3), "-4,000");
        assert_eq!(table.display(2, 0), "");
    }

    #[test]
    fn timestamps_keep_the_query_zone_and_decimals_are_numbers() {
        use sql::arrow::array::{Decimal128Array, TimestampMicrosecondArray};
        use sql::arrow::datatypes::TimeUnit;
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "orders.order_ts.hour",
                DataType::Timestamp(TimeUnit::Microsecond, Some("Asia/Seoul".into())),
                true,
            ),
            Field::new("orders.revenue", DataType::Decimal128(12, 2), true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(1_717_200_000_000_000)])
                    .with_timezone("Asia/Seoul"),
            ),
            Arc::new(
                Decimal128Array::from(vec![Some(123_456_789)])
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
            ),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let table = Table::from_batches(&schema, &[batch]).unwrap();
        assert_eq!(
            table.rows,
            vec![vec![json!("2024-06-01T09:00:00+09:00"), json!(1234567.89)]]
        );
        assert_eq!(table.columns[1].kind, ColumnKind::Number);
    }

    #[test]
    fn an_empty_answer_has_columns_and_no_rows() {
        let (schema, _) = answer();
        let table = Table::from_batches(&schema, &[]).unwrap();
        assert_eq!(table.columns.len(), 4);
        assert!(table.rows.is_empty());
        assert_eq!(
            table.to_csv().unwrap(),
            "orders.order_ts.day,orders.channel,orders.revenue,orders.count\n"
        );
    }

    #[test]
    fn the_csv_reads_back_as_the_table() {
        let (schema, batches) = answer();
        let table = Table::from_batches(&schema, &batches).unwrap();
        let text = table.to_csv().unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_string)
            .collect();
        let names: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
        assert_eq!(header, names);
        let records: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect();
        assert_eq!(records.len(), table.rows.len());
        for (record, row) in records.iter().zip(&table.rows) {
            for (field, value) in record.iter().zip(row) {
                match value {
                    Value::Null => assert_eq!(field, ""),
                    Value::String(s) => assert_eq!(field, s),
                    Value::Number(n) => {
                        assert_eq!(field.parse::<f64>().unwrap(), n.as_f64().unwrap())
                    }
                    other => panic!("unexpected {other}"),
                }
            }
        }
    }

    #[test]
    fn numbers_read_with_thousands_separators() {
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(999.0), "999");
        assert_eq!(format_number(1000.0), "1,000");
        assert_eq!(format_number(-1234567.0), "-1,234,567");
        assert_eq!(format_number(1234.567), "1,235");
        assert_eq!(format_number(12.345), "12.35");
        assert_eq!(format_number(-0.001), "0.00");
        assert_eq!(format_number(100000.0), "100,000");
    }
}
