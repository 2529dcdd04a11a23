//! Event mappings: which event type is a row of which warehouse table, and how its attributes
//! become typed columns. Declared in the semantic model's TOML next to the sources:
//!
//! ```toml
//! [events.order]                         # events of type `order` …
//! table = "orders"                       # … are rows of the warehouse table `orders`
//! time_zone = "Asia/Seoul"               # the zone `from = "date"` is computed in (UTC if absent)
//!
//! [events.order.columns]                 # column = where its value comes from, and its type
//! order_ts = { from = "time", type = "timestamp" }      # the event time
//! order_date = { from = "date", type = "date" }         # the event time's calendar date
//! revenue = { from = "attrs.amount", type = "number" }  # an attribute (a dotted path inside it)
//! status = { value = "paid", type = "string" }          # a constant
//! ```
//!
//! `from` is one of `id`, `type`, `time`, `date` or `attrs.<name>[.<name>…]`; `type` is one of
//! `string`, `integer`, `number`, `boolean`, `timestamp`, `date`. Every mapped table also gets
//! [`EVENT_ID_COLUMN`] (the event id) and [`ATTRIBUTES_COLUMN`]: a JSON object of the
//! attributes no column took, and of any attribute whose value did not fit its column's type
//! (that column is then null): nothing an event carried is lost. Columns of the table the mapping
//! does not name are null for live rows.
//!
//! Every event, mapped or not, is also a row of [`RAW_TABLE`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::SqlError;
use crate::catalog::is_table_name;
use crate::model::is_identifier;

/// The table every event is a row of, whatever its type.
pub const RAW_TABLE: &str = "raw_events";
/// The column of a mapped table holding the event id.
pub const EVENT_ID_COLUMN: &str = "event_id";
/// The column of a mapped table holding, as a JSON object, the attributes no column took.
pub const ATTRIBUTES_COLUMN: &str = "event_attributes";
/// The column of [`RAW_TABLE`] holding an event's attributes, as a JSON object.
pub const RAW_ATTRIBUTES_COLUMN: &str = "attributes";

/// The type of a mapped column, and the Arrow type its live rows are built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Text (`Utf8`).
    String,
    /// A whole number (`Int64`).
    Integer,
    /// A number (`Float64`).
    Number,
    /// true / false.
    Boolean,
    /// An instant (`Timestamp(µs, UTC)`): epoch milliseconds or RFC 3339 text.
    Timestamp,
    /// A calendar date (`Date32`): `YYYY-MM-DD` text.
    Date,
}

impl ColumnType {
    /// The Arrow type live rows of this column are built in.
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Integer => DataType::Int64,
            ColumnType::Number => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::Date => DataType::Date32,
        }
    }

    /// Whether a warehouse file's column of type `existing` can hold this column's values (the
    /// scan casts live rows to the files' type).
    pub fn fits(self, existing: &DataType) -> bool {
        match self {
            ColumnType::String => matches!(
                existing,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ),
            ColumnType::Integer => existing.is_integer() || existing.is_floating(),
            ColumnType::Number => {
                existing.is_floating()
                    || matches!(
                        existing,
                        DataType::Decimal32(..)
                            | DataType::Decimal64(..)
                            | DataType::Decimal128(..)
                            | DataType::Decimal256(..)
                    )
            }
            ColumnType::Boolean => matches!(existing, DataType::Boolean),
            ColumnType::Timestamp => matches!(existing, DataType::Timestamp(..)),
            ColumnType::Date => matches!(existing, DataType::Date32 | DataType::Date64),
        }
    }

    fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Integer => "integer",
            ColumnType::Number => "number",
            ColumnType::Boolean => "boolean",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Date => "date",
        }
    }
}

/// Where a mapped column's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnSource {
    /// The event id.
    Id,
    /// The event type.
    Type,
    /// The event time.
    Time,
    /// The event time's calendar date in the mapping's time zone.
    Date,
    /// An attribute, by path (`attrs.a.b` → `["a", "b"]`).
    Attr(Vec<String>),
    /// A constant.
    Value(Value),
}

/// One column of a mapping.
#[derive(Debug, Clone)]
pub struct ColumnMapping {
    /// The column's name in the table.
    pub name: String,
    /// Where its value comes from.
    pub source: ColumnSource,
    /// Its type.
    pub ty: ColumnType,
}

/// How events of one type become rows of one warehouse table.
#[derive(Debug, Clone)]
pub struct EventMapping {
    /// The event type (`order`).
    pub event_type: String,
    /// The warehouse table (`orders`).
    pub table: String,
    /// The zone `from = "date"` columns (and the table's files' dates) are computed in.
    pub time_zone: Tz,
    /// The columns, by name.
    pub columns: Vec<ColumnMapping>,
    /// The model file it was declared in.
    pub file: PathBuf,
}

impl EventMapping {
    /// The event time's calendar date in the mapping's zone, as days since the Unix epoch.
    pub fn day(&self, ts_ms: i64) -> i32 {
        if self.time_zone == Tz::UTC {
            return utc_day(ts_ms);
        }
        local_day(&self.time_zone, ts_ms)
    }
}

/// The days since the Unix epoch of the calendar date of `ts_ms` in UTC (what [`local_day`]
/// gives for UTC, by arithmetic: every event is a row of `raw_events`, dated in UTC).
pub(crate) fn utc_day(ts_ms: i64) -> i32 {
    const MS_PER_DAY: i64 = 86_400_000;
    // The instants chrono has dates for; outside them, `local_day`'s epoch (day 0).
    const MIN: i64 = DateTime::<Utc>::MIN_UTC.timestamp_millis();
    const MAX: i64 = DateTime::<Utc>::MAX_UTC.timestamp_millis();
    if !(MIN..=MAX).contains(&ts_ms) {
        return 0;
    }
    i32::try_from(ts_ms.div_euclid(MS_PER_DAY)).unwrap_or(i32::MAX)
}

/// The days since the Unix epoch of the calendar date of `ts_ms` in `zone`.
pub(crate) fn local_day<Z: TimeZone>(zone: &Z, ts_ms: i64) -> i32 {
    let instant = DateTime::<Utc>::from_timestamp_millis(ts_ms).unwrap_or_default();
    let date = instant.with_timezone(zone).date_naive();
    days_since_epoch(date)
}

/// The date `day` days after the Unix epoch.
pub(crate) fn date_of_day(day: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date")
        + chrono::TimeDelta::days(i64::from(day))
}

pub(crate) fn days_since_epoch(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
    i32::try_from((date - epoch).num_days()).unwrap_or(i32::MAX)
}

/// The TOML shape of `[events.<type>]`, as read; [`RawMapping::check`] makes it a mapping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    table: String,
    time_zone: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    columns: BTreeMap<String, RawColumn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    from: Option<String>,
    value: Option<toml::Value>,
    #[serde(rename = "type")]
    ty: ColumnType,
}

impl RawMapping {
    /// Checks one `[events.<event_type>]` of `file`.
    pub fn check(self, event_type: &str, file: &Path) -> Result<EventMapping, SqlError> {
        let error = |member: String, message: String| SqlError::Model {
            file: file.to_path_buf(),
            member,
            message,
        };
        let at = format!("events.{event_type}");
        if event_type.is_empty() || event_type.len() > 128 {
            return Err(error(at, "an event type must be 1-128 characters".into()));
        }
        if !is_table_name(&self.table) {
            return Err(error(
                format!("{at}.table"),
                format!(
                    "`{}` is not a warehouse table name (a lowercase identifier)",
                    self.table
                ),
            ));
        }
        if self.table == RAW_TABLE {
            return Err(error(
                format!("{at}.table"),
                format!("`{RAW_TABLE}` holds every event already; map to a table of your own"),
            ));
        }
        let time_zone = match &self.time_zone {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                error(
                    format!("{at}.time_zone"),
                    format!("unknown time zone `{name}` (an IANA name such as Asia/Seoul)"),
                )
            })?,
        };
        let mut columns = Vec::with_capacity(self.columns.len());
        for (name, raw) in self.columns {
            let member = format!("{at}.columns.{name}");
            if !is_identifier(&name) || name.len() > 64 {
                return Err(error(
                    member,
                    "a column name must be a lowercase identifier".into(),
                ));
            }
            if name == EVENT_ID_COLUMN || name == ATTRIBUTES_COLUMN {
                return Err(error(
                    member,
                    format!("`{name}` is filled by Tidemark for every mapped table"),
                ));
            }
            let source = match (raw.from, raw.value) {
                (Some(from), None) => parse_from(&from).map_err(|m| error(member.clone(), m))?,
                (None, Some(value)) => {
                    let json = serde_json::to_value(&value)
                        .map_err(|e| error(member.clone(), e.to_string()))?;
                    if convert(&json, raw.ty).is_none() {
                        return Err(error(
                            member,
                            format!("the constant {json} is not a {}", raw.ty.name()),
                        ));
                    }
                    ColumnSource::Value(json)
                }
                _ => {
                    return Err(error(
                        member,
                        "give exactly one of `from` (id, type, time, date, attrs.<name>) or `value`"
                            .into(),
                    ));
                }
            };
            columns.push(ColumnMapping {
                name,
                source,
                ty: raw.ty,
            });
        }
        Ok(EventMapping {
            event_type: event_type.to_string(),
            table: self.table,
            time_zone,
            columns,
            file: file.to_path_buf(),
        })
    }
}

fn parse_from(from: &str) -> Result<ColumnSource, String> {
    Ok(match from {
        "id" => ColumnSource::Id,
        "type" => ColumnSource::Type,
        "time" => ColumnSource::Time,
        "date" => ColumnSource::Date,
        _ => {
            let path = from.strip_prefix("attrs.").ok_or_else(|| {
                format!("`from = \"{from}\"`: use id, type, time, date or attrs.<name>")
            })?;
            let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
            if parts.iter().any(String::is_empty) {
                return Err(format!("`from = \"{from}\"`: an empty attribute name"));
            }
            ColumnSource::Attr(parts)
        }
    })
}

/// The columns of a live table as its events build it: the mappings' columns (in the order
/// first declared), then [`EVENT_ID_COLUMN`] and [`ATTRIBUTES_COLUMN`]; all nullable. Two
/// mappings into the same table must agree on the type of a column both name.
pub(crate) fn table_schema(mappings: &[&EventMapping]) -> Result<SchemaRef, SqlError> {
    let mut fields: Vec<(String, ColumnType, &EventMapping)> = Vec::new();
    for mapping in mappings {
        for column in &mapping.columns {
            match fields.iter().find(|(name, ..)| *name == column.name) {
                Some((_, ty, other)) if *ty != column.ty => {
                    return Err(SqlError::Model {
                        file: mapping.file.clone(),
                        member: format!("events.{}.columns.{}", mapping.event_type, column.name),
                        message: format!(
                            "is a {} here but a {} in events.{} (both map into table `{}`)",
                            column.ty.name(),
                            ty.name(),
                            other.event_type,
                            mapping.table
                        ),
                    });
                }
                Some(_) => {}
                None => fields.push((column.name.clone(), column.ty, mapping)),
            }
        }
    }
    let mut arrow: Vec<Field> = fields
        .iter()
        .map(|(name, ty, _)| Field::new(name, ty.arrow_type(), true))
        .collect();
    arrow.push(Field::new(EVENT_ID_COLUMN, DataType::Utf8, true));
    arrow.push(Field::new(ATTRIBUTES_COLUMN, DataType::Utf8, true));
    Ok(Arc::new(Schema::new(arrow)))
}

/// The schema of [`RAW_TABLE`].
pub(crate) fn raw_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, true),
        Field::new(EVENT_ID_COLUMN, DataType::Utf8, true),
        Field::new("event_type", DataType::Utf8, true),
        Field::new("event_time", ColumnType::Timestamp.arrow_type(), true),
        Field::new(RAW_ATTRIBUTES_COLUMN, DataType::Utf8, true),
    ]))
}

/// An event read back from the log, its attributes decoded.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// Log position.
    pub seq: u64,
    /// Owning tenant.
    pub tenant: String,
    /// Producer-chosen id.
    pub id: String,
    /// Event type.
    pub event_type: String,
    /// Event time, epoch milliseconds.
    pub ts_ms: i64,
    /// The attributes.
    pub attrs: Map<String, Value>,
}

/// A typed value, ready for its column's builder; text is borrowed from the event where it can
/// be.
#[derive(Debug, Clone, PartialEq)]
enum Typed<'a> {
    String(Cow<'a, str>),
    Integer(i64),
    Number(f64),
    Boolean(bool),
    /// Epoch microseconds.
    Timestamp(i64),
    /// Days since the epoch.
    Date(i32),
}

/// `value` as a value of type `ty`, if it fits.
fn convert(value: &Value, ty: ColumnType) -> Option<Typed<'_>> {
    match (ty, value) {
        (_, Value::String(s)) => convert_text(s, ty),
        (ColumnType::String, Value::Number(n)) => Some(Typed::String(n.to_string().into())),
        (ColumnType::String, Value::Bool(b)) => Some(Typed::String(b.to_string().into())),
        (ColumnType::Integer, Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                let f = n.as_f64()?;
                (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
            })
            .map(Typed::Integer),
        (ColumnType::Number, Value::Number(n)) => n.as_f64().map(Typed::Number),
        (ColumnType::Boolean, Value::Bool(b)) => Some(Typed::Boolean(*b)),
        (ColumnType::Timestamp, Value::Number(n)) => n
            .as_i64()
            .and_then(|ms| ms.checked_mul(1000))
            .map(Typed::Timestamp),
        _ => None,
    }
}

/// Text (a string attribute, the event's id or type) as a value of type `ty`, if it fits.
fn convert_text(text: &str, ty: ColumnType) -> Option<Typed<'_>> {
    match ty {
        ColumnType::String => Some(Typed::String(Cow::Borrowed(text))),
        ColumnType::Timestamp => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Typed::Timestamp(t.timestamp_micros())),
        ColumnType::Date => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .map(|d| Typed::Date(days_since_epoch(d))),
        _ => None,
    }
}

fn lookup<'a>(attrs: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = attrs.get(first)?;
    for key in rest {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

/// The attributes of an event except those columns took, serialized as a JSON object without
/// copying the map.
struct Leftover<'a> {
    attrs: &'a Map<String, Value>,
    taken: &'a [&'a str],
}

impl serde::Serialize for Leftover<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.attrs
                .iter()
                .filter(|(key, _)| !self.taken.contains(&key.as_str())),
        )
    }
}

/// One column's builder, by the column's Arrow type.
enum Column {
    String(StringBuilder),
    Integer(Int64Builder),
    Number(Float64Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Date(Date32Builder),
}

impl Column {
    /// A builder for `ty` with room for `rows` values (strings: 16 bytes each on average).
    fn of(ty: &DataType, rows: usize) -> Column {
        match ty {
            DataType::Int64 => Column::Integer(Int64Builder::with_capacity(rows)),
            DataType::Float64 => Column::Number(Float64Builder::with_capacity(rows)),
            DataType::Boolean => Column::Boolean(BooleanBuilder::with_capacity(rows)),
            DataType::Timestamp(..) => Column::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ),
            DataType::Date32 => Column::Date(Date32Builder::with_capacity(rows)),
            _ => Column::String(StringBuilder::with_capacity(rows, rows * 16)),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::String(b) => Arc::new(b.finish()),
            Column::Integer(b) => Arc::new(b.finish()),
            Column::Number(b) => Arc::new(b.finish()),
            Column::Boolean(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
            Column::Date(b) => Arc::new(b.finish()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::String(b) => b.len(),
            Column::Integer(b) => b.len(),
            Column::Number(b) => b.len(),
            Column::Boolean(b) => b.len(),
            Column::Timestamp(b) => b.len(),
            Column::Date(b) => b.len(),
        }
    }

    /// Appends `value`, or a null where it is missing or not of the column's type.
    fn push(&mut self, value: Option<Typed<'_>>) {
        match (self, value) {
            (Column::String(b), Some(Typed::String(v))) => b.append_value(v),
            (Column::Integer(b), Some(Typed::Integer(v))) => b.append_value(v),
            (Column::Number(b), Some(Typed::Number(v))) => b.append_value(v),
            (Column::Boolean(b), Some(Typed::Boolean(v))) => b.append_value(v),
            (Column::Timestamp(b), Some(Typed::Timestamp(v))) => b.append_value(v),
            (Column::Date(b), Some(Typed::Date(v))) => b.append_value(v),
            (Column::String(b), _) => b.append_null(),
            (Column::Integer(b), _) => b.append_null(),
            (Column::Number(b), _) => b.append_null(),
            (Column::Boolean(b), _) => b.append_null(),
            (Column::Timestamp(b), _) => b.append_null(),
            (Column::Date(b), _) => b.append_null(),
        }
    }

    /// Appends `value` as JSON text (a null if it does not serialize), through `scratch`.
    fn push_json(&mut self, value: &impl serde::Serialize, scratch: &mut Vec<u8>) {
        scratch.clear();
        let text = serde_json::to_writer(&mut *scratch, value)
            .ok()
            .and_then(|()| std::str::from_utf8(scratch).ok());
        self.push(text.map(|t| Typed::String(Cow::Borrowed(t))));
    }
}

/// Builds the rows of one live table, event by event, in the table's live schema: each value
/// goes straight into its column's builder.
pub(crate) struct RowsBuilder {
    schema: SchemaRef,
    columns: Vec<Column>,
    /// Per event type mapped into the table: where each of its columns is in the schema, and
    /// where the event id and the leftover attributes go (found once, not once per event).
    places: Vec<(String, Places)>,
    /// Which columns the row being built has a value in (kept between rows).
    filled: Vec<bool>,
    /// JSON text being written (kept between rows).
    scratch: Vec<u8>,
}

/// Where a mapping's columns are in the table's schema.
#[derive(Debug)]
struct Places {
    columns: Vec<Option<usize>>,
    id: Option<usize>,
    attributes: Option<usize>,
}

/// Most rows a builder makes room for at first (it grows past them).
const DEFAULT_ROWS: usize = 1024;

impl RowsBuilder {
    /// A builder with room for `rows` rows (up to [`DEFAULT_ROWS`]) before it grows: the tail
    /// reads a few hundred events every few milliseconds, and each read builds its own rows.
    pub(crate) fn with_capacity(schema: SchemaRef, rows: usize) -> Self {
        let rows = rows.clamp(1, DEFAULT_ROWS);
        let columns = schema
            .fields()
            .iter()
            .map(|field| Column::of(field.data_type(), rows))
            .collect();
        let filled = vec![false; schema.fields().len()];
        Self {
            schema,
            columns,
            places: Vec::new(),
            filled,
            scratch: Vec::new(),
        }
    }

    /// Where `mapping`'s columns are (an index into `places`), found the first time it is seen.
    fn places_of(&mut self, mapping: &EventMapping) -> usize {
        if let Some(at) = self
            .places
            .iter()
            .position(|(event_type, _)| *event_type == mapping.event_type)
        {
            return at;
        }
        let places = Places {
            columns: mapping
                .columns
                .iter()
                .map(|column| self.schema.index_of(&column.name).ok())
                .collect(),
            id: self.schema.index_of(EVENT_ID_COLUMN).ok(),
            attributes: self.schema.index_of(ATTRIBUTES_COLUMN).ok(),
        };
        self.places.push((mapping.event_type.clone(), places));
        self.places.len() - 1
    }

    pub(crate) fn len(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// Appends the row of `event` under `mapping`; `day` is the event's date in the mapping's
    /// zone ([`EventMapping::day`]).
    pub(crate) fn push_mapped(&mut self, mapping: &EventMapping, event: &LiveEvent, day: i32) {
        // Top-level attributes a column took (the rest are kept as JSON).
        let mut taken: Vec<&str> = Vec::new();
        let at = self.places_of(mapping);
        let places = &self.places[at].1;
        let (columns, filled) = (&mut self.columns, &mut self.filled);
        filled.fill(false);
        for (column, index) in mapping.columns.iter().zip(&places.columns) {
            // A table's columns have names of their own (two mappings into one table agree on
            // a shared name's type), so a row gets at most one value per column.
            let Some(index) = *index else {
                continue;
            };
            let value = match &column.source {
                ColumnSource::Id => convert_text(&event.id, column.ty),
                ColumnSource::Type => convert_text(&event.event_type, column.ty),
                ColumnSource::Time => match column.ty {
                    ColumnType::Timestamp => event.ts_ms.checked_mul(1000).map(Typed::Timestamp),
                    ColumnType::Integer => Some(Typed::Integer(event.ts_ms)),
                    ColumnType::Date => Some(Typed::Date(day)),
                    _ => None,
                },
                ColumnSource::Date => match column.ty {
                    ColumnType::Date => Some(Typed::Date(day)),
                    ColumnType::String => Some(Typed::String(date_of_day(day).to_string().into())),
                    _ => None,
                },
                ColumnSource::Value(value) => convert(value, column.ty),
                ColumnSource::Attr(path) => match lookup(&event.attrs, path) {
                    Some(value) => {
                        let typed = convert(value, column.ty);
                        // Taken by its column: no longer left over, unless it did not fit.
                        if typed.is_some() && path.len() == 1 {
                            taken.push(&path[0]);
                        }
                        typed
                    }
                    None => None,
                },
            };
            columns[index].push(value);
            filled[index] = true;
        }
        if let Some(index) = places.id {
            columns[index].push(Some(Typed::String(Cow::Borrowed(&event.id))));
            filled[index] = true;
        }
        if let Some(index) = places.attributes {
            let leftover = Leftover {
                attrs: &event.attrs,
                taken: &taken,
            };
            columns[index].push_json(&leftover, &mut self.scratch);
            filled[index] = true;
        }
        // Columns of the table this mapping does not fill (another type's) are null.
        for (column, _) in columns.iter_mut().zip(filled.iter()).filter(|(_, f)| !**f) {
            column.push(None);
        }
    }

    /// Appends the row of `event` in [`RAW_TABLE`] (its columns as [`raw_schema`] lists them).
    pub(crate) fn push_raw(&mut self, event: &LiveEvent) {
        let [seq, id, event_type, time, attributes] = &mut self.columns[..] else {
            unreachable!("a raw_events builder has the raw schema's five columns");
        };
        seq.push(Some(Typed::Integer(
            i64::try_from(event.seq).unwrap_or(i64::MAX),
        )));
        id.push(Some(Typed::String(Cow::Borrowed(&event.id))));
        event_type.push(Some(Typed::String(Cow::Borrowed(&event.event_type))));
        time.push(event.ts_ms.checked_mul(1000).map(Typed::Timestamp));
        attributes.push_json(&event.attrs, &mut self.scratch);
    }

    /// The rows built so far, as one batch; the builder is empty again.
    pub(crate) fn finish(
        &mut self,
    ) -> datafusion::arrow::error::Result<datafusion::arrow::array::RecordBatch> {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        datafusion::arrow::array::RecordBatch::try_new(Arc::clone(&self.schema), arrays)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Float64Type, TimestampMicrosecondType};

    fn mapping(toml_text: &str) -> Result<EventMapping, SqlError> {
        let raw: RawMapping = toml::from_str(toml_text).expect("toml");
        raw.check("order", Path::new("m.toml"))
    }

    const ORDER: &str = r#"
        table = "orders"
        time_zone = "Asia/Seoul"
        [columns]
        order_ts = { from = "time", type = "timestamp" }
        order_date = { from = "date", type = "date" }
        revenue = { from = "attrs.amount", type = "number" }
        channel = { from = "attrs.channel", type = "string" }
        status = { value = "paid", type = "string" }
    "#;

    fn event(attrs: Value) -> LiveEvent {
        LiveEvent {
            seq: 7,
            tenant: "shop".into(),
            id: "o1".into(),
            event_type: "order".into(),
            // 2026-12-02T16:30:00Z = 2026-12-03 01:30 in Seoul.
            ts_ms: 1_796_229_000_000,
            attrs: attrs.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn a_utc_date_by_arithmetic_is_the_calendar_date() {
        let day = 86_400_000_i64;
        let mut instants = vec![0, 1, -1, day - 1, day, -day, -day - 1, 1_796_229_000_000];
        instants.extend((-3..=3).map(|n| 951_782_400_000 + n)); // 2000-02-29T00:00:00Z
        let (min, max) = (
            DateTime::<Utc>::MIN_UTC.timestamp_millis(),
            DateTime::<Utc>::MAX_UTC.timestamp_millis(),
        );
        // The first and last instants with a date, and the first ones past them.
        instants.extend([min, min + 1, max - 1, max]);
        instants.extend([min - 1, max + 1, i64::MIN, i64::MAX]);
        for ts in instants {
            assert_eq!(utc_day(ts), local_day(&Utc, ts), "at {ts} ms");
        }
        assert_eq!(utc_day(-1), -1);
        let utc = mapping("table = \"t\"").unwrap();
        assert_eq!(utc.day(day * 20_000 + 5), 20_000);
    }

    #[test]
    fn an_event_becomes_a_typed_row_and_keeps_what_no_column_took() {
        let order = mapping(ORDER).unwrap();
        let schema = table_schema(&[&order]).unwrap();
        let mut rows = RowsBuilder::with_capacity(Arc::clone(&schema), 8);
        let first = event(serde_json::json!({"amount": 1500, "channel": "naver", "coupon": "X1"}));
        rows.push_mapped(&order, &first, order.day(first.ts_ms));
        // A value that does not fit its column leaves it null and stays in the attributes.
        let second = event(serde_json::json!({"amount": "lots", "channel": "kakao"}));
        rows.push_mapped(&order, &second, order.day(second.ts_ms));
        let batch = rows.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let revenue = batch
            .column(schema.index_of("revenue").unwrap())
            .as_primitive::<Float64Type>();
        assert_eq!(revenue.value(0), 1500.0);
        assert!(revenue.is_null(1));
        let date = batch
            .column(schema.index_of("order_date").unwrap())
            .as_primitive::<datafusion::arrow::datatypes::Date32Type>();
        let seoul = days_since_epoch(NaiveDate::from_ymd_opt(2026, 12, 3).unwrap());
        assert_eq!(date.value(0), seoul, "the date is the Seoul one");
        let ts = batch
            .column(schema.index_of("order_ts").unwrap())
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.value(0), 1_796_229_000_000_000);
        let attributes = batch
            .column(schema.index_of(ATTRIBUTES_COLUMN).unwrap())
            .as_string::<i32>();
        assert_eq!(attributes.value(0), r#"{"coupon":"X1"}"#);
        assert_eq!(attributes.value(1), r#"{"amount":"lots"}"#);
        let status = batch
            .column(schema.index_of("status").unwrap())
            .as_string::<i32>();
        assert_eq!(status.value(1), "paid");
    }

    #[test]
    fn a_bad_mapping_names_its_key() {
        let cases = [
            ("table = \"Orders\"", "events.order.table"),
            ("table = \"raw_events\"", "events.order.table"),
            (
                "table = \"orders\"\ntime_zone = \"Mars/Base\"",
                "events.order.time_zone",
            ),
            (
                "table = \"orders\"\n[columns]\nx = { from = \"body\", type = \"string\" }",
                "events.order.columns.x",
            ),
            (
                "table = \"orders\"\n[columns]\nx = { value = \"a\", type = \"number\" }",
                "events.order.columns.x",
            ),
            (
                "table = \"orders\"\n[columns]\nevent_id = { from = \"id\", type = \"string\" }",
                "events.order.columns.event_id",
            ),
            (
                "table = \"orders\"\n[columns]\nx = { type = \"string\" }",
                "events.order.columns.x",
            ),
        ];
        for (text, key) in cases {
            match mapping(text) {
                Err(SqlError::Model { member, .. }) => assert_eq!(member, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn two_mappings_into_one_table_must_agree_on_types() {
        let a = mapping("table = \"t\"\n[columns]\nx = { from = \"attrs.x\", type = \"number\" }")
            .unwrap();
        let mut b =
            mapping("table = \"t\"\n[columns]\nx = { from = \"attrs.x\", type = \"string\" }")
                .unwrap();
        b.event_type = "refund".into();
        let error = table_schema(&[&a, &b]).unwrap_err().to_string();
        assert!(
            error.contains("is a string here but a number in events.order"),
            "{error}"
        );
    }

    #[test]
    fn rows_of_two_types_in_one_table_land_in_their_own_columns() {
        let order =
            mapping("table = \"t\"\n[columns]\nx = { from = \"attrs.x\", type = \"number\" }")
                .unwrap();
        let mut refund =
            mapping("table = \"t\"\n[columns]\ny = { from = \"attrs.y\", type = \"string\" }")
                .unwrap();
        refund.event_type = "refund".into();
        let schema = table_schema(&[&order, &refund]).unwrap();
        let mut rows = RowsBuilder::with_capacity(Arc::clone(&schema), 1);
        let day = order.day(event(serde_json::json!({})).ts_ms);
        rows.push_mapped(
            &order,
            &event(serde_json::json!({"x": 1.5, "y": "no"})),
            day,
        );
        let mut second = event(serde_json::json!({"x": 2.5, "y": "back"}));
        second.event_type = "refund".into();
        rows.push_mapped(&refund, &second, day);
        rows.push_mapped(&order, &event(serde_json::json!({"x": 3.5})), day);
        let batch = rows.finish().unwrap();
        let x = batch
            .column_by_name("x")
            .unwrap()
            .as_primitive::<Float64Type>();
        let y = batch.column_by_name("y").unwrap().as_string::<i32>();
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(
            (0..3)
                .map(|i| x.is_valid(i).then(|| x.value(i)))
                .collect::<Vec<_>>(),
            [Some(1.5), None, Some(3.5)]
        );
        assert_eq!(
            (0..3)
                .map(|i| y.is_valid(i).then(|| y.value(i)))
                .collect::<Vec<_>>(),
            [None, Some("back"), None]
        );
    }
}
